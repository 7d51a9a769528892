//! Low-rank adapters (LoRA, Hu et al. 2021) for fine-tuning the decoder with its weights
//! frozen: the preference model (paper Appendix B), context distillation (§4.2), DPO and PPO
//! can train rank-`r` adapters on chosen projections instead of every weight, which is what
//! makes real-model training fit a CPU's time and memory.
//!
//! A projection `y = x·W` with an adapter computes `y = x·W + (α / r)·(x·A)·B`, `A` `[d_in, r]`
//! drawn uniformly in ±1/√d_in and `B` `[r, d_out]` zero, so an adapted model starts exactly
//! where its base is (the initialisation of Hugging Face `peft`). Training updates `A` and `B`
//! only; [`crate::model::Llama::merge_lora`] folds `(α / r)·A·B` into `W` afterwards, so the
//! model a trainer returns, saves and exports is a plain decoder.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A projection of a transformer block that can carry an adapter, named as Hugging Face
/// `peft`'s `target_modules` name them for LLaMA-family models.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum LoraTarget {
    /// The query projection.
    #[serde(rename = "q_proj")]
    Q,
    /// The key projection.
    #[serde(rename = "k_proj")]
    K,
    /// The value projection.
    #[serde(rename = "v_proj")]
    V,
    /// The attention output projection.
    #[serde(rename = "o_proj")]
    O,
    /// The MLP gate projection.
    #[serde(rename = "gate_proj")]
    Gate,
    /// The MLP up projection.
    #[serde(rename = "up_proj")]
    Up,
    /// The MLP down projection.
    #[serde(rename = "down_proj")]
    Down,
}

impl LoraTarget {
    /// Every target, in block order.
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::Q,
        LoraTarget::K,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::Gate,
        LoraTarget::Up,
        LoraTarget::Down,
    ];
}

/// LoRA fine-tuning of a trainer's model: base weights frozen, adapters trained and merged
/// afterwards. Defaults are `peft`'s for LLaMA models (rank 8, α 8, query and value
/// projections, no dropout).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    /// Rank `r` of every adapter, ≥ 1.
    pub rank: usize,
    /// Scale numerator α, > 0: an adapter adds `(α / r)·x·A·B` to its projection.
    pub alpha: f64,
    /// Projections of every block that carry an adapter (`q_proj`, `k_proj`, `v_proj`,
    /// `o_proj`, `gate_proj`, `up_proj`, `down_proj`); at least one, none twice.
    pub targets: Vec<LoraTarget>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 8.0,
            targets: vec![LoraTarget::Q, LoraTarget::V],
        }
    }
}

impl LoraConfig {
    /// `(key, problem, fix)` for every unusable setting; keys start at the `lora` table
    /// (`lora.rank`), for the caller to put under its section.
    pub fn problems(&self) -> Vec<(&'static str, String, String)> {
        let mut out = Vec::new();
        if self.rank == 0 {
            out.push((
                "lora.rank",
                "is 0".into(),
                "set rank ≥ 1 (8 is usual)".into(),
            ));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            out.push((
                "lora.alpha",
                format!("{} is not positive", self.alpha),
                "set alpha > 0 (commonly equal to or twice the rank)".into(),
            ));
        }
        if self.targets.is_empty() {
            out.push((
                "lora.targets",
                "is empty: nothing would be trained".into(),
                "list projections, e.g. targets = [\"q_proj\", \"v_proj\"]".into(),
            ));
        }
        let mut seen = self.targets.clone();
        seen.sort_unstable();
        if seen.windows(2).any(|w| w[0] == w[1]) {
            out.push((
                "lora.targets",
                "names a projection twice".into(),
                "list each projection once".into(),
            ));
        }
        out
    }

    /// The factor `α / r` applied to every adapter's product.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank.max(1) as f64
    }

    /// Whether `target` carries an adapter.
    pub fn adapts(&self, target: LoraTarget) -> bool {
        self.targets.contains(&target)
    }
}

/// One adapter: `(α / r)·(x·A)·B` added to a projection's output.
#[derive(Module, Debug)]
pub struct Adapter<B: Backend> {
    /// Down-projection `A`, `[d_in, rank]`.
    pub a: Param<Tensor<B, 2>>,
    /// Up-projection `B`, `[rank, d_out]`, zero when created.
    pub b: Param<Tensor<B, 2>>,
    /// `α / r`.
    #[module(skip)]
    pub scale: f64,
}

