//! The token embedding lookup of a model being trained (pretraining, SFT, PPO's policy, the
//! preference model's trunk: paper §3) as one recorded operation on `Autodiff<Flex>`. burn's
//! gradient of a lookup is a zeroed `[vocab, d]` matrix (113 MB for SmolLM2-135M), copied once
//! more before the looked-up rows' gradients are added into it, and then added to what the
//! matrix already received (a tied output head's gradient): three passes over the matrix on
//! one core (writing zeros, copying them, adding two matrices), about 4% of a training step.
//! Here the rows' gradients are added into the gradient already there, in place, and every
//! other row is only read.
//!
//! Values are bit-identical to burn's: a row that tokens looked up gets `(0 + g₁ + g₂ + …) +
//! e`, the tokens' gradients summed in their order from zero and then added to the earlier
//! gradient `e`; any other row `0 + e`, which is `e` except that −0 becomes +0. Without an
//! earlier gradient (an untied head, a frozen one) burn's own gradient is used.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::nn::Embedding;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensorOps, ModuleOps};
use burn::tensor::{DType, Int, Tensor};

use super::flex::{
    AdTensor, ad_primitive, cast, contiguous, from_ad, grad_probe, is_ad, owned, storage,
    take_grad, values_of,
};
use super::per_row;

/// The rows of `embed`'s matrix that `tokens` `[b, s]` name: `[b, s, d]`; one recorded
/// operation on `Autodiff<Flex>`, burn's module elsewhere.
pub(crate) fn embedding<B: Backend>(
    embed: &Embedding<B>,
    tokens: Tensor<B, 2, Int>,
) -> Tensor<B, 3> {
    let weight = embed.weight.val();
    if !is_ad::<B>() || weight.dtype() != DType::F32 {
        return embed.forward(tokens);
    }
    let ids: FlexTensor = cast(tokens.into_primitive());
    from_ad(recorded(ad_primitive(weight), ids))
}

