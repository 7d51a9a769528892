//! Training the preference model (paper Appendix B): the Bradley–Terry loss
//! ([`bt_loss`] = mean BCE-with-logits(r_B − r_A, target)) with the hard 0/1 label (RLCD) or
//! the soft label P(B) (RLAIF, RLCD-Rescore) as target; AdamW (β 0.9/0.999, no weight decay),
//! linear warm-up then cosine decay to 0 ([`crate::model::train::Schedule`]), `epochs` passes
//! in a seeded order, a seeded held-out share of the pairs for the log.

use std::time::Instant;

use crate::model::optim::AdamWConfig;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::activation::log_sigmoid;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::eval::pm_agreement::Agreement;
use crate::eval::winrate::Rate;
use crate::model::pm::{Pm, PmError, host, score_outputs};
use crate::model::train::Schedule;
use crate::model::{LoraConfig, ScalarHead};
use crate::recipe::RewardConfig;
use crate::seed;
use crate::stages::simulate::pairs::{Pair, Slot};

/// How a PM is trained: the `[reward]` keys training reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PmTraining {
    /// Passes over the pairs.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Fraction of steps spent in linear warm-up, in [0, 1).
    pub warmup_frac: f64,
    /// Pairs per optimiser step.
    pub batch_size: usize,
    /// Maximum tokens of prompt + output.
    pub max_len: usize,
    /// Fraction of the pairs held out of training, in [0, 1).
    pub holdout_frac: f64,
    /// LoRA adapters on the frozen trunk instead of training every weight (`None`: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
}

impl From<&RewardConfig> for PmTraining {
    fn from(c: &RewardConfig) -> Self {
        Self {
            epochs: c.epochs,
            lr: c.lr,
            warmup_frac: c.warmup_frac,
            batch_size: c.batch_size,
            max_len: c.max_len,
            holdout_frac: c.holdout_frac,
            lora: c.lora.clone(),
        }
    }
}

/// Why a PM cannot be trained or measured.
#[derive(Debug, thiserror::Error)]
pub enum RewardError {
    /// The preference model failed.
    #[error(transparent)]
    Pm(#[from] PmError),
    /// A setting is unusable.
    #[error("[reward] {key}: {message}\n  fix: {fix}")]
    Config {
        /// The key under `[reward]`.
        key: &'static str,
        /// What is wrong.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// No pairs to train on or to evaluate.
    #[error("{what}\n  fix: {fix}")]
    Empty {
        /// What is empty.
        what: String,
        /// How to fix it.
        fix: String,
    },
    /// An agreement rate is undefined.
    #[error(transparent)]
    Stats(#[from] crate::eval::winrate::StatsError),
    /// Training produced a non-finite loss.
    #[error(
        "preference-model training diverged: the loss is {loss} at step {step}\n  fix: lower [reward] lr (now {lr})"
    )]
    Diverged {
        /// The loss.
        loss: f64,
        /// The 0-based step.
        step: usize,
        /// The peak learning rate.
        lr: f64,
    },
}

/// The Bradley–Terry loss: mean over the batch of BCE-with-logits(r_b − r_a, target_b), where
/// `target_b` is the probability that B is preferred (0/1 hard labels or soft labels). Shape
/// `[1]`; differentiable.
pub fn bt_loss<B: Backend>(
    r_a: Tensor<B, 1>,
    r_b: Tensor<B, 1>,
    target_b: Tensor<B, 1>,
) -> Tensor<B, 1> {
    let x = r_b - r_a;
    // −[t·ln σ(x) + (1 − t)·ln σ(−x)]: stable for large |x|, gradient σ(x) − t everywhere.
    let not_t = target_b.clone().neg().add_scalar(1.0);
    let nll = log_sigmoid(x.clone()) * target_b + log_sigmoid(x.neg()) * not_t;
    nll.neg().mean()
}

/// Mean Bradley–Terry loss on the host (f64), for logs and checks.
pub fn bt_loss_value(r_a: &[f64], r_b: &[f64], target_b: &[f64]) -> f64 {
    let n = r_a.len().min(r_b.len()).min(target_b.len());
    if n == 0 {
        return f64::NAN;
    }
    let total: f64 = (0..n)
        .map(|i| {
            let x = r_b[i] - r_a[i];
            x.max(0.0) + (-x.abs()).exp().ln_1p() - target_b[i] * x
        })
        .sum();
    total / n as f64
}

/// The held-out measurement of a trained PM against the pairs' own labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldOut {
    /// Pairs with a preferred slot (label ≠ 0.5) and how many the PM ranks the same way
    /// (r_preferred > r_other).
    pub rate: Rate,
    /// Mean r_preferred − r_other over those pairs.
    pub mean_margin: f64,
    /// Mean Bradley–Terry loss over all held-out pairs, soft labels as targets.
    pub loss: f64,
}

