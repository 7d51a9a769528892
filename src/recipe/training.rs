//! The recipe's training sections: preference-pair simulation (paper §4.2), the preference
//! model (Appendix B), PPO (Appendix B, AlpacaFarm's defaults), context distillation (§4.2)
//! and DPO. Every default is written once, in the section's `Default` impl.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::LoraConfig;

/// Preference-pair simulation (paper §4.2: temperature 1.0, up to 300 new tokens, no top-p,
/// unfinished outputs re-sampled up to 5 times, batch 16).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SimulateConfig {
    /// Sampling temperature, ≥ 0 (0 = greedy).
    pub temperature: f64,
    /// Nucleus-sampling mass in (0, 1]; 1.0 disables top-p.
    pub top_p: f64,
    /// Maximum new tokens per output.
    pub max_new_tokens: usize,
    /// Simulate pairs for at most this many training prompts per task (all when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_prompts: Option<usize>,
    /// Re-samples of an output that never ends its turn, or is empty, before the prompt is
    /// dropped.
    pub retries: u32,
    /// Keep an output that reaches `max_new_tokens` without ending its turn, cut there (as
    /// TRL and AlpacaFarm keep truncated samples), instead of re-sampling it and dropping its
    /// prompt as the paper does; empty outputs are still re-sampled. For small models that
    /// rarely end a turn within an affordable token limit.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keep_unfinished: bool,
    /// Sequences generated together (also the batch of evaluation sampling and judging).
    pub batch_size: usize,
}

impl Default for SimulateConfig {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 300,
            n_prompts: None,
            retries: 5,
            keep_unfinished: false,
            batch_size: 16,
        }
    }
}

/// Preference-model training (paper Appendix B: 1 epoch, lr 3e-6, cosine schedule, 3% warmup,
/// 16 pairs per batch, max length 512, Bradley–Terry loss).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RewardConfig {
    /// Passes over the simulated pairs.
    pub epochs: usize,
    /// Peak learning rate (AdamW, cosine decay).
    pub lr: f64,
    /// Fraction of steps spent in linear warm-up, in [0, 1).
    pub warmup_frac: f64,
    /// Pairs per optimiser step.
    pub batch_size: usize,
    /// Maximum tokens of prompt + output.
    pub max_len: usize,
    /// Fraction of the simulated pairs held out from training to measure how well the
    /// preference model fits its own labels, in [0, 1).
    pub holdout_frac: f64,
    /// Held-out test prompts per world task whose pair of independent policy samples, labelled
    /// by the oracle (ties left out), measures preference-model agreement (paper Table 5).
    pub heldout_pairs: usize,
    /// Train low-rank adapters on the frozen trunk (the scalar head stays trainable) instead
    /// of every weight, merged into the model afterwards. Absent (the paper): every weight is
    /// trained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            lr: 3e-6,
            warmup_frac: 0.03,
            batch_size: 16,
            max_len: 512,
            holdout_frac: 0.1,
            heldout_pairs: 200,
            lora: None,
        }
    }
}

