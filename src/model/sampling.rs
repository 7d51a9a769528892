//! Batched, seeded generation with the KV cache, and log-probability scoring.
//!
//! Generation produces the simulated responses of RLAIF / RLCD (paper §3, prompts p+ and p−
//! sampled from the same simulator) and the PPO rollouts. Each sequence draws from its own
//! random stream (`rlcd::seed`), so its tokens depend only on its prompt, its seed and the
//! model — never on the other prompts in the batch or on the batch size. Prompts of different
//! lengths are left-padded; padding is masked and does not shift RoPE positions.
//!
//! Scoring ([`continuation_logprob`], [`next_token_logits`]) is backend-generic: on an
//! `Autodiff` backend the returned tensors carry gradients (PPO, DPO).

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::llama::{Llama, round_up};
use super::{ModelError, log_softmax};
use crate::seed;

/// Prompt widths are padded up to a multiple of this, so the shapes a backend sees repeat.
pub const PROMPT_BUCKET: usize = 16;

/// How to generate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateOptions {
    /// Most tokens generated per sequence.
    pub max_new_tokens: usize,
    /// Softmax temperature; `0` means greedy decoding.
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches this (1 = off).
    pub top_p: f64,
    /// Generation stops when the decoded text contains one of these; the text is cut before it.
    pub stop: Vec<String>,
    /// Token ids that end a sequence (kept in `token_ids`, left out of `text`). [`super::Lm`]
    /// adds the tokenizer's EOS.
    pub eos_ids: Vec<u32>,
    /// Token ids that are never sampled.
    pub banned_ids: Vec<u32>,
    /// Decode with the KV cache (`false`: recompute the whole sequence every token).
    pub use_cache: bool,
    /// Token id written into padding slots (masked, never attended to).
    pub pad_id: u32,
    /// What [`super::Lm::generate`] does with a prompt that leaves fewer than
    /// `max_new_tokens` of the model's context free.
    pub truncate: super::Truncate,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            temperature: 1.0,
            top_p: 1.0,
            stop: Vec::new(),
            eos_ids: Vec::new(),
            banned_ids: Vec::new(),
            use_cache: true,
            pad_id: 0,
            truncate: super::Truncate::default(),
        }
    }
}

/// One prompt to continue and the seed of its random stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRequest {
    /// The prompt text (already rendered with its chat template).
    pub prompt: String,
    /// Seed of this sequence's sampling stream.
    pub seed: u64,
}

impl GenerationRequest {
    /// Requests for `prompts`, the `i`-th seeded with `seed::derive_index(seed, "sequence", i)`.
    pub fn batch(prompts: &[String], seed: u64) -> Vec<Self> {
        prompts
            .iter()
            .enumerate()
            .map(|(i, p)| Self {
                prompt: p.clone(),
                seed: seed::derive_index(seed, "sequence", i as u64),
            })
            .collect()
    }
}

/// Why a sequence stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FinishReason {
    /// An end-of-sequence token was generated.
    Eos,
    /// A stop string appeared in the text.
    Stop,
    /// `max_new_tokens` were generated.
    Length,
}

/// One generated continuation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Decoded text of the continuation (without EOS, cut before a stop string).
    pub text: String,
    /// Generated token ids (including a final EOS or the token completing a stop string).
    pub token_ids: Vec<u32>,
    /// Log-probability of each generated token under the model (temperature 1, no filtering).
    pub logprobs: Vec<f32>,
    /// Why generation ended.
    pub finish_reason: FinishReason,
}

/// Builds `[b, width]` token and mask tensors from rows, left- or right-padded with `pad_id`.
pub fn pad_batch<B: Backend>(
    rows: &[Vec<u32>],
    width: usize,
    left: bool,
    pad_id: u32,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Bool>) {
    let b = rows.len();
    let mut ids = vec![pad_id as i64; b * width];
    let mut mask = vec![false; b * width];
    for (r, row) in rows.iter().enumerate() {
        let n = row.len().min(width);
        let off = if left { width - n } else { 0 };
        for (j, &t) in row[..n].iter().enumerate() {
            ids[r * width + off + j] = t as i64;
            mask[r * width + off + j] = true;
        }
    }
    (
        Tensor::from_data(TensorData::new(ids, [b, width]), device),
        Tensor::from_data(TensorData::new(mask, [b, width]), device),
    )
}

fn check_ids(ids: &[u32], vocab: usize, what: &str) -> Result<(), ModelError> {
    match ids.iter().find(|&&t| t as usize >= vocab) {
        Some(t) => Err(ModelError::Request(format!(
            "{what} contains token id {t}, but the model's vocabulary has {vocab} ids"
        ))),
        None => Ok(()),
    }
}

