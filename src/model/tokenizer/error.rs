//! The errors of building and using a tokenizer.

use std::path::PathBuf;

use crate::error::IoError;

/// Everything that can go wrong building or using a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A required GGUF metadata key is absent.
    #[error(
        "{file}: GGUF metadata key `{key}` is missing, so the file carries no usable \
         tokenizer; re-convert the model with llama.cpp's convert_hf_to_gguf.py, or give the \
         model a Hugging Face tokenizer.json instead"
    )]
    MissingKey {
        /// The GGUF file.
        file: String,
        /// The metadata key.
        key: String,
    },
    /// A GGUF metadata key holds a value of the wrong type or shape.
    #[error(
        "{file}: GGUF metadata key `{key}` should hold {expected} but holds {found}; the \
         file is corrupt or was written by an unsupported converter — re-convert it with \
         llama.cpp"
    )]
    WrongType {
        /// The GGUF file.
        file: String,
        /// The metadata key.
        key: String,
        /// What the key should hold.
        expected: String,
        /// What was found instead.
        found: String,
    },
    /// `tokenizer.ggml.model` names a tokenizer family this crate does not implement.
    #[error(
        "{file}: GGUF key `tokenizer.ggml.model` = `{model}` is not supported; supported: \
         {supported} (use a model with a byte-level BPE tokenizer, or a tokenizer.json)"
    )]
    UnsupportedModel {
        /// The GGUF file.
        file: String,
        /// The value found.
        model: String,
        /// The supported values.
        supported: String,
    },
    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not implement.
    #[error(
        "{file}: GGUF key `tokenizer.ggml.pre` = `{pre}` is not supported; supported: \
         {supported} (use a model with one of these pre-tokenizers, or a tokenizer.json)"
    )]
    UnsupportedPre {
        /// The GGUF file.
        file: String,
        /// The value found.
        pre: String,
        /// The supported values.
        supported: String,
    },
    /// An entry of `tokenizer.ggml.merges` is not of the form "left right".
    #[error(
        "{file}: GGUF key `tokenizer.ggml.merges`, entry {index} = {merge:?}: a merge must \
         be two non-empty tokens separated by one space (\"a b\"); the file is corrupt — \
         re-convert it"
    )]
    MalformedMerge {
        /// The GGUF file.
        file: String,
        /// Position of the entry.
        index: usize,
        /// The entry itself.
        merge: String,
    },
    /// A token id in the metadata lies outside the vocabulary.
    #[error(
        "{file}: GGUF metadata key `{key}` = {id} lies outside the {vocab}-token vocabulary; \
         the file is corrupt — re-convert it"
    )]
    IdOutOfRange {
        /// The GGUF file.
        file: String,
        /// The metadata key.
        key: String,
        /// The id found.
        id: u64,
        /// Vocabulary size.
        vocab: usize,
    },
    /// The underlying tokenizer could not be assembled.
    #[error("cannot build the tokenizer from {origin}: {source}")]
    Build {
        /// Where the tokenizer came from (a GGUF key, a file, the world vocabulary).
        origin: String,
        /// The underlying error.
        #[source]
        source: tokenizers::Error,
    },
    /// A tokenizer file does not exist.
    #[error(
        "tokenizer file {path} does not exist; give the path of a Hugging Face tokenizer.json \
         (relative paths are resolved from the working directory)"
    )]
    FileNotFound {
        /// The path given.
        path: PathBuf,
    },
    /// A tokenizer file exists but cannot be read.
    #[error("cannot load tokenizer file {0}; it must be a Hugging Face tokenizer.json")]
    ReadFile(#[source] IoError),
    /// A tokenizer file is not a Hugging Face `tokenizer.json`.
    #[error(
        "cannot load tokenizer file {path}: {source}; it must be a Hugging Face tokenizer.json"
    )]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: tokenizers::Error,
    },
    /// A sibling `tokenizer_config.json` cannot be read.
    #[error("cannot read {0}; fix or remove the file (it is optional)")]
    ReadConfig(#[source] IoError),
    /// A sibling `tokenizer_config.json` is not valid JSON.
    #[error("cannot read {path}: {source}; fix or remove the file (it is optional)")]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The tokenizer has no GGUF form llama.cpp reads.
    #[error(
        "the tokenizer cannot be written as GGUF metadata: {reason}; export the model with \
         `--format hf` instead"
    )]
    NoGgufForm {
        /// What llama.cpp's tokenizer models cannot express.
        reason: String,
    },
    /// The tokenizer cannot be serialised as a `tokenizer.json`.
    #[error("cannot save the tokenizer to {path}: {source}")]
    Serialize {
        /// The destination.
        path: PathBuf,
        /// The serialiser's error.
        #[source]
        source: tokenizers::Error,
    },
    /// Writing a tokenizer file failed.
    #[error("cannot save the tokenizer to {0}; check that the directory exists and is writable")]
    Save(#[source] IoError),
    /// A word of the world vocabulary cannot be a single token.
    #[error("world vocabulary word {word:?} is invalid: {reason}")]
    InvalidWord {
        /// The word.
        word: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A special token of the world vocabulary is invalid.
    #[error("world special token {token:?} is invalid: {reason}")]
    InvalidSpecial {
        /// The token.
        token: String,
        /// Why it is rejected.
        reason: String,
    },
    /// Encoding failed.
    #[error("cannot encode text: {0}")]
    Encode(#[source] tokenizers::Error),
    /// Decoding met an id with no token.
    #[error("cannot decode token id {id}: the vocabulary has {vocab} tokens (ids 0..{vocab})")]
    UnknownId {
        /// The id.
        id: u32,
        /// Vocabulary size.
        vocab: usize,
    },
    /// Decoding failed.
    #[error("cannot decode token ids: {0}")]
    Decode(#[source] tokenizers::Error),
    /// A prompt to be put in a chat template is not a dialogue of human and assistant tags.
    #[error(
        "a prompt starting {start:?} is not a dialogue (\\n\\nHuman: …\\n\\nAssistant:), so it cannot be put in a chat template; fix: render prompts with the dialogue macro of prompt-templates/common/dialogue.j2, or set the model's `chat = false`"
    )]
    NotDialogue {
        /// The prompt's first characters.
        start: String,
    },
    /// A chat model's tokenizer has no EOS token to end a reply with.
    #[error(
        "the tokenizer has no EOS token, so a reply in its chat template has no end; fix: set the model's `chat = false`, or use a tokenizer with an EOS token"
    )]
    NoEndOfTurn,
    /// The chat template failed to compile or render, or raised an exception.
    #[error("chat template ({origin}) failed: {}", with_causes(source))]
    ChatTemplate {
        /// Where the template came from.
        origin: String,
        /// minijinja's error (a `raise_exception` message is its detail).
        #[source]
        source: minijinja::Error,
    },
}

/// `e` followed by each of its causes, separated by `: ` (minijinja keeps the error raised
/// inside a template call as a cause).
fn with_causes(e: &minijinja::Error) -> String {
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        message.push_str(&format!(": {c}"));
        cause = c.source();
    }
    message
}
