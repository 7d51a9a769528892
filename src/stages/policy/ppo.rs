//! PPO against a preference model (paper §3 step 3, Appendix B; AlpacaFarm's PPO, which the
//! paper's code patches).
//!
//! Every step samples `rollouts` responses (temperature `temperature`, cut at the next speaker
//! tag) to training prompts taken in a seeded order, and scores each with the PM; a response
//! that never ends its turn, or is empty, gets −1 instead. Per-token rewards are
//! −β·max(0, log π − log π_ref) against the frozen initial policy (AlpacaFarm's clamp;
//! `kl_clamp = false` drops it), plus the score at the last token; β is `kl_coef`, or with
//! `adaptive_kl` follows Ziegler et al.'s (2019) proportional controller from it. Rewards are
//! whitened (scale only) when `whiten_rewards`, advantages come from GAE(γ, λ) on a value model
//! initialised from the PM and are whitened. Then `epochs` passes in mini-batches of
//! `step_batch` rollouts minimise the clipped surrogate plus `vf_coef` × the clipped value
//! loss, with one AdamW (eps 1e-5, `lr` after `warmup_steps` updates of linear warm-up) for
//! the policy and one for the value model. With a KL budget (`max_kl`) the run stops at the
//! first step whose rollouts are further than that from the initial policy, before training on
//! them.
//!
//! All randomness is derived from the seed and the step number, so a checkpoint (policy, value
//! model, both optimiser states, the step and the log so far) is all a resumed run needs to
//! continue exactly as an uninterrupted one.

use std::path::Path;
use std::time::Instant;

use crate::model::optim::AdamWConfig;
use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::record::Recorder;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::common::{
    PolicyError, PolicyFormat, Rows, check_lora, config_error, epoch_order, file_error, host,
    masked_mean, response_logprobs, response_values, scalar,
};
use crate::model::load::{load_checkpoint_into, save_checkpoint, save_scalar_checkpoint};
use crate::model::pm::{Pm, score_outputs};
use crate::model::sampling::{FinishReason, GenerateOptions, GenerationRequest};
use crate::model::{Llama, Lm, ScalarHead};
use crate::recipe::{AdaptiveKl, PpoConfig};
use crate::seed;
use crate::stages::checkpoint;

/// Reward of a response that never ends its turn or is empty (paper Appendix B).
pub const UNFINISHED_REWARD: f64 = -1.0;

/// The reward of a rollout whose text is `text`, which stopped for `finish`, and which the
/// preference model scored `score`: [`UNFINISHED_REWARD`] when it is empty, or cut at the
/// token limit unless `score_unfinished`.
fn rollout_reward(score: f64, finish: FinishReason, text: &str, score_unfinished: bool) -> f64 {
    let cut = finish == FinishReason::Length;
    if text.trim().is_empty() || (cut && !score_unfinished) {
        UNFINISHED_REWARD
    } else {
        score
    }
}

/// What one PPO step measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PpoStepLog {
    /// 0-based step.
    pub step: usize,
    /// Mean reward of the rollouts before the KL penalty: the PM score, or −1 for empty
    /// responses and for unfinished ones unless `ppo.score_unfinished`.
    pub score: f64,
    /// Mean KL to the initial policy per response, Σ (log π − log π_ref) over its tokens.
    pub kl: f64,
    /// Mean negative log-probability of the sampled tokens (a Monte-Carlo estimate of the
    /// policy's per-token entropy).
    pub entropy: f64,
    /// Mean response length in tokens.
    pub response_len: f64,
    /// Rollouts that never ended their turn or were empty.
    pub unfinished: usize,
    /// Share of response tokens whose ratio was clipped, over the step's mini-batches.
    pub clip_frac: f64,
    /// Mean clipped value loss over the step's mini-batches.
    pub value_loss: f64,
    /// Mean clipped surrogate loss over the step's mini-batches.
    pub policy_loss: f64,
    /// Mean total loss (policy + vf_coef × value) over the step's mini-batches.
    pub loss: f64,
    /// The KL coefficient β the step's rewards were shaped with.
    #[serde(default)]
    pub kl_coef: f64,
    /// Share of the step's rollouts whose response is token for token the same as another
    /// rollout's: a policy collapsing onto one answer drives it to 1.
    #[serde(default)]
    pub identical: f64,
}

