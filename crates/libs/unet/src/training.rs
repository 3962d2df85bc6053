//! The training objective and one optimisation step.
//!
//! Loss: `bce_weight · BCE(logits, target) + dice_weight · (1 − soft Dice(sigmoid(logits), target))`,
//! averaged over output channels. BCE is computed from logits in the numerically stable form
//! `max(x, 0) − x·y + log(1 + e^−|x|)`.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use cellops_dataset::synthetic::Rng;

use crate::checkpoint::{self, CheckpointError, CheckpointState};
pub use crate::config::{EpochRecord, LossConfig, TrainConfig, Validation};
use crate::data::{Boundary, Sample, random_patch};
use crate::inference::{PredictConfig, predict_chw};
use crate::model::UNet;
use cellops_formats::params::{PostProcessing, Segmentation};
use cellops_measure::instances::{InstanceConfig, segment};
use cellops_measure::metrics::{MatchCounts, Overlap, PixelCounts};

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
    /// The combined loss of `logits` against a 0/1 `target` of the same shape: per channel, the
    /// boundary channel weighted by `boundary_weight`, averaged over the channels' weights.
    /// A distance channel (`second`) is a regression target: cross-entropy alone, no Dice.
    pub fn loss(&self, logits: Tensor<4>, target: Tensor<4>, second: Boundary) -> Tensor<1> {
        let [_, c, _, _] = logits.dims();
        let distance = second == Boundary::Distance;
        if c < 2 || (self.boundary_weight == 1.0 && !distance) {
            return self.channel_loss(logits, target);
        }
        let fg = self.channel_loss(logits.clone().narrow(1, 0, 1), target.clone().narrow(1, 0, 1));
        let (logits, target) = (logits.narrow(1, 1, c - 1), target.narrow(1, 1, c - 1));
        let rest = if distance {
            bce_with_logits(logits, target)
        } else {
            self.channel_loss(logits, target)
        };
        let w = self.boundary_weight * (c - 1) as f64;
        (fg + rest.mul_scalar(w)).div_scalar(1.0 + w)
    }

    /// BCE + Dice of some channels, averaged over them.
    fn channel_loss(&self, logits: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
        let bce = bce_with_logits(logits.clone(), target.clone());
        let dice = soft_dice(burn::tensor::activation::sigmoid(logits), target);
        bce.mul_scalar(self.bce_weight) + dice.neg().add_scalar(1.0).mul_scalar(self.dice_weight)
    }
}

/// One optimisation step on a batch: forward, loss, backward, update. Returns the updated model and
/// the batch loss. The model's tensors must live on an autodiff device (`device.autodiff()`);
/// `second` says what the targets' second channel holds.
pub fn train_step(
    model: UNet,
    optimizer: &mut ModuleOptimizer,
    (loss, second): (&LossConfig, Boundary),
    learning_rate: f64,
    images: Tensor<4>,
    targets: Tensor<4>,
) -> (UNet, f32) {
    // Not on a pool worker (`cellops_kernels::on_pool`), unlike predictions: burn keeps batch
    // norm's running statistics per thread and averages them, so steps must all run on one thread
    // for the statistics, and training, to be what the seed says.
    let value = loss.loss(model.forward(images), targets, second);
    let scalar: f32 = value.clone().into_scalar();
    let grads = GradientsParams::from_grads(value.backward(), &model);
    (optimizer.step(learning_rate, model, grads), scalar)
}

/// At most `max` items of `all`, evenly spaced (all of them for 0).
fn evenly<T>(all: &[T], max: usize) -> Vec<&T> {
    if max == 0 || all.len() <= max {
        return all.iter().collect();
    }
    (0..max).map(|k| &all[k * all.len() / max]).collect()
}

