//! Rotary position embeddings on queries and keys (every decoder forward pass of the paper's §3
//! pipeline) in one pass on the Flex backend. burn computes `x ⊙ cos + swap(x) ⊙ sin` as a
//! narrow, a concatenation, two products and a sum, and in training differentiates each: the
//! gradient arrives as a strided view, and the pair exchange comes back as two zero-padded
//! halves. Here each value is `x·cos + x_p·sin` with `p` the channel paired with it, and its
//! gradient `g·cos + g_p·sin_p`, bit-identical to burn's (the `+ 0` that burn's zero padding
//! adds is kept, so a gradient of −0 turns into +0 as it does there).

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};

use super::flex::{
    AdTensor, ad_primitive, cast, contiguous, float_primitive, from_ad, from_flex, is_ad, is_flex,
    values_of,
};
use super::{new_in_chunks, rows_per_task};

/// Which channels of a head RoPE rotates together.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pairs {
    /// Channels `2i` and `2i + 1`.
    Adjacent,
    /// Channels `i` and `i + hd/2`.
    Halves,
}

impl Pairs {
    /// The channel paired with channel `i` of a head of `hd` channels.
    #[inline]
    fn partner(self, i: usize, hd: usize) -> usize {
        match self {
            Pairs::Adjacent => i ^ 1,
            Pairs::Halves if i < hd / 2 => i + hd / 2,
            Pairs::Halves => i - hd / 2,
        }
    }
}

/// `x ⊙ cos + swap(x) ⊙ sin` for `x`, `cos` and `sin` of one shape (head channels last, an
/// even number of them): on Flex in one pass, on `Autodiff<Flex>` as one recorded operation
/// (when the tables need no gradient); the three tensors back otherwise.
pub(crate) fn rope<B: Backend>(
    x: Tensor<B, 4>,
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
    pairs: Pairs,
) -> Result<Tensor<B, 4>, [Tensor<B, 4>; 3]> {
    let dims = x.dims();
    let fits = dims[3].is_multiple_of(2)
        && [cos.dims(), sin.dims()] == [dims; 2]
        && [x.dtype(), cos.dtype(), sin.dtype()] == [DType::F32; 3];
    if !fits {
        return Err([x, cos, sin]);
    }
    if is_flex::<B>() {
        let [x, cos, sin] = [x, cos, sin].map(|t| cast::<_, FlexTensor>(float_primitive(t)));
        return Ok(from_flex(forward(&x, &cos, &sin, pairs)));
    }
    if is_ad::<B>() {
        let [x, cos, sin] = [x, cos, sin].map(ad_primitive::<B, 4>);
        if cos.is_tracked() || sin.is_tracked() {
            return Err([x, cos, sin].map(from_ad));
        }
        return Ok(from_ad(recorded(x, cos.primitive, sin.primitive, pairs)));
    }
    Err([x, cos, sin])
}

/// The rotation recorded as one operation of the training graph.
fn recorded(x: AdTensor, cos: FlexTensor, sin: FlexTensor, pairs: Pairs) -> AdTensor {
    match Rope
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let out = forward(&x.primitive, &cos, &sin, pairs);
            prep.finish((cos, sin, pairs), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&x.primitive, &cos, &sin, pairs)),
    }
}

/// `out[i] = a[i]·b[i] + a[p(i)]·c[p(i) or i]` over heads of `hd` channels: the forward pass
/// reads the table at `i` (`x·cos + x_p·sin`), the backward pass at the partner
/// (`g·cos + g_p·sin_p`, then `+ 0`).
fn pass([a, b, c]: [&FlexTensor; 3], pairs: Pairs, backward: bool) -> FlexTensor {
    let shape = a.layout().shape().clone();
    let hd = shape[3];
    let len = shape.iter().product();
    let [a, b, c] = [a, b, c].map(|t| contiguous(t.clone()));
    let [av, bv, cv] = [&a, &b, &c].map(|t| values_of(t, len));
    let per = rows_per_task(hd) * hd;
    let out = new_in_chunks(len, per, |first, chunk| {
        for (h, head) in chunk.chunks_exact_mut(hd).enumerate() {
            let at = first + h * hd;
            let (a, b, c) = (&av[at..at + hd], &bv[at..at + hd], &cv[at..at + hd]);
            for (i, o) in head.iter_mut().enumerate() {
                let p = pairs.partner(i, hd);
                *o = if backward {
                    (a[i] * b[i] + a[p] * c[p]) + 0.0
                } else {
                    a[i] * b[i] + a[p] * c[i]
                };
            }
        }
    });
    FlexTensor::from_data(TensorData::new(out, shape))
}

/// burn's `x ⊙ cos + swap(x) ⊙ sin`.
fn forward(x: &FlexTensor, cos: &FlexTensor, sin: &FlexTensor, pairs: Pairs) -> FlexTensor {
    pass([x, cos, sin], pairs, false)
}

#[derive(Debug)]
struct Rope;

impl Backward<Flex, 1> for Rope {
    /// The two tables and the pairing.
    type State = (FlexTensor, FlexTensor, Pairs);

    /// `x` gets `g ⊙ cos` through the first product and, through the exchange, the second
    /// product's `g ⊙ sin` at the partner channel, added to a zero.
    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (cos, sin, pairs) = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            pass([&grad, &cos, &sin], pairs, true)
        });
    }
}
