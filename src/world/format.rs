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
