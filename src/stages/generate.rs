//! The `generate` stage (paper §3 step 4, §4.3): one output per test prompt per policy,
//! sampled at the evaluation temperature and cut at the next speaker tag. Prompt `i` of a task
//! is sampled with the same seed for every policy, so compared outputs share their random
//! stream.

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::inputs::{ModelRef, in_format};
use super::key::Unkeyed;
use super::planning::{PlanError, Planned, Planner};
use super::policy::{PolicyFormat, load_policy};
use super::stage::{Ctx, Stage, StageError, StageKind, with_backend};
use crate::model::sampling::{FinishReason, GenerateOptions, GenerationRequest};
use crate::model::{Lm, ModelError, Truncate};
use crate::prompts::{Dialogue, PromptSet, contrast_prompts};
use crate::recipe::{BackendKind, WeightFormat};
use crate::seed;
use crate::templates::TemplateSet;
use crate::world::format::Split;

/// File name of a generate stage's samples.
pub const SAMPLES: &str = "samples.json";

/// One policy output for one test prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The dialogue's id.
    pub prompt_id: String,
    /// The dialogue turns (human, assistant, …, human).
    pub turns: Vec<String>,
    /// The plain prompt p.
    pub prompt: String,
    /// The output, cut before the next speaker tag.
    pub output: String,
    /// Whether the output ended its turn within the token limit.
    pub finished: bool,
    /// Output length in the policy's tokens.
    pub len: usize,
    /// The sampling seed.
    pub seed: u64,
}

/// How to sample evaluation outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleSettings {
    /// Sampling temperature.
    pub temperature: f64,
    /// Most new tokens per output.
    pub max_new_tokens: usize,
    /// Sequences generated together.
    pub batch_size: usize,
}

/// One sample of `lm` per prompt: `prompts[i]` is the plain prompt of `dialogues[i]`, sampled
/// with seed `seed::derive_index(seed, "sample", i)`; over-long prompts are handled as
/// `truncate` says.
#[allow(clippy::too_many_arguments)]
pub fn generate_samples<B: Backend>(
    lm: &Lm<B>,
    format: &PolicyFormat,
    dialogues: &[Dialogue],
    prompts: &[String],
    settings: &SampleSettings,
    truncate: Truncate,
    seed: u64,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Vec<Sample>, ModelError> {
    let opts = GenerateOptions {
        max_new_tokens: settings.max_new_tokens,
        temperature: settings.temperature,
        truncate,
        ..format.generate_options()
    };
    let mut out = Vec::with_capacity(prompts.len());
    let items: Vec<(usize, (&Dialogue, &String))> =
        dialogues.iter().zip(prompts).enumerate().collect();
    for chunk in items.chunks(settings.batch_size.max(1)) {
        let requests: Vec<GenerationRequest> = chunk
            .iter()
            .map(|(i, (_, p))| {
                Ok(GenerationRequest {
                    prompt: format.query(&lm.tokenizer, p)?,
                    seed: seed::derive_index(seed, "sample", *i as u64),
                })
            })
            .collect::<Result<_, ModelError>>()?;
        for ((_, (d, p)), (req, g)) in chunk
            .iter()
            .zip(requests.iter().zip(lm.generate(&requests, &opts)?))
        {
            out.push(Sample {
                prompt_id: d.id.clone(),
                turns: d.turns.clone(),
                prompt: (*p).clone(),
                len: lm.encode(&g.text)?.len(),
                finished: g.finish_reason != FinishReason::Length,
                output: g.text,
                seed: req.seed,
            });
        }
        on_batch(out.len());
    }
    Ok(out)
}

/// The stage type.
pub struct Generate;

/// What one policy's evaluation samples read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The recipe's method.
    pub method: String,
    /// The policy sampled.
    pub policy: PolicySource,
    /// The task.
    pub task: String,
    /// Its test prompts.
    pub prompts: PromptSet,
    /// Its template family (the plain prompt).
    pub family: String,
    /// The family's files.
    pub templates: TemplateSet,
    /// How outputs are sampled.
    pub settings: SampleSettings,
    /// The compute backend.
    pub backend: BackendKind,
    /// Seed of the samples (the same for every policy of the task).
    pub seed: u64,
    /// The format of the policy's matrices while it samples: `models.<name>.weights` of the
    /// method's policy model, for the base model and a trained policy alike, so every method
    /// of a comparison samples in the same precision.
    #[serde(default, skip_serializing_if = "WeightFormat::is_f32")]
    pub weights: WeightFormat,
    /// Settings outside the key (over-long prompts).
    #[serde(default)]
    pub unkeyed: Unkeyed,
}

