//! Result tables: polars frames written as `<stem>.parquet`, `<stem>.csv` and `<stem>.md`.
//!
//! Schemas follow DESIGN.md ("Tables") plus the Appendix N table. Column order is fixed by the
//! builders below; CSV and Markdown print every float with [`FLOAT_DECIMALS`] decimals (rates,
//! standard errors and intervals alike), Parquet keeps full precision. The Markdown renderer is
//! our own so its layout is stable across polars versions.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::eval::winrate::{Estimate, Rate, WinCounts};
use crate::stages::appendix_n::TheoryRow;
use serde::{Deserialize, Serialize};

/// Decimals of every float in CSV and Markdown output.
pub const FLOAT_DECIMALS: usize = 4;

/// Errors building, writing or reading a table.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// polars rejected the frame (mismatched column lengths, schemas that do not stack, …).
    #[error("table `{table}`: {source}")]
    Frame {
        /// The table being built.
        table: String,
        /// The polars error.
        #[source]
        source: PolarsError,
    },
    /// A file could not be written or read.
    #[error("{path}: {source}; check that the directory exists and is writable")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A Parquet file could not be parsed.
    #[error(
        "{path}: not a readable Parquet table ({source}); delete it and rebuild it with `rlcd report`"
    )]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The polars error.
        #[source]
        source: PolarsError,
    },
    /// A column has a type the renderers do not print.
    #[error(
        "column `{column}` has type {dtype}, which tables cannot render; use strings, integers or floats"
    )]
    Unsupported {
        /// The column.
        column: String,
        /// Its polars type.
        dtype: String,
    },
}

fn frame_err(table: &str) -> impl FnOnce(PolarsError) -> TableError + '_ {
    move |source| TableError::Frame {
        table: table.to_string(),
        source,
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TableError + '_ {
    move |source| TableError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn str_col(name: &str, v: Vec<String>) -> Column {
    Column::new(name.into(), v)
}
fn u64_col(name: &str, v: Vec<u64>) -> Column {
    Column::new(name.into(), v)
}
fn f64_col(name: &str, v: Vec<f64>) -> Column {
    Column::new(name.into(), v)
}
fn opt_col(name: &str, v: Vec<Option<f64>>) -> Column {
    Column::new(name.into(), v)
}
fn opt_u64_col(name: &str, v: Vec<Option<u64>>) -> Column {
    Column::new(name.into(), v)
}

/// Estimate columns (value, stderr, low, high) of a rate; nulls when it has no observations.
fn estimate_cols(
    prefix: &str,
    stderr_name: &str,
    low: &str,
    high: &str,
    e: &[Option<Estimate>],
) -> Vec<Column> {
    vec![
        opt_col(prefix, e.iter().map(|x| x.map(|x| x.value)).collect()),
        opt_col(stderr_name, e.iter().map(|x| x.map(|x| x.stderr)).collect()),
        opt_col(low, e.iter().map(|x| x.map(|x| x.ci_low)).collect()),
        opt_col(high, e.iter().map(|x| x.map(|x| x.ci_high)).collect()),
    ]
}

/// The stem of the Appendix N table.
pub const APPENDIX_N: &str = "appendix-n";

/// The Appendix N table: method, delta, sigma_g, sigma_d, n_trials, n_correct, accuracy,
/// accuracy_stderr, accuracy_ci_low, accuracy_ci_high, n_hard, n_hard_correct, hard_accuracy,
/// hard_stderr, hard_ci_low, hard_ci_high. `delta` is null for RLAIF, `sigma_d` for RLCD.
pub fn appendix_n_frame(rows: &[TheoryRow]) -> Result<DataFrame, TableError> {
    let acc: Vec<Option<Estimate>> = rows
        .iter()
        .map(|r| r.counts.accuracy().estimate().ok())
        .collect();
    let hard: Vec<Option<Estimate>> = rows
        .iter()
        .map(|r| r.counts.hard_accuracy().estimate().ok())
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
        "accuracy",
        "accuracy_stderr",
        "accuracy_ci_low",
        "accuracy_ci_high",
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
        "hard_accuracy",
        "hard_stderr",
        "hard_ci_low",
        "hard_ci_high",
        &hard,
    ));
    DataFrame::new(rows.len(), cols).map_err(frame_err(APPENDIX_N))
}