fn to_host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>, ModelError> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| ModelError::Data(format!("{e:?}")))
}

/// Logits `[b, vocab]` for the token following each prompt (prompts are left-padded).
pub fn next_token_logits<B: Backend>(
    model: &Llama<B>,
    prompts: &[Vec<u32>],
) -> Result<Tensor<B, 2>, ModelError> {
    let vocab = model.config().vocab_size;
    if prompts.is_empty() || prompts.iter().any(|p| p.is_empty()) {
        return Err(ModelError::Request(
            "every prompt needs at least one token".into(),
        ));
    }
    for p in prompts {
        check_ids(p, vocab, "a prompt")?;
    }
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    if longest > model.config().max_seq_len {
        return Err(ModelError::TooLong {
            len: longest,
            max: model.config().max_seq_len,
        });
    }
    let width = round_up(longest, PROMPT_BUCKET);
    let (tokens, mask) = pad_batch::<B>(prompts, width, true, 0, &model.device());
    let hidden = model.hidden(tokens, mask).narrow(1, width - 1, 1);
    Ok(model.head(hidden).reshape([prompts.len(), vocab]))
}

/// Log-probabilities of continuations given prompts.
#[derive(Clone, Debug)]
pub struct ContinuationScores<B: Backend> {
    /// Per-token log-probabilities `[b, c]` (0 at padding).
    pub token_logprobs: Tensor<B, 2>,
    /// `[b, c]`: 1 for continuation tokens, 0 for padding.
    pub mask: Tensor<B, 2>,
    /// Sum over each continuation `[b]`.
    pub sum: Tensor<B, 1>,
    /// Mean over each continuation `[b]` (0 for an empty continuation).
    pub mean: Tensor<B, 1>,
}

/// Log-probability of `continuations[i]` following `prompts[i]` under `model`. Prompts are
/// left-padded and continuations right-padded so that every continuation starts in the same
/// column; only those columns go through the output head.
pub fn continuation_logprob<B: Backend>(
    model: &Llama<B>,
    prompts: &[Vec<u32>],
    continuations: &[Vec<u32>],
) -> Result<ContinuationScores<B>, ModelError> {
    let cfg = model.config();
    let vocab = cfg.vocab_size;
    if prompts.len() != continuations.len() || prompts.is_empty() {
        return Err(ModelError::Request(format!(
            "continuation_logprob needs one continuation per prompt and at least one pair, got {} prompts and {} continuations",
            prompts.len(),
            continuations.len()
        )));
    }
    if prompts.iter().any(|p| p.is_empty()) {
        return Err(ModelError::Request(
            "every prompt needs at least one token".into(),
        ));
    }
    for (p, c) in prompts.iter().zip(continuations) {
        check_ids(p, vocab, "a prompt")?;
        check_ids(c, vocab, "a continuation")?;
        if p.len() + c.len() > cfg.max_seq_len {
            return Err(ModelError::TooLong {
                len: p.len() + c.len(),
                max: cfg.max_seq_len,
            });
        }
    }
    let b = prompts.len();
    let device = model.device();
    let pw = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let cw = continuations.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let rows: Vec<Vec<u32>> = prompts
        .iter()
        .zip(continuations)
        .map(|(p, c)| {
            let mut row = vec![0u32; pw - p.len()];
            row.extend_from_slice(p);
            row.extend_from_slice(c);
            row
        })
        .collect();
    let width = pw + cw;
    let mut ids = vec![0i64; b * width];
    let mut mask = vec![false; b * width];
    let mut targets = vec![0i64; b * cw];
    let mut tmask = vec![0.0f32; b * cw];
    for (r, (p, c)) in prompts.iter().zip(continuations).enumerate() {
        let start = pw - p.len();
        for (j, &t) in rows[r].iter().enumerate().skip(start) {
            ids[r * width + j] = t as i64;
            mask[r * width + j] = true;
        }
        for (j, &t) in c.iter().enumerate() {
            targets[r * cw + j] = t as i64;
            tmask[r * cw + j] = 1.0;
        }
    }
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [b, width]), &device);
    let mask = Tensor::<B, 2, Bool>::from_data(TensorData::new(mask, [b, width]), &device);
    let hidden = model.hidden(tokens, mask).narrow(1, pw - 1, cw);
    let logp = log_softmax(model.head(hidden)); // [b, cw, v]
    let targets = Tensor::<B, 2, Int>::from_data(TensorData::new(targets, [b, cw]), &device);
    let tmask = Tensor::<B, 2>::from_data(TensorData::new(tmask, [b, cw]), &device);
    let picked = logp.gather(2, targets.reshape([b, cw, 1])).reshape([b, cw]);
    let token_logprobs = picked * tmask.clone();
    let sum = token_logprobs.clone().sum_dim(1).reshape([b]);
    let count = tmask.clone().sum_dim(1).reshape([b]).clamp_min(1.0);
    let mean = sum.clone() / count;
    Ok(ContinuationScores {
        token_logprobs,
        mask: tmask,
        sum,
        mean,
    })
}

