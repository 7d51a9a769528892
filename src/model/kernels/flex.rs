//! The bridge between generic burn tensors and the Flex backend's own tensors: a tensor of a
//! backend that is Flex is read and built directly; every other backend gets `None` and keeps
//! burn's operations.

use std::any::{Any, TypeId};
use std::ops::Range;
use std::sync::Arc;

use burn::backend::autodiff::grads::Gradients;
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::activation::{self, silu};
use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};

use super::adamw::{AdamWScalars, adamw_in_place};
use super::log_softmax::{forward as log_softmax_forward, recorded as recorded_log_softmax};
use super::matmul::{
    Operand, matmul_each, matmul_rows, task_widths, worth_cutting, worth_it_transposed,
};
use super::new_in_chunks;
use super::q8::Q8Matrix;
use super::swiglu::{recorded as recorded_swiglu, swiglu_in_place};

/// Whether `B` is the Flex CPU backend (whose tensors these kernels read).
pub(crate) fn is_flex<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<Flex>()
}

/// The training backend: autodiff over Flex.
pub(super) type Ad = Autodiff<Flex>;
/// Its float tensors.
pub(super) type AdTensor = <Ad as BackendTypes>::FloatTensorPrimitive;

/// Whether `B` is the training backend [`Ad`].
pub(super) fn is_ad<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<Ad>()
}

/// The [`Ad`] tensor that is `t`, when the caller checked that `B` is [`Ad`].
pub(super) fn ad_primitive<B: Backend, const D: usize>(t: Tensor<B, D>) -> AdTensor {
    cast(float_primitive(t))
}

/// The tensor of backend `B` (which is [`Ad`]) that is `t`.
pub(super) fn from_ad<B: Backend, const D: usize>(t: AdTensor) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(cast(t)))
}

/// The Flex tensor behind `t` (an O(1) shared view), when `B` is Flex and `t` holds `f32`.
pub(super) fn flex_f32<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Option<FlexTensor> {
    into_flex(t.clone()).ok()
}

/// The Flex tensor that is `t` (no copy, no other reference taken), when `B` is Flex and `t`
/// holds `f32`; `t` itself otherwise.
fn into_flex<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<FlexTensor, Tensor<B, D>> {
    if !is_flex::<B>() {
        return Err(t);
    }
    let flex: FlexTensor = cast(float_primitive(t));
    if flex.dtype() == DType::F32 {
        Ok(flex)
    } else {
        Err(from_flex(flex))
    }
}

/// The tensor of backend `B` (which is Flex) that is `flex`.
pub(super) fn from_flex<B: Backend, const D: usize>(flex: FlexTensor) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(cast(flex)))
}

/// The backend primitive of a float tensor.
pub(super) fn float_primitive<B: Backend, const D: usize>(
    t: Tensor<B, D>,
) -> B::FloatTensorPrimitive {
    let TensorPrimitive::Float(p) = t.into_primitive() else {
        unreachable!("a float tensor's primitive is a float primitive")
    };
    p
}

/// `value` as type `U`, which the caller checked is its type (a backend's primitive as the
/// concrete backend's, or back).
pub(super) fn cast<T: 'static, U: 'static>(value: T) -> U {
    let boxed: Box<dyn Any> = Box::new(value);
    *boxed
        .downcast::<U>()
        .expect("the caller checked the backend's type")
}

/// A tensor of backend `B` (which is Flex) holding `values` row-major in shape `dims`.
pub(super) fn from_values<B: Backend, const D: usize>(
    values: Vec<f32>,
    dims: [usize; D],
) -> Tensor<B, D> {
    from_flex(FlexTensor::from_data(TensorData::new(values, dims)))
}

