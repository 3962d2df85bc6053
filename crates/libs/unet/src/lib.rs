//! U-Net segmentation of nuclei with burn 0.22, split as burn's guide splits it: [`model`],
//! [`data`] (prepared datasets, targets, patches), [`training`] (loss, step, the epoch loop with
//! validation and early stopping), [`inference`]; the model bundle, checkpoints and post-processing
//! tuning around them.
//!
//! Modules import one way, each only from those before it in this order: [`model`], [`data`],
//! [`config`], [`bundle`], [`checkpoint`], [`inference`], [`size`], [`tune`], [`training`], [`throughput`];
//! [`device`] stands alone.
//!
//! Only this crate depends on burn. Devices are chosen at run time (`Device::flex()` on any CPU;
//! `wgpu` and `cuda` behind the features of the same names).

pub mod bundle;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod golden;
pub mod inference;
pub mod model;
pub mod size;
pub mod throughput;
pub mod training;
pub mod tune;

/// burn's device type, for callers that pick one with [`device::select`] and pass it on.
pub use burn::prelude::Device;
/// Which implementation runs the U-Net's convolutions on the CPU (native kernels by default).
pub use cellops_kernels::{KernelPath, set_default_path as set_kernel_path, tune_allocator};
pub use model::{Norm, UNet, UNetConfig, Upsample};
pub use training::{
    Checkpointing, EpochRecord, Fitted, Observer, Silent, Stop, TrainConfig, TrainError, fit, fit_from,
};

/// Serialises this crate's tests that initialise or train models: burn-flex draws every random
/// number (weight initialisation, dropout) from one process-wide generator, so a test that seeds
/// it and compares two runs (resuming) would see other tests' draws in between.
#[cfg(test)]
pub(crate) fn flex_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
