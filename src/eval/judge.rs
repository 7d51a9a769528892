//! Pairwise judges (paper §4.3): which of two outputs for the same prompt is better on an axis.
//!
//! - `oracle`: the built-in world's scorer on the axis (the "human"); equal scores tie.
//! - `rm:<method>`: a preference model's scores; equal scores tie.
//! - `lm:<model>`: the paper's GPT-4 protocol with a language model — the axis's judge question
//!   (`judge/*.j2`) with the outputs in an order swapped by a seeded coin per example, then
//!   [`ANSWER_LEAD`]; the verdict compares the next-token logits of "A" and "B". An undecidable
//!   answer (equal or non-finite logits) counts ½ to each side. With `[eval] judge_order =
//!   "both"` every comparison is asked in both orders and only agreeing answers decide
//!   (MT-Bench's position-bias control); disagreeing ones tie. With `"mean"` it is asked in
//!   both orders and the two orders' P(A better) (softmax over the two letters) averaged
//!   decides, so a constant preference for one letter cancels.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::model::pm::{Pm, PmError, score_outputs};
use crate::model::sampling::next_token_logits;
use crate::model::{Lm, ModelError, PolicyFormat, Truncate};
use crate::recipe::eval::JudgeOrder;
use crate::seed;
use crate::templates::{TemplateError, Templates};
use crate::world::{Task, World};

pub use crate::world::format::ANSWER_LEAD;

/// A judge's verdict on one comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Output A is better.
    A,
    /// Output B is better.
    B,
    /// Neither (equal, or the judge's answer could not be read): ½ to each side.
    Tie,
}

impl Verdict {
    /// The outcome for A as [`crate::eval::winrate::WinCounts::record`] takes it.
    pub fn outcome(self) -> Option<bool> {
        match self {
            Verdict::A => Some(true),
            Verdict::B => Some(false),
            Verdict::Tie => None,
        }
    }

    /// The verdict with A and B exchanged.
    pub fn swapped(self) -> Verdict {
        match self {
            Verdict::A => Verdict::B,
            Verdict::B => Verdict::A,
            Verdict::Tie => Verdict::Tie,
        }
    }

    /// Two answers on the same comparison (asked in both orders) combined: the shared verdict
    /// when they agree, a tie otherwise.
    pub fn agreed(first: Verdict, second: Verdict) -> Verdict {
        if first == second { first } else { Verdict::Tie }
    }

    /// The verdict of the probabilities that A is better from the two orders, averaged (equal
    /// to ½, or non-finite, ties).
    pub fn mean(p_first: f64, p_second: f64) -> Verdict {
        Verdict::from_scores((p_first + p_second) / 2.0, 0.5)
    }

    /// The verdict of two scores (higher is better; equal or non-finite ties).
    pub fn from_scores(a: f64, b: f64) -> Verdict {
        if !(a.is_finite() && b.is_finite()) || a == b {
            Verdict::Tie
        } else if a > b {
            Verdict::A
        } else {
            Verdict::B
        }
    }
}

/// One comparison: two outputs for the same dialogue.
#[derive(Clone, Copy, Debug)]
pub struct JudgeItem<'a> {
    /// Id of the dialogue (seeds the order swap).
    pub prompt_id: &'a str,
    /// The dialogue turns.
    pub turns: &'a [String],
    /// The plain prompt p.
    pub prompt: &'a str,
    /// Output of method A.
    pub output_a: &'a str,
    /// Output of method B.
    pub output_b: &'a str,
}

/// Why a judge failed.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The judge model failed.
    #[error("judge: {0}")]
    Model(#[from] ModelError),
    /// A judge template failed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The preference model failed.
    #[error(transparent)]
    Pm(#[from] PmError),
    /// The judge's tokenizer has no single token for an answer letter.
    #[error(
        "the judge's tokenizer encodes \"{letter}\" as several tokens\n  fix: use a judge model whose vocabulary has the letters A and B"
    )]
    Letter {
        /// The letter.
        letter: &'static str,
    },
}