/// What happened while training a PM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RewardLog {
    /// Optimiser steps.
    pub steps: usize,
    /// Pairs trained on.
    pub train_pairs: usize,
    /// Pairs held out.
    pub heldout_pairs: usize,
    /// Inputs (two per pair) left-truncated to `max_len`.
    pub truncated: usize,
    /// Loss of every step.
    pub losses: Vec<f64>,
    /// Mean loss over the last tenth of the steps (at least one).
    pub final_loss: f64,
    /// Held-out agreement with the pairs' labels; `None` without held-out pairs.
    pub heldout: Option<HeldOut>,
    /// Wall-clock seconds of training and held-out scoring.
    pub seconds: f64,
}

/// Problems with a reward config as `(key, problem and fix)`; empty when valid.
pub fn config_problems(cfg: &PmTraining) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if cfg.epochs == 0 {
        out.push((
            "epochs",
            "is 0; set at least 1 (the paper used 1)".to_string(),
        ));
    }
    if cfg.batch_size == 0 {
        out.push((
            "batch_size",
            "is 0; set at least 1 (the paper used 16)".to_string(),
        ));
    }
    if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        out.push((
            "lr",
            format!("{} must be a positive number (the paper used 3e-6)", cfg.lr),
        ));
    }
    if !(0.0..1.0).contains(&cfg.warmup_frac) {
        out.push((
            "warmup_frac",
            format!("{} must be in [0, 1)", cfg.warmup_frac),
        ));
    }
    if !(0.0..1.0).contains(&cfg.holdout_frac) {
        out.push((
            "holdout_frac",
            format!("{} must be in [0, 1)", cfg.holdout_frac),
        ));
    }
    for (key, message, fix) in cfg.lora.iter().flat_map(LoraConfig::problems) {
        out.push((key, format!("{message}; {fix}")));
    }
    out
}

/// Splits `n` pairs into (train, held-out) index lists, each in ascending order: a seeded
/// `round(holdout_frac · n)` share is held out (at least 1 when the share is positive and
/// `n ≥ 2`, never all).
pub fn holdout_split(n: usize, holdout_frac: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut k = (holdout_frac * n as f64).round() as usize;
    if holdout_frac > 0.0 && n >= 2 {
        k = k.max(1);
    }
    k = k.min(n.saturating_sub(1));
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut seed::rng(seed::derive(seed, &["reward", "holdout"])));
    let mut held = order[..k].to_vec();
    let mut train = order[k..].to_vec();
    held.sort_unstable();
    train.sort_unstable();
    (train, held)
}

