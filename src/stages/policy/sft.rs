//! Context distillation (paper §4.2, baseline): supervised fine-tuning of the policy on
//! (plain prompt → o+), where o+ is the output the simulator sampled from the positive prompt
//! p+ — distilling the positive context into the plain prompt. Loss: mean token NLL of the
//! response (o+ and the end-of-turn marker) given the query; AdamW with the shared warm-up +
//! cosine schedule ([`crate::model::train::Schedule`]), `epochs` seeded passes.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};

use super::common::{
    PolicyError, PolicyFormat, Rows, config_error, masked_mean, response_logprobs, scalar,
};
use super::common::{Trainer, fine_tune};
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
    let mut loss = |model: &Llama<B>, chunk: &[usize]| -> Result<_, PolicyError> {
        let q: Vec<Vec<u32>> = chunk.iter().map(|&i| examples[i].0.clone()).collect();
        let r: Vec<Vec<u32>> = chunk.iter().map(|&i| examples[i].1.clone()).collect();
        let rows = Rows::<B>::new(&q, &r, &device)?;
        let logp = response_logprobs(model, &rows);
        Ok(-masked_mean(logp, rows.response_mask.clone()))
    };
    let Lm { model, tokenizer } = lm;
    let trainer = Trainer {
        name: "context distillation",
        section: "distill",
        label: "sft",
    };
    let settings = (cfg.epochs, cfg.batch_size, cfg.lr, 0.03);
    let (model, losses) = fine_tune(
        model,
        trainer,
        examples.len(),
        settings,
        seed,
        cfg.lora.as_ref(),
        &mut loss,
        on_step,
    )?;
    let step = losses.len();
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
