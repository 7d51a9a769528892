//! `x · W` spread over all cores for the row counts of decoding (one row per sequence of a
//! batch) and of scoring, judging and prefill (hundreds of rows, no gradient): the output's
//! columns are cut into blocks, each computed by `gemm` on one core. Results do not depend on
//! the thread count: for 2 to 64 rows block widths depend only on the shapes, and beyond 64
//! rows, where the count of blocks is a multiple of the thread count, every block gives burn's
//! values. Products that read
//! the same `x` (a block's query, key and value projections) can share one pass, whose tasks the
//! cores take from one queue; there a single row's product runs whole on one core beside the
//! others.
//!
//! Above [`FEW_ROWS`] rows the blocks replace gemm's own parallel split, which forks and joins
//! the thread pool several times per product and wakes a sleeping core each time; each block's
//! values equal those of burn's single call bit for bit. gemm sums `k` in the same blocks for
//! any output shape except two it treats apart: a block of at most 256 outputs (horizontal dot
//! products) and one of at most 64 rows and 64 columns (`k` cut at 512). Beyond 64 rows only a
//! last block of one to three columns falls in either, and it joins the block before it. A
//! product of many rows and at most 128 columns (a world model's projections over a training
//! batch, and their gradients) is cut into blocks of rows instead, which equal burn's values
//! as well, since gemm computes rows apart.

use rayon::prelude::*;

use super::{column_tasks, outputs, product_on_core};

/// Output columns one task computes.
pub(super) const COLS_PER_TASK: usize = 128;
/// Output columns one task computes for a single row over a transposed operand (rows of a
/// tied head's `E`): more than gemm's horizontal kernel takes (256 outputs), so that each
/// block, like burn's call for the whole row, runs its matrix-vector kernel.
const SINGLE_ROW_COLS: usize = 512;
/// Flex runs products of at least this many multiply-adds on all cores, and smaller ones on one.
const FLEX_PARALLEL: usize = 192 * 192 * 192;
/// Rows up to which a product is split only when burn would leave cores idle (decoding
/// shapes, whose blocks keep the values they have always had); above it every product of
/// more than one block is split.
const FEW_ROWS: usize = 64;
/// Beyond [`FEW_ROWS`] rows, a product's last block narrower than this joins the block before
/// it, so that no block falls in gemm's horizontal kernel (at most 256 outputs).
const MIN_LAST_COLS: usize = 16;
/// For a single row, a last block of [`SINGLE_ROW_COLS`] narrower than this joins the one
/// before it, for the same reason.
const MIN_SINGLE_ROW_COLS: usize = 257;
/// Products smaller than this many multiply-adds stay on one core.
const MIN_WORK: usize = 1 << 16;
/// Rows one task of a product cut into row blocks computes, about (a world model's
/// projections of 128 or 64 columns over the 2,048 rows of a training batch: eight tasks).
const ROWS_PER_TASK: usize = 256;
/// Fewest rows of a row block, so that gemm runs a block of many rows as it runs the whole
/// product: at most 64 rows by 64 columns it cuts `k` at 512, and for at most 256 outputs it
/// takes its horizontal kernel. A block of more than 64 columns keeps at least 32 rows.
const MIN_BLOCK_ROWS: [usize; 2] = [65, 32];
/// Products that share a pass, each whole on one core, hold at least this many multiply-adds
/// together (a block's query, key and value projections of SmolLM2-135M hold 552,960 for one
/// row; a world model's, for one row, fit in cache and finish before the cores would meet).
const MIN_SHARED_WORK: usize = 1 << 18;
/// A single row (batch-1 decoding) stays on gemm's one-core matrix-vector kernel, which
/// streams `W` in order. Split into column blocks, each core reads a few hundred bytes per row
/// of `W` and then jumps to the next row, a new memory page each time, where the hardware
/// prefetcher stops: two cores then read no faster than one does in order. Generation lays
/// the single-row products that have no partner in a pass out in column panels instead
/// ([`super::column_panels`]).
const MIN_ROWS: usize = 2;

