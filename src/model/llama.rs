//! The LLaMA-family decoder used for every policy, simulator, judge and preference model.
//!
//! One architecture covers SmolLM2 (`llama` GGUFs), Qwen2.5 (`qwen2` GGUFs) and the
//! built-in world presets: token embedding, pre-norm blocks of RMSNorm → grouped-query attention
//! with rotary position embeddings (adjacent-pair or half-split convention, optional QKV bias)
//! → RMSNorm → SwiGLU MLP, a final RMSNorm and a tied or untied output head.
//!
//! Padding is handled with a boolean mask (`true` = real token). A token's RoPE position is the
//! number of real tokens before it in its row, so left padding never shifts positions, and
//! masked keys are never attended to. Incremental decoding goes through [`KvCache`]: a
//! preallocated, fixed-capacity cache written in place, attended over its filled
//! prefix rounded up to a bucket of [`KV_BUCKET`] slots so shapes change rarely (CUDA kernels
//! are compiled per shape) and the CPU never pays for the unused capacity.

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Distribution, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::ModelError;
use super::kernels;
pub use super::kv_cache::{KV_BUCKET, KvCache};
use super::kv_cache::{LayerCache, Step};
use super::lora::{
    Adapter, AttentionAdapters, LoraConfig, LoraTarget, MlpAdapters, adapter_for, merged,
};
use super::quant::{BlockQ8, Q8Matrix, Q8Weights};
use super::rope::{apply_rope, rope_tables};

/// Additive attention bias for keys that must not be attended to. Finite, so a row whose keys
/// are all masked (a padding query) still gives finite values instead of NaN.
pub(super) const MASKED: f32 = -1.0e9;

/// Which pairs of channels rotary position embeddings rotate together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RopeStyle {
    /// Channels `(2i, 2i+1)` form a pair (original LLaMA; llama.cpp's permuted Q/K weights).
    Adjacent,
    /// Channels `(i, i + head_dim/2)` form a pair (`rotate_half`; Hugging Face and Qwen2).
    HalfSplit,
}

/// Shape and numerics of a decoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlamaConfig {
    /// Number of token ids (rows of the embedding and of the output head).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads (grouped-query attention; must divide `n_heads`).
    pub n_kv_heads: usize,
    /// Width of one attention head (even, for RoPE).
    pub head_dim: usize,
    /// Hidden width of the SwiGLU MLP.
    pub d_ff: usize,
    /// Epsilon inside RMSNorm's square root.
    pub rms_eps: f64,
    /// RoPE base frequency θ.
    pub rope_theta: f64,
    /// RoPE channel-pairing convention the Q/K weights expect.
    pub rope_style: RopeStyle,
    /// Whether the Q, K and V projections carry a bias (Qwen2).
    pub qkv_bias: bool,
    /// Whether the output head reuses the token embedding matrix.
    pub tied_embeddings: bool,
    /// Longest supported sequence (RoPE tables are precomputed up to this position).
    pub max_seq_len: usize,
}

impl LlamaConfig {
    /// A very small random model for tests (2 layers, d 32, GQA 4/2 heads, vocab 96).
    pub fn tiny() -> Self {
        Self {
            vocab_size: 96,
            d_model: 32,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 8,
            d_ff: 64,
            rms_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_style: RopeStyle::HalfSplit,
            qkv_bias: false,
            tied_embeddings: true,
            max_seq_len: 512,
        }
    }

    /// SmolLM2-135M (as stored in its llama.cpp GGUF, so adjacent-pair RoPE).
    pub fn smollm2_135m() -> Self {
        Self {
            vocab_size: 49_152,
            d_model: 576,
            n_layers: 30,
            n_heads: 9,
            n_kv_heads: 3,
            head_dim: 64,
            d_ff: 1536,
            rms_eps: 1e-5,
            rope_theta: 100_000.0,
            rope_style: RopeStyle::Adjacent,
            qkv_bias: false,
            tied_embeddings: true,
            max_seq_len: 8192,
        }
    }

    /// Qwen2.5(-Coder)-0.5B.
    pub fn qwen2_5_0_5b() -> Self {
        Self {
            vocab_size: 151_936,
            d_model: 896,
            n_layers: 24,
            n_heads: 14,
            n_kv_heads: 2,
            head_dim: 64,
            d_ff: 4864,
            rms_eps: 1e-6,
            rope_theta: 1_000_000.0,
            rope_style: RopeStyle::HalfSplit,
            qkv_bias: true,
            tied_embeddings: false,
            max_seq_len: 32_768,
        }
    }

    /// Qwen2.5(-Coder)-1.5B.
    pub fn qwen2_5_1_5b() -> Self {
        Self {
            vocab_size: 151_936,
            d_model: 1536,
            n_layers: 28,
            n_heads: 12,
            n_kv_heads: 2,
            head_dim: 128,
            d_ff: 8960,
            rms_eps: 1e-6,
            rope_theta: 1_000_000.0,
            rope_style: RopeStyle::HalfSplit,
            qkv_bias: true,
            tied_embeddings: false,
            max_seq_len: 32_768,
        }
    }

    fn world(
        vocab_size: usize,
        d_model: usize,
        n_layers: usize,
        n_heads: usize,
        d_ff: usize,
    ) -> Self {
        Self {
            vocab_size,
            d_model,
            n_layers,
            n_heads,
            n_kv_heads: 2,
            head_dim: d_model / n_heads,
            d_ff,
            rms_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_style: RopeStyle::HalfSplit,
            qkv_bias: false,
            tied_embeddings: true,
            max_seq_len: 1024,
        }
    }

    /// Built-in world, extra small (≈0.2M parameters at a 1.5k vocabulary; trains in seconds,
    /// for tests).
    pub fn world_xs(vocab_size: usize) -> Self {
        Self::world(vocab_size, 64, 2, 4, 192)
    }

    /// Built-in world, small (≈1.0M parameters at a 1.5k vocabulary; the paper's 7B analogue).
    pub fn world_s(vocab_size: usize) -> Self {
        Self::world(vocab_size, 128, 4, 4, 384)
    }

