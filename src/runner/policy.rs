//! Running the policy and evaluation stages (paper §3 steps 3–5, §4.3): aligned policies
//! (PPO, DPO, context distillation), evaluation samples, judges' verdicts, and the win-rate
//! and policy-training tables.

use std::path::Path;
use std::time::Instant;

use burn::module::AutodiffModule;
use serde::{Deserialize, Serialize};

use super::preference::{
    load_lm, read_json, read_pairs, stage_err, task_of, to_json, world_task, write,
};
use super::{RunError, config_str, progress_bar, task_dialogues, upstream, world_and_templates};
use crate::eval::judge::{self, JudgeItem, Verdict};
use crate::eval::winrate::{WinCounts, length_controlled};
use crate::model::Lm;
use crate::plan::{Plan, Stage, generate_stage_id, policy_stage_id};
use crate::recipe::Resolved;
use crate::stages::generate::{self, SAMPLES, Sample, SampleSettings};
use crate::stages::policy::dpo::{self, DpoLog, DpoPair};
use crate::stages::policy::ppo::{self, PpoCheckpoints, PpoLog, PpoModels};
use crate::stages::policy::sft::{self, SftLog};
use crate::stages::policy::{self, PolicyFormat};
use crate::stages::prompts::{Split, contrast_prompts};
use crate::stages::reward;
use crate::store::Store;
use crate::tables::{self, PolicyTrainingRow, WinRateRow};

/// File names of the policy stages' artifacts.
pub mod files {
    /// What a policy stage did (JSON).
    pub const POLICY: &str = "training.json";
    /// A judge stage's rows (JSON).
    pub const JUDGED: &str = "judged.json";
}

/// What a policy stage records beside the checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// Recipe method name.
    pub method: String,
    /// Method kind.
    pub kind: String,
    /// `ppo`, `dpo` or `sft`.
    pub trainer: String,
    /// Simulator model name.
    pub simulator: String,
    /// Task name.
    pub task: String,
    /// PPO log.
    pub ppo: Option<PpoLog>,
    /// DPO log.
    pub dpo: Option<DpoLog>,
    /// Context-distillation log.
    pub sft: Option<SftLog>,
}

fn format_for(world_model: bool) -> PolicyFormat {
    if world_model {
        PolicyFormat::world()
    } else {
        PolicyFormat::pretrained()
    }
}

fn dep_dir(
    stage: &Stage,
    plan: &Plan,
    store: &Store,
    prefix: &str,
) -> Result<std::path::PathBuf, RunError> {
    let dep = stage
        .deps
        .iter()
        .find(|d| d.starts_with(prefix))
        .ok_or_else(|| stage_err(stage, format!("no `{prefix}` stage upstream")))?;
    Ok(upstream(store, stage, dep, plan.stage(dep).map(|s| s.key.clone()))?.dir)
}

