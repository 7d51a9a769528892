//! The `pair_labels` table stage: every simulation's labels against the oracle (paper Table 36's
//! question: how often do simulated labels agree with a trusted judge?), with the pairs'
//! counts and lengths.

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::planning::{PlanError, Planned};
use super::simulate::{Pair, SIMULATION, SimulationRecord, Slot, label_accuracy, read_pairs};
use super::stage::{Ctx, Stage, StageError, StageKind, read_json};
use super::table::collect;
use crate::eval::winrate::Rate;
use crate::tables::{TableError, f64_col, frame_err, method_cols, rate_cols, u64_col};
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
    // 2: the label accuracy in percent (`*_pct`).
    const VERSION: u32 = 2;
    const TABLE: Option<&'static str> = Some(STEM);
    type Config = Config;

    fn inputs(config: &Config) -> Vec<String> {
        config.inputs.iter().map(|s| s.simulation.clone()).collect()
    }

    fn run(ctx: &Ctx<'_>, config: &Config) -> Result<serde_json::Value, StageError> {
        let world = config.world.as_ref().map(WorldSpec::build).transpose()?;
        let tasks: std::collections::BTreeMap<&str, Option<Task>> = config
            .inputs
            .iter()
            .map(|s| (s.simulation.as_str(), s.world_task))
            .collect();
        collect(
            ctx,
            STEM,
            &Self::inputs(config),
            |id, artifact| {
                let record: SimulationRecord = read_json(artifact, SIMULATION)?;
                let pairs = read_pairs(artifact)?;
                let task = tasks.get(id).copied().flatten();
                let oracle = match (task, &world) {
                    (Some(t), Some(w)) => Some(label_accuracy(&pairs, |p| oracle_truth(w, t, p))),
                    _ => None,
                };
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
                    mean_len_chosen: chosen / n.max(1) as f64,
                    mean_len_rejected: rejected / n.max(1) as f64,
                }])
            },
            frame,
        )
    }
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
    /// Mean length (tokens) of the outputs the labels prefer.
    pub mean_len_chosen: f64,
    /// Mean length (tokens) of the other outputs.
    pub mean_len_rejected: f64,
}

/// The pair-label table: method, simulator, task, n_pairs, dropped, n_judged, n_agree,
/// label_accuracy_pct, stderr_pct, ci_low_pct, ci_high_pct, mean_len_chosen, mean_len_rejected.
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
