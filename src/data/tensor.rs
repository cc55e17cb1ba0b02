//! Filling a libtorch CPU tensor in place. `Tensor::from_slice` zero-fills a new tensor
//! (a libtorch parallel region) and then copies: on a 2-core machine the OpenMP threads
//! spinning after that region fought rayon's workers and slowed batch making tenfold, and
//! the copy is wasted work anyway; `Tensor::empty` plus writing its memory does neither.
use tch::kind::Element;
use tch::{Device, Tensor};

/// A new contiguous CPU tensor of shape `dims` whose elements `fill` writes.
pub(crate) fn cpu_tensor<T: Element>(dims: &[i64], fill: impl FnOnce(&mut [T])) -> Tensor {
    let tensor = Tensor::empty(dims, (T::KIND, Device::Cpu));
    let numel = dims.iter().product::<i64>() as usize;
    if numel == 0 {
        fill(&mut []);
        return tensor;
    }
    // SAFETY: libtorch just allocated `tensor` as a contiguous CPU tensor of `numel`
    // elements of type T (suitably aligned, non-null since numel > 0); nothing else refers to
    // its storage until it is returned, and the slice does not outlive this function.
    let data = unsafe { std::slice::from_raw_parts_mut(tensor.data_ptr() as *mut T, numel) };
    fill(data);
    tensor
}
