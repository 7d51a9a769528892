//! The `judge_skill` table stage (paper §4, Tables 2–5 read together: RLCD's lead over RLAIF is
//! large with the 7B simulator, which cannot label, and small with the 30B one, which can):
//! per simulator and task, how well the simulator labels its RLAIF pairs and how well the
//! preference models trained on RLAIF and on RLCD pairs agree with the oracle, beside the
//! win rate of the RLCD policy over the RLAIF policy on the task's main axis. With simulators of
//! different judging skill (`[models.<name>.judging]`) its rows trace RLCD's advantage as a
//! function of the simulator's measured label accuracy; a seed sweep adds intervals
//! over seeds (`rlcd sweep --seeds`, the `judge-skill` table).

use std::collections::BTreeMap;

use polars::prelude::{Column, DataFrame, PolarsError};
use serde::{Deserialize, Serialize};

use super::planning::{PlanError, Planned};
use super::stage::{Ctx, Stage, StageError, StageKind};
use super::{pair_labels, pm_agreement, winrates};
use crate::eval::winrate::{Estimate, Rate, WinCounts};
use crate::tables::{
    TableError, estimate_cols, frame_err, rate_cols, read_parquet, render_parquet, str_col, u64_col,
};

/// The table's file stem.
pub const STEM: &str = "judge_skill";

/// Id of the table stage.
pub const ID: &str = "judge_skill/table";

/// The judge whose verdicts give the win rates.
pub const JUDGE: &str = "oracle";

/// The stage type.
pub struct JudgeSkill;

/// One simulator's pair of methods: the RLCD and the RLAIF method it simulates for, with the
/// same policy model.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    /// The simulator model.
    pub simulator: String,
    /// The RLCD method.
    pub rlcd: String,
    /// The RLAIF method.
    pub rlaif: String,
}

/// What the table reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The simulators and their method pairs.
    pub levels: Vec<Level>,
    /// Each task's main axis (the first of its `axes`), on which the win rate is read.
    pub axes: BTreeMap<String, String>,
}

/// The table over the pair-label, PM-agreement and win-rate tables of a run.
pub fn plan(levels: Vec<Level>, axes: BTreeMap<String, String>) -> Result<Planned, PlanError> {
    Planned::new::<JudgeSkill>(ID, &Config { levels, axes })
}

/// One row: a simulator on one task.
#[derive(Clone, Debug, PartialEq)]
pub struct SkillRow {
    /// The simulator.
    pub simulator: String,
    /// Task.
    pub task: String,
    /// The task's main axis.
    pub axis: String,
    /// The RLCD method.
    pub rlcd: String,
    /// The RLAIF method.
    pub rlaif: String,
    /// RLAIF pairs whose label the oracle decides, and how many of them agree with it.
    pub rlaif_labels: Option<Rate>,
    /// The same for the RLCD pairs (o+ preferred by construction).
    pub rlcd_labels: Option<Rate>,
    /// Held-out pairs and how many the RLAIF preference model ranks as the oracle does.
    pub rlaif_pm: Option<Rate>,
    /// The same for the RLCD preference model.
    pub rlcd_pm: Option<Rate>,
    /// The oracle's verdicts on RLCD (A) against RLAIF (B) on the main axis.
    pub win: Option<WinCounts>,
    /// Whether the RLCD policy is marked collapsed.
    pub collapsed_rlcd: Option<bool>,
    /// Whether the RLAIF policy is marked collapsed.
    pub collapsed_rlaif: Option<bool>,
}

fn err(table: &'static str) -> impl Fn(PolarsError) -> TableError {
    move |source| TableError::Frame {
        table: table.to_string(),
        source,
    }
}

fn text(df: &DataFrame, table: &'static str, name: &str) -> Result<Vec<String>, TableError> {
    let c = df.column(name).map_err(err(table))?;
    let c = c.str().map_err(err(table))?;
    Ok((0..c.len())
        .map(|i| c.get(i).unwrap_or_default().to_string())
        .collect())
}

fn counts(df: &DataFrame, table: &'static str, name: &str) -> Result<Vec<Option<u64>>, TableError> {
    let c = df.column(name).map_err(err(table))?;
    let c = c.u64().map_err(err(table))?;
    Ok((0..c.len()).map(|i| c.get(i)).collect())
}

/// Rates of a pair-label or PM-agreement table keyed by (pair family, simulator, task).
fn rates(
    df: &DataFrame,
    table: &'static str,
    n: &str,
    k: &str,
) -> Result<BTreeMap<(String, String, String), Rate>, TableError> {
    let (m, s, t) = (
        text(df, table, "method")?,
        text(df, table, "simulator")?,
        text(df, table, "task")?,
    );
    let (n, k) = (counts(df, table, n)?, counts(df, table, k)?);
    let mut out = BTreeMap::new();
    for i in 0..m.len() {
        if let (Some(n), Some(k)) = (n[i], k[i])
            && let Ok(rate) = Rate::new(n, k)
        {
            out.insert((m[i].clone(), s[i].clone(), t[i].clone()), rate);
        }
    }
    Ok(out)
}

