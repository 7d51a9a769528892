//! Reading a GGUF file: the header, the metadata and the tensor directory of a file held in
//! memory, with every length and offset checked, and typed access to metadata and tensors.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use super::cursor::Cursor;
use super::dequant::dequantize_into;
use super::types::unsupported_type;
use super::{GgmlType, GgufError, MetaValue, TensorInfo};
use crate::error::suggest;

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Data alignment when a file has no `general.alignment` key.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key holding the data alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// ggml tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;
/// Largest `general.alignment` accepted.
const MAX_ALIGNMENT: u64 = 1 << 20;
/// Most tensors / metadata entries a file may declare (real models have a few thousand).
const MAX_TENSORS: u64 = 1 << 20;
const MAX_METADATA: u64 = 1 << 20;

/// Bytes of a file [`GgufFile::open_header`] reads first; it reads twice as many until the
/// header, metadata and tensor directory fit.
const HEADER_PREFIX: u64 = 16 << 20;

/// A parsed GGUF file, held in memory (or only its header: [`GgufFile::open_header`]).
#[derive(Clone)]
pub struct GgufFile {
    /// GGUF version (2 or 3).
    pub version: u32,
    /// Metadata entries by key.
    pub metadata: BTreeMap<String, MetaValue>,
    /// The tensor directory, in file order.
    pub tensors: Vec<TensorInfo>,
    bytes: Vec<u8>,
    /// Size of the whole file (more than `bytes` when only the header was read).
    file_len: u64,
    data_start: u64,
    alignment: u64,
    source: String,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("source", &self.source)
            .field("version", &self.version)
            .field("bytes", &self.bytes.len())
            .field("file_len", &self.file_len)
            .field("alignment", &self.alignment)
            .field("data_start", &self.data_start)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// `x` rounded up to a multiple of `alignment`, or `None` when that overflows.
fn align_up(x: u64, alignment: u64) -> Option<u64> {
    let rem = x % alignment;
    if rem == 0 {
        Some(x)
    } else {
        x.checked_add(alignment - rem)
    }
}

/// ` (did you mean 'x'?)` for the candidate closest to `name` (see [`crate::error::suggest`]),
/// or nothing.
fn hint<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    suggest(name, candidates)
        .map(|c| format!(" (did you mean '{c}'?)"))
        .unwrap_or_default()
}

