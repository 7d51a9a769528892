//! GGUF model files (llama.cpp's format, versions 2 and 3): reader, writer, and dequantization of
//! ggml's tensor types to f32.
//!
//! Pretrained checkpoints (SmolLM2, Qwen2.5) reach the project only as GGUF files with quantized
//! weights, so the decoder loads them through this module: [`GgufFile`] parses the header, the
//! metadata and the tensor directory of a file held in memory, checking every length and offset,
//! and [`GgufFile::tensor_f32`] dequantizes one tensor with ggml's reference block layouts.
//! [`GgufWriter`] and [`quantize`] write small files (test fixtures, tiny models).
//!
//! File layout (all little-endian): magic `GGUF`, `u32` version, `u64` tensor count, `u64`
//! metadata count; the metadata entries (`string` key, `u32` value type, value); the tensor
//! directory (`string` name, `u32` number of dims, `u64` dims innermost first, `u32` ggml type,
//! `u64` offset into the data section); padding to `general.alignment` (default 32); the data
//! section. A `string` is a `u64` byte length followed by UTF-8 bytes; an array is a `u32`
//! element type, a `u64` length and the element payloads (arrays may nest).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use half::{bf16, f16};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The GGUF version [`GgufWriter`] writes.
pub const GGUF_VERSION: u32 = 3;
/// Data alignment when a file has no `general.alignment` key.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key holding the data alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// ggml tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;
/// Deepest nesting of metadata arrays accepted (real files use one level).
const MAX_ARRAY_DEPTH: usize = 8;
/// Largest `general.alignment` accepted.
const MAX_ALIGNMENT: u64 = 1 << 20;
/// Most tensors / metadata entries a file may declare (real models have a few thousand).
const MAX_TENSORS: u64 = 1 << 20;
const MAX_METADATA: u64 = 1 << 20;
/// ggml's limit on tensor name length (`GGML_MAX_NAME` minus the terminating NUL).
const MAX_TENSOR_NAME: usize = 63;

/// GGUF metadata value type ids.
mod tag {
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

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Everything that can go wrong reading, writing, quantizing or dequantizing GGUF data.
///
/// `file` fields hold the label of the file (its path, or the source given to
/// [`GgufFile::from_bytes`]).
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be read from disk.
    #[error("cannot read GGUF file '{path}': {source}; check that the path exists and is readable")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file could not be written to disk.
    #[error(
        "cannot write GGUF file '{path}': {source}; check that the directory exists and is writable"
    )]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with `GGUF`.
    #[error(
        "'{file}' is not a GGUF file: it starts with bytes {found:02x?}, not \"GGUF\" (47 47 55 46); pass a llama.cpp .gguf model file"
    )]
    BadMagic { file: String, found: Vec<u8> },
    /// The version field is not 2 or 3.
    #[error(
        "'{file}' is GGUF version {version}, which is not supported (supported: 2, 3); convert the model again with a current llama.cpp"
    )]
    UnsupportedVersion { file: String, version: u32 },
    /// The version field reads as 2 or 3 only byte-swapped: a big-endian file.
    #[error(
        "'{file}' is a big-endian GGUF file (version {version}), which is not supported; use the little-endian release of the model"
    )]
    BigEndian { file: String, version: u32 },
    /// A header, metadata or tensor-directory field runs past the end of the file.
    #[error(
        "'{file}' is truncated or corrupt: {what} needs {needed} bytes at offset {offset}, but the file is {len} bytes; download the file again"
    )]
    Truncated {
        file: String,
        what: String,
        offset: u64,
        needed: u64,
        len: u64,
    },
    /// A field holds an impossible value (unknown value type, absurd count, bad alignment …).
    #[error("'{file}' is corrupt: {detail}; download the file again or convert it again")]
    Corrupt { file: String, detail: String },
    /// A tensor's data lies (partly) beyond the end of the file.
    #[error(
        "'{file}': tensor '{name}' data runs past end of file (offset {offset}, size {size}, file is {len} bytes); the file is truncated, download it again"
    )]
    TensorPastEof {
        file: String,
        name: String,
        offset: u64,
        size: u64,
        len: u64,
    },
    /// A required metadata key is absent.
    #[error(
        "'{file}': metadata key '{key}' is missing{hint}; use a model file converted by a current llama.cpp, or check the key name"
    )]
    MissingKey {
        file: String,
        key: String,
        hint: String,
    },
    /// A metadata key holds a value of the wrong type.
    #[error(
        "'{file}': metadata key '{key}' holds {found}, expected {expected}; the file was written by an incompatible converter"
    )]
    WrongType {
        file: String,
        key: String,
        expected: &'static str,
        found: String,
    },
    /// `general.architecture` is not one the caller supports.
    #[error(
        "'{file}': model architecture is '{found}', but only {allowed} supported here; use a model file of a supported architecture"
    )]
    ArchitectureMismatch {
        file: String,
        found: String,
        allowed: String,
    },
    /// No tensor has the requested name.
    #[error(
        "'{file}' has no tensor named '{name}'{hint}; the model file does not have the layout its architecture implies"
    )]
    MissingTensor {
        file: String,
        name: String,
        hint: String,
    },
    /// A tensor's ggml type id is not one this module can dequantize.
    #[error(
        "{context}unsupported quantization type id {id} (supported: {supported}){known}; re-quantize the model to a supported type with llama.cpp's llama-quantize"
    )]
    UnsupportedType {
        context: String,
        id: u32,
        supported: String,
        known: String,
    },
    /// An element count is not a whole number of blocks of the type.
    #[error(
        "{what}: {n_elements} values is not a whole number of {ty} blocks of {block} values; use a multiple of {block}"
    )]
    BlockMismatch {
        what: String,
        ty: &'static str,
        n_elements: usize,
        block: usize,
    },
    /// A byte buffer has the wrong length for its type and element count.
    #[error("{what}: {ty} data for {n_elements} values must be {expected} bytes, got {found}")]
    ByteLength {
        what: String,
        ty: &'static str,
        n_elements: usize,
        expected: usize,
        found: usize,
    },
    /// A value cannot be quantized to the requested type.
    #[error("{what}: value {value} at index {index} cannot be stored as {ty}: {reason}")]
    Unrepresentable {
        what: String,
        ty: &'static str,
        index: usize,
        value: f32,
        reason: &'static str,
    },
    /// A tensor given to [`GgufWriter::tensor`] is malformed.
    #[error("cannot add tensor '{name}' to a GGUF file: {detail}")]
    InvalidTensor { name: String, detail: String },
    /// A metadata entry given to [`GgufWriter::meta`] cannot be written.
    #[error("cannot write GGUF metadata '{key}': {detail}")]
    InvalidMetadata { key: String, detail: String },
}

// ---------------------------------------------------------------------------------------------
// Metadata values
// ---------------------------------------------------------------------------------------------

/// One GGUF metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    /// Elements all of one type (arrays of arrays may differ inside).
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// Any unsigned integer, or a non-negative signed one.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(u64::from(v)),
            MetaValue::U16(v) => Some(u64::from(v)),
            MetaValue::U32(v) => Some(u64::from(v)),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            MetaValue::I8(v) => Some(i64::from(v)),
            MetaValue::I16(v) => Some(i64::from(v)),
            MetaValue::I32(v) => Some(i64::from(v)),
            MetaValue::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// Any number (floats, and integers converted to `f64`).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(f64::from(v)),
            MetaValue::F64(v) => Some(v),
            MetaValue::U64(v) => Some(v as f64),
            MetaValue::I64(v) => Some(v as f64),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// A boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// A string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// An array's elements.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The GGUF name of the value's type (`u32`, `string`, `array` …).
    pub fn type_name(&self) -> &'static str {
        tag_name(self.tag())
    }

    fn tag(&self) -> u32 {
        match self {
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

    /// A short description for error messages: the type and a preview of the value.
    fn describe(&self) -> String {
        match self {
            MetaValue::String(s) => {
                let preview: String = s.chars().take(40).collect();
                let more = if preview.len() < s.len() { "…" } else { "" };
                format!("a string \"{preview}{more}\"")
            }
            MetaValue::Array(items) => {
                let elem = items.first().map(MetaValue::type_name).unwrap_or("u8");
                format!("an array of {} {elem} values", items.len())
            }
            other => format!("{} {other}", other.type_name()),
        }
    }
}

impl fmt::Display for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaValue::U8(v) => write!(f, "{v}"),
            MetaValue::I8(v) => write!(f, "{v}"),
            MetaValue::U16(v) => write!(f, "{v}"),
            MetaValue::I16(v) => write!(f, "{v}"),
            MetaValue::U32(v) => write!(f, "{v}"),
            MetaValue::I32(v) => write!(f, "{v}"),
            MetaValue::U64(v) => write!(f, "{v}"),
            MetaValue::I64(v) => write!(f, "{v}"),
            MetaValue::F32(v) => write!(f, "{v}"),
            MetaValue::F64(v) => write!(f, "{v}"),
            MetaValue::Bool(v) => write!(f, "{v}"),
            MetaValue::String(s) => write!(f, "{s:?}"),
            MetaValue::Array(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().take(8).enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                if items.len() > 8 {
                    write!(f, ", … ({} in all)", items.len())?;
                }
                write!(f, "]")
            }
        }
    }
}

fn tag_name(t: u32) -> &'static str {
    match t {
        tag::U8 => "u8",
        tag::I8 => "i8",
        tag::U16 => "u16",
        tag::I16 => "i16",
        tag::U32 => "u32",
        tag::I32 => "i32",
        tag::F32 => "f32",
        tag::BOOL => "bool",
        tag::STRING => "string",
        tag::ARRAY => "array",
        tag::U64 => "u64",
        tag::I64 => "i64",
        tag::F64 => "f64",
        _ => "unknown",
    }
}

