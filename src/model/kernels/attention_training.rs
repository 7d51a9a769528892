//! Grouped-query attention in a training step (every trainer of the paper's §3 pipeline:
//! pretraining, SFT, the preference model, PPO's policy and value model) as one recorded
//! operation on `Autodiff<Flex>`, run per block of rows over all cores in both passes. burn
//! records five operations over whole score tensors (the product with `kᵀ`, the scale, the
//! bias, the softmax, the product with `v`), each writing a `[b, kv, g·s, span]` tensor, with
//! the scale, the bias, the softmax's row sums and their gradients on one core.
//!
//! Forward: one task per block of a matrix's query rows computes `q·kᵀ`, the scale, the bias,
//! the softmax and its product with `v`. Backward, in two phases: per block of query rows the
//! gradient of the probabilities (`grad · vᵀ`), the softmax's gradient, the scale, and the
//! gradient of `q` (`· k`); then per block of key rows the gradients of `k` and `v` (products
//! of the transposed score gradients and probabilities with `q` and `grad`).
//!
//! Values and gradients are bit-identical to burn's graph. Every step repeats burn's
//! arithmetic (the softmax's as [`super::softmax`] records it, its row sums through burn's
//! own `sum_dim` per block), and every product is a gemm call that sums each output over `k`
//! in the same chunks as burn's call for the whole matrix: blocks are cut only where neither
//! falls in one of gemm's special paths (see [`super::attention`]); other shapes keep burn's
//! operations. The gradient of `k` is computed as `(gradᵀ · q)` block by block where burn
//! computes its transpose `qᵀ · grad`; each output is the same sequence of fused
//! multiply-adds of the same pairs.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;
use std::sync::Arc;

use super::attention::{HORIZONTAL_OUTPUTS, ROWS_PER_TASK, SMALL_K, SMALL_SIDE};
use super::flex::{AdTensor, ad_primitive, contiguous, from_ad, is_ad, values_of};
use super::softmax::{backward_rows, divide_rows, shifted_exp_row, sum_rows};
use super::{Out, outputs, product_on_core};

/// `softmax(q·kᵀ · scale + bias) · v` for `q` `[b, kv, n, hd]` (a KV head's `n = g·s` query
/// rows, grouped), `k` and `v` `[b, kv, span, hd]` and a `bias` `[b, kv, n, span]` that needs
/// no gradient: `[b, kv, n, hd]`, recorded as one operation. `None` when `B` is not
/// `Autodiff<Flex>`, a tensor does not hold `f32`, the shapes disagree, the bias is tracked,
/// or the shape is one whose blocks would not give burn's values; the caller then runs
/// burn's operations.
pub(crate) fn training_attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    bias: &Tensor<B, 4>,
    scale: f64,
) -> Option<Tensor<B, 4>> {
    let [b, kv, n, hd] = q.dims();
    let span = k.dims()[2];
    let fits = is_ad::<B>()
        && k.dims() == [b, kv, span, hd]
        && v.dims() == k.dims()
        && bias.dims() == [b, kv, n, span]
        && !bias.is_require_grad()
        && [q.dtype(), k.dtype(), v.dtype(), bias.dtype()] == [DType::F32; 4];
    if !fits || b * kv * n * hd * span == 0 {
        return None;
    }
    let plan = Plan::new(Shape {
        matrices: b * kv,
        n,
        span,
        hd,
    })?;
    let bias = contiguous(ad_primitive(bias.clone()).primitive);
    let [q, k, v] = [q, k, v].map(|t| ad_primitive(t.clone()));
    Some(from_ad(record(plan, [q, k, v], bias, scale as f32)))
}

/// The sizes of one pass: `matrices` (batch rows × KV heads) score matrices of `n` query rows
/// and `span` keys, heads of `hd` values.
#[derive(Clone, Copy, Debug)]
struct Shape {
    matrices: usize,
    n: usize,
    span: usize,
    hd: usize,
}

/// The blocks of a pass: row counts cutting the `n` query rows and the `span` key rows of
/// every matrix.
#[derive(Clone, Debug)]
struct Plan {
    shape: Shape,
    queries: Vec<usize>,
    keys: Vec<usize>,
}

