//! The `pair_labels` table stage: every simulation's labels against the oracle and, with
//! `eval.label_judge`, against a language-model judge on a fixed sample (paper Table 36's
//! question: how often do simulated labels agree with a trusted judge?), with the pairs'
//! counts and lengths.

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::pair_judge::{PairVerdicts, read_labels};
use super::planning::{PlanError, Planned};
use super::simulate::{Pair, SIMULATION, SimulationRecord, Slot, label_accuracy, read_pairs};
use super::stage::{Ctx, Stage, StageError, StageKind, read_json};
use super::table::collect;
use crate::eval::winrate::Rate;
use crate::tables::{
    TableError, f64_col, frame_err, method_cols, opt_str_col, opt_u64_col, rate_cols, u64_col,
};
use crate::world::{Task, World, WorldSpec};

/// The table's file stem.
pub const STEM: &str = "pair_labels";

/// Id of the table stage.
pub const ID: &str = "pair_labels/table";

/// The stage type.
pub struct PairLabels;

/// The simulations tabled and the oracle that checks their labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The simulations, in row order.
    pub inputs: Vec<Source>,
    /// The built-in world whose oracle checks labels of world tasks (when any input has one).
    pub world: Option<WorldSpec>,
}

/// One simulation and the world task its prompts come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The simulation's stage id.
    pub simulation: String,
    /// Its world task, when its prompts are a built-in world prompt set.
    pub world_task: Option<Task>,
    /// The label judge's labels on a sample of its pairs (a `pair_judge` stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judged: Option<String>,
}

/// The table of `inputs` (with the recipe's world when some input is a world task).
pub fn plan(inputs: Vec<Source>, world: Option<WorldSpec>) -> Result<Planned, PlanError> {
    let world = world.filter(|_| inputs.iter().any(|s| s.world_task.is_some()));
    Planned::new::<PairLabels>(ID, &Config { inputs, world })
}

/// Whether the oracle prefers B (`Some(true)`), A (`Some(false)`) or neither, for a pair of
/// `task`.
fn oracle_truth(world: &World, task: Task, pair: &Pair) -> Option<bool> {
    let a = world.main_axis_score(task, &pair.turns, &pair.output_a);
    let b = world.main_axis_score(task, &pair.turns, &pair.output_b);
    (a != b).then_some(b > a)
}

impl Stage for PairLabels {
    const KIND: StageKind = StageKind::PairLabels;
    // 2: the label accuracy in percent (`*_pct`); 3: agreement with the label judge.
    const VERSION: u32 = 3;
    const TABLE: Option<&'static str> = Some(STEM);
    type Config = Config;

    fn inputs(config: &Config) -> Vec<String> {
        let mut out: Vec<String> = config.inputs.iter().map(|s| s.simulation.clone()).collect();
        out.extend(config.inputs.iter().filter_map(|s| s.judged.clone()));
        out
    }

    fn run(ctx: &Ctx<'_>, config: &Config) -> Result<serde_json::Value, StageError> {
        let world = config.world.as_ref().map(WorldSpec::build).transpose()?;
        let tasks: std::collections::BTreeMap<&str, Option<Task>> = config
            .inputs
            .iter()
            .map(|s| (s.simulation.as_str(), s.world_task))
            .collect();
        let mut judged = std::collections::BTreeMap::new();
        for s in &config.inputs {
            if let Some(j) = &s.judged {
                judged.insert(s.simulation.as_str(), read_labels(&ctx.input(j)?)?);
            }
        }
        let simulations: Vec<String> = config.inputs.iter().map(|s| s.simulation.clone()).collect();
        collect(
            ctx,
            STEM,
            &simulations,
            |id, artifact| {
                let record: SimulationRecord = read_json(artifact, SIMULATION)?;
                let pairs = read_pairs(artifact)?;
                let task = tasks.get(id).copied().flatten();
                let oracle = match (task, &world) {
                    (Some(t), Some(w)) => Some(label_accuracy(&pairs, |p| oracle_truth(w, t, p))),
                    _ => None,
                };
                let judge = judged
                    .get(id)
                    .map(|labels| judge_agreement(id, &pairs, labels))
                    .transpose()?;
                let (mut chosen, mut rejected, mut n) = (0.0, 0.0, 0usize);
                for p in &pairs {
                    let (c, r) = match p.preferred() {
                        Some(Slot::A) => (p.len_a, p.len_b),
                        Some(Slot::B) => (p.len_b, p.len_a),
                        None => continue,
                    };
                    chosen += c as f64;
                    rejected += r as f64;
                    n += 1;
                }
                Ok(vec![PairLabelsRow {
                    method: record.family,
                    simulator: record.simulator,
                    task: record.task,
                    n_pairs: pairs.len() as u64,
                    dropped: record.dropped as u64,
                    oracle,
                    judge: judge.as_ref().map(|(name, _, _)| name.clone()),
                    judge_asked: judge.as_ref().map(|(_, asked, _)| *asked),
                    judge_agreement: judge.map(|(_, _, rate)| rate),
                    mean_len_chosen: chosen / n.max(1) as f64,
                    mean_len_rejected: rejected / n.max(1) as f64,
                }])
            },
            frame,
        )
    }
}

