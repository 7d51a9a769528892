//! Writing GGUF files for the tests: [`GgufWriter`] (metadata and tensors, GGUF v3), the
//! quantizers behind it ([`quantize`]), the raw encoders of metadata payloads, and [`to_gguf`],
//! which exports a [`Llama`] so that loading it back can be checked.
#![allow(dead_code)]

use std::path::Path;

use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use half::{bf16, f16};
use rlcd::error::IoError;
use rlcd::model::gguf::{
    ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, GgmlType, GgufError, MetaValue,
};
use rlcd::model::llama::{Llama, RopeStyle};
use rlcd::model::load::{SUPPORTED_ARCHITECTURES, permute_qk};

/// The GGUF version [`GgufWriter`] writes.
pub const GGUF_VERSION: u32 = 3;
/// Largest `general.alignment` the reader accepts.
pub const MAX_ALIGNMENT: u64 = 1 << 20;
/// ggml tensors have at most four dimensions.
const MAX_DIMS: usize = 4;
/// ggml's limit on tensor name length (`GGML_MAX_NAME` minus the terminating NUL).
const MAX_TENSOR_NAME: usize = 63;

/// GGUF metadata value type ids (written independently of the reader's, as a check on it).
pub mod tag {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// Everything that can go wrong quantizing values or writing a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The values are not a whole number of blocks of the type.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A value cannot be quantized to the requested type.
    #[error("{what}: value {value} at index {index} cannot be stored as {ty}: {reason}")]
    Unrepresentable {
        /// The operation.
        what: String,
        /// The ggml type's name.
        ty: &'static str,
        /// Position of the value.
        index: usize,
        /// The value.
        value: f32,
        /// Why it cannot be stored.
        reason: &'static str,
    },
    /// A tensor given to [`GgufWriter::tensor`] is malformed.
    #[error("cannot add tensor '{name}' to a GGUF file: {detail}")]
    InvalidTensor {
        /// The tensor.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// A metadata entry given to [`GgufWriter::meta`] cannot be written.
    #[error("cannot write GGUF metadata '{key}': {detail}")]
    InvalidMetadata {
        /// The key.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// The file could not be written to disk.
    #[error("cannot write GGUF file {0}; check that the directory exists and is writable")]
    Write(#[source] IoError),
}

/// The value type id of `v`.
pub fn tag_of(v: &MetaValue) -> u32 {
    match v {
        MetaValue::U8(_) => tag::U8,
        MetaValue::I8(_) => tag::I8,
        MetaValue::U16(_) => tag::U16,
        MetaValue::I16(_) => tag::I16,
        MetaValue::U32(_) => tag::U32,
        MetaValue::I32(_) => tag::I32,
        MetaValue::U64(_) => tag::U64,
        MetaValue::I64(_) => tag::I64,
        MetaValue::F32(_) => tag::F32,
        MetaValue::F64(_) => tag::F64,
        MetaValue::Bool(_) => tag::BOOL,
        MetaValue::String(_) => tag::STRING,
        MetaValue::Array(_) => tag::ARRAY,
    }
}

// ---------------------------------------------------------------------------------------------
// Quantization
// ---------------------------------------------------------------------------------------------

/// Quantizes `values` to type `ty` (ggml's reference rounding for F16/BF16/Q4_0/Q4_1/Q5_0/Q8_0;
/// a simple absmax/min quantizer for Q4_K and Q6_K). `values.len()` must be a whole number of
/// blocks; block types need finite values.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Result<Vec<u8>, WriteError> {
    let what = || format!("quantize to {ty}");
    let Some(size) = ty.byte_size(values.len()) else {
        return Err(GgufError::BlockMismatch {
            what: what(),
            ty: ty.name(),
            n_elements: values.len(),
            block: ty.block_size(),
        }
        .into());
    };
    let unrepresentable = |index: usize, reason: &'static str| WriteError::Unrepresentable {
        what: what(),
        ty: ty.name(),
        index,
        value: values.get(index).copied().unwrap_or(f32::NAN),
        reason,
    };
    if ty.block_size() > 1
        && let Some(i) = values.iter().position(|v| !v.is_finite())
    {
        return Err(unrepresentable(
            i,
            "block-quantized types need finite values",
        ));
    }
    let mut out = Vec::with_capacity(size);
    match ty {
        GgmlType::F32 => {
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for (i, &v) in values.iter().enumerate() {
                let h = f16::from_f32(v);
                if h.is_infinite() && v.is_finite() {
                    return Err(unrepresentable(i, "it exceeds the f16 range (±65504)"));
                }
                out.extend_from_slice(&h.to_bits().to_le_bytes());
            }
        }
        GgmlType::BF16 => {
            for &v in values {
                out.extend_from_slice(&bf16::from_f32(v).to_bits().to_le_bytes());
            }
        }
        _ => {
            for (bi, block) in values.chunks_exact(ty.block_size()).enumerate() {
                let ok = match ty {
                    GgmlType::Q4_0 => quant_q4_0(block, &mut out),
                    GgmlType::Q4_1 => quant_q4_1(block, &mut out),
                    GgmlType::Q5_0 => quant_q5_0(block, &mut out),
                    GgmlType::Q8_0 => quant_q8_0(block, &mut out),
                    GgmlType::Q4_K => quant_q4_k(block, &mut out),
                    GgmlType::Q6_K => quant_q6_k(block, &mut out),
                    GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => true,
                };
                if !ok {
                    let start = bi * ty.block_size();
                    let index = block
                        .iter()
                        .enumerate()
                        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                        .map(|(i, _)| start + i)
                        .unwrap_or(start);
                    return Err(unrepresentable(
                        index,
                        "its block's scale exceeds the f16 range",
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// The f16 nearest `v`, as bits, or `None` when it overflows.
fn f16_bits(v: f32) -> Option<u16> {
    let h = f16::from_f32(v);
    (!h.is_infinite() && !h.is_nan()).then_some(h.to_bits())
}

/// The smallest f16 not below the non-negative `v`, or `None` when it overflows.
fn f16_ceil(v: f32) -> Option<f16> {
    let h = f16::from_f32(v);
    let h = if h.to_f32() < v {
        f16::from_bits(h.to_bits() + 1)
    } else {
        h
    };
    (!h.is_infinite() && !h.is_nan()).then_some(h)
}

/// The value of largest magnitude in `block` (first one on ties), with its sign.
fn signed_absmax(block: &[f32]) -> f32 {
    let mut amax = 0f32;
    let mut max = 0f32;
    for &v in block {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn quant_q4_0(block: &[f32], out: &mut Vec<u8>) -> bool {
    let d = signed_absmax(block) / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let Some(bits) = f16_bits(d) else {
        return false;
    };
    out.extend_from_slice(&bits.to_le_bytes());
    for j in 0..16 {
        let q0 = ((block[j] * id + 8.5) as i8).min(15) as u8;
        let q1 = ((block[j + 16] * id + 8.5) as i8).min(15) as u8;
        out.push(q0 | (q1 << 4));
    }
    true
}

fn quant_q4_1(block: &[f32], out: &mut Vec<u8>) -> bool {
    let min = block.iter().copied().fold(f32::MAX, f32::min);
    let max = block.iter().copied().fold(-f32::MAX, f32::max);
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let (Some(db), Some(mb)) = (f16_bits(d), f16_bits(min)) else {
        return false;
    };
    out.extend_from_slice(&db.to_le_bytes());
    out.extend_from_slice(&mb.to_le_bytes());
    for j in 0..16 {
        let q0 = (((block[j] - min) * id + 0.5) as i8).min(15) as u8;
        let q1 = (((block[j + 16] - min) * id + 0.5) as i8).min(15) as u8;
        out.push(q0 | (q1 << 4));
    }
    true
}

fn quant_q5_0(block: &[f32], out: &mut Vec<u8>) -> bool {
    let d = signed_absmax(block) / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let Some(bits) = f16_bits(d) else {
        return false;
    };
    let mut qh = 0u32;
    let mut qs = [0u8; 16];
    for j in 0..16 {
        let q0 = ((block[j] * id + 16.5) as i8).min(31) as u8;
        let q1 = ((block[j + 16] * id + 16.5) as i8).min(31) as u8;
        qs[j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
        qh |= u32::from(q0 >> 4) << j;
        qh |= u32::from(q1 >> 4) << (j + 16);
    }
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend_from_slice(&qs);
    true
}

fn quant_q8_0(block: &[f32], out: &mut Vec<u8>) -> bool {
    let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let Some(bits) = f16_bits(d) else {
        return false;
    };
    out.extend_from_slice(&bits.to_le_bytes());
    for &v in block {
        out.push(((v * id).round() as i8) as u8);
    }
    true
}

/// Q4_K: per sub-block of 32, min (clamped to ≤ 0) and max; mins and scales are rounded *up* to
/// the 6-bit grids so that every value stays inside its sub-block's 16 levels.
fn quant_q4_k(block: &[f32], out: &mut Vec<u8>) -> bool {
    let mut neg_min = [0f32; 8];
    let mut max = [0f32; 8];
    for (i, sub) in block.chunks_exact(32).enumerate() {
        neg_min[i] = -sub.iter().copied().fold(0f32, f32::min);
        max[i] = sub.iter().copied().fold(f32::MIN, f32::max);
    }
    let Some(dmin) = f16_ceil(neg_min.iter().copied().fold(0f32, f32::max) / 63.0) else {
        return false;
    };
    let dmin_f = dmin.to_f32();
    let mut lm = [0u8; 8];
    let mut need = [0f32; 8];
    for i in 0..8 {
        if dmin_f > 0.0 {
            lm[i] = (neg_min[i] / dmin_f).ceil().clamp(0.0, 63.0) as u8;
        }
        need[i] = ((max[i] + dmin_f * f32::from(lm[i])) / 15.0).max(0.0);
    }
    let Some(d) = f16_ceil(need.iter().copied().fold(0f32, f32::max) / 63.0) else {
        return false;
    };
    let d_f = d.to_f32();
    let mut ls = [0u8; 8];
    for i in 0..8 {
        if d_f > 0.0 {
            ls[i] = (need[i] / d_f).ceil().clamp(0.0, 63.0) as u8;
        }
    }
    let mut scales = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            scales[j] = ls[j];
            scales[j + 4] = lm[j];
        } else {
            scales[j + 4] = (ls[j] & 0x0F) | ((lm[j] & 0x0F) << 4);
            scales[j - 4] |= (ls[j] >> 4) << 6;
            scales[j] |= (lm[j] >> 4) << 6;
        }
    }
    let mut levels = [0u8; 256];
    for (i, sub) in block.chunks_exact(32).enumerate() {
        let step = d_f * f32::from(ls[i]);
        let offset = dmin_f * f32::from(lm[i]);
        let inv = if step > 0.0 { 1.0 / step } else { 0.0 };
        for (l, &v) in sub.iter().enumerate() {
            levels[32 * i + l] = ((v + offset) * inv).round().clamp(0.0, 15.0) as u8;
        }
    }
    out.extend_from_slice(&d.to_bits().to_le_bytes());
    out.extend_from_slice(&dmin.to_bits().to_le_bytes());
    out.extend_from_slice(&scales);
    for c in 0..4 {
        for l in 0..32 {
            out.push(levels[64 * c + l] | (levels[64 * c + 32 + l] << 4));
        }
    }
    true
}

/// Q6_K: per sub-block of 16, a scale of absmax/31 rounded *up* to the 8-bit grid, so every
/// value stays inside the levels −31..=31.
fn quant_q6_k(block: &[f32], out: &mut Vec<u8>) -> bool {
    let mut want = [0f32; 16];
    for (i, sub) in block.chunks_exact(16).enumerate() {
        want[i] = sub.iter().fold(0f32, |a, v| a.max(v.abs())) / 31.0;
    }
    let Some(d) = f16_ceil(want.iter().copied().fold(0f32, f32::max) / 127.0) else {
        return false;
    };
    let d_f = d.to_f32();
    let mut sc = [0i8; 16];
    for i in 0..16 {
        if d_f > 0.0 {
            sc[i] = (want[i] / d_f).ceil().clamp(0.0, 127.0) as i8;
        }
    }
    let mut levels = [0u8; 256];
    for (i, sub) in block.chunks_exact(16).enumerate() {
        let step = d_f * f32::from(sc[i]);
        let inv = if step > 0.0 { 1.0 / step } else { 0.0 };
        for (l, &v) in sub.iter().enumerate() {
            levels[16 * i + l] = ((v * inv).round().clamp(-32.0, 31.0) + 32.0) as u8;
        }
    }
    let mut ql = [0u8; 128];
    let mut qh = [0u8; 64];
    for n in 0..2 {
        let lv = &levels[128 * n..128 * n + 128];
        for l in 0..32 {
            ql[64 * n + l] = (lv[l] & 0x0F) | ((lv[l + 64] & 0x0F) << 4);
            ql[64 * n + l + 32] = (lv[l + 32] & 0x0F) | ((lv[l + 96] & 0x0F) << 4);
            qh[32 * n + l] = (lv[l] >> 4)
                | ((lv[l + 32] >> 4) << 2)
                | ((lv[l + 64] >> 4) << 4)
                | ((lv[l + 96] >> 4) << 6);
        }
    }
    out.extend_from_slice(&ql);
    out.extend_from_slice(&qh);
    out.extend(sc.iter().map(|&s| s as u8));
    out.extend_from_slice(&d.to_bits().to_le_bytes());
    true
}

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

/// One tensor queued in a [`GgufWriter`].
#[derive(Clone, Debug)]
struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

/// Builds a GGUF v3 file: metadata entries in insertion order, then tensors in insertion order,
/// each tensor's data aligned to `general.alignment` (default 32).
#[derive(Clone, Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<PendingTensor>,
    rejected: Vec<(String, String)>,
}

/// Why `v` cannot be written, if it cannot: GGUF arrays hold one element type.
fn unwritable(v: &MetaValue) -> Option<String> {
    let MetaValue::Array(items) = v else {
        return None;
    };
    if let Some(first) = items.first()
        && let Some(other) = items.iter().find(|i| tag_of(i) != tag_of(first))
    {
        return Some(format!(
            "an array mixes {} and {} elements; GGUF arrays hold one element type",
            first.type_name(),
            other.type_name()
        ));
    }
    items.iter().find_map(unwritable)
}

/// Appends a little-endian `u32`.
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a little-endian `u64`.
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a GGUF string (`u64` length, bytes).
pub fn put_string(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Appends the payload of `v` (without its type id).
pub fn put_payload(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(u8::from(*x)),
        MetaValue::String(s) => put_string(out, s),
        MetaValue::Array(items) => {
            put_u32(out, items.first().map_or(tag::U8, tag_of));
            put_u64(out, items.len() as u64);
            for item in items {
                put_payload(out, item);
            }
        }
    }
}

/// Pads `out` with zeros to a multiple of `alignment`.
pub fn pad_to(out: &mut Vec<u8>, alignment: u64) {
    out.resize(align_up(out.len() as u64, alignment) as usize, 0);
}

impl GgufWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets metadata `key` (replacing an earlier value). An array mixing element types, or a
    /// `general.alignment` that is not a power of two, is not stored; [`GgufWriter::write`]
    /// and [`GgufWriter::try_to_bytes`] then report it.
    pub fn meta(&mut self, key: &str, v: MetaValue) -> &mut Self {
        let problem = if key == ALIGNMENT_KEY {
            match v {
                MetaValue::U32(a) if a.is_power_of_two() && u64::from(a) <= MAX_ALIGNMENT => None,
                _ => Some(format!(
                    "must be a u32 power of two up to {MAX_ALIGNMENT}, got {} {v}",
                    v.type_name()
                )),
            }
        } else {
            unwritable(&v)
        };
        if let Some(detail) = problem {
            self.rejected.push((key.to_string(), detail));
            return self;
        }
        if let Some(slot) = self.metadata.iter_mut().find(|(k, _)| k == key) {
            slot.1 = v;
        } else {
            self.metadata.push((key.to_string(), v));
        }
        self
    }

    /// Adds tensor `name` of row-major shape `shape_row_major` (e.g. `[out, in]`), quantizing
    /// `values` to `ty`. The innermost dimension must be a multiple of the type's block size.
    pub fn tensor(
        &mut self,
        name: &str,
        shape_row_major: &[usize],
        ty: GgmlType,
        values: &[f32],
    ) -> Result<&mut Self, WriteError> {
        let invalid = |detail: String| WriteError::InvalidTensor {
            name: name.to_string(),
            detail,
        };
        if name.is_empty() || name.len() > MAX_TENSOR_NAME {
            return Err(invalid(format!(
                "names must be 1 to {MAX_TENSOR_NAME} bytes (ggml's limit), this one is {}",
                name.len()
            )));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(invalid(
                "a tensor of that name was already added".to_string(),
            ));
        }
        if shape_row_major.is_empty() || shape_row_major.len() > MAX_DIMS {
            return Err(invalid(format!(
                "shape {shape_row_major:?} has {} dimensions (ggml allows 1 to {MAX_DIMS})",
                shape_row_major.len()
            )));
        }
        let n = shape_row_major
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if n != Some(values.len()) {
            return Err(invalid(format!(
                "shape {shape_row_major:?} does not hold the {} values given",
                values.len()
            )));
        }
        let inner = shape_row_major[shape_row_major.len() - 1];
        if !inner.is_multiple_of(ty.block_size()) {
            return Err(invalid(format!(
                "rows of {inner} values are not a multiple of the {ty} block size {}",
                ty.block_size()
            )));
        }
        let data = quantize(ty, values)?;
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            dims: shape_row_major.iter().rev().map(|&d| d as u64).collect(),
            ty,
            data,
        });
        Ok(self)
    }

    fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .find(|(k, _)| k == ALIGNMENT_KEY)
            .and_then(|(_, v)| v.as_u64())
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// The file's bytes (metadata entries rejected by [`GgufWriter::meta`] are left out).
    pub fn to_bytes(&self) -> Vec<u8> {
        let alignment = self.alignment();
        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        put_u32(&mut out, GGUF_VERSION);
        put_u64(&mut out, self.tensors.len() as u64);
        put_u64(&mut out, self.metadata.len() as u64);
        for (key, v) in &self.metadata {
            put_string(&mut out, key);
            put_u32(&mut out, tag_of(v));
            put_payload(&mut out, v);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_string(&mut out, &t.name);
            put_u32(&mut out, t.dims.len() as u32);
            for &d in &t.dims {
                put_u64(&mut out, d);
            }
            put_u32(&mut out, t.ty.id());
            put_u64(&mut out, offset);
            offset = align_up(offset + t.data.len() as u64, alignment);
        }
        pad_to(&mut out, alignment);
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
            pad_to(&mut out, alignment);
        }
        out
    }

    /// The file's bytes, or the first metadata entry [`GgufWriter::meta`] rejected.
    pub fn try_to_bytes(&self) -> Result<Vec<u8>, WriteError> {
        if let Some((key, detail)) = self.rejected.first() {
            return Err(WriteError::InvalidMetadata {
                key: key.clone(),
                detail: detail.clone(),
            });
        }
        Ok(self.to_bytes())
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: &Path) -> Result<(), WriteError> {
        let bytes = self.try_to_bytes()?;
        rlcd::error::write(path, bytes).map_err(WriteError::Write)
    }
}

/// `x` rounded up to a multiple of `alignment`.
fn align_up(x: u64, alignment: u64) -> u64 {
    x.div_ceil(alignment) * alignment
}

// ---------------------------------------------------------------------------------------------
// Export of a decoder
// ---------------------------------------------------------------------------------------------

/// A tensor's values as f32.
fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("tensor data as f32")
}

/// Transposes a row-major `[rows, cols]` matrix.
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = w[r * cols + c];
        }
    }
    out
}