/// The lookup recorded as one operation of the training graph.
fn recorded(weight: AdTensor, ids: FlexTensor) -> AdTensor {
    match Lookup
        .prepare::<NoCheckpointing>([weight.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let out = Flex::embedding(weight.primitive.clone(), ids.clone());
            prep.finish((grad_probe(&weight), weight.primitive, ids), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(Flex::embedding(weight.primitive, ids)),
    }
}

#[derive(Debug)]
struct Lookup;

impl Backward<Flex, 1> for Lookup {
    /// A probe for the matrix's gradient, the matrix (for its shape, where burn's gradient is
    /// taken) and the token ids.
    type State = (AdTensor, FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (probe, weight, ids) = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let [Some(node)] = ops.parents else { return };
        let dims: [usize; 2] = weight.layout().shape().dims();
        let earlier = take_grad(grads, &probe);
        let rows = earlier.as_ref().and_then(|_| token_rows(&ids, dims[0]));
        let sum = match (earlier, rows) {
            (Some(earlier), Some(rows)) => add_rows(earlier, &contiguous(grad), &rows, dims),
            (earlier, _) => {
                let own = Flex::embedding_backward(weight, grad, ids);
                match earlier {
                    Some(earlier) => Flex::float_add(own, earlier),
                    None => own,
                }
            }
        };
        grads.register::<Flex>(node.id, sum);
    }
}

/// The positions of the token ids in `ids`, grouped by the row they name in order of the
/// rows, each group in the tokens' order: `(starts, positions)`, where row `r`'s tokens are
/// `positions[starts[r]..starts[r + 1]]`. `None` when an id lies outside `0..vocab` (burn's
/// own gradient then reports it).
fn token_rows(ids: &FlexTensor, vocab: usize) -> Option<(Vec<usize>, Vec<usize>)> {
    let data = ids.clone().into_data();
    let ids: Vec<usize> = data
        .iter::<i64>()
        .map(|id| usize::try_from(id).ok().filter(|&id| id < vocab))
        .collect::<Option<_>>()?;
    let mut starts = vec![0usize; vocab + 1];
    for &id in &ids {
        starts[id + 1] += 1;
    }
    for r in 0..vocab {
        starts[r + 1] += starts[r];
    }
    let mut next = starts.clone();
    let mut positions = vec![0usize; ids.len()];
    for (at, &id) in ids.iter().enumerate() {
        positions[next[id]] = at;
        next[id] += 1;
    }
    Some((starts, positions))
}

/// `earlier` `[vocab, d]` with each looked-up row's gradients (rows of `grad`) summed from zero
/// and added to it, and `+ 0` on every other row: burn's lookup gradient plus `earlier`, in
/// place, over all cores.
fn add_rows(
    earlier: FlexTensor,
    grad: &FlexTensor,
    (starts, positions): &(Vec<usize>, Vec<usize>),
    [vocab, d]: [usize; 2],
) -> FlexTensor {
    let g = values_of(grad, positions.len() * d);
    let mut sum = owned(earlier, [vocab, d]);
    per_row(storage(&mut sum), d, |row, values| {
        let tokens = &positions[starts[row]..starts[row + 1]];
        if tokens.is_empty() {
            for v in values.iter_mut() {
                if v.to_bits() == (-0.0f32).to_bits() {
                    *v = 0.0;
                }
            }
            return;
        }
        let mut acc = vec![0.0f32; d];
        for &at in tokens {
            for (a, &g) in acc.iter_mut().zip(&g[at * d..(at + 1) * d]) {
                *a += g;
            }
        }
        // `a + v`, burn's lookup gradient plus the earlier one (addition commutes exactly).
        for (v, a) in values.iter_mut().zip(acc) {
            *v += a;
        }
    });
    sum
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::module::Param;
    use burn::nn::Embedding;
    use burn::tensor::{Distribution, Int, Tensor, TensorData};

    use super::super::{bits_differ, tied_head};
    use super::embedding;

    type Ad = Autodiff<Flex>;

    /// A lookup as a decoder's first step: the looked-up rows and the matrix's gradient equal
    /// burn's bit for bit, with repeated tokens, when a tied head's gradient reached the matrix
    /// first, when an earlier gradient holds −0 (which burn's `+ 0` turns to +0 on rows no
    /// token names), and alone.
    #[test]
    fn equals_burns_lookup_and_gradient_bit_for_bit() {
        let device = Default::default();
        let (v, d, n) = (301, 48, 130);
        let normal = Distribution::Normal(0.0, 1.0);
        let e0 = Tensor::<Flex, 2>::random([v, d], normal, &device);
        let h0 = Tensor::<Flex, 2>::random([n, d], normal, &device);
        // A second operand whose rows 5 (named by no token) and 3 (named) are −0.
        let mut z = Tensor::<Flex, 2>::random([v, d], normal, &device)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        z[5 * d..6 * d].fill(-0.0);
        z[3 * d..4 * d].fill(-0.0);
        let z0 = Tensor::<Flex, 2>::from_data(TensorData::new(z, [v, d]), &device);
        let ids = [[3, 7, 300, 3, 0], [7, 7, 1, 299, 3]];
        for earlier in ["tied head", "-0", "none"] {
            let run = |ours: bool| {
                let e = Tensor::<Ad, 2>::from_inner(e0.clone()).require_grad();
                let module = Embedding {
                    weight: Param::from_tensor(e.clone()),
                };
                let tokens = Tensor::<Ad, 2, Int>::from_ints(ids, &device);
                let looked_up = if ours {
                    embedding(&module, tokens)
                } else {
                    module.forward(tokens)
                };
                let mut loss = (looked_up.clone() * looked_up.clone().sin()).sum();
                let e = module.weight.val();
                if earlier == "tied head" {
                    let logits = tied_head(Tensor::from_inner(h0.clone()), e);
                    loss = loss + (logits.clone() * logits.tanh()).sum();
                } else if earlier == "-0" {
                    // `z` through an operation of its own, so the product's node lies deeper
                    // than the lookup's and its gradient (`z`) reaches `E` first.
                    let z = Tensor::<Ad, 2>::from_inner(z0.clone()).require_grad() * 1.0;
                    loss = loss + (e * z).sum();
                }
                let grads = loss.backward();
                (looked_up.inner(), module.weight.val().grad(&grads).unwrap())
            };
            let ((out, got), (want_out, want)) = (run(true), run(false));
            let (differ, len) = bits_differ(out, want_out);
            assert_eq!(differ, 0, "lookup: {differ} of {len} differ");
            let (differ, len) = bits_differ(got, want);
            assert_eq!(
                differ, 0,
                "gradient of E ({earlier}): {differ} of {len} differ"
            );
        }
    }
}