/// `dst` with `src` written over indices `start..start + len` of dimension `dim` (`len` being
/// `src`'s size there; every other size equal to `dst`'s): what `slice_assign` computes, in
/// place when `B` is Flex and `dst` is uniquely owned and contiguous. burn-flex's own
/// `slice_assign` copies the whole destination first, which for a KV cache is every slot of
/// every layer at every decoding step.
pub(crate) fn write_along<B: Backend, const D: usize>(
    dst: Tensor<B, D>,
    src: Tensor<B, D>,
    dim: usize,
    start: usize,
) -> Tensor<B, D> {
    let (to, from) = (dst.dims(), src.dims());
    let ranges: [Range<usize>; D] = std::array::from_fn(|i| {
        if i == dim {
            start..start + from[i]
        } else {
            0..from[i]
        }
    });
    let fits = (0..D).all(|i| {
        if i == dim {
            start + from[i] <= to[i]
        } else {
            from[i] == to[i]
        }
    });
    if !fits {
        // burn's checks name the mismatch.
        return dst.slice_assign(ranges, src);
    }
    let mut flex = match into_flex(dst) {
        Ok(flex) => flex,
        Err(dst) => return dst.slice_assign(ranges, src),
    };
    let inner: usize = to[dim + 1..].iter().product();
    let written = write_slots(&mut flex, &src, to[dim] * inner, start * inner);
    let dst = from_flex::<B, D>(flex);
    if written.is_some() {
        dst
    } else {
        dst.slice_assign(ranges, src)
    }
}

/// Copies `src` into `dst` (contiguous, uniquely owned): `src` is a run of equal chunks, chunk
/// `o` going `at` elements into the `o`-th span of `span` elements of `dst`. `None`, leaving
/// `dst` untouched, when `dst` is shared or strided.
fn write_slots<B: Backend, const D: usize>(
    dst: &mut FlexTensor,
    src: &Tensor<B, D>,
    span: usize,
    at: usize,
) -> Option<()> {
    let len = dst.layout().num_elements();
    if dst.layout().contiguous_offsets() != Some((0, len)) || span == 0 {
        return None;
    }
    let values = contiguous(flex_f32(src)?);
    let outer = len / span;
    let values = rows(&values, values.layout().num_elements())?;
    let chunk = values.len() / outer.max(1);
    let out = dst.try_storage_mut::<f32>()?;
    for (o, v) in values.chunks_exact(chunk.max(1)).enumerate() {
        out[o * span + at..o * span + at + chunk].copy_from_slice(v);
    }
    Some(())
}

/// `silu(gate) ⊙ up` (equal shapes): on Flex in one pass over all cores, written over `gate`'s
/// buffer when it is uniquely owned, with bit-identical results; burn's operations otherwise
/// (other backends, and autodiff, which records them).
pub(crate) fn swiglu<B: Backend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
) -> Tensor<B, D> {
    let dims = gate.dims();
    if dims != up.dims() {
        return silu(gate) * up;
    }
    if is_ad::<B>() && [gate.dtype(), up.dtype()] == [DType::F32; 2] {
        return from_ad(recorded_swiglu(ad_primitive(gate), ad_primitive(up)));
    }
    let (mut gate, up_flex) = match (into_flex(gate), flex_f32(&up)) {
        (Ok(g), Some(u)) => (contiguous(g), contiguous(u)),
        (Ok(g), None) => return silu(from_flex::<B, D>(g)) * up,
        (Err(g), _) => return silu(g) * up,
    };
    let len = dims.iter().product();
    let up_values = values_of(&up_flex, len);
    if gate.layout().contiguous_offsets() == Some((0, len))
        && let Some(out) = gate.try_storage_mut::<f32>()
    {
        swiglu_in_place(out, up_values);
        return from_flex(gate);
    }
    let mut out = values_of(&gate, len).to_vec();
    swiglu_in_place(&mut out, up_values);
    from_values(out, dims)
}