/// The policy stage: PPO against the method's PM, DPO on its pairs, or SFT on o+.
pub(super) fn policy(
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
    let trainer = config_str(stage, "trainer", dir)?;
    let simulator = config_str(stage, "simulator", dir)?;
    let policy_model = config_str(stage, "policy", dir)?;
    let (task_name, task) = task_of(stage, resolved)?;
    let recipe = &resolved.recipe;
    let mut resumed_from: Option<usize> = None;
    let mut record = PolicyRecord {
        method,
        kind,
        trainer: trainer.clone(),
        simulator,
        task: task_name,
        ppo: None,
        dpo: None,
        sft: None,
    };
    with_backend!(resolved, B, device => {
        type T = burn::backend::Autodiff<B>;
        let (lm, world_model) = load_lm::<T>(stage, plan, resolved, store, &policy_model, &device)?;
        let format = format_for(world_model);
        let max_len = lm.model.config().max_seq_len;
        let err = |e: policy::PolicyError| stage_err(stage, e);
        let trained: Lm<T> = match trainer.as_str() {
            "ppo" => {
                let cfg = &recipe.ppo;
                let rdir = dep_dir(stage, plan, store, "reward/")?;
                let pm = reward::load_pm::<B>(&rdir, &device).map_err(|e| stage_err(stage, e))?;
                let value = crate::model::load::load_scalar_checkpoint::<T>(&rdir, &device)
                    .map_err(|e| stage_err(stage, e))?;
                let reference = lm.model.valid();
                let (_, templates) = world_and_templates(stage, resolved)?;
                let train = task_dialogues(stage, resolved, &task.prompts, task.n_prompts, Split::Train)?;
                let prompts: Vec<String> = contrast_prompts(&templates, &task.templates, &train, stage.seed)
                    .map_err(|e| stage_err(stage, e))?
                    .into_iter()
                    .map(|c| c.plain)
                    .collect();
                let pb = progress_bar(quiet, cfg.steps as u64, &stage.id);
                let ckpt = PpoCheckpoints {
                    dir: Some(store.work_dir(&stage.id, &stage.key)),
                    every: cfg.checkpoint_every,
                    stop_after: None,
                };
                if let Some(d) = &ckpt.dir {
                    std::fs::create_dir_all(d).map_err(super::io(d))?;
                    resumed_from = ppo::checkpoint_step(d);
                }
                let mut on_step = |s: &ppo::PpoStepLog| {
                    pb.set_position(s.step as u64 + 1);
                    pb.set_message(format!("score {:.3} kl {:.2} len {:.0}", s.score, s.kl, s.response_len));
                };
                let models = PpoModels { policy: lm, value, reference: &reference, pm: &pm };
                let (lm, _, log) = ppo::train_ppo(models, &format, &prompts, cfg, stage.seed, &ckpt, &mut on_step)
                    .map_err(err)?;
                pb.finish_and_clear();
                record.ppo = Some(log);
                lm
            }
            "dpo" => {
                let cfg = &recipe.dpo;
                let pairs = read_pairs(stage, &dep_dir(stage, plan, store, "simulate/")?)?;
                let reference = lm.model.valid();
                let mut encoded = Vec::with_capacity(pairs.len());
                for p in &pairs {
                    let (query, a) = format.encode(&lm, &p.prompt, &p.output_a).map_err(|e| stage_err(stage, e))?;
                    let (_, b) = format.encode(&lm, &p.prompt, &p.output_b).map_err(|e| stage_err(stage, e))?;
                    if query.len() + a.len().max(b.len()) <= max_len {
                        encoded.push(DpoPair { query, a, b, p_b: p.soft_label });
                    }
                }
                let pb = progress_bar(quiet, (encoded.len().div_ceil(cfg.batch_size.max(1)) * cfg.epochs) as u64, &stage.id);
                let mut on_step = |_: usize, loss: f64| {
                    pb.inc(1);
                    pb.set_message(format!("loss {loss:.3}"));
                };
                let (lm, log) = dpo::train_dpo(lm, &reference, &encoded, cfg, stage.seed, &mut on_step).map_err(err)?;
                pb.finish_and_clear();
                record.dpo = Some(log);
                lm
            }
            _ => {
                let cfg = &recipe.distill;
                let pairs = read_pairs(stage, &dep_dir(stage, plan, store, "simulate/")?)?;
                let examples: Vec<(String, String)> = pairs
                    .iter()
                    .filter_map(|p| p.positive_slot.map(|s| (p.prompt.clone(), p.output(s).to_string())))
                    .collect();
                let encoded = sft::encode_examples(&lm, &format, &examples, max_len).map_err(err)?;
                let pb = progress_bar(quiet, (encoded.len().div_ceil(cfg.batch_size.max(1)) * cfg.epochs) as u64, &stage.id);
                let mut on_step = |_: usize, loss: f64| {
                    pb.inc(1);
                    pb.set_message(format!("nll {loss:.3}"));
                };
                let (lm, log) = sft::train_sft(lm, &encoded, cfg, stage.seed, &mut on_step).map_err(err)?;
                pb.finish_and_clear();
                record.sft = Some(log);
                lm
            }
        };
        let inner = Lm { model: trained.model.valid(), tokenizer: trained.tokenizer };
        policy::save_policy(&inner, &format, dir).map_err(err)?;
        Ok::<_, RunError>(())
    })?;
    write(dir, files::POLICY, &to_json(stage, dir, &record)?)?;
    Ok(serde_json::json!({
        "seconds": t0.elapsed().as_secs_f64(),
        "trainer": trainer,
        "resumed_from_step": resumed_from,
    }))
}

