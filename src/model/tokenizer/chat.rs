//! Chat rendering: conversations as [`ChatMessage`]s, rendered with a model's Jinja chat
//! template (or ChatML) through minijinja with the Hugging Face conventions, the Python string
//! and dict methods templates call coming from `minijinja-contrib`'s Python compatibility.

use minijinja::value::Value;
use minijinja::{Environment, Error as JinjaError, ErrorKind as JinjaErrorKind};
use serde::{Deserialize, Serialize};

use super::{Tokenizer, TokenizerError};

/// ChatML, used when a model carries no chat template.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

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

impl Tokenizer {
    /// The chat template source, if the model carries one (else ChatML is used).
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Renders a conversation with the model's chat template (ChatML when it has none), with
    /// `messages`, `add_generation_prompt`, `bos_token` and `eos_token` in scope,
    /// `raise_exception(msg)` and `tojson` available, and Python's string and dict methods
    /// (`strip`, `startswith`, `split`, `items`, `get` …) callable on values. Whitespace follows
    /// Hugging Face (`trim_blocks`, `lstrip_blocks`).
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        let (source, origin) = match &self.chat_template {
            Some(t) => (t.as_str(), self.template_origin.as_str()),
            None => (CHATML_TEMPLATE, "built-in ChatML"),
        };
        let template_err = |source: JinjaError| TokenizerError::ChatTemplate {
            origin: origin.to_string(),
            source,
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
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
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
}
