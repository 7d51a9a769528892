//! The GGUF bridge: rebuilds a model's Hugging Face `tokenizers` tokenizer (byte-level BPE with
//! its pre-tokenizer, added tokens, roles and post-processor) from the `tokenizer.ggml.*`
//! metadata llama.cpp's converter writes.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::NFC;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::{
    DecodeStyle, Tokenizer, TokenizerError, bos_eos_processor, build_error, collect_special_ids,
};
use crate::model::gguf::{GgufFile, MetaValue};

/// Qwen2's pre-tokenizer regex (its `tokenizer.json` Split pattern; llama.cpp's `qwen2`).
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// `tokenizer.ggml.pre` values whose pre-tokenization is the GPT-2 regex alone.
const PRE_GPT2: &[&str] = &["default", "gpt2", "mpt", "olmo", "jais"];
/// `tokenizer.ggml.pre` values that split digits one by one before the GPT-2 regex.
const PRE_DIGITS: &[&str] = &["smollm", "starcoder", "refact", "command-r", "codeshell"];
/// `tokenizer.ggml.pre` values that use Qwen2's regex.
const PRE_QWEN2: &[&str] = &["qwen2", "stablelm2"];

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: u64 = 3;
const TOKEN_TYPE_USER_DEFINED: u64 = 4;

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
}

/// The model-vocabulary id of a token (ignoring added tokens).
fn vocab_id(inner: &tokenizers::Tokenizer, token: &str) -> Option<u32> {
    use tokenizers::Model;
    inner.get_model().token_to_id(token)
}