/// The stem of the world report table.
pub const WORLD_REPORT: &str = "world_report";

/// One row of the world report: what a world preset learned on one task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorldReportRow {
    /// The preset (`world-s`, …).
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
/// (counts, %, stderr, Wilson CI), mean oracle scores of p+ / p / p−, RLAIF agreement with the
/// oracle (n, agreeing, rate, stderr, CI, mean probability), the share of "A" labels, the
/// agreement of labels averaged over both output orders (`rlaif2_*`), training speed.
pub fn world_report_frame(rows: &[WorldReportRow]) -> Result<DataFrame, TableError> {
    let desc: Vec<Option<Estimate>> = rows.iter().map(|r| r.descriptor.estimate().ok()).collect();
    let agree: Vec<Option<Estimate>> = rows.iter().map(|r| r.rlaif.estimate().ok()).collect();
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
        "pos_win_rate",
        "pos_stderr",
        "pos_ci_low",
        "pos_ci_high",
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
        "rlaif_accuracy",
        "rlaif_stderr",
        "rlaif_ci_low",
        "rlaif_ci_high",
        &agree,
    ));
    cols.push(f64_col("rlaif_mean_prob", f(|r| r.rlaif_mean_prob)));
    cols.push(f64_col("rlaif_share_a", f(|r| r.rlaif_share_a)));
    let both: Vec<Option<Estimate>> = rows
        .iter()
        .map(|r| r.rlaif_both_orders.estimate().ok())
        .collect();
    cols.push(u64_col(
        "rlaif2_agree",
        rows.iter().map(|r| r.rlaif_both_orders.successes).collect(),
    ));
    cols.extend(estimate_cols(
        "rlaif2_accuracy",
        "rlaif2_stderr",
        "rlaif2_ci_low",
        "rlaif2_ci_high",
        &both,
    ));
    cols.push(f64_col("train_tok_per_s", f(|r| r.train_tokens_per_s)));
    cols.push(f64_col("train_seconds", f(|r| r.train_seconds)));
    DataFrame::new(rows.len(), cols).map_err(frame_err(WORLD_REPORT))
}

/// The stem of the win-rate table.
pub const WINRATES: &str = "winrates";

/// One row of the win-rate table (DESIGN.md "Tables"); judge stages store their rows as JSON.
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
}

/// The win-rate table: task, axis, method_a, method_b, simulator, judge, n_total, n_wins,
/// n_losses, n_ties, win_rate (%, ties ½), stderr, ci_low, ci_high, lc_win_rate (%,
/// length-controlled), avg_len_a, avg_len_b.
pub fn winrates_frame(rows: &[WinRateRow]) -> Result<DataFrame, TableError> {
    let est: Vec<Option<Estimate>> = rows.iter().map(|r| r.counts.estimate().ok()).collect();
    let s = |f: fn(&WinRateRow) -> &String| rows.iter().map(|r| f(r).clone()).collect::<Vec<_>>();
    let mut cols = vec![
        str_col("task", s(|r| &r.task)),
        str_col("axis", s(|r| &r.axis)),
        str_col("method_a", s(|r| &r.method_a)),
        str_col("method_b", s(|r| &r.method_b)),
        str_col("simulator", s(|r| &r.simulator)),
        str_col("judge", s(|r| &r.judge)),
        u64_col("n_total", rows.iter().map(|r| r.counts.total()).collect()),
        u64_col("n_wins", rows.iter().map(|r| r.counts.wins).collect()),
        u64_col("n_losses", rows.iter().map(|r| r.counts.losses).collect()),
        u64_col("n_ties", rows.iter().map(|r| r.counts.ties).collect()),
    ];
    cols.extend(estimate_cols(
        "win_rate", "stderr", "ci_low", "ci_high", &est,
    ));
    cols.push(opt_col(
        "lc_win_rate",
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
    DataFrame::new(rows.len(), cols).map_err(frame_err(WINRATES))
}

/// The rows of a win-rate table read back from its frame (counts, not the derived rates;
/// lengths and the length-controlled rate as stored).
pub fn winrate_rows(df: &DataFrame) -> Result<Vec<WinRateRow>, TableError> {
    let err = |source: PolarsError| TableError::Frame {
        table: WINRATES.to_string(),
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
    let (lc, la, lb) = (real("lc_win_rate")?, real("avg_len_a")?, real("avg_len_b")?);
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
        })
        .collect())
}

