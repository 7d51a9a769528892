//! Model loading and saving: llama.cpp GGUF files (`llama`, `qwen2`) into [`Llama`], and our
//! own checkpoints (burn records plus a JSON config).
//!
//! GGUF matrices are `[out, in]` row-major (`y = x·Wᵀ`); burn's `Linear` stores `[in, out]`, so
//! every projection is transposed once here. llama.cpp permutes the Q and K rows of `llama`
//! models so that, as stored, RoPE rotates adjacent channel pairs; [`unpermute_qk`] undoes that
//! for half-split RoPE and [`permute_qk`] redoes it.

use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::ModelError;
use super::gguf::GgufFile;
use super::llama::{Attention, Block, Llama, LlamaConfig, Mlp, RopeStyle, ScalarHead};

/// Architectures [`load_llama`] understands.
pub const SUPPORTED_ARCHITECTURES: [&str; 2] = ["llama", "qwen2"];

fn gguf_err(g: &GgufFile, message: String) -> ModelError {
    ModelError::GgufModel {
        path: g.source().to_string(),
        message,
    }
}

fn meta_usize(g: &GgufFile, key: &str) -> Result<usize, ModelError> {
    let v = g.meta_u64(key)?;
    usize::try_from(v)
        .map_err(|_| gguf_err(g, format!("metadata '{key}' = {v} does not fit in memory")))
}

impl LlamaConfig {
    /// Reads the decoder shape from GGUF metadata (`llama` → adjacent-pair RoPE on the weights
    /// as stored; `qwen2` → half-split RoPE and QKV bias).
    pub fn from_gguf(g: &GgufFile) -> Result<Self, ModelError> {
        let arch = g.expect_architecture(&SUPPORTED_ARCHITECTURES)?.to_string();
        let key = |k: &str| format!("{arch}.{k}");
        let n_layers = meta_usize(g, &key("block_count"))?;
        let d_model = meta_usize(g, &key("embedding_length"))?;
        let n_heads = meta_usize(g, &key("attention.head_count"))?;
        let n_kv_heads = match g.meta(&key("attention.head_count_kv")) {
            Some(_) => meta_usize(g, &key("attention.head_count_kv"))?,
            None => n_heads,
        };
        let d_ff = meta_usize(g, &key("feed_forward_length"))?;
        let rms_eps = g.meta_f64(&key("attention.layer_norm_rms_epsilon"))?;
        let rope_theta = match g.meta(&key("rope.freq_base")) {
            Some(_) => g.meta_f64(&key("rope.freq_base"))?,
            None => 10_000.0,
        };
        let max_seq_len = meta_usize(g, &key("context_length"))?;
        if n_heads == 0 {
            return Err(gguf_err(
                g,
                format!("'{}' is 0", key("attention.head_count")),
            ));
        }
        let head_dim = match g.meta(&key("attention.key_length")) {
            Some(_) => meta_usize(g, &key("attention.key_length"))?,
            None => d_model / n_heads,
        };
        let embd = g.tensor_info("token_embd.weight").ok_or_else(|| {
            gguf_err(
                g,
                "has no tensor 'token_embd.weight'; not a decoder model file".into(),
            )
        })?;
        let embd_shape = embd.shape();
        let vocab_size = match embd_shape.as_slice() {
            [v, d] if *d == d_model => *v,
            other => {
                return Err(gguf_err(
                    g,
                    format!("token_embd.weight has shape {other:?}, expected [vocab, {d_model}]"),
                ));
            }
        };
        if let Ok(tokens) = g.meta_str_array("tokenizer.ggml.tokens")
            && tokens.len() > vocab_size
        {
            return Err(gguf_err(
                g,
                format!(
                    "tokenizer has {} tokens but token_embd.weight only {vocab_size} rows",
                    tokens.len()
                ),
            ));
        }
        let qwen = arch == "qwen2";
        let config = Self {
            vocab_size,
            d_model,
            n_layers,
            n_heads,
            n_kv_heads,
            head_dim,
            d_ff,
            rms_eps,
            rope_theta,
            rope_style: if qwen {
                RopeStyle::HalfSplit
            } else {
                RopeStyle::Adjacent
            },
            qkv_bias: g.tensor_info("blk.0.attn_q.bias").is_some(),
            tied_embeddings: g.tensor_info("output.weight").is_none(),
            max_seq_len,
        };
        config.validate().map_err(|e| gguf_err(g, e.to_string()))?;
        Ok(config)
    }
}

