//! The `import_pairs` stage: preference pairs read from a file in TRL's shape (`prompt`,
//! `chosen`, `rejected`, as `rlcd export pairs` writes them) instead of simulated (paper §3),
//! so a recipe trains a preference model, DPO or context distillation on external data. The
//! artifact is the simulate stage's `pairs.parquet`, which every downstream stage reads.

use serde::{Deserialize, Serialize};

use super::planning::{PlanError, Planned, Planner};
use super::simulate::{Method, PAIRS, Pair, Slot, pairs_to_frame};
use super::stage::{Ctx, Stage, StageError, StageKind};
use crate::prompts::{Dialogue, Split, contrast_prompts};
use crate::tables::render_parquet;
use crate::templates::TemplateSet;
use crate::trl::{TrlError, TrlRow, read_rows};

impl From<TrlError> for StageError {
    fn from(e: TrlError) -> Self {
        StageError::failed(e)
    }
}

/// The stage type.
pub struct ImportPairs;

/// What one import reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The recipe method whose pairs these are.
    pub method: String,
    /// The pair family of its kind (RLCD pairs mark `chosen` as o+).
    pub family: Method,
    /// The task; rows naming another `task` are left out.
    pub task: String,
    /// The file as the recipe writes it (relative to the project root, or absolute).
    pub path: String,
    /// blake3 of its bytes when the plan was made.
    pub blake3: String,
    /// The task's template family, whose `plain.j2` renders conversational prompts.
    pub templates_family: String,
    /// The family's template files.
    pub templates: TemplateSet,
    /// Seed of the slot each pair's `chosen` response goes to.
    pub seed: u64,
}

/// Id of the pairs method `method` imports for task `task`.
pub fn id(method: &str, task: &str) -> String {
    format!("import_pairs/{method}/{task}")
}

/// The import of method `method`'s pair file for task `task`.
pub fn plan(
    p: &Planner<'_>,
    method: &str,
    task: &str,
    family: Method,
) -> Result<Planned, PlanError> {
    let spec = p.method(method)?;
    p.read(format!("methods.{method}.pairs"));
    let path = spec.pairs.clone().unwrap_or_default();
    let file = super::inputs::resolve(p.root(), &path);
    let blake3 = super::inputs::file_blake3(&file).map_err(|source| PlanError::ModelFile {
        model: format!("methods.{method}.pairs"),
        source,
    })?;
    let (templates_family, templates) = p.task_templates(task)?;
    let config = Config {
        method: method.to_string(),
        family,
        task: task.to_string(),
        path,
        blake3,
        templates_family,
        templates,
        seed: p.seed(&["import_pairs", method, task]),
    };
    Planned::new::<ImportPairs>(id(method, task), &config)
}

impl Stage for ImportPairs {
    const KIND: StageKind = StageKind::ImportPairs;
    const VERSION: u32 = 1;
    type Config = Config;

    fn inputs(_: &Config) -> Vec<String> {
        Vec::new()
    }

    fn run(ctx: &Ctx<'_>, config: &Config) -> Result<serde_json::Value, StageError> {
        let path = super::inputs::resolve(ctx.root, &config.path);
        let found = super::inputs::file_blake3(&path)?;
        if found != config.blake3 {
            return Err(StageError::BadArtifact {
                path,
                detail: format!(
                    "the pair file changed since the plan was made (blake3 {found}, planned {}); \
                     run again to plan with it",
                    config.blake3
                ),
            });
        }
        let all = read_rows(&path)?;
        let rows: Vec<&TrlRow> = all
            .iter()
            .filter(|r| r.task.as_deref().is_none_or(|t| t == config.task))
            .collect();
        if rows.is_empty() {
            return Err(TrlError::Empty {
                path,
                task: config.task.clone(),
                rows: all.len(),
            }
            .into());
        }
        let pairs = to_pairs(config, &rows)?;
        let frame = pairs_to_frame(&pairs)?;
        ctx.write(PAIRS, &render_parquet(&frame)?)?;
        Ok(serde_json::json!({
            "pairs": pairs.len(),
            "rows_for_other_tasks": all.len() - rows.len(),
        }))
    }
}

/// The rows as pairs: conversational prompts rendered through the task's plain template,
/// `chosen` in slot B or A by a seeded draw per prompt, the label `p_chosen` towards it.
/// Imported pairs have no simulator, so their token lengths are 0 and their seeds and tries
/// describe no draw.
fn to_pairs(config: &Config, rows: &[&TrlRow]) -> Result<Vec<Pair>, StageError> {
    let templates = config.templates.templates();
    let mut pairs = Vec::with_capacity(rows.len());
    for r in rows {
        let id = r.prompt_id.clone().unwrap_or_else(|| {
            let text = match &r.prompt {
                Ok(s) => s.clone(),
                Err(turns) => turns.join("\n"),
            };
            format!("import-{}", &blake3::hash(text.as_bytes()).to_hex()[..16])
        });
        let (turns, prompt) = match &r.prompt {
            Ok(text) => (vec![text.clone()], text.clone()),
            Err(turns) => {
                let dialogue = Dialogue {
                    id: id.clone(),
                    split: Split::Train,
                    turns: turns.clone(),
                };
                let rendered = contrast_prompts(
                    &templates,
                    &config.templates_family,
                    std::slice::from_ref(&dialogue),
                    config.seed,
                )
                .map_err(StageError::failed)?;
                (turns.clone(), rendered[0].plain.clone())
            }
        };
        let chosen_in_b = crate::seed::derive(config.seed, &["slot", &id]).is_multiple_of(2);
        let (output_a, output_b, soft_label, slot) = if chosen_in_b {
            (r.rejected.clone(), r.chosen.clone(), r.p_chosen, Slot::B)
        } else {
            (
                r.chosen.clone(),
                r.rejected.clone(),
                1.0 - r.p_chosen,
                Slot::A,
            )
        };
        pairs.push(Pair {
            method: config.family,
            prompt_id: id,
            turns,
            prompt,
            output_a,
            output_b,
            soft_label,
            affix_index: None,
            positive_slot: (config.family != Method::Rlaif).then_some(slot),
            principle_index: None,
            len_a: 0,
            len_b: 0,
            seed_a: 0,
            seed_b: 0,
            tries_a: 0,
            tries_b: 0,
        });
    }
    Ok(pairs)
}