/// Why training stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The loss became NaN or infinite.
    #[error("the loss became {value} at epoch {epoch}, step {step}: lower the learning rate or check the data")]
    NonFinite {
        /// Epoch (1-based).
        epoch: usize,
        /// Step within the epoch (1-based).
        step: usize,
        /// The value.
        value: f32,
    },
    /// The data do not fit the model.
    #[error("{0}")]
    Data(String),
    /// A checkpoint could not be written or resumed from.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stop {
    /// All epochs ran.
    Completed,
    /// Validation Dice stopped improving for `patience` epochs.
    EarlyStopped,
    /// The observer asked to stop (a time budget, a signal); the last checkpoint resumes it.
    Interrupted,
}

/// The result of [`fit`]: the best model (by validation Dice) and the history.
#[derive(Debug)]
pub struct Fitted {
    /// The model of the best epoch, without autodiff.
    pub model: UNet,
    /// The best epoch (1-based).
    pub best_epoch: usize,
    /// One record per epoch run, including epochs run before a resume.
    pub history: Vec<EpochRecord>,
    /// Why the run ended.
    pub stop: Stop,
    /// The epoch of the checkpoint the run continued from.
    pub resumed_from: Option<usize>,
}

/// Receives a run's progress.
pub trait Observer {
    /// Once, before training, when the run continues from a checkpoint: the epochs already run.
    fn resumed(&mut self, _history: &[EpochRecord]) {}
    /// After each optimisation step (1-based epoch and step).
    fn step(&mut self, _epoch: usize, _step: usize, _loss: f32) {}
    /// After each epoch (and its checkpoint). `Break` ends the run there.
    fn epoch(&mut self, _record: &EpochRecord) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// A closure observes the epochs and never stops the run.
impl<F: FnMut(&EpochRecord)> Observer for F {
    fn epoch(&mut self, record: &EpochRecord) -> ControlFlow<()> {
        self(record);
        ControlFlow::Continue(())
    }
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Observer for Silent {}

/// Where checkpoints go and whether a run continues from them.
#[derive(Debug, Clone, Default)]
pub struct Checkpointing {
    /// The checkpoint folder; `None` writes none.
    pub dir: Option<PathBuf>,
    /// How many of the newest epoch checkpoints to keep (the best epoch's is kept as well).
    pub keep: usize,
    /// Continue from the newest checkpoint in `dir` when there is one.
    pub resume: bool,
}

/// Learning rate at `progress` in 0..=1 of the run: cosine from `peak` to `peak / 100`.
fn cosine(peak: f64, progress: f64) -> f64 {
    let floor = peak / 100.0;
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress.clamp(0.0, 1.0)).cos())
}

/// The sampling stream of one epoch. Seeding each epoch on its own (rather than carrying one
/// stream through the run) is what lets a resumed run draw the same patches as an uninterrupted one.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Pooled scores of `model` on whole images, run through [`predict_chw`] so that large images stay
/// in bounded memory, with the default post-processing.
pub fn evaluate(model: &UNet, samples: &[Sample], device: &Device) -> Validation {
    evaluate_with(model, samples, device, &PostProcessing::default())
}

/// [`evaluate`] with the given post-processing for the instance scores.
pub fn evaluate_with(model: &UNet, samples: &[Sample], device: &Device, post: &PostProcessing) -> Validation {
    let config = InstanceConfig::from_params(&Segmentation::default(), post, false);
    let tiling = PredictConfig::new().with_tile(512).with_overlap(64);
    let instances = !samples.is_empty() && samples.iter().all(|s| s.labels.len() == s.width * s.height);
    let mut pixels = PixelCounts::default();
    let mut matches = MatchCounts::default();
    for s in samples {
        let p = predict_chw(model, &s.image.to_f32(), s.channels, s.height, s.width, &tiling, device);
        for (&prob, &t) in p.channel(0).iter().zip(&s.target[..s.height * s.width]) {
            let (fg, truth) = (prob > 0.5, t > 0);
            pixels.both += u64::from(fg && truth);
            pixels.pred += u64::from(fg);
            pixels.truth += u64::from(truth);
        }
        if instances {
            let predicted = segment(p.channel(0), p.guide(s.second), s.width, &config)
                .map(|(l, _)| l)
                .unwrap_or_default();
            if let Ok(o) = Overlap::new(&s.labels, &predicted) {
                matches += o.matching(0.5);
            }
        }
    }
    Validation {
        dice: pixels.dice(),
        iou: pixels.iou(),
        f1: instances.then(|| matches.stats(0.5).f1),
    }
}