/// Log-softmax along the last dimension: on Flex with its element-wise passes over all cores
/// and results bit-identical to burn's `log_softmax` (which computes the same passes on one
/// core); on `Autodiff<Flex>` as one recorded operation with burn's values and gradients;
/// burn's `log_softmax` on other backends.
pub fn log_softmax<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let last = D - 1;
    if x.dtype() != DType::F32 || x.dims().iter().product::<usize>() == 0 {
        return activation::log_softmax(x, last);
    }
    if is_ad::<B>() {
        return from_ad(recorded_log_softmax(ad_primitive(x)));
    }
    match into_flex(x) {
        Ok(flex) => from_flex(log_softmax_forward(flex).0),
        Err(x) => activation::log_softmax(x, last),
    }
}

/// A parameter, its gradient and its two moment estimates (`None` before the first step).
pub(crate) type AdamWInputs<B, const D: usize> =
    (Tensor<B, D>, Tensor<B, D>, Option<[Tensor<B, D>; 2]>);

/// One AdamW update on Flex, in one pass over all cores with results bit-identical to burn's
/// AdamW: the parameter and its two moments after the step, each written over its old buffer
/// where that is uniquely owned. `Err` hands the inputs back when `B` is not Flex or a tensor
/// does not hold `f32`.
pub(crate) fn adamw<B: Backend, const D: usize>(
    (param, grad, moments): AdamWInputs<B, D>,
    scalars: &AdamWScalars,
) -> Result<[Tensor<B, D>; 3], AdamWInputs<B, D>> {
    let dims = param.dims();
    let fits = is_flex::<B>()
        && [&param, &grad]
            .into_iter()
            .chain(moments.iter().flatten())
            .all(|t| t.dims() == dims && t.dtype() == DType::F32);
    if !fits {
        return Err((param, grad, moments));
    }
    let flex = |t: Tensor<B, D>| -> FlexTensor {
        let Ok(t) = into_flex(t) else {
            unreachable!("B is Flex and the tensor holds f32")
        };
        t
    };
    let len = dims.iter().product();
    let mut param = owned(flex(param), dims);
    let grad = contiguous(flex(grad));
    let first = moments.is_none();
    let [mut m, mut v] = match moments {
        Some([m, v]) => [owned(flex(m), dims), owned(flex(v), dims)],
        None => [(); 2].map(|()| FlexTensor::from_data(TensorData::new(vec![0.0f32; len], dims))),
    };
    adamw_in_place(
        storage(&mut param),
        storage(&mut m),
        storage(&mut v),
        values_of(&grad, len),
        first,
        scalars,
    );
    Ok([param, m, v].map(from_flex))
}

/// A stand-in for the training tensor `t` that names only its node (its value is empty): what
/// [`take_grad`] finds `t`'s gradient by, kept by a recorded operation for its backward pass.
pub(super) fn grad_probe(t: &AdTensor) -> AdTensor {
    AdTensor {
        primitive: FlexTensor::from_data(TensorData::new(Vec::<f32>::new(), [0])),
        node: t.node.clone(),
        rc: Arc::new(t.node.id),
    }
}

/// The gradient the tensor `probe` stands for has received so far, taken out of `grads`
/// (`None` when nothing reached it yet): for a recorded operation that adds its own terms to
/// it in the order autodiff would, then registers the sum.
pub(super) fn take_grad(grads: &mut Gradients, probe: &AdTensor) -> Option<FlexTensor> {
    grads.remove::<Flex>(probe)
}

/// `t` uniquely owned and contiguous from its buffer's start (a copy when it is not).
pub(super) fn owned<const D: usize>(t: FlexTensor, dims: [usize; D]) -> FlexTensor {
    let len = dims.iter().product();
    if t.is_unique() && t.layout().contiguous_offsets() == Some((0, len)) {
        return t;
    }
    let t = contiguous(t);
    let values = values_of(&t, len);
    FlexTensor::from_data(TensorData::new(values.to_vec(), dims))
}

/// The values of a tensor [`owned`] returned.
pub(super) fn storage(t: &mut FlexTensor) -> &mut [f32] {
    let len = t.layout().num_elements();
    let values = t
        .try_storage_mut::<f32>()
        .expect("an owned tensor's buffer is unique");
    &mut values[..len]
}

