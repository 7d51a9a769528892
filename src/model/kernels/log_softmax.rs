//! The element-wise passes of a log-softmax over rows (the log-probabilities every scored token
//! is read from: judge verdicts, preference-pair log-probs, `rlcd lm score`), spread over all
//! cores. With `m` the row's maximum and `l = ln Σ exp(x − m)`, burn computes `x − m`, its
//! `exp`, the row sums, their `ln` and `(x − m) − l`, one pass after another on one core; these
//! kernels compute the per-element steps with the same operations, so the results are
//! bit-identical, and leave the sums to burn, whose summation order they do not repeat.

use rayon::prelude::*;

use super::rows_per_task;

/// For rows of `len` values and their maxima `max`: writes `x − max` into `shifted` and its
/// `exp` into `exps`.
///
/// # Panics
/// When the slices' lengths disagree (a bug of the caller).
pub(super) fn shift_and_exp(
    x: &[f32],
    len: usize,
    max: &[f32],
    shifted: &mut [f32],
    exps: &mut [f32],
) {
    assert!(
        x.len() == max.len() * len && shifted.len() == x.len() && exps.len() == x.len(),
        "log-softmax: {} values, {} rows of {len}",
        x.len(),
        max.len()
    );
    if len == 0 {
        return;
    }
    let per = rows_per_task(len);
    shifted
        .par_chunks_mut(per * len)
        .zip(exps.par_chunks_mut(per * len))
        .zip(x.par_chunks(per * len).zip(max.par_chunks(per)))
        .for_each(|((s, e), (x, max))| {
            for (((s, e), x), &m) in s
                .chunks_exact_mut(len)
                .zip(e.chunks_exact_mut(len))
                .zip(x.chunks_exact(len))
                .zip(max)
            {
                for ((s, e), &x) in s.iter_mut().zip(e.iter_mut()).zip(x) {
                    *s = x - m;
                    *e = s.exp();
                }
            }
        });
}

/// Subtracts each row's `lse` from its `len` values of `shifted`.
///
/// # Panics
/// When the slices' lengths disagree (a bug of the caller).
pub(super) fn subtract_rows(shifted: &mut [f32], len: usize, lse: &[f32]) {
    assert_eq!(shifted.len(), lse.len() * len, "log-softmax: rows and sums");
    if len == 0 {
        return;
    }
    let per = rows_per_task(len);
    shifted
        .par_chunks_mut(per * len)
        .zip(lse.par_chunks(per))
        .for_each(|(s, lse)| {
            for (s, &l) in s.chunks_exact_mut(len).zip(lse) {
                for v in s {
                    *v -= l;
                }
            }
        });
}
