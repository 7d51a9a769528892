//! Dequantization of ggml tensor data to f32, bit for bit as ggml's reference decoders.
//!
//! The float types convert element by element; each quantized format is a typed block in the
//! style of candle's `k_quants`: one struct per ggml block layout holding its fields (scales,
//! minimums, packed quants), read from a block's bytes, with its own `dequantize`.

use half::{bf16, f16};

use super::{GgmlType, GgufError};

/// Dequantizes `n_elements` values of type `ty` stored in `bytes` (exactly their size).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>, GgufError> {
    dequantize_into(ty, bytes, n_elements, &|| "dequantize".to_string())
}

/// [`dequantize`], with `what` naming the data in errors.
pub(super) fn dequantize_into(
    ty: GgmlType,
    bytes: &[u8],
    n_elements: usize,
    what: &dyn Fn() -> String,
) -> Result<Vec<f32>, GgufError> {
    let Some(expected) = ty.byte_size(n_elements) else {
        return Err(GgufError::BlockMismatch {
            what: what(),
            ty: ty.name(),
            n_elements,
            block: ty.block_size(),
        });
    };
    if bytes.len() != expected {
        return Err(GgufError::ByteLength {
            what: what(),
            ty: ty.name(),
            n_elements,
            expected,
            found: bytes.len(),
        });
    }
    let mut out = vec![0f32; n_elements];
    match ty {
        GgmlType::F32 => f32_from_le(&mut out, bytes),
        GgmlType::F16 => f16_to_f32(&mut out, bytes),
        GgmlType::BF16 => bf16_to_f32(&mut out, bytes),
        GgmlType::Q4_0 => dequantize_blocks::<BlockQ4_0>(&mut out, bytes),
        GgmlType::Q4_1 => dequantize_blocks::<BlockQ4_1>(&mut out, bytes),
        GgmlType::Q5_0 => dequantize_blocks::<BlockQ5_0>(&mut out, bytes),
        GgmlType::Q8_0 => dequantize_blocks::<BlockQ8_0>(&mut out, bytes),
        GgmlType::Q4_K => dequantize_blocks::<BlockQ4K>(&mut out, bytes),
        GgmlType::Q6_K => dequantize_blocks::<BlockQ6K>(&mut out, bytes),
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Float types
// ---------------------------------------------------------------------------------------------

/// Little-endian f32 values.
fn f32_from_le(out: &mut [f32], bytes: &[u8]) {
    for (y, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// Little-endian IEEE half-precision values.
fn f16_to_f32(out: &mut [f32], bytes: &[u8]) {
    for (y, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *y = f16_le(b).to_f32();
    }
}

/// Little-endian bfloat16 values.
fn bf16_to_f32(out: &mut [f32], bytes: &[u8]) {
    for (y, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *y = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
    }
}

/// The f16 stored little-endian in the first two bytes of `b`.
#[inline]
fn f16_le(b: &[u8]) -> f16 {
    f16::from_bits(u16::from_le_bytes([b[0], b[1]]))
}

/// The `N` bytes of `b` (exactly `N` long) as an array.
#[inline]
fn bytes<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(b);
    out
}

// ---------------------------------------------------------------------------------------------
// Quantized blocks
// ---------------------------------------------------------------------------------------------

/// One block of a ggml quantized format.
trait QuantBlock: Sized {
    /// The ggml type stored in blocks of this layout.
    const TYPE: GgmlType;
    /// Values per block.
    const VALUES: usize = Self::TYPE.block_size();
    /// Bytes per block.
    const BYTES: usize = Self::TYPE.type_size();

    /// The block stored in `b` (exactly [`QuantBlock::BYTES`] bytes).
    fn read(b: &[u8]) -> Self;

    /// Writes the block's [`QuantBlock::VALUES`] values to `out`.
    fn dequantize(&self, out: &mut [f32]);
}

/// Decodes every block of `data` into `out` (whole blocks, sizes checked by the caller).
fn dequantize_blocks<Q: QuantBlock>(out: &mut [f32], data: &[u8]) {
    for (y, b) in out
        .chunks_exact_mut(Q::VALUES)
        .zip(data.chunks_exact(Q::BYTES))
    {
        Q::read(b).dequantize(y);
    }
}

/// `Q4_0`: 32 values; scale `d`, 16 bytes of 4-bit `q` (value `j` in the low nibble of byte
/// `j`, value `j + 16` in its high nibble); value = (q − 8)·d.
struct BlockQ4_0 {
    d: f16,
    qs: [u8; 16],
}

impl QuantBlock for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;

    fn read(b: &[u8]) -> Self {
        Self {
            d: f16_le(b),
            qs: bytes(&b[2..18]),
        }
    }

    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        let (lo, hi) = out.split_at_mut(16);
        for j in 0..16 {
            lo[j] = (i32::from(self.qs[j] & 0x0F) - 8) as f32 * d;
            hi[j] = (i32::from(self.qs[j] >> 4) - 8) as f32 * d;
        }
    }
}

/// `Q4_1`: 32 values; scale `d`, minimum `m`, 16 bytes of 4-bit `q` (nibbles as in `Q4_0`);
/// value = q·d + m.
struct BlockQ4_1 {
    d: f16,
    m: f16,
    qs: [u8; 16],
}

impl QuantBlock for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;

    fn read(b: &[u8]) -> Self {
        Self {
            d: f16_le(b),
            m: f16_le(&b[2..]),
            qs: bytes(&b[4..20]),
        }
    }

    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        let (lo, hi) = out.split_at_mut(16);
        for j in 0..16 {
            lo[j] = f32::from(self.qs[j] & 0x0F) * d + m;
            hi[j] = f32::from(self.qs[j] >> 4) * d + m;
        }
    }
}

