//! Context distillation (paper §4.2, baseline): supervised fine-tuning of the policy on
//! (plain prompt → o+), where o+ is the output the simulator sampled from the positive prompt
//! p+ — distilling the positive context into the plain prompt. Loss: mean token NLL of the
//! response (o+ and the end-of-turn marker) given the query; AdamW with the pretraining
//! warm-up + cosine schedule, `epochs` seeded passes.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};

use super::{
    PolicyError, PolicyFormat, Rows, config_error, epoch_order, fine_tune_schedule, masked_mean,
    response_logprobs, scalar,
};
use crate::model::{Llama, Lm};
use crate::recipe::DistillConfig;

/// One encoded example: query tokens and response tokens.
pub type Example = (Vec<u32>, Vec<u32>);

/// What supervised fine-tuning did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SftLog {
    /// Examples trained on.
    pub examples: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Loss (mean token NLL of the batch) per step.
    pub losses: Vec<f64>,
    /// Mean token NLL of all examples before training.
    pub nll_before: f64,
    /// Mean token NLL of all examples after training.
    pub nll_after: f64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Encoded (query, response) examples of `(prompt, output)` pairs.
pub fn encode_examples<B: Backend>(
    lm: &Lm<B>,
    format: &PolicyFormat,
    examples: &[(String, String)],
    max_len: usize,
) -> Result<Vec<Example>, PolicyError> {
    let mut out = Vec::with_capacity(examples.len());
    for (prompt, output) in examples {
        let (q, mut r) = format.encode(lm, prompt, output)?;
        let room = max_len.saturating_sub(q.len());
        r.truncate(room);
        if !r.is_empty() {
            out.push((q, r));
        }
    }
    Ok(out)
}

/// Mean token NLL of `examples` under `model` (token-weighted), in batches of `batch_size`.
pub fn mean_nll<B: Backend>(
    model: &Llama<B>,
    examples: &[Example],
    batch_size: usize,
) -> Result<f64, PolicyError> {
    let (mut total, mut count) = (0.0, 0usize);
    for chunk in examples.chunks(batch_size.max(1)) {
        let q: Vec<Vec<u32>> = chunk.iter().map(|e| e.0.clone()).collect();
        let r: Vec<Vec<u32>> = chunk.iter().map(|e| e.1.clone()).collect();
        let rows = Rows::<B>::new(&q, &r, &model.device())?;
        total -= scalar(response_logprobs(model, &rows).sum().reshape([1]))?;
        count += r.iter().map(Vec::len).sum::<usize>();
    }
    Ok(if count == 0 {
        f64::NAN
    } else {
        total / count as f64
    })
}

/// Fine-tunes `lm` on encoded (query, response) examples. `on_step(step, loss)` is called
/// after every step. Deterministic for equal inputs on one machine.
pub fn train_sft<B: AutodiffBackend>(
    lm: Lm<B>,
    examples: &[Example],
    cfg: &DistillConfig,
    seed: u64,
    on_step: &mut dyn FnMut(usize, f64),
) -> Result<(Lm<B>, SftLog), PolicyError> {
    if cfg.batch_size == 0 || cfg.epochs == 0 || !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        return Err(config_error(
            "distill",
            if cfg.batch_size == 0 {
                "batch_size"
            } else if cfg.epochs == 0 {
                "epochs"
            } else {
                "lr"
            },
            "must be positive",
            "set epochs and batch_size ≥ 1 and lr > 0",
        ));
    }
    if examples.is_empty() {
        return Err(PolicyError::Empty {
            what: "no (prompt, o+) examples to distill".into(),
            fix: "simulate more RLCD pairs: raise [simulate] n_prompts or max_new_tokens".into(),
        });
    }
    let start = Instant::now();
    let device = lm.model.device();
    let nll_before = mean_nll(&lm.model.valid(), examples, cfg.batch_size)?;
    let schedule = fine_tune_schedule(examples.len(), cfg.epochs, cfg.batch_size, cfg.lr, 0.03);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(0.0)
        .init::<B, Llama<B>>();
    let Lm {
        mut model,
        tokenizer,
    } = lm;
    let mut losses = Vec::with_capacity(schedule.steps);
    let mut step = 0usize;
    for epoch in 0..cfg.epochs {
        for chunk in epoch_order(examples.len(), seed, "sft", epoch).chunks(cfg.batch_size) {
            let q: Vec<Vec<u32>> = chunk.iter().map(|&i| examples[i].0.clone()).collect();
            let r: Vec<Vec<u32>> = chunk.iter().map(|&i| examples[i].1.clone()).collect();
            let rows = Rows::<B>::new(&q, &r, &device)?;
            let logp = response_logprobs(&model, &rows);
            let loss = -masked_mean(logp, rows.response_mask.clone());
            let value = scalar(loss.clone())?;
            if !value.is_finite() {
                return Err(PolicyError::Diverged {
                    trainer: "context distillation",
                    section: "distill",
                    loss: value,
                    step,
                    lr: cfg.lr,
                });
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(schedule.lr_at(step), model, grads);
            losses.push(value);
            on_step(step, value);
            step += 1;
        }
    }
    let nll_after = mean_nll(&model.valid(), examples, cfg.batch_size)?;
    let log = SftLog {
        examples: examples.len(),
        steps: step,
        losses,
        nll_before,
        nll_after,
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok((Lm::new(model, tokenizer)?, log))
}