/// `len` rows cut into blocks of [`ROWS_PER_TASK`] to twice that (whole below it).
fn cut(len: usize) -> Vec<usize> {
    let cuts = (len / ROWS_PER_TASK).max(1);
    (0..cuts)
        .map(|c| (c + 1) * len / cuts - c * len / cuts)
        .collect()
}

/// Whether gemm sums a block of `rows` of an `[m, k] · [k, n]` product over `k` in the same
/// chunks as the whole product (`whole` rows): both take its general path (more than 256
/// outputs, at least two rows and columns, more than two products per output), and the
/// block is a small product (at most 64 × 64 outputs, where `k` is cut at 512) exactly when
/// the whole is, unless `k` fits one chunk either way.
fn sums_as_whole(rows: usize, whole: usize, n: usize, k: usize) -> bool {
    let small = |m: usize| m <= SMALL_SIDE && n <= SMALL_SIDE;
    rows >= 2
        && n >= 2
        && k > 2
        && rows * n > HORIZONTAL_OUTPUTS
        && (k <= SMALL_K || small(rows) == small(whole))
}

impl Plan {
    /// `None` when a block of some product would not sum as the whole matrix does.
    fn new(shape: Shape) -> Option<Self> {
        let Shape { n, span, hd, .. } = shape;
        let (queries, keys) = (cut(n), cut(span));
        // Query blocks: `q·kᵀ` and `grad·vᵀ` ([rows, span], k = hd), `p·v` and `ds·k`
        // ([rows, hd], k = span). Key blocks: the gradients of `k` and `v` ([rows, hd], k = n).
        let fine = queries
            .iter()
            .all(|&r| sums_as_whole(r, n, span, hd) && sums_as_whole(r, n, hd, span))
            && keys.iter().all(|&r| sums_as_whole(r, span, hd, n));
        fine.then_some(Self {
            shape,
            queries,
            keys,
        })
    }

    /// `(matrix, first row, rows)` of every block of `sizes` in every matrix.
    fn blocks(&self, sizes: &[usize]) -> Vec<(usize, usize, usize)> {
        (0..self.shape.matrices)
            .flat_map(|m| {
                sizes.iter().scan(0, move |first, &rows| {
                    *first += rows;
                    Some((m, *first - rows, rows))
                })
            })
            .collect()
    }
}

/// What the backward pass keeps: the inputs, the probabilities (`[b, kv, n, span]`), and per
/// query block the shifted `exp`s and their row sums.
#[derive(Debug)]
struct Saved {
    plan: Plan,
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    probs: Vec<f32>,
    exps: Vec<(FlexTensor, Vec<f32>)>,
    scale: f32,
}

fn record(plan: Plan, [q, k, v]: [AdTensor; 3], bias: FlexTensor, scale: f32) -> AdTensor {
    let nodes = [q.node.clone(), k.node.clone(), v.node.clone()];
    let [q, k, v] = [q, k, v].map(|t| contiguous(t.primitive));
    match Attention
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (out, probs, exps) = forward(&plan, [&q, &k, &v], &bias, scale);
            let saved = Saved {
                plan,
                q,
                k,
                v,
                probs,
                exps,
                scale,
            };
            prep.finish(Arc::new(saved), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&plan, [&q, &k, &v], &bias, scale).0),
    }
}

/// The values of a contiguous tensor.
fn all(t: &FlexTensor) -> &[f32] {
    values_of(t, t.layout().num_elements())
}

/// `dst = lhs · rhs` over `[m, n, k]` on the calling core, `dst` at row step `n` and the
/// operands at their `(row, column)` steps.
///
/// # Safety
/// As [`product_on_core`]'s.
unsafe fn product(
    [m, n, k]: [usize; 3],
    dst: *mut f32,
    (lhs, lhs_steps): (*const f32, [usize; 2]),
    (rhs, rhs_steps): (*const f32, [usize; 2]),
) {
    let [lr, lc] = lhs_steps.map(|x| x as isize);
    let [rr, rc] = rhs_steps.map(|x| x as isize);
    // SAFETY: the caller's contract.
    unsafe { product_on_core([m, n, k], (dst, n as isize), (lhs, lr, lc), (rhs, rr, rc)) }
}

