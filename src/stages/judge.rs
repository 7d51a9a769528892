//! The `judge` stage (paper §4.3): one judge's verdicts on every comparison of one task, on
//! each of the task's axes — the built-in world's oracle, a method's preference model
//! (`rm:<method>`) or a language model asked the paper's judge question (`lm:<model>`) — as
//! win-rate rows (counts, length-controlled rate, mean lengths).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::generate::{SAMPLES, Sample};
use super::inputs::ModelRef;
use super::key::Unkeyed;
use super::planning::{PlanError, Planned, Planner};
use super::stage::{Ctx, Stage, StageError, StageKind, read_json, with_backend};
use super::winrates::WinRateRow;
use crate::eval::collapse::OutputStats;
use crate::eval::judge::{JudgeError, JudgeItem, Judged, LmJudge, Verdict, judge_oracle, judge_rm};
use crate::eval::winrate::{WinCounts, length_controlled};
use crate::model::pm::load_pm;
use crate::recipe::{BackendKind, JudgeOrder, MethodKind};
use crate::templates::{TemplateSet, judge_template};
use crate::world::{Task, WorldSpec};

/// File of the win-rate rows (JSON, [`WinRateRow`]s).
pub const JUDGED: &str = "judged.json";

/// File of every item's verdict (JSON, [`ItemVerdicts`]).
pub const VERDICTS: &str = "verdicts.json";

/// The stage type.
pub struct Judge;

/// What one judge's verdicts on one task read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The judge as the recipe names it (`oracle`, `lm:<model>`, `rm:<method>`).
    pub judge: String,
    /// How it judges.
    pub how: How,
    /// The task.
    pub task: String,
    /// The axes judged.
    pub axes: Vec<String>,
    /// The comparisons, in row order.
    pub comparisons: Vec<Comparison>,
    /// Settings outside the key (over-long judge questions).
    #[serde(default)]
    pub unkeyed: Unkeyed,
}

/// One comparison: method A's samples against method B's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    /// Method A (whose win rate is reported).
    pub a: String,
    /// Method B.
    pub b: String,
    /// A's samples (a generate stage).
    pub samples_a: String,
    /// B's samples.
    pub samples_b: String,
    /// The simulators of A and B, as the table shows them.
    pub simulator: String,
    /// Samples of the base policy of A's policy model, which A's collapse is checked against
    /// (absent when the recipe compares no `base` method of that model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_a: Option<String>,
    /// The same for B.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_b: Option<String>,
}

/// How a judge decides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum How {
    /// The built-in world's scorer on the axis (equal scores tie).
    Oracle {
        /// The world.
        world: WorldSpec,
        /// The world task of the prompts.
        task: Task,
    },
    /// A method's preference model (higher score wins).
    Rm {
        /// The preference model's stage.
        reward: String,
        /// Outputs scored together.
        batch_size: usize,
        /// The compute backend.
        backend: BackendKind,
    },
    /// A language model answering the judge question of each axis.
    Lm {
        /// The judge model.
        model: ModelRef,
        /// The judge questions (`judge/*.j2`) and what they include.
        templates: TemplateSet,
        /// One seeded order per comparison, or both orders.
        order: JudgeOrder,
        /// Seed of the order coin.
        seed: u64,
        /// Prompts scored together.
        batch_size: usize,
        /// The compute backend.
        backend: BackendKind,
    },
}

/// Id of `judge`'s verdicts on `task`.
pub fn id(judge: &str, task: &str) -> String {
    format!("judge/{}/{task}", judge.replace(':', "-"))
}

/// The simulators of compared methods `a` and `b` as the win-rate table shows them.
fn simulator_label(p: &Planner<'_>, a: &str, b: &str) -> String {
    let sim = |m: &str| p.recipe().methods.get(m).and_then(|s| s.simulator.clone());
    match (sim(a), sim(b)) {
        (Some(x), Some(y)) if x == y => x,
        (Some(x), Some(y)) => format!("{x}/{y}"),
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => "-".into(),
    }
}

