//! Recipe → plan: the DAG of content-addressed stages a recipe needs, in topological order, each
//! with its key (ARCHITECTURE.md, "Plan").
//!
//! Which stages exist is decided here (per task, method, simulator and judge, as in paper §4);
//! what each stage reads from the recipe is decided by the stage's own `plan` function beside
//! it, through a [`Planner`] that records every recipe key reaching a stage. A stage's key is
//! [`stage_key`] of its kind, version, configuration and upstream keys, so equal keys mean
//! equal outputs and any run (or sweep cell) reuses a stage another run already computed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::recipe::{MethodKind, Resolved};
use crate::stages::inputs::WorldModel;
pub use crate::stages::key::{FORMAT_VERSION, KEY_LEN, canonical_json, stage_key};
pub use crate::stages::planning::{PlanError, Planned, Planner};
use crate::stages::simulate::Method;
use crate::stages::stage::StageKind;
use crate::stages::{
    appendix_n, contrast, generate, heldout_pairs, import_pairs, judge, judge_agreement,
    judge_skill, judge_tuning, pair_judge, pair_labels, pm_agreement, pm_eval, policy,
    policy_training, pretrain, reward, simulate, winrates, world_eval, world_report,
};
use crate::store::Store;

/// Recipe keys that configure the run itself rather than a stage: its name (the run
/// directory) and the results root (the store).
pub const RUN_KEYS: &[&str] = &["name", "results"];

/// A planned stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// Unique id (also its cache directory).
    pub id: String,
    /// What it does.
    pub kind: StageKind,
    /// Its content key.
    pub key: String,
    /// Its format version.
    pub version: u32,
    /// Upstream stage ids.
    pub deps: Vec<String>,
    /// Its configuration: everything it reads besides its inputs' artifacts.
    pub config: serde_json::Value,
}

/// A recipe's stages in topological order (`plan.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// [`FORMAT_VERSION`] of the keys.
    pub format: u32,
    /// The recipe's name.
    pub recipe: String,
    /// Stages, every one after its upstream stages.
    pub stages: Vec<Stage>,
    /// The methods the recipe declares.
    pub methods: Vec<String>,
    /// The recipe keys that reach some stage (a table covers everything below it).
    #[serde(default)]
    pub reads: BTreeSet<String>,
}

impl Plan {
    /// Orders `planned` topologically (declaration order among independent stages) and
    /// computes every key.
    pub fn order(
        recipe: &str,
        planned: Vec<Planned>,
        methods: Vec<String>,
        reads: BTreeSet<String>,
    ) -> Result<Plan, PlanError> {
        let mut index = BTreeMap::new();
        for (i, s) in planned.iter().enumerate() {
            if index.insert(s.id.clone(), i).is_some() {
                return Err(PlanError::Duplicate {
                    stage: s.id.clone(),
                });
            }
        }
        for s in &planned {
            for d in &s.deps {
                if !index.contains_key(d) {
                    return Err(PlanError::UnknownUpstream {
                        stage: s.id.clone(),
                        upstream: d.clone(),
                        suggestion: crate::error::suggest(d, index.keys().map(String::as_str)),
                    });
                }
            }
        }
        let mut placed: BTreeMap<String, String> = BTreeMap::new();
        let mut order: Vec<Stage> = Vec::with_capacity(planned.len());
        let mut remaining: Vec<&Planned> = planned.iter().collect();
        while !remaining.is_empty() {
            let Some(pos) = remaining
                .iter()
                .position(|s| s.deps.iter().all(|d| placed.contains_key(d)))
            else {
                return Err(PlanError::Cycle {
                    path: find_cycle(&remaining),
                });
            };
            let s = remaining.remove(pos);
            let upstream: BTreeMap<String, String> = s
                .deps
                .iter()
                .map(|d| (d.clone(), placed[d].clone()))
                .collect();
            let key = stage_key(s.kind, s.version, &s.config, &upstream);
            placed.insert(s.id.clone(), key.clone());
            order.push(Stage {
                id: s.id.clone(),
                kind: s.kind,
                key,
                version: s.version,
                deps: s.deps.clone(),
                config: s.config.clone(),
            });
        }
        Ok(Plan {
            format: FORMAT_VERSION,
            recipe: recipe.to_string(),
            stages: order,
            methods,
            reads,
        })
    }

    /// The plan of a resolved recipe.
    pub fn build(resolved: &Resolved) -> Result<Plan, PlanError> {
        let recipe = &resolved.recipe;
        let p = Planner::new(resolved);
        let mut planned = theory_stages(&p)?;
        planned.extend(world_stages(&p)?);
        if !recipe.tasks.is_empty() {
            for task in recipe.tasks.keys() {
                planned.push(contrast::plan(&p, task)?);
            }
            planned.extend(preference_stages(&p)?);
            planned.extend(policy_stages(&p)?);
        }
        if planned.is_empty() {
            return Err(PlanError::Empty {
                file: resolved.file.display().to_string(),
            });
        }
        Plan::order(
            &recipe.name,
            planned,
            recipe.methods.keys().cloned().collect(),
            p.reads(),
        )
    }

