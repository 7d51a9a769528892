//! CPU kernels for the decoder's inference path on the Flex backend (the model core behind
//! every simulator, judge and policy rollout of the paper's §3 pipeline): matrix products of
//! decoding shapes spread over all cores. Other backends, and autodiff backends, keep burn's own
//! operations; these kernels only see tensors that need no gradient.

mod flex;
mod matmul;
pub mod q8;

pub(crate) use flex::{is_flex, product, q8_product};

/// An output buffer shared by the tasks of a product, each writing elements no other task
/// writes.
struct Out(*mut f32);
// SAFETY: tasks write disjoint elements of one buffer that outlives them.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}
impl Out {
    /// The element `offset` places past the start (a method, so closures capture `Out`).
    fn at(&self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}