/// Whether an `[m, k] · [k, n]` product is better split over cores by columns here.
pub(super) fn worth_it(m: usize, k: usize, n: usize) -> bool {
    let work = m.saturating_mul(k).saturating_mul(n);
    let wide = if m <= FEW_ROWS {
        n >= 2 * COLS_PER_TASK
    } else {
        n > COLS_PER_TASK
    };
    m >= MIN_ROWS && work >= MIN_WORK && wide
}

/// Whether `x · Eᵀ` (`E` `[n, k]` row-major: a tied output head) is better split over cores
/// by columns here: where [`worth_it`] says so, and for a single row too, where a block of
/// columns is a run of whole rows of `E` that one core streams in order (unlike a block of
/// `W`'s columns, see [`MIN_ROWS`]), and each output is the dot product gemm's matrix-vector
/// kernel computes for burn's call.
pub(super) fn worth_it_transposed(m: usize, k: usize, n: usize) -> bool {
    m >= 1 && worth_it(m.max(MIN_ROWS), k, n)
}

/// How many blocks of rows an `[m, k] · [k, n]` product of many rows and at most
/// [`COLS_PER_TASK`] columns (one column block) is cut into on `threads` threads: about
/// [`ROWS_PER_TASK`] rows each, a multiple of the thread count (of two on one thread, so that
/// whether a product is cut does not depend on the thread count), and none under
/// [`MIN_BLOCK_ROWS`]; `None` when that leaves fewer than two, or the product is not of that
/// kind. burn hands such a product to gemm's own parallel split, which forks and joins the
/// thread pool several times, and first zeroes and then copies its output on one core; cut
/// by columns instead, each block would pack all of `x` again. Each row block gives burn's
/// values bit for bit: gemm sums `k` in blocks that depend only on `k` and the machine's
/// caches, and rows are computed apart. A single column (a value head) or `k` of at most 2 is
/// left to burn: gemm then takes a matrix-vector or outer-product kernel, which groups rows in
/// its own way (a single column's values change where a block boundary falls).
pub(super) fn row_blocks(m: usize, k: usize, n: usize, threads: usize) -> Option<usize> {
    let work = m.saturating_mul(k).saturating_mul(n);
    if !many_rows(m) || !(2..=COLS_PER_TASK).contains(&n) || k < 3 || work < MIN_WORK {
        return None;
    }
    let min_rows = MIN_BLOCK_ROWS[usize::from(n > 64)];
    let blocks = m
        .div_ceil(ROWS_PER_TASK)
        .next_multiple_of(threads.max(2))
        .min(m / min_rows);
    (blocks >= 2).then_some(blocks)
}

/// Whether an `[m, k] · [k, n]` product is cut here: by columns where [`worth_it`] says so,
/// else by rows where [`row_blocks`] does.
pub(super) fn worth_cutting(m: usize, k: usize, n: usize) -> bool {
    worth_it(m, k, n) || row_blocks(m, k, n, rayon::current_num_threads()).is_some()
}

/// Whether `m` rows are more than [`FEW_ROWS`], where every block of a product [`worth_it`]
/// splits gives burn's values bit for bit.
pub(super) fn many_rows(m: usize) -> bool {
    m > FEW_ROWS
}

/// The right operand of a product: a `[k, n]` matrix read from `data` with strides.
#[derive(Clone, Copy)]
pub(super) struct Operand<'a> {
    data: &'a [f32],
    /// Step between rows (along `k`).
    rs: isize,
    /// Step between columns (along `n`).
    cs: isize,
    k: usize,
    n: usize,
}

impl<'a> Operand<'a> {
    /// `data` holds `W` `[k, n]` row-major.
    pub(super) fn rows(data: &'a [f32], n: usize) -> Self {
        let k = data.len() / n.max(1);
        Self {
            data,
            rs: n as isize,
            cs: 1,
            k,
            n,
        }
    }

    /// `data` holds the `[n, k]` matrix `E` row-major, and the operand is `Eᵀ` (a tied output
    /// head: logits are `x · Eᵀ`).
    pub(super) fn transposed(data: &'a [f32], k: usize) -> Self {
        let n = data.len() / k.max(1);
        Self {
            data,
            rs: 1,
            cs: k as isize,
            k,
            n,
        }
    }
}

