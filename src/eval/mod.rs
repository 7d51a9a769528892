//! Evaluation statistics: win rates from counts (AlpacaEval convention) and agreement rates;
//! preference-model agreement with the oracle on held-out pairs.

pub mod judge;
pub mod pm_agreement;
pub mod winrate;
