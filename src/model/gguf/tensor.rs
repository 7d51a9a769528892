//! The tensor directory: one [`TensorInfo`] per tensor, with its shape, type and data offset.

use super::GgmlType;

/// One entry of a file's tensor directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in GGUF order, innermost (contiguous) first.
    pub dims: Vec<u64>,
    /// ggml type id; see [`GgmlType::from_id`].
    pub ggml_type: u32,
    /// Byte offset of the data from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Row-major shape: the dims reversed, e.g. `[out, in]` for a linear weight.
    pub fn shape(&self) -> Vec<usize> {
        self.dims
            .iter()
            .rev()
            .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
            .collect()
    }

    /// Number of values (saturating at `usize::MAX` for corrupt dims).
    pub fn n_elements(&self) -> usize {
        self.dims.iter().fold(1usize, |acc, &d| {
            acc.saturating_mul(usize::try_from(d).unwrap_or(usize::MAX))
        })
    }

    /// The tensor's type, if supported.
    pub fn known_type(&self) -> Option<GgmlType> {
        GgmlType::from_id(self.ggml_type)
    }

    /// Bytes of data, if the type is supported and the dims are whole blocks.
    pub fn byte_size(&self) -> Option<usize> {
        self.known_type()?.byte_size(self.n_elements())
    }
}
