//! Tokenizers for every model the runner drives, and chat rendering.
//!
//! RLCD (arXiv 2307.12950, §3 and Appendix A) feeds chat-formatted prompts with positive and
//! negative affixes to the simulator and policy models; this module turns that text into ids and
//! back. Three sources are supported:
//! - GGUF metadata (`tokenizer.ggml.*`, as written by llama.cpp's converter): byte-level BPE with
//!   the pre-tokenizer named by `tokenizer.ggml.pre` (SmolLM2, Qwen2, GPT-2 families);
//! - a Hugging Face `tokenizer.json` (plus a sibling `tokenizer_config.json` when present);
//! - the word-level tokenizer of the built-in world (whitespace/punctuation split, `<unk>`).
//!
//! Chat rendering runs the model's Jinja chat template (`tokenizer.chat_template`) through
//! minijinja with the Hugging Face conventions (`trim_blocks`, `lstrip_blocks`,
//! `raise_exception`, a few Python string methods); ChatML is used when the model has none.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, Error as JinjaError, ErrorKind as JinjaErrorKind, State};
use serde::{Deserialize, Serialize};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::ModelWrapper;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::normalizers::NFC;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::model::gguf::{GgufFile, MetaValue};

/// Qwen2's pre-tokenizer regex (its `tokenizer.json` Split pattern; llama.cpp's `qwen2`).
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The world tokenizer's split: words (letters/digits, with inner apostrophes as in "can't"),
/// newlines, and single punctuation characters; all other whitespace separates and is dropped.
const WORLD_PATTERN: &str = r"[\p{L}\p{N}]+(?:'[\p{L}\p{N}]+)*|\n|[^\s\p{L}\p{N}]";

/// The unknown-word token of the world tokenizer.
pub const WORLD_UNK: &str = "<unk>";

/// The newline token every world vocabulary carries (dialogues are line-structured).
pub const WORLD_NEWLINE: &str = "\n";

/// ChatML, used when a model carries no chat template.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// `tokenizer.ggml.pre` values whose pre-tokenization is the GPT-2 regex alone.
const PRE_GPT2: &[&str] = &["default", "gpt2", "mpt", "olmo", "jais"];
/// `tokenizer.ggml.pre` values that split digits one by one before the GPT-2 regex.
const PRE_DIGITS: &[&str] = &["smollm", "starcoder", "refact", "command-r", "codeshell"];
/// `tokenizer.ggml.pre` values that use Qwen2's regex.
const PRE_QWEN2: &[&str] = &["qwen2", "stablelm2"];

/// Token names recognised as beginning-of-sequence when no metadata names the role.
const BOS_NAMES: &[&str] = &[
    "<|bos|>",
    "<bos>",
    "<s>",
    "<|begin_of_text|>",
    "<|startoftext|>",
    "[CLS]",
];
/// Token names recognised as end-of-sequence when no metadata names the role.
const EOS_NAMES: &[&str] = &[
    "<|eos|>",
    "<eos>",
    "</s>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "[SEP]",
];
/// Token names recognised as padding when no metadata names the role.
const PAD_NAMES: &[&str] = &["<|pad|>", "<pad>", "[PAD]", "<|padding|>"];
/// Token names recognised as unknown when no metadata names the role.
const UNK_NAMES: &[&str] = &["<unk>", "<|unk|>", "[UNK]"];

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: u64 = 3;
const TOKEN_TYPE_USER_DEFINED: u64 = 4;

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
    #[error("cannot build the tokenizer from {origin}: {message}")]
    Build {
        /// Where the tokenizer came from (a GGUF key, a file, the world vocabulary).
        origin: String,
        /// The underlying error.
        message: String,
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
    /// A tokenizer file exists but cannot be read or parsed.
    #[error(
        "cannot load tokenizer file {path}: {message}; it must be a Hugging Face tokenizer.json"
    )]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        message: String,
    },
    /// A sibling `tokenizer_config.json` cannot be read or parsed.
    #[error("cannot read {path}: {message}; fix or remove the file (it is optional)")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        message: String,
    },
    /// Writing a tokenizer file failed.
    #[error(
        "cannot save the tokenizer to {path}: {message}; check that the directory exists and is writable"
    )]
    Save {
        /// The destination.
        path: PathBuf,
        /// The underlying error.
        message: String,
    },
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
    #[error("cannot encode text: {message}")]
    Encode {
        /// The underlying error.
        message: String,
    },
    /// Decoding met an id with no token.
    #[error("cannot decode token id {id}: the vocabulary has {vocab} tokens (ids 0..{vocab})")]
    UnknownId {
        /// The id.
        id: u32,
        /// Vocabulary size.
        vocab: usize,
    },
    /// Decoding failed.
    #[error("cannot decode token ids: {message}")]
    Decode {
        /// The underlying error.
        message: String,
    },
    /// The chat template failed to compile or render, or raised an exception.
    #[error("chat template ({origin}) failed: {message}")]
    ChatTemplate {
        /// Where the template came from.
        origin: String,
        /// The underlying error, including any `raise_exception` message.
        message: String,
    },
}

/// One turn of a conversation, as chat templates expect it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Speaker: "system", "user" or "assistant".
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatMessage {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// How ids turn back into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecodeStyle {
    /// The inner tokenizer's own decoder (byte-level BPE, WordPiece, …).
    Inner,
    /// Word-level: words joined by single spaces, punctuation attached (see [`join_words`]).
    Words,
}

/// A tokenizer with its special-token roles and chat template.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    style: DecodeStyle,
    vocab_size: usize,
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
    unk: Option<u32>,
    special_ids: Vec<u32>,
    chat_template: Option<String>,
    template_origin: String,
}

/// Which pre-tokenization a GGUF byte-level BPE vocabulary uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreKind {
    Gpt2,
    DigitsThenGpt2,
    Qwen2,
}

fn pre_kind(g: &GgufFile, pre: &str) -> Result<PreKind, TokenizerError> {
    if PRE_GPT2.contains(&pre) {
        Ok(PreKind::Gpt2)
    } else if PRE_DIGITS.contains(&pre) {
        Ok(PreKind::DigitsThenGpt2)
    } else if PRE_QWEN2.contains(&pre) {
        Ok(PreKind::Qwen2)
    } else {
        let supported: Vec<&str> = PRE_GPT2
            .iter()
            .chain(PRE_DIGITS)
            .chain(PRE_QWEN2)
            .copied()
            .collect();
        Err(TokenizerError::UnsupportedPre {
            file: g.source().to_string(),
            pre: pre.to_string(),
            supported: supported.join(", "),
        })
    }
}