    /// Built-in world, medium (≈2.0M parameters at a 1.5k vocabulary; the paper's 30B analogue).
    pub fn world_m(vocab_size: usize) -> Self {
        Self::world(vocab_size, 192, 4, 6, 576)
    }

    /// Built-in world, large (≈4.7M parameters at the world's 0.7k vocabulary): a judge larger
    /// than either simulator, as the paper's GPT-4 is larger than its 30B simulator.
    pub fn world_l(vocab_size: usize) -> Self {
        Self::world(vocab_size, 256, 6, 8, 768)
    }

    /// Looks a preset up by name (`tiny`, `smollm2-135m`, `qwen2.5-0.5b`, `qwen2.5-1.5b`,
    /// `world-xs`, `world-s`, `world-m`, `world-l`). World presets get `world_vocab` as vocabulary size.
    pub fn preset_with_vocab(name: &str, world_vocab: usize) -> Option<Self> {
        match name.replace('_', "-").as_str() {
            "tiny" => Some(Self::tiny()),
            "smollm2-135m" => Some(Self::smollm2_135m()),
            "qwen2.5-0.5b" => Some(Self::qwen2_5_0_5b()),
            "qwen2.5-1.5b" => Some(Self::qwen2_5_1_5b()),
            "world-xs" => Some(Self::world_xs(world_vocab)),
            "world-s" => Some(Self::world_s(world_vocab)),
            "world-m" => Some(Self::world_m(world_vocab)),
            "world-l" => Some(Self::world_l(world_vocab)),
            _ => None,
        }
    }

    /// Looks a preset up by name; world presets get a 1,024-token vocabulary (use
    /// [`LlamaConfig::preset_with_vocab`] or set `vocab_size` afterwards for the real one).
    pub fn preset(name: &str) -> Option<Self> {
        Self::preset_with_vocab(name, 1024)
    }

    /// Names accepted by [`LlamaConfig::preset`].
    pub const PRESETS: [&'static str; 8] = [
        "tiny",
        "smollm2-135m",
        "qwen2.5-0.5b",
        "qwen2.5-1.5b",
        "world-xs",
        "world-s",
        "world-m",
        "world-l",
    ];

    /// Width of all query heads together.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Width of all key (or value) heads together.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// The first input width of a projection or the output head that Q8_0 blocks of 32 cannot
    /// tile (`d_model`, the query width or `d_ff`), with its value; `None` when
    /// [`Llama::quantize_q8`] can quantize every matrix.
    pub fn q8_unfit_width(&self) -> Option<(&'static str, usize)> {
        [
            ("d_model", self.d_model),
            ("n_heads·head_dim", self.q_dim()),
            ("d_ff", self.d_ff),
        ]
        .into_iter()
        .find(|(_, w)| w % crate::model::kernels::q8::BLOCK != 0)
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        let d = self.d_model;
        let bias = if self.qkv_bias {
            self.q_dim() + 2 * self.kv_dim()
        } else {
            0
        };
        let attn = d * self.q_dim() + 2 * d * self.kv_dim() + self.q_dim() * d + bias;
        let mlp = 3 * d * self.d_ff;
        let block = attn + mlp + 2 * d;
        let head = if self.tied_embeddings {
            0
        } else {
            d * self.vocab_size
        };
        self.vocab_size * d + self.n_layers * block + d + head
    }

    /// Checks the shape constraints the decoder relies on.
    pub fn validate(&self) -> Result<(), ModelError> {
        let fail = |why: String| Err(ModelError::Config(why));
        if self.vocab_size == 0 || self.d_model == 0 || self.n_layers == 0 || self.d_ff == 0 {
            return fail("vocab_size, d_model, n_layers and d_ff must all be positive".into());
        }
        if self.n_heads == 0
            || self.n_kv_heads == 0
            || !self.n_heads.is_multiple_of(self.n_kv_heads)
        {
            return fail(format!(
                "n_kv_heads ({}) must be positive and divide n_heads ({})",
                self.n_kv_heads, self.n_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return fail(format!(
                "head_dim ({}) must be a positive even number",
                self.head_dim
            ));
        }
        if self.max_seq_len == 0 {
            return fail("max_seq_len must be positive".into());
        }
        if self.rms_eps.is_nan()
            || self.rms_eps <= 0.0
            || self.rope_theta.is_nan()
            || self.rope_theta <= 0.0
        {
            return fail("rms_eps and rope_theta must be positive".into());
        }
        Ok(())
    }

    /// Initialises a randomly weighted model (normal, std 0.02; norms at 1).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Llama<B>, ModelError> {
        Llama::new(self.clone(), device)
    }
}

/// Whether `name` is a preset trained from scratch on the built-in world.
pub fn is_world_preset(name: &str) -> bool {
    matches!(
        name.replace('_', "-").as_str(),
        "world-xs" | "world-s" | "world-m" | "world-l"
    )
}

/// A normal(0, 0.02) weight, materialised now (a lazily initialised parameter would draw fresh
/// values in every clone taken before its first use).
fn normal<B: Backend, const D: usize>(
    shape: [usize; D],
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    super::with_rng_lock(|| {
        Param::from_tensor(Tensor::random(
            shape,
            Distribution::Normal(0.0, 0.02),
            device,
        ))
    })
}

fn linear<B: Backend>(d_in: usize, d_out: usize, bias: bool, device: &B::Device) -> Linear<B> {
    Linear {
        weight: normal([d_in, d_out], device),
        bias: bias.then(|| Param::from_tensor(Tensor::zeros([d_out], device))),
    }
}

fn rms_norm<B: Backend>(d: usize, eps: f64, device: &B::Device) -> RmsNorm<B> {
    RmsNorm {
        gamma: Param::from_tensor(Tensor::ones([d], device)),
        epsilon: eps,
    }
}

/// Grouped-query self-attention with rotary embeddings.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Query projection, `[d_model, n_heads·head_dim]`.
    pub wq: Linear<B>,
    /// Key projection, `[d_model, n_kv_heads·head_dim]`.
    pub wk: Linear<B>,
    /// Value projection, `[d_model, n_kv_heads·head_dim]`.
    pub wv: Linear<B>,
    /// Output projection, `[n_heads·head_dim, d_model]`.
    pub wo: Linear<B>,
    /// Low-rank adapters on the projections while the model is fine-tuned with LoRA
    /// ([`Llama::with_lora`]); `None` otherwise.
    pub lora: Option<AttentionAdapters<B>>,
}

