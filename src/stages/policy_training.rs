//! The `policy_training` table stage: how each method's policy was trained and where it
//! ended (PPO score, KL and length; DPO margin; SFT NLL), and the per-step PPO curves behind
//! it (paper §4.2's PPO runs; AlpacaFarm's training logs).

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::planning::{PlanError, Planned};
use super::policy::ppo::PpoStepLog;
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

/// File stem of the per-step PPO curves written beside the table.
pub const CURVES_STEM: &str = "policy_curves";

/// One PPO run's per-step log, labelled for the curves table and plot.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    /// Method name.
    pub method: String,
    /// Simulator model name.
    pub simulator: String,
    /// Task.
    pub task: String,
    /// One entry per finished step.
    pub steps: Vec<PpoStepLog>,
}

/// The PPO runs among the policy artifacts `inputs`, in their order (DPO and SFT policies
/// have no per-step curve and are left out).
pub fn curves(inputs: &[Artifact]) -> Result<Vec<Curve>, StageError> {
    let mut out = Vec::new();
    for input in inputs {
        let r: PolicyRecord = read_json(input, TRAINING)?;
        if let Some(log) = r.ppo {
            out.push(Curve {
                method: r.method,
                simulator: r.simulator,
                task: r.task,
                steps: log.steps,
            });
        }
    }
    Ok(out)
}

/// The curves table: one row per PPO run and step — method, simulator, task, step, score (mean
/// PM reward of the rollouts), kl, entropy, response_len, identical, kl_coef, clip_frac.
pub fn curves_frame(curves: &[Curve]) -> Result<DataFrame, TableError> {
    let rows: Vec<(&Curve, &PpoStepLog)> = curves
        .iter()
        .flat_map(|c| c.steps.iter().map(move |s| (c, s)))
        .collect();
    let mut cols = method_cols(rows.iter().map(|(c, _)| (&c.method, &c.simulator, &c.task)));
    cols.push(u64_col(
        "step",
        rows.iter().map(|(_, s)| s.step as u64).collect(),
    ));
    for (name, f) in [
        ("score", (|s| s.score) as fn(&PpoStepLog) -> f64),
        ("kl", |s| s.kl),
        ("entropy", |s| s.entropy),
        ("response_len", |s| s.response_len),
        ("identical", |s| s.identical),
        ("kl_coef", |s| s.kl_coef),
        ("clip_frac", |s| s.clip_frac),
    ] {
        cols.push(f64_col(name, rows.iter().map(|(_, s)| f(s)).collect()));
    }
    DataFrame::new(rows.len(), cols).map_err(frame_err(CURVES_STEM))
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
        final_kl_coef: None,
        final_identical: None,
        final_loss: f64::NAN,
        dpo_margin: None,
        sft_nll_before: None,
        seconds: 0.0,
    };
    if let Some(log) = &r.ppo {
        row.steps = log.steps.len() as u64;
        row.initial_reward = log.steps.first().map(|s| s.score);
        if let Some(last) = log.steps.last() {
            row.final_reward = Some(last.score);
            row.final_kl = Some(last.kl);
            row.final_len = Some(last.response_len);
            row.final_kl_coef = Some(last.kl_coef);
            row.final_identical = Some(last.identical);
            row.final_loss = last.loss;
        }
        row.seconds = log.seconds;
    } else if let Some(log) = &r.dpo {
        row.steps = log.steps as u64;
        row.final_loss = log.after.loss;
        row.dpo_margin = Some(log.after.margin);
        row.seconds = log.seconds;
    } else if let Some(log) = &r.sft {
        row.steps = log.steps as u64;
        row.final_loss = log.nll_after;
        row.sft_nll_before = Some(log.nll_before);
        row.seconds = log.seconds;
    }
    row
}

