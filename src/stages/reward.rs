//! The preference model (PM) of paper Appendix B: a scalar head on a trunk initialised from the
//! policy-size model, trained with the Bradley–Terry loss on simulated pairs.
//!
//! - Input text: `prefix + prompt + " " + output + end_of_turn` ([`PmFormat`]), encoded with
//!   the PM's own tokenizer (pairs hold text, so simulator and PM may tokenize differently).
//!   An input longer than `max_len` tokens is left-truncated after its prefix: the prefix
//!   tokens and the last `max_len − prefix` tokens are kept, so the output and the end-of-turn
//!   marker, where the score is read, always survive; the log counts truncated inputs.
//! - Score: `Linear(d, 1)` (bias initialised at 0) on the final hidden state of the last token.
//! - Loss: [`bt_loss`] = mean BCE-with-logits(r_B − r_A, target), with the hard 0/1 label
//!   (RLCD) or the soft label P(B) (RLAIF, RLCD-Rescore) as target.
//! - Training ([`train_reward`]): AdamW (β 0.9/0.999, no weight decay), linear warm-up then
//!   cosine decay to 0 (the pretraining schedule, [`PretrainConfig::lr_at`]), `epochs` passes
//!   in a seeded order, a seeded held-out share of the pairs for the log.

use std::path::Path;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::activation::log_sigmoid;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::eval::pm_agreement::Agreement;
use crate::eval::winrate::Rate;
use crate::model::llama::round_up;
use crate::model::load::{load_scalar_checkpoint, save_scalar_checkpoint};
use crate::model::sampling::pad_batch;
use crate::model::tokenizer::Tokenizer;
use crate::model::{Llama, Lm, ModelError, ScalarHead};
use crate::recipe::RewardConfig;
use crate::seed;
use crate::stages::pretrain::PretrainConfig;
use crate::stages::simulate::{Pair, Slot};
use crate::stages::world_report::{BOS, EOS};

/// Version of the PM input format and training procedure; part of the stage's cache key.
pub const REWARD_VERSION: u32 = 1;

/// Batches are padded to a multiple of this many columns, so only a few shapes occur.
const WIDTH_BUCKET: usize = 16;

/// Files of a saved PM.
pub mod files {
    /// The PM's tokenizer.
    pub const TOKENIZER: &str = "tokenizer.json";
    /// The PM's [`super::PmFormat`] as JSON.
    pub const FORMAT: &str = "pm.json";
}

/// How a PM reads a prompt and an output as one text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PmFormat {
    /// Text before the prompt: the BOS text for built-in world models, `""` for GGUF models.
    pub prefix: String,
    /// End-of-turn marker after the output: the EOS text for world models.
    pub end_of_turn: String,
    /// Most tokens of one input; longer inputs keep the prefix tokens and the last tokens.
    pub max_len: usize,
}

impl PmFormat {
    /// The format of built-in world models ([`BOS`] prefix, [`EOS`] end of turn).
    pub fn world(max_len: usize) -> Self {
        Self {
            prefix: BOS.to_string(),
            end_of_turn: EOS.to_string(),
            max_len,
        }
    }

    /// The input text of `output` answering `prompt`: prefix + prompt + " " + output + end of
    /// turn.
    pub fn text(&self, prompt: &str, output: &str) -> String {
        format!("{}{prompt} {output}{}", self.prefix, self.end_of_turn)
    }
}

/// Why a PM cannot be built, trained, scored or loaded.
#[derive(Debug, thiserror::Error)]
pub enum RewardError {
    /// The model engine failed.
    #[error("preference model: {0}")]
    Model(#[from] ModelError),
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
    /// A saved PM cannot be read or written.
    #[error("{path}: {message}\n  fix: {fix}")]
    Files {
        /// The file or directory.
        path: String,
        /// What is wrong.
        message: String,
        /// How to fix it.
        fix: String,
    },
}

/// A preference model: the scalar-head network, its tokenizer and its input format.
#[derive(Clone, Debug)]
pub struct Pm<B: Backend> {
    /// Trunk + `Linear(d, 1)`.
    pub model: ScalarHead<B>,
    /// The tokenizer of the trunk.
    pub tokenizer: Tokenizer,
    /// How inputs are written.
    pub format: PmFormat,
}

impl<B: Backend> Pm<B> {
    /// A PM on `trunk` with a fresh scalar head (weights normal(0, 0.02) from the backend's
    /// seed, bias 0). `format.max_len` must fit the trunk's context.
    pub fn new(
        trunk: Llama<B>,
        tokenizer: Tokenizer,
        format: PmFormat,
    ) -> Result<Self, RewardError> {
        let (tv, mv) = (tokenizer.vocab_size(), trunk.config().vocab_size);
        if tv > mv {
            return Err(ModelError::Tokenizer(format!(
                "the tokenizer has {tv} ids but the trunk only {mv}; use the trunk's own tokenizer"
            ))
            .into());
        }
        let model = ScalarHead::new(trunk);
        let pm = Self {
            model,
            tokenizer,
            format,
        };
        pm.check_max_len()?;
        Ok(pm)
    }

