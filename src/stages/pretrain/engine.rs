//! The from-scratch pretraining engine of the built-in world's decoders (the `world-xs`,
//! `world-s` and `world-m` simulators that stand in for the paper's pretrained LLaMA models, §4).
//!
//! The engine knows nothing about the corpus: it takes tokenised documents, packs them into
//! rows ([`pack_documents`]), and trains a [`Llama`] with next-token cross-entropy, AdamW
//! (β = 0.9/0.95), a linear warm-up followed by cosine decay ([`PretrainConfig::schedule`]) and
//! global-norm gradient clipping. Rows are drawn in a seeded shuffle that is redrawn every pass,
//! so a run is a pure function of the initial model, the rows, the config and the seed.

use std::time::Instant;

use crate::model::optim::AdamWConfig;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::model::{Llama, ModelError};
use crate::recipe::PretrainConfig;
use crate::seed;

/// Batches are padded to a multiple of this many columns (capped at the longest row), so that
/// only a few distinct shapes occur (GPU kernels are compiled per shape).
const WIDTH_BUCKET: usize = 64;

/// Added to the global gradient norm before dividing, so a zero gradient never divides by zero.
const NORM_EPS: f64 = 1e-6;

/// How many partly filled rows [`pack_documents`] keeps open for later documents.
pub const PACK_OPEN_ROWS: usize = 64;

/// Packs documents (token ids; each should start with BOS and end with EOS, which the caller
/// adds) into rows of at most `seq_len` tokens by bounded first fit: a document goes into the
/// first of the (at most [`PACK_OPEN_ROWS`]) open rows with room for it, otherwise it opens a
/// new row; when too many rows are open, the oldest is closed. This fills rows much better
/// than packing in order, so less of each training batch is padding. A document longer than
/// `seq_len` is cut into `seq_len`-token pieces, each a row of its own; its remainder is packed
/// like a document. A document that fits is never split. Rows are not padded; empty documents
/// are skipped. A `seq_len` of 0 is treated as 1. Deterministic in the order of `docs`.
pub fn pack_documents(docs: &[Vec<u32>], seq_len: usize) -> Vec<Vec<u32>> {
    let seq_len = seq_len.max(1);
    let mut rows = Vec::new();
    let mut open: std::collections::VecDeque<Vec<u32>> = std::collections::VecDeque::new();
    for doc in docs {
        let mut doc: &[u32] = doc;
        while doc.len() > seq_len {
            rows.push(doc[..seq_len].to_vec());
            doc = &doc[seq_len..];
        }
        if doc.is_empty() {
            continue;
        }
        match open.iter_mut().find(|r| r.len() + doc.len() <= seq_len) {
            Some(row) => row.extend_from_slice(doc),
            None => {
                if open.len() == PACK_OPEN_ROWS {
                    rows.extend(open.pop_front());
                }
                let mut row = Vec::with_capacity(seq_len);
                row.extend_from_slice(doc);
                open.push_back(row);
            }
        }
    }
    rows.extend(open);
    rows
}

/// Result of a pretraining run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainLog {
    /// Optimiser steps taken.
    pub steps: usize,
    /// Target tokens trained on (padding excluded), over all steps.
    pub tokens: usize,
    /// Wall-clock seconds of the training loop.
    pub seconds: f64,
    /// `tokens / seconds`.
    pub tokens_per_s: f64,
    /// Training loss (mean next-token cross-entropy, nats) of every step.
    pub losses: Vec<f64>,
    /// Mean loss over the last 10% of the steps (at least one step).
    pub final_loss: f64,
}

/// One batch on the device: inputs `[b, w−1]` with their RoPE positions and attention bias
/// `[b, 1, w−1, w−1]`, targets `[b, w−1, 1]` and target weights `[b, w−1]` (1 for a real target,
/// 0 for padding).
struct Batch<B: Backend> {
    inputs: Tensor<B, 2, Int>,
    positions: Tensor<B, 2, Int>,
    bias: Tensor<B, 4>,
    targets: Tensor<B, 3, Int>,
    weights: Tensor<B, 2>,
    /// Number of real targets.
    n_targets: usize,
}