/// Rows of a transposed matrix one task of [`transposed`] writes.
const ROWS_PER_TASK: usize = 64;

/// The transpose of a 2-D tensor, written row-major.
pub(super) fn transposed(t: FlexTensor) -> FlexTensor {
    let t = contiguous(t);
    let [rows, cols] = dims(&t);
    let src = values_of(&t, rows * cols);
    let out = new_in_chunks(rows * cols, ROWS_PER_TASK * rows, |first, block| {
        let c0 = first / rows;
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

/// The length of the last dimension and the number of values of a tensor.
pub(super) fn row_shape(t: &FlexTensor) -> (usize, usize) {
    let shape = t.layout().shape();
    let len = shape[shape.num_dims() - 1];
    (len, shape.iter().product())
}

/// A contiguous tensor of `like`'s shape holding `values`.
pub(super) fn shaped(values: Vec<f32>, like: &FlexTensor) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, like.layout().shape().clone()))
}

/// The `len` values of a contiguous tensor.
///
/// # Panics
/// When `t` is not contiguous or holds another number of `f32` values (a bug of the caller).
pub(super) fn values_of(t: &FlexTensor, len: usize) -> &[f32] {
    rows(t, len).expect("a contiguous tensor holds its values")
}

/// `t` laid out contiguously (a copy only when it is a strided view).
pub(super) fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The `len` values of a contiguous `f32` tensor; `None` when it is strided.
pub(super) fn rows(t: &FlexTensor, len: usize) -> Option<&[f32]> {
    let (start, _) = t.layout().contiguous_offsets()?;
    t.storage::<f32>().get(start..start + len)
}

/// `x · W` for `x` `[m, k]` and `w` `[k, n]`, or `x · Eᵀ` for `w` = `E` `[n, k]` when
/// `transposed` (a tied output head reading the embedding matrix), split over all cores when
/// `B` is Flex and burn would run the shape on one core; `None` otherwise (the caller uses
/// burn's `matmul`).
pub(crate) fn product<B: Backend>(
    x: &Tensor<B, 2>,
    w: &Tensor<B, 2>,
    transposed: bool,
) -> Option<Tensor<B, 2>> {
    let [m, k] = x.dims();
    let n = w.dims()[usize::from(!transposed)];
    let split = if transposed {
        worth_it_transposed(m, k, n)
    } else {
        worth_cutting(m, k, n)
    };
    if !split {
        return None;
    }
    flex_product::<B>(x, w, transposed)
}

/// `x · W` for `x` `[m, k]` and every `w` `[k, n]` of `ws` in one parallel pass
/// ([`matmul_each`]), when `B` is Flex and every product is one this module computes: a
/// decoding shape split by columns, as [`product`] splits it, or a single row, whose product
/// runs whole on one core as burn runs it, beside the others. `None` otherwise (the caller
/// runs them one by one).
pub(crate) fn products<B: Backend, const N: usize>(
    x: &Tensor<B, 2>,
    ws: [&Tensor<B, 2>; N],
) -> Option<[Tensor<B, 2>; N]> {
    let [m, k] = x.dims();
    if !is_flex::<B>() || ws.iter().any(|w| w.dims()[0] != k) {
        return None;
    }
    let widths = task_widths(m, k, &ws.map(|w| w.dims()[1]))?;
    let xf = contiguous(flex_f32(x)?);
    let wfs = ws
        .iter()
        .map(|w| flex_f32(w))
        .collect::<Option<Vec<FlexTensor>>>()?;
    let operands = wfs
        .iter()
        .zip(&ws)
        .zip(widths)
        .map(|((wf, w), width)| {
            let [r, c] = w.dims();
            Some((Operand::rows(rows(wf, r * c)?, c), width))
        })
        .collect::<Option<Vec<_>>>()?;
    let outs: Vec<Tensor<B, 2>> = matmul_each(rows(&xf, m * k)?, m, k, &operands)
        .into_iter()
        .zip(ws)
        .map(|(out, w)| from_values(out, [m, w.dims()[1]]))
        .collect();
    outs.try_into().ok()
}

