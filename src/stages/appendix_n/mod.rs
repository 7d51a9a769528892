//! The Gaussian model of preference labels (paper Appendix N).
//!
//! An output's attribute (harmlessness, helpfulness, …) is a Gaussian draw. RLAIF samples both
//! outputs from the same prompt and lets a noisy labeller compare them: each output's attribute
//! is observed with independent Gaussian noise and the larger observation wins. RLCD samples o+
//! from p+ and o− from p−, whose attribute means differ by Δ, and labels o+ preferred by
//! construction. The Monte-Carlo estimates label accuracy (agreement with the truly larger
//! attribute) overall and on hard pairs, whose true difference is at most a small threshold.
//!
//! Stages: [`cell`] (one method's Monte-Carlo) and [`table`] (the merged table).
//!
//! Work is split into fixed-size chunks; chunk `i` draws from a generator seeded by
//! `seed::derive_index(stage_seed, "chunk", i)`, so counts do not depend on thread count.

pub mod cell;
pub mod table;

use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::eval::winrate::Rate;
use crate::recipe::{TheoryConfig, TheoryMethod};
use crate::seed;

/// Trials per chunk: the unit of seeding and of parallel work.
pub const CHUNK_TRIALS: u64 = 1 << 16;

/// Label-accuracy counts of one method's simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellCounts {
    /// Pairs simulated.
    pub trials: u64,
    /// Pairs whose label names the output with the truly larger attribute.
    pub correct: u64,
    /// Pairs whose true attribute difference is within the hard threshold.
    pub hard: u64,
    /// Hard pairs labelled correctly.
    pub hard_correct: u64,
}

impl CellCounts {
    fn zero() -> Self {
        Self {
            trials: 0,
            correct: 0,
            hard: 0,
            hard_correct: 0,
        }
    }

    fn add(self, o: Self) -> Self {
        Self {
            trials: self.trials + o.trials,
            correct: self.correct + o.correct,
            hard: self.hard + o.hard,
            hard_correct: self.hard_correct + o.hard_correct,
        }
    }

    /// Overall label accuracy.
    pub fn accuracy(&self) -> Rate {
        Rate {
            n: self.trials,
            successes: self.correct,
        }
    }

    /// Label accuracy on hard pairs.
    pub fn hard_accuracy(&self) -> Rate {
        Rate {
            n: self.hard,
            successes: self.hard_correct,
        }
    }
}

/// Exactly what one method's cell computes: the parameters its cache key hashes.
///
/// RLAIF never reads Δ and RLCD never reads σ_D, so each cell is shared across a sweep of the
/// parameter it ignores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellSpec {
    /// The labelling method.
    pub method: TheoryMethod,
    /// Pairs to simulate.
    pub trials: u64,
    /// Mean attribute of the unmodified prompt's outputs.
    pub mu: f64,
    /// Attribute spread σ_G.
    pub sigma_g: f64,
    /// Labeller noise σ_D (RLAIF only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_d: Option<f64>,
    /// μ(p+) − μ(p−) (RLCD only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
    /// Hard-pair threshold on the true difference.
    pub hard_threshold: f64,
    /// Pairs per seeded chunk.
    pub chunk_trials: u64,
}

impl CellSpec {
    /// The cell of `method` under `cfg`.
    pub fn new(cfg: &TheoryConfig, method: TheoryMethod) -> Self {
        Self {
            method,
            trials: cfg.trials,
            mu: cfg.mu,
            sigma_g: cfg.sigma_g,
            sigma_d: (method == TheoryMethod::Rlaif).then_some(cfg.sigma_d),
            delta: (method == TheoryMethod::Rlcd).then_some(cfg.delta),
            hard_threshold: cfg.hard_threshold,
            chunk_trials: CHUNK_TRIALS,
        }
    }

    /// Simulates one chunk of `len` pairs with its own generator.
    fn chunk(&self, seed: u64, len: usize) -> CellCounts {
        let mut rng = seed::rng(seed);
        let draws = match self.method {
            TheoryMethod::Rlaif => 4,
            TheoryMethod::Rlcd => 2,
        };
        let z: Vec<f64> = (0..len * draws)
            .map(|_| rng.sample::<f64, _>(StandardNormal))
            .collect();
        let mut c = CellCounts::zero();
        c.trials = len as u64;
        let thr = self.hard_threshold;
        let (mu, sg) = (self.mu, self.sigma_g);
        let mut tally = |correct: bool, hard: bool| {
            c.correct += correct as u64;
            c.hard += hard as u64;
            c.hard_correct += (hard && correct) as u64;
        };
        match self.method {
            TheoryMethod::Rlaif => {
                let sd = self.sigma_d.unwrap_or(0.0);
                for q in z.chunks_exact(4) {
                    let a = mu + sg * q[0];
                    let b = mu + sg * q[1];
                    let seen_a = a + sd * q[2];
                    let seen_b = b + sd * q[3];
                    tally((seen_a > seen_b) == (a > b), (a - b).abs() <= thr);
                }
            }
            TheoryMethod::Rlcd => {
                let half = self.delta.unwrap_or(0.0) / 2.0;
                for q in z.chunks_exact(2) {
                    let plus = mu + half + sg * q[0];
                    let minus = mu - half + sg * q[1];
                    tally(plus > minus, (plus - minus).abs() <= thr);
                }
            }
        }
        c
    }