/// `Q5_0`: 32 values; scale `d`, the fifth bit of every value in `qh` (bit `j` for value `j`),
/// 16 bytes of low nibbles (as in `Q4_0`); value = (q − 16)·d.
struct BlockQ5_0 {
    d: f16,
    qh: u32,
    qs: [u8; 16],
}

impl QuantBlock for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;

    fn read(b: &[u8]) -> Self {
        Self {
            d: f16_le(b),
            qh: u32::from_le_bytes(bytes(&b[2..6])),
            qs: bytes(&b[6..22]),
        }
    }

    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        let (qh, qs) = (self.qh, &self.qs);
        let (lo, hi) = out.split_at_mut(16);
        for j in 0..16 {
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            lo[j] = ((u32::from(qs[j] & 0x0F) | h0) as i32 - 16) as f32 * d;
            hi[j] = ((u32::from(qs[j] >> 4) | h1) as i32 - 16) as f32 * d;
        }
    }
}

/// `Q8_0`: 32 values; scale `d`, 32 signed bytes `q`; value = q·d.
struct BlockQ8_0 {
    d: f16,
    qs: [u8; 32],
}

impl QuantBlock for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;

    fn read(b: &[u8]) -> Self {
        Self {
            d: f16_le(b),
            qs: bytes(&b[2..34]),
        }
    }

    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (v, &q) in out.iter_mut().zip(&self.qs) {
            *v = f32::from(q as i8) * d;
        }
    }
}

/// `Q4_K`: a super-block of 256 values in eight sub-blocks of 32; scales `d` and `dmin`, twelve
/// bytes packing a 6-bit scale and a 6-bit minimum per sub-block, 128 bytes of nibbles; value
/// = d·scale·q − dmin·min.
struct BlockQ4K {
    d: f16,
    dmin: f16,
    scales: [u8; 12],
    qs: [u8; 128],
}

