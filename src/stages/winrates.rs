//! The `winrates` table stage (paper §4.3): every judge stage's win-rate rows — counts, win
//! rate with ties ½, its standard error and Wilson interval, the length-controlled rate and
//! both mean lengths.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::judge::JUDGED;
use super::planning::{PlanError, Planned};
use super::stage::{StageError, StageKind, read_json};
use super::table::Table;
use crate::eval::winrate::{Estimate, WinCounts};
use crate::store::Artifact;
use crate::tables::{TableError, estimate_cols, f64_col, frame_err, opt_col, str_col, u64_col};

/// The table's file stem.
pub const STEM: &str = "winrates";

/// Id of the table stage.
pub const ID: &str = "winrates/table";

/// The stage type.
pub struct Winrates;

/// The table of judge stages `judges`.
pub fn plan(judges: Vec<String>) -> Result<Planned, PlanError> {
    super::table::plan::<Winrates>(judges)
}

impl Table for Winrates {
    const KIND: StageKind = StageKind::Winrates;
    const STEM: &'static str = STEM;
    const ID: &'static str = ID;
    // 2: columns in percent are named `*_pct`; 3: distinct shares and collapse marks;
    // 4: `mostly_ties`.
    const VERSION: u32 = 4;
    type Row = WinRateRow;

    fn rows(input: &Artifact) -> Result<Vec<WinRateRow>, StageError> {
        let rows: Vec<WinRateRow> = read_json(input, JUDGED)?;
        if let Some(r) = rows.iter().find(|r| r.counts.total() == 0) {
            return Err(StageError::Degenerate {
                what: format!(
                    "0 comparisons of {} against {} on {} ({} judged by {})",
                    r.method_a, r.method_b, r.task, r.axis, r.judge
                ),
                fix: "give the task test-split prompts (`eval.n_prompts` must not exclude all)"
                    .into(),
            });
        }
        Ok(rows)
    }

    fn frame(rows: &[WinRateRow]) -> Result<DataFrame, TableError> {
        frame(rows)
    }
}

/// One row of the win-rate table; judge stages store their rows as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WinRateRow {
    /// Task (harmless, helpful, outlining).
    pub task: String,
    /// Judged axis (harm, help, outline).
    pub axis: String,
    /// Method A (the one whose win rate is reported).
    pub method_a: String,
    /// Method B.
    pub method_b: String,
    /// Simulator size name.
    pub simulator: String,
    /// Judge ("oracle", "lm:<model>").
    pub judge: String,
    /// Outcome counts.
    pub counts: WinCounts,
    /// Length-controlled win rate of A (percent), see
    /// [`crate::eval::winrate::length_controlled`].
    pub lc_win_rate: Option<f64>,
    /// Mean output length of A, in tokens.
    pub avg_len_a: f64,
    /// Mean output length of B, in tokens.
    pub avg_len_b: f64,
    /// Share of A's outputs no other of its outputs repeats.
    #[serde(default)]
    pub distinct_a: f64,
    /// Share of B's outputs no other of its outputs repeats.
    #[serde(default)]
    pub distinct_b: f64,
    /// Whether A's outputs collapsed against the base policy's
    /// ([`crate::eval::collapse`]); absent when the recipe compares no base method of A's
    /// policy model.
    #[serde(default)]
    pub collapsed_a: Option<bool>,
    /// The same for B.
    #[serde(default)]
    pub collapsed_b: Option<bool>,
}

/// The columns naming each row's comparison: task, axis, method_a, method_b, simulator, judge.
pub fn comparison_cols<'a>(rows: impl Iterator<Item = &'a WinRateRow> + Clone) -> Vec<Column> {
    let s = |f: fn(&WinRateRow) -> &String| rows.clone().map(|r| f(r).clone()).collect::<Vec<_>>();
    vec![
        str_col("task", s(|r| &r.task)),
        str_col("axis", s(|r| &r.axis)),
        str_col("method_a", s(|r| &r.method_a)),
        str_col("method_b", s(|r| &r.method_b)),
        str_col("simulator", s(|r| &r.simulator)),
        str_col("judge", s(|r| &r.judge)),
    ]
}

/// The win-rate table: task, axis, method_a, method_b, simulator, judge, n_total, n_wins,
/// n_losses, n_ties, win_rate_pct (ties ½), stderr_pct, ci_low_pct, ci_high_pct,
/// lc_win_rate_pct (length-controlled), avg_len_a, avg_len_b, distinct_a, distinct_b,
/// collapsed_a, collapsed_b, mostly_ties (the judge decided fewer than half the row's
/// comparisons: read its win rate as mostly ties).
pub fn frame(rows: &[WinRateRow]) -> Result<DataFrame, TableError> {
    let est: Vec<Option<Estimate>> = rows.iter().map(|r| r.counts.estimate().ok()).collect();
    let mut cols = comparison_cols(rows.iter());
    cols.extend([
        u64_col("n_total", rows.iter().map(|r| r.counts.total()).collect()),
        u64_col("n_wins", rows.iter().map(|r| r.counts.wins).collect()),
        u64_col("n_losses", rows.iter().map(|r| r.counts.losses).collect()),
        u64_col("n_ties", rows.iter().map(|r| r.counts.ties).collect()),
    ]);
    cols.extend(estimate_cols(
        "win_rate_pct",
        "stderr_pct",
        "ci_low_pct",
        "ci_high_pct",
        &est,
    ));
    cols.push(opt_col(
        "lc_win_rate_pct",
        rows.iter().map(|r| r.lc_win_rate).collect(),
    ));
    cols.push(f64_col(
        "avg_len_a",
        rows.iter().map(|r| r.avg_len_a).collect(),
    ));
    cols.push(f64_col(
        "avg_len_b",
        rows.iter().map(|r| r.avg_len_b).collect(),
    ));
    cols.push(f64_col(
        "distinct_a",
        rows.iter().map(|r| r.distinct_a).collect(),
    ));
    cols.push(f64_col(
        "distinct_b",
        rows.iter().map(|r| r.distinct_b).collect(),
    ));
    for (name, v) in [
        (
            "collapsed_a",
            rows.iter().map(|r| r.collapsed_a).collect::<Vec<_>>(),
        ),
        ("collapsed_b", rows.iter().map(|r| r.collapsed_b).collect()),
    ] {
        cols.push(Column::new(name.into(), v));
    }
    cols.push(Column::new(
        "mostly_ties".into(),
        rows.iter()
            .map(|r| r.counts.mostly_ties())
            .collect::<Vec<bool>>(),
    ));
    DataFrame::new(rows.len(), cols).map_err(frame_err(STEM))
}

