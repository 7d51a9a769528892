//! Attention's softmax over keys (every forward pass of the paper's §3 pipeline: simulation,
//! preference models, PPO's policy and reference, judges) on the Flex backend. Masked keys
//! carry a bias of −10⁹, so about half of a causal score matrix shifts far below the range
//! where `exp` is not 0; libm takes its slow underflow path (which also sets `errno`) for each
//! of them, and burn's training graph computes every `exp` twice (forward, and again in the
//! backward pass). Here the `exp`s run four at a time through the vector `exp` of
//! [`super::exp`], which gives libm's results and the +0 of far-negative arguments without its
//! underflow path, computed once, and the steps around them are fused into fewer passes over
//! all cores, the row sums too (burn's own `sum_dim`, which runs on one core, called per
//! chunk of rows). The fused training attention ([`super::attention_training`]) runs the same
//! steps per block of rows.
//! Values and gradients are bit-identical to burn's: inference to burn-flex's fused softmax
//! (max, sequential `exp` sums, scaling by the reciprocal), training to burn's decomposed
//! graph (`x − max`, `exp`, row sums, division) and the gradients autodiff derives for it.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{DType, Shape, Tensor, TensorData};

use super::exp::exp_in_place;
use super::flex::{
    AdTensor, ad_primitive, cast, contiguous, float_primitive, from_ad, from_flex, is_ad, is_flex,
    row_shape, shaped, values_of,
};
use super::{new_in_chunks, rows_per_task};

/// Softmax along the last dimension: the fused kernels on Flex (inference) and on
/// `Autodiff<Flex>` (training, one recorded operation); burn's `softmax` on other backends.
pub(crate) fn softmax<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let last = D - 1;
    if x.dtype() != DType::F32 || x.dims()[last] == 0 {
        return activation::softmax(x, last);
    }
    if is_ad::<B>() {
        return from_ad(recorded(ad_primitive(x)));
    }
    if is_flex::<B>() {
        return from_flex(inference(cast(float_primitive(x))));
    }
    activation::softmax(x, last)
}

/// burn-flex's fused softmax: per row its maximum `m`, then `e = exp(x − m)` and their sum
/// in order, then each `e` times `1 / sum`.
fn inference(x: FlexTensor) -> FlexTensor {
    let x = contiguous(x);
    let (len, total) = row_shape(&x);
    let src = values_of(&x, total);
    shaped(shifted_exps(src, len, total, normalize), &x)
}

/// [`inference`]'s softmax of one row, in place.
pub(super) fn softmax_row(row: &mut [f32]) {
    shifted_exp_row(row);
    normalize(row);
}

/// `exp(x − m)` of every value `x` of `row` (`m` its maximum), in place.
pub(super) fn shifted_exp_row(row: &mut [f32]) {
    let m = row_max(row);
    shifted_exp(row, m);
}

/// Each `e` of a row of `exp(x − m)` times `1 / sum` (the row's sum in order).
fn normalize(row: &mut [f32]) {
    let inv = 1.0f32 / row.iter().fold(0.0f32, |sum, &e| sum + e);
    for e in row {
        *e *= inv;
    }
}

/// `exp(x − m)` of every value `x` of `row`, in place.
fn shifted_exp(row: &mut [f32], m: f32) {
    for e in row.iter_mut() {
        *e -= m;
    }
    exp_in_place(row);
}

/// `exp(x − m)` of every row of `len` values of `x` (`m` the row's maximum), `total` values
/// in all, each row passed to `finish` once written, tasks of whole rows spread over all cores.
fn shifted_exps(
    x: &[f32],
    len: usize,
    total: usize,
    finish: impl Fn(&mut [f32]) + Sync,
) -> Vec<f32> {
    new_in_chunks(total, rows_per_task(len) * len, |first, out| {
        let x = &x[first..first + out.len()];
        for (out, x) in out.chunks_exact_mut(len).zip(x.chunks_exact(len)) {
            out.copy_from_slice(x);
            shifted_exp(out, row_max(x));
            finish(out);
        }
    })
}