/// `x · W` for `x` `[m, k]` with `W` in Q8_0; `None` when `B` is not Flex or the shapes differ.
pub(crate) fn q8_product<B: Backend>(x: &Tensor<B, 2>, w: &Q8Matrix) -> Option<Tensor<B, 2>> {
    let [out] = q8_products(x, [w])?;
    Some(out)
}

/// `x · W` for every `W` of `ws`, all in Q8_0, in one parallel pass
/// ([`Q8Matrix::matmul_each`]); `None` when `B` is not Flex or a shape differs.
pub(crate) fn q8_products<B: Backend, const N: usize>(
    x: &Tensor<B, 2>,
    ws: [&Q8Matrix; N],
) -> Option<[Tensor<B, 2>; N]> {
    let [m, k] = x.dims();
    if ws.iter().any(|w| w.k() != k) {
        return None;
    }
    let xf = contiguous(flex_f32(x)?);
    let outs: Vec<Tensor<B, 2>> = Q8Matrix::matmul_each(&ws, rows(&xf, m * k)?, m)
        .into_iter()
        .zip(ws)
        .map(|(out, w)| from_values(out, [m, w.n()]))
        .collect();
    outs.try_into().ok()
}

fn flex_product<B: Backend>(
    x: &Tensor<B, 2>,
    w: &Tensor<B, 2>,
    transposed: bool,
) -> Option<Tensor<B, 2>> {
    column_product(&flex_f32(x)?, &flex_f32(w)?, transposed).map(from_flex)
}

/// `a · b` for `a` `[m, k]` and `b` `[k, n]` (`b` read through its transpose `bᵀ` `[n, k]`
/// when `b_transposed`), cut into column blocks over all cores ([`matmul_rows`]); `None` when
/// `b` is a strided view or the inner sizes differ.
pub(super) fn column_product(
    a: &FlexTensor,
    b: &FlexTensor,
    b_transposed: bool,
) -> Option<FlexTensor> {
    let ([m, k], [r, c]) = (dims(a), dims(b));
    let (n, inner) = if b_transposed { (r, c) } else { (c, r) };
    if inner != k {
        return None;
    }
    let a = contiguous(a.clone());
    let bv = rows(b, r * c)?;
    let rhs = if b_transposed {
        Operand::transposed(bv, k)
    } else {
        Operand::rows(bv, n)
    };
    let out = matmul_rows(rows(&a, m * k)?, m, k, rhs, n);
    Some(FlexTensor::from_data(TensorData::new(out, [m, n])))
}

/// A 4-D `f32` tensor read in place through its layout: its buffer, the offset of its first
/// element and the steps along each dimension.
pub(super) struct Strided<'a> {
    data: &'a [f32],
    start: usize,
    pub(super) strides: [isize; 4],
}

impl<'a> Strided<'a> {
    /// `None` for a tensor of another rank or with a negative step (read backwards).
    pub(super) fn of(t: &'a FlexTensor) -> Option<Self> {
        let layout = t.layout();
        let strides: [isize; 4] = layout.strides().try_into().ok()?;
        if strides.iter().any(|&st| st < 0) {
            return None;
        }
        Some(Self {
            data: t.storage::<f32>(),
            start: layout.start_offset(),
            strides,
        })
    }

    /// The element at index `[i, j, l, 0]`.
    pub(super) fn at(&self, [i, j, l]: [usize; 3]) -> *const f32 {
        self.data.as_ptr().wrapping_offset(self.offset([i, j, l]))
    }

    /// The buffer offset of the element at index `[i, j, l, 0]`.
    pub(super) fn offset(&self, [i, j, l]: [usize; 3]) -> isize {
        let s = self.strides;
        self.start as isize + i as isize * s[0] + j as isize * s[1] + l as isize * s[2]
    }

