//! Recipe → plan: a DAG of content-addressed stages.
//!
//! A stage's key is the blake3 of everything its output depends on: the format version, its
//! kind, its configuration (canonical JSON), its upstream stages' keys, the template texts it
//! renders, the identity and checksum of the models it runs and its seed. Equal keys mean equal
//! outputs, so any run (or sweep cell) reuses a stage another run already computed.
//!
//! Stages this build plans: the Appendix N Monte-Carlo (one cell per method plus a table that
//! merges them) and, per task, the contrast prompts p+ / p− / p of paper §3.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::recipe::Resolved;
use crate::stages::appendix_n::{CellSpec, cell_seed};
use crate::stages::prompts::{self, PromptError};
use crate::store::Store;
use crate::templates::{TemplateError, Templates};

/// Version of the key derivation and of every stage's output format; bumping it invalidates
/// every cached artifact.
pub const FORMAT_VERSION: u32 = 1;

/// Hex digits of a stage key.
pub const KEY_LEN: usize = 32;

/// Id of the Appendix N table stage.
pub const APPENDIX_N_TABLE: &str = "appendix_n/table";

/// Id of the world report table stage.
pub const WORLD_REPORT_TABLE: &str = "world_report/table";

/// Id of the pair-label table stage.
pub const PAIR_LABELS_TABLE: &str = "pair_labels/table";

/// Id of the preference-model agreement table stage.
pub const PM_AGREEMENT_TABLE: &str = "pm_agreement/table";

/// Stage id of the win-rate table.
pub const WINRATES_TABLE: &str = "winrates/table";

/// Stage id of the policy-training table.
pub const POLICY_TRAINING_TABLE: &str = "policy_training/table";

/// Version of the judges' verdicts and the win-rate rows; part of the judge stages' keys.
pub const JUDGE_VERSION: u32 = 1;

/// Id of the pretraining stage of a world preset (shared by every model naming the preset).
pub fn pretrain_stage_id(preset: &str) -> String {
    format!("pretrain/{}", preset.replace('_', "-"))
}

/// What a stage does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// One method's Appendix N Monte-Carlo (`cell.json`).
    AppendixNCell,
    /// The Appendix N table merging the cells (`appendix-n.parquet`).
    AppendixNTable,
    /// A task's contrast prompts (`contrast.jsonl`).
    Contrast,
    /// A world preset pretrained from scratch on the built-in world's corpus
    /// (`config.json`, `model.mpk`, `tokenizer.json`, `pretrain.json`).
    Pretrain,
    /// What a pretrained world preset learned, measured with the oracle (`report.json`).
    WorldEval,
    /// The world report table merging every preset's measurements.
    WorldReport,
    /// Simulated preference pairs of one method family, simulator and task (`pairs.parquet`).
    Simulate,
    /// Held-out pairs of independent policy samples labelled by the oracle
    /// (`heldout.parquet`), the reference preference models are measured against.
    HeldoutPairs,
    /// A preference model trained on one method's pairs (checkpoint, `reward.json`).
    Reward,
    /// The pair-label table: simulated labels against the oracle.
    PairLabels,
    /// The preference-model agreement table.
    PmAgreement,
    /// A method's aligned policy on one task (checkpoint, `policy.json`, training log).
    Policy,
    /// One sample per test prompt of a policy (`samples.json`).
    Generate,
    /// One judge's verdicts on every comparison of one task (`judged.json`).
    Judge,
    /// The win-rate table.
    Winrates,
    /// The policy-training table.
    PolicyTraining,
}

impl StageKind {
    /// The kind's name in plans and logs.
    pub fn name(self) -> &'static str {
        match self {
            StageKind::AppendixNCell => "appendix_n_cell",
            StageKind::AppendixNTable => "appendix_n_table",
            StageKind::Contrast => "contrast",
            StageKind::Pretrain => "pretrain",
            StageKind::WorldEval => "world_eval",
            StageKind::WorldReport => "world_report",
            StageKind::Simulate => "simulate",
            StageKind::HeldoutPairs => "heldout_pairs",
            StageKind::Reward => "reward",
            StageKind::PairLabels => "pair_labels",
            StageKind::PmAgreement => "pm_agreement",
            StageKind::Policy => "policy",
            StageKind::Generate => "generate",
            StageKind::Judge => "judge",
            StageKind::Winrates => "winrates",
            StageKind::PolicyTraining => "policy_training",
        }
    }

    /// Whether the stage produces a result table (as `<stem>.parquet`).
    pub fn table_stem(self) -> Option<&'static str> {
        match self {
            StageKind::AppendixNTable => Some(crate::tables::APPENDIX_N),
            StageKind::WorldReport => Some(crate::tables::WORLD_REPORT),
            StageKind::PairLabels => Some(crate::tables::PAIR_LABELS),
            StageKind::PmAgreement => Some(crate::tables::PM_AGREEMENT),
            StageKind::Winrates => Some(crate::tables::WINRATES),
            StageKind::PolicyTraining => Some(crate::tables::POLICY_TRAINING),
            _ => None,
        }
    }
}

