//! The product `x · W` of a linear layer being trained (every projection of a decoder under
//! pretraining, PPO's policy and value model, or the preference model's trunk: paper §3), as
//! one differentiable operation on the Flex backend when `x` has more than 64 rows. burn's
//! `matmul` runs the forward product and both gradients (`grad · Wᵀ` and `xᵀ · grad`) through
//! gemm's own parallel split, which forks and joins the thread pool several times per product,
//! and allocates each output through a copy. Here each of the three is cut into column blocks
//! over all cores ([`super::matmul`]), with `xᵀ` written row-major first. Forward values and
//! gradients are bit-identical to burn's; a product with too few rows or columns to split
//! keeps burn's.

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

use super::flex::{
    AdTensor, ad_primitive, column_product, contiguous, dims, from_ad, is_ad, transposed,
};
use super::matmul::{many_rows, worth_cutting};

/// `x · W` for `x` `[m, k]` and `W` `[k, n]`: `[m, n]`.
pub(crate) fn projection<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    let ([m, k], [rows, n]) = (x.dims(), w.dims());
    let fits =
        is_ad::<B>() && k == rows && [x.dtype(), w.dtype()] == [DType::F32; 2] && splits(m, k, n);
    if !fits {
        return x.matmul(w);
    }
    from_ad(record(ad_primitive(x), ad_primitive(w)))
}

/// Whether `[m, k] · [k, n]` is cut into blocks here (else burn computes it).
fn splits(m: usize, k: usize, n: usize) -> bool {
    many_rows(m) && worth_cutting(m, k, n)
}

/// `a · b` for `a` `[m, k]` and `b` `[k, n]` (`b` read through its transpose `bᵀ` `[n, k]`
/// when `b_transposed`), split by columns where [`splits`] says so, else burn's matmul.
pub(super) fn product(a: FlexTensor, b: FlexTensor, b_transposed: bool) -> FlexTensor {
    let [m, k] = dims(&a);
    let n = dims(&b)[usize::from(!b_transposed)];
    if splits(m, k, n) {
        return column_product(&a, &contiguous(b), b_transposed)
            .expect("a product's inner sizes agree");
    }
    let b = if b_transposed {
        Flex::float_transpose(b)
    } else {
        b
    };
    Flex::float_matmul(a, b)
}

/// `aᵀ · b` for `a` `[m, k]` and `b` `[m, n]`, from `aᵀ` written row-major and split by
/// columns, where [`splits`] says so for `[k, m] · [m, n]`; `None` otherwise.
pub(super) fn transposed_product(a: &FlexTensor, b: &FlexTensor) -> Option<FlexTensor> {
    let ([m, k], n) = (dims(a), dims(b)[1]);
    splits(k, m, n).then(|| product(transposed(a.clone()), b.clone(), false))
}

fn record(x: AdTensor, w: AdTensor) -> AdTensor {
    match Projection
        .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(&x), prep.checkpoint(&w));
            prep.finish(state, product(x.primitive, w.primitive, false))
        }
        OpsKind::UnTracked(prep) => prep.finish(product(x.primitive, w.primitive, false)),
    }
}

#[derive(Debug)]
struct Projection;

impl Backward<Flex, 2> for Projection {
    /// The checkpointed `x` and `W`.
    type State = (NodeId, NodeId);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, points: &mut Checkpointer) {
        let (x, w) = ops.state;
        let x: FlexTensor = points.retrieve_node_output(x);
        let w: FlexTensor = points.retrieve_node_output(w);
        binary::<Flex, _, _>(
            ops.parents,
            ops.node,
            grads,
            // `grad · Wᵀ`, as burn differentiates a product's left operand.
            |grad| product(grad, w, true),
            // `xᵀ · grad`, as burn differentiates its right operand.
            |grad| {
                transposed_product(&x, &grad)
                    .unwrap_or_else(|| Flex::float_matmul(Flex::float_transpose(x), grad))
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, Tensor};

    use super::super::bits_differ;
    use super::projection;

    type Ad = Autodiff<Flex>;

    /// Projections of training shapes (rows of a batch, SmolLM2-135M's and a world model's
    /// widths, a last block of 3 columns, a world model's products cut into blocks of rows),
    /// their input's gradient and the weight's: all equal
    /// burn's bit for bit, and a frozen weight gets no gradient.
    #[test]
    fn equals_burns_product_and_gradients() {
        let device = Default::default();
        for (m, k, n) in [
            (255, 576, 192),
            (100, 1536, 576),
            (300, 128, 384),
            (70, 576, 259),
            (2048, 128, 128),
            (2048, 128, 64),
            (2048, 384, 128),
            (384, 128, 128),
            (600, 128, 1),
        ] {
            let x0 = Tensor::<Flex, 2>::random([m, k], Distribution::Normal(0.0, 1.0), &device);
            let w0 = Tensor::<Flex, 2>::random([k, n], Distribution::Normal(0.0, 1.0), &device);
            let run = |ours: bool| {
                let x = Tensor::<Ad, 2>::from_inner(x0.clone()).require_grad();
                let w = Tensor::<Ad, 2>::from_inner(w0.clone()).require_grad();
                let y = if ours {
                    projection(x.clone(), w.clone())
                } else {
                    x.clone().matmul(w.clone())
                };
                let grads = (y.clone() * y.clone().tanh()).sum().backward();
                [y.inner(), x.grad(&grads).unwrap(), w.grad(&grads).unwrap()]
            };
            let whats = ["the product", "the gradient of x", "the gradient of W"];
            for ((what, ours), burns) in whats.into_iter().zip(run(true)).zip(run(false)) {
                let (differ, len) = bits_differ(ours, burns);
                assert_eq!(
                    differ, 0,
                    "{m}×{k}×{n}, {what}: {differ} of {len} values differ"
                );
            }
        }
        let x = Tensor::<Ad, 2>::random([128, 576], Distribution::Default, &device).require_grad();
        let w = Tensor::<Ad, 2>::random([576, 576], Distribution::Default, &device);
        let grads = projection(x.clone(), w.clone()).sum().backward();
        assert!(x.grad(&grads).is_some() && w.grad(&grads).is_none());
    }
}