/// Builds the tensors of a batch of rows (each with at least one token), right-padded with
/// `pad_id` to `width` columns. Attention is causal and never reaches padding; with
/// `doc_start`, a row holds several documents each starting with that token, and a token sees
/// (and counts positions from) the start of its own document only.
fn make_batch<B: Backend>(
    rows: &[&[u32]],
    width: usize,
    pad_id: u32,
    doc_start: Option<u32>,
    device: &B::Device,
) -> Batch<B> {
    let b = rows.len();
    let s = width - 1;
    let mut inputs = vec![i64::from(pad_id); b * s];
    let mut positions = vec![0i64; b * s];
    let mut bias = vec![Llama::<B>::MASKED_BIAS; b * s * s];
    let mut targets = vec![i64::from(pad_id); b * s];
    let mut weights = vec![0.0f32; b * s];
    let mut n_targets = 0;
    for (r, row) in rows.iter().enumerate() {
        let n = row.len().min(width).saturating_sub(1);
        let mut doc_begin = 0;
        for j in 0..n {
            if j > 0 && doc_start == Some(row[j]) {
                doc_begin = j;
            }
            inputs[r * s + j] = i64::from(row[j]);
            positions[r * s + j] = (j - doc_begin) as i64;
            targets[r * s + j] = i64::from(row[j + 1]);
            weights[r * s + j] = 1.0;
            let q = (r * s + j) * s;
            for k in doc_begin..=j {
                bias[q + k] = 0.0;
            }
        }
        n_targets += n;
    }
    Batch {
        inputs: Tensor::from_data(TensorData::new(inputs, [b, s]), device),
        positions: Tensor::from_data(TensorData::new(positions, [b, s]), device),
        bias: Tensor::from_data(TensorData::new(bias, [b, 1, s, s]), device),
        targets: Tensor::from_data(TensorData::new(targets, [b, s, 1]), device),
        weights: Tensor::from_data(TensorData::new(weights, [b, s]), device),
        n_targets,
    }
}

/// Summed next-token negative log-likelihood of a batch (a scalar tensor `[1]`).
fn batch_nll_sum<B: Backend>(model: &Llama<B>, batch: &Batch<B>) -> Tensor<B, 1> {
    let [b, s] = batch.inputs.dims();
    let logits = model.forward_with(
        batch.inputs.clone(),
        batch.positions.clone(),
        batch.bias.clone(),
    );
    let logp = crate::model::log_softmax(logits).gather(2, batch.targets.clone());
    -(logp.reshape([b, s]) * batch.weights.clone()).sum()
}

/// Column count of a batch whose longest row has `longest` tokens, when no row exceeds `cap`.
fn batch_width(longest: usize, cap: usize) -> usize {
    longest
        .div_ceil(WIDTH_BUCKET)
        .saturating_mul(WIDTH_BUCKET)
        .min(cap)
        .max(longest)
        .max(2)
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> Result<f64, ModelError> {
    t.into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .map_err(|e| ModelError::Data(format!("{e:?}")))?
        .first()
        .copied()
        .ok_or_else(|| ModelError::Data("a scalar loss tensor was empty".into()))
}

/// Checks rows against the model: ids in the vocabulary, lengths within `max_seq_len`.
fn check_rows(
    rows: &[Vec<u32>],
    pad_id: u32,
    vocab: usize,
    max_seq_len: usize,
) -> Result<(), ModelError> {
    if rows.is_empty() {
        return Err(ModelError::Request(
            "no rows to train or evaluate on; pack at least one document with pack_documents"
                .into(),
        ));
    }
    if pad_id as usize >= vocab {
        return Err(ModelError::Request(format!(
            "pad id {pad_id} is outside the model's vocabulary of {vocab} ids; use a pad id below {vocab}"
        )));
    }
    for (i, row) in rows.iter().enumerate() {
        if row.len() > max_seq_len {
            return Err(ModelError::Request(format!(
                "row {i} has {} tokens, more than the model's max_seq_len {max_seq_len}; pack with a seq_len of at most {max_seq_len}",
                row.len()
            )));
        }
        if let Some(t) = row.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::Request(format!(
                "row {i} contains token id {t}, but the model's vocabulary has {vocab} ids; tokenise with the model's tokenizer or raise vocab_size"
            )));
        }
    }
    if rows.iter().all(|r| r.len() < 2) {
        return Err(ModelError::Request(
            "every row has fewer than 2 tokens, so there is nothing to predict; pack longer documents"
                .into(),
        ));
    }
    Ok(())
}