/// The forward pass: the output `[b, kv, n, hd]`, the probabilities and, per query block, the
/// shifted `exp`s and their row sums.
#[allow(clippy::type_complexity)]
fn forward(
    plan: &Plan,
    [q, k, v]: [&FlexTensor; 3],
    bias: &FlexTensor,
    scale: f32,
) -> (FlexTensor, Vec<f32>, Vec<(FlexTensor, Vec<f32>)>) {
    let Shape {
        matrices,
        n,
        span,
        hd,
    } = plan.shape;
    let shape = q.layout().shape().clone();
    let (q, k, v, bias) = (all(q), all(k), all(v), all(bias));
    let (bufs, dsts) = outputs(matrices * n, [hd, span].into_iter());
    let (out, probs) = (&dsts[0], &dsts[1]);
    let task = |&(m, first, rows): &(usize, usize, usize)| {
        let row = m * n + first;
        let mut e = vec![0.0f32; rows * span];
        // SAFETY: the block's `rows` query rows and the matrix's `span` keys (read as `kᵀ`)
        // lie in `q` and `k`; `e` holds `rows × span` values.
        unsafe {
            product(
                [rows, span, hd],
                e.as_mut_ptr(),
                (q[row * hd..].as_ptr(), [hd, 1]),
                (k[m * span * hd..].as_ptr(), [1, hd]),
            );
        }
        let bias = &bias[row * span..(row + rows) * span];
        for (x, &c) in e.iter_mut().zip(bias) {
            *x = *x * scale + c;
        }
        for x in e.chunks_exact_mut(span) {
            shifted_exp_row(x);
        }
        let exps = FlexTensor::from_data(TensorData::new(e, [rows, span]));
        let sums = sum_rows(&exps, span, 0, rows);
        let e = values_of(&exps, rows * span);
        // SAFETY: the block's rows of the probabilities are written by this task alone.
        let p = unsafe { std::slice::from_raw_parts_mut(probs.at(row * span), rows * span) };
        divide_rows(e, &sums, span, p);
        // SAFETY: the block's output rows are written by this task alone; `p` holds its
        // probabilities and `v` the matrix's values.
        unsafe {
            product(
                [rows, hd, span],
                out.at(row * hd),
                (p.as_ptr(), [span, 1]),
                (v[m * span * hd..].as_ptr(), [hd, 1]),
            );
        }
        (exps, sums)
    };
    let exps = plan.blocks(&plan.queries).par_iter().map(task).collect();
    // SAFETY: the blocks cover every row of every matrix, and each task wrote all of its
    // rows of both outputs.
    let mut bufs = unsafe { bufs.written() };
    let probs = bufs.pop().unwrap_or_default();
    let out = bufs.pop().unwrap_or_default();
    (
        FlexTensor::from_data(TensorData::new(out, shape)),
        probs,
        exps,
    )
}

#[derive(Debug)]
struct Attention;

impl Backward<Flex, 3> for Attention {
    type State = Arc<Saved>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [q_node, k_node, v_node] = ops.parents;
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let saved = ops.state;
        let [dq, dk, dv] = saved.backward(all(&grad));
        let like = |t: &FlexTensor, values: Vec<f32>| {
            FlexTensor::from_data(TensorData::new(values, t.layout().shape().clone()))
        };
        if let Some(node) = q_node {
            grads.register::<Flex>(node.id, like(&saved.q, dq));
        }
        if let Some(node) = k_node {
            grads.register::<Flex>(node.id, like(&saved.k, dk));
        }
        if let Some(node) = v_node {
            grads.register::<Flex>(node.id, like(&saved.v, dv));
        }
    }
}

