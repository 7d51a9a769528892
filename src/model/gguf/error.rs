//! The errors of reading and dequantizing GGUF data.

use crate::error::IoError;

/// Everything that can go wrong reading or dequantizing GGUF data.
///
/// `file` fields hold the label of the file (its path, or the source given to
/// [`GgufFile::from_bytes`](super::GgufFile::from_bytes)).
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be read from disk.
    #[error("cannot read GGUF file {0}; check that the path exists and is readable")]
    Read(#[source] IoError),
    /// The file does not start with `GGUF`.
    #[error(
        "'{file}' is not a GGUF file: it starts with bytes {found:02x?}, not \"GGUF\" (47 47 55 46); pass a llama.cpp .gguf model file"
    )]
    BadMagic {
        /// The file.
        file: String,
        /// Its first (up to four) bytes.
        found: Vec<u8>,
    },
    /// The version field is not 2 or 3.
    #[error(
        "'{file}' is GGUF version {version}, which is not supported (supported: 2, 3); convert the model again with a current llama.cpp"
    )]
    UnsupportedVersion {
        /// The file.
        file: String,
        /// The version it declares.
        version: u32,
    },
    /// The version field reads as 2 or 3 only byte-swapped: a big-endian file.
    #[error(
        "'{file}' is a big-endian GGUF file (version {version}), which is not supported; use the little-endian release of the model"
    )]
    BigEndian {
        /// The file.
        file: String,
        /// The version, byte-swapped back.
        version: u32,
    },
    /// Tensor data asked of a file opened for its header only.
    #[error(
        "'{file}' was opened for its header only; open it with `GgufFile::open` to read tensor data"
    )]
    HeaderOnly {
        /// The file.
        file: String,
    },
    /// A header, metadata or tensor-directory field runs past the end of the file.
    #[error(
        "'{file}' is truncated or corrupt: {what} needs {needed} bytes at offset {offset}, but the file is {len} bytes; download the file again"
    )]
    Truncated {
        /// The file.
        file: String,
        /// The field being read.
        what: String,
        /// Where it starts.
        offset: u64,
        /// Bytes it needs.
        needed: u64,
        /// Size of the file.
        len: u64,
    },
    /// A field holds an impossible value (unknown value type, absurd count, bad alignment …).
    #[error("'{file}' is corrupt: {detail}; download the file again or convert it again")]
    Corrupt {
        /// The file.
        file: String,
        /// What is wrong.
        detail: String,
    },
    /// A tensor's data lies (partly) beyond the end of the file.
    #[error(
        "'{file}': tensor '{name}' data runs past end of file (offset {offset}, size {size}, file is {len} bytes); the file is truncated, download it again"
    )]
    TensorPastEof {
        /// The file.
        file: String,
        /// The tensor.
        name: String,
        /// Absolute offset of its data.
        offset: u64,
        /// Bytes of data.
        size: u64,
        /// Size of the file.
        len: u64,
    },
    /// A required metadata key is absent.
    #[error(
        "'{file}': metadata key '{key}' is missing{hint}; use a model file converted by a current llama.cpp, or check the key name"
    )]
    MissingKey {
        /// The file.
        file: String,
        /// The key asked for.
        key: String,
        /// ` (did you mean '…'?)` for a close key, or nothing.
        hint: String,
    },
    /// A metadata key holds a value of the wrong type.
    #[error(
        "'{file}': metadata key '{key}' holds {found}, expected {expected}; the file was written by an incompatible converter"
    )]
    WrongType {
        /// The file.
        file: String,
        /// The key.
        key: String,
        /// What the caller needs.
        expected: &'static str,
        /// The type and a preview of the value found.
        found: String,
    },
    /// `general.architecture` is not one the caller supports.
    #[error(
        "'{file}': model architecture is '{found}', but only {allowed} supported here; use a model file of a supported architecture"
    )]
    ArchitectureMismatch {
        /// The file.
        file: String,
        /// The architecture found.
        found: String,
        /// The supported architectures, as a phrase (`'llama' is`, `'llama', 'qwen2' are`).
        allowed: String,
    },
    /// No tensor has the requested name.
    #[error(
        "'{file}' has no tensor named '{name}'{hint}; the model file does not have the layout its architecture implies"
    )]
    MissingTensor {
        /// The file.
        file: String,
        /// The name asked for.
        name: String,
        /// ` (did you mean '…'?)` for a close name, or nothing.
        hint: String,
    },
    /// A tensor's ggml type id is not one this module can dequantize.
    #[error(
        "{context}unsupported quantization type id {id} (supported: {supported}){known}; re-quantize the model to a supported type with llama.cpp's llama-quantize"
    )]
    UnsupportedType {
        /// Where the id was found (`'file': tensor 'name' has `).
        context: String,
        /// The ggml type id.
        id: u32,
        /// The supported types with their ids.
        supported: String,
        /// ggml's name for the id when it has one, as a phrase, or nothing.
        known: String,
    },
    /// An element count is not a whole number of blocks of the type.
    #[error(
        "{what}: {n_elements} values is not a whole number of {ty} blocks of {block} values; use a multiple of {block}"
    )]
    BlockMismatch {
        /// The operation or tensor.
        what: String,
        /// The ggml type's name.
        ty: &'static str,
        /// The element count.
        n_elements: usize,
        /// Values per block of the type.
        block: usize,
    },
    /// A byte buffer has the wrong length for its type and element count.
    #[error("{what}: {ty} data for {n_elements} values must be {expected} bytes, got {found}")]
    ByteLength {
        /// The operation or tensor.
        what: String,
        /// The ggml type's name.
        ty: &'static str,
        /// The element count.
        n_elements: usize,
        /// Bytes those values take.
        expected: usize,
        /// Bytes given.
        found: usize,
    },
}
