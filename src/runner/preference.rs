//! Running the preference stages (paper §4.2): simulated pairs, oracle-labelled held-out
//! pairs, preference models, and the pair-label and PM-agreement tables.

use std::fs;
use std::path::Path;
use std::time::Instant;

use burn::tensor::backend::Backend;

use super::{
    RunError, bad, config_str, io, progress_bar, task_dialogues, upstream, world_and_templates,
};
use crate::eval::pm_agreement::{self, HeldoutPair};
use crate::model::Lm;
use crate::plan::{Plan, Stage, pretrain_stage_id};
use crate::recipe::{Resolved, TaskSpec};
use crate::stages::prompts::Split;
use crate::stages::reward::{self, Pm, PmFormat, RewardLog};
use crate::stages::simulate::{self, Pair, Simulation, Simulator};
use crate::stages::world_report::ReportConfig;
use crate::store::Store;
use crate::tables::{self, PairLabelsRow, PmAgreementRow};
use crate::world::{Task, World};

/// File names of the preference stages' artifacts.
pub mod files {
    /// Simulated pairs (parquet).
    pub const PAIRS: &str = "pairs.parquet";
    /// What a simulation dropped and generated (JSON).
    pub const SIMULATION: &str = "simulation.json";
    /// Oracle-labelled held-out pairs (JSON).
    pub const HELDOUT: &str = "heldout.json";
    /// A preference model's training log and agreement (JSON).
    pub const REWARD: &str = "reward.json";
}

/// The counts a simulation stage records beside its pairs.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SimulationRecord {
    /// Pair family: `rlcd`, `rlaif` or `rlcd-rescore`.
    pub family: String,
    /// Simulator model name.
    pub simulator: String,
    /// Task name.
    pub task: String,
    /// Pairs written.
    pub pairs: usize,
    /// Prompts dropped because an output never ended its turn.
    pub dropped: usize,
    /// Ids of the dropped prompts.
    pub dropped_ids: Vec<String>,
    /// Prompts attempted.
    pub attempted: usize,
    /// Sequences generated, re-samples included.
    pub sequences: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// What a reward stage records beside the preference model.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RewardRecord {
    /// Recipe method name.
    pub method: String,
    /// Method kind (`rlcd`, `rlaif`, `rlcd-rescore`).
    pub kind: String,
    /// Simulator model name.
    pub simulator: String,
    /// Task name.
    pub task: String,
    /// Training log.
    pub log: RewardLog,
    /// Agreement with the oracle on held-out pairs of policy samples (world tasks).
    pub agreement: Option<pm_agreement::Agreement>,
}

pub(super) fn stage_err(stage: &Stage, source: impl std::fmt::Display) -> RunError {
    RunError::Stage {
        stage: stage.id.clone(),
        message: source.to_string(),
    }
}

pub(super) fn task_of<'r>(
    stage: &Stage,
    resolved: &'r Resolved,
) -> Result<(String, &'r TaskSpec), RunError> {
    let name = stage
        .config
        .pointer("/task/task")
        .or_else(|| stage.config.get("task"))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let spec = resolved
        .recipe
        .tasks
        .get(&name)
        .ok_or_else(|| stage_err(stage, format!("the recipe has no task `{name}`")))?;
    Ok((name, spec))
}

/// Loads model `name` of the recipe: a world preset from its pretraining stage, a GGUF file or
/// a fetched asset. Returns the model and whether it is a built-in world model.
pub(super) fn load_lm<B: Backend>(
    stage: &Stage,
    plan: &Plan,
    resolved: &Resolved,
    store: &Store,
    name: &str,
    device: &B::Device,
) -> Result<(Lm<B>, bool), RunError> {
    let spec = resolved
        .recipe
        .models
        .get(name)
        .ok_or_else(|| stage_err(stage, format!("the recipe has no model `{name}`")))?;
    if let Some(preset) = spec.preset.as_deref() {
        if crate::model::llama::is_world_preset(preset) {
            let dep = pretrain_stage_id(preset);
            let a = upstream(store, stage, &dep, plan.stage(&dep).map(|s| s.key.clone()))?;
            let lm = crate::stages::pretrain::load_world_lm::<B>(&a.dir, device)
                .map_err(|e| stage_err(stage, e))?;
            return Ok((lm, true));
        }
        return Err(stage_err(
            stage,
            format!(
                "model `{name}`: preset `{preset}` has no weights to load; use a world preset, \
                 `gguf = \"<path>\"` or `asset = \"<name>\"`"
            ),
        ));
    }
    let reference = match (&spec.gguf, &spec.asset) {
        (Some(path), _) => path.display().to_string(),
        (None, Some(asset)) => asset.clone(),
        (None, None) => {
            return Err(stage_err(stage, format!("model `{name}` names no weights")));
        }
    };
    let path = crate::assets::resolve_model(&resolved.root, &reference)
        .map_err(|e| stage_err(stage, e))?;
    if let Some(sha) = &spec.sha256 {
        crate::assets::verify(&path, sha).map_err(|e| stage_err(stage, e))?;
    }
    let lm = Lm::from_gguf_path(&path, device).map_err(|e| stage_err(stage, e))?;
    Ok((lm, false))
}