/// A model a stage runs, as it enters the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// The recipe's name for the model.
    pub name: String,
    /// What it is: `preset:<name>`, `gguf:<path>`, `asset:<name>`.
    pub identity: String,
    /// Its checksum, when known.
    pub sha256: Option<String>,
}

/// A stage before its key is computed.
#[derive(Clone, Debug, PartialEq)]
pub struct StageSpec {
    /// Unique id, `<kind>/<name>` (also its cache directory).
    pub id: String,
    /// What it does.
    pub kind: StageKind,
    /// Its configuration.
    pub config: serde_json::Value,
    /// Ids of the stages whose outputs it reads.
    pub deps: Vec<String>,
    /// `(name, text)` of every template it renders.
    pub templates: Vec<(String, String)>,
    /// Models it runs.
    pub models: Vec<ModelIdentity>,
    /// Its seed.
    pub seed: u64,
}

/// A template as recorded in the plan: its name and the blake3 of its text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateHash {
    /// Template name under the templates directory.
    pub name: String,
    /// blake3 of its text, hex.
    pub blake3: String,
}

/// A planned stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// Unique id (also its cache directory).
    pub id: String,
    /// What it does.
    pub kind: StageKind,
    /// Its content key.
    pub key: String,
    /// Upstream stage ids.
    pub deps: Vec<String>,
    /// Its configuration.
    pub config: serde_json::Value,
    /// Its seed.
    pub seed: u64,
    /// The templates it renders.
    pub templates: Vec<TemplateHash>,
    /// The models it runs.
    pub models: Vec<ModelIdentity>,
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
    /// Policy methods the recipe declares (stages this build cannot run).
    pub methods: Vec<String>,
}

/// Errors building a plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Stages depend on each other in a loop.
    #[error("stages form a cycle: {}; remove one of these dependencies", path.join(" → "))]
    Cycle {
        /// The stages around the loop, the first repeated at the end.
        path: Vec<String>,
    },
    /// A stage names an upstream stage that is not planned.
    #[error("stage `{stage}` depends on unknown stage `{upstream}`{}", suggest(.suggestion))]
    UnknownUpstream {
        /// The stage.
        stage: String,
        /// The missing upstream id.
        upstream: String,
        /// The closest planned id.
        suggestion: Option<String>,
    },
    /// Two stages share an id.
    #[error("two stages are both named `{stage}`; stage ids must be unique")]
    Duplicate {
        /// The id.
        stage: String,
    },
    /// Nothing to do.
    #[error(
        "recipe {file}: nothing to run; add a [theory] table (the Appendix N Monte-Carlo) or \
         [tasks.<name>] with prompts and templates"
    )]
    Empty {
        /// The recipe file.
        file: String,
    },
    /// The templates directory or a task's templates cannot be read.
    #[error("task `{task}`: {source}")]
    Templates {
        /// The task.
        task: String,
        /// The template error.
        #[source]
        source: Box<TemplateError>,
    },
    /// A task's prompt set cannot be read.
    #[error("task `{task}`: {source}")]
    Prompts {
        /// The task.
        task: String,
        /// The prompt error.
        #[source]
        source: Box<PromptError>,
    },
}

fn suggest(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}

/// Template files a world preset's corpus and report read: the three task families (with their
/// affix files), the RLAIF principles, and the scoring and judge prompts (vocabulary).
fn world_template_sources(templates: &Templates) -> Result<Vec<(String, String)>, TemplateError> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for task in crate::world::Task::ALL {
        out.extend(templates.task_sources(task.name())?);
    }
    for name in crate::stages::pretrain::VOCABULARY_TEMPLATES
        .iter()
        .chain(&["rlaif/principles.toml", "common/dialogue.j2"])
    {
        out.insert(name.to_string(), templates.source(name)?);
    }
    Ok(out.into_iter().collect())
}

