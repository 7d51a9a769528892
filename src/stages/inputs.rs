//! The models stages run, as their configurations name them: a built-in world preset (the
//! artifact of its pretraining stage), a GGUF file identified by its checksum, a Hugging Face
//! checkpoint directory identified by the blake3 of its files, or a fetched
//! asset identified by its registry SHA-256 — so a model's identity and checksum are part of
//! every key that reads it (ARCHITECTURE.md, "Stages").

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::stage::{Ctx, StageError};
use crate::error::IoError;
use crate::model::tokenizer::Tokenizer;
use crate::model::{Lm, ModelError, PolicyFormat};
use crate::recipe::WeightFormat;

/// A model a stage loads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    /// The recipe's name for it.
    pub name: String,
    /// What it is.
    pub source: ModelSource,
    /// With `models.<name>.chat`, the version of the layout its prompts take in its chat
    /// template ([`crate::model::format::CHAT_LAYOUT`]), so a change of layout changes every
    /// key that reads the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<u32>,
    /// The format its matrices are loaded in: `models.<name>.weights` for a stage that runs
    /// it without gradients, always `f32` for one that trains from it.
    #[serde(default, skip_serializing_if = "WeightFormat::is_f32")]
    pub weights: WeightFormat,
}

/// Where a model's weights come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSource {
    /// A built-in world preset, trained from scratch by stage `pretrain`.
    World {
        /// The preset (`world-s`, …).
        preset: String,
        /// Id of the stage whose artifact holds its weights: its pretraining, or its judge
        /// tuning when it has one.
        pretrain: String,
    },
    /// A preset with no trained weights (e.g. `tiny`); loading it is an error.
    Untrained {
        /// The preset.
        preset: String,
    },
    /// A GGUF file.
    Gguf {
        /// Its path as the recipe writes it (relative to the project root, or absolute).
        path: String,
        /// Its content checksum.
        checksum: Checksum,
    },
    /// A Hugging Face checkpoint directory.
    Hf {
        /// Its path as the recipe writes it (relative to the project root, or absolute).
        path: String,
        /// blake3 over the names and contents of the files a load reads (config, weights,
        /// index, tokenizer), taken when the plan was made and verified before every load.
        blake3: String,
    },
    /// A model fetched with `rlcd assets fetch`.
    Asset {
        /// The asset's name.
        asset: String,
        /// The SHA-256 of its file: the recipe's when it gives one (verified before every
        /// load), else the registry's (verified when it was fetched).
        sha256: String,
        /// Whether the SHA-256 is the recipe's.
        verify: bool,
    },
}

/// A file's content checksum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Checksum {
    /// The SHA-256 the recipe gives (verified before every load).
    Sha256(String),
    /// The blake3 of the file when the plan was made (verified before every load).
    Blake3(String),
}

impl ModelRef {
    /// The stages whose artifacts loading it reads.
    pub fn inputs(&self) -> Vec<String> {
        match &self.source {
            ModelSource::World { pretrain, .. } => vec![pretrain.clone()],
            _ => Vec::new(),
        }
    }

    /// Whether it is a built-in world model (BOS/EOS text conventions).
    pub fn is_world(&self) -> bool {
        matches!(self.source, ModelSource::World { .. })
    }

    /// How it reads prompts and ends replies: the world's BOS/EOS text, raw dialogue text, or
    /// its chat template.
    pub fn format(&self, tokenizer: &Tokenizer) -> Result<PolicyFormat, ModelError> {
        if self.is_world() {
            Ok(PolicyFormat::world())
        } else if self.chat.is_some() {
            Ok(PolicyFormat::chat(tokenizer)?)
        } else {
            Ok(PolicyFormat::pretrained())
        }
    }

    /// Loads the model (decoder and tokenizer), checking a file's checksum first, with its
    /// matrices in [`Self::weights`].
    pub fn load<B: Backend>(&self, ctx: &Ctx<'_>, device: &B::Device) -> Result<Lm<B>, StageError> {
        Ok(in_format(self.load_f32(ctx, device)?, self.weights)?)
    }