impl BlockQ4K {
    /// Scale and minimum of sub-block `j` (0..8): sub-blocks 0..4 keep their 6-bit scale and
    /// minimum in the low bits of bytes `j` and `j + 4`; sub-blocks 4..8 keep the low 4 bits in
    /// the nibbles of byte `j + 4` and the high 2 bits in the top bits of bytes `j − 4` (scale)
    /// and `j` (minimum).
    #[inline]
    fn scale_min(&self, j: usize) -> (u8, u8) {
        let s = &self.scales;
        if j < 4 {
            (s[j] & 63, s[j + 4] & 63)
        } else {
            (
                (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
                (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
            )
        }
    }
}

impl QuantBlock for BlockQ4K {
    const TYPE: GgmlType = GgmlType::Q4_K;

    fn read(b: &[u8]) -> Self {
        Self {
            d: f16_le(b),
            dmin: f16_le(&b[2..]),
            scales: bytes(&b[4..16]),
            qs: bytes(&b[16..144]),
        }
    }

    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        let dmin = self.dmin.to_f32();
        // Four chunks of 32 bytes: low nibbles are sub-block 2c, high nibbles sub-block 2c + 1.
        for (c, (yc, q)) in out
            .chunks_exact_mut(64)
            .zip(self.qs.chunks_exact(32))
            .enumerate()
        {
            let (sc1, m1) = self.scale_min(2 * c);
            let (sc2, m2) = self.scale_min(2 * c + 1);
            let d1 = d * f32::from(sc1);
            let min1 = dmin * f32::from(m1);
            let d2 = d * f32::from(sc2);
            let min2 = dmin * f32::from(m2);
            let (lo, hi) = yc.split_at_mut(32);
            for l in 0..32 {
                lo[l] = d1 * f32::from(q[l] & 0x0F) - min1;
                hi[l] = d2 * f32::from(q[l] >> 4) - min2;
            }
        }
    }
}

/// `Q6_K`: a super-block of 256 values in sixteen sub-blocks of 16; 128 bytes of low nibbles
/// `ql`, 64 bytes of high 2-bit pairs `qh`, sixteen signed 8-bit scales, scale `d`; value =
/// d·scale·(q − 32).
struct BlockQ6K {
    ql: [u8; 128],
    qh: [u8; 64],
    scales: [i8; 16],
    d: f16,
}

impl QuantBlock for BlockQ6K {
    const TYPE: GgmlType = GgmlType::Q6_K;