/// Writes `model`'s weights (f32) and shape metadata as a GGUF of architecture `arch`
/// (`llama` or `qwen2`). A `llama` file stores Q/K in the adjacent-pair layout (permuting a
/// half-split model); a `qwen2` file needs a half-split model.
///
/// # Panics
///
/// On another architecture, or on an adjacent-pair model exported as `qwen2`.
pub fn to_gguf<B: Backend>(model: &Llama<B>, arch: &str) -> Result<GgufWriter, WriteError> {
    let c = model.config();
    let permute = match (arch, c.rope_style) {
        ("llama", RopeStyle::HalfSplit) => true,
        ("llama", RopeStyle::Adjacent) | ("qwen2", RopeStyle::HalfSplit) => false,
        ("qwen2", RopeStyle::Adjacent) => {
            panic!(
                "a qwen2 GGUF stores half-split RoPE weights; export an adjacent-pair model as 'llama'"
            )
        }
        (other, _) => {
            panic!("cannot export architecture '{other}'; use one of {SUPPORTED_ARCHITECTURES:?}")
        }
    };
    let u32m = |v: usize| MetaValue::U32(v as u32);
    let mut w = GgufWriter::new();
    w.meta("general.architecture", MetaValue::String(arch.into()))
        .meta(&format!("{arch}.block_count"), u32m(c.n_layers))
        .meta(&format!("{arch}.embedding_length"), u32m(c.d_model))
        .meta(&format!("{arch}.attention.head_count"), u32m(c.n_heads))
        .meta(
            &format!("{arch}.attention.head_count_kv"),
            u32m(c.n_kv_heads),
        )
        .meta(&format!("{arch}.attention.key_length"), u32m(c.head_dim))
        .meta(&format!("{arch}.feed_forward_length"), u32m(c.d_ff))
        .meta(
            &format!("{arch}.attention.layer_norm_rms_epsilon"),
            MetaValue::F32(c.rms_eps as f32),
        )
        .meta(
            &format!("{arch}.rope.freq_base"),
            MetaValue::F32(c.rope_theta as f32),
        )
        .meta(&format!("{arch}.context_length"), u32m(c.max_seq_len));
    let f32t = GgmlType::F32;
    let embd = values(model.embed.weight.val());
    w.tensor("token_embd.weight", &[c.vocab_size, c.d_model], f32t, &embd)?;
    let put_linear = |w: &mut GgufWriter, name: &str, l: &Linear<B>, heads: Option<usize>| {
        let [inp, out] = l.weight.val().dims();
        let mut m = transpose(&values(l.weight.val()), inp, out);
        if let (true, Some(h)) = (permute, heads) {
            m = permute_qk(&m, h, c.head_dim, inp);
        }
        w.tensor(&format!("{name}.weight"), &[out, inp], f32t, &m)?;
        if let Some(b) = &l.bias {
            let mut b = values(b.val());
            if let (true, Some(h)) = (permute, heads) {
                b = permute_qk(&b, h, c.head_dim, 1);
            }
            w.tensor(&format!("{name}.bias"), &[out], f32t, &b)?;
        }
        Ok::<(), WriteError>(())
    };
    for (i, layer) in model.layers.iter().enumerate() {
        let p = format!("blk.{i}");
        let an = values(layer.attn_norm.gamma.val());
        w.tensor(&format!("{p}.attn_norm.weight"), &[c.d_model], f32t, &an)?;
        put_linear(
            &mut w,
            &format!("{p}.attn_q"),
            &layer.attn.wq,
            Some(c.n_heads),
        )?;
        put_linear(
            &mut w,
            &format!("{p}.attn_k"),
            &layer.attn.wk,
            Some(c.n_kv_heads),
        )?;
        put_linear(&mut w, &format!("{p}.attn_v"), &layer.attn.wv, None)?;
        put_linear(&mut w, &format!("{p}.attn_output"), &layer.attn.wo, None)?;
        let fnorm = values(layer.ffn_norm.gamma.val());
        w.tensor(&format!("{p}.ffn_norm.weight"), &[c.d_model], f32t, &fnorm)?;
        put_linear(&mut w, &format!("{p}.ffn_gate"), &layer.mlp.gate, None)?;
        put_linear(&mut w, &format!("{p}.ffn_up"), &layer.mlp.up, None)?;
        put_linear(&mut w, &format!("{p}.ffn_down"), &layer.mlp.down, None)?;
    }
    let on = values(model.norm.gamma.val());
    w.tensor("output_norm.weight", &[c.d_model], f32t, &on)?;
    if let Some(head) = &model.lm_head {
        put_linear(&mut w, "output", head, None)?;
    }
    Ok(w)
}
