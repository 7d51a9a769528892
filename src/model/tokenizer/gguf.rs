//! The GGUF bridge: rebuilds a model's Hugging Face `tokenizers` tokenizer (byte-level BPE with
//! its pre-tokenizer, added tokens, roles and post-processor) from the `tokenizer.ggml.*`
//! metadata llama.cpp's converter writes, and writes that metadata back for exported models.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{NFC, NormalizerWrapper};
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
const PRE_GPT2: &[&str] = &["default", "gpt-2", "gpt2", "mpt", "olmo", "jais"];
/// `tokenizer.ggml.pre` values that split digits one by one before the GPT-2 regex.
const PRE_DIGITS: &[&str] = &["smollm", "starcoder", "refact", "command-r", "codeshell"];
/// `tokenizer.ggml.pre` values that use Qwen2's regex.
const PRE_QWEN2: &[&str] = &["qwen2", "stablelm2"];

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_TYPE_NORMAL: u64 = 1;
const TOKEN_TYPE_CONTROL: u64 = 3;
const TOKEN_TYPE_USER_DEFINED: u64 = 4;
const TOKEN_TYPE_UNUSED: u64 = 5;

/// Which pre-tokenization a GGUF byte-level BPE vocabulary uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreKind {
    Gpt2,
    DigitsThenGpt2,
    Qwen2,
}

impl PreKind {
    const ALL: [PreKind; 3] = [PreKind::Gpt2, PreKind::DigitsThenGpt2, PreKind::Qwen2];

