//! Direct preference optimisation (Rafailov et al. 2023) on the simulated pairs — beyond the
//! paper, whose authors name it as future work (§6). The frozen reference is the initial
//! policy. With Δ = β·[(log π(B) − log π_ref(B)) − (log π(A) − log π_ref(A))] over whole
//! responses and the pair's label P(B) as target y, the loss is
//! −[y·log σ(Δ) + (1 − y)·log σ(−Δ)]: the usual DPO loss for hard RLCD labels, its soft-label
//! form for RLAIF's P(B).

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::common::{PolicyError, Rows, config_error, host, response_logprobs};
use super::common::{Trainer, fine_tune};
use crate::model::{Llama, Lm};
use crate::recipe::DpoConfig;

/// One encoded preference pair: the query, both responses and P(B).
#[derive(Clone, Debug, PartialEq)]
pub struct DpoPair {
    /// Query tokens.
    pub query: Vec<u32>,
    /// Response in slot A (ending with the end-of-turn marker).
    pub a: Vec<u32>,
    /// Response in slot B.
    pub b: Vec<u32>,
    /// Probability that B is preferred.
    pub p_b: f64,
}

/// Loss and chosen-vs-rejected margin over a set of pairs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DpoStats {
    /// Mean DPO loss.
    pub loss: f64,
    /// Mean β-scaled implicit-reward margin of the preferred over the other response (pairs
    /// with P(B) = ½ left out).
    pub margin: f64,
    /// Share of those pairs whose margin is positive.
    pub accuracy: f64,
}

/// What DPO did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DpoLog {
    /// Pairs trained on.
    pub pairs: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Loss per step.
    pub losses: Vec<f64>,
    /// Over all pairs before training (the policy equals the reference: loss log 2, margin 0).
    pub before: DpoStats,
    /// Over all pairs after training.
    pub after: DpoStats,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Summed response log-probabilities of the A and B sides of `pairs`, `([k], [k])`.
fn pair_logprobs<B: Backend>(
    model: &Llama<B>,
    pairs: &[&DpoPair],
) -> Result<(Tensor<B, 1>, Tensor<B, 1>), PolicyError> {
    let k = pairs.len();
    let q: Vec<Vec<u32>> = pairs.iter().chain(pairs).map(|p| p.query.clone()).collect();
    let r: Vec<Vec<u32>> = pairs
        .iter()
        .map(|p| p.a.clone())
        .chain(pairs.iter().map(|p| p.b.clone()))
        .collect();
    let rows = Rows::<B>::new(&q, &r, &model.device())?;
    let sums = response_logprobs(model, &rows).sum_dim(1).reshape([2 * k]);
    Ok((sums.clone().narrow(0, 0, k), sums.narrow(0, k, k)))
}

/// Per-pair DPO loss from the β-scaled log-ratio difference `delta` = Δ and targets P(B).
pub fn dpo_loss<B: Backend>(delta: Tensor<B, 1>, p_b: Tensor<B, 1>) -> Tensor<B, 1> {
    let pos = log_sigmoid(delta.clone());
    let neg = log_sigmoid(-delta);
    -(p_b.clone() * pos + (-p_b + 1.0) * neg).mean()
}

/// log σ(x), stable for large |x|.
pub fn log_sigmoid_f64(x: f64) -> f64 {
    if x >= 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

/// Reference log-probabilities `(A, B)` of every pair under the frozen `reference`.
pub fn reference_logprobs<B: Backend>(
    reference: &Llama<B>,
    pairs: &[DpoPair],
    batch_size: usize,
) -> Result<Vec<(f64, f64)>, PolicyError> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(batch_size.max(1)) {
        let refs: Vec<&DpoPair> = chunk.iter().collect();
        let (a, b) = pair_logprobs(reference, &refs)?;
        let (a, b) = (host(a)?, host(b)?);
        out.extend(
            a.into_iter()
                .zip(b)
                .map(|(x, y)| (f64::from(x), f64::from(y))),
        );
    }
    Ok(out)
}

