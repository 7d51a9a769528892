//! The gate of the decoder's SwiGLU feed-forward, `silu(g) ⊙ u`, in one pass over both
//! operands and spread over all cores. Each element is computed with exactly the operations of
//! burn's `silu(g) * u` on the Flex backend (its two-sided logistic, then two products in the
//! same order), so results are bit-identical to it; only the passes, the allocations and the
//! single core go.

use rayon::prelude::*;

/// Elements one task computes.
const CHUNK: usize = 1 << 14;

/// The logistic function as burn-flex computes it: `exp` of a non-positive number only, so it
/// never overflows.
#[inline]
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Overwrites `gate` with `silu(gate) ⊙ up`.
///
/// # Panics
/// When the two slices differ in length (a bug of the caller).
pub(super) fn swiglu_in_place(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "swiglu: operands differ in length");
    gate.par_chunks_mut(CHUNK)
        .zip(up.par_chunks(CHUNK))
        .for_each(|(g, u)| {
            for (g, &u) in g.iter_mut().zip(u) {
                *g = *g * sigmoid(*g) * u;
            }
        });
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::Tensor;
    use burn::tensor::activation::silu;

    use super::swiglu_in_place;

    #[test]
    fn equals_burns_silu_times_up_bit_for_bit() {
        // Large and small magnitudes of both signs, zeros, and more than one task's chunk.
        let n = 3 * super::CHUNK + 17;
        let g: Vec<f32> = (0..n)
            .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 40.0 / (1 + i % 7) as f32)
            .collect();
        let u: Vec<f32> = (0..n)
            .map(|i| ((i as f32 * 0.414_213).fract() - 0.5) * 6.0)
            .collect();
        let device = Default::default();
        let want = (silu(Tensor::<Flex, 1>::from_floats(g.as_slice(), &device))
            * Tensor::<Flex, 1>::from_floats(u.as_slice(), &device))
        .into_data()
        .to_vec::<f32>()
        .unwrap();
        let mut got = g.clone();
        swiglu_in_place(&mut got, &u);
        let differ = got
            .iter()
            .zip(&want)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differ, 0, "{differ} of {n} elements differ from burn's");
    }
}
