//! The recipe schema: the top-level keys, models, tasks and methods of a recipe (the
//! sections live beside this file). Every key carries one `///` doc and one default;
//! `rlcd schema --markdown` prints them all.
//!
//! A recipe describes one experiment of the RLCD paper (arXiv 2307.12950): the models ("sizes")
//! that simulate preference data, the tasks (harmlessness, helpfulness, outlining; paper §4.1),
//! the methods compared (RLCD, RLAIF, RLCD-Rescore, context distillation, the base model;
//! paper §4.2) and the pairwise evaluation (paper §4.3). Unknown keys are errors everywhere.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::eval::EvalConfig;
use super::pretrain::PretrainSettings;
use super::theory::TheoryConfig;
use super::training::{DistillConfig, DpoConfig, PpoConfig, RewardConfig, SimulateConfig};
use super::world::WorldConfig;
use crate::model::Truncate;

/// Built-in model presets a `[models.<name>]` table may name with `preset = "…"`.
pub const PRESETS: &[&str] = &["tiny", "world-xs", "world-s", "world-m", "world-l"];

/// Evaluation axes a task may list in `axes`: harmlessness, helpfulness, outline quality.
pub const AXES: &[&str] = &["harm", "help", "outline"];

/// One experiment: models, tasks, methods and their evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Run name; runs are written to `<results>/runs/<name>/<run-id>/`. Required.
    pub name: String,
    /// The one recipe seed; every other seed is derived from it with `rlcd::seed::derive`.
    #[serde(default)]
    pub seed: u64,
    /// Compute backend: `"cpu"` or `"cuda"` (needs a binary built with `--features cuda`).
    #[serde(default)]
    pub backend: BackendKind,
    /// Results root, relative to the project root.
    #[serde(default = "default_results")]
    pub results: PathBuf,
    /// Prompt-template directory, relative to the project root.
    #[serde(default = "default_templates_dir")]
    pub templates_dir: PathBuf,
    /// A prompt longer than a model's context leaves for it (the simulator's, a policy's or an
    /// LM judge's): `"left"` drops its oldest tokens, keeping the end it answers; `"error"` makes
    /// `rlcd validate` fail naming the prompt and its token count.
    #[serde(default)]
    pub truncate: Truncate,
    /// Models by name: simulators, policies, judges. Each holds exactly one of `preset`, `gguf`,
    /// `hf` or `asset`.
    #[serde(default)]
    pub models: BTreeMap<String, ModelSpec>,
    /// Tasks by name (paper §4.1: harmlessness, helpfulness, outlining).
    #[serde(default)]
    pub tasks: BTreeMap<String, TaskSpec>,
    /// Preference-pair simulation settings (paper §4.2, Appendix B).
    #[serde(default)]
    pub simulate: SimulateConfig,
    /// Preference-model training settings (paper Appendix B).
    #[serde(default)]
    pub reward: RewardConfig,
    /// PPO settings (paper Appendix B, AlpacaFarm defaults).
    #[serde(default)]
    pub ppo: PpoConfig,
    /// Context-distillation fine-tuning settings (paper §4.2 baseline).
    #[serde(default)]
    pub distill: DistillConfig,
    /// DPO settings (methods with `trainer = "dpo"`).
    #[serde(default)]
    pub dpo: DpoConfig,
    /// Methods by name; comparisons refer to these names.
    #[serde(default)]
    pub methods: BTreeMap<String, MethodSpec>,
    /// Pairwise evaluation: judges, prompt count, comparisons (paper §4.3).
    #[serde(default)]
    pub eval: EvalConfig,
    /// The built-in world: its corpus, descriptors, judgment documents and `world:` prompt sets.
    #[serde(default)]
    pub world: WorldConfig,
    /// From-scratch pretraining of the world presets (`world-xs` to `world-l`):
    /// overrides of each preset's defaults, and the world report's sizes.
    #[serde(default)]
    pub pretrain: PretrainSettings,
    /// The Appendix N Monte-Carlo of label accuracy; absent unless the recipe has `[theory]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub theory: Option<TheoryConfig>,
}

fn default_results() -> PathBuf {
    PathBuf::from("results")
}

fn default_templates_dir() -> PathBuf {
    PathBuf::from("prompt-templates")
}

/// The compute backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// burn's pure-Rust `flex` CPU backend.
    #[default]
    Cpu,
    /// burn's CUDA backend (NVIDIA GPUs).
    Cuda,
}

