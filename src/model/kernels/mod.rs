//! CPU kernels for the model core on the Flex backend (behind every simulator, judge, policy
//! rollout and trainer of the paper's §3 pipeline). Inference: matrix products of decoding and
//! scoring shapes spread over all cores by column blocks (by row blocks for many rows over one
//! column block), batched decoding's tied head read from panels of the embedding matrix laid out
//! once per generation call, the attention output and down projections of batch-1 decoding
//! read from one contiguous panel of columns per core laid out once per generation call, the
//! SwiGLU gate and RoPE in one pass each, attention fused per block of a head's query rows
//! (products, scale, bias and softmax in one task, written straight into the layout the output
//! projection reads), log-softmax's element-wise passes over all cores, and KV-cache slots
//! written in place; these only see tensors that need no gradient. Both: RMSNorm in
//! one pass over all cores (in training one recorded operation whose gradients take one more), and
//! the `exp`s of the gate's logistic, the softmax and the log-softmax eight or four lanes at a time
//! with libm's results. Training: AdamW's update in one pass over all cores, and nine more
//! differentiable operations recorded whole: the embedding lookup (its gradient added in place,
//! over all cores, into the one the tied head gave the matrix), attention (products, scale, bias,
//! softmax and their gradients per block of rows over all cores), the exchange of positions and
//! heads around it (a copy over all cores each way), the projections of more than 64 rows and the
//! tied output head (each product and gradient split by column or row blocks, the embedding
//! gradient laid out row-major), the SwiGLU gate and attention's softmax (each computing its `exp`
//! once, not again in the backward pass), RoPE (one pass each way instead of a narrow, a
//! concatenation, products and zero-padded gradients over strided views) and the log-softmax of the
//! losses (one pass back over all cores). Every kernel gives results bit-identical to the burn
//! operations it replaces, except two: the products with Q8_0 weights (quantized models, which burn
//! has no operation for) and the products of 2 to 64 rows (decoding), where gemm sums some blocks
//! of columns (at most 64 by 64 outputs) in other chunks than burn's single call does, in the last
//! bits; their values do not depend on the thread count. Other backends keep burn's operations.

use rayon::prelude::*;

mod adamw;
mod attention;
mod attention_training;
mod column_panels;
mod embedding;
mod exp;
mod flex;
mod head_panels;
mod heads;
mod log_softmax;
mod matmul;
mod projection;
pub mod q8;
mod rms_norm;
mod rope;
mod softmax;
mod swiglu;
mod tied_head;

pub(crate) use adamw::AdamWScalars;
pub(crate) use attention::attention;
pub(crate) use attention_training::training_attention;
pub(crate) use column_panels::ColumnPanels;
pub(crate) use embedding::embedding;
pub use flex::log_softmax;
pub(crate) use flex::{
    adamw, is_flex, product, products, q8_product, q8_products, swiglu, write_along,
};
pub(crate) use head_panels::HeadPanels;
pub(crate) use heads::swap_heads;
pub(crate) use projection::projection;
pub(crate) use rms_norm::rms_norm;
pub(crate) use rope::{Pairs, rope};
pub(crate) use softmax::softmax;
pub(crate) use tied_head::tied_head;

/// Elements one task of a row-wise pass covers at least.
const MIN_ELEMS_PER_TASK: usize = 1 << 14;

/// Whole rows of `len` values per task of a row-wise pass (at least one).
fn rows_per_task(len: usize) -> usize {
    MIN_ELEMS_PER_TASK.div_ceil(len.max(1)).max(1)
}

/// Calls `f(first, chunk)` for consecutive chunks of `per` elements of `out` (`first` the
/// index of the chunk's first element), spread over all cores; on the calling thread when one
/// chunk holds everything, where handing it to the thread pool costs more than the work (a
/// decoding step's heads, for one).
fn in_chunks_of(out: &mut [f32], per: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let per = per.max(1);
    if out.len() <= per {
        f(0, out);
    } else {
        out.par_chunks_mut(per)
            .enumerate()
            .for_each(|(i, out)| f(i * per, out));
    }
}

