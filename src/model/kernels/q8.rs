//! Q8_0 weights for forward passes that need no gradient: blocks of 32 consecutive inputs of
//! one output column share an `f32` scale and store `i8` values (GGUF's Q8_0 layout with a
//! full-precision scale), a quarter of the bytes of `f32`. A single row (batch-1 decoding,
//! bound by memory bandwidth) dequantizes each block in registers and multiplies it with the
//! `f32` activations; several rows dequantize a tile of output columns to `f32` once and
//! multiply it with every row through `gemm`. Output columns are split over all cores in
//! blocks whose width depends only on the shapes, so results do not depend on the thread count;
//! products that read the same activations share one such pass.

use rayon::prelude::*;

use super::{Out, column_tasks, outputs};

/// Inputs per block.
pub const BLOCK: usize = 32;
/// Lanes of the block dot product (one AVX2 register of `f32`).
const LANES: usize = 8;
/// Output columns one task computes.
const COLS_PER_TASK: usize = 64;
/// Rows from which a product dequantizes tiles of columns instead of converting every
/// weight once per row.
const TILE_ROWS: usize = 2;
/// The most `f32` values of one dequantized tile (256 KiB, within a core's L2 cache).
const TILE_FLOATS: usize = 1 << 16;

/// A `[k, n]` weight matrix in Q8_0, stored by output column.
#[derive(Clone, Debug)]
pub struct Q8Matrix {
    k: usize,
    n: usize,
    /// `n × k / BLOCK` scales, column by column.
    scales: Vec<f32>,
    /// `n × k` values, column by column.
    quants: Vec<i8>,
}

impl Q8Matrix {
    /// Quantizes `W` `[k, n]` held row-major in `data`, or, when `transposed`, `Eᵀ` for `E`
    /// `[n, k]` held row-major (a tied output head). `None` when `k` is not a multiple of
    /// [`BLOCK`] or `data` does not hold `k·n` values.
    pub fn quantize(data: &[f32], k: usize, n: usize, transposed: bool) -> Option<Self> {
        if k == 0 || !k.is_multiple_of(BLOCK) || data.len() != k * n {
            return None;
        }
        let blocks = k / BLOCK;
        let mut scales = Vec::with_capacity(n * blocks);
        let mut quants = Vec::with_capacity(n * k);
        let mut column = vec![0.0f32; k];
        for j in 0..n {
            if transposed {
                column.copy_from_slice(&data[j * k..(j + 1) * k]);
            } else {
                for (i, c) in column.iter_mut().enumerate() {
                    *c = data[i * n + j];
                }
            }
            for block in column.chunks_exact(BLOCK) {
                let amax = block.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                let scale = amax / 127.0;
                let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                scales.push(scale);
                quants.extend(block.iter().map(|v| (v * inv).round() as i8));
            }
        }
        Some(Self {
            k,
            n,
            scales,
            quants,
        })
    }

    /// Inputs (rows of `W`).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Outputs (columns of `W`).
    pub fn n(&self) -> usize {
        self.n
    }