/// Sums the squared entries of every parameter gradient into one scalar tensor.
struct SquaredNorm<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let sq = g.square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + sq,
                None => sq,
            });
        }
    }
}

/// Multiplies every parameter gradient by a scalar tensor `[1]`.
struct ScaleGrads<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    coef: Tensor<B::InnerBackend, 1>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for ScaleGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let coef: Tensor<B::InnerBackend, D> = self.coef.clone().reshape([1; D]);
            self.grads.register(param.id, g * coef);
        }
    }
}

/// Scales the gradients so that their global L2 norm is at most `max_norm`, on the device
/// (no read-back).
pub fn clip_global_norm<B: AutodiffBackend>(
    model: &Llama<B>,
    grads: &mut GradientsParams,
    max_norm: f64,
) {
    let mut norm = SquaredNorm::<B> { grads, total: None };
    model.visit(&mut norm);
    let Some(total) = norm.total else { return };
    let coef = total
        .sqrt()
        .add_scalar(NORM_EPS)
        .recip()
        .mul_scalar(max_norm)
        .clamp_max(1.0);
    model.visit(&mut ScaleGrads::<B> { grads, coef });
}

/// An endless stream of row indices: a seeded permutation of all rows, redrawn every pass.
struct RowOrder {
    seed: u64,
    n: usize,
    pass: u64,
    order: Vec<usize>,
    next: usize,
}

impl RowOrder {
    fn new(seed: u64, n: usize) -> Self {
        let mut s = Self {
            seed,
            n,
            pass: 0,
            order: Vec::new(),
            next: 0,
        };
        s.shuffle();
        s
    }

    fn shuffle(&mut self) {
        self.order = (0..self.n).collect();
        let mut rng = seed::rng(seed::derive_index(self.seed, "pretrain-pass", self.pass));
        self.order.shuffle(&mut rng);
        self.next = 0;
    }

    fn take(&mut self) -> usize {
        if self.next == self.order.len() {
            self.pass += 1;
            self.shuffle();
        }
        let i = self.order[self.next];
        self.next += 1;
        i
    }
}

/// Trains `model` (already initialised by the caller, who seeds the backend) on `rows` (from
/// [`pack_documents`]) for `cfg.steps` steps of `cfg.batch_size` rows.
///
/// Rows are visited in a seeded shuffle of all rows (derived from `seed`), redrawn each pass;
/// rows with fewer than 2 tokens carry no target and are skipped. A batch is right-padded with
/// `pad_id`; the loss is the mean next-token cross-entropy over the real targets (padding is
/// never attended to or predicted). AdamW (β 0.9/0.95, ε 1e-8, decoupled weight decay), the
/// [`PretrainConfig::schedule`] and global-norm clipping. `on_step(step, loss)` is
/// called after every step with the step's 0-based index and its loss. Deterministic: the
/// same model, rows, config and seed give bit-identical weights on the same machine.
pub fn pretrain<B: AutodiffBackend>(
    model: Llama<B>,
    rows: &[Vec<u32>],
    pad_id: u32,
    cfg: &PretrainConfig,
    seed: u64,
    on_step: &mut dyn FnMut(usize, f64),
) -> Result<(Llama<B>, PretrainLog), ModelError> {
    pretrain_documents(model, rows, pad_id, None, cfg, seed, on_step)
}

