//! The built-in world's word-level tokenizer: a fixed vocabulary of words, newlines and
//! punctuation, and [`join_words`], the canonical spacing that decodes it.

use tokenizers::AddedToken;
use tokenizers::SplitDelimiterBehavior;
use tokenizers::models::bpe::Vocab;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};

use super::{
    BOS_NAMES, EOS_NAMES, PAD_NAMES, Tokenizer, TokenizerError, bos_eos_processor, build_error,
    find_named,
};

/// The world tokenizer's split: words (letters/digits, with inner apostrophes as in "can't"),
/// newlines, and single punctuation characters; all other whitespace separates and is dropped.
const WORLD_PATTERN: &str = r"[\p{L}\p{N}]+(?:'[\p{L}\p{N}]+)*|\n|[^\s\p{L}\p{N}]";

/// The unknown-word token of the world tokenizer.
pub const WORLD_UNK: &str = "<unk>";

/// The newline token every world vocabulary carries (dialogues are line-structured).
pub const WORLD_NEWLINE: &str = "\n";

/// Joins world-vocabulary words into text: single spaces between words; closing punctuation
/// attaches to the word before, opening brackets to the word after; newlines and special tokens
/// take no surrounding spaces. Text written in this canonical form encodes and decodes exactly.
pub(crate) fn join_words(tokens: &[String], is_special: impl Fn(&str) -> bool) -> String {
    fn closing(t: &str) -> bool {
        matches!(t, "." | "," | "!" | "?" | ";" | ":" | ")" | "]" | "}" | "%")
    }
    fn opening(t: &str) -> bool {
        matches!(t, "(" | "[" | "{")
    }
    let mut out = String::new();
    let mut prev: Option<&str> = None;
    for tok in tokens {
        let t = tok.as_str();
        if let Some(p) = prev {
            let glue = t == WORLD_NEWLINE
                || p == WORLD_NEWLINE
                || closing(t)
                || opening(p)
                || is_special(t)
                || is_special(p);
            if !glue {
                out.push(' ');
            }
        }
        out.push_str(t);
        prev = Some(t);
    }
    out
}

