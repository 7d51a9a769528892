//! Recipes: the TOML schema researchers write (one experiment of the RLCD paper, arXiv
//! 2307.12950), its layered loading (file → `RLCD_*` environment → `key=value` overrides) and its
//! validation, with every problem reported at once and located where its key was set.
//!
//! This layer owns every recipe section type and imports no stage: stages map these sections
//! to their own typed configurations (see ARCHITECTURE.md, "Stages").

pub mod error;
pub mod eval;
pub mod load;
pub mod pretrain;
pub mod reference;
pub mod schema;
pub mod theory;
pub mod training;
pub mod validate;
pub mod world;

pub use error::{Located, Problem, RecipeError};
pub use eval::{EvalConfig, JudgeOrder};
pub use load::{ENV_PREFIX, Resolved, load, load_with_env};
pub use pretrain::{PretrainConfig, PretrainSettings, ReportConfig};
pub use schema::*;
pub use theory::{TheoryConfig, TheoryMethod};
pub use training::{AdaptiveKl, DistillConfig, DpoConfig, PpoConfig, RewardConfig, SimulateConfig};
pub use validate::{WORLD_PROMPT_SETS, located, problems, validate};
pub use world::{
    Degraded, DescriptorLists, Descriptors, JudgeTuning, Judging, TaskMix, WorldConfig,
};
