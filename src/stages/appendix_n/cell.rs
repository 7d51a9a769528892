//! The `appendix_n_cell` stage: one labelling method's Monte-Carlo of paper Appendix N.

use serde::{Deserialize, Serialize};

use super::{CellResult, CellSpec, cell_seed};
use crate::recipe::TheoryConfig;
use crate::recipe::TheoryMethod;
use crate::stages::planning::{Planned, Planner};
use crate::stages::stage::{Ctx, Stage, StageError, StageKind};

/// File of the cell's result.
pub const CELL: &str = "cell.json";

/// The stage type.
pub struct Cell;

/// What one cell simulates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The model and method.
    pub spec: CellSpec,
    /// Seed of the chunks.
    pub seed: u64,
}

/// Id of the cell of `method`.
pub fn id(method: TheoryMethod) -> String {
    format!("appendix_n/{}", method.name())
}

/// The cell of `method` under the recipe's `[theory]`.
pub fn configure(p: &Planner<'_>, theory: &TheoryConfig, method: TheoryMethod) -> Config {
    p.read("theory");
    p.read("seed");
    Config {
        spec: CellSpec::new(theory, method),
        seed: cell_seed(p.recipe().seed, method),
    }
}

/// The planned cell of `method`.
pub fn plan(
    p: &Planner<'_>,
    theory: &TheoryConfig,
    method: TheoryMethod,
) -> Result<Planned, crate::stages::planning::PlanError> {
    Planned::new::<Cell>(id(method), &configure(p, theory, method))
}

impl Stage for Cell {
    const KIND: StageKind = StageKind::AppendixNCell;
    const VERSION: u32 = 1;
    type Config = Config;

    fn inputs(_: &Config) -> Vec<String> {
        Vec::new()
    }

    fn run(ctx: &Ctx<'_>, config: &Config) -> Result<serde_json::Value, StageError> {
        let t0 = std::time::Instant::now();
        let pb = ctx.progress(config.spec.trials);
        let counts = config.spec.run(config.seed, &|n| pb.inc(n));
        pb.finish_and_clear();
        let result = CellResult {
            spec: config.spec.clone(),
            seed: config.seed,
            counts,
        };
        ctx.write_json(CELL, &result)?;
        Ok(serde_json::json!({ "seconds": t0.elapsed().as_secs_f64(), "counts": counts }))
    }
}
