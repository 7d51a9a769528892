//! The one learning-rate schedule every trainer uses: pretraining of the world presets, the
//! preference model (paper Appendix B: warm-up then cosine), SFT and DPO fine-tuning, and PPO
//! (a constant rate).

use serde::{Deserialize, Serialize};

/// A linear warm-up followed by a cosine decay to a floor, over a fixed number of steps.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Optimiser steps the schedule spans.
    pub steps: usize,
    /// Peak learning rate, reached at the end of the warm-up.
    pub lr: f64,
    /// Fraction of the steps spent in the linear warm-up, in `[0, 1)`.
    pub warmup_frac: f64,
    /// Floor of the cosine decay as a fraction of `lr`, reached at the last step.
    pub min_lr_frac: f64,
}

impl Schedule {
    /// Warm-up over `warmup_frac` of `steps`, then cosine decay to 0 (the fine-tuning schedule
    /// of the preference model, SFT and DPO).
    pub fn warmup_cosine(steps: usize, lr: f64, warmup_frac: f64) -> Self {
        Self {
            steps,
            lr,
            warmup_frac,
            min_lr_frac: 0.0,
        }
    }

    /// `lr` at every step (PPO).
    pub fn constant(lr: f64) -> Self {
        Self {
            steps: 1,
            lr,
            warmup_frac: 0.0,
            min_lr_frac: 1.0,
        }
    }

    /// The steps of a pass of `epochs` over `n` examples in batches of `batch_size`.
    pub fn fine_tune_steps(n: usize, epochs: usize, batch_size: usize) -> usize {
        n.div_ceil(batch_size.max(1)) * epochs
    }

    /// Steps of linear warm-up: `warmup_frac · steps` rounded, at most `steps − 1`.
    fn warmup_steps(&self) -> usize {
        let n = self.steps.max(1);
        let w = (self.warmup_frac.clamp(0.0, 1.0) * n as f64).round() as usize;
        w.min(n - 1)
    }

    /// The learning rate at step `step` (0-based): linear warm-up then cosine to
    /// `lr · min_lr_frac`.
    ///
    /// With `w` warm-up steps, step `i < w` gets `lr · (i + 1) / (w + 1)` (a line from 0 at
    /// step −1), step `w` gets the peak `lr`, and the cosine reaches the floor at the last step
    /// (`steps − 1`) and stays there beyond it.
    pub fn lr_at(&self, step: usize) -> f64 {
        let n = self.steps.max(1);
        let w = self.warmup_steps();
        if step < w {
            return self.lr * (step + 1) as f64 / (w + 1) as f64;
        }
        let span = n - 1 - w;
        if span == 0 {
            return self.lr;
        }
        let t = ((step - w) as f64 / span as f64).min(1.0);
        let floor = self.lr * self.min_lr_frac;
        floor + (self.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_then_cosine_to_the_floor() {
        let s = Schedule {
            steps: 11,
            lr: 1.0,
            warmup_frac: 0.1,
            min_lr_frac: 0.1,
        };
        assert!((s.lr_at(0) - 0.5).abs() < 1e-12);
        assert!((s.lr_at(1) - 1.0).abs() < 1e-12);
        assert!((s.lr_at(10) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(50) - 0.1).abs() < 1e-12);
        for step in 1..10 {
            assert!(s.lr_at(step + 1) <= s.lr_at(step));
        }
    }

    #[test]
    fn constant_is_constant() {
        let s = Schedule::constant(3e-4);
        for step in [0, 1, 7, 1000] {
            assert_eq!(s.lr_at(step), 3e-4);
        }
        let f = Schedule::warmup_cosine(Schedule::fine_tune_steps(33, 2, 16), 1.0, 0.0);
        assert_eq!(f.steps, 6);
        assert_eq!(f.lr_at(0), 1.0);
        assert!(f.lr_at(5).abs() < 1e-12);
    }
}