/// Fewest bytes one value of type `t` takes in a file, or `None` for an unknown type.
fn min_value_size(t: u32) -> Option<usize> {
    match t {
        tag::U8 | tag::I8 | tag::BOOL => Some(1),
        tag::U16 | tag::I16 => Some(2),
        tag::U32 | tag::I32 | tag::F32 => Some(4),
        tag::U64 | tag::I64 | tag::F64 | tag::STRING => Some(8),
        tag::ARRAY => Some(12),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// ggml tensor types
// ---------------------------------------------------------------------------------------------

/// The ggml tensor types this module reads and writes.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// Blocks of 32: f16 scale `d`, 16 bytes of 4-bit `q`; value = (q − 8)·d.
    Q4_0,
    /// Blocks of 32: f16 scale `d`, f16 minimum `m`, 16 bytes of 4-bit `q`; value = q·d + m.
    Q4_1,
    /// Blocks of 32: f16 `d`, 32 high bits, 16 bytes of low nibbles; value = (q − 16)·d.
    Q5_0,
    /// Blocks of 32: f16 `d`, 32 × i8 `q`; value = q·d.
    Q8_0,
    /// Super-blocks of 256: f16 `d`, f16 `dmin`, 12 bytes of 6-bit scales and mins, 128 bytes of
    /// nibbles; eight sub-blocks of 32 with value = d·scale·q − dmin·min.
    Q4_K,
    /// Super-blocks of 256: 128 bytes low nibbles, 64 bytes high 2-bit pairs, 16 i8 scales, f16
    /// `d`; sixteen sub-blocks of 16 with value = d·scale·(q − 32).
    Q6_K,
}

impl GgmlType {
    /// Every supported type.
    pub const ALL: [GgmlType; 9] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ];

    /// The type for a ggml type id, if supported.
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    /// ggml's numeric id of the type (`enum ggml_type`).
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4_K => 12,
            GgmlType::Q6_K => 14,
            GgmlType::BF16 => 30,
        }
    }

    /// Values per block.
    pub fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q8_0 => 32,
            GgmlType::Q4_K | GgmlType::Q6_K => 256,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q8_0 => 34,
            GgmlType::Q4_K => 144,
            GgmlType::Q6_K => 210,
        }
    }

    /// ggml's name of the type (`Q4_K`, `F16` …).
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q4_K => "Q4_K",
            GgmlType::Q6_K => "Q6_K",
        }
    }

    /// Bytes that `n_elements` values take, or `None` when `n_elements` is not a whole number
    /// of blocks (or the size overflows).
    pub fn byte_size(self, n_elements: usize) -> Option<usize> {
        if !n_elements.is_multiple_of(self.block_size()) {
            return None;
        }
        (n_elements / self.block_size()).checked_mul(self.type_size())
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// "F32 (0), F16 (1), …" for error messages.
fn supported_types() -> String {
    GgmlType::ALL
        .iter()
        .map(|t| format!("{} ({})", t.name(), t.id()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// ggml's name for type ids this module does not decode, for error messages.
fn unsupported_type_name(id: u32) -> Option<&'static str> {
    Some(match id {
        4 | 5 => "a removed Q4_2/Q4_3 type",
        7 => "Q5_1",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        13 => "Q5_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return None,
    })
}

fn unsupported_type(context: String, id: u32) -> GgufError {
    GgufError::UnsupportedType {
        context,
        id,
        supported: supported_types(),
        known: unsupported_type_name(id)
            .map(|n| format!(", and id {id} is ggml's {n}"))
            .unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// Tensor directory
// ---------------------------------------------------------------------------------------------

/// One entry of a file's tensor directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in GGUF order, innermost (contiguous) first.
    pub dims: Vec<u64>,
    /// ggml type id; see [`GgmlType::from_id`].
    pub ggml_type: u32,
    /// Byte offset of the data from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Row-major shape: the dims reversed, e.g. `[out, in]` for a linear weight.
    pub fn shape(&self) -> Vec<usize> {
        self.dims
            .iter()
            .rev()
            .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
            .collect()
    }

    /// Number of values (saturating at `usize::MAX` for corrupt dims).
    pub fn n_elements(&self) -> usize {
        self.dims.iter().fold(1usize, |acc, &d| {
            acc.saturating_mul(usize::try_from(d).unwrap_or(usize::MAX))
        })
    }

    /// The tensor's type, if supported.
    pub fn known_type(&self) -> Option<GgmlType> {
        GgmlType::from_id(self.ggml_type)
    }

    /// Bytes of data, if the type is supported and the dims are whole blocks.
    pub fn byte_size(&self) -> Option<usize> {
        self.known_type()?.byte_size(self.n_elements())
    }
}

// ---------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------

/// A parsed GGUF file, held in memory.
#[derive(Clone)]
pub struct GgufFile {
    /// GGUF version (2 or 3).
    pub version: u32,
    /// Metadata entries by key.
    pub metadata: BTreeMap<String, MetaValue>,
    /// The tensor directory, in file order.
    pub tensors: Vec<TensorInfo>,
    bytes: Vec<u8>,
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
            .field("alignment", &self.alignment)
            .field("data_start", &self.data_start)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// A bounds-checked little-endian cursor over the file bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    file: &'a str,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn truncated(&self, what: String, needed: u64) -> GgufError {
        GgufError::Truncated {
            file: self.file.to_string(),
            what,
            offset: self.pos as u64,
            needed,
            len: self.bytes.len() as u64,
        }
    }

    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(self.truncated(what(), n as u64));
        }
        let bytes: &'a [u8] = self.bytes;
        let out = &bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let s = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(&|| format!("length of {}", what()))?;
        if len > self.remaining() as u64 {
            return Err(self.truncated(what(), len));
        }
        let raw = self.take(len as usize, what)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_string()),
            Err(e) => Err(GgufError::Corrupt {
                file: self.file.to_string(),
                detail: format!(
                    "{} (at byte {}) is not valid UTF-8 ({e})",
                    what(),
                    self.pos - raw.len()
                ),
            }),
        }
    }

    fn corrupt(&self, detail: String) -> GgufError {
        GgufError::Corrupt {
            file: self.file.to_string(),
            detail,
        }
    }

    /// Reads the payload of a value of type `t` for metadata key `key`.
    fn value(&mut self, t: u32, key: &str, depth: usize) -> Result<MetaValue, GgufError> {
        let what = || format!("value of metadata '{key}'");
        Ok(match t {
            tag::U8 => MetaValue::U8(u8::from_le_bytes(self.array(&what)?)),
            tag::I8 => MetaValue::I8(i8::from_le_bytes(self.array(&what)?)),
            tag::U16 => MetaValue::U16(u16::from_le_bytes(self.array(&what)?)),
            tag::I16 => MetaValue::I16(i16::from_le_bytes(self.array(&what)?)),
            tag::U32 => MetaValue::U32(u32::from_le_bytes(self.array(&what)?)),
            tag::I32 => MetaValue::I32(i32::from_le_bytes(self.array(&what)?)),
            tag::U64 => MetaValue::U64(u64::from_le_bytes(self.array(&what)?)),
            tag::I64 => MetaValue::I64(i64::from_le_bytes(self.array(&what)?)),
            tag::F32 => MetaValue::F32(f32::from_le_bytes(self.array(&what)?)),
            tag::F64 => MetaValue::F64(f64::from_le_bytes(self.array(&what)?)),
            tag::BOOL => match self.array::<1>(&what)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => {
                    return Err(self.corrupt(format!(
                        "metadata '{key}' holds bool byte {b} at offset {} (must be 0 or 1)",
                        self.pos - 1
                    )));
                }
            },
            tag::STRING => MetaValue::String(self.string(&what)?),
            tag::ARRAY => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.corrupt(format!(
                        "metadata '{key}' nests arrays deeper than {MAX_ARRAY_DEPTH} levels"
                    )));
                }
                let elem = self.u32(&|| format!("element type of metadata '{key}'"))?;
                let Some(min) = min_value_size(elem) else {
                    return Err(self.corrupt(format!(
                        "metadata '{key}' is an array of unknown value type {elem} (offset {})",
                        self.pos - 4
                    )));
                };
                let len = self.u64(&|| format!("length of metadata array '{key}'"))?;
                if len > (self.remaining() / min) as u64 {
                    return Err(self.truncated(
                        format!("metadata array '{key}' of {len} {} values", tag_name(elem)),
                        len.saturating_mul(min as u64),
                    ));
                }
                // Grow as elements actually parse rather than trusting the declared length.
                let mut items = Vec::with_capacity((len as usize).min(1 << 16));
                for _ in 0..len {
                    let item = if elem == tag::ARRAY {
                        self.value(tag::ARRAY, key, depth + 1)?
                    } else {
                        self.value(elem, key, depth)?
                    };
                    items.push(item);
                }
                MetaValue::Array(items)
            }
            other => {
                return Err(self.corrupt(format!(
                    "metadata '{key}' has unknown value type {other} (offset {}; known types are 0..=12)",
                    self.pos.saturating_sub(4)
                )));
            }
        })
    }
}

fn align_up(x: u64, alignment: u64) -> Option<u64> {
    let rem = x % alignment;
    if rem == 0 {
        Some(x)
    } else {
        x.checked_add(alignment - rem)
    }
}

/// Names in `candidates` close to `name`, as an error-message hint.
fn closest_hint<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(name, c);
        if score > 0.8 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| format!(" (did you mean '{c}'?)"))
        .unwrap_or_default()
}