impl Saved {
    /// The gradients of `q`, `k` and `v` for the output's gradient `grad` `[b, kv, n, hd]`.
    fn backward(&self, grad: &[f32]) -> [Vec<f32>; 3] {
        let plan = &self.plan;
        let Shape {
            matrices,
            n,
            span,
            hd,
        } = plan.shape;
        let (q, k, v) = (all(&self.q), all(&self.k), all(&self.v));
        let (scores_buf, scores) = outputs(matrices * n, [span].into_iter());
        let (dq_buf, dq) = outputs(matrices * n, [hd].into_iter());
        let (scores, dq) = (&scores[0], &dq[0]);
        let blocks = plan.blocks(&plan.queries);
        blocks
            .par_iter()
            .zip(&self.exps)
            .for_each(|(&(m, first, rows), (e, sums))| {
                let row = m * n + first;
                let mut dp = vec![0.0f32; rows * span];
                // SAFETY: the block's rows of `grad`, the matrix's values (read as `vᵀ`) and
                // `dp`'s `rows × span` values.
                unsafe {
                    product(
                        [rows, span, hd],
                        dp.as_mut_ptr(),
                        (grad[row * hd..].as_ptr(), [hd, 1]),
                        (v[m * span * hd..].as_ptr(), [1, hd]),
                    );
                }
                // SAFETY: the block's rows of the score gradients are written by this task
                // alone.
                let ds =
                    unsafe { std::slice::from_raw_parts_mut(scores.at(row * span), rows * span) };
                backward_rows(&dp, values_of(e, rows * span), sums, span, ds);
                // The scale's gradient (burn's `mul_scalar`); the bias passes it unchanged.
                for x in ds.iter_mut() {
                    *x *= self.scale;
                }
                // SAFETY: the block's rows of `dq` are written by this task alone; `ds` and
                // the matrix's keys are read.
                unsafe {
                    product(
                        [rows, hd, span],
                        dq.at(row * hd),
                        (ds.as_ptr(), [span, 1]),
                        (k[m * span * hd..].as_ptr(), [hd, 1]),
                    );
                }
            });
        // SAFETY: the query blocks cover every row and wrote all of them.
        let ds = unsafe { scores_buf.written() }.pop().unwrap_or_default();
        let dq = unsafe { dq_buf.written() }.pop().unwrap_or_default();
        let (kv_buf, kv_dsts) = outputs(matrices * span, [hd, hd].into_iter());
        let (dk, dv) = (&kv_dsts[0], &kv_dsts[1]);
        let write = |dst: &Out, at: usize, rows: usize, lhs: &[f32], rhs: &[f32]| {
            // SAFETY: the block's key rows of `dst` are written by this task alone; `lhs`
            // is read transposed (`rows` columns of the matrix's `n` rows) and `rhs` holds
            // the matrix's `n` rows of `hd`.
            unsafe {
                product(
                    [rows, hd, n],
                    dst.at(at * hd),
                    (lhs.as_ptr(), [1, span]),
                    (rhs.as_ptr(), [hd, 1]),
                );
            }
        };
        plan.blocks(&plan.keys)
            .par_iter()
            .for_each(|&(m, first, rows)| {
                let scores = &ds[m * n * span + first..];
                let probs = &self.probs[m * n * span + first..];
                let at = m * span + first;
                write(dk, at, rows, scores, &q[m * n * hd..]);
                write(dv, at, rows, probs, &grad[m * n * hd..]);
            });
        // SAFETY: the key blocks cover every key row and wrote both gradients' rows.
        let mut kv = unsafe { kv_buf.written() };
        let dv = kv.pop().unwrap_or_default();
        let dk = kv.pop().unwrap_or_default();
        [dq, dk, dv]
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, Tensor, TensorData, activation};

    use super::super::bits_differ;
    use super::training_attention;

    type Ad = Autodiff<Flex>;

    /// A causal bias over `s` positions with a padding key (slot 1 of batch row 0) and a
    /// query that sees no key (position 2 of batch row 1, whose softmax burn spreads evenly),
    /// laid out as the decoder lays it out: `[b, kv, g·s, s]`.
    fn bias(b: usize, kv: usize, g: usize, s: usize) -> Tensor<Flex, 4> {
        let mut data = vec![0.0f32; b * s * s];
        for bi in 0..b {
            for i in 0..s {
                for j in 0..s {
                    if j > i || (bi == 0 && j == 1) || (bi == 1 && i == 2) {
                        data[(bi * s + i) * s + j] = -1.0e9;
                    }
                }
            }
        }
        Tensor::<Flex, 4>::from_data(TensorData::new(data, [b, 1, s, s]), &Default::default())
            .repeat_dim(1, kv * g)
            .reshape([b, kv, g * s, s])
    }