    fn load_f32<B: Backend>(&self, ctx: &Ctx<'_>, device: &B::Device) -> Result<Lm<B>, StageError> {
        match &self.source {
            ModelSource::World { pretrain, .. } => {
                let artifact = ctx.input(pretrain)?;
                Ok(super::pretrain::artifact::load_world_lm::<B>(
                    &artifact.dir,
                    device,
                )?)
            }
            ModelSource::Untrained { preset } => Err(StageError::BadArtifact {
                path: PathBuf::from(format!("models.{}", self.name)),
                detail: format!(
                    "preset `{preset}` has no weights to load; use a world preset, \
                     `gguf = \"<path>\"` or `asset = \"<name>\"`"
                ),
            }),
            ModelSource::Gguf { path, checksum } => {
                let file = resolve(ctx.root, path);
                match checksum {
                    Checksum::Sha256(sha) => crate::assets::verify(&file, sha)?,
                    Checksum::Blake3(planned) => {
                        let found = file_blake3(&file)?;
                        if &found != planned {
                            return Err(StageError::BadArtifact {
                                path: file,
                                detail: format!(
                                    "the model file changed since the plan was made (blake3 \
                                     {found}, planned {planned}); run again to plan with it"
                                ),
                            });
                        }
                    }
                }
                Ok(Lm::from_gguf_path(&file, device)?)
            }
            ModelSource::Hf { path, blake3 } => {
                let dir = resolve(ctx.root, path);
                let found = checkpoint_blake3(&dir)?;
                if &found != blake3 {
                    return Err(StageError::BadArtifact {
                        path: dir,
                        detail: format!(
                            "the checkpoint's files changed since the plan was made (blake3 \
                             {found}, planned {blake3}); run again to plan with them"
                        ),
                    });
                }
                Ok(Lm::from_hf_dir(&dir, device)?)
            }
            ModelSource::Asset {
                asset,
                sha256,
                verify,
            } => {
                let file = crate::assets::resolve_model(ctx.root, asset)?;
                if *verify {
                    crate::assets::verify(&file, sha256)?;
                }
                Ok(Lm::from_gguf_path(&file, device)?)
            }
        }
    }
}

/// `lm` with its projection and output-head matrices in `format` (Q8_0 copies the forward
/// passes then use; the `f32` weights stay for the embedding lookup).
pub fn in_format<B: Backend>(mut lm: Lm<B>, format: WeightFormat) -> Result<Lm<B>, ModelError> {
    if format == WeightFormat::Q8_0 {
        lm.model = lm.model.quantize_q8()?;
    }
    Ok(lm)
}

/// Id of the pretraining stage of a world model labelled `label` (see [`WorldModel`]).
pub fn pretrain_id(label: &str) -> String {
    format!("pretrain/{label}")
}

/// A recipe model that is a built-in world preset, as pretraining knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct WorldModel {
    /// What its pretraining and evaluation stages are named by: the preset (shared by every
    /// model naming it), or `<preset>-<model>` for a model with a corpus of its own.
    pub label: String,
    /// The preset (`world-s`, …): its architecture and training schedule.
    pub preset: String,
    /// How it learns to judge, when not as the world's corpus teaches.
    pub judging: Option<crate::recipe::Judging>,
}

impl WorldModel {
    /// The world model of recipe model `name`, or `None` when it is not a world preset.
    pub fn of(name: &str, spec: &crate::recipe::ModelSpec) -> Option<WorldModel> {
        let preset = spec.preset.as_deref()?.replace('_', "-");
        if !crate::model::llama::is_world_preset(&preset) {
            return None;
        }
        let label = match &spec.judging {
            Some(_) => format!("{preset}-{name}"),
            None => preset.clone(),
        };
        Some(WorldModel {
            label,
            preset,
            judging: spec.judging.clone(),
        })
    }
}

/// `path` against `root` (absolute paths are kept).
pub fn resolve(root: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    }
}

/// blake3 (hex) over the names and blake3s of the files loading checkpoint `dir` reads.
pub fn checkpoint_blake3(dir: &Path) -> Result<String, StageError> {
    let files = crate::model::hf::checkpoint_files(dir).map_err(|e| StageError::BadArtifact {
        path: dir.to_path_buf(),
        detail: e.to_string(),
    })?;
    let mut hasher = blake3::Hasher::new();
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        hasher.update(name.as_bytes());
        hasher.update(b"\0");
        hasher.update(file_blake3(&file)?.as_bytes());
        hasher.update(b"\n");
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// blake3 (hex) of a file's bytes, remembered per path, length and modification time so a
/// process hashes a large model file once.
pub fn file_blake3(path: &Path) -> Result<String, IoError> {
    type Seen = HashMap<(PathBuf, u64, Option<SystemTime>), String>;
    static SEEN: Mutex<Option<Seen>> = Mutex::new(None);
    let meta = std::fs::metadata(path).map_err(IoError::at(path))?;
    let id = (path.to_path_buf(), meta.len(), meta.modified().ok());
    if let Some(hash) = SEEN
        .lock()
        .ok()
        .and_then(|seen| seen.as_ref().and_then(|s| s.get(&id).cloned()))
    {
        return Ok(hash);
    }
    let file = std::fs::File::open(path).map_err(IoError::at(path))?;
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(std::io::BufReader::new(file))
        .map_err(IoError::at(path))?;
    let hash = hasher.finalize().to_hex().to_string();
    if let Ok(mut seen) = SEEN.lock() {
        seen.get_or_insert_with(HashMap::new)
            .insert(id, hash.clone());
    }
    Ok(hash)
}