/// The log of a PPO run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PpoLog {
    /// One entry per finished step.
    pub steps: Vec<PpoStepLog>,
    /// Training prompts usable (within `max_query_tokens`).
    pub prompts: usize,
    /// Wall-clock seconds of the steps run in this process (a resumed run adds its own).
    pub seconds: f64,
    /// Where the `max_kl` budget stopped the run: the step whose rollouts went over it (not
    /// trained on) and their mean KL. Absent when every step ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl_stop: Option<KlStop>,
}

/// The step at which a PPO run met its KL budget ([`PpoLog::kl_stop`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct KlStop {
    /// The step whose rollouts exceeded the budget; steps before it were trained.
    pub step: usize,
    /// Their mean KL to the initial policy (nats per response).
    pub kl: f64,
}

/// The policy, value model and reference a PPO run starts from.
pub struct PpoModels<'a, B: AutodiffBackend> {
    /// The policy to align (the initial policy when starting, ignored when resuming).
    pub policy: Lm<B>,
    /// The value model (initialised from the PM when starting).
    pub value: ScalarHead<B>,
    /// The frozen initial policy.
    pub reference: &'a Llama<B::InnerBackend>,
    /// The preference model giving the score.
    pub pm: &'a Pm<B::InnerBackend>,
}

/// Where and how often PPO checkpoints, and when it stops early.
pub type PpoCheckpoints = checkpoint::Checkpoints;

#[derive(Serialize, Deserialize)]
struct State {
    step: usize,
    log: PpoLog,
    /// The KL coefficient the next step uses (it moves under `adaptive_kl`).
    kl_coef: f64,
}

type Rec = checkpoint::OptimRecorder;

fn check(cfg: &PpoConfig) -> Result<(), PolicyError> {
    check_lora("ppo", cfg.lora.as_ref())?;
    let bad = |key, message: String, fix: &str| Err(config_error("ppo", key, message, fix));
    if cfg.rollouts == 0 {
        return bad("rollouts", "is 0".into(), "set rollouts ≥ 1");
    }
    if cfg.step_batch == 0 || cfg.step_batch > cfg.rollouts {
        return bad(
            "step_batch",
            format!(
                "{} is not in 1..=rollouts ({})",
                cfg.step_batch, cfg.rollouts
            ),
            "set step_batch between 1 and rollouts",
        );
    }
    if cfg.epochs == 0 {
        return bad("epochs", "is 0".into(), "set epochs ≥ 1");
    }
    if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        return bad("lr", format!("{} is not positive", cfg.lr), "set lr > 0");
    }
    if !(cfg.clip > 0.0 && cfg.value_clip > 0.0) {
        return bad(
            "clip",
            "clip and value_clip must be positive".into(),
            "use 0.2",
        );
    }
    if let Some(b) = cfg.max_kl
        && !(b.is_finite() && b > 0.0)
    {
        return bad(
            "max_kl",
            format!("{b} is not positive"),
            "set max_kl > 0 or leave it out",
        );
    }
    if cfg.max_response_tokens == 0 {
        return bad(
            "max_response_tokens",
            "is 0".into(),
            "set max_response_tokens ≥ 1",
        );
    }
    Ok(())
}

/// Whitens `x` over its masked entries: (x − mean)/std, plus the mean back when `!shift_mean`.
fn whiten(x: &mut [Vec<f32>], shift_mean: bool) {
    let n: usize = x.iter().map(Vec::len).sum();
    if n < 2 {
        return;
    }
    let mean = x.iter().flatten().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let var = x
        .iter()
        .flatten()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / (n - 1) as f64;
    let inv = 1.0 / (var + 1e-8).sqrt();
    for v in x.iter_mut().flatten() {
        let w = (f64::from(*v) - mean) * inv;
        *v = (if shift_mean { w } else { w + mean }) as f32;
    }
}

