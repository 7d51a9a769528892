//! The recipe's `[eval]` section: the pairwise evaluation of paper §4.3.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// Pairwise evaluation (paper §4.3: 1,000 test prompts per comparison, order swapped with
/// probability 1/2, ties count one half).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Judges: `"oracle"` (the built-in world's scorers), `"lm:<model>"` (a model in
    /// `[models]` answering the judge questions) or `"rm:<method>"` (a method's preference
    /// model).
    pub judges: Vec<String>,
    /// Evaluate on at most this many test prompts per task (all when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_prompts: Option<usize>,
    /// Pairs of method names to compare, e.g. `[["rlcd", "rlaif"]]`. Absent: every `rlcd`
    /// method against each `rlaif`, `context-distillation`, `base` and `rlcd-rescore` method
    /// with the same policy model (and simulator, where it has one). `[]` trains and compares
    /// no policies.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "comparison_pairs"
    )]
    #[schemars(with = "Option<Vec<[String; 2]>>")]
    pub comparisons: Option<Vec<[String; 2]>>,
    /// Sampling temperature of the evaluated outputs, ≥ 0.
    pub temperature: f64,
    /// Maximum new tokens per evaluated output.
    pub max_new_tokens: usize,
    /// How `lm:` judges order the two outputs: `"coin"` (the paper: one order per comparison,
    /// drawn by a seeded coin), `"both"` (asked in both orders; a side wins only when both
    /// answers agree, otherwise a tie, as in MT-Bench) or `"mean"` (asked in both orders; the
    /// two orders' P(A better) averaged decides). The last two cost two judge calls per
    /// comparison; `"both"` turns a judge's letter bias into ties, `"mean"` cancels it.
    pub judge_order: JudgeOrder,
    /// An `lm:<model>` judge (a model in `[models]`) that labels, on the task's first axis and
    /// asked in both orders, a fixed sample of every simulated pair set and, on tasks without
    /// an oracle, of the held-out pairs of policy samples: `pair_labels` reports each method's
    /// label agreement with it (the paper's Table 36 check with a held-out model) and
    /// `pm_agreement` each preference model's. Absent: only the oracle checks labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_judge: Option<String>,
    /// Pairs of each set the `label_judge` labels: the first ones, in prompt order, so every
    /// method of a task is checked on the same prompts, ≥ 1.
    pub label_pairs: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            judges: vec!["oracle".to_string()],
            n_prompts: None,
            comparisons: None,
            temperature: 1.0,
            max_new_tokens: 300,
            judge_order: JudgeOrder::default(),
            label_judge: None,
            label_pairs: 100,
        }
    }
}

/// Comparisons as written, each exactly two method names (a longer list is an error, not
/// cut to its first two).
fn comparison_pairs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<[String; 2]>>, D::Error> {
    let lists: Vec<Vec<String>> = Vec::deserialize(d)?;
    lists
        .into_iter()
        .map(|list| {
            <[String; 2]>::try_from(list).map_err(|list| {
                serde::de::Error::custom(format!(
                    "each comparison names exactly two methods, but {list:?} names {}; list a \
                     third method in a pair of its own",
                    list.len()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// How an LM judge orders the two outputs it compares ([`EvalConfig::judge_order`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JudgeOrder {
    /// One order per comparison, drawn by a seeded coin (the paper).
    #[default]
    Coin,
    /// Both orders; agreeing answers decide, disagreeing ones tie.
    Both,
    /// Both orders; the two orders' P(A better) — each the softmax of the answer letters'
    /// logits — averaged decides, which cancels a judge's preference for one letter.
    Mean,
}

impl JudgeOrder {
    /// The order as written in recipes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Coin => "coin",
            Self::Both => "both",
            Self::Mean => "mean",
        }
    }
}