/// SwiGLU feed-forward: `down(silu(gate(x)) ⊙ up(x))`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Gate projection, `[d_model, d_ff]`.
    pub gate: Linear<B>,
    /// Up projection, `[d_model, d_ff]`.
    pub up: Linear<B>,
    /// Down projection, `[d_ff, d_model]`.
    pub down: Linear<B>,
    /// Low-rank adapters on the projections while the model is fine-tuned with LoRA
    /// ([`Llama::with_lora`]); `None` otherwise.
    pub lora: Option<MlpAdapters<B>>,
}

/// One pre-norm transformer block.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// RMSNorm before attention.
    pub attn_norm: RmsNorm<B>,
    /// Self-attention.
    pub attn: Attention<B>,
    /// RMSNorm before the MLP.
    pub ffn_norm: RmsNorm<B>,
    /// Feed-forward network.
    pub mlp: Mlp<B>,
}

/// The decoder.
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    /// Token embedding, `[vocab_size, d_model]`.
    pub embed: Embedding<B>,
    /// Transformer blocks.
    pub layers: Vec<Block<B>>,
    /// Final RMSNorm.
    pub norm: RmsNorm<B>,
    /// Untied output head (`None` when the embedding is reused).
    pub lm_head: Option<Linear<B>>,
    /// RoPE cosines per position, `[max_seq_len, head_dim]` (laid out for the RoPE style).
    rope_cos: Tensor<B, 2>,
    /// RoPE sines per position with the rotation's sign folded in, `[max_seq_len, head_dim]`.
    rope_sin: Tensor<B, 2>,
    /// The configuration the module was built from.
    #[module(skip)]
    config: LlamaConfig,
    /// Q8_0 copies of the projection and head weights that forward passes use instead of the
    /// `f32` ones ([`Llama::quantize_q8`]); `None` for full precision.
    #[module(skip)]
    q8: Option<std::sync::Arc<Q8Weights>>,
}

/// Per-forward attention inputs shared by all layers, laid out in the shapes the layers use
/// them in, so every layer's element-wise products and sums with them run on contiguous
/// operands of one shape (a broadcast over heads would walk them element by element).
struct AttnCtx<B: Backend> {
    /// RoPE tables at each token's position, `[b, s, heads, hd]` for the queries.
    q_rope: RopeAt<B>,
    /// The same for the keys, `[b, s, kv_heads, hd]`.
    k_rope: RopeAt<B>,
    /// The additive attention bias for every head, `[b, kv_heads, group · s, span]` (the
    /// layout of the grouped scores).
    bias: Tensor<B, 4>,
}

/// RoPE cosine and sine tables repeated over heads.
struct RopeAt<B: Backend> {
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
}

/// Rounds `n` up to a multiple of `m`.
pub fn round_up(n: usize, m: usize) -> usize {
    n.div_ceil(m) * m
}

impl<B: Backend> Llama<B> {
    /// Builds a randomly initialised model for `config`.
    pub fn new(config: LlamaConfig, device: &B::Device) -> Result<Self, ModelError> {
        config.validate()?;
        let d = config.d_model;
        let norm = |device: &B::Device| rms_norm::<B>(d, config.rms_eps, device);
        let layers = (0..config.n_layers)
            .map(|_| Block {
                attn_norm: norm(device),
                attn: Attention {
                    wq: linear(d, config.q_dim(), config.qkv_bias, device),
                    wk: linear(d, config.kv_dim(), config.qkv_bias, device),
                    wv: linear(d, config.kv_dim(), config.qkv_bias, device),
                    wo: linear(config.q_dim(), d, false, device),
                    lora: None,
                },
                ffn_norm: norm(device),
                mlp: Mlp {
                    gate: linear(d, config.d_ff, false, device),
                    up: linear(d, config.d_ff, false, device),
                    down: linear(config.d_ff, d, false, device),
                    lora: None,
                },
            })
            .collect();
        let embed = Embedding {
            weight: normal([config.vocab_size, d], device),
        };
        let lm_head =
            (!config.tied_embeddings).then(|| linear(d, config.vocab_size, false, device));
        let (rope_cos, rope_sin) = rope_tables::<B>(&config, device);
        Ok(Self {
            embed,
            layers,
            norm: norm(device),
            lm_head,
            rope_cos,
            rope_sin,
            config,
            q8: None,
        })
    }

