//! The language-model engine on burn: decoder, KV cache, GGUF and Hugging Face loading,
//! tokenizers, sampling, scoring, the preference model and the learning-rate schedule every trainer uses.

pub mod allocator;
pub mod bench;
pub mod format;
pub mod gguf;
pub mod hf;
mod kernels;
pub mod kv_cache;
pub mod llama;
pub mod lm;
pub mod load;
pub mod lora;
pub mod optim;
pub mod pm;
pub mod pool;
pub mod quant;
mod rope;
pub mod sampling;
pub mod save_gguf;
pub mod tokenizer;
pub mod train;
pub mod truncate;

/// The default CPU backend.
pub type Cpu = burn::backend::Flex;
/// NVIDIA GPUs through CUDA.
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda;

pub use format::PolicyFormat;
pub use kernels::log_softmax;
pub use llama::{KvCache, Llama, LlamaConfig, RopeStyle, ScalarHead};
pub use lm::{Lm, ScoreReport};
pub use lora::{LoraConfig, LoraTarget};
pub use pool::on_pool;
pub use sampling::{FinishReason, GenerateOptions, Generation, GenerationRequest};
pub use save_gguf::{GgufPrecision, save_gguf};
pub use truncate::Truncate;

/// Keeps CUDA kernels compiled by cubecl on disk (`target/` of the project, or the user cache
/// directory outside a project) so a second process skips the JIT compilation of shapes it has
/// seen. Autotune results are persisted there by cubecl already. Call before the first CUDA
/// operation; a `cubecl.toml` found by cubecl, or a cache setting in it, takes precedence.
#[cfg(feature = "cuda")]
pub fn persist_cuda_kernel_cache() {
    use cubecl_runtime::config::{CubeClRuntimeConfig, RuntimeConfig, cache::CacheConfig};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        if config.compilation.cache.is_none() {
            config.compilation.cache = Some(CacheConfig::Target);
        }
        // `set` refuses (panics) once the configuration was read; then cubecl keeps its own.
        let _ = std::panic::catch_unwind(move || CubeClRuntimeConfig::set(config));
    });
}

static RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

thread_local! {
    static HOLDING_RNG: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

struct RngGuard<'a> {
    _lock: std::sync::MutexGuard<'a, ()>,
}

impl Drop for RngGuard<'_> {
    fn drop(&mut self) {
        HOLDING_RNG.with(|h| h.set(false));
    }
}

/// Runs `f` holding the process-wide lock of the backend's random generator (re-entrant within
/// a thread). Every draw from that generator goes through here, so a seeded initialisation
/// ([`seeded_init`]) on one thread is never interleaved with draws on another.
pub(crate) fn with_rng_lock<R>(f: impl FnOnce() -> R) -> R {
    if HOLDING_RNG.with(|h| h.get()) {
        return f();
    }
    let _guard = RngGuard {
        _lock: RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner()),
    };
    HOLDING_RNG.with(|h| h.set(true));
    f()
}

/// Seeds the backend's random generator with `seed` and runs `init` (a weight
/// initialisation) without any other thread drawing in between: stages running in parallel
/// initialise exactly as they do alone.
pub fn seeded_init<B: burn::tensor::backend::Backend, R>(
    device: &B::Device,
    seed: u64,
    init: impl FnOnce() -> R,
) -> R {
    with_rng_lock(|| {
        B::seed(device, seed);
        init()
    })
}

/// Errors of the model engine (configuration, loading, generation, scoring).
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An inconsistent model configuration.
    #[error("invalid model configuration: {0}")]
    Config(String),
    /// Tensors whose shapes do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A GGUF file that cannot be read or does not describe a supported model.
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    /// A GGUF file that is readable but does not match what the decoder needs.
    #[error("{path}: {message}")]
    GgufModel {
        /// The file (or `<memory>`).
        path: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Tokenizer construction, encoding or decoding failed.
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] tokenizer::TokenizerError),
    /// A tokenizer with more ids than the model's vocabulary.
    #[error(
        "the tokenizer has {tokenizer} ids but the model only {model}; use the tokenizer the model was trained with"
    )]
    VocabMismatch {
        /// Ids of the tokenizer.
        tokenizer: usize,
        /// Vocabulary size of the model.
        model: usize,
    },
    /// A KV cache too small for the tokens appended to it.
    #[error(
        "KV cache full: {needed} slots needed but capacity is {capacity}; create the cache with a larger capacity"
    )]
    CacheFull {
        /// Slots the step would occupy.
        needed: usize,
        /// Slots available.
        capacity: usize,
    },
    /// A sequence longer than the model's `max_seq_len`.
    #[error(
        "sequence of {len} tokens exceeds the model's max_seq_len {max}; shorten the prompt or lower max_new_tokens"
    )]
    TooLong {
        /// Tokens requested.
        len: usize,
        /// The model's limit.
        max: usize,
    },
    /// Invalid generation or scoring arguments.
    #[error("invalid request: {0}")]
    Request(String),
    /// Reading or writing a checkpoint failed.
    #[error("checkpoint {}: {message} ({source})", path.display())]
    Checkpoint {
        /// The checkpoint directory or file.
        path: std::path::PathBuf,
        /// What went wrong and how to fix it.
        message: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A Hugging Face checkpoint that is readable but does not describe a decoder the loader
    /// builds (unsupported architecture, missing tensor, shape disagreeing with `config.json`).
    #[error("{}: {message}", path.display())]
    HfCheckpoint {
        /// The checkpoint directory or the file at fault.
        path: std::path::PathBuf,
        /// What is wrong (naming the key or tensor) and how to fix it.
        message: String,
    },
    /// Reading a tensor back from the device failed.
    #[error("reading tensor data: {0}")]
    Data(String),
}