/// The verdicts of `judge` on task `task` for `comparisons` of recipe methods.
pub fn plan(
    p: &Planner<'_>,
    judge: &str,
    task: &str,
    comparisons: &[[String; 2]],
) -> Result<Planned, PlanError> {
    let recipe = p.recipe();
    let spec = p.task(task)?;
    p.read("eval.judges");
    p.read("eval.comparisons");
    p.read(format!("tasks.{task}.axes"));
    let how = if let Some(model) = judge.strip_prefix("lm:") {
        p.read("eval.judge_order");
        p.read("simulate.batch_size");
        let names: Vec<&str> = spec
            .axes
            .iter()
            .filter_map(|axis| judge_template(&spec.axes, axis))
            .collect();
        How::Lm {
            model: p.frozen_model(model)?,
            templates: p.template_files(&format!("task `{task}`"), names)?,
            order: recipe.eval.judge_order,
            seed: p.seed(&["judge", judge, task]),
            batch_size: recipe.simulate.batch_size,
            backend: p.backend(),
        }
    } else if let Some(method) = judge.strip_prefix("rm:") {
        p.read("simulate.batch_size");
        How::Rm {
            reward: super::reward::id(method, task),
            batch_size: recipe.simulate.batch_size,
            backend: p.backend(),
        }
    } else {
        let world_task = p.world_task(task)?.ok_or_else(|| PlanError::Unknown {
            key: format!("tasks.{task}.prompts"),
            what: "built-in world prompt set (the oracle judges only world prompts)",
            name: spec.prompts.clone(),
        })?;
        How::Oracle {
            world: p.world(),
            task: world_task,
        }
    };
    // The base method compared in this recipe with the same policy model as `m`.
    let compared: std::collections::BTreeSet<&String> = comparisons.iter().flatten().collect();
    let base_of = |m: &str| {
        let policy = &recipe.methods.get(m)?.policy;
        recipe
            .methods
            .iter()
            .find(|(name, spec)| {
                spec.kind == MethodKind::Base && &spec.policy == policy && compared.contains(name)
            })
            .map(|(name, _)| super::generate::id(name, task))
    };
    let comparisons = comparisons
        .iter()
        .map(|[a, b]| Comparison {
            a: a.clone(),
            b: b.clone(),
            samples_a: super::generate::id(a, task),
            samples_b: super::generate::id(b, task),
            simulator: simulator_label(p, a, b),
            base_a: base_of(a),
            base_b: base_of(b),
        })
        .collect();
    let config = Config {
        judge: judge.to_string(),
        how,
        task: task.to_string(),
        axes: spec.axes.clone(),
        comparisons,
        unkeyed: p.unkeyed(),
    };
    Planned::new::<Judge>(id(judge, task), &config)
}

impl From<JudgeError> for StageError {
    fn from(e: JudgeError) -> Self {
        StageError::failed(e)
    }
}

/// A judge ready to decide: its model loaded, when it has one.
enum Loaded<B: burn::tensor::backend::Backend> {
    Oracle(crate::world::World, Task),
    Rm(crate::model::pm::Pm<B>, usize),
    Lm {
        lm: crate::model::Lm<B>,
        format: crate::model::PolicyFormat,
        templates: crate::templates::Templates,
        order: JudgeOrder,
        seed: u64,
        batch_size: usize,
        truncate: crate::model::Truncate,
    },
}

