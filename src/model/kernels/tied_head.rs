//! The tied output head `h · Eᵀ` of a model being trained (pretraining, PPO's policy, the
//! preference model's trunk: paper §3), as one differentiable operation on the Flex backend.
//! Through burn's `matmul` of a transposed view, the embedding matrix's gradient from the head
//! arrives as a transposed view, and adding the embedding lookup's gradient to it walks the
//! matrix (113 MB for SmolLM2-135M) column by column on one core. Here the same product gives the same gradient
//! values, written out row-major over all cores, so the sum is a contiguous one. Forward
//! values and gradients are bit-identical to burn's.

use burn::backend::Flex;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary};
use burn::backend::flex::FlexTensor;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use super::flex::{AdTensor, ad_primitive, contiguous, from_ad, is_ad, values_of};

/// Rows of the transposed gradient one task writes.
const ROWS_PER_TASK: usize = 64;

/// `h · Eᵀ` for `h` `[n, d]` and `E` `[v, d]`: `[n, v]`.
pub(crate) fn tied_head<B: Backend>(h: Tensor<B, 2>, e: Tensor<B, 2>) -> Tensor<B, 2> {
    let fits =
        is_ad::<B>() && h.dims()[1] == e.dims()[1] && [h.dtype(), e.dtype()] == [DType::F32; 2];
    if !fits {
        return h.matmul(e.transpose());
    }
    from_ad(product(ad_primitive(h), ad_primitive(e)))
}

/// burn's forward product: `h` times the transposed view of `E`.
fn forward(h: FlexTensor, e: FlexTensor) -> FlexTensor {
    Flex::float_matmul(h, Flex::float_transpose(e))
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
            // operand transposed back.
            |grad| Flex::float_matmul(grad, Flex::float_transpose(Flex::float_transpose(e))),
            // As burn differentiates its right operand (`hᵀ · grad`, `[d, v]`), then laid out
            // as `E` is.
            |grad| transposed(Flex::float_matmul(Flex::float_transpose(h), grad)),
        );
    }
}

/// The transpose of a 2-D tensor, written row-major.
fn transposed(t: FlexTensor) -> FlexTensor {
    let t = contiguous(t);
    let shape = t.layout().shape();
    let (rows, cols) = (shape[0], shape[1]);
    let src = values_of(&t, rows * cols);
    let mut out = vec![0.0f32; rows * cols];
    out.par_chunks_mut(ROWS_PER_TASK * rows)
        .enumerate()
        .for_each(|(task, block)| {
            let c0 = task * ROWS_PER_TASK;
            let width = block.len() / rows;
            for r in 0..rows {
                let from = &src[r * cols + c0..r * cols + c0 + width];
                for (j, &x) in from.iter().enumerate() {
                    block[j * rows + r] = x;
                }
            }
        });
    FlexTensor::from_data(TensorData::new(out, [cols, rows]))
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
        let (n, d, v) = (37, 48, 301);
        let e0 = Tensor::<Flex, 2>::random([v, d], Distribution::Normal(0.0, 1.0), &device);
        let tokens = Tensor::<Ad, 2, Int>::from_ints([[3, 7, 300, 3]], &device);
        let h0 = Tensor::<Flex, 2>::random([n, d], Distribution::Normal(0.0, 1.0), &device);
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
            let (differ, n) = bits_differ(ours, burns);
            assert_eq!(
                differ, 0,
                "{what}: {differ} of {n} values differ from burn's"
            );
        }
    }
}
