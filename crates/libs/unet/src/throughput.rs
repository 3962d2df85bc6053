//! Throughput measurement: training steps or forward passes per second on one fixed batch, for
//! benchmarks against other frameworks and for choosing batch and patch sizes on a device.

use std::time::Instant;

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::AdamWConfig;
use burn::prelude::*;

use crate::data::Boundary;
use crate::model::UNetConfig;
use crate::training::{LossConfig, TrainError, train_step};

/// What to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward, loss, backward and AdamW update (with norm clipping), loss read back each step.
    Train,
    /// Forward only, without autodiff; one value read back each pass.
    Infer,
}

/// A measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Steps (or passes) per second over the timed steps.
    pub steps_per_second: f64,
    /// Parameters of the model as burn counts them (batch norms' running statistics included).
    pub params: usize,
}

/// Times `steps` steps after `warmup` untimed ones on a deterministic `[batch, C, size, size]`
/// batch (targets: two channels, about 30 % ones).
pub fn measure(
    cfg: &UNetConfig,
    mode: Mode,
    batch: usize,
    size: usize,
    warmup: usize,
    steps: usize,
    device: &Device,
) -> Result<Throughput, TrainError> {
    let c = cfg.in_channels;
    let n = batch * size * size;
    let xs: Vec<f32> = (0..c * n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
    let ys: Vec<f32> = (0..cfg.out_channels * n)
        .map(|i| f32::from(u8::from((i * 104_729) % 10 < 3)))
        .collect();
    device.seed(42);
    let timed = |mut step: Box<dyn FnMut() -> Result<(), TrainError> + '_>| -> Result<f64, TrainError> {
        for _ in 0..warmup {
            step()?;
        }
        let t0 = Instant::now();
        for _ in 0..steps {
            step()?;
        }
        Ok(steps as f64 / t0.elapsed().as_secs_f64().max(1e-12))
    };
    match mode {
        Mode::Train => {
            let train = device.clone().autodiff();
            let mut model = Some(cfg.init(&train));
            let params = model.as_ref().map_or(0, |m| m.num_params());
            let mut optim = AdamWConfig::new()
                .with_weight_decay(1e-4)
                .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
                .init();
            let loss = LossConfig::new();
            let x = Tensor::<1>::from_floats(xs.as_slice(), &train).reshape([batch, c, size, size]);
            let y = Tensor::<1>::from_floats(ys.as_slice(), &train).reshape([batch, cfg.out_channels, size, size]);
            let sps = timed(Box::new(|| {
                let m = model.take().ok_or_else(|| TrainError::Data("model lost".into()))?;
                let (m, l) = train_step(m, &mut optim, (&loss, Boundary::Full), 2e-3, x.clone(), y.clone());
                model = Some(m);
                if l.is_finite() {
                    Ok(())
                } else {
                    Err(TrainError::NonFinite {
                        epoch: 1,
                        step: 1,
                        value: l,
                    })
                }
            }))?;
            Ok(Throughput {
                steps_per_second: sps,
                params,
            })
        }
        Mode::Infer => {
            let model = cfg.init(device);
            let x = Tensor::<1>::from_floats(xs.as_slice(), device).reshape([batch, c, size, size]);
            let sps = timed(Box::new(|| {
                let _: f32 = cellops_kernels::on_pool(|| {
                    let out = model.forward(x.clone());
                    out.slice([0..1, 0..1, 0..1, 0..1]).into_scalar()
                });
                Ok(())
            }))?;
            Ok(Throughput {
                steps_per_second: sps,
                params: model.num_params(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_both_modes_and_counts_parameters() {
        let _rng = crate::flex_rng_lock();
        // The PyTorch twin (bench/unet_torch.py) counts 117,090 parameters for depth 2, base 16,
        // batch norm, 1 → 2 channels; burn also counts the batch norms' running means and
        // variances: 2 × (16 + 32 + 64 + 32 + 16) × 2 = 640 more.
        let cfg = UNetConfig::new().with_depth(2).with_base_channels(16);
        let device = Device::flex();
        for mode in [Mode::Train, Mode::Infer] {
            let t = measure(&cfg, mode, 1, 16, 0, 1, &device).expect("measure");
            assert!(t.steps_per_second > 0.0);
            assert_eq!(t.params, 117_090 + 640);
        }
    }
}