/// Reorders the rows of a llama.cpp-permuted Q or K projection (`[n_heads·head_dim, in]`
/// row-major, or a bias with `cols = 1`) back to the Hugging Face layout, where RoPE pairs
/// channel `i` with `i + head_dim/2`.
pub fn unpermute_qk(w: &[f32], n_heads: usize, head_dim: usize, cols: usize) -> Vec<f32> {
    reorder_rows(w, n_heads, head_dim, cols, true)
}

/// The inverse of [`unpermute_qk`]: Hugging Face layout → llama.cpp's adjacent-pair layout.
pub fn permute_qk(w: &[f32], n_heads: usize, head_dim: usize, cols: usize) -> Vec<f32> {
    reorder_rows(w, n_heads, head_dim, cols, false)
}

fn reorder_rows(
    w: &[f32],
    n_heads: usize,
    head_dim: usize,
    cols: usize,
    unpermute: bool,
) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = vec![0.0f32; w.len()];
    for h in 0..n_heads {
        for t in 0..2 {
            for i in 0..half {
                // Hugging Face row (h, t, i) is stored by llama.cpp as row (h, i, t).
                let hf = h * head_dim + t * half + i;
                let gg = h * head_dim + i * 2 + t;
                let (dst, src) = if unpermute { (hf, gg) } else { (gg, hf) };
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// Row-major f32 values of a tensor read back from its device.
pub(crate) fn tensor_values<B: Backend, const D: usize>(
    t: Tensor<B, D>,
) -> Result<Vec<f32>, ModelError> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| ModelError::Data(format!("{e:?}")))
}

/// Transposes a row-major `[rows, cols]` matrix.
pub(crate) fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = w[r * cols + c];
        }
    }
    out
}

/// A tensor of a decoder, by role; each file format names it its own way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Token embedding `[vocab, d_model]`.
    Embed,
    /// RMSNorm before attention.
    AttnNorm,
    /// Query projection.
    Q,
    /// Key projection.
    K,
    /// Value projection.
    V,
    /// Attention output projection.
    O,
    /// RMSNorm before the MLP.
    FfnNorm,
    /// SwiGLU gate projection.
    Gate,
    /// SwiGLU up projection.
    Up,
    /// SwiGLU down projection.
    Down,
    /// Final RMSNorm.
    Norm,
    /// Output head `[vocab, d_model]` (absent when tied to the embedding).
    Head,
}

/// A file format's decoder weights, as [`assemble`] reads them. Projections are `[out, in]`
/// row-major, as both GGUF and Hugging Face store them.
pub(crate) trait WeightSource {
    /// The file's name of `part` (of block `layer` for per-block parts; its bias when `bias`).
    fn name(&self, part: Part, layer: usize, bias: bool) -> String;
    /// Whether the files hold tensor `name`.
    fn has(&self, name: &str) -> bool;
    /// Row-major f32 values of tensor `name`, whose shape must be `expect`.
    fn values(&self, name: &str, expect: &[usize]) -> Result<Vec<f32>, ModelError>;
}

