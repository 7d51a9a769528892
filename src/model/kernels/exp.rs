//! `exp` over runs of `f32` values, eight or four lanes at a time, for the logistic of the SwiGLU gate,
//! attention's softmax and log-softmax (every forward pass of the paper's §3 pipeline). Each
//! value comes out bit-identical to the C library's scalar `expf`, which the Flex backend and
//! these kernels otherwise call once per element: on x86-64 Linux with glibc, a CPU with AVX2
//! and FMA runs glibc's `expf` as its FMA build, and this kernel evaluates the same algorithm
//! with the same fused and unfused steps on vector registers: four lanes at a time with AVX2,
//! eight with AVX-512 (where the 32-entry table is looked up in registers, not gathered). Arguments outside the range that
//! algorithm's main path covers (|x| ≥ 88, NaN) take the scalar `expf`, except those below
//! [`ZERO_BELOW`], whose result is exactly +0; everywhere else (other CPUs, other C
//! libraries) every value takes the scalar `expf`.
//!
//! The algorithm: with `N` = 32 and `z = x · N / ln 2` rounded to the integer `k`, `exp(x) =
//! 2^(k/N) · 2^(r/N)` for `r = z − k`; `2^(k/N)` is an exponent shift of a 32-entry table of
//! `2^(i/N)` and `2^(r/N)` a cubic polynomial, both in `f64`, and the product is rounded to
//! `f32` once.

/// Arguments below this have an `expf` of exactly +0 (`exp(x)` is below half the smallest
/// subnormal `f32`).
pub(super) const ZERO_BELOW: f32 = f32::from_bits(0xc2cf_f1b4); // −0x1.9fe368p6 ≈ −103.97

/// Replaces every value `x` with `x.exp()`, bit for bit.
pub(super) fn exp_in_place(values: &mut [f32]) {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    if vectorized() {
        if wide() {
            // SAFETY: `vectorized` and `wide` have checked AVX2, FMA and AVX-512F.
            unsafe { fma::exp_in_place_wide(values) };
        } else {
            // SAFETY: `vectorized` has checked that this CPU has AVX2 and FMA.
            unsafe { fma::exp_in_place(values) };
        }
        return;
    }
    for v in values {
        *v = v.exp();
    }
}

/// Whether [`exp_in_place`] runs on vector registers on this machine.
pub(super) fn vectorized() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Whether the vector path runs eight lanes at a time (AVX-512F) on this machine.
#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
fn wide() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
mod fma {
    use std::arch::x86_64::*;

    /// `N / ln 2`.
    const INV_LN2_N: f64 = f64::from_bits(0x4047_1547_652b_82fe);
    /// `1.5 · 2^52`: adding it rounds a value below 2^51 to an integer in the low bits.
    const SHIFT: f64 = f64::from_bits(0x4338_0000_0000_0000);
    /// The cubic's coefficients of `r³`, `r²` and `r` (the constant term is 1).
    const C: [f64; 3] = [
        f64::from_bits(0x3ebc_6af8_4b91_2394),
        f64::from_bits(0x3f2e_bfce_50fa_c4f3),
        f64::from_bits(0x3f96_2e42_ff0c_52d6),
    ];
    /// The bits of `2^(i/32)` less `i · 2^47`, so that adding `k · 2^47` to entry `k mod 32`
    /// gives the bits of `2^(k/32)`.
    static TABLE: [u64; 32] = [
        0x3ff0000000000000,
        0x3fefd9b0d3158574,
        0x3fefb5586cf9890f,
        0x3fef9301d0125b51,
        0x3fef72b83c7d517b,
        0x3fef54873168b9aa,
        0x3fef387a6e756238,
        0x3fef1e9df51fdee1,
        0x3fef06fe0a31b715,
        0x3feef1a7373aa9cb,
        0x3feedea64c123422,
        0x3feece086061892d,
        0x3feebfdad5362a27,
        0x3feeb42b569d4f82,
        0x3feeab07dd485429,
        0x3feea47eb03a5585,
        0x3feea09e667f3bcd,
        0x3fee9f75e8ec5f74,
        0x3feea11473eb0187,
        0x3feea589994cce13,
        0x3feeace5422aa0db,
        0x3feeb737b0cdc5e5,
        0x3feec49182a3f090,
        0x3feed503b23e255d,
        0x3feee89f995ad3ad,
        0x3feeff76f2fb5e47,
        0x3fef199bdd85529c,
        0x3fef3720dcef9069,
        0x3fef5818dcfba487,
        0x3fef7c97337b9b5f,
        0x3fefa4afa2a490da,
        0x3fefd0765b6e4540,
    ];
    /// The top twelve bits of |x| (exponent and three mantissa bits) from which the main path
    /// no longer applies: |x| ≥ 88.
    const SPECIAL_ABSTOP: i32 = 0x42b;