/// Log-sum-exp of one row (f32 exponentials, f64 accumulation).
fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&x| f64::from((x - max).exp())).sum();
    f64::from(max) + sum.ln()
}

/// Chooses the next token from one row of logits; returns `(token, model log-prob)`.
fn choose(row: &[f32], opts: &GenerateOptions, banned: &[bool], rng: &mut StdRng) -> (u32, f32) {
    let token = if opts.temperature <= 0.0 {
        let mut best = None::<(usize, f32)>;
        for (i, &x) in row.iter().enumerate() {
            if !banned[i] && best.is_none_or(|(_, bx)| x > bx) {
                best = Some((i, x));
            }
        }
        best.map_or(0, |(i, _)| i)
    } else {
        let inv_t = (1.0 / opts.temperature) as f32;
        let max = row
            .iter()
            .zip(banned)
            .filter(|(_, b)| !**b)
            .map(|(&x, _)| x)
            .fold(f32::NEG_INFINITY, f32::max);
        // Unnormalised probabilities at temperature T; banned tokens get 0.
        let weights: Vec<f32> = row
            .iter()
            .zip(banned)
            .map(|(&x, &b)| if b { 0.0 } else { ((x - max) * inv_t).exp() })
            .collect();
        // Candidates with positive weight, in index order or, under top-p, most likely first
        // and cut where the kept mass reaches `top_p`.
        let mut order: Vec<u32> = (0..weights.len() as u32)
            .filter(|&i| weights[i as usize] > 0.0)
            .collect();
        if opts.top_p < 1.0 {
            let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
            order.sort_unstable_by(|&a, &b| {
                weights[b as usize]
                    .total_cmp(&weights[a as usize])
                    .then(a.cmp(&b))
            });
            let target = opts.top_p * total;
            let mut cum = 0.0;
            let mut keep = order.len();
            for (k, &i) in order.iter().enumerate() {
                cum += f64::from(weights[i as usize]);
                if cum >= target {
                    keep = k + 1;
                    break;
                }
            }
            order.truncate(keep.max(1));
        }
        let kept: f64 = order.iter().map(|&i| f64::from(weights[i as usize])).sum();
        let u = rng.random::<f64>() * kept;
        let mut acc = 0.0;
        let mut chosen = *order.last().unwrap_or(&0) as usize;
        for &i in &order {
            acc += f64::from(weights[i as usize]);
            if u < acc {
                chosen = i as usize;
                break;
            }
        }
        chosen
    };
    let logp = f64::from(row[token]) - log_sum_exp(row);
    (token as u32, logp as f32)
}

