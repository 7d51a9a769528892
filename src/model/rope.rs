//! Rotary position embeddings: the cosine and sine tables of a configuration, and the rotation
//! of queries and keys in either pairing convention ([`RopeStyle`]).

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::kernels;
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
    let pairs = match style {
        RopeStyle::Adjacent => kernels::Pairs::Adjacent,
        RopeStyle::HalfSplit => kernels::Pairs::Halves,
    };
    let [x, cos, sin] = match kernels::rope(x, cos, sin, pairs) {
        Ok(rotated) => return rotated,
        Err(back) => back,
    };
    let swapped = rope_swap(x.clone(), style);
    x * cos + swapped * sin
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, Tensor, TensorData};

    use super::super::kernels::bits_differ;
    use super::{RopeStyle, apply_rope, rope_swap};

    type Ad = Autodiff<Flex>;

    /// The one-pass rotation's values and the input's gradient equal those of burn's
    /// operations bit for bit, for both pairings, in training and inference, with the gradient
    /// arriving as a strided view (the decoder swaps heads and positions after the rotation)
    /// and holding zeros of both signs, some at both channels of a pair.
    #[test]
    fn one_pass_rotation_equals_burns_operations_bit_for_bit() {
        let device = Default::default();
        let dims = [2, 9, 3, 16];
        let normal = || Tensor::<Flex, 4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
        let (x0, cos, sin) = (normal(), normal(), normal());
        let mut w: Vec<f32> = normal().into_data().to_vec().unwrap();
        for (i, w) in w.iter_mut().enumerate() {
            match i % 13 {
                0 | 1 => *w = 0.0,
                2 | 3 | 9 => *w = -0.0,
                _ => {}
            }
        }
        let [b, s, h, hd] = dims;
        let w = Tensor::<Flex, 4>::from_data(TensorData::new(w, [b, h, s, hd]), &device);
        for style in [RopeStyle::Adjacent, RopeStyle::HalfSplit] {
            let run = |ours: bool| {
                let x = Tensor::<Ad, 4>::from_inner(x0.clone()).require_grad();
                let (c, s) = (
                    Tensor::from_inner(cos.clone()),
                    Tensor::from_inner(sin.clone()),
                );
                let y = if ours {
                    apply_rope(x.clone(), c, s, style)
                } else {
                    x.clone() * c + rope_swap(x.clone(), style) * s
                };
                let loss = (y.clone().swap_dims(1, 2) * Tensor::from_inner(w.clone())).sum();
                let grads = loss.backward();
                (y.inner(), x.grad(&grads).expect("x is tracked"))
            };
            let ((y_ours, g_ours), (y_burn, g_burn)) = (run(true), run(false));
            let inference = apply_rope(x0.clone(), cos.clone(), sin.clone(), style);
            for (what, ours, burn) in [
                ("rotation", y_ours, y_burn.clone()),
                ("inference", inference, y_burn),
                ("gradient", g_ours, g_burn),
            ] {
                let (differ, n) = bits_differ(ours, burn);
                assert_eq!(differ, 0, "{style:?} {what}: {differ} of {n} differ");
            }
        }
    }
}
