//! Handing a run's results to other tools: a trained policy or preference model as a Hugging
//! Face checkpoint, and the simulated preference pairs (paper §3, §4.2) as the
//! `prompt` / `chosen` / `rejected` rows TRL's `DPOTrainer` and `RewardTrainer` read.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::IoError;
use crate::model::gguf::MetaValue;
use crate::model::{Cpu, GgufPrecision, ModelError};
use crate::plan::{Plan, Stage};
use crate::runner::RunError;
use crate::stages::StageKind;
use crate::stages::simulate::{Pair, Slot, read_pairs};
use crate::store::{Artifact, Store};

/// Errors of `rlcd export`.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The run directory or the store cannot be read.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The run has no stage matching the request.
    #[error("{message}\n  fix: {fix}")]
    NotFound {
        /// What is missing.
        message: String,
        /// How to ask for something the run has.
        fix: String,
    },
    /// A stage's artifact cannot be read.
    #[error("stage `{stage}`: {source}")]
    Stage {
        /// The stage.
        stage: String,
        /// What failed.
        #[source]
        source: Box<crate::stages::StageError>,
    },
    /// The model cannot be written in the format asked for.
    #[error("{message}\n  fix: {fix}")]
    Format {
        /// Why not.
        message: String,
        /// What to ask for instead.
        fix: String,
    },
    /// Loading or writing a model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Writing an output file failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// Building the Parquet table failed.
    #[error("{}: cannot build the pairs table: {source}", path.display())]
    Parquet {
        /// The output file.
        path: PathBuf,
        /// The polars error.
        #[source]
        source: polars::error::PolarsError,
    },
    /// Serialising the Parquet table failed.
    #[error("{}: {source}", path.display())]
    Table {
        /// The output file.
        path: PathBuf,
        /// The table error.
        #[source]
        source: crate::tables::TableError,
    },
}

/// Which model of a method to export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// The aligned policy (`policy/<method>/<task>`).
    Policy,
    /// The preference model (`reward/<method>/<task>`).
    Pm,
}

/// A run's plan and the store its artifacts live in.
pub struct Run {
    dir: PathBuf,
    plan: Plan,
    store: Store,
}

impl Run {
    /// Opens run directory `dir` (`results/runs/<recipe>/<run-id>/`).
    pub fn open(dir: &Path) -> Result<Self, ExportError> {
        let (plan, store) = crate::runner::open_run(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            plan,
            store,
        })
    }

    fn stage(&self, id: &str) -> Option<&Stage> {
        self.plan.stages.iter().find(|s| s.id == id)
    }

    fn artifact(&self, stage: &Stage) -> Result<Artifact, ExportError> {
        self.store.lookup(&stage.id, &stage.key).ok_or_else(|| {
            ExportError::Run(RunError::Missing {
                stage: stage.id.clone(),
                key: stage.key.clone(),
                root: self.store.root().to_path_buf(),
                run_dir: self.dir.clone(),
            })
        })
    }

    /// The tasks of the stages `<prefix>/<method>/<task>`.
    fn tasks_of(&self, prefix: &str, method: &str) -> Vec<String> {
        let head = format!("{prefix}/{method}/");
        self.plan
            .stages
            .iter()
            .filter_map(|s| s.id.strip_prefix(&head).map(str::to_string))
            .collect()
    }

    /// The stage `<prefix>/<method>/<task>`, the task defaulting to the only one there is.
    fn method_stage(
        &self,
        prefix: &str,
        method: &str,
        task: Option<&str>,
    ) -> Result<&Stage, ExportError> {
        let tasks = self.tasks_of(prefix, method);
        let listed = |v: &[String]| v.join(", ");
        let task = match task {
            Some(t) => t.to_string(),
            None if tasks.len() == 1 => tasks[0].clone(),
            None if tasks.is_empty() => {
                let trained: BTreeSet<String> = self
                    .plan
                    .stages
                    .iter()
                    .filter_map(|s| s.id.strip_prefix(&format!("{prefix}/")))
                    .filter_map(|rest| rest.split('/').next().map(str::to_string))
                    .collect();
                return Err(ExportError::NotFound {
                    message: format!(
                        "method `{method}` has no `{prefix}` stage in this run (methods with \
                         one: {})",
                        if trained.is_empty() {
                            "none".to_string()
                        } else {
                            trained.into_iter().collect::<Vec<_>>().join(", ")
                        }
                    ),
                    fix: "pass one of those to --method (`base` is never trained; a PPO \
                          method has a preference model, a DPO or distilled one has none)"
                        .into(),
                });
            }
            None => {
                return Err(ExportError::NotFound {
                    message: format!(
                        "method `{method}` was trained on several tasks: {}",
                        listed(&tasks)
                    ),
                    fix: "choose one with --task".into(),
                });
            }
        };
        let id = format!("{prefix}/{method}/{task}");
        self.stage(&id).ok_or_else(|| ExportError::NotFound {
            message: format!("this run has no stage `{id}`"),
            fix: format!("tasks of `{method}`: {}", listed(&tasks)),
        })
    }
}

