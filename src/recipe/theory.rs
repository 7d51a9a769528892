//! The recipe's `[theory]` section: the Gaussian model of preference labels of paper
//! Appendix N (the Monte-Carlo itself is the `appendix_n` stage).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::Problem;

/// A labelling method of the Appendix N model.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TheoryMethod {
    /// Two outputs of one prompt, labelled by a noisy comparison of their attributes.
    Rlaif,
    /// o+ from p+ and o− from p− (means Δ apart), labelled o+ by construction.
    Rlcd,
}

impl TheoryMethod {
    /// The method's name in recipes and tables.
    pub fn name(self) -> &'static str {
        match self {
            TheoryMethod::Rlaif => "rlaif",
            TheoryMethod::Rlcd => "rlcd",
        }
    }
}

impl std::fmt::Display for TheoryMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The `[theory]` table of a recipe: the Appendix N Monte-Carlo.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TheoryConfig {
    /// Number of simulated pairs per method (the paper uses 10^8; 10^7 gives ±0.0015 on hard
    /// pairs).
    pub trials: u64,
    /// Mean attribute of an output from the unmodified prompt.
    pub mu: f64,
    /// Standard deviation of an output's attribute around its prompt's mean (σ_G).
    pub sigma_g: f64,
    /// Standard deviation of the labeller's noise, added independently to each output's
    /// attribute before RLAIF compares them (σ_D).
    pub sigma_d: f64,
    /// RLCD's gap between the attribute means of p+ and p− outputs, μ(p+) − μ(p−).
    pub delta: f64,
    /// A pair is hard when its true attribute difference is at most this (in absolute value).
    pub hard_threshold: f64,
    /// Methods to simulate, each one table row: "rlaif", "rlcd".
    pub methods: Vec<TheoryMethod>,
}

impl Default for TheoryConfig {
    fn default() -> Self {
        Self {
            trials: 1_000_000,
            mu: 0.0,
            sigma_g: 1.0,
            sigma_d: 1.0,
            delta: 3.0,
            hard_threshold: 0.2,
            methods: vec![TheoryMethod::Rlaif, TheoryMethod::Rlcd],
        }
    }
}

fn problem(prefix: &str, field: &str, message: String, fix: &str) -> Problem {
    Problem {
        key: if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        },
        message,
        fix: Some(fix.to_string()),
    }
}

impl TheoryConfig {
    /// Cross-field checks; `key_prefix` is the dotted path of this table (e.g. `"theory"`).
    pub fn problems(&self, key_prefix: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.trials == 0 {
            out.push(problem(
                key_prefix,
                "trials",
                "trials = 0 simulates nothing".into(),
                "set trials to a positive count, e.g. 1000000",
            ));
        }
        for (field, v) in [("mu", self.mu), ("delta", self.delta)] {
            if !v.is_finite() {
                out.push(problem(
                    key_prefix,
                    field,
                    format!("{field} = {v} is not a finite number"),
                    "use a finite value",
                ));
            }
        }
        if !(self.sigma_g.is_finite() && self.sigma_g > 0.0) {
            out.push(problem(
                key_prefix,
                "sigma_g",
                format!(
                    "sigma_g = {} must be a positive, finite standard deviation",
                    self.sigma_g
                ),
                "set sigma_g > 0 (the paper uses 1)",
            ));
        }
        if !(self.sigma_d.is_finite() && self.sigma_d >= 0.0) {
            out.push(problem(
                key_prefix,
                "sigma_d",
                format!(
                    "sigma_d = {} must be a non-negative, finite standard deviation",
                    self.sigma_d
                ),
                "set sigma_d >= 0 (0 is a noiseless labeller; the paper uses 1)",
            ));
        }
        if !(self.hard_threshold.is_finite() && self.hard_threshold >= 0.0) {
            out.push(problem(
                key_prefix,
                "hard_threshold",
                format!(
                    "hard_threshold = {} must be a non-negative, finite difference",
                    self.hard_threshold
                ),
                "set hard_threshold >= 0 (the paper uses 0.2)",
            ));
        }
        if self.methods.is_empty() {
            out.push(problem(
                key_prefix,
                "methods",
                "methods is empty: nothing to simulate".into(),
                "list at least one of \"rlaif\", \"rlcd\"",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.methods {
            if !seen.insert(*m) {
                out.push(problem(
                    key_prefix,
                    "methods",
                    format!("method \"{m}\" is listed twice"),
                    "list each method once",
                ));
            }
        }
        out
    }
}