/// The world stages of a recipe: per world preset a pretraining stage and an evaluation
/// stage, and the report table merging the evaluations.
fn world_specs(resolved: &Resolved) -> Result<Vec<StageSpec>, PlanError> {
    let recipe = &resolved.recipe;
    let presets: BTreeSet<String> = recipe
        .models
        .values()
        .filter_map(|m| m.preset.as_deref())
        .filter(|p| crate::model::llama::is_world_preset(p))
        .map(|p| p.replace('_', "-"))
        .collect();
    if presets.is_empty() {
        return Ok(Vec::new());
    }
    let dir = resolved.resolve_path(&recipe.templates_dir);
    let templates_err = |source: TemplateError| PlanError::Templates {
        task: "world".to_string(),
        source: Box::new(source),
    };
    let templates = Templates::open(&dir).map_err(templates_err)?;
    let sources = world_template_sources(&templates).map_err(templates_err)?;
    let world = serde_json::to_value(&recipe.world).unwrap_or(serde_json::Value::Null);
    let mut specs = Vec::new();
    let mut evals = Vec::new();
    for preset in &presets {
        let train = recipe.pretrain.config_for(preset);
        let id = pretrain_stage_id(preset);
        specs.push(StageSpec {
            id: id.clone(),
            kind: StageKind::Pretrain,
            config: serde_json::json!({
                "preset": preset,
                "world": world,
                "world_seed": crate::world::world_seed(recipe.seed),
                "world_version": crate::world::WORLD_VERSION,
                "engine_version": crate::stages::pretrain::PRETRAIN_VERSION,
                "architecture": crate::model::llama::LlamaConfig::preset_with_vocab(preset, 0),
                "train": train,
                "heldout_documents": recipe.pretrain.heldout_documents,
                "backend": recipe.backend,
            }),
            deps: vec![],
            templates: sources.clone(),
            models: vec![ModelIdentity {
                name: preset.clone(),
                identity: format!("preset:{preset}"),
                sha256: None,
            }],
            seed: crate::seed::derive(recipe.seed, &["pretrain", preset]),
        });
        let eval_id = format!("world_eval/{preset}");
        specs.push(StageSpec {
            id: eval_id.clone(),
            kind: StageKind::WorldEval,
            config: serde_json::json!({
                "preset": preset,
                "report": recipe.pretrain.report,
                "world_version": crate::world::WORLD_VERSION,
                "report_version": crate::stages::world_report::REPORT_VERSION,
            }),
            deps: vec![id],
            templates: sources.clone(),
            models: vec![],
            seed: crate::seed::derive(recipe.seed, &["world_eval", preset]),
        });
        evals.push(eval_id);
    }
    specs.push(StageSpec {
        id: WORLD_REPORT_TABLE.to_string(),
        kind: StageKind::WorldReport,
        config: serde_json::json!({ "stem": crate::tables::WORLD_REPORT }),
        deps: evals,
        templates: vec![],
        models: vec![],
        seed: 0,
    });
    Ok(specs)
}