/// Provenance of an exported model (`rlcd_export.json` beside a checkpoint, `rlcd.export.*`
/// keys in a GGUF file).
#[derive(Serialize)]
struct Provenance<'a> {
    run_dir: String,
    stage: &'a str,
    key: &'a str,
    what: &'a str,
    /// How the runner formatted the model's inputs (prefix, end-of-turn marker, stops).
    format: serde_json::Value,
}

/// The file format of an exported model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    /// A Hugging Face checkpoint directory (f32 safetensors, `config.json`, tokenizer files,
    /// `rlcd_export.json`).
    Hf,
    /// One llama.cpp GGUF file, its matrices in the given precision; provenance goes into
    /// `rlcd.export.*` metadata keys.
    Gguf(GgufPrecision),
}

/// Writes the policy (or preference model) of `method` on `task` in run `run` to `out` in
/// `format`; returns the stage exported.
pub fn export_model(
    run: &Run,
    method: &str,
    task: Option<&str>,
    what: What,
    format: ModelFormat,
    out: &Path,
) -> Result<String, ExportError> {
    let device = Default::default();
    let stage_err = |stage: &Stage| {
        let id = stage.id.clone();
        move |e: crate::stages::StageError| ExportError::Stage {
            stage: id,
            source: Box::new(e),
        }
    };
    if what == What::Pm && format != ModelFormat::Hf {
        return Err(ExportError::Format {
            message: "a preference model has a scalar head, which llama.cpp's GGUF \
                      architectures do not describe"
                .into(),
            fix: "export it with `--format hf` (a `…ForSequenceClassification` checkpoint)".into(),
        });
    }
    let what_name = match what {
        What::Policy => "policy",
        What::Pm => "preference model",
    };
    fn provenance<'a>(
        run: &Run,
        stage: &'a Stage,
        what: &'a str,
        format: serde_json::Value,
    ) -> Provenance<'a> {
        Provenance {
            run_dir: run.dir.display().to_string(),
            stage: &stage.id,
            key: &stage.key,
            what,
            format,
        }
    }
    let stage = match what {
        What::Policy => {
            let stage = run.method_stage("policy", method, task)?;
            let artifact = run.artifact(stage)?;
            let (lm, text_format) =
                crate::stages::policy::load_policy::<Cpu>(&artifact.dir, &device)
                    .map_err(|e| stage_err(stage)(e.into()))?;
            let text_format = serde_json::to_value(text_format).unwrap_or_default();
            match format {
                ModelFormat::Hf => {
                    crate::model::hf::save_hf(&lm.model, &lm.tokenizer, out)?;
                    write_provenance(out, &provenance(run, stage, what_name, text_format))?;
                }
                ModelFormat::Gguf(precision) => {
                    let p = provenance(run, stage, what_name, text_format);
                    let text = |v: &str| MetaValue::String(v.to_string());
                    let meta = [
                        ("general.name", text(&format!("rlcd {}", stage.id))),
                        ("rlcd.export.run_dir", text(&p.run_dir)),
                        ("rlcd.export.stage", text(p.stage)),
                        ("rlcd.export.key", text(p.key)),
                        ("rlcd.export.what", text(p.what)),
                        ("rlcd.export.format", text(&p.format.to_string())),
                    ]
                    .map(|(k, v)| (k.to_string(), v));
                    crate::model::save_gguf(&lm.model, &lm.tokenizer, out, precision, &meta)?;
                }
            }
            stage
        }
        What::Pm => {
            let stage = run.method_stage("reward", method, task)?;
            let artifact = run.artifact(stage)?;
            let pm = crate::model::pm::load_pm::<Cpu>(&artifact.dir, &device)
                .map_err(|e| stage_err(stage)(crate::stages::StageError::failed(e)))?;
            crate::model::hf::save_hf_scalar(&pm.model, &pm.tokenizer, out)?;
            let text_format = serde_json::to_value(&pm.format).unwrap_or_default();
            write_provenance(out, &provenance(run, stage, what_name, text_format))?;
            stage
        }
    };
    Ok(stage.id.clone())
}

