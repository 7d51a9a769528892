//! The gate of the decoder's SwiGLU feed-forward, `silu(g) ⊙ u`, in one pass over both
//! operands and spread over all cores. Each element is computed with exactly the operations of
//! burn's `silu(g) * u` on the Flex backend (its two-sided logistic, then two products in the
//! same order), so results are bit-identical to it; only the passes, the allocations and the
//! single core go. In training (`Autodiff<Flex>`) the gate is one recorded operation whose
//! gradients are the ones autodiff derives through burn's three (`sigmoid`, two products),
//! computed in one pass, with the logistic computed once instead of again in the backward pass.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::tensor::TensorData;
use rayon::prelude::*;

use super::exp::exp_in_place;
use super::flex::{AdTensor, contiguous, rows, values_of};
use super::new_pair_in_chunks;

/// Elements one task computes.
const CHUNK: usize = 1 << 14;

/// Writes the logistic of every `gate` value into `out` as burn-flex computes it: `exp` of a
/// non-positive number only, so it never overflows (`1 / (1 + exp(−x))` for `x ≥ 0`, `e / (1 +
/// e)` with `e = exp(x)` otherwise), the `exp`s taken over the whole run at once.
///
/// # Panics
/// When the two slices differ in length (a bug of the caller).
fn sigmoids(gate: &[f32], out: &mut [f32]) {
    assert_eq!(gate.len(), out.len(), "sigmoid: operands differ in length");
    for (o, &g) in out.iter_mut().zip(gate) {
        *o = -g.abs();
    }
    exp_in_place(out);
    for (o, &g) in out.iter_mut().zip(gate) {
        let e = *o;
        *o = if g >= 0.0 {
            1.0 / (1.0 + e)
        } else {
            e / (1.0 + e)
        };
    }
}

/// Values per block of [`swiglu_in_place`]'s logistic, a buffer on the stack.
const BLOCK: usize = 256;

/// Overwrites `gate` with `silu(gate) ⊙ up`.
///
/// # Panics
/// When the two slices differ in length (a bug of the caller).
pub(super) fn swiglu_in_place(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "swiglu: operands differ in length");
    gate.par_chunks_mut(CHUNK)
        .zip(up.par_chunks(CHUNK))
        .for_each(|(g, u)| {
            let mut sig = [0.0f32; BLOCK];
            for (g, u) in g.chunks_mut(BLOCK).zip(u.chunks(BLOCK)) {
                let sig = &mut sig[..g.len()];
                sigmoids(g, sig);
                for ((g, &s), &u) in g.iter_mut().zip(sig.iter()).zip(u) {
                    *g = *g * s * u;
                }
            }
        });
}

/// `silu(gate) ⊙ up` recorded as one operation of the training graph (equal shapes, `f32`).
pub(super) fn recorded(gate: AdTensor, up: AdTensor) -> AdTensor {
    match SwiGlu
        .prepare::<NoCheckpointing>([gate.node.clone(), up.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (out, state) = forward(gate.primitive, up.primitive);
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(gate.primitive, up.primitive).0),
    }
}

/// The operands and the logistic of the gate, as the backward pass reads them.
#[derive(Clone, Debug)]
struct Saved {
    gate: FlexTensor,
    up: FlexTensor,
    sigmoid: Vec<f32>,
}

impl Saved {
    fn gate(&self) -> &[f32] {
        rows(&self.gate, self.sigmoid.len()).expect("saved contiguous")
    }

    fn up(&self) -> &[f32] {
        rows(&self.up, self.sigmoid.len()).expect("saved contiguous")
    }
}

/// `g · σ(g) · u` per element (burn's `silu(g) * u`), and what the backward pass reads.
fn forward(gate: FlexTensor, up: FlexTensor) -> (FlexTensor, Saved) {
    let (gate, up) = (contiguous(gate), contiguous(up));
    let shape = gate.layout().shape().clone();
    let len = gate.layout().num_elements();
    let [out, sig] = {
        let g = values_of(&gate, len);
        let u = values_of(&up, len);
        new_pair_in_chunks(len, CHUNK, |first, o, s| {
            let (g, u) = (&g[first..first + o.len()], &u[first..first + o.len()]);
            sigmoids(g, s);
            for (((o, &s), &g), &u) in o.iter_mut().zip(s.iter()).zip(g).zip(u) {
                *o = g * s * u;
            }
        })
    };
    let out = FlexTensor::from_data(TensorData::new(out, shape));
    let saved = Saved {
        gate,
        up,
        sigmoid: sig,
    };
    (out, saved)
}

