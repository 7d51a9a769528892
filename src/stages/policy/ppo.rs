//! PPO against a preference model (paper §3 step 3, Appendix B; AlpacaFarm's PPO, which the
//! paper's code patches).
//!
//! Every step samples `rollouts` responses (temperature `temperature`, cut at the next speaker
//! tag) to training prompts taken in a seeded order, and scores each with the PM; a response
//! that never ends its turn, or is empty, gets −1 instead. Per-token rewards are
//! −`kl_coef`·(log π − log π_ref) against the frozen initial policy, plus the score at the
//! last token; rewards are whitened (scale only) when `whiten_rewards`, advantages come from
//! GAE(γ, λ) on a value model initialised from the PM and are whitened. Then `epochs` passes in
//! mini-batches of `step_batch` rollouts minimise the clipped surrogate plus `vf_coef` × the
//! clipped value loss, with one AdamW (eps 1e-5, constant `lr`) for the policy and one for the
//! value model. With a KL budget (`max_kl`) the run stops at the first step whose rollouts
//! are further than that from the initial policy, before training on them.
//!
//! All randomness is derived from the seed and the step number, so a checkpoint (policy, value
//! model, both optimiser states, the step and the log so far) is all a resumed run needs to
//! continue exactly as an uninterrupted one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::common::{
    PolicyError, PolicyFormat, Rows, config_error, epoch_order, file_error, host, masked_mean,
    response_logprobs, response_values, scalar,
};
use crate::model::load::{
    load_checkpoint, load_scalar_checkpoint, save_checkpoint, save_scalar_checkpoint,
};
use crate::model::pm::{Pm, score_outputs};
use crate::model::sampling::{FinishReason, GenerateOptions, GenerationRequest};
use crate::model::train::Schedule;
use crate::model::{Llama, Lm, ScalarHead};
use crate::recipe::PpoConfig;
use crate::seed;

/// Reward of a response that never ends its turn or is empty (paper Appendix B).
pub const UNFINISHED_REWARD: f64 = -1.0;

/// What one PPO step measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PpoStepLog {
    /// 0-based step.
    pub step: usize,
    /// Mean PM score of the rollouts (−1 for unfinished or empty responses).
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

/// Where and how often to checkpoint, and when to stop early.
#[derive(Clone, Debug, Default)]
pub struct PpoCheckpoints {
    /// Directory of the checkpoint (resumed from when it holds one).
    pub dir: Option<PathBuf>,
    /// Checkpoint after every this many steps (0: only at the end of an early stop).
    pub every: usize,
    /// Return after this many steps in total, checkpointed (a planned interruption).
    pub stop_after: Option<usize>,
}

#[derive(Serialize, Deserialize)]
struct State {
    step: usize,
    log: PpoLog,
}

type Rec = NamedMpkFileRecorder<FullPrecisionSettings>;

const LATEST: &str = "latest";
const NEXT: &str = "next";
const OLD: &str = "old";

fn check(cfg: &PpoConfig) -> Result<(), PolicyError> {
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
    let next = dir.join(NEXT);
    if next.exists() {
        std::fs::remove_dir_all(&next).map_err(|e| file_error(&next, e))?;
    }
    std::fs::create_dir_all(next.join("policy")).map_err(|e| file_error(&next, e))?;
    std::fs::create_dir_all(next.join("value")).map_err(|e| file_error(&next, e))?;
    save_checkpoint(&policy.valid(), &next.join("policy"))?;
    save_scalar_checkpoint(&value.valid(), &next.join("value"))?;
    Rec::new()
        .record(opt_p.to_record(), next.join("optim-policy"))
        .map_err(|e| file_error(&next, e))?;
    Rec::new()
        .record(opt_v.to_record(), next.join("optim-value"))
        .map_err(|e| file_error(&next, e))?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| file_error(&next, e))?;
    std::fs::write(next.join("state.json"), json).map_err(|e| file_error(&next, e))?;
    let (latest, old) = (dir.join(LATEST), dir.join(OLD));
    if latest.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| file_error(&old, e))?;
        }
        std::fs::rename(&latest, &old).map_err(|e| file_error(&latest, e))?;
    }
    std::fs::rename(&next, &latest).map_err(|e| file_error(&latest, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| file_error(&old, e))?;
    }
    Ok(())
}

/// The checkpoint to resume from, if `dir` holds one (a finished `latest`, or the `old` one
/// left when a run died while replacing it).
fn resume_dir(dir: &Path) -> Option<PathBuf> {
    [LATEST, OLD]
        .iter()
        .map(|n| dir.join(n))
        .find(|d| d.join("state.json").is_file())
}

