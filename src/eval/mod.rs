//! Evaluation statistics: win rates from counts (AlpacaEval convention) and agreement rates.

pub mod winrate;