pub(super) fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), RunError> {
    let p = dir.join(name);
    fs::write(&p, bytes).map_err(io(&p))
}

pub(super) fn read_json<T: serde::de::DeserializeOwned>(
    stage: &Stage,
    dir: &Path,
    name: &str,
) -> Result<T, RunError> {
    let p = dir.join(name);
    let bytes = fs::read(&p).map_err(io(&p))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| bad(stage, format!("unreadable {name} ({e})"), p.clone()))
}

pub(super) fn to_json<T: serde::Serialize>(
    stage: &Stage,
    dir: &Path,
    value: &T,
) -> Result<Vec<u8>, RunError> {
    serde_json::to_vec_pretty(value)
        .map_err(|e| bad(stage, format!("cannot serialise ({e})"), dir.to_path_buf()))
}

pub(super) fn read_pairs(stage: &Stage, dir: &Path) -> Result<Vec<Pair>, RunError> {
    let p = dir.join(files::PAIRS);
    let frame = tables::read_parquet(&p)?;
    simulate::pairs_from_frame(&frame).map_err(|e| bad(stage, e.to_string(), p.clone()))
}

/// The simulate stage: pairs of one family, simulator and task.
pub(super) fn simulate(
    stage: &Stage,
    plan: &Plan,
    resolved: &Resolved,
    store: &Store,
    dir: &Path,
    quiet: bool,
) -> Result<serde_json::Value, RunError> {
    let t0 = Instant::now();
    let family = config_str(stage, "family", dir)?;
    let simulator = config_str(stage, "simulator", dir)?;
    let (task_name, task) = task_of(stage, resolved)?;
    let (_, templates) = world_and_templates(stage, resolved)?;
    let cfg = &resolved.recipe.simulate;
    let train = task_dialogues(stage, resolved, &task.prompts, task.n_prompts, Split::Train)?;
    let total = train.len().min(cfg.n_prompts.unwrap_or(usize::MAX)) as u64;
    let pb = progress_bar(quiet, total, &stage.id);
    let upstream_pairs = if family == "rlcd-rescore" {
        let dep = crate::plan::simulate_stage_id(&simulator, &task_name, "rlcd");
        let a = upstream(store, stage, &dep, plan.stage(&dep).map(|s| s.key.clone()))?;
        let record: SimulationRecord = read_json(stage, &a.dir, files::SIMULATION)?;
        Some((read_pairs(stage, &a.dir)?, record))
    } else {
        None
    };
    let sim: Simulation = with_backend!(resolved, B, device => {
        let (lm, world_model) = load_lm::<B>(stage, plan, resolved, store, &simulator, &device)?;
        let base = if world_model { Simulator::world(&lm) } else { Simulator::pretrained(&lm) };
        let sim = base.with_progress(|done, _| pb.set_position(done as u64));
        let out = match (family.as_str(), &upstream_pairs) {
            ("rlcd", _) => sim.simulate_rlcd(&templates, &task.templates, &train, cfg, stage.seed),
            ("rlaif", _) => sim.simulate_rlaif(&templates, &task.templates, &train, cfg, stage.seed),
            ("rlcd-rescore", Some((pairs, record))) => sim
                .rescore(&templates, &task.templates, pairs, cfg.batch_size)
                .map(|pairs| Simulation {
                    pairs,
                    dropped: record.dropped,
                    dropped_ids: record.dropped_ids.clone(),
                    attempted: record.attempted,
                    sequences: 0,
                }),
            (other, _) => return Err(stage_err(stage, format!("unknown pair family `{other}`"))),
        };
        out.map_err(|e| stage_err(stage, e))
    })?;
    pb.finish_and_clear();
    let frame = simulate::pairs_to_frame(&sim.pairs).map_err(|e| stage_err(stage, e))?;
    write(dir, files::PAIRS, &tables::render_parquet(&frame)?)?;
    let record = SimulationRecord {
        family,
        simulator,
        task: task_name,
        pairs: sim.pairs.len(),
        dropped: sim.dropped,
        dropped_ids: sim.dropped_ids,
        attempted: sim.attempted,
        sequences: sim.sequences,
        seconds: t0.elapsed().as_secs_f64(),
    };
    write(dir, files::SIMULATION, &to_json(stage, dir, &record)?)?;
    Ok(serde_json::json!({
        "seconds": record.seconds,
        "pairs": record.pairs,
        "dropped": record.dropped,
    }))
}

