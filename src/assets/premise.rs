//! Story premises for the outlining task: a small sentence splitter that knows common
//! abbreviations and quoted exclamations, and the rule that turns a story into a 10–60 word
//! premise.

use super::text::clean_text;

/// Words ending in `.` that do not end a sentence (compared lowercase, without the dot).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "mt", "vs", "etc", "prof", "gen", "capt", "col",
    "lt", "sgt", "no", "e.g", "i.e", "u.s", "a.m", "p.m",
];

/// Splits text into sentences at `.`, `!` or `?` (plus closing quotes or brackets) followed by
/// whitespace or the end. Common abbreviations (`Mr.`, `e.g.`) do not end a sentence, nor does a
/// quoted `!`/`?` followed by a lowercase word (`"Stop!" said the king.`).
pub fn split_sentences(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '.' | '!' | '?') {
            let mut j = i + 1;
            while j < chars.len()
                && matches!(
                    chars[j],
                    '.' | '!' | '?' | '"' | '\'' | '”' | '’' | ')' | ']'
                )
            {
                j += 1;
            }
            let at_end = j >= chars.len();
            let space_follows = !at_end && chars[j].is_whitespace();
            if at_end || space_follows {
                let next_word = chars[j..].iter().find(|c| !c.is_whitespace());
                // `"Stop!" said the king.`: a quoted exclamation or question followed by a
                // lowercase word continues the sentence; elsewhere lowercase starts are common in
                // the source stories and still begin a new sentence.
                let quote_closed = chars[i + 1..j]
                    .iter()
                    .any(|c| matches!(c, '"' | '\'' | '”' | '’'));
                let lower_next =
                    quote_closed && c != '.' && next_word.is_some_and(|c| c.is_lowercase());
                let word: String = chars[start..i]
                    .iter()
                    .rev()
                    .take_while(|c| !c.is_whitespace())
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                let word = word
                    .trim_start_matches(['"', '\'', '(', '“', '‘'])
                    .to_lowercase();
                let abbrev = c == '.' && ABBREVIATIONS.contains(&word.as_str());
                if at_end || (!lower_next && !abbrev) {
                    let s: String = chars[start..j].iter().collect();
                    let s = s.trim();
                    if !s.is_empty() {
                        out.push(s.to_string());
                    }
                    start = j;
                }
            }
            i = j;
        } else {
            i += 1;
        }
    }
    let tail: String = chars[start.min(chars.len())..].iter().collect();
    let tail = tail.trim();
    if !tail.is_empty() {
        out.push(tail.to_string());
    }
    out
}

/// Minimum and maximum premise length in words.
pub const PREMISE_WORDS: (usize, usize) = (10, 60);

/// A story premise from a story: its first sentence, or its first two when the first is shorter
/// than 10 words; `None` unless the result has 10–60 words.
pub fn story_premise(story: &str) -> Option<String> {
    let story = clean_text(story);
    let sentences = split_sentences(&story);
    let first = sentences.first()?;
    let words = |s: &str| s.split_whitespace().count();
    let premise = if words(first) < PREMISE_WORDS.0 && sentences.len() > 1 {
        format!("{first} {}", sentences[1])
    } else {
        first.clone()
    };
    let premise = balance_quotes(premise);
    let n = words(&premise);
    (PREMISE_WORDS.0..=PREMISE_WORDS.1)
        .contains(&n)
        .then_some(premise)
}

/// Closes a double quote left open where the premise was cut (`He said, "Go home.` gains a
/// closing `"`); a lone stray opening quote is dropped instead.
fn balance_quotes(text: String) -> String {
    let count = text.chars().filter(|&c| c == '"').count();
    if count.is_multiple_of(2) {
        text
    } else if count == 1 && text.starts_with('"') {
        text[1..].trim_start().to_string()
    } else {
        format!("{text}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn premise_extraction() {
        let story = "An ox came to a pool. As he splashed heavily into the water, he crushed a young frog. The end.";
        assert_eq!(
            story_premise(story).as_deref(),
            Some(
                "An ox came to a pool. As he splashed heavily into the water, he crushed a young frog."
            )
        );
        let story =
            "Mr. Smith walked to the old mill by the river every single morning. He fished.";
        assert_eq!(
            story_premise(story).as_deref(),
            Some("Mr. Smith walked to the old mill by the river every single morning.")
        );
        let s = split_sentences("\"Stop!\" said the king. She ran away? Yes. the end");
        assert_eq!(
            s,
            vec![
                "\"Stop!\" said the king.",
                "She ran away?",
                "Yes.",
                "the end"
            ]
        );
        assert_eq!(story_premise("Too short. Also short."), None);
        assert_eq!(
            story_premise("A peacock met a crane and said, \"So sorry for you. You are grey.\"")
                .as_deref(),
            Some("A peacock met a crane and said, \"So sorry for you.\"")
        );
        assert_eq!(
            story_premise("\"On a ship there was a couple who had to run to a life boat.")
                .as_deref(),
            Some("On a ship there was a couple who had to run to a life boat.")
        );
        let long = format!("{}.", vec!["word"; 61].join(" "));
        assert_eq!(story_premise(&long), None);
        let ok = format!("{}.", vec!["word"; 60].join(" "));
        assert_eq!(story_premise(&ok), Some(ok.clone()));
    }
}
