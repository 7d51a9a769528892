//! RMSNorm (before every attention and feed-forward block of the decoder, and before its
//! output head: every forward pass and training step of the paper's §3 pipeline) in one pass
//! over all cores on the Flex backend. burn computes `x / sqrt(mean(x²) + ε) · γ` as six
//! operations on one core, and in training differentiates each: about fifteen passes over the
//! activations per norm, each allocating its output, and a `[rows, d]` tensor of ones for the
//! mean's gradient.
//!
//! Values and gradients are bit-identical to burn's graph. The forward pass takes each row's
//! sum of squares through burn's own `sum_dim` (per chunk of rows), divides it by `d`, adds
//! `ε` (as `f32`), takes the square root, and divides and multiplies in that order. The
//! backward pass repeats autodiff's steps: `γ`'s gradient is the sum over rows of `g·u`
//! (`u = x / r`, burn's `sum_dim` over the leading dimensions in turn), and `x` gets three
//! contributions, the division's `g·γ · (1/r)` and twice (the square is `x · x`) the mean's
//! `x · (1/d · Σ)`, where `Σ` is the row sum of `g·γ · (−x / r²)` times the square root's
//! `s^−½ / 2` (`s = mean + ε`). burn adds them, in that order, to what `x` already received
//! from operations later in the graph (a residual connection's sum); the recorded operation
//! takes that gradient out and adds its three terms to it in the same order.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::nn::RmsNorm;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{DType, Shape, Tensor, TensorData};
use std::sync::Arc;

use super::flex::{
    AdTensor, ad_primitive, cast, contiguous, float_primitive, from_ad, from_flex, grad_probe,
    is_ad, is_flex, shaped, take_grad, values_of,
};
use super::softmax::sum_rows;
use super::{new_in_chunks, new_per_row, rows_per_task};

/// `norm` applied to `x` along its last dimension: one pass over all cores on Flex, one
/// recorded operation on `Autodiff<Flex>`, burn's module elsewhere (and for other dtypes).
pub(crate) fn rms_norm<B: Backend, const D: usize>(
    norm: &RmsNorm<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let gamma = norm.gamma.val();
    let d = x.dims()[D - 1];
    let fits = D >= 2
        && d > 0
        && gamma.dims() == [d]
        && [x.dtype(), gamma.dtype()] == [DType::F32; 2]
        && (is_flex::<B>() || is_ad::<B>());
    if !fits {
        return norm.forward(x);
    }
    let eps = norm.epsilon as f32;
    if is_flex::<B>() {
        let [x, gamma]: [FlexTensor; 2] = [cast(float_primitive(x)), cast(float_primitive(gamma))];
        return from_flex(forward(&contiguous(x), &contiguous(gamma), eps).0);
    }
    from_ad(recorded(ad_primitive(x), ad_primitive(gamma), eps))
}

/// The norm recorded as one operation of the training graph.
fn recorded(x: AdTensor, gamma: AdTensor, eps: f32) -> AdTensor {
    let xv = contiguous(x.primitive.clone());
    let gv = contiguous(gamma.primitive.clone());
    match RmsNormOp
        .prepare::<NoCheckpointing>([x.node.clone(), gamma.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (out, sums) = forward(&xv, &gv, eps);
            let saved = Saved {
                x_probe: grad_probe(&x),
                x: xv,
                gamma: gv,
                sums,
            };
            prep.finish(Arc::new(saved), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&xv, &gv, eps).0),
    }
}

/// Per row: `s = mean(x²) + ε` and `r = sqrt(s)`.
#[derive(Debug)]
struct RowSums {
    s: Vec<f32>,
    r: Vec<f32>,
}

/// `(x / r) · γ` for the contiguous `x` (rows of `d = γ.len()` values) with each row's
/// [`RowSums`].
fn forward(x: &FlexTensor, gamma: &FlexTensor, eps: f32) -> (FlexTensor, RowSums) {
    let d = gamma.layout().num_elements();
    let total = x.layout().num_elements();
    let (xv, g) = (values_of(x, total), values_of(gamma, d));
    let rows = total / d;
    let s = new_in_chunks(rows, rows_per_task(d), |first, s| {
        let squares: Vec<f32> = xv[first * d..(first + s.len()) * d]
            .iter()
            .map(|&v| v * v)
            .collect();
        for (s, sum) in s.iter_mut().zip(row_sums(squares, d)) {
            *s = sum / d as f32 + eps;
        }
    });
    let r: Vec<f32> = s.iter().map(|s| s.sqrt()).collect();
    let out = new_per_row(total, d, |row, out| {
        let (x, r) = (&xv[row * d..(row + 1) * d], r[row]);
        for ((o, &x), &g) in out.iter_mut().zip(x).zip(g) {
            *o = (x / r) * g;
        }
    });
    (shaped(out, x), RowSums { s, r })
}