    /// The stage with this id.
    pub fn stage(&self, id: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.id == id)
    }

    /// A short key of the whole plan (first 8 hex digits over every stage key), for run ids.
    pub fn short_key(&self) -> String {
        let mut h = blake3::Hasher::new();
        for s in &self.stages {
            h.update(s.id.as_bytes());
            h.update(b"\0");
            h.update(s.key.as_bytes());
            h.update(b"\0");
        }
        h.finalize().to_hex()[..8].to_string()
    }

    /// Recipe keys the recipe sets (in its file, the environment or an override) that reach
    /// no stage and do not configure the run, with where each was set.
    pub fn unread_keys(&self, resolved: &Resolved) -> Vec<(String, String)> {
        resolved
            .sources
            .iter()
            .filter(|(key, source)| {
                *source != "default"
                    && !RUN_KEYS.contains(&key.split('.').next().unwrap_or_default())
                    && !self
                        .reads
                        .iter()
                        .any(|r| *key == r || key.starts_with(&format!("{r}.")))
            })
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect()
    }

    /// The stages in order with their keys and whether the store already holds them.
    pub fn describe(&self, store: &Store) -> String {
        let mut out = String::new();
        let cached = self
            .stages
            .iter()
            .filter(|s| store.lookup(&s.id, &s.key).is_some())
            .count();
        let _ = writeln!(
            out,
            "plan `{}` ({} stages, {} cached, key {})",
            self.recipe,
            self.stages.len(),
            cached,
            self.short_key()
        );
        let w = self.stages.iter().map(|s| s.id.len()).max().unwrap_or(0);
        let kw = self
            .stages
            .iter()
            .map(|s| s.kind.name().len())
            .max()
            .unwrap_or(0);
        for (i, s) in self.stages.iter().enumerate() {
            let state = if store.lookup(&s.id, &s.key).is_some() {
                "cached"
            } else {
                "to compute"
            };
            let _ = write!(
                out,
                "{:>3}. {:<w$}  {:<kw$}  {}  {state}",
                i + 1,
                s.id,
                s.kind.name(),
                &s.key[..16.min(s.key.len())],
            );
            if !s.deps.is_empty() {
                let _ = write!(out, "  ← {}", s.deps.join(", "));
            }
            out.push('\n');
        }
        out
    }
}

/// The Appendix N cells (one per method) and their table, when the recipe has `[theory]`.
fn theory_stages(p: &Planner<'_>) -> Result<Vec<Planned>, PlanError> {
    let Some(theory) = &p.recipe().theory else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut cells = Vec::new();
    for &m in &theory.methods {
        let cell = appendix_n::cell::plan(p, theory, m)?;
        cells.push(cell.id.clone());
        out.push(cell);
    }
    out.push(appendix_n::table::plan(cells)?);
    Ok(out)
}

/// Per world preset of the recipe's models a pretraining and an evaluation stage, and the
/// world report merging the evaluations.
fn world_stages(p: &Planner<'_>) -> Result<Vec<Planned>, PlanError> {
    let mut models: BTreeMap<String, WorldModel> = BTreeMap::new();
    for (name, model) in &p.recipe().models {
        if let Some(world) = WorldModel::of(name, model) {
            p.read(format!("models.{name}"));
            models.insert(world.label.clone(), world);
        }
    }
    if models.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut evals = Vec::new();
    for model in models.values() {
        out.push(pretrain::plan(p, model)?);
        out.extend(judge_tuning::plan(p, model)?);
        let eval = world_eval::plan(p, model)?;
        evals.push(eval.id.clone());
        out.push(eval);
    }
    out.push(world_report::plan(evals)?);
    Ok(out)
}

/// The pair family a method simulates (context distillation uses the RLCD pairs' o+), or
/// `None` for `base`.
fn pair_family(kind: MethodKind) -> Option<Method> {
    match kind {
        MethodKind::Rlcd | MethodKind::ContextDistillation => Some(Method::Rlcd),
        MethodKind::Rlaif => Some(Method::Rlaif),
        MethodKind::RlcdRescore => Some(Method::RlcdRescore),
        MethodKind::Base => None,
    }
}