    /// Assembles a model from loaded parts (shapes are checked against `config`).
    pub fn from_parts(
        config: LlamaConfig,
        embed: Embedding<B>,
        layers: Vec<Block<B>>,
        norm: RmsNorm<B>,
        lm_head: Option<Linear<B>>,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        let [v, d] = embed.weight.dims();
        if v != config.vocab_size || d != config.d_model || layers.len() != config.n_layers {
            return Err(ModelError::Shape(format!(
                "embedding [{v}, {d}] with {} layers does not match the config (vocab {}, d_model {}, {} layers)",
                layers.len(),
                config.vocab_size,
                config.d_model,
                config.n_layers
            )));
        }
        if lm_head.is_some() == config.tied_embeddings {
            return Err(ModelError::Shape(
                "an output head must be given exactly when tied_embeddings is false".into(),
            ));
        }
        let device = embed.weight.device();
        let (rope_cos, rope_sin) = rope_tables::<B>(&config, &device);
        Ok(Self {
            embed,
            layers,
            norm,
            lm_head,
            rope_cos,
            rope_sin,
            config,
            q8: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The device the parameters live on.
    pub fn device(&self) -> B::Device {
        self.embed.weight.val().device()
    }

    /// Replaces the RoPE convention (after permuting Q/K weights accordingly) and rebuilds the
    /// RoPE tables.
    pub fn set_rope_style(mut self, style: RopeStyle) -> Self {
        self.config.rope_style = style;
        self.q8 = None;
        let (cos, sin) = rope_tables::<B>(&self.config, &self.device());
        self.rope_cos = cos;
        self.rope_sin = sin;
        self
    }

    /// Final-norm hidden states, `[b, s, d_model]`, for `tokens` `[b, s]` with `mask` `[b, s]`
    /// (`true` = real token; padding may sit on either side).
    pub fn hidden(&self, tokens: Tensor<B, 2, Int>, mask: Tensor<B, 2, Bool>) -> Tensor<B, 3> {
        let [b, s] = tokens.dims();
        let device = tokens.device();
        let mask_i = mask.int();
        let positions = (mask_i.clone().cumsum(1) - 1).clamp_min(0);
        let key_bias = key_bias_from_mask(mask_i);
        let bias = key_bias.reshape([b, 1, 1, s]) + causal_bias::<B>(s, s, 0, &device);
        let ctx = self.ctx(positions, bias);
        kernels::rms_norm(&self.norm, self.blocks_uncached(tokens, &ctx))
    }

    /// Logits `[b, s, vocab]` for every position, with RoPE positions `[b, s]` and an additive
    /// attention bias `[b, 1, s, s]` (0 where query `i` may see key `j`, a large negative number
    /// elsewhere) given explicitly: for packed training rows whose documents must not see each
    /// other and whose positions restart at every document.
    pub fn forward_with(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        bias: Tensor<B, 4>,
    ) -> Tensor<B, 3> {
        let ctx = self.ctx(positions, bias);
        self.head(kernels::rms_norm(
            &self.norm,
            self.blocks_uncached(tokens, &ctx),
        ))
    }

    /// The residual stream after every block for `tokens` `[b, s]` attending only to each
    /// other, with the attention inputs `ctx`.
    fn blocks_uncached(&self, tokens: Tensor<B, 2, Int>, ctx: &AttnCtx<B>) -> Tensor<B, 3> {
        let s = tokens.dims()[1];
        let mut x = kernels::embedding(&self.embed, tokens);
        let none = Decoding::default();
        for (i, layer) in self.layers.iter().enumerate() {
            let copies = self.block_copies(i, &none);
            x = layer.forward(x, ctx, &self.config, None, [0, s], copies);
        }
        x
    }

    /// The additive bias value that hides a key from a query.
    pub const MASKED_BIAS: f32 = MASKED;

    /// Logits `[b, s, vocab]` for every position.
    pub fn forward(&self, tokens: Tensor<B, 2, Int>, mask: Tensor<B, 2, Bool>) -> Tensor<B, 3> {
        self.head(self.hidden(tokens, mask))
    }

    /// Applies the output head to hidden states `[b, s, d]`.
    pub fn head(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        self.head_with(hidden, &Decoding::default())
    }

    /// Copies of weights laid out for one generation call of `steps` decoding steps of `rows`
    /// rows each, `cached` when the steps read a KV cache ([`Decoding`]), made once per call so
    /// that no step repacks or strides through a matrix: for batched steps the tied head's
    /// panels ([`kernels::HeadPanels`]); for single-row steps the output and down projections'
    /// column panels ([`kernels::ColumnPanels`]). None for an untied or quantized head, for
    /// quantized projections, where the CPU kernels would not use them, or for too few steps
    /// to repay the copies.
    pub(crate) fn decoding(&self, rows: usize, steps: usize, cached: bool) -> Decoding {
        if self.q8.is_some() {
            return Decoding::default();
        }
        let head = match self.lm_head {
            None => kernels::HeadPanels::new(&self.embed.weight.val(), rows, steps),
            Some(_) => None,
        };
        let blocks = if rows == 1 && cached {
            let panels = |l: &Linear<B>| kernels::ColumnPanels::new(&l.weight.val(), steps);
            self.layers
                .iter()
                .map(|l| BlockPanels {
                    wo: panels(&l.attn.wo),
                    down: panels(&l.mlp.down),
                })
                .collect()
        } else {
            Vec::new()
        };
        Decoding { head, blocks }
    }

    /// [`Self::head`], reading the tied head's panels of `decoding` where they serve the rows
    /// of `hidden` (same logits, bit for bit).
    pub(crate) fn head_with(&self, hidden: Tensor<B, 3>, decoding: &Decoding) -> Tensor<B, 3> {
        let panels = decoding.head.as_ref();
        let q8 = self.q8.as_deref().map(|q| &q.head);
        match &self.lm_head {
            Some(head) => project(head, hidden, WeightCopy::from(q8), None),
            None => {
                let [b, s, d] = hidden.dims();
                let v = self.config.vocab_size;
                let h = hidden.reshape([b * s, d]);
                let e = self.embed.weight.val();
                // Few rows (decoding): E·hᵀ keeps the large operand contiguous, which is
                // several times faster on CPU; many rows (training, prefill): h·Eᵀ.
                let quantized = q8.and_then(|q| kernels::q8_product(&h, q));
                let logits = if let Some(logits) = quantized {
                    logits
                } else if let Some(logits) = panels.and_then(|p| p.product(&h, &e)) {
                    logits
                } else if let Some(logits) = kernels::product(&h, &e, true) {
                    logits
                } else if b * s <= 64 {
                    e.matmul(h.transpose()).transpose()
                } else {
                    kernels::tied_head(h, e)
                };
                logits.reshape([b, s, v])
            }
        }
    }

    /// An empty cache for `batch` rows holding at least `capacity` slots (rounded up to
    /// [`KV_BUCKET`]).
    pub fn new_cache(&self, batch: usize, capacity: usize) -> KvCache<B> {
        KvCache::new(&self.config, batch, capacity, &self.device())
    }

    /// Appends `tokens` `[b, s]` (with `mask`, `true` = real) to `cache` and returns their
    /// final-norm hidden states `[b, s, d]`. Each new token attends to every real cached token and
    /// to the real new tokens up to itself.
    pub fn forward_step(
        &self,
        tokens: Tensor<B, 2, Int>,
        mask: Tensor<B, 2, Bool>,
        cache: &mut KvCache<B>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        self.forward_step_with(tokens, mask, cache, &Decoding::default())
    }

    /// [`Self::forward_step`], reading the copies of `decoding` where they serve the step
    /// (same hidden states, bit for bit).
    pub(crate) fn forward_step_with(
        &self,
        tokens: Tensor<B, 2, Int>,
        mask: Tensor<B, 2, Bool>,
        cache: &mut KvCache<B>,
        decoding: &Decoding,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let [b, s] = tokens.dims();
        let Step {
            start,
            end,
            span,
            positions,
            key_bias,
        } = cache.reserve([b, s], mask.int())?;
        let device = tokens.device();
        let bias = key_bias.reshape([b, 1, 1, span]) + causal_bias::<B>(s, span, start, &device);
        let ctx = self.ctx(positions, bias);
        let mut x = kernels::embedding(&self.embed, tokens);
        for (i, (layer, lc)) in self.layers.iter().zip(cache.layers.iter_mut()).enumerate() {
            x = layer.forward(
                x,
                &ctx,
                &self.config,
                Some(lc),
                [start, span],
                self.block_copies(i, decoding),
            );
        }
        cache.commit(end);
        Ok(kernels::rms_norm(&self.norm, x))
    }

    /// This model with Q8_0 copies of its projection and output-head weights, which every
    /// later forward pass uses instead of the `f32` ones: for frozen models on the CPU
    /// (generation, scoring, judging), streaming a quarter of the bytes per step. The `f32`
    /// weights stay (the embedding lookup reads them). The copies are not updated: a model
    /// whose weights change afterwards (a loaded record, an optimiser step) keeps computing
    /// with the old ones until it is quantized again.
    ///
    /// # Errors
    /// On a backend other than the CPU's, or when a weight's input width is not a multiple of
    /// 32.
    pub fn quantize_q8(mut self) -> Result<Self, ModelError> {
        if !kernels::is_flex::<B>() {
            return Err(ModelError::Request(
                "Q8_0 weights run on the CPU backend only; use f32 weights on this backend".into(),
            ));
        }
        let q = |w: Tensor<B, 2>, transposed: bool| -> Result<Q8Matrix, ModelError> {
            let [r, c] = w.dims();
            let (k, n) = if transposed { (c, r) } else { (r, c) };
            let data = w
                .into_data()
                .to_vec::<f32>()
                .map_err(|e| ModelError::Data(format!("{e:?}")))?;
            Q8Matrix::quantize(&data, k, n, transposed).ok_or_else(|| {
                ModelError::Config(format!(
                    "a [{k}, {n}] weight cannot be stored in Q8_0: its input width must be a multiple of 32"
                ))
            })
        };
        let blocks = self
            .layers
            .iter()
            .map(|l| {
                Ok(BlockQ8 {
                    wq: q(l.attn.wq.weight.val(), false)?,
                    wk: q(l.attn.wk.weight.val(), false)?,
                    wv: q(l.attn.wv.weight.val(), false)?,
                    wo: q(l.attn.wo.weight.val(), false)?,
                    gate: q(l.mlp.gate.weight.val(), false)?,
                    up: q(l.mlp.up.weight.val(), false)?,
                    down: q(l.mlp.down.weight.val(), false)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let head = match &self.lm_head {
            Some(h) => q(h.weight.val(), false)?,
            None => q(self.embed.weight.val(), true)?,
        };
        self.q8 = Some(std::sync::Arc::new(Q8Weights { blocks, head }));
        Ok(self)
    }

    /// Whether forward passes use Q8_0 weights.
    pub fn is_q8(&self) -> bool {
        self.q8.is_some()
    }

    /// This model prepared for LoRA fine-tuning: every weight frozen (it receives no gradient
    /// and an optimiser keeps no state for it), and a fresh adapter on each projection `config`
    /// targets in every block, its `A` drawn from `seed`. The model computes exactly what it
    /// did until an optimiser step moves the adapters (their `B` starts at zero).
    pub fn with_lora(self, config: &LoraConfig, seed: u64) -> Self {
        let mut model = self.no_grad();
        let mut rng = crate::seed::rng(seed);
        for block in &mut model.layers {
            let (a, m) = (&block.attn, &block.mlp);
            let attn = AttentionAdapters {
                wq: adapter_for(&a.wq, LoraTarget::Q, config, &mut rng),
                wk: adapter_for(&a.wk, LoraTarget::K, config, &mut rng),
                wv: adapter_for(&a.wv, LoraTarget::V, config, &mut rng),
                wo: adapter_for(&a.wo, LoraTarget::O, config, &mut rng),
            };
            let mlp = MlpAdapters {
                gate: adapter_for(&m.gate, LoraTarget::Gate, config, &mut rng),
                up: adapter_for(&m.up, LoraTarget::Up, config, &mut rng),
                down: adapter_for(&m.down, LoraTarget::Down, config, &mut rng),
            };
            block.attn.lora = Some(attn);
            block.mlp.lora = Some(mlp);
        }
        model
    }

    /// Whether any block carries LoRA adapters.
    pub fn has_lora(&self) -> bool {
        self.layers
            .iter()
            .any(|l| l.attn.lora.is_some() || l.mlp.lora.is_some())
    }

    /// This model with its LoRA adapters folded into the weights they adapt and removed, every
    /// weight trainable again: a plain decoder computing what the adapted one computed. A
    /// model without adapters is returned as it is.
    pub fn merge_lora(mut self) -> Self {
        if !self.has_lora() {
            return self;
        }
        for block in &mut self.layers {
            if let Some(l) = block.attn.lora.take() {
                let a = &mut block.attn;
                a.wq = merged(a.wq.clone(), l.wq);
                a.wk = merged(a.wk.clone(), l.wk);
                a.wv = merged(a.wv.clone(), l.wv);
                a.wo = merged(a.wo.clone(), l.wo);
            }
            if let Some(l) = block.mlp.lora.take() {
                let m = &mut block.mlp;
                m.gate = merged(m.gate.clone(), l.gate);
                m.up = merged(m.up.clone(), l.up);
                m.down = merged(m.down.clone(), l.down);
            }
        }
        self.q8 = None;
        self.map(&mut Trainable)
    }

    /// The copies of block `i`'s weights a forward pass computes with: its Q8_0 copies, and
    /// the panels `decoding` holds for it.
    fn block_copies<'a>(&'a self, i: usize, decoding: &'a Decoding) -> BlockCopies<'a> {
        BlockCopies {
            q8: self.q8.as_deref().map(|q| &q.blocks[i]),
            panels: decoding.blocks.get(i),
        }
    }

    /// The attention inputs of one forward pass: RoPE tables at `positions` `[b, s]` and the
    /// additive bias `[b, 1, s, span]`, each repeated over heads once here rather than
    /// broadcast in every layer.
    fn ctx(&self, positions: Tensor<B, 2, Int>, bias: Tensor<B, 4>) -> AttnCtx<B> {
        let [b, s] = positions.dims();
        let c = &self.config;
        let (h, kv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim);
        let flat = positions.reshape([b * s]);
        let cos = self
            .rope_cos
            .clone()
            .select(0, flat.clone())
            .reshape([b, s, 1, hd]);
        let sin = self.rope_sin.clone().select(0, flat).reshape([b, s, 1, hd]);
        let at = |heads: usize| RopeAt {
            cos: cos.clone().repeat_dim(2, heads),
            sin: sin.clone().repeat_dim(2, heads),
        };
        let span = bias.dims()[3];
        AttnCtx {
            q_rope: at(h),
            k_rope: at(kv),
            bias: bias.repeat_dim(1, h).reshape([b, kv, (h / kv) * s, span]),
        }
    }
}

/// Copies of a decoder's weights laid out once for one generation call's decoding steps
/// ([`Llama::decoding`]); each step computes the same values with them as without.
#[derive(Debug, Default)]
pub(crate) struct Decoding {
    /// The tied head's panels, for batched steps.
    head: Option<kernels::HeadPanels>,
    /// Each block's panels, for single-row steps (empty for other steps).
    blocks: Vec<BlockPanels>,
}

/// The column panels of a block's two projections that single-row decoding runs alone.
#[derive(Debug)]
struct BlockPanels {
    /// The attention output projection's.
    wo: Option<kernels::ColumnPanels>,
    /// The MLP down projection's.
    down: Option<kernels::ColumnPanels>,
}

/// What a block's projections compute with besides their `f32` weights.
#[derive(Clone, Copy)]
struct BlockCopies<'a> {
    /// The block's Q8_0 copies ([`Llama::quantize_q8`]).
    q8: Option<&'a BlockQ8>,
    /// Its panels for this generation call's decoding steps.
    panels: Option<&'a BlockPanels>,
}

impl<'a> BlockCopies<'a> {
    /// The copy of one projection's weight: its Q8_0 copy (`q8` picks it), else its panels
    /// (`panels` picks them).
    fn of(
        self,
        q8: impl FnOnce(&'a BlockQ8) -> &'a Q8Matrix,
        panels: impl FnOnce(&'a BlockPanels) -> Option<&'a kernels::ColumnPanels>,
    ) -> WeightCopy<'a> {
        match (self.q8, self.panels.and_then(panels)) {
            (Some(q), _) => WeightCopy::Q8(q8(q)),
            (None, Some(p)) => WeightCopy::Panels(p),
            (None, None) => WeightCopy::None,
        }
    }
}

/// What one projection computes with besides its `f32` weight, where it serves the product.
#[derive(Clone, Copy)]
enum WeightCopy<'a> {
    /// Nothing: the weight itself.
    None,
    /// Its Q8_0 copy, instead of the weight.
    Q8(&'a Q8Matrix),
    /// Its column panels, for a single row (the weight's values, bit for bit).
    Panels(&'a kernels::ColumnPanels),
}

impl<'a> From<Option<&'a Q8Matrix>> for WeightCopy<'a> {
    fn from(q8: Option<&'a Q8Matrix>) -> Self {
        q8.map_or(Self::None, Self::Q8)
    }
}

/// `x·W + b` through a 2-D matmul (burn-flex's fused `linear` is several times slower than its
/// matmul at decoding shapes), split over all cores by columns on the CPU (decoding, scoring
/// and, recorded as one operation, training with more than 64 rows), or with the
/// weight's `copy` when it serves the product (CPU only); plus the LoRA `adapter`'s term when
/// given.
fn project<B: Backend>(
    l: &Linear<B>,
    x: Tensor<B, 3>,
    copy: WeightCopy<'_>,
    adapter: Option<&Adapter<B>>,
) -> Tensor<B, 3> {
    let [b, s, d_in] = x.dims();
    let w = l.weight.val();
    let x = x.reshape([b * s, d_in]);
    let from_copy = match copy {
        WeightCopy::None => None,
        WeightCopy::Q8(q) => kernels::q8_product(&x, q),
        WeightCopy::Panels(p) => p.product(&x, &w),
    };
    let y = from_copy
        .or_else(|| kernels::product(&x, &w, false))
        .unwrap_or_else(|| kernels::projection(x.clone(), w));
    finish_projection(l, x, y, adapter, [b, s])
}

/// [`project`] for several linears reading the same `x` (a block's query, key and value
/// projections; its gate and up projections): on the CPU their products share one parallel
/// pass where the kernels take their shapes ([`kernels::q8_products`] with Q8_0 copies,
/// [`kernels::products`] for decoding shapes), which gives each the same values as its own
/// product; otherwise one [`project`] after another.
fn project_each<B: Backend, const N: usize>(
    ls: [&Linear<B>; N],
    x: Tensor<B, 3>,
    q8: Option<[&Q8Matrix; N]>,
    adapters: [Option<&Adapter<B>>; N],
) -> [Tensor<B, 3>; N] {
    let [b, s, d_in] = x.dims();
    let x2 = x.clone().reshape([b * s, d_in]);
    let shared = match q8 {
        Some(q) => kernels::q8_products(&x2, q),
        None => kernels::products(&x2, ls.map(|l| l.weight.val()).each_ref()),
    };
    match shared {
        Some(ys) => {
            let mut i = 0;
            ys.map(|y| {
                let out = finish_projection(ls[i], x2.clone(), y, adapters[i], [b, s]);
                i += 1;
                out
            })
        }
        None => std::array::from_fn(|i| project(ls[i], x.clone(), WeightCopy::None, adapters[i])),
    }
}

/// `y` (`x·W`, `[b·s, d_out]`) plus the LoRA `adapter`'s term and `l`'s bias, as `[b, s, d_out]`.
fn finish_projection<B: Backend>(
    l: &Linear<B>,
    x: Tensor<B, 2>,
    y: Tensor<B, 2>,
    adapter: Option<&Adapter<B>>,
    [b, s]: [usize; 2],
) -> Tensor<B, 3> {
    let d_out = y.dims()[1];
    let y = match adapter {
        Some(a) => y + a.delta(x),
        None => y,
    };
    let y = match &l.bias {
        Some(bias) => y + bias.val().unsqueeze::<2>(),
        None => y,
    };
    y.reshape([b, s, d_out])
}

/// Marks every float parameter as requiring a gradient (undoes `Module::no_grad`).
struct Trainable;

impl<B: Backend> ModuleMapper<B> for Trainable {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.map(|t| t.detach().set_require_grad(true))
    }
}

/// `[b, s]` additive key bias: 0 for real tokens, [`MASKED`] for padding.
pub(super) fn key_bias_from_mask<B: Backend>(mask: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    (mask.float() - 1.0) * (-MASKED)
}

/// `[1, 1, s, span]` additive causal bias: query `i` (at slot `offset + i`) sees slots `≤ offset + i`.
fn causal_bias<B: Backend>(
    s: usize,
    span: usize,
    offset: usize,
    device: &B::Device,
) -> Tensor<B, 4> {
    let mut data = vec![0.0f32; s * span];
    for i in 0..s {
        for j in (offset + i + 1).min(span)..span {
            data[i * span + j] = MASKED;
        }
    }
    Tensor::<B, 2>::from_data(TensorData::new(data, [s, span]), device).reshape([1, 1, s, span])
}

impl<B: Backend> Block<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        ctx: &AttnCtx<B>,
        c: &LlamaConfig,
        cache: Option<&mut LayerCache<B>>,
        slots: [usize; 2],
        copies: BlockCopies<'_>,
    ) -> Tensor<B, 3> {
        let h = x.clone()
            + self.attn.forward(
                kernels::rms_norm(&self.attn_norm, x),
                ctx,
                c,
                cache,
                slots,
                copies,
            );
        let m = self
            .mlp
            .forward(kernels::rms_norm(&self.ffn_norm, h.clone()), copies);
        h + m
    }
}

impl<B: Backend> Mlp<B> {
    fn forward(&self, x: Tensor<B, 3>, copies: BlockCopies<'_>) -> Tensor<B, 3> {
        let (lora, q8) = (self.lora.as_ref(), copies.q8);
        let [gate, up] = project_each(
            [&self.gate, &self.up],
            x,
            q8.map(|q| [&q.gate, &q.up]),
            [
                lora.and_then(|l| l.gate.as_ref()),
                lora.and_then(|l| l.up.as_ref()),
            ],
        );
        project(
            &self.down,
            kernels::swiglu(gate, up),
            copies.of(|q| &q.down, |p| p.down.as_ref()),
            lora.and_then(|l| l.down.as_ref()),
        )
    }
}

impl<B: Backend> Attention<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        ctx: &AttnCtx<B>,
        c: &LlamaConfig,
        cache: Option<&mut LayerCache<B>>,
        [start, span]: [usize; 2],
        copies: BlockCopies<'_>,
    ) -> Tensor<B, 3> {
        let [b, s, _] = x.dims();
        let (h, kv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim);
        let g = h / kv;
        let (lora, q8) = (self.lora.as_ref(), copies.q8);
        let [q, k, v] = project_each(
            [&self.wq, &self.wk, &self.wv],
            x,
            q8.map(|q| [&q.wq, &q.wk, &q.wv]),
            [
                lora.and_then(|l| l.wq.as_ref()),
                lora.and_then(|l| l.wk.as_ref()),
                lora.and_then(|l| l.wv.as_ref()),
            ],
        );
        let q = q.reshape([b, s, h, hd]);
        let k = k.reshape([b, s, kv, hd]);
        let v = kernels::swap_heads(v.reshape([b, s, kv, hd]));
        // RoPE on the projections' own `[b, s, heads, hd]` layout, where they and the tables
        // are contiguous; keys then put heads before positions.
        let rope = |x, at: &RopeAt<B>| apply_rope(x, at.cos.clone(), at.sin.clone(), c.rope_style);
        let q = rope(q, &ctx.q_rope);
        let k = kernels::swap_heads(rope(k, &ctx.k_rope));
        let (k, v) = match cache {
            Some(lc) => lc.append(k, v, start, span),
            None => (k, v),
        };
        let scale = 1.0 / (hd as f64).sqrt();
        let out = kernels::attention(&q, &k, &v, &ctx.bias, scale).unwrap_or_else(|| {
            let q = kernels::swap_heads(q).reshape([b, kv, g * s, hd]);
            let out = grouped_attention(q, k, v, &ctx.bias, scale);
            kernels::swap_heads(out.reshape([b, h, s, hd])).reshape([b, s, h * hd])
        });
        project(
            &self.wo,
            out,
            copies.of(|q| &q.wo, |p| p.wo.as_ref()),
            lora.and_then(|l| l.wo.as_ref()),
        )
    }
}

/// `softmax(q·kᵀ · scale + bias) · v` over grouped heads (`q` `[b, kv, g·s, hd]`, `k` and `v`
/// `[b, kv, span, hd]`, `bias` `[b, kv, g·s, span]`) where the fused inference kernel does not
/// run: one recorded operation in training on the CPU, burn's operations elsewhere.
fn grouped_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    bias: &Tensor<B, 4>,
    scale: f64,
) -> Tensor<B, 4> {
    kernels::training_attention(&q, &k, &v, bias, scale).unwrap_or_else(|| {
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale) + bias.clone();
        kernels::softmax(scores).matmul(v)
    })
}