#[derive(Debug)]
struct SwiGlu;

impl Backward<Flex, 2> for SwiGlu {
    type State = Saved;

    /// For the incoming gradient `G`, as autodiff derives it through `(g · σ(g)) · u`: `u`
    /// gets `G · (g · σ)`; the product `g · σ` gets `G · u`, which reaches `g` directly as
    /// `(G · u) · σ` and through the logistic as `((G · u) · g) · σ · (1 − σ)`, the two added.
    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let saved = ops.state;
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let [to_gate, to_up] = ops.parents;
        let len = saved.sigmoid.len();
        let shape = grad.layout().shape().clone();
        let gr = values_of(&grad, len);
        let (g, u, s) = (saved.gate(), saved.up(), &saved.sigmoid[..]);
        let [d_gate, d_up] = new_pair_in_chunks(len, CHUNK, |at, dg, du| {
            for (i, (dg, du)) in dg.iter_mut().zip(du.iter_mut()).enumerate() {
                let (gr, g, u, s) = (gr[at + i], g[at + i], u[at + i], s[at + i]);
                let to_silu = gr * u;
                *du = gr * (g * s);
                *dg = to_silu * s + to_silu * g * s * (1.0 - s);
            }
        });
        let tensor = |v| FlexTensor::from_data(TensorData::new(v, shape.clone()));
        if let Some(node) = to_gate {
            grads.register::<Flex>(node.id, tensor(d_gate));
        }
        if let Some(node) = to_up {
            grads.register::<Flex>(node.id, tensor(d_up));
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::activation::silu;
    use burn::tensor::{Distribution, Tensor};

    use super::super::{bits_differ, swiglu};
    use super::swiglu_in_place;

    #[test]
    fn equals_burns_silu_times_up_bit_for_bit() {
        // Large and small magnitudes of both signs, zeros, and more than one task's chunk.
        let n = 3 * super::CHUNK + 17;
        let g: Vec<f32> = (0..n)
            .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 40.0 / (1 + i % 7) as f32)
            .collect();
        let u: Vec<f32> = (0..n)
            .map(|i| ((i as f32 * 0.414_213).fract() - 0.5) * 6.0)
            .collect();
        let device = Default::default();
        let want = (silu(Tensor::<Flex, 1>::from_floats(g.as_slice(), &device))
            * Tensor::<Flex, 1>::from_floats(u.as_slice(), &device))
        .into_data()
        .to_vec::<f32>()
        .unwrap();
        let mut got = g.clone();
        swiglu_in_place(&mut got, &u);
        let differ = got
            .iter()
            .zip(&want)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differ, 0, "{differ} of {n} elements differ from burn's");
    }

    /// Training: the gate's output and both operands' gradients equal burn's graph and
    /// autodiff's gradients bit for bit, over more than one task's chunk.
    #[test]
    fn recorded_gate_equals_burns_graph_and_gradients_bit_for_bit() {
        type Ad = Autodiff<Flex>;
        let device = Default::default();
        let dims = [3, 5 + super::CHUNK / 64, 64];
        let sample = |std| Tensor::<Flex, 3>::random(dims, Distribution::Normal(0.0, std), &device);
        let (g0, u0, w) = (sample(4.0), sample(1.0), sample(1.0));
        let run = |ours: bool| {
            let g = Tensor::<Ad, 3>::from_inner(g0.clone()).require_grad();
            let u = Tensor::<Ad, 3>::from_inner(u0.clone()).require_grad();
            let y = if ours {
                swiglu(g.clone(), u.clone())
            } else {
                silu(g.clone()) * u.clone()
            };
            let grads = (y.clone() * Tensor::from_inner(w.clone())).sum().backward();
            [y.inner(), g.grad(&grads).unwrap(), u.grad(&grads).unwrap()]
        };
        let (ours, burn) = (run(true), run(false));
        for ((what, ours), burn) in ["output", "gate gradient", "up gradient"]
            .into_iter()
            .zip(ours)
            .zip(burn)
        {
            let (differ, n) = bits_differ(ours, burn);
            assert_eq!(differ, 0, "{what}: {differ} of {n} differ");
        }
    }
}