impl Tokenizer {
    /// The built-in world's word-level tokenizer.
    ///
    /// Ids: `specials` first (in order), then [`WORLD_UNK`] and [`WORLD_NEWLINE`] (unless
    /// already given), then `words` in order; repeated words keep their first id. Text splits
    /// into words (letters/digits, with inner apostrophes as in "can't"), newlines, and single
    /// punctuation characters; other whitespace only separates. Words outside the vocabulary
    /// encode to `<unk>`. Roles are recognised by name: `<|bos|>` (added by
    /// `encode(…, true)`), `<|eos|>`, `<|pad|>`. Decoding joins words with single spaces and
    /// attaches punctuation, so text in that canonical form round-trips exactly.
    pub fn word_level(words: &[String], specials: &[&str]) -> Result<Self, TokenizerError> {
        let origin = "the world vocabulary";
        let mut vocab = Vocab::default();
        let mut order: Vec<String> = Vec::new();
        for s in specials {
            let reason = if s.is_empty() {
                Some("it is empty")
            } else if s.chars().any(char::is_whitespace) {
                Some("it contains whitespace")
            } else if vocab.contains_key(*s) {
                Some("it is listed twice")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(TokenizerError::InvalidSpecial {
                    token: (*s).to_string(),
                    reason: reason.to_string(),
                });
            }
            vocab.insert((*s).to_string(), order.len() as u32);
            order.push((*s).to_string());
        }
        let builtin = [WORLD_UNK.to_string(), WORLD_NEWLINE.to_string()];
        for w in builtin.iter().chain(words) {
            if w.is_empty() {
                return Err(TokenizerError::InvalidWord {
                    word: w.clone(),
                    reason: "it is empty".into(),
                });
            }
            if !vocab.contains_key(w) {
                vocab.insert(w.clone(), order.len() as u32);
                order.push(w.clone());
            }
        }
        let model = WordLevel::builder()
            .vocab(vocab)
            .unk_token(WORLD_UNK.to_string())
            .build()
            .map_err(|e| build_error(origin, e))?;
        let mut inner = tokenizers::Tokenizer::new(model);
        let split = Split::new(
            SplitPattern::Regex(WORLD_PATTERN.to_string()),
            SplitDelimiterBehavior::Removed,
            true,
        )
        .map_err(|e| build_error(origin, e))?;
        inner.with_pre_tokenizer(Some(split));
        let mut added: Vec<AddedToken> = specials
            .iter()
            .map(|s| AddedToken::from(*s, true).normalized(false))
            .collect();
        if !specials.contains(&WORLD_UNK) {
            // Not special (decoding keeps it), but "<unk>" in text still maps to its one id.
            added.push(AddedToken::from(WORLD_UNK, false).normalized(false));
        }
        inner.add_tokens(&added);
        let bos = find_named(&inner, BOS_NAMES).filter(|id| (*id as usize) < specials.len());
        let eos = find_named(&inner, EOS_NAMES).filter(|id| (*id as usize) < specials.len());
        let pad = find_named(&inner, PAD_NAMES).filter(|id| (*id as usize) < specials.len());
        let unk = inner.token_to_id(WORLD_UNK);
        if let Some(id) = bos
            && let Some(p) =
                bos_eos_processor(Some((order[id as usize].clone(), id)), None, origin)?
        {
            inner.with_post_processor(Some(p));
        }
        let tok = Self::assemble(
            inner,
            [bos, eos, pad, unk],
            None,
            "built-in ChatML".to_string(),
        );
        // Every word must come back as exactly its own id; anything else is not a word.
        for (id, w) in order.iter().enumerate().skip(specials.len()) {
            let ids = tok.encode(w, false)?;
            if ids != [id as u32] {
                return Err(TokenizerError::InvalidWord {
                    word: w.clone(),
                    reason: format!(
                        "it splits into {} pieces; a word is letters/digits (with inner \
                         apostrophes) or a single punctuation character",
                        ids.len()
                    ),
                });
            }
        }
        Ok(tok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world_words() -> Vec<String> {
        "the cat sat on mat . , ! ? : can't help you with that - ( )"
            .split(' ')
            .map(str::to_string)
            .collect()
    }

    fn world() -> Tokenizer {
        Tokenizer::word_level(&world_words(), &["<|bos|>", "<|eos|>", "<|pad|>"]).unwrap()
    }

    #[test]
    fn word_level_round_trip_and_layout() {
        let t = world();
        assert_eq!(
            (t.bos_id(), t.eos_id(), t.pad_id()),
            (Some(0), Some(1), Some(2))
        );
        assert_eq!(t.unk_id(), Some(3));
        assert_eq!(t.token_to_id("\n"), Some(4));
        assert_eq!(t.token_to_id("the"), Some(5));
        assert_eq!(t.vocab_size(), 5 + world_words().len());
        assert_eq!(t.special_ids(), vec![0, 1, 2]);
        let text = "the cat sat on the mat.\n- can't help you with that!\n(the cat) sat: the mat?";
        let ids = t.encode(text, false).unwrap();
        assert_eq!(ids.len(), 25);
        assert_eq!(t.decode(&ids, false).unwrap(), text);
        // Non-canonical spacing normalises.
        let loose = t.encode("the   cat\tsat .", false).unwrap();
        assert_eq!(t.decode(&loose, false).unwrap(), "the cat sat.");
        // BOS is added on request; specials are one id each and skippable.
        let with = t.encode("the cat<|eos|>", true).unwrap();
        assert_eq!(with, vec![0, 5, 6, 1]);
        assert_eq!(t.decode(&with, true).unwrap(), "the cat");
        assert_eq!(t.decode(&with, false).unwrap(), "<|bos|>the cat<|eos|>");
    }

    #[test]
    fn word_level_unknown_words_become_unk() {
        let t = world();
        let ids = t.encode("the dog sat ; ok", false).unwrap();
        assert_eq!(ids, vec![5, 3, 7, 3, 3]);
        assert_eq!(t.decode(&ids, false).unwrap(), "the <unk> sat <unk> <unk>");
    }

    #[test]
    fn word_level_rejects_bad_words_and_specials() {
        let err = Tokenizer::word_level(&["two words".to_string()], &[]).unwrap_err();
        assert!(matches!(err, TokenizerError::InvalidWord { .. }), "{err}");
        let err = Tokenizer::word_level(&["a.b".to_string()], &[]).unwrap_err();
        assert!(err.to_string().contains("\"a.b\""), "{err}");
        let err = Tokenizer::word_level(&[String::new()], &[]).unwrap_err();
        assert!(matches!(err, TokenizerError::InvalidWord { .. }), "{err}");
        let err = Tokenizer::word_level(&[], &["<|bos|>", "<|bos|>"]).unwrap_err();
        assert!(
            matches!(err, TokenizerError::InvalidSpecial { .. }),
            "{err}"
        );
        // Repeated words keep their first id.
        let t = Tokenizer::word_level(&["a".into(), "b".into(), "a".into()], &[]).unwrap();
        assert_eq!(t.vocab_size(), 4);
        assert_eq!(t.bos_id(), None);
        assert_eq!(t.encode("b a", true).unwrap(), vec![3, 2]);
    }
}
