//! The `world_report` table stage: every world preset's evaluation, one row per preset and
//! task.

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::planning::{PlanError, Planned};
use super::stage::{StageError, StageKind, read_json};
use super::table::Table;
use super::world_eval::REPORT;
use crate::eval::winrate::{Estimate, Rate, WinCounts};
use crate::store::Artifact;
use crate::tables::{TableError, estimate_cols, f64_col, frame_err, str_col, u64_col};

/// The table's file stem.
pub const STEM: &str = "world_report";

/// Id of the table stage.
pub const ID: &str = "world_report/table";

/// The stage type.
pub struct WorldReport;

/// The table merging the evaluations `evals`.
pub fn plan(evals: Vec<String>) -> Result<Planned, PlanError> {
    super::table::plan::<WorldReport>(evals)
}

impl Table for WorldReport {
    const KIND: StageKind = StageKind::WorldReport;
    const STEM: &'static str = STEM;
    const ID: &'static str = ID;
    // 2: RLAIF agreement and the share of "A" labels in percent (`*_pct`).
    const VERSION: u32 = 2;
    type Row = WorldReportRow;

    fn rows(input: &Artifact) -> Result<Vec<WorldReportRow>, StageError> {
        read_json(input, REPORT)
    }

    fn frame(rows: &[WorldReportRow]) -> Result<DataFrame, TableError> {
        frame(rows)
    }
}

/// One row of the world report: what a world preset learned on one task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorldReportRow {
    /// The world model: its preset (`world-s`, …), or `<preset>-<model>` for a model pretrained
    /// on a corpus of its own (`[models.<name>.judging]`).
    pub preset: String,
    /// The task.
    pub task: String,
    /// Trainable parameters.
    pub params: u64,
    /// Held-out perplexity of the pretraining corpus.
    pub perplexity: f64,
    /// p+ outputs against p− outputs under the oracle on the task's main axis (ties ½).
    pub descriptor: WinCounts,
    /// Mean oracle score of p+ outputs.
    pub score_positive: f64,
    /// Mean oracle score of p outputs.
    pub score_plain: f64,
    /// Mean oracle score of p− outputs.
    pub score_negative: f64,
    /// Zero-shot RLAIF labels against the oracle.
    pub rlaif: Rate,
    /// Mean probability given to the oracle's better response.
    pub rlaif_mean_prob: f64,
    /// Share of pairs the model labelled "A" (its position bias; ½ = none).
    pub rlaif_share_a: f64,
    /// The same pairs labelled in both orders, the two P(A better) averaged, against the oracle.
    pub rlaif_both_orders: Rate,
    /// Training tokens per second.
    pub train_tokens_per_s: f64,
    /// Training seconds.
    pub train_seconds: f64,
}

/// The world report: preset, task, params, perplexity, descriptor win rate of p+ over p−
/// (counts, `pos_win_rate_pct`, stderr, Wilson CI), mean oracle scores of p+ / p / p−, RLAIF
/// agreement with the oracle (n, agreeing, `rlaif_accuracy_pct`, stderr, CI, mean probability
/// in 0–1), the share of "A" labels (`rlaif_share_a_pct`), the agreement of labels averaged over
/// both output orders (`rlaif2_*`), training speed. Rates, their stderrs and CIs are in percent.
pub fn frame(rows: &[WorldReportRow]) -> Result<DataFrame, TableError> {
    let desc: Vec<Option<Estimate>> = rows.iter().map(|r| r.descriptor.estimate().ok()).collect();
    let agree: Vec<Option<Estimate>> = rows
        .iter()
        .map(|r| r.rlaif.estimate().ok().map(Estimate::percent))
        .collect();
    let f = |g: fn(&WorldReportRow) -> f64| rows.iter().map(g).collect::<Vec<_>>();
    let mut cols = vec![
        str_col("preset", rows.iter().map(|r| r.preset.clone()).collect()),
        str_col("task", rows.iter().map(|r| r.task.clone()).collect()),
        u64_col("params", rows.iter().map(|r| r.params).collect()),
        f64_col("perplexity", f(|r| r.perplexity)),
        u64_col(
            "n_prompts",
            rows.iter().map(|r| r.descriptor.total()).collect(),
        ),
        u64_col("pos_wins", rows.iter().map(|r| r.descriptor.wins).collect()),
        u64_col(
            "pos_losses",
            rows.iter().map(|r| r.descriptor.losses).collect(),
        ),
        u64_col("pos_ties", rows.iter().map(|r| r.descriptor.ties).collect()),
    ];
    cols.extend(estimate_cols(
        "pos_win_rate_pct",
        "pos_stderr_pct",
        "pos_ci_low_pct",
        "pos_ci_high_pct",
        &desc,
    ));
    cols.push(f64_col("score_pos", f(|r| r.score_positive)));
    cols.push(f64_col("score_plain", f(|r| r.score_plain)));
    cols.push(f64_col("score_neg", f(|r| r.score_negative)));
    cols.push(u64_col("rlaif_n", rows.iter().map(|r| r.rlaif.n).collect()));
    cols.push(u64_col(
        "rlaif_agree",
        rows.iter().map(|r| r.rlaif.successes).collect(),
    ));
    cols.extend(estimate_cols(
        "rlaif_accuracy_pct",
        "rlaif_stderr_pct",
        "rlaif_ci_low_pct",
        "rlaif_ci_high_pct",
        &agree,
    ));
    cols.push(f64_col("rlaif_mean_prob", f(|r| r.rlaif_mean_prob)));
    cols.push(f64_col("rlaif_share_a_pct", f(|r| 100.0 * r.rlaif_share_a)));
    let both: Vec<Option<Estimate>> = rows
        .iter()
        .map(|r| r.rlaif_both_orders.estimate().ok().map(Estimate::percent))
        .collect();
    cols.push(u64_col(
        "rlaif2_agree",
        rows.iter().map(|r| r.rlaif_both_orders.successes).collect(),
    ));
    cols.extend(estimate_cols(
        "rlaif2_accuracy_pct",
        "rlaif2_stderr_pct",
        "rlaif2_ci_low_pct",
        "rlaif2_ci_high_pct",
        &both,
    ));
    cols.push(f64_col("train_tok_per_s", f(|r| r.train_tokens_per_s)));
    cols.push(f64_col("train_seconds", f(|r| r.train_seconds)));
    DataFrame::new(rows.len(), cols).map_err(frame_err(STEM))
}