    /// [`super::exp_in_place`] on AVX2 and FMA.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_in_place(values: &mut [f32]) {
        let mut quads = values.chunks_exact_mut(4);
        for quad in &mut quads {
            // SAFETY: `quad` and `x` hold four `f32` each, which the unaligned loads and stores
            // read and write; the caller guarantees the features.
            unsafe {
                let arg = _mm_loadu_ps(quad.as_ptr());
                let (y, special) = exp4(arg);
                _mm_storeu_ps(quad.as_mut_ptr(), y);
                if special != 0 {
                    let mut x = [0.0f32; 4];
                    _mm_storeu_ps(x.as_mut_ptr(), arg);
                    for (lane, (out, x)) in quad.iter_mut().zip(x).enumerate() {
                        if special & (1 << lane) != 0 {
                            *out = x.exp();
                        }
                    }
                }
            }
        }
        for v in quads.into_remainder() {
            *v = v.exp();
        }
    }

    /// [`super::exp_in_place`] on AVX-512F, eight values at a time; the last seven or fewer
    /// take [`exp_in_place`].
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and AVX-512F.
    #[target_feature(enable = "avx2,fma,avx512f")]
    pub(super) unsafe fn exp_in_place_wide(values: &mut [f32]) {
        // The table's halves, entries 0–15 and 16–31, for in-register lookups.
        // SAFETY: each half is 8 + 8 `u64` of the 32-entry table.
        let halves =
            unsafe { [0, 8, 16, 24].map(|i| _mm512_loadu_si512(TABLE[i..].as_ptr().cast())) };
        let mut octs = values.chunks_exact_mut(8);
        for oct in &mut octs {
            // SAFETY: `oct` and `x` hold eight `f32` each, which the unaligned loads and
            // stores read and write; the caller guarantees the features.
            unsafe {
                let arg = _mm256_loadu_ps(oct.as_ptr());
                let (y, special) = exp8(arg, &halves);
                _mm256_storeu_ps(oct.as_mut_ptr(), y);
                if special != 0 {
                    let mut x = [0.0f32; 8];
                    _mm256_storeu_ps(x.as_mut_ptr(), arg);
                    for (lane, (out, x)) in oct.iter_mut().zip(x).enumerate() {
                        if special & (1 << lane) != 0 {
                            *out = x.exp();
                        }
                    }
                }
            }
        }
        // SAFETY: the caller guarantees AVX2 and FMA.
        unsafe { exp_in_place(octs.into_remainder()) };
    }

    /// [`exp4`] on eight lanes, the table entry of each picked from `halves` (entries 0–7,
    /// 8–15, 16–23 and 24–31) by two two-register permutes.
    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f")]
    fn exp8(x: __m256, halves: &[__m512i; 4]) -> (__m256, i32) {
        let xd = _mm512_cvtps_pd(x);
        let shifted = _mm512_fmadd_pd(_mm512_set1_pd(INV_LN2_N), xd, _mm512_set1_pd(SHIFT));
        let ki = _mm512_castpd_si512(shifted);
        let kd = _mm512_sub_pd(shifted, _mm512_set1_pd(SHIFT));
        let r = _mm512_fmsub_pd(_mm512_set1_pd(INV_LN2_N), xd, kd);
        // Bits 0–3 of the index pick an entry of a 16-entry half, bit 4 the half.
        let low = _mm512_permutex2var_epi64(halves[0], ki, halves[1]);
        let high = _mm512_permutex2var_epi64(halves[2], ki, halves[3]);
        let upper = _mm512_test_epi64_mask(ki, _mm512_set1_epi64(16));
        let entry = _mm512_mask_blend_epi64(upper, low, high);
        let s = _mm512_castsi512_pd(_mm512_add_epi64(entry, _mm512_slli_epi64::<47>(ki)));
        let z = _mm512_fmadd_pd(r, _mm512_set1_pd(C[0]), _mm512_set1_pd(C[1]));
        let r2 = _mm512_mul_pd(r, r);
        let y = _mm512_fmadd_pd(r, _mm512_set1_pd(C[2]), _mm512_set1_pd(1.0));
        let y = _mm512_fmadd_pd(z, r2, y);
        let y = _mm512_cvtpd_ps(_mm512_mul_pd(y, s));
        let zero = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(super::ZERO_BELOW));
        let top = _mm256_and_si256(
            _mm256_srli_epi32::<20>(_mm256_castps_si256(x)),
            _mm256_set1_epi32(0x7ff),
        );
        let outside = _mm256_cmpgt_epi32(top, _mm256_set1_epi32(SPECIAL_ABSTOP - 1));
        let special = _mm256_andnot_si256(_mm256_castps_si256(zero), outside);
        (
            _mm256_andnot_ps(zero, y),
            _mm256_movemask_ps(_mm256_castsi256_ps(special)),
        )
    }

    /// `exp` of four lanes by the main path, lanes below [`super::ZERO_BELOW`] set to +0, and
    /// a bit mask of the lanes the main path does not cover (|x| ≥ 88 and not below
    /// [`super::ZERO_BELOW`], or NaN), whose results the caller replaces.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn exp4(x: __m128) -> (__m128, i32) {
        let xd = _mm256_cvtps_pd(x);
        let shifted = _mm256_fmadd_pd(_mm256_set1_pd(INV_LN2_N), xd, _mm256_set1_pd(SHIFT));
        let ki = _mm256_castpd_si256(shifted);
        let kd = _mm256_sub_pd(shifted, _mm256_set1_pd(SHIFT));
        let r = _mm256_fmsub_pd(_mm256_set1_pd(INV_LN2_N), xd, kd);
        let index = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
        // SAFETY: every index is below 32, the table's length.
        let entry = unsafe { _mm256_i64gather_epi64::<8>(TABLE.as_ptr().cast(), index) };
        let s = _mm256_castsi256_pd(_mm256_add_epi64(entry, _mm256_slli_epi64::<47>(ki)));
        let z = _mm256_fmadd_pd(r, _mm256_set1_pd(C[0]), _mm256_set1_pd(C[1]));
        let r2 = _mm256_mul_pd(r, r);
        let y = _mm256_fmadd_pd(r, _mm256_set1_pd(C[2]), _mm256_set1_pd(1.0));
        let y = _mm256_fmadd_pd(z, r2, y);
        let y = _mm256_cvtpd_ps(_mm256_mul_pd(y, s));
        let zero = _mm_cmplt_ps(x, _mm_set1_ps(super::ZERO_BELOW));
        let top = _mm_and_si128(
            _mm_srli_epi32::<20>(_mm_castps_si128(x)),
            _mm_set1_epi32(0x7ff),
        );
        let outside = _mm_cmpgt_epi32(top, _mm_set1_epi32(SPECIAL_ABSTOP - 1));
        let special = _mm_andnot_si128(_mm_castps_si128(zero), outside);
        (
            _mm_andnot_ps(zero, y),
            _mm_movemask_ps(_mm_castsi128_ps(special)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value of `inputs` through `exp` (an in-place `exp`), against `f32::exp` bit for
    /// bit (NaN against NaN); returns the inputs that differ.
    fn differing(inputs: &[f32], exp: impl Fn(&mut [f32])) -> Vec<f32> {
        let mut out = inputs.to_vec();
        exp(&mut out);
        inputs
            .iter()
            .zip(&out)
            .filter(|(x, y)| {
                let want = x.exp();
                !(want.to_bits() == y.to_bits() || (want.is_nan() && y.is_nan()))
            })
            .map(|(x, _)| *x)
            .collect()
    }

    #[test]
    fn equals_the_c_librarys_expf_bit_for_bit() {
        #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
        assert_eq!(
            vectorized(),
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma"),
            "the vector path runs wherever the CPU has AVX2 and FMA"
        );
        // Every 997th bit pattern (all signs, exponents, subnormals, infinities and NaNs),
        // every value where the paths meet and results turn subnormal, then to 0 (−105 to
        // −86), every 7th around 88, and every 97th of ±(10⁻⁴ to 10⁻³).
        let mut inputs: Vec<f32> = (0..=u32::MAX).step_by(997).map(f32::from_bits).collect();
        for (lo, hi, step) in [
            (-86.0f32, -105.0f32, 1),
            (86.0, 89.0, 7),
            (-1e-4, -1e-3, 97),
            (1e-4, 1e-3, 97),
        ] {
            // Bits grow with magnitude within one sign.
            inputs.extend(
                (lo.to_bits()..=hi.to_bits())
                    .step_by(step)
                    .map(f32::from_bits),
            );
        }
        inputs.extend([
            ZERO_BELOW,
            f32::from_bits(ZERO_BELOW.to_bits() - 1),
            f32::from_bits(ZERO_BELOW.to_bits() + 1),
            88.0,
            -88.0,
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NAN,
            0.0,
            -0.0,
            1.0,
        ]);
        // Odd lengths: the last values take the scalar remainder.
        inputs.push(0.5);
        assert!(inputs.len() > 5_000_000);
        let differ = differing(&inputs, exp_in_place);
        assert!(
            differ.is_empty(),
            "{} of {} values differ from expf, e.g. {:?}",
            differ.len(),
            inputs.len(),
            &differ[..differ.len().min(8)]
        );
        // Where the eight-lane path runs, the four-lane one too.
        #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
        if vectorized() && wide() {
            // SAFETY: `vectorized` has checked AVX2 and FMA.
            let differ = differing(&inputs, |v| unsafe { fma::exp_in_place(v) });
            assert!(
                differ.is_empty(),
                "four lanes: {} values differ",
                differ.len()
            );
        }
        let mut below = [ZERO_BELOW - 1.0; 4];
        exp_in_place(&mut below);
        assert_eq!(below.map(f32::to_bits), [0; 4], "below the cut-off: +0");
    }
}
