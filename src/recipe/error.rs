//! Recipe errors: one-line summaries naming the file and key, then details and the fix.

use std::fmt;
use std::path::PathBuf;

/// One problem found in a recipe: the dotted key it concerns, what is wrong, how to fix it.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// Dotted key path, e.g. `tasks.harmless.prompts` (empty for the whole recipe).
    pub key: String,
    /// What is wrong, naming the key, e.g. "unknown key `tasks.harmless.prompt`".
    pub message: String,
    /// How to fix it, e.g. "did you mean `prompts`?".
    pub fix: Option<String>,
}

impl Problem {
    /// A problem at `key` with a message and a fix.
    pub fn new(key: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    /// A problem at `key` with no specific fix.
    pub fn bare(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
            fix: None,
        }
    }
}

/// A problem and where its key was set: `line 12`, `env RLCD_SEED`, `override seed=3`.
#[derive(Clone, Debug, PartialEq)]
pub struct Located {
    /// The problem.
    pub problem: Problem,
    /// Where the offending value came from, when known.
    pub at: Option<String>,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.problem.key;
        if !key.is_empty() && !self.problem.message.contains(&format!("`{key}`")) {
            write!(f, "`{key}`: ")?;
        }
        write!(f, "{}", self.problem.message)?;
        if let Some(at) = &self.at {
            write!(f, " ({at})")?;
        }
        if let Some(fix) = &self.problem.fix {
            write!(f, "; {fix}")?;
        }
        Ok(())
    }
}

/// Why a recipe could not be loaded or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// The recipe file cannot be read.
    #[error(
        "{}: cannot read recipe file: {}\n  fix: check the path (recipes live under recipes/, e.g. recipes/examples/contrast.toml)",
        .source.path.display(),
        .source.source
    )]
    Read {
        /// The I/O error, naming the file.
        #[source]
        source: crate::error::IoError,
    },
    /// The recipe file is not UTF-8 text.
    #[error(
        "{}: line {line} is not UTF-8 text (byte {byte:#04x} at column {column})\n  fix: save the recipe as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
        file.display()
    )]
    NotUtf8 {
        /// The recipe file as given.
        file: PathBuf,
        /// 1-based line of the first byte that is not UTF-8.
        line: usize,
        /// 1-based byte column of that byte.
        column: usize,
        /// The byte.
        byte: u8,
    },
    /// The recipe file is not valid TOML.
    #[error("{}: malformed TOML{}: {message}\n{detail}\n  fix: correct the TOML syntax{}", file.display(), line_suffix(*line), at_line(*line))]
    Syntax {
        /// The recipe file as given.
        file: PathBuf,
        /// 1-based line of the error, when known.
        line: Option<usize>,
        /// The parser's one-line message.
        message: String,
        /// The parser's full report (with the offending line).
        detail: String,
    },
    /// A `key=value` override or an `RLCD_*` environment variable is malformed.
    #[error("{}: bad {origin}: {reason}\n  fix: {fix}", file.display())]
    Argument {
        /// The recipe file as given.
        file: PathBuf,
        /// Which argument: "override `seed`" or "environment variable RLCD_X".
        origin: String,
        /// What is wrong with it.
        reason: String,
        /// How to write it instead.
        fix: String,
    },
    /// The recipe has unknown keys, wrong types or failed validation; every problem found.
    #[error("{}", render_invalid(file, problems))]
    Invalid {
        /// The recipe file as given.
        file: PathBuf,
        /// All problems, in the order found.
        problems: Vec<Located>,
    },
}

impl RecipeError {
    /// The problems of an [`RecipeError::Invalid`] error (empty for the other kinds).
    pub fn problems(&self) -> Vec<&Problem> {
        match self {
            Self::Invalid { problems, .. } => problems.iter().map(|l| &l.problem).collect(),
            _ => Vec::new(),
        }
    }

    /// The first line of the message: the one-line summary.
    pub fn summary(&self) -> String {
        self.to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" at line {l}")).unwrap_or_default()
}

fn render_invalid(file: &std::path::Path, problems: &[Located]) -> String {
    let file = file.display();
    match problems {
        [] => format!("{file}: invalid recipe"),
        [one] => format!("{file}: {one}"),
        many => {
            let keys: Vec<String> = many
                .iter()
                .map(|l| {
                    if l.problem.key.is_empty() {
                        "(recipe)".to_string()
                    } else {
                        format!("`{}`", l.problem.key)
                    }
                })
                .collect();
            let mut out = format!("{file}: {} problems: {}", many.len(), keys.join(", "));
            for l in many {
                out.push_str(&format!("\n  - {l}"));
            }
            out
        }
    }
}