/// burn's sums of the rows of `len` values of `values` ([`sum_rows`], on the calling core).
fn row_sums(values: Vec<f32>, len: usize) -> Vec<f32> {
    let rows = values.len() / len;
    sum_rows(
        &FlexTensor::from_data(TensorData::new(values, [rows, len])),
        len,
        0,
        rows,
    )
}

/// burn's per-row tensor operations on a `[rows, 1]` column of `values`.
fn column(values: &[f32], op: impl FnOnce(FlexTensor) -> FlexTensor) -> Vec<f32> {
    let rows = values.len();
    let t = op(FlexTensor::from_data(TensorData::new(
        values.to_vec(),
        [rows, 1],
    )));
    values_of(&contiguous(t), rows).to_vec()
}

/// What the backward pass reads: the input (and a probe for its gradient), `γ` and each row's
/// sums.
#[derive(Debug)]
struct Saved {
    x_probe: AdTensor,
    x: FlexTensor,
    gamma: FlexTensor,
    sums: RowSums,
}

#[derive(Debug)]
struct RmsNormOp;

impl Backward<Flex, 2> for RmsNormOp {
    type State = Arc<Saved>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let saved = ops.state;
        let Saved {
            x_probe,
            x,
            gamma,
            sums,
        } = &*saved;
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let [x_node, gamma_node] = ops.parents;
        let d = gamma.layout().num_elements();
        let total = x.layout().num_elements();
        let (gy, xv, g) = (
            values_of(&grad, total),
            values_of(x, total),
            values_of(gamma, d),
        );
        let r = &sums.r;
        // The division's `1/r` and `r²`, the square root's `s^−½ / 2`, as burn computes them.
        let recip = column(r, Flex::float_recip);
        let r2 = column(r, |t| Flex::float_powi_scalar(t, 2.into()));
        let half_rsqrt = column(&sums.s, |t| {
            Flex::float_div_scalar(Flex::float_powf_scalar(t, (-0.5).into()), 2f32.into())
        });
        // The mean's gradient: `1/d` (an `f64` scalar, as `f32`) times the incoming column.
        let inv_d = (1.0f64 / d as f64) as f32;

        if let Some(node) = gamma_node {
            let gu = new_per_row(total, d, |row, out| {
                let at = row * d..(row + 1) * d;
                let r = r[row];
                for ((o, &gy), &x) in out.iter_mut().zip(&gy[at.clone()]).zip(&xv[at]) {
                    *o = gy * (x / r);
                }
            });
            // Summed over every leading dimension whose size is not 1, in order, as autodiff
            // reduces a broadcast operand's gradient.
            let shape = x.layout().shape().clone();
            let mut t = shaped(gu, x);
            for dim in 0..shape.num_dims() - 1 {
                if shape[dim] != 1 {
                    t = Flex::float_sum_dim(t, dim);
                }
            }
            let t = contiguous(t).reshape(Shape::new([d]));
            grads.register::<Flex>(node.id, t);
        }

        let Some(node) = x_node else { return };
        // What `x` already received, taken out so the three terms are added to it in burn's
        // order.
        let earlier = take_grad(grads, x_probe).map(contiguous);
        let earlier = earlier.as_ref().map(|t| values_of(t, total));
        let out = new_in_chunks(total, rows_per_task(d) * d, |first, out| {
            let at = first..first + out.len();
            let rows = first / d..(first + out.len()) / d;
            let (gy, xs) = (&gy[at.clone()], &xv[at.clone()]);
            // Per row: the division's `r` gradient, the row sum of `g·γ · (−x / r²)`.
            let mut to_r = vec![0.0f32; out.len()];
            for (row, ((t, gy), x)) in to_r
                .chunks_exact_mut(d)
                .zip(gy.chunks_exact(d))
                .zip(xs.chunks_exact(d))
                .enumerate()
            {
                let r2 = r2[rows.start + row];
                for (((t, &gy), &x), &g) in t.iter_mut().zip(gy).zip(x).zip(g) {
                    *t = (gy * g) * (-x / r2);
                }
            }
            let to_s: Vec<f32> = row_sums(to_r, d)
                .iter()
                .zip(&half_rsqrt[rows.clone()])
                .map(|(t, h)| t * h)
                .collect();
            // The mean's backward sums its single column first.
            let to_mean = column(&to_s, |t| Flex::float_sum_dim(t, 1));
            for (row, (out, (gy, x))) in out
                .chunks_exact_mut(d)
                .zip(gy.chunks_exact(d).zip(xs.chunks_exact(d)))
                .enumerate()
            {
                let i = rows.start + row;
                let (recip, b) = (recip[i], inv_d * to_mean[row]);
                let before = earlier.map(|e| &e[first + row * d..first + (row + 1) * d]);
                for (j, (((o, &gy), &x), &g)) in out.iter_mut().zip(gy).zip(x).zip(g).enumerate() {
                    let a = (gy * g) * recip;
                    let c = b * x;
                    let a = match before {
                        Some(e) => a + e[j],
                        None => a,
                    };
                    *o = (a + c) + c;
                }
            }
        });
        grads.register::<Flex>(node.id, shaped(out, x));
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::module::Param;
    use burn::nn::RmsNorm;
    use burn::tensor::{Distribution, Tensor};