/// How a model enters stage keys, and the pretraining stage it comes from (world presets).
fn model_entry(recipe: &crate::recipe::Recipe, name: &str) -> (ModelIdentity, Option<String>) {
    let spec = recipe.models.get(name);
    let preset = spec.and_then(|m| m.preset.as_deref());
    let identity = match spec {
        Some(m) if m.preset.is_some() => format!("preset:{}", preset.unwrap_or_default()),
        Some(m) if m.gguf.is_some() => format!(
            "gguf:{}",
            m.gguf
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
        Some(m) => format!("asset:{}", m.asset.clone().unwrap_or_default()),
        None => format!("unknown:{name}"),
    };
    let upstream = preset
        .filter(|p| crate::model::llama::is_world_preset(p))
        .map(pretrain_stage_id);
    (
        ModelIdentity {
            name: name.to_string(),
            identity,
            sha256: spec.and_then(|m| m.sha256.clone()),
        },
        upstream,
    )
}

/// What every stage of one task reads: its templates, its configuration (prompt set and its
/// hash, templates, world settings) and its world task, if it is a built-in one.
struct TaskInputs {
    sources: Vec<(String, String)>,
    config: serde_json::Value,
    world_task: Option<crate::world::Task>,
}

fn task_inputs(
    resolved: &Resolved,
    templates: &Templates,
    task_name: &str,
    task: &crate::recipe::TaskSpec,
    world: &serde_json::Value,
) -> Result<TaskInputs, PlanError> {
    let terr = |source: TemplateError| PlanError::Templates {
        task: task_name.to_string(),
        source: Box::new(source),
    };
    let mut sources: BTreeMap<String, String> = templates
        .task_sources(&task.templates)
        .map_err(terr)?
        .into_iter()
        .collect();
    for name in [
        "rlaif/score.j2",
        "rlaif/principles.toml",
        "common/dialogue.j2",
    ] {
        sources.insert(name.to_string(), templates.source(name).map_err(terr)?);
    }
    let prompts_hash =
        prompts::input_hash(resolved, &task.prompts).map_err(|source| PlanError::Prompts {
            task: task_name.to_string(),
            source: Box::new(source),
        })?;
    let world_task = task
        .prompts
        .strip_prefix("world:")
        .and_then(crate::world::Task::from_name);
    let config = serde_json::json!({
        "task": task_name,
        "prompts": task.prompts,
        "prompts_blake3": prompts_hash,
        "templates": task.templates,
        "n_prompts": task.n_prompts,
        "world": if world_task.is_some() { world.clone() } else { serde_json::Value::Null },
        "world_version": crate::world::WORLD_VERSION,
        "prompt_set_version": crate::world::PROMPT_SET_VERSION,
    });
    Ok(TaskInputs {
        sources: sources.into_iter().collect(),
        config,
        world_task,
    })
}

/// Id of the policy stage of `method` on `task`.
pub fn policy_stage_id(method: &str, task: &str) -> String {
    format!("policy/{method}/{task}")
}

/// Id of the stage sampling `method`'s evaluation outputs on `task`.
pub fn generate_stage_id(method: &str, task: &str) -> String {
    format!("generate/{method}/{task}")
}

/// The policy and evaluation stages (paper §3 steps 3–5, §4.3): per compared method and task
/// a policy (PPO against the method's PM, DPO on its pairs, or SFT on o+ for context
/// distillation; `base` is the unaligned policy model), one sample per test prompt, per task
/// and judge the verdicts of every comparison on every axis, and the win-rate and
/// policy-training tables.
fn policy_specs(resolved: &Resolved, templates: &Templates) -> Result<Vec<StageSpec>, PlanError> {
    use crate::recipe::schema::MethodKind;
    let recipe = &resolved.recipe;
    let comparisons = recipe.comparisons();
    if comparisons.is_empty() {
        return Ok(Vec::new());
    }
    let world = serde_json::to_value(&recipe.world).unwrap_or(serde_json::Value::Null);
    let compared = recipe.compared_methods();
    let mut specs = Vec::new();
    let mut policies = Vec::new();
    let mut judged = Vec::new();
    for (task_name, task) in &recipe.tasks {
        let inputs = task_inputs(resolved, templates, task_name, task, &world)?;
        let mut generated = Vec::new();
        for method_name in &compared {
            let Some(method) = recipe.methods.get(method_name) else {
                continue;
            };
            let (policy_model, policy_pretrain) = model_entry(recipe, &method.policy);
            let trainer = match method.kind {
                MethodKind::Base => None,
                MethodKind::ContextDistillation => Some("sft"),
                _ => Some(method.trainer.unwrap_or_default().as_str()),
            };
            let source = match trainer {
                None => policy_pretrain.clone(),
                Some(trainer) => {
                    let simulator = method.simulator.clone().unwrap_or_default();
                    let family = match method.kind {
                        MethodKind::Rlaif => "rlaif",
                        MethodKind::RlcdRescore => "rlcd-rescore",
                        _ => "rlcd",
                    };
                    let mut deps: Vec<String> = policy_pretrain.iter().cloned().collect();
                    let settings = match trainer {
                        "ppo" => {
                            deps.push(format!("reward/{method_name}/{task_name}"));
                            serde_json::to_value(&recipe.ppo)
                        }
                        "dpo" => {
                            deps.push(simulate_stage_id(&simulator, task_name, family));
                            serde_json::to_value(&recipe.dpo)
                        }
                        _ => {
                            deps.push(simulate_stage_id(&simulator, task_name, "rlcd"));
                            serde_json::to_value(&recipe.distill)
                        }
                    }
                    .unwrap_or(serde_json::Value::Null);
                    let id = policy_stage_id(method_name, task_name);
                    specs.push(StageSpec {
                        id: id.clone(),
                        kind: StageKind::Policy,
                        config: serde_json::json!({
                            "method": method_name,
                            "kind": method.kind.as_str(),
                            "trainer": trainer,
                            "version": crate::stages::policy::POLICY_VERSION,
                            "simulator": simulator,
                            "policy": method.policy,
                            "task": inputs.config,
                            "settings": settings,
                        }),
                        deps,
                        templates: inputs.sources.clone(),
                        models: vec![policy_model.clone()],
                        seed: crate::seed::derive(recipe.seed, &["policy", method_name, task_name]),
                    });
                    policies.push(id.clone());
                    Some(id)
                }
            };
            let id = generate_stage_id(method_name, task_name);
            specs.push(StageSpec {
                id: id.clone(),
                kind: StageKind::Generate,
                config: serde_json::json!({
                    "method": method_name,
                    "kind": method.kind.as_str(),
                    "policy": method.policy,
                    "version": crate::stages::generate::GENERATE_VERSION,
                    "task": inputs.config,
                    "eval": {
                        "n_prompts": recipe.eval.n_prompts,
                        "temperature": recipe.eval.temperature,
                        "max_new_tokens": recipe.eval.max_new_tokens,
                        "batch_size": recipe.simulate.batch_size,
                    },
                }),
                deps: source.into_iter().collect(),
                templates: inputs.sources.clone(),
                models: vec![policy_model],
                seed: crate::seed::derive(recipe.seed, &["generate", task_name]),
            });
            generated.push(id);
        }
        for judge in &recipe.eval.judges {
            let mut deps = generated.clone();
            let mut models = Vec::new();
            let mut sources = Vec::new();
            if let Some(model) = judge.strip_prefix("lm:") {
                let (m, pretrain) = model_entry(recipe, model);
                deps.extend(pretrain);
                models.push(m);
                for axis in &task.axes {
                    if let Some(name) = crate::templates::judge_template(&task.axes, axis) {
                        let text =
                            templates
                                .source(name)
                                .map_err(|source| PlanError::Templates {
                                    task: task_name.clone(),
                                    source: Box::new(source),
                                })?;
                        sources.push((name.to_string(), text));
                    }
                }
                if let Ok(text) = templates.source("common/dialogue.j2") {
                    sources.push(("common/dialogue.j2".to_string(), text));
                }
            } else if let Some(method) = judge.strip_prefix("rm:") {
                deps.push(format!("reward/{method}/{task_name}"));
            }
            let id = format!("judge/{}/{task_name}", judge.replace(':', "-"));
            let mut config = serde_json::json!({
                "judge": judge,
                "version": JUDGE_VERSION,
                "answer_lead": crate::eval::judge::ANSWER_LEAD,
                "task": inputs.config,
                "axes": task.axes,
                "comparisons": comparisons,
            });
            if judge.starts_with("lm:") {
                config["order"] = recipe.eval.judge_order.as_str().into();
            }
            specs.push(StageSpec {
                id: id.clone(),
                kind: StageKind::Judge,
                config,
                deps,
                templates: sources,
                models,
                seed: crate::seed::derive(recipe.seed, &["judge", judge, task_name]),
            });
            judged.push(id);
        }
    }
    if !judged.is_empty() {
        specs.push(StageSpec {
            id: WINRATES_TABLE.to_string(),
            kind: StageKind::Winrates,
            config: serde_json::json!({ "stem": crate::tables::WINRATES, "version": JUDGE_VERSION }),
            deps: judged,
            templates: vec![],
            models: vec![],
            seed: 0,
        });
    }
    if !policies.is_empty() {
        specs.push(StageSpec {
            id: POLICY_TRAINING_TABLE.to_string(),
            kind: StageKind::PolicyTraining,
            config: serde_json::json!({ "stem": crate::tables::POLICY_TRAINING }),
            deps: policies,
            templates: vec![],
            models: vec![],
            seed: 0,
        });
    }
    Ok(specs)
}

/// Id of the stage simulating `family` pairs (`rlcd`, `rlaif`, `rlcd-rescore`) with
/// `simulator` on `task`.
pub fn simulate_stage_id(simulator: &str, task: &str, family: &str) -> String {
    format!("simulate/{simulator}/{task}/{family}")
}

/// The preference stages of a recipe (paper §4.2): per task and simulator, the pair
/// simulations its methods need (RLCD pairs, RLAIF pairs, RLCD pairs re-labelled as RLAIF
/// labels them); per method a preference model trained on them; per policy and world task the
/// oracle-labelled held-out pairs; and the two tables.
fn preference_specs(
    resolved: &Resolved,
    templates: &Templates,
) -> Result<Vec<StageSpec>, PlanError> {
    use crate::recipe::schema::MethodKind;
    let recipe = &resolved.recipe;
    let world = serde_json::to_value(&recipe.world).unwrap_or(serde_json::Value::Null);
    let mut specs: Vec<StageSpec> = Vec::new();
    let mut simulations: BTreeSet<String> = BTreeSet::new();
    let mut rewards = Vec::new();
    for (task_name, task) in &recipe.tasks {
        let TaskInputs {
            sources,
            config: task_config,
            world_task,
        } = task_inputs(resolved, templates, task_name, task, &world)?;
        let mut add_simulation = |family: &str, simulator: &str, specs: &mut Vec<StageSpec>| {
            let id = simulate_stage_id(simulator, task_name, family);
            if !simulations.insert(id.clone()) {
                return id;
            }
            let (model, pretrain) = model_entry(recipe, simulator);
            let mut deps: Vec<String> = pretrain.into_iter().collect();
            if family == "rlcd-rescore" {
                deps.push(simulate_stage_id(simulator, task_name, "rlcd"));
            }
            specs.push(StageSpec {
                id: id.clone(),
                kind: StageKind::Simulate,
                config: serde_json::json!({
                    "family": family,
                    "version": crate::stages::simulate::SIMULATE_VERSION,
                    "simulator": simulator,
                    "task": task_config,
                    "simulate": recipe.simulate,
                    "contrast_seed": crate::seed::derive(recipe.seed, &["contrast", task_name]),
                }),
                deps,
                templates: sources.clone(),
                models: vec![model],
                seed: crate::seed::derive(recipe.seed, &["simulate", simulator, task_name, family]),
            });
            id
        };
        let mut heldout: BTreeMap<String, String> = BTreeMap::new();
        for (method_name, method) in &recipe.methods {
            let family = match method.kind {
                MethodKind::Rlcd | MethodKind::ContextDistillation => "rlcd",
                MethodKind::Rlaif => "rlaif",
                MethodKind::RlcdRescore => "rlcd-rescore",
                MethodKind::Base => continue,
            };
            let Some(simulator) = method.simulator.as_deref() else {
                continue;
            };
            if family == "rlcd-rescore" {
                add_simulation("rlcd", simulator, &mut specs);
            }
            let pairs = add_simulation(family, simulator, &mut specs);
            if matches!(method.kind, MethodKind::ContextDistillation) {
                continue;
            }
            let (policy, policy_pretrain) = model_entry(recipe, &method.policy);
            let mut deps = vec![pairs];
            deps.extend(policy_pretrain.clone());
            if world_task.is_some() {
                let id = format!("heldout_pairs/{}/{task_name}", method.policy);
                if !heldout.contains_key(&method.policy) {
                    heldout.insert(method.policy.clone(), id.clone());
                    specs.push(StageSpec {
                        id: id.clone(),
                        kind: StageKind::HeldoutPairs,
                        config: serde_json::json!({
                            "policy": method.policy,
                            "task": task_config,
                            "reward": { "heldout_pairs": recipe.reward.heldout_pairs },
                            "sampling": {
                                "temperature": recipe.simulate.temperature,
                                "top_p": recipe.simulate.top_p,
                                "max_new_tokens": recipe.simulate.max_new_tokens,
                            },
                        }),
                        deps: policy_pretrain.into_iter().collect(),
                        templates: sources.clone(),
                        models: vec![policy.clone()],
                        seed: crate::seed::derive(
                            recipe.seed,
                            &["heldout", &method.policy, task_name],
                        ),
                    });
                }
                deps.push(id);
            }
            let id = format!("reward/{method_name}/{task_name}");
            specs.push(StageSpec {
                id: id.clone(),
                kind: StageKind::Reward,
                config: serde_json::json!({
                    "method": method_name,
                    "version": crate::stages::reward::REWARD_VERSION,
                    "kind": method.kind.as_str(),
                    "simulator": simulator,
                    "policy": method.policy,
                    "task": task_name,
                    "reward": recipe.reward,
                }),
                deps,
                templates: vec![],
                models: vec![policy],
                seed: crate::seed::derive(recipe.seed, &["reward", method_name, task_name]),
            });
            rewards.push(id);
        }
    }
    if !simulations.is_empty() {
        specs.push(StageSpec {
            id: PAIR_LABELS_TABLE.to_string(),
            kind: StageKind::PairLabels,
            config: serde_json::json!({ "stem": crate::tables::PAIR_LABELS }),
            deps: simulations.into_iter().collect(),
            templates: vec![],
            models: vec![],
            seed: 0,
        });
    }
    if !rewards.is_empty() {
        specs.push(StageSpec {
            id: PM_AGREEMENT_TABLE.to_string(),
            kind: StageKind::PmAgreement,
            config: serde_json::json!({ "stem": crate::tables::PM_AGREEMENT }),
            deps: rewards,
            templates: vec![],
            models: vec![],
            seed: 0,
        });
    }
    Ok(specs)
}

/// Canonical JSON: object keys sorted, no whitespace, numbers as serde_json prints them.
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn go(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                let sorted: BTreeMap<&String, &serde_json::Value> = m.iter().collect();
                out.push('{');
                for (i, (k, v)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    go(v, out);
                }
                out.push('}');
            }
            serde_json::Value::Array(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    go(v, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    go(v, &mut out);
    out
}

/// The key of a stage given its upstream keys (id → key).
pub fn stage_key(spec: &StageSpec, upstream: &BTreeMap<String, String>) -> String {
    let input = serde_json::json!({
        "format": FORMAT_VERSION,
        "kind": spec.kind.name(),
        "config": spec.config,
        "upstream": upstream,
        "templates": spec.templates,
        "models": spec.models,
        "seed": spec.seed,
    });
    let hash = blake3::hash(canonical_json(&input).as_bytes());
    hash.to_hex()[..KEY_LEN].to_string()
}

impl Plan {
    /// Orders `specs` topologically (declaration order among independent stages) and computes
    /// every key.
    pub fn from_specs(
        recipe: &str,
        specs: Vec<StageSpec>,
        methods: Vec<String>,
    ) -> Result<Plan, PlanError> {
        let mut index = BTreeMap::new();
        for (i, s) in specs.iter().enumerate() {
            if index.insert(s.id.clone(), i).is_some() {
                return Err(PlanError::Duplicate {
                    stage: s.id.clone(),
                });
            }
        }
        for s in &specs {
            for d in &s.deps {
                if !index.contains_key(d) {
                    let suggestion = index
                        .keys()
                        .map(|k| (strsim::jaro_winkler(k, d), k))
                        .filter(|(score, _)| *score > 0.8)
                        .max_by(|a, b| a.0.total_cmp(&b.0))
                        .map(|(_, k)| k.clone());
                    return Err(PlanError::UnknownUpstream {
                        stage: s.id.clone(),
                        upstream: d.clone(),
                        suggestion,
                    });
                }
            }
        }
        let mut placed: BTreeMap<String, String> = BTreeMap::new();
        let mut order: Vec<Stage> = Vec::with_capacity(specs.len());
        let mut remaining: Vec<&StageSpec> = specs.iter().collect();
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
            let key = stage_key(s, &upstream);
            placed.insert(s.id.clone(), key.clone());
            order.push(Stage {
                id: s.id.clone(),
                kind: s.kind,
                key,
                deps: s.deps.clone(),
                config: s.config.clone(),
                seed: s.seed,
                templates: s
                    .templates
                    .iter()
                    .map(|(name, text)| TemplateHash {
                        name: name.clone(),
                        blake3: blake3::hash(text.as_bytes()).to_hex().to_string(),
                    })
                    .collect(),
                models: s.models.clone(),
            });
        }
        Ok(Plan {
            format: FORMAT_VERSION,
            recipe: recipe.to_string(),
            stages: order,
            methods,
        })
    }

    /// The plan of a resolved recipe: the Appendix N cells and table (if `[theory]` is set) and
    /// one contrast stage per task.
    pub fn build(resolved: &Resolved) -> Result<Plan, PlanError> {
        let recipe = &resolved.recipe;
        let mut specs = Vec::new();
        if let Some(theory) = &recipe.theory {
            let mut cells = Vec::new();
            for &m in &theory.methods {
                let id = format!("appendix_n/{}", m.name());
                let cell = CellSpec::new(theory, m);
                specs.push(StageSpec {
                    id: id.clone(),
                    kind: StageKind::AppendixNCell,
                    config: serde_json::to_value(&cell).unwrap_or(serde_json::Value::Null),
                    deps: vec![],
                    templates: vec![],
                    models: vec![],
                    seed: cell_seed(recipe.seed, m),
                });
                cells.push(id);
            }
            specs.push(StageSpec {
                id: APPENDIX_N_TABLE.to_string(),
                kind: StageKind::AppendixNTable,
                config: serde_json::json!({ "stem": crate::tables::APPENDIX_N }),
                deps: cells,
                templates: vec![],
                models: vec![],
                seed: 0,
            });
        }
        specs.extend(world_specs(resolved)?);
        if !recipe.tasks.is_empty() {
            let dir = resolved.resolve_path(&recipe.templates_dir);
            let first = recipe.tasks.keys().next().cloned().unwrap_or_default();
            let templates = Templates::open(&dir).map_err(|source| PlanError::Templates {
                task: first,
                source: Box::new(source),
            })?;
            for (name, task) in &recipe.tasks {
                let sources = templates.task_sources(&task.templates).map_err(|source| {
                    PlanError::Templates {
                        task: name.clone(),
                        source: Box::new(source),
                    }
                })?;
                let hash = prompts::input_hash(resolved, &task.prompts).map_err(|source| {
                    PlanError::Prompts {
                        task: name.clone(),
                        source: Box::new(source),
                    }
                })?;
                specs.push(StageSpec {
                    id: format!("contrast/{name}"),
                    kind: StageKind::Contrast,
                    config: serde_json::json!({
                        "task": name,
                        "prompts": task.prompts,
                        "prompts_blake3": hash,
                        "templates": task.templates,
                        "split": "train",
                        "n_prompts": task.n_prompts,
                    }),
                    deps: vec![],
                    templates: sources,
                    models: vec![],
                    seed: crate::seed::derive(recipe.seed, &["contrast", name]),
                });
            }
            specs.extend(preference_specs(resolved, &templates)?);
            specs.extend(policy_specs(resolved, &templates)?);
        }
        if specs.is_empty() {
            return Err(PlanError::Empty {
                file: resolved.file.display().to_string(),
            });
        }
        Plan::from_specs(
            &recipe.name,
            specs,
            recipe.methods.keys().cloned().collect(),
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

/// A cycle among stages that cannot be ordered.
fn find_cycle(remaining: &[&StageSpec]) -> Vec<String> {
    let by_id: BTreeMap<&str, &StageSpec> = remaining.iter().map(|s| (s.id.as_str(), *s)).collect();
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

    fn spec(id: &str, deps: &[&str]) -> StageSpec {
        StageSpec {
            id: id.into(),
            kind: StageKind::AppendixNCell,
            config: serde_json::json!({ "b": 1, "a": [1.5, "x"] }),
            deps: deps.iter().map(|d| d.to_string()).collect(),
            templates: vec![],
            models: vec![],
            seed: 0,
        }
    }

    #[test]
    fn orders_topologically_and_keys_chain() {
        let plan = Plan::from_specs(
            "r",
            vec![spec("t", &["a", "b"]), spec("a", &[]), spec("b", &["a"])],
            vec![],
        )
        .expect("plan");
        let ids: Vec<&str> = plan.stages.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "t"]);
        assert!(plan.stages.iter().all(|s| s.key.len() == KEY_LEN));
        // A change upstream changes every downstream key.
        let mut changed = spec("a", &[]);
        changed.seed = 1;
        let plan2 = Plan::from_specs(
            "r",
            vec![spec("t", &["a", "b"]), changed, spec("b", &["a"])],
            vec![],
        )
        .expect("plan");
        for (x, y) in plan.stages.iter().zip(&plan2.stages) {
            assert_ne!(x.key, y.key, "{}", x.id);
        }
    }

    #[test]
    fn cycles_and_unknown_upstreams_are_errors() {
        let err = Plan::from_specs(
            "r",
            vec![spec("a", &["c"]), spec("b", &["a"]), spec("c", &["b"])],
            vec![],
        )
        .expect_err("cycle");
        let msg = err.to_string();
        assert!(msg.contains("a → c → b → a"), "{msg}");
        let err = Plan::from_specs(
            "r",
            vec![spec("appendix_n/rlaif", &["appendix_n/rlia"])],
            vec![],
        )
        .expect_err("unknown");
        let msg = err.to_string();
        assert!(msg.contains("unknown stage `appendix_n/rlia`"), "{msg}");
        assert!(msg.contains("did you mean `appendix_n/rlaif`"), "{msg}");
        let err = Plan::from_specs("r", vec![spec("a", &[]), spec("a", &[])], vec![])
            .expect_err("duplicate");
        assert!(err.to_string().contains("`a`"));
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let v = serde_json::json!({ "z": {"b": 2, "a": 1}, "a": [3, {"y": null, "x": true}] });
        assert_eq!(
            canonical_json(&v),
            r#"{"a":[3,{"x":true,"y":null}],"z":{"a":1,"b":2}}"#
        );
    }
}