/// llama.cpp's tensor names.
pub(crate) fn gguf_name(part: Part, layer: usize, bias: bool) -> String {
    let suffix = if bias { "bias" } else { "weight" };
    let block = |n: &str| format!("blk.{layer}.{n}.{suffix}");
    match part {
        Part::Embed => format!("token_embd.{suffix}"),
        Part::AttnNorm => block("attn_norm"),
        Part::Q => block("attn_q"),
        Part::K => block("attn_k"),
        Part::V => block("attn_v"),
        Part::O => block("attn_output"),
        Part::FfnNorm => block("ffn_norm"),
        Part::Gate => block("ffn_gate"),
        Part::Up => block("ffn_up"),
        Part::Down => block("ffn_down"),
        Part::Norm => format!("output_norm.{suffix}"),
        Part::Head => format!("output.{suffix}"),
    }
}

impl WeightSource for GgufFile {
    fn name(&self, part: Part, layer: usize, bias: bool) -> String {
        gguf_name(part, layer, bias)
    }

    fn has(&self, name: &str) -> bool {
        self.tensor_info(name).is_some()
    }

    fn values(&self, name: &str, expect: &[usize]) -> Result<Vec<f32>, ModelError> {
        let (values, shape) = self.tensor_f32(name)?;
        if shape != expect {
            return Err(gguf_err(
                self,
                format!("tensor '{name}' has shape {shape:?}, but the metadata implies {expect:?}"),
            ));
        }
        Ok(values)
    }
}

/// Builds burn modules from a [`WeightSource`].
struct Builder<'a, S, B: Backend> {
    src: &'a S,
    device: &'a B::Device,
}

impl<S: WeightSource, B: Backend> Builder<'_, S, B> {
    fn vector(&self, name: &str, n: usize) -> Result<Tensor<B, 1>, ModelError> {
        let v = self.src.values(name, &[n])?;
        Ok(Tensor::from_data(TensorData::new(v, [n]), self.device))
    }

    fn norm(&self, part: Part, layer: usize, c: &LlamaConfig) -> Result<RmsNorm<B>, ModelError> {
        let name = self.src.name(part, layer, false);
        Ok(RmsNorm {
            gamma: Param::from_tensor(self.vector(&name, c.d_model)?),
            epsilon: c.rms_eps,
        })
    }

    /// Projection `part` of block `layer`, `[out, in]` in the file (with bias `[out]` when
    /// `bias`), with Q/K rows optionally un-permuted (`heads` = Some((n_heads, head_dim))).
    fn linear(
        &self,
        (part, layer): (Part, usize),
        out: usize,
        inp: usize,
        bias: bool,
        unpermute: Option<(usize, usize)>,
    ) -> Result<Linear<B>, ModelError> {
        let mut w = self
            .src
            .values(&self.src.name(part, layer, false), &[out, inp])?;
        if let Some((h, hd)) = unpermute {
            w = unpermute_qk(&w, h, hd, inp);
        }
        let w = transpose(&w, out, inp);
        let weight = Tensor::from_data(TensorData::new(w, [inp, out]), self.device);
        let bias = if bias {
            let mut b = self.src.values(&self.src.name(part, layer, true), &[out])?;
            if let Some((h, hd)) = unpermute {
                b = unpermute_qk(&b, h, hd, 1);
            }
            Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(b, [out]),
                self.device,
            )))
        } else {
            None
        };
        Ok(Linear {
            weight: Param::from_tensor(weight),
            bias,
        })
    }
}

