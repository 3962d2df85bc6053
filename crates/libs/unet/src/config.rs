//! The configuration and records of a training run: what it was asked to do ([`TrainConfig`]),
//! what each epoch measured ([`EpochRecord`]) and how a model scored ([`Validation`]). Bundles and
//! checkpoints store them; training fills them. Nothing here runs a model, so the modules that
//! save and load ([`crate::bundle`], [`crate::checkpoint`]) need not import [`crate::training`].

use burn::prelude::*;

use crate::data::{AugmentConfig, Boundary};
use crate::model::UNetConfig;

/// Everything about a training run: model, objective, data sampling and optimisation.
#[derive(Config, Debug)]
pub struct TrainConfig {
    /// The architecture.
    #[config(default = "UNetConfig::new()")]
    pub model: UNetConfig,
    /// Loss weights.
    #[config(default = "LossConfig::new()")]
    pub loss: LossConfig,
    /// Augmentation.
    #[config(default = "AugmentConfig::new()")]
    pub augment: AugmentConfig,
    /// What the second output channel learns (with `model.out_channels: 2`): `full` object
    /// boundaries or only `contact` between touching objects.
    #[config(default = "Boundary::Full")]
    pub boundary: Boundary,
    /// Side of the square training patches.
    #[config(default = 128)]
    pub patch_size: usize,
    /// Patches per step.
    #[config(default = 8)]
    pub batch_size: usize,
    /// Maximum number of epochs.
    #[config(default = 30)]
    pub epochs: usize,
    /// Optimisation steps per epoch.
    #[config(default = 50)]
    pub steps_per_epoch: usize,
    /// Peak learning rate (AdamW); decays along a cosine to 1 % of it by the last epoch.
    #[config(default = 2e-3)]
    pub learning_rate: f64,
    /// AdamW weight decay.
    #[config(default = 1e-4)]
    pub weight_decay: f32,
    /// Clip each parameter tensor's gradient to this L2 norm (burn's norm clipping works per tensor,
    /// not on the global norm as PyTorch's `clip_grad_norm_` does); 0 disables clipping.
    #[config(default = 1.0)]
    pub grad_clip_norm: f32,
    /// Stop after this many epochs without a better validation Dice (0 never stops early).
    #[config(default = 6)]
    pub patience: usize,
    /// Seed of weight initialisation, patch sampling and augmentation.
    #[config(default = 42)]
    pub seed: u64,
    /// Validate each epoch on at most this many validation images, evenly spaced over the split
    /// (0: all of them); the run's final model is still scored on the whole test split.
    #[config(default = 0)]
    pub max_val_images: usize,
}

impl TrainConfig {
    /// The targets the model's outputs need: the boundary kind with two output channels, none
    /// with one.
    pub fn targets(&self) -> Boundary {
        if self.model.out_channels >= 2 {
            self.boundary
        } else {
            Boundary::None
        }
    }
}

/// Weights of the two loss terms.
#[derive(Config, Debug)]
pub struct LossConfig {
    /// Weight of binary cross-entropy.
    #[config(default = 1.0)]
    pub bce_weight: f64,
    /// Weight of the soft Dice loss.
    #[config(default = 1.0)]
    pub dice_weight: f64,
    /// Weight of the boundary channel's loss relative to the foreground's (the second channel,
    /// when there is one); above 1 for sparse contact targets.
    #[config(default = 1.0)]
    pub boundary_weight: f64,
}

/// One epoch's figures (a line of the history).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Pooled foreground Dice on the validation images (threshold 0.5).
    pub val_dice: f64,
    /// Pooled foreground IoU on the validation images.
    pub val_iou: f64,
    /// Pooled instance F1 at IoU 0.5 on the validation images (threshold 0.5, distance watershed),
    /// when their instance labels are known: the score that picks the best epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_f1: Option<f64>,
    /// Learning rate at the epoch's last step.
    pub learning_rate: f64,
    /// Training patches per second.
    pub patches_per_second: f64,
    /// Wall time of the epoch, validation included.
    pub seconds: f64,
}

/// Scores of a model on whole images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Validation {
    /// Pooled foreground Dice (channel 0, threshold 0.5).
    pub dice: f64,
    /// Pooled foreground IoU.
    pub iou: f64,
    /// Pooled instance F1 at IoU 0.5 after the default instance segmentation (threshold 0.5,
    /// distance watershed), when every image has instance labels.
    pub f1: Option<f64>,
}

impl Validation {
    /// The score that ranks epochs: instance F1 where known, else Dice.
    pub fn score(&self) -> f64 {
        self.f1.unwrap_or(self.dice)
    }
}
