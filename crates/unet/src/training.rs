//! The training objective and one optimisation step.
//!
//! Loss: `bce_weight · BCE(logits, target) + dice_weight · (1 − soft Dice(sigmoid(logits), target))`,
//! averaged over output channels. BCE is computed from logits in the numerically stable form
//! `max(x, 0) − x·y + log(1 + e^−|x|)`.

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;

use crate::model::UNet;

/// Weights of the two loss terms.
#[derive(Config, Debug)]
pub struct LossConfig {
    /// Weight of binary cross-entropy.
    #[config(default = 1.0)]
    pub bce_weight: f64,
    /// Weight of the soft Dice loss.
    #[config(default = 1.0)]
    pub dice_weight: f64,
}

/// Binary cross-entropy with logits, averaged over every element. `[N, C, H, W]` → `[1]`.
pub fn bce_with_logits(logits: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    let positive = logits.clone().clamp_min(0.0);
    let log_term = logits.clone().abs().neg().exp().log1p();
    (positive - logits * target + log_term).mean()
}

/// Soft Dice coefficient per channel, averaged over channels: `[N, C, H, W]` → `[1]`.
pub fn soft_dice(probabilities: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    let [_, c, _, _] = probabilities.dims();
    let eps = 1.0;
    let inter = (probabilities.clone() * target.clone()).sum_dims(&[0, 2, 3]);
    let total = probabilities.sum_dims(&[0, 2, 3]) + target.sum_dims(&[0, 2, 3]);
    let dice = (inter.mul_scalar(2.0).add_scalar(eps)) / total.add_scalar(eps);
    dice.reshape([c]).mean()
}

impl LossConfig {
    /// The combined loss of `logits` against a 0/1 `target` of the same shape.
    pub fn loss(&self, logits: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
        let bce = bce_with_logits(logits.clone(), target.clone());
        let dice = soft_dice(burn::tensor::activation::sigmoid(logits), target);
        bce.mul_scalar(self.bce_weight) + dice.neg().add_scalar(1.0).mul_scalar(self.dice_weight)
    }
}

/// One optimisation step on a batch: forward, loss, backward, update. Returns the updated model and
/// the batch loss. The model's tensors must live on an autodiff device (`device.autodiff()`).
pub fn train_step(
    model: UNet,
    optimizer: &mut ModuleOptimizer,
    loss: &LossConfig,
    learning_rate: f64,
    images: Tensor<4>,
    targets: Tensor<4>,
) -> (UNet, f32) {
    let value = loss.loss(model.forward(images), targets);
    let scalar: f32 = value.clone().into_scalar();
    let grads = GradientsParams::from_grads(value.backward(), &model);
    (optimizer.step(learning_rate, model, grads), scalar)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Norm, UNetConfig};
    use burn::optim::AdamWConfig;

    /// Discs on a dark background: images and their 0/1 masks, `[n, 1, s, s]` each.
    fn discs(n: usize, s: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let mut img = Vec::with_capacity(n * s * s);
        let mut mask = Vec::with_capacity(n * s * s);
        for k in 0..n {
            let centres = [(8.0 + k as f32 * 3.0, 9.0), (22.0, 20.0 - k as f32 * 2.0)];
            for y in 0..s {
                for x in 0..s {
                    let inside = centres
                        .iter()
                        .any(|(cx, cy)| (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) < 30.0);
                    let noise = ((x * 7 + y * 13 + k * 5) % 10) as f32 / 40.0;
                    img.push(if inside { 0.8 } else { 0.1 } + noise);
                    mask.push(if inside { 1.0 } else { 0.0 });
                }
            }
        }
        (
            Tensor::<1>::from_floats(img.as_slice(), device).reshape([n, 1, s, s]),
            Tensor::<1>::from_floats(mask.as_slice(), device).reshape([n, 1, s, s]),
        )
    }

    #[test]
    fn tiny_set_is_overfit() {
        let device = Device::flex().autodiff();
        let mut model = UNetConfig::new()
            .with_out_channels(1)
            .with_depth(2)
            .with_base_channels(8)
            .with_norm(Norm::Group)
            .init(&device);
        let mut optim = AdamWConfig::new().init();
        let loss = LossConfig::new();
        let (x, y) = discs(4, 32, &device);
        let mut first = None;
        let mut last = 0.0;
        for _ in 0..80 {
            let (m, l) = train_step(model, &mut optim, &loss, 5e-3, x.clone(), y.clone());
            model = m;
            first.get_or_insert(l);
            last = l;
            assert!(l.is_finite());
        }
        let first = first.expect("ran");
        assert!(last < first * 0.5, "loss falls: {first} -> {last}");
        let probs = burn::tensor::activation::sigmoid(model.valid().forward(x.clone().valid()));
        let pred = probs.greater_elem(0.5).float();
        let dice: f32 = soft_dice(pred, y.valid()).into_scalar();
        assert!(dice > 0.9, "dice {dice}");
    }
}
