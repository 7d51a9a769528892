//! What the three policy trainers share (paper §3 step 3, §4.2): one way of reading a policy: a query (prefix + plain prompt) and a
//! response laid out as one row per example, the query left-padded and the response
//! right-padded so every response starts in the same column ([`Rows`]); per-token
//! log-probabilities of the response ([`response_logprobs`]) and per-token values of a value
//! model ([`response_values`]) come from the same layout.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use rand::seq::SliceRandom;

pub use crate::model::PolicyFormat;
use crate::model::pm::PmError;
use crate::model::tokenizer::Tokenizer;
use crate::model::train::Schedule;
use crate::model::{Llama, Lm, LoraConfig, ModelError, ScalarHead};
use crate::seed;

/// Why a policy cannot be trained.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The model engine failed.
    #[error("policy: {0}")]
    Model(#[from] ModelError),
    /// A setting is unusable.
    #[error("[{section}] {key}: {message}\n  fix: {fix}")]
    Config {
        /// The recipe section (`ppo`, `dpo`, `distill`).
        section: &'static str,
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// Nothing to train on.
    #[error("{what}\n  fix: {fix}")]
    Empty {
        /// What is empty.
        what: String,
        /// How to fix it.
        fix: String,
    },
    /// Training produced a non-finite loss.
    #[error(
        "{trainer} diverged: the loss is {loss} at step {step}\n  fix: lower [{section}] lr (now {lr})"
    )]
    Diverged {
        /// PPO, DPO or SFT.
        trainer: &'static str,
        /// The recipe section.
        section: &'static str,
        /// The loss.
        loss: f64,
        /// The 0-based step.
        step: usize,
        /// The learning rate.
        lr: f64,
    },
    /// A checkpoint cannot be read or written.
    #[error("{path}: {message}\n  fix: {fix}")]
    Files {
        /// The file or directory.
        path: String,
        /// What is wrong.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// The preference model failed.
    #[error(transparent)]
    Pm(#[from] PmError),
}

pub(crate) fn config_error(
    section: &'static str,
    key: &'static str,
    message: impl Into<String>,
    fix: impl Into<String>,
) -> PolicyError {
    PolicyError::Config {
        section,
        key,
        message: message.into(),
        fix: fix.into(),
    }
}

/// The first unusable setting of a trainer's `lora` table under `section`, as an error.
pub(crate) fn check_lora(
    section: &'static str,
    lora: Option<&LoraConfig>,
) -> Result<(), PolicyError> {
    match lora.and_then(|l| l.problems().into_iter().next()) {
        Some((key, message, fix)) => Err(config_error(section, key, message, fix)),
        None => Ok(()),
    }
}

pub(crate) fn file_error(path: &Path, message: impl std::fmt::Display) -> PolicyError {
    PolicyError::Files {
        path: path.display().to_string(),
        message: message.to_string(),
        fix: "delete the directory and run again; the stage starts over".into(),
    }
}

/// Query/response rows as tensors: `tokens` and `mask` `[b, pw + cw]`, and the response mask
/// `[b, cw]` (1 for response tokens, 0 for padding).
#[derive(Clone, Debug)]
pub struct Rows<B: Backend> {
    /// Token ids, queries left-padded, responses right-padded.
    pub tokens: Tensor<B, 2, Int>,
    /// `true` at real tokens.
    pub mask: Tensor<B, 2, Bool>,
    /// The response tokens, `[b, cw]` (padding 0).
    pub targets: Tensor<B, 2, Int>,
    /// 1 at response tokens, 0 at padding, `[b, cw]`.
    pub response_mask: Tensor<B, 2>,
    /// Width of the query block.
    pub pw: usize,
    /// Width of the response block.
    pub cw: usize,
}

impl<B: Backend> Rows<B> {
    /// Lays out `queries[i]` followed by `responses[i]`. Every query needs at least one token.
    pub fn new(
        queries: &[Vec<u32>],
        responses: &[Vec<u32>],
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        if queries.len() != responses.len() || queries.is_empty() {
            return Err(ModelError::Request(format!(
                "{} queries and {} responses: give one response per query, at least one",
                queries.len(),
                responses.len()
            )));
        }
        if queries.iter().any(Vec::is_empty) {
            return Err(ModelError::Request(
                "every query needs at least one token".into(),
            ));
        }
        let b = queries.len();
        let pw = queries.iter().map(Vec::len).max().unwrap_or(1);
        let cw = responses.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let width = pw + cw;
        let mut ids = vec![0i64; b * width];
        let mut mask = vec![false; b * width];
        let mut targets = vec![0i64; b * cw];
        let mut rmask = vec![0.0f32; b * cw];
        for (r, (q, c)) in queries.iter().zip(responses).enumerate() {
            let start = pw - q.len();
            for (j, &t) in q.iter().chain(c).enumerate() {
                ids[r * width + start + j] = i64::from(t);
                mask[r * width + start + j] = true;
            }
            for (j, &t) in c.iter().enumerate() {
                targets[r * cw + j] = i64::from(t);
                rmask[r * cw + j] = 1.0;
            }
        }
        Ok(Self {
            tokens: Tensor::from_data(TensorData::new(ids, [b, width]), device),
            mask: Tensor::from_data(TensorData::new(mask, [b, width]), device),
            targets: Tensor::from_data(TensorData::new(targets, [b, cw]), device),
            response_mask: Tensor::from_data(TensorData::new(rmask, [b, cw]), device),
            pw,
            cw,
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.tokens.dims()[0]
    }

    /// Whether there are no rows (never: [`Rows::new`] refuses empty batches).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Log-probability of every response token under `model`, `[b, cw]`, 0 at padding.
pub fn response_logprobs<B: Backend>(model: &Llama<B>, rows: &Rows<B>) -> Tensor<B, 2> {
    let (b, cw) = (rows.len(), rows.cw);
    let hidden = model
        .hidden(rows.tokens.clone(), rows.mask.clone())
        .narrow(1, rows.pw - 1, cw);
    let logp = crate::model::log_softmax(model.head(hidden));
    logp.gather(2, rows.targets.clone().reshape([b, cw, 1]))
        .reshape([b, cw])
        * rows.response_mask.clone()
}

/// The value of the state before every response token, `[b, cw]`, 0 at padding.
pub fn response_values<B: Backend>(value: &ScalarHead<B>, rows: &Rows<B>) -> Tensor<B, 2> {
    value.forward_span(rows.tokens.clone(), rows.mask.clone(), rows.pw - 1, rows.cw)
        * rows.response_mask.clone()
}

/// Masked mean of `x` over `mask` (both `[b, c]`), as a one-element tensor.
pub fn masked_mean<B: Backend>(x: Tensor<B, 2>, mask: Tensor<B, 2>) -> Tensor<B, 1> {
    let n = mask.clone().sum().clamp_min(1.0);
    (x * mask).sum() / n
}

/// Host copy of a tensor.
pub fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>, ModelError> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| ModelError::Data(format!("{e:?}")))
}

/// Host value of a one-element tensor.
pub fn scalar<B: Backend>(t: Tensor<B, 1>) -> Result<f64, ModelError> {
    Ok(host(t)?.first().copied().map_or(f64::NAN, f64::from))
}

/// The learning-rate schedule of a supervised pass over `n` examples: `epochs` passes of
/// `batch_size`, linear warm-up over `warmup_frac` of the steps, then cosine decay to 0.
pub fn fine_tune_schedule(
    n: usize,
    epochs: usize,
    batch_size: usize,
    lr: f64,
    warmup_frac: f64,
) -> Schedule {
    Schedule::warmup_cosine(
        Schedule::fine_tune_steps(n, epochs, batch_size),
        lr,
        warmup_frac,
    )
}

/// Names a fine-tuning loop in its errors.
#[derive(Clone, Copy, Debug)]
pub struct Trainer {
    /// The trainer's name (`DPO`, `context distillation`).
    pub name: &'static str,
    /// Its recipe section (`dpo`, `distill`).
    pub section: &'static str,
    /// The label of its seeded example orders.
    pub label: &'static str,
}

/// The loss of a batch (indices into the examples) under a model.
pub type BatchLoss<'a, B> =
    dyn FnMut(&Llama<B>, &[usize]) -> Result<Tensor<B, 1>, PolicyError> + 'a;

/// Fine-tunes `model` over `n` examples: `epochs` seeded passes in batches of `batch_size`,
/// AdamW (no weight decay) on [`fine_tune_schedule`]; with `lora`, of adapters on the frozen
/// model, merged into it at the end. `loss(model, batch)` is the batch loss;
/// `on_step(step, loss)` is called after every step. Returns the model and the loss of every
/// step; a non-finite loss is [`PolicyError::Diverged`].
#[allow(clippy::too_many_arguments)]
pub fn fine_tune<B: burn::tensor::backend::AutodiffBackend>(
    mut model: Llama<B>,
    trainer: Trainer,
    n: usize,
    (epochs, batch_size, lr, warmup_frac): (usize, usize, f64, f64),
    seed: u64,
    lora: Option<&LoraConfig>,
    loss: &mut BatchLoss<'_, B>,
    on_step: &mut dyn FnMut(usize, f64),
) -> Result<(Llama<B>, Vec<f64>), PolicyError> {
    use crate::model::optim::AdamWConfig;
    use burn::optim::{GradientsParams, Optimizer};
    check_lora(trainer.section, lora)?;
    let schedule = fine_tune_schedule(n, epochs, batch_size, lr, warmup_frac);
    if let Some(lora) = lora {
        model = model.with_lora(lora, seed::derive(seed, &[trainer.label, "lora"]));
    }
    let mut optim = AdamWConfig::new()
        .with_weight_decay(0.0)
        .init::<B, Llama<B>>();
    let mut losses = Vec::with_capacity(schedule.steps);
    for epoch in 0..epochs {
        for chunk in epoch_order(n, seed, trainer.label, epoch).chunks(batch_size) {
            let step = losses.len();
            let l = loss(&model, chunk)?;
            let value = scalar(l.clone())?;
            if !value.is_finite() {
                return Err(PolicyError::Diverged {
                    trainer: trainer.name,
                    section: trainer.section,
                    loss: value,
                    step,
                    lr,
                });
            }
            let grads = GradientsParams::from_grads(l.backward(), &model);
            model = optim.step(schedule.lr_at(step), model, grads);
            losses.push(value);
            on_step(step, value);
        }
    }
    Ok((model.merge_lora(), losses))
}

/// The indices `0..n` in the seeded order of pass `epoch` of the trainer named `label`.
pub fn epoch_order(n: usize, seed: u64, label: &str, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut seed::rng(seed::derive_index(
        seed::derive(seed, &[label]),
        "epoch",
        epoch as u64,
    )));
    order
}

/// Files of a saved policy.
pub mod files {
    /// The policy's tokenizer.
    pub const TOKENIZER: &str = "tokenizer.json";
    /// The policy's [`super::PolicyFormat`].
    pub const FORMAT: &str = "policy.json";
}

/// Saves a policy (decoder checkpoint, tokenizer and format) into `dir`.
pub fn save_policy<B: Backend>(
    lm: &Lm<B>,
    format: &PolicyFormat,
    dir: &Path,
) -> Result<(), PolicyError> {
    crate::model::load::save_checkpoint(&lm.model, dir)?;
    let tok = dir.join(files::TOKENIZER);
    lm.tokenizer
        .save(&tok)
        .map_err(|e| file_error(&tok, format!("cannot write: {e}")))?;
    let fmt = dir.join(files::FORMAT);
    let json = serde_json::to_vec_pretty(format).map_err(|e| file_error(&fmt, e))?;
    std::fs::write(&fmt, json).map_err(|e| file_error(&fmt, format!("cannot write: {e}")))
}

/// Loads a policy saved by [`save_policy`].
pub fn load_policy<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(Lm<B>, PolicyFormat), PolicyError> {
    let model = crate::model::load::load_checkpoint::<B>(dir, device)?;
    let tok = dir.join(files::TOKENIZER);
    let tokenizer = Tokenizer::from_file(&tok).map_err(|e| file_error(&tok, e))?;
    let fmt = dir.join(files::FORMAT);
    let bytes = std::fs::read(&fmt).map_err(|e| file_error(&fmt, format!("cannot read: {e}")))?;
    let format = serde_json::from_slice(&bytes).map_err(|e| file_error(&fmt, e))?;
    Ok((Lm::new(model, tokenizer)?, format))
}