/// A short description of a metadata value, for error messages.
fn describe(v: &MetaValue) -> String {
    match v {
        MetaValue::String(s) => format!("the string {:?}", truncate(s, 40)),
        MetaValue::Array(a) => format!("an array of {} values", a.len()),
        MetaValue::Bool(b) => format!("the boolean {b}"),
        other => match (other.as_i64(), other.as_f64()) {
            (Some(n), _) => format!("the integer {n}"),
            (None, Some(x)) => format!("the number {x}"),
            _ => format!("a {}", other.type_name()),
        },
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max_chars).collect();
        t.push('…');
        t
    }
}

fn wrong_type(g: &GgufFile, key: &str, expected: &str, found: &MetaValue) -> TokenizerError {
    TokenizerError::WrongType {
        file: g.source().to_string(),
        key: key.to_string(),
        expected: expected.to_string(),
        found: describe(found),
    }
}

fn missing(g: &GgufFile, key: &str) -> TokenizerError {
    TokenizerError::MissingKey {
        file: g.source().to_string(),
        key: key.to_string(),
    }
}

fn gguf_str<'a>(g: &'a GgufFile, key: &str) -> Result<Option<&'a str>, TokenizerError> {
    match g.meta(key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| wrong_type(g, key, "a string", v)),
    }
}

fn gguf_str_array<'a>(g: &'a GgufFile, key: &str) -> Result<Vec<&'a str>, TokenizerError> {
    let v = g.meta(key).ok_or_else(|| missing(g, key))?;
    let items = v
        .as_array()
        .ok_or_else(|| wrong_type(g, key, "an array of strings", v))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_str()
                .ok_or_else(|| wrong_type(g, &format!("{key}[{i}]"), "a string", item))
        })
        .collect()
}