/// Oracle verdicts on `axis` of `task` (the world's scorer; equal scores tie), each with the
/// score gap.
pub fn judge_oracle(world: &World, task: Task, axis: &str, items: &[JudgeItem<'_>]) -> Vec<Judged> {
    items
        .iter()
        .map(|it| {
            let score = |text: &str| {
                world
                    .score(task, it.turns, text)
                    .ok()
                    .and_then(|s| s.axis(axis))
                    .unwrap_or(crate::world::INCOHERENT)
            };
            let (a, b) = (score(it.output_a), score(it.output_b));
            Judged {
                gap: Some(a - b),
                ..Verdict::from_scores(a, b).into()
            }
        })
        .collect()
}

/// Preference-model verdicts (higher score wins; equal scores tie).
pub fn judge_rm<B: Backend>(
    pm: &Pm<B>,
    items: &[JudgeItem<'_>],
    batch_size: usize,
) -> Result<Vec<Verdict>, JudgeError> {
    let pairs: Vec<(&str, &str)> = items
        .iter()
        .map(|it| (it.prompt, it.output_a))
        .chain(items.iter().map(|it| (it.prompt, it.output_b)))
        .collect();
    let scores = score_outputs(pm, &pairs, batch_size)?;
    let (a, b) = scores.split_at(items.len());
    Ok(a.iter()
        .zip(b)
        .map(|(&x, &y)| Verdict::from_scores(x, y))
        .collect())
}

/// Whether the LM judge sees the outputs of comparison `prompt_id` in swapped order (B first):
/// a coin per example, seeded by the judge seed and the dialogue id.
pub fn swapped(seed: u64, prompt_id: &str) -> bool {
    seed::derive(seed, &["judge-swap", prompt_id]) & 1 == 1
}

/// The verdict of the answer-letter logits: the larger wins; equal or non-finite logits leave
/// the answer unreadable, a tie.
pub fn verdict_from_logits(logit_a: f64, logit_b: f64) -> Verdict {
    Verdict::from_scores(logit_a, logit_b)
}

/// P(A better) of an answer whose letter logits differ by `margin` (A's minus B's): the
/// softmax over the two letters, sigmoid(margin).
pub fn prob_a(margin: f64) -> f64 {
    1.0 / (1.0 + (-margin).exp())
}

/// The token id of answer letter `letter` in the judge's vocabulary.
pub fn letter_id<B: Backend>(lm: &Lm<B>, letter: &'static str) -> Result<u32, JudgeError> {
    if let Some(id) = lm.tokenizer.token_to_id(letter) {
        return Ok(id);
    }
    match lm.encode(letter)?.as_slice() {
        [id] => Ok(*id),
        _ => Err(JudgeError::Letter { letter }),
    }
}

/// One item's judgement: the verdict, and when the judge was asked in both orders, each
/// order's answer mapped back to the unswapped order (A's output shown first, then second).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Judged {
    /// The verdict counted in the win rate.
    pub verdict: Verdict,
    /// The answers with A shown first and with B shown first (both-order LM judges only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<[Verdict; 2]>,
    /// The score of A's output minus B's on the axis (the oracle only): how far apart the two
    /// outputs are, by which other judges' agreement with it can be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<f64>,
}

impl From<Verdict> for Judged {
    fn from(verdict: Verdict) -> Self {
        Judged {
            verdict,
            orders: None,
            gap: None,
        }
    }
}

/// An LM judge: the axis's judge question (a `judge/*.j2`) rendered with each item's outputs,
/// followed by [`ANSWER_LEAD`], and written for the judge as its `format` says
/// ([`PolicyFormat::question`]). With [`JudgeOrder::Coin`] each item is asked
/// once, swapped where [`swapped`] says; with [`JudgeOrder::Both`] it is asked in both orders
/// and the two answers combine by [`Verdict::agreed`], with [`JudgeOrder::Mean`] by
/// [`Verdict::mean`] of their probabilities.
pub struct LmJudge<'a, B: Backend> {
    /// The judge model.
    pub lm: &'a Lm<B>,
    /// How questions are written for the judge (the world's BOS before them for a world
    /// model, or its chat template).
    pub format: &'a PolicyFormat,
    /// The templates holding the judge questions.
    pub templates: &'a Templates,
    /// One seeded order per item, or both orders.
    pub order: JudgeOrder,
    /// Seed of the order coin.
    pub seed: u64,
    /// Questions scored together.
    pub batch_size: usize,
    /// What happens to a question longer than the judge's context.
    pub truncate: Truncate,
}