/// A scalar head on the decoder trunk: the value of a sequence is a linear function of the
/// final-norm hidden state of its last real token (preference / reward / value models).
#[derive(Module, Debug)]
pub struct ScalarHead<B: Backend> {
    /// The decoder trunk (its output head is unused here).
    pub trunk: Llama<B>,
    /// `Linear(d_model, 1)`, bias initialised at 0.
    pub score: Linear<B>,
}

impl<B: Backend> ScalarHead<B> {
    /// Wraps `trunk` with a freshly initialised scalar head.
    pub fn new(trunk: Llama<B>) -> Self {
        let device = trunk.device();
        let d = trunk.config().d_model;
        let score = linear(d, 1, true, &device);
        Self { trunk, score }
    }

    /// This model prepared for LoRA fine-tuning ([`Llama::with_lora`] on the trunk); the
    /// scalar head stays fully trainable, as `peft` trains a reward model's score layer.
    pub fn with_lora(self, config: &LoraConfig, seed: u64) -> Self {
        Self {
            trunk: self.trunk.with_lora(config, seed),
            score: self.score,
        }
    }

    /// This model with the trunk's adapters merged ([`Llama::merge_lora`]).
    pub fn merge_lora(self) -> Self {
        Self {
            trunk: self.trunk.merge_lora(),
            score: self.score,
        }
    }