/// The rows of a win-rate table read back from its frame (counts, not the derived rates;
/// lengths and the length-controlled rate as stored).
pub fn rows_of_frame(df: &DataFrame) -> Result<Vec<WinRateRow>, TableError> {
    let err = |source: PolarsError| TableError::Frame {
        table: STEM.to_string(),
        source,
    };
    let text = |name: &str| -> Result<Vec<String>, TableError> {
        let c = df.column(name).map_err(err)?;
        let c = c.str().map_err(err)?;
        Ok((0..c.len())
            .map(|i| c.get(i).unwrap_or_default().to_string())
            .collect())
    };
    let count = |name: &str| -> Result<Vec<u64>, TableError> {
        let c = df.column(name).map_err(err)?;
        let c = c.u64().map_err(err)?;
        Ok((0..c.len()).map(|i| c.get(i).unwrap_or(0)).collect())
    };
    let real = |name: &str| -> Result<Vec<Option<f64>>, TableError> {
        let c = df.column(name).map_err(err)?;
        let c = c.f64().map_err(err)?;
        Ok((0..c.len()).map(|i| c.get(i)).collect())
    };
    let (task, axis, a, b) = (
        text("task")?,
        text("axis")?,
        text("method_a")?,
        text("method_b")?,
    );
    let (sim, judge) = (text("simulator")?, text("judge")?);
    let (w, l, t) = (count("n_wins")?, count("n_losses")?, count("n_ties")?);
    let (lc, la, lb) = (
        real("lc_win_rate_pct")?,
        real("avg_len_a")?,
        real("avg_len_b")?,
    );
    // Columns a table of an older format lacks read as their defaults.
    let optional_real = |name: &str| -> Result<Vec<Option<f64>>, TableError> {
        match df.column(name) {
            Ok(_) => real(name),
            Err(_) => Ok(vec![None; df.height()]),
        }
    };
    let flag = |name: &str| -> Result<Vec<Option<bool>>, TableError> {
        let Ok(c) = df.column(name) else {
            return Ok(vec![None; df.height()]);
        };
        let c = c.bool().map_err(err)?;
        Ok((0..c.len()).map(|i| c.get(i)).collect())
    };
    let (da, db) = (optional_real("distinct_a")?, optional_real("distinct_b")?);
    let (ca, cb) = (flag("collapsed_a")?, flag("collapsed_b")?);
    Ok((0..df.height())
        .map(|i| WinRateRow {
            task: task[i].clone(),
            axis: axis[i].clone(),
            method_a: a[i].clone(),
            method_b: b[i].clone(),
            simulator: sim[i].clone(),
            judge: judge[i].clone(),
            counts: WinCounts::new(w[i], l[i], t[i]),
            lc_win_rate: lc[i],
            avg_len_a: la[i].unwrap_or(f64::NAN),
            avg_len_b: lb[i].unwrap_or(f64::NAN),
            distinct_a: da[i].unwrap_or(f64::NAN),
            distinct_b: db[i].unwrap_or(f64::NAN),
            collapsed_a: ca[i],
            collapsed_b: cb[i],
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::render_markdown;

    #[test]
    fn winrates_columns_follow_design() {
        let df = frame(&[WinRateRow {
            task: "harmless".into(),
            axis: "harm".into(),
            method_a: "rlcd".into(),
            method_b: "rlaif".into(),
            simulator: "sim-s".into(),
            judge: "oracle".into(),
            counts: WinCounts::new(7, 2, 1),
            lc_win_rate: Some(81.2),
            avg_len_a: 66.5,
            avg_len_b: 42.1,
            distinct_a: 1.0,
            distinct_b: 0.9,
            collapsed_a: Some(false),
            collapsed_b: None,
        }])
        .expect("frame");
        let names: Vec<&str> = df.get_column_names().iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "task",
                "axis",
                "method_a",
                "method_b",
                "simulator",
                "judge",
                "n_total",
                "n_wins",
                "n_losses",
                "n_ties",
                "win_rate_pct",
                "stderr_pct",
                "ci_low_pct",
                "ci_high_pct",
                "lc_win_rate_pct",
                "avg_len_a",
                "avg_len_b",
                "distinct_a",
                "distinct_b",
                "collapsed_a",
                "collapsed_b",
                "mostly_ties"
            ]
        );
        let md = render_markdown(&df).expect("md");
        assert!(md.contains(" 75.0000 |    13.4371 |"), "{md}");
    }
}
