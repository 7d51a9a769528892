//! Win rates and accuracies from counts.
//!
//! Win rates follow the AlpacaEval convention the paper reports (§4.2): a tie counts half a win,
//! the rate is in percent, and every rate travels with its counts, its standard error and a
//! Wilson 95% confidence interval so tables can be recomputed and compared. [`Rate`] is the same
//! for plain accuracies (label accuracy, preference-model agreement, Appendix N), as a fraction;
//! tables show it in percent too ([`Estimate::percent`]), so every table has one unit.

use serde::{Deserialize, Serialize};

/// The two-sided 95% normal quantile used by every confidence interval here.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Why a rate cannot be computed from its counts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    /// No observations: a rate over zero comparisons or trials is undefined.
    #[error(
        "no observations: a rate over 0 {what} is undefined; evaluate at least one {what_one} \
         (check the prompt count or the filters that produced these counts)"
    )]
    Empty {
        /// What was counted ("comparisons", "trials").
        what: &'static str,
        /// The singular of `what`.
        what_one: &'static str,
    },
    /// More successes than trials: the counts were not produced together.
    #[error(
        "inconsistent counts: {successes} successes out of {n} trials; successes must not \
         exceed trials (the counts come from different runs or were edited by hand)"
    )]
    TooManySuccesses {
        /// Number of trials.
        n: u64,
        /// Number of successes claimed.
        successes: u64,
    },
}

/// A point estimate with its uncertainty.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The estimate itself.
    pub value: f64,
    /// Its standard error.
    pub stderr: f64,
    /// Lower end of the Wilson 95% interval.
    pub ci_low: f64,
    /// Upper end of the Wilson 95% interval.
    pub ci_high: f64,
}

impl Estimate {
    /// The estimate of a fraction in percent: value, standard error and interval times 100.
    pub fn percent(self) -> Self {
        Self {
            value: 100.0 * self.value,
            stderr: 100.0 * self.stderr,
            ci_low: 100.0 * self.ci_low,
            ci_high: 100.0 * self.ci_high,
        }
    }
}

/// Wilson score interval for a proportion `p` observed over `n` trials (`n > 0`).
///
/// `p` may come from fractional successes (ties counted as half a win).
pub fn wilson(p: f64, n: u64, z: f64) -> (f64, f64) {
    let n = n as f64;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).max(0.0).sqrt();
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// Pairwise comparison counts of method A against method B.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WinCounts {
    /// Comparisons A won.
    pub wins: u64,
    /// Comparisons A lost.
    pub losses: u64,
    /// Comparisons judged a tie (or unparseable): half a win each.
    pub ties: u64,
}

impl WinCounts {
    /// Counts from wins, losses and ties.
    pub fn new(wins: u64, losses: u64, ties: u64) -> Self {
        Self { wins, losses, ties }
    }

    /// Total comparisons.
    pub fn total(&self) -> u64 {
        self.wins + self.losses + self.ties
    }

    /// Whether the judge decided fewer than half of the comparisons (ties are the majority),
    /// so that the win rate mostly counts halves.
    pub fn mostly_ties(&self) -> bool {
        2 * (self.wins + self.losses) < self.total()
    }

    /// Adds one comparison outcome: `Some(true)` A won, `Some(false)` A lost, `None` a tie.
    pub fn record(&mut self, outcome: Option<bool>) {
        match outcome {
            Some(true) => self.wins += 1,
            Some(false) => self.losses += 1,
            None => self.ties += 1,
        }
    }

    fn check(&self) -> Result<u64, StatsError> {
        match self.total() {
            0 => Err(StatsError::Empty {
                what: "comparisons",
                what_one: "comparison",
            }),
            n => Ok(n),
        }
    }

    /// Win rate of A in percent: `100 × (wins + ties / 2) / total`.
    pub fn win_rate(&self) -> Result<f64, StatsError> {
        let n = self.check()?;
        Ok(100.0 * self.score_sum() / n as f64)
    }

    fn score_sum(&self) -> f64 {
        self.wins as f64 + 0.5 * self.ties as f64
    }

    /// Standard error of the win rate in percentage points.
    ///
    /// The standard error of the mean of per-comparison scores (1 win, ½ tie, 0 loss) with the
    /// sample (n − 1) variance, as AlpacaEval reports it; 0 for a single comparison.
    pub fn stderr(&self) -> Result<f64, StatsError> {
        let n = self.check()?;
        if n < 2 {
            return Ok(0.0);
        }
        let nf = n as f64;
        let mean = self.score_sum() / nf;
        let sum_sq = self.wins as f64 * (1.0 - mean).powi(2)
            + self.ties as f64 * (0.5 - mean).powi(2)
            + self.losses as f64 * mean.powi(2);
        let var = sum_sq / (nf - 1.0);
        Ok(100.0 * (var / nf).sqrt())
    }

    /// Wilson 95% interval of the win rate in percent (ties as half successes).
    pub fn wilson95(&self) -> Result<(f64, f64), StatsError> {
        let n = self.check()?;
        let (lo, hi) = wilson(self.score_sum() / n as f64, n, Z95);
        Ok((100.0 * lo, 100.0 * hi))
    }

    /// Win rate, standard error and interval together (percent).
    pub fn estimate(&self) -> Result<Estimate, StatsError> {
        let (ci_low, ci_high) = self.wilson95()?;
        Ok(Estimate {
            value: self.win_rate()?,
            stderr: self.stderr()?,
            ci_low,
            ci_high,
        })
    }
}

/// Successes out of trials: an accuracy or agreement rate (as a fraction).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// Number of trials.
    pub n: u64,
    /// Number of successes (`≤ n`).
    pub successes: u64,
}

