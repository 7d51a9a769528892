//! How stage configurations are drawn from a recipe: the [`Planner`] each stage's `configure`
//! reads the recipe through (it records which recipe keys reach some stage), and the
//! [`Planned`] stage it produces. The plan itself (order, keys) is `crate::plan`.

use std::cell::{OnceCell, RefCell};
use std::collections::BTreeSet;

use super::inputs::{Checksum, ModelRef, ModelSource, file_blake3, resolve};
use super::key::Unkeyed;
use super::stage::{Stage, StageKind};
use crate::prompts::{PromptError, PromptSet, PromptSource};
use crate::recipe::{BackendKind, MethodSpec, Recipe, Resolved, TaskSpec};
use crate::templates::{TemplateError, TemplateSet, Templates};
use crate::world::format::Split;
use crate::world::{Task, WorldSpec};

/// A stage before its key is computed.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    /// Unique id, `<kind>/<name>` (also its cache directory).
    pub id: String,
    /// What it does.
    pub kind: StageKind,
    /// Its format version.
    pub version: u32,
    /// Its serialized configuration.
    pub config: serde_json::Value,
    /// Ids of the stages whose artifacts it reads.
    pub deps: Vec<String>,
}

impl Planned {
    /// Stage `id` of type `S` with `config`.
    pub fn new<S: Stage>(id: impl Into<String>, config: &S::Config) -> Result<Self, PlanError> {
        let id = id.into();
        let value = serde_json::to_value(config).map_err(|source| PlanError::Config {
            stage: id.clone(),
            source,
        })?;
        Ok(Self {
            deps: S::inputs(config),
            id,
            kind: S::KIND,
            version: S::VERSION,
            config: value,
        })
    }
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
    #[error("stage `{stage}` depends on unknown stage `{upstream}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
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
    /// The templates a stage renders cannot be read.
    #[error("{context}: {source}")]
    Templates {
        /// The task or stage.
        context: String,
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
    /// A recipe reference names nothing (validation reports these first).
    #[error("{key} names unknown {what} `{name}`; run `rlcd validate` for the fix")]
    Unknown {
        /// The dotted recipe key.
        key: String,
        /// What it should name.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A model file cannot be read to checksum it.
    #[error("model `{model}`: {source}")]
    ModelFile {
        /// The model.
        model: String,
        /// The I/O error.
        #[source]
        source: crate::error::IoError,
    },
    /// A model's checkpoint directory cannot be read to checksum it.
    #[error("model `{model}`: {detail}")]
    ModelDir {
        /// The model.
        model: String,
        /// What is wrong with the directory.
        detail: String,
    },
    /// A stage configuration cannot be serialized.
    #[error("stage `{stage}`: its configuration cannot be serialized")]
    Config {
        /// The stage.
        stage: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
}

impl PlanError {
    /// Wraps a template error met while planning `context` (a task, `world`, …).
    pub fn templates(context: &str) -> impl FnOnce(TemplateError) -> PlanError + '_ {
        move |source| PlanError::Templates {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

/// Reads a resolved recipe for the stages' `configure` functions, recording every recipe key
/// that reaches some stage.
pub struct Planner<'r> {
    resolved: &'r Resolved,
    templates: OnceCell<Templates>,
    reads: RefCell<BTreeSet<String>>,
}

impl<'r> Planner<'r> {
    /// A planner over `resolved`.
    pub fn new(resolved: &'r Resolved) -> Self {
        Self {
            resolved,
            templates: OnceCell::new(),
            reads: RefCell::new(BTreeSet::new()),
        }
    }

    /// The recipe. Reading it does not record keys: call [`Planner::read`] for what reaches a
    /// stage configuration.
    pub fn recipe(&self) -> &'r Recipe {
        &self.resolved.recipe
    }

    /// The resolved recipe.
    pub fn resolved(&self) -> &'r Resolved {
        self.resolved
    }

    /// Records that recipe key `key` (dotted; a table covers everything below it) reaches a
    /// stage.
    pub fn read(&self, key: impl Into<String>) {
        self.reads.borrow_mut().insert(key.into());
    }

    /// The recipe keys recorded so far.
    pub fn reads(&self) -> BTreeSet<String> {
        self.reads.borrow().clone()
    }

    /// The project root relative paths of the recipe resolve against.
    pub fn root(&self) -> &std::path::Path {
        &self.resolved.root
    }

    /// The seed derived from the recipe seed and `labels`.
    pub fn seed(&self, labels: &[&str]) -> u64 {
        self.read("seed");
        crate::seed::derive(self.recipe().seed, labels)
    }

    /// The recipe's settings that reach a stage but not its key.
    pub fn unkeyed(&self) -> Unkeyed {
        self.read("truncate");
        Unkeyed {
            truncate: self.recipe().truncate,
        }
    }

    /// The recipe's compute backend.
    pub fn backend(&self) -> BackendKind {
        self.read("backend");
        self.recipe().backend
    }

    /// The built-in world of the recipe.
    pub fn world(&self) -> WorldSpec {
        WorldSpec::new(&self.recipe().world, self.world_seed_base())
    }

    /// The seed the world derives from: `world.seed`, else the recipe seed.
    fn world_seed_base(&self) -> u64 {
        self.read("world");
        self.read("seed");
        self.recipe().world.seed.unwrap_or(self.recipe().seed)
    }

    /// The seed derived from the world's seed ([`Planner::world`]) and `labels`, for stages
    /// that belong to the world (pretraining its models).
    pub fn world_seed(&self, labels: &[&str]) -> u64 {
        crate::seed::derive(self.world_seed_base(), labels)
    }

    /// Task `name` of the recipe.
    pub fn task(&self, name: &str) -> Result<&'r TaskSpec, PlanError> {
        self.recipe()
            .tasks
            .get(name)
            .ok_or_else(|| PlanError::Unknown {
                key: "tasks".into(),
                what: "task",
                name: name.into(),
            })
    }

    /// Method `name` of the recipe (recording that its table reaches a stage).
    pub fn method(&self, name: &str) -> Result<&'r MethodSpec, PlanError> {
        let spec = self
            .recipe()
            .methods
            .get(name)
            .ok_or_else(|| PlanError::Unknown {
                key: "methods".into(),
                what: "method",
                name: name.into(),
            })?;
        self.read(format!("methods.{name}"));
        Ok(spec)
    }