/// GAE advantages and returns of one response: `rewards[t]`, `values[t]`, γ, λ.
pub fn gae(rewards: &[f32], values: &[f32], gamma: f64, lambda: f64) -> (Vec<f32>, Vec<f32>) {
    let n = rewards.len();
    let mut adv = vec![0.0f32; n];
    let mut last = 0.0f64;
    for t in (0..n).rev() {
        let next = if t + 1 < n {
            f64::from(values[t + 1])
        } else {
            0.0
        };
        let delta = f64::from(rewards[t]) + gamma * next - f64::from(values[t]);
        last = delta + gamma * lambda * last;
        adv[t] = last as f32;
    }
    let ret = adv.iter().zip(values).map(|(a, v)| a + v).collect();
    (adv, ret)
}

/// Per-token rewards of one response: −β·(log π − log π_ref) for each token, the difference
/// clamped at 0 when `clamp` (AlpacaFarm), plus `score` at the last token.
pub fn shaped_rewards(
    logp: &[f32],
    ref_logp: &[f32],
    score: f64,
    beta: f64,
    clamp: bool,
) -> Vec<f32> {
    let mut row: Vec<f32> = logp
        .iter()
        .zip(ref_logp)
        .map(|(lp, rp)| {
            let d = f64::from(lp - rp);
            let d = if clamp { d.max(0.0) } else { d };
            (-beta * d) as f32
        })
        .collect();
    if let Some(last) = row.last_mut() {
        *last += score as f32;
    }
    row
}

/// The adaptive controller's next coefficient (Ziegler et al. 2019): β·(1 + clip(kl/target − 1,
/// −0.2, 0.2)·rollouts/horizon).
pub fn adapt_kl_coef(beta: f64, kl: f64, rollouts: usize, a: &AdaptiveKl) -> f64 {
    let error = (kl / a.target - 1.0).clamp(-0.2, 0.2);
    beta * (1.0 + error * rollouts as f64 / a.horizon)
}

/// Learning-rate factor of optimiser update `update` (0-based) under `warmup` updates of linear
/// warm-up, as transformers' constant-with-warm-up schedule: update/warmup, then 1.
pub fn warmup_factor(update: usize, warmup: usize) -> f64 {
    if update < warmup {
        update as f64 / warmup as f64
    } else {
        1.0
    }
}

/// Share of `responses` equal to at least one other.
fn identical_share(responses: &[&[u32]]) -> f64 {
    if responses.is_empty() {
        return 0.0;
    }
    let mut counts = std::collections::HashMap::<&[u32], usize>::new();
    for r in responses {
        *counts.entry(r).or_default() += 1;
    }
    let repeated: usize = counts.values().filter(|&&c| c > 1).sum();
    repeated as f64 / responses.len() as f64
}

/// The losses of one PPO mini-batch, each a mean over the response tokens `mask` selects.
pub struct PpoLosses<B: Backend> {
    /// Clipped surrogate: mean of max(−A·ρ, −A·clip(ρ, 1 − ε, 1 + ε)), ρ = exp(logp − old).
    pub policy: Tensor<B, 1>,
    /// Clipped value loss: ½·mean of max((v − R)², (v_clip − R)²), v_clip = old_v +
    /// clip(v − old_v, ±ε_v).
    pub value: Tensor<B, 1>,
    /// Share of tokens with |ρ − 1| > ε.
    pub clip_frac: Tensor<B, 1>,
}

/// Inputs of [`ppo_losses`], `[batch, tokens]` each.
pub struct PpoBatch<B: Backend> {
    /// Log-probabilities of the sampled tokens under the policy being trained.
    pub logp: Tensor<B, 2>,
    /// Their log-probabilities when sampled.
    pub old_logp: Tensor<B, 2>,
    /// Whitened advantages.
    pub advantages: Tensor<B, 2>,
    /// Values of the value model being trained.
    pub values: Tensor<B, 2>,
    /// Values when sampled.
    pub old_values: Tensor<B, 2>,
    /// GAE returns.
    pub returns: Tensor<B, 2>,
    /// 1 on response tokens, 0 on padding.
    pub mask: Tensor<B, 2>,
}