/// The step a run resuming from checkpoint directory `dir` starts at (`None`: no checkpoint).
pub fn checkpoint_step(dir: &Path) -> Option<usize> {
    let from = resume_dir(dir)?;
    let bytes = std::fs::read(from.join("state.json")).ok()?;
    serde_json::from_slice::<State>(&bytes).ok().map(|s| s.step)
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
    for p in prompts {
        let q = probe.encode(&format.query(p))?;
        if !q.is_empty() && q.len() <= cfg.max_query_tokens {
            queries.push(q);
            texts.push(p.clone());
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
    let mut opt_p = adamw().init::<B, Llama<B>>();
    let mut opt_v = adamw().init::<B, ScalarHead<B>>();
    let schedule = Schedule::constant(cfg.lr);
    let mut state = State {
        step: 0,
        log: PpoLog {
            prompts: queries.len(),
            ..PpoLog::default()
        },
    };
    if let Some(from) = ckpt.dir.as_deref().and_then(resume_dir) {
        let bytes = std::fs::read(from.join("state.json")).map_err(|e| file_error(&from, e))?;
        state = serde_json::from_slice(&bytes).map_err(|e| file_error(&from, e))?;
        policy = load_checkpoint::<B>(&from.join("policy"), &device)?;
        value = load_scalar_checkpoint::<B>(&from.join("value"), &device)?;
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
        stop: format.stop.clone(),
        ..GenerateOptions::default()
    };
    let n = queries.len();
    let step_seed = |step: usize| seed::derive_index(seed, "ppo-step", step as u64);
    while state.step < cfg.steps {
        if ckpt.stop_after.is_some_and(|s| state.step >= s) {
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
                    prompt: format.query(&texts[p]),
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
                let mut response = g.token_ids;
                if response.is_empty() {
                    response = sampler.encode(&format.end_of_turn)?;
                }
                rollouts.push(Rollout {
                    query: queries[p].clone(),
                    response,
                    score: if finished { s } else { UNFINISHED_REWARD },
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
        let mut rewards: Vec<Vec<f32>> = Vec::with_capacity(rollouts.len());
        let mut kl_sum = 0.0;
        for (i, r) in rollouts.iter().enumerate() {
            let mut row: Vec<f32> = scored.old_logp[i]
                .iter()
                .zip(&scored.ref_logp[i])
                .map(|(lp, rp)| {
                    kl_sum += f64::from(lp - rp);
                    (-cfg.kl_coef * f64::from(lp - rp)) as f32
                })
                .collect();
            if let Some(last) = row.last_mut() {
                *last += r.score as f32;
            }
            rewards.push(row);
        }
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
        let (mut clip, mut vloss, mut ploss, mut total, mut batches) = (0.0, 0.0, 0.0, 0.0, 0);
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
                let mask = rows.response_mask.clone();
                let logp = response_logprobs(&policy, &rows);
                let v = response_values(&value, &rows);
                let ratio = (logp - old_lp).exp();
                let pg1 = -adv.clone() * ratio.clone();
                let pg2 = -adv * ratio.clone().clamp(1.0 - cfg.clip, 1.0 + cfg.clip);
                let pg = masked_mean(pg1.max_pair(pg2), mask.clone());
                let v_clipped =
                    old_v.clone() + (v.clone() - old_v).clamp(-cfg.value_clip, cfg.value_clip);
                let vf1 = (v - ret.clone()).powi_scalar(2);
                let vf2 = (v_clipped - ret).powi_scalar(2);
                let vf = masked_mean(vf1.max_pair(vf2), mask.clone()) * 0.5;
                let clipped = (ratio - 1.0).abs().greater_elem(cfg.clip).float();
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
                clip += scalar(masked_mean(clipped, mask))?;
                vloss += scalar(vf)?;
                ploss += scalar(pg)?;
                total += value_now;
                batches += 1;
                let mut grads = loss.backward();
                let gp = GradientsParams::from_module(&mut grads, &policy);
                let gv = GradientsParams::from_module(&mut grads, &value);
                policy = opt_p.step(schedule.lr_at(step), policy, gp);
                value = opt_v.step(schedule.lr_at(step), value, gv);
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
        let b = f64::from(batches.max(1));
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
        };
        on_step(&entry);
        state.log.steps.push(entry);
        state.step += 1;
        let due = ckpt.every > 0 && state.step.is_multiple_of(ckpt.every);
        let stopping = ckpt.stop_after == Some(state.step);
        if let Some(dir) = &ckpt.dir
            && (due || stopping)
            && state.step < cfg.steps
        {
            save_state(dir, &policy, &value, &opt_p, &opt_v, &state)?;
        }
    }
    state.log.seconds += start.elapsed().as_secs_f64();
    Ok((
        Lm {
            model: policy,
            tokenizer,
        },
        value,
        state.log,
    ))
}