/// Trains `pm` on `pairs` (the caller seeds the backend before building the PM).
///
/// Holds out [`holdout_split`] of the pairs, then runs `cfg.epochs` passes over the rest, each
/// in its own seeded order, `cfg.batch_size` pairs per AdamW step (the last step of a pass may
/// be smaller), with the [`Schedule::warmup_cosine`] warm-up + cosine schedule decaying to 0.
/// `on_step(step, loss)` is called after every step. Inputs are limited to the smaller of
/// `pm.format.max_len` and `cfg.max_len` tokens (the returned PM's format records it).
/// Deterministic for equal inputs on one machine.
pub fn train_reward<B: AutodiffBackend>(
    pm: Pm<B>,
    pairs: &[Pair],
    cfg: &PmTraining,
    seed: u64,
    on_step: &mut dyn FnMut(usize, f64),
) -> Result<(Pm<B>, RewardLog), RewardError> {
    if let Some((key, problem)) = config_problems(cfg).into_iter().next() {
        let (message, fix) = problem.split_once("; ").unwrap_or((&problem, "correct it"));
        return Err(RewardError::Config {
            key,
            message: message.to_string(),
            fix: fix.to_string(),
        });
    }
    if pairs.is_empty() || (cfg.holdout_frac > 0.0 && pairs.len() < 2) {
        return Err(RewardError::Empty {
            what: format!("{} preference pairs: too few to train a PM", pairs.len()),
            fix: if pairs.is_empty() {
                "simulate more pairs: raise [simulate] n_prompts, or, when the simulation dropped \
                 its prompts (outputs that never ended their turn), raise [simulate] \
                 max_new_tokens or retries"
                    .into()
            } else {
                "simulate more pairs (raise [simulate] n_prompts) or set [reward] holdout_frac = 0"
                    .into()
            },
        });
    }
    let start = Instant::now();
    let mut pm = pm;
    pm.format.max_len = pm.format.max_len.min(cfg.max_len);
    pm.check_max_len()?;
    let mut truncated = 0usize;
    let mut ids_a = Vec::with_capacity(pairs.len());
    let mut ids_b = Vec::with_capacity(pairs.len());
    for p in pairs {
        let (a, ta) = pm.encode(&p.prompt, &p.output_a)?;
        let (b, tb) = pm.encode(&p.prompt, &p.output_b)?;
        truncated += usize::from(ta) + usize::from(tb);
        ids_a.push(a);
        ids_b.push(b);
    }
    let (train, held) = holdout_split(pairs.len(), cfg.holdout_frac, seed);
    let per_epoch = train.len().div_ceil(cfg.batch_size);
    let steps = per_epoch * cfg.epochs;
    let schedule = Schedule::warmup_cosine(steps, cfg.lr, cfg.warmup_frac);
    if let Some(lora) = &cfg.lora {
        pm.model = pm
            .model
            .with_lora(lora, seed::derive(seed, &["reward", "lora"]));
    }
    let mut optim = AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(0.0)
        .init::<B, ScalarHead<B>>();
    let device = pm.model.trunk.device();
    let mut losses = Vec::with_capacity(steps);
    let mut step = 0usize;
    for epoch in 0..cfg.epochs {
        let mut order = train.clone();
        order.shuffle(&mut seed::rng(seed::derive_index(
            seed::derive(seed, &["reward"]),
            "epoch",
            epoch as u64,
        )));
        for chunk in order.chunks(cfg.batch_size) {
            let k = chunk.len();
            let rows: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&i| ids_a[i].clone())
                .chain(chunk.iter().map(|&i| ids_b[i].clone()))
                .collect();
            let targets: Vec<f32> = chunk.iter().map(|&i| pairs[i].soft_label as f32).collect();
            let r = pm.forward_rows(&rows);
            let r_a = r.clone().narrow(0, 0, k);
            let r_b = r.narrow(0, k, k);
            let t = Tensor::<B, 1>::from_data(TensorData::new(targets, [k]), &device);
            let loss = bt_loss(r_a, r_b, t);
            let value = host(loss.clone())
                .map_err(PmError::from)?
                .first()
                .copied()
                .unwrap_or(f64::NAN);
            if !value.is_finite() {
                return Err(RewardError::Diverged {
                    loss: value,
                    step,
                    lr: cfg.lr,
                });
            }
            let grads = GradientsParams::from_grads(loss.backward(), &pm.model);
            pm.model = optim.step(schedule.lr_at(step), pm.model, grads);
            losses.push(value);
            on_step(step, value);
            step += 1;
        }
    }
    pm.model = pm.model.merge_lora();
    let heldout = if held.is_empty() {
        None
    } else {
        let scorer = pm.valid();
        let rows: Vec<Vec<u32>> = held
            .iter()
            .map(|&i| ids_a[i].clone())
            .chain(held.iter().map(|&i| ids_b[i].clone()))
            .collect();
        let r = scorer.score_ids(&rows, cfg.batch_size.max(1) * 2)?;
        let (ra, rb) = r.split_at(held.len());
        let targets: Vec<f64> = held.iter().map(|&i| pairs[i].soft_label).collect();
        let (mut n, mut agree, mut margin) = (0u64, 0u64, 0.0);
        for (j, &i) in held.iter().enumerate() {
            let Some(slot) = pairs[i].preferred() else {
                continue;
            };
            let m = match slot {
                Slot::A => ra[j] - rb[j],
                Slot::B => rb[j] - ra[j],
            };
            n += 1;
            agree += u64::from(m > 0.0);
            margin += m;
        }
        Some(HeldOut {
            rate: Rate {
                n,
                successes: agree,
            },
            mean_margin: if n == 0 { f64::NAN } else { margin / n as f64 },
            loss: bt_loss_value(ra, rb, &targets),
        })
    };
    let tail = (losses.len() / 10).max(1).min(losses.len());
    let final_loss = losses[losses.len() - tail..].iter().sum::<f64>() / tail as f64;
    let log = RewardLog {
        steps,
        train_pairs: train.len(),
        heldout_pairs: held.len(),
        truncated,
        losses,
        final_loss,
        heldout,
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok((pm, log))
}