/// Loss, margin and accuracy of `model` over `pairs` against reference log-probabilities.
pub fn dpo_stats<B: Backend>(
    model: &Llama<B>,
    pairs: &[DpoPair],
    reference: &[(f64, f64)],
    beta: f64,
    batch_size: usize,
) -> Result<DpoStats, PolicyError> {
    let policy = reference_logprobs(model, pairs, batch_size)?;
    let (mut loss, mut margin, mut right, mut n) = (0.0, 0.0, 0usize, 0usize);
    for ((p, &(pa, pb)), &(ra, rb)) in pairs.iter().zip(&policy).zip(reference) {
        let delta = beta * ((pb - rb) - (pa - ra));
        loss -= p.p_b * log_sigmoid_f64(delta) + (1.0 - p.p_b) * log_sigmoid_f64(-delta);
        if p.p_b != 0.5 {
            let m = if p.p_b > 0.5 { delta } else { -delta };
            margin += m;
            right += usize::from(m > 0.0);
            n += 1;
        }
    }
    let k = pairs.len().max(1) as f64;
    Ok(DpoStats {
        loss: loss / k,
        margin: if n == 0 { f64::NAN } else { margin / n as f64 },
        accuracy: if n == 0 {
            f64::NAN
        } else {
            right as f64 / n as f64
        },
    })
}

/// Trains `lm` with DPO on `pairs` against the frozen `reference`. `on_step(step, loss)` is
/// called after every step. Deterministic for equal inputs on one machine.
pub fn train_dpo<B: AutodiffBackend>(
    lm: Lm<B>,
    reference: &Llama<B::InnerBackend>,
    pairs: &[DpoPair],
    cfg: &DpoConfig,
    seed: u64,
    on_step: &mut dyn FnMut(usize, f64),
) -> Result<(Lm<B>, DpoLog), PolicyError> {
    if cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(config_error(
            "dpo",
            if cfg.batch_size == 0 {
                "batch_size"
            } else {
                "epochs"
            },
            "is 0",
            "set it to at least 1",
        ));
    }
    if !(cfg.beta.is_finite() && cfg.beta > 0.0) {
        return Err(config_error(
            "dpo",
            "beta",
            format!("{} is not positive", cfg.beta),
            "set beta > 0 (0.1 is the usual value)",
        ));
    }
    if pairs.is_empty() {
        return Err(PolicyError::Empty {
            what: "no preference pairs for DPO".into(),
            fix: "simulate more pairs: raise [simulate] n_prompts or max_new_tokens".into(),
        });
    }
    let start = Instant::now();
    let device = lm.model.device();
    let refs = reference_logprobs(reference, pairs, cfg.batch_size)?;
    let before = dpo_stats(reference, pairs, &refs, cfg.beta, cfg.batch_size)?;
    let mut loss = |model: &Llama<B>, chunk: &[usize]| -> Result<_, PolicyError> {
        let k = chunk.len();
        let batch: Vec<&DpoPair> = chunk.iter().map(|&i| &pairs[i]).collect();
        let (la, lb) = pair_logprobs(model, &batch)?;
        let ref_diff: Vec<f32> = chunk
            .iter()
            .map(|&i| (refs[i].1 - refs[i].0) as f32)
            .collect();
        let ref_diff = Tensor::<B, 1>::from_data(TensorData::new(ref_diff, [k]), &device);
        let p_b: Vec<f32> = batch.iter().map(|p| p.p_b as f32).collect();
        let p_b = Tensor::<B, 1>::from_data(TensorData::new(p_b, [k]), &device);
        Ok(dpo_loss((lb - la - ref_diff) * cfg.beta, p_b))
    };
    let Lm { model, tokenizer } = lm;
    let trainer = Trainer {
        name: "DPO",
        section: "dpo",
        label: "dpo",
    };
    let settings = (cfg.epochs, cfg.batch_size, cfg.lr, 0.1);
    let (model, losses) = fine_tune(
        model,
        trainer,
        pairs.len(),
        settings,
        seed,
        cfg.lora.as_ref(),
        &mut loss,
        on_step,
    )?;
    let step = losses.len();
    let after = dpo_stats(&model.valid(), pairs, &refs, cfg.beta, cfg.batch_size)?;
    let log = DpoLog {
        pairs: pairs.len(),
        steps: step,
        losses,
        before,
        after,
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok((Lm::new(model, tokenizer)?, log))
}