/// [`pretrain`] on rows packing several documents that each begin with `doc_start`: attention
/// stays within a document and RoPE positions restart at its start, exactly as when the
/// document is read alone (so a model sees at inference what it saw in training). `None` treats
/// every row as one sequence.
pub fn pretrain_documents<B: AutodiffBackend>(
    model: Llama<B>,
    rows: &[Vec<u32>],
    pad_id: u32,
    doc_start: Option<u32>,
    cfg: &PretrainConfig,
    seed: u64,
    on_step: &mut dyn FnMut(usize, f64),
) -> Result<(Llama<B>, PretrainLog), ModelError> {
    let problems = cfg.problems();
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|(f, p)| format!("{f}: {p}")).collect();
        return Err(ModelError::Request(format!(
            "invalid pretraining config: {}",
            list.join("; ")
        )));
    }
    let mc = model.config().clone();
    if cfg.seq_len > mc.max_seq_len {
        return Err(ModelError::Request(format!(
            "seq_len {} exceeds the model's max_seq_len {}; lower seq_len",
            cfg.seq_len, mc.max_seq_len
        )));
    }
    check_rows(rows, pad_id, mc.vocab_size, mc.max_seq_len)?;
    let usable: Vec<&[u32]> = rows
        .iter()
        .filter(|r| r.len() >= 2)
        .map(Vec::as_slice)
        .collect();
    let cap = usable.iter().map(|r| r.len()).max().unwrap_or(2);
    let device = model.device();
    let schedule = cfg.schedule();

    let mut optim = AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.95)
        .with_epsilon(1e-8)
        .with_weight_decay(cfg.weight_decay as f32)
        .init::<B, Llama<B>>();
    let mut order = RowOrder::new(seed::derive(seed, &["pretrain", "shuffle"]), usable.len());
    let mut model = model;
    let mut losses = Vec::with_capacity(cfg.steps);
    let mut tokens = 0usize;
    let start = Instant::now();
    for step in 0..cfg.steps {
        let picked: Vec<&[u32]> = (0..cfg.batch_size).map(|_| usable[order.take()]).collect();
        let longest = picked.iter().map(|r| r.len()).max().unwrap_or(2);
        let batch = make_batch::<B>(
            &picked,
            batch_width(longest, cap),
            pad_id,
            doc_start,
            &device,
        );
        let loss = batch_nll_sum(&model, &batch).div_scalar(batch.n_targets as f64);
        let value = scalar(loss.clone())?;
        if !value.is_finite() {
            return Err(ModelError::Request(format!(
                "pretraining diverged: the loss is {value} at step {step}; lower lr (now {}) or set grad_clip",
                cfg.lr
            )));
        }
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        if cfg.grad_clip > 0.0 {
            clip_global_norm(&model, &mut grads, cfg.grad_clip);
        }
        model = optim.step(schedule.lr_at(step), model, grads);
        tokens += batch.n_targets;
        losses.push(value);
        on_step(step, value);
    }
    let seconds = start.elapsed().as_secs_f64();
    let tail = (losses.len() / 10).max(1).min(losses.len());
    let final_loss = losses[losses.len() - tail..].iter().sum::<f64>() / tail as f64;
    let log = PretrainLog {
        steps: cfg.steps,
        tokens,
        seconds,
        tokens_per_s: tokens as f64 / seconds.max(1e-9),
        losses,
        final_loss,
    };
    Ok((model, log))
}

/// Mean next-token negative log-likelihood (nats per token) of `rows` under `model`, without
/// gradients, in batches of `batch` rows (right-padded with `pad_id`; padding excluded; rows
/// with fewer than 2 tokens have no target and are skipped). Perplexity is the exponential of
/// it.
pub fn heldout_nll<B: Backend>(
    model: &Llama<B>,
    rows: &[Vec<u32>],
    pad_id: u32,
    batch: usize,
) -> Result<f64, ModelError> {
    heldout_nll_documents(model, rows, pad_id, None, batch)
}

