//! The recipe schema: every key a recipe may hold, its meaning and its default.
//!
//! A recipe describes one experiment of the RLCD paper (arXiv 2307.12950): the models ("sizes")
//! that simulate preference data, the tasks (harmlessness, helpfulness, outlining; paper §4.1),
//! the methods compared (RLCD, RLAIF, RLCD-Rescore, context distillation, the base model;
//! paper §4.2) and the pairwise evaluation (paper §4.3). Unknown keys are errors everywhere.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::stages::appendix_n::TheoryConfig;

/// Built-in model presets a `[models.<name>]` table may name with `preset = "…"`.
pub const PRESETS: &[&str] = &["tiny", "world-xs", "world-s", "world-m"];

/// Downloadable models a `[models.<name>]` table may name with `asset = "…"`
/// (fetched with `rlcd assets fetch`).
pub const ASSETS: &[&str] = &[
    "smollm2-135m",
    "qwen2.5-coder-0.5b",
    "qwen2.5-coder-1.5b",
    "gemma3-270m",
];

/// Evaluation axes a task may list in `axes`: harmlessness, helpfulness, outline quality.
pub const AXES: &[&str] = &["harm", "help", "outline"];

/// One experiment: models, tasks, methods and their evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Run name; runs are written to `<results>/runs/<name>/<run-id>/`. Required.
    pub name: String,
    /// The one recipe seed; every other seed is derived from it with `rlcd::seed::derive`.
    /// Default 0 (the paper's seed).
    #[serde(default)]
    pub seed: u64,
    /// Compute backend: `"cpu"` (default) or `"cuda"` (needs a binary built with `--features cuda`).
    #[serde(default)]
    pub backend: BackendKind,
    /// Results root, relative to the project root. Default `"results"`.
    #[serde(default = "default_results")]
    pub results: PathBuf,
    /// Prompt-template directory, relative to the project root. Default `"prompt-templates"`.
    #[serde(default = "default_templates_dir")]
    pub templates_dir: PathBuf,
    /// Models by name: simulators, policies, judges. Each holds exactly one of `preset`, `gguf`
    /// or `asset`. Default: none.
    #[serde(default)]
    pub models: BTreeMap<String, ModelSpec>,
    /// Tasks by name (paper §4.1: harmlessness, helpfulness, outlining). Default: none.
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
    /// Methods by name; comparisons refer to these names. Default: none.
    #[serde(default)]
    pub methods: BTreeMap<String, MethodSpec>,
    /// Pairwise evaluation: judges, prompt count, comparisons (paper §4.3).
    #[serde(default)]
    pub eval: EvalConfig,
    /// The built-in world: its corpus, descriptors, judgment documents and `world:` prompt sets.
    #[serde(default)]
    pub world: crate::world::WorldConfig,
    /// From-scratch pretraining of the world presets (`world-xs`, `world-s`, `world-m`):
    /// overrides of each preset's defaults, and the world report's sizes.
    #[serde(default)]
    pub pretrain: crate::stages::pretrain::PretrainSettings,
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// burn's pure-Rust `flex` CPU backend.
    #[default]
    Cpu,
    /// burn's CUDA backend (NVIDIA GPUs).
    Cuda,
}

/// A model: a built-in preset, a local GGUF file or a fetched asset (exactly one).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// A built-in preset trained from scratch on the built-in world (see [`PRESETS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Path of a GGUF file, relative to the project root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gguf: Option<PathBuf>,
    /// A downloadable model fetched with `rlcd assets fetch` (see [`ASSETS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// Expected SHA-256 of the model file (64 hex digits); checked before use when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
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

    /// A fetched asset model.
    pub fn asset(name: &str) -> Self {
        Self {
            asset: Some(name.to_string()),
            ..Self::default()
        }
    }
}