impl<B: burn::tensor::backend::Backend> Loaded<B> {
    fn verdicts(
        &self,
        axes: &[String],
        axis: &str,
        items: &[JudgeItem<'_>],
    ) -> Result<Vec<Judged>, StageError> {
        let plain = |v: Vec<Verdict>| v.into_iter().map(Judged::from).collect();
        Ok(match self {
            Loaded::Oracle(world, task) => judge_oracle(world, *task, axis, items),
            Loaded::Rm(pm, batch) => plain(judge_rm(pm, items, *batch)?),
            Loaded::Lm {
                lm,
                format,
                templates,
                order,
                seed,
                batch_size,
                truncate,
            } => {
                let template =
                    judge_template(axes, axis).ok_or_else(|| StageError::BadArtifact {
                        path: "tasks.<task>.axes".into(),
                        detail: format!("no judge question for axis `{axis}`"),
                    })?;
                LmJudge {
                    lm,
                    format,
                    templates,
                    order: *order,
                    seed: *seed,
                    batch_size: *batch_size,
                    truncate: *truncate,
                }
                .judged(template, items)?
            }
        })
    }
}

/// One judge's verdict on every item of one comparison on one axis (`verdicts.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemVerdicts {
    /// The judge as the recipe names it.
    pub judge: String,
    /// The task.
    pub task: String,
    /// The axis.
    pub axis: String,
    /// Method A.
    pub method_a: String,
    /// Method B.
    pub method_b: String,
    /// `(prompt id, judgement)` per compared prompt.
    pub items: Vec<(String, Judged)>,
}

/// The win-rate rows of `judge` on every comparison and axis, and its verdict on every item.
fn rows<B: burn::tensor::backend::Backend>(
    ctx: &Ctx<'_>,
    config: &Config,
    judge: &Loaded<B>,
) -> Result<(Vec<WinRateRow>, Vec<ItemVerdicts>), StageError> {
    let mut rows = Vec::new();
    let mut verdicts_out = Vec::new();
    let mut base_cache: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for c in &config.comparisons {
        let sa: Vec<Sample> = read_json(&ctx.input(&c.samples_a)?, SAMPLES)?;
        let sb: Vec<Sample> = read_json(&ctx.input(&c.samples_b)?, SAMPLES)?;
        let by_id: BTreeMap<&str, &Sample> = sb.iter().map(|s| (s.prompt_id.as_str(), s)).collect();
        let matched: Vec<(&Sample, &Sample)> = sa
            .iter()
            .filter_map(|x| by_id.get(x.prompt_id.as_str()).map(|y| (x, *y)))
            .collect();
        let items: Vec<JudgeItem<'_>> = matched
            .iter()
            .map(|(x, y)| JudgeItem {
                prompt_id: &x.prompt_id,
                turns: &x.turns,
                prompt: &x.prompt,
                output_a: &x.output,
                output_b: &y.output,
            })
            .collect();
        for axis in &config.axes {
            let judged = judge.verdicts(&config.axes, axis, &items)?;
            verdicts_out.push(ItemVerdicts {
                judge: config.judge.clone(),
                task: config.task.clone(),
                axis: axis.clone(),
                method_a: c.a.clone(),
                method_b: c.b.clone(),
                items: matched
                    .iter()
                    .zip(&judged)
                    .map(|((x, _), j)| (x.prompt_id.clone(), *j))
                    .collect(),
            });
            let verdicts: Vec<Verdict> = judged.iter().map(|j| j.verdict).collect();
            let mut counts = WinCounts::default();
            let (mut scores, mut diffs) = (Vec::new(), Vec::new());
            for (v, (x, y)) in verdicts.iter().zip(&matched) {
                counts.record(v.outcome());
                scores.push(match v {
                    Verdict::A => 1.0,
                    Verdict::B => 0.0,
                    Verdict::Tie => 0.5,
                });
                diffs.push(x.len as f64 - y.len as f64);
            }
            let n = matched.len().max(1) as f64;
            let stats =
                |side: &[&Sample]| OutputStats::of(side.iter().map(|s| (s.output.as_str(), s.len)));
            let (side_a, side_b): (Vec<&Sample>, Vec<&Sample>) = matched.iter().copied().unzip();
            let (stats_a, stats_b) = (stats(&side_a), stats(&side_b));
            let mut collapsed = |base: &Option<String>, mine: Option<OutputStats>| {
                let Some(base) = base else {
                    return Ok(None);
                };
                let ids: std::collections::BTreeSet<&str> =
                    matched.iter().map(|(x, _)| x.prompt_id.as_str()).collect();
                if !base_cache.contains_key(base) {
                    let v: Vec<Sample> = read_json(&ctx.input(base)?, SAMPLES)?;
                    base_cache.insert(base.clone(), v);
                }
                let base_samples = &base_cache[base];
                let base_stats = OutputStats::of(
                    base_samples
                        .iter()
                        .filter(|s| ids.contains(s.prompt_id.as_str()))
                        .map(|s| (s.output.as_str(), s.len)),
                );
                Ok::<_, StageError>(match (mine, base_stats) {
                    (Some(m), Some(b)) => Some(m.collapsed_against(&b)),
                    _ => None,
                })
            };
            let collapsed_a = collapsed(&c.base_a, stats_a)?;
            let collapsed_b = collapsed(&c.base_b, stats_b)?;
            rows.push(WinRateRow {
                task: config.task.clone(),
                axis: axis.clone(),
                method_a: c.a.clone(),
                method_b: c.b.clone(),
                simulator: c.simulator.clone(),
                judge: config.judge.clone(),
                counts,
                lc_win_rate: length_controlled(&scores, &diffs),
                avg_len_a: matched.iter().map(|(x, _)| x.len as f64).sum::<f64>() / n,
                avg_len_b: matched.iter().map(|(_, y)| y.len as f64).sum::<f64>() / n,
                distinct_a: stats_a.map_or(f64::NAN, |s| s.distinct),
                distinct_b: stats_b.map_or(f64::NAN, |s| s.distinct),
                collapsed_a,
                collapsed_b,
            });
        }
    }
    Ok((rows, verdicts_out))
}

