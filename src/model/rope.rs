//! Rotary position embeddings: the cosine and sine tables of a configuration, and the rotation
//! of queries and keys in either pairing convention ([`RopeStyle`]).

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::llama::{LlamaConfig, RopeStyle};

/// Precomputes RoPE tables `[max_seq_len, head_dim]` for the configured style. The sine table
/// carries the rotation's sign, so `rope(x) = x·cos + swap(x)·sin` where `swap` exchanges the
/// two channels of every pair.
pub(super) fn rope_tables<B: Backend>(
    c: &LlamaConfig,
    device: &B::Device,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let hd = c.head_dim;
    let half = hd / 2;
    let n = c.max_seq_len;
    let mut cos = vec![0.0f32; n * hd];
    let mut sin = vec![0.0f32; n * hd];
    for p in 0..n {
        for i in 0..half {
            let freq = c.rope_theta.powf(-(2.0 * i as f64) / hd as f64);
            let angle = p as f64 * freq;
            let (sa, ca) = (angle.sin() as f32, angle.cos() as f32);
            let (first, second) = match c.rope_style {
                RopeStyle::Adjacent => (2 * i, 2 * i + 1),
                RopeStyle::HalfSplit => (i, i + half),
            };
            cos[p * hd + first] = ca;
            cos[p * hd + second] = ca;
            sin[p * hd + first] = -sa;
            sin[p * hd + second] = sa;
        }
    }
    (
        Tensor::from_data(TensorData::new(cos, [n, hd]), device),
        Tensor::from_data(TensorData::new(sin, [n, hd]), device),
    )
}

/// Exchanges the two channels of every RoPE pair along the last axis of `x` `[.., .., .., hd]`.
fn rope_swap<B: Backend>(x: Tensor<B, 4>, style: RopeStyle) -> Tensor<B, 4> {
    let [b, h, s, hd] = x.dims();
    let half = hd / 2;
    match style {
        RopeStyle::HalfSplit => {
            let first = x.clone().narrow(3, 0, half);
            let second = x.narrow(3, half, half);
            Tensor::cat(vec![second, first], 3)
        }
        RopeStyle::Adjacent => {
            let pairs = x.reshape([b, h, s, half, 2]);
            let even = pairs.clone().narrow(4, 0, 1);
            let odd = pairs.narrow(4, 1, 1);
            Tensor::cat(vec![odd, even], 4).reshape([b, h, s, hd])
        }
    }
}

/// Rotates `x` (4-D, head channels last) by the RoPE angles `cos` and `sin` from
/// [`rope_tables`] at each token's position, in `x`'s shape (or one that broadcasts to it; the
/// decoder passes them in `x`'s shape, so the products run on contiguous operands).
pub(super) fn apply_rope<B: Backend>(
    x: Tensor<B, 4>,
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
    style: RopeStyle,
) -> Tensor<B, 4> {
    let swapped = rope_swap(x.clone(), style);
    x * cos + swapped * sin
}
