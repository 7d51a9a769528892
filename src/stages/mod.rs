//! The stages of the pipeline (ARCHITECTURE.md, "Stages"), one module per stage kind, each
//! owning its typed configuration, its inputs, its version, its artifact files, its table rows
//! if any, how the recipe maps to its configuration, and `run`:
//!
//! - [`appendix_n`]: the Gaussian model of preference labels (paper Appendix N);
//! - [`contrast`]: prompt sets → contrast prompts p+ / p− / p (paper §3);
//! - [`pretrain`], [`world_eval`], [`world_report`]: the built-in world's simulators and what
//!   they learned; [`judge_tuning`]: a pretrained world model fine-tuned as the LM judge;
//! - [`simulate`]: RLCD / RLAIF / RLCD-Rescore preference pairs (paper §3, §4.2);
//! - [`reward`]: the preference model (paper Appendix B); [`heldout_pairs`] and [`pm_eval`]:
//!   its agreement with the oracle (paper Table 5); [`pair_labels`] and [`pm_agreement`] their
//!   tables;
//! - [`policy`]: PPO against the PM, DPO on the pairs, context distillation (paper §3, §4.2);
//! - [`generate`], [`judge`], [`winrates`], [`judge_agreement`], [`policy_training`]: the pairwise
//!   evaluation (paper §4.3); [`judge_skill`]: RLCD's lead over RLAIF against each simulator's
//!   label accuracy (paper §4's 7B/30B contrast).
//!
//! The layer's own machinery: [`stage`] (the trait and its context), [`key`] (cache keys),
//! [`planning`] (recipe → configurations), [`inputs`] (model references), [`table`] (the
//! shared collect step of table stages), [`checkpoint`] (resumable training state) and
//! [`registry`] (kind → type).

pub mod checkpoint;
pub mod inputs;
pub mod key;
pub mod planning;
pub mod registry;
pub mod stage;
pub mod table;

pub mod appendix_n;
pub mod contrast;
pub mod generate;
pub mod heldout_pairs;
pub mod import_pairs;
pub mod judge;
pub mod judge_agreement;
pub mod judge_skill;
pub mod judge_tuning;
pub mod pair_judge;
pub mod pair_labels;
pub mod pm_agreement;
pub mod pm_eval;
pub mod policy;
pub mod policy_training;
pub mod pretrain;
pub mod reward;
pub mod simulate;
pub mod winrates;
pub mod world_eval;
pub mod world_report;

pub use stage::{Ctx, Stage, StageError, StageKind};
