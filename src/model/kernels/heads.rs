//! The exchange of positions and heads (`[b, s, h, hd]` ↔ `[b, h, s, hd]`) around attention in
//! a training step (every trainer of the paper's §3 pipeline), as one recorded operation on
//! `Autodiff<Flex>` whose forward and backward passes each copy into the new layout over all
//! cores. burn's swap is a strided view, which the reshapes around attention and RoPE's
//! gradient then copied element by element on one core (about a tenth of a world-s
//! pretraining step). Values are moved, never computed, so results are burn's.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, unary};
use burn::backend::flex::FlexTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};

use super::flex::{AdTensor, Strided, ad_primitive, contiguous, from_ad, is_ad};
use super::new_per_row;

/// `x` `[b, p, q, d]` with its dimensions 1 and 2 exchanged, `[b, q, p, d]`: laid out
/// contiguously as one recorded operation on `Autodiff<Flex>` (whose gradient comes back
/// contiguous too), burn's strided view otherwise.
pub(crate) fn swap_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    if is_ad::<B>() && x.dtype() == DType::F32 {
        return from_ad(recorded(ad_primitive(x)));
    }
    x.swap_dims(1, 2)
}

fn recorded(x: AdTensor) -> AdTensor {
    SwapHeads
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateless(swapped(&x.primitive))
}

/// `x` `[b, p, q, d]` (any layout) as a contiguous `[b, q, p, d]`, rows of `d` values copied
/// over all cores.
fn swapped(x: &FlexTensor) -> FlexTensor {
    let Some(view) = Strided::of(x) else {
        return swapped(&contiguous(x.clone()));
    };
    let shape = x.layout().shape();
    let [b, p, q, d] = [shape[0], shape[1], shape[2], shape[3]];
    let out = new_per_row(b * p * q * d, d, |row, values| {
        view.read_row([row / (p * q), row % p, (row / p) % q], values);
    });
    FlexTensor::from_data(TensorData::new(out, [b, q, p, d]))
}

#[derive(Debug)]
struct SwapHeads;

impl Backward<Flex, 1> for SwapHeads {
    type State = ();

    /// The gradient exchanges the same two dimensions back.
    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| swapped(&grad));
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, Tensor, activation};

    use super::super::bits_differ;
    use super::swap_heads;

    type Ad = Autodiff<Flex>;

    /// A training step's attention written with burn's swaps and with [`swap_heads`], as the
    /// decoder writes it: the output and the gradients of `q`, `k` and `v` equal bit for bit,
    /// for SmolLM2-135M's heads at 256 positions and a world model's at a batch of 3.
    #[test]
    fn attention_with_swapped_heads_equals_burns_views_bit_for_bit() {
        let device = Default::default();
        for (b, s, h, kv, hd) in [(1, 256, 9, 3, 64), (3, 40, 4, 2, 32)] {
            let g = h / kv;
            let normal = Distribution::Normal(0.0, 1.0);
            let q0 = Tensor::<Flex, 4>::random([b, s, h, hd], normal, &device);
            let k0 = Tensor::<Flex, 4>::random([b, s, kv, hd], normal, &device);
            let v0 = Tensor::<Flex, 4>::random([b, s, kv, hd], normal, &device);
            let w0 = Tensor::<Flex, 3>::random([b, s, h * hd], normal, &device);
            let run = |ours: bool| {
                let [q, k, v] =
                    [&q0, &k0, &v0].map(|t| Tensor::<Ad, 4>::from_inner(t.clone()).require_grad());
                let swap = |t: Tensor<Ad, 4>| {
                    if ours {
                        swap_heads(t)
                    } else {
                        t.swap_dims(1, 2)
                    }
                };
                let qh = swap(q.clone()).reshape([b, kv, g * s, hd]);
                let (kh, vh) = (swap(k.clone()), swap(v.clone()));
                let scores = qh.matmul(kh.swap_dims(2, 3)).mul_scalar(0.125);
                let out = activation::softmax(scores, 3)
                    .matmul(vh)
                    .reshape([b, h, s, hd]);
                let out = swap(out).reshape([b, s, h * hd]);
                let grads = (out.clone() * Tensor::from_inner(w0.clone()))
                    .sum()
                    .backward();
                let grad = |t: &Tensor<Ad, 4>| t.grad(&grads).expect("tracked");
                (out.inner(), [grad(&q), grad(&k), grad(&v)])
            };
            let ((out, ours), (want, burns)) = (run(true), run(false));
            let (differ, n) = bits_differ(out, want);
            assert_eq!(differ, 0, "output: {differ} of {n} differ at s = {s}");
            for (what, (got, want)) in ["q", "k", "v"].into_iter().zip(ours.into_iter().zip(burns))
            {
                let (differ, n) = bits_differ(got, want);
                assert_eq!(
                    differ, 0,
                    "gradient of {what}: {differ} of {n} differ at s = {s}"
                );
            }
        }
    }
}
