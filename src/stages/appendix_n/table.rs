//! The `appendix_n_table` stage: the Appendix N table merging every method's cell.

use polars::prelude::DataFrame;

use super::cell::CELL;
use super::{CellResult, TheoryRow};
use crate::eval::winrate::Estimate;
use crate::stages::planning::{PlanError, Planned};
use crate::stages::stage::{StageError, StageKind, read_json};
use crate::store::Artifact;
use crate::tables::{TableError, estimate_cols, f64_col, frame_err, opt_col, str_col, u64_col};

/// The table's file stem.
pub const STEM: &str = "appendix-n";

/// Id of the table stage.
pub const ID: &str = "appendix_n/table";

/// The stage type.
pub struct Table;

/// The table merging `cells`.
pub fn plan(cells: Vec<String>) -> Result<Planned, PlanError> {
    crate::stages::table::plan::<Table>(cells)
}

impl crate::stages::table::Table for Table {
    const KIND: StageKind = StageKind::AppendixNTable;
    const STEM: &'static str = STEM;
    const ID: &'static str = ID;
    // 2: accuracies in percent (`*_pct`).
    const VERSION: u32 = 2;
    type Row = TheoryRow;

    fn rows(input: &Artifact) -> Result<Vec<TheoryRow>, StageError> {
        let cell: CellResult = read_json(input, CELL)?;
        Ok(vec![cell.spec.row(cell.counts)])
    }

    fn frame(rows: &[TheoryRow]) -> Result<DataFrame, TableError> {
        frame(rows)
    }
}

/// The Appendix N table: method, delta, sigma_g, sigma_d, n_trials, n_correct, accuracy_pct,
/// accuracy_stderr_pct, accuracy_ci_low_pct, accuracy_ci_high_pct, n_hard, n_hard_correct,
/// hard_accuracy_pct, hard_stderr_pct, hard_ci_low_pct, hard_ci_high_pct. `delta` is null for
/// RLAIF, `sigma_d` for RLCD.
pub fn frame(rows: &[TheoryRow]) -> Result<DataFrame, TableError> {
    let acc: Vec<Option<Estimate>> = rows
        .iter()
        .map(|r| r.counts.accuracy().estimate().ok().map(Estimate::percent))
        .collect();
    let hard: Vec<Option<Estimate>> = rows
        .iter()
        .map(|r| {
            r.counts
                .hard_accuracy()
                .estimate()
                .ok()
                .map(Estimate::percent)
        })
        .collect();
    let mut cols = vec![
        str_col(
            "method",
            rows.iter().map(|r| r.method.name().to_string()).collect(),
        ),
        opt_col("delta", rows.iter().map(|r| r.delta).collect()),
        f64_col("sigma_g", rows.iter().map(|r| r.sigma_g).collect()),
        opt_col("sigma_d", rows.iter().map(|r| r.sigma_d).collect()),
        u64_col("n_trials", rows.iter().map(|r| r.counts.trials).collect()),
        u64_col("n_correct", rows.iter().map(|r| r.counts.correct).collect()),
    ];
    cols.extend(estimate_cols(
        "accuracy_pct",
        "accuracy_stderr_pct",
        "accuracy_ci_low_pct",
        "accuracy_ci_high_pct",
        &acc,
    ));
    cols.push(u64_col(
        "n_hard",
        rows.iter().map(|r| r.counts.hard).collect(),
    ));
    cols.push(u64_col(
        "n_hard_correct",
        rows.iter().map(|r| r.counts.hard_correct).collect(),
    ));
    cols.extend(estimate_cols(
        "hard_accuracy_pct",
        "hard_stderr_pct",
        "hard_ci_low_pct",
        "hard_ci_high_pct",
        &hard,
    ));
    DataFrame::new(rows.len(), cols).map_err(frame_err(STEM))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::TheoryMethod;
    use crate::stages::appendix_n::CellCounts;
    use crate::tables::{read_parquet, render_csv, render_markdown, render_parquet, write_table};

    fn rows() -> Vec<TheoryRow> {
        vec![
            TheoryRow {
                method: TheoryMethod::Rlaif,
                delta: None,
                sigma_g: 1.0,
                sigma_d: Some(1.0),
                counts: CellCounts {
                    trials: 1000,
                    correct: 750,
                    hard: 100,
                    hard_correct: 53,
                },
            },
            TheoryRow {
                method: TheoryMethod::Rlcd,
                delta: Some(3.0),
                sigma_g: 1.0,
                sigma_d: None,
                counts: CellCounts {
                    trials: 1000,
                    correct: 983,
                    hard: 0,
                    hard_correct: 0,
                },
            },
        ]
    }

    #[test]
    fn appendix_n_renders_and_round_trips() {
        let df = frame(&rows()).expect("frame");
        let md = render_markdown(&df).expect("md");
        assert_eq!(md.lines().count(), 4);
        let csv = String::from_utf8(render_csv(&df).expect("csv")).expect("utf8");
        assert!(csv.starts_with("method,delta,sigma_g,sigma_d,n_trials,n_correct,accuracy_pct,"));
        assert!(
            csv.contains("\nrlaif,,1.0000,1.0000,1000,750,75.0000,1.3693,"),
            "{csv}"
        );
        assert!(
            csv.contains("\nrlcd,3.0000,1.0000,,1000,983,98.3000,"),
            "{csv}"
        );
        assert!(
            csv.contains(",100,53,53.0000,4.9910,"),
            "hard accuracy and its stderr in percent: {csv}"
        );
        assert!(
            csv.ends_with("0,0,,,,\n"),
            "hard columns of an empty rate are null: {csv}"
        );
        let dir = tempfile::tempdir().expect("tmp");
        let files = write_table(dir.path(), STEM, &df).expect("write");
        let back = read_parquet(&files.parquet).expect("read");
        assert!(back.equals_missing(&df));
        assert_eq!(
            render_parquet(&back).expect("pq"),
            render_parquet(&df).expect("pq")
        );
    }
}
