//! The projections that batch-1 decoding runs alone (every token a single prompt's rollout,
//! simulated output or judge sample draws in the paper's §3 pipeline): `x · W` for one row
//! `x`, which gemm computes with its matrix-vector kernel streaming `W` `[k, n]` row by row.
//! Such a step is bound by how fast the weights stream from memory. The projections that read
//! the same input share one pass ([`super::matmul`]), each streaming its own `W` on its own
//! core; the attention output and MLP down projections have no partner and ran on one core,
//! which streams about three quarters of what two do. Cutting their columns between cores
//! does not help: each core then reads a few hundred bytes of every row of `W` and jumps to
//! the next, and the hardware prefetcher stops at each jump. [`ColumnPanels`] lays `W`'s
//! columns out as one contiguous panel `[k, width]` per core, once per generation call, and
//! each core streams its panel in order. The matrix-vector kernel sums every output over `k`
//! in the same order for any number of columns, so the values are bit-identical to the
//! product of the whole `W`.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rayon::prelude::*;

use super::flex::{flex_f32, from_values, rows};
use super::{Out, new_in_chunks, outputs};

/// Fewest multiply-adds of a single row's product for which the panels are laid out: below it
/// `W` fits in the caches (a world model's projections), so its reads are not what bounds a
/// step, and a parallel pass costs more than it saves.
const MIN_WORK: usize = 1 << 18;
/// Fewest decoding steps a generation call runs for which the panels are laid out: for
/// SmolLM2-135M on a 2-core AMD EPYC, laying out all its output and down projections takes
/// about 50 ms and saves about 2 ms per step, repaid after about 24 steps.
const MIN_STEPS: usize = 32;
/// Fewest columns of a panel: narrower ones would leave the matrix-vector kernel's vector
/// lanes idle, and a many-core machine gets fewer panels than cores instead.
const MIN_COLS: usize = 64;

/// `W`'s columns cut into consecutive panels of `width` columns (the last may be narrower),
/// each laid out `[k, width]` row-major, one after another.
#[derive(Debug)]
pub struct ColumnPanels {
    values: Vec<f32>,
    /// Rows of `W` (the product's inner size).
    k: usize,
    /// Columns of `W`.
    n: usize,
    /// Columns of a panel.
    width: usize,
}

impl ColumnPanels {
    /// The panels of `w` (`[k, n]`), one per core (fewer where a panel would have fewer than
    /// [`MIN_COLS`] columns), for a generation call of `steps` decoding steps of one row each:
    /// on the Flex backend with `f32` values, when there are at least two panels, the product
    /// is large enough ([`MIN_WORK`]) and the steps repay the layout ([`MIN_STEPS`]). `None`
    /// otherwise (the product is computed from `w`).
    pub(crate) fn new<B: Backend>(w: &Tensor<B, 2>, steps: usize) -> Option<Self> {
        Self::with_panels(w, steps, rayon::current_num_threads())
    }

    /// [`Self::new`] with up to `count` panels.
    fn with_panels<B: Backend>(w: &Tensor<B, 2>, steps: usize, count: usize) -> Option<Self> {
        let [k, n] = w.dims();
        let count = count.min(n / MIN_COLS);
        if steps < MIN_STEPS || count < 2 || k.saturating_mul(n) < MIN_WORK {
            return None;
        }
        let wf = flex_f32(w)?;
        let wv = rows(&wf, k * n)?;
        let width = n.div_ceil(count);
        let values = new_in_chunks(k * n, k * width, |first, panel| {
            let (j0, cols) = (first / k, panel.len() / k);
            for (i, row) in panel.chunks_exact_mut(cols).enumerate() {
                row.copy_from_slice(&wv[i * n + j0..i * n + j0 + cols]);
            }
        });
        Some(Self {
            values,
            k,
            n,
            width,
        })
    }

    /// `x · W` for a single row `x` `[1, k]` and `w` the `W` these panels were laid out from,
    /// each panel's columns computed on its own core. `None` for more rows or other shapes
    /// (the caller computes the product from `w`).
    pub(crate) fn product<B: Backend>(
        &self,
        x: &Tensor<B, 2>,
        w: &Tensor<B, 2>,
    ) -> Option<Tensor<B, 2>> {
        let (k, n) = (self.k, self.n);
        if x.dims() != [1, k] || w.dims() != [k, n] {
            return None;
        }
        let xf = flex_f32(x)?;
        let xv = rows(&xf, k)?;
        let (outs, dsts) = outputs(1, std::iter::once(n));
        let dst: &Out = &dsts[0];
        (0..n.div_ceil(self.width)).into_par_iter().for_each(|p| {
            let j0 = p * self.width;
            let cols = self.width.min(n - j0);
            // SAFETY: columns `j0..j0 + cols` of the `[1, n]` output lie in it and no other
            // task writes them; `xv` holds `k` values; panel `p` holds `k·cols` values from
            // `k·j0`, its row `i` at `i·cols`.
            unsafe {
                dst.write_product(
                    [1, k, n],
                    [j0, cols],
                    xv,
                    self.values[k * j0..].as_ptr(),
                    [cols as isize, 1],
                );
            }
        });
        // SAFETY: the panels cover every column, and gemm writes each output without reading it.
        let mut out = unsafe { outs.written() };
        Some(from_values(out.pop()?, [1, n]))
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Distribution, Tensor};

    use super::super::bits_differ;
    use super::{ColumnPanels, MIN_STEPS};

    /// The product from the panels equals burn's product of the whole `W` bit for bit, for
    /// SmolLM2-135M's output and down projections, widths that do not divide evenly, `k`
    /// beyond gemm's depth block, and two to sixteen panels (nine of 64 columns where sixteen
    /// would be narrower); the panels serve no more than one row, and are not laid out for
    /// small products, few steps, a single core or a matrix too narrow for two panels.
    #[test]
    fn a_single_row_from_panels_equals_burns_product_bit_for_bit() {
        let device = Default::default();
        for (k, n) in [
            (576, 576),
            (1536, 576),
            (576, 1536),
            (896, 4864),
            (700, 1001),
        ] {
            let w = Tensor::<Flex, 2>::random([k, n], Distribution::Default, &device);
            for count in [2, 3, 16] {
                let panels = ColumnPanels::with_panels(&w, 64, count).expect("a large product");
                for _ in 0..3 {
                    let x = Tensor::<Flex, 2>::random([1, k], Distribution::Default, &device);
                    let got = panels.product(&x, &w).expect("one row");
                    let (differ, len) = bits_differ(got, x.matmul(w.clone()));
                    assert_eq!(
                        differ, 0,
                        "{k}×{n} in {count}: {differ} of {len} values differ"
                    );
                }
                let two = Tensor::<Flex, 2>::random([2, k], Distribution::Default, &device);
                assert!(panels.product(&two, &w).is_none(), "two rows");
            }
            assert!(ColumnPanels::with_panels(&w, MIN_STEPS - 1, 2).is_none());
            assert!(ColumnPanels::with_panels(&w, 64, 1).is_none());
        }
        let small = Tensor::<Flex, 2>::random([128, 128], Distribution::Default, &device);
        assert!(ColumnPanels::with_panels(&small, 64, 2).is_none());
        let narrow = Tensor::<Flex, 2>::random([4096, 100], Distribution::Default, &device);
        assert!(ColumnPanels::with_panels(&narrow, 64, 2).is_none());
        let w = Tensor::<Flex, 2>::random([576, 576], Distribution::Default, &device);
        let panels = ColumnPanels::with_panels(&w, 64, 16).expect("a large product");
        assert_eq!(panels.width, 64, "nine panels of 64 columns");
    }
}
