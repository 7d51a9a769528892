//! The stage contract (ARCHITECTURE.md, "Stages"): a stage kind is a type with a typed
//! configuration, the upstream stages that configuration names, a format version and `run`.
//! A stage's cache key is computed from exactly those (see [`super::key`]); `run` reads its
//! configuration, its inputs' artifacts and the project root, never the recipe.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::IoError;
use crate::store::{Artifact, Store, StoreError};

/// What a stage does; one variant per stage type (see [`super::registry`]).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// One method's Appendix N Monte-Carlo (`cell.json`).
    AppendixNCell,
    /// The Appendix N table merging the cells.
    AppendixNTable,
    /// A task's contrast prompts (`contrast.jsonl`).
    Contrast,
    /// A world preset pretrained from scratch on the built-in world's corpus.
    Pretrain,
    /// What a pretrained world preset learned, measured with the oracle (`report.json`).
    WorldEval,
    /// The world report table merging every preset's measurements.
    WorldReport,
    /// Simulated preference pairs of one family, simulator and task (`pairs.parquet`).
    Simulate,
    /// Preference pairs of one method and task read from a TRL pair file (`pairs.parquet`).
    ImportPairs,
    /// Held-out pairs of independent policy samples labelled by the oracle (`heldout.json`).
    HeldoutPairs,
    /// A preference model trained on one method's pairs (checkpoint, `reward.json`).
    Reward,
    /// A trained preference model measured on held-out pairs (`pm_eval.json`).
    PmEval,
    /// A language-model judge's labels on a sample of one pair set (`labels.json`).
    PairJudge,
    /// The pair-label table: simulated labels against the oracle and the label judge.
    PairLabels,
    /// The preference-model agreement table.
    PmAgreement,
    /// A method's aligned policy on one task (checkpoint, `training.json`).
    Policy,
    /// One sample per test prompt of a policy (`samples.json`).
    Generate,
    /// One judge's verdicts on every comparison of one task (`judged.json`).
    Judge,
    /// The win-rate table.
    Winrates,
    /// The policy-training table.
    PolicyTraining,
    /// The judge-agreement table.
    JudgeAgreement,
    /// The judging-skill table: label accuracy, PM agreement and RLCD-vs-RLAIF per simulator.
    JudgeSkill,
    /// A pretrained world model fine-tuned as the LM judge (checkpoint, `judge_tuning.json`).
    JudgeTuning,
}

impl StageKind {
    /// Every kind, in pipeline order.
    pub const ALL: [StageKind; 22] = [
        StageKind::AppendixNCell,
        StageKind::AppendixNTable,
        StageKind::Contrast,
        StageKind::Pretrain,
        StageKind::JudgeTuning,
        StageKind::WorldEval,
        StageKind::WorldReport,
        StageKind::Simulate,
        StageKind::ImportPairs,
        StageKind::HeldoutPairs,
        StageKind::Reward,
        StageKind::PmEval,
        StageKind::PairJudge,
        StageKind::PairLabels,
        StageKind::PmAgreement,
        StageKind::Policy,
        StageKind::Generate,
        StageKind::Judge,
        StageKind::Winrates,
        StageKind::PolicyTraining,
        StageKind::JudgeAgreement,
        StageKind::JudgeSkill,
    ];

    /// The kind's name in plans and logs.
    pub fn name(self) -> &'static str {
        match self {
            StageKind::AppendixNCell => "appendix_n_cell",
            StageKind::AppendixNTable => "appendix_n_table",
            StageKind::Contrast => "contrast",
            StageKind::Pretrain => "pretrain",
            StageKind::WorldEval => "world_eval",
            StageKind::WorldReport => "world_report",
            StageKind::Simulate => "simulate",
            StageKind::ImportPairs => "import_pairs",
            StageKind::HeldoutPairs => "heldout_pairs",
            StageKind::Reward => "reward",
            StageKind::PmEval => "pm_eval",
            StageKind::PairJudge => "pair_judge",
            StageKind::PairLabels => "pair_labels",
            StageKind::PmAgreement => "pm_agreement",
            StageKind::Policy => "policy",
            StageKind::Generate => "generate",
            StageKind::Judge => "judge",
            StageKind::Winrates => "winrates",
            StageKind::PolicyTraining => "policy_training",
            StageKind::JudgeAgreement => "judge_agreement",
            StageKind::JudgeSkill => "judge_skill",
            StageKind::JudgeTuning => "judge_tuning",
        }
    }
}

/// A stage type.
pub trait Stage {
    /// Its kind.
    const KIND: StageKind;
    /// Version of what `run` computes and writes; bumping it invalidates the kind's artifacts.
    const VERSION: u32;
    /// The file stem of the table it writes (`<stem>.parquet`), for table stages.
    const TABLE: Option<&'static str> = None;
    /// Everything `run` reads besides its inputs' artifacts: the key hashes its serialization.
    type Config: Serialize + DeserializeOwned;
    /// The ids of the upstream stages whose artifacts `run` reads.
    fn inputs(config: &Self::Config) -> Vec<String>;
    /// Computes the stage's artifacts into `ctx.dir`; returns the manifest's metadata.
    fn run(ctx: &Ctx<'_>, config: &Self::Config) -> Result<serde_json::Value, StageError>;
}

/// What a running stage may use besides its configuration.
pub struct Ctx<'a> {
    /// The stage id.
    pub id: &'a str,
    /// Its key.
    pub key: &'a str,
    /// Where its artifact files go.
    pub dir: &'a Path,
    /// The store holding its inputs.
    pub store: &'a Store,
    /// Its inputs: upstream id → key.
    pub inputs: &'a BTreeMap<String, String>,
    /// The project root, against which relative input files (prompt sets, GGUF models)
    /// resolve; their contents are identified in the configuration.
    pub root: &'a Path,
    /// No progress bars.
    pub quiet: bool,
}

