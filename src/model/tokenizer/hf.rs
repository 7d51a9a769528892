//! Hugging Face tokenizer files: loading a `tokenizer.json` with the roles and chat template of
//! a sibling `tokenizer_config.json`, and saving a tokenizer as `tokenizer.json`.

use std::path::Path;

use super::{BOS_NAMES, EOS_NAMES, PAD_NAMES, Tokenizer, TokenizerError, UNK_NAMES, find_named};

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

impl Tokenizer {
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
        let bytes = crate::error::read(path).map_err(TokenizerError::ReadFile)?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|source| {
            TokenizerError::ParseFile {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let config_path = path
            .parent()
            .map(|d| d.join("tokenizer_config.json"))
            .filter(|p| p.is_file());
        let config = match &config_path {
            None => None,
            Some(p) => {
                let text = crate::error::read_to_string(p).map_err(TokenizerError::ReadConfig)?;
                let v: serde_json::Value =
                    serde_json::from_str(&text).map_err(|source| TokenizerError::ParseConfig {
                        path: p.clone(),
                        source,
                    })?;
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

    /// Writes the tokenizer as a Hugging Face `tokenizer.json` (the chat template and
    /// GGUF-derived roles are not part of that format; world roles are recovered by name).
    pub fn save(&self, path: &Path) -> Result<(), TokenizerError> {
        let json = self
            .inner
            .to_string(false)
            .map_err(|source| TokenizerError::Serialize {
                path: path.to_path_buf(),
                source,
            })?;
        crate::error::write(path, json).map_err(TokenizerError::Save)
    }

    /// Writes `tokenizer_config.json` into `dir`: the special-token roles, the chat template
    /// (ChatML when the tokenizer has none, as [`Tokenizer::render_chat`] uses) and
    /// `model_max_length`, so `transformers.AutoTokenizer` loads `tokenizer.json` with them.
    pub fn save_hf_config(
        &self,
        dir: &Path,
        model_max_length: usize,
    ) -> Result<(), TokenizerError> {
        let token = |id: Option<u32>| id.and_then(|i| self.id_to_token(i));
        let config = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": token(self.bos_id()),
            "eos_token": token(self.eos_id()),
            "pad_token": token(self.pad_id()),
            "unk_token": token(self.unk_id()),
            "chat_template": self.chat_template().unwrap_or(super::CHATML_TEMPLATE),
            "model_max_length": model_max_length,
            "clean_up_tokenization_spaces": false,
        });
        let path = dir.join("tokenizer_config.json");
        let text = serde_json::to_string_pretty(&config).unwrap_or_else(|_| config.to_string());
        crate::error::write(&path, text + "\n").map_err(TokenizerError::Save)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tokenizer::ChatMessage;

    /// A small world vocabulary.
    fn words() -> Vec<String> {
        "the cat sat on mat . , ! ? : can't help you with that - ( )"
            .split(' ')
            .map(str::to_string)
            .collect()
    }

    fn world() -> Tokenizer {
        Tokenizer::word_level(&words(), &["<|bos|>", "<|eos|>", "<|pad|>"]).unwrap()
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
        assert!(matches!(err, TokenizerError::ParseFile { .. }), "{err}");
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
        assert!(matches!(err, TokenizerError::Save(_)), "{err}");
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
        assert!(matches!(err, TokenizerError::ParseConfig { .. }), "{err}");
    }
}
