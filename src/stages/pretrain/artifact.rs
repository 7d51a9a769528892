//! The artifact of a pretraining stage: the checkpoint, the tokenizer and the training record,
//! and how stages that run a world preset load it.

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::engine::PretrainLog;
use crate::error::IoError;
use crate::model::{Llama, Lm, ModelError};
use crate::recipe::PretrainConfig;
use crate::templates::TemplateError;

/// Why a world preset could not be pretrained or its artifact read.
#[derive(Debug, thiserror::Error)]
pub enum PretrainError {
    /// The model engine failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The corpus templates failed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The training record is not valid JSON of this build.
    #[error("{}: not a pretraining record of this build ({source}); delete the artifact and run again", path.display())]
    Record {
        /// The file.
        path: std::path::PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// Files of a pretrained world model artifact.
pub mod files {
    /// The tokenizer (`tokenizers` JSON).
    pub const TOKENIZER: &str = "tokenizer.json";
    /// Training record ([`super::PretrainRecord`]).
    pub const RECORD: &str = "pretrain.json";
}

/// What a pretraining stage did (`pretrain.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainRecord {
    /// The preset.
    pub preset: String,
    /// Trainable parameters.
    pub params: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Corpus documents (training + held out).
    pub documents: usize,
    /// Tokens of the whole corpus (with BOS/EOS).
    pub corpus_tokens: usize,
    /// blake3 of the corpus text (documents joined by NUL).
    pub corpus_blake3: String,
    /// blake3 of the trained weights ([`weights_blake3`]).
    pub weights_blake3: String,
    /// Held-out documents.
    pub heldout_documents: usize,
    /// Mean held-out next-token NLL (nats/token).
    pub heldout_nll: f64,
    /// `exp(heldout_nll)`.
    pub perplexity: f64,
    /// The training configuration.
    pub config: PretrainConfig,
    /// The training run.
    pub log: PretrainLog,
    /// Seconds spent writing the corpus.
    pub corpus_seconds: f64,
}

/// Feeds every float parameter's values (f32, little-endian, in module order) to a hasher.
struct HashParams<'a> {
    hasher: &'a mut blake3::Hasher,
}

impl<B: Backend> ModuleVisitor<B> for HashParams<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let data = param.val().into_data().convert::<f32>();
        if let Ok(values) = data.to_vec::<f32>() {
            for v in values {
                self.hasher.update(&v.to_le_bytes());
            }
        }
    }
}

/// blake3 of a model's parameter values (independent of parameter ids and file layout): equal
/// hashes mean equal weights.
pub fn weights_blake3<B: Backend>(model: &Llama<B>) -> String {
    let mut hasher = blake3::Hasher::new();
    model.visit(&mut HashParams {
        hasher: &mut hasher,
    });
    hasher.finalize().to_hex().to_string()
}

/// Loads a pretrained world model (decoder + tokenizer) from its artifact directory.
pub fn load_world_lm<B: Backend>(dir: &Path, device: &B::Device) -> Result<Lm<B>, ModelError> {
    let model = crate::model::load::load_checkpoint::<B>(dir, device)?;
    let tokenizer = crate::model::tokenizer::Tokenizer::from_file(&dir.join(files::TOKENIZER))
        .map_err(ModelError::from)?;
    Lm::new(model, tokenizer)
}

/// Reads the record of a pretrained world model.
pub fn read_record(dir: &Path) -> Result<PretrainRecord, PretrainError> {
    let path = dir.join(files::RECORD);
    let bytes = crate::error::read(&path)?;
    serde_json::from_slice(&bytes).map_err(|source| PretrainError::Record { path, source })
}
