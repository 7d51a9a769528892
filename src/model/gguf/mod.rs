//! GGUF model files (llama.cpp's format, versions 2 and 3): reading, dequantization of
//! ggml's tensor types to f32, and writing f32 / f16 files.
//!
//! Pretrained checkpoints (SmolLM2, Qwen2.5) reach the project only as GGUF files with quantized
//! weights, so the decoder loads them through this module: [`GgufFile`] parses the header, the
//! metadata and the tensor directory of a file held in memory, checking every length and offset,
//! and [`GgufFile::tensor_f32`] dequantizes one tensor with ggml's reference block layouts.
//!
//! File layout (all little-endian): magic `GGUF`, `u32` version, `u64` tensor count, `u64`
//! metadata count; the metadata entries (`string` key, `u32` value type, value); the tensor
//! directory (`string` name, `u32` number of dims, `u64` dims innermost first, `u32` ggml type,
//! `u64` offset into the data section); padding to `general.alignment` (default 32); the data
//! section. A `string` is a `u64` byte length followed by UTF-8 bytes; an array is a `u32`
//! element type, a `u64` length and the element payloads (arrays may nest).
//!
//! Files: `reader` ([`GgufFile`]: opening and parsing, typed metadata and tensor access),
//! `cursor` (bounds-checked reads of header fields and metadata payloads), `metadata`
//! ([`MetaValue`]), `tensor` ([`TensorInfo`]), `types` ([`GgmlType`], ggml's type table),
//! `dequant` ([`dequantize`]: float conversion and the typed quantized blocks), `writer`
//! ([`GgufWriter`]: the same layout written back, for exported models) and `error`
//! ([`GgufError`]).

mod cursor;
mod dequant;
mod error;
mod metadata;
mod reader;
mod tensor;
mod types;
mod writer;

pub use dequant::dequantize;
pub use error::GgufError;
pub use metadata::MetaValue;
pub use reader::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufFile};
pub use tensor::TensorInfo;
pub use types::GgmlType;
pub use writer::{GGUF_WRITE_VERSION, GgufWriter};