/// A model: a built-in preset, a local GGUF file, a Hugging Face checkpoint directory or a
/// fetched asset (exactly one).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// A built-in preset: `world-xs`, `world-s`, `world-m` or `world-l` (trained from scratch
    /// on the built-in world), or `tiny` (untrained, for tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Path of a GGUF file, relative to the project root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gguf: Option<PathBuf>,
    /// Path of a Hugging Face checkpoint directory (`config.json`, `model.safetensors` or
    /// shards with `model.safetensors.index.json`, `tokenizer.json`) of a `LlamaForCausalLM`
    /// or `Qwen2ForCausalLM`, relative to the project root; f32, f16 and bf16 weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf: Option<PathBuf>,
    /// A downloadable GGUF model fetched with `rlcd assets fetch` (`rlcd assets list` names
    /// them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// Expected SHA-256 of the model file (64 hex digits); checked before use when given (GGUF
    /// files and assets; a checkpoint directory is identified by the blake3 of its files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Put prompts in the model's chat template (an instruction-tuned model; ChatML when the
    /// file carries no template) instead of reading them as raw dialogue text: human turns
    /// become user messages, the RLCD affix goes into the assistant's speaker tag, a reply
    /// ends at the template's end of turn, and judge and labelling questions are user
    /// messages whose answer opening starts the reply. Not for world presets.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chat: bool,
    /// The format of its projection and output-head weights in the forward passes that take
    /// no gradient: simulation, held-out samples, evaluation samples of its policies (trained
    /// ones included), judging and pair labelling. `"q8_0"` quantizes them when the model is
    /// loaded to llama.cpp's Q8_0 (blocks of 32 weights with one scale), a quarter of the bytes
    /// a decoding step streams; `"f32"` keeps full precision. Training always reads `f32`
    /// weights. CPU backend only.
    #[serde(default, skip_serializing_if = "WeightFormat::is_f32")]
    pub weights: WeightFormat,
    /// For a world preset: how it learns to judge (its own pretraining corpus, with judgment
    /// settings of its own and judge-question documents). Absent: the world's corpus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judging: Option<super::world::Judging>,
}

impl ModelSpec {
    /// A built-in preset model.
    pub fn preset(name: &str) -> Self {
        Self {
            preset: Some(name.to_string()),
            ..Self::default()
        }
    }

    /// A GGUF file model.
    pub fn gguf(path: impl Into<PathBuf>) -> Self {
        Self {
            gguf: Some(path.into()),
            ..Self::default()
        }
    }

    /// A Hugging Face checkpoint directory.
    pub fn hf(path: impl Into<PathBuf>) -> Self {
        Self {
            hf: Some(path.into()),
            ..Self::default()
        }
    }

    /// A fetched asset model.
    pub fn asset(name: &str) -> Self {
        Self {
            asset: Some(name.to_string()),
            ..Self::default()
        }
    }
}

/// The numeric format of a frozen model's matrices (`models.<name>.weights`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    /// 32-bit floats, as loaded.
    #[default]
    F32,
    /// llama.cpp's Q8_0: blocks of 32 signed 8-bit weights sharing one `f16` scale.
    #[serde(rename = "q8_0")]
    Q8_0,
}

impl WeightFormat {
    /// Whether it is full precision (the default, left out of stage keys).
    pub fn is_f32(&self) -> bool {
        *self == WeightFormat::F32
    }
}

/// A task: a prompt set rendered through one template family and judged on some axes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// The prompt set: `"world:<task>"` (the built-in world), `"assets:<name>"`
    /// (`assets/prompts/<name>.jsonl`, from `rlcd assets fetch`) or a `.jsonl` / `.txt` path
    /// relative to the project root (a `.txt` file holds one prompt per line, or Anthropic-HH
    /// transcripts when its first line starts with `Human:`). Required.
    pub prompts: String,
    /// Template family: a subdirectory of `templates_dir` holding `plain.j2`, `positive.j2` and
    /// `negative.j2`, with affix pairs in `affixes/<templates>.toml`. Required.
    pub templates: String,
    /// Evaluation axes, a subset of `harm`, `help`, `outline`.
    #[serde(default)]
    pub axes: Vec<String>,
    /// Use at most this many prompts of the set (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_prompts: Option<usize>,
    /// A malformed record of the prompt file (a bad transcript, an empty turn, a record that is
    /// not JSON): `"error"` stops `rlcd validate` naming its line; `"skip"` leaves it out, and
    /// `rlcd validate` lists every skipped line.
    #[serde(default, skip_serializing_if = "OnMalformed::is_error")]
    pub malformed_prompts: OnMalformed,
}