    /// The `tokenizer.ggml.pre` value written for the kind, one llama.cpp maps to the same
    /// regexes.
    fn gguf_name(self) -> &'static str {
        match self {
            PreKind::Gpt2 => "gpt-2",
            PreKind::DigitsThenGpt2 => "smollm",
            PreKind::Qwen2 => "qwen2",
        }
    }

    /// The normalizer and pre-tokenizer of the kind.
    fn build(self) -> Result<(Option<NFC>, PreTokenizerWrapper), TokenizerError> {
        let byte_level = ByteLevel::new(false, true, true);
        Ok(match self {
            PreKind::Gpt2 => (None, byte_level.into()),
            PreKind::DigitsThenGpt2 => (
                None,
                Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
            ),
            PreKind::Qwen2 => {
                let split = Split::new(
                    SplitPattern::Regex(QWEN2_PATTERN.to_string()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| build_error("the qwen2 pre-tokenizer regex", e))?;
                (
                    Some(NFC),
                    Sequence::new(vec![
                        split.into(),
                        ByteLevel::new(false, false, false).into(),
                    ])
                    .into(),
                )
            }
        })
    }
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
        let (normalizer, pre_tokenizer) = pre.build()?;
        if let Some(n) = normalizer {
            inner.with_normalizer(Some(n));
        }
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

impl Tokenizer {
    /// The `tokenizer.ggml.*` metadata (and `tokenizer.chat_template`) that
    /// [`Tokenizer::from_gguf`] and llama.cpp read back as this tokenizer, for a model with
    /// `n_vocab` embedding rows: ids without a token (rows past the tokenizer's vocabulary)
    /// become unused `[PAD<id>]` tokens, as llama.cpp's converter writes them.
    ///
    /// Only byte-level BPE with one of the pre-tokenizers llama.cpp names
    /// (GPT-2's, digits-then-GPT-2 as SmolLM2's, Qwen2's) has a GGUF form; a word-level
    /// vocabulary, another model type or pre-tokenizer is [`TokenizerError::NoGgufForm`].
    pub fn gguf_metadata(
        &self,
        n_vocab: usize,
    ) -> Result<Vec<(String, MetaValue)>, TokenizerError> {
        let no_form = |reason: String| TokenizerError::NoGgufForm { reason };
        let model = serde_json::to_value(self.inner.get_model())
            .map_err(|e| no_form(format!("its model does not serialise ({e})")))?;
        let kind = model["type"].as_str().unwrap_or("unknown");
        if kind != "BPE" {
            return Err(no_form(format!(
                "it is a {kind} tokenizer, and llama.cpp's GGUF tokenizers are byte-level BPE, \
                 SentencePiece and WordPiece vocabularies"
            )));
        }
        let pre = serde_json::to_value(self.inner.get_pre_tokenizer()).unwrap_or_default();
        let normalizer = serde_json::to_value(self.inner.get_normalizer()).unwrap_or_default();
        let mut found = None;
        for k in PreKind::ALL {
            let (n, p) = k.build()?;
            let same = serde_json::to_value(Some(&p)).unwrap_or_default() == pre
                && serde_json::to_value(n.map(NormalizerWrapper::from)).unwrap_or_default()
                    == normalizer;
            if same {
                found = Some(k);
                break;
            }
        }
        let Some(pre_kind) = found else {
            return Err(no_form(format!(
                "its pre-tokenizer {pre} (normalizer {normalizer}) is none of those llama.cpp \
                 names that this exporter knows (gpt-2, smollm, qwen2)"
            )));
        };
        let merges = model["merges"]
            .as_array()
            .and_then(|list| {
                list.iter()
                    .map(|m| match m {
                        serde_json::Value::String(s) => Some(s.clone()),
                        serde_json::Value::Array(p) => match p.as_slice() {
                            [a, b] => Some(format!("{} {}", a.as_str()?, b.as_str()?)),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect::<Option<Vec<String>>>()
            })
            .ok_or_else(|| no_form("its BPE merges are not a list of token pairs".into()))?;
        let added = self.inner.get_added_tokens_decoder();
        let mut tokens = Vec::with_capacity(n_vocab);
        let mut types = Vec::with_capacity(n_vocab);
        for id in 0..n_vocab as u32 {
            let (token, ty) = match (added.get(&id), self.inner.id_to_token(id)) {
                (Some(a), _) if a.special => (a.content.clone(), TOKEN_TYPE_CONTROL),
                (Some(a), _) => (a.content.clone(), TOKEN_TYPE_USER_DEFINED),
                (None, Some(t)) => (t, TOKEN_TYPE_NORMAL),
                (None, None) => (format!("[PAD{id}]"), TOKEN_TYPE_UNUSED),
            };
            tokens.push(MetaValue::String(token));
            types.push(MetaValue::I32(ty as i32));
        }
        let probe = |with: bool| {
            self.inner
                .encode_fast("a", with)
                .map(|e| e.get_ids().to_vec())
                .map_err(TokenizerError::Encode)
        };
        let (plain, with) = (probe(false)?, probe(true)?);
        let add_bos = self
            .bos
            .is_some_and(|b| with.first() == Some(&b) && plain.first() != Some(&b));
        let add_eos = self
            .eos
            .is_some_and(|e| with.last() == Some(&e) && plain.last() != Some(&e));
        let text = |v: &str| MetaValue::String(v.to_string());
        let mut out = vec![
            ("tokenizer.ggml.model".to_string(), text("gpt2")),
            ("tokenizer.ggml.pre".to_string(), text(pre_kind.gguf_name())),
            (
                "tokenizer.ggml.tokens".to_string(),
                MetaValue::Array(tokens),
            ),
            (
                "tokenizer.ggml.token_type".to_string(),
                MetaValue::Array(types),
            ),
            (
                "tokenizer.ggml.merges".to_string(),
                MetaValue::Array(merges.into_iter().map(MetaValue::String).collect()),
            ),
        ];
        for (key, id) in [
            ("bos_token_id", self.bos),
            ("eos_token_id", self.eos),
            ("padding_token_id", self.pad),
            ("unknown_token_id", self.unk),
        ] {
            if let Some(id) = id {
                out.push((format!("tokenizer.ggml.{key}"), MetaValue::U32(id)));
            }
        }
        out.push((
            "tokenizer.ggml.add_bos_token".into(),
            MetaValue::Bool(add_bos),
        ));
        out.push((
            "tokenizer.ggml.add_eos_token".into(),
            MetaValue::Bool(add_eos),
        ));
        if let Some(t) = &self.chat_template {
            out.push(("tokenizer.chat_template".into(), text(t)));
        }
        Ok(out)
    }
}

/// The model-vocabulary id of a token (ignoring added tokens).
fn vocab_id(inner: &tokenizers::Tokenizer, token: &str) -> Option<u32> {
    use tokenizers::Model;
    inner.get_model().token_to_id(token)
}
