//! The `pm_eval` stage (paper §4.2, Table 5): one trained preference model measured on
//! held-out pairs of policy samples against the oracle (world tasks) or the label judge's
//! verdicts (`eval.label_judge`, other tasks). It sits apart from training so that
//! evaluation-only settings (`reward.heldout_pairs`) never retrain a preference model.

use serde::{Deserialize, Serialize};

use super::heldout_pairs::HELDOUT;
use super::pair_judge::read_labels;
use super::planning::{PlanError, Planned, Planner};
use super::reward::{REWARD, RewardLog, RewardRecord};
use super::stage::{Ctx, Stage, StageError, StageKind, read_json, with_backend};
use crate::eval::pm_agreement::{self, Agreement, HeldoutPair};
use crate::model::pm::{load_pm, score_outputs};
use crate::recipe::BackendKind;

/// The measurement (JSON, [`PmEvalRecord`]).
pub const PM_EVAL: &str = "pm_eval.json";

/// The stage type.
pub struct PmEval;

/// What measuring one preference model reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The reward stage whose preference model is measured.
    pub reward: String,
    /// The held-out pairs it is measured on (world tasks, or tasks with a label judge; `None`
    /// records the training log only).
    pub heldout: Option<String>,
    /// The label judge's verdicts on the held-out pairs (a `pair_judge` stage), the reference
    /// where the oracle scored none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judged: Option<String>,
    /// Outputs scored per forward pass.
    pub batch_size: usize,
    /// The compute backend.
    pub backend: BackendKind,
}

/// A preference model's training log and its agreement with the oracle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PmEvalRecord {
    /// Recipe method name.
    pub method: String,
    /// Method kind (`rlcd`, `rlaif`, `rlcd-rescore`).
    pub kind: String,
    /// Simulator model name.
    pub simulator: String,
    /// Task name.
    pub task: String,
    /// The preference model's training log.
    pub log: RewardLog,
    /// Agreement with the reference labels on held-out pairs of policy samples.
    pub agreement: Option<Agreement>,
    /// The reference: `oracle`, or the label judge as the recipe names it.
    #[serde(default)]
    pub reference: Option<String>,
}

/// Id of the measurement of reward stage `reward` (`reward/<method>/<task>`).
pub fn id(reward: &str) -> String {
    format!("pm_eval/{}", reward.trim_start_matches("reward/"))
}

/// The measurement of reward stage `reward` on held-out pairs `heldout`, labelled by the
/// oracle or by the label judge's verdicts `judged`.
pub fn plan(
    p: &Planner<'_>,
    reward: String,
    heldout: Option<String>,
    judged: Option<String>,
) -> Result<Planned, PlanError> {
    p.read("reward.batch_size");
    let config = Config {
        heldout,
        judged,
        batch_size: p.recipe().reward.batch_size,
        backend: p.backend(),
        reward,
    };
    Planned::new::<PmEval>(id(&config.reward), &config)
}

impl Stage for PmEval {
    const KIND: StageKind = StageKind::PmEval;
    // 2: the record names its reference labels.
    const VERSION: u32 = 2;
    type Config = Config;

    fn inputs(config: &Config) -> Vec<String> {
        let mut out = vec![config.reward.clone()];
        out.extend(config.heldout.clone());
        out.extend(config.judged.clone());
        out
    }

    fn run(ctx: &Ctx<'_>, config: &Config) -> Result<serde_json::Value, StageError> {
        let reward = ctx.input(&config.reward)?;
        let trained: RewardRecord = read_json(&reward, REWARD)?;
        let heldout: Vec<HeldoutPair> = match &config.heldout {
            Some(id) => read_json(&ctx.input(id)?, HELDOUT)?,
            None => Vec::new(),
        };
        let Labelled {
            pairs: heldout,
            a_better: truth,
            reference,
        } = reference_labels(ctx, config, heldout)?;
        let agreement = if heldout.is_empty() {
            None
        } else {
            let rewards = with_backend!(config.backend, B, device => {
                let pm = load_pm::<B>(&reward.dir, &device).map_err(StageError::failed)?;
                let a: Vec<(&str, &str)> =
                    heldout.iter().map(|p| (p.prompt.as_str(), p.output_a.as_str())).collect();
                let b: Vec<(&str, &str)> =
                    heldout.iter().map(|p| (p.prompt.as_str(), p.output_b.as_str())).collect();
                let ra = score_outputs(&pm, &a, config.batch_size)?;
                let rb = score_outputs(&pm, &b, config.batch_size)?;
                Ok::<_, StageError>(ra.into_iter().zip(rb).collect::<Vec<(f64, f64)>>())
            })?;
            Some(pm_agreement::agreement(&rewards, &truth).map_err(StageError::failed)?)
        };
        let record = PmEvalRecord {
            method: trained.method,
            kind: trained.kind,
            simulator: trained.simulator,
            task: trained.task,
            log: trained.log,
            agreement,
            reference,
        };
        ctx.write_json(PM_EVAL, &record)?;
        Ok(serde_json::json!({
            "accuracy": record.agreement.as_ref().and_then(|a| a.rate.rate().ok()),
        }))
    }
}

/// Held-out pairs with reference labels.
struct Labelled {
    /// The pairs the reference decides.
    pairs: Vec<HeldoutPair>,
    /// Per pair, whether the reference prefers A.
    a_better: Vec<bool>,
    /// `oracle` or the label judge (`None` when no pair is labelled).
    reference: Option<String>,
}

/// The held-out pairs with a reference label: the oracle's scores where it scored the pairs,
/// else the label judge's decided verdicts (its ties left out).
fn reference_labels(
    ctx: &Ctx<'_>,
    config: &Config,
    heldout: Vec<HeldoutPair>,
) -> Result<Labelled, StageError> {
    if heldout
        .iter()
        .all(|p| p.score_a.is_some() && p.score_b.is_some())
        && config.judged.is_none()
    {
        return Ok(Labelled {
            a_better: heldout.iter().map(HeldoutPair::a_better).collect(),
            reference: (!heldout.is_empty()).then(|| "oracle".to_string()),
            pairs: heldout,
        });
    }
    let Some(judged) = &config.judged else {
        return Ok(Labelled {
            pairs: Vec::new(),
            a_better: Vec::new(),
            reference: None,
        });
    };
    let labels = read_labels(&ctx.input(judged)?)?;
    let mut kept = Vec::new();
    let mut truth = Vec::new();
    let items = labels.aligned(judged, heldout.iter().map(|p| p.prompt_id.as_str()))?;
    for (pair, (_, j)) in heldout.into_iter().zip(items) {
        if let Some(a_better) = j.verdict.outcome() {
            kept.push(pair);
            truth.push(a_better);
        }
    }
    Ok(Labelled {
        pairs: kept,
        a_better: truth,
        reference: Some(labels.judge),
    })
}
