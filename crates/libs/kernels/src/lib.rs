//! Native CPU kernels for the U-Net's hot operations on burn's flex backend, forward and backward:
//! the 3×3 convolution and the 2×2 transposed convolution, as im2col + matrix products (the gemm
//! crate, as flex uses) with working buffers reused across steps.
//!
//! burn 0.22's flex backend computes a convolution's weight gradient as a convolution whose kernel
//! is the whole gradient map, parallel only over input channels; here it is one product per image
//! over the long pixel dimension, summed in image order. Work is split over threads the same way for
//! a given batch and thread count and reduced in a fixed order, so training stays reproducible.
//!
//! 2×2 max pooling (forward with the winning taps kept, backward routing each gradient to its
//! tap) and batch norm with a fused ReLU are native too.
//!
//! The kernels plug in through burn's backend-extension mechanism ([`backend::NativeOps`], with
//! handwritten backward steps for `Autodiff<Flex>`). Callers use [`conv3x3`] and [`up2x2`], which
//! take the native path on a flex device for `f32` tensors when [`KernelPath::Native`] is selected,
//! and [`applies`] to fall back to burn's own modules otherwise. [`with_path`] selects a path for
//! the current thread (tests compare both in one process); [`set_default_path`] for the process.
//!
//! Only this crate and `cellops-unet` depend on burn. `unsafe` is denied here except in two private
//! modules: `gemm`, whose safe wrapper bounds-checks every matrix view, and `memory`, which sets
//! glibc's allocator thresholds once so that a step's freed buffers are reused by the next step.

pub mod backend;
pub mod batch_norm;
pub mod conv3x3;
mod gemm;
pub mod layout;
mod memory;
pub mod pool2x2;
mod reduce;
mod scratch;
pub mod up2x2;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::{Dispatch, DispatchDevice};
use burn::tensor::{DType, Tensor};

use backend::{NativeOps, NormStats};
pub use batch_norm::Activation;
use burn::nn::BatchNorm;

/// Which implementation runs the U-Net's convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum KernelPath {
    /// This crate's kernels where they apply (flex device, `f32`), burn's elsewhere.
    #[default]
    Native,
    /// burn's generic implementation everywhere.
    Burn,
}

/// The process-wide default: whether burn's generic path was chosen.
static DEFAULT_IS_BURN: AtomicBool = AtomicBool::new(false);

thread_local! {
    static OVERRIDE: Cell<Option<KernelPath>> = const { Cell::new(None) };
}

/// Sets the path for every thread that has not chosen its own.
pub fn set_default_path(path: KernelPath) {
    DEFAULT_IS_BURN.store(path == KernelPath::Burn, Ordering::Relaxed);
}

/// The path in effect on this thread.
pub fn path() -> KernelPath {
    OVERRIDE.get().unwrap_or(if DEFAULT_IS_BURN.load(Ordering::Relaxed) {
        KernelPath::Burn
    } else {
        KernelPath::Native
    })
}

/// Runs `f` with `path` selected on this thread.
pub fn with_path<R>(path: KernelPath, f: impl FnOnce() -> R) -> R {
    let previous = OVERRIDE.replace(Some(path));
    let result = f();
    OVERRIDE.set(previous);
    result
}

/// Runs `f` on one of rayon's worker threads with this thread's path ([`with_path`] is per
/// thread). Called from outside the pool, each of a prediction's parallel operations is handed to
/// the pool and the caller woken when it is done — hundreds of hand-offs a pass; inside, the worker
/// runs the serial parts itself and shares the parallel ones (docs/benchmarks.md). Not for training
/// steps: which worker runs `f` varies, and burn keeps batch norm's running statistics per thread.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let path = path();
    rayon::scope(|_| with_path(path, f))
}

/// Whether the native kernels would run for a tensor like `x`: the native path is selected, `x`
/// lives on the flex device (with or without autodiff) and holds `f32`.
pub fn applies(x: &Tensor<4>) -> bool {
    path() == KernelPath::Native
        && x.dtype() == DType::F32
        && matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_))
}

/// Tells glibc's allocator to keep freed memory in the process and to serve every thread from one
/// arena, so that each training step reuses the last one's pages (see `memory`; elsewhere than
/// glibc it does nothing). Call it first thing in `main`, before any thread starts: a thread keeps
/// the arena it took at its first allocation. The kernels call it themselves at their first use,
/// which still sets the thresholds for a process that did not.
pub fn tune_allocator() {
    memory::keep_freed_memory();
}