/// Writes `rlcd_export.json` into checkpoint directory `dir`.
fn write_provenance(dir: &Path, p: &Provenance<'_>) -> Result<(), ExportError> {
    let path = dir.join("rlcd_export.json");
    let text = serde_json::to_string_pretty(p).unwrap_or_default();
    crate::error::write(&path, text + "\n")?;
    Ok(())
}

/// How prompts and responses are written in exported pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairForm {
    /// `prompt` is the plain prompt p as the runner rendered it; `chosen` and `rejected` are
    /// the response texts.
    Plain,
    /// `prompt` is the dialogue as `{role, content}` messages (user / assistant alternating,
    /// ending with the user); `chosen` and `rejected` are one assistant message each.
    Conversational,
}

/// One exported preference pair.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrlPair {
    /// The prompt (a string, or messages in the conversational form).
    pub prompt: serde_json::Value,
    /// The preferred response.
    pub chosen: serde_json::Value,
    /// The other response.
    pub rejected: serde_json::Value,
    /// The recipe method whose pairs these are, or the pair family when no method was named.
    pub method: String,
    /// The pair family: `rlcd`, `rlaif` or `rlcd-rescore`.
    pub family: String,
    /// The task.
    pub task: String,
    /// The simulator model's recipe name.
    pub simulator: String,
    /// Id of the prompt's dialogue.
    pub prompt_id: String,
    /// Probability the label gives `chosen` (1 for RLCD's hard labels; the simulator's soft
    /// label for RLAIF and RLCD-Rescore, 0.5 for a tie, where `chosen` is slot A).
    pub p_chosen: f64,
}

/// The messages of a dialogue whose turns alternate human, assistant, …, human.
fn messages(turns: &[String]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = turns
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            serde_json::json!({"role": role, "content": t})
        })
        .collect();
    serde_json::Value::Array(list)
}

/// `pair` as a TRL row.
pub fn trl_pair(pair: &Pair, form: PairForm, labels: [&str; 4]) -> TrlPair {
    let [method, family, task, simulator] = labels;
    let (chosen, rejected, p_chosen) = match pair.preferred() {
        Some(Slot::B) => (&pair.output_b, &pair.output_a, pair.soft_label),
        Some(Slot::A) => (&pair.output_a, &pair.output_b, 1.0 - pair.soft_label),
        None => (&pair.output_a, &pair.output_b, 0.5),
    };
    let reply = |text: &str| match form {
        PairForm::Plain => serde_json::Value::String(text.to_string()),
        PairForm::Conversational => {
            serde_json::json!([{"role": "assistant", "content": text}])
        }
    };
    TrlPair {
        prompt: match form {
            PairForm::Plain => serde_json::Value::String(pair.prompt.clone()),
            PairForm::Conversational => messages(&pair.turns),
        },
        chosen: reply(chosen),
        rejected: reply(rejected),
        method: method.to_string(),
        family: family.to_string(),
        task: task.to_string(),
        simulator: simulator.to_string(),
        prompt_id: pair.prompt_id.clone(),
        p_chosen,
    }
}

