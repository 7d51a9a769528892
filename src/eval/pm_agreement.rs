//! Preference-model agreement with trusted labels (paper §4.2, Table 5): a preference model
//! (PM) trained on simulated pairs ranks held-out pairs of independent policy samples; the
//! reference label is the built-in world's oracle, which plays the human annotators. Pairs the
//! oracle ties are left out.

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::sampling::{Sampling, sample};
use super::winrate::{Rate, StatsError};
use crate::model::{Lm, ModelError, PolicyFormat};
use crate::prompts::{Dialogue, contrast_prompts};
use crate::seed;
use crate::templates::{TemplateError, Templates};
use crate::world::{Task, World};

/// Why held-out pairs could not be sampled.
#[derive(Debug, thiserror::Error)]
pub enum HeldoutError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A template failed to render.
    #[error(transparent)]
    Template(#[from] TemplateError),
}

/// Two independent samples of the policy for one held-out prompt, scored by the oracle on
/// world tasks (on other tasks a label judge's verdicts label them, see `pair_judge`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldoutPair {
    /// The dialogue's id.
    pub prompt_id: String,
    /// The dialogue's turns.
    pub turns: Vec<String>,
    /// The plain prompt p the samples continue.
    pub prompt: String,
    /// First sample.
    pub output_a: String,
    /// Second sample.
    pub output_b: String,
    /// Oracle score of `output_a` on the task's main axis (world tasks).
    pub score_a: Option<f64>,
    /// Oracle score of `output_b` on the task's main axis (world tasks).
    pub score_b: Option<f64>,
}

impl HeldoutPair {
    /// Whether the oracle prefers `output_a` (`false` for pairs it did not score).
    pub fn a_better(&self) -> bool {
        matches!((self.score_a, self.score_b), (Some(a), Some(b)) if a > b)
    }
}

/// Samples two outputs of `lm` (with `settings`, cut at the next speaker tag) for each of the
/// first `n` held-out dialogues, unscored.
#[allow(clippy::too_many_arguments)]
pub fn sample_pairs<B: Backend>(
    lm: &Lm<B>,
    format: &PolicyFormat,
    templates: &Templates,
    task_templates: &str,
    held_out: &[Dialogue],
    n: usize,
    settings: &Sampling,
    seed: u64,
) -> Result<Vec<HeldoutPair>, HeldoutError> {
    let dialogues = &held_out[..n.min(held_out.len())];
    let prompts: Vec<String> = contrast_prompts(templates, task_templates, dialogues, seed)?
        .into_iter()
        .map(|c| c.plain)
        .collect();
    let draw = |side: &str| {
        sample(
            lm,
            format,
            &prompts,
            settings,
            seed::derive(seed, &["sample", side]),
        )
    };
    let (a, b) = (draw("a")?, draw("b")?);
    Ok(dialogues
        .iter()
        .zip(prompts)
        .zip(a.into_iter().zip(b))
        .map(|((d, prompt), ((oa, _), (ob, _)))| HeldoutPair {
            prompt_id: d.id.clone(),
            turns: d.turns.clone(),
            prompt,
            score_a: None,
            score_b: None,
            output_a: oa,
            output_b: ob,
        })
        .collect())
}

/// [`sample_pairs`] on the first `n` held-out dialogues of world task `task`, both outputs
/// scored with the oracle on the task's main axis, keeping the pairs the oracle does not tie.
#[allow(clippy::too_many_arguments)]
pub fn sample_heldout_pairs<B: Backend>(
    lm: &Lm<B>,
    world: &World,
    templates: &Templates,
    task: Task,
    task_templates: &str,
    held_out: &[Dialogue],
    n: usize,
    settings: &Sampling,
    seed: u64,
) -> Result<Vec<HeldoutPair>, HeldoutError> {
    let pairs = sample_pairs(
        lm,
        &PolicyFormat::world(),
        templates,
        task_templates,
        held_out,
        n,
        settings,
        seed,
    )?;
    Ok(pairs
        .into_iter()
        .map(|mut p| {
            p.score_a = Some(world.main_axis_score(task, &p.turns, &p.output_a));
            p.score_b = Some(world.main_axis_score(task, &p.turns, &p.output_b));
            p
        })
        .filter(|p| p.score_a != p.score_b)
        .collect())
}

/// Agreement of a PM's rewards with reference labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Pairs ranked, and pairs ranked as the reference ranks them (a reward tie counts as a
    /// disagreement).
    pub rate: Rate,
    /// Mean probability the PM gives the reference-preferred output, σ(r_pref − r_other).
    pub mean_prob: f64,
}

/// Agreement of rewards `(r_a, r_b)` per pair with the reference labels `a_better`.
pub fn agreement(rewards: &[(f64, f64)], a_better: &[bool]) -> Result<Agreement, StatsError> {
    let n = rewards.len().min(a_better.len());
    let mut agree = 0u64;
    let mut prob = 0.0;
    for (&(ra, rb), &a) in rewards.iter().zip(a_better) {
        let margin = if a { ra - rb } else { rb - ra };
        agree += u64::from(margin > 0.0);
        prob += 1.0 / (1.0 + (-margin).exp());
    }
    Ok(Agreement {
        rate: Rate::new(n as u64, agree)?,
        mean_prob: if n == 0 { 0.0 } else { prob / n as f64 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_counts_rankings_and_averages_probabilities() {
        let rewards = [(1.0, 0.0), (0.0, 2.0), (0.5, 0.5), (3.0, 1.0)];
        let a_better = [true, true, false, false];
        let g = agreement(&rewards, &a_better).expect("counts");
        // Pair 1 agrees, pair 2 disagrees, the tie disagrees, pair 4 disagrees.
        assert_eq!(g.rate, Rate::new(4, 1).expect("rate"));
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let expected = (sig(1.0) + sig(-2.0) + 0.5 + sig(-2.0)) / 4.0;
        assert!((g.mean_prob - expected).abs() < 1e-12);
        let empty = agreement(&[], &[]).expect("empty");
        assert_eq!(empty.rate.n, 0);
    }
}