    /// burn's graph for the same attention, as the decoder wrote it before this operation.
    fn burns(
        q: Tensor<Ad, 4>,
        k: Tensor<Ad, 4>,
        v: Tensor<Ad, 4>,
        bias: Tensor<Ad, 4>,
        scale: f64,
    ) -> Tensor<Ad, 4> {
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale) + bias;
        activation::softmax(scores, 3).matmul(v)
    }

    /// The output and the gradients of `q`, `k` and `v` equal burn's graph bit for bit, for
    /// a world model's heads (batch 2, 256 positions), SmolLM2-135M's (three KV heads of three
    /// query heads), a short batch in one block per matrix, and 300 positions (blocks of 150
    /// rows); with `k` frozen, it gets no gradient and the others are unchanged.
    #[test]
    fn equals_burns_graph_and_gradients_bit_for_bit() {
        let device = Default::default();
        let normal = Distribution::Normal(0.0, 1.0);
        for (b, kv, g, s, hd) in [
            (2, 2, 2, 256, 32),
            (1, 3, 3, 256, 64),
            (3, 2, 2, 40, 16),
            (1, 1, 2, 300, 24),
        ] {
            let n = g * s;
            let scale = 1.0 / (hd as f64).sqrt();
            let q0 = Tensor::<Flex, 4>::random([b, kv, n, hd], normal, &device);
            let k0 = Tensor::<Flex, 4>::random([b, kv, s, hd], normal, &device);
            let v0 = Tensor::<Flex, 4>::random([b, kv, s, hd], normal, &device);
            let w0 = Tensor::<Flex, 4>::random([b, kv, n, hd], normal, &device);
            let bias0 = bias(b, kv, g, s);
            for k_frozen in [false, true] {
                let run = |ours: bool| {
                    let [q, k, v] = [&q0, &k0, &v0].map(|t| Tensor::<Ad, 4>::from_inner(t.clone()));
                    let (q, v) = (q.require_grad(), v.require_grad());
                    let k = if k_frozen { k } else { k.require_grad() };
                    let bias = Tensor::<Ad, 4>::from_inner(bias0.clone());
                    let out = if ours {
                        training_attention(&q, &k, &v, &bias, scale).expect("a planned shape")
                    } else {
                        burns(q.clone(), k.clone(), v.clone(), bias, scale)
                    };
                    let grads = (out.clone() * Tensor::from_inner(w0.clone()))
                        .sum()
                        .backward();
                    (
                        out.inner(),
                        [q.grad(&grads), k.grad(&grads), v.grad(&grads)],
                    )
                };
                let ((out, ours), (want, burns)) = (run(true), run(false));
                let (differ, len) = bits_differ(out, want);
                assert_eq!(differ, 0, "output: {differ} of {len} differ at s = {s}");
                for (what, (got, want)) in
                    ["q", "k", "v"].into_iter().zip(ours.into_iter().zip(burns))
                {
                    match (got, want) {
                        (Some(got), Some(want)) => {
                            let (differ, len) = bits_differ(got, want);
                            assert_eq!(
                                differ, 0,
                                "gradient of {what}: {differ} of {len} differ at s = {s}"
                            );
                        }
                        (None, None) => {
                            assert!(what == "k" && k_frozen, "{what} lost its gradient")
                        }
                        _ => panic!("gradient of {what}: present in one graph only"),
                    }
                }
            }
        }
    }

    /// Inference tensors, and shapes whose blocks would fall in gemm's small-product paths
    /// (at most 256 outputs), are left to burn.
    #[test]
    fn leaves_inference_and_tiny_products_to_burn() {
        let device = Default::default();
        let x = |dims: [usize; 4]| Tensor::<Flex, 4>::random(dims, Distribution::Default, &device);
        let (q, k, bias) = (x([1, 2, 8, 16]), x([1, 2, 4, 16]), x([1, 2, 8, 4]));
        assert!(training_attention(&q, &k, &k, &bias, 0.25).is_none());
        let ad = |t: &Tensor<Flex, 4>| Tensor::<Ad, 4>::from_inner(t.clone()).require_grad();
        let fixed = |t: &Tensor<Flex, 4>| Tensor::<Ad, 4>::from_inner(t.clone());
        assert!(training_attention(&ad(&q), &ad(&k), &ad(&k), &fixed(&bias), 0.25).is_none());
        let (q, k, bias) = (x([1, 2, 80, 16]), x([1, 2, 40, 16]), x([1, 2, 80, 40]));
        let fine = training_attention(&ad(&q), &ad(&k), &ad(&k), &fixed(&bias), 0.25);
        assert!(fine.is_some());
        assert!(training_attention(&ad(&q), &ad(&k), &ad(&k), &ad(&bias), 0.25).is_none());
    }
}
