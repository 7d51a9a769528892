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
//! `raise_exception`, Python string and dict methods); ChatML is used when the model has none.
//!
//! This file holds [`Tokenizer`] itself (encoding, decoding, roles) and what its constructors
//! share; `gguf` builds it from GGUF metadata, `hf` loads and saves `tokenizer.json`, `world`
//! is the word-level tokenizer, `chat` renders conversations, and `error` holds
//! [`TokenizerError`].

mod chat;
mod error;
mod gguf;
mod hf;
mod world;

use std::collections::BTreeSet;

use tokenizers::models::ModelWrapper;
use tokenizers::processors::template::TemplateProcessing;

pub use chat::{CHATML_TEMPLATE, ChatMessage};
pub use error::TokenizerError;
pub(crate) use world::join_words;
pub use world::{WORLD_NEWLINE, WORLD_UNK};

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

/// The error for a tokenizer from `origin` that cannot be assembled.
fn build_error(origin: &str, source: impl Into<tokenizers::Error>) -> TokenizerError {
    TokenizerError::Build {
        origin: origin.to_string(),
        source: source.into(),
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

impl Tokenizer {
    /// A tokenizer around `inner` with the given roles and chat template; the decode style and
    /// vocabulary size are read from `inner`.
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

    /// Text → token ids. With `add_special_tokens`, BOS/EOS are added where the tokenizer's
    /// configuration asks for them (see the constructors). Special-token strings in `text`
    /// (e.g. `<|im_start|>`) encode to their single ids.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        let enc = self
            .inner
            .encode_fast(text, add_special_tokens)
            .map_err(TokenizerError::Encode)?;
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
            DecodeStyle::Inner => self
                .inner
                .decode(ids, skip_special_tokens)
                .map_err(TokenizerError::Decode),
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
}
