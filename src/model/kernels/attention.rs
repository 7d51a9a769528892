//! Grouped-query attention of forward passes that need no gradient (simulation, preference
//! and reward scoring, PPO's rollouts and reference log-probs, judges: the paper's §3 pipeline
//! at inference) on the Flex backend, fused per block of query rows: one task computes a
//! block's `q·kᵀ`, the scale, the bias, the softmax and the product with `v` on one core, the
//! tasks spread over all cores, and each block's output goes straight into the
//! `[b, s, heads·hd]` layout the output projection reads. burn runs the same steps one after
//! another over whole tensors, with copies between layouts on one core and batched products
//! over only (batch × KV heads) matrices.
//!
//! Values are bit-identical to burn's. Each block's products are gemm calls with the operand
//! strides burn's batched matmul passes for its matrix, and gemm sums every output over `k`
//! in the same chunks for a block as for the whole matrix, except in its special paths: a
//! product of at most 256 outputs (horizontal dot products), one of one row (matrix-vector
//! kernels), and one of at most 64 × 64 outputs (`k` cut at 512). A decoding step (one query
//! row per head) makes burn's own call per matrix; longer passes are cut into blocks of one
//! head's rows only where no block falls in a special path its whole matrix does not, and
//! other shapes keep burn's operations.

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

use super::flex::{Strided, contiguous, flex_f32, from_values, rows};
use super::softmax::softmax_row;
use super::{outputs, product_on_core};

/// Query rows one task covers at most in a pass of many positions: a head's rows are cut into
/// blocks of 128 to 255 rows (whole below 128).
pub(super) const ROWS_PER_TASK: usize = 128;
/// Passes of fewer multiply-adds than this run on the calling core (a single sequence's
/// decoding step, whose tasks finish before another core would wake).
const MIN_PARALLEL_WORK: usize = 1 << 18;
/// gemm's special paths, which sum in other chunks than its general one (see the module doc).
pub(super) const HORIZONTAL_OUTPUTS: usize = 256;
pub(super) const SMALL_SIDE: usize = 64;
pub(super) const SMALL_K: usize = 512;

/// `softmax(q·kᵀ · scale + bias) · v` for every head, as `[b, s, h·hd]` (position-major, heads
/// side by side): `q` `[b, s, h, hd]` after RoPE, `k` and `v` `[b, kv, span, hd]` (views of a
/// cache or of the projections), `bias` `[b, kv, (h/kv)·s, span]` (the grouped scores'
/// layout). `None` when `B` is not Flex, a tensor does not hold `f32`, the shapes disagree, or
/// the shape is one whose blocks would not give burn's values; the caller then runs burn's
/// operations.
pub(crate) fn attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    bias: &Tensor<B, 4>,
    scale: f64,
) -> Option<Tensor<B, 3>> {
    let [b, s, h, hd] = q.dims();
    let [kb, kv, span, khd] = k.dims();
    let fits = kb == b
        && khd == hd
        && v.dims() == k.dims()
        && kv > 0
        && h.is_multiple_of(kv)
        && bias.dims() == [b, kv, (h / kv) * s, span]
        && [q.dtype(), k.dtype(), v.dtype(), bias.dtype()] == [DType::F32; 4];
    if !fits || b * s * h * hd * span == 0 {
        return None;
    }
    let shape = Shape {
        b,
        s,
        h,
        kv,
        hd,
        span,
    };
    let [q, k, v, bias] = [flex_f32(q)?, flex_f32(k)?, flex_f32(v)?, flex_f32(bias)?];
    let blocks = shape.blocks()?;
    let (q, bias) = (contiguous(q), contiguous(bias));
    let keys = Strided::of(&k)?;
    let values = Strided::of(&v)?;
    let out = shape.run(
        &blocks,
        rows(&q, b * s * h * hd)?,
        rows(&bias, b * h * s * span)?,
        [keys, values],
        scale as f32,
    );
    Some(from_values(out, [b, s, h * hd]))
}

/// The sizes of one attention pass.
#[derive(Clone, Copy, Debug)]
struct Shape {
    b: usize,
    s: usize,
    h: usize,
    kv: usize,
    hd: usize,
    span: usize,
}

/// Rows of one task: `rows` consecutive rows of the grouped score matrix of batch row `b` and
/// KV head `kv`, starting at row `first` (`gi · s + si` for query head `kv·g + gi` at
/// position `si`), whose query rows and output rows lie `stride` apart starting at `at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    b: usize,
    kv: usize,
    first: usize,
    rows: usize,
    at: usize,
    stride: usize,
}

impl Shape {
    fn group(&self) -> usize {
        self.h / self.kv
    }