/// A task: a prompt set rendered through one template family and judged on some axes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// The prompt set: `"world:<task>"` (the built-in world), `"assets:<name>"`
    /// (`assets/prompts/<name>.jsonl`, from `rlcd assets fetch`) or a `.jsonl` / `.txt` path
    /// relative to the project root. Required.
    pub prompts: String,
    /// Template family: a subdirectory of `templates_dir` holding `plain.j2`, `positive.j2` and
    /// `negative.j2`, with affix pairs in `affixes/<templates>.toml`. Required.
    pub templates: String,
    /// Evaluation axes, a subset of `harm`, `help`, `outline`. Default: none.
    #[serde(default)]
    pub axes: Vec<String>,
    /// Use at most this many prompts of the set (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_prompts: Option<usize>,
}

/// Preference-pair simulation (paper §4.2: temperature 1.0, up to 300 new tokens, no top-p,
/// unfinished outputs re-sampled up to 5 times, batch 16).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateConfig {
    /// Sampling temperature, ≥ 0 (0 = greedy). Default 1.0.
    #[serde(default = "one")]
    pub temperature: f64,
    /// Nucleus-sampling mass in (0, 1]; 1.0 disables top-p. Default 1.0.
    #[serde(default = "one")]
    pub top_p: f64,
    /// Maximum new tokens per output. Default 300.
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// Simulate pairs for at most this many training prompts per task (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_prompts: Option<usize>,
    /// Re-samples of an output that never ends its turn before the prompt is dropped. Default 5.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Sequences generated together. Default 16.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

impl Default for SimulateConfig {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: default_max_new_tokens(),
            n_prompts: None,
            retries: default_retries(),
            batch_size: default_batch_size(),
        }
    }
}

fn one() -> f64 {
    1.0
}

fn default_max_new_tokens() -> usize {
    300
}

fn default_retries() -> u32 {
    5
}

fn default_batch_size() -> usize {
    16
}

/// Preference-model training (paper Appendix B: 1 epoch, lr 3e-6, cosine schedule, 3% warmup,
/// 16 pairs per batch, max length 512, Bradley–Terry loss).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardConfig {
    /// Passes over the simulated pairs. Default 1.
    #[serde(default = "default_reward_epochs")]
    pub epochs: usize,
    /// Peak learning rate (AdamW, cosine decay). Default 3e-6.
    #[serde(default = "default_reward_lr")]
    pub lr: f64,
    /// Fraction of steps spent in linear warm-up, in [0, 1). Default 0.03.
    #[serde(default = "default_warmup")]
    pub warmup_frac: f64,
    /// Pairs per optimiser step. Default 16.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Maximum tokens of prompt + output. Default 512.
    #[serde(default = "default_max_len")]
    pub max_len: usize,
    /// Fraction of the simulated pairs held out from training to measure how well the
    /// preference model fits its own labels, in [0, 1). Default 0.1.
    #[serde(default = "default_holdout")]
    pub holdout_frac: f64,
    /// Held-out test prompts per world task whose pair of independent policy samples, labelled
    /// by the oracle (ties left out), measures preference-model agreement (paper Table 5).
    /// Default 200.
    #[serde(default = "default_heldout_pairs")]
    pub heldout_pairs: usize,
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self {
            epochs: default_reward_epochs(),
            lr: default_reward_lr(),
            warmup_frac: default_warmup(),
            batch_size: default_batch_size(),
            max_len: default_max_len(),
            holdout_frac: default_holdout(),
            heldout_pairs: default_heldout_pairs(),
        }
    }
}

fn default_reward_epochs() -> usize {
    1
}

fn default_reward_lr() -> f64 {
    3e-6
}

fn default_warmup() -> f64 {
    0.03
}

fn default_max_len() -> usize {
    512
}

fn default_holdout() -> f64 {
    0.1
}

fn default_heldout_pairs() -> usize {
    200
}

