//! The golden check: a fixed input the model runs on when it is bundled, its probabilities kept
//! in the bundle, and the same run repeated wherever the bundle is loaded to serve (a warm-up
//! that proves something). It bypasses preprocessing — the input is the model's own `[C, H, W]`
//! in 0..1 — so it tests the weights, the device and the kernels, not the image pipeline, and the
//! same tolerances hold on any device ([`GOLDEN_MAX_ABS_DIFF`], [`GOLDEN_MIN_IOU`]).
//!
//! The input is a synthetic nuclei image with a fixed seed (grey fluorescence for one input
//! channel, H&E-like RGB for three), so that re-bundling a model needs no dataset.

use std::path::Path;

use cellops_dataset::synthetic::{Style, SynthConfig, generate_one};
use cellops_dataset::{Raster, Samples, io};
use cellops_formats::bundle::{GOLDEN_IMAGE, GOLDEN_MAX_ABS_DIFF, GOLDEN_MIN_IOU, GOLDEN_OUTPUT, Golden};

use crate::Device;
use crate::data::image_to_chw;
use crate::inference::{PredictConfig, PredictError, Predictor, predict_chw};
use crate::model::UNet;

/// The golden input's side in pixels (two tiles' worth of work at most: a warm-up, not a test set).
const SIDE: u32 = 128;
/// Its seed.
const SEED: u64 = 20_261_206;

/// What the golden check writes into a bundle.
#[derive(Debug, Clone)]
pub struct GoldenFiles {
    /// The record for `bundle.json`.
    pub record: Golden,
    /// `(file name, bytes)` of [`GOLDEN_IMAGE`] and [`GOLDEN_OUTPUT`].
    pub files: Vec<(&'static str, Vec<u8>)>,
}

/// How a golden check went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GoldenReport {
    /// The largest difference of a probability from the recorded one.
    pub max_abs_diff: f32,
    /// Intersection-over-union of the foreground (p > 0.5) with the recorded one.
    pub iou: f64,
}

/// Why a golden check failed.
#[derive(Debug, thiserror::Error)]
pub enum GoldenError {
    /// A golden file is missing, unreadable or not what `bundle.json` records.
    #[error("{}: {message}", .path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        message: String,
    },
    /// The model could not run.
    #[error(transparent)]
    Predict(#[from] PredictError),
    /// The model's answer differs from the recorded one beyond the tolerances.
    #[error(
        "the golden check failed: probabilities differ by up to {:.2e} (tolerance {GOLDEN_MAX_ABS_DIFF:.0e}), \
         foreground IoU {:.4} (at least {GOLDEN_MIN_IOU}); the weights, the device or the build do not \
         reproduce the model as it was bundled",
        .0.max_abs_diff,
        .0.iou
    )]
    Differs(GoldenReport),
}

/// The golden input for a model with `channels` input channels.
pub fn input(channels: usize) -> Raster {
    let style = if channels == 3 { Style::He } else { Style::Fluorescence };
    let cfg = SynthConfig {
        count: 1,
        seed: SEED,
        size: [SIDE, SIDE],
        style,
    };
    let (image, _) = generate_one(&cfg, 0);
    if image.channels as usize == channels {
        return image;
    }
    // Another channel count: the first channel repeated.
    let Samples::U8(data) = &image.samples else {
        return image;
    };
    let c = image.channels as usize;
    let repeated = data
        .chunks_exact(c)
        .flat_map(|px| std::iter::repeat_n(px[0], channels))
        .collect();
    Raster::from_u8(image.width, image.height, channels as u8, repeated)
}

/// Runs `model` (taking `channels` input channels) on the golden input on `device` (named
/// `device_name` in the record) and returns what to store in its bundle.
pub fn record(model: &UNet, channels: usize, device: &Device, device_name: &str) -> Result<GoldenFiles, GoldenError> {
    let image = input(channels);
    let png = io::encode_png(&image).map_err(|e| GoldenError::File {
        path: GOLDEN_IMAGE.into(),
        message: e.to_string(),
    })?;
    let side = SIDE as usize;
    let p = predict_chw(
        model,
        &image_to_chw(&image),
        channels,
        side,
        side,
        &PredictConfig::new(),
        device,
    );
    let output: Vec<u8> = p.probabilities.iter().flat_map(|v| v.to_le_bytes()).collect();
    let record = Golden {
        image_sha256: cellops_dataset::manifest::sha256_hex(&png),
        output_sha256: cellops_dataset::manifest::sha256_hex(&output),
        shape: [p.channels, p.height, p.width],
        foreground_pixels: p.channel(0).iter().filter(|&&v| v > 0.5).count(),
        device: device_name.to_owned(),
    };
    Ok(GoldenFiles {
        record,
        files: vec![(GOLDEN_IMAGE, png), (GOLDEN_OUTPUT, output)],
    })
}

