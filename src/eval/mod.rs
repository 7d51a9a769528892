//! Shared evaluation below the stages that call it: win-rate and agreement statistics from
//! counts (AlpacaEval convention), the pairwise judges of paper §4.3, preference-model
//! agreement with trusted labels (§4.2) and the sampling evaluations use.

pub mod collapse;
pub mod judge;
pub mod pm_agreement;
pub mod sampling;
pub mod winrate;