    /// One scalar per row, `[b]`, read at each row's last real token.
    pub fn forward(&self, tokens: Tensor<B, 2, Int>, mask: Tensor<B, 2, Bool>) -> Tensor<B, 1> {
        let [b, s] = tokens.dims();
        let d = self.trunk.config().d_model;
        let device = tokens.device();
        let hidden = self.trunk.hidden(tokens, mask.clone());
        let idx = Tensor::<B, 1, Int>::arange(0..s as i64, &device).reshape([1, s]);
        let last = (idx * mask.int()).max_dim(1); // [b, 1]
        let last = last.reshape([b, 1, 1]).expand([b, 1, d]);
        let h = hidden.gather(1, last); // [b, 1, d]
        project(&self.score, h, WeightCopy::None, None).reshape([b])
    }

    /// One scalar per position, `[b, len]`, for the `len` positions from `start` on (the
    /// per-token values of a PPO value model).
    pub fn forward_span(
        &self,
        tokens: Tensor<B, 2, Int>,
        mask: Tensor<B, 2, Bool>,
        start: usize,
        len: usize,
    ) -> Tensor<B, 2> {
        let b = tokens.dims()[0];
        let hidden = self.trunk.hidden(tokens, mask).narrow(1, start, len);
        project(&self.score, hidden, WeightCopy::None, None).reshape([b, len])
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Bool, Int, Tensor, TensorData};