/// The clipped policy and value losses of AlpacaFarm's PPO on one mini-batch.
pub fn ppo_losses<B: Backend>(b: PpoBatch<B>, clip: f64, value_clip: f64) -> PpoLosses<B> {
    let ratio = (b.logp - b.old_logp).exp();
    let pg1 = -b.advantages.clone() * ratio.clone();
    let pg2 = -b.advantages * ratio.clone().clamp(1.0 - clip, 1.0 + clip);
    let policy = masked_mean(pg1.max_pair(pg2), b.mask.clone());
    let v_clipped =
        b.old_values.clone() + (b.values.clone() - b.old_values).clamp(-value_clip, value_clip);
    let vf1 = (b.values - b.returns.clone()).powi_scalar(2);
    let vf2 = (v_clipped - b.returns).powi_scalar(2);
    let value = masked_mean(vf1.max_pair(vf2), b.mask.clone()) * 0.5;
    let clipped = (ratio - 1.0).abs().greater_elem(clip).float();
    PpoLosses {
        policy,
        value,
        clip_frac: masked_mean(clipped, b.mask),
    }
}

fn pad<B: Backend>(rows: &[&Vec<f32>], cw: usize, device: &B::Device) -> Tensor<B, 2> {
    let mut data = vec![0.0f32; rows.len() * cw];
    for (r, row) in rows.iter().enumerate() {
        data[r * cw..r * cw + row.len()].copy_from_slice(row);
    }
    Tensor::from_data(TensorData::new(data, [rows.len(), cw]), device)
}

fn unpad(t: Vec<f32>, cw: usize, lens: &[usize]) -> Vec<Vec<f32>> {
    lens.iter()
        .enumerate()
        .map(|(r, &n)| t[r * cw..r * cw + n].to_vec())
        .collect()
}

/// One rollout: a query, the sampled response tokens, and what the step computes for it.
struct Rollout {
    query: Vec<u32>,
    response: Vec<u32>,
    score: f64,
    finished: bool,
}

/// Per-token host vectors of a batch of rollouts.
struct Scored {
    old_logp: Vec<Vec<f32>>,
    ref_logp: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
}

fn score_rollouts<B: Backend>(
    policy: &Llama<B>,
    reference: &Llama<B>,
    value: &ScalarHead<B>,
    rollouts: &[Rollout],
    batch: usize,
) -> Result<Scored, PolicyError> {
    let mut out = Scored {
        old_logp: Vec::new(),
        ref_logp: Vec::new(),
        values: Vec::new(),
    };
    for chunk in rollouts.chunks(batch) {
        let q: Vec<Vec<u32>> = chunk.iter().map(|r| r.query.clone()).collect();
        let c: Vec<Vec<u32>> = chunk.iter().map(|r| r.response.clone()).collect();
        let lens: Vec<usize> = c.iter().map(Vec::len).collect();
        let rows = Rows::<B>::new(&q, &c, &policy.device())?;
        let cw = rows.cw;
        out.old_logp
            .extend(unpad(host(response_logprobs(policy, &rows))?, cw, &lens));
        out.ref_logp
            .extend(unpad(host(response_logprobs(reference, &rows))?, cw, &lens));
        out.values
            .extend(unpad(host(response_values(value, &rows))?, cw, &lens));
    }
    Ok(out)
}

/// The training prompt of rollout `i` of `step`: prompts are visited in seeded passes.
fn prompt_index(n: usize, seed: u64, step: usize, rollouts: usize, i: usize) -> usize {
    let k = step * rollouts + i;
    epoch_order(n, seed, "ppo-prompts", k / n)[k % n]
}

fn save_state<B: AutodiffBackend, OP, OV>(
    dir: &Path,
    policy: &Llama<B>,
    value: &ScalarHead<B>,
    opt_p: &OP,
    opt_v: &OV,
    state: &State,
) -> Result<(), PolicyError>
where
    OP: Optimizer<Llama<B>, B>,
    OV: Optimizer<ScalarHead<B>, B>,
{
    checkpoint::save(dir, state, file_error, |next| {
        for sub in ["policy", "value"] {
            std::fs::create_dir_all(next.join(sub)).map_err(|e| file_error(next, e))?;
        }
        save_checkpoint(&policy.valid(), &next.join("policy"))?;
        save_scalar_checkpoint(&value.valid(), &next.join("value"))?;
        Rec::new()
            .record(opt_p.to_record(), next.join("optim-policy"))
            .map_err(|e| file_error(next, e))?;
        Rec::new()
            .record(opt_v.to_record(), next.join("optim-value"))
            .map_err(|e| file_error(next, e))
    })
}

