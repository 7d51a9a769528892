//! The `heldout_pairs` stage (paper §4.2, Table 5): two independent samples of the policy
//! model for each held-out test prompt — on a world task scored by the oracle (the "human"),
//! ties left out; on other tasks unscored, for the label judge to label (`pair_judge`) — the
//! reference preference models are measured against.

use serde::{Deserialize, Serialize};

use super::inputs::ModelRef;
use super::planning::{PlanError, Planned, Planner};
use super::stage::{Ctx, Stage, StageError, StageKind, with_backend};
use crate::eval::pm_agreement::{HeldoutError, HeldoutPair, sample_heldout_pairs, sample_pairs};
use crate::eval::sampling::Sampling;
use crate::prompts::PromptSet;
use crate::recipe::BackendKind;
use crate::templates::TemplateSet;
use crate::world::format::Split;

/// File of the pairs (JSON, [`HeldoutPair`]s).
pub const HELDOUT: &str = "heldout.json";

/// The stage type.
pub struct HeldoutPairs;

/// What the held-out pairs of one policy model and task read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The policy model sampled.
    pub policy: ModelRef,
    /// The task.
    pub task: String,
    /// Its held-out prompts (on a built-in world prompt set the oracle scores the samples).
    pub prompts: PromptSet,
    /// Its template family.
    pub family: String,
    /// The family's files.
    pub templates: TemplateSet,
    /// Pairs sampled (the first prompts of the test split; oracle ties are left out).
    pub pairs: usize,
    /// How each output is sampled.
    pub sampling: Sampling,
    /// The compute backend.
    pub backend: BackendKind,
    /// Seed of the samples.
    pub seed: u64,
}

/// Id of the held-out pairs of `policy` on `task`.
pub fn id(policy: &str, task: &str) -> String {
    format!("heldout_pairs/{policy}/{task}")
}

/// The held-out pairs of policy model `policy` on world task `task`: `reward.heldout_pairs`
/// test prompts, each sampled twice as the simulator samples (`simulate` temperature, top-p,
/// token limit and batch).
pub fn plan(p: &Planner<'_>, policy: &str, task: &str) -> Result<Planned, PlanError> {
    let recipe = p.recipe();
    let sim = &recipe.simulate;
    for key in [
        "reward.heldout_pairs",
        "simulate.temperature",
        "simulate.top_p",
        "simulate.max_new_tokens",
        "simulate.batch_size",
    ] {
        p.read(key);
    }
    p.read(format!("tasks.{task}.n_prompts"));
    let (family, templates) = p.task_templates(task)?;
    let config = Config {
        policy: p.frozen_model(policy)?,
        task: task.to_string(),
        prompts: p.prompts(task, Split::Test, p.task(task)?.n_prompts)?,
        family,
        templates,
        pairs: recipe.reward.heldout_pairs,
        sampling: Sampling {
            temperature: sim.temperature,
            top_p: sim.top_p,
            max_new_tokens: sim.max_new_tokens,
            batch_size: sim.batch_size,
        },
        backend: p.backend(),
        seed: p.seed(&["heldout", policy, task]),
    };
    Planned::new::<HeldoutPairs>(id(policy, task), &config)
}

impl From<HeldoutError> for StageError {
    fn from(e: HeldoutError) -> Self {
        StageError::failed(e)
    }
}

impl Stage for HeldoutPairs {
    const KIND: StageKind = StageKind::HeldoutPairs;
    const VERSION: u32 = 2;
    type Config = Config;

    fn inputs(config: &Config) -> Vec<String> {
        config.policy.inputs()
    }

    fn run(ctx: &Ctx<'_>, config: &Config) -> Result<serde_json::Value, StageError> {
        let t0 = std::time::Instant::now();
        let source = &config.prompts.source;
        let oracle = match (source.world_task(), source.world()) {
            (Some(task), Some(world)) => Some((task, world.build()?)),
            _ => None,
        };
        let templates = config.templates.templates();
        let test = config.prompts.load(ctx.root)?;
        let pairs: Vec<HeldoutPair> = with_backend!(config.backend, B, device => {
            let lm = config.policy.load::<B>(ctx, &device)?;
            match &oracle {
                Some((task, world)) => sample_heldout_pairs(
                    &lm, world, &templates, *task, &config.family, &test, config.pairs,
                    &config.sampling, config.seed,
                ),
                None => sample_pairs(
                    &lm, &config.policy.format(&lm.tokenizer)?, &templates, &config.family, &test,
                    config.pairs, &config.sampling, config.seed,
                ),
            }
            .map_err(StageError::from)
        })?;
        ctx.write_json(HELDOUT, &pairs)?;
        Ok(serde_json::json!({ "seconds": t0.elapsed().as_secs_f64(), "pairs": pairs.len() }))
    }
}
