//! The `pair_judge` stage (paper §4.2, Tables 5 and 36): a language-model judge's labels on a
//! fixed sample of one pair set — the first `n` pairs of a simulation, or of a policy's
//! held-out pairs — on the task's main axis, asked in both orders, so `pair_labels` can say how
//! often each method's labels agree with a larger model, and `pm_eval` how often a preference
//! model does, where no oracle exists.

use serde::{Deserialize, Serialize};

use super::heldout_pairs::HELDOUT;
use super::inputs::ModelRef;
use super::key::Unkeyed;
use super::planning::{PlanError, Planned, Planner};
use super::simulate::{Pair, read_pairs};
use super::stage::{Ctx, Stage, StageError, StageKind, read_json, with_backend};
use crate::eval::judge::{JudgeItem, Judged, LmJudge};
use crate::eval::pm_agreement::HeldoutPair;
use crate::recipe::{BackendKind, JudgeOrder};
use crate::templates::{TemplateSet, judge_template};

/// File of the labels (JSON, [`PairVerdicts`]).
pub const LABELS: &str = "labels.json";

/// The stage type.
pub struct PairJudge;

/// What one judge's labels on one pair set read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The judge as the recipe names it (`lm:<model>`).
    pub judge: String,
    /// The pair set's stage.
    pub pairs: String,
    /// What kind of pair set it is.
    pub source: PairSource,
    /// Pairs labelled: the first ones of the set.
    pub n: usize,
    /// The axis judged (the task's first).
    pub axis: String,
    /// The judge model.
    pub model: ModelRef,
    /// The judge question of the axis (a `judge/*.j2` file).
    pub question: String,
    /// The question's text and what it includes.
    pub templates: TemplateSet,
    /// How the two orders combine (`both` or `mean`).
    pub order: JudgeOrder,
    /// Questions scored together.
    pub batch_size: usize,
    /// The compute backend.
    pub backend: BackendKind,
    /// Settings outside the key (over-long judge questions).
    #[serde(default)]
    pub unkeyed: Unkeyed,
}

/// The pair sets a judge labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairSource {
    /// Simulated pairs (`pairs.parquet` of a `simulate` stage).
    Simulation,
    /// Two policy samples per held-out prompt (`heldout.json` of a `heldout_pairs` stage).
    Heldout,
}

/// The judge's labels on a pair set's sample (`labels.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairVerdicts {
    /// The judge as the recipe names it.
    pub judge: String,
    /// The axis judged.
    pub axis: String,
    /// `(prompt id, judgement)` per labelled pair, in the set's order (`A` is `output_a`).
    pub items: Vec<(String, Judged)>,
}

/// Id of `judge`'s labels on the pairs of stage `pairs`.
pub fn id(judge: &str, pairs: &str) -> String {
    format!("pair_judge/{}/{pairs}", judge.replace(':', "-"))
}

/// The labels of `eval.label_judge` on the pair set of stage `pairs` (a `source`), of task
/// `task`; `None` when the recipe names no label judge.
pub fn plan(
    p: &Planner<'_>,
    task: &str,
    pairs: &str,
    source: PairSource,
) -> Result<Option<Planned>, PlanError> {
    let recipe = p.recipe();
    p.read("eval.label_judge");
    let Some(judge) = recipe.eval.label_judge.as_deref() else {
        return Ok(None);
    };
    let Some(model) = judge.strip_prefix("lm:") else {
        return Err(PlanError::Unknown {
            key: "eval.label_judge".into(),
            what: "language-model judge (`lm:<model>`)",
            name: judge.to_string(),
        });
    };
    let spec = p.task(task)?;
    p.read(format!("tasks.{task}.axes"));
    p.read("eval.label_pairs");
    p.read("eval.judge_order");
    p.read("simulate.batch_size");
    let axis = spec.axes.first().cloned().unwrap_or_default();
    let template = judge_template(&spec.axes, &axis).ok_or_else(|| PlanError::Unknown {
        key: format!("tasks.{task}.axes"),
        what: "axis with a judge question",
        name: axis.clone(),
    })?;
    let config = Config {
        judge: judge.to_string(),
        pairs: pairs.to_string(),
        source,
        n: recipe.eval.label_pairs,
        axis,
        model: p.frozen_model(model)?,
        question: template.to_string(),
        templates: p.template_files(&format!("task `{task}`"), [template])?,
        order: both_orders(recipe.eval.judge_order),
        batch_size: recipe.simulate.batch_size,
        backend: p.backend(),
        unkeyed: p.unkeyed(),
    };
    Ok(Some(Planned::new::<PairJudge>(id(judge, pairs), &config)?))
}