/// The generate stage: one sample per test prompt of the method's policy.
pub(super) fn generate(
    stage: &Stage,
    plan: &Plan,
    resolved: &Resolved,
    store: &Store,
    dir: &Path,
    quiet: bool,
) -> Result<serde_json::Value, RunError> {
    let t0 = Instant::now();
    let method = config_str(stage, "method", dir)?;
    let policy_model = config_str(stage, "policy", dir)?;
    let (task_name, task) = task_of(stage, resolved)?;
    let (_, templates) = world_and_templates(stage, resolved)?;
    let eval = &resolved.recipe.eval;
    let test = task_dialogues(stage, resolved, &task.prompts, eval.n_prompts, Split::Test)?;
    let prompts: Vec<String> = contrast_prompts(&templates, &task.templates, &test, stage.seed)
        .map_err(|e| stage_err(stage, e))?
        .into_iter()
        .map(|c| c.plain)
        .collect();
    let settings = SampleSettings {
        temperature: eval.temperature,
        max_new_tokens: eval.max_new_tokens,
        batch_size: resolved.recipe.simulate.batch_size,
    };
    let pb = progress_bar(quiet, test.len() as u64, &stage.id);
    let trained = policy_stage_id(&method, &task_name);
    let samples = with_backend!(resolved, B, device => {
        let (lm, format) = if stage.deps.contains(&trained) {
            let a = upstream(store, stage, &trained, plan.stage(&trained).map(|s| s.key.clone()))?;
            policy::load_policy::<B>(&a.dir, &device).map_err(|e| stage_err(stage, e))?
        } else {
            let (lm, world_model) = load_lm::<B>(stage, plan, resolved, store, &policy_model, &device)?;
            (lm, format_for(world_model))
        };
        generate::generate_samples(&lm, &format, &test, &prompts, &settings, stage.seed, &mut |n| pb.set_position(n as u64))
            .map_err(|e| stage_err(stage, e))
    })?;
    pb.finish_and_clear();
    write(dir, SAMPLES, &to_json(stage, dir, &samples)?)?;
    Ok(serde_json::json!({
        "seconds": t0.elapsed().as_secs_f64(),
        "samples": samples.len(),
        "unfinished": samples.iter().filter(|s| !s.finished).count(),
    }))
}

fn simulator_label(resolved: &Resolved, a: &str, b: &str) -> String {
    let sim = |m: &str| {
        resolved
            .recipe
            .methods
            .get(m)
            .and_then(|s| s.simulator.clone())
    };
    match (sim(a), sim(b)) {
        (Some(x), Some(y)) if x == y => x,
        (Some(x), Some(y)) => format!("{x}/{y}"),
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => "-".into(),
    }
}

/// The judge stage: verdicts of one judge on every comparison and axis of one task.
pub(super) fn judge(
    stage: &Stage,
    plan: &Plan,
    resolved: &Resolved,
    store: &Store,
    dir: &Path,
) -> Result<serde_json::Value, RunError> {
    let t0 = Instant::now();
    let judge_name = config_str(stage, "judge", dir)?;
    let (task_name, task) = task_of(stage, resolved)?;
    let (world, templates) = world_and_templates(stage, resolved)?;
    let batch = resolved.recipe.simulate.batch_size;
    let samples_of = |method: &str| -> Result<Vec<Sample>, RunError> {
        let id = generate_stage_id(method, &task_name);
        let a = upstream(store, stage, &id, plan.stage(&id).map(|s| s.key.clone()))?;
        read_json(stage, &a.dir, SAMPLES)
    };
    let mut rows = Vec::new();
    with_backend!(resolved, B, device => {
        let lm_judge = match judge_name.strip_prefix("lm:") {
            Some(model) => Some(load_lm::<B>(stage, plan, resolved, store, model, &device)?),
            None => None,
        };
        let rm_judge = match judge_name.strip_prefix("rm:") {
            Some(method) => {
                let rdir = dep_dir(stage, plan, store, &format!("reward/{method}/"))?;
                Some(reward::load_pm::<B>(&rdir, &device).map_err(|e| stage_err(stage, e))?)
            }
            None => None,
        };
        for [a, b] in resolved.recipe.comparisons() {
            let (sa, sb) = (samples_of(&a)?, samples_of(&b)?);
            let by_id: std::collections::BTreeMap<&str, &Sample> =
                sb.iter().map(|s| (s.prompt_id.as_str(), s)).collect();
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
            for axis in &task.axes {
                let verdicts: Vec<Verdict> = if let Some((lm, world_model)) = &lm_judge {
                    let template = crate::templates::judge_template(&task.axes, axis)
                        .ok_or_else(|| stage_err(stage, format!("no judge question for axis `{axis}`")))?;
                    let prefix = if *world_model { crate::stages::world_report::BOS } else { "" };
                    judge::judge_lm(lm, prefix, &templates, template, &items, stage.seed, resolved.recipe.eval.judge_order, batch)
                        .map_err(|e| stage_err(stage, e))?
                } else if let Some(pm) = &rm_judge {
                    judge::judge_rm(pm, &items, batch).map_err(|e| stage_err(stage, e))?
                } else {
                    let wt = world_task(stage, task)?;
                    judge::judge_oracle(&world, wt, axis, &items)
                };
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
                rows.push(WinRateRow {
                    task: task_name.clone(),
                    axis: axis.clone(),
                    method_a: a.clone(),
                    method_b: b.clone(),
                    simulator: simulator_label(resolved, &a, &b),
                    judge: judge_name.clone(),
                    counts,
                    lc_win_rate: length_controlled(&scores, &diffs),
                    avg_len_a: matched.iter().map(|(x, _)| x.len as f64).sum::<f64>() / n,
                    avg_len_b: matched.iter().map(|(_, y)| y.len as f64).sum::<f64>() / n,
                });
            }
        }
        Ok::<_, RunError>(())
    })?;
    write(dir, files::JUDGED, &to_json(stage, dir, &rows)?)?;
    Ok(serde_json::json!({ "seconds": t0.elapsed().as_secs_f64(), "rows": rows.len() }))
}