/// Runs `f(row, values)` over the rows of `len` values of `out`, tasks of whole rows spread
/// over all cores.
fn per_row(out: &mut [f32], len: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    in_chunks_of(out, rows_per_task(len) * len, |first, out| {
        each_row(first, out, len, &f);
    });
}

/// [`per_row`] over a new buffer of `total` values ([`new_in_chunks`]).
fn new_per_row(total: usize, len: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    new_in_chunks(total, rows_per_task(len) * len, |first, out| {
        each_row(first, out, len, &f);
    })
}

/// `f(row, values)` for the rows of `len` values of a chunk starting at value `first`.
fn each_row(first: usize, chunk: &mut [f32], len: usize, f: &impl Fn(usize, &mut [f32])) {
    for (i, row) in chunk.chunks_exact_mut(len).enumerate() {
        f(first / len + i, row);
    }
}

/// [`in_chunks_of`] over a new buffer of `len` values.
fn new_in_chunks(len: usize, per: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let [out] = new_buffers(len, per, |first, [chunk]| f(first, chunk));
    out
}

/// [`in_chunks_of`] over two new buffers of `len` values, chunked alike.
fn new_pair_in_chunks(
    len: usize,
    per: usize,
    f: impl Fn(usize, &mut [f32], &mut [f32]) + Sync,
) -> [Vec<f32>; 2] {
    new_buffers(len, per, |first, [a, b]| f(first, a, b))
}

/// `N` new buffers of `len` values whose chunks of `per` values, at the same places in each,
/// `f(first, chunks)` writes, spread over all cores as [`in_chunks_of`] spreads them. Each task
/// zeroes its own chunks before `f` sees them, while they are in its core's cache, instead of
/// one core zeroing every buffer whole first (as `vec![0.0; len]` would) while the others
/// wait; `f` sees what it would see in such a buffer.
fn new_buffers<const N: usize>(
    len: usize,
    per: usize,
    f: impl Fn(usize, [&mut [f32]; N]) + Sync,
) -> [Vec<f32>; N] {
    let per = per.max(1);
    let mut bufs: [Vec<f32>; N] = std::array::from_fn(|_| Vec::with_capacity(len));
    let starts = bufs.each_mut().map(|b| Out(b.as_mut_ptr()));
    let run = |first: usize, count: usize| {
        let chunks = starts.each_ref().map(|start| {
            let at = start.at(first);
            // SAFETY: values `first..first + count` lie in the buffer's capacity of `len`, no
            // other task touches them, and they are zeroed before the slice is made.
            unsafe {
                std::ptr::write_bytes(at, 0, count);
                std::slice::from_raw_parts_mut(at, count)
            }
        });
        f(first, chunks);
    };
    if len <= per {
        run(0, len);
    } else {
        (0..len.div_ceil(per))
            .into_par_iter()
            .for_each(|t| run(t * per, per.min(len - t * per)));
    }
    for b in &mut bufs {
        // SAFETY: the tasks covered values `0..len` of every buffer, each zeroed first.
        unsafe { b.set_len(len) };
    }
    bufs
}

/// `[m, n]` outputs for every `n` of `widths`, allocated but not yet written (zeroing them
/// first would be one more pass over memory the products overwrite), with the handles the
/// tasks of a pass write them through.
fn outputs(m: usize, widths: impl Iterator<Item = usize>) -> (Unwritten, Vec<Out>) {
    let mut outs: Vec<(Vec<f32>, usize)> =
        widths.map(|n| (Vec::with_capacity(m * n), m * n)).collect();
    let dsts = outs.iter_mut().map(|(o, _)| Out(o.as_mut_ptr())).collect();
    (Unwritten(outs), dsts)
}

/// Buffers [`outputs`] allocated, each with the number of values it will hold once written.
struct Unwritten(Vec<(Vec<f32>, usize)>);