/// The stem of the policy-training table.
pub const POLICY_TRAINING: &str = "policy_training";

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
pub fn policy_training_frame(rows: &[PolicyTrainingRow]) -> Result<DataFrame, TableError> {
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
    DataFrame::new(rows.len(), cols).map_err(frame_err(POLICY_TRAINING))
}

/// The stem of the preference-model agreement table.
pub const PM_AGREEMENT: &str = "pm_agreement";

/// One row of the preference-model agreement table (the analogue of paper Table 5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PmAgreementRow {
    /// Method whose preference data trained the PM.
    pub method: String,
    /// Simulator model name.
    pub simulator: String,
    /// Task.
    pub task: String,
    /// Held-out reference-labelled pairs and how many the PM ranks as the reference does
    /// (`None` where the task has no reference labels).
    pub agreement: Option<Rate>,
    /// Mean probability the PM gives the reference-preferred output (σ of the reward margin).
    pub mean_prob: Option<f64>,
    /// Final training loss of the PM (mean Bradley–Terry loss over the last tenth of steps).
    pub train_loss: f64,
    /// Accuracy of the PM on its own held-out simulated pairs (their simulated labels).
    pub heldout_accuracy: Option<f64>,
}

/// The PM agreement table: method, simulator, task, n, n_agree, accuracy, stderr, ci_low,
/// ci_high, mean_prob, train_loss, heldout_accuracy.
pub fn pm_agreement_frame(rows: &[PmAgreementRow]) -> Result<DataFrame, TableError> {
    let mut cols = method_cols(rows.iter().map(|r| (&r.method, &r.simulator, &r.task)));
    let rates: Vec<Option<Rate>> = rows.iter().map(|r| r.agreement).collect();
    cols.extend(rate_cols(
        ["n", "n_agree", "accuracy", "stderr", "ci_low", "ci_high"],
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
        "heldout_accuracy",
        rows.iter().map(|r| r.heldout_accuracy).collect(),
    ));
    DataFrame::new(rows.len(), cols).map_err(frame_err(PM_AGREEMENT))
}

/// The method, simulator and task columns of preference tables.
fn method_cols<'r>(
    rows: impl Iterator<Item = (&'r String, &'r String, &'r String)>,
) -> Vec<Column> {
    let (mut m, mut s, mut t) = (Vec::new(), Vec::new(), Vec::new());
    for (method, simulator, task) in rows {
        m.push(method.clone());
        s.push(simulator.clone());
        t.push(task.clone());
    }
    vec![
        str_col("method", m),
        str_col("simulator", s),
        str_col("task", t),
    ]
}

/// Columns of optional rates: trials, successes, then the rate, its stderr and Wilson CI
/// (`names` in that order); nulls where a rate is absent or has no trials.
fn rate_cols(names: [&str; 6], rates: &[Option<Rate>]) -> Vec<Column> {
    let est: Vec<Option<Estimate>> = rates
        .iter()
        .map(|r| r.as_ref().and_then(|r| r.estimate().ok()))
        .collect();
    let mut cols = vec![
        opt_u64_col(names[0], rates.iter().map(|r| r.map(|r| r.n)).collect()),
        opt_u64_col(
            names[1],
            rates.iter().map(|r| r.map(|r| r.successes)).collect(),
        ),
    ];
    cols.extend(estimate_cols(names[2], names[3], names[4], names[5], &est));
    cols
}

/// The stem of the simulated-pair label table.
pub const PAIR_LABELS: &str = "pair_labels";

/// One row of the simulated-pair label table (paper Table 36's question: how often do the
/// simulated labels agree with a trusted judge?).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairLabelsRow {
    /// Method that simulated the pairs.
    pub method: String,
    /// Simulator model name.
    pub simulator: String,
    /// Task.
    pub task: String,
    /// Pairs simulated.
    pub n_pairs: u64,
    /// Prompts dropped because an output never ended its turn.
    pub dropped: u64,
    /// Label agreement with the oracle over the pairs it does not tie (`n` excludes ties);
    /// `None` where the task has no oracle.
    pub oracle: Option<Rate>,
    /// Mean length (tokens) of the outputs the labels prefer.
    pub mean_len_chosen: f64,
    /// Mean length (tokens) of the other outputs.
    pub mean_len_rejected: f64,
}