/// The label judge's name, the pairs it was asked about, and the labels' agreement with its
/// verdicts over the pairs it decides (a label of exactly 0.5 is left out).
fn judge_agreement(
    simulation: &str,
    pairs: &[Pair],
    labels: &PairVerdicts,
) -> Result<(String, u64, Rate), StageError> {
    let items = labels.aligned(simulation, pairs.iter().map(|p| p.prompt_id.as_str()))?;
    let b_better: std::collections::BTreeMap<&str, bool> = items
        .iter()
        .filter_map(|(id, j)| j.verdict.outcome().map(|a| (id.as_str(), !a)))
        .collect();
    let rate = label_accuracy(&pairs[..items.len().min(pairs.len())], |p| {
        b_better.get(p.prompt_id.as_str()).copied()
    });
    Ok((labels.judge.clone(), items.len() as u64, rate))
}

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
    /// The label judge (`eval.label_judge`), when one labelled a sample of the pairs.
    pub judge: Option<String>,
    /// Pairs of the sample the label judge was asked about.
    pub judge_asked: Option<u64>,
    /// Label agreement with the label judge over the sample's pairs it decides (`n` excludes
    /// its ties).
    pub judge_agreement: Option<Rate>,
    /// Mean length (tokens) of the outputs the labels prefer.
    pub mean_len_chosen: f64,
    /// Mean length (tokens) of the other outputs.
    pub mean_len_rejected: f64,
}

/// The pair-label table: method, simulator, task, n_pairs, dropped, n_judged, n_agree,
/// label_accuracy_pct, stderr_pct, ci_low_pct, ci_high_pct (against the oracle), label_judge,
/// judge_asked, judge_n, judge_agree, judge_agreement_pct, judge_stderr_pct, judge_ci_low_pct,
/// judge_ci_high_pct (against the label judge), mean_len_chosen, mean_len_rejected.
pub fn frame(rows: &[PairLabelsRow]) -> Result<DataFrame, TableError> {
    let mut cols = method_cols(rows.iter().map(|r| (&r.method, &r.simulator, &r.task)));
    cols.push(u64_col("n_pairs", rows.iter().map(|r| r.n_pairs).collect()));
    cols.push(u64_col("dropped", rows.iter().map(|r| r.dropped).collect()));
    let rates: Vec<Option<Rate>> = rows.iter().map(|r| r.oracle).collect();
    cols.extend(rate_cols(
        [
            "n_judged",
            "n_agree",
            "label_accuracy_pct",
            "stderr_pct",
            "ci_low_pct",
            "ci_high_pct",
        ],
        &rates,
    ));
    cols.push(opt_str_col(
        "label_judge",
        rows.iter().map(|r| r.judge.clone()).collect(),
    ));
    cols.push(opt_u64_col(
        "judge_asked",
        rows.iter().map(|r| r.judge_asked).collect(),
    ));
    let judged: Vec<Option<Rate>> = rows.iter().map(|r| r.judge_agreement).collect();
    cols.extend(rate_cols(
        [
            "judge_n",
            "judge_agree",
            "judge_agreement_pct",
            "judge_stderr_pct",
            "judge_ci_low_pct",
            "judge_ci_high_pct",
        ],
        &judged,
    ));
    cols.push(f64_col(
        "mean_len_chosen",
        rows.iter().map(|r| r.mean_len_chosen).collect(),
    ));
    cols.push(f64_col(
        "mean_len_rejected",
        rows.iter().map(|r| r.mean_len_rejected).collect(),
    ));
    DataFrame::new(rows.len(), cols).map_err(frame_err(STEM))
}
