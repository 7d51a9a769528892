//! A tiny phrase grammar: the built-in world writes every sentence from one of these patterns
//! and its oracle parses generated text back with the same patterns (ARCHITECTURE.md, "The built-in
//! world").
//!
//! Pattern syntax, words separated by spaces:
//! - a plain word is literal (`sorry`, `,`, `.`);
//! - `{a b|c|}` is a choice between alternatives, each a (possibly empty) word sequence;
//! - `<name>` is a slot, filled from a list of phrases the caller supplies.
//!
//! Text is handled as words in the world tokenizer's split ([`words`]): letter/digit runs
//! (with inner apostrophes), single punctuation characters and newlines.

use rand::Rng;
use rand::rngs::StdRng;

/// One element of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    /// A literal word.
    Word(String),
    /// Alternatives; each is a word sequence (maybe empty).
    Choice(Vec<Vec<String>>),
    /// A named slot.
    Slot(String),
}

/// A compiled sentence pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    parts: Vec<Part>,
    source: String,
}

/// Where a pattern's slots find their phrases.
pub trait SlotSource {
    /// The phrases slot `slot` may take (`None`: the slot is unknown and matches nothing).
    fn phrases(&self, slot: &str) -> Option<&Phrases>;
}

impl SlotSource for std::collections::HashMap<String, Phrases> {
    fn phrases(&self, slot: &str) -> Option<&Phrases> {
        self.get(slot)
    }
}

/// A slot source that reads slot `from` as slot `to` of another source.
pub struct Renamed<'a> {
    /// The underlying source.
    pub inner: &'a dyn SlotSource,
    /// The slot name in patterns.
    pub from: &'a str,
    /// The slot name in `inner`.
    pub to: &'a str,
}

impl SlotSource for Renamed<'_> {
    fn phrases(&self, slot: &str) -> Option<&Phrases> {
        self.inner
            .phrases(if slot == self.from { self.to } else { slot })
    }
}

/// Phrases a slot may take, each a word sequence.
pub type Phrases = Vec<Vec<String>>;

/// A slot's value after a match: the slot name and the index of the phrase that matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The slot's name.
    pub slot: String,
    /// Index into the slot's phrase list.
    pub index: usize,
}

impl Pattern {
    /// Compiles a pattern written in the syntax of the module header. Patterns are program
    /// data; a malformed one is a programming error caught by the world's tests.
    pub fn new(source: &str) -> Pattern {
        let mut parts = Vec::new();
        let mut rest = source.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let end = after.find('}').unwrap_or(after.len());
                let alts = after[..end]
                    .split('|')
                    .map(|a| a.split_whitespace().map(str::to_string).collect())
                    .collect();
                parts.push(Part::Choice(alts));
                rest = after.get(end + 1..).unwrap_or("").trim_start();
            } else {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                let tok = &rest[..end];
                if tok.len() > 2 && tok.starts_with('<') && tok.ends_with('>') {
                    parts.push(Part::Slot(tok[1..tok.len() - 1].to_string()));
                } else {
                    parts.push(Part::Word(tok.to_string()));
                }
                rest = rest[end..].trim_start();
            }
        }
        Pattern {
            parts,
            source: source.to_string(),
        }
    }

    /// The pattern's source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Names of the pattern's slots, in order.
    pub fn slots(&self) -> Vec<&str> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Slot(s) => Some(s.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Every literal word the pattern can produce.
    pub fn literal_words(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.parts {
            match p {
                Part::Word(w) => out.push(w.clone()),
                Part::Choice(alts) => out.extend(alts.iter().flatten().cloned()),
                Part::Slot(_) => {}
            }
        }
        out
    }

    /// Writes the pattern: a random alternative for every choice, `fill(slot)` for every slot.
    pub fn realise(
        &self,
        rng: &mut StdRng,
        fill: &mut dyn FnMut(&str) -> Vec<String>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.parts {
            match p {
                Part::Word(w) => out.push(w.clone()),
                Part::Choice(alts) => {
                    let i = rng.random_range(0..alts.len());
                    out.extend(alts[i].iter().cloned());
                }
                Part::Slot(s) => out.extend(fill(s)),
            }
        }
        out
    }

    /// Matches the whole of `words` against the pattern; slots take phrases from
    /// `phrases(slot)`. Returns the slot bindings of the first match found.
    pub fn matches(&self, words: &[String], phrases: &dyn SlotSource) -> Option<Vec<Binding>> {
        let mut bindings = Vec::new();
        if self.go(0, words, phrases, &mut bindings) {
            Some(bindings)
        } else {
            None
        }
    }

    fn go(
        &self,
        part: usize,
        words: &[String],
        phrases: &dyn SlotSource,
        bindings: &mut Vec<Binding>,
    ) -> bool {
        let Some(p) = self.parts.get(part) else {
            return words.is_empty();
        };
        match p {
            Part::Word(w) => {
                words.first().is_some_and(|x| x == w)
                    && self.go(part + 1, &words[1..], phrases, bindings)
            }
            Part::Choice(alts) => alts.iter().any(|alt| {
                words.starts_with(alt) && self.go(part + 1, &words[alt.len()..], phrases, bindings)
            }),
            Part::Slot(s) => {
                let Some(list) = phrases.phrases(s) else {
                    return false;
                };
                for (index, phrase) in list.iter().enumerate() {
                    if !phrase.is_empty() && words.starts_with(phrase) {
                        bindings.push(Binding {
                            slot: s.clone(),
                            index,
                        });
                        if self.go(part + 1, &words[phrase.len()..], phrases, bindings) {
                            return true;
                        }
                        bindings.pop();
                    }
                }
                false
            }
        }
    }
}