/// PPO against the preference model (paper Appendix B, AlpacaFarm's PPO: fixed KL coefficient
/// 0.002–0.004, 40–80 steps of 512 rollouts, lr 1e-5, clip 0.2, value clip 0.2, vf 0.1,
/// γ = λ = 1, whitened rewards, query ≤ 192 and response ≤ 300 tokens).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PpoConfig {
    /// Fixed KL-penalty coefficient against the initial policy, ≥ 0. Default 0.003
    /// (the paper used 0.002–0.004).
    #[serde(default = "default_kl")]
    pub kl_coef: f64,
    /// PPO steps (each collects `rollouts` responses). Default 60 (the paper used 40–80).
    #[serde(default = "default_ppo_steps")]
    pub steps: usize,
    /// Rollouts collected per step. Default 512.
    #[serde(default = "default_rollouts")]
    pub rollouts: usize,
    /// Rollouts per optimiser mini-batch. Default 256.
    #[serde(default = "default_step_batch")]
    pub step_batch: usize,
    /// Optimisation epochs over each step's rollouts. Default 2.
    #[serde(default = "default_ppo_epochs")]
    pub epochs: usize,
    /// Learning rate (AdamW, eps 1e-5). Default 1e-5.
    #[serde(default = "default_ppo_lr")]
    pub lr: f64,
    /// Policy-ratio clip range, > 0. Default 0.2.
    #[serde(default = "default_clip")]
    pub clip: f64,
    /// Value clip range, > 0. Default 0.2.
    #[serde(default = "default_clip")]
    pub value_clip: f64,
    /// Value-loss weight. Default 0.1.
    #[serde(default = "default_vf_coef")]
    pub vf_coef: f64,
    /// Discount γ in [0, 1]. Default 1.0.
    #[serde(default = "one")]
    pub gamma: f64,
    /// GAE λ in [0, 1]. Default 1.0.
    #[serde(default = "one")]
    pub lambda: f64,
    /// Whiten rewards per batch. Default true.
    #[serde(default = "yes")]
    pub whiten_rewards: bool,
    /// Rollout sampling temperature, ≥ 0. Default 1.0.
    #[serde(default = "one")]
    pub temperature: f64,
    /// Maximum query tokens (longer prompts are skipped). Default 192.
    #[serde(default = "default_query_tokens")]
    pub max_query_tokens: usize,
    /// Maximum response tokens. Default 300.
    #[serde(default = "default_max_new_tokens")]
    pub max_response_tokens: usize,
    /// Checkpoint policy, value model, optimisers and step every this many steps, so a killed
    /// run resumes there (0: never). Default 10.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// A KL budget, > 0 (nats per response): PPO stops at the first step whose rollouts have a
    /// mean KL to the initial policy above it, skipping that step's update and keeping the
    /// policy that sampled them. Comparing methods at a matched KL (Gao et al., 2022) keeps a
    /// run that drifts without raising its score from being compared far from its start.
    /// Absent (default, the paper): all `steps` run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_kl: Option<f64>,
}

fn default_checkpoint_every() -> usize {
    10
}

impl Default for PpoConfig {
    fn default() -> Self {
        Self {
            kl_coef: default_kl(),
            steps: default_ppo_steps(),
            rollouts: default_rollouts(),
            step_batch: default_step_batch(),
            epochs: default_ppo_epochs(),
            lr: default_ppo_lr(),
            clip: default_clip(),
            value_clip: default_clip(),
            vf_coef: default_vf_coef(),
            gamma: 1.0,
            lambda: 1.0,
            whiten_rewards: true,
            temperature: 1.0,
            max_query_tokens: default_query_tokens(),
            max_response_tokens: default_max_new_tokens(),
            checkpoint_every: default_checkpoint_every(),
            max_kl: None,
        }
    }
}

fn default_kl() -> f64 {
    0.003
}

fn default_ppo_steps() -> usize {
    60
}

fn default_rollouts() -> usize {
    512
}

fn default_step_batch() -> usize {
    256
}

fn default_ppo_epochs() -> usize {
    2
}

fn default_ppo_lr() -> f64 {
    1e-5
}

fn default_clip() -> f64 {
    0.2
}

fn default_vf_coef() -> f64 {
    0.1
}

fn yes() -> bool {
    true
}

fn default_query_tokens() -> usize {
    192
}

/// Context distillation: supervised fine-tuning on (prompt without affix → o+)
/// (paper §4.2: 3 epochs, lr 2e-5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// Passes over the (prompt, o+) pairs. Default 3.
    #[serde(default = "default_distill_epochs")]
    pub epochs: usize,
    /// Learning rate. Default 2e-5.
    #[serde(default = "default_distill_lr")]
    pub lr: f64,
    /// Examples per optimiser step. Default 16.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