/// The pair-label table: method, simulator, task, n_pairs, dropped, n_judged, n_agree,
/// label_accuracy, stderr, ci_low, ci_high, mean_len_chosen, mean_len_rejected.
pub fn pair_labels_frame(rows: &[PairLabelsRow]) -> Result<DataFrame, TableError> {
    let mut cols = method_cols(rows.iter().map(|r| (&r.method, &r.simulator, &r.task)));
    cols.push(u64_col("n_pairs", rows.iter().map(|r| r.n_pairs).collect()));
    cols.push(u64_col("dropped", rows.iter().map(|r| r.dropped).collect()));
    let rates: Vec<Option<Rate>> = rows.iter().map(|r| r.oracle).collect();
    cols.extend(rate_cols(
        [
            "n_judged",
            "n_agree",
            "label_accuracy",
            "stderr",
            "ci_low",
            "ci_high",
        ],
        &rates,
    ));
    cols.push(f64_col(
        "mean_len_chosen",
        rows.iter().map(|r| r.mean_len_chosen).collect(),
    ));
    cols.push(f64_col(
        "mean_len_rejected",
        rows.iter().map(|r| r.mean_len_rejected).collect(),
    ));
    DataFrame::new(rows.len(), cols).map_err(frame_err(PAIR_LABELS))
}

/// A cell's printable text, `None` for null.
fn cell_text(col: &Column, i: usize) -> Result<Option<String>, TableError> {
    let unsupported = || TableError::Unsupported {
        column: col.name().to_string(),
        dtype: col.dtype().to_string(),
    };
    let v = col.get(i).map_err(|_| unsupported())?;
    Ok(match v {
        AnyValue::Null => None,
        AnyValue::String(s) => Some(s.to_string()),
        AnyValue::StringOwned(s) => Some(s.to_string()),
        AnyValue::Boolean(b) => Some(b.to_string()),
        AnyValue::Int8(x) => Some(x.to_string()),
        AnyValue::Int16(x) => Some(x.to_string()),
        AnyValue::Int32(x) => Some(x.to_string()),
        AnyValue::Int64(x) => Some(x.to_string()),
        AnyValue::UInt8(x) => Some(x.to_string()),
        AnyValue::UInt16(x) => Some(x.to_string()),
        AnyValue::UInt32(x) => Some(x.to_string()),
        AnyValue::UInt64(x) => Some(x.to_string()),
        AnyValue::Float32(x) => Some(format!("{:.*}", FLOAT_DECIMALS, x)),
        AnyValue::Float64(x) => Some(format!("{:.*}", FLOAT_DECIMALS, x)),
        _ => return Err(unsupported()),
    })
}

fn is_numeric(col: &Column) -> bool {
    col.dtype().is_primitive_numeric()
}