impl GgufFile {
    /// Reads and parses the file at `path`.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let bytes = crate::error::read(path).map_err(GgufError::Read)?;
        Self::from_bytes(bytes, &path.display().to_string())
    }

    /// Reads and parses the header, metadata and tensor directory of the file at `path`, and
    /// checks every tensor's extent against the file's size, without reading tensor data:
    /// what [`GgufFile::open`] checks, at the cost of the header. [`GgufFile::tensor_data`]
    /// of the result is an error.
    pub fn open_header(path: &Path) -> Result<Self, GgufError> {
        use std::io::Read;
        let source = path.display().to_string();
        let io = |e: std::io::Error| GgufError::Read(crate::error::IoError::new(path, e));
        let file_len = std::fs::metadata(path).map_err(io)?.len();
        let mut want = HEADER_PREFIX.min(file_len);
        loop {
            let mut bytes = Vec::with_capacity(want as usize);
            std::fs::File::open(path)
                .map_err(io)?
                .take(want)
                .read_to_end(&mut bytes)
                .map_err(io)?;
            match Self::parse(bytes, file_len, &source) {
                Err(GgufError::Truncated { .. }) if want < file_len => {
                    want = want.saturating_mul(2).min(file_len);
                }
                other => return other,
            }
        }
    }

    /// Parses a GGUF file held in `bytes`; `source` labels it in error messages.
    pub fn from_bytes(bytes: Vec<u8>, source: &str) -> Result<Self, GgufError> {
        let len = bytes.len() as u64;
        Self::parse(bytes, len, source)
    }

    /// Parses `bytes`, the first bytes of a file of `len` bytes (all of it, or its header).
    fn parse(bytes: Vec<u8>, len: u64, source: &str) -> Result<Self, GgufError> {
        let file = source;
        let mut r = Cursor {
            bytes: &bytes,
            pos: 0,
            file,
        };

        let head = &bytes[..bytes.len().min(4)];
        if head != &GGUF_MAGIC[..head.len()] {
            return Err(GgufError::BadMagic {
                file: file.to_string(),
                found: head.to_vec(),
            });
        }
        r.array::<4>(&|| "the magic \"GGUF\"".to_string())?;
        let version = r.u32(&|| "the version".to_string())?;
        match version {
            2 | 3 => {}
            v if matches!(v.swap_bytes(), 2 | 3) => {
                return Err(GgufError::BigEndian {
                    file: file.to_string(),
                    version: v.swap_bytes(),
                });
            }
            v => {
                return Err(GgufError::UnsupportedVersion {
                    file: file.to_string(),
                    version: v,
                });
            }
        }
        let n_tensors = r.u64(&|| "the tensor count".to_string())?;
        let n_meta = r.u64(&|| "the metadata count".to_string())?;
        if n_tensors > MAX_TENSORS {
            return Err(r.corrupt(format!(
                "the header declares {n_tensors} tensors (limit {MAX_TENSORS})"
            )));
        }
        if n_meta > MAX_METADATA {
            return Err(r.corrupt(format!(
                "the header declares {n_meta} metadata entries (limit {MAX_METADATA})"
            )));
        }
        // A metadata entry takes at least 13 bytes (key length, type, one-byte value) and a tensor
        // entry at least 32 (name length, dim count, one dim, type, offset).
        let least = n_meta * 13 + n_tensors * 32;
        if least > r.remaining() as u64 {
            return Err(r.truncated(
                format!("{n_meta} metadata entries and {n_tensors} tensor entries"),
                least,
            ));
        }

        let mut metadata = BTreeMap::new();
        for i in 0..n_meta {
            let key = r.string(&|| format!("the key of metadata entry {i}"))?;
            let t = r.u32(&|| format!("the value type of metadata '{key}'"))?;
            let value = r.value(t, &key, 0)?;
            if metadata.contains_key(&key) {
                return Err(r.corrupt(format!("metadata key '{key}' appears twice")));
            }
            metadata.insert(key, value);
        }

        let alignment = match metadata.get(ALIGNMENT_KEY) {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() && a <= MAX_ALIGNMENT => a,
                _ => {
                    return Err(r.corrupt(format!(
                        "{ALIGNMENT_KEY} is {}, but must be a power of two up to {MAX_ALIGNMENT}",
                        v.describe()
                    )));
                }
            },
        };

        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = r.string(&|| format!("the name of tensor {i}"))?;
            let n_dims = r.u32(&|| format!("the dimension count of tensor '{name}'"))?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(r.corrupt(format!(
                    "tensor '{name}' has {n_dims} dimensions (ggml allows 1 to {MAX_DIMS})"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(r.u64(&|| format!("dimension {d} of tensor '{name}'"))?);
            }
            let ggml_type = r.u32(&|| format!("the type of tensor '{name}'"))?;
            let offset = r.u64(&|| format!("the data offset of tensor '{name}'"))?;
            let product = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= i64::MAX as u64 && usize::try_from(n).is_ok());
            if product.is_none() {
                return Err(r.corrupt(format!(
                    "tensor '{name}' has dims {dims:?} whose element count overflows"
                )));
            }
            if tensors.iter().any(|t| t.name == name) {
                return Err(r.corrupt(format!("tensor name '{name}' appears twice")));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }

        let header_end = r.pos as u64;
        let Some(data_start) = align_up(header_end, alignment) else {
            return Err(r.corrupt("the data section start overflows".to_string()));
        };
        for t in &tensors {
            if !t.offset.is_multiple_of(alignment) {
                return Err(r.corrupt(format!(
                    "tensor '{}' has data offset {}, not a multiple of the alignment {alignment}",
                    t.name, t.offset
                )));
            }
            let Some(ty) = t.known_type() else {
                // Unknown types keep the metadata readable; tensor_f32 reports them.
                continue;
            };
            if !t.dims[0].is_multiple_of(ty.block_size() as u64) {
                return Err(r.corrupt(format!(
                    "tensor '{}' of type {ty} has rows of {} values, not a multiple of the block size {}",
                    t.name,
                    t.dims[0],
                    ty.block_size()
                )));
            }
            let Some(size) = ty.byte_size(t.n_elements()) else {
                return Err(r.corrupt(format!(
                    "tensor '{}' of type {ty} has dims {:?}, too large to address",
                    t.name, t.dims
                )));
            };
            let start = data_start.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(size as u64));
            if end.is_none_or(|e| e > len) {
                return Err(GgufError::TensorPastEof {
                    file: file.to_string(),
                    name: t.name.clone(),
                    offset: start.unwrap_or(u64::MAX),
                    size: size as u64,
                    len,
                });
            }
        }

        Ok(GgufFile {
            version,
            metadata,
            tensors,
            bytes,
            file_len: len,
            data_start,
            alignment,
            source: source.to_string(),
        })
    }

    /// The label used in error messages (the path for [`GgufFile::open`]).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Byte offset of the data section in the file.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// Size of the whole file in bytes.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&MetaValue, GgufError> {
        self.metadata.get(key).ok_or_else(|| GgufError::MissingKey {
            file: self.source.clone(),
            key: key.to_string(),
            hint: hint(key, self.metadata.keys().map(String::as_str)),
        })
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: &MetaValue) -> GgufError {
        GgufError::WrongType {
            file: self.source.clone(),
            key: key.to_string(),
            expected,
            found: found.describe(),
        }
    }

    /// A metadata value as an unsigned integer; errors name the missing or mistyped key.
    pub fn meta_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.require(key)?;
        v.as_u64()
            .ok_or_else(|| self.wrong_type(key, "a non-negative integer", v))
    }

    /// A metadata value as a number; errors name the missing or mistyped key.
    pub fn meta_f64(&self, key: &str) -> Result<f64, GgufError> {
        let v = self.require(key)?;
        v.as_f64()
            .ok_or_else(|| self.wrong_type(key, "a number", v))
    }

    /// A metadata string; errors name the missing or mistyped key.
    pub fn meta_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.require(key)?;
        v.as_str()
            .ok_or_else(|| self.wrong_type(key, "a string", v))
    }

    /// A metadata array of strings (a tokenizer vocabulary, merges …).
    pub fn meta_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        let v = self.require(key)?;
        let items = v
            .as_array()
            .ok_or_else(|| self.wrong_type(key, "an array of strings", v))?;
        items
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| self.wrong_type(key, "an array of strings", v))
            })
            .collect()
    }

    /// The model architecture (`general.architecture`: `llama`, `qwen2` …).
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.meta_str("general.architecture")
    }

    /// The architecture, or an error when it is not one of `allowed`.
    pub fn expect_architecture(&self, allowed: &[&str]) -> Result<&str, GgufError> {
        let arch = self.architecture()?;
        if allowed.contains(&arch) {
            return Ok(arch);
        }
        let list = allowed
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let allowed = match allowed.len() {
            0 => "no architectures are".to_string(),
            1 => format!("{list} is"),
            _ => format!("{list} are"),
        };
        Err(GgufError::ArchitectureMismatch {
            file: self.source.clone(),
            found: arch.to_string(),
            allowed,
        })
    }

    /// The directory entry of tensor `name`.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The type and raw bytes of tensor `name`.
    pub fn tensor_data(&self, name: &str) -> Result<(GgmlType, &[u8]), GgufError> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor {
                file: self.source.clone(),
                name: name.to_string(),
                hint: hint(name, self.tensors.iter().map(|t| t.name.as_str())),
            })?;
        let Some(ty) = info.known_type() else {
            return Err(unsupported_type(
                format!("'{}': tensor '{name}' has ", self.source),
                info.ggml_type,
            ));
        };
        let n = info.n_elements();
        let Some(size) = ty.byte_size(n) else {
            return Err(GgufError::BlockMismatch {
                what: format!("'{}': tensor '{name}'", self.source),
                ty: ty.name(),
                n_elements: n,
                block: ty.block_size(),
            });
        };
        if (self.bytes.len() as u64) < self.file_len {
            return Err(GgufError::HeaderOnly {
                file: self.source.clone(),
            });
        }
        let len = self.bytes.len() as u64;
        let start = self.data_start.checked_add(info.offset);
        let end = start.and_then(|s| s.checked_add(size as u64));
        match (start, end) {
            (Some(s), Some(e)) if e <= len => Ok((ty, &self.bytes[s as usize..e as usize])),
            _ => Err(GgufError::TensorPastEof {
                file: self.source.clone(),
                name: name.to_string(),
                offset: start.unwrap_or(u64::MAX),
                size: size as u64,
                len,
            }),
        }
    }

    /// Tensor `name` dequantized to f32, with its row-major shape.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), GgufError> {
        let (ty, data) = self.tensor_data(name)?;
        let info = self
            .tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor {
                file: self.source.clone(),
                name: name.to_string(),
                hint: String::new(),
            })?;
        let values = dequantize_into(ty, data, info.n_elements(), &|| {
            format!("'{}': tensor '{name}'", self.source)
        })?;
        Ok((values, info.shape()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_real_smollm2_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/models/SmolLM2-135M-Instruct.Q4_1.gguf");
        if !path.exists() {
            eprintln!("skipping: {} is absent", path.display());
            return;
        }
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(f.expect_architecture(&["llama"]).unwrap(), "llama");
        assert_eq!(f.meta_u64("llama.block_count").unwrap(), 30);
        assert_eq!(f.meta_u64("llama.embedding_length").unwrap(), 576);
        assert_eq!(
            f.meta_str_array("tokenizer.ggml.tokens").unwrap().len(),
            49152
        );
        let embd = f.tensor_info("token_embd.weight").unwrap();
        assert_eq!(embd.known_type(), Some(GgmlType::Q8_0));
        assert_eq!(embd.shape(), vec![49152, 576]);
        let q = f.tensor_info("blk.0.attn_q.weight").unwrap();
        assert_eq!(q.known_type(), Some(GgmlType::Q4_1));
        let (w, shape) = f.tensor_f32("blk.0.attn_q.weight").unwrap();
        assert_eq!(shape, vec![576, 576]);
        assert!(w.iter().all(|v| v.is_finite()));
        let rms = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
        assert!(rms > 1e-3 && rms < 1.0, "attn_q rms {rms}");
        let (norm, _) = f.tensor_f32("blk.0.attn_norm.weight").unwrap();
        assert_eq!(norm.len(), 576);
    }
}
