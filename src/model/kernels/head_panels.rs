//! The tied output head of batched decoding (every rollout, simulated output and judge sample
//! of the paper's §3 pipeline draws its tokens through it): logits `h · Eᵀ` for 3 to 64 rows,
//! with `E` the `[vocab, d]` embedding matrix. The product is cut into blocks of 128 vocabulary
//! ids ([`super::matmul`]); for each, gemm first packs the block's 128 rows of `E` into a panel
//! of `d` steps of 128 values and then multiplies from the panel. At every decoding step that
//! repacks all of `E` (113 MB for SmolLM2-135M), on top of reading it. [`HeadPanels`] lays
//! `E`'s whole blocks out as such panels once per generation call, and each step's blocks read
//! their panel in order with no packing. The microkernel sums the same products in the same
//! order either way, so logits are bit-identical to the unpacked head's; a last block of fewer
//! than 128 ids is computed from `E` as before (gemm may take its dot-product kernel there).

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rayon::prelude::*;

use super::flex::{flex_f32, from_values, rows};
use super::matmul::{COLS_PER_TASK, many_rows, worth_it_transposed};
use super::{Out, new_in_chunks, outputs};

/// Vocabulary ids per panel: the width of a block of a decoding product.
const PANEL: usize = COLS_PER_TASK;
/// Fewest heads a generation call computes (its new tokens) for which the panels are laid
/// out: laying them out costs about as much as the packing they save in seven steps
/// (SmolLM2-135M, 16 rows, 2-core AMD EPYC: 38 ms against 5.4 ms saved per step).
const MIN_STEPS: usize = 16;

/// `E`'s whole blocks of [`PANEL`] rows, each laid out `[d, PANEL]` (the block's transpose,
/// row-major), one after another: the size of `E` less its last partial block.
#[derive(Debug)]
pub struct HeadPanels {
    values: Vec<f32>,
    /// Vocabulary size (rows of `E`).
    n: usize,
    /// Hidden size (columns of `E`).
    d: usize,
}

impl HeadPanels {
    /// The panels of `e` (`[vocab, d]`) for `steps` heads of `rows_at_a_time` rows, where the
    /// CPU kernels compute such a head by packed blocks of columns: the Flex backend with
    /// `f32` values, 3 to 64 rows, a product worth splitting, and at least one whole block;
    /// and where the steps are enough to repay the layout ([`MIN_STEPS`]). `None` otherwise
    /// (the head is computed as it would be without panels).
    pub(crate) fn new<B: Backend>(
        e: &Tensor<B, 2>,
        rows_at_a_time: usize,
        steps: usize,
    ) -> Option<Self> {
        let [n, d] = e.dims();
        if steps < MIN_STEPS || !fits(rows_at_a_time, d, n) {
            return None;
        }
        let ef = flex_f32(e)?;
        let ev = rows(&ef, n * d)?;
        let whole = n / PANEL * PANEL;
        let values = new_in_chunks(whole * d, PANEL * d, |first, panel| {
            let block = &ev[first..first + PANEL * d];
            for (i, step) in panel.chunks_exact_mut(PANEL).enumerate() {
                for (c, v) in step.iter_mut().enumerate() {
                    *v = block[c * d + i];
                }
            }
        });
        Some(Self { values, n, d })
    }