/// Renders a frame as a GitHub Markdown table: header, alignment row (numbers right-aligned),
/// one line per row, cells padded to the column width, nulls empty, floats with
/// [`FLOAT_DECIMALS`] decimals, `|` escaped.
pub fn render_markdown(df: &DataFrame) -> Result<String, TableError> {
    let cols = df.columns();
    let mut cells: Vec<Vec<String>> = Vec::with_capacity(cols.len());
    for col in cols {
        let mut c = vec![escape_md(col.name())];
        for i in 0..df.height() {
            c.push(escape_md(&cell_text(col, i)?.unwrap_or_default()));
        }
        cells.push(c);
    }
    let widths: Vec<usize> = cells
        .iter()
        .map(|c| {
            c.iter()
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
                .max(3)
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, row: usize| {
        out.push('|');
        for (j, c) in cells.iter().enumerate() {
            let s = &c[row];
            let pad = widths[j] - s.chars().count();
            out.push(' ');
            if is_numeric(&cols[j]) {
                out.push_str(&" ".repeat(pad));
                out.push_str(s);
            } else {
                out.push_str(s);
                out.push_str(&" ".repeat(pad));
            }
            out.push_str(" |");
        }
        out.push('\n');
    };
    line(&mut out, 0);
    out.push('|');
    for (j, w) in widths.iter().enumerate() {
        if is_numeric(&cols[j]) {
            out.push_str(&format!(" {}: |", "-".repeat(w - 1)));
        } else {
            out.push_str(&format!(" {} |", "-".repeat(*w)));
        }
    }
    out.push('\n');
    for row in 1..=df.height() {
        line(&mut out, row);
    }
    Ok(out)
}

fn escape_md(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Renders a frame as CSV (header line, comma separated, floats with [`FLOAT_DECIMALS`]
/// decimals, nulls empty).
pub fn render_csv(df: &DataFrame) -> Result<Vec<u8>, TableError> {
    for col in df.columns() {
        let dt = col.dtype();
        if !(dt.is_primitive_numeric()
            || matches!(dt, DataType::String | DataType::Boolean | DataType::Null))
        {
            return Err(TableError::Unsupported {
                column: col.name().to_string(),
                dtype: dt.to_string(),
            });
        }
    }
    let mut buf = Vec::new();
    let mut df = df.clone();
    CsvWriter::new(&mut buf)
        .with_float_scientific(Some(false))
        .with_float_precision(Some(FLOAT_DECIMALS))
        .n_threads(1)
        .finish(&mut df)
        .map_err(frame_err("csv"))?;
    Ok(buf)
}

/// Serialises a frame as Parquet bytes (zstd, one row group; deterministic for equal frames).
pub fn render_parquet(df: &DataFrame) -> Result<Vec<u8>, TableError> {
    let mut buf = Vec::new();
    let mut df = df.clone();
    ParquetWriter::new(&mut buf)
        .set_parallel(false)
        .finish(&mut df)
        .map_err(frame_err("parquet"))?;
    Ok(buf)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TableError> {
    let tmp = path.with_extension(format!(
        "{}.tmp-{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// The three files of a written table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableFiles {
    /// `<stem>.parquet`.
    pub parquet: PathBuf,
    /// `<stem>.csv`.
    pub csv: PathBuf,
    /// `<stem>.md`.
    pub markdown: PathBuf,
}

/// Writes `df` into `dir` as `<stem>.parquet`, `<stem>.csv` and `<stem>.md`, creating `dir`.
pub fn write_table(dir: &Path, stem: &str, df: &DataFrame) -> Result<TableFiles, TableError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let files = TableFiles {
        parquet: dir.join(format!("{stem}.parquet")),
        csv: dir.join(format!("{stem}.csv")),
        markdown: dir.join(format!("{stem}.md")),
    };
    write_atomic(&files.parquet, &render_parquet(df)?)?;
    write_atomic(&files.csv, &render_csv(df)?)?;
    write_atomic(&files.markdown, render_markdown(df)?.as_bytes())?;
    Ok(files)
}

/// Reads a Parquet table back.
pub fn read_parquet(path: &Path) -> Result<DataFrame, TableError> {
    let f = fs::File::open(path).map_err(io_err(path))?;
    ParquetReader::new(f)
        .finish()
        .map_err(|source| TableError::Parquet {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::appendix_n::{CellCounts, TheoryMethod};

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
        let df = appendix_n_frame(&rows()).expect("frame");
        let md = render_markdown(&df).expect("md");
        assert_eq!(md.lines().count(), 4);
        let csv = String::from_utf8(render_csv(&df).expect("csv")).expect("utf8");
        assert!(csv.starts_with("method,delta,sigma_g,sigma_d,n_trials,n_correct,accuracy,"));
        assert!(
            csv.contains("\nrlaif,,1.0000,1.0000,1000,750,0.7500,"),
            "{csv}"
        );
        assert!(
            csv.contains("\nrlcd,3.0000,1.0000,,1000,983,0.9830,"),
            "{csv}"
        );
        assert!(
            csv.ends_with("0,0,,,,\n"),
            "hard columns of an empty rate are null: {csv}"
        );
        let dir = tempfile::tempdir().expect("tmp");
        let files = write_table(dir.path(), APPENDIX_N, &df).expect("write");
        let back = read_parquet(&files.parquet).expect("read");
        assert!(back.equals_missing(&df));
        assert_eq!(
            render_parquet(&back).expect("pq"),
            render_parquet(&df).expect("pq")
        );
    }

    #[test]
    fn winrates_columns_follow_design() {
        let df = winrates_frame(&[WinRateRow {
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
                "win_rate",
                "stderr",
                "ci_low",
                "ci_high",
                "lc_win_rate",
                "avg_len_a",
                "avg_len_b"
            ]
        );
        let md = render_markdown(&df).expect("md");
        assert!(md.contains(" 75.0000 | 13.4371 |"), "{md}");
    }
}