    /// A PM on the decoder of `lm` (the policy-size model) with its tokenizer.
    pub fn from_lm(lm: Lm<B>, format: PmFormat) -> Result<Self, RewardError> {
        Self::new(lm.model, lm.tokenizer, format)
    }

    fn prefix_len(&self) -> Result<usize, RewardError> {
        Ok(self.encode_raw(&self.format.prefix)?.len())
    }

    fn check_max_len(&self) -> Result<(), RewardError> {
        let ctx = self.model.trunk.config().max_seq_len;
        let prefix = self.prefix_len()?;
        let max_len = self.format.max_len;
        if max_len > ctx || max_len <= prefix + 1 {
            return Err(RewardError::Config {
                key: "max_len",
                message: format!(
                    "{max_len} tokens does not fit between the prefix ({prefix} tokens) and the PM's context ({ctx} tokens)"
                ),
                fix: format!("set max_len between {} and {ctx}", prefix + 2),
            });
        }
        Ok(())
    }

    fn encode_raw(&self, text: &str) -> Result<Vec<u32>, RewardError> {
        self.tokenizer
            .encode(text, false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()).into())
    }

    /// Token ids of a full input text (see [`PmFormat::text`]) and whether it was truncated:
    /// beyond `max_len` the prefix tokens and the last tokens are kept.
    pub fn encode_text(&self, text: &str) -> Result<(Vec<u32>, bool), RewardError> {
        let ids = self.encode_raw(text)?;
        let max = self.format.max_len;
        if ids.len() <= max {
            return Ok((ids, false));
        }
        let keep_head = self.prefix_len()?.min(max);
        let mut out = ids[..keep_head].to_vec();
        out.extend_from_slice(&ids[ids.len() - (max - keep_head)..]);
        Ok((out, true))
    }

    /// Token ids of `output` answering `prompt`, and whether the input was truncated.
    pub fn encode(&self, prompt: &str, output: &str) -> Result<(Vec<u32>, bool), RewardError> {
        self.encode_text(&self.format.text(prompt, output))
    }

    fn pad_id(&self) -> u32 {
        self.tokenizer
            .pad_id()
            .or(self.tokenizer.eos_id())
            .unwrap_or(0)
    }

    /// Scores of token rows `[b]` (right-padded to a bucketed width).
    fn forward_rows(&self, rows: &[Vec<u32>]) -> Tensor<B, 1> {
        let longest = rows.iter().map(Vec::len).max().unwrap_or(1);
        let width = round_up(longest, WIDTH_BUCKET).min(self.format.max_len.max(longest));
        let (tokens, mask) = pad_batch::<B>(
            rows,
            width,
            false,
            self.pad_id(),
            &self.model.trunk.device(),
        );
        self.model.forward(tokens, mask)
    }

    /// Scores of encoded inputs, in batches of `batch_size` rows grouped by length.
    fn score_ids(&self, rows: &[Vec<u32>], batch_size: usize) -> Result<Vec<f64>, RewardError> {
        if batch_size == 0 {
            return Err(batch_error());
        }
        if let Some(i) = rows.iter().position(Vec::is_empty) {
            return Err(RewardError::Empty {
                what: format!("input {i} encodes to no tokens"),
                fix: "give the PM a non-empty prompt or output".into(),
            });
        }
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].len());
        let mut out = vec![0.0; rows.len()];
        for chunk in order.chunks(batch_size) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| rows[i].clone()).collect();
            let scores = host(self.forward_rows(&batch))?;
            for (&i, s) in chunk.iter().zip(scores) {
                out[i] = s;
            }
        }
        Ok(out)
    }
}

impl<B: AutodiffBackend> Pm<B> {
    /// The PM without autodiff tracking, for scoring.
    pub fn valid(&self) -> Pm<B::InnerBackend> {
        Pm {
            model: self.model.valid(),
            tokenizer: self.tokenizer.clone(),
            format: self.format.clone(),
        }
    }
}

fn batch_error() -> RewardError {
    RewardError::Config {
        key: "batch_size",
        message: "is 0".into(),
        fix: "set batch_size to at least 1".into(),
    }
}