    /// `h · Eᵀ` for `h` `[m, d]` and `e` the `E` these panels were laid out from: whole blocks
    /// from the panels, a last partial block from `e`, all in one parallel pass. `None` where
    /// the panels do not serve `m` rows or the shapes differ (the caller computes the head as
    /// without panels).
    pub(crate) fn product<B: Backend>(
        &self,
        h: &Tensor<B, 2>,
        e: &Tensor<B, 2>,
    ) -> Option<Tensor<B, 2>> {
        let ([m, k], [n, d]) = (h.dims(), e.dims());
        if !fits(m, k, n) || [n, d] != [self.n, self.d] || k != d {
            return None;
        }
        let (hf, ef) = (flex_f32(h)?, flex_f32(e)?);
        let (hv, ev) = (rows(&hf, m * d)?, rows(&ef, n * d)?);
        let (outs, dsts) = outputs(m, std::iter::once(n));
        let dst: &Out = &dsts[0];
        let whole = n / PANEL;
        (0..n.div_ceil(PANEL)).into_par_iter().for_each(|b| {
            let j0 = b * PANEL;
            let cols = PANEL.min(n - j0);
            // A whole block reads its panel (`[d, PANEL]` row-major); the partial last block
            // reads `E`'s rows as the operand `Eᵀ`, as the head without panels does.
            let (w, strides) = if b < whole {
                (self.values[j0 * d..].as_ptr(), [PANEL as isize, 1])
            } else {
                (ev[j0 * d..].as_ptr(), [1, d as isize])
            };
            // SAFETY: columns `j0..j0 + cols` of the `[m, n]` output lie in it and no other
            // task writes them; `hv` holds `[m, d]`; a panel holds `d·PANEL` values from
            // `j0·d`, and `E`'s rows `j0..n` hold `cols·d` values from `j0·d`.
            unsafe { dst.write_product([m, d, n], [j0, cols], hv, w, strides) };
        });
        // SAFETY: the blocks cover every column, and gemm writes each output without reading it.
        let mut out = unsafe { outs.written() };
        Some(from_values(out.pop()?, [m, n]))
    }
}

/// Most outputs of a block that gemm computes as dot products of rows of `E` (its horizontal
/// kernel, which reads `E` unpacked): a block of 128 ids for 2 rows.
const DOT_PRODUCT_OUTPUTS: usize = 256;

/// Whether the head of `m` rows over `E` `[n, k]` is computed by blocks of columns, in
/// blocks that gemm packs, with at least one whole panel.
fn fits(m: usize, k: usize, n: usize) -> bool {
    m * PANEL > DOT_PRODUCT_OUTPUTS && !many_rows(m) && worth_it_transposed(m, k, n) && n >= PANEL
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Distribution, Tensor};

    use super::super::bits_differ;
    use super::super::flex::product;
    use super::HeadPanels;

    /// Logits from the panels equal the head's without them bit for bit, for SmolLM2-135M's
    /// and a world model's widths, `k` beyond gemm's depth block (1,536), a vocabulary with a
    /// partial last block of 8 ids (where gemm takes its dot-product kernel) and of 100, and
    /// 3 to 64 rows; the panels serve neither 2 rows (dot products, no packing), nor a single
    /// row, nor a training batch, and are not laid out for fewer steps than repay them.
    #[test]
    fn logits_equal_the_head_without_panels_bit_for_bit() {
        let device = Default::default();
        for (k, n) in [(576, 4096), (576, 4096 + 8), (128, 1536), (1536, 1000)] {
            let e = Tensor::<Flex, 2>::random([n, k], Distribution::Default, &device);
            for m in [3, 5, 16, 64] {
                let panels = HeadPanels::new(&e, m, 64).expect("a decoding shape");
                let h = Tensor::<Flex, 2>::random([m, k], Distribution::Default, &device);
                let got = panels.product(&h, &e).expect("served");
                let want = product(&h, &e, true).expect("split by columns");
                let (differ, len) = bits_differ(got, want);
                assert_eq!(differ, 0, "{m}×{k}×{n}: {differ} of {len} values differ");
            }
            let panels = HeadPanels::new(&e, 16, 64).unwrap();
            for m in [1, 2, 65] {
                let h = Tensor::<Flex, 2>::random([m, k], Distribution::Default, &device);
                assert!(panels.product(&h, &e).is_none(), "{m} rows");
            }
            for m in [1, 2, 256] {
                assert!(HeadPanels::new(&e, m, 64).is_none(), "{m} rows");
            }
            assert!(
                HeadPanels::new(&e, 16, 15).is_none(),
                "too few steps to repay"
            );
        }
        let small = Tensor::<Flex, 2>::random([100, 64], Distribution::Default, &device);
        assert!(
            HeadPanels::new(&small, 16, 64).is_none(),
            "no whole block of 128"
        );
    }
}
