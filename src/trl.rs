//! Preference pairs in TRL's row shape (`prompt`, `chosen`, `rejected`, optionally
//! `p_chosen`, `prompt_id`, `task`), as `rlcd export pairs` writes them and a recipe method's
//! `pairs` file gives them: reading and checking a JSON Lines file of such rows.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A pair file that cannot be read as TRL rows.
#[derive(Debug, thiserror::Error)]
pub enum TrlError {
    /// The file cannot be read.
    #[error("cannot read pair file: {0}")]
    Read(#[source] crate::error::IoError),
    /// A row is malformed.
    #[error("{}:{line}: {message}\n  fix: {fix}", path.display())]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// The file holds no row for the task.
    #[error("{}: no pair for task `{task}` ({rows} rows, all for other tasks or none at all)\n  fix: add rows without a `task` field or with `\"task\": \"{task}\"`", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
        /// The task.
        task: String,
        /// Rows read.
        rows: usize,
    },
}

/// A prompt or a response: text, or `{role, content}` messages.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
enum Text {
    Plain(String),
    Messages(Vec<Message>),
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    role: String,
    content: String,
}

/// One row as read; columns other than these (`method`, `family`, `simulator`, …) are kept
/// out of the pair.
#[derive(Debug, Deserialize)]
struct Row {
    prompt: Text,
    chosen: Text,
    rejected: Text,
    #[serde(default)]
    p_chosen: Option<f64>,
    #[serde(default)]
    prompt_id: Option<String>,
    #[serde(default)]
    task: Option<String>,
}

/// One pair of a file, before it is placed in slots.
#[derive(Clone, Debug, PartialEq)]
pub struct TrlRow {
    /// 1-based line.
    pub line: usize,
    /// The prompt text as given, or the dialogue turns (human, assistant, …, human).
    pub prompt: Result<String, Vec<String>>,
    /// The preferred response.
    pub chosen: String,
    /// The other response.
    pub rejected: String,
    /// Probability of `chosen` (1 when absent).
    pub p_chosen: f64,
    /// The row's prompt id, if it gives one.
    pub prompt_id: Option<String>,
    /// The row's task, if it gives one.
    pub task: Option<String>,
}

/// The turns of a conversational prompt: `user` / `assistant` alternating, ending with `user`.
fn turns(messages: &[Message]) -> Result<Vec<String>, String> {
    if messages.is_empty() {
        return Err("`prompt` has no messages".into());
    }
    for (i, m) in messages.iter().enumerate() {
        let want = if i % 2 == 0 { "user" } else { "assistant" };
        if m.role != want {
            return Err(format!(
                "`prompt` message {} has role `{}` where `{want}` is expected (user and \
                 assistant alternate from the first message; system messages are not supported)",
                i + 1,
                m.role
            ));
        }
        if m.content.trim().is_empty() {
            return Err(format!("`prompt` message {} is empty", i + 1));
        }
    }
    if messages.len().is_multiple_of(2) {
        return Err("`prompt` ends with an assistant message; end it with the user turn".into());
    }
    Ok(messages.iter().map(|m| m.content.clone()).collect())
}

/// The text of a response: a string, or one assistant message (possibly empty, as a simulated
/// output can be).
fn response(key: &str, t: Text) -> Result<String, String> {
    let text = match t {
        Text::Plain(s) => s,
        Text::Messages(mut m) if m.len() == 1 && m[0].role == "assistant" => m.remove(0).content,
        Text::Messages(_) => {
            return Err(format!(
                "`{key}` must be a string or one assistant message; write the prompt in `prompt` \
                 and only the response here"
            ));
        }
    };
    Ok(text)
}

/// Reads a JSON Lines file of TRL pair rows.
pub fn read_rows(path: &Path) -> Result<Vec<TrlRow>, TrlError> {
    let text = crate::error::read_to_string(path).map_err(TrlError::Read)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| TrlError::Row {
            path: path.to_path_buf(),
            line: i + 1,
            message,
            fix: "write one JSON object per line with `prompt`, `chosen` and `rejected` \
                  (strings, or messages as TRL's conversational form), optionally `p_chosen`, \
                  `prompt_id` and `task` — the rows `rlcd export pairs` writes"
                .into(),
        };
        let row: Row =
            serde_json::from_str(line).map_err(|e| bad(format!("malformed row: {e}")))?;
        let prompt = match row.prompt {
            Text::Plain(s) if s.trim().is_empty() => return Err(bad("`prompt` is empty".into())),
            Text::Plain(s) => Ok(s),
            Text::Messages(m) => Err(turns(&m).map_err(bad)?),
        };
        let p_chosen = row.p_chosen.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&p_chosen) {
            return Err(bad(format!("`p_chosen` = {p_chosen} is not a probability")));
        }
        out.push(TrlRow {
            line: i + 1,
            prompt,
            chosen: response("chosen", row.chosen).map_err(bad)?,
            rejected: response("rejected", row.rejected).map_err(bad)?,
            p_chosen,
            prompt_id: row.prompt_id,
            task: row.task,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Result<Vec<TrlRow>, TrlError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pairs.jsonl");
        std::fs::write(&path, text).unwrap();
        read_rows(&path)
    }

    #[test]
    fn plain_and_conversational_rows_read() {
        let got = rows(concat!(
            r#"{"prompt": "p", "chosen": "a", "rejected": "b", "method": "x"}"#,
            "\n\n",
            r#"{"prompt": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "and?"}], "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}], "p_chosen": 0.7, "task": "t"}"#,
            "\n"
        ))
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].prompt, Ok("p".to_string()));
        assert_eq!(got[0].p_chosen, 1.0);
        assert_eq!(
            got[1].prompt,
            Err(vec!["hi".to_string(), "yo".into(), "and?".into()])
        );
        assert_eq!((got[1].p_chosen, got[1].line), (0.7, 3));
        assert_eq!(got[1].task.as_deref(), Some("t"));
    }

    #[test]
    fn bad_rows_name_their_line() {
        let cases = [
            (r#"{"prompt": "p", "chosen": "a"}"#, "rejected"),
            (
                r#"{"prompt": "", "chosen": "a", "rejected": "b"}"#,
                "`prompt` is empty",
            ),
            (
                r#"{"prompt": "p", "chosen": "a", "rejected": "b", "p_chosen": 2}"#,
                "probability",
            ),
            (
                r#"{"prompt": [{"role": "system", "content": "s"}], "chosen": "a", "rejected": "b"}"#,
                "role `system`",
            ),
            (
                r#"{"prompt": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "x"}], "chosen": "a", "rejected": "b"}"#,
                "ends with an assistant",
            ),
            (
                r#"{"prompt": "p", "chosen": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}], "rejected": "b"}"#,
                "one assistant message",
            ),
        ];
        for (row, says) in cases {
            let err = rows(&format!(
                "{{\"prompt\": \"ok\", \"chosen\": \"a\", \"rejected\": \"b\"}}\n{row}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(err.contains("pairs.jsonl:2:"), "{err}");
            assert!(err.contains(says), "{row}: {err}");
        }
    }
}
