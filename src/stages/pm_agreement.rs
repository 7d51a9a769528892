//! The `pm_agreement` table stage: every preference model against held-out reference labels —
//! the oracle's, or the label judge's where no oracle exists (the analogue of paper Table 5) —
//! with its training loss and its accuracy on its own held-out simulated pairs.

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::planning::{PlanError, Planned};
use super::pm_eval::{PM_EVAL, PmEvalRecord};
use super::stage::{StageError, StageKind, read_json};
use super::table::Table;
use crate::eval::winrate::Rate;
use crate::store::Artifact;
use crate::tables::{TableError, f64_col, frame_err, method_cols, opt_col, opt_str_col, rate_cols};

/// The table's file stem.
pub const STEM: &str = "pm_agreement";

/// Id of the table stage.
pub const ID: &str = "pm_agreement/table";

/// The stage type.
pub struct PmAgreement;

/// The table of preference-model measurements `rewards` (`pm_eval` stages).
pub fn plan(rewards: Vec<String>) -> Result<Planned, PlanError> {
    super::table::plan::<PmAgreement>(rewards)
}

impl Table for PmAgreement {
    const KIND: StageKind = StageKind::PmAgreement;
    const STEM: &'static str = STEM;
    const ID: &'static str = ID;
    // 2: agreement and held-out accuracy in percent (`*_pct`); 3: the reference column.
    const VERSION: u32 = 3;
    type Row = PmAgreementRow;

    fn rows(input: &Artifact) -> Result<Vec<PmAgreementRow>, StageError> {
        let r: PmEvalRecord = read_json(input, PM_EVAL)?;
        let agreement = r.agreement.clone();
        Ok(vec![PmAgreementRow {
            method: r.kind,
            simulator: r.simulator,
            task: r.task,
            reference: r.reference,
            agreement: agreement.as_ref().map(|g| g.rate),
            mean_prob: agreement.as_ref().map(|g| g.mean_prob),
            train_loss: r.log.final_loss,
            heldout_accuracy: r.log.heldout.as_ref().and_then(|h| h.rate.rate().ok()),
        }])
    }

    fn frame(rows: &[PmAgreementRow]) -> Result<DataFrame, TableError> {
        frame(rows)
    }
}

/// One row of the preference-model agreement table (the analogue of paper Table 5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PmAgreementRow {
    /// Method whose preference data trained the PM.
    pub method: String,
    /// Simulator model name.
    pub simulator: String,
    /// Task.
    pub task: String,
    /// The reference labels: `oracle` or the label judge (`None` where there are none).
    pub reference: Option<String>,
    /// Held-out reference-labelled pairs and how many the PM ranks as the reference does
    /// (`None` where the task has no reference labels).
    pub agreement: Option<Rate>,
    /// Mean probability the PM gives the reference-preferred output (σ of the reward margin).
    pub mean_prob: Option<f64>,
    /// Final training loss of the PM (mean Bradley–Terry loss over the last tenth of steps).
    pub train_loss: f64,
    /// Accuracy of the PM on its own held-out simulated pairs (their simulated labels), as a
    /// fraction.
    pub heldout_accuracy: Option<f64>,
}

/// The PM agreement table: method, simulator, task, reference, n, n_agree, accuracy_pct, stderr_pct,
/// ci_low_pct, ci_high_pct, mean_prob (0–1), train_loss, heldout_accuracy_pct.
pub fn frame(rows: &[PmAgreementRow]) -> Result<DataFrame, TableError> {
    let mut cols = method_cols(rows.iter().map(|r| (&r.method, &r.simulator, &r.task)));
    cols.push(opt_str_col(
        "reference",
        rows.iter().map(|r| r.reference.clone()).collect(),
    ));
    let rates: Vec<Option<Rate>> = rows.iter().map(|r| r.agreement).collect();
    cols.extend(rate_cols(
        [
            "n",
            "n_agree",
            "accuracy_pct",
            "stderr_pct",
            "ci_low_pct",
            "ci_high_pct",
        ],
        &rates,
    ));
    cols.push(opt_col(
        "mean_prob",
        rows.iter().map(|r| r.mean_prob).collect(),
    ));
    cols.push(f64_col(
        "train_loss",
        rows.iter().map(|r| r.train_loss).collect(),
    ));
    cols.push(opt_col(
        "heldout_accuracy_pct",
        rows.iter()
            .map(|r| r.heldout_accuracy.map(|a| 100.0 * a))
            .collect(),
    ));
    DataFrame::new(rows.len(), cols).map_err(frame_err(STEM))
}
