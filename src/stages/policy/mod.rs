//! The `policy` stage (paper §3 step 3 and §4.2): a method's aligned policy on one task — PPO
//! against its preference model ([`ppo`]), DPO on its pairs ([`dpo`], beyond the paper), or,
//! for context distillation, supervised fine-tuning on (plain prompt → o+) ([`sft`]). The
//! trainers share the policy layout of [`common`].

pub mod common;
pub mod dpo;
pub mod ppo;
pub mod sft;

use burn::module::AutodiffModule;
use serde::{Deserialize, Serialize};

pub use common::{
    PolicyError, PolicyFormat, Rows, files, fine_tune, fine_tune_schedule, load_policy,
    response_logprobs, response_values, save_policy,
};

use super::inputs::ModelRef;
use super::planning::{PlanError, Planned, Planner};
use super::simulate::{Method, read_pairs};
use super::stage::{Ctx, Stage, StageError, StageKind, with_backend};
use crate::model::Lm;
use crate::model::pm::load_pm;
use crate::prompts::{PromptSet, contrast_prompts};
use crate::recipe::{BackendKind, DistillConfig, DpoConfig, MethodKind, PpoConfig};
use crate::templates::TemplateSet;
use crate::world::format::Split;
use dpo::{DpoLog, DpoPair};
use ppo::{PpoCheckpoints, PpoLog, PpoModels};
use sft::SftLog;

/// What a policy stage did (JSON, [`PolicyRecord`]).
pub const TRAINING: &str = "training.json";

/// The stage type.
pub struct Policy;

/// What one policy's training reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The recipe's method.
    pub method: String,
    /// Its kind.
    pub kind: MethodKind,
    /// Its simulator's name (for the tables).
    pub simulator: String,
    /// The task.
    pub task: String,
    /// The initial policy (also the frozen reference of PPO's KL and of DPO).
    pub policy: ModelRef,
    /// How it is trained.
    pub trainer: Trainer,
    /// The compute backend.
    pub backend: BackendKind,
    /// Seed of rollouts, pass orders and head initialisation.
    pub seed: u64,
}

/// How a policy is trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "trainer", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trainer {
    /// PPO against a preference model on the task's training prompts.
    Ppo {
        /// PPO settings.
        settings: Box<PpoConfig>,
        /// The preference model's stage.
        reward: String,
        /// The training prompts.
        prompts: PromptSet,
        /// The task's template family (the plain prompt).
        family: String,
        /// The family's files.
        templates: TemplateSet,
    },
    /// DPO on a simulation's pairs.
    Dpo {
        /// DPO settings.
        settings: DpoConfig,
        /// The simulation's stage.
        pairs: String,
    },
    /// Supervised fine-tuning on the o+ of a simulation's RLCD pairs.
    Sft {
        /// Fine-tuning settings.
        settings: DistillConfig,
        /// The simulation's stage.
        pairs: String,
    },
}

impl Trainer {
    /// `ppo`, `dpo` or `sft`.
    pub fn name(&self) -> &'static str {
        match self {
            Trainer::Ppo { .. } => "ppo",
            Trainer::Dpo { .. } => "dpo",
            Trainer::Sft { .. } => "sft",
        }
    }
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

/// Id of the policy of `method` on `task`.
pub fn id(method: &str, task: &str) -> String {
    format!("policy/{method}/{task}")
}

/// The pair family a method trains on.
pub fn family_of(kind: MethodKind) -> Method {
    match kind {
        MethodKind::Rlaif => Method::Rlaif,
        MethodKind::RlcdRescore => Method::RlcdRescore,
        _ => Method::Rlcd,
    }
}

/// The policy of recipe method `method` on task `task`; `None` for `base`, which is not
/// trained.
pub fn plan(p: &Planner<'_>, method: &str, task: &str) -> Result<Option<Planned>, PlanError> {
    let recipe = p.recipe();
    let spec = p.method(method)?;
    let simulator = spec.simulator.clone().unwrap_or_default();
    let pairs = |family: Method| match &spec.pairs {
        Some(_) => super::import_pairs::id(method, task),
        None => super::simulate::id(&simulator, task, family),
    };
    let trainer = match spec.kind {
        MethodKind::Base => return Ok(None),
        MethodKind::ContextDistillation => {
            p.read("distill");
            Trainer::Sft {
                settings: recipe.distill.clone(),
                pairs: pairs(Method::Rlcd),
            }
        }
        kind => match spec.trainer.unwrap_or_default() {
            crate::recipe::Trainer::Dpo => {
                p.read("dpo");
                Trainer::Dpo {
                    settings: recipe.dpo.clone(),
                    pairs: pairs(family_of(kind)),
                }
            }
            crate::recipe::Trainer::Ppo => {
                p.read("ppo");
                p.read(format!("tasks.{task}.n_prompts"));
                let (family, templates) = p.task_templates(task)?;
                Trainer::Ppo {
                    settings: Box::new(recipe.ppo.clone()),
                    reward: super::reward::id(method, task),
                    prompts: p.prompts(task, Split::Train, p.task(task)?.n_prompts)?,
                    family,
                    templates,
                }
            }
        },
    };
    let config = Config {
        method: method.to_string(),
        kind: spec.kind,
        simulator,
        task: task.to_string(),
        policy: p.model(&spec.policy)?,
        trainer,
        backend: p.backend(),
        seed: p.seed(&["policy", method, task]),
    };
    Planned::new::<Policy>(id(method, task), &config).map(Some)
}

