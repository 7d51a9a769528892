//! Q8_0 copies of a decoder's projection and output-head weights, for the forward passes of
//! frozen models on the CPU (simulators labelling pairs, judges, generation and scoring): a
//! quarter of the bytes every decoding step streams. See [`super::Llama::quantize_q8`].

pub use super::kernels::q8::Q8Matrix;

/// The seven projections of one block.
#[derive(Clone, Debug)]
pub struct BlockQ8 {
    /// Query projection.
    pub wq: Q8Matrix,
    /// Key projection.
    pub wk: Q8Matrix,
    /// Value projection.
    pub wv: Q8Matrix,
    /// Output projection.
    pub wo: Q8Matrix,
    /// MLP gate.
    pub gate: Q8Matrix,
    /// MLP up projection.
    pub up: Q8Matrix,
    /// MLP down projection.
    pub down: Q8Matrix,
}

/// Every quantized matrix of a decoder.
#[derive(Clone, Debug)]
pub struct Q8Weights {
    /// One entry per block, in order.
    pub blocks: Vec<BlockQ8>,
    /// The output head (the embedding matrix read transposed when tied).
    pub head: Q8Matrix,
}