/// The columns each task computes when `[m, k] · [k, n]` products for every `n` of `ns` share
/// one parallel pass: blocks of [`COLS_PER_TASK`] for a product [`worth_it`] splits; the whole
/// width for one that burn would run on one core (for a single row gemm's matrix-vector
/// kernel, which streams `W` in order while the other products of the pass run on the other
/// cores), when the pass holds at least [`MIN_SHARED_WORK`] multiply-adds. `None` when a
/// product is left to burn.
pub(super) fn task_widths(m: usize, k: usize, ns: &[usize]) -> Option<Vec<usize>> {
    let work = |n: usize| m.saturating_mul(k).saturating_mul(n);
    let total: usize = ns.iter().map(|&n| work(n)).sum();
    ns.iter()
        .map(|&n| {
            if worth_it(m, k, n) {
                Some(COLS_PER_TASK)
            } else if n > 0 && work(n) < FLEX_PARALLEL && total >= MIN_SHARED_WORK {
                Some(n)
            } else {
                None
            }
        })
        .collect()
}

/// `x · W` for `x` `[m, k]` row-major and `w` `[k, n]`: `[m, n]` row-major.
///
/// # Panics
/// When the operands' sizes disagree with `m`, `k` and `n` (a bug of the caller).
pub(super) fn matmul_rows(x: &[f32], m: usize, k: usize, w: Operand<'_>, n: usize) -> Vec<f32> {
    assert_eq!(
        w.n, n,
        "matmul_rows: [{}, {}] has not {n} columns",
        w.k, w.n
    );
    let threads = rayon::current_num_threads();
    if let Some(blocks) = row_blocks(m, k, n, threads) {
        return by_row_blocks(x, m, k, w, blocks);
    }
    let mut out = matmul_each(x, m, k, &[(w, block_width(m, n, threads))]);
    out.pop().unwrap_or_default()
}

/// `x · W` cut into `blocks` blocks of consecutive rows, as even as they come, each computed
/// by one gemm call on one core.
fn by_row_blocks(x: &[f32], m: usize, k: usize, w: Operand<'_>, blocks: usize) -> Vec<f32> {
    assert!(
        x.len() == m * k && w.k == k && w.data.len() == k * w.n && (1..=m).contains(&blocks),
        "by_row_blocks: [{m}, {k}] · [{}, {}] with {} and {} elements in {blocks} blocks",
        w.k,
        w.n,
        x.len(),
        w.data.len()
    );
    let n = w.n;
    let (outs, dsts) = outputs(m, std::iter::once(n));
    let dst = &dsts[0];
    (0..blocks).into_par_iter().for_each(|b| {
        let (i0, i1) = (b * m / blocks, (b + 1) * m / blocks);
        // SAFETY: rows `i0..i1` of the `[m, n]` output and of `x` `[m, k]` lie in them, `w`
        // holds every `(i, j)` for `i < k`, `j < n` at `i·rs + j·cs` (checked sizes above),
        // and no two blocks share a row.
        unsafe {
            product_on_core(
                [i1 - i0, n, k],
                (dst.at(i0 * n), n as isize),
                (x[i0 * k..].as_ptr(), k as isize, 1),
                (w.data.as_ptr(), w.rs, w.cs),
            );
        }
    });
    // SAFETY: the blocks cover every row, and gemm writes each output without reading it.
    let mut out = unsafe { outs.written() };
    out.pop().unwrap_or_default()
}