/// The simulate stages a method's reward or policy stage trains on (the nearest upstream
/// simulation of each task), or every simulation of the run when `method` is `None`.
fn simulations<'a>(
    run: &'a Run,
    method: Option<&str>,
    task: Option<&str>,
) -> Result<Vec<&'a Stage>, ExportError> {
    let is_sim = |s: &Stage| s.kind == StageKind::Simulate;
    let task_of = |s: &Stage| {
        s.config
            .get("task")
            .and_then(|t| t.as_str())
            .map(str::to_string)
    };
    let wanted = |s: &Stage| task.is_none() || task_of(s).as_deref() == task;
    let Some(method) = method else {
        let found: Vec<&Stage> = run
            .plan
            .stages
            .iter()
            .filter(|s| is_sim(s) && wanted(s))
            .collect();
        if found.is_empty() {
            return Err(ExportError::NotFound {
                message: "this run simulated no preference pairs".into(),
                fix: "export pairs of a run whose recipe has an rlcd, rlaif or rlcd-rescore method"
                    .into(),
            });
        }
        return Ok(found);
    };
    let mut roots: Vec<&Stage> = Vec::new();
    for prefix in ["reward", "policy"] {
        for t in run.tasks_of(prefix, method) {
            if task.is_none_or(|want| want == t)
                && !roots
                    .iter()
                    .any(|r| task_of(r).as_deref() == Some(t.as_str()))
                && let Some(s) = run.stage(&format!("{prefix}/{method}/{t}"))
            {
                roots.push(s);
            }
        }
    }
    let mut found = Vec::new();
    for root in roots {
        let mut queue: VecDeque<&str> = root.deps.iter().map(String::as_str).collect();
        let mut seen = BTreeSet::new();
        while let Some(id) = queue.pop_front() {
            let Some(s) = run.stage(id) else { continue };
            if is_sim(s) {
                found.push(s);
                break;
            }
            if seen.insert(id) {
                queue.extend(s.deps.iter().map(String::as_str));
            }
        }
    }
    if found.is_empty() {
        return Err(ExportError::NotFound {
            message: format!(
                "method `{method}` trains on no simulated pairs in this run{}",
                task.map(|t| format!(" on task `{t}`")).unwrap_or_default()
            ),
            fix: "name a method of kind rlcd, rlaif or rlcd-rescore (or context distillation), \
                  or leave out --method to export every simulation"
                .into(),
        });
    }
    Ok(found)
}

/// The preference pairs of run `run` as TRL rows (see [`simulations`] for which).
pub fn pairs(
    run: &Run,
    method: Option<&str>,
    task: Option<&str>,
    form: PairForm,
) -> Result<Vec<TrlPair>, ExportError> {
    let mut rows = Vec::new();
    for stage in simulations(run, method, task)? {
        let artifact = run.artifact(stage)?;
        let pairs = read_pairs(&artifact).map_err(|e| ExportError::Stage {
            stage: stage.id.clone(),
            source: Box::new(e),
        })?;
        let get = |k: &str| {
            stage
                .config
                .pointer(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let (task, simulator) = (get("/task"), get("/simulator/name"));
        for p in &pairs {
            let family = p.method.name();
            let labels = [method.unwrap_or(family), family, &task, &simulator];
            rows.push(trl_pair(p, form, labels));
        }
    }
    Ok(rows)
}

/// Writes `rows` as JSON Lines.
pub fn write_jsonl(rows: &[TrlPair], out: &Path) -> Result<(), ExportError> {
    let mut text = String::new();
    for r in rows {
        text.push_str(&serde_json::to_string(r).unwrap_or_default());
        text.push('\n');
    }
    Ok(crate::error::write(out, text)?)
}

/// Writes `rows` as a Parquet table with the same columns (message lists as JSON text).
pub fn write_parquet(rows: &[TrlPair], out: &Path) -> Result<(), ExportError> {
    use polars::prelude::{Column, DataFrame};
    let text = |f: fn(&TrlPair) -> &serde_json::Value| -> Vec<String> {
        rows.iter()
            .map(|r| match f(r) {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()
    };
    let col =
        |f: fn(&TrlPair) -> &String| -> Vec<String> { rows.iter().map(|r| f(r).clone()).collect() };
    let cols = vec![
        Column::new("prompt".into(), text(|r| &r.prompt)),
        Column::new("chosen".into(), text(|r| &r.chosen)),
        Column::new("rejected".into(), text(|r| &r.rejected)),
        Column::new("method".into(), col(|r| &r.method)),
        Column::new("family".into(), col(|r| &r.family)),
        Column::new("task".into(), col(|r| &r.task)),
        Column::new("simulator".into(), col(|r| &r.simulator)),
        Column::new("prompt_id".into(), col(|r| &r.prompt_id)),
        Column::new(
            "p_chosen".into(),
            rows.iter().map(|r| r.p_chosen).collect::<Vec<f64>>(),
        ),
    ];
    let err = |source| ExportError::Parquet {
        path: out.to_path_buf(),
        source,
    };
    let frame = DataFrame::new(rows.len(), cols).map_err(err)?;
    let bytes = crate::tables::render_parquet(&frame).map_err(|e| ExportError::Table {
        path: out.to_path_buf(),
        source: e,
    })?;
    Ok(crate::error::write(out, bytes)?)
}
