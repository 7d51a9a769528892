//! Recipes: the TOML schema researchers write (one experiment of the RLCD paper, arXiv
//! 2307.12950), its layered loading (file → `RLCD_*` environment → `key=value` overrides) and its
//! validation, with every problem reported at once and located where its key was set.

pub mod error;
pub mod load;
pub mod schema;
pub mod validate;

pub use error::{Located, Problem, RecipeError};
pub use load::{ENV_PREFIX, Resolved, load, load_with_env};
pub use schema::*;
pub use validate::{WORLD_PROMPT_SETS, problems, validate};