/// What a malformed record of a prompt file does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnMalformed {
    /// Refuse the prompt file, naming the line.
    #[default]
    Error,
    /// Leave the record out (listed by `rlcd validate`).
    Skip,
}

impl OnMalformed {
    /// Whether it is [`OnMalformed::Error`] (the default, left out of stage keys).
    pub fn is_error(&self) -> bool {
        *self == Self::Error
    }
}

/// How a method's policy learns from its preference pairs.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Trainer {
    /// PPO against a preference model trained on the pairs (the paper).
    #[default]
    Ppo,
    /// DPO directly on the pairs (no preference model).
    Dpo,
}

impl Trainer {
    /// The trainer as written in recipes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ppo => "ppo",
            Self::Dpo => "dpo",
        }
    }
}

impl Recipe {
    /// The comparisons to evaluate: `eval.comparisons` when set, else the defaults (see
    /// [`EvalConfig::comparisons`]).
    pub fn comparisons(&self) -> Vec<[String; 2]> {
        if let Some(c) = &self.eval.comparisons {
            return c.clone();
        }
        let mut out = Vec::new();
        let order = [
            MethodKind::Rlaif,
            MethodKind::ContextDistillation,
            MethodKind::Base,
            MethodKind::RlcdRescore,
        ];
        for (name, m) in self
            .methods
            .iter()
            .filter(|(_, m)| m.kind == MethodKind::Rlcd)
        {
            for kind in order {
                for (other, o) in &self.methods {
                    let same_sim = o.kind == MethodKind::Base || o.simulator == m.simulator;
                    if o.kind == kind && o.policy == m.policy && same_sim {
                        out.push([name.clone(), other.clone()]);
                    }
                }
            }
        }
        out
    }

    /// Names of the methods some comparison evaluates, in name order.
    pub fn compared_methods(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<String> =
            self.comparisons().into_iter().flatten().collect();
        set.into_iter().collect()
    }
}

/// The kind of an alignment method (paper §4.2).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum MethodKind {
    /// RLCD: contrast prompts p+ / p−, o+ labelled preferred, PM, PPO.
    Rlcd,
    /// RLAIF: two samples of the plain prompt labelled zero-shot by the simulator.
    Rlaif,
    /// RLCD pairs labelled as RLAIF labels them.
    RlcdRescore,
    /// Supervised fine-tuning on (plain prompt → o+).
    ContextDistillation,
    /// The unaligned policy model itself.
    Base,
}

impl MethodKind {
    /// The kind as written in recipes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rlcd => "rlcd",
            Self::Rlaif => "rlaif",
            Self::RlcdRescore => "rlcd-rescore",
            Self::ContextDistillation => "context-distillation",
            Self::Base => "base",
        }
    }

    /// Whether the method simulates data with a simulator model.
    pub fn needs_simulator(self) -> bool {
        !matches!(self, Self::Base)
    }

    /// Whether the method trains on preference pairs (with a PM and PPO, or with DPO).
    pub fn uses_pairs(self) -> bool {
        matches!(self, Self::Rlcd | Self::Rlaif | Self::RlcdRescore)
    }

    /// Whether the method labels pairs with the RLAIF scoring prompt.
    pub fn uses_scoring_prompt(self) -> bool {
        matches!(self, Self::Rlaif | Self::RlcdRescore)
    }
}

/// A method: how the policy is aligned and which model simulates its data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MethodSpec {
    /// `"rlcd"`, `"rlaif"`, `"rlcd-rescore"`, `"context-distillation"` or `"base"`. Required.
    pub kind: MethodKind,
    /// Name of the model (in `[models]`) that simulates preference data; required for every
    /// kind but `base`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulator: Option<String>,
    /// Name of the model (in `[models]`) that is aligned (paper: always the small model). Required.
    pub policy: String,
    /// `"ppo"` (PPO against a preference model, the paper; the default) or `"dpo"`; only for the
    /// pair methods (`rlcd`, `rlaif`, `rlcd-rescore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainer: Option<Trainer>,
    /// A JSON Lines file of preference pairs in TRL's row shape (`prompt`, `chosen`,
    /// `rejected`, optionally `p_chosen`, `prompt_id`, `task`; what `rlcd export pairs` writes),
    /// relative to the project root, to train on instead of simulated pairs; the method then
    /// takes no `simulator`. For `rlcd`, `rlaif` (soft labels from `p_chosen`) and
    /// `context-distillation` (fine-tunes on `chosen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairs: Option<String>,
}
