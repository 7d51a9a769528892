//! The `world_eval` stage: what a pretrained world preset learned, measured with the oracle on
//! every task (the rows of the world report; the measurements are in [`measure`]).

pub mod measure;

use serde::{Deserialize, Serialize};

use super::inputs::WorldModel;
use super::planning::{PlanError, Planned, Planner};
use super::pretrain::{load_world_lm, read_record};
use super::stage::{Ctx, Stage, StageError, StageKind, with_backend};
use crate::recipe::{BackendKind, ReportConfig};
use crate::templates::{SCORE_TEMPLATE, TemplateSet};
use crate::world::{PROMPT_SET_VERSION, Task, WorldSpec};

/// File of the report rows.
pub const REPORT: &str = "report.json";

/// The stage type.
pub struct WorldEval;

/// What the evaluation of one preset reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The preset's pretraining stage.
    pub pretrain: String,
    /// The world whose oracle judges it (and whose test prompts it answers).
    pub world: WorldSpec,
    /// The world prompt sets' version.
    pub prompt_set_version: u32,
    /// How much to measure.
    pub report: ReportConfig,
    /// The task families, principles and scoring prompt it renders.
    pub templates: TemplateSet,
    /// The compute backend.
    pub backend: BackendKind,
    /// Seed of the samples and pairs.
    pub seed: u64,
}

/// Id of the evaluation of the world model labelled `label`.
pub fn id(label: &str) -> String {
    format!("world_eval/{label}")
}

/// The evaluation of a world model. Its samples and pairs are seeded by the preset, so models
/// of one preset with different corpora are measured on the same pairs.
pub fn plan(p: &Planner<'_>, model: &WorldModel) -> Result<Planned, PlanError> {
    p.read("pretrain.report");
    let preset = model.preset.as_str();
    let config = Config {
        pretrain: super::pretrain::id(&model.label),
        world: p.world(),
        prompt_set_version: PROMPT_SET_VERSION,
        report: p.recipe().pretrain.report.clone(),
        templates: world_templates(p)?,
        backend: p.backend(),
        seed: p.seed(&["world_eval", preset]),
    };
    Planned::new::<WorldEval>(id(&model.label), &config)
}

/// The template files the measurements render: the world families' templates and affix
/// pairs, their principles and the scoring prompt.
pub fn world_templates(p: &Planner<'_>) -> Result<TemplateSet, PlanError> {
    let families = Task::ALL.map(Task::name);
    let mut set = TemplateSet::default();
    for family in families {
        set.extend(p.family_files("world", family)?);
    }
    set.extend(p.template_files("world", [SCORE_TEMPLATE])?);
    set.extend(p.principles("world", families)?);
    Ok(set)
}

impl From<measure::ReportError> for StageError {
    fn from(e: measure::ReportError) -> Self {
        StageError::failed(e)
    }
}

impl Stage for WorldEval {
    const KIND: StageKind = StageKind::WorldEval;
    const VERSION: u32 = 3;
    type Config = Config;

    fn inputs(config: &Config) -> Vec<String> {
        vec![config.pretrain.clone()]
    }

    fn run(ctx: &Ctx<'_>, config: &Config) -> Result<serde_json::Value, StageError> {
        let t0 = std::time::Instant::now();
        let world = config.world.build()?;
        let templates = config.templates.templates();
        let artifact = ctx.input(&config.pretrain)?;
        let record = read_record(&artifact.dir)?;
        let label = config
            .pretrain
            .strip_prefix("pretrain/")
            .unwrap_or(&config.pretrain);
        let pb = ctx.progress(Task::ALL.len() as u64);
        let rows = with_backend!(config.backend, B, device => {
            let lm = load_world_lm::<B>(&artifact.dir, &device)?;
            measure::evaluate_preset(
                label, &lm, &world, &templates, &record, &config.report, config.seed, &mut |_| pb.inc(1),
            )
            .map_err(StageError::from)
        })?;
        pb.finish_and_clear();
        ctx.write_json(REPORT, &rows)?;
        Ok(serde_json::json!({ "seconds": t0.elapsed().as_secs_f64(), "rows": rows.len() }))
    }
}