/// Which policy is sampled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PolicySource {
    /// The policy a policy stage trained.
    Trained(String),
    /// An untrained model (the `base` method).
    Base(ModelRef),
}

/// Id of the samples of `method` on `task`.
pub fn id(method: &str, task: &str) -> String {
    format!("generate/{method}/{task}")
}

/// The evaluation samples of recipe method `method` on task `task`, from the policy of stage
/// `trained` (or the untrained policy model).
pub fn plan(
    p: &Planner<'_>,
    method: &str,
    task: &str,
    trained: Option<String>,
) -> Result<Planned, PlanError> {
    let recipe = p.recipe();
    let model = &p.method(method)?.policy;
    let policy = match trained {
        Some(stage) => PolicySource::Trained(stage),
        None => PolicySource::Base(p.model(model)?),
    };
    for key in [
        "eval.n_prompts",
        "eval.temperature",
        "eval.max_new_tokens",
        "simulate.batch_size",
    ] {
        p.read(key);
    }
    let (family, templates) = p.task_templates(task)?;
    let config = Config {
        method: method.to_string(),
        policy,
        task: task.to_string(),
        prompts: p.prompts(task, Split::Test, recipe.eval.n_prompts)?,
        family,
        templates,
        settings: SampleSettings {
            temperature: recipe.eval.temperature,
            max_new_tokens: recipe.eval.max_new_tokens,
            batch_size: recipe.simulate.batch_size,
        },
        backend: p.backend(),
        seed: p.seed(&["generate", task]),
        weights: p.weights(model)?,
        unkeyed: p.unkeyed(),
    };
    Planned::new::<Generate>(id(method, task), &config)
}

impl Stage for Generate {
    const KIND: StageKind = StageKind::Generate;
    const VERSION: u32 = 1;
    type Config = Config;

    fn inputs(config: &Config) -> Vec<String> {
        match &config.policy {
            PolicySource::Trained(stage) => vec![stage.clone()],
            PolicySource::Base(model) => model.inputs(),
        }
    }

    fn run(ctx: &Ctx<'_>, config: &Config) -> Result<serde_json::Value, StageError> {
        let t0 = std::time::Instant::now();
        let test = config.prompts.load(ctx.root)?;
        if test.is_empty() {
            return Err(StageError::Degenerate {
                what: "0 test-split prompts to generate from".into(),
                fix: "give the task's prompt set test-split records (`\"split\": \"test\"`)".into(),
            });
        }
        let templates = config.templates.templates();
        let prompts: Vec<String> =
            contrast_prompts(&templates, &config.family, &test, config.seed)?
                .into_iter()
                .map(|c| c.plain)
                .collect();
        let pb = ctx.progress(test.len() as u64);
        let samples = with_backend!(config.backend, B, device => {
            let (lm, format) = match &config.policy {
                PolicySource::Trained(stage) => load_policy::<B>(&ctx.input(stage)?.dir, &device)?,
                PolicySource::Base(model) => {
                    let lm = model.load::<B>(ctx, &device)?;
                    let format = model.format(&lm.tokenizer)?;
                    (lm, format)
                }
            };
            let lm = in_format(lm, config.weights)?;
            generate_samples(
                &lm, &format, &test, &prompts, &config.settings, config.unkeyed.truncate,
                config.seed,
                &mut |n| pb.set_position(n as u64),
            )
            .map_err(StageError::from)
        })?;
        pb.finish_and_clear();
        if samples.iter().all(|s| s.output.trim().is_empty()) {
            return Err(StageError::Degenerate {
                what: format!("all {} samples of the policy are empty", samples.len()),
                fix: "the policy ends every answer at once: check its training (a collapsed PPO \
                      run shows in the policy_training table) or raise `eval.max_new_tokens`"
                    .into(),
            });
        }
        ctx.write_json(SAMPLES, &samples)?;
        Ok(serde_json::json!({
            "seconds": t0.elapsed().as_secs_f64(),
            "samples": samples.len(),
            "unfinished": samples.iter().filter(|s| !s.finished).count(),
        }))
    }
}