/// The rows, per level and task (in `axes` order), from the three tables.
pub fn rows(
    config: &Config,
    pair_labels: &DataFrame,
    pm_agreement: &DataFrame,
    winrates: &DataFrame,
) -> Result<Vec<SkillRow>, TableError> {
    let labels = rates(pair_labels, pair_labels::STEM, "n_judged", "n_agree")?;
    let pms = rates(pm_agreement, pm_agreement::STEM, "n", "n_agree")?;
    let wins = winrates::rows_of_frame(winrates)?;
    let mut out = Vec::new();
    for level in &config.levels {
        for (task, axis) in &config.axes {
            let key = |family: &str| (family.to_string(), level.simulator.clone(), task.clone());
            let win = wins.iter().find(|w| {
                (&w.task, &w.axis, &w.method_a, &w.method_b, w.judge.as_str())
                    == (task, axis, &level.rlcd, &level.rlaif, JUDGE)
            });
            out.push(SkillRow {
                simulator: level.simulator.clone(),
                task: task.clone(),
                axis: axis.clone(),
                rlcd: level.rlcd.clone(),
                rlaif: level.rlaif.clone(),
                rlaif_labels: labels.get(&key("rlaif")).copied(),
                rlcd_labels: labels.get(&key("rlcd")).copied(),
                rlaif_pm: pms.get(&key("rlaif")).copied(),
                rlcd_pm: pms.get(&key("rlcd")).copied(),
                win: win.map(|w| w.counts),
                collapsed_rlcd: win.and_then(|w| w.collapsed_a),
                collapsed_rlaif: win.and_then(|w| w.collapsed_b),
            });
        }
    }
    Ok(out)
}

/// The table: simulator, task, axis, rlcd, rlaif; the RLAIF and RLCD label accuracies and the
/// two preference models' agreement (each with its counts, stderr and Wilson CI, in percent);
/// the RLCD-vs-RLAIF counts and win rate (ties ½) with stderr and CI; both collapse marks.
pub fn frame(rows: &[SkillRow]) -> Result<DataFrame, TableError> {
    let s = |f: fn(&SkillRow) -> &String| rows.iter().map(|r| f(r).clone()).collect::<Vec<_>>();
    let r = |f: fn(&SkillRow) -> Option<Rate>| rows.iter().map(f).collect::<Vec<_>>();
    let mut cols = vec![
        str_col("simulator", s(|r| &r.simulator)),
        str_col("task", s(|r| &r.task)),
        str_col("axis", s(|r| &r.axis)),
        str_col("rlcd", s(|r| &r.rlcd)),
        str_col("rlaif", s(|r| &r.rlaif)),
    ];
    for (prefix, rates) in [
        ("rlaif_label", r(|r| r.rlaif_labels)),
        ("rlcd_label", r(|r| r.rlcd_labels)),
        ("rlaif_pm", r(|r| r.rlaif_pm)),
        ("rlcd_pm", r(|r| r.rlcd_pm)),
    ] {
        let names = [
            "n",
            "n_agree",
            "accuracy_pct",
            "stderr_pct",
            "ci_low_pct",
            "ci_high_pct",
        ]
        .map(|n| format!("{prefix}_{n}"));
        cols.extend(rate_cols(names.each_ref().map(String::as_str), &rates));
    }
    let win = |f: fn(&WinCounts) -> u64| rows.iter().map(|r| r.win.as_ref().map_or(0, f)).collect();
    cols.extend([
        u64_col("n_total", win(WinCounts::total)),
        u64_col("n_wins", win(|c| c.wins)),
        u64_col("n_losses", win(|c| c.losses)),
        u64_col("n_ties", win(|c| c.ties)),
    ]);
    let est: Vec<Option<Estimate>> = rows
        .iter()
        .map(|r| r.win.and_then(|c| c.estimate().ok()))
        .collect();
    cols.extend(estimate_cols(
        "win_rate_pct",
        "stderr_pct",
        "ci_low_pct",
        "ci_high_pct",
        &est,
    ));
    cols.push(Column::new(
        "collapsed_rlcd".into(),
        rows.iter().map(|r| r.collapsed_rlcd).collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "collapsed_rlaif".into(),
        rows.iter().map(|r| r.collapsed_rlaif).collect::<Vec<_>>(),
    ));
    DataFrame::new(rows.len(), cols).map_err(frame_err(STEM))
}

impl Stage for JudgeSkill {
    const KIND: StageKind = StageKind::JudgeSkill;
    const VERSION: u32 = 1;
    const TABLE: Option<&'static str> = Some(STEM);
    type Config = Config;

    fn inputs(_: &Config) -> Vec<String> {
        vec![
            pair_labels::ID.to_string(),
            pm_agreement::ID.to_string(),
            winrates::ID.to_string(),
        ]
    }

    fn run(ctx: &Ctx<'_>, config: &Config) -> Result<serde_json::Value, StageError> {
        let table = |id: &str, stem: &str| -> Result<DataFrame, StageError> {
            let artifact = ctx.input(id)?;
            Ok(read_parquet(&artifact.dir.join(format!("{stem}.parquet")))?)
        };
        let rows = rows(
            config,
            &table(pair_labels::ID, pair_labels::STEM)?,
            &table(pm_agreement::ID, pm_agreement::STEM)?,
            &table(winrates::ID, winrates::STEM)?,
        )?;
        if rows.iter().all(|r| r.win.is_none()) {
            return Err(StageError::Degenerate {
                what: format!(
                    "the {STEM} table found no {JUDGE} verdicts of an RLCD method against the \
                     RLAIF method of the same simulator"
                ),
                fix: "judge with `oracle` (`eval.judges`) and compare each simulator's `rlcd` \
                      and `rlaif` methods (`eval.comparisons`)"
                    .into(),
            });
        }
        let frame = frame(&rows)?;
        ctx.write(&format!("{STEM}.parquet"), &render_parquet(&frame)?)?;
        Ok(serde_json::json!({ "rows": rows.len() }))
    }
}