impl Rate {
    /// A rate from its counts; errors when `successes > n`.
    pub fn new(n: u64, successes: u64) -> Result<Self, StatsError> {
        let r = Self { n, successes };
        r.consistent()?;
        Ok(r)
    }

    fn consistent(&self) -> Result<(), StatsError> {
        if self.successes > self.n {
            return Err(StatsError::TooManySuccesses {
                n: self.n,
                successes: self.successes,
            });
        }
        Ok(())
    }

    fn check(&self) -> Result<u64, StatsError> {
        self.consistent()?;
        match self.n {
            0 => Err(StatsError::Empty {
                what: "trials",
                what_one: "trial",
            }),
            n => Ok(n),
        }
    }

    /// `successes / n`.
    pub fn rate(&self) -> Result<f64, StatsError> {
        let n = self.check()?;
        Ok(self.successes as f64 / n as f64)
    }

    /// Binomial standard error `sqrt(p (1 − p) / n)`.
    pub fn stderr(&self) -> Result<f64, StatsError> {
        let n = self.check()?;
        let p = self.successes as f64 / n as f64;
        Ok((p * (1.0 - p) / n as f64).sqrt())
    }

    /// Wilson 95% interval of the rate.
    pub fn wilson95(&self) -> Result<(f64, f64), StatsError> {
        let n = self.check()?;
        Ok(wilson(self.successes as f64 / n as f64, n, Z95))
    }

    /// Rate, standard error and interval together.
    pub fn estimate(&self) -> Result<Estimate, StatsError> {
        let (ci_low, ci_high) = self.wilson95()?;
        Ok(Estimate {
            value: self.rate()?,
            stderr: self.stderr()?,
            ci_low,
            ci_high,
        })
    }
}

/// Length-controlled win rate of A in percent (beyond the paper; AlpacaEval 2's idea): a
/// logistic model P(A preferred) = σ(α + β·tanh(Δ / sd(Δ))) of the per-comparison scores
/// (win 1, tie ½, loss 0) on the length difference Δ = len_a − len_b, fitted by Newton's
/// method with a small ridge (0.01) on both coefficients; the rate is 100·σ(α), the predicted
/// win rate at equal lengths. `None` without comparisons.
pub fn length_controlled(scores: &[f64], len_diff: &[f64]) -> Option<f64> {
    let n = scores.len().min(len_diff.len());
    if n == 0 {
        return None;
    }
    let mean = len_diff[..n].iter().sum::<f64>() / n as f64;
    let sd = (len_diff[..n]
        .iter()
        .map(|d| (d - mean).powi(2))
        .sum::<f64>()
        / n as f64)
        .sqrt();
    let x: Vec<f64> = len_diff[..n]
        .iter()
        .map(|d| if sd > 0.0 { (d / sd).tanh() } else { 0.0 })
        .collect();
    let ridge = 0.01;
    let (mut a, mut b) = (0.0f64, 0.0f64);
    for _ in 0..100 {
        // Gradient and Hessian of the penalised negative log-likelihood.
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (ridge * a, ridge * b, ridge, 0.0, ridge);
        for (&y, &xi) in scores.iter().zip(&x) {
            let p = 1.0 / (1.0 + (-(a + b * xi)).exp());
            let w = p * (1.0 - p);
            ga += p - y;
            gb += (p - y) * xi;
            haa += w;
            hab += w * xi;
            hbb += w * xi * xi;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-300 {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        a -= da;
        b -= db;
        if da.abs() + db.abs() < 1e-10 {
            break;
        }
    }
    Some(100.0 / (1.0 + (-a).exp()))
}

#[cfg(test)]
mod length_tests {
    use super::*;

    #[test]
    fn length_control_removes_a_pure_length_preference() {
        // A wins exactly when it is longer, half the time longer: the raw rate is 50%, and at
        // equal lengths the model predicts 50% too.
        let diffs: Vec<f64> = (0..200)
            .map(|i| if i % 2 == 0 { 10.0 } else { -10.0 })
            .collect();
        let scores: Vec<f64> = diffs
            .iter()
            .map(|&d| if d > 0.0 { 1.0 } else { 0.0 })
            .collect();
        let lc = length_controlled(&scores, &diffs).expect("rate");
        assert!((lc - 50.0).abs() < 1.0, "{lc}");
        // A wins 80% when longer and 60% when shorter: without length, A is better.
        let scores: Vec<f64> = (0..200)
            .map(|i| {
                let longer = i % 2 == 0;
                let k = i / 2 % 10;
                f64::from(u8::from(if longer { k < 8 } else { k < 6 }))
            })
            .collect();
        let lc = length_controlled(&scores, &diffs).expect("rate");
        assert!((lc - 70.0).abs() < 3.0, "{lc}");
        // No length difference: the plain win rate.
        let lc = length_controlled(&[1.0, 1.0, 0.0, 0.5], &[0.0; 4]).expect("rate");
        assert!((lc - 62.5).abs() < 0.5, "{lc}");
        assert_eq!(length_controlled(&[], &[]), None);
    }

    #[test]
    fn mostly_ties_when_fewer_than_half_are_decided() {
        assert!(WinCounts::new(2, 2, 5).mostly_ties());
        assert!(!WinCounts::new(2, 2, 4).mostly_ties());
        assert!(!WinCounts::new(3, 0, 2).mostly_ties());
        assert!(WinCounts::new(0, 0, 1).mostly_ties());
        assert!(!WinCounts::new(0, 0, 0).mostly_ties());
    }
}
