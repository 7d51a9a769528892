//! Stage implementations, one module per pipeline stage (see DESIGN.md, "Layout").
//!
//! - [`prompts`]: prompt sets → dialogues → contrast prompts p+ / p− / p (paper §3, RLCD).
//! - [`appendix_n`]: the Gaussian model of preference labels (paper Appendix N).
//! - [`simulate`]: RLCD / RLAIF / RLCD-Rescore preference pairs from a simulator LM (paper §3, §4.2).
//! - [`reward`]: the preference model, Bradley–Terry training on hard or soft labels (paper Appendix B).
//! - [`policy`]: PPO against the PM, DPO on the pairs, context distillation (paper §3 step 3, §4.2).
//! - [`generate`]: one sample per test prompt per policy, for the judges (paper §4.3).

pub mod appendix_n;
pub mod generate;
pub mod policy;
pub mod pretrain;
pub mod prompts;
pub mod reward;
pub mod simulate;
pub mod world_report;