    /// The tasks of the pass, or `None` when a block would fall in a special path of gemm
    /// that its whole matrix does not (or the other way round).
    fn blocks(&self) -> Option<Vec<Block>> {
        let Self {
            b,
            s,
            h,
            kv,
            hd,
            span,
        } = *self;
        let g = self.group();
        if s == 1 {
            // A decoding step: each matrix's `g` rows are its heads, `hd` apart in `q` and in
            // the output, as in burn's contiguous copy of `q`; one task per matrix makes burn's
            // calls.
            return Some(
                (0..b * kv)
                    .map(|i| Block {
                        b: i / kv,
                        kv: i % kv,
                        first: 0,
                        rows: g,
                        at: (i / kv) * h * hd + (i % kv) * g * hd,
                        stride: hd,
                    })
                    .collect(),
            );
        }
        let cuts = (s / ROWS_PER_TASK).max(1);
        let sizes: Vec<usize> = (0..cuts)
            .map(|c| (c + 1) * s / cuts - c * s / cuts)
            .collect();
        let whole = g * s;
        let small = |rows: usize| rows <= SMALL_SIDE && hd <= SMALL_SIDE;
        let same_paths = sizes.iter().all(|&rows| {
            rows >= 2
                && rows * span > HORIZONTAL_OUTPUTS
                && hd <= SMALL_K
                && (span <= SMALL_K || small(rows) == small(whole))
        });
        if !same_paths || hd < 4 {
            return None;
        }
        let mut blocks = Vec::with_capacity(b * h * cuts);
        for bi in 0..b {
            for head in 0..h {
                let (ki, gi) = (head / g, head % g);
                let mut si = 0;
                for &rows in &sizes {
                    blocks.push(Block {
                        b: bi,
                        kv: ki,
                        first: gi * s + si,
                        rows,
                        at: (bi * s + si) * h * hd + head * hd,
                        stride: h * hd,
                    });
                    si += rows;
                }
            }
        }
        Some(blocks)
    }