/// PPO against the preference model (paper Appendix B, AlpacaFarm's PPO: fixed KL coefficient
/// 0.002–0.004, 40–80 steps of 512 rollouts, lr 1e-5, clip 0.2, value clip 0.2, vf 0.1,
/// γ = λ = 1, whitened rewards, query ≤ 192 and response ≤ 300 tokens).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PpoConfig {
    /// KL-penalty coefficient against the initial policy, ≥ 0 (the paper used 0.002–0.004,
    /// fixed); the starting value when `adaptive_kl` is set.
    pub kl_coef: f64,
    /// Clamp each token's log π − log π_ref at 0 in the KL penalty, as AlpacaFarm's PPO (which
    /// the paper's code runs) shapes its rewards; false penalises the signed difference.
    pub kl_clamp: bool,
    /// An adaptive KL coefficient (Ziegler et al. 2019) steering the rollouts' KL to a target.
    /// Absent (the paper): the coefficient stays `kl_coef`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adaptive_kl: Option<AdaptiveKl>,
    /// Optimiser updates of linear learning-rate warm-up from 0, counted as transformers'
    /// constant-with-warm-up schedule counts them (AlpacaFarm's PPO script uses 5); 0: none.
    pub warmup_steps: usize,
    /// PPO steps, each collecting `rollouts` responses (the paper used 40–80).
    pub steps: usize,
    /// Rollouts collected per step.
    pub rollouts: usize,
    /// Rollouts per optimiser mini-batch.
    pub step_batch: usize,
    /// Optimisation epochs over each step's rollouts.
    pub epochs: usize,
    /// Learning rate (AdamW, eps 1e-5, constant).
    pub lr: f64,
    /// Policy-ratio clip range, > 0.
    pub clip: f64,
    /// Value clip range, > 0.
    pub value_clip: f64,
    /// Value-loss weight.
    pub vf_coef: f64,
    /// Discount γ in [0, 1].
    pub gamma: f64,
    /// GAE λ in [0, 1].
    pub lambda: f64,
    /// Whiten rewards per batch.
    pub whiten_rewards: bool,
    /// Rollout sampling temperature, ≥ 0.
    pub temperature: f64,
    /// Maximum query tokens (longer prompts are skipped).
    pub max_query_tokens: usize,
    /// Maximum response tokens.
    pub max_response_tokens: usize,
    /// Score a rollout cut at `max_response_tokens` with the preference model like a finished
    /// one (TRL's default, which adds no missing-EOS penalty). False (the paper's Appendix B,
    /// AlpacaFarm): its reward is −1. An empty rollout gets −1 either way.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub score_unfinished: bool,
    /// Checkpoint policy, value model, optimisers and step every this many steps, so a killed
    /// run resumes there (0: never).
    pub checkpoint_every: usize,
    /// A KL budget, > 0 (nats per response): PPO stops at the first step whose rollouts have a
    /// mean KL to the initial policy above it, skipping that step's update and keeping the
    /// policy that sampled them. Comparing methods at a matched KL (Gao et al., 2022) keeps a
    /// run that drifts without raising its score from being compared far from its start.
    /// Absent (the paper): all `steps` run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_kl: Option<f64>,
    /// Train low-rank adapters on the frozen policy and value trunk instead of every weight,
    /// merged into the model afterwards. Absent (the paper): every weight is trained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
}

impl Default for PpoConfig {
    fn default() -> Self {
        Self {
            kl_coef: 0.003,
            kl_clamp: true,
            adaptive_kl: None,
            warmup_steps: 5,
            steps: 60,
            rollouts: 512,
            step_batch: 256,
            epochs: 2,
            lr: 1e-5,
            clip: 0.2,
            value_clip: 0.2,
            vf_coef: 0.1,
            gamma: 1.0,
            lambda: 1.0,
            whiten_rewards: true,
            temperature: 1.0,
            max_query_tokens: 192,
            max_response_tokens: 300,
            score_unfinished: false,
            checkpoint_every: 10,
            max_kl: None,
            lora: None,
        }
    }
}

/// The adaptive KL controller of Ziegler et al. (2019): after each PPO step the coefficient is
/// multiplied by 1 + clip(KL / `target` − 1, −0.2, 0.2) · rollouts / `horizon`, where KL is the
/// step's mean KL to the initial policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveKl {
    /// Target KL to the initial policy, nats per response, > 0.
    pub target: f64,
    /// Horizon in rollouts, > 0: how slowly the coefficient moves.
    pub horizon: f64,
}

impl Default for AdaptiveKl {
    fn default() -> Self {
        Self {
            target: 6.0,
            horizon: 10_000.0,
        }
    }
}

/// Context distillation: supervised fine-tuning on (prompt without affix → o+)
/// (paper §4.2: 3 epochs, lr 2e-5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DistillConfig {
    /// Passes over the (prompt, o+) pairs.
    pub epochs: usize,
    /// Learning rate.
    pub lr: f64,
    /// Examples per optimiser step.
    pub batch_size: usize,
    /// Train low-rank adapters on the frozen model instead of every weight, merged into the
    /// model afterwards. Absent (the paper): every weight is trained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
}

impl Default for DistillConfig {
    fn default() -> Self {
        Self {
            epochs: 3,
            lr: 2e-5,
            batch_size: 16,
            lora: None,
        }
    }
}

/// DPO on the simulated pairs (Rafailov et al. 2023; beyond the paper, which names it as
/// future work): the frozen reference is the initial policy, soft labels P(B) are targets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DpoConfig {
    /// Inverse temperature β of the implicit reward, > 0.
    pub beta: f64,
    /// Passes over the pairs.
    pub epochs: usize,
    /// Peak learning rate (AdamW, 10% warm-up, cosine decay).
    pub lr: f64,
    /// Pairs per optimiser step.
    pub batch_size: usize,
    /// Train low-rank adapters on the frozen model instead of every weight, merged into the
    /// model afterwards. Absent (the paper): every weight is trained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
}

impl Default for DpoConfig {
    fn default() -> Self {
        Self {
            beta: 0.1,
            epochs: 1,
            lr: 1e-6,
            batch_size: 16,
            lora: None,
        }
    }
}
