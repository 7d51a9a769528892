//! The tied output head `h · Eᵀ` of a model being trained (pretraining, PPO's policy, the
//! preference model's trunk: paper §3), as one differentiable operation on the Flex backend.
//! Through burn's `matmul` of a transposed view, the embedding matrix's gradient from the head
//! arrives as a transposed view, and adding the embedding lookup's gradient to it walks the
//! matrix (113 MB for SmolLM2-135M) column by column on one core. Here the same product gives the same gradient
//! values, written out row-major over all cores, so the sum is a contiguous one. Forward
//! values and gradients are bit-identical to burn's.

use std::any::TypeId;

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use rayon::prelude::*;

use super::flex::{cast, contiguous, float_primitive, rows as values};

/// The training backend this operation replaces burn's product on.
type Ad = Autodiff<Flex>;
/// Its float tensors.
type AdTensor = <Ad as BackendTypes>::FloatTensorPrimitive;

/// Rows of the transposed gradient one task writes.
const ROWS_PER_TASK: usize = 64;

/// `h · Eᵀ` for `h` `[n, d]` and `E` `[v, d]`: `[n, v]`.
pub(crate) fn tied_head<B: Backend>(h: Tensor<B, 2>, e: Tensor<B, 2>) -> Tensor<B, 2> {
    let fits = TypeId::of::<B>() == TypeId::of::<Ad>()
        && h.dims()[1] == e.dims()[1]
        && [h.dtype(), e.dtype()] == [DType::F32; 2];
    if !fits {
        return h.matmul(e.transpose());
    }
    let out = product(
        cast::<_, AdTensor>(float_primitive(h)),
        cast(float_primitive(e)),
    );
    Tensor::from_primitive(TensorPrimitive::Float(cast(out)))
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
    let src = values(&t, rows * cols).expect("a contiguous tensor holds its values");
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

    use super::tied_head;

    type Ad = Autodiff<Flex>;

    fn bits(t: Tensor<Flex, 2>) -> Vec<u32> {
        t.into_data()
            .to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f32::to_bits)
            .collect()
    }

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
            (
                bits(logits.inner()),
                bits(h.grad(&grads).unwrap()),
                bits(e.grad(&grads).unwrap()),
            )
        };
        let (ours, burns) = (run(true), run(false));
        let differ = |a: &[u32], b: &[u32]| a.iter().zip(b).filter(|(x, y)| x != y).count();
        for (what, a, b) in [
            ("logits", &ours.0, &burns.0),
            ("the gradient of h", &ours.1, &burns.1),
            ("the gradient of E", &ours.2, &burns.2),
        ] {
            assert_eq!(a.len(), b.len(), "{what}: sizes");
            assert_eq!(differ(a, b), 0, "{what}: values differ from burn's");
        }
    }
}
