//! The tied output head `h · Eᵀ` of a model being trained (pretraining, PPO's policy, the
//! preference model's trunk: paper §3), as one differentiable operation on the Flex backend.
//! Through burn's `matmul` of a transposed view, the embedding matrix's gradient from the head
//! arrives as a transposed view, and adding the embedding lookup's gradient to it walks the
//! matrix (113 MB for SmolLM2-135M) column by column on one core. Here the same gradient values
//! come out row-major, so the sum is a contiguous one; for more than 64 rows the logits and
//! both gradients are products split by columns over all cores ([`super::projection`]), the
//! embedding's computed as `gradᵀ · h`. Forward values and gradients are bit-identical to
//! burn's.

use burn::backend::Flex;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary};
use burn::backend::flex::FlexTensor;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{DType, Tensor};

use super::flex::{AdTensor, ad_primitive, from_ad, is_ad, transposed};
use super::projection;

/// `h · Eᵀ` for `h` `[n, d]` and `E` `[v, d]`: `[n, v]`.
pub(crate) fn tied_head<B: Backend>(h: Tensor<B, 2>, e: Tensor<B, 2>) -> Tensor<B, 2> {
    let fits =
        is_ad::<B>() && h.dims()[1] == e.dims()[1] && [h.dtype(), e.dtype()] == [DType::F32; 2];
    if !fits {
        return h.matmul(e.transpose());
    }
    from_ad(product(ad_primitive(h), ad_primitive(e)))
}

/// `h · Eᵀ`, split by columns over all cores for more than 64 rows (burn's product of `h` and
/// the transposed view of `E` otherwise).
fn forward(h: FlexTensor, e: FlexTensor) -> FlexTensor {
    projection::product(h, e, true)
}

fn product(h: AdTensor, e: AdTensor) -> AdTensor {
    match TiedHead
        .prepare::<NoCheckpointing>([h.node.clone(), e.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(&h), prep.checkpoint(&e));
            prep.finish(state, forward(h.primitive, e.primitive))
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(h.primitive, e.primitive)),
    }
}

#[derive(Debug)]
struct TiedHead;

impl Backward<Flex, 2> for TiedHead {
    /// The checkpointed `h` and `E`.
    type State = (NodeId, NodeId);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, points: &mut Checkpointer) {
        let (h, e) = ops.state;
        let h: FlexTensor = points.retrieve_node_output(h);
        let e: FlexTensor = points.retrieve_node_output(e);
        binary::<Flex, _, _>(
            ops.parents,
            ops.node,
            grads,
            // As burn's matmul differentiates its left operand: the gradient times the right
            // operand transposed back (`grad · E`).
            |grad| projection::product(grad, e, false),
            // As burn differentiates its right operand (`hᵀ · grad`, `[d, v]`), laid out as `E`
            // is: `gradᵀ · h` from `gradᵀ` row-major where that product is split (the same
            // sums of the same products), else burn's product transposed.
            |grad| {
                projection::transposed_product(&grad, &h).unwrap_or_else(|| {
                    transposed(Flex::float_matmul(Flex::float_transpose(h), grad))
                })
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, Int, Tensor};

    use super::super::bits_differ;
    use super::tied_head;

    type Ad = Autodiff<Flex>;

    /// An embedding lookup and a tied head, as a decoder uses them: the logits and both
    /// gradients equal burn's bit for bit.
    #[test]
    fn equals_burns_product_and_gradients() {
        let device = Default::default();
        // Rows too few to split; every product split; the head split, its gradients too narrow.
        for (n, d, v) in [(37, 48, 301), (130, 576, 4099), (256, 64, 1000)] {
            compare(n, d, v, &device);
        }
    }

    /// An embedding lookup and a tied head of `n` rows, width `d` and vocabulary `v`, ours against
    /// burn's.
    fn compare(n: usize, d: usize, v: usize, device: &burn::backend::flex::FlexDevice) {
        let e0 = Tensor::<Flex, 2>::random([v, d], Distribution::Normal(0.0, 1.0), device);
        let tokens = Tensor::<Ad, 2, Int>::from_ints([[3, 7, 300, 3]], device);
        let h0 = Tensor::<Flex, 2>::random([n, d], Distribution::Normal(0.0, 1.0), device);
        let run = |ours: bool| {
            let e = Tensor::<Ad, 2>::from_inner(e0.clone()).require_grad();
            let h = Tensor::<Ad, 2>::from_inner(h0.clone()).require_grad();
            let looked_up = burn::tensor::module::embedding(e.clone(), tokens.clone());
            let logits = if ours {
                tied_head(h.clone(), e.clone())
            } else {
                h.clone().matmul(e.clone().transpose())
            };
            let loss =
                (logits.clone() * logits.clone().tanh()).sum() + looked_up.powi_scalar(2).sum();
            let grads = loss.backward();
            [
                logits.inner(),
                h.grad(&grads).unwrap(),
                e.grad(&grads).unwrap(),
            ]
        };
        let whats = ["logits", "the gradient of h", "the gradient of E"];
        for ((what, ours), burns) in whats.into_iter().zip(run(true)).zip(run(false)) {
            let (differ, _) = bits_differ(ours, burns);
            assert_eq!(
                differ, 0,
                "{n}×{d}×{v}, {what}: {differ} values differ from burn's"
            );
        }
    }
}