impl<B: Backend> LmJudge<'_, B> {
    /// The verdicts of question `template` on `items`, in the unswapped order.
    pub fn verdicts(
        &self,
        template: &str,
        items: &[JudgeItem<'_>],
    ) -> Result<Vec<Verdict>, JudgeError> {
        Ok(self
            .judged(template, items)?
            .into_iter()
            .map(|j| j.verdict)
            .collect())
    }

    /// The verdicts of question `template` on `items`, with both orders' answers when the
    /// judge asks both.
    pub fn judged(
        &self,
        template: &str,
        items: &[JudgeItem<'_>],
    ) -> Result<Vec<Judged>, JudgeError> {
        match self.order {
            JudgeOrder::Coin => {
                let flips: Vec<bool> = items
                    .iter()
                    .map(|it| swapped(self.seed, it.prompt_id))
                    .collect();
                Ok(self
                    .margins(template, items, &flips)?
                    .into_iter()
                    .map(|m| Judged::from(verdict_from_logits(m, 0.0)))
                    .collect())
            }
            JudgeOrder::Both | JudgeOrder::Mean => {
                let first = self.margins(template, items, &vec![false; items.len()])?;
                let second = self.margins(template, items, &vec![true; items.len()])?;
                Ok(first
                    .into_iter()
                    .zip(second)
                    .map(|(m1, m2)| {
                        let (x, y) = (verdict_from_logits(m1, 0.0), verdict_from_logits(m2, 0.0));
                        let verdict = match self.order {
                            JudgeOrder::Mean => Verdict::mean(prob_a(m1), prob_a(m2)),
                            _ => Verdict::agreed(x, y),
                        };
                        Judged {
                            verdict,
                            orders: Some([x, y]),
                            gap: None,
                        }
                    })
                    .collect())
            }
        }
    }

    /// One answer per item, asked with the outputs swapped where `flips` says: the logit of
    /// "A" minus that of "B", mapped back to the unswapped order (positive favours output A).
    fn margins(
        &self,
        template: &str,
        items: &[JudgeItem<'_>],
        flips: &[bool],
    ) -> Result<Vec<f64>, JudgeError> {
        let lm = self.lm;
        let ids = [letter_id(lm, "A")?, letter_id(lm, "B")?];
        let device = lm.model.device();
        let pick = Tensor::<B, 1, Int>::from_data(
            TensorData::new(vec![i64::from(ids[0]), i64::from(ids[1])], [2]),
            &device,
        );
        let room = lm.model.config().max_seq_len;
        let mut out = Vec::with_capacity(items.len());
        let size = self.batch_size.max(1);
        for (chunk, flips) in items.chunks(size).zip(flips.chunks(size)) {
            let prompts = chunk
                .iter()
                .zip(flips)
                .map(|(it, &flip)| {
                    let (first, second) = if flip {
                        (it.output_b, it.output_a)
                    } else {
                        (it.output_a, it.output_b)
                    };
                    let text = self.templates.render(
                        template,
                        minijinja::context! {
                            turns => it.turns,
                            output_a => first,
                            output_b => second,
                        },
                    )?;
                    let question = self
                        .format
                        .question(&lm.tokenizer, &format!("{text}{ANSWER_LEAD}"))
                        .map_err(ModelError::from)?;
                    Ok(lm.encode_prompt(&question, room, self.truncate)?)
                })
                .collect::<Result<Vec<_>, JudgeError>>()?;
            let logits = next_token_logits(&lm.model, &prompts)?.select(1, pick.clone());
            let host = logits
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| ModelError::Data(format!("{e:?}")))?;
            for (ab, &flip) in host.chunks(2).zip(flips) {
                let margin = f64::from(ab[0]) - f64::from(ab[1]);
                out.push(if flip { -margin } else { margin });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_orders_average_their_probabilities() {
        // sigmoid(0) = ½; sigmoid(ln 3) = ¾.
        assert_eq!(prob_a(0.0), 0.5);
        assert!((prob_a(3f64.ln()) - 0.75).abs() < 1e-12);
        // A judge that always leans to the first letter: A shown first, P(A better) = 0.9;
        // B shown first, P(A better) = 0.3. The mean 0.6 decides for A, where `agreed` ties.
        assert_eq!(Verdict::mean(0.9, 0.3), Verdict::A);
        assert_eq!(Verdict::agreed(Verdict::A, Verdict::B), Verdict::Tie);
        assert_eq!(Verdict::mean(0.7, 0.2), Verdict::B);
        assert_eq!(Verdict::mean(0.8, 0.2), Verdict::Tie);
        assert_eq!(Verdict::mean(f64::NAN, 0.2), Verdict::Tie);
    }
}