/// Generates continuations of token-id prompts. `seeds[i]` seeds sequence `i`; `decode` turns
/// generated ids into text (for stop strings and the returned text).
pub fn generate_ids<B: Backend>(
    model: &Llama<B>,
    prompts: &[Vec<u32>],
    seeds: &[u64],
    opts: &GenerateOptions,
    decode: &dyn Fn(&[u32]) -> String,
) -> Result<Vec<Generation>, ModelError> {
    let cfg = model.config();
    let vocab = cfg.vocab_size;
    let b = prompts.len();
    if b == 0 {
        return Ok(Vec::new());
    }
    if seeds.len() != b {
        return Err(ModelError::Request(format!(
            "{b} prompts but {} seeds; give one seed per prompt",
            seeds.len()
        )));
    }
    if prompts.iter().any(|p| p.is_empty()) {
        return Err(ModelError::Request(
            "every prompt needs at least one token".into(),
        ));
    }
    if !(opts.temperature.is_finite() && opts.top_p.is_finite()) || opts.top_p <= 0.0 {
        return Err(ModelError::Request(format!(
            "temperature ({}) must be finite and top_p ({}) in (0, 1]",
            opts.temperature, opts.top_p
        )));
    }
    for p in prompts {
        check_ids(p, vocab, "a prompt")?;
    }
    check_ids(&opts.banned_ids, vocab, "banned_ids")?;
    check_ids(&opts.eos_ids, vocab, "eos_ids")?;
    check_ids(&[opts.pad_id], vocab, "pad_id")?;
    let mut banned = vec![false; vocab];
    for &t in &opts.banned_ids {
        banned[t as usize] = true;
    }
    if banned.iter().all(|&x| x) {
        return Err(ModelError::Request(
            "banned_ids bans the whole vocabulary".into(),
        ));
    }
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    if longest + opts.max_new_tokens > cfg.max_seq_len {
        return Err(ModelError::TooLong {
            len: longest + opts.max_new_tokens,
            max: cfg.max_seq_len,
        });
    }
    let mut out: Vec<Generation> = (0..b)
        .map(|_| Generation {
            text: String::new(),
            token_ids: Vec::new(),
            logprobs: Vec::new(),
            finish_reason: FinishReason::Length,
        })
        .collect();
    if opts.max_new_tokens == 0 {
        return Ok(out);
    }
    let device = model.device();
    let width = round_up(longest, PROMPT_BUCKET);
    let mut rngs: Vec<StdRng> = seeds.iter().map(|&s| seed::rng(s)).collect();
    let mut done = vec![false; b];
    // Host copy of the whole padded batch (used when recomputing without a cache).
    let mut rows: Vec<Vec<i64>> = prompts
        .iter()
        .map(|p| {
            let mut r = vec![opts.pad_id as i64; width - p.len()];
            r.extend(p.iter().map(|&t| t as i64));
            r
        })
        .collect();
    let mut masks: Vec<Vec<bool>> = prompts
        .iter()
        .map(|p| {
            let mut m = vec![false; width - p.len()];
            m.extend(std::iter::repeat_n(true, p.len()));
            m
        })
        .collect();
    let flat = |rows: &[Vec<i64>], masks: &[Vec<bool>]| {
        let w = rows[0].len();
        let ids: Vec<i64> = rows.iter().flatten().copied().collect();
        let m: Vec<bool> = masks.iter().flatten().copied().collect();
        (
            Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [b, w]), &device),
            Tensor::<B, 2, Bool>::from_data(TensorData::new(m, [b, w]), &device),
        )
    };
    let mut cache = opts
        .use_cache
        .then(|| model.new_cache(b, width + opts.max_new_tokens));
    let decoding = model.decoding(b, opts.max_new_tokens, cache.is_some());
    let last_logits = |hidden: Tensor<B, 3>| -> Result<Vec<f32>, ModelError> {
        let s = hidden.dims()[1];
        to_host(model.head_with(hidden.narrow(1, s - 1, 1), &decoding))
    };
    let (tokens, mask) = flat(&rows, &masks);
    let mut logits = match cache.as_mut() {
        Some(c) => last_logits(model.forward_step_with(tokens, mask, c, &decoding)?)?,
        None => last_logits(model.hidden(tokens, mask))?,
    };
    for step in 0..opts.max_new_tokens {
        let mut next = vec![opts.pad_id as i64; b];
        let mut next_mask = vec![false; b];
        for i in 0..b {
            if done[i] {
                continue;
            }
            let row = &logits[i * vocab..(i + 1) * vocab];
            let (tok, lp) = choose(row, opts, &banned, &mut rngs[i]);
            let g = &mut out[i];
            g.token_ids.push(tok);
            g.logprobs.push(lp);
            if opts.eos_ids.contains(&tok) {
                g.finish_reason = FinishReason::Eos;
                done[i] = true;
                continue;
            }
            if !opts.stop.is_empty() {
                let text = decode(&g.token_ids);
                if let Some(cut) = opts.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                    g.finish_reason = FinishReason::Stop;
                    g.text = text[..cut].to_string();
                    done[i] = true;
                    continue;
                }
            }
            next[i] = tok as i64;
            next_mask[i] = true;
        }
        if step + 1 == opts.max_new_tokens || done.iter().all(|&d| d) {
            break;
        }
        logits = match cache.as_mut() {
            Some(c) => {
                let t = Tensor::<B, 2, Int>::from_data(TensorData::new(next, [b, 1]), &device);
                let m =
                    Tensor::<B, 2, Bool>::from_data(TensorData::new(next_mask, [b, 1]), &device);
                last_logits(model.forward_step_with(t, m, c, &decoding)?)?
            }
            None => {
                for i in 0..b {
                    rows[i].push(next[i]);
                    masks[i].push(next_mask[i]);
                }
                let (t, m) = flat(&rows, &masks);
                last_logits(model.hidden(t, m))?
            }
        };
    }
    for g in &mut out {
        if g.finish_reason != FinishReason::Stop {
            let ids = match g.finish_reason {
                FinishReason::Eos => &g.token_ids[..g.token_ids.len() - 1],
                _ => &g.token_ids[..],
            };
            g.text = decode(ids);
        }
    }
    Ok(out)
}
