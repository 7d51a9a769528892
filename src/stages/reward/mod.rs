//! The `reward` stage (paper Appendix B): a preference model — the policy-size model's trunk
//! plus a scalar head ([`crate::model::pm`]) — trained on one method's simulated pairs
//! ([`train`]), saved, and measured against the oracle on held-out pairs of policy samples
//! (paper Table 5).

pub mod train;

use serde::{Deserialize, Serialize};

pub use train::{
    HeldOut, PmTraining, RewardError, RewardLog, agreement, bt_loss, bt_loss_value,
    config_problems, holdout_split, train_reward,
};

use super::heldout_pairs::HELDOUT;
use super::inputs::ModelRef;
use super::planning::{PlanError, Planned, Planner};
use super::simulate::read_pairs;
use super::stage::{Ctx, Stage, StageError, StageKind, read_json, with_backend};
use crate::eval::pm_agreement::{self, HeldoutPair};
use crate::model::pm::{Pm, PmFormat, save_pm, score_outputs};
use crate::recipe::{BackendKind, MethodKind};

/// The PM's training log and agreement (JSON, [`RewardRecord`]).
pub const REWARD: &str = "reward.json";

/// The stage type.
pub struct Reward;

/// What one preference model's training reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The recipe's method.
    pub method: String,
    /// Its kind.
    pub kind: MethodKind,
    /// Its simulator's name (for the tables).
    pub simulator: String,
    /// The task.
    pub task: String,
    /// The policy-size model whose trunk the PM starts from.
    pub policy: ModelRef,
    /// The simulation whose pairs it trains on.
    pub pairs: String,
    /// The held-out pairs it is measured on (world tasks).
    pub heldout: Option<String>,
    /// Training settings.
    pub training: PmTraining,
    /// The compute backend.
    pub backend: BackendKind,
    /// Seed of the head's initial weights, the held-out split and the pass orders.
    pub seed: u64,
}

/// What a reward stage records beside the preference model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RewardRecord {
    /// Recipe method name.
    pub method: String,
    /// Method kind (`rlcd`, `rlaif`, `rlcd-rescore`).
    pub kind: String,
    /// Simulator model name.
    pub simulator: String,
    /// Task name.
    pub task: String,
    /// Training log.
    pub log: RewardLog,
    /// Agreement with the oracle on held-out pairs of policy samples (world tasks).
    pub agreement: Option<pm_agreement::Agreement>,
}

/// Id of the preference model of `method` on `task`.
pub fn id(method: &str, task: &str) -> String {
    format!("reward/{method}/{task}")
}

/// The preference model of recipe method `method` on task `task`, trained on simulation
/// `pairs` and measured on `heldout`.
pub fn plan(
    p: &Planner<'_>,
    method: &str,
    task: &str,
    pairs: String,
    heldout: Option<String>,
) -> Result<Planned, PlanError> {
    let spec = p.method(method)?;
    for key in [
        "epochs",
        "lr",
        "warmup_frac",
        "batch_size",
        "max_len",
        "holdout_frac",
    ] {
        p.read(format!("reward.{key}"));
    }
    let config = Config {
        method: method.to_string(),
        kind: spec.kind,
        simulator: spec.simulator.clone().unwrap_or_default(),
        task: task.to_string(),
        policy: p.model(&spec.policy)?,
        pairs,
        heldout,
        training: PmTraining::from(&p.recipe().reward),
        backend: p.backend(),
        seed: p.seed(&["reward", method, task]),
    };
    Planned::new::<Reward>(id(method, task), &config)
}

impl From<RewardError> for StageError {
    fn from(e: RewardError) -> Self {
        StageError::failed(e)
    }
}

impl Stage for Reward {
    const KIND: StageKind = StageKind::Reward;
    const VERSION: u32 = 1;
    type Config = Config;

    fn inputs(config: &Config) -> Vec<String> {
        let mut out = vec![config.pairs.clone()];
        out.extend(config.policy.inputs());
        out.extend(config.heldout.clone());
        out
    }

    fn run(ctx: &Ctx<'_>, config: &Config) -> Result<serde_json::Value, StageError> {
        let t0 = std::time::Instant::now();
        let pairs = read_pairs(&ctx.input(&config.pairs)?)?;
        let heldout: Option<Vec<HeldoutPair>> = match &config.heldout {
            Some(id) => Some(read_json(&ctx.input(id)?, HELDOUT)?),
            None => None,
        };
        let cfg = &config.training;
        let batches = pairs.len().div_ceil(cfg.batch_size.max(1)) * cfg.epochs;
        let pb = ctx.progress(batches as u64);
        let record = with_backend!(config.backend, B, device => {
            type T = burn::backend::Autodiff<B>;
            let lm = config.policy.load::<T>(ctx, &device)?;
            let format = if config.policy.is_world() {
                PmFormat::world(cfg.max_len)
            } else {
                PmFormat { prefix: String::new(), end_of_turn: String::new(), max_len: cfg.max_len }
            };
            let pm = crate::model::seeded_init::<T, _>(&device, config.seed, || {
                Pm::from_lm(lm, format)
            })?;
            let mut on_step = |_: usize, loss: f64| {
                pb.inc(1);
                pb.set_message(format!("loss {loss:.3}"));
            };
            let (pm, log) = train_reward(pm, &pairs, cfg, config.seed, &mut on_step)?;
            let pm = pm.valid();
            save_pm(&pm, ctx.dir)?;
            let agreement = match &heldout {
                Some(h) if !h.is_empty() => {
                    let a: Vec<(&str, &str)> =
                        h.iter().map(|p| (p.prompt.as_str(), p.output_a.as_str())).collect();
                    let b: Vec<(&str, &str)> =
                        h.iter().map(|p| (p.prompt.as_str(), p.output_b.as_str())).collect();
                    let ra = score_outputs(&pm, &a, cfg.batch_size)?;
                    let rb = score_outputs(&pm, &b, cfg.batch_size)?;
                    let rewards: Vec<(f64, f64)> = ra.into_iter().zip(rb).collect();
                    let truth: Vec<bool> = h.iter().map(HeldoutPair::a_better).collect();
                    Some(pm_agreement::agreement(&rewards, &truth).map_err(StageError::failed)?)
                }
                _ => None,
            };
            Ok::<_, StageError>(RewardRecord {
                method: config.method.clone(),
                kind: config.kind.as_str().to_string(),
                simulator: config.simulator.clone(),
                task: config.task.clone(),
                log,
                agreement,
            })
        })?;
        pb.finish_and_clear();
        ctx.write_json(REWARD, &record)?;
        Ok(serde_json::json!({
            "seconds": t0.elapsed().as_secs_f64(),
            "final_loss": record.log.final_loss,
            "accuracy": record.agreement.as_ref().and_then(|a| a.rate.rate().ok()),
        }))
    }
}