fn gguf_u64_array(g: &GgufFile, key: &str) -> Result<Option<Vec<u64>>, TokenizerError> {
    let Some(v) = g.meta(key) else {
        return Ok(None);
    };
    let items = v
        .as_array()
        .ok_or_else(|| wrong_type(g, key, "an array of integers", v))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_u64().ok_or_else(|| {
                wrong_type(g, &format!("{key}[{i}]"), "a non-negative integer", item)
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn gguf_id(g: &GgufFile, key: &str, vocab: usize) -> Result<Option<u32>, TokenizerError> {
    let Some(v) = g.meta(key) else {
        return Ok(None);
    };
    let id = v
        .as_u64()
        .ok_or_else(|| wrong_type(g, key, "a non-negative integer token id", v))?;
    if id >= vocab as u64 {
        return Err(TokenizerError::IdOutOfRange {
            file: g.source().to_string(),
            key: key.to_string(),
            id,
            vocab,
        });
    }
    Ok(Some(id as u32))
}

fn gguf_bool(g: &GgufFile, key: &str) -> Result<Option<bool>, TokenizerError> {
    match g.meta(key) {
        None => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| wrong_type(g, key, "a boolean", v)),
    }
}

fn build_error(origin: &str, e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Build {
        origin: origin.to_string(),
        message: e.to_string(),
    }
}

/// A post-processor adding BOS before and/or EOS after a single sequence, if either is asked.
fn bos_eos_processor(
    bos: Option<(String, u32)>,
    eos: Option<(String, u32)>,
    origin: &str,
) -> Result<Option<TemplateProcessing>, TokenizerError> {
    if bos.is_none() && eos.is_none() {
        return Ok(None);
    }
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut specials = Vec::new();
    if let Some((tok, id)) = &bos {
        single.push(tok.clone());
        pair.push(tok.clone());
        specials.push((tok.clone(), *id));
    }
    single.push("$A".to_string());
    pair.push("$A".to_string());
    if let Some((tok, id)) = &eos {
        single.push(tok.clone());
        pair.push(tok.clone());
        if !specials.iter().any(|(t, _)| t == tok) {
            specials.push((tok.clone(), *id));
        }
    }
    if let Some((tok, _)) = &bos {
        pair.push(format!("{tok}:1"));
    }
    pair.push("$B:1".to_string());
    if let Some((tok, _)) = &eos {
        pair.push(format!("{tok}:1"));
    }
    let processor = TemplateProcessing::builder()
        .try_single(single.join(" "))
        .map_err(|e| build_error(origin, e))?
        .try_pair(pair.join(" "))
        .map_err(|e| build_error(origin, e))?
        .special_tokens(specials)
        .build()
        .map_err(|e| build_error(origin, e))?;
    Ok(Some(processor))
}

/// The first of `names` present in the vocabulary.
fn find_named(inner: &tokenizers::Tokenizer, names: &[&str]) -> Option<u32> {
    names.iter().find_map(|n| inner.token_to_id(n))
}

/// Ids of all special added tokens plus the given role ids, sorted and unique.
fn collect_special_ids(inner: &tokenizers::Tokenizer, roles: &[Option<u32>]) -> Vec<u32> {
    let mut set: BTreeSet<u32> = inner
        .get_added_tokens_decoder()
        .into_iter()
        .filter(|(_, t)| t.special)
        .map(|(id, _)| id)
        .collect();
    set.extend(roles.iter().flatten().copied());
    set.into_iter().collect()
}

/// Joins world-vocabulary words into text: single spaces between words; closing punctuation
/// attaches to the word before, opening brackets to the word after; newlines and special tokens
/// take no surrounding spaces. Text written in this canonical form encodes and decodes exactly.
pub(crate) fn join_words(tokens: &[String], is_special: impl Fn(&str) -> bool) -> String {
    fn closing(t: &str) -> bool {
        matches!(t, "." | "," | "!" | "?" | ";" | ":" | ")" | "]" | "}" | "%")
    }
    fn opening(t: &str) -> bool {
        matches!(t, "(" | "[" | "{")
    }
    let mut out = String::new();
    let mut prev: Option<&str> = None;
    for tok in tokens {
        let t = tok.as_str();
        if let Some(p) = prev {
            let glue = t == WORLD_NEWLINE
                || p == WORLD_NEWLINE
                || closing(t)
                || opening(p)
                || is_special(t)
                || is_special(p);
            if !glue {
                out.push(' ');
            }
        }
        out.push_str(t);
        prev = Some(t);
    }
    out
}

/// Reads a token role (`bos_token`, …) from a `tokenizer_config.json` value: a string or an
/// object with a `content` string.
fn config_token(config: &serde_json::Value, key: &str) -> Option<String> {
    match config.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// Reads `chat_template` from a `tokenizer_config.json` value: a string, or a list of
/// `{name, template}` from which the one named "default" (else the first) is taken.
fn config_template(config: &serde_json::Value) -> Option<String> {
    match config.get("chat_template")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(list) => {
            let named = |want: Option<&str>| {
                list.iter().find_map(|entry| {
                    let name = entry.get("name").and_then(|n| n.as_str());
                    let tpl = entry.get("template").and_then(|t| t.as_str())?;
                    match want {
                        Some(w) if name != Some(w) => None,
                        _ => Some(tpl.to_string()),
                    }
                })
            };
            named(Some("default")).or_else(|| named(None))
        }
        _ => None,
    }
}

/// Python string and dict methods that Hugging Face chat templates call on values.
fn python_method(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, JinjaError> {
    let bad_args = || {
        JinjaError::new(
            JinjaErrorKind::InvalidOperation,
            format!("wrong arguments to .{method}()"),
        )
    };
    match value.kind() {
        ValueKind::String => {
            let s = value.as_str().unwrap_or_default();
            let arg_str = |i: usize| args.get(i).and_then(|a| a.as_str());
            match method {
                "strip" | "lstrip" | "rstrip" => {
                    let chars: Option<Vec<char>> = match args.first() {
                        None => None,
                        Some(a) if a.is_none() => None,
                        Some(a) => Some(a.as_str().ok_or_else(bad_args)?.chars().collect()),
                    };
                    let pat = |c: char| match &chars {
                        None => c.is_whitespace(),
                        Some(set) => set.contains(&c),
                    };
                    let out = match method {
                        "strip" => s.trim_matches(pat),
                        "lstrip" => s.trim_start_matches(pat),
                        _ => s.trim_end_matches(pat),
                    };
                    Ok(Value::from(out))
                }
                "startswith" => Ok(Value::from(s.starts_with(arg_str(0).ok_or_else(bad_args)?))),
                "endswith" => Ok(Value::from(s.ends_with(arg_str(0).ok_or_else(bad_args)?))),
                "upper" => Ok(Value::from(s.to_uppercase())),
                "lower" => Ok(Value::from(s.to_lowercase())),
                "replace" => {
                    let from = arg_str(0).ok_or_else(bad_args)?;
                    let to = arg_str(1).ok_or_else(bad_args)?;
                    Ok(Value::from(s.replace(from, to)))
                }
                "split" => {
                    let parts: Vec<Value> = match arg_str(0) {
                        None => s.split_whitespace().map(Value::from).collect(),
                        Some(sep) if !sep.is_empty() => s.split(sep).map(Value::from).collect(),
                        Some(_) => return Err(bad_args()),
                    };
                    Ok(Value::from(parts))
                }
                _ => Err(JinjaError::from(JinjaErrorKind::UnknownMethod)),
            }
        }
        ValueKind::Map => match method {
            "items" => state.apply_filter("items", std::slice::from_ref(value)),
            "keys" => Ok(Value::from(value.try_iter()?.collect::<Vec<_>>())),
            "values" => {
                let mut out = Vec::new();
                for k in value.try_iter()? {
                    out.push(value.get_item(&k)?);
                }
                Ok(Value::from(out))
            }
            "get" => {
                let key = args.first().ok_or_else(bad_args)?;
                let got = value.get_item(key)?;
                if got.is_undefined() {
                    Ok(args.get(1).cloned().unwrap_or(Value::from(())))
                } else {
                    Ok(got)
                }
            }
            _ => Err(JinjaError::from(JinjaErrorKind::UnknownMethod)),
        },
        _ => Err(JinjaError::from(JinjaErrorKind::UnknownMethod)),
    }
}

impl Tokenizer {
    /// Rebuilds a model's tokenizer from its GGUF metadata (`tokenizer.ggml.model`, `pre`,
    /// `tokens`, `merges`, `token_type`, `bos/eos/padding/unknown_token_id`,
    /// `add_bos_token`, `add_eos_token`, and `tokenizer.chat_template`).
    ///
    /// Token ids are positions in `tokenizer.ggml.tokens`. Control tokens (type 3) become special
    /// added tokens and user-defined tokens (type 4) plain added tokens, so both encode to one id
    /// wherever they appear in text; only control tokens are dropped by
    /// `decode(…, skip_special_tokens = true)`. BOS/EOS are added by `encode(…, true)` only when
    /// `add_bos_token`/`add_eos_token` say so (false for SmolLM2 and Qwen2).
    pub fn from_gguf(g: &GgufFile) -> Result<Self, TokenizerError> {
        let model = gguf_str(g, "tokenizer.ggml.model")?
            .ok_or_else(|| missing(g, "tokenizer.ggml.model"))?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel {
                file: g.source().to_string(),
                model: model.to_string(),
                supported: "gpt2 (byte-level BPE)".to_string(),
            });
        }
        let pre_name = gguf_str(g, "tokenizer.ggml.pre")?.unwrap_or("default");
        let pre = pre_kind(g, pre_name)?;
        let tokens = gguf_str_array(g, "tokenizer.ggml.tokens")?;
        if tokens.is_empty() {
            return Err(TokenizerError::WrongType {
                file: g.source().to_string(),
                key: "tokenizer.ggml.tokens".into(),
                expected: "a non-empty array of strings".into(),
                found: "an empty array".into(),
            });
        }
        let n = tokens.len();
        let merges_raw = gguf_str_array(g, "tokenizer.ggml.merges")?;
        let types = gguf_u64_array(g, "tokenizer.ggml.token_type")?;
        if let Some(t) = &types
            && t.len() != n
        {
            return Err(TokenizerError::WrongType {
                file: g.source().to_string(),
                key: "tokenizer.ggml.token_type".into(),
                expected: format!("one type per token ({n} values)"),
                found: format!("{} values", t.len()),
            });
        }
        let bos = gguf_id(g, "tokenizer.ggml.bos_token_id", n)?;
        let eos = gguf_id(g, "tokenizer.ggml.eos_token_id", n)?;
        let pad = gguf_id(g, "tokenizer.ggml.padding_token_id", n)?;
        let unk = gguf_id(g, "tokenizer.ggml.unknown_token_id", n)?;
        let add_bos = gguf_bool(g, "tokenizer.ggml.add_bos_token")?.unwrap_or(false);
        let add_eos = gguf_bool(g, "tokenizer.ggml.add_eos_token")?.unwrap_or(false);
        let chat_template = gguf_str(g, "tokenizer.chat_template")?.map(str::to_string);

        let mut vocab = Vocab::default();
        for (i, tok) in tokens.iter().enumerate() {
            vocab.entry((*tok).to_string()).or_insert(i as u32);
        }
        let mut merges = Vec::with_capacity(merges_raw.len());
        for (index, m) in merges_raw.iter().enumerate() {
            match m.split_once(' ') {
                Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(' ') => {
                    merges.push((a.to_string(), b.to_string()));
                }
                _ => {
                    return Err(TokenizerError::MalformedMerge {
                        file: g.source().to_string(),
                        index,
                        merge: (*m).to_string(),
                    });
                }
            }
        }
        let origin = format!("{}: GGUF keys tokenizer.ggml.tokens/merges", g.source());
        let origin = origin.as_str();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| build_error(origin, e))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        let pre_tokenizer: PreTokenizerWrapper = match pre {
            PreKind::Gpt2 => byte_level.into(),
            PreKind::DigitsThenGpt2 => {
                Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
            }
            PreKind::Qwen2 => {
                let split = Split::new(
                    SplitPattern::Regex(QWEN2_PATTERN.to_string()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| build_error("the qwen2 pre-tokenizer regex", e))?;
                inner.with_normalizer(Some(NFC));
                Sequence::new(vec![
                    split.into(),
                    ByteLevel::new(false, false, false).into(),
                ])
                .into()
            }
        };
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let mut added = Vec::new();
        if let Some(types) = &types {
            for (i, t) in types.iter().enumerate() {
                let special = match *t {
                    TOKEN_TYPE_CONTROL => true,
                    TOKEN_TYPE_USER_DEFINED => false,
                    _ => continue,
                };
                if tokens[i].is_empty() || vocab_id(&inner, tokens[i]) != Some(i as u32) {
                    continue;
                }
                added.push(AddedToken::from(tokens[i], special).normalized(false));
            }
        }
        for id in [bos, eos, pad].into_iter().flatten() {
            let tok = tokens[id as usize];
            if !tok.is_empty() && !added.iter().any(|a| a.content == tok) {
                added.push(AddedToken::from(tok, true).normalized(false));
            }
        }
        inner.add_tokens(&added);

        let role = |id: Option<u32>, on: bool| match (id, on) {
            (Some(id), true) => Some((tokens[id as usize].to_string(), id)),
            _ => None,
        };
        if let Some(p) = bos_eos_processor(role(bos, add_bos), role(eos, add_eos), origin)? {
            inner.with_post_processor(Some(p));
        }
        let special_ids = collect_special_ids(&inner, &[bos, eos, pad]);
        Ok(Self {
            inner,
            style: DecodeStyle::Inner,
            vocab_size: n,
            bos,
            eos,
            pad,
            unk,
            special_ids,
            chat_template,
            template_origin: format!("{}: GGUF key tokenizer.chat_template", g.source()),
        })
    }

    /// Loads a Hugging Face `tokenizer.json`.
    ///
    /// Special-token roles and the chat template come from a `tokenizer_config.json` in the same
    /// directory when there is one; otherwise roles are recognised by conventional names
    /// (`<|bos|>`, `<s>`, `<|eos|>`, `</s>`, `<|endoftext|>`, `<|pad|>`, `<unk>`, `[CLS]`, …).
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        if !path.is_file() {
            return Err(TokenizerError::FileNotFound {
                path: path.to_path_buf(),
            });
        }
        let bytes = std::fs::read(path).map_err(|e| TokenizerError::ReadFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let inner =
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| TokenizerError::ReadFile {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let config_path = path
            .parent()
            .map(|d| d.join("tokenizer_config.json"))
            .filter(|p| p.is_file());
        let config = match &config_path {
            None => None,
            Some(p) => {
                let read_err = |message: String| TokenizerError::ReadConfig {
                    path: p.clone(),
                    message,
                };
                let text = std::fs::read_to_string(p).map_err(|e| read_err(e.to_string()))?;
                let v: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| read_err(e.to_string()))?;
                Some(v)
            }
        };
        let role = |key: &str, names: &[&str]| {
            config
                .as_ref()
                .and_then(|c| config_token(c, key))
                .and_then(|t| inner.token_to_id(&t))
                .or_else(|| find_named(&inner, names))
        };
        let bos = role("bos_token", BOS_NAMES);
        let eos = role("eos_token", EOS_NAMES);
        let pad = role("pad_token", PAD_NAMES);
        let unk = role("unk_token", UNK_NAMES);
        let chat_template = config.as_ref().and_then(config_template);
        let template_origin = match &config_path {
            Some(p) if chat_template.is_some() => format!("{} key chat_template", p.display()),
            _ => "built-in ChatML".to_string(),
        };
        Ok(Self::assemble(
            inner,
            [bos, eos, pad, unk],
            chat_template,
            template_origin,
        ))
    }

    fn assemble(
        inner: tokenizers::Tokenizer,
        [bos, eos, pad, unk]: [Option<u32>; 4],
        chat_template: Option<String>,
        template_origin: String,
    ) -> Self {
        let style = match (inner.get_model(), inner.get_decoder()) {
            (ModelWrapper::WordLevel(_), None) => DecodeStyle::Words,
            _ => DecodeStyle::Inner,
        };
        let max_id = inner
            .get_vocab(true)
            .values()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1);
        let vocab_size = max_id.max(inner.get_vocab_size(true));
        let special_ids = collect_special_ids(&inner, &[bos, eos, pad]);
        Self {
            inner,
            style,
            vocab_size,
            bos,
            eos,
            pad,
            unk,
            special_ids,
            chat_template,
            template_origin,
        }
    }

    /// The built-in world's word-level tokenizer.
    ///
    /// Ids: `specials` first (in order), then [`WORLD_UNK`] and [`WORLD_NEWLINE`] (unless
    /// already given), then `words` in order; repeated words keep their first id. Text splits
    /// into words (letters/digits, with inner apostrophes as in "can't"), newlines, and single
    /// punctuation characters; other whitespace only separates. Words outside the vocabulary
    /// encode to `<unk>`. Roles are recognised by name: `<|bos|>` (added by
    /// `encode(…, true)`), `<|eos|>`, `<|pad|>`. Decoding joins words with single spaces and
    /// attaches punctuation, so text in that canonical form round-trips exactly.
    pub fn word_level(words: &[String], specials: &[&str]) -> Result<Self, TokenizerError> {
        let origin = "the world vocabulary";
        let mut vocab = Vocab::default();
        let mut order: Vec<String> = Vec::new();
        for s in specials {
            let reason = if s.is_empty() {
                Some("it is empty")
            } else if s.chars().any(char::is_whitespace) {
                Some("it contains whitespace")
            } else if vocab.contains_key(*s) {
                Some("it is listed twice")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(TokenizerError::InvalidSpecial {
                    token: (*s).to_string(),
                    reason: reason.to_string(),
                });
            }
            vocab.insert((*s).to_string(), order.len() as u32);
            order.push((*s).to_string());
        }
        let builtin = [WORLD_UNK.to_string(), WORLD_NEWLINE.to_string()];
        for w in builtin.iter().chain(words) {
            if w.is_empty() {
                return Err(TokenizerError::InvalidWord {
                    word: w.clone(),
                    reason: "it is empty".into(),
                });
            }
            if !vocab.contains_key(w) {
                vocab.insert(w.clone(), order.len() as u32);
                order.push(w.clone());
            }
        }
        let model = WordLevel::builder()
            .vocab(vocab)
            .unk_token(WORLD_UNK.to_string())
            .build()
            .map_err(|e| build_error(origin, e))?;
        let mut inner = tokenizers::Tokenizer::new(model);
        let split = Split::new(
            SplitPattern::Regex(WORLD_PATTERN.to_string()),
            SplitDelimiterBehavior::Removed,
            true,
        )
        .map_err(|e| build_error(origin, e))?;
        inner.with_pre_tokenizer(Some(split));
        let mut added: Vec<AddedToken> = specials
            .iter()
            .map(|s| AddedToken::from(*s, true).normalized(false))
            .collect();
        if !specials.contains(&WORLD_UNK) {
            // Not special (decoding keeps it), but "<unk>" in text still maps to its one id.
            added.push(AddedToken::from(WORLD_UNK, false).normalized(false));
        }
        inner.add_tokens(&added);
        let bos = find_named(&inner, BOS_NAMES).filter(|id| (*id as usize) < specials.len());
        let eos = find_named(&inner, EOS_NAMES).filter(|id| (*id as usize) < specials.len());
        let pad = find_named(&inner, PAD_NAMES).filter(|id| (*id as usize) < specials.len());
        let unk = inner.token_to_id(WORLD_UNK);
        if let Some(id) = bos
            && let Some(p) =
                bos_eos_processor(Some((order[id as usize].clone(), id)), None, origin)?
        {
            inner.with_post_processor(Some(p));
        }
        let tok = Self::assemble(
            inner,
            [bos, eos, pad, unk],
            None,
            "built-in ChatML".to_string(),
        );
        // Every word must come back as exactly its own id; anything else is not a word.
        for (id, w) in order.iter().enumerate().skip(specials.len()) {
            let ids = tok.encode(w, false)?;
            if ids != [id as u32] {
                return Err(TokenizerError::InvalidWord {
                    word: w.clone(),
                    reason: format!(
                        "it splits into {} pieces; a word is letters/digits (with inner \
                         apostrophes) or a single punctuation character",
                        ids.len()
                    ),
                });
            }
        }
        Ok(tok)
    }

    /// Text → token ids. With `add_special_tokens`, BOS/EOS are added where the tokenizer's
    /// configuration asks for them (see the constructors). Special-token strings in `text`
    /// (e.g. `<|im_start|>`) encode to their single ids.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        let enc = self
            .inner
            .encode_fast(text, add_special_tokens)
            .map_err(|e| TokenizerError::Encode {
                message: e.to_string(),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids → text. With `skip_special_tokens`, special tokens are left out.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        if let Some(&id) = ids.iter().find(|&&id| self.inner.id_to_token(id).is_none()) {
            return Err(TokenizerError::UnknownId {
                id,
                vocab: self.vocab_size,
            });
        }
        match self.style {
            DecodeStyle::Inner => {
                self.inner
                    .decode(ids, skip_special_tokens)
                    .map_err(|e| TokenizerError::Decode {
                        message: e.to_string(),
                    })
            }
            DecodeStyle::Words => {
                let added = self.inner.get_added_vocabulary();
                let tokens: Vec<String> = ids
                    .iter()
                    .filter_map(|&id| self.inner.id_to_token(id))
                    .filter(|t| !(skip_special_tokens && added.is_special_token(t)))
                    .collect();
                Ok(join_words(&tokens, |t| added.is_special_token(t)))
            }
        }
    }

    /// Number of token ids (the embedding rows a model needs).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token string of an id (byte-level tokens in their GPT-2 printable form).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Beginning-of-sequence id.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence id (generation stops here).
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Padding id.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }

    /// Unknown-token id.
    pub fn unk_id(&self) -> Option<u32> {
        self.unk
    }

    /// Ids of all special tokens (control tokens and the BOS/EOS/PAD roles), sorted.
    pub fn special_ids(&self) -> Vec<u32> {
        self.special_ids.clone()
    }

    /// The chat template source, if the model carries one (else ChatML is used).
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Renders a conversation with the model's chat template (ChatML when it has none), with
    /// `messages`, `add_generation_prompt`, `bos_token` and `eos_token` in scope and
    /// `raise_exception(msg)` available. Whitespace follows Hugging Face (`trim_blocks`,
    /// `lstrip_blocks`).
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        let (source, origin) = match &self.chat_template {
            Some(t) => (t.as_str(), self.template_origin.as_str()),
            None => (CHATML_TEMPLATE, "built-in ChatML"),
        };
        let template_err = |e: JinjaError| {
            let mut message = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                message.push_str(&format!(": {c}"));
                cause = c.source();
            }
            TokenizerError::ChatTemplate {
                origin: origin.to_string(),
                message,
            }
        };
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<Value, JinjaError> {
                Err(JinjaError::new(JinjaErrorKind::InvalidOperation, msg))
            },
        );
        env.add_filter("tojson", |v: Value| -> Result<String, JinjaError> {
            serde_json::to_string(&v)
                .map_err(|e| JinjaError::new(JinjaErrorKind::InvalidOperation, e.to_string()))
        });
        env.set_unknown_method_callback(python_method);
        let template = env.template_from_str(source).map_err(template_err)?;
        let token_text = |id: Option<u32>| {
            id.and_then(|i| self.inner.id_to_token(i))
                .unwrap_or_default()
        };
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => token_text(self.bos),
                eos_token => token_text(self.eos),
            })
            .map_err(template_err)
    }

    /// Writes the tokenizer as a Hugging Face `tokenizer.json` (the chat template and
    /// GGUF-derived roles are not part of that format; world roles are recovered by name).
    pub fn save(&self, path: &Path) -> Result<(), TokenizerError> {
        let save_err = |message: String| TokenizerError::Save {
            path: path.to_path_buf(),
            message,
        };
        let json = self
            .inner
            .to_string(false)
            .map_err(|e| save_err(e.to_string()))?;
        std::fs::write(path, json).map_err(|e| save_err(e.to_string()))
    }
}