    /// The built-in world task of task `name`, when its prompts are `world:<task>`.
    pub fn world_task(&self, name: &str) -> Result<Option<Task>, PlanError> {
        let task = self.task(name)?;
        self.read(format!("tasks.{name}.prompts"));
        Ok(task
            .prompts
            .strip_prefix("world:")
            .and_then(Task::from_name))
    }

    /// The prompt set of task `name`: its `split`, at most `n_prompts` dialogues.
    pub fn prompts(
        &self,
        name: &str,
        split: Split,
        n_prompts: Option<usize>,
    ) -> Result<PromptSet, PlanError> {
        let task = self.task(name)?;
        self.read(format!("tasks.{name}.prompts"));
        self.read(format!("tasks.{name}.malformed_prompts"));
        let recipe = self.recipe();
        let source = PromptSource::resolve(
            &task.prompts,
            &self.resolved.root,
            &recipe.world,
            recipe.seed,
            task.malformed_prompts,
        )
        .map_err(|source| PlanError::Prompts {
            task: name.into(),
            source: Box::new(source),
        })?;
        self.read("seed");
        if source.world().is_some() {
            self.read("world");
        }
        Ok(PromptSet {
            source,
            split,
            n_prompts,
        })
    }

    /// The template directory.
    pub fn templates(&self) -> Result<&Templates, PlanError> {
        self.read("templates_dir");
        if let Some(t) = self.templates.get() {
            return Ok(t);
        }
        let dir = self.resolved.resolve_path(&self.recipe().templates_dir);
        let t = Templates::open(&dir).map_err(PlanError::templates("templates_dir"))?;
        Ok(self.templates.get_or_init(|| t))
    }

    /// The texts of files `names` of the template directory.
    pub fn template_files<'a>(
        &self,
        context: &str,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<TemplateSet, PlanError> {
        self.templates()?
            .set_of(names)
            .map_err(PlanError::templates(context))
    }