impl Unwritten {
    /// The buffers, holding what the pass wrote.
    ///
    /// # Safety
    /// Every value of every buffer must have been written through its handle.
    unsafe fn written(self) -> Vec<Vec<f32>> {
        self.0
            .into_iter()
            .map(|(mut out, len)| {
                // SAFETY: the capacity is `len` and the caller wrote every value.
                unsafe { out.set_len(len) };
                out
            })
            .collect()
    }
}

/// `(product, first column, columns)` of every task of a pass whose product `p`, of `n`
/// columns, is cut into tasks of `width` columns (`(n, width)` at index `p` of `products`),
/// product by product; a product's last task may be narrower.
fn column_tasks(products: impl Iterator<Item = (usize, usize)>) -> Vec<(usize, usize, usize)> {
    products
        .enumerate()
        .flat_map(|(p, (n, width))| {
            (0..n)
                .step_by(width)
                .map(move |j0| (p, j0, width.min(n - j0)))
        })
        .collect()
}

/// An output buffer shared by the tasks of a product, each writing elements no other task
/// writes.
struct Out(*mut f32);
// SAFETY: tasks write disjoint elements of one buffer that outlives them.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}
impl Out {
    /// The element `offset` places past the start (a method, so closures capture `Out`).
    fn at(&self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }

    /// Writes `x · W` into columns `j0..j0 + cols` of this `[m, n]` row-major output, on the
    /// calling core: `x` is `[m, k]` row-major and `w` points at column `j0` of `W`, whose
    /// elements lie `w_rs` apart along `k` and `w_cs` apart along the columns.
    ///
    /// # Safety
    /// Rows `0..m` and columns `j0..j0 + cols` (row stride `n`) must lie in the output, no
    /// other task may write them meanwhile, and `w` must hold every element `(i, c)` for
    /// `i < k`, `c < cols` at `i·w_rs + c·w_cs`.
    unsafe fn write_product(
        &self,
        [m, k, n]: [usize; 3],
        [j0, cols]: [usize; 2],
        x: &[f32],
        w: *const f32,
        [w_rs, w_cs]: [isize; 2],
    ) {
        debug_assert!(x.len() >= m * k);
        // SAFETY: the caller's contract covers every element gemm reads and writes.
        unsafe {
            product_on_core(
                [m, cols, k],
                (self.at(j0), n as isize),
                (x.as_ptr(), k as isize, 1),
                (w, w_rs, w_cs),
            );
        }
    }
}

/// `dst = lhs · rhs` for `[m, n, k]`, computed by one gemm call on the calling core: `dst`
/// row-major with its row step, `lhs` `[m, k]` with its row and column steps, `rhs` `[k, n]`
/// with its steps along `k` and along `n`.
///
/// # Safety
/// Every element the steps reach must lie in the operands' buffers, and no other thread may
/// touch `dst`'s elements meanwhile.
unsafe fn product_on_core(
    [m, n, k]: [usize; 3],
    (dst, dst_rs): (*mut f32, isize),
    (lhs, lhs_rs, lhs_cs): (*const f32, isize, isize),
    (rhs, rhs_rs, rhs_cs): (*const f32, isize, isize),
) {
    // SAFETY: the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs,
            false,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// How many values of `got` and `want` differ in any bit, and how many there are (the measure
/// of every bit-for-bit comparison with burn's operations).
#[cfg(test)]
pub(crate) fn bits_differ<const D: usize>(
    got: burn::tensor::Tensor<burn::backend::Flex, D>,
    want: burn::tensor::Tensor<burn::backend::Flex, D>,
) -> (usize, usize) {
    let (got, want) = (
        got.into_data().to_vec::<f32>().unwrap(),
        want.into_data().to_vec::<f32>().unwrap(),
    );
    assert_eq!(got.len(), want.len(), "shapes differ");
    let differ = got
        .iter()
        .zip(&want)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    (differ, got.len())
}
