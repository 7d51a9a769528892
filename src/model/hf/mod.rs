//! Hugging Face checkpoints: a directory with `config.json`, safetensors weights (one file or
//! shards with an index) and `tokenizer.json`, as `save_pretrained` writes them for
//! `LlamaForCausalLM` and `Qwen2ForCausalLM` — loaded into [`Llama`] and written from it, so
//! the models the paper's pipeline trains (§3–4) leave and enter the runner as researchers keep
//! them.
//!
//! Hugging Face stores projections `[out, in]` and rotates Q/K channels half-split; a decoder
//! with adjacent-pair RoPE is re-permuted on the way out.

mod config;
mod save;
mod shards;

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;

use super::ModelError;
use super::llama::{Llama, LlamaConfig};
use super::load::{Part, WeightSource, assemble};

pub use config::{Family, HfConfig, SUPPORTED};
pub use save::{save_hf, save_hf_scalar};
pub use shards::{INDEX_FILE, SINGLE_FILE, Shards, hf_name};

/// The checkpoint's configuration file.
pub const CONFIG_FILE: &str = "config.json";
/// The checkpoint's tokenizer.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Roles of the tokenizer's special tokens and the chat template.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// A checkpoint that is readable but does not describe a decoder the loader builds.
fn hf_err(path: &Path, message: String) -> ModelError {
    ModelError::HfCheckpoint {
        path: path.to_path_buf(),
        message,
    }
}

/// Whether `path` is a directory with a `config.json` (a Hugging Face checkpoint).
pub fn is_checkpoint_dir(path: &Path) -> bool {
    path.is_dir() && path.join(CONFIG_FILE).is_file()
}

/// The files a load of checkpoint `dir` reads (config, weights, index and tokenizer files that
/// exist), in a stable order: what identifies the checkpoint's content.
pub fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let mut files = vec![dir.join(CONFIG_FILE)];
    if dir.join(INDEX_FILE).is_file() {
        files.push(dir.join(INDEX_FILE));
    }
    files.extend(Shards::file_names(dir)?.into_iter().map(|f| dir.join(f)));
    for extra in [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE] {
        if dir.join(extra).is_file() {
            files.push(dir.join(extra));
        }
    }
    Ok(files)
}

/// Every tensor a decoder of shape `c` reads, with its shape, by Hugging Face name.
pub fn expected_tensors(c: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let (d, q, kv, ff) = (c.d_model, c.q_dim(), c.kv_dim(), c.d_ff);
    let mut out = vec![(hf_name(Part::Embed, 0, false), vec![c.vocab_size, d])];
    for i in 0..c.n_layers {
        let mut push = |part, shape: Vec<usize>| out.push((hf_name(part, i, false), shape));
        push(Part::AttnNorm, vec![d]);
        push(Part::Q, vec![q, d]);
        push(Part::K, vec![kv, d]);
        push(Part::V, vec![kv, d]);
        push(Part::O, vec![d, q]);
        push(Part::FfnNorm, vec![d]);
        push(Part::Gate, vec![ff, d]);
        push(Part::Up, vec![ff, d]);
        push(Part::Down, vec![d, ff]);
        if c.qkv_bias {
            out.push((hf_name(Part::Q, i, true), vec![q]));
            out.push((hf_name(Part::K, i, true), vec![kv]));
            out.push((hf_name(Part::V, i, true), vec![kv]));
        }
    }
    out.push((hf_name(Part::Norm, 0, false), vec![d]));
    if !c.tied_embeddings {
        out.push((hf_name(Part::Head, 0, false), vec![c.vocab_size, d]));
    }
    out
}

/// Reads checkpoint `dir`'s configuration and checks, without reading the weights, that its
/// safetensors files hold every tensor the decoder needs with the shape `config.json`
/// implies — what `rlcd validate` runs before any stage.
pub fn inspect(dir: &Path) -> Result<(HfConfig, Shards), ModelError> {
    if !dir.is_dir() {
        return Err(hf_err(
            dir,
            "is not a directory; a Hugging Face checkpoint is a directory with config.json, \
             safetensors weights and tokenizer.json"
                .into(),
        ));
    }
    let hf = HfConfig::read(&dir.join(CONFIG_FILE))?;
    let shards = Shards::open(dir)?;
    let head = hf_name(Part::Head, 0, false);
    if !hf.config.tied_embeddings && !shards.has(&head) {
        return Err(hf_err(
            &dir.join(CONFIG_FILE),
            format!(
                "key `tie_word_embeddings` is false (or absent), but the weights have no \
                 `{head}`; set it to true if the head shares the embedding"
            ),
        ));
    }
    for (name, shape) in expected_tensors(&hf.config) {
        shards.check(&name, &shape)?;
    }
    Ok((hf, shards))
}

/// Loads the decoder of checkpoint `dir` (weights widened to f32, half-split RoPE).
pub fn load_hf<B: Backend>(dir: &Path, device: &B::Device) -> Result<Llama<B>, ModelError> {
    let (hf, shards) = inspect(dir)?;
    assemble(&shards, hf.config, false, device)
}