/// Runs PPO for `cfg.steps` steps (or until `ckpt.stop_after`), resuming from `ckpt.dir` when
/// it holds a checkpoint. `on_step` is called after every step. Returns the policy, the value
/// model and the log of every step (resumed ones included).
#[allow(clippy::too_many_arguments)]
pub fn train_ppo<B: AutodiffBackend>(
    models: PpoModels<'_, B>,
    format: &PolicyFormat,
    prompts: &[String],
    cfg: &PpoConfig,
    seed: u64,
    ckpt: &PpoCheckpoints,
    on_step: &mut dyn FnMut(&PpoStepLog),
) -> Result<(Lm<B>, ScalarHead<B>, PpoLog), PolicyError> {
    check(cfg)?;
    let start = Instant::now();
    let PpoModels {
        policy,
        value,
        reference,
        pm,
    } = models;
    let Lm {
        model: mut policy,
        tokenizer,
    } = policy;
    let mut value = value;
    let device = policy.device();
    let lm_of = |m: Llama<B::InnerBackend>| Lm {
        model: m,
        tokenizer: tokenizer.clone(),
    };
    // Queries within the length limit.
    let probe = lm_of(reference.clone());
    let mut queries = Vec::new();
    let mut texts = Vec::new();
    let mut query_texts = Vec::new();
    for p in prompts {
        let text = format
            .query(&tokenizer, p)
            .map_err(crate::model::ModelError::from)?;
        let q = probe.encode(&text)?;
        if !q.is_empty() && q.len() <= cfg.max_query_tokens {
            queries.push(q);
            texts.push(p.clone());
            query_texts.push(text);
        }
    }
    if queries.is_empty() {
        return Err(PolicyError::Empty {
            what: format!(
                "none of {} training prompts fits max_query_tokens = {}",
                prompts.len(),
                cfg.max_query_tokens
            ),
            fix: "raise [ppo] max_query_tokens or give shorter prompts".into(),
        });
    }
    let adamw = || {
        AdamWConfig::new()
            .with_beta_1(0.9)
            .with_beta_2(0.999)
            .with_epsilon(1e-5)
            .with_weight_decay(0.0)
    };
    if let Some(lora) = &cfg.lora {
        policy = policy.with_lora(lora, seed::derive(seed, &["ppo", "lora", "policy"]));
        value = value.with_lora(lora, seed::derive(seed, &["ppo", "lora", "value"]));
    }
    let mut opt_p = adamw().init::<B, Llama<B>>();
    let mut opt_v = adamw().init::<B, ScalarHead<B>>();
    let mut state = State {
        step: 0,
        log: PpoLog {
            prompts: queries.len(),
            ..PpoLog::default()
        },
        kl_coef: cfg.kl_coef,
    };
    if let Some(from) = ckpt.dir.as_deref().and_then(checkpoint::latest) {
        state = checkpoint::read_state(&from).map_err(|e| file_error(&from, e))?;
        let config = policy.config().clone();
        policy = load_checkpoint_into(policy, &config, &from.join("policy"), &device)?;
        let config = value.trunk.config().clone();
        value = load_checkpoint_into(value, &config, &from.join("value"), &device)?;
        let rp = Rec::new()
            .load(from.join("optim-policy"), &device)
            .map_err(|e| file_error(&from, e))?;
        opt_p = opt_p.load_record(rp);
        let rv = Rec::new()
            .load(from.join("optim-value"), &device)
            .map_err(|e| file_error(&from, e))?;
        opt_v = opt_v.load_record(rv);
    }
    let gen_opts = GenerateOptions {
        max_new_tokens: cfg.max_response_tokens,
        temperature: cfg.temperature,
        ..format.generate_options()
    };
    let n = queries.len();
    // Optimiser updates per step (the warm-up counts updates, as transformers' schedules do).
    let per_step = cfg.epochs * cfg.rollouts.div_ceil(cfg.step_batch);
    let step_seed = |step: usize| seed::derive_index(seed, "ppo-step", step as u64);
    while state.step < cfg.steps {
        if ckpt.stops_at(state.step) {
            break;
        }
        let step = state.step;
        // 1. Rollouts.
        let sampler = lm_of(policy.valid());
        let picks: Vec<usize> = (0..cfg.rollouts)
            .map(|i| prompt_index(n, seed, step, cfg.rollouts, i))
            .collect();
        let mut rollouts = Vec::with_capacity(cfg.rollouts);
        for chunk in picks.chunks(cfg.step_batch) {
            let requests: Vec<GenerationRequest> = chunk
                .iter()
                .enumerate()
                .map(|(j, &p)| GenerationRequest {
                    prompt: query_texts[p].clone(),
                    seed: seed::derive_index(
                        step_seed(step),
                        "rollout",
                        (rollouts.len() + j) as u64,
                    ),
                })
                .collect();
            let gens = sampler.generate(&requests, &gen_opts)?;
            let outputs: Vec<(&str, &str)> = chunk
                .iter()
                .zip(&gens)
                .map(|(&p, g)| (texts[p].as_str(), g.text.as_str()))
                .collect();
            let scores = score_outputs(pm, &outputs, cfg.step_batch)?;
            for ((&p, g), s) in chunk.iter().zip(gens).zip(scores) {
                let finished = g.finish_reason != FinishReason::Length && !g.text.trim().is_empty();
                let reward = rollout_reward(s, g.finish_reason, &g.text, cfg.score_unfinished);
                let mut response = g.token_ids;
                if response.is_empty() {
                    response = sampler.encode(&format.end_of_turn)?;
                }
                rollouts.push(Rollout {
                    query: queries[p].clone(),
                    response,
                    score: reward,
                    finished,
                });
            }
        }
        // 2. Log-probabilities, values, rewards, advantages.
        let scored = score_rollouts(
            &policy.valid(),
            reference,
            &value.valid(),
            &rollouts,
            cfg.step_batch,
        )?;
        let beta = state.kl_coef;
        let rewards_of = |i: usize, r: &Rollout| {
            shaped_rewards(
                &scored.old_logp[i],
                &scored.ref_logp[i],
                r.score,
                beta,
                cfg.kl_clamp,
            )
        };
        let mut rewards: Vec<Vec<f32>> = rollouts
            .iter()
            .enumerate()
            .map(|(i, r)| rewards_of(i, r))
            .collect();
        let kl_sum: f64 = scored
            .old_logp
            .iter()
            .zip(&scored.ref_logp)
            .flat_map(|(lp, rp)| lp.iter().zip(rp).map(|(a, b)| f64::from(a - b)))
            .sum();
        let mean_kl = kl_sum / rollouts.len() as f64;
        if let Some(budget) = cfg.max_kl
            && mean_kl > budget
        {
            state.log.kl_stop = Some(KlStop { step, kl: mean_kl });
            break;
        }
        if cfg.whiten_rewards {
            whiten(&mut rewards, false);
        }
        let mut advantages = Vec::with_capacity(rollouts.len());
        let mut returns = Vec::with_capacity(rollouts.len());
        for (rw, v) in rewards.iter().zip(&scored.values) {
            let (a, r) = gae(rw, v, cfg.gamma, cfg.lambda);
            advantages.push(a);
            returns.push(r);
        }
        whiten(&mut advantages, true);
        // 3. Optimisation.
        let (mut clip, mut vloss, mut ploss, mut total, mut batches) = (0.0, 0.0, 0.0, 0.0, 0usize);
        for epoch in 0..cfg.epochs {
            let order = epoch_order(rollouts.len(), step_seed(step), "ppo-batches", epoch);
            for chunk in order.chunks(cfg.step_batch) {
                let q: Vec<Vec<u32>> = chunk.iter().map(|&i| rollouts[i].query.clone()).collect();
                let c: Vec<Vec<u32>> = chunk
                    .iter()
                    .map(|&i| rollouts[i].response.clone())
                    .collect();
                let rows = Rows::<B>::new(&q, &c, &device)?;
                let cw = rows.cw;
                fn take<'v>(v: &'v [Vec<f32>], chunk: &[usize]) -> Vec<&'v Vec<f32>> {
                    chunk.iter().map(|&i| &v[i]).collect()
                }
                let old_lp = pad::<B>(&take(&scored.old_logp, chunk), cw, &device);
                let old_v = pad::<B>(&take(&scored.values, chunk), cw, &device);
                let adv = pad::<B>(&take(&advantages, chunk), cw, &device);
                let ret = pad::<B>(&take(&returns, chunk), cw, &device);
                let losses = ppo_losses(
                    PpoBatch {
                        logp: response_logprobs(&policy, &rows),
                        old_logp: old_lp,
                        advantages: adv,
                        values: response_values(&value, &rows),
                        old_values: old_v,
                        returns: ret,
                        mask: rows.response_mask.clone(),
                    },
                    cfg.clip,
                    cfg.value_clip,
                );
                let (pg, vf) = (losses.policy, losses.value);
                let loss = pg.clone() + vf.clone() * cfg.vf_coef;
                let value_now = scalar(loss.clone())?;
                if !value_now.is_finite() {
                    return Err(PolicyError::Diverged {
                        trainer: "PPO",
                        section: "ppo",
                        loss: value_now,
                        step,
                        lr: cfg.lr,
                    });
                }
                clip += scalar(losses.clip_frac)?;
                vloss += scalar(vf)?;
                ploss += scalar(pg)?;
                total += value_now;
                batches += 1;
                let mut grads = loss.backward();
                let gp = GradientsParams::from_module(&mut grads, &policy);
                let gv = GradientsParams::from_module(&mut grads, &value);
                let lr = cfg.lr * warmup_factor(step * per_step + batches - 1, cfg.warmup_steps);
                policy = opt_p.step(lr, policy, gp);
                value = opt_v.step(lr, value, gv);
            }
        }
        let k = rollouts.len() as f64;
        let tokens: usize = rollouts.iter().map(|r| r.response.len()).sum();
        let nlp: f64 = scored
            .old_logp
            .iter()
            .flatten()
            .map(|&x| -f64::from(x))
            .sum();
        let b = batches.max(1) as f64;
        let entry = PpoStepLog {
            step,
            score: rollouts.iter().map(|r| r.score).sum::<f64>() / k,
            kl: mean_kl,
            entropy: nlp / tokens.max(1) as f64,
            response_len: tokens as f64 / k,
            unfinished: rollouts.iter().filter(|r| !r.finished).count(),
            clip_frac: clip / b,
            value_loss: vloss / b,
            policy_loss: ploss / b,
            loss: total / b,
            kl_coef: beta,
            identical: identical_share(
                &rollouts
                    .iter()
                    .map(|r| r.response.as_slice())
                    .collect::<Vec<_>>(),
            ),
        };
        if let Some(a) = &cfg.adaptive_kl {
            state.kl_coef = adapt_kl_coef(beta, mean_kl, rollouts.len(), a);
        }
        on_step(&entry);
        state.log.steps.push(entry);
        state.step += 1;
        if let Some(dir) = ckpt.due(state.step, cfg.steps) {
            save_state(dir, &policy, &value, &opt_p, &opt_v, &state)?;
        }
    }
    state.log.seconds += start.elapsed().as_secs_f64();
    Ok((
        Lm {
            model: policy.merge_lora(),
            tokenizer,
        },
        value.merge_lora(),
        state.log,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Cpu;

    fn close(a: &[f32], b: &[f64]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (f64::from(*x) - y).abs() < 1e-5)
    }

    #[test]
    fn gae_matches_hand_computation() {
        let (rewards, values) = ([1.0, 0.0, 2.0], [0.5, 0.2, 0.1]);
        // δ = r_t + γ·V_{t+1} − V_t; A_t = δ_t + γλ·A_{t+1}, with γ = 0.9, λ = 0.8.
        let (adv, ret) = gae(&rewards, &values, 0.9, 0.8);
        assert!(close(&adv, &[1.58576, 1.258, 1.9]), "{adv:?}");
        assert!(close(&ret, &[2.08576, 1.458, 2.0]), "{ret:?}");
        // The paper's γ = λ = 1: the advantage is the reward to go minus the value.
        let (adv, ret) = gae(&rewards, &values, 1.0, 1.0);
        assert!(close(&adv, &[2.5, 1.8, 1.9]), "{adv:?}");
        assert!(close(&ret, &[3.0, 2.0, 2.0]), "{ret:?}");
    }

    #[test]
    fn whitening_uses_the_sample_std_and_keeps_the_mean_of_rewards() {
        let mut x = vec![vec![1.0, 3.0], vec![5.0]];
        whiten(&mut x, true);
        assert!(close(&x.concat(), &[-1.0, 0.0, 1.0]), "{x:?}");
        let mut x = vec![vec![1.0, 3.0], vec![5.0]];
        whiten(&mut x, false);
        assert!(close(&x.concat(), &[2.0, 3.0, 4.0]), "{x:?}");
    }

    #[test]
    fn rewards_penalise_the_clamped_kl_and_add_the_score_at_the_end() {
        let (logp, ref_logp) = ([-1.0, -2.0, -0.5], [-1.5, -1.0, -0.5]);
        let clamped = shaped_rewards(&logp, &ref_logp, 2.0, 0.1, true);
        assert!(close(&clamped, &[-0.05, 0.0, 2.0]), "{clamped:?}");
        let signed = shaped_rewards(&logp, &ref_logp, 2.0, 0.1, false);
        assert!(close(&signed, &[-0.05, 0.1, 2.0]), "{signed:?}");
    }

    #[test]
    fn the_adaptive_coefficient_moves_toward_the_target_by_at_most_a_fifth_per_horizon() {
        let a = AdaptiveKl {
            target: 6.0,
            horizon: 10_000.0,
        };
        let next = |kl| adapt_kl_coef(0.1, kl, 512, &a);
        assert!((next(12.0) - 0.101_024).abs() < 1e-12);
        assert!((next(3.0) - 0.098_976).abs() < 1e-12);
        assert!((next(6.6) - 0.100_512).abs() < 1e-12);
        assert_eq!(next(6.0), 0.1);
    }

    #[test]
    fn warm_up_rises_linearly_from_zero_over_the_first_updates() {
        let f: Vec<f64> = (0..7).map(|u| warmup_factor(u, 5)).collect();
        assert_eq!(f, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0]);
        assert_eq!(warmup_factor(0, 0), 1.0);
    }

    #[test]
    fn identical_responses_are_counted() {
        let (a, b, c): (&[u32], &[u32], &[u32]) = (&[1, 2], &[1, 2], &[3]);
        assert_eq!(identical_share(&[a, b, c]), 2.0 / 3.0);
        assert_eq!(identical_share(&[a, c]), 0.0);
    }

    #[test]
    fn ppo_losses_match_hand_computation() {
        let device = Default::default();
        let t =
            |v: [f32; 3]| Tensor::<Cpu, 2>::from_data(TensorData::new(v.to_vec(), [1, 3]), &device);
        // Token 2 is padding: its huge values must not count.
        let old = [-1.0f32, -1.0, 0.0];
        let logp = [old[0] + 1.5f32.ln(), old[1] + 1.1f32.ln(), 5.0];
        let losses = ppo_losses(
            PpoBatch {
                logp: t(logp),
                old_logp: t(old),
                advantages: t([1.0, -1.0, 9.0]),
                values: t([2.0, 0.9, 9.0]),
                old_values: t([1.0, 0.5, 0.0]),
                returns: t([1.5, 1.0, -9.0]),
                mask: t([1.0, 1.0, 0.0]),
            },
            0.2,
            0.2,
        );
        let v = |x: Tensor<Cpu, 1>| f64::from(x.into_scalar());
        // Token 0: ρ = 1.5, A = 1 → max(−1.5, −1.2) = −1.2; token 1: ρ = 1.1, A = −1 → 1.1.
        assert!((v(losses.policy) - (-0.05)).abs() < 1e-5);
        // Token 0: max(0.5², (1.2 − 1.5)²) = 0.25; token 1: max(0.1², (0.7 − 1)²) = 0.09.
        assert!((v(losses.value) - 0.085).abs() < 1e-5);
        assert!((v(losses.clip_frac) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn unfinished_rollouts_get_minus_one_unless_scored() {
        use FinishReason::{Eos, Length, Stop};
        assert_eq!(rollout_reward(0.7, Eos, "Sure.", false), 0.7);
        assert_eq!(rollout_reward(0.7, Stop, "Sure.", false), 0.7);
        assert_eq!(rollout_reward(0.7, Length, "Sure, here", false), -1.0);
        assert_eq!(rollout_reward(0.7, Length, "Sure, here", true), 0.7);
        assert_eq!(rollout_reward(0.7, Eos, " \n", true), -1.0, "empty");
        assert_eq!(rollout_reward(0.7, Length, "", true), -1.0, "empty");
    }
}