    /// The `len` values from index `[i, j, l, 0]` along the last dimension, into `out`.
    pub(super) fn read_row(&self, index: [usize; 3], out: &mut [f32]) {
        let at = self.offset(index) as usize;
        let step = self.strides[3] as usize;
        if step == 1 {
            out.copy_from_slice(&self.data[at..at + out.len()]);
        } else {
            for (c, v) in out.iter_mut().enumerate() {
                *v = self.data[at + c * step];
            }
        }
    }
}

/// The sizes of a 2-D tensor.
pub(super) fn dims(t: &FlexTensor) -> [usize; 2] {
    let shape = t.layout().shape();
    [shape[0], shape[1]]
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::activation::{self, silu};
    use burn::tensor::{Distribution, Tensor};

    use super::super::bits_differ;
    use super::{log_softmax, product, products, swiglu, write_along};

    fn same<const D: usize, B: burn::tensor::backend::Backend>(a: Tensor<B, D>, b: Tensor<B, D>) {
        assert_eq!(a.dims(), b.dims());
        assert_eq!(
            a.into_data().to_vec::<f32>().unwrap(),
            b.into_data().to_vec::<f32>().unwrap()
        );
    }

    /// Where `t`'s values live.
    fn buffer<const D: usize>(t: &Tensor<Flex, D>) -> usize {
        super::flex_f32(t).unwrap().bytes().as_ptr() as usize
    }

    #[test]
    fn writing_along_a_dimension_is_slice_assign() {
        let device = Default::default();
        let dst = Tensor::<Flex, 4>::random([2, 3, 8, 4], Distribution::Default, &device);
        // A swapped view, as the decoder's keys arrive.
        let src =
            Tensor::<Flex, 4>::random([2, 3, 4, 3], Distribution::Default, &device).swap_dims(2, 3);
        let want = dst
            .clone()
            .slice_assign([0..2, 0..3, 5..8, 0..4], src.clone());
        let kept = dst.clone();
        // Shared: the other reference must not see the write.
        same(write_along(dst.clone(), src.clone(), 2, 5), want.clone());
        same(kept.clone(), dst);
        // Uniquely owned: written in place, same values.
        let before = buffer(&kept);
        let written = write_along(kept, src, 2, 5);
        assert_eq!(
            buffer(&written),
            before,
            "a unique destination is written in place"
        );
        same(written, want);

        let bias = Tensor::<Flex, 2>::zeros([3, 6], &device);
        let new = Tensor::<Flex, 2>::ones([3, 2], &device);
        let want = bias.clone().slice_assign([0..3, 1..3], new.clone());
        same(write_along(bias, new, 1, 1), want);
    }

    #[test]
    fn swiglu_leaves_a_shared_gate_alone_and_equals_burns() {
        let device = Default::default();
        let gate = Tensor::<Flex, 3>::random([2, 3, 40], Distribution::Normal(0.0, 4.0), &device);
        let up = Tensor::<Flex, 3>::random([2, 3, 40], Distribution::Default, &device);
        let want = silu(gate.clone()) * up.clone();
        let kept = gate.clone();
        same(swiglu(gate, up.clone()), want.clone());
        let before = buffer(&kept);
        let out = swiglu(kept.clone(), up);
        assert_ne!(buffer(&out), before, "a shared gate is not overwritten");
        same(out, want);
    }

    #[test]
    fn log_softmax_equals_burns_bit_for_bit() {
        let device = Default::default();
        // Rows longer and shorter than a task, large logits, a strided view.
        for [a, b, c] in [[2, 3, 7000], [1, 40, 33]] {
            let dims = [a, b, c];
            let x = Tensor::<Flex, 3>::random(dims, Distribution::Normal(0.0, 30.0), &device);
            let strided = Tensor::<Flex, 3>::random([b, a, c], Distribution::Default, &device)
                .swap_dims(0, 1);
            for x in [x.clone(), strided, x.flip([2])] {
                let want = activation::log_softmax(x.clone(), 2);
                let (differ, n) = bits_differ(log_softmax(x), want);
                assert_eq!(differ, 0, "{differ} of {n} values differ at {dims:?}");
            }
        }
    }

    /// Scoring, judging and prefill shapes (more than 64 rows, no gradient): the blocks give
    /// burn's values bit for bit, in both layouts, for widths with a last block of 3, 15, 44 or
    /// 64 columns, a few columns past a whole block, and a vocabulary of whole blocks.
    #[test]
    fn many_row_products_equal_burns_bit_for_bit() {
        let device = Default::default();
        for m in [65, 85, 100, 256] {
            for (k, n) in [
                (576, 4099),
                (576, 4111),
                (576, 192),
                (128, 300),
                (1536, 576),
            ]
            .into_iter()
            .chain([(576, 130), (64, 49_152)])
            {
                let x = Tensor::<Flex, 2>::random([m, k], Distribution::Default, &device);
                let w = Tensor::<Flex, 2>::random([k, n], Distribution::Default, &device);
                let e = Tensor::<Flex, 2>::random([n, k], Distribution::Default, &device);
                let rows = product(&x, &w, false).expect("split by columns");
                let head = product(&x, &e, true).expect("split by columns");
                for (what, got, want) in [
                    ("x·W", rows, x.clone().matmul(w)),
                    ("x·Eᵀ", head, x.clone().matmul(e.transpose())),
                ] {
                    let (differ, _) = bits_differ(got, want);
                    assert_eq!(differ, 0, "{what} at {m}×{k}×{n}: {differ} values differ");
                }
            }
        }
    }

    /// Products of many rows and at most 128 columns, cut into blocks of rows: burn's values
    /// bit for bit, for a world model's training shapes (its projections over a batch of
    /// 2,048 rows, their input gradients and their weight gradients with `k` = 2,048, cut
    /// into blocks of `k` by gemm), blocks of 65 rows over 64 columns, uneven blocks, every
    /// row count from 65 to 700 in steps of 13 over a world model's widths, and products left
    /// to burn: a row count under two blocks, and a single column.
    #[test]
    fn many_row_narrow_products_equal_burns_bit_for_bit() {
        let device = Default::default();
        let compare = |m: usize, k: usize, n: usize| -> bool {
            let x = Tensor::<Flex, 2>::random([m, k], Distribution::Default, &device);
            let w = Tensor::<Flex, 2>::random([k, n], Distribution::Default, &device);
            let Some(got) = product(&x, &w, false) else {
                return false;
            };
            let (differ, len) = bits_differ(got, x.matmul(w));
            assert_eq!(differ, 0, "{m}×{k}×{n}: {differ} of {len} values differ");
            true
        };
        for (m, k, n) in [
            (2048, 128, 128),
            (2048, 128, 64),
            (2048, 384, 128),
            (128, 2048, 128),
            (384, 2048, 128),
            (130, 2048, 64),
            (1001, 96, 100),
            (300, 576, 7),
            (300, 576, 2),
        ] {
            assert!(compare(m, k, n), "{m}×{k}×{n} is split by rows");
        }
        let swept = (65..700)
            .step_by(13)
            .flat_map(|m| [(128, 128), (128, 64), (384, 128), (128, 2)].map(|(k, n)| (m, k, n)))
            .filter(|&(m, k, n)| compare(m, k, n))
            .count();
        assert!(swept > 150, "{swept} of 196 swept shapes split by rows");
        let x = Tensor::<Flex, 2>::random([128, 2048], Distribution::Default, &device);
        let w = Tensor::<Flex, 2>::random([2048, 64], Distribution::Default, &device);
        assert!(
            product(&x, &w, false).is_none(),
            "two blocks of 64 rows by 64 columns would cut k apart"
        );
        // A value head: gemm's matrix-vector kernel groups rows, and blocks would move them.
        let x = Tensor::<Flex, 2>::random([600, 128], Distribution::Default, &device);
        let w = Tensor::<Flex, 2>::random([128, 1], Distribution::Default, &device);
        assert!(product(&x, &w, false).is_none(), "a single column");
    }

    /// Batch-1 decoding's tied head, `h · Eᵀ` for one row, split into runs of `E`'s rows: each
    /// output equals burn's `E · hᵀ` (the head's call for few rows) and `h · Eᵀ` bit for bit,
    /// for SmolLM2-135M's and a world model's widths, with a last block of 3 rows (joined to the
    /// one before it) and of 300.
    #[test]
    fn a_single_row_head_equals_burns_bit_for_bit() {
        let device = Default::default();
        for (k, n) in [(576, 4099), (576, 4096 + 300), (128, 1536), (960, 300)] {
            let h = Tensor::<Flex, 2>::random([1, k], Distribution::Default, &device);
            let e = Tensor::<Flex, 2>::random([n, k], Distribution::Default, &device);
            let got = product(&h, &e, true).expect("split into runs of rows");
            let heads = e.clone().matmul(h.clone().transpose()).transpose();
            for (what, want) in [("E·hᵀ", heads), ("h·Eᵀ", h.matmul(e.transpose()))] {
                let (differ, _) = bits_differ(got.clone(), want);
                assert_eq!(differ, 0, "{what} at {k}×{n}: {differ} values differ");
            }
        }
    }

    #[test]
    fn products_in_one_pass_equal_each_product_alone_bit_for_bit() {
        let device = Default::default();
        // What a projection computes alone: a decoding shape split by columns, else burn's.
        let alone = |x: &Tensor<Flex, 2>, w: &Tensor<Flex, 2>| {
            product(x, w, false).unwrap_or_else(|| x.clone().matmul(w.clone()))
        };
        // A block's query, key and value projections and its gate and up projections at
        // SmolLM2-135M's widths, for one row (whole products side by side) and sixteen (the
        // query's columns split, the key's and value's whole).
        for m in [1, 16] {
            let x = Tensor::<Flex, 2>::random([m, 576], Distribution::Default, &device);
            let ws = [576, 192, 192, 1536, 1536]
                .map(|n| Tensor::<Flex, 2>::random([576, n], Distribution::Default, &device));
            let qkv = products(&x, [&ws[0], &ws[1], &ws[2]]).expect("a shared pass");
            let gate_up = products(&x, [&ws[3], &ws[4]]).expect("a shared pass");
            for (got, w) in qkv.into_iter().chain(gate_up).zip(&ws) {
                let (differ, _) = bits_differ(got, alone(&x, w));
                assert_eq!(
                    differ,
                    0,
                    "{m} rows, {:?}: {differ} values differ",
                    w.dims()
                );
            }
        }
        // Too little work to share, and a one-block product burn runs on all cores itself.
        let x = Tensor::<Flex, 2>::random([1, 64], Distribution::Default, &device);
        let w = Tensor::<Flex, 2>::random([64, 64], Distribution::Default, &device);
        assert!(products(&x, [&w, &w]).is_none());
        let x = Tensor::<Flex, 2>::random([4096, 576], Distribution::Default, &device);
        let w = Tensor::<Flex, 2>::random([576, 128], Distribution::Default, &device);
        assert!(products(&x, [&w]).is_none());
    }

    #[test]
    fn other_backends_take_slice_assign() {
        type B = Autodiff<Flex>;
        let device = Default::default();
        let dst = Tensor::<B, 3>::zeros([2, 5, 2], &device);
        let src = Tensor::<B, 3>::ones([2, 1, 2], &device);
        let want = dst.clone().slice_assign([0..2, 4..5, 0..2], src.clone());
        same(write_along(dst, src, 1, 4), want);
    }
}