/// [`applies`], for the kernels' entry points: the first time the native path runs, the process's
/// allocator is told to keep freed memory for the next step (see `memory`).
fn runs_natively(x: &Tensor<4>) -> bool {
    let native = applies(x);
    if native {
        tune_allocator();
    }
    native
}

/// 3×3 convolution, stride 1, zero padding 1, no bias: `x` `[n, c, h, w]`, `weight`
/// `[c_out, c, 3, 3]` → `[n, c_out, h, w]`, natively where [`applies`], else with burn's `conv2d`.
pub fn conv3x3(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    if runs_natively(&x) {
        Tensor::from_dispatch(<Dispatch as NativeOps>::conv3x3(
            x.into_dispatch(),
            weight.into_dispatch(),
        ))
    } else {
        let options = burn::tensor::ops::ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        burn::tensor::module::conv2d(x, weight, None, options)
    }
}

/// 2×2 transposed convolution, stride 2, no bias: `x` `[n, c, h, w]`, `weight` `[c, c_out, 2, 2]` →
/// `[n, c_out, 2h, 2w]`, natively where [`applies`], else with burn's `conv_transpose2d`.
pub fn up2x2(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    if runs_natively(&x) {
        Tensor::from_dispatch(<Dispatch as NativeOps>::up2x2(
            x.into_dispatch(),
            weight.into_dispatch(),
        ))
    } else {
        let options = burn::tensor::ops::ConvTransposeOptions::new([2, 2], [0, 0], [0, 0], [1, 1], 1);
        burn::tensor::module::conv_transpose2d(x, weight, None, options)
    }
}

/// 2×2 max pooling with stride 2 and no padding, `x` `[n, c, h, w]` → `[n, c, h/2, w/2]`,
/// natively where [`applies`], else with burn's `max_pool2d`.
pub fn max_pool2x2(x: Tensor<4>) -> Tensor<4> {
    if runs_natively(&x) {
        Tensor::from_dispatch(<Dispatch as NativeOps>::max_pool2x2(x.into_dispatch()))
    } else {
        let options = burn::tensor::ops::MaxPoolOptions::new([2, 2]).with_stride([2, 2]);
        burn::tensor::module::max_pool2d(x, options)
    }
}

/// Batch normalisation followed by `activation`, `[n, c, h, w]` → `[n, c, h, w]`, as
/// `BatchNorm::forward` behaves: batch statistics (and a running-statistics update) when `x` is on
/// an autodiff device and the layer is training, running statistics otherwise. Native where
/// [`applies`] (except for a frozen layer on an autodiff device), burn's module otherwise.
pub fn batch_norm(x: Tensor<4>, bn: &BatchNorm, activation: Activation) -> Tensor<4> {
    let autodiff = x.device().is_autodiff();
    let training = autodiff && bn.training.is_enabled();
    if !runs_natively(&x) || (autodiff && !training) {
        let y = bn.forward(x);
        return match activation {
            Activation::Identity => y,
            Activation::Relu => burn::tensor::activation::relu(y),
        };
    }
    let epsilon = bn.epsilon as f32;
    let stats = if training {
        let s = Tensor::<2>::from_dispatch(<Dispatch as NativeOps>::channel_stats(
            x.clone().inner().into_dispatch(),
        ));
        update_running(bn, s.clone());
        let values = floats(s);
        let c = values.len() / 2;
        NormStats {
            mean: values[..c].to_vec(),
            var: values[c..].to_vec(),
            epsilon,
            activation,
        }
    } else {
        NormStats {
            mean: floats(bn.running_mean.value()),
            var: floats(bn.running_var.value()),
            epsilon,
            activation,
        }
    };
    Tensor::from_dispatch(<Dispatch as NativeOps>::batch_norm(
        x.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        stats,
    ))
}

/// A small tensor's elements.
fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
}

/// The running statistics' update, as `BatchNorm::forward` makes it: `(1 − m)·running + m·batch`.
fn update_running(bn: &BatchNorm, stats: Tensor<2>) {
    let c = stats.dims()[1];
    let momentum = bn.momentum;
    let device = bn.running_mean.value_sync().device();
    let row = |i: usize| stats.clone().slice([i..i + 1, 0..c]).reshape([c]).to_device(&device);
    let mean = bn
        .running_mean
        .value_sync()
        .mul_scalar(1.0 - momentum)
        .add(row(0).mul_scalar(momentum));
    let var = bn
        .running_var
        .value_sync()
        .mul_scalar(1.0 - momentum)
        .add(row(1).mul_scalar(momentum));
    bn.running_mean.update(mean.detach());
    bn.running_var.update(var.detach());
}