fn check_data(cfg: &TrainConfig, train: &[Sample], val: &[Sample]) -> Result<(), TrainError> {
    if train.is_empty() {
        return Err(TrainError::Data("no training images".into()));
    }
    if val.is_empty() {
        return Err(TrainError::Data("no validation images".into()));
    }
    if cfg.epochs == 0 || cfg.steps_per_epoch == 0 || cfg.batch_size == 0 || cfg.patch_size == 0 {
        return Err(TrainError::Data(
            "epochs, steps_per_epoch, batch_size and patch_size must be at least 1".into(),
        ));
    }
    for s in train.iter().chain(val) {
        if s.channels != cfg.model.in_channels {
            return Err(TrainError::Data(format!(
                "the images have {} channels but the model takes {}",
                s.channels, cfg.model.in_channels
            )));
        }
        if s.target_channels != cfg.model.out_channels {
            return Err(TrainError::Data(format!(
                "the targets have {} channels but the model outputs {}",
                s.target_channels, cfg.model.out_channels
            )));
        }
    }
    Ok(())
}

/// Whether `patience` epochs have passed since the best one.
fn exhausted(cfg: &TrainConfig, epoch: usize, best_epoch: usize) -> bool {
    cfg.patience > 0 && epoch >= best_epoch + cfg.patience
}

/// Trains on `train`, validates on `val` after every epoch, keeps the best model by validation
/// Dice, and stops early after `patience` epochs without improvement.
///
/// With a checkpoint folder, every epoch ends with a checkpoint; with `resume`, the run continues
/// from the newest one (which must come from the same configuration) and ends with the same
/// weights and history as a run that was never interrupted: each epoch's patch stream and dropout
/// are seeded from the seed and the epoch alone. Patches for the next step are cut on another
/// thread while the current step runs. The device is used with autodiff for training and plain for
/// validation.
pub fn fit(
    cfg: &TrainConfig,
    train: &[Sample],
    val: &[Sample],
    device: &Device,
    checkpoints: &Checkpointing,
    observer: &mut dyn Observer,
) -> Result<Fitted, TrainError> {
    fit_from(None, cfg, train, val, device, checkpoints, observer)
}

/// [`fit`], starting from `init`'s weights (fine-tuning; the model must live on
/// `device.autodiff()` and have `cfg.model`'s architecture) instead of a seeded initialisation.
/// A run resumed from a checkpoint continues from the checkpoint.
pub fn fit_from(
    init: Option<UNet>,
    cfg: &TrainConfig,
    train: &[Sample],
    val: &[Sample],
    device: &Device,
    checkpoints: &Checkpointing,
    observer: &mut dyn Observer,
) -> Result<Fitted, TrainError> {
    check_data(cfg, train, val)?;
    let train_device = device.clone().autodiff();
    let RunStart {
        mut model,
        mut optimizer,
        mut best,
        mut history,
        resumed_from,
    } = start_run(init, cfg, checkpoints, &train_device)?;
    if resumed_from.is_some() {
        observer.resumed(&history);
    }
    let val_subset: Vec<Sample> = evenly(val, cfg.max_val_images).into_iter().cloned().collect();
    let mut stop = Stop::Completed;
    let first_epoch = history.len() + 1;
    if first_epoch > 1 && exhausted(cfg, first_epoch - 1, best.1) {
        stop = Stop::EarlyStopped;
    }
    for epoch in first_epoch..=cfg.epochs {
        if stop != Stop::Completed {
            break;
        }
        let started = Instant::now();
        train_device.seed(epoch_seed(cfg.seed, epoch));
        let (trained, loss_sum, lr) =
            train_epoch(cfg, train, epoch, &train_device, &mut optimizer, &mut *observer, model)?;
        model = trained;
        let train_seconds = started.elapsed().as_secs_f64();
        let valid = model.valid();
        let v = evaluate(&valid, &val_subset, device);
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / cfg.steps_per_epoch as f64,
            val_dice: v.dice,
            val_iou: v.iou,
            val_f1: v.f1,
            learning_rate: lr,
            patches_per_second: (cfg.steps_per_epoch * cfg.batch_size) as f64 / train_seconds.max(1e-9),
            seconds: started.elapsed().as_secs_f64(),
        };
        history.push(record.clone());
        if v.score() > best.0 {
            best = (v.score(), epoch, valid);
        }
        if let Some(dir) = &checkpoints.dir {
            let state = CheckpointState {
                format: checkpoint::FORMAT.to_owned(),
                config: cfg.clone(),
                epoch,
                best_epoch: best.1,
                best_dice: best.0,
                history: history.clone(),
            };
            checkpoint::save(dir, &model, &optimizer, &state, checkpoints.keep)?;
        }
        if exhausted(cfg, epoch, best.1) {
            stop = Stop::EarlyStopped;
        }
        if observer.epoch(&record).is_break() && epoch < cfg.epochs && stop == Stop::Completed {
            stop = Stop::Interrupted;
        }
    }
    let (_, best_epoch, model) = best;
    Ok(Fitted {
        model,
        best_epoch,
        history,
        stop,
        resumed_from,
    })
}