fn host<B: Backend>(t: Tensor<B, 1>) -> Result<Vec<f64>, ModelError> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map(|v| v.into_iter().map(f64::from).collect())
        .map_err(|e| ModelError::Data(format!("{e:?}")))
}

/// Scores of full input texts (written with [`PmFormat::text`]), in batches of `batch_size`.
pub fn score_texts<B: Backend>(
    pm: &Pm<B>,
    texts: &[String],
    batch_size: usize,
) -> Result<Vec<f64>, RewardError> {
    let rows = texts
        .iter()
        .map(|t| pm.encode_text(t).map(|(ids, _)| ids))
        .collect::<Result<Vec<_>, _>>()?;
    pm.score_ids(&rows, batch_size)
}

/// Scores of `(prompt, output)` pairs, in batches of `batch_size`.
pub fn score_outputs<B: Backend>(
    pm: &Pm<B>,
    items: &[(&str, &str)],
    batch_size: usize,
) -> Result<Vec<f64>, RewardError> {
    let texts: Vec<String> = items.iter().map(|(p, o)| pm.format.text(p, o)).collect();
    score_texts(pm, &texts, batch_size)
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
pub fn config_problems(cfg: &RewardConfig) -> Vec<(&'static str, String)> {
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
/// be smaller), with the [`PretrainConfig::lr_at`] warm-up + cosine schedule decaying to 0.
/// `on_step(step, loss)` is called after every step. Inputs are limited to the smaller of
/// `pm.format.max_len` and `cfg.max_len` tokens (the returned PM's format records it).
/// Deterministic for equal inputs on one machine.
pub fn train_reward<B: AutodiffBackend>(
    pm: Pm<B>,
    pairs: &[Pair],
    cfg: &RewardConfig,
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
    let schedule = PretrainConfig {
        steps,
        batch_size: cfg.batch_size,
        seq_len: cfg.max_len,
        lr: cfg.lr,
        warmup_frac: cfg.warmup_frac,
        min_lr_frac: 0.0,
        weight_decay: 0.0,
        grad_clip: 0.0,
    };
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
            let value = host(loss.clone())?.first().copied().unwrap_or(f64::NAN);
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
    crate::eval::pm_agreement::agreement(&rewards, &a_better).map_err(|e| RewardError::Empty {
        what: e.to_string(),
        fix: "evaluate on pairs the reference judge does not tie".into(),
    })
}

fn file_err(path: &Path, message: impl Into<String>, fix: &str) -> RewardError {
    RewardError::Files {
        path: path.display().to_string(),
        message: message.into(),
        fix: fix.to_string(),
    }
}

/// Saves a PM into `dir`: the scalar-head checkpoint (`config.json`, `model.mpk`),
/// `tokenizer.json` and `pm.json` (its [`PmFormat`]).
pub fn save_pm<B: Backend>(pm: &Pm<B>, dir: &Path) -> Result<(), RewardError> {
    save_scalar_checkpoint(&pm.model, dir)?;
    let tok = dir.join(files::TOKENIZER);
    pm.tokenizer.save(&tok).map_err(|e| {
        file_err(
            &tok,
            format!("cannot write: {e}"),
            "check that the directory is writable",
        )
    })?;
    let fmt = dir.join(files::FORMAT);
    let json = serde_json::to_vec_pretty(&pm.format).map_err(|e| {
        file_err(
            &fmt,
            format!("cannot serialise: {e}"),
            "report this as a bug",
        )
    })?;
    std::fs::write(&fmt, json).map_err(|e| {
        file_err(
            &fmt,
            format!("cannot write: {e}"),
            "check that the directory is writable",
        )
    })
}

/// Loads a PM saved by [`save_pm`].
pub fn load_pm<B: Backend>(dir: &Path, device: &B::Device) -> Result<Pm<B>, RewardError> {
    const FIX: &str = "point at a directory written by the reward stage, or rebuild it";
    let model = load_scalar_checkpoint::<B>(dir, device)?;
    let tok = dir.join(files::TOKENIZER);
    let tokenizer = Tokenizer::from_file(&tok).map_err(|e| file_err(&tok, e.to_string(), FIX))?;
    let fmt = dir.join(files::FORMAT);
    let bytes =
        std::fs::read(&fmt).map_err(|e| file_err(&fmt, format!("cannot read: {e}"), FIX))?;
    let format: PmFormat = serde_json::from_slice(&bytes)
        .map_err(|e| file_err(&fmt, format!("invalid PM format: {e}"), FIX))?;
    let pm = Pm {
        model,
        tokenizer,
        format,
    };
    pm.check_max_len()?;
    Ok(pm)
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
        let p = config_problems(&cfg);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "holdout_frac");
    }
}