impl<B: Backend> Adapter<B> {
    /// An adapter for a `[d_in, d_out]` projection: `A` uniform in ±1/√d_in from `rng`, `B`
    /// zero.
    pub fn new(
        d_in: usize,
        d_out: usize,
        config: &LoraConfig,
        rng: &mut impl Rng,
        device: &B::Device,
    ) -> Self {
        let r = config.rank;
        let bound = 1.0 / (d_in as f32).sqrt();
        let a: Vec<f32> = (0..d_in * r)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        Self {
            a: Param::from_tensor(Tensor::from_data(TensorData::new(a, [d_in, r]), device)),
            b: Param::from_tensor(Tensor::zeros([r, d_out], device)),
            scale: config.scale(),
        }
    }

    /// The adapter's contribution for inputs `x` `[n, d_in]`: `(α / r)·(x·A)·B`, `[n, d_out]`.
    pub fn delta(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.matmul(self.a.val())
            .matmul(self.b.val())
            .mul_scalar(self.scale)
    }

    /// `linear` with `(α / r)·A·B` folded into its weight; the result is detached from any
    /// autodiff graph and trainable, like a freshly loaded weight.
    pub fn merge_into(self, mut linear: Linear<B>) -> Linear<B> {
        let delta = self
            .a
            .val()
            .matmul(self.b.val())
            .mul_scalar(self.scale)
            .detach();
        linear.weight = linear.weight.map(|w| (w.detach() + delta).require_grad());
        linear
    }
}

/// The adapters of one attention layer (`None` where the projection has none).
#[derive(Module, Debug)]
pub struct AttentionAdapters<B: Backend> {
    /// On the query projection.
    pub wq: Option<Adapter<B>>,
    /// On the key projection.
    pub wk: Option<Adapter<B>>,
    /// On the value projection.
    pub wv: Option<Adapter<B>>,
    /// On the output projection.
    pub wo: Option<Adapter<B>>,
}

/// The adapters of one MLP (`None` where the projection has none).
#[derive(Module, Debug)]
pub struct MlpAdapters<B: Backend> {
    /// On the gate projection.
    pub gate: Option<Adapter<B>>,
    /// On the up projection.
    pub up: Option<Adapter<B>>,
    /// On the down projection.
    pub down: Option<Adapter<B>>,
}

/// An adapter for `linear` when `config` targets `target`.
pub(super) fn adapter_for<B: Backend>(
    linear: &Linear<B>,
    target: LoraTarget,
    config: &LoraConfig,
    rng: &mut impl Rng,
) -> Option<Adapter<B>> {
    config.adapts(target).then(|| {
        let w = linear.weight.val();
        let [d_in, d_out] = w.dims();
        Adapter::new(d_in, d_out, config, rng, &w.device())
    })
}

/// `linear`, with `adapter` folded in when there is one.
pub(super) fn merged<B: Backend>(linear: Linear<B>, adapter: Option<Adapter<B>>) -> Linear<B> {
    match adapter {
        Some(a) => a.merge_into(linear),
        None => linear,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_each_bad_setting() {
        assert!(LoraConfig::default().problems().is_empty());
        let bad = LoraConfig {
            rank: 0,
            alpha: -1.0,
            targets: vec![LoraTarget::Q, LoraTarget::Q],
        };
        let keys: Vec<&str> = bad.problems().iter().map(|p| p.0).collect();
        assert_eq!(keys, ["lora.rank", "lora.alpha", "lora.targets"]);
        let empty = LoraConfig {
            targets: vec![],
            ..LoraConfig::default()
        };
        assert_eq!(empty.problems().len(), 1);
    }

    #[test]
    fn targets_read_and_write_peft_names() {
        let c: LoraConfig =
            toml::from_str("rank = 4\ntargets = [\"q_proj\", \"down_proj\"]").expect("parse");
        assert_eq!(c.targets, [LoraTarget::Q, LoraTarget::Down]);
        assert_eq!(c.scale(), 2.0);
        assert!(toml::from_str::<LoraConfig>("targets = [\"query\"]").is_err());
    }
}
