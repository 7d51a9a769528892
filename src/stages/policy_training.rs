//! The `policy_training` table stage: how each method's policy was trained and where it
//! ended (PPO score, KL and length; DPO margin; SFT NLL).

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::planning::{PlanError, Planned};
use super::policy::{PolicyRecord, TRAINING};
use super::stage::{StageError, StageKind, read_json};
use super::table::Table;
use crate::store::Artifact;
use crate::tables::{TableError, f64_col, frame_err, method_cols, opt_col, str_col, u64_col};

/// The table's file stem.
pub const STEM: &str = "policy_training";

/// Id of the table stage.
pub const ID: &str = "policy_training/table";

/// The stage type.
pub struct PolicyTraining;

/// The table of policy stages `policies`.
pub fn plan(policies: Vec<String>) -> Result<Planned, PlanError> {
    super::table::plan::<PolicyTraining>(policies)
}

/// The table row of a policy stage's record.
pub fn row(r: PolicyRecord) -> PolicyTrainingRow {
    let mut row = PolicyTrainingRow {
        method: r.method,
        simulator: r.simulator,
        task: r.task,
        trainer: r.trainer,
        steps: 0,
        initial_reward: None,
        final_reward: None,
        final_kl: None,
        final_len: None,
        final_loss: f64::NAN,
        extra: None,
        seconds: 0.0,
    };
    if let Some(log) = &r.ppo {
        row.steps = log.steps.len() as u64;
        row.initial_reward = log.steps.first().map(|s| s.score);
        if let Some(last) = log.steps.last() {
            row.final_reward = Some(last.score);
            row.final_kl = Some(last.kl);
            row.final_len = Some(last.response_len);
            row.final_loss = last.loss;
        }
        row.seconds = log.seconds;
    } else if let Some(log) = &r.dpo {
        row.steps = log.steps as u64;
        row.final_loss = log.after.loss;
        row.extra = Some(log.after.margin);
        row.seconds = log.seconds;
    } else if let Some(log) = &r.sft {
        row.steps = log.steps as u64;
        row.final_loss = log.nll_after;
        row.extra = Some(log.nll_before);
        row.seconds = log.seconds;
    }
    row
}

impl Table for PolicyTraining {
    const KIND: StageKind = StageKind::PolicyTraining;
    const STEM: &'static str = STEM;
    const ID: &'static str = ID;
    type Row = PolicyTrainingRow;

    fn rows(input: &Artifact) -> Result<Vec<PolicyTrainingRow>, StageError> {
        Ok(vec![row(read_json(input, TRAINING)?)])
    }

    fn frame(rows: &[PolicyTrainingRow]) -> Result<DataFrame, TableError> {
        frame(rows)
    }
}

/// One row of the policy-training table: how each method's policy was trained and where it
/// ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyTrainingRow {
    /// Method name.
    pub method: String,
    /// Simulator model name.
    pub simulator: String,
    /// Task.
    pub task: String,
    /// `ppo`, `dpo` or `sft`.
    pub trainer: String,
    /// Optimiser steps (PPO: PPO steps).
    pub steps: u64,
    /// PPO: mean PM score of the first step's rollouts.
    pub initial_reward: Option<f64>,
    /// PPO: mean PM score of the last step's rollouts.
    pub final_reward: Option<f64>,
    /// PPO: mean KL to the initial policy per response at the last step.
    pub final_kl: Option<f64>,
    /// PPO: mean response length (tokens) at the last step.
    pub final_len: Option<f64>,
    /// Training loss at the end (PPO: total loss of the last step; DPO: mean loss over all
    /// pairs; SFT: mean token NLL over all examples).
    pub final_loss: f64,
    /// DPO: mean chosen-vs-rejected implicit-reward margin after training; SFT: NLL before.
    pub extra: Option<f64>,
    /// Wall-clock seconds of training.
    pub seconds: f64,
}

/// The policy-training table: method, simulator, task, trainer, steps, initial_reward,
/// final_reward, final_kl, final_len, final_loss, extra (DPO margin / SFT NLL before),
/// seconds.
pub fn frame(rows: &[PolicyTrainingRow]) -> Result<DataFrame, TableError> {
    let mut cols = method_cols(rows.iter().map(|r| (&r.method, &r.simulator, &r.task)));
    cols.push(str_col(
        "trainer",
        rows.iter().map(|r| r.trainer.clone()).collect(),
    ));
    cols.push(u64_col("steps", rows.iter().map(|r| r.steps).collect()));
    for (name, f) in [
        (
            "initial_reward",
            (|r| r.initial_reward) as fn(&PolicyTrainingRow) -> Option<f64>,
        ),
        ("final_reward", |r| r.final_reward),
        ("final_kl", |r| r.final_kl),
        ("final_len", |r| r.final_len),
    ] {
        cols.push(opt_col(name, rows.iter().map(f).collect()));
    }
    cols.push(f64_col(
        "final_loss",
        rows.iter().map(|r| r.final_loss).collect(),
    ));
    cols.push(opt_col("extra", rows.iter().map(|r| r.extra).collect()));
    cols.push(f64_col("seconds", rows.iter().map(|r| r.seconds).collect()));
    DataFrame::new(rows.len(), cols).map_err(frame_err(STEM))
}