/// The largest value of a row (`-inf` for an empty one); exact in any order.
fn row_max(x: &[f32]) -> f32 {
    x.iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// Softmax recorded as one operation of the training graph.
fn recorded(x: AdTensor) -> AdTensor {
    match Softmax
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

/// burn's decomposed softmax: `e = exp(x − max)`, the row sums `s` of `e` (burn's own
/// `sum_dim`, whose order this does not repeat) and `e / s`; returns the softmax, `e` and `s`.
fn forward(x: FlexTensor) -> (FlexTensor, FlexTensor, Vec<f32>) {
    let x = contiguous(x);
    let (len, total) = row_shape(&x);
    let src = values_of(&x, total);
    let exps = shaped(shifted_exps(src, len, total, |_| {}), &x);
    let e = values_of(&exps, total);
    let s = new_in_chunks(total / len, rows_per_task(len), |first, out| {
        out.copy_from_slice(&sum_rows(&exps, len, first, out.len()));
    });
    let out = new_in_chunks(total, rows_per_task(len) * len, |first, out| {
        let rows = first / len..(first + out.len()) / len;
        divide_rows(&e[first..first + out.len()], &s[rows], len, out);
    });
    (shaped(out, &x), exps, s)
}

/// `e / s` for rows of `len` shifted `exp`s `e` and their sums `s` (one per row), into `out`,
/// on the calling core: the softmax of burn's decomposed graph.
pub(super) fn divide_rows(e: &[f32], s: &[f32], len: usize, out: &mut [f32]) {
    for ((out, e), &s) in out.chunks_exact_mut(len).zip(e.chunks_exact(len)).zip(s) {
        for (o, &e) in out.iter_mut().zip(e) {
            *o = e / s;
        }
    }
}

/// burn's sums (its own `sum_dim` over the last dimension, on the calling core) of rows
/// `first..first + rows` of the contiguous `t`, read in place as rows of `len` values.
pub(super) fn sum_rows(t: &FlexTensor, len: usize, first: usize, rows: usize) -> Vec<f32> {
    let total = t.layout().num_elements();
    let view = t
        .reshape(Shape::new([total / len, len]))
        .narrow(0, first, rows);
    let sums = contiguous(Flex::float_sum_dim(view, 1));
    values_of(&sums, rows).to_vec()
}

/// The gradient reaching the softmax's input, for rows of `len` values whose output gradients
/// are `g`, shifted `exp`s `e` and row sums `s` (one per row), into `out`, on the calling core.
/// It is the gradient autodiff derives through burn's graph, step for step: the division
/// gives `g / s`… as `g · (1/s)` to `e` and `g · (−e / s²)` to `s`, whose row sum (then that
/// sum's sum over its single column, as `sum_dim`'s backward computes it) reaches every `e` of
/// the row; `exp`'s backward multiplies their sum by `e`.
pub(super) fn backward_rows(g: &[f32], e: &[f32], s: &[f32], len: usize, out: &mut [f32]) {
    let rows = s.len();
    let mut to_sums = vec![0.0f32; rows * len];
    for (row, to_sums) in to_sums.chunks_exact_mut(len).enumerate() {
        let span = row * len..(row + 1) * len;
        let s2 = s[row] * s[row];
        for ((o, &g), &e) in to_sums.iter_mut().zip(&g[span.clone()]).zip(&e[span]) {
            *o = g * (-e / s2);
        }
    }
    let to_sums = FlexTensor::from_data(TensorData::new(to_sums, [rows, len]));
    let to_sums = Flex::float_sum_dim(to_sums, 1);
    let from_sums = contiguous(Flex::float_sum_dim(to_sums, 1));
    let b = values_of(&from_sums, rows);
    for (row, out) in out.chunks_exact_mut(len).enumerate() {
        let span = row * len..(row + 1) * len;
        let r = 1.0f32 / s[row];
        for ((o, &g), &e) in out.iter_mut().zip(&g[span.clone()]).zip(&e[span]) {
            *o = (g * r + b[row]) * e;
        }
    }
}

#[derive(Debug)]
struct Softmax;

impl Backward<Flex, 1> for Softmax {
    /// `e = exp(x − max)` and its row sums `s`.
    type State = (FlexTensor, Vec<f32>);

    /// [`backward_rows`] over chunks of whole rows on all cores.
    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (exps, sums) = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            let grad = contiguous(grad);
            let (len, total) = row_shape(&exps);
            let g = values_of(&grad, total);
            let e = values_of(&exps, total);
            let out = new_in_chunks(total, rows_per_task(len) * len, |first, out| {
                let at = first..first + out.len();
                let s = &sums[first / len..(first + out.len()) / len];
                backward_rows(&g[at.clone()], &e[at], s, len, out);
            });
            shaped(out, &exps)
        });
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::activation;
    use burn::tensor::{Distribution, Tensor, TensorData};

    use super::super::bits_differ;
    use super::softmax;

    type Ad = Autodiff<Flex>;

    /// Attention scores of `[b, h, s, s]` with a causal bias of −10⁹ above the diagonal, a
    /// padding key masked in every row of the first batch row, and a query whose keys are all
    /// masked (finite, so burn's softmax spreads it evenly). Unmasked keys are pushed down by
    /// up to 130, so shifted scores also fall where `exp` is subnormal and around the cut-off.
    fn scores(s: usize) -> Tensor<Flex, 4> {
        let device = Default::default();
        let raw = Tensor::<Flex, 4>::random([2, 3, s, s], Distribution::Normal(0.0, 3.0), &device);
        let mut bias = vec![0.0f32; 2 * s * s];
        for b in 0..2 {
            for i in 0..s {
                for j in 0..s {
                    let masked = j > i || (b == 0 && j == 1) || (b == 1 && i == 2);
                    bias[(b * s + i) * s + j] = if masked {
                        -1.0e9
                    } else {
                        -(((i * 7 + j * 3) % 11) as f32) * 13.0
                    };
                }
            }
        }
        let bias = Tensor::<Flex, 4>::from_data(TensorData::new(bias, [2, 1, s, s]), &device);
        raw + bias
    }

    /// Inference: every value equals burn-flex's fused softmax bit for bit, for rows of odd
    /// and vector-multiple lengths.
    #[test]
    fn equals_burns_fused_softmax_bit_for_bit() {
        for s in [7, 64] {
            let x = scores(s);
            let (differ, n) = bits_differ(softmax(x.clone()), activation::softmax(x, 3));
            assert_eq!(differ, 0, "{differ} of {n} values differ at s = {s}");
        }
    }

    /// Training: the softmax and the gradient reaching its input equal burn's decomposed graph
    /// and autodiff's gradients bit for bit.
    #[test]
    fn equals_burns_graph_and_gradient_bit_for_bit() {
        let device = Default::default();
        for s in [7, 64] {
            let x0 = scores(s);
            let w = Tensor::<Flex, 4>::random(x0.dims(), Distribution::Normal(0.0, 1.0), &device);
            let run = |ours: bool| {
                let x = Tensor::<Ad, 4>::from_inner(x0.clone()).require_grad();
                let y = if ours {
                    softmax(x.clone())
                } else {
                    activation::softmax(x.clone(), 3)
                };
                let loss = (y.clone() * Tensor::from_inner(w.clone())).sum();
                let grads = loss.backward();
                (y.inner(), x.grad(&grads).expect("x is tracked"))
            };
            let ((y_ours, g_ours), (y_burn, g_burn)) = (run(true), run(false));
            for (what, ours, burn) in [("softmax", y_ours, y_burn), ("gradient", g_ours, g_burn)] {
                let (differ, n) = bits_differ(ours, burn);
                assert_eq!(differ, 0, "{what}: {differ} of {n} differ at s = {s}");
            }
        }
    }
}
