//! `rlcd`: a declarative experiment runner for RLCD (Reinforcement Learning from Contrastive
//! Distillation, Yang et al., arXiv 2307.12950) and its baselines (RLAIF, context distillation).
//!
//! The pipeline, in the order data flows:
//! [`recipe`] (TOML → resolved config) → [`plan`] (a DAG of content-hashed stages) →
//! [`stages`] (each stage's work, on the [`model`] engine) → [`store`] (atomic, resumable
//! artifacts) → [`tables`] and [`eval`] (win rates, agreement tables) → [`plots`].

pub mod assets;
pub mod error;
pub mod eval;
pub mod model;
pub mod plan;
pub mod plots;
pub mod recipe;
pub mod runner;
pub mod seed;
pub mod stages;
pub mod store;
pub mod sweep;
pub mod tables;
pub mod templates;
pub mod world;
