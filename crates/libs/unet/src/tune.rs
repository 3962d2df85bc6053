//! Post-processing tuned on the validation split: the probability threshold, the boundary cut (a
//! model with a boundary channel), the distance watershed's `h_px`, the minimum object area and
//! hole filling that give the best pooled instance
//! F1 at IoU 0.5 on the validation images, searched one setting at a time (two rounds of
//! coordinate ascent over small grids) on predictions made once. The result goes into the bundle
//! as the model's defaults, in pixels at the model's scale.

use burn::prelude::*;
use cellops_formats::params::{PostProcessing, Segmentation};
use cellops_measure::instances::{InstanceConfig, segment};
use cellops_measure::metrics::{MatchCounts, Overlap};
use cellops_measure::profile::{PredictionFeatures, prediction_features};

use crate::data::{Boundary, Sample};
use crate::inference::{PredictConfig, Prediction, predict_chw};
use crate::model::UNet;

/// Probability thresholds tried.
pub const THRESHOLDS: [f64; 9] = [0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85];
/// `h_px` values tried.
pub const H_PX: [f64; 8] = [0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
/// Minimum areas tried (pixels at the model's scale).
pub const MIN_AREA_PX: [f64; 7] = [0.0, 16.0, 32.0, 48.0, 64.0, 96.0, 128.0];
/// Hole fillings tried (pixels at the model's scale).
pub const FILL_HOLES_PX: [f64; 4] = [0.0, 16.0, 64.0, 256.0];
/// Boundary cuts tried, for a model with a full or contact boundary channel (1: not used).
pub const BOUNDARY_CUTS: [f64; 5] = [1.0, 0.3, 0.5, 0.7, 0.9];

/// What the search found.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuned {
    /// The best values.
    pub values: PostProcessing,
    /// Their pooled validation F1 at IoU 0.5.
    pub f1: f64,
    /// The pooled validation F1 of the built-in defaults, for comparison.
    pub default_f1: f64,
    /// Every setting tried, with its F1, in the order tried.
    pub trials: Vec<(PostProcessing, f64)>,
    /// The prediction features of each validation image under the best values: the reference
    /// profile's prediction rows (the images are at the model's scale already).
    pub profile: Vec<PredictionFeatures>,
}

/// One validation image's prediction and true instances.
struct Cached<'a> {
    prediction: Prediction,
    /// What the prediction's second channel holds.
    second: Boundary,
    labels: &'a [u16],
}

/// Pooled F1 at IoU 0.5 of `values` (distance watershed, 8-connectivity, on the predicted
/// distances when the model has them) over the images.
fn pooled_f1(images: &[Cached<'_>], values: &PostProcessing) -> f64 {
    let config: InstanceConfig = InstanceConfig::from_params(&Segmentation::default(), values, false);
    let mut counts = MatchCounts::default();
    for c in images {
        let p = &c.prediction;
        let Ok((predicted, _)) = segment(p.channel(0), p.guide(c.second), p.width, &config) else {
            continue;
        };
        if let Ok(o) = Overlap::new(c.labels, &predicted) {
            counts += o.matching(0.5);
        }
    }
    counts.stats(0.5).f1
}

/// The prediction features of each image under `values` (images whose segmentation fails are
/// left out, as [`pooled_f1`] leaves them out).
fn profile(images: &[Cached<'_>], values: &PostProcessing) -> Vec<PredictionFeatures> {
    let config: InstanceConfig = InstanceConfig::from_params(&Segmentation::default(), values, false);
    images
        .iter()
        .filter_map(|c| {
            let p = &c.prediction;
            let (labels, _) = segment(p.channel(0), p.guide(c.second), p.width, &config).ok()?;
            Some(prediction_features(&labels, p.width, p.channel(0), p.scale))
        })
        .collect()
}

/// The model's predictions on the labelled samples.
fn predictions<'a>(model: &UNet, samples: &'a [Sample], device: &Device) -> Vec<Cached<'a>> {
    let tiling = PredictConfig::new().with_tile(512).with_overlap(64);
    samples
        .iter()
        .filter(|s| s.labels.len() == s.width * s.height)
        .map(|s| {
            let mut prediction = predict_chw(model, &s.image.to_f32(), s.channels, s.height, s.width, &tiling, device);
            // A distance or boundary channel takes part in the watershed: drop only the absence
            // of one (a model without a second channel has none to drop).
            if s.second == Boundary::None {
                prediction.probabilities.truncate(s.width * s.height);
                prediction.channels = 1;
            }
            Cached {
                prediction,
                second: s.second,
                labels: &s.labels,
            }
        })
        .collect()
}