/// [`heldout_nll`] on rows packing documents that each begin with `doc_start` (see
/// [`pretrain_documents`]).
pub fn heldout_nll_documents<B: Backend>(
    model: &Llama<B>,
    rows: &[Vec<u32>],
    pad_id: u32,
    doc_start: Option<u32>,
    batch: usize,
) -> Result<f64, ModelError> {
    if batch == 0 {
        return Err(ModelError::Request(
            "heldout_nll needs a batch size of at least 1".into(),
        ));
    }
    let mc = model.config();
    check_rows(rows, pad_id, mc.vocab_size, mc.max_seq_len)?;
    let usable: Vec<&[u32]> = rows
        .iter()
        .filter(|r| r.len() >= 2)
        .map(Vec::as_slice)
        .collect();
    let cap = usable.iter().map(|r| r.len()).max().unwrap_or(2);
    let device = model.device();
    let (mut total, mut count) = (0.0f64, 0usize);
    for chunk in usable.chunks(batch) {
        let longest = chunk.iter().map(|r| r.len()).max().unwrap_or(2);
        let b = make_batch::<B>(chunk, batch_width(longest, cap), pad_id, doc_start, &device);
        total += scalar(batch_nll_sum(model, &b))?;
        count += b.n_targets;
    }
    Ok(total / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_width_buckets_and_caps() {
        assert_eq!(batch_width(10, 256), 64);
        assert_eq!(batch_width(65, 256), 128);
        assert_eq!(batch_width(250, 256), 256);
        assert_eq!(batch_width(250, 250), 250);
        assert_eq!(batch_width(1, 1), 2);
    }

    fn grad_norm<B: AutodiffBackend>(model: &Llama<B>, grads: &GradientsParams) -> f64 {
        let mut v = SquaredNorm::<B> { grads, total: None };
        model.visit(&mut v);
        scalar(v.total.expect("gradients")).expect("scalar").sqrt()
    }

    #[test]
    fn global_norm_clipping_scales_all_gradients_together() {
        type Ad = burn::backend::Autodiff<crate::model::Cpu>;
        let device = Default::default();
        <Ad as Backend>::seed(&device, 3);
        let model = crate::model::LlamaConfig::tiny()
            .init::<Ad>(&device)
            .expect("tiny model");
        let rows: [&[u32]; 2] = [&[1, 5, 9, 13, 2], &[1, 7, 2]];
        let batch = make_batch::<Ad>(&rows, 5, 0, None, &device);
        let loss = batch_nll_sum(&model, &batch);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let norm = grad_norm(&model, &grads);
        assert!(norm > 0.0);
        let embed_before: Vec<f32> = grads
            .get::<crate::model::Cpu, 2>(model.embed.weight.id)
            .expect("embedding gradient")
            .into_data()
            .to_vec()
            .expect("f32");

        let mut clipped =
            GradientsParams::from_grads(batch_nll_sum(&model, &batch).backward(), &model);
        clip_global_norm(&model, &mut clipped, norm / 4.0);
        let after = grad_norm(&model, &clipped);
        assert!(
            (after - norm / 4.0).abs() < 1e-4 * norm,
            "{after} vs {}",
            norm / 4.0
        );
        let embed_after: Vec<f32> = clipped
            .get::<crate::model::Cpu, 2>(model.embed.weight.id)
            .expect("embedding gradient")
            .into_data()
            .to_vec()
            .expect("f32");
        for (a, b) in embed_before.iter().zip(&embed_after) {
            assert!((a / 4.0 - b).abs() <= 1e-6 * a.abs().max(1e-3));
        }

        let mut loose =
            GradientsParams::from_grads(batch_nll_sum(&model, &batch).backward(), &model);
        clip_global_norm(&model, &mut loose, norm * 2.0);
        assert!((grad_norm(&model, &loose) - norm).abs() < 1e-5 * norm);
    }

    #[test]
    fn row_order_visits_every_row_once_per_pass() {
        let mut order = RowOrder::new(5, 7);
        for _ in 0..3 {
            let mut pass: Vec<usize> = (0..7).map(|_| order.take()).collect();
            pass.sort_unstable();
            assert_eq!(pass, (0..7).collect::<Vec<_>>());
        }
        let a: Vec<usize> = (0..7).map(|_| RowOrder::new(5, 7).order[0]).collect();
        assert!(a.iter().all(|&x| x == a[0]));
        let first = RowOrder::new(5, 50).order;
        let mut o = RowOrder::new(5, 50);
        let _: Vec<usize> = (0..50).map(|_| o.take()).collect();
        o.take();
        assert_ne!(first, o.order, "each pass draws a new permutation");
    }
}
