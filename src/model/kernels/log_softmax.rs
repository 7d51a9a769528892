//! The log-softmax over rows (the log-probabilities every scored token is read from: judge
//! verdicts, preference-pair log-probs, `rlcd lm score`; and the next-token losses of
//! pretraining, PPO, DPO and SFT), with its element-wise passes spread over all cores. With `m`
//! the row's maximum and `l = ln Σ exp(x − m)`, burn computes `x − m`, its `exp`, the row
//! sums, their `ln` and `(x − m) − l`, one pass after another on one core; these kernels
//! compute the per-element steps with the same operations, so the results are bit-identical,
//! and leave the maxima, sums and logarithms to burn, whose summation order they do not
//! repeat. In training the log-softmax is one recorded operation whose gradient follows the
//! steps autodiff derives through burn's graph, in one pass over all cores where burn makes
//! six on one.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::FloatTensorOps;
use rayon::prelude::*;

use super::exp::exp_in_place;
use super::flex::{AdTensor, contiguous, row_shape, shaped, values_of as of};
use super::{new_pair_in_chunks, new_per_row, rows_per_task};

/// For rows of `len` values and their maxima `max`: `x − max` and its `exp`, two new buffers.
///
/// # Panics
/// When the slices' lengths disagree (a bug of the caller).
fn shift_and_exp(x: &[f32], len: usize, max: &[f32]) -> [Vec<f32>; 2] {
    assert_eq!(
        x.len(),
        max.len() * len,
        "log-softmax: {} values, {} rows of {len}",
        x.len(),
        max.len()
    );
    if len == 0 {
        return [Vec::new(), Vec::new()];
    }
    new_pair_in_chunks(x.len(), rows_per_task(len) * len, |first, s, e| {
        let (x, max) = (&x[first..first + s.len()], &max[first / len..]);
        for (((s, e), x), &m) in s
            .chunks_exact_mut(len)
            .zip(e.chunks_exact_mut(len))
            .zip(x.chunks_exact(len))
            .zip(max)
        {
            for ((s, e), &x) in s.iter_mut().zip(e.iter_mut()).zip(x) {
                *s = x - m;
                *e = *s;
            }
            exp_in_place(e);
        }
    })
}

/// Subtracts each row's `lse` from its `len` values of `shifted`.
///
/// # Panics
/// When the slices' lengths disagree (a bug of the caller).
fn subtract_rows(shifted: &mut [f32], len: usize, lse: &[f32]) {
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

/// burn's log-softmax along the last dimension of a non-empty `f32` tensor: `x − m` and its
/// `exp` here, burn's own maxima `m`, row sums `s` of the `exp`s and their `ln`, then
/// `(x − m) − ln s` here. Returns the log-softmax, the `exp`s and `s`.
pub(super) fn forward(x: FlexTensor) -> (FlexTensor, FlexTensor, FlexTensor) {
    let x = contiguous(x);
    let (len, total) = row_shape(&x);
    let last = x.layout().shape().num_dims() - 1;
    let maxima = contiguous(Flex::float_max_dim(x.clone(), last));
    let [mut shifted, exps] = shift_and_exp(of(&x, total), len, of(&maxima, total / len));
    let exps = shaped(exps, &x);
    let sums = contiguous(Flex::float_sum_dim(exps.clone(), last));
    let lse = contiguous(Flex::float_log(sums.clone()));
    subtract_rows(&mut shifted, len, of(&lse, total / len));
    (shaped(shifted, &x), exps, sums)
}

/// The log-softmax recorded as one operation of the training graph (a non-empty `f32`
/// tensor).
pub(super) fn recorded(x: AdTensor) -> AdTensor {
    match LogSoftmax
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (out, exps, sums) = forward(x.primitive);
            prep.finish((exps, sums), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive).0),
    }
}

#[derive(Debug)]
struct LogSoftmax;

impl Backward<Flex, 1> for LogSoftmax {
    /// `e = exp(x − m)` and its row sums `s`.
    type State = (FlexTensor, FlexTensor);

    /// The gradient autodiff derives through burn's graph, step for step, for the incoming
    /// `G`: the last subtraction passes `G` to `x − m` and the row sums of `−G` to `ln s`; the
    /// logarithm multiplies them by `1/s`; the row sum's backward sums that over its single
    /// column and hands it to every `e` of the row (times ones); `exp`'s multiplies it by `e`,
    /// and that reaches `x − m`, and through it `x`, added to `G`. The maximum is detached.
    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (exps, sums) = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            let grad = contiguous(grad);
            let (len, total) = row_shape(&exps);
            let last = exps.layout().shape().num_dims() - 1;
            let to_lse = Flex::float_sum_dim(Flex::float_neg(grad.clone()), last);
            let to_sums = Flex::float_mul(to_lse, Flex::float_recip(sums));
            let to_exps = contiguous(Flex::float_sum_dim(to_sums, last));
            let (g, e, b) = (
                of(&grad, total),
                of(&exps, total),
                of(&to_exps, total / len),
            );
            let out = new_per_row(total, len, |row, out| {
                let at = row * len..(row + 1) * len;
                for ((o, &g), &e) in out.iter_mut().zip(&g[at.clone()]).zip(&e[at]) {
                    *o = g + b[row] * e;
                }
            });
            shaped(out, &exps)
        });
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::activation;
    use burn::tensor::{Distribution, Int, Tensor, TensorData};

    use super::super::bits_differ;
    use super::super::flex::log_softmax;

    type Ad = Autodiff<Flex>;

    #[test]
    fn recorded_log_softmax_equals_burns_graph_and_gradient_bit_for_bit() {
        let device = Default::default();
        // Rows longer and shorter than a task, large logits, a strided view; the gradient of
        // a next-token loss (a gather, mostly zeros) and of a dense weighted sum.
        for [a, b, c] in [[2, 3, 7000], [1, 40, 33]] {
            let x = Tensor::<Flex, 3>::random([a, b, c], Distribution::Normal(0.0, 30.0), &device);
            let strided = Tensor::<Flex, 3>::random([b, a, c], Distribution::Default, &device)
                .swap_dims(0, 1);
            let w = Tensor::<Flex, 3>::random([a, b, c], Distribution::Normal(0.0, 1.0), &device);
            let targets: Vec<i64> = (0..a * b).map(|i| (i * 7919 % c) as i64).collect();
            let targets =
                Tensor::<Ad, 3, Int>::from_data(TensorData::new(targets, [a, b, 1]), &device);
            for x0 in [x.clone(), strided, x.flip([2])] {
                for dense in [false, true] {
                    let run = |ours: bool| {
                        let x = Tensor::<Ad, 3>::from_inner(x0.clone()).require_grad();
                        let y = if ours {
                            log_softmax(x.clone())
                        } else {
                            activation::log_softmax(x.clone(), 2)
                        };
                        let loss = if dense {
                            (y.clone() * Tensor::from_inner(w.clone())).sum()
                        } else {
                            -y.clone().gather(2, targets.clone()).mean()
                        };
                        let grads = loss.backward();
                        (y.inner(), x.grad(&grads).expect("x is tracked"))
                    };
                    let ((y_ours, g_ours), (y_burn, g_burn)) = (run(true), run(false));
                    for (what, ours, burn) in [
                        ("log-softmax", y_ours, y_burn),
                        ("gradient", g_ours, g_burn),
                    ] {
                        let (differ, n) = bits_differ(ours, burn);
                        assert_eq!(
                            differ,
                            0,
                            "{what}: {differ} of {n} differ at {:?}",
                            [a, b, c]
                        );
                    }
                }
            }
        }
    }
}