    use super::{Decoding, LlamaConfig};
    use crate::model::kernels::bits_differ;

    /// Single-row decoding steps reading the output and down projections' column panels give
    /// the hidden states of steps without them bit for bit, prefill and every step after it;
    /// batched steps and uncached calls lay out no block panels.
    #[test]
    fn single_row_steps_with_panels_equal_steps_without_bit_for_bit() {
        let config = LlamaConfig {
            vocab_size: 300,
            d_model: 512,
            n_heads: 8,
            n_kv_heads: 4,
            head_dim: 64,
            d_ff: 1024,
            ..LlamaConfig::tiny()
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a thread pool");
        pool.install(|| {
            let device = Default::default();
            let model = config.init::<Flex>(&device).expect("valid config");
            let decoding = model.decoding(1, 64, true);
            assert_eq!(decoding.blocks.len(), 2);
            assert!(
                decoding
                    .blocks
                    .iter()
                    .all(|b| b.wo.is_some() && b.down.is_some())
            );
            assert!(model.decoding(2, 64, true).blocks.is_empty(), "two rows");
            assert!(model.decoding(1, 64, false).blocks.is_empty(), "no cache");
            let (mut plain, mut panels) = (model.new_cache(1, 64), model.new_cache(1, 64));
            let mut ids: Vec<i64> = vec![3, 41, 7, 250, 19];
            for step in 0..20 {
                let tokens = Tensor::<Flex, 2, Int>::from_data(
                    TensorData::new(ids.clone(), [1, ids.len()]),
                    &device,
                );
                let mask = Tensor::<Flex, 2, Bool>::from_data(
                    TensorData::new(vec![true; ids.len()], [1, ids.len()]),
                    &device,
                );
                let want = model
                    .forward_step(tokens.clone(), mask.clone(), &mut plain)
                    .unwrap();
                let got = model
                    .forward_step_with(tokens, mask, &mut panels, &decoding)
                    .unwrap();
                let (differ, len) = bits_differ(got, want);
                assert_eq!(differ, 0, "step {step}: {differ} of {len} values differ");
                ids = vec![(step * 37 + 11) % 300];
            }
            let none = Decoding::default();
            assert!(none.head.is_none() && none.blocks.is_empty());
        });
    }

    #[test]
    fn q8_names_the_first_width_blocks_of_32_cannot_tile() {
        assert_eq!(LlamaConfig::smollm2_135m().q8_unfit_width(), None);
        assert_eq!(LlamaConfig::world_m(1500).q8_unfit_width(), None);
        let mut c = LlamaConfig::tiny();
        c.d_ff = 48;
        assert_eq!(c.q8_unfit_width(), Some(("d_ff", 48)));
        c.head_dim = 4;
        assert_eq!(c.q8_unfit_width(), Some(("n_heads·head_dim", 16)));
        c.d_model = 40;
        assert_eq!(c.q8_unfit_width(), Some(("d_model", 40)));
    }
}