    /// The principles of template families `families` (only theirs: principles added for
    /// another family change nothing here).
    pub fn principles<'a>(
        &self,
        context: &str,
        families: impl IntoIterator<Item = &'a str>,
    ) -> Result<TemplateSet, PlanError> {
        self.templates()?
            .principles_set(families)
            .map_err(PlanError::templates(context))
    }

    /// The texts of every file template family `family` renders.
    pub fn family_files(&self, context: &str, family: &str) -> Result<TemplateSet, PlanError> {
        self.templates()?
            .task_set(family)
            .map_err(PlanError::templates(context))
    }

    /// The template family of task `name` and the texts of its files.
    pub fn task_templates(&self, name: &str) -> Result<(String, TemplateSet), PlanError> {
        let task = self.task(name)?;
        self.read(format!("tasks.{name}.templates"));
        let files = self.family_files(&format!("task `{name}`"), &task.templates)?;
        Ok((task.templates.clone(), files))
    }

    /// Model `name` of the recipe as a stage that runs it without gradients names it: with
    /// the weight format `models.<name>.weights` gives.
    pub fn frozen_model(&self, name: &str) -> Result<ModelRef, PlanError> {
        Ok(ModelRef {
            weights: self.weights(name)?,
            ..self.model(name)?
        })
    }

    /// `models.<name>.weights`: the format of the model's matrices in forward passes without
    /// gradients, for it and for the policies trained from it.
    pub fn weights(&self, name: &str) -> Result<crate::recipe::WeightFormat, PlanError> {
        Ok(self.model_spec(name)?.weights)
    }

    /// Model `name` of the recipe (recording that its table reaches a stage).
    fn model_spec(&self, name: &str) -> Result<&'r crate::recipe::ModelSpec, PlanError> {
        let spec = self
            .recipe()
            .models
            .get(name)
            .ok_or_else(|| PlanError::Unknown {
                key: "models".into(),
                what: "model",
                name: name.into(),
            })?;
        self.read(format!("models.{name}"));
        Ok(spec)
    }

    /// Model `name` of the recipe as a stage that trains from it names it (`f32` weights); a
    /// GGUF file without a recipe SHA-256 is identified by its blake3.
    pub fn model(&self, name: &str) -> Result<ModelRef, PlanError> {
        let spec = self.model_spec(name)?;
        let source = if let Some(world) = super::inputs::WorldModel::of(name, spec) {
            let tuned = world.judging.as_ref().is_some_and(|j| j.tuning.is_some());
            ModelSource::World {
                pretrain: if tuned {
                    super::judge_tuning::id(&world.label)
                } else {
                    super::inputs::pretrain_id(&world.label)
                },
                preset: world.preset,
            }
        } else if let Some(preset) = &spec.preset {
            ModelSource::Untrained {
                preset: preset.replace('_', "-"),
            }
        } else if let Some(path) = &spec.gguf {
            let path = path.display().to_string();
            let checksum = match &spec.sha256 {
                Some(sha) => Checksum::Sha256(sha.trim().to_lowercase()),
                None => {
                    Checksum::Blake3(file_blake3(&resolve(&self.resolved.root, &path)).map_err(
                        |source| PlanError::ModelFile {
                            model: name.into(),
                            source,
                        },
                    )?)
                }
            };
            ModelSource::Gguf { path, checksum }
        } else if let Some(path) = &spec.hf {
            let path = path.display().to_string();
            let blake3 = super::inputs::checkpoint_blake3(&resolve(&self.resolved.root, &path))
                .map_err(|e| PlanError::ModelDir {
                    model: name.into(),
                    detail: e.to_string(),
                })?;
            ModelSource::Hf { path, blake3 }
        } else {
            let asset = spec.asset.clone().unwrap_or_default();
            let registry = crate::assets::find_model(&asset).ok_or_else(|| PlanError::Unknown {
                key: format!("models.{name}.asset"),
                what: "asset",
                name: asset.clone(),
            })?;
            match &spec.sha256 {
                Some(sha) => ModelSource::Asset {
                    asset,
                    sha256: sha.trim().to_lowercase(),
                    verify: true,
                },
                None => ModelSource::Asset {
                    asset,
                    sha256: registry.sha256.to_string(),
                    verify: false,
                },
            }
        };
        Ok(ModelRef {
            name: name.to_string(),
            source,
            chat: spec.chat.then_some(crate::model::format::CHAT_LAYOUT),
            weights: crate::recipe::WeightFormat::F32,
        })
    }
}
