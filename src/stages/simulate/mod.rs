//! The `simulate` stage (paper §3 and §4.2): preference pairs of one family — RLCD, RLAIF or
//! RLCD-Rescore — from one simulator model on one task's training prompts.
//!
//! - [`simulator`]: sampling and zero-shot labelling with a simulator LM;
//! - [`pairs`]: the pair type, label accuracy and the Parquet frame.

pub mod pairs;
pub mod simulator;

use serde::{Deserialize, Serialize};

pub use pairs::{
    Method, PAIR_COLUMNS, PAIRS_FORMAT, Pair, PairsError, Slot, label_accuracy, pairs_from_frame,
    pairs_to_frame,
};
pub use simulator::{
    LabelItem, SimulateError, Simulation, Simulator, generate_options, positive_slot,
    principle_for, prob_b, sample_seed, training_dialogues,
};

use super::inputs::ModelRef;
use super::key::Unkeyed;
use super::planning::{PlanError, Planned, Planner};
use super::stage::{Ctx, Stage, StageError, StageKind, read_json, with_backend};
use crate::prompts::PromptSet;
use crate::recipe::{BackendKind, SimulateConfig};
use crate::store::Artifact;
use crate::tables::{read_parquet, render_parquet};
use crate::templates::{SCORE_TEMPLATE, TemplateSet};
use crate::world::format::Split;

/// Simulated pairs (Parquet, [`PAIR_COLUMNS`]).
pub const PAIRS: &str = "pairs.parquet";

/// What a simulation dropped and generated (JSON, [`SimulationRecord`]).
pub const SIMULATION: &str = "simulation.json";

/// The stage type.
pub struct Simulate;

/// What one simulation reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The simulator model.
    pub simulator: ModelRef,
    /// The task.
    pub task: String,
    /// The task's template family.
    pub family: String,
    /// The template files the family renders (with the scoring prompt and principles for the
    /// families labelled zero-shot).
    pub templates: TemplateSet,
    /// How the pairs are made.
    pub job: Job,
    /// The compute backend.
    pub backend: BackendKind,
    /// Settings outside the key (over-long prompts).
    #[serde(default)]
    pub unkeyed: Unkeyed,
}

/// How one family's pairs are made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Job {
    /// o+ from p+ and o− from p−, o+ preferred by construction.
    Rlcd {
        /// The training prompts.
        prompts: PromptSet,
        /// Sampling settings.
        sampling: SimulateConfig,
        /// Seed of the affix draws, slots and samples.
        seed: u64,
    },
    /// Two samples of p, labelled zero-shot by the simulator.
    Rlaif {
        /// The training prompts.
        prompts: PromptSet,
        /// Sampling settings.
        sampling: SimulateConfig,
        /// Seed of the samples and principles.
        seed: u64,
    },
    /// The RLCD pairs of stage `rlcd`, labelled zero-shot.
    RlcdRescore {
        /// The RLCD simulation relabelled.
        rlcd: String,
        /// Pairs labelled together.
        batch_size: usize,
    },
}

/// The counts a simulation stage records beside its pairs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimulationRecord {
    /// Pair family: `rlcd`, `rlaif` or `rlcd-rescore`.
    pub family: String,
    /// Simulator model name.
    pub simulator: String,
    /// Task name.
    pub task: String,
    /// Pairs written.
    pub pairs: usize,
    /// Prompts dropped because an output never ended its turn, or was empty.
    pub dropped: usize,
    /// Ids of the dropped prompts.
    pub dropped_ids: Vec<String>,
    /// Prompts attempted.
    pub attempted: usize,
    /// Outputs kept although they reached the token limit (`simulate.keep_unfinished`).
    #[serde(default)]
    pub unfinished: usize,
    /// Sequences generated, re-samples included.
    pub sequences: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Id of the simulation of `method` pairs with `simulator` on `task`.
pub fn id(simulator: &str, task: &str, method: Method) -> String {
    format!("simulate/{simulator}/{task}/{}", method.name())
}

/// The simulation of `method` pairs with model `simulator` on task `task`.
pub fn plan(
    p: &Planner<'_>,
    task: &str,
    simulator: &str,
    method: Method,
) -> Result<Planned, PlanError> {
    let (family, mut templates) = p.task_templates(task)?;
    if method != Method::Rlcd {
        let context = format!("task `{task}`");
        templates.extend(p.template_files(&context, [SCORE_TEMPLATE])?);
        templates.extend(p.principles(&context, [family.as_str()])?);
    }
    let sampled = |p: &Planner<'_>| -> Result<(PromptSet, SimulateConfig, u64), PlanError> {
        p.read("simulate");
        p.read(format!("tasks.{task}.n_prompts"));
        let n = p.task(task)?.n_prompts;
        Ok((
            p.prompts(task, Split::Train, n)?,
            p.recipe().simulate.clone(),
            p.seed(&["simulate", simulator, task, method.name()]),
        ))
    };
    let job = match method {
        Method::Rlcd => {
            let (prompts, sampling, seed) = sampled(p)?;
            Job::Rlcd {
                prompts,
                sampling,
                seed,
            }
        }
        Method::Rlaif => {
            let (prompts, sampling, seed) = sampled(p)?;
            Job::Rlaif {
                prompts,
                sampling,
                seed,
            }
        }
        Method::RlcdRescore => {
            p.read("simulate.batch_size");
            Job::RlcdRescore {
                rlcd: id(simulator, task, Method::Rlcd),
                batch_size: p.recipe().simulate.batch_size,
            }
        }
    };
    let config = Config {
        simulator: p.frozen_model(simulator)?,
        task: task.to_string(),
        family,
        templates,
        job,
        backend: p.backend(),
        unkeyed: p.unkeyed(),
    };
    Planned::new::<Simulate>(id(simulator, task, method), &config)
}