    /// Runs every block: `q` and `bias` contiguous, `[keys, values]` views.
    fn run(
        &self,
        blocks: &[Block],
        q: &[f32],
        bias: &[f32],
        [keys, values]: [Strided<'_>; 2],
        scale: f32,
    ) -> Vec<f32> {
        let (g, s, span, hd) = (self.group(), self.s, self.span, self.hd);
        let (out, dsts) = outputs(self.b * s, [self.h * hd].into_iter());
        let dst = &dsts[0];
        let task = |blk: &Block| {
            let mut scores = vec![0.0f32; blk.rows * span];
            let q_rows = &q[blk.at..];
            // SAFETY: the block's query rows `at + i·stride` (`i < rows`) of `hd` values lie in
            // `q`; every key `(slot, element)` of its matrix lies in the view at the view's
            // strides; `scores` holds `rows × span` values.
            unsafe {
                product_on_core(
                    [blk.rows, span, hd],
                    (scores.as_mut_ptr(), span as isize),
                    (q_rows.as_ptr(), blk.stride as isize, 1),
                    (
                        keys.at([blk.b, blk.kv, 0]),
                        keys.strides[3],
                        keys.strides[2],
                    ),
                );
            }
            let bias_rows = &bias[((blk.b * self.kv + blk.kv) * g * s + blk.first) * span..];
            for (row, bias) in scores
                .chunks_exact_mut(span)
                .zip(bias_rows.chunks_exact(span))
            {
                for (x, &c) in row.iter_mut().zip(bias) {
                    *x = *x * scale + c;
                }
                softmax_row(row);
            }
            // SAFETY: the block's output rows `at + i·stride` of `hd` values lie in `out`, and
            // no other block writes them; every value `(slot, element)` lies in the view.
            unsafe {
                product_on_core(
                    [blk.rows, hd, span],
                    (dst.at(blk.at), blk.stride as isize),
                    (scores.as_ptr(), span as isize, 1),
                    (
                        values.at([blk.b, blk.kv, 0]),
                        values.strides[2],
                        values.strides[3],
                    ),
                );
            }
        };
        let work = self.b * self.h * s * span * hd;
        if work < MIN_PARALLEL_WORK {
            blocks.iter().for_each(task);
        } else {
            blocks.par_iter().for_each(task);
        }
        // SAFETY: the blocks cover every position of every head, and gemm writes each output
        // of a block without reading it.
        let mut out = unsafe { out.written() };
        out.pop().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::activation;
    use burn::tensor::{Distribution, Tensor, TensorData};

    use super::super::bits_differ;
    use super::attention;

    /// burn's operations, as the decoder ran them before this kernel.
    fn burns(
        q: Tensor<Flex, 4>,
        k: Tensor<Flex, 4>,
        v: Tensor<Flex, 4>,
        bias: Tensor<Flex, 4>,
        scale: f64,
    ) -> Tensor<Flex, 3> {
        let [b, s, h, hd] = q.dims();
        let kv = k.dims()[1];
        let q = q.swap_dims(1, 2).reshape([b, kv, (h / kv) * s, hd]);
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale) + bias;
        activation::softmax(scores, 3)
            .matmul(v)
            .reshape([b, h, s, hd])
            .swap_dims(1, 2)
            .reshape([b, s, h * hd])
    }

    /// A causal bias for `s` queries at slots `offset..offset + s` over `span` slots, with
    /// padding keys (slot 1 of batch row 0, the last real slot of the last batch row), laid out
    /// as the decoder lays it out: `[b, kv, g·s, span]`.
    fn bias(
        b: usize,
        s: usize,
        offset: usize,
        span: usize,
        h: usize,
        kv: usize,
    ) -> Tensor<Flex, 4> {
        let mut data = vec![0.0f32; b * s * span];
        for bi in 0..b {
            for i in 0..s {
                for j in 0..span {
                    let padded = (bi == 0 && j == 1) || (bi + 1 == b && b > 1 && j == offset);
                    if j > offset + i || padded {
                        data[(bi * s + i) * span + j] = -1.0e9;
                    }
                }
            }
        }
        Tensor::<Flex, 4>::from_data(TensorData::new(data, [b, 1, s, span]), &Default::default())
            .repeat_dim(1, h)
            .reshape([b, kv, (h / kv) * s, span])
    }

    /// Keys and values `[b, kv, span, hd]` as the decoder passes them: views of a cache of
    /// `span + 5` slots when `cached`, else the projections' `[b, span, kv, hd]` swapped.
    fn keys(b: usize, kv: usize, span: usize, hd: usize, cached: bool) -> Tensor<Flex, 4> {
        let device = Default::default();
        let normal = Distribution::Normal(0.0, 1.0);
        if cached {
            Tensor::<Flex, 4>::random([b, kv, span + 5, hd], normal, &device).narrow(2, 0, span)
        } else {
            Tensor::<Flex, 4>::random([b, span, kv, hd], normal, &device).swap_dims(1, 2)
        }
    }

    /// Decoding steps (one query per head, with spans where gemm's horizontal kernel takes the
    /// scores and where it does not, one sequence and sixteen), scoring and prefill passes cut
    /// into blocks of a head's rows (one block, two, a pass of at most 64 rows per head, spans
    /// past 512 keys), and the head widths of the built-in worlds, SmolLM2-135M and
    /// Qwen2.5-1.5B: every value equals burn's bit for bit.
    #[test]
    fn equals_burns_operations_bit_for_bit() {
        let device = Default::default();
        // (b, s, offset, span, h, kv, hd)
        let shapes = [
            (1, 1, 20, 32, 9, 3, 64),
            (1, 1, 90, 96, 9, 3, 64),
            (16, 1, 40, 96, 9, 3, 64),
            (1, 256, 0, 256, 9, 3, 64),
            (2, 40, 0, 40, 9, 3, 64),
            (1, 129, 0, 129, 9, 3, 64),
            (1, 300, 0, 300, 9, 3, 64),
            (1, 20, 580, 600, 9, 3, 64),
            (1, 260, 440, 700, 9, 3, 64),
            (3, 64, 0, 64, 4, 2, 32),
            (1, 100, 28, 128, 12, 2, 128),
            (4, 1, 31, 32, 4, 2, 32),
        ];
        for (b, s, offset, span, h, kv, hd) in shapes {
            let scale = 1.0 / (hd as f64).sqrt();
            let q =
                Tensor::<Flex, 4>::random([b, s, h, hd], Distribution::Normal(0.0, 2.0), &device);
            let bias = bias(b, s, offset, span, h, kv);
            for cached in [false, true] {
                if !cached && span != s {
                    continue;
                }
                let (k, v) = (keys(b, kv, span, hd, cached), keys(b, kv, span, hd, cached));
                let got = attention(&q, &k, &v, &bias, scale)
                    .unwrap_or_else(|| panic!("({b}, {s}, {span}, {h}, {kv}, {hd}) is fused"));
                let want = burns(q.clone(), k, v, bias.clone(), scale);
                let (differ, n) = bits_differ(got, want);
                assert_eq!(
                    differ, 0,
                    "{differ} of {n} values differ at b {b}, s {s}, span {span}, h {h}, kv {kv}, hd {hd}, cached {cached}"
                );
            }
        }
    }

    /// Shapes whose blocks would fall in another of gemm's paths than their whole matrices keep
    /// burn's operations: a few positions over few keys (at most 256 scores per block), and
    /// blocks of at most 64 rows of a matrix of more, over more than 512 keys.
    #[test]
    fn shapes_whose_blocks_sum_otherwise_are_left_to_burn() {
        let device = Default::default();
        for (s, span) in [(8, 8), (2, 100), (30, 600)] {
            let q = Tensor::<Flex, 4>::random([1, s, 9, 64], Distribution::Default, &device);
            let (k, v) = (keys(1, 3, span, 64, true), keys(1, 3, span, 64, true));
            let bias = bias(1, s, span - s, span, 9, 3);
            assert!(
                attention(&q, &k, &v, &bias, 0.125).is_none(),
                "s {s}, span {span}"
            );
        }
    }
}