/// What a run starts from: a checkpoint's state, or fresh weights and an empty history.
struct RunStart {
    model: UNet,
    optimizer: ModuleOptimizer,
    /// The best validation score so far, its epoch and its weights (without autodiff).
    best: (f64, usize, UNet),
    history: Vec<EpochRecord>,
    /// The epoch of the checkpoint the run continues from.
    resumed_from: Option<usize>,
}

/// The newest checkpoint when resuming from one; otherwise (after clearing the checkpoint folder)
/// `init` or weights seeded on `train_device`, with a fresh AdamW optimizer.
fn start_run(
    init: Option<UNet>,
    cfg: &TrainConfig,
    checkpoints: &Checkpointing,
    train_device: &Device,
) -> Result<RunStart, TrainError> {
    let mut adamw = AdamWConfig::new().with_weight_decay(cfg.weight_decay);
    if cfg.grad_clip_norm > 0.0 {
        adamw = adamw.with_grad_clipping(Some(GradientClippingConfig::Norm(cfg.grad_clip_norm)));
    }
    let restored = match (&checkpoints.dir, checkpoints.resume) {
        (Some(dir), true) => checkpoint::load_latest(dir, cfg, adamw.init(), train_device)?,
        _ => None,
    };
    if let (Some(dir), None) = (&checkpoints.dir, &restored) {
        checkpoint::clear(dir)?;
    }
    let resumed_from = restored.as_ref().map(|r| r.state.epoch);
    let (model, optimizer, best, history) = match restored {
        Some(r) => (
            r.model,
            r.optimizer,
            (r.state.best_dice, r.state.best_epoch, r.best.valid()),
            r.state.history,
        ),
        None => {
            train_device.seed(cfg.seed);
            let model = init.unwrap_or_else(|| cfg.model.init(train_device));
            let best = (f64::NEG_INFINITY, 0, model.valid());
            (model, adamw.init(), best, Vec::new())
        }
    };
    Ok(RunStart {
        model,
        optimizer,
        best,
        history,
        resumed_from,
    })
}