    /// Runs the cell's pairs in parallel chunks seeded from `stage_seed`.
    ///
    /// `progress` is called with the number of pairs each finished chunk simulated. The counts
    /// depend only on the spec and the seed, never on the thread count.
    pub fn run(&self, stage_seed: u64, progress: &(dyn Fn(u64) + Sync)) -> CellCounts {
        let per = self.chunk_trials.max(1);
        let n_chunks = self.trials.div_ceil(per);
        (0..n_chunks)
            .into_par_iter()
            .map(|i| {
                let len = per.min(self.trials - i * per) as usize;
                let c = self.chunk(seed::derive_index(stage_seed, "chunk", i), len);
                progress(len as u64);
                c
            })
            .reduce(CellCounts::zero, CellCounts::add)
    }

    /// The table row of this cell's counts.
    pub fn row(&self, counts: CellCounts) -> TheoryRow {
        TheoryRow {
            method: self.method,
            delta: self.delta,
            sigma_g: self.sigma_g,
            sigma_d: self.sigma_d,
            counts,
        }
    }
}

/// Simulates `cfg.trials` pairs of `method` (see [`CellSpec::run`]).
pub fn simulate(
    cfg: &TheoryConfig,
    method: TheoryMethod,
    stage_seed: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> CellCounts {
    CellSpec::new(cfg, method).run(stage_seed, progress)
}

/// The seed of a method's cell, derived from the recipe seed (independent of Δ and σ_D).
pub fn cell_seed(recipe_seed: u64, method: TheoryMethod) -> u64 {
    seed::derive(recipe_seed, &["appendix_n", method.name()])
}

/// One row of the Appendix N table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TheoryRow {
    /// Labelling method.
    pub method: TheoryMethod,
    /// μ(p+) − μ(p−) (RLCD only).
    pub delta: Option<f64>,
    /// Attribute spread σ_G.
    pub sigma_g: f64,
    /// Labeller noise σ_D (RLAIF only).
    pub sigma_d: Option<f64>,
    /// The simulated counts.
    pub counts: CellCounts,
}

/// The stored result of one method's cell (`cell.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    /// What was simulated.
    pub spec: CellSpec,
    /// The seed the chunks were derived from.
    pub seed: u64,
    /// The counts.
    pub counts: CellCounts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_flag_each_bad_field() {
        let cfg = TheoryConfig {
            trials: 0,
            sigma_g: -1.0,
            sigma_d: f64::NAN,
            hard_threshold: -0.1,
            delta: f64::INFINITY,
            methods: vec![TheoryMethod::Rlcd, TheoryMethod::Rlcd],
            ..TheoryConfig::default()
        };
        let keys: Vec<String> = cfg.problems("theory").into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "theory.trials",
                "theory.delta",
                "theory.sigma_g",
                "theory.sigma_d",
                "theory.hard_threshold",
                "theory.methods"
            ]
        );
        assert!(TheoryConfig::default().problems("theory").is_empty());
    }

    #[test]
    fn counts_do_not_depend_on_thread_count() {
        let cfg = TheoryConfig {
            trials: 3 * CHUNK_TRIALS + 17,
            ..TheoryConfig::default()
        };
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        let a = one.install(|| simulate(&cfg, TheoryMethod::Rlaif, 5, &|_| {}));
        let b = simulate(&cfg, TheoryMethod::Rlaif, 5, &|_| {});
        assert_eq!(a, b);
        assert_eq!(a.trials, cfg.trials);
        assert_ne!(a, simulate(&cfg, TheoryMethod::Rlaif, 6, &|_| {}));
    }

    #[test]
    fn rlaif_key_ignores_delta() {
        let a = TheoryConfig::default();
        let b = TheoryConfig {
            delta: 0.0,
            ..a.clone()
        };
        assert_eq!(
            CellSpec::new(&a, TheoryMethod::Rlaif),
            CellSpec::new(&b, TheoryMethod::Rlaif)
        );
        assert_ne!(
            CellSpec::new(&a, TheoryMethod::Rlcd),
            CellSpec::new(&b, TheoryMethod::Rlcd)
        );
    }
}