/// Assembles a decoder of shape `config` from `src`, un-permuting Q and K rows from
/// llama.cpp's adjacent-pair layout to the half-split one when `unpermute`.
pub(crate) fn assemble<B: Backend>(
    src: &impl WeightSource,
    config: LlamaConfig,
    unpermute: bool,
    device: &B::Device,
) -> Result<Llama<B>, ModelError> {
    let c = &config;
    let r = Builder::<_, B> { src, device };
    let embd = src.values(&src.name(Part::Embed, 0, false), &[c.vocab_size, c.d_model])?;
    let embed = Embedding {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(embd, [c.vocab_size, c.d_model]),
            device,
        )),
    };
    let q_perm = unpermute.then_some((c.n_heads, c.head_dim));
    let k_perm = unpermute.then_some((c.n_kv_heads, c.head_dim));
    let mut layers = Vec::with_capacity(c.n_layers);
    for i in 0..c.n_layers {
        let (d, q, kv, ff, bias) = (c.d_model, c.q_dim(), c.kv_dim(), c.d_ff, c.qkv_bias);
        layers.push(Block {
            attn_norm: r.norm(Part::AttnNorm, i, c)?,
            attn: Attention {
                wq: r.linear((Part::Q, i), q, d, bias, q_perm)?,
                wk: r.linear((Part::K, i), kv, d, bias, k_perm)?,
                wv: r.linear((Part::V, i), kv, d, bias, None)?,
                wo: r.linear((Part::O, i), d, q, false, None)?,
                lora: None,
            },
            ffn_norm: r.norm(Part::FfnNorm, i, c)?,
            mlp: Mlp {
                gate: r.linear((Part::Gate, i), ff, d, false, None)?,
                up: r.linear((Part::Up, i), ff, d, false, None)?,
                down: r.linear((Part::Down, i), d, ff, false, None)?,
                lora: None,
            },
        });
    }
    let norm = r.norm(Part::Norm, 0, c)?;
    let lm_head = if c.tied_embeddings {
        None
    } else {
        Some(r.linear((Part::Head, 0), c.vocab_size, c.d_model, false, None)?)
    };
    Llama::from_parts(config, embed, layers, norm, lm_head)
}

/// Loads a `llama` or `qwen2` GGUF with the RoPE convention its weights are stored in.
pub fn load_llama<B: Backend>(g: &GgufFile, device: &B::Device) -> Result<Llama<B>, ModelError> {
    let config = LlamaConfig::from_gguf(g)?;
    let style = config.rope_style;
    load_llama_with_style(g, style, device)
}

/// Loads a GGUF for a chosen RoPE convention. For a `llama` file (stored adjacent-pair),
/// [`RopeStyle::HalfSplit`] un-permutes Q and K; a `qwen2` file only runs half-split.
pub fn load_llama_with_style<B: Backend>(
    g: &GgufFile,
    style: RopeStyle,
    device: &B::Device,
) -> Result<Llama<B>, ModelError> {
    let stored = LlamaConfig::from_gguf(g)?;
    let unpermute = match (stored.rope_style, style) {
        (RopeStyle::Adjacent, RopeStyle::Adjacent)
        | (RopeStyle::HalfSplit, RopeStyle::HalfSplit) => false,
        (RopeStyle::Adjacent, RopeStyle::HalfSplit) => true,
        (RopeStyle::HalfSplit, RopeStyle::Adjacent) => {
            return Err(gguf_err(
                g,
                "stores half-split RoPE weights (qwen2); load it with RopeStyle::HalfSplit".into(),
            ));
        }
    };
    let mut config = stored;
    config.rope_style = style;
    assemble(g, config, unpermute, device)
}

/// Opens `path` and loads it with [`load_llama`].
pub fn load_llama_path<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<Llama<B>, ModelError> {
    let g = GgufFile::open(path)?;
    load_llama(&g, device)
}

// ---------------------------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------------------------

/// File holding a checkpoint's [`LlamaConfig`] as JSON.
pub const CHECKPOINT_CONFIG: &str = "config.json";
/// File stem of a checkpoint's weights (burn named MessagePack record, full precision).
pub const CHECKPOINT_WEIGHTS: &str = "model";

type Recorder = NamedMpkFileRecorder<FullPrecisionSettings>;

/// A checkpoint error on `path`: what went wrong (`message`) and why (`source`).
pub(crate) fn ckpt_err<'a, E: std::error::Error + Send + Sync + 'static>(
    path: &'a Path,
    message: &'a str,
) -> impl FnOnce(E) -> ModelError + 'a {
    move |source| ModelError::Checkpoint {
        path: path.to_path_buf(),
        message: message.to_string(),
        source: Box::new(source),
    }
}