/// Agreement of `pm` with `truth` over `pairs` (the analogue of paper Table 5): `truth(pair)`
/// says whether B is truly better (`Some(true)`), A is (`Some(false)`), or neither (`None`,
/// left out). Pair labels are ignored; only the outputs are scored.
pub fn agreement<B: Backend>(
    pm: &Pm<B>,
    pairs: &[Pair],
    truth: impl Fn(&Pair) -> Option<bool>,
    batch_size: usize,
) -> Result<Agreement, RewardError> {
    let judged: Vec<(&Pair, bool)> = pairs
        .iter()
        .filter_map(|p| truth(p).map(|b| (p, b)))
        .collect();
    if judged.is_empty() {
        return Err(RewardError::Empty {
            what: format!("none of {} pairs has a verdict to agree with", pairs.len()),
            fix: "evaluate on pairs the reference judge does not tie".into(),
        });
    }
    let items: Vec<(&str, &str)> = judged
        .iter()
        .map(|(p, _)| (p.prompt.as_str(), p.output_a.as_str()))
        .chain(
            judged
                .iter()
                .map(|(p, _)| (p.prompt.as_str(), p.output_b.as_str())),
        )
        .collect();
    let r = score_outputs(pm, &items, batch_size)?;
    let (ra, rb) = r.split_at(judged.len());
    let rewards: Vec<(f64, f64)> = ra.iter().copied().zip(rb.iter().copied()).collect();
    let a_better: Vec<bool> = judged.iter().map(|(_, b_better)| !b_better).collect();
    Ok(crate::eval::pm_agreement::agreement(&rewards, &a_better)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdout_split_is_seeded_disjoint_and_complete() {
        let (train, held) = holdout_split(100, 0.1, 3);
        assert_eq!(held.len(), 10);
        assert_eq!(train.len(), 90);
        let mut all: Vec<usize> = train.iter().chain(&held).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(holdout_split(100, 0.1, 3), (train, held.clone()));
        assert_ne!(holdout_split(100, 0.1, 4).1, held);
        assert_eq!(holdout_split(3, 0.01, 0).1.len(), 1);
        assert_eq!(holdout_split(1, 0.5, 0).1.len(), 0);
        assert_eq!(holdout_split(5, 0.0, 0).1.len(), 0);
    }

    #[test]
    fn host_loss_matches_log_sigmoid() {
        let (ra, rb) = ([0.3, -1.0], [1.3, 2.0]);
        let hard = bt_loss_value(&ra, &rb, &[1.0, 0.0]);
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let want = (-(sig(1.0)).ln() - (1.0 - sig(3.0)).ln()) / 2.0;
        assert!((hard - want).abs() < 1e-12, "{hard} vs {want}");
        // Large margins stay finite.
        assert!(bt_loss_value(&[0.0], &[800.0], &[0.0]).is_finite());
    }

    #[test]
    fn bad_configs_name_the_key() {
        let cfg = RewardConfig {
            holdout_frac: 1.0,
            ..RewardConfig::default()
        };
        let p = config_problems(&PmTraining::from(&cfg));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "holdout_frac");
    }
}