/// The recipe's judge order with both orders asked: `coin` becomes `both`.
fn both_orders(order: JudgeOrder) -> JudgeOrder {
    match order {
        JudgeOrder::Coin => JudgeOrder::Both,
        other => other,
    }
}

/// A simulated pair as the unscored pair a judge labels.
fn unscored(p: Pair) -> HeldoutPair {
    HeldoutPair {
        prompt_id: p.prompt_id,
        turns: p.turns,
        prompt: p.prompt,
        output_a: p.output_a,
        output_b: p.output_b,
        score_a: None,
        score_b: None,
    }
}

impl Stage for PairJudge {
    const KIND: StageKind = StageKind::PairJudge;
    const VERSION: u32 = 1;
    type Config = Config;

    fn inputs(config: &Config) -> Vec<String> {
        let mut out = vec![config.pairs.clone()];
        out.extend(config.model.inputs());
        out
    }

    fn run(ctx: &Ctx<'_>, config: &Config) -> Result<serde_json::Value, StageError> {
        let t0 = std::time::Instant::now();
        let artifact = ctx.input(&config.pairs)?;
        let mut pairs: Vec<HeldoutPair> = match config.source {
            PairSource::Simulation => read_pairs(&artifact)?.into_iter().map(unscored).collect(),
            PairSource::Heldout => read_json(&artifact, HELDOUT)?,
        };
        pairs.truncate(config.n);
        let items: Vec<JudgeItem<'_>> = pairs
            .iter()
            .map(|p| JudgeItem {
                prompt_id: &p.prompt_id,
                turns: &p.turns,
                prompt: &p.prompt,
                output_a: &p.output_a,
                output_b: &p.output_b,
            })
            .collect();
        let judged = with_backend!(config.backend, B, device => {
            let lm = config.model.load::<B>(ctx, &device)?;
            let format = config.model.format(&lm.tokenizer)?;
            let templates = config.templates.templates();
            LmJudge {
                lm: &lm,
                format: &format,
                templates: &templates,
                order: config.order,
                seed: 0,
                batch_size: config.batch_size,
                truncate: config.unkeyed.truncate,
            }
            .judged(&config.question, &items)
            .map_err(StageError::from)
        })?;
        let record = PairVerdicts {
            judge: config.judge.clone(),
            axis: config.axis.clone(),
            items: pairs
                .iter()
                .zip(judged)
                .map(|(p, j)| (p.prompt_id.clone(), j))
                .collect(),
        };
        ctx.write_json(LABELS, &record)?;
        Ok(serde_json::json!({
            "seconds": t0.elapsed().as_secs_f64(),
            "pairs": record.items.len(),
        }))
    }
}

/// The labels of stage artifact `artifact`.
pub fn read_labels(artifact: &crate::store::Artifact) -> Result<PairVerdicts, StageError> {
    read_json(artifact, LABELS)
}

impl PairVerdicts {
    /// The labelled items, after checking that they are the first pairs of `prompt_ids` (the
    /// pair set they were asked about, stage `stage`), in order.
    pub fn aligned<'a>(
        &self,
        stage: &str,
        prompt_ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<&[(String, Judged)], StageError> {
        for (id, (labelled, _)) in prompt_ids.into_iter().zip(&self.items) {
            if id != labelled {
                return Err(StageError::BadArtifact {
                    path: stage.into(),
                    detail: format!(
                        "the label judge's pair `{labelled}` is `{id}` in the pair set; rebuild \
                         the judge's labels"
                    ),
                });
            }
        }
        Ok(&self.items)
    }
}
