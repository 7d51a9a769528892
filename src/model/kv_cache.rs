//! The key/value cache of incremental decoding: preallocated, fixed-capacity per-layer key and
//! value tensors whose new slots are written in place (without copying the rest), the additive
//! key bias of every slot, and the number of real tokens per row (the next RoPE position).
//!
//! Attention over the cache covers its filled prefix rounded up to a bucket of [`KV_BUCKET`]
//! slots, so shapes change rarely (CUDA kernels are compiled per shape) and the CPU never pays
//! for the unused capacity.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use super::ModelError;
use super::kernels::write_along;
use super::llama::{LlamaConfig, MASKED, key_bias_from_mask, round_up};

/// Attention over a [`KvCache`] covers the filled prefix rounded up to a multiple of this.
pub const KV_BUCKET: usize = 64;

/// Keys and values of one layer, `[batch, n_kv_heads, capacity, head_dim]`.
#[derive(Clone, Debug)]
pub(super) struct LayerCache<B: Backend> {
    k: Option<Tensor<B, 4>>,
    v: Option<Tensor<B, 4>>,
    capacity: usize,
}

impl<B: Backend> LayerCache<B> {
    /// Writes `k` and `v` `[b, kv, s, hd]` to slots `start..start + s` and returns the cached
    /// keys and values of the first `span` slots.
    pub(super) fn append(
        &mut self,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        start: usize,
        span: usize,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [b, kv, _, hd] = k.dims();
        let device = k.device();
        let cap = [b, kv, self.capacity, hd];
        let full_k = write_along(take_slot(&mut self.k, &device, cap), k, 2, start);
        let full_v = write_along(take_slot(&mut self.v, &device, cap), v, 2, start);
        self.k = Some(full_k.clone());
        self.v = Some(full_v.clone());
        (full_k.narrow(2, 0, span), full_v.narrow(2, 0, span))
    }
}

/// A preallocated key/value cache for incremental decoding of a fixed batch.
#[derive(Clone, Debug)]
pub struct KvCache<B: Backend> {
    pub(super) layers: Vec<LayerCache<B>>,
    /// `[batch, capacity]`: 0 for real slots, a large negative number for padding/empty slots.
    key_bias: Option<Tensor<B, 2>>,
    /// `[batch, 1]`: real tokens written so far per row (the next RoPE position).
    n_real: Tensor<B, 2, Int>,
    len: usize,
    capacity: usize,
    batch: usize,
}

/// The cache slots a step of new tokens occupies, and what attention over them needs.
pub(super) struct Step<B: Backend> {
    /// First slot of the new tokens.
    pub(super) start: usize,
    /// One past their last slot.
    pub(super) end: usize,
    /// Slots attended over: `end` rounded up to [`KV_BUCKET`], at most the capacity.
    pub(super) span: usize,
    /// RoPE positions of the new tokens, `[b, s]`.
    pub(super) positions: Tensor<B, 2, Int>,
    /// Additive key bias of the first `span` slots, `[b, span]`.
    pub(super) key_bias: Tensor<B, 2>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `batch` rows of a model of configuration `c`, holding at least
    /// `capacity` slots (rounded up to [`KV_BUCKET`]).
    pub(super) fn new(c: &LlamaConfig, batch: usize, capacity: usize, device: &B::Device) -> Self {
        let capacity = round_up(capacity.max(1), KV_BUCKET);
        let shape = [batch, c.n_kv_heads, capacity, c.head_dim];
        let layers = (0..c.n_layers)
            .map(|_| LayerCache {
                k: Some(Tensor::zeros(shape, device)),
                v: Some(Tensor::zeros(shape, device)),
                capacity,
            })
            .collect();
        KvCache {
            layers,
            key_bias: Some(Tensor::full([batch, capacity], MASKED, device)),
            n_real: Tensor::zeros([batch, 1], device),
            len: 0,
            capacity,
            batch,
        }
    }

    /// Slots filled so far (the same for every row; padding occupies slots too).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no slot has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total slots (a multiple of [`KV_BUCKET`]).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Rows of the batch this cache serves.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Reserves slots for `[b, s]` new tokens with `mask` (1 = real): checks the batch and the
    /// capacity, advances the real-token counts and records the new tokens' key bias. The
    /// caller writes every layer through [`LayerCache::append`], then calls
    /// [`KvCache::commit`].
    pub(super) fn reserve(
        &mut self,
        [b, s]: [usize; 2],
        mask: Tensor<B, 2, Int>,
    ) -> Result<Step<B>, ModelError> {
        if b != self.batch {
            return Err(ModelError::Shape(format!(
                "forward_step got a batch of {b} rows but the KV cache was built for {}",
                self.batch
            )));
        }
        let start = self.len;
        let end = start + s;
        if end > self.capacity {
            return Err(ModelError::CacheFull {
                needed: end,
                capacity: self.capacity,
            });
        }
        let device = mask.device();
        let positions = (self.n_real.clone() + mask.clone().cumsum(1) - 1).clamp_min(0);
        self.n_real = self.n_real.clone() + mask.clone().sum_dim(1);
        let new_bias = key_bias_from_mask(mask);
        let key_bias = write_along(
            take_slot(&mut self.key_bias, &device, [b, self.capacity]),
            new_bias,
            1,
            start,
        );
        self.key_bias = Some(key_bias.clone());
        let span = round_up(end, KV_BUCKET).min(self.capacity);
        Ok(Step {
            start,
            end,
            span,
            positions,
            key_bias: key_bias.narrow(1, 0, span),
        })
    }

    /// Marks the slots up to `end` (a reserved [`Step`]'s end) filled.
    pub(super) fn commit(&mut self, end: usize) {
        self.len = end;
    }
}

/// Takes a cached tensor out of its slot so that it is uniquely owned and can be written in
/// place; an emptied slot (never left so by this module) is re-created as zeros.
fn take_slot<B: Backend, const D: usize>(
    slot: &mut Option<Tensor<B, D>>,
    device: &B::Device,
    shape: [usize; D],
) -> Tensor<B, D> {
    slot.take().unwrap_or_else(|| Tensor::zeros(shape, device))
}