fn write_config(dir: &Path, config: &LlamaConfig) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(ckpt_err(dir, "cannot create the directory"))?;
    let json = serde_json::to_string_pretty(config)
        .map_err(ckpt_err(dir, "cannot serialise the config"))?;
    let path = dir.join(CHECKPOINT_CONFIG);
    std::fs::write(&path, json).map_err(ckpt_err(&path, "cannot write"))
}

/// Reads the [`LlamaConfig`] of a checkpoint directory.
pub fn read_checkpoint_config(dir: &Path) -> Result<LlamaConfig, ModelError> {
    let path = dir.join(CHECKPOINT_CONFIG);
    let text = std::fs::read_to_string(&path).map_err(ckpt_err(
        &path,
        "cannot read; is its directory a checkpoint?",
    ))?;
    serde_json::from_str(&text).map_err(ckpt_err(&path, "invalid config JSON"))
}

fn weights_path(dir: &Path) -> PathBuf {
    dir.join(CHECKPOINT_WEIGHTS)
}

/// Saves a decoder to `dir` (`config.json` + `model.mpk`).
pub fn save_checkpoint<B: Backend>(model: &Llama<B>, dir: &Path) -> Result<(), ModelError> {
    write_config(dir, model.config())?;
    model
        .clone()
        .save_file(weights_path(dir), &Recorder::new())
        .map_err(ckpt_err(dir, "cannot write the weights"))
}

/// Loads a decoder saved by [`save_checkpoint`].
pub fn load_checkpoint<B: Backend>(dir: &Path, device: &B::Device) -> Result<Llama<B>, ModelError> {
    let config = read_checkpoint_config(dir)?;
    load_weights(Llama::<B>::new(config, device)?, dir, device)
}

/// `model` with the weights of the checkpoint in `dir` (its structure must match them).
fn load_weights<B: Backend, M: Module<B>>(
    model: M,
    dir: &Path,
    device: &B::Device,
) -> Result<M, ModelError> {
    model
        .load_file(weights_path(dir), &Recorder::new(), device)
        .map_err(ckpt_err(
            dir,
            "cannot read the weights: the file is missing or was written for another configuration",
        ))
}

/// Loads the weights a checkpoint in `dir` holds into `model`, which has the saved model's
/// configuration (`config`) and structure, LoRA adapters included: resuming a training run
/// whose model is not a plain decoder. Parameters keep their trainable or frozen state and
/// take the saved parameter ids, so a saved optimiser state applies to them.
pub fn load_checkpoint_into<B: Backend, M: Module<B>>(
    model: M,
    config: &LlamaConfig,
    dir: &Path,
    device: &B::Device,
) -> Result<M, ModelError> {
    let saved = read_checkpoint_config(dir)?;
    if &saved != config {
        return Err(ModelError::Checkpoint {
            path: dir.join(CHECKPOINT_CONFIG),
            message: "was saved for another model configuration; resume with the model it was \
                      written for, or delete the checkpoint"
                .into(),
            source: "configuration mismatch".into(),
        });
    }
    load_weights(model, dir, device)
}

/// Saves a scalar-head model to `dir` (`config.json` of the trunk + `model.mpk`).
pub fn save_scalar_checkpoint<B: Backend>(
    model: &ScalarHead<B>,
    dir: &Path,
) -> Result<(), ModelError> {
    write_config(dir, model.trunk.config())?;
    model
        .clone()
        .save_file(weights_path(dir), &Recorder::new())
        .map_err(ckpt_err(dir, "cannot write the weights"))
}

/// Loads a scalar-head model saved by [`save_scalar_checkpoint`].
pub fn load_scalar_checkpoint<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<ScalarHead<B>, ModelError> {
    let config = read_checkpoint_config(dir)?;
    load_weights(
        ScalarHead::new(Llama::<B>::new(config, device)?),
        dir,
        device,
    )
}