/// The win-rate table: every judge stage's rows.
pub(super) fn winrates_table(
    stage: &Stage,
    plan: &Plan,
    store: &Store,
    dir: &Path,
) -> Result<serde_json::Value, RunError> {
    let mut rows = Vec::new();
    for dep in &stage.deps {
        let a = upstream(store, stage, dep, plan.stage(dep).map(|s| s.key.clone()))?;
        let judged: Vec<WinRateRow> = read_json(stage, &a.dir, files::JUDGED)?;
        rows.extend(judged);
    }
    let frame = tables::winrates_frame(&rows)?;
    write(
        dir,
        &format!("{}.parquet", tables::WINRATES),
        &tables::render_parquet(&frame)?,
    )?;
    Ok(serde_json::json!({ "rows": rows.len() }))
}

/// The policy-training table: every policy stage's log, summarised.
pub(super) fn policy_training_table(
    stage: &Stage,
    plan: &Plan,
    store: &Store,
    dir: &Path,
) -> Result<serde_json::Value, RunError> {
    let mut rows = Vec::new();
    for dep in &stage.deps {
        let a = upstream(store, stage, dep, plan.stage(dep).map(|s| s.key.clone()))?;
        let r: PolicyRecord = read_json(stage, &a.dir, files::POLICY)?;
        let mut row = PolicyTrainingRow {
            method: r.method,
            simulator: r.simulator,
            task: r.task,
            trainer: r.trainer,
            steps: 0,
            initial_reward: None,
            final_reward: None,
            final_kl: None,
            final_len: None,
            final_loss: f64::NAN,
            extra: None,
            seconds: 0.0,
        };
        if let Some(log) = &r.ppo {
            row.steps = log.steps.len() as u64;
            row.initial_reward = log.steps.first().map(|s| s.score);
            if let Some(last) = log.steps.last() {
                row.final_reward = Some(last.score);
                row.final_kl = Some(last.kl);
                row.final_len = Some(last.response_len);
                row.final_loss = last.loss;
            }
            row.seconds = log.seconds;
        } else if let Some(log) = &r.dpo {
            row.steps = log.steps as u64;
            row.final_loss = log.after.loss;
            row.extra = Some(log.after.margin);
            row.seconds = log.seconds;
        } else if let Some(log) = &r.sft {
            row.steps = log.steps as u64;
            row.final_loss = log.nll_after;
            row.extra = Some(log.nll_before);
            row.seconds = log.seconds;
        }
        rows.push(row);
    }
    let frame = tables::policy_training_frame(&rows)?;
    write(
        dir,
        &format!("{}.parquet", tables::POLICY_TRAINING),
        &tables::render_parquet(&frame)?,
    )?;
    Ok(serde_json::json!({ "rows": rows.len() }))
}