pub(super) fn world_task(stage: &Stage, task: &TaskSpec) -> Result<Task, RunError> {
    task.prompts
        .strip_prefix("world:")
        .and_then(Task::from_name)
        .ok_or_else(|| {
            stage_err(
                stage,
                format!(
                    "`{}` is not a built-in world prompt set; the oracle cannot judge it",
                    task.prompts
                ),
            )
        })
}

/// The held-out stage: two independent policy samples per test prompt, oracle-labelled.
pub(super) fn heldout_pairs(
    stage: &Stage,
    plan: &Plan,
    resolved: &Resolved,
    store: &Store,
    dir: &Path,
) -> Result<serde_json::Value, RunError> {
    let t0 = Instant::now();
    let policy = config_str(stage, "policy", dir)?;
    let (_, task) = task_of(stage, resolved)?;
    let wt = world_task(stage, task)?;
    let (world, templates) = world_and_templates(stage, resolved)?;
    let test = task_dialogues(stage, resolved, &task.prompts, task.n_prompts, Split::Test)?;
    let sim = &resolved.recipe.simulate;
    let cfg = ReportConfig {
        max_new_tokens: sim.max_new_tokens,
        batch_size: sim.batch_size,
        ..ReportConfig::default()
    };
    let n = resolved.recipe.reward.heldout_pairs;
    let pairs: Vec<HeldoutPair> = with_backend!(resolved, B, device => {
        let (lm, _) = load_lm::<B>(stage, plan, resolved, store, &policy, &device)?;
        pm_agreement::sample_heldout_pairs(
            &lm, &world, &templates, wt, &task.templates, &test, n, &cfg, stage.seed,
        )
        .map_err(|e| stage_err(stage, e))
    })?;
    write(dir, files::HELDOUT, &to_json(stage, dir, &pairs)?)?;
    Ok(serde_json::json!({ "seconds": t0.elapsed().as_secs_f64(), "pairs": pairs.len() }))
}

/// The reward stage: a PM on the policy-size model trained on one method's pairs, saved, and
/// measured against the oracle on the held-out pairs.
pub(super) fn reward(
    stage: &Stage,
    plan: &Plan,
    resolved: &Resolved,
    store: &Store,
    dir: &Path,
    quiet: bool,
) -> Result<serde_json::Value, RunError> {
    let t0 = Instant::now();
    let method = config_str(stage, "method", dir)?;
    let kind = config_str(stage, "kind", dir)?;
    let simulator = config_str(stage, "simulator", dir)?;
    let policy = config_str(stage, "policy", dir)?;
    let (task_name, _) = task_of(stage, resolved)?;
    let mut pairs = None;
    let mut heldout: Option<Vec<HeldoutPair>> = None;
    for dep in &stage.deps {
        let key = plan.stage(dep).map(|s| s.key.clone());
        if dep.starts_with("simulate/") {
            let a = upstream(store, stage, dep, key)?;
            pairs = Some(read_pairs(stage, &a.dir)?);
        } else if dep.starts_with("heldout_pairs/") {
            let a = upstream(store, stage, dep, key)?;
            heldout = Some(read_json(stage, &a.dir, files::HELDOUT)?);
        }
    }
    let pairs = pairs.ok_or_else(|| stage_err(stage, "no simulate stage upstream"))?;
    let cfg = &resolved.recipe.reward;
    let batches = pairs.len().div_ceil(cfg.batch_size.max(1)) * cfg.epochs;
    let pb = progress_bar(quiet, batches as u64, &stage.id);
    let record = with_backend!(resolved, B, device => {
        type T = burn::backend::Autodiff<B>;
        let (lm, world_model) = load_lm::<T>(stage, plan, resolved, store, &policy, &device)?;
        let format = if world_model {
            PmFormat::world(cfg.max_len)
        } else {
            PmFormat { prefix: String::new(), end_of_turn: String::new(), max_len: cfg.max_len }
        };
        let pm = crate::model::seeded_init::<T, _>(&device, stage.seed, || Pm::from_lm(lm, format))
            .map_err(|e| stage_err(stage, e))?;
        let mut on_step = |_: usize, loss: f64| {
            pb.inc(1);
            pb.set_message(format!("loss {loss:.3}"));
        };
        let (pm, log) = reward::train_reward(pm, &pairs, cfg, stage.seed, &mut on_step)
            .map_err(|e| stage_err(stage, e))?;
        let pm = pm.valid();
        reward::save_pm(&pm, dir).map_err(|e| stage_err(stage, e))?;
        let agreement = match &heldout {
            Some(h) if !h.is_empty() => {
                let a: Vec<(&str, &str)> = h.iter().map(|p| (p.prompt.as_str(), p.output_a.as_str())).collect();
                let b: Vec<(&str, &str)> = h.iter().map(|p| (p.prompt.as_str(), p.output_b.as_str())).collect();
                let ra = reward::score_outputs(&pm, &a, cfg.batch_size).map_err(|e| stage_err(stage, e))?;
                let rb = reward::score_outputs(&pm, &b, cfg.batch_size).map_err(|e| stage_err(stage, e))?;
                let rewards: Vec<(f64, f64)> = ra.into_iter().zip(rb).collect();
                let truth: Vec<bool> = h.iter().map(HeldoutPair::a_better).collect();
                Some(pm_agreement::agreement(&rewards, &truth).map_err(|e| stage_err(stage, e))?)
            }
            _ => None,
        };
        Ok::<_, RunError>(RewardRecord { method, kind, simulator, task: task_name, log, agreement })
    })?;
    pb.finish_and_clear();
    write(dir, files::REWARD, &to_json(stage, dir, &record)?)?;
    Ok(serde_json::json!({
        "seconds": t0.elapsed().as_secs_f64(),
        "final_loss": record.log.final_loss,
        "accuracy": record.agreement.as_ref().and_then(|a| a.rate.rate().ok()),
    }))
}