impl Ctx<'_> {
    /// The artifact of input `id`.
    pub fn input(&self, id: &str) -> Result<Artifact, StageError> {
        let key = self
            .inputs
            .get(id)
            .ok_or_else(|| StageError::NotAnInput { input: id.into() })?;
        self.store
            .lookup(id, key)
            .ok_or_else(|| StageError::MissingInput {
                input: id.into(),
                dir: self.store.artifact_dir(id, key),
            })
    }

    /// The stage's scratch directory for resumable work (kept until the stage commits).
    pub fn work_dir(&self) -> PathBuf {
        self.store.work_dir(self.id, self.key)
    }

    /// Writes artifact file `name`.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), StageError> {
        Ok(crate::error::write(&self.dir.join(name), bytes)?)
    }

    /// Writes artifact file `name` as pretty JSON.
    pub fn write_json<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<(), StageError> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|source| StageError::Json {
            path: self.dir.join(name),
            source,
        })?;
        self.write(name, &bytes)
    }

    /// A progress bar of `len` steps labelled with the stage id.
    pub fn progress(&self, len: u64) -> indicatif::ProgressBar {
        crate::progress::bar(self.quiet, len, self.id)
    }
}

/// Reads artifact file `name` of `artifact` as JSON.
pub fn read_json<T: DeserializeOwned>(artifact: &Artifact, name: &str) -> Result<T, StageError> {
    let bytes = artifact.read(name)?;
    serde_json::from_slice(&bytes).map_err(|source| StageError::Json {
        path: artifact.path(name),
        source,
    })
}

/// Why a stage failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A table could not be built or written.
    #[error(transparent)]
    Table(#[from] crate::tables::TableError),
    /// The model engine failed.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// A template failed to render.
    #[error(transparent)]
    Template(#[from] crate::templates::TemplateError),
    /// A prompt set could not be read.
    #[error(transparent)]
    Prompts(#[from] crate::prompts::PromptError),
    /// The built-in world's settings are unusable.
    #[error(transparent)]
    World(#[from] crate::world::WorldError),
    /// A model asset could not be found or verified.
    #[error(transparent)]
    Asset(#[from] crate::assets::AssetError),
    /// The preference model failed.
    #[error(transparent)]
    Pm(#[from] crate::model::pm::PmError),
    /// The stage's own computation failed (simulation, training, judging, …).
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The stage would produce an empty or degenerate result (a table of blanks, a model
    /// trained on nothing); it fails instead of writing it.
    #[error("{what}\n  fix: {fix}")]
    Degenerate {
        /// What is empty, with its count.
        what: String,
        /// How to get a result.
        fix: String,
    },
    /// A JSON artifact file cannot be read or written.
    #[error("{}: not the JSON this build reads or writes; delete the artifact and run again to recompute it", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// An input artifact or a written value is malformed.
    #[error("{}: {detail}; delete it and run again to recompute it", path.display())]
    BadArtifact {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A stage configuration is not one this build reads.
    #[error(
        "a `{kind}` stage configuration this build cannot read; run the recipe again to replan it"
    )]
    Config {
        /// The stage kind.
        kind: &'static str,
        /// The deserializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The stage read a stage its configuration does not name.
    #[error("`{input}` is not an input of this stage; name it in the stage's configuration")]
    NotAnInput {
        /// The upstream id.
        input: String,
    },
    /// An input's artifact is gone from the store.
    #[error("input `{input}` is missing from the cache ({}); run again to recompute it", dir.display())]
    MissingInput {
        /// The upstream id.
        input: String,
        /// Where it should be.
        dir: PathBuf,
    },
    /// The configuration asks for CUDA but this binary was built without it.
    #[error(
        "the recipe sets backend = \"cuda\", but this binary was built without CUDA; rebuild with \
         `cargo build --release --features cuda` or set backend = \"cpu\""
    )]
    NoCuda,
}

impl StageError {
    /// A stage computation's own error.
    pub fn failed(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StageError::Failed(Box::new(e))
    }
}

/// Runs `$body` with `$B` bound to the backend type of `$backend` (a
/// [`crate::recipe::BackendKind`]) and `$device` to its default device; without the `cuda`
/// feature, CUDA is [`StageError::NoCuda`].
macro_rules! with_backend {
    ($backend:expr, $B:ident, $device:ident => $body:expr) => {
        match $backend {
            $crate::recipe::BackendKind::Cpu => {
                type $B = $crate::model::Cpu;
                let $device: burn::tensor::Device<$B> = Default::default();
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::recipe::BackendKind::Cuda => {
                $crate::model::persist_cuda_kernel_cache();
                type $B = $crate::model::CudaBackend;
                let $device: burn::tensor::Device<$B> = Default::default();
                $body
            }
            #[cfg(not(feature = "cuda"))]
            $crate::recipe::BackendKind::Cuda => Err($crate::stages::stage::StageError::NoCuda),
        }
    };
}
pub(crate) use with_backend;