/// Runs the golden check of the bundle in `dir` with `predictor` (loaded from it): `Ok(None)`
/// for a bundle recorded without one.
pub fn check(predictor: &Predictor, dir: &Path) -> Result<Option<GoldenReport>, GoldenError> {
    let Some(golden) = predictor.meta().golden.clone() else {
        return Ok(None);
    };
    let read = |name: &str, sha256: &str| {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| GoldenError::File {
            path: path.clone(),
            message: format!("cannot read: {e}"),
        })?;
        if cellops_dataset::manifest::sha256_hex(&bytes) != sha256 {
            return Err(GoldenError::File {
                path,
                message: "sha256 differs from bundle.json".into(),
            });
        }
        Ok((path, bytes))
    };
    let (image_path, png) = read(GOLDEN_IMAGE, &golden.image_sha256)?;
    let (_, output) = read(GOLDEN_OUTPUT, &golden.output_sha256)?;
    let image = io::decode(&png, u64::from(SIDE) * u64::from(SIDE) * 16)
        .map_err(|e| GoldenError::File {
            path: image_path,
            message: e.to_string(),
        })?
        .raster;
    let shape = [image.channels as usize, image.height as usize, image.width as usize];
    // As recorded: the default tiling and test-time augmentation, whatever the service uses.
    let mut predictor = predictor.clone();
    predictor.config = PredictConfig::new();
    let now = predictor.probabilities(&image_to_chw(&image), shape)?;
    let recorded: Vec<f32> = output
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let report = compare(&recorded, &now.probabilities, now.width * now.height);
    let shape_ok = [now.channels, now.height, now.width] == golden.shape;
    if !shape_ok || report.max_abs_diff > GOLDEN_MAX_ABS_DIFF || report.iou < GOLDEN_MIN_IOU {
        return Err(GoldenError::Differs(report));
    }
    Ok(Some(report))
}

/// The largest difference and the foreground IoU of the first channel (`plane` values); a
/// length mismatch is an infinite difference.
fn compare(recorded: &[f32], now: &[f32], plane: usize) -> GoldenReport {
    if recorded.len() != now.len() || plane > now.len() {
        return GoldenReport {
            max_abs_diff: f32::INFINITY,
            iou: 0.0,
        };
    }
    let max_abs_diff = recorded
        .iter()
        .zip(now)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) });
    let (mut both, mut either) = (0usize, 0usize);
    for (a, b) in recorded[..plane].iter().zip(&now[..plane]) {
        let (a, b) = (*a > 0.5, *b > 0.5);
        both += usize::from(a && b);
        either += usize::from(a || b);
    }
    let iou = if either == 0 { 1.0 } else { both as f64 / either as f64 };
    GoldenReport { max_abs_diff, iou }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_measures_the_largest_difference_and_the_foreground_overlap() {
        let r = compare(&[0.9, 0.9, 0.1, 0.2], &[0.9, 0.4, 0.1, 0.2], 4);
        assert!((r.max_abs_diff - 0.5).abs() < 1e-6);
        assert!((r.iou - 0.5).abs() < 1e-12);
        assert_eq!(compare(&[0.1], &[0.1, 0.2], 1).max_abs_diff, f32::INFINITY);
        assert_eq!(compare(&[0.1], &[f32::NAN], 1).max_abs_diff, f32::INFINITY);
    }

    fn bundle_with(model: &UNet, golden_of: &UNet, dir: &Path, device: &Device) -> Predictor {
        use crate::bundle::{BundleInfo, save};
        let g = record(golden_of, 1, device, "cpu").expect("record");
        let training = crate::config::TrainConfig::new().with_model(tiny());
        let info = BundleInfo {
            golden: Some(g.record),
            ..BundleInfo::new(training, cellops_dataset::BuildConfig::default())
        };
        save(model, &info, dir, &g.files).expect("save");
        Predictor::load(dir, device, PredictConfig::new()).expect("load")
    }

    fn tiny() -> crate::model::UNetConfig {
        crate::model::UNetConfig::new()
            .with_depth(2)
            .with_base_channels(4)
            .with_norm(crate::model::Norm::Group)
    }

    #[test]
    fn a_bundle_passes_its_own_check_and_other_weights_fail_it() {
        let _rng = crate::flex_rng_lock();
        let device = Device::flex();
        let (a, b) = (tiny().init(&device), tiny().init(&device));
        let dir = tempfile::tempdir().expect("tmp");
        let own = bundle_with(&a, &a, &dir.path().join("own"), &device);
        let report = check(&own, &dir.path().join("own")).expect("passes").expect("recorded");
        assert_eq!(report.max_abs_diff, 0.0, "same weights, same device: the same numbers");
        assert!((report.iou - 1.0).abs() < 1e-12);
        let other = bundle_with(&b, &a, &dir.path().join("other"), &device);
        let err = check(&other, &dir.path().join("other")).expect_err("other weights");
        assert!(matches!(err, GoldenError::Differs(_)), "{err}");
        // A golden output that was tampered with is caught by its hash.
        let out = dir.path().join("own").join(GOLDEN_OUTPUT);
        let mut bytes = std::fs::read(&out).expect("read");
        bytes[0] ^= 1;
        std::fs::write(&out, bytes).expect("write");
        let err = check(&own, &dir.path().join("own")).expect_err("tampered");
        assert!(err.to_string().contains("sha256 differs"), "{err}");
    }

    #[test]
    fn the_input_has_the_models_channels_and_is_always_the_same() {
        assert_eq!(input(1).channels, 1);
        assert_eq!(input(3).channels, 3);
        assert_eq!(input(2).channels, 2);
        assert_eq!(input(1), input(1));
    }
}