/// Runs the optimisation steps of one epoch on `model`, with patches cut on another thread while
/// each step runs. Returns the trained model, the sum of the steps' losses and the last step's
/// learning rate.
fn train_epoch(
    cfg: &TrainConfig,
    train: &[Sample],
    epoch: usize,
    dev: &Device,
    opt: &mut ModuleOptimizer,
    obs: &mut dyn Observer,
    mut current: UNet,
) -> Result<(UNet, f64, f64), TrainError> {
    let (channels, target_channels) = (cfg.model.in_channels, cfg.model.out_channels);
    let (patch, batch_size) = (cfg.patch_size, cfg.batch_size);
    let total_steps = (cfg.epochs * cfg.steps_per_epoch) as f64;
    std::thread::scope(move |scope| -> Result<(UNet, f64, f64), TrainError> {
        // Cut the next batches while the current step runs.
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<f32>, Vec<f32>)>(2);
        scope.spawn(move || sample_batches(cfg, train, epoch, &tx));
        let mut loss_sum = 0f64;
        let mut lr = cfg.learning_rate;
        for step in 1..=cfg.steps_per_epoch {
            let (images, targets) = rx
                .recv()
                .map_err(|_| TrainError::Data("the patch sampler stopped".into()))?;
            let x = Tensor::<1>::from_floats(images.as_slice(), dev).reshape([batch_size, channels, patch, patch]);
            let y =
                Tensor::<1>::from_floats(targets.as_slice(), dev).reshape([batch_size, target_channels, patch, patch]);
            lr = cosine(
                cfg.learning_rate,
                ((epoch - 1) * cfg.steps_per_epoch + step - 1) as f64 / total_steps,
            );
            let (m, loss) = train_step(current, opt, (&cfg.loss, cfg.targets()), lr, x, y);
            current = m;
            if !loss.is_finite() {
                return Err(TrainError::NonFinite {
                    epoch,
                    step,
                    value: loss,
                });
            }
            obs.step(epoch, step, loss);
            loss_sum += f64::from(loss);
        }
        Ok((current, loss_sum, lr))
    })
}

