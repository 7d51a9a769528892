//! The bridge between generic burn tensors and the Flex backend's own tensors: a tensor of a
//! backend that is Flex is read and built directly; every other backend gets `None` and keeps
//! burn's operations.

use std::any::{Any, TypeId};

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};

use super::matmul::{Operand, matmul_rows, worth_it};
use super::q8::Q8Matrix;

/// Whether `B` is the Flex CPU backend (whose tensors these kernels read).
pub(crate) fn is_flex<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<Flex>()
}

/// The Flex tensor behind `t` (an O(1) shared view), when `B` is Flex and `t` holds `f32`.
fn flex_f32<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Option<FlexTensor> {
    if !is_flex::<B>() {
        return None;
    }
    let TensorPrimitive::Float(p) = t.clone().into_primitive() else {
        return None;
    };
    let boxed: Box<dyn Any> = Box::new(p);
    let flex = *boxed.downcast::<FlexTensor>().ok()?;
    (flex.dtype() == DType::F32).then_some(flex)
}

/// `t` laid out contiguously (a copy only when it is a strided view).
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The `len` values of a contiguous `f32` tensor; `None` when it is strided.
fn rows(t: &FlexTensor, len: usize) -> Option<&[f32]> {
    let (start, _) = t.layout().contiguous_offsets()?;
    t.storage::<f32>().get(start..start + len)
}

/// A tensor of backend `B` (which is Flex) holding `data` `[rows, cols]`.
fn from_rows<B: Backend>(data: Vec<f32>, rows: usize, cols: usize) -> Option<Tensor<B, 2>> {
    let flex = FlexTensor::from_data(TensorData::new(data, [rows, cols]));
    let boxed: Box<dyn Any> = Box::new(flex);
    let p = *boxed.downcast::<B::FloatTensorPrimitive>().ok()?;
    Some(Tensor::from_primitive(TensorPrimitive::Float(p)))
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
    if !worth_it(m, k, n) {
        return None;
    }
    flex_product::<B>(x, w, transposed)
}

/// `x · W` for `x` `[m, k]` with `W` in Q8_0; `None` when `B` is not Flex or the shapes differ.
pub(crate) fn q8_product<B: Backend>(x: &Tensor<B, 2>, w: &Q8Matrix) -> Option<Tensor<B, 2>> {
    let [m, k] = x.dims();
    if k != w.k() {
        return None;
    }
    let xf = contiguous(flex_f32(x)?);
    let out = w.matmul(rows(&xf, m * k)?, m);
    from_rows::<B>(out, m, w.n())
}

fn flex_product<B: Backend>(
    x: &Tensor<B, 2>,
    w: &Tensor<B, 2>,
    transposed: bool,
) -> Option<Tensor<B, 2>> {
    let [m, k] = x.dims();
    let [r, c] = w.dims();
    let (n, inner) = if transposed { (r, c) } else { (c, r) };
    if inner != k {
        return None;
    }
    let (xf, wf) = (contiguous(flex_f32(x)?), flex_f32(w)?);
    let wdata = rows(&wf, r * c)?;
    let rhs = if transposed {
        Operand::transposed(wdata, k)
    } else {
        Operand::rows(wdata, n)
    };
    let out = matmul_rows(rows(&xf, m * k)?, m, k, rhs, n);
    from_rows::<B>(out, m, n)
}
