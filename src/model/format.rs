//! How a model reads a dialogue prompt and ends its reply (paper §3, §4.2): the built-in
//! world's BOS/EOS text, the raw `\n\nHuman: …\n\nAssistant:` text for pretrained models, or the
//! model's own chat template for instruction-tuned ones. Every sampler (simulation, policy
//! rollouts, evaluation samples, held-out pairs) and every trainer reads prompts through one
//! [`PolicyFormat`].

use serde::{Deserialize, Serialize};

use super::tokenizer::{ChatMessage, Tokenizer, TokenizerError};
use super::{GenerateOptions, Lm, ModelError};
use crate::world::format::{BOS, EOS, stop_strings};
use burn::tensor::backend::Backend;

/// Version of how chat models read dialogue prompts ([`Tokenizer::chat_prompt`]) and end their
/// replies ([`PolicyFormat::end_ids`]); stage keys of chat models carry it.
pub const CHAT_LAYOUT: u32 = 2;

/// How a model reads a prompt and ends a response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFormat {
    /// Text before every prompt: the BOS text for built-in world models, `""` for GGUF models.
    pub prefix: String,
    /// Text that ends a supervised response (world models: EOS; GGUF models: the next human
    /// tag; chat models: the template's end of turn).
    pub end_of_turn: String,
    /// Sampling stops at these strings (the next speaker tag); the text is cut before them.
    pub stop: Vec<String>,
    /// Whether prompts are put in the model's chat template
    /// ([`Tokenizer::chat_prompt`]) instead of being read as raw text.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chat: bool,
    /// Token ids that end a reply besides the tokenizer's EOS. Chat models: every special
    /// token of the vocabulary, so a reply that opens the next message of the conversation
    /// (`<|im_start|>user…`) without closing its own ends there, as the raw format cuts a reply
    /// at the next speaker tag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub end_ids: Vec<u32>,
}

impl PolicyFormat {
    /// The format of built-in world models.
    pub fn world() -> Self {
        Self {
            prefix: BOS.to_string(),
            end_of_turn: EOS.to_string(),
            stop: stop_strings(),
            chat: false,
            end_ids: Vec::new(),
        }
    }

    /// The format of pretrained models read as raw dialogue text.
    pub fn pretrained() -> Self {
        Self {
            prefix: String::new(),
            end_of_turn: "\n\nHuman:".to_string(),
            stop: stop_strings(),
            chat: false,
            end_ids: Vec::new(),
        }
    }

    /// The format of a model whose prompts go through its chat template: a reply ends with the
    /// template's end of turn (EOS, where generation also stops).
    pub fn chat(tokenizer: &Tokenizer) -> Result<Self, TokenizerError> {
        let end_of_turn = tokenizer
            .end_of_turn()
            .ok_or_else(|| TokenizerError::NoEndOfTurn)?;
        Ok(Self {
            prefix: String::new(),
            end_of_turn,
            stop: stop_strings(),
            chat: true,
            end_ids: tokenizer.special_ids(),
        })
    }

    /// Sampling options that end a reply where this format ends it: at the stop strings and at
    /// [`PolicyFormat::end_ids`] (the tokenizer's EOS is added by [`Lm::generate`]).
    pub fn generate_options(&self) -> GenerateOptions {
        GenerateOptions {
            stop: self.stop.clone(),
            eos_ids: self.end_ids.clone(),
            ..GenerateOptions::default()
        }
    }

    /// The query text of a plain prompt: the prefix and the prompt, or the prompt in the chat
    /// template.
    pub fn query(&self, tokenizer: &Tokenizer, prompt: &str) -> Result<String, TokenizerError> {
        if self.chat {
            tokenizer.chat_prompt(prompt)
        } else {
            Ok(format!("{}{prompt}", self.prefix))
        }
    }

    /// A question the model answers with its next token (a judge's or the RLAIF scoring
    /// prompt): `text` ends with the answer's opening after a blank line (`"\n\nThe answer is:
    /// ("`). Raw: the prefix and the text. Chat: the text before that last blank line is one
    /// user message, and the opening starts the reply.
    pub fn question(&self, tokenizer: &Tokenizer, text: &str) -> Result<String, TokenizerError> {
        if !self.chat {
            return Ok(format!("{}{text}", self.prefix));
        }
        let (ask, lead) = match text.rfind("\n\n") {
            Some(i) => (text[..i].trim_end(), text[i..].trim_start()),
            None => (text, ""),
        };
        let mut out = tokenizer.render_chat(&[ChatMessage::user(ask)], true)?;
        out.push_str(lead);
        Ok(out)
    }

    /// Query and response token ids of `output` answering `prompt` (the response ends with
    /// the end-of-turn marker, so the policy learns to stop).
    pub fn encode<B: Backend>(
        &self,
        lm: &Lm<B>,
        prompt: &str,
        output: &str,
    ) -> Result<(Vec<u32>, Vec<u32>), ModelError> {
        let query = lm.encode(&self.query(&lm.tokenizer, prompt)?)?;
        let mut response = lm.encode(output.trim_start())?;
        response.extend(lm.encode(&self.end_of_turn)?);
        Ok((query, response))
    }
}