/// The model-vocabulary id of a token (ignoring added tokens).
fn vocab_id(inner: &tokenizers::Tokenizer, token: &str) -> Option<u32> {
    use tokenizers::Model;
    inner.get_model().token_to_id(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gguf::GgufWriter;

    const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    const MERGES: [&str; 11] = [
        "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "1 2", "Ġ 1",
    ];
    const SMOL_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    /// Tokens: 3 control tokens, the 256 byte-level characters (sorted), then merge results.
    fn tiny_tokens() -> Vec<String> {
        let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
        alphabet.sort_unstable();
        let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        tokens.extend(alphabet.iter().map(|c| c.to_string()));
        for m in MERGES {
            tokens.push(m.replace(' ', ""));
        }
        tokens
    }

    fn strings(items: &[String]) -> MetaValue {
        MetaValue::Array(items.iter().map(|s| MetaValue::String(s.clone())).collect())
    }

    /// A GGUF with every tokenizer key; `edit` may replace or drop keys before writing.
    fn tiny_gguf(edit: impl FnOnce(&mut Vec<(String, MetaValue)>)) -> GgufFile {
        let tokens = tiny_tokens();
        let types: Vec<MetaValue> = (0..tokens.len())
            .map(|i| MetaValue::I32(if i < SPECIALS.len() { 3 } else { 1 }))
            .collect();
        let merges: Vec<String> = MERGES.iter().map(|m| m.to_string()).collect();
        let mut kv: Vec<(String, MetaValue)> = vec![
            (
                "general.architecture".into(),
                MetaValue::String("llama".into()),
            ),
            (
                "tokenizer.ggml.model".into(),
                MetaValue::String("gpt2".into()),
            ),
            (
                "tokenizer.ggml.pre".into(),
                MetaValue::String("smollm".into()),
            ),
            ("tokenizer.ggml.tokens".into(), strings(&tokens)),
            ("tokenizer.ggml.token_type".into(), MetaValue::Array(types)),
            ("tokenizer.ggml.merges".into(), strings(&merges)),
            ("tokenizer.ggml.bos_token_id".into(), MetaValue::U32(1)),
            ("tokenizer.ggml.eos_token_id".into(), MetaValue::U32(2)),
            ("tokenizer.ggml.padding_token_id".into(), MetaValue::U32(2)),
            ("tokenizer.ggml.unknown_token_id".into(), MetaValue::U32(0)),
            (
                "tokenizer.ggml.add_bos_token".into(),
                MetaValue::Bool(false),
            ),
            (
                "tokenizer.chat_template".into(),
                MetaValue::String(SMOL_TEMPLATE.into()),
            ),
        ];
        edit(&mut kv);
        let mut w = GgufWriter::new();
        for (k, v) in kv {
            w.meta(&k, v);
        }
        GgufFile::from_bytes(w.to_bytes(), "tiny.gguf").expect("tiny GGUF parses")
    }

    fn set(kv: &mut Vec<(String, MetaValue)>, key: &str, value: MetaValue) {
        match kv.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => kv.push((key.to_string(), value)),
        }
    }

    fn tiny(pre: &str) -> Tokenizer {
        let pre = pre.to_string();
        let g = tiny_gguf(|kv| set(kv, "tokenizer.ggml.pre", MetaValue::String(pre)));
        Tokenizer::from_gguf(&g).expect("tiny tokenizer builds")
    }

    fn id(t: &Tokenizer, token: &str) -> u32 {
        t.token_to_id(token)
            .unwrap_or_else(|| panic!("{token:?} not in vocab"))
    }

    #[test]
    fn gguf_bpe_encodes_with_merges_and_round_trips() {
        let t = tiny("smollm");
        assert_eq!(t.vocab_size(), 3 + 256 + MERGES.len());
        let ids = t.encode("hello world", false).unwrap();
        assert_eq!(ids, vec![id(&t, "hello"), id(&t, "Ġworld")]);
        let text = "hello world! Ünïcödé ✓ tabs\tand\nnewlines  ";
        let ids = t.encode(text, false).unwrap();
        assert_eq!(t.decode(&ids, false).unwrap(), text);
        // No BOS is added when add_bos_token is false.
        assert_eq!(t.encode("hello", true).unwrap(), vec![id(&t, "hello")]);
        assert_eq!(
            (t.bos_id(), t.eos_id(), t.pad_id()),
            (Some(1), Some(2), Some(2))
        );
        assert_eq!(t.special_ids(), vec![0, 1, 2]);
        assert_eq!(t.id_to_token(id(&t, "Ġworld")).as_deref(), Some("Ġworld"));
    }

    #[test]
    fn gguf_special_tokens_are_single_ids_and_skippable() {
        let t = tiny("smollm");
        let ids = t.encode("<|im_start|>hello<|im_end|>", false).unwrap();
        assert_eq!(ids, vec![1, id(&t, "hello"), 2]);
        assert_eq!(t.decode(&ids, true).unwrap(), "hello");
        assert_eq!(
            t.decode(&ids, false).unwrap(),
            "<|im_start|>hello<|im_end|>"
        );
        let err = t.decode(&[9999], false).unwrap_err();
        assert!(
            matches!(err, TokenizerError::UnknownId { id: 9999, .. }),
            "{err}"
        );
    }

    #[test]
    fn gguf_add_bos_token_is_honoured() {
        let g = tiny_gguf(|kv| set(kv, "tokenizer.ggml.add_bos_token", MetaValue::Bool(true)));
        let t = Tokenizer::from_gguf(&g).unwrap();
        let h = id(&t, "hello");
        assert_eq!(t.encode("hello", true).unwrap(), vec![1, h]);
        assert_eq!(t.encode("hello", false).unwrap(), vec![h]);
    }

    #[test]
    fn pre_tokenizer_decides_digit_splitting() {
        let (one, two, three) = ("1", "2", "3");
        let smol = tiny("smollm");
        let digits: Vec<u32> = [one, two, three].iter().map(|d| id(&smol, d)).collect();
        assert_eq!(smol.encode("123", false).unwrap(), digits);
        let gpt2 = tiny("gpt2");
        assert_eq!(
            gpt2.encode("123", false).unwrap(),
            vec![id(&gpt2, "12"), id(&gpt2, "3")]
        );
        // GPT-2's regex keeps the space with the number (" 1" merges); smollm splits digits first.
        assert_eq!(gpt2.encode(" 1", false).unwrap(), vec![id(&gpt2, "Ġ1")]);
        assert_eq!(
            smol.encode(" 1", false).unwrap(),
            vec![id(&smol, "Ġ"), id(&smol, "1")]
        );
        let qwen = tiny("qwen2");
        assert_eq!(qwen.encode("123", false).unwrap(), digits);
        let text = "It'S 12 o'clock\r\n  done";
        assert_eq!(
            qwen.decode(&qwen.encode(text, false).unwrap(), false)
                .unwrap(),
            text
        );
    }

    #[test]
    fn chat_rendering_uses_the_gguf_template() {
        let t = tiny("smollm");
        let msgs = [
            ChatMessage::user("What is 2+2?"),
            ChatMessage::assistant("4."),
        ];
        let text = t.render_chat(&msgs, true).unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n\
             <|im_start|>user\nWhat is 2+2?<|im_end|>\n\
             <|im_start|>assistant\n4.<|im_end|>\n<|im_start|>assistant\n"
        );
        let ids = t.encode(&text, false).unwrap();
        assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 4);
        assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 3);
        assert_eq!(t.decode(&ids, false).unwrap(), text);
    }

    #[test]
    fn chatml_fallback_when_no_template() {
        let g = tiny_gguf(|kv| kv.retain(|(k, _)| k != "tokenizer.chat_template"));
        let t = Tokenizer::from_gguf(&g).unwrap();
        assert!(t.chat_template().is_none());
        let msgs = [ChatMessage::system("Be brief."), ChatMessage::user("Hi")];
        assert_eq!(
            t.render_chat(&msgs, false).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
        assert!(
            t.render_chat(&msgs, true)
                .unwrap()
                .ends_with("<|im_start|>assistant\n")
        );
    }

    #[test]
    fn chat_template_raise_exception_and_python_methods() {
        let tpl = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversations must start with a user turn') }}{% endif %}\
                   {% for m in messages %}{{ m.role.upper() }}: {{ m.content.strip() }}{% if m.content.strip().startswith('Hi') %}!{% endif %}{{ '\\n' }}{% endfor %}\
                   {% for k, v in {'x': 1}.items() %}{{ k }}={{ v }}{% endfor %}";
        let g = tiny_gguf(|kv| set(kv, "tokenizer.chat_template", MetaValue::String(tpl.into())));
        let t = Tokenizer::from_gguf(&g).unwrap();
        let ok = t
            .render_chat(
                &[
                    ChatMessage::user("  Hi there "),
                    ChatMessage::assistant("yo"),
                ],
                false,
            )
            .unwrap();
        assert_eq!(ok, "USER: Hi there!\nASSISTANT: yo\nx=1");
        let err = t
            .render_chat(&[ChatMessage::assistant("hello")], false)
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, TokenizerError::ChatTemplate { .. }));
        assert!(
            msg.contains("Conversations must start with a user turn"),
            "{msg}"
        );
        assert!(msg.contains("tokenizer.chat_template"), "{msg}");
    }

    #[test]
    fn missing_tokenizer_key_is_named() {
        let g = tiny_gguf(|kv| kv.retain(|(k, _)| k != "tokenizer.ggml.tokens"));
        let err = Tokenizer::from_gguf(&g).unwrap_err();
        assert!(
            matches!(&err, TokenizerError::MissingKey { key, .. } if key == "tokenizer.ggml.tokens")
        );
        assert!(err.to_string().starts_with("tiny.gguf: "), "{err}");
        assert!(err.to_string().contains("tokenizer.ggml.tokens"));
        let g = tiny_gguf(|kv| kv.retain(|(k, _)| k != "tokenizer.ggml.model"));
        let err = Tokenizer::from_gguf(&g).unwrap_err();
        assert!(
            err.to_string()
                .contains("`tokenizer.ggml.model` is missing"),
            "{err}"
        );
    }

    #[test]
    fn unknown_model_and_pre_are_rejected_with_the_supported_list() {
        let g = tiny_gguf(|kv| set(kv, "tokenizer.ggml.model", MetaValue::String("rwkv".into())));
        let err = Tokenizer::from_gguf(&g).unwrap_err();
        assert!(matches!(err, TokenizerError::UnsupportedModel { .. }));
        assert!(
            err.to_string().contains("`rwkv`") && err.to_string().contains("gpt2"),
            "{err}"
        );
        let g = tiny_gguf(|kv| {
            set(
                kv,
                "tokenizer.ggml.pre",
                MetaValue::String("klingon".into()),
            )
        });
        let err = Tokenizer::from_gguf(&g).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, TokenizerError::UnsupportedPre { .. }));
        assert!(
            msg.contains("klingon") && msg.contains("smollm") && msg.contains("qwen2"),
            "{msg}"
        );
        let g = tiny_gguf(|kv| set(kv, "tokenizer.ggml.pre", MetaValue::U32(7)));
        let err = Tokenizer::from_gguf(&g).unwrap_err();
        assert!(matches!(err, TokenizerError::WrongType { .. }), "{err}");
    }

    #[test]
    fn malformed_or_dangling_merges_are_rejected() {
        let bad = vec!["h e".to_string(), "hello".to_string()];
        let g = tiny_gguf(|kv| set(kv, "tokenizer.ggml.merges", strings(&bad)));
        let err = Tokenizer::from_gguf(&g).unwrap_err();
        assert!(
            matches!(&err, TokenizerError::MalformedMerge { index: 1, merge, .. } if merge == "hello"),
            "{err}"
        );
        let dangling = vec!["q z".to_string()];
        let g = tiny_gguf(|kv| set(kv, "tokenizer.ggml.merges", strings(&dangling)));
        let err = Tokenizer::from_gguf(&g).unwrap_err();
        assert!(matches!(err, TokenizerError::Build { .. }), "{err}");
        assert!(err.to_string().contains("qz"), "{err}");
    }

    #[test]
    fn out_of_range_role_id_is_rejected() {
        let g = tiny_gguf(|kv| set(kv, "tokenizer.ggml.eos_token_id", MetaValue::U32(100_000)));
        let err = Tokenizer::from_gguf(&g).unwrap_err();
        assert!(
            matches!(err, TokenizerError::IdOutOfRange { id: 100_000, .. }),
            "{err}"
        );
    }

    #[test]
    fn missing_tokenizer_json_is_a_clear_error() {
        let err = Tokenizer::from_file(Path::new("/nonexistent/dir/tokenizer.json")).unwrap_err();
        assert!(matches!(err, TokenizerError::FileNotFound { .. }));
        assert!(err.to_string().contains("/nonexistent/dir/tokenizer.json"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        std::fs::write(&p, "{ not json").unwrap();
        let err = Tokenizer::from_file(&p).unwrap_err();
        assert!(matches!(err, TokenizerError::ReadFile { .. }), "{err}");
    }

    fn world_words() -> Vec<String> {
        "the cat sat on mat . , ! ? : can't help you with that - ( )"
            .split(' ')
            .map(str::to_string)
            .collect()
    }

    fn world() -> Tokenizer {
        Tokenizer::word_level(&world_words(), &["<|bos|>", "<|eos|>", "<|pad|>"]).unwrap()
    }

    #[test]
    fn word_level_round_trip_and_layout() {
        let t = world();
        assert_eq!(
            (t.bos_id(), t.eos_id(), t.pad_id()),
            (Some(0), Some(1), Some(2))
        );
        assert_eq!(t.unk_id(), Some(3));
        assert_eq!(t.token_to_id("\n"), Some(4));
        assert_eq!(t.token_to_id("the"), Some(5));
        assert_eq!(t.vocab_size(), 5 + world_words().len());
        assert_eq!(t.special_ids(), vec![0, 1, 2]);
        let text = "the cat sat on the mat.\n- can't help you with that!\n(the cat) sat: the mat?";
        let ids = t.encode(text, false).unwrap();
        assert_eq!(ids.len(), 25);
        assert_eq!(t.decode(&ids, false).unwrap(), text);
        // Non-canonical spacing normalises.
        let loose = t.encode("the   cat\tsat .", false).unwrap();
        assert_eq!(t.decode(&loose, false).unwrap(), "the cat sat.");
        // BOS is added on request; specials are one id each and skippable.
        let with = t.encode("the cat<|eos|>", true).unwrap();
        assert_eq!(with, vec![0, 5, 6, 1]);
        assert_eq!(t.decode(&with, true).unwrap(), "the cat");
        assert_eq!(t.decode(&with, false).unwrap(), "<|bos|>the cat<|eos|>");
    }

    #[test]
    fn word_level_unknown_words_become_unk() {
        let t = world();
        let ids = t.encode("the dog sat ; ok", false).unwrap();
        assert_eq!(ids, vec![5, 3, 7, 3, 3]);
        assert_eq!(t.decode(&ids, false).unwrap(), "the <unk> sat <unk> <unk>");
    }

    #[test]
    fn word_level_rejects_bad_words_and_specials() {
        let err = Tokenizer::word_level(&["two words".to_string()], &[]).unwrap_err();
        assert!(matches!(err, TokenizerError::InvalidWord { .. }), "{err}");
        let err = Tokenizer::word_level(&["a.b".to_string()], &[]).unwrap_err();
        assert!(err.to_string().contains("\"a.b\""), "{err}");
        let err = Tokenizer::word_level(&[String::new()], &[]).unwrap_err();
        assert!(matches!(err, TokenizerError::InvalidWord { .. }), "{err}");
        let err = Tokenizer::word_level(&[], &["<|bos|>", "<|bos|>"]).unwrap_err();
        assert!(
            matches!(err, TokenizerError::InvalidSpecial { .. }),
            "{err}"
        );
        // Repeated words keep their first id.
        let t = Tokenizer::word_level(&["a".into(), "b".into(), "a".into()], &[]).unwrap();
        assert_eq!(t.vocab_size(), 4);
        assert_eq!(t.bos_id(), None);
        assert_eq!(t.encode("b a", true).unwrap(), vec![3, 2]);
    }

    #[test]
    fn word_level_save_and_reload_keeps_everything() {
        let t = world();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        t.save(&p).unwrap();
        let back = Tokenizer::from_file(&p).unwrap();
        let text = "the cat sat on the mat.\ncan't help you!";
        assert_eq!(
            back.encode(text, true).unwrap(),
            t.encode(text, true).unwrap()
        );
        let ids = back.encode(text, false).unwrap();
        assert_eq!(back.decode(&ids, false).unwrap(), text);
        assert_eq!(back.vocab_size(), t.vocab_size());
        assert_eq!(
            (back.bos_id(), back.eos_id(), back.pad_id(), back.unk_id()),
            (t.bos_id(), t.eos_id(), t.pad_id(), t.unk_id())
        );
        assert_eq!(back.special_ids(), t.special_ids());
        let err = t
            .save(&dir.path().join("missing/dir/tokenizer.json"))
            .unwrap_err();
        assert!(matches!(err, TokenizerError::Save { .. }), "{err}");
    }

    #[test]
    fn tokenizer_config_supplies_roles_and_template() {
        let t = world();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        t.save(&p).unwrap();
        let config = serde_json::json!({
            "bos_token": {"content": "<|pad|>"},
            "eos_token": "<|bos|>",
            "chat_template": [{"name": "tool_use", "template": "x"},
                              {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}"}]
        });
        std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
        let back = Tokenizer::from_file(&p).unwrap();
        assert_eq!((back.bos_id(), back.eos_id()), (Some(2), Some(0)));
        assert_eq!(
            back.render_chat(&[ChatMessage::user("cat")], false)
                .unwrap(),
            "<|pad|>cat"
        );
        std::fs::write(dir.path().join("tokenizer_config.json"), "{").unwrap();
        let err = Tokenizer::from_file(&p).unwrap_err();
        assert!(matches!(err, TokenizerError::ReadConfig { .. }), "{err}");
    }
}