impl Stage for Judge {
    const KIND: StageKind = StageKind::Judge;
    /// Covers the judges' protocol, including the answer lead
    /// ([`crate::eval::judge::ANSWER_LEAD`]); 2: rows carry distinct shares and collapse marks;
    /// 3: every item's verdict is kept (`verdicts.json`); 4: the oracle's verdicts keep their
    /// score gaps.
    const VERSION: u32 = 4;
    type Config = Config;

    fn inputs(config: &Config) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in &config.comparisons {
            let bases = c.base_a.iter().chain(&c.base_b);
            for s in [&c.samples_a, &c.samples_b].into_iter().chain(bases) {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
        }
        match &config.how {
            How::Oracle { .. } => {}
            How::Rm { reward, .. } => out.push(reward.clone()),
            How::Lm { model, .. } => out.extend(model.inputs()),
        }
        out
    }

    fn run(ctx: &Ctx<'_>, config: &Config) -> Result<serde_json::Value, StageError> {
        let t0 = std::time::Instant::now();
        let backend = match &config.how {
            How::Oracle { .. } => BackendKind::Cpu,
            How::Rm { backend, .. } | How::Lm { backend, .. } => *backend,
        };
        let rows = with_backend!(backend, B, device => {
            let loaded: Loaded<B> = match &config.how {
                How::Oracle { world, task } => Loaded::Oracle(world.build()?, *task),
                How::Rm { reward, batch_size, .. } => {
                    Loaded::Rm(load_pm::<B>(&ctx.input(reward)?.dir, &device)?, *batch_size)
                }
                How::Lm { model, templates, order, seed, batch_size, .. } => {
                    let lm = model.load::<B>(ctx, &device)?;
                    Loaded::Lm {
                        format: model.format(&lm.tokenizer)?,
                        lm,
                        templates: templates.templates(),
                        order: *order,
                        seed: *seed,
                        batch_size: *batch_size,
                        truncate: config.unkeyed.truncate,
                    }
                }
            };
            rows(ctx, config, &loaded)
        })?;
        let (rows, verdicts) = rows;
        ctx.write_json(JUDGED, &rows)?;
        ctx.write_json(VERDICTS, &verdicts)?;
        Ok(serde_json::json!({ "seconds": t0.elapsed().as_secs_f64(), "rows": rows.len() }))
    }
}