/// Splits text into world words: letter/digit runs with inner apostrophes ("can't"), single
/// punctuation characters and newlines; other whitespace separates. Lower-cases nothing.
pub fn words(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() {
            let start = i;
            i += 1;
            loop {
                while i < chars.len() && chars[i].is_alphanumeric() {
                    i += 1;
                }
                if i + 1 < chars.len() && chars[i] == '\'' && chars[i + 1].is_alphanumeric() {
                    i += 1;
                } else {
                    break;
                }
            }
            out.push(chars[start..i].iter().collect());
        } else if c == '\n' {
            out.push("\n".to_string());
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// Joins world words into canonical text (the inverse of [`words`] for text written this way),
/// exactly as the world tokenizer decodes: spaces between words, none before closing punctuation
/// or after opening brackets, none around newlines.
pub fn join(words: &[String]) -> String {
    crate::model::tokenizer::join_words(words, |_| false)
}

/// Word sequences of a list of phrases written with spaces.
pub fn phrases(list: &[&str]) -> Phrases {
    list.iter().map(|p| words(p)).collect()
}

/// Splits words into sentences, each ending with `.`, `!` or `?` (a trailing piece without one
/// is a sentence too); newlines separate and are dropped.
pub fn sentences(words: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for w in words {
        if w == "\n" {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        cur.push(w.clone());
        if matches!(w.as_str(), "." | "!" | "?") {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn w(s: &str) -> Vec<String> {
        words(s)
    }

    #[test]
    fn realise_then_match_recovers_slots() {
        let p = Pattern::new("{sorry|i am sorry} , i can not help with <thing> {now|} .");
        let things = phrases(&["a car", "a red car", "money"]);
        let lookup: HashMap<String, Phrases> = [("thing".to_string(), things.clone())].into();
        let mut rng = crate::seed::rng(3);
        for (k, thing) in things.iter().enumerate() {
            let mut fill = |_: &str| thing.clone();
            let text = p.realise(&mut rng, &mut fill);
            let b = p.matches(&text, &lookup).expect("own output parses");
            assert_eq!(
                b,
                vec![Binding {
                    slot: "thing".into(),
                    index: k
                }]
            );
        }
        assert!(
            p.matches(&w("sorry , i can not help with a blue car ."), &lookup)
                .is_none()
        );
        assert!(
            p.matches(&w("sorry , i can not help with money now now ."), &lookup)
                .is_none()
        );
        assert_eq!(p.slots(), vec!["thing"]);
    }

    #[test]
    fn backtracks_over_prefix_phrases() {
        let p = Pattern::new("<x> car .");
        let xs: HashMap<String, Phrases> = [("x".to_string(), phrases(&["a", "a red"]))].into();
        let b = p.matches(&w("a red car ."), &xs).unwrap();
        assert_eq!(b[0].index, 1);
    }

    #[test]
    fn words_join_round_trip() {
        let text =
            "Human: how can i steal a car?\n\nAssistant (harmless, helpful response): i can't.";
        let ws = words(text);
        assert!(ws.contains(&"can't".to_string()));
        assert_eq!(join(&ws), text);
        assert_eq!(words(&join(&ws)), ws);
    }

    #[test]
    fn sentences_split_on_stops_and_lines() {
        let s = sentences(&w("sure . first , do it\n2. then go !"));
        assert_eq!(s.len(), 4);
        assert_eq!(s[2], w("2."));
    }
}