impl Default for DistillConfig {
    fn default() -> Self {
        Self {
            epochs: default_distill_epochs(),
            lr: default_distill_lr(),
            batch_size: default_batch_size(),
        }
    }
}

fn default_distill_epochs() -> usize {
    3
}

fn default_distill_lr() -> f64 {
    2e-5
}

/// DPO on the simulated pairs (Rafailov et al. 2023; beyond the paper, which names it as
/// future work): the frozen reference is the initial policy, soft labels P(B) are targets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpoConfig {
    /// Inverse temperature β of the implicit reward, > 0. Default 0.1.
    #[serde(default = "default_dpo_beta")]
    pub beta: f64,
    /// Passes over the pairs. Default 1.
    #[serde(default = "default_dpo_epochs")]
    pub epochs: usize,
    /// Peak learning rate (AdamW, 10% warm-up, cosine decay). Default 1e-6.
    #[serde(default = "default_dpo_lr")]
    pub lr: f64,
    /// Pairs per optimiser step. Default 16.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

impl Default for DpoConfig {
    fn default() -> Self {
        Self {
            beta: default_dpo_beta(),
            epochs: default_dpo_epochs(),
            lr: default_dpo_lr(),
            batch_size: default_batch_size(),
        }
    }
}

fn default_dpo_beta() -> f64 {
    0.1
}

fn default_dpo_epochs() -> usize {
    1
}

fn default_dpo_lr() -> f64 {
    1e-6
}

/// How a method's policy learns from its preference pairs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// `"ppo"` (default: PPO against a preference model, the paper) or `"dpo"`; only for the
    /// pair methods (`rlcd`, `rlaif`, `rlcd-rescore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainer: Option<Trainer>,
}

/// Pairwise evaluation (paper §4.3: 1,000 test prompts per comparison, order swapped with
/// probability 1/2, ties count one half).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Judges: `"oracle"` (the built-in world's scorers) or `"lm:<model>"` (a model in
    /// `[models]` answering the judge questions). Default `["oracle"]`.
    #[serde(default = "default_judges")]
    pub judges: Vec<String>,
    /// Evaluate on at most this many test prompts per task (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_prompts: Option<usize>,
    /// Pairs of method names to compare, e.g. `[["rlcd", "rlaif"]]`. Default (key absent):
    /// every `rlcd` method against each `rlaif`, `context-distillation`, `base` and
    /// `rlcd-rescore` method with the same policy model (and simulator, where it has one).
    /// `[]` trains and compares no policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparisons: Option<Vec<[String; 2]>>,
    /// Sampling temperature of the evaluated outputs, ≥ 0. Default 1.0.
    #[serde(default = "one")]
    pub temperature: f64,
    /// Maximum new tokens per evaluated output. Default 300.
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// How `lm:` judges order the two outputs: `"coin"` (default, the paper: one order per
    /// comparison, drawn by a seeded coin) or `"both"` (asked in both orders; a side wins only
    /// when both answers agree, otherwise a tie, as in MT-Bench). `"both"` costs two judge
    /// calls per comparison and turns a judge's letter bias into ties instead of noise.
    #[serde(default)]
    pub judge_order: JudgeOrder,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            judges: default_judges(),
            n_prompts: None,
            comparisons: None,
            temperature: 1.0,
            max_new_tokens: default_max_new_tokens(),
            judge_order: JudgeOrder::default(),
        }
    }
}

/// How an LM judge orders the two outputs it compares ([`EvalConfig::judge_order`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JudgeOrder {
    /// One order per comparison, drawn by a seeded coin (the paper).
    #[default]
    Coin,
    /// Both orders; agreeing answers decide, disagreeing ones tie.
    Both,
}

impl JudgeOrder {
    /// The order as written in recipes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Coin => "coin",
            Self::Both => "both",
        }
    }
}

fn default_judges() -> Vec<String> {
    vec!["oracle".to_string()]
}