/// The pairs stored in a simulation's artifact.
pub fn read_pairs(artifact: &Artifact) -> Result<Vec<Pair>, StageError> {
    let frame = read_parquet(&artifact.path(PAIRS))?;
    Ok(pairs_from_frame(&frame)?)
}

impl From<SimulateError> for StageError {
    fn from(e: SimulateError) -> Self {
        StageError::failed(e)
    }
}

impl From<PairsError> for StageError {
    fn from(e: PairsError) -> Self {
        StageError::failed(e)
    }
}

impl Stage for Simulate {
    const KIND: StageKind = StageKind::Simulate;
    const VERSION: u32 = 2;
    type Config = Config;

    fn inputs(config: &Config) -> Vec<String> {
        let mut out = config.simulator.inputs();
        if let Job::RlcdRescore { rlcd, .. } = &config.job {
            out.push(rlcd.clone());
        }
        out
    }

    fn run(ctx: &Ctx<'_>, config: &Config) -> Result<serde_json::Value, StageError> {
        let t0 = std::time::Instant::now();
        let templates = config.templates.templates();
        let (train, upstream) = match &config.job {
            Job::Rlcd { prompts, .. } | Job::Rlaif { prompts, .. } => {
                (prompts.load(ctx.root)?, None)
            }
            Job::RlcdRescore { rlcd, .. } => {
                let a = ctx.input(rlcd)?;
                let record: SimulationRecord = read_json(&a, SIMULATION)?;
                (Vec::new(), Some((read_pairs(&a)?, record)))
            }
        };
        let total = match (&config.job, &upstream) {
            (Job::Rlcd { sampling, .. } | Job::Rlaif { sampling, .. }, _) => {
                train.len().min(sampling.n_prompts.unwrap_or(usize::MAX))
            }
            (_, Some((pairs, _))) => pairs.len(),
            _ => 0,
        };
        let pb = ctx.progress(total as u64);
        let sim: Simulation = with_backend!(config.backend, B, device => {
            let lm = config.simulator.load::<B>(ctx, &device)?;
            let format = config.simulator.format(&lm.tokenizer)?;
            let base = Simulator::new(&lm, format);
            let sim = base
                .with_truncate(config.unkeyed.truncate)
                .with_progress(|done, _| pb.set_position(done as u64));
            let family = &config.family;
            let out = match (&config.job, &upstream) {
                (Job::Rlcd { sampling, seed, .. }, _) => {
                    sim.simulate_rlcd(&templates, family, &train, sampling, *seed)
                }
                (Job::Rlaif { sampling, seed, .. }, _) => {
                    sim.simulate_rlaif(&templates, family, &train, sampling, *seed)
                }
                (Job::RlcdRescore { batch_size, .. }, Some((pairs, record))) => sim
                    .rescore(&templates, family, pairs, *batch_size)
                    .map(|pairs| Simulation {
                        pairs,
                        dropped: record.dropped,
                        dropped_ids: record.dropped_ids.clone(),
                        attempted: record.attempted,
                        sequences: 0,
                        unfinished: record.unfinished,
                    }),
                (Job::RlcdRescore { rlcd, .. }, None) => {
                    return Err(StageError::NotAnInput { input: rlcd.clone() });
                }
            };
            out.map_err(StageError::from)
        })?;
        pb.finish_and_clear();
        if sim.pairs.is_empty() {
            return Err(StageError::Degenerate {
                what: format!(
                    "no preference pairs kept ({} prompts attempted, {} dropped)",
                    sim.attempted, sim.dropped
                ),
                fix: "give the task more train-split prompts, or check that the simulator \
                      writes non-empty outputs at `simulate.temperature`"
                    .into(),
            });
        }
        if sim
            .pairs
            .iter()
            .all(|p| p.output_a.trim().is_empty() && p.output_b.trim().is_empty())
        {
            return Err(StageError::Degenerate {
                what: format!(
                    "all {} simulated pairs have two empty outputs",
                    sim.pairs.len()
                ),
                fix: "the simulator ends every answer at once: raise \
                      `simulate.max_new_tokens` or use a model that follows the prompts"
                    .into(),
            });
        }
        let frame = pairs_to_frame(&sim.pairs)?;
        ctx.write(PAIRS, &render_parquet(&frame)?)?;
        let record = SimulationRecord {
            family: method_of(&config.job).name().to_string(),
            simulator: config.simulator.name.clone(),
            task: config.task.clone(),
            pairs: sim.pairs.len(),
            dropped: sim.dropped,
            dropped_ids: sim.dropped_ids,
            attempted: sim.attempted,
            unfinished: sim.unfinished,
            sequences: sim.sequences,
            seconds: t0.elapsed().as_secs_f64(),
        };
        ctx.write_json(SIMULATION, &record)?;
        Ok(serde_json::json!({
            "seconds": record.seconds,
            "pairs": record.pairs,
            "dropped": record.dropped,
            "unfinished": record.unfinished,
        }))
    }
}

/// The pair family a job makes.
pub fn method_of(job: &Job) -> Method {
    match job {
        Job::Rlcd { .. } => Method::Rlcd,
        Job::Rlaif { .. } => Method::Rlaif,
        Job::RlcdRescore { .. } => Method::RlcdRescore,
    }
}
