//! Choosing where tensors live, at run time.
//!
//! The flex CPU backend is always compiled; `wgpu` and `cuda` only with the Cargo features of the
//! same names. `auto` takes CUDA, then wgpu (a real GPU adapter, not a software one), then the CPU,
//! and probes each candidate with a tiny computation so an unusable GPU falls through instead of
//! failing later.

use burn::prelude::*;

/// Which device to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    /// The best compiled-in device that works here.
    #[default]
    Auto,
    /// The CPU (burn's flex backend).
    Cpu,
    /// A GPU through wgpu (Vulkan, Metal, DirectX); needs the `wgpu` feature.
    Wgpu,
    /// An NVIDIA GPU through CUDA; needs the `cuda` feature.
    Cuda,
}

impl Accelerator {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Accelerator::Auto => "auto",
            Accelerator::Cpu => "cpu",
            Accelerator::Wgpu => "wgpu",
            Accelerator::Cuda => "cuda",
        }
    }

    /// Whether this build can run on it.
    pub fn compiled(self) -> bool {
        match self {
            Accelerator::Auto | Accelerator::Cpu => true,
            Accelerator::Wgpu => cfg!(feature = "wgpu"),
            Accelerator::Cuda => cfg!(feature = "cuda"),
        }
    }
}

/// Why a device could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The backend is not compiled into this build.
    #[error("this build has no {0} support; use a release binary built with `--features {0}`, or --device cpu")]
    NotCompiled(&'static str),
    /// The backend is compiled but failed on this machine.
    #[error("the {kind} device does not work here: {message}")]
    Unavailable {
        /// The backend.
        kind: &'static str,
        /// What went wrong.
        message: String,
    },
}

/// A device that passed its probe.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The device.
    pub device: Device,
    /// The kind it is (never `Auto`).
    pub kind: Accelerator,
}

/// Runs a tiny computation on `device`; a backend that cannot start panics inside burn, so the
/// panic is caught (with the panic message kept quiet) and returned as an error.
fn probe(device: &Device) -> Result<(), String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let t = Tensor::<1>::from_floats([1.0f32, 2.0, 3.0], device);
        t.sum().into_scalar::<f32>()
    }));
    std::panic::set_hook(hook);
    match result {
        Ok(v) if (v - 6.0).abs() < 1e-6 => Ok(()),
        Ok(v) => Err(format!("the probe computed {v} instead of 6")),
        Err(p) => Err(p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "it panicked".into())),
    }
}

#[cfg(feature = "cuda")]
fn cuda() -> Device {
    Device::cuda(0)
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Device {
    Device::flex()
}

/// wgpu's default adapter, or (for `auto`) the first discrete GPU only, so that `auto` never lands
/// on a software adapter that is slower than flex.
#[cfg(feature = "wgpu")]
fn wgpu(discrete_only: bool) -> Device {
    use burn::tensor::DeviceKind;
    Device::wgpu(if discrete_only {
        DeviceKind::DiscreteGpu(0)
    } else {
        DeviceKind::DefaultDevice
    })
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(_discrete_only: bool) -> Device {
    Device::flex()
}

/// Picks and probes the device for `kind`.
pub fn select(kind: Accelerator) -> Result<Selected, DeviceError> {
    let make = |k: Accelerator, auto: bool| -> Result<Selected, DeviceError> {
        if !k.compiled() {
            return Err(DeviceError::NotCompiled(k.as_str()));
        }
        let device = match k {
            Accelerator::Cuda => cuda(),
            Accelerator::Wgpu => wgpu(auto),
            _ => Device::flex(),
        };
        probe(&device).map_err(|message| DeviceError::Unavailable {
            kind: k.as_str(),
            message,
        })?;
        Ok(Selected { device, kind: k })
    };
    match kind {
        Accelerator::Auto => [Accelerator::Cuda, Accelerator::Wgpu]
            .into_iter()
            .filter(|k| k.compiled())
            .find_map(|k| make(k, true).ok())
            .map_or_else(|| make(Accelerator::Cpu, true), Ok),
        k => make(k, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_always_works_and_auto_falls_back() {
        assert_eq!(select(Accelerator::Cpu).expect("cpu").kind, Accelerator::Cpu);
        let auto = select(Accelerator::Auto).expect("auto");
        assert_ne!(auto.kind, Accelerator::Auto);
    }

    #[test]
    fn missing_backends_are_named() {
        for k in [Accelerator::Wgpu, Accelerator::Cuda] {
            if !k.compiled() {
                let err = select(k).expect_err("not compiled").to_string();
                assert!(err.contains(k.as_str()) && err.contains("--device cpu"), "{err}");
            }
        }
    }
}
