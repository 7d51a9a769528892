//! The recipe's `[pretrain]` section: from-scratch pretraining of the built-in world's
//! presets (`world-xs`, `world-s`, `world-m`, the paper's simulator sizes in the world, and the
//! larger judge `world-l`) and the sizes of the world report that measures them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::train::Schedule;

/// The recipe's `[pretrain]` table: overrides of the world presets' training defaults
/// ([`PretrainConfig::for_preset`]) and the held-out share of the corpus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainSettings {
    /// Optimiser steps (default: the preset's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// Rows per step (default: the preset's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Tokens per row (default: the preset's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<usize>,
    /// Peak learning rate (default: the preset's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Warm-up fraction of the steps (default: the preset's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_frac: Option<f64>,
    /// Cosine floor as a fraction of `lr` (default: the preset's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_lr_frac: Option<f64>,
    /// AdamW weight decay (default: the preset's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// Global gradient-norm clip, 0 = off (default: the preset's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_clip: Option<f64>,
    /// Corpus documents held out of training to measure perplexity.
    pub heldout_documents: usize,
    /// What the world report measures for each preset.
    pub report: ReportConfig,
}

impl Default for PretrainSettings {
    fn default() -> Self {
        Self {
            steps: None,
            batch_size: None,
            seq_len: None,
            lr: None,
            warmup_frac: None,
            min_lr_frac: None,
            weight_decay: None,
            grad_clip: None,
            heldout_documents: 300,
            report: ReportConfig::default(),
        }
    }
}

impl PretrainSettings {
    /// The training configuration of `preset` with these overrides (`None` for a preset that
    /// is not trained on the world).
    pub fn config_for(&self, preset: &str) -> Option<PretrainConfig> {
        let mut c = PretrainConfig::for_preset(preset)?;
        c.steps = self.steps.unwrap_or(c.steps);
        c.batch_size = self.batch_size.unwrap_or(c.batch_size);
        c.seq_len = self.seq_len.unwrap_or(c.seq_len);
        c.lr = self.lr.unwrap_or(c.lr);
        c.warmup_frac = self.warmup_frac.unwrap_or(c.warmup_frac);
        c.min_lr_frac = self.min_lr_frac.unwrap_or(c.min_lr_frac);
        c.weight_decay = self.weight_decay.unwrap_or(c.weight_decay);
        c.grad_clip = self.grad_clip.unwrap_or(c.grad_clip);
        Some(c)
    }

    /// Problems as `(key under [pretrain], problem and fix)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = self
            .config_for("world-s")
            .map(|c| c.problems())
            .unwrap_or_default();
        if self.report.batch_size == 0 {
            out.push(("report.batch_size".into(), "must be at least 1".into()));
        }
        if self.report.max_new_tokens == 0 {
            out.push(("report.max_new_tokens".into(), "must be at least 1".into()));
        }
        out
    }
}

/// Training hyper-parameters of from-scratch pretraining.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    /// Number of optimiser steps.
    pub steps: usize,
    /// Rows per optimiser step.
    pub batch_size: usize,
    /// Tokens per row: documents are packed into rows of at most this many tokens.
    pub seq_len: usize,
    /// Peak learning rate (reached at the end of the warm-up).
    pub lr: f64,
    /// Fraction of the steps spent in the linear warm-up, in `[0, 1)`; cosine decay follows.
    pub warmup_frac: f64,
    /// Floor of the cosine decay as a fraction of `lr`, in `[0, 1]` (reached at the last step).
    pub min_lr_frac: f64,
    /// AdamW decoupled weight decay (multiplied by the current learning rate).
    pub weight_decay: f64,
    /// Maximum global L2 norm of the gradient; larger gradients are scaled down (0 = off).
    pub grad_clip: f64,
}

impl PretrainConfig {
    /// Named presets: defaults for `world-xs`, `world-s`, `world-m`, `world-l`; `None` otherwise.
    pub fn for_preset(name: &str) -> Option<Self> {
        let (steps, batch_size, lr) = match name.replace('_', "-").as_str() {
            "world-xs" => (60, 8, 1e-2),
            "world-s" => (680, 8, 1e-2),
            "world-m" => (1200, 8, 7e-3),
            "world-l" => (2400, 8, 5e-3),
            _ => return None,
        };
        Some(Self {
            steps,
            batch_size,
            seq_len: 256,
            lr,
            warmup_frac: 0.05,
            min_lr_frac: 0.1,
            weight_decay: 0.1,
            grad_clip: 1.0,
        })
    }

    /// Checks ranges; returns a list of `(field, problem-and-fix)` pairs (empty when valid).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut add = |field: &str, why: String| out.push((field.to_string(), why));
        if self.steps == 0 {
            add(
                "steps",
                "must be at least 1 (got 0); set the number of optimiser steps, e.g. 400".into(),
            );
        }
        if self.batch_size == 0 {
            add(
                "batch_size",
                "must be at least 1 (got 0); set the rows per step, e.g. 12".into(),
            );
        }
        if self.seq_len < 2 {
            add(
                "seq_len",
                format!(
                    "must be at least 2 tokens (got {}): a row needs an input and a target; e.g. 256",
                    self.seq_len
                ),
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            add(
                "lr",
                format!(
                    "must be a positive finite number (got {}); e.g. 2e-3",
                    self.lr
                ),
            );
        }
        if !(self.warmup_frac.is_finite() && (0.0..1.0).contains(&self.warmup_frac)) {
            add(
                "warmup_frac",
                format!(
                    "must lie in [0, 1) (got {}); e.g. 0.05 warms up over 5% of the steps",
                    self.warmup_frac
                ),
            );
        }
        if !(self.min_lr_frac.is_finite() && (0.0..=1.0).contains(&self.min_lr_frac)) {
            add(
                "min_lr_frac",
                format!(
                    "must lie in [0, 1] (got {}); e.g. 0.1 decays to a tenth of lr",
                    self.min_lr_frac
                ),
            );
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            add(
                "weight_decay",
                format!(
                    "must be a finite number ≥ 0 (got {}); e.g. 0.1, or 0 for none",
                    self.weight_decay
                ),
            );
        }
        if !(self.grad_clip.is_finite() && self.grad_clip >= 0.0) {
            add(
                "grad_clip",
                format!(
                    "must be a finite number ≥ 0 (got {}); e.g. 1.0, or 0 to turn clipping off",
                    self.grad_clip
                ),
            );
        }
        out
    }

    /// The learning-rate schedule: warm-up, then cosine to `lr · min_lr_frac`.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            steps: self.steps,
            lr: self.lr,
            warmup_frac: self.warmup_frac,
            min_lr_frac: self.min_lr_frac,
        }
    }
}

/// How much the world report measures for each preset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Held-out prompts per task for the descriptor effect.
    pub prompts: usize,
    /// Held-out oracle-labelled pairs per task for RLAIF agreement.
    pub pairs: usize,
    /// Most new tokens per sampled output.
    pub max_new_tokens: usize,
    /// Sequences generated (or scored) together.
    pub batch_size: usize,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            prompts: 200,
            pairs: 300,
            max_new_tokens: 96,
            batch_size: 32,
        }
    }
}