    use super::super::bits_differ;
    use super::rms_norm;

    type Ad = Autodiff<Flex>;

    fn norm<B: burn::tensor::backend::Backend>(gamma: &Tensor<Flex, 1>, eps: f64) -> RmsNorm<B> {
        RmsNorm {
            gamma: Param::from_tensor(Tensor::<B, 1>::from_data(
                gamma.to_data(),
                &Default::default(),
            )),
            epsilon: eps,
        }
    }

    /// Inference: the fused pass equals burn's module bit for bit.
    #[test]
    fn equals_burns_norm_bit_for_bit() {
        let device = Default::default();
        for (shape, eps) in [
            ([2, 37, 96], 1e-5),
            ([1, 256, 576], 1e-6),
            ([16, 1, 64], 1e-5),
        ] {
            let x = Tensor::<Flex, 3>::random(shape, Distribution::Normal(0.0, 1.5), &device);
            let gamma =
                Tensor::<Flex, 1>::random([shape[2]], Distribution::Normal(1.0, 0.2), &device);
            let n = norm::<Flex>(&gamma, eps);
            let (differ, len) = bits_differ(rms_norm(&n, x.clone()), n.forward(x));
            assert_eq!(differ, 0, "{differ} of {len} values differ at {shape:?}");
        }
    }

    /// Training: values and the gradients of `x` and `γ` equal burn's graph bit for bit, with
    /// `x` also feeding a residual connection (whose gradient reaches `x` first), alone, and
    /// with `γ` frozen.
    #[test]
    fn equals_burns_graph_and_gradients_bit_for_bit() {
        let device = Default::default();
        for (shape, eps) in [
            ([1, 256, 576], 1e-5),
            ([3, 40, 96], 1e-6),
            ([2, 1, 64], 1e-5),
        ] {
            let normal = Distribution::Normal(0.0, 1.0);
            let x0 = Tensor::<Flex, 3>::random(shape, normal, &device);
            let w0 = Tensor::<Flex, 3>::random(shape, normal, &device);
            let gamma0 =
                Tensor::<Flex, 1>::random([shape[2]], Distribution::Normal(1.0, 0.2), &device);
            for (residual, frozen) in [(true, false), (false, false), (true, true)] {
                let run = |ours: bool| {
                    let x = Tensor::<Ad, 3>::from_inner(x0.clone()).require_grad();
                    let mut n = norm::<Ad>(&gamma0, eps);
                    if frozen {
                        n.gamma = n.gamma.set_require_grad(false);
                    }
                    // Something between the input and its norm, so `x` is not a leaf.
                    let h = x.clone() * 1.5;
                    let y = if ours {
                        rms_norm(&n, h.clone())
                    } else {
                        n.forward(h.clone())
                    };
                    let y = y * Tensor::from_inner(w0.clone());
                    let out = if residual { h + y } else { y };
                    let grads = (out.clone() * out.clone()).sum().backward();
                    (out.inner(), x.grad(&grads), n.gamma.val().grad(&grads))
                };
                let ((out, gx, gg), (want, wx, wg)) = (run(true), run(false));
                let (differ, len) = bits_differ(out, want);
                assert_eq!(differ, 0, "output: {differ} of {len} differ at {shape:?}");
                let (differ, len) = bits_differ(gx.unwrap(), wx.unwrap());
                assert_eq!(
                    differ, 0,
                    "gradient of x: {differ} of {len} differ at {shape:?}, residual {residual}"
                );
                match (gg, wg) {
                    (Some(got), Some(want)) => {
                        let (differ, len) = bits_differ(got, want);
                        assert_eq!(
                            differ, 0,
                            "gradient of γ: {differ} of {len} differ at {shape:?}"
                        );
                    }
                    (None, None) => assert!(frozen, "γ lost its gradient"),
                    _ => panic!("gradient of γ: present in one graph only"),
                }
            }
        }
    }
}
