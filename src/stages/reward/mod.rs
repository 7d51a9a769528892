//! The `reward` stage (paper Appendix B): a preference model — the policy-size model's trunk
//! plus a scalar head ([`crate::model::pm`]) — trained on one method's simulated pairs
//! ([`train`]) and saved. [`super::pm_eval`] measures it against the oracle (paper Table 5).

pub mod train;

use serde::{Deserialize, Serialize};

pub use train::{
    HeldOut, PmTraining, RewardError, RewardLog, agreement, bt_loss, bt_loss_value,
    config_problems, holdout_split, train_reward,
};

use super::inputs::ModelRef;
use super::planning::{PlanError, Planned, Planner};
use super::simulate::read_pairs;
use super::stage::{Ctx, Stage, StageError, StageKind, with_backend};
use crate::model::pm::{Pm, PmFormat, save_pm};
use crate::recipe::{BackendKind, MethodKind};

/// The PM's training log (JSON, [`RewardRecord`]).
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
}

/// Id of the preference model of `method` on `task`.
pub fn id(method: &str, task: &str) -> String {
    format!("reward/{method}/{task}")
}

/// The preference model of recipe method `method` on task `task`, trained on simulation
/// `pairs`.
pub fn plan(
    p: &Planner<'_>,
    method: &str,
    task: &str,
    pairs: String,
) -> Result<Planned, PlanError> {
    let spec = p.method(method)?;
    for key in [
        "epochs",
        "lr",
        "warmup_frac",
        "batch_size",
        "max_len",
        "holdout_frac",
        "lora",
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
    const VERSION: u32 = 2;
    type Config = Config;

    fn inputs(config: &Config) -> Vec<String> {
        let mut out = vec![config.pairs.clone()];
        out.extend(config.policy.inputs());
        out
    }

    fn run(ctx: &Ctx<'_>, config: &Config) -> Result<serde_json::Value, StageError> {
        let t0 = std::time::Instant::now();
        let pairs = read_pairs(&ctx.input(&config.pairs)?)?;
        let cfg = &config.training;
        let batches = pairs.len().div_ceil(cfg.batch_size.max(1)) * cfg.epochs;
        let pb = ctx.progress(batches as u64);
        let record = with_backend!(config.backend, B, device => {
            type T = burn::backend::Autodiff<B>;
            let lm = config.policy.load::<T>(ctx, &device)?;
            let format = if config.policy.is_world() {
                PmFormat::world(cfg.max_len)
            } else {
                PmFormat::pretrained(&config.policy.format(&lm.tokenizer)?, cfg.max_len)
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
            Ok::<_, StageError>(RewardRecord {
                method: config.method.clone(),
                kind: config.kind.as_str().to_string(),
                simulator: config.simulator.clone(),
                task: config.task.clone(),
                log,
            })
        })?;
        pb.finish_and_clear();
        ctx.write_json(REWARD, &record)?;
        Ok(serde_json::json!({
            "seconds": t0.elapsed().as_secs_f64(),
            "final_loss": record.log.final_loss,
        }))
    }
}
