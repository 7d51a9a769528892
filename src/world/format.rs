//! The text format of dialogues and of the built-in world's models: the paper's
//! `\n\nHuman: …\n\nAssistant:` turns (§3), the special tokens world documents are wrapped in,
//! and the speaker tags that end a sampled turn (§4.2).

use serde::{Deserialize, Serialize};

/// The beginning-of-sequence token every world document starts with.
pub const BOS: &str = "<|bos|>";

/// The end-of-sequence token every world document ends with.
pub const EOS: &str = "<|eos|>";

/// The padding token of world tokenizers.
pub const PAD: &str = "<|pad|>";

/// Text after a judge question where the answer letter follows (the answer lead of the RLAIF
/// scoring prompt, paper Appendix B): LM judges read the next-token logits of "A" and "B" here.
pub const ANSWER_LEAD: &str = "\n\nThe answer is: (";

/// Where a sampled turn ends: the next speaker tag (paper §4.2).
pub const STOP: [&str; 2] = ["\n\nHuman", "\n\nAssistant"];

/// [`STOP`] as owned strings, for generation options.
pub fn stop_strings() -> Vec<String> {
    STOP.iter().map(|s| s.to_string()).collect()
}

/// Which part of a prompt set a dialogue belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Used to simulate preference data and to train.
    Train,
    /// Held out for evaluation.
    Test,
}

/// One prompt: a dialogue ending with a human turn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dialogue {
    /// Stable identifier (seeds derive from it).
    pub id: String,
    /// Train or test.
    pub split: Split,
    /// Turns, alternating human, assistant, …, human (odd count).
    pub turns: Vec<String>,
}

/// A prompt in the dialogue format of [`STOP`]'s tags read back into its turns:
/// `"\n\nHuman: t0\n\nAssistant (note): t1\n\nHuman: t2\n\nAssistant (note): lead"`, the
/// shape every contrast template renders (a note is an RLCD affix in an assistant tag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaggedDialogue {
    /// The turns before the final assistant tag, alternating human, assistant, …, human.
    pub turns: Vec<TaggedTurn>,
    /// The final assistant tag's note, if it has one.
    pub note: Option<String>,
    /// Text after the final assistant tag (e.g. an outline's opening), without the space
    /// after the colon.
    pub lead: String,
}

/// One turn of a [`TaggedDialogue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaggedTurn {
    /// Whether the human speaks (else the assistant).
    pub human: bool,
    /// The assistant tag's note, if it has one.
    pub note: Option<String>,
    /// The turn's text, without the space after the colon.
    pub text: String,
}

/// A speaker tag in dialogue text: `\n\nHuman:`, `\n\nAssistant:` or
/// `\n\nAssistant (note):`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpeakerTag {
    /// Byte offset of the tag's leading `\n\n`.
    pub start: usize,
    /// Byte offset just after the tag's colon, where the turn's text starts.
    pub body: usize,
    /// Whether the human speaks (else the assistant).
    pub human: bool,
    /// An assistant tag's note, if it has one.
    pub note: Option<String>,
}

/// The speaker tags of `text`, in order.
pub fn speaker_tags(text: &str) -> Vec<SpeakerTag> {
    let mut tags = Vec::new();
    let mut at = 0;
    while let Some(found) = text[at..].find("\n\n") {
        let start = at + found;
        let rest = &text[start + 2..];
        let tag = if let Some(after) = rest.strip_prefix("Human:") {
            Some((true, None, after))
        } else if let Some(after) = rest.strip_prefix("Assistant:") {
            Some((false, None, after))
        } else if let Some(noted) = rest.strip_prefix("Assistant (")
            && let Some(close) = noted.find("):")
            && !noted[..close].contains('\n')
        {
            Some((false, Some(noted[..close].to_string()), &noted[close + 2..]))
        } else {
            None
        };
        at = match tag {
            Some((human, note, after)) => {
                let body = text.len() - after.len();
                tags.push(SpeakerTag {
                    start,
                    body,
                    human,
                    note,
                });
                body
            }
            None => start + 1,
        };
    }
    tags
}

/// Reads a prompt back into its turns; `None` when it is not a dialogue that starts with a
/// human tag, alternates speakers and ends with an assistant tag.
pub fn tagged_dialogue(text: &str) -> Option<TaggedDialogue> {
    let tags = speaker_tags(text);
    if tags.first()?.start != 0 {
        return None;
    }
    let strip = |s: &str| s.strip_prefix(' ').unwrap_or(s).to_string();
    let mut turns = Vec::with_capacity(tags.len());
    for (i, tag) in tags.iter().enumerate() {
        if tag.human != (i % 2 == 0) {
            return None;
        }
        let end = tags.get(i + 1).map_or(text.len(), |next| next.start);
        turns.push(TaggedTurn {
            human: tag.human,
            note: tag.note.clone(),
            text: strip(&text[tag.body..end]),
        });
    }
    let last = turns.pop()?;
    if last.human {
        return None;
    }
    Some(TaggedDialogue {
        turns,
        note: last.note,
        lead: last.text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contrast_prompt_reads_back_into_turns_notes_and_lead() {
        let text = "\n\nHuman: Hi\n\nthere\n\nAssistant (rude response): Go away.\n\nHuman: Why?\n\nAssistant (kind response): Here is a possible outline:\n1.";
        let d = tagged_dialogue(text).unwrap();
        assert_eq!(d.turns.len(), 3);
        assert_eq!(d.turns[0].text, "Hi\n\nthere");
        assert!(d.turns[0].human && !d.turns[1].human && d.turns[2].human);
        assert_eq!(d.turns[1].note.as_deref(), Some("rude response"));
        assert_eq!(d.turns[1].text, "Go away.");
        assert_eq!(d.turns[2].text, "Why?");
        assert_eq!(d.note.as_deref(), Some("kind response"));
        assert_eq!(d.lead, "Here is a possible outline:\n1.");
        let plain = tagged_dialogue("\n\nHuman: Hi\n\nAssistant:").unwrap();
        assert_eq!((plain.note, plain.lead.as_str()), (None, ""));
    }

    #[test]
    fn text_that_is_not_a_dialogue_is_refused() {
        assert!(tagged_dialogue("Consider a conversation").is_none());
        assert!(tagged_dialogue("\n\nHuman: Hi").is_none());
        assert!(tagged_dialogue("\n\nAssistant: Hi\n\nHuman: x\n\nAssistant:").is_none());
        assert!(tagged_dialogue("intro\n\nHuman: Hi\n\nAssistant:").is_none());
        assert!(tagged_dialogue("\n\nHuman: a\n\nHuman: b\n\nAssistant:").is_none());
    }
}