impl From<PolicyError> for StageError {
    fn from(e: PolicyError) -> Self {
        StageError::failed(e)
    }
}

impl Stage for Policy {
    const KIND: StageKind = StageKind::Policy;
    const VERSION: u32 = 1;
    type Config = Config;

    fn inputs(config: &Config) -> Vec<String> {
        let mut out = config.policy.inputs();
        out.push(match &config.trainer {
            Trainer::Ppo { reward, .. } => reward.clone(),
            Trainer::Dpo { pairs, .. } | Trainer::Sft { pairs, .. } => pairs.clone(),
        });
        out
    }

    fn run(ctx: &Ctx<'_>, config: &Config) -> Result<serde_json::Value, StageError> {
        let t0 = std::time::Instant::now();
        let mut resumed_from: Option<usize> = None;
        let mut record = PolicyRecord {
            method: config.method.clone(),
            kind: config.kind.as_str().to_string(),
            trainer: config.trainer.name().to_string(),
            simulator: config.simulator.clone(),
            task: config.task.clone(),
            ppo: None,
            dpo: None,
            sft: None,
        };
        with_backend!(config.backend, B, device => {
            type T = burn::backend::Autodiff<B>;
            let lm = config.policy.load::<T>(ctx, &device)?;
            let format = config.policy.format(&lm.tokenizer)?;
            let max_len = lm.model.config().max_seq_len;
            let trained: Lm<T> = match &config.trainer {
                Trainer::Ppo { settings: cfg, reward, prompts, family, templates } => {
                    let rdir = ctx.input(reward)?.dir;
                    let pm = load_pm::<B>(&rdir, &device)?;
                    let value = crate::model::load::load_scalar_checkpoint::<T>(&rdir, &device)?;
                    let reference = lm.model.valid();
                    let train = prompts.load(ctx.root)?;
                    let plain: Vec<String> =
                        contrast_prompts(&templates.templates(), family, &train, config.seed)?
                            .into_iter()
                            .map(|c| c.plain)
                            .collect();
                    let pb = ctx.progress(cfg.steps as u64);
                    let work = ctx.work_dir();
                    crate::error::create_dir_all(&work)?;
                    resumed_from = crate::stages::checkpoint::step(&work);
                    let ckpt = PpoCheckpoints {
                        dir: Some(work),
                        every: cfg.checkpoint_every,
                        stop_after: None,
                    };
                    let mut on_step = |s: &ppo::PpoStepLog| {
                        pb.set_position(s.step as u64 + 1);
                        pb.set_message(format!(
                            "score {:.3} kl {:.2} len {:.0}",
                            s.score, s.kl, s.response_len
                        ));
                    };
                    let models = PpoModels { policy: lm, value, reference: &reference, pm: &pm };
                    let (lm, _, log) = ppo::train_ppo(
                        models, &format, &plain, cfg, config.seed, &ckpt, &mut on_step,
                    )?;
                    pb.finish_and_clear();
                    record.ppo = Some(log);
                    lm
                }
                Trainer::Dpo { settings: cfg, pairs } => {
                    let pairs = read_pairs(&ctx.input(pairs)?)?;
                    let reference = lm.model.valid();
                    let mut encoded = Vec::with_capacity(pairs.len());
                    for p in &pairs {
                        let (query, a) = format.encode(&lm, &p.prompt, &p.output_a)?;
                        let (_, b) = format.encode(&lm, &p.prompt, &p.output_b)?;
                        if query.len() + a.len().max(b.len()) <= max_len {
                            encoded.push(DpoPair { query, a, b, p_b: p.soft_label });
                        }
                    }
                    let steps = encoded.len().div_ceil(cfg.batch_size.max(1)) * cfg.epochs;
                    let pb = ctx.progress(steps as u64);
                    let mut on_step = |_: usize, loss: f64| {
                        pb.inc(1);
                        pb.set_message(format!("loss {loss:.3}"));
                    };
                    let (lm, log) =
                        dpo::train_dpo(lm, &reference, &encoded, cfg, config.seed, &mut on_step)?;
                    pb.finish_and_clear();
                    record.dpo = Some(log);
                    lm
                }
                Trainer::Sft { settings: cfg, pairs } => {
                    let pairs = read_pairs(&ctx.input(pairs)?)?;
                    let examples: Vec<(String, String)> = pairs
                        .iter()
                        .filter_map(|p| {
                            p.positive_slot.map(|s| (p.prompt.clone(), p.output(s).to_string()))
                        })
                        .collect();
                    let encoded = sft::encode_examples(&lm, &format, &examples, max_len)?;
                    let steps = encoded.len().div_ceil(cfg.batch_size.max(1)) * cfg.epochs;
                    let pb = ctx.progress(steps as u64);
                    let mut on_step = |_: usize, loss: f64| {
                        pb.inc(1);
                        pb.set_message(format!("nll {loss:.3}"));
                    };
                    let (lm, log) = sft::train_sft(lm, &encoded, cfg, config.seed, &mut on_step)?;
                    pb.finish_and_clear();
                    record.sft = Some(log);
                    lm
                }
            };
            let inner = Lm { model: trained.model.valid(), tokenizer: trained.tokenizer };
            save_policy(&inner, &format, ctx.dir)?;
            Ok::<_, StageError>(())
        })?;
        ctx.write_json(TRAINING, &record)?;
        Ok(serde_json::json!({
            "seconds": t0.elapsed().as_secs_f64(),
            "trainer": config.trainer.name(),
            "resumed_from_step": resumed_from,
        }))
    }
}