    /// `x · W` for `x` `[m, k]` row-major: `[m, n]` row-major.
    ///
    /// # Panics
    /// When `x` does not hold `m·k` values (a bug of the caller).
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let mut out = Self::matmul_each(&[self], x, m);
        out.pop().unwrap_or_default()
    }

    /// `x · W` for every `W` of `matrices` (each with `k` inputs, such as a block's query, key
    /// and value projections), in one parallel pass: the cores share one queue of tasks
    /// instead of meeting after each product. Every task computes the same columns in the same
    /// way as in [`Q8Matrix::matmul`] of its matrix alone, so the results are identical.
    ///
    /// # Panics
    /// When `x` does not hold `m·k` values or the matrices' input widths differ (a bug of the
    /// caller).
    pub fn matmul_each(matrices: &[&Q8Matrix], x: &[f32], m: usize) -> Vec<Vec<f32>> {
        let k = matrices.first().map_or(0, |w| w.k);
        assert!(
            matrices.iter().all(|w| w.k == k),
            "Q8 matmul: matrices of different input widths"
        );
        assert_eq!(x.len(), m * k, "Q8 matmul: x is not [{m}, {k}]");
        let (outs, dsts) = outputs(m, matrices.iter().map(|w| w.n));
        let tiled = m >= TILE_ROWS;
        let tasks = column_tasks(
            matrices
                .iter()
                .map(|w| (w.n, if tiled { w.tile_cols() } else { COLS_PER_TASK })),
        );
        let avx2 = has_avx2_fma();
        tasks
            .par_iter()
            .for_each_init(Vec::new, |tile: &mut Vec<f32>, &(p, j0, width)| {
                let (w, dst) = (matrices[p], &dsts[p]);
                if tiled {
                    w.tile_product(x, m, [j0, width], dst, tile, avx2);
                } else {
                    w.dot_columns(x, m, [j0, width], dst, avx2);
                }
            });
        // SAFETY: the tasks cover every column of every matrix, and both ways of computing a
        // block write each of its outputs.
        unsafe { outs.written() }
    }

    /// Columns `j0..j0 + width` of `x · W` into `dst` (`[m, n]` row-major), one block dot
    /// product per element.
    fn dot_columns(&self, x: &[f32], m: usize, [j0, width]: [usize; 2], dst: &Out, avx2: bool) {
        let (k, n) = (self.k, self.n);
        let blocks = k / BLOCK;
        for j in j0..j0 + width {
            let scales = &self.scales[j * blocks..(j + 1) * blocks];
            let quants = &self.quants[j * k..(j + 1) * k];
            for r in 0..m {
                let xr = &x[r * k..(r + 1) * k];
                let v = if avx2 {
                    // SAFETY: the CPU has AVX2 and FMA (checked by the caller).
                    unsafe { dot_avx2(scales, quants, xr) }
                } else {
                    dot(scales, quants, xr)
                };
                // SAFETY: `r < m`, `j < n`: inside the output; column `j` belongs to this
                // task only.
                unsafe { *dst.at(r * n + j) = v };
            }
        }
    }

    /// Output columns of one dequantized tile: as many as fit [`TILE_FLOATS`], a multiple of
    /// 8 between 8 and [`COLS_PER_TASK`].
    fn tile_cols(&self) -> usize {
        (TILE_FLOATS / self.k / 8 * 8).clamp(8, COLS_PER_TASK)
    }

    /// Column `j` of `W` in `f32`, written to `column` (`k` values).
    fn dequantize_column(&self, j: usize, column: &mut [f32], avx2: bool) {
        let k = self.k;
        let blocks = k / BLOCK;
        let scales = &self.scales[j * blocks..(j + 1) * blocks];
        let quants = &self.quants[j * k..(j + 1) * k];
        if avx2 {
            // SAFETY: the caller checked that the CPU has AVX2 and FMA.
            unsafe { dequantize_avx2(scales, quants, column) }
        } else {
            dequantize(scales, quants, column);
        }
    }

    /// Columns `j0..j0 + width` of `x · W` into `dst` (`[m, n]` row-major) for
    /// `m ≥ TILE_ROWS`: the tile of columns, `[width, k]`, dequantized into `tile` once and
    /// multiplied with every row of `x`.
    fn tile_product(
        &self,
        x: &[f32],
        m: usize,
        [j0, width]: [usize; 2],
        dst: &Out,
        tile: &mut Vec<f32>,
        avx2: bool,
    ) {
        let (k, n) = (self.k, self.n);
        tile.resize(width * k, 0.0);
        for (c, column) in tile.chunks_exact_mut(k).enumerate() {
            self.dequantize_column(j0 + c, column, avx2);
        }
        // SAFETY: rows `0..m` and columns `j0..j0 + width` of `dst` (row stride n) lie in the
        // output; `x` holds `m·k` values (checked by the caller) and `tile` holds column `c`
        // at `c·k..(c + 1)·k`; no two tasks write the same element.
        unsafe {
            dst.write_product([m, k, n], [j0, width], x, tile.as_ptr(), [1, k as isize]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx2_fma() -> bool {
    false
}

/// [`dot`] compiled for AVX2 (the same operations in the same order, so the same result).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(scales: &[f32], quants: &[i8], x: &[f32]) -> f32 {
    dot(scales, quants, x)
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn dot_avx2(scales: &[f32], quants: &[i8], x: &[f32]) -> f32 {
    dot(scales, quants, x)
}

/// [`dequantize`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dequantize_avx2(scales: &[f32], quants: &[i8], out: &mut [f32]) {
    dequantize(scales, quants, out);
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn dequantize_avx2(scales: &[f32], quants: &[i8], out: &mut [f32]) {
    dequantize(scales, quants, out);
}

/// `out_bi = scale_b · q_bi`, block by block.
#[inline(always)]
fn dequantize(scales: &[f32], quants: &[i8], out: &mut [f32]) {
    for ((out, qs), &scale) in out
        .chunks_exact_mut(BLOCK)
        .zip(quants.chunks_exact(BLOCK))
        .zip(scales)
    {
        for (o, &q) in out.iter_mut().zip(qs) {
            *o = scale * f32::from(q);
        }
    }
}

/// `Σ_b scale_b · Σ_i q_bi · x_bi` with [`LANES`] independent partial sums, so the compiler
/// keeps them in one vector register.
#[inline(always)]
fn dot(scales: &[f32], quants: &[i8], x: &[f32]) -> f32 {
    let mut total = [0.0f32; LANES];
    for ((qs, xs), &scale) in quants
        .chunks_exact(BLOCK)
        .zip(x.chunks_exact(BLOCK))
        .zip(scales)
    {
        let mut acc = [0.0f32; LANES];
        for (q, v) in qs.chunks_exact(LANES).zip(xs.chunks_exact(LANES)) {
            for l in 0..LANES {
                acc[l] += f32::from(q[l]) * v[l];
            }
        }
        for l in 0..LANES {
            total[l] += scale * acc[l];
        }
    }
    total.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, salt: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) ^ salt) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    fn exact(x: &[f32], w: &[f32], m: usize, k: usize, n: usize, transposed: bool) -> Vec<f32> {
        let at = |i: usize, j: usize| {
            if transposed {
                w[j * k + i]
            } else {
                w[i * n + j]
            }
        };
        (0..m * n)
            .map(|o| (0..k).map(|i| x[(o / n) * k + i] * at(i, o % n)).sum())
            .collect()
    }

    #[test]
    fn products_match_f32_within_the_quantization_error() {
        let (m, k, n) = (3, 96, 130);
        let x = values(m * k, 3);
        let w = values(k * n, 5);
        for transposed in [false, true] {
            let q = Q8Matrix::quantize(&w, k, n, transposed).unwrap();
            let got = q.matmul(&x, m);
            let want = exact(&x, &w, m, k, n, transposed);
            // Each weight is off by at most half a step (amax/254 ≤ 1/254); |x| ≤ 1.
            let bound = k as f32 / 254.0;
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < bound, "transposed {transposed}: {worst} ≥ {bound}");
            let mean = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs())
                .sum::<f32>()
                / got.len() as f32;
            assert!(mean < 0.05, "transposed {transposed}: mean error {mean}");
        }
    }

    #[test]
    fn tiles_of_columns_equal_one_dot_product_per_row() {
        // 300 columns: several tiles, the last one narrower; k = 2048 gives 32-column tiles.
        for (k, n) in [(96, 300), (2048, 70)] {
            let m = 5;
            let x = values(m * k, 17);
            let q = Q8Matrix::quantize(&values(k * n, 19), k, n, false).unwrap();
            let tiled = q.matmul(&x, m);
            for r in 0..m {
                let row = q.matmul(&x[r * k..(r + 1) * k], 1);
                for (j, (t, d)) in tiled[r * n..(r + 1) * n].iter().zip(&row).enumerate() {
                    assert!(
                        (t - d).abs() <= 1e-4 * (1.0 + d.abs()),
                        "k {k}, row {r}, column {j}: tiled {t} vs dot {d}"
                    );
                }
            }
        }
    }

    #[test]
    fn one_pass_over_several_matrices_equals_their_own_products() {
        // A block's query, key and value projections (576 and 192 columns), and widths that
        // leave a narrower last task or tile.
        let k = 96;
        let widths = [130, 64, 200];
        let ws: Vec<Q8Matrix> = widths
            .iter()
            .enumerate()
            .map(|(i, &n)| Q8Matrix::quantize(&values(k * n, 23 + i as u32), k, n, false).unwrap())
            .collect();
        let refs: Vec<&Q8Matrix> = ws.iter().collect();
        for m in [1, 2, 5] {
            let x = values(m * k, 29);
            let each = Q8Matrix::matmul_each(&refs, &x, m);
            for (w, got) in ws.iter().zip(&each) {
                let alone = w.matmul(&x, m);
                assert_eq!(got.len(), m * w.n());
                assert!(
                    got.iter()
                        .zip(&alone)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "m {m}, n {}: the shared pass differs from the matrix's own product",
                    w.n()
                );
            }
        }
    }

    #[test]
    fn zero_blocks_stay_zero_and_steps_of_the_scale_are_exact() {
        let k = 2 * BLOCK;
        // Column 0: zeros. Column 1: 96/127 ..= 127/127 in every block, so the scale is 1/127
        // and every value is a whole number of steps.
        let mut w = vec![0.0f32; k * 2];
        for i in 0..k {
            w[i * 2 + 1] = (96 + i % BLOCK) as f32 / 127.0;
        }
        let q = Q8Matrix::quantize(&w, k, 2, false).unwrap();
        assert_eq!(&q.quants[..k], &[0i8; 2 * BLOCK][..]);
        let steps: Vec<i8> = (0..k).map(|i| (96 + i % BLOCK) as i8).collect();
        assert_eq!(&q.quants[k..], &steps[..]);
        let mut x = vec![0.0f32; k];
        x[5] = 1.0;
        let y = q.matmul(&x, 1);
        assert_eq!(y[0], 0.0);
        assert!((y[1] - 101.0 / 127.0).abs() < 1e-6, "{}", y[1]);
        assert!(
            Q8Matrix::quantize(&w[..k], k / 2 + 1, 2, false).is_none(),
            "k not a multiple of 32"
        );
    }

    #[test]
    fn the_vector_path_equals_the_plain_one() {
        let k = 4 * BLOCK;
        let w = values(k, 9);
        let x = values(k, 13);
        let q = Q8Matrix::quantize(&w, k, 1, false).unwrap();
        let plain = dot(&q.scales, &q.quants, &x);
        if has_avx2_fma() {
            // SAFETY: checked just above.
            assert_eq!(unsafe { dot_avx2(&q.scales, &q.quants, &x) }, plain);
        }
        assert_eq!(q.matmul(&x, 1), vec![plain]);
    }
}
