//! Stage implementations, one module per pipeline stage (see DESIGN.md, "Layout").
//!
//! - [`prompts`]: prompt sets → dialogues → contrast prompts p+ / p− / p (paper §3, RLCD).
//! - [`appendix_n`]: the Gaussian model of preference labels (paper Appendix N).

pub mod appendix_n;
pub mod pretrain;
pub mod prompts;
pub mod world_report;
