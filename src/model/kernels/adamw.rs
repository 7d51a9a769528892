//! One AdamW update (Loshchilov & Hutter 2019) of a parameter, its two moment estimates and
//! its gradient, in one pass over the four buffers and spread over all cores: the optimizer of
//! every trainer in the pipeline (pretraining, preference models, PPO, context distillation,
//! judge tuning). burn's AdamW makes about a dozen element-wise passes on one core, each
//! allocating a fresh buffer the size of the parameter. Each element here goes through exactly
//! the operations of burn's AdamW on the Flex backend, in the same order and at the same `f32`
//! precision, so results are bit-identical to it.

use rayon::prelude::*;

/// Elements one task updates.
const CHUNK: usize = 1 << 14;

/// The scalars of one AdamW update, each rounded to `f32` where burn rounds it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct AdamWScalars {
    /// Decay of the first moment.
    pub beta_1: f32,
    /// Decay of the second moment.
    pub beta_2: f32,
    /// `1 - β₁`.
    pub factor_1: f32,
    /// `1 - β₂`.
    pub factor_2: f32,
    /// First moment's bias correction `1 - β₁ᵗ`.
    pub correction_1: f32,
    /// Second moment's bias correction `1 - β₂ᵗ`.
    pub correction_2: f32,
    /// Added to the corrected second moment's square root.
    pub epsilon: f32,
    /// The parameter's factor `1 - lr·λ`, `None` without weight decay.
    pub keep: Option<f32>,
    /// The learning rate.
    pub lr: f32,
}

impl AdamWScalars {
    /// The scalars of step `time` (1-based) at learning rate `lr`, as burn's AdamW derives them.
    pub(crate) fn new(
        [beta_1, beta_2, epsilon, weight_decay]: [f32; 4],
        time: usize,
        lr: f64,
    ) -> Self {
        let t = i32::try_from(time).unwrap_or(i32::MAX);
        let decay_rate = lr * f64::from(weight_decay);
        Self {
            beta_1,
            beta_2,
            factor_1: 1.0 - beta_1,
            factor_2: 1.0 - beta_2,
            correction_1: 1.0 - beta_1.powi(t),
            correction_2: 1.0 - beta_2.powi(t),
            epsilon,
            keep: (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32),
            lr: lr as f32,
        }
    }
}

/// Updates `param`, `m` and `v` in place from `grad`. On the first step (`first`) the moments'
/// old values are ignored, as burn starts them from the gradient alone.
///
/// # Panics
/// When the slices differ in length (a bug of the caller).
pub(super) fn adamw_in_place(
    param: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    grad: &[f32],
    first: bool,
    s: &AdamWScalars,
) {
    let n = param.len();
    assert!(
        m.len() == n && v.len() == n && grad.len() == n,
        "adamw: buffers of {n}, {}, {} and {} elements",
        m.len(),
        v.len(),
        grad.len()
    );
    let update = |p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]| {
        for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
            let (m1, v1) = if first {
                (g * s.factor_1, (g * g) * s.factor_2)
            } else {
                (
                    *m * s.beta_1 + g * s.factor_1,
                    *v * s.beta_2 + (g * g) * s.factor_2,
                )
            };
            *m = m1;
            *v = v1;
            let delta = (m1 / s.correction_1) / ((v1 / s.correction_2).sqrt() + s.epsilon);
            let decayed = match s.keep {
                Some(keep) => *p * keep,
                None => *p,
            };
            *p = decayed - delta * s.lr;
        }
    };
    if n <= CHUNK {
        // A norm's gains or a bias: not worth a task.
        update(param, m, v, grad);
        return;
    }
    param
        .par_chunks_mut(CHUNK)
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .zip(grad.par_chunks(CHUNK))
        .for_each(|(((p, m), v), g)| update(p, m, v, g));
}