/// The preference stages (paper §4.2): per task and simulator the pair simulations its
/// methods need (RLCD-Rescore relabels the RLCD pairs); per pair method a preference model
/// trained on them; per policy model and world task the oracle-labelled held-out pairs; and the
/// pair-label and PM-agreement tables.
fn preference_stages(p: &Planner<'_>) -> Result<Vec<Planned>, PlanError> {
    let recipe = p.recipe();
    let mut out: Vec<Planned> = Vec::new();
    let mut simulations: BTreeMap<String, (String, Option<crate::world::Task>)> = BTreeMap::new();
    let mut rewards = Vec::new();
    for task in recipe.tasks.keys() {
        let world_task = p.world_task(task)?;
        let mut simulate = |method: Method, simulator: &str, out: &mut Vec<Planned>| {
            let id = simulate::id(simulator, task, method);
            if !simulations.contains_key(&id) {
                simulations.insert(id.clone(), (task.clone(), world_task));
                out.push(simulate::plan(p, task, simulator, method)?);
            }
            Ok::<_, PlanError>(id)
        };
        let mut heldout: BTreeSet<String> = BTreeSet::new();
        for (name, method) in &recipe.methods {
            let Some(family) = pair_family(method.kind) else {
                continue;
            };
            let pairs = match (&method.pairs, &method.simulator) {
                (Some(_), _) => {
                    let stage = import_pairs::plan(p, name, task, family)?;
                    let id = stage.id.clone();
                    out.push(stage);
                    id
                }
                (None, Some(simulator)) => {
                    if family == Method::RlcdRescore {
                        simulate(Method::Rlcd, simulator, &mut out)?;
                    }
                    simulate(family, simulator, &mut out)?
                }
                (None, None) => continue,
            };
            if method.kind == MethodKind::ContextDistillation {
                continue;
            }
            p.read("eval.label_judge");
            let label_judge = recipe.eval.label_judge.as_deref();
            let (heldout_id, judged_id) = if world_task.is_some() || label_judge.is_some() {
                let id = heldout_pairs::id(&method.policy, task);
                let fresh = heldout.insert(method.policy.clone());
                if fresh {
                    out.push(heldout_pairs::plan(p, &method.policy, task)?);
                }
                let judged = match (world_task, label_judge) {
                    (None, Some(judge)) => {
                        if fresh {
                            out.extend(pair_judge::plan(
                                p,
                                task,
                                &id,
                                pair_judge::PairSource::Heldout,
                            )?);
                        }
                        Some(pair_judge::id(judge, &id))
                    }
                    _ => None,
                };
                (Some(id), judged)
            } else {
                (None, None)
            };
            let pm = reward::plan(p, name, task, pairs)?;
            let measured = pm_eval::plan(p, pm.id.clone(), heldout_id, judged_id)?;
            rewards.push(measured.id.clone());
            out.push(pm);
            out.push(measured);
        }
    }
    if !simulations.is_empty() {
        let mut sources: Vec<pair_labels::Source> = Vec::new();
        for (simulation, (task, world_task)) in simulations {
            let judged =
                pair_judge::plan(p, &task, &simulation, pair_judge::PairSource::Simulation)?;
            sources.push(pair_labels::Source {
                judged: judged.as_ref().map(|s| s.id.clone()),
                simulation,
                world_task,
            });
            out.extend(judged);
        }
        let world = sources
            .iter()
            .any(|s| s.world_task.is_some())
            .then(|| p.world());
        out.push(pair_labels::plan(sources, world)?);
    }
    if !rewards.is_empty() {
        out.push(pm_agreement::plan(rewards)?);
    }
    Ok(out)
}

/// The policy and evaluation stages (paper §3 steps 3–5, §4.3): per compared method and task
/// a policy (PPO against the method's PM, DPO on its pairs, or SFT on o+ for context
/// distillation; `base` is the unaligned policy model) and one sample per test prompt; per
/// task and judge the verdicts of every comparison on every axis; and the win-rate and
/// policy-training tables.
fn policy_stages(p: &Planner<'_>) -> Result<Vec<Planned>, PlanError> {
    let recipe = p.recipe();
    let comparisons = recipe.comparisons();
    p.read("eval.comparisons");
    if comparisons.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut policies = Vec::new();
    let mut judged = Vec::new();
    for task in recipe.tasks.keys() {
        for method in recipe.compared_methods() {
            let trained = policy::plan(p, &method, task)?;
            let trained_id = trained.as_ref().map(|s| s.id.clone());
            if let Some(stage) = trained {
                policies.push(stage.id.clone());
                out.push(stage);
            }
            out.push(generate::plan(p, &method, task, trained_id)?);
        }
        for name in &recipe.eval.judges {
            let stage = judge::plan(p, name, task, &comparisons)?;
            judged.push(stage.id.clone());
            out.push(stage);
        }
    }
    if recipe.eval.judges.len() > 1 {
        out.push(judge_agreement::plan(judged.clone())?);
    }
    if !judged.is_empty() {
        out.push(winrates::plan(judged)?);
    }
    if !policies.is_empty() {
        out.push(policy_training::plan(policies)?);
    }
    if let Some(stage) = judge_skill_stage(p, &comparisons)? {
        out.push(stage);
    }
    Ok(out)
}