/// Searches the post-processing for `model` on `samples` (validation images with instance
/// labels); `None` when no sample has labels.
pub fn tune(model: &UNet, samples: &[Sample], device: &Device) -> Option<Tuned> {
    let images = predictions(model, samples, device);
    if images.is_empty() {
        return None;
    }
    Some(search(&images))
}

/// The prediction features of `model` on the labelled `samples` under `values` (a bundle's own
/// post-processing): the reference profile's rows without searching again.
pub fn profile_at(
    model: &UNet,
    samples: &[Sample],
    values: &PostProcessing,
    device: &Device,
) -> Vec<PredictionFeatures> {
    profile(&predictions(model, samples, device), values)
}

fn search(images: &[Cached<'_>]) -> Tuned {
    let default = PostProcessing::default();
    let default_f1 = pooled_f1(images, &default);
    let mut trials = vec![(default, default_f1)];
    let (mut best, mut best_f1) = (default, default_f1);
    type Setter = fn(&mut PostProcessing, f64);
    let cuts: &[f64] = if images
        .iter()
        .any(|c| matches!(c.second, Boundary::Full | Boundary::Contact))
    {
        &BOUNDARY_CUTS
    } else {
        &[]
    };
    let axes: [(&[f64], Setter); 5] = [
        (&THRESHOLDS, |p, v| p.probability_threshold = v),
        (cuts, |p, v| p.boundary_cut = v),
        (&H_PX, |p, v| p.h_px = v),
        (&MIN_AREA_PX, |p, v| p.min_area_px = v),
        (&FILL_HOLES_PX, |p, v| p.fill_holes_px = v),
    ];
    for _round in 0..2 {
        for (grid, set) in &axes {
            for &v in grid.iter() {
                let mut candidate = best;
                set(&mut candidate, v);
                if trials.iter().any(|(t, _)| *t == candidate) {
                    continue;
                }
                let f1 = pooled_f1(images, &candidate);
                trials.push((candidate, f1));
                if f1 > best_f1 {
                    (best, best_f1) = (candidate, f1);
                }
            }
        }
    }
    Tuned {
        values: best,
        f1: best_f1,
        default_f1,
        trials,
        profile: profile(images, &best),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two touching discs whose probabilities are low (0.35) at their rims: a threshold below the
    /// rim recovers their full area, and an `h_px` small enough splits them.
    #[test]
    fn the_search_finds_a_better_threshold_than_the_default() {
        let _rng = crate::flex_rng_lock();
        let (w, h) = (48usize, 24usize);
        let mut labels = vec![0u16; w * h];
        let mut fg = vec![0f32; w * h];
        for y in 0..h {
            for x in 0..w {
                for (k, cx) in [(1u16, 14.0f32), (2, 32.0)] {
                    let d = ((x as f32 - cx).powi(2) + (y as f32 - 12.0).powi(2)).sqrt();
                    if d <= 9.0 {
                        labels[y * w + x] = k;
                        fg[y * w + x] = if d <= 5.0 { 0.9 } else { 0.35 };
                    }
                }
            }
        }
        let images = [Cached {
            prediction: Prediction {
                width: w,
                height: h,
                channels: 1,
                probabilities: fg,
                scale: 1.0,
            },
            second: Boundary::None,
            labels: &labels,
        }];
        let t = search(&images);
        assert!(t.f1 >= t.default_f1);
        assert!(t.values.probability_threshold < 0.35, "{:?}", t.values);
        assert!((t.f1 - 1.0).abs() < 1e-9, "{t:?}");
        assert_eq!(t.trials[0], (PostProcessing::default(), t.default_f1));
        // The reference rows: both discs found, sure of their centres, unsure of their rims.
        assert_eq!(t.profile.len(), 1);
        let f = t.profile[0];
        assert_eq!(f.nuclei, 2.0);
        assert!(
            f.uncertain > 0.1 && f.foreground_probability.is_some_and(|p| p < 0.9),
            "{f:?}"
        );
    }
}
