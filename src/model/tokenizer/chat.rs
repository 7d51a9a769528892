//! Chat rendering: conversations as [`ChatMessage`]s, rendered with a model's Jinja chat
//! template (or ChatML) through minijinja with the Hugging Face conventions, the Python string
//! and dict methods templates call coming from `minijinja-contrib`'s Python compatibility.

use minijinja::value::Value;
use minijinja::{Environment, Error as JinjaError, ErrorKind as JinjaErrorKind};
use serde::{Deserialize, Serialize};

use super::{Tokenizer, TokenizerError};
use crate::world::format::{TaggedDialogue, tagged_dialogue};

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

impl Tokenizer {
    /// A dialogue prompt (`"\n\nHuman: …\n\nAssistant (note): lead"`, see
    /// [`tagged_dialogue`]) in the model's chat template: human turns become user messages and
    /// assistant turns assistant messages, and the reply opens with the template's generation
    /// prompt followed by the final tag's lead. A tag's note (an RLCD affix) goes where the
    /// paper puts it, into the speaker tag: after the role name in the message's header,
    /// `<|im_start|>assistant (harmless response)` in ChatML. A template whose assistant
    /// header does not name the role `assistant`, or that renders a conversation other than
    /// message by message, gets the note in parentheses at the start of the message instead.
    pub fn chat_prompt(&self, prompt: &str) -> Result<String, TokenizerError> {
        let dialogue = tagged_dialogue(prompt).ok_or_else(|| TokenizerError::NotDialogue {
            start: prompt.chars().take(60).collect(),
        })?;
        let final_note = dialogue.note.as_deref();
        if let Some(text) = self.chat_with_tagged_headers(&dialogue)? {
            return Ok(text);
        }
        let messages: Vec<ChatMessage> = dialogue
            .turns
            .iter()
            .map(|t| message(t.human, opening(t.note.as_deref(), &t.text)))
            .collect();
        let mut text = self.render_chat(&messages, true)?;
        text.push_str(&opening(final_note, &dialogue.lead));
        Ok(text)
    }

    /// [`Self::chat_prompt`] with every note in its message's header; `None` when the template
    /// does not allow it.
    fn chat_with_tagged_headers(
        &self,
        dialogue: &TaggedDialogue,
    ) -> Result<Option<String>, TokenizerError> {
        let messages: Vec<ChatMessage> = dialogue
            .turns
            .iter()
            .map(|t| message(t.human, t.text.clone()))
            .collect();
        let mut out = String::new();
        let mut before = String::new();
        for (i, turn) in dialogue.turns.iter().enumerate() {
            let upto = self.render_chat(&messages[..=i], false)?;
            let Some(segment) = upto.strip_prefix(before.as_str()) else {
                return Ok(None);
            };
            match turn.note.as_deref() {
                Some(note) if !turn.human => {
                    let Some(at) = segment.find(turn.text.as_str()) else {
                        return Ok(None);
                    };
                    let Some(header) = tag_header(&segment[..at], note) else {
                        return Ok(None);
                    };
                    out.push_str(&header);
                    out.push_str(&segment[at..]);
                }
                _ => out.push_str(segment),
            }
            before = upto;
        }
        let open = self.render_chat(&messages, true)?;
        let Some(generation) = open.strip_prefix(before.as_str()) else {
            return Ok(None);
        };
        match dialogue.note.as_deref() {
            Some(note) => match tag_header(generation, note) {
                Some(header) => out.push_str(&header),
                None => return Ok(None),
            },
            None => out.push_str(generation),
        }
        out.push_str(&dialogue.lead);
        Ok(Some(out))
    }

    /// The text that ends an assistant message in the chat template: the EOS token's text
    /// (`<|im_end|>` for ChatML models), `None` when the tokenizer has no EOS.
    pub fn end_of_turn(&self) -> Option<String> {
        self.eos.and_then(|id| self.inner.id_to_token(id))
    }
}

/// A user or an assistant message.
fn message(human: bool, content: String) -> ChatMessage {
    if human {
        ChatMessage::user(content)
    } else {
        ChatMessage::assistant(content)
    }
}

/// `header` with ` (note)` after the role name `assistant`, if it names it.
fn tag_header(header: &str, note: &str) -> Option<String> {
    let at = header.rfind("assistant")? + "assistant".len();
    Some(format!("{} ({note}){}", &header[..at], &header[at..]))
}

/// `"(note) text"`, `"(note)"`, `"text"` or `""`.
fn opening(note: Option<&str>, text: &str) -> String {
    match (note, text.is_empty()) {
        (Some(n), true) => format!("({n})"),
        (Some(n), false) => format!("({n}) {text}"),
        (None, _) => text.to_string(),
    }
}
