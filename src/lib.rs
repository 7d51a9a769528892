//! `rlcd`: a declarative experiment runner for RLCD (Reinforcement Learning from Contrastive
//! Distillation, Yang et al., arXiv 2307.12950) and its baselines (RLAIF, context distillation).
//!
//! The pipeline, in the order data flows (ARCHITECTURE.md):
//! [`recipe`] (TOML → resolved config) → [`plan`] (a DAG of content-hashed stages) →
//! [`stages`] (one typed stage per kind, on the [`model`] engine, the [`world`], [`prompts`],
//! [`templates`] and [`eval`]) → [`store`] (atomic, resumable artifacts), driven by [`runner`]
//! → [`tables`] and [`plots`].

pub mod assets;
pub mod error;
pub mod eval;
pub mod export;
pub mod machine;
pub mod model;
pub mod plan;
pub mod plots;
pub mod preflight;
pub mod progress;
pub mod prompts;
pub mod recipe;
pub mod runner;
pub mod seed;
pub mod side_by_side;
pub mod stages;
pub mod store;
pub mod sweep;
pub mod tables;
pub mod templates;
pub mod trl;
pub mod world;
