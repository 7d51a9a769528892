//! The `contrast` stage: a task's training prompts rendered as p, p+ and p− (paper §3), one
//! affix pair drawn per prompt — the prompts RLCD simulates from, written for inspection.

use serde::{Deserialize, Serialize};

use super::planning::{PlanError, Planned, Planner};
use super::stage::{Ctx, Stage, StageError, StageKind};
use crate::prompts::{PromptSet, contrast_prompts};
use crate::templates::TemplateSet;
use crate::world::format::Split;

/// File of the rendered prompts, one JSON object per line.
pub const CONTRAST: &str = "contrast.jsonl";

/// The stage type.
pub struct Contrast;

/// What the stage renders.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The task.
    pub task: String,
    /// Its training prompts.
    pub prompts: PromptSet,
    /// Its template family.
    pub family: String,
    /// The family's files.
    pub templates: TemplateSet,
    /// Seed of the affix draws.
    pub seed: u64,
}

/// Id of the contrast stage of `task`.
pub fn id(task: &str) -> String {
    format!("contrast/{task}")
}

/// The contrast stage of task `task`.
pub fn plan(p: &Planner<'_>, task: &str) -> Result<Planned, PlanError> {
    let n = p.task(task)?.n_prompts;
    p.read(format!("tasks.{task}.n_prompts"));
    let (family, templates) = p.task_templates(task)?;
    let config = Config {
        task: task.to_string(),
        prompts: p.prompts(task, Split::Train, n)?,
        family,
        templates,
        seed: p.seed(&["contrast", task]),
    };
    Planned::new::<Contrast>(id(task), &config)
}

impl Stage for Contrast {
    const KIND: StageKind = StageKind::Contrast;
    const VERSION: u32 = 1;
    type Config = Config;

    fn inputs(_: &Config) -> Vec<String> {
        Vec::new()
    }

    fn run(ctx: &Ctx<'_>, config: &Config) -> Result<serde_json::Value, StageError> {
        let t0 = std::time::Instant::now();
        let train = config.prompts.load(ctx.root)?;
        let templates = config.templates.templates();
        let contrast = contrast_prompts(&templates, &config.family, &train, config.seed)?;
        let mut text = String::new();
        for c in &contrast {
            let line = serde_json::json!({
                "id": c.id,
                "affix_index": c.affix_index,
                "plain": c.plain,
                "positive": c.positive,
                "negative": c.negative,
            });
            text.push_str(&line.to_string());
            text.push('\n');
        }
        ctx.write(CONTRAST, text.as_bytes())?;
        Ok(serde_json::json!({
            "seconds": t0.elapsed().as_secs_f64(),
            "task": config.task,
            "prompts": contrast.len(),
        }))
    }
}
