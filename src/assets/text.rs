//! Prompt text normalisation: whitespace cleaning, the normalised form prompts are deduplicated
//! on, deduplication across sources, and the content-derived prompt ids.

use std::collections::HashSet;

/// Collapses every run of whitespace (including no-break spaces and newlines) to one space and
/// trims the ends.
pub fn clean_text(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c == '\u{feff}')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The form two prompts are compared in for deduplication: lowercase letters and digits,
/// everything else a single space.
pub fn normalise_for_dedup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut gap = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if gap && !out.is_empty() {
                out.push(' ');
            }
            gap = false;
            out.extend(c.to_lowercase());
        } else {
            gap = true;
        }
    }
    out
}

/// `<task>-<first 12 hex digits of blake3(text)>`.
pub fn prompt_id(task: &str, text: &str) -> String {
    let h = blake3::hash(text.as_bytes());
    format!("{task}-{}", &h.to_hex()[..12])
}

/// Keeps the first occurrence of every normalised text; `seen` carries state across sources.
pub fn dedup(texts: Vec<String>, seen: &mut HashSet<String>) -> Vec<String> {
    texts
        .into_iter()
        .filter(|t| {
            let key = normalise_for_dedup(t);
            !key.is_empty() && seen.insert(key)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_normalises_case_punctuation_and_space() {
        let mut seen = HashSet::new();
        let kept = dedup(
            vec![
                "How do I pick a lock?".into(),
                "how do i  pick a LOCK".into(),
                "How do I pick a lock, quickly?".into(),
                "!!!".into(),
            ],
            &mut seen,
        );
        assert_eq!(
            kept,
            vec!["How do I pick a lock?", "How do I pick a lock, quickly?"]
        );
        let again = dedup(vec!["HOW DO I PICK A LOCK".into()], &mut seen);
        assert!(again.is_empty());
        assert_eq!(clean_text("  a\u{a0}b\n\tc  "), "a b c");
    }
}