impl Table for PolicyTraining {
    const KIND: StageKind = StageKind::PolicyTraining;
    const STEM: &'static str = STEM;
    const ID: &'static str = ID;
    // 2: `extra` split into `dpo_margin` and `sft_nll_before`; 3: PPO's final KL coefficient
    // and share of identical rollouts.
    const VERSION: u32 = 3;
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
    /// PPO: the KL coefficient of the last step (moves under `ppo.adaptive_kl`).
    pub final_kl_coef: Option<f64>,
    /// PPO: share of the last step's rollouts repeating another rollout token for token.
    pub final_identical: Option<f64>,
    /// Training loss at the end (PPO: total loss of the last step; DPO: mean loss over all
    /// pairs; SFT: mean token NLL over all examples).
    pub final_loss: f64,
    /// DPO: mean chosen-vs-rejected implicit-reward margin after training.
    pub dpo_margin: Option<f64>,
    /// SFT: mean token NLL over all examples before training (to compare with `final_loss`).
    pub sft_nll_before: Option<f64>,
    /// Wall-clock seconds of training.
    pub seconds: f64,
}

/// The policy-training table: method, simulator, task, trainer, steps, initial_reward,
/// final_reward, final_kl, final_len, final_kl_coef, final_identical (PPO only), final_loss, dpo_margin (DPO only: mean
/// implicit-reward margin of chosen over rejected after training), sft_nll_before (SFT only:
/// mean token NLL before training), seconds. Columns of another trainer are empty.
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
        ("final_kl_coef", |r| r.final_kl_coef),
        ("final_identical", |r| r.final_identical),
    ] {
        cols.push(opt_col(name, rows.iter().map(f).collect()));
    }
    cols.push(f64_col(
        "final_loss",
        rows.iter().map(|r| r.final_loss).collect(),
    ));
    cols.push(opt_col(
        "dpo_margin",
        rows.iter().map(|r| r.dpo_margin).collect(),
    ));
    cols.push(opt_col(
        "sft_nll_before",
        rows.iter().map(|r| r.sft_nll_before).collect(),
    ));
    cols.push(f64_col("seconds", rows.iter().map(|r| r.seconds).collect()));
    DataFrame::new(rows.len(), cols).map_err(frame_err(STEM))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::policy::dpo::{DpoLog, DpoStats};
    use crate::stages::policy::sft::SftLog;
    use crate::tables::render_csv;

    fn record(trainer: &str) -> PolicyRecord {
        PolicyRecord {
            method: format!("m-{trainer}"),
            kind: "rlcd".into(),
            trainer: trainer.into(),
            simulator: "sim-s".into(),
            task: "helpful".into(),
            ppo: None,
            dpo: None,
            sft: None,
        }
    }

    #[test]
    fn each_trainer_fills_only_its_own_columns() {
        let stats = |loss, margin| DpoStats {
            loss,
            margin,
            accuracy: 0.5,
        };
        let dpo = PolicyRecord {
            dpo: Some(DpoLog {
                pairs: 8,
                steps: 2,
                losses: vec![0.7, 0.6],
                before: stats(std::f64::consts::LN_2, 0.0),
                after: stats(0.6, 0.25),
                seconds: 1.5,
            }),
            ..record("dpo")
        };
        let sft = PolicyRecord {
            sft: Some(SftLog {
                examples: 8,
                steps: 3,
                losses: vec![2.0, 1.5, 1.2],
                nll_before: 2.5,
                nll_after: 1.25,
                seconds: 2.0,
            }),
            ..record("sft")
        };
        let rows = [row(dpo), row(sft), row(record("ppo"))];
        assert_eq!(rows[0].dpo_margin, Some(0.25));
        assert_eq!(rows[0].sft_nll_before, None);
        assert_eq!(rows[1].dpo_margin, None);
        assert_eq!(rows[1].sft_nll_before, Some(2.5));
        let df = frame(&rows).expect("frame");
        let names: Vec<&str> = df.get_column_names().iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "method",
                "simulator",
                "task",
                "trainer",
                "steps",
                "initial_reward",
                "final_reward",
                "final_kl",
                "final_len",
                "final_kl_coef",
                "final_identical",
                "final_loss",
                "dpo_margin",
                "sft_nll_before",
                "seconds"
            ]
        );
        let csv = String::from_utf8(render_csv(&df).expect("csv")).expect("utf-8");
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[1],
            "m-dpo,sim-s,helpful,dpo,2,,,,,,,0.6000,0.2500,,1.5000"
        );
        assert_eq!(
            lines[2],
            "m-sft,sim-s,helpful,sft,3,,,,,,,1.2500,,2.5000,2.0000"
        );
    }
}