/// The judging-skill table, when at least two simulators each have an RLCD method compared
/// with an RLAIF method of the same simulator and policy, on world tasks judged by the oracle.
fn judge_skill_stage(
    p: &Planner<'_>,
    comparisons: &[[String; 2]],
) -> Result<Option<Planned>, PlanError> {
    let recipe = p.recipe();
    if !recipe.eval.judges.iter().any(|j| j == judge_skill::JUDGE) {
        return Ok(None);
    }
    let mut levels: BTreeMap<String, judge_skill::Level> = BTreeMap::new();
    for [a, b] in comparisons {
        let (Some(ma), Some(mb)) = (recipe.methods.get(a), recipe.methods.get(b)) else {
            continue;
        };
        if (ma.kind, mb.kind) == (MethodKind::Rlcd, MethodKind::Rlaif)
            && ma.policy == mb.policy
            && ma.pairs.is_none()
            && mb.pairs.is_none()
            && let Some(sim) = ma
                .simulator
                .as_ref()
                .filter(|s| mb.simulator.as_ref() == Some(*s))
        {
            levels
                .entry(sim.clone())
                .or_insert_with(|| judge_skill::Level {
                    simulator: sim.clone(),
                    rlcd: a.clone(),
                    rlaif: b.clone(),
                });
        }
    }
    let mut axes = BTreeMap::new();
    for (name, task) in &recipe.tasks {
        if p.world_task(name)?.is_some()
            && let Some(axis) = task.axes.first()
        {
            axes.insert(name.clone(), axis.clone());
        }
    }
    if levels.len() < 2 || axes.is_empty() {
        return Ok(None);
    }
    Ok(Some(judge_skill::plan(
        levels.into_values().collect(),
        axes,
    )?))
}

/// A cycle among stages that cannot be ordered.
fn find_cycle(remaining: &[&Planned]) -> Vec<String> {
    let by_id: BTreeMap<&str, &Planned> = remaining.iter().map(|s| (s.id.as_str(), *s)).collect();
    // Every remaining stage has a remaining dependency, so walking first remaining deps must
    // revisit a stage.
    let mut path: Vec<&str> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut cur = remaining[0].id.as_str();
    loop {
        if !seen.insert(cur) {
            let start = path.iter().position(|p| *p == cur).unwrap_or(0);
            let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
            cycle.push(cur.to_string());
            return cycle;
        }
        path.push(cur);
        let next = by_id[cur]
            .deps
            .iter()
            .find(|d| by_id.contains_key(d.as_str()))
            .map(|d| d.as_str());
        match next {
            Some(n) => cur = n,
            None => return path.iter().map(|s| s.to_string()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, deps: &[&str]) -> Planned {
        Planned {
            id: id.into(),
            kind: StageKind::AppendixNCell,
            version: 1,
            config: serde_json::json!({ "b": 1, "a": [1.5, "x"] }),
            deps: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn order(specs: Vec<Planned>) -> Result<Plan, PlanError> {
        Plan::order("r", specs, vec![], BTreeSet::new())
    }

    #[test]
    fn orders_topologically_and_keys_chain() {
        let plan = order(vec![
            spec("t", &["a", "b"]),
            spec("a", &[]),
            spec("b", &["a"]),
        ])
        .expect("plan");
        let ids: Vec<&str> = plan.stages.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "t"]);
        assert!(plan.stages.iter().all(|s| s.key.len() == KEY_LEN));
        // A change upstream changes every downstream key.
        let mut changed = spec("a", &[]);
        changed.config = serde_json::json!({ "b": 2, "a": [1.5, "x"] });
        let plan2 = order(vec![spec("t", &["a", "b"]), changed, spec("b", &["a"])]).expect("plan");
        for (x, y) in plan.stages.iter().zip(&plan2.stages) {
            assert_ne!(x.key, y.key, "{}", x.id);
        }
    }

    #[test]
    fn cycles_and_unknown_upstreams_are_errors() {
        let err = order(vec![
            spec("a", &["c"]),
            spec("b", &["a"]),
            spec("c", &["b"]),
        ])
        .expect_err("cycle");
        let msg = err.to_string();
        assert!(msg.contains("a → c → b → a"), "{msg}");
        let err = order(vec![spec("appendix_n/rlaif", &["appendix_n/rlia"])]).expect_err("unknown");
        let msg = err.to_string();
        assert!(msg.contains("unknown stage `appendix_n/rlia`"), "{msg}");
        assert!(msg.contains("did you mean `appendix_n/rlaif`"), "{msg}");
        let err = order(vec![spec("a", &[]), spec("a", &[])]).expect_err("duplicate");
        assert!(err.to_string().contains("`a`"));
    }
}
