//! Diagnostics every layer shares: the one I/O error shape (it always names the path) and the
//! one did-you-mean helper behind every suggestion the CLI prints. See ARCHITECTURE.md, "Errors".

use std::path::{Path, PathBuf};

/// A file-system operation that failed on `path`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct IoError {
    /// The file or directory.
    pub path: PathBuf,
    /// The operating system's error.
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    /// An error on `path`.
    pub fn new(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self {
            path: path.into(),
            source,
        }
    }

    /// A closure for `map_err` that attaches `path`.
    pub fn at(path: &Path) -> impl FnOnce(std::io::Error) -> IoError + '_ {
        move |source| IoError::new(path, source)
    }

    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        self.source.kind() == std::io::ErrorKind::NotFound
    }
}

/// [`std::fs::read`] naming the path on failure.
pub fn read(path: &Path) -> Result<Vec<u8>, IoError> {
    std::fs::read(path).map_err(IoError::at(path))
}

/// [`std::fs::read_to_string`] naming the path on failure.
pub fn read_to_string(path: &Path) -> Result<String, IoError> {
    std::fs::read_to_string(path).map_err(IoError::at(path))
}

/// [`std::fs::write`] naming the path on failure.
pub fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), IoError> {
    std::fs::write(path, bytes).map_err(IoError::at(path))
}

/// [`std::fs::create_dir_all`] naming the path on failure.
pub fn create_dir_all(path: &Path) -> Result<(), IoError> {
    std::fs::create_dir_all(path).map_err(IoError::at(path))
}

/// Similarity at or above which a candidate is offered as a suggestion.
const SUGGEST_THRESHOLD: f64 = 0.7;

/// The candidates close to `word`, best first: case-insensitive Jaro–Winkler similarity of at
/// least 0.7, or one containing the other (`smollm` → `smollm2-135m`). Ties keep the
/// candidates' order.
pub fn suggestions<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let word = word.to_lowercase();
    let mut scored: Vec<(f64, usize, &str)> = candidates
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let lower = c.to_lowercase();
            let contains = !word.is_empty()
                && !lower.is_empty()
                && (lower.contains(&word) || word.contains(&lower));
            let score = strsim::jaro_winkler(&word, &lower).max(if contains { 0.99 } else { 0.0 });
            (score >= SUGGEST_THRESHOLD).then_some((score, i, c))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, _, c)| c).collect()
}

/// The candidate closest to `word` (see [`suggestions`]).
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    suggestions(word, candidates).first().map(|s| s.to_string())
}

/// ` (did you mean `x`?)` for the closest candidate, or nothing.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    suggest(word, candidates)
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_rank_close_words_first() {
        let keys = ["prompts", "templates", "axes", "n_prompts"];
        assert_eq!(suggest("prompt", keys).as_deref(), Some("prompts"));
        assert_eq!(suggest("zzz", keys), None);
        assert_eq!(
            suggest("SmolLM", ["qwen2.5-coder-0.5b", "smollm2-135m"]).as_deref(),
            Some("smollm2-135m")
        );
        assert_eq!(
            did_you_mean("tempaltes", keys),
            " (did you mean `templates`?)"
        );
        assert_eq!(did_you_mean("", keys), "");
    }

    #[test]
    fn io_errors_name_the_path() {
        let err = read(Path::new("/nonexistent/rlcd/file")).expect_err("missing");
        assert!(err.is_not_found());
        assert!(
            err.to_string().starts_with("/nonexistent/rlcd/file: "),
            "{err}"
        );
        assert!(std::error::Error::source(&err).is_some());
    }
}