/// Whether the oracle prefers B (`Some(true)`), A (`Some(false)`) or neither, for a pair of
/// `task`.
fn oracle_truth(world: &World, task: Task, pair: &Pair) -> Option<bool> {
    let a = world.main_axis_score(task, &pair.turns, &pair.output_a);
    let b = world.main_axis_score(task, &pair.turns, &pair.output_b);
    (a != b).then_some(b > a)
}

/// The pair-label table: every simulation's labels against the oracle.
pub(super) fn pair_labels(
    stage: &Stage,
    plan: &Plan,
    resolved: &Resolved,
    store: &Store,
    dir: &Path,
) -> Result<serde_json::Value, RunError> {
    let (world, _) = world_and_templates(stage, resolved)?;
    let mut rows = Vec::new();
    for dep in &stage.deps {
        let a = upstream(store, stage, dep, plan.stage(dep).map(|s| s.key.clone()))?;
        let record: SimulationRecord = read_json(stage, &a.dir, files::SIMULATION)?;
        let pairs = read_pairs(stage, &a.dir)?;
        let task = resolved
            .recipe
            .tasks
            .get(&record.task)
            .and_then(|t| t.prompts.strip_prefix("world:"))
            .and_then(Task::from_name);
        let oracle = task.map(|t| simulate::label_accuracy(&pairs, |p| oracle_truth(&world, t, p)));
        let (mut chosen, mut rejected, mut n) = (0.0, 0.0, 0usize);
        for p in &pairs {
            let (c, r) = match p.preferred() {
                Some(simulate::Slot::A) => (p.len_a, p.len_b),
                Some(simulate::Slot::B) => (p.len_b, p.len_a),
                None => continue,
            };
            chosen += c as f64;
            rejected += r as f64;
            n += 1;
        }
        rows.push(PairLabelsRow {
            method: record.family,
            simulator: record.simulator,
            task: record.task,
            n_pairs: pairs.len() as u64,
            dropped: record.dropped as u64,
            oracle,
            mean_len_chosen: chosen / n.max(1) as f64,
            mean_len_rejected: rejected / n.max(1) as f64,
        });
    }
    let frame = tables::pair_labels_frame(&rows)?;
    write(
        dir,
        &format!("{}.parquet", tables::PAIR_LABELS),
        &tables::render_parquet(&frame)?,
    )?;
    Ok(serde_json::json!({ "rows": rows.len() }))
}

/// The PM-agreement table: every preference model against the oracle's held-out labels.
pub(super) fn pm_agreement_table(
    stage: &Stage,
    plan: &Plan,
    store: &Store,
    dir: &Path,
) -> Result<serde_json::Value, RunError> {
    let mut rows = Vec::new();
    for dep in &stage.deps {
        let a = upstream(store, stage, dep, plan.stage(dep).map(|s| s.key.clone()))?;
        let r: RewardRecord = read_json(stage, &a.dir, files::REWARD)?;
        let agreement = r.agreement.clone();
        rows.push(PmAgreementRow {
            method: r.kind,
            simulator: r.simulator,
            task: r.task,
            agreement: agreement.as_ref().map(|g| g.rate),
            mean_prob: agreement.as_ref().map(|g| g.mean_prob),
            train_loss: r.log.final_loss,
            heldout_accuracy: r.log.heldout.as_ref().and_then(|h| h.rate.rate().ok()),
        });
    }
    let frame = tables::pm_agreement_frame(&rows)?;
    write(
        dir,
        &format!("{}.parquet", tables::PM_AGREEMENT),
        &tables::render_parquet(&frame)?,
    )?;
    Ok(serde_json::json!({ "rows": rows.len() }))
}
