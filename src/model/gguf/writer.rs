//! Writing a GGUF file (version 3): metadata entries and f32 / f16 tensors, in the layout
//! [`GgufFile`](super::GgufFile) reads and llama.cpp loads (data aligned to
//! [`DEFAULT_ALIGNMENT`](super::reader::DEFAULT_ALIGNMENT) bytes, dims innermost first).

use std::io::{BufWriter, Write};
use std::path::Path;

use half::f16;

use super::metadata::tag;
use super::reader::{DEFAULT_ALIGNMENT, GGUF_MAGIC};
use super::{GgmlType, MetaValue};
use crate::error::IoError;

/// The GGUF version written.
pub const GGUF_WRITE_VERSION: u32 = 3;

/// One tensor to write: its row-major shape, type and encoded bytes.
struct Entry {
    name: String,
    shape: Vec<usize>,
    ggml_type: GgmlType,
    bytes: Vec<u8>,
}

/// A GGUF file being assembled in memory: metadata in insertion order, then tensors in
/// insertion order, each starting on an aligned offset of the data section.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<Entry>,
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The payload of `v` (no type tag).
fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => put_u32(out, *x),
        MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U64(x) => put_u64(out, *x),
        MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(u8::from(*x)),
        MetaValue::String(s) => put_string(out, s),
        MetaValue::Array(items) => {
            // An empty array still names an element type; u32 is what llama.cpp writes.
            put_u32(out, items.first().map_or(tag::U32, MetaValue::tag));
            put_u64(out, items.len() as u64);
            for item in items {
                put_value(out, item);
            }
        }
    }
}

fn padding(len: u64) -> usize {
    ((DEFAULT_ALIGNMENT - len % DEFAULT_ALIGNMENT) % DEFAULT_ALIGNMENT) as usize
}

impl GgufWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) metadata entry `key`.
    pub fn meta(&mut self, key: impl Into<String>, value: MetaValue) {
        let key = key.into();
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.metadata.push((key, value)),
        }
    }

    /// Adds tensor `name` of row-major `shape` from f32 `values`, stored as `ggml_type`
    /// ([`GgmlType::F32`] or [`GgmlType::F16`]; f16 rounds to nearest).
    ///
    /// # Panics
    /// If `values` does not hold `shape`'s element count, or `ggml_type` is neither f32 nor
    /// f16: both are the caller's construction, not input.
    pub fn tensor(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        values: &[f32],
        ggml_type: GgmlType,
    ) {
        assert_eq!(
            shape.iter().product::<usize>(),
            values.len(),
            "tensor values do not fill the shape"
        );
        let bytes = match ggml_type {
            GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            GgmlType::F16 => values
                .iter()
                .flat_map(|v| f16::from_f32(*v).to_le_bytes())
                .collect(),
            other => panic!("the GGUF writer stores f32 and f16 tensors, not {other}"),
        };
        self.tensors.push(Entry {
            name: name.into(),
            shape: shape.to_vec(),
            ggml_type,
            bytes,
        });
    }

    /// The header, metadata and tensor directory, padded to where the data section starts.
    fn header(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        put_u32(&mut out, GGUF_WRITE_VERSION);
        put_u64(&mut out, self.tensors.len() as u64);
        put_u64(&mut out, self.metadata.len() as u64);
        for (key, value) in &self.metadata {
            put_string(&mut out, key);
            put_u32(&mut out, value.tag());
            put_value(&mut out, value);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_string(&mut out, &t.name);
            put_u32(&mut out, t.shape.len() as u32);
            for &d in t.shape.iter().rev() {
                put_u64(&mut out, d as u64);
            }
            put_u32(&mut out, t.ggml_type.id());
            put_u64(&mut out, offset);
            offset += t.bytes.len() as u64;
            offset += padding(offset) as u64;
        }
        let pad = padding(out.len() as u64);
        out.resize(out.len() + pad, 0);
        out
    }

    /// The whole file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header();
        for t in &self.tensors {
            out.extend_from_slice(&t.bytes);
            out.resize(out.len() + padding(t.bytes.len() as u64), 0);
        }
        out
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: &Path) -> Result<(), IoError> {
        let file = std::fs::File::create(path).map_err(IoError::at(path))?;
        let mut w = BufWriter::new(file);
        let zeros = [0u8; DEFAULT_ALIGNMENT as usize];
        w.write_all(&self.header()).map_err(IoError::at(path))?;
        for t in &self.tensors {
            w.write_all(&t.bytes).map_err(IoError::at(path))?;
            w.write_all(&zeros[..padding(t.bytes.len() as u64)])
                .map_err(IoError::at(path))?;
        }
        w.flush().map_err(IoError::at(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gguf::GgufFile;

    #[test]
    fn written_files_read_back() {
        let mut w = GgufWriter::new();
        w.meta("general.architecture", MetaValue::String("llama".into()));
        w.meta("llama.block_count", MetaValue::U32(2));
        w.meta("general.flag", MetaValue::Bool(true));
        w.meta(
            "tokenizer.ggml.tokens",
            MetaValue::Array(vec![
                MetaValue::String("a".into()),
                MetaValue::String("bc".into()),
            ]),
        );
        w.meta("empty", MetaValue::Array(Vec::new()));
        w.meta("llama.block_count", MetaValue::U32(3));
        let m: Vec<f32> = (0..6).map(|v| v as f32 * 0.5 - 1.0).collect();
        w.tensor("m", &[2, 3], &m, GgmlType::F32);
        w.tensor("h", &[3], &[0.1, 2.0, -3.5], GgmlType::F16);
        w.tensor("v", &[1], &[7.0], GgmlType::F32);
        let bytes = w.to_bytes();
        let g = GgufFile::from_bytes(bytes.clone(), "<written>").unwrap();
        assert_eq!(g.version, GGUF_WRITE_VERSION);
        assert_eq!(g.meta_u64("llama.block_count").unwrap(), 3);
        assert_eq!(g.meta("general.flag"), Some(&MetaValue::Bool(true)));
        assert_eq!(
            g.meta_str_array("tokenizer.ggml.tokens").unwrap(),
            ["a", "bc"]
        );
        assert_eq!(
            g.meta("empty")
                .and_then(MetaValue::as_array)
                .map(<[_]>::len),
            Some(0)
        );
        assert_eq!(g.tensor_f32("m").unwrap(), (m, vec![2, 3]));
        let (h, shape) = g.tensor_f32("h").unwrap();
        assert_eq!(shape, vec![3]);
        assert_eq!(h[1], 2.0);
        assert!((h[0] - 0.1).abs() < 1e-3 && h[0] != 0.1);
        assert_eq!(g.tensor_f32("v").unwrap().0, vec![7.0]);
        for t in &g.tensors {
            assert_eq!(
                (g.data_start() + t.offset) % DEFAULT_ALIGNMENT,
                0,
                "{}",
                t.name
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.gguf");
        w.write(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
}