/// Sends the (images, targets) batches of an epoch's steps to `tx`, patches drawn from `train` with
/// a generator seeded from the seed and the epoch; stops early when the receiver is gone.
fn sample_batches(
    cfg: &TrainConfig,
    train: &[Sample],
    epoch: usize,
    tx: &std::sync::mpsc::SyncSender<(Vec<f32>, Vec<f32>)>,
) {
    let (channels, target_channels) = (cfg.model.in_channels, cfg.model.out_channels);
    let (patch, batch_size, augment) = (cfg.patch_size, cfg.batch_size, &cfg.augment);
    let mut rng = Rng::new(epoch_seed(cfg.seed, epoch));
    for _ in 0..cfg.steps_per_epoch {
        let mut images = Vec::with_capacity(batch_size * channels * patch * patch);
        let mut targets = Vec::with_capacity(batch_size * target_channels * patch * patch);
        for _ in 0..batch_size {
            let s = &train[(rng.next_u64() % train.len() as u64) as usize];
            let (i, t) = random_patch(s, patch, augment, &mut rng);
            images.extend_from_slice(&i);
            targets.extend_from_slice(&t);
        }
        if tx.send((images, targets)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Pixels;
    use crate::model::{Norm, UNetConfig};
    use burn::optim::AdamWConfig;

    /// A distance channel is learnt by cross-entropy alone: the loss is the foreground's BCE +
    /// Dice and the distance channel's BCE, weighted by `boundary_weight`.
    #[test]
    fn a_distance_channel_is_learnt_by_cross_entropy_alone() {
        let _rng = crate::flex_rng_lock();
        let device = Device::flex();
        let logits = Tensor::<1>::from_floats([0.5f32, -1.0, 2.0, 0.0, 0.3, -0.2, 1.5, -2.0].as_slice(), &device)
            .reshape([1, 2, 2, 2]);
        let target = Tensor::<1>::from_floats([1.0f32, 0.0, 1.0, 1.0, 0.25, 0.0, 0.75, 0.5].as_slice(), &device)
            .reshape([1, 2, 2, 2]);
        let cfg = LossConfig::new().with_boundary_weight(2.0);
        let got: f32 = cfg
            .loss(logits.clone(), target.clone(), Boundary::Distance)
            .into_scalar();
        let fg: f32 = cfg
            .channel_loss(logits.clone().narrow(1, 0, 1), target.clone().narrow(1, 0, 1))
            .into_scalar();
        let bce: f32 = bce_with_logits(logits.clone().narrow(1, 1, 1), target.clone().narrow(1, 1, 1)).into_scalar();
        assert!((got - (fg + 2.0 * bce) / 3.0).abs() < 1e-5, "{got}");
        let boundary: f32 = cfg.loss(logits, target, Boundary::Full).into_scalar();
        assert!((got - boundary).abs() > 1e-3, "a boundary channel also gets Dice");
    }

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

    fn samples(n: usize, s: usize, nan: bool) -> Vec<Sample> {
        let device = Device::flex();
        let (x, y) = discs(n, s, &device);
        let (x, y): (Vec<f32>, Vec<f32>) = (
            x.into_data().try_to_vec::<f32>().expect("f32"),
            y.into_data().try_to_vec::<f32>().expect("f32"),
        );
        (0..n)
            .map(|k| Sample {
                channels: 1,
                height: s,
                width: s,
                image: Pixels::F32(
                    x[k * s * s..(k + 1) * s * s]
                        .iter()
                        .map(|&v| if nan { f32::NAN } else { v })
                        .collect(),
                ),
                target: y[k * s * s..(k + 1) * s * s]
                    .iter()
                    .map(|&v| u8::from(v > 0.5))
                    .collect(),
                target_channels: 1,
                second: Boundary::None,
                labels: Vec::new(),
            })
            .collect()
    }

    fn small_config() -> TrainConfig {
        TrainConfig::new()
            .with_model(
                UNetConfig::new()
                    .with_out_channels(1)
                    .with_depth(2)
                    .with_base_channels(8)
                    .with_norm(Norm::Group),
            )
            .with_patch_size(32)
            .with_batch_size(4)
            .with_steps_per_epoch(20)
            .with_epochs(4)
            .with_learning_rate(5e-3)
    }

    #[test]
    fn fit_learns_and_records_history() {
        let _rng = crate::flex_rng_lock();
        let data = samples(4, 32, false);
        let mut seen = 0;
        let fitted = fit(
            &small_config(),
            &data,
            &data,
            &Device::flex(),
            &Checkpointing::default(),
            &mut |_: &EpochRecord| seen += 1,
        )
        .expect("fit");
        assert_eq!(seen, fitted.history.len());
        let last = fitted.history.last().expect("epochs");
        assert!(last.train_loss < fitted.history[0].train_loss, "{:?}", fitted.history);
        let best = &fitted.history[fitted.best_epoch - 1];
        assert!(best.val_dice > 0.8, "{:?}", fitted.history);
        assert!(last.learning_rate < 5e-3);
        // The returned model is the best epoch's.
        let v = evaluate(&fitted.model, &data, &Device::flex());
        assert!((v.dice - best.val_dice).abs() < 1e-9);
        assert_eq!(v.f1, best.val_f1);
    }

    #[test]
    fn non_finite_loss_stops_with_a_clear_error() {
        let _rng = crate::flex_rng_lock();
        let data = samples(2, 32, true);
        let err = fit(
            &small_config(),
            &data,
            &data,
            &Device::flex(),
            &Checkpointing::default(),
            &mut Silent,
        )
        .expect_err("nan");
        assert!(matches!(err, TrainError::NonFinite { epoch: 1, step: 1, .. }), "{err}");
    }

    #[test]
    fn channel_mismatch_is_refused() {
        let _rng = crate::flex_rng_lock();
        let data = samples(1, 32, false);
        let cfg = TrainConfig::new().with_model(UNetConfig::new().with_in_channels(3).with_out_channels(1));
        assert!(matches!(
            fit(
                &cfg,
                &data,
                &data,
                &Device::flex(),
                &Checkpointing::default(),
                &mut Silent
            ),
            Err(TrainError::Data(_))
        ));
    }

    #[test]
    fn tiny_set_is_overfit() {
        let _rng = crate::flex_rng_lock();
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
            let (m, l) = train_step(model, &mut optim, (&loss, Boundary::None), 5e-3, x.clone(), y.clone());
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
    /// Stops the run after `after` epochs, as a kill after a checkpoint would.
    struct KillAfter(usize);

    impl Observer for KillAfter {
        fn epoch(&mut self, record: &EpochRecord) -> ControlFlow<()> {
            if record.epoch >= self.0 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }

    fn resume_config() -> TrainConfig {
        TrainConfig::new()
            .with_model(
                UNetConfig::new()
                    .with_out_channels(1)
                    .with_depth(2)
                    .with_base_channels(4)
                    .with_norm(Norm::Batch)
                    .with_dropout(0.2),
            )
            .with_patch_size(16)
            .with_batch_size(2)
            .with_steps_per_epoch(3)
            .with_epochs(4)
            .with_patience(0)
    }

    /// The figures of a history that do not depend on the clock.
    fn figures(h: &[EpochRecord]) -> Vec<(usize, f64, f64, f64, f64)> {
        h.iter()
            .map(|r| (r.epoch, r.train_loss, r.val_dice, r.val_iou, r.learning_rate))
            .collect()
    }

    #[test]
    fn resume_after_a_kill_equals_an_uninterrupted_run() {
        let _rng = crate::flex_rng_lock();
        let data = samples(3, 32, false);
        let cfg = resume_config();
        let device = Device::flex();
        let dirs = tempfile::tempdir().expect("tmp");
        let ck = |name: &str| Checkpointing {
            dir: Some(dirs.path().join(name)),
            keep: 2,
            resume: true,
        };
        let whole = fit(&cfg, &data, &data, &device, &ck("whole"), &mut Silent).expect("fit");
        assert_eq!((whole.stop, whole.resumed_from), (Stop::Completed, None));

        let killed = fit(&cfg, &data, &data, &device, &ck("killed"), &mut KillAfter(2)).expect("fit");
        assert_eq!(killed.stop, Stop::Interrupted);
        assert_eq!(killed.history.len(), 2);
        let resumed = fit(&cfg, &data, &data, &device, &ck("killed"), &mut Silent).expect("resume");
        assert_eq!((resumed.stop, resumed.resumed_from), (Stop::Completed, Some(2)));

        assert_eq!(figures(&resumed.history), figures(&whole.history));
        assert_eq!(resumed.best_epoch, whole.best_epoch);
        let x = Tensor::<1>::from_floats(data[0].image.to_f32().as_slice(), &device).reshape([1, 1, 32, 32]);
        assert_eq!(
            resumed.model.forward(x.clone()).into_data(),
            whole.model.forward(x).into_data(),
            "identical weights"
        );
        // Old checkpoints are pruned: the newest two and the best remain.
        let left = checkpoint::list(&dirs.path().join("whole")).expect("list");
        assert!(left.len() <= 3 && left.iter().any(|(e, _)| *e == 4), "{left:?}");
        assert!(left.iter().any(|(e, _)| *e == whole.best_epoch), "{left:?}");

        // A fresh (not resumed) shorter run clears the longer run's checkpoints.
        let short = cfg.clone().with_epochs(1);
        let fresh = Checkpointing {
            resume: false,
            ..ck("killed")
        };
        fit(&short, &data, &data, &device, &fresh, &mut Silent).expect("fresh");
        let left = checkpoint::list(&dirs.path().join("killed")).expect("list");
        assert_eq!(left.iter().map(|(e, _)| *e).collect::<Vec<_>>(), [1]);

        // A finished run resumed again trains nothing and returns the same model.
        let again = fit(&cfg, &data, &data, &device, &ck("whole"), &mut Silent).expect("again");
        assert_eq!((again.resumed_from, again.history.len()), (Some(4), 4));
    }

    #[test]
    fn resuming_with_another_configuration_is_refused() {
        let _rng = crate::flex_rng_lock();
        let data = samples(2, 32, false);
        let cfg = resume_config().with_epochs(1);
        let dir = tempfile::tempdir().expect("tmp");
        let ck = Checkpointing {
            dir: Some(dir.path().to_owned()),
            keep: 1,
            resume: true,
        };
        fit(&cfg, &data, &data, &Device::flex(), &ck, &mut Silent).expect("fit");
        let err = fit(
            &cfg.with_learning_rate(1e-3),
            &data,
            &data,
            &Device::flex(),
            &ck,
            &mut Silent,
        )
        .expect_err("changed");
        let text = err.to_string();
        assert!(text.contains("learning_rate") && text.contains("state.json"), "{text}");
    }
}