impl GgufFile {
    /// Reads and parses the file at `path`.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let label = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| GgufError::Read {
            path: label.clone(),
            source,
        })?;
        Self::from_bytes(bytes, &label)
    }

    /// Parses a GGUF file held in `bytes`; `source` labels it in error messages.
    pub fn from_bytes(bytes: Vec<u8>, source: &str) -> Result<Self, GgufError> {
        let file = source;
        let len = bytes.len() as u64;
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
        self.bytes.len() as u64
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&MetaValue, GgufError> {
        self.metadata.get(key).ok_or_else(|| GgufError::MissingKey {
            file: self.source.clone(),
            key: key.to_string(),
            hint: closest_hint(key, self.metadata.keys().map(String::as_str)),
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
                hint: closest_hint(name, self.tensors.iter().map(|t| t.name.as_str())),
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

// ---------------------------------------------------------------------------------------------
// Dequantization
// ---------------------------------------------------------------------------------------------

#[inline]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Dequantizes `n_elements` values of type `ty` stored in `bytes` (exactly their size).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>, GgufError> {
    dequantize_into(ty, bytes, n_elements, &|| "dequantize".to_string())
}

fn dequantize_into(
    ty: GgmlType,
    bytes: &[u8],
    n_elements: usize,
    what: &dyn Fn() -> String,
) -> Result<Vec<f32>, GgufError> {
    let Some(expected) = ty.byte_size(n_elements) else {
        return Err(GgufError::BlockMismatch {
            what: what(),
            ty: ty.name(),
            n_elements,
            block: ty.block_size(),
        });
    };
    if bytes.len() != expected {
        return Err(GgufError::ByteLength {
            what: what(),
            ty: ty.name(),
            n_elements,
            expected,
            found: bytes.len(),
        });
    }
    let mut out = vec![0f32; n_elements];
    match ty {
        GgmlType::F32 => {
            for (y, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (y, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *y = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (y, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *y = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            }
        }
        GgmlType::Q4_0 => dequant_q4_0(&mut out, bytes),
        GgmlType::Q4_1 => dequant_q4_1(&mut out, bytes),
        GgmlType::Q5_0 => dequant_q5_0(&mut out, bytes),
        GgmlType::Q8_0 => dequant_q8_0(&mut out, bytes),
        GgmlType::Q4_K => dequant_q4_k(&mut out, bytes),
        GgmlType::Q6_K => dequant_q6_k(&mut out, bytes),
    }
    Ok(out)
}

fn dequant_q4_0(out: &mut [f32], data: &[u8]) {
    for (y, b) in out.chunks_exact_mut(32).zip(data.chunks_exact(18)) {
        let d = f16_at(b, 0);
        let qs = &b[2..18];
        let (lo, hi) = y.split_at_mut(16);
        for j in 0..16 {
            lo[j] = (i32::from(qs[j] & 0x0F) - 8) as f32 * d;
            hi[j] = (i32::from(qs[j] >> 4) - 8) as f32 * d;
        }
    }
}

fn dequant_q4_1(out: &mut [f32], data: &[u8]) {
    for (y, b) in out.chunks_exact_mut(32).zip(data.chunks_exact(20)) {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        let qs = &b[4..20];
        let (lo, hi) = y.split_at_mut(16);
        for j in 0..16 {
            lo[j] = f32::from(qs[j] & 0x0F) * d + m;
            hi[j] = f32::from(qs[j] >> 4) * d + m;
        }
    }
}

fn dequant_q5_0(out: &mut [f32], data: &[u8]) {
    for (y, b) in out.chunks_exact_mut(32).zip(data.chunks_exact(22)) {
        let d = f16_at(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let qs = &b[6..22];
        let (lo, hi) = y.split_at_mut(16);
        for j in 0..16 {
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            lo[j] = ((u32::from(qs[j] & 0x0F) | h0) as i32 - 16) as f32 * d;
            hi[j] = ((u32::from(qs[j] >> 4) | h1) as i32 - 16) as f32 * d;
        }
    }
}

fn dequant_q8_0(out: &mut [f32], data: &[u8]) {
    for (y, b) in out.chunks_exact_mut(32).zip(data.chunks_exact(34)) {
        let d = f16_at(b, 0);
        for (v, &q) in y.iter_mut().zip(&b[2..34]) {
            *v = f32::from(q as i8) * d;
        }
    }
}

/// Scale and min of sub-block `j` (0..8) from Q4_K's 12 packed bytes: sub-blocks 0..4 keep
/// their 6-bit scale and min in the low bits of bytes `j` and `j + 4`; sub-blocks 4..8 keep the
/// low 4 bits in the nibbles of byte `j + 4` and the high 2 bits in the top bits of bytes
/// `j − 4` (scale) and `j` (min).
#[inline]
fn q4k_scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

fn dequant_q4_k(out: &mut [f32], data: &[u8]) {
    for (y, b) in out.chunks_exact_mut(256).zip(data.chunks_exact(144)) {
        let d = f16_at(b, 0);
        let dmin = f16_at(b, 2);
        let scales = &b[4..16];
        let qs = &b[16..144];
        // Four chunks of 32 bytes: low nibbles are sub-block 2c, high nibbles sub-block 2c + 1.
        for (c, (yc, q)) in y.chunks_exact_mut(64).zip(qs.chunks_exact(32)).enumerate() {
            let (sc1, m1) = q4k_scale_min(2 * c, scales);
            let (sc2, m2) = q4k_scale_min(2 * c + 1, scales);
            let d1 = d * f32::from(sc1);
            let min1 = dmin * f32::from(m1);
            let d2 = d * f32::from(sc2);
            let min2 = dmin * f32::from(m2);
            let (lo, hi) = yc.split_at_mut(32);
            for l in 0..32 {
                lo[l] = d1 * f32::from(q[l] & 0x0F) - min1;
                hi[l] = d2 * f32::from(q[l] >> 4) - min2;
            }
        }
    }
}

fn dequant_q6_k(out: &mut [f32], data: &[u8]) {
    for (y, b) in out.chunks_exact_mut(256).zip(data.chunks_exact(210)) {
        let d = f16_at(b, 208);
        // Two halves of 128 values; in each, value 32k + l takes its low 4 bits from
        // ql[l + 32(k mod 2)] (low nibble for k < 2, high for k ≥ 2), its high 2 bits from bits
        // 2k..2k+2 of qh[l], and its scale from sub-block (32k + l) / 16.
        for n in 0..2 {
            let ql = &b[64 * n..64 * n + 64];
            let qh = &b[128 + 32 * n..128 + 32 * n + 32];
            let sc = &b[192 + 8 * n..192 + 8 * n + 8];
            let yh = &mut y[128 * n..128 * n + 128];
            for l in 0..32 {
                let is = l / 16;
                let h = qh[l];
                let q1 = i32::from((ql[l] & 0x0F) | ((h & 3) << 4)) - 32;
                let q2 = i32::from((ql[l + 32] & 0x0F) | (((h >> 2) & 3) << 4)) - 32;
                let q3 = i32::from((ql[l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
                let q4 = i32::from((ql[l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
                yh[l] = d * f32::from(sc[is] as i8) * q1 as f32;
                yh[l + 32] = d * f32::from(sc[is + 2] as i8) * q2 as f32;
                yh[l + 64] = d * f32::from(sc[is + 4] as i8) * q3 as f32;
                yh[l + 96] = d * f32::from(sc[is + 6] as i8) * q4 as f32;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Quantization
// ---------------------------------------------------------------------------------------------

/// Quantizes `values` to type `ty` (ggml's reference rounding for F16/BF16/Q4_0/Q4_1/Q5_0/Q8_0;
/// a simple absmax/min quantizer for Q4_K and Q6_K). `values.len()` must be a whole number of
/// blocks; block types need finite values.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Result<Vec<u8>, GgufError> {
    let what = || format!("quantize to {ty}");
    let Some(size) = ty.byte_size(values.len()) else {
        return Err(GgufError::BlockMismatch {
            what: what(),
            ty: ty.name(),
            n_elements: values.len(),
            block: ty.block_size(),
        });
    };
    let unrepresentable = |index: usize, reason: &'static str| GgufError::Unrepresentable {
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
        && let Some(other) = items.iter().find(|i| i.tag() != first.tag())
    {
        return Some(format!(
            "an array mixes {} and {} elements; GGUF arrays hold one element type",
            first.type_name(),
            other.type_name()
        ));
    }
    items.iter().find_map(unwritable)
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

fn put_payload(out: &mut Vec<u8>, v: &MetaValue) {
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
            put_u32(out, items.first().map_or(tag::U8, MetaValue::tag));
            put_u64(out, items.len() as u64);
            for item in items {
                put_payload(out, item);
            }
        }
    }
}

fn pad_to(out: &mut Vec<u8>, alignment: u64) {
    let target = align_up(out.len() as u64, alignment).unwrap_or(out.len() as u64);
    out.resize(target as usize, 0);
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
                    "must be a u32 power of two up to {MAX_ALIGNMENT}, got {}",
                    v.describe()
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
    ) -> Result<&mut Self, GgufError> {
        let invalid = |detail: String| GgufError::InvalidTensor {
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
        if shape_row_major.is_empty() || shape_row_major.len() > MAX_DIMS as usize {
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
            put_u32(&mut out, v.tag());
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
            offset = align_up(offset + t.data.len() as u64, alignment).unwrap_or(u64::MAX);
        }
        pad_to(&mut out, alignment);
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
            pad_to(&mut out, alignment);
        }
        out
    }

    /// The file's bytes, or the first metadata entry [`GgufWriter::meta`] rejected.
    pub fn try_to_bytes(&self) -> Result<Vec<u8>, GgufError> {
        if let Some((key, detail)) = self.rejected.first() {
            return Err(GgufError::InvalidMetadata {
                key: key.clone(),
                detail: detail.clone(),
            });
        }
        Ok(self.to_bytes())
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: &Path) -> Result<(), GgufError> {
        let bytes = self.try_to_bytes()?;
        std::fs::write(path, bytes).map_err(|source| GgufError::Write {
            path: path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn h(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_bits().to_le_bytes()
    }

    fn assert_exact(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(g.to_bits() == w.to_bits(), "element {i}: got {g}, want {w}");
        }
    }

    // ---- hand-encoded blocks -----------------------------------------------------------------

    #[test]
    fn decodes_hand_encoded_float_types() {
        let f32_bytes: Vec<u8> = [1.5f32, -2.25, 1e-30]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_exact(
            &dequantize(GgmlType::F32, &f32_bytes, 3).unwrap(),
            &[1.5, -2.25, 1e-30],
        );

        let f16_bits: [u16; 5] = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x3555];
        let f16_bytes: Vec<u8> = f16_bits.iter().flat_map(|b| b.to_le_bytes()).collect();
        assert_exact(
            &dequantize(GgmlType::F16, &f16_bytes, 5).unwrap(),
            &[1.0, -2.0, 65504.0, 2f32.powi(-24), 0.333_251_95],
        );

        let bf16_bits: [u16; 4] = [0x3F80, 0xC040, 0x4049, 0x0000];
        let bf16_bytes: Vec<u8> = bf16_bits.iter().flat_map(|b| b.to_le_bytes()).collect();
        assert_exact(
            &dequantize(GgmlType::BF16, &bf16_bytes, 4).unwrap(),
            &[1.0, -3.0, 3.140625, 0.0],
        );
    }

    #[test]
    fn decodes_hand_encoded_q8_0() {
        // d = 0.5, q[i] = 8i − 128 → value 4i − 64.
        let mut b = vec![0x00, 0x38];
        b.extend((0..32).map(|i: i32| (8 * i - 128) as i8 as u8));
        let want: Vec<f32> = (0..32).map(|i| (4 * i - 64) as f32).collect();
        let got = dequantize(GgmlType::Q8_0, &b, 32).unwrap();
        assert_exact(&got, &want);
        assert_eq!((got[0], got[16], got[31]), (-64.0, 0.0, 60.0));
    }

    #[test]
    fn decodes_hand_encoded_q4_0() {
        // d = 2; byte j holds q = j (element j) and q = 15 − j (element j + 16); value (q − 8)·d.
        let mut b = vec![0x00, 0x40];
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut want: Vec<f32> = (0..16).map(|j| (j as f32 - 8.0) * 2.0).collect();
        want.extend((0..16).map(|j| (7 - j) as f32 * 2.0));
        let got = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
        assert_exact(&got, &want);
        assert_eq!(
            (got[0], got[8], got[15], got[16], got[31]),
            (-16.0, 0.0, 14.0, 14.0, -16.0)
        );
    }

    #[test]
    fn decodes_hand_encoded_q4_1() {
        // d = 0.5, m = −1; low nibble j, high nibble (j + 1) mod 16; value q·d + m.
        let mut b = vec![0x00, 0x38, 0x00, 0xBC];
        b.extend((0..16u8).map(|j| j | (((j + 1) % 16) << 4)));
        let mut want: Vec<f32> = (0..16).map(|j| j as f32 * 0.5 - 1.0).collect();
        want.extend((0..16).map(|j| ((j + 1) % 16) as f32 * 0.5 - 1.0));
        let got = dequantize(GgmlType::Q4_1, &b, 32).unwrap();
        assert_exact(&got, &want);
        assert_eq!(
            (got[0], got[15], got[16], got[30], got[31]),
            (-1.0, 6.5, -0.5, 6.5, -1.0)
        );
    }

    #[test]
    fn decodes_hand_encoded_q5_0() {
        // d = 0.25; high bits set for elements 0, 15, 16 and 31 (qh bits 0, 15, 16, 31); every
        // byte of nibbles is 0x21 (low 1, high 2); value (q − 16)·d.
        let mut b = vec![0x00, 0x34, 0x01, 0x80, 0x01, 0x80];
        b.extend([0x21u8; 16]);
        let mut want = vec![0.25];
        want.extend([-3.75; 14]);
        want.push(0.25);
        want.push(0.5);
        want.extend([-3.5; 14]);
        want.push(0.5);
        assert_exact(&dequantize(GgmlType::Q5_0, &b, 32).unwrap(), &want);
    }

    /// Q4_K sub-block scales and mins used by the hand-encoded block below; sub-blocks 4..8 use
    /// values ≥ 16 to exercise the packed high bits.
    const Q4K_SC: [f32; 8] = [1.0, 2.0, 3.0, 4.0, 17.0, 33.0, 5.0, 63.0];
    const Q4K_M: [f32; 8] = [0.0, 1.0, 2.0, 3.0, 18.0, 4.0, 40.0, 63.0];

    fn q4k_hand_block() -> Vec<u8> {
        let mut b = vec![0x00, 0x3C, 0x00, 0x38]; // d = 1, dmin = 0.5
        b.extend([
            0x41, 0x82, 0x03, 0xC4, 0x40, 0x01, 0x82, 0xC3, 0x21, 0x41, 0x85, 0xFF,
        ]);
        for _chunk in 0..4 {
            b.extend((0..32u8).map(|l| (l % 16) | ((15 - l % 16) << 4)));
        }
        b
    }

    #[test]
    fn decodes_hand_encoded_q4_k() {
        let b = q4k_hand_block();
        assert_eq!(b.len(), 144);
        let got = dequantize(GgmlType::Q4_K, &b, 256).unwrap();
        // Chunk c of 64 values: the first 32 are sub-block 2c with q = l mod 16 (low nibbles),
        // the next 32 sub-block 2c + 1 with q = 15 − l mod 16 (high nibbles).
        let mut want = Vec::new();
        for c in 0..4 {
            for l in 0..32 {
                want.push(Q4K_SC[2 * c] * (l % 16) as f32 - 0.5 * Q4K_M[2 * c]);
            }
            for l in 0..32 {
                want.push(Q4K_SC[2 * c + 1] * (15 - l % 16) as f32 - 0.5 * Q4K_M[2 * c + 1]);
            }
        }
        assert_exact(&got, &want);
        for (i, v) in [
            (0, 0.0),
            (1, 1.0),
            (15, 15.0),
            (32, 29.5),
            (133, 76.0),
            (163, 394.0),
            (202, 30.0),
            (255, -31.5),
        ] {
            assert_eq!(got[i], v, "element {i}");
        }
    }

    #[test]
    fn q4_k_scale_unpacking_matches_the_packed_layout() {
        let b = q4k_hand_block();
        let scales = &b[4..16];
        for j in 0..8 {
            let (sc, m) = q4k_scale_min(j, scales);
            assert_eq!(
                (f32::from(sc), f32::from(m)),
                (Q4K_SC[j], Q4K_M[j]),
                "sub-block {j}"
            );
        }
    }

    #[test]
    fn decodes_hand_encoded_q6_k() {
        let mut b = Vec::new();
        b.extend([0x31u8; 32]); // half 0: k=0 low 1, k=2 high 3
        b.extend([0x42u8; 32]); //         k=1 low 2, k=3 high 4
        b.extend([0xF0u8; 32]); // half 1: k=0 low 0, k=2 high 15
        b.extend([0x0Fu8; 32]); //         k=1 low 15, k=3 high 0
        let mut qh0 = [0xE4u8; 32]; // high pairs 0, 1, 2, 3 for k = 0..4
        qh0[31] = 0xE5; // element 31 gets high pair 1
        b.extend(qh0);
        b.extend([0x1Bu8; 32]); // high pairs 3, 2, 1, 0
        let sc: [i8; 16] = [
            1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 15, -16,
        ];
        b.extend(sc.iter().map(|&s| s as u8));
        b.extend(h(0.5));
        assert_eq!(b.len(), 210);
        let got = dequantize(GgmlType::Q6_K, &b, 256).unwrap();
        // q − 32 for half n, group k (values 32k..32k+32 of the half).
        let q: [[f32; 4]; 2] = [[-31.0, -14.0, 3.0, 20.0], [16.0, 15.0, -1.0, -32.0]];
        let mut want: Vec<f32> = (0..256)
            .map(|e| 0.5 * f32::from(sc[e / 16]) * q[e / 128][(e % 128) / 32])
            .collect();
        want[31] = 0.5 * -2.0 * -15.0;
        assert_exact(&got, &want);
        for (i, v) in [
            (0, -15.5),
            (16, 31.0),
            (31, 15.0),
            (32, -21.0),
            (64, 7.5),
            (96, 70.0),
            (128, 72.0),
            (160, 82.5),
            (192, -6.5),
            (255, 256.0),
        ] {
            assert_eq!(got[i], v, "element {i}");
        }
    }

    /// One block of each K/Q5 type with random bytes, decoded by llama.cpp's reference
    /// implementation (gguf-py `quants.dequantize`): spot values and the sum of all values.
    #[test]
    fn matches_llama_cpp_reference_vectors() {
        for (ty, hex, spots, sum) in REFERENCE_VECTORS {
            let bytes: Vec<u8> = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            let got = dequantize(*ty, &bytes, ty.block_size()).unwrap();
            for &(i, v) in *spots {
                assert_eq!(got[i], v, "{ty} element {i}");
            }
            let s: f64 = got.iter().map(|&v| f64::from(v)).sum();
            assert!(
                (s - sum).abs() <= 1e-9 * sum.abs().max(1.0),
                "{ty}: sum {s} vs {sum}"
            );
        }
    }

    /// (type, one block as hex, (index, value) spots, sum of all values) from llama.cpp's gguf-py.
    #[allow(clippy::type_complexity)]
    const REFERENCE_VECTORS: &[(GgmlType, &str, &[(usize, f32)], f64)] = &[
        (
            GgmlType::Q4_K,
            "a4272a24564803add9d0a317a4e2dd36e1605151903f384fe43b9fe863cfa9cc72a553eae7e2ecfe08ec1a14e34d692467a630de485b2714462e7e2a2e784a2ec4e2efe995d1115cc8608a43ca2a6c2b28545f7535eeb8961c91d9cce318e79d5fb76afc4f8efa1af49ad67c0ac0d390600804b086682f014438dd33460d127799aff3105860c2f941373ba49657a7cc",
            &[
                (0, 0.24996948),
                (1, -0.40664673),
                (33, 1.1723633),
                (52, 3.0825195),
                (113, 18.428986),
                (127, 2.3120422),
                (128, 3.8319702),
                (196, 1.5960388),
                (211, -0.7319641),
                (255, 13.561066),
            ],
            988.4046020507812,
        ),
        (
            GgmlType::Q6_K,
            "9eb82d47f1c28eb8ac3cfddf26d35dd4d47a913622da285eaceb3446757fbdcc897aa3ce9aab62710a97b34480139c10aac49f4418249126014f25120d1565c82fff9a77e00038f8bbf7a2430960856295b491e375d2ce9d2c284c494c9a195ff29615c6abd8165d4714bc7c276f3e7da418d0779300b47c87aa05f7cea1c83d013af2e57d011832cf973b1457c0185103b5c53e2a51b6a3bb344e2f88375e340c34cde7fcbd02d0ccefc78dcd5724eaff0a255f2d8844129c467ad577e19316e22849599a6a617544e180aed438b51fe0a4",
            &[
                (0, -1.1425781),
                (1, 4.5703125),
                (46, -16.68164),
                (86, -36.333984),
                (127, 44.560547),
                (128, 22.013672),
                (138, -23.308594),
                (175, 31.6875),
                (178, -24.984375),
                (255, 17.119629),
            ],
            1244.02001953125,
        ),
        (
            GgmlType::Q5_0,
            "41a88c57587992fdd2819d468d90dbad26105840df12",
            &[
                (0, 0.465271),
                (1, 0.09970093),
                (3, -0.033233643),
                (6, 0.09970093),
                (13, 0.5317383),
                (15, 0.465271),
                (16, 0.2326355),
                (18, 0.09970093),
                (19, -0.26586914),
                (31, 0.49850464),
            ],
            0.897308349609375,
        ),
        (
            GgmlType::Q4_1,
            "2a292dabe924528126a8ac7ef3efdb950d9f578f",
            &[
                (0, 0.30703735),
                (1, 0.10531616),
                (10, 0.38772583),
                (13, 0.5491028),
                (15, 0.5491028),
                (16, 0.50875854),
                (17, 0.024627686),
                (31, 0.26669312),
            ],
            9.13934326171875,
        ),
        (
            GgmlType::Q4_0,
            "a0aa0baa05afd88474e64a20ad4a3499de99",
            &[
                (0, -0.15527344),
                (1, -0.103515625),
                (15, -0.051757812),
                (16, 0.4140625),
                (19, -0.103515625),
                (29, -0.051757812),
                (31, -0.051757812),
            ],
            0.4140625,
        ),
        (
            GgmlType::Q8_0,
            "0e93bd0c23007552a38dde2947113168d6c05a0db3d9f2db2a6ad6736031730318d0",
            &[
                (0, 0.05769825),
                (1, -0.010334015),
                (4, -0.100756645),
                (15, 0.055114746),
                (16, -0.07750511),
                (18, 0.06630993),
                (21, 0.031863213),
                (22, -0.036169052),
                (31, 0.04133606),
            ],
            -0.43833446502685547,
        ),
    ];

    // ---- quantizers ---------------------------------------------------------------------------

    #[test]
    fn reference_quantizers_give_hand_computed_bytes() {
        // Q8_0 of 0..32: amax 31, d = 31/127, q = round(i·127/31).
        let x: Vec<f32> = (0..32).map(|i| i as f32).collect();
        let b = quantize(GgmlType::Q8_0, &x).unwrap();
        assert_eq!(b.len(), 34);
        assert_eq!(b[..2], h(31.0 / 127.0));
        assert_eq!(
            (b[2], b[3], b[2 + 15], b[2 + 16], b[2 + 31]),
            (0, 4, 61, 66, 127)
        );

        // Q4_0 of −16..16: signed absmax −16, d = 2, q = trunc(x/2 + 8.5) capped at 15.
        let x: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
        let b = quantize(GgmlType::Q4_0, &x).unwrap();
        assert_eq!(b[..2], [0x00, 0x40]);
        assert_eq!((b[2], b[3], b[4], b[17]), (0x80, 0x91, 0x91, 0xF8));

        // Q4_1 of 0..32 · 0.5 − 1: min −1, d = 15.5/15.
        let x: Vec<f32> = (0..32).map(|i| i as f32 * 0.5 - 1.0).collect();
        let b = quantize(GgmlType::Q4_1, &x).unwrap();
        assert_eq!(b[..4], [h(15.5 / 15.0), h(-1.0)].concat());
        assert_eq!((b[4] & 0x0F, b[4] >> 4, b[19] >> 4), (0, 8, 15));

        // Q5_0 of −16..16: d = 1, q = x + 16 with the fifth bit in qh.
        let x: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
        let b = quantize(GgmlType::Q5_0, &x).unwrap();
        assert_eq!(b[..2], h(1.0));
        assert_eq!(u32::from_le_bytes([b[2], b[3], b[4], b[5]]), 0xFFFF_0000);
        assert_eq!((b[6], b[21]), (0x00, 0xFF));
    }

    fn test_values(seed: u64, n: usize) -> Vec<f32> {
        let mut rng = crate::seed::rng(seed);
        let mut out = Vec::with_capacity(n);
        for chunk in 0..n / 32 {
            let scale = [0.01f32, 1.0, 7.5, 0.2][chunk % 4];
            let shift = [0.0f32, 0.0, 3.0, -2.0][(chunk / 4) % 4] * scale;
            for _ in 0..32 {
                out.push(if chunk % 13 == 5 {
                    0.0
                } else {
                    shift + scale * rng.random_range(-1.0f32..1.0)
                });
            }
        }
        out
    }

    #[test]
    fn round_trips_within_each_types_error_bound() {
        let x = test_values(7, 2048);
        for ty in GgmlType::ALL {
            let bytes = quantize(ty, &x).unwrap();
            assert_eq!(bytes.len(), ty.byte_size(x.len()).unwrap(), "{ty}");
            let y = dequantize(ty, &bytes, x.len()).unwrap();
            let bound = error_bounds(ty, &x);
            let mut worst = 0f32;
            for i in 0..x.len() {
                let err = (x[i] - y[i]).abs();
                assert!(
                    err <= bound[i],
                    "{ty} element {i}: {} → {} (bound {})",
                    x[i],
                    y[i],
                    bound[i]
                );
                worst = worst.max(err / bound[i].max(f32::MIN_POSITIVE));
            }
            // The bounds are tight: some value uses a fair part of its budget.
            if !matches!(ty, GgmlType::F32) {
                assert!(worst > 0.2, "{ty}: worst error only {worst} of its bound");
            }
        }
    }

    /// Per-value bound on |x − dequantize(quantize(x))|.
    fn error_bounds(ty: GgmlType, x: &[f32]) -> Vec<f32> {
        let amax = |s: &[f32]| s.iter().fold(0f32, |a, v| a.max(v.abs()));
        let eps = 1e-6;
        let mut out = Vec::with_capacity(x.len());
        match ty {
            GgmlType::F32 => out.resize(x.len(), 0.0),
            GgmlType::F16 => out.extend(x.iter().map(|v| v.abs() * 2f32.powi(-11) + 1e-7)),
            GgmlType::BF16 => out.extend(x.iter().map(|v| v.abs() * 2f32.powi(-8))),
            // Half a step plus the f16 rounding of d (≤ 2⁻¹¹ relative, times 127 levels).
            GgmlType::Q8_0 => {
                for b in x.chunks(32) {
                    out.extend([amax(b) / 127.0 * 0.57 + eps; 32]);
                }
            }
            // The level on the far side of the signed absmax is cut off: one full step.
            GgmlType::Q4_0 => {
                for b in x.chunks(32) {
                    out.extend([amax(b) / 8.0 * 1.01 + eps; 32]);
                }
            }
            GgmlType::Q5_0 => {
                for b in x.chunks(32) {
                    out.extend([amax(b) / 16.0 * 1.01 + eps; 32]);
                }
            }
            GgmlType::Q4_1 => {
                for b in x.chunks(32) {
                    let lo = b.iter().copied().fold(f32::MAX, f32::min);
                    let hi = b.iter().copied().fold(f32::MIN, f32::max);
                    out.extend([(hi - lo) / 15.0 * 0.52 + lo.abs() * 2f32.powi(-11) + eps; 32]);
                }
            }
            // Mins and scales rounded up to 6-bit grids: half a step of (range + dmin)/15 + d.
            GgmlType::Q4_K => {
                for sb in x.chunks(256) {
                    let m: Vec<f32> = sb
                        .chunks(32)
                        .map(|s| -s.iter().copied().fold(0f32, f32::min))
                        .collect();
                    let hi: Vec<f32> = sb
                        .chunks(32)
                        .map(|s| s.iter().copied().fold(f32::MIN, f32::max))
                        .collect();
                    let dmin = m.iter().copied().fold(0f32, f32::max) / 63.0 * 1.001;
                    let need: Vec<f32> = (0..8).map(|i| (hi[i] + m[i] + dmin) / 15.0).collect();
                    let d = need.iter().copied().fold(0f32, f32::max) / 63.0 * 1.001;
                    for n in need {
                        out.extend([0.5 * (n + d) * 1.001 + eps; 32]);
                    }
                }
            }
            // Scales absmax/31 rounded up to the 8-bit grid of d = max scale/127.
            GgmlType::Q6_K => {
                for sb in x.chunks(256) {
                    let want: Vec<f32> = sb.chunks(16).map(|s| amax(s) / 31.0).collect();
                    let d = want.iter().copied().fold(0f32, f32::max) / 127.0 * 1.001;
                    for w in want {
                        out.extend([0.5 * (w + d) * 1.001 + eps; 16]);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn quantize_rejects_bad_input() {
        let err = quantize(GgmlType::Q8_0, &[1.0; 31]).unwrap_err();
        assert!(matches!(
            err,
            GgufError::BlockMismatch {
                n_elements: 31,
                block: 32,
                ..
            }
        ));
        assert!(
            err.to_string()
                .contains("31 values is not a whole number of Q8_0 blocks of 32")
        );
        let mut x = vec![0.5f32; 256];
        x[9] = f32::NAN;
        let err = quantize(GgmlType::Q4_K, &x).unwrap_err();
        assert!(
            matches!(err, GgufError::Unrepresentable { index: 9, .. }),
            "{err}"
        );
        let err = quantize(GgmlType::F16, &[1e6]).unwrap_err();
        assert!(err.to_string().contains("f16 range"), "{err}");
        let mut x = vec![0.0f32; 32];
        x[3] = 1e12;
        let err = quantize(GgmlType::Q4_0, &x).unwrap_err();
        assert!(
            matches!(err, GgufError::Unrepresentable { index: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn dequantize_rejects_wrong_lengths() {
        let err = dequantize(GgmlType::Q4_K, &[0; 144], 255).unwrap_err();
        assert!(matches!(err, GgufError::BlockMismatch { .. }), "{err}");
        let err = dequantize(GgmlType::Q6_K, &[0; 209], 256).unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::ByteLength {
                    expected: 210,
                    found: 209,
                    ..
                }
            ),
            "{err}"
        );
        assert!(dequantize(GgmlType::Q8_0, &[], 0).unwrap().is_empty());
    }

    #[test]
    fn type_table_is_consistent() {
        for ty in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(ty.id()), Some(ty));
            assert_eq!(ty.to_string(), ty.name());
        }
        assert_eq!(GgmlType::from_id(13), None);
        assert_eq!(GgmlType::Q6_K.byte_size(512), Some(420));
        assert_eq!(GgmlType::Q4_K.byte_size(300), None);
        let t = TensorInfo {
            name: "w".into(),
            dims: vec![64, 3],
            ggml_type: 8,
            offset: 0,
        };
        assert_eq!(
            (t.shape(), t.n_elements(), t.byte_size()),
            (vec![3, 64], 192, Some(204))
        );
    }

    #[test]
    fn meta_value_accessors() {
        assert_eq!(MetaValue::I32(-1).as_u64(), None);
        assert_eq!(MetaValue::I64(5).as_u64(), Some(5));
        assert_eq!(MetaValue::U8(3).as_f64(), Some(3.0));
        assert_eq!(MetaValue::F32(0.5).as_f64(), Some(0.5));
        assert_eq!(MetaValue::F32(0.5).as_u64(), None);
        assert_eq!(MetaValue::U64(u64::MAX).as_i64(), None);
        assert_eq!(MetaValue::String("x".into()).as_str(), Some("x"));
        assert_eq!(MetaValue::Bool(true).as_u64(), None);
        let arr = MetaValue::Array(vec![MetaValue::U8(1)]);
        assert_eq!(arr.as_array().map(<[MetaValue]>::len), Some(1));
        assert_eq!(arr.as_str(), None);
    }

    // ---- writer and reader --------------------------------------------------------------------

    fn every_meta() -> Vec<(&'static str, MetaValue)> {
        use MetaValue as M;
        vec![
            ("general.architecture", M::String("llama".into())),
            (ALIGNMENT_KEY, M::U32(64)),
            ("t.u8", M::U8(200)),
            ("t.i8", M::I8(-7)),
            ("t.u16", M::U16(60000)),
            ("t.i16", M::I16(-30000)),
            ("t.u32", M::U32(4_000_000_000)),
            ("t.i32", M::I32(-2_000_000_000)),
            ("t.u64", M::U64(u64::MAX)),
            ("t.i64", M::I64(i64::MIN)),
            ("t.f32", M::F32(1e-5)),
            ("t.f64", M::F64(-1.0e300)),
            ("t.bool", M::Bool(true)),
            ("t.bool_false", M::Bool(false)),
            ("t.string", M::String("héllo ✓".into())),
            ("t.empty_string", M::String(String::new())),
            (
                "t.strings",
                M::Array(vec![M::String("a".into()), M::String("Ġb".into())]),
            ),
            ("t.floats", M::Array(vec![M::F32(0.5), M::F32(-2.0)])),
            ("t.empty", M::Array(vec![])),
            (
                "t.nested",
                M::Array(vec![
                    M::Array(vec![M::I64(1), M::I64(-2)]),
                    M::Array(vec![M::String("x".into())]),
                    M::Array(vec![]),
                    M::Array(vec![M::Array(vec![M::Bool(false)])]),
                ]),
            ),
            ("llama.block_count", M::U32(2)),
        ]
    }

    /// (name, row-major shape, type) of the sample file's tensors.
    const SAMPLE_TENSORS: [(&str, &[usize], GgmlType); 9] = [
        ("token_embd.weight", &[3, 64], GgmlType::Q8_0),
        ("blk.0.attn_norm.weight", &[5], GgmlType::F32),
        ("blk.0.ffn_up.weight", &[2, 256], GgmlType::Q4_K),
        ("blk.0.ffn_down.weight", &[1, 512], GgmlType::Q6_K),
        ("q4_0", &[2, 32], GgmlType::Q4_0),
        ("q4_1", &[1, 2, 32], GgmlType::Q4_1),
        ("q5_0", &[32], GgmlType::Q5_0),
        ("f16", &[3, 3], GgmlType::F16),
        ("bf16", &[2, 1, 1, 3], GgmlType::BF16),
    ];

    fn sample_writer() -> (GgufWriter, Vec<Vec<f32>>) {
        let mut w = GgufWriter::new();
        for (k, v) in every_meta() {
            w.meta(k, v);
        }
        let mut values = Vec::new();
        for (i, (name, shape, ty)) in SAMPLE_TENSORS.iter().enumerate() {
            let n: usize = shape.iter().product();
            let x: Vec<f32> = test_values(100 + i as u64, n.div_ceil(32) * 32)[..n].to_vec();
            w.tensor(name, shape, *ty, &x).unwrap();
            values.push(x);
        }
        (w, values)
    }

    #[test]
    fn writer_output_reads_back_equal() {
        let (w, values) = sample_writer();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sample.gguf");
        w.write(&path).unwrap();
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(f.source(), path.display().to_string());
        let want: BTreeMap<String, MetaValue> = every_meta()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(f.metadata, want);
        assert_eq!(f.alignment(), 64);
        assert_eq!(f.data_start() % 64, 0);
        assert_eq!(f.file_len() % 64, 0);
        assert_eq!(f.tensors.len(), SAMPLE_TENSORS.len());
        let mut prev_end = 0;
        for ((name, shape, ty), x) in SAMPLE_TENSORS.iter().zip(&values) {
            let info = f.tensor_info(name).unwrap();
            assert_eq!(info.ggml_type, ty.id());
            assert_eq!(info.offset % 64, 0, "{name}");
            assert!(
                info.offset >= prev_end,
                "{name} overlaps the previous tensor"
            );
            prev_end = info.offset + info.byte_size().unwrap() as u64;
            assert_eq!(info.shape(), shape.to_vec());
            let (got, got_shape) = f.tensor_f32(name).unwrap();
            assert_eq!(got_shape, shape.to_vec());
            let want = dequantize(*ty, &quantize(*ty, x).unwrap(), x.len()).unwrap();
            assert_exact(&got, &want);
            if *ty == GgmlType::F32 {
                assert_exact(&got, x);
            }
            let (raw_ty, raw) = f.tensor_data(name).unwrap();
            assert_eq!((raw_ty, raw.to_vec()), (*ty, quantize(*ty, x).unwrap()));
        }
        assert_eq!(f.meta_u64("llama.block_count").unwrap(), 2);
        assert_eq!(f.meta_f64("t.f32").unwrap(), f64::from(1e-5f32));
        assert_eq!(f.meta_str("t.string").unwrap(), "héllo ✓");
        assert_eq!(f.meta_str_array("t.strings").unwrap(), vec!["a", "Ġb"]);
        assert_eq!(f.expect_architecture(&["qwen2", "llama"]).unwrap(), "llama");
    }

    #[test]
    fn default_alignment_is_32_and_version_2_is_accepted() {
        let mut w = GgufWriter::new();
        w.meta("general.architecture", MetaValue::String("qwen2".into()));
        w.tensor("a", &[3], GgmlType::F32, &[1.0, 2.0, 3.0])
            .unwrap();
        w.tensor("b", &[32], GgmlType::Q8_0, &[0.25; 32]).unwrap();
        let mut bytes = w.to_bytes();
        let f = GgufFile::from_bytes(bytes.clone(), "v3").unwrap();
        assert_eq!(f.alignment(), 32);
        assert_eq!(f.data_start() % 32, 0);
        assert_eq!(f.tensor_info("b").unwrap().offset, 32);
        bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
        let f = GgufFile::from_bytes(bytes, "v2").unwrap();
        assert_eq!(f.version, 2);
        assert_eq!(f.tensor_f32("a").unwrap().0, vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn writer_rejects_bad_input() {
        let mut w = GgufWriter::new();
        let err = w
            .tensor("x", &[2, 3], GgmlType::F32, &[0.0; 5])
            .unwrap_err();
        assert!(
            err.to_string().contains("does not hold the 5 values"),
            "{err}"
        );
        let err = w
            .tensor("x", &[2, 16], GgmlType::Q8_0, &[0.0; 32])
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("not a multiple of the Q8_0 block size 32"),
            "{err}"
        );
        let err = w
            .tensor("x", &[1, 1, 1, 1, 1], GgmlType::F32, &[0.0])
            .unwrap_err();
        assert!(matches!(err, GgufError::InvalidTensor { .. }), "{err}");
        let long = "n".repeat(64);
        assert!(w.tensor(&long, &[1], GgmlType::F32, &[0.0]).is_err());
        w.tensor("x", &[1], GgmlType::F32, &[0.0]).unwrap();
        let err = w.tensor("x", &[1], GgmlType::F32, &[0.0]).unwrap_err();
        assert!(err.to_string().contains("already added"), "{err}");

        w.meta(
            "mixed",
            MetaValue::Array(vec![MetaValue::U8(1), MetaValue::I8(1)]),
        );
        w.meta(ALIGNMENT_KEY, MetaValue::U32(48));
        let err = w.try_to_bytes().unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot write GGUF metadata 'mixed': an array mixes u8 and i8"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        assert!(w.write(&dir.path().join("x.gguf")).is_err());
        // The rejected entries are left out of the plain bytes, which still parse.
        let f = GgufFile::from_bytes(w.to_bytes(), "partial").unwrap();
        assert!(f.meta("mixed").is_none());
        assert_eq!(f.alignment(), 32);
        let err = GgufWriter::new()
            .write(Path::new("/nonexistent-dir/x.gguf"))
            .unwrap_err();
        assert!(matches!(err, GgufError::Write { .. }), "{err}");
    }

    // ---- malformed files ----------------------------------------------------------------------

    /// A metadata entry as (key, value type, payload bytes).
    type RawMeta = (String, u32, Vec<u8>);

    fn rm(key: &str, v: &MetaValue) -> RawMeta {
        let mut payload = Vec::new();
        put_payload(&mut payload, v);
        (key.to_string(), v.tag(), payload)
    }

    /// Hand-assembles a file: header, metadata, tensor directory (name, dims, type, offset),
    /// padding to 32 and `data`.
    fn raw_file(
        version: u32,
        meta: &[RawMeta],
        tensors: &[(&str, &[u64], u32, u64)],
        data: &[u8],
    ) -> Vec<u8> {
        let mut out = GGUF_MAGIC.to_vec();
        put_u32(&mut out, version);
        put_u64(&mut out, tensors.len() as u64);
        put_u64(&mut out, meta.len() as u64);
        for (k, t, payload) in meta {
            put_string(&mut out, k);
            put_u32(&mut out, *t);
            out.extend_from_slice(payload);
        }
        for (name, dims, ty, offset) in tensors {
            put_string(&mut out, name);
            put_u32(&mut out, dims.len() as u32);
            for &d in *dims {
                put_u64(&mut out, d);
            }
            put_u32(&mut out, *ty);
            put_u64(&mut out, *offset);
        }
        pad_to(&mut out, 32);
        out.extend_from_slice(data);
        out
    }

    fn arch(a: &str) -> RawMeta {
        rm("general.architecture", &MetaValue::String(a.into()))
    }

    fn parse_err(bytes: Vec<u8>) -> GgufError {
        GgufFile::from_bytes(bytes, "test.gguf").unwrap_err()
    }

    #[test]
    fn truncation_at_every_cut_is_an_error_never_a_panic() {
        let (w, _) = sample_writer();
        let bytes = w.to_bytes();
        let full = GgufFile::from_bytes(bytes.clone(), "full").unwrap();
        let data_start = full.data_start() as usize;
        let data_end = full
            .tensors
            .iter()
            .map(|t| data_start + t.offset as usize + t.byte_size().unwrap())
            .max()
            .unwrap();
        for cut in 0..bytes.len() {
            let res = GgufFile::from_bytes(bytes[..cut].to_vec(), "cut.gguf");
            if cut >= data_end {
                assert!(res.is_ok(), "cut {cut} in the trailing padding");
                continue;
            }
            let err = res.unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("'cut.gguf'"), "cut {cut}: {msg}");
            assert!(
                msg.contains(&format!("file is {cut} bytes")),
                "cut {cut}: {msg}"
            );
            if cut + 64 <= data_start {
                assert!(
                    matches!(err, GgufError::Truncated { .. }),
                    "cut {cut}: {msg}"
                );
            } else if cut >= data_start {
                assert!(
                    matches!(err, GgufError::TensorPastEof { .. }),
                    "cut {cut}: {msg}"
                );
            } else {
                assert!(
                    matches!(
                        err,
                        GgufError::Truncated { .. } | GgufError::TensorPastEof { .. }
                    ),
                    "cut {cut}: {msg}"
                );
            }
        }
    }

    #[test]
    fn tensor_data_past_eof_names_the_tensor_and_sizes() {
        let bytes = raw_file(
            3,
            &[arch("llama")],
            &[("blk.0.attn_q.weight", &[32, 2], 8, 0)],
            &[0u8; 40],
        );
        let len = bytes.len();
        let start = len - 40;
        let err = parse_err(bytes);
        assert_eq!(
            err.to_string(),
            format!(
                "'test.gguf': tensor 'blk.0.attn_q.weight' data runs past end of file (offset {start}, size 68, file is {len} bytes); the file is truncated, download it again"
            )
        );
        // An offset near u64::MAX must not overflow.
        let err = parse_err(raw_file(
            3,
            &[],
            &[("w", &[4], 0, u64::MAX - 31)],
            &[0u8; 16],
        ));
        assert!(matches!(err, GgufError::TensorPastEof { .. }), "{err}");
    }

    #[test]
    fn bad_magic_and_versions() {
        let good = raw_file(3, &[arch("llama")], &[], &[]);
        let mut b = good.clone();
        b[..4].copy_from_slice(b"GGML");
        let err = parse_err(b);
        assert!(matches!(err, GgufError::BadMagic { .. }), "{err}");
        assert!(
            err.to_string().contains("'test.gguf' is not a GGUF file"),
            "{err}"
        );
        let err = parse_err(b"PK\x03".to_vec());
        assert!(matches!(err, GgufError::BadMagic { .. }), "{err}");
        let err = parse_err(b"GG".to_vec());
        assert!(matches!(err, GgufError::Truncated { .. }), "{err}");
        let err = parse_err(Vec::new());
        assert!(matches!(err, GgufError::Truncated { .. }), "{err}");

        for v in [0u32, 1, 4, 0xFFFF_FFFF] {
            let err = parse_err(raw_file(v, &[], &[], &[]));
            assert!(matches!(err, GgufError::UnsupportedVersion { version, .. } if version == v));
            assert!(
                err.to_string().contains(&format!(
                    "is GGUF version {v}, which is not supported (supported: 2, 3)"
                )),
                "{err}"
            );
        }
        let err = parse_err(raw_file(3u32.swap_bytes(), &[], &[], &[]));
        assert!(
            matches!(err, GgufError::BigEndian { version: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn unknown_tensor_type_parses_but_does_not_dequantize() {
        let bytes = raw_file(
            3,
            &[arch("llama"), rm("llama.block_count", &MetaValue::U32(30))],
            &[
                ("odd", &[256], 13, 0),
                ("weird", &[7], 1000, 0),
                ("ok", &[2], 0, 0),
            ],
            &[0u8; 176],
        );
        let f = GgufFile::from_bytes(bytes, "test.gguf").unwrap();
        assert_eq!(f.meta_u64("llama.block_count").unwrap(), 30);
        assert_eq!(f.tensor_f32("ok").unwrap(), (vec![0.0, 0.0], vec![2]));
        let err = f.tensor_f32("odd").unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, GgufError::UnsupportedType { id: 13, .. }),
            "{msg}"
        );
        assert!(
            msg.contains("tensor 'odd' has unsupported quantization type id 13 (supported: F32 (0), F16 (1), BF16 (30), Q4_0 (2), Q4_1 (3), Q5_0 (6), Q8_0 (8), Q4_K (12), Q6_K (14))"),
            "{msg}"
        );
        assert!(msg.contains("ggml's Q5_K"), "{msg}");
        let msg = f.tensor_f32("weird").unwrap_err().to_string();
        assert!(
            msg.contains("unsupported quantization type id 1000 (supported: "),
            "{msg}"
        );
        assert!(!msg.contains("ggml's"), "{msg}");
    }

    #[test]
    fn architecture_checks() {
        let f = GgufFile::from_bytes(raw_file(3, &[arch("llama")], &[], &[]), "m.gguf").unwrap();
        assert_eq!(f.architecture().unwrap(), "llama");
        let err = f.expect_architecture(&["qwen2", "gemma3"]).unwrap_err();
        assert!(
            matches!(err, GgufError::ArchitectureMismatch { .. }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "'m.gguf': model architecture is 'llama', but only 'qwen2', 'gemma3' are supported here; use a model file of a supported architecture"
        );
        let err = f.expect_architecture(&["qwen2"]).unwrap_err();
        assert!(
            err.to_string().contains("only 'qwen2' is supported"),
            "{err}"
        );

        let f = GgufFile::from_bytes(raw_file(3, &[], &[], &[]), "m.gguf").unwrap();
        let err = f.expect_architecture(&["llama"]).unwrap_err();
        assert!(matches!(err, GgufError::MissingKey { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("metadata key 'general.architecture' is missing")
        );
    }

    #[test]
    fn missing_and_mistyped_keys_and_tensors_are_named() {
        let bytes = raw_file(
            3,
            &[
                arch("llama"),
                rm("llama.block_count", &MetaValue::U32(30)),
                rm("llama.rope.freq_base", &MetaValue::F32(10000.0)),
                rm("mixed", &MetaValue::Array(vec![MetaValue::U8(1)])),
            ],
            &[("blk.0.attn_q.weight", &[4], 0, 0)],
            &[0u8; 16],
        );
        let f = GgufFile::from_bytes(bytes, "m.gguf").unwrap();
        let err = f.meta_u64("llama.block_cont").unwrap_err();
        assert_eq!(
            err.to_string(),
            "'m.gguf': metadata key 'llama.block_cont' is missing (did you mean 'llama.block_count'?); use a model file converted by a current llama.cpp, or check the key name"
        );
        let err = f.meta_u64("llama.rope.freq_base").unwrap_err();
        assert!(matches!(err, GgufError::WrongType { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("holds f32 10000, expected a non-negative integer")
        );
        assert_eq!(f.meta_f64("llama.rope.freq_base").unwrap(), 10000.0);
        assert_eq!(f.meta_f64("llama.block_count").unwrap(), 30.0);
        let err = f.meta_str("llama.block_count").unwrap_err();
        assert!(
            err.to_string()
                .contains("'llama.block_count' holds u32 30, expected a string")
        );
        let err = f.meta_str_array("mixed").unwrap_err();
        assert!(
            err.to_string().contains("expected an array of strings"),
            "{err}"
        );
        let err = f.meta_str_array("general.architecture").unwrap_err();
        assert!(
            err.to_string().contains("holds a string \"llama\""),
            "{err}"
        );
        let err = f.tensor_f32("blk.0.attn_q").unwrap_err();
        assert!(matches!(err, GgufError::MissingTensor { .. }), "{err}");
        assert!(
            err.to_string().contains(
                "has no tensor named 'blk.0.attn_q' (did you mean 'blk.0.attn_q.weight'?)"
            ),
            "{err}"
        );
        assert!(f.tensor_info("nope").is_none());
    }

    #[test]
    fn corrupt_structures_give_clear_errors() {
        let corrupt = |bytes: Vec<u8>, needle: &str| {
            let err = parse_err(bytes);
            let msg = err.to_string();
            assert!(
                matches!(err, GgufError::Corrupt { .. }),
                "expected Corrupt for {needle}: {msg}"
            );
            assert!(msg.contains(needle), "{msg} lacks {needle}");
            assert!(msg.starts_with("'test.gguf' is corrupt: "), "{msg}");
        };
        // Absurd counts.
        let mut b = raw_file(3, &[], &[], &[]);
        b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        corrupt(b, "declares 18446744073709551615 tensors (limit 1048576)");
        let mut b = raw_file(3, &[], &[], &[]);
        b[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
        corrupt(b, "metadata entries");
        // Unknown value types, at top level and inside an array.
        corrupt(
            raw_file(3, &[("k".into(), 13, vec![0; 8])], &[], &[]),
            "unknown value type 13",
        );
        let mut payload = 77u32.to_le_bytes().to_vec();
        payload.extend(1u64.to_le_bytes());
        corrupt(
            raw_file(3, &[("k".into(), tag::ARRAY, payload)], &[], &[]),
            "array of unknown value type 77",
        );
        corrupt(
            raw_file(3, &[("b".into(), tag::BOOL, vec![2])], &[], &[]),
            "bool byte 2",
        );
        corrupt(
            raw_file(
                3,
                &[(
                    "s".into(),
                    tag::STRING,
                    [2u64.to_le_bytes().to_vec(), vec![0xC3, 0x28]].concat(),
                )],
                &[],
                &[],
            ),
            "not valid UTF-8",
        );
        corrupt(
            raw_file(
                3,
                &[rm("k", &MetaValue::U8(1)), rm("k", &MetaValue::U8(2))],
                &[],
                &[],
            ),
            "appears twice",
        );
        // Arrays nested too deep.
        let mut deep = MetaValue::Array(vec![MetaValue::U8(1)]);
        for _ in 0..MAX_ARRAY_DEPTH {
            deep = MetaValue::Array(vec![deep]);
        }
        corrupt(
            raw_file(3, &[rm("deep", &deep)], &[], &[]),
            "nests arrays deeper",
        );
        // Alignment.
        corrupt(
            raw_file(3, &[rm(ALIGNMENT_KEY, &MetaValue::U32(48))], &[], &[]),
            "power of two",
        );
        corrupt(
            raw_file(
                3,
                &[rm(ALIGNMENT_KEY, &MetaValue::String("x".into()))],
                &[],
                &[],
            ),
            "general.alignment",
        );
        // Tensor directory.
        corrupt(
            raw_file(3, &[], &[("t", &[1, 1, 1, 1, 1], 0, 0)], &[0; 4]),
            "has 5 dimensions",
        );
        corrupt(
            raw_file(3, &[], &[("t", &[], 0, 0)], &[0; 4]),
            "has 0 dimensions",
        );
        corrupt(
            raw_file(3, &[], &[("t", &[u64::MAX, 2], 0, 0)], &[]),
            "element count overflows",
        );
        corrupt(
            raw_file(3, &[], &[("t", &[1], 0, 0), ("t", &[1], 0, 32)], &[0; 64]),
            "tensor name 't' appears twice",
        );
        corrupt(
            raw_file(3, &[], &[("t", &[16, 2], 8, 0)], &[0; 68]),
            "rows of 16 values",
        );
        corrupt(
            raw_file(3, &[], &[("t", &[4], 0, 8)], &[0; 64]),
            "not a multiple of the alignment 32",
        );
    }

    #[test]
    fn huge_declared_lengths_are_truncation_errors() {
        // A string claiming 2⁶⁰ bytes and an array claiming 2⁶⁰ elements.
        let mut b = raw_file(
            3,
            &[("k".into(), tag::STRING, (1u64 << 60).to_le_bytes().to_vec())],
            &[],
            &[],
        );
        b.truncate(b.len() - 4);
        let err = parse_err(b);
        assert!(
            matches!(err, GgufError::Truncated { needed, .. } if needed == 1 << 60),
            "{err}"
        );
        let mut payload = tag::U32.to_le_bytes().to_vec();
        payload.extend((1u64 << 60).to_le_bytes());
        let err = parse_err(raw_file(3, &[("k".into(), tag::ARRAY, payload)], &[], &[]));
        assert!(matches!(err, GgufError::Truncated { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("metadata array 'k' of 1152921504606846976 u32 values")
        );
    }

    #[test]
    fn mutated_tensor_directory_is_rechecked() {
        let (w, _) = sample_writer();
        let mut f = GgufFile::from_bytes(w.to_bytes(), "m").unwrap();
        f.tensors[0].offset = u64::MAX;
        f.tensors[1].dims = vec![u64::MAX, u64::MAX];
        f.tensors[2].dims = vec![100];
        let names: Vec<String> = f.tensors.iter().map(|t| t.name.clone()).collect();
        assert!(matches!(
            f.tensor_f32(&names[0]),
            Err(GgufError::TensorPastEof { .. })
        ));
        assert!(f.tensor_f32(&names[1]).is_err());
        assert!(matches!(
            f.tensor_f32(&names[2]),
            Err(GgufError::BlockMismatch { .. })
        ));
    }

    #[test]
    fn random_corruption_never_panics() {
        let (w, _) = sample_writer();
        let good = w.to_bytes();
        let header_end = GgufFile::from_bytes(good.clone(), "g")
            .unwrap()
            .data_start() as usize;
        let mut rng = crate::seed::rng(crate::seed::derive(0, &["gguf", "fuzz"]));
        let (mut parsed, mut failed) = (0, 0);
        for _ in 0..1500 {
            let mut b = good.clone();
            for _ in 0..rng.random_range(1..6) {
                // Mostly hit the header and directory, where the structure lives.
                let i = if rng.random_bool(0.85) {
                    rng.random_range(0..header_end)
                } else {
                    rng.random_range(0..b.len())
                };
                b[i] = match rng.random_range(0..4) {
                    0 => rng.random(),
                    1 => b[i] ^ (1 << rng.random_range(0..8)),
                    2 => 0xFF,
                    _ => 0,
                };
            }
            if rng.random_bool(0.3) {
                let cut = rng.random_range(0..b.len());
                b.truncate(cut);
            }
            match GgufFile::from_bytes(b, "fuzz") {
                Ok(f) => {
                    parsed += 1;
                    for t in f.tensors.clone() {
                        let _ = f.tensor_f32(&t.name);
                    }
                    let _ = f.architecture();
                    let _ = f.meta_str_array("t.strings");
                    let _ = format!("{f:?}");
                }
                Err(e) => {
                    failed += 1;
                    assert!(e.to_string().contains("fuzz"), "{e}");
                }
            }
        }
        assert!(
            parsed > 50 && failed > 50,
            "parsed {parsed}, failed {failed}"
        );
    }

    // ---- the real SmolLM2 file ----------------------------------------------------------------

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
