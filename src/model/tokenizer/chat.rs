//! Chat rendering: conversations as [`ChatMessage`]s, rendered with a model's Jinja chat
//! template (or ChatML) through minijinja with the Hugging Face conventions.

use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, Error as JinjaError, ErrorKind as JinjaErrorKind, State};
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
}