    fn read(b: &[u8]) -> Self {
        Self {
            ql: bytes(&b[..128]),
            qh: bytes(&b[128..192]),
            scales: bytes::<16>(&b[192..208]).map(|s| s as i8),
            d: f16_le(&b[208..]),
        }
    }

    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        // Two halves of 128 values; in each, value 32k + l takes its low 4 bits from
        // ql[l + 32(k mod 2)] (low nibble for k < 2, high for k ≥ 2), its high 2 bits from bits
        // 2k..2k+2 of qh[l], and its scale from sub-block (32k + l) / 16.
        for n in 0..2 {
            let ql = &self.ql[64 * n..64 * n + 64];
            let qh = &self.qh[32 * n..32 * n + 32];
            let sc = &self.scales[8 * n..8 * n + 8];
            let yh = &mut out[128 * n..128 * n + 128];
            for l in 0..32 {
                let is = l / 16;
                let h = qh[l];
                let q1 = i32::from((ql[l] & 0x0F) | ((h & 3) << 4)) - 32;
                let q2 = i32::from((ql[l + 32] & 0x0F) | (((h >> 2) & 3) << 4)) - 32;
                let q3 = i32::from((ql[l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
                let q4 = i32::from((ql[l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
                yh[l] = d * f32::from(sc[is]) * q1 as f32;
                yh[l + 32] = d * f32::from(sc[is + 2]) * q2 as f32;
                yh[l + 64] = d * f32::from(sc[is + 4]) * q3 as f32;
                yh[l + 96] = d * f32::from(sc[is + 6]) * q4 as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_bits().to_le_bytes()
    }

    fn assert_exact(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(g.to_bits() == w.to_bits(), "element {i}: got {g}, want {w}");
        }
    }

    #[test]
    fn decodes_hand_encoded_float_types() {
        let f32_bytes: Vec<u8> = [1.5f32, -2.25, 1e-30]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_exact(
            &dequantize(GgmlType::F32, &f32_bytes, 3).unwrap(),
            &[1.5, -2.25, 1e-30],
        );

        let f16_bits: [u16; 5] = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x3555];
        let f16_bytes: Vec<u8> = f16_bits.iter().flat_map(|b| b.to_le_bytes()).collect();
        assert_exact(
            &dequantize(GgmlType::F16, &f16_bytes, 5).unwrap(),
            &[1.0, -2.0, 65504.0, 2f32.powi(-24), 0.333_251_95],
        );

        let bf16_bits: [u16; 4] = [0x3F80, 0xC040, 0x4049, 0x0000];
        let bf16_bytes: Vec<u8> = bf16_bits.iter().flat_map(|b| b.to_le_bytes()).collect();
        assert_exact(
            &dequantize(GgmlType::BF16, &bf16_bytes, 4).unwrap(),
            &[1.0, -3.0, 3.140625, 0.0],
        );
    }

    #[test]
    fn decodes_hand_encoded_q8_0() {
        // d = 0.5, q[i] = 8i − 128 → value 4i − 64.
        let mut b = vec![0x00, 0x38];
        b.extend((0..32).map(|i: i32| (8 * i - 128) as i8 as u8));
        let want: Vec<f32> = (0..32).map(|i| (4 * i - 64) as f32).collect();
        let got = dequantize(GgmlType::Q8_0, &b, 32).unwrap();
        assert_exact(&got, &want);
        assert_eq!((got[0], got[16], got[31]), (-64.0, 0.0, 60.0));
    }

    #[test]
    fn decodes_hand_encoded_q4_0() {
        // d = 2; byte j holds q = j (element j) and q = 15 − j (element j + 16); value (q − 8)·d.
        let mut b = vec![0x00, 0x40];
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let mut want: Vec<f32> = (0..16).map(|j| (j as f32 - 8.0) * 2.0).collect();
        want.extend((0..16).map(|j| (7 - j) as f32 * 2.0));
        let got = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
        assert_exact(&got, &want);
        assert_eq!(
            (got[0], got[8], got[15], got[16], got[31]),
            (-16.0, 0.0, 14.0, 14.0, -16.0)
        );
    }

    #[test]
    fn decodes_hand_encoded_q4_1() {
        // d = 0.5, m = −1; low nibble j, high nibble (j + 1) mod 16; value q·d + m.
        let mut b = vec![0x00, 0x38, 0x00, 0xBC];
        b.extend((0..16u8).map(|j| j | (((j + 1) % 16) << 4)));
        let mut want: Vec<f32> = (0..16).map(|j| j as f32 * 0.5 - 1.0).collect();
        want.extend((0..16).map(|j| ((j + 1) % 16) as f32 * 0.5 - 1.0));
        let got = dequantize(GgmlType::Q4_1, &b, 32).unwrap();
        assert_exact(&got, &want);
        assert_eq!(
            (got[0], got[15], got[16], got[30], got[31]),
            (-1.0, 6.5, -0.5, 6.5, -1.0)
        );
    }

    #[test]
    fn decodes_hand_encoded_q5_0() {
        // d = 0.25; high bits set for elements 0, 15, 16 and 31 (qh bits 0, 15, 16, 31); every
        // byte of nibbles is 0x21 (low 1, high 2); value (q − 16)·d.
        let mut b = vec![0x00, 0x34, 0x01, 0x80, 0x01, 0x80];
        b.extend([0x21u8; 16]);
        let mut want = vec![0.25];
        want.extend([-3.75; 14]);
        want.push(0.25);
        want.push(0.5);
        want.extend([-3.5; 14]);
        want.push(0.5);
        assert_exact(&dequantize(GgmlType::Q5_0, &b, 32).unwrap(), &want);
    }

    /// Q4_K sub-block scales and mins used by the hand-encoded block below; sub-blocks 4..8 use
    /// values ≥ 16 to exercise the packed high bits.
    const Q4K_SC: [f32; 8] = [1.0, 2.0, 3.0, 4.0, 17.0, 33.0, 5.0, 63.0];

    const Q4K_M: [f32; 8] = [0.0, 1.0, 2.0, 3.0, 18.0, 4.0, 40.0, 63.0];

    fn q4k_hand_block() -> Vec<u8> {
        let mut b = vec![0x00, 0x3C, 0x00, 0x38]; // d = 1, dmin = 0.5
        b.extend([
            0x41, 0x82, 0x03, 0xC4, 0x40, 0x01, 0x82, 0xC3, 0x21, 0x41, 0x85, 0xFF,
        ]);
        for _chunk in 0..4 {
            b.extend((0..32u8).map(|l| (l % 16) | ((15 - l % 16) << 4)));
        }
        b
    }

    #[test]
    fn decodes_hand_encoded_q4_k() {
        let b = q4k_hand_block();
        assert_eq!(b.len(), 144);
        let got = dequantize(GgmlType::Q4_K, &b, 256).unwrap();
        // Chunk c of 64 values: the first 32 are sub-block 2c with q = l mod 16 (low nibbles),
        // the next 32 sub-block 2c + 1 with q = 15 − l mod 16 (high nibbles).
        let mut want = Vec::new();
        for c in 0..4 {
            for l in 0..32 {
                want.push(Q4K_SC[2 * c] * (l % 16) as f32 - 0.5 * Q4K_M[2 * c]);
            }
            for l in 0..32 {
                want.push(Q4K_SC[2 * c + 1] * (15 - l % 16) as f32 - 0.5 * Q4K_M[2 * c + 1]);
            }
        }
        assert_exact(&got, &want);
        for (i, v) in [
            (0, 0.0),
            (1, 1.0),
            (15, 15.0),
            (32, 29.5),
            (133, 76.0),
            (163, 394.0),
            (202, 30.0),
            (255, -31.5),
        ] {
            assert_eq!(got[i], v, "element {i}");
        }
    }

    #[test]
    fn q4_k_scale_unpacking_matches_the_packed_layout() {
        let block = BlockQ4K::read(&q4k_hand_block());
        for j in 0..8 {
            let (sc, m) = block.scale_min(j);
            assert_eq!(
                (f32::from(sc), f32::from(m)),
                (Q4K_SC[j], Q4K_M[j]),
                "sub-block {j}"
            );
        }
    }

    #[test]
    fn decodes_hand_encoded_q6_k() {
        let mut b = Vec::new();
        b.extend([0x31u8; 32]); // half 0: k=0 low 1, k=2 high 3
        b.extend([0x42u8; 32]); //         k=1 low 2, k=3 high 4
        b.extend([0xF0u8; 32]); // half 1: k=0 low 0, k=2 high 15
        b.extend([0x0Fu8; 32]); //         k=1 low 15, k=3 high 0
        let mut qh0 = [0xE4u8; 32]; // high pairs 0, 1, 2, 3 for k = 0..4
        qh0[31] = 0xE5; // element 31 gets high pair 1
        b.extend(qh0);
        b.extend([0x1Bu8; 32]); // high pairs 3, 2, 1, 0
        let sc: [i8; 16] = [
            1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 15, -16,
        ];
        b.extend(sc.iter().map(|&s| s as u8));
        b.extend(h(0.5));
        assert_eq!(b.len(), 210);
        let got = dequantize(GgmlType::Q6_K, &b, 256).unwrap();
        // q − 32 for half n, group k (values 32k..32k+32 of the half).
        let q: [[f32; 4]; 2] = [[-31.0, -14.0, 3.0, 20.0], [16.0, 15.0, -1.0, -32.0]];
        let mut want: Vec<f32> = (0..256)
            .map(|e| 0.5 * f32::from(sc[e / 16]) * q[e / 128][(e % 128) / 32])
            .collect();
        want[31] = 0.5 * -2.0 * -15.0;
        assert_exact(&got, &want);
        for (i, v) in [
            (0, -15.5),
            (16, 31.0),
            (31, 15.0),
            (32, -21.0),
            (64, 7.5),
            (96, 70.0),
            (128, 72.0),
            (160, 82.5),
            (192, -6.5),
            (255, 256.0),
        ] {
            assert_eq!(got[i], v, "element {i}");
        }
    }

    /// One block of each K/Q5 type with random bytes, decoded by llama.cpp's reference
    /// implementation (gguf-py `quants.dequantize`): spot values and the sum of all values.
    #[test]
    fn matches_llama_cpp_reference_vectors() {
        for (ty, hex, spots, sum) in REFERENCE_VECTORS {
            let bytes: Vec<u8> = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            let got = dequantize(*ty, &bytes, ty.block_size()).unwrap();
            for &(i, v) in *spots {
                assert_eq!(got[i], v, "{ty} element {i}");
            }
            let s: f64 = got.iter().map(|&v| f64::from(v)).sum();
            assert!(
                (s - sum).abs() <= 1e-9 * sum.abs().max(1.0),
                "{ty}: sum {s} vs {sum}"
            );
        }
    }

    /// (type, one block as hex, (index, value) spots, sum of all values) from llama.cpp's gguf-py.
    #[allow(clippy::type_complexity)]
    const REFERENCE_VECTORS: &[(GgmlType, &str, &[(usize, f32)], f64)] = &[
        (
            GgmlType::Q4_K,
            "a4272a24564803add9d0a317a4e2dd36e1605151903f384fe43b9fe863cfa9cc72a553eae7e2ecfe08ec1a14e34d692467a630de485b2714462e7e2a2e784a2ec4e2efe995d1115cc8608a43ca2a6c2b28545f7535eeb8961c91d9cce318e79d5fb76afc4f8efa1af49ad67c0ac0d390600804b086682f014438dd33460d127799aff3105860c2f941373ba49657a7cc",
            &[
                (0, 0.24996948),
                (1, -0.40664673),
                (33, 1.1723633),
                (52, 3.0825195),
                (113, 18.428986),
                (127, 2.3120422),
                (128, 3.8319702),
                (196, 1.5960388),
                (211, -0.7319641),
                (255, 13.561066),
            ],
            988.4046020507812,
        ),
        (
            GgmlType::Q6_K,
            "9eb82d47f1c28eb8ac3cfddf26d35dd4d47a913622da285eaceb3446757fbdcc897aa3ce9aab62710a97b34480139c10aac49f4418249126014f25120d1565c82fff9a77e00038f8bbf7a2430960856295b491e375d2ce9d2c284c494c9a195ff29615c6abd8165d4714bc7c276f3e7da418d0779300b47c87aa05f7cea1c83d013af2e57d011832cf973b1457c0185103b5c53e2a51b6a3bb344e2f88375e340c34cde7fcbd02d0ccefc78dcd5724eaff0a255f2d8844129c467ad577e19316e22849599a6a617544e180aed438b51fe0a4",
            &[
                (0, -1.1425781),
                (1, 4.5703125),
                (46, -16.68164),
                (86, -36.333984),
                (127, 44.560547),
                (128, 22.013672),
                (138, -23.308594),
                (175, 31.6875),
                (178, -24.984375),
                (255, 17.119629),
            ],
            1244.02001953125,
        ),
        (
            GgmlType::Q5_0,
            "41a88c57587992fdd2819d468d90dbad26105840df12",
            &[
                (0, 0.465271),
                (1, 0.09970093),
                (3, -0.033233643),
                (6, 0.09970093),
                (13, 0.5317383),
                (15, 0.465271),
                (16, 0.2326355),
                (18, 0.09970093),
                (19, -0.26586914),
                (31, 0.49850464),
            ],
            0.897308349609375,
        ),
        (
            GgmlType::Q4_1,
            "2a292dabe924528126a8ac7ef3efdb950d9f578f",
            &[
                (0, 0.30703735),
                (1, 0.10531616),
                (10, 0.38772583),
                (13, 0.5491028),
                (15, 0.5491028),
                (16, 0.50875854),
                (17, 0.024627686),
                (31, 0.26669312),
            ],
            9.13934326171875,
        ),
        (
            GgmlType::Q4_0,
            "a0aa0baa05afd88474e64a20ad4a3499de99",
            &[
                (0, -0.15527344),
                (1, -0.103515625),
                (15, -0.051757812),
                (16, 0.4140625),
                (19, -0.103515625),
                (29, -0.051757812),
                (31, -0.051757812),
            ],
            0.4140625,
        ),
        (
            GgmlType::Q8_0,
            "0e93bd0c23007552a38dde2947113168d6c05a0db3d9f2db2a6ad6736031730318d0",
            &[
                (0, 0.05769825),
                (1, -0.010334015),
                (4, -0.100756645),
                (15, 0.055114746),
                (16, -0.07750511),
                (18, 0.06630993),
                (21, 0.031863213),
                (22, -0.036169052),
                (31, 0.04133606),
            ],
            -0.43833446502685547,
        ),
    ];

    #[test]
    fn dequantize_rejects_wrong_lengths() {
        let err = dequantize(GgmlType::Q4_K, &[0; 144], 255).unwrap_err();
        assert!(matches!(err, GgufError::BlockMismatch { .. }), "{err}");
        let err = dequantize(GgmlType::Q6_K, &[0; 209], 256).unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::ByteLength {
                    expected: 210,
                    found: 209,
                    ..
                }
            ),
            "{err}"
        );
        assert!(dequantize(GgmlType::Q8_0, &[], 0).unwrap().is_empty());
    }
}