/// The columns each task of a product of `m` rows and `n` columns computes, alone in its pass
/// on `threads` threads: [`SINGLE_ROW_COLS`] for a single row; beyond [`FEW_ROWS`] rows, blocks
/// of at most about [`COLS_PER_TASK`] columns whose count is a multiple of the thread count
/// (rounded up to 16 columns), so that the cores finish together (576 columns on two cores:
/// six blocks of 96, not four of 128 and one of 64, which left a core idle for a fifth of
/// every product); [`COLS_PER_TASK`] otherwise. Beyond 64 rows any block gives burn's values,
/// so they do not depend on the thread count; for 2 to 64 rows the width is fixed.
fn block_width(m: usize, n: usize, threads: usize) -> usize {
    if m == 1 {
        SINGLE_ROW_COLS
    } else if many_rows(m) {
        let tasks = n.div_ceil(COLS_PER_TASK).next_multiple_of(threads.max(1));
        n.div_ceil(tasks).next_multiple_of(16)
    } else {
        COLS_PER_TASK
    }
}

/// `x · W` for `x` `[m, k]` row-major and every `(W, width)` of `ws` (`W` `[k, n]`), in one
/// parallel pass: each product is cut into tasks of `width` columns, and the cores share
/// one queue of the tasks of all products instead of meeting after each. A task computes its
/// columns with one gemm call on one core, as the same task of a product run alone would.
///
/// # Panics
/// When the operands' sizes disagree with `m` and `k`, or a width is 0 (a bug of the caller).
pub(super) fn matmul_each(
    x: &[f32],
    m: usize,
    k: usize,
    ws: &[(Operand<'_>, usize)],
) -> Vec<Vec<f32>> {
    for (w, width) in ws {
        assert!(
            x.len() == m * k && w.k == k && w.data.len() == k * w.n && *width > 0,
            "matmul_each: [{m}, {k}] · [{}, {}] with {} and {} elements, {width} columns a task",
            w.k,
            w.n,
            x.len(),
            w.data.len()
        );
    }
    let (outs, dsts) = outputs(m, ws.iter().map(|(w, _)| w.n));
    let mut tasks = column_tasks(ws.iter().map(|&(w, width)| (w.n, width)));
    if many_rows(m) {
        join_narrow_last_blocks(&mut tasks, MIN_LAST_COLS);
    } else if m == 1 {
        join_narrow_last_blocks(&mut tasks, MIN_SINGLE_ROW_COLS);
    }
    tasks.par_iter().for_each(|&(p, j0, cols)| {
        let w = ws[p].0;
        // SAFETY: rows `0..m` and columns `j0..j0 + cols` of product `p`'s output (row stride
        // `w.n`) lie in it; column `j0` of `w` starts at `j0·cs`, and every element the kernel
        // reads, `(i, j0 + c)` for `i < k`, `c < cols`, lies in `w.data` (checked sizes
        // above); no two tasks write the same element.
        unsafe {
            dsts[p].write_product(
                [m, k, w.n],
                [j0, cols],
                x,
                w.data.as_ptr().offset(j0 as isize * w.cs),
                [w.rs, w.cs],
            );
        }
    });
    // SAFETY: the tasks cover every column of every product, and gemm writes each output of
    // its block without reading it.
    unsafe { outs.written() }
}

/// Joins every task narrower than `min_cols` (a product's last block) to the task before it
/// when that task belongs to the same product.
fn join_narrow_last_blocks(tasks: &mut Vec<(usize, usize, usize)>, min_cols: usize) {
    let mut joined: Vec<(usize, usize, usize)> = Vec::with_capacity(tasks.len());
    for &(p, j0, cols) in tasks.iter() {
        match joined.last_mut() {
            Some(last) if cols < min_cols && last.0 == p => last.2 += cols,
            _ => joined.push((p, j0, cols)),
        }
    }
    *tasks = joined;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], m: usize, k: usize, w: &Operand<'_>, n: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; m * n];
        for r in 0..m {
            for j in 0..n {
                out[r * n + j] = (0..k)
                    .map(|i| {
                        x[r * k + i] * w.data[(i as isize * w.rs + j as isize * w.cs) as usize]
                    })
                    .sum();
            }
        }
        out
    }

    fn values(len: usize, salt: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) ^ salt) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn column_blocks_equal_the_plain_product_in_both_layouts() {
        // n is not a multiple of the block width, so the last block is narrower.
        for (m, k, n) in [(1, 96, 300), (5, 64, 257), (16, 33, 640)] {
            let x = values(m * k, 7);
            let w = values(k * n, 11);
            for op in [Operand::rows(&w, n), Operand::transposed(&w, k)] {
                let got = matmul_rows(&x, m, k, op, n);
                let want = naive(&x, m, k, &op, n);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{g} vs {w} at {m}×{k}×{n}"
                    );
                }
            }
        }
    }

    #[test]
    fn decoding_shapes_are_split_and_tiny_or_large_ones_are_not() {
        assert!(worth_it(2, 576, 1536));
        assert!(worth_it(16, 576, 49_152));
        assert!(
            !worth_it(1, 576, 1536),
            "one row stays on gemm's vector kernel"
        );
        assert!(!worth_it(4, 8, 64), "too little work");
        assert!(worth_it(128, 128, 384), "flex would run this on one core");
        assert!(
            worth_it(512, 576, 1536) && worth_it(256, 576, 192),
            "many rows: blocks instead of gemm's own split"
        );
        assert!(!worth_it(512, 576, 128), "many rows, one block");
        assert!(!worth_it(16, 576, 192), "few rows, under two blocks");
        assert!(
            worth_it_transposed(1, 576, 49_152),
            "one row over rows of E"
        );
        assert!(!worth_it_transposed(1, 8, 64) && !worth_it_transposed(0, 576, 49_152));
    }

    #[test]
    fn many_rows_are_cut_into_a_multiple_of_the_thread_count() {
        assert_eq!(block_width(256, 576, 2), 96, "six blocks, not 4.5");
        assert_eq!(block_width(256, 192, 2), 96);
        assert_eq!(block_width(256, 1536, 2), 128, "twelve blocks already");
        assert_eq!(block_width(2048, 384, 2), 96);
        assert_eq!(
            block_width(256, 576, 3),
            96,
            "six blocks on three threads too"
        );
        assert_eq!(block_width(256, 300, 2), 80, "rounded up to 16 columns");
        assert_eq!(
            block_width(16, 576, 2),
            COLS_PER_TASK,
            "decoding keeps its blocks"
        );
        assert_eq!(block_width(1, 49_152, 2), SINGLE_ROW_COLS);
    }

    #[test]
    fn many_rows_over_one_column_block_are_cut_into_row_blocks() {
        assert_eq!(row_blocks(2048, 128, 128, 2), Some(8));
        assert_eq!(row_blocks(2048, 128, 64, 3), Some(9), "a multiple of three");
        assert_eq!(row_blocks(384, 2048, 128, 2), Some(2));
        assert_eq!(
            row_blocks(128, 2048, 128, 2),
            Some(2),
            "64 rows over 128 columns"
        );
        assert_eq!(
            row_blocks(128, 2048, 64, 2),
            None,
            "64 by 64 would cut k apart"
        );
        assert_eq!(row_blocks(130, 2048, 64, 2), Some(2));
        assert_eq!(
            row_blocks(130, 2048, 64, 1),
            Some(2),
            "two blocks on one thread"
        );
        assert_eq!(row_blocks(2048, 128, 129, 2), None, "cut by columns");
        assert_eq!(row_blocks(64, 576, 128, 2), None, "a decoding shape");
        assert_eq!(row_blocks(100, 4, 4, 2), None, "too little work");
        assert_eq!(row_blocks(2048, 128, 1, 2), None, "a value head");
        assert_eq!(row_blocks(1 << 16, 2, 64, 2), None, "k of 2");
        assert!(worth_cutting(2048, 128, 128) && !worth_it(2048, 128, 128));
    }

    #[test]
    fn a_narrow_last_block_joins_the_one_before_it() {
        let mut tasks = column_tasks([(4099, 128), (3, 128), (300, 128)].into_iter());
        join_narrow_last_blocks(&mut tasks, MIN_LAST_COLS);
        assert_eq!(tasks.len(), 32 + 1 + 3);
        assert_eq!(tasks[31], (0, 31 * 128, 131), "3 columns joined");
        assert_eq!(tasks[32], (1, 0, 3), "a product of one block keeps it");
        assert_eq!(tasks[35], (2, 256, 44), "44 columns stay apart");
    }
}
