//! What the Monitor stage watches in a model's output on one image ([`PredictionFeatures`]):
//! computed the same way for a bundle's reference (its validation images, when `train-unet`
//! tunes the post-processing) and for every image the service measures, so the two compare.

pub use cellops_formats::bundle::PredictionFeatures;

use crate::shape::regionprops;

/// Foreground probabilities strictly inside this range count as uncertain.
pub const UNCERTAIN: (f32, f32) = (0.3, 0.7);

/// The share of `probabilities` strictly inside [`UNCERTAIN`] (0 for none).
///
/// ```
/// assert_eq!(cellops_measure::profile::uncertain_share(&[0.1, 0.5, 0.9, 0.65]), 0.5);
/// ```
pub fn uncertain_share(probabilities: &[f32]) -> f64 {
    let (low, high) = UNCERTAIN;
    let n = probabilities.iter().filter(|&&p| p > low && p < high).count();
    n as f64 / probabilities.len().max(1) as f64
}

/// The prediction features of one image: `labels` (row-major, `width` wide, 0 = background) the
/// instances segmented from `probabilities` (the foreground channel on the same grid), and
/// `scale` the factor the model rescaled the image by (areas are reported at the model's scale:
/// times `scale²`).
///
/// ```
/// use cellops_measure::profile::prediction_features;
/// // One 2×2 nucleus in a 4×2 image, sure of itself; an unsure background pixel.
/// let labels = [1, 1, 0, 0, 1, 1, 0, 0];
/// let probs = [0.9, 0.9, 0.5, 0.0, 0.9, 0.9, 0.0, 0.0];
/// let f = prediction_features(&labels, 4, &probs, 2.0);
/// assert_eq!(f.nuclei, 1.0);
/// assert_eq!(f.area_px, Some(16.0));
/// assert!((f.foreground_probability.unwrap() - 0.9).abs() < 1e-6);
/// assert_eq!(f.uncertain, 0.125);
/// ```
pub fn prediction_features(labels: &[u32], width: usize, probabilities: &[f32], scale: f64) -> PredictionFeatures {
    let props = regionprops(labels, width);
    let mut areas: Vec<f64> = props.iter().map(|p| p.area as f64 * scale * scale).collect();
    let mut forms: Vec<f64> = props.iter().map(|p| p.form_factor).collect();
    let (mut sum, mut n) = (0.0f64, 0usize);
    for (&l, &p) in labels.iter().zip(probabilities) {
        if l != 0 {
            sum += f64::from(p);
            n += 1;
        }
    }
    PredictionFeatures {
        nuclei: props.len() as f64,
        area_px: median(&mut areas),
        form_factor: median(&mut forms),
        foreground_probability: (n > 0).then(|| sum / n as f64),
        uncertain: uncertain_share(probabilities),
    }
}

/// The median (mean of the middle two for an even count); `None` for no values.
fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let m = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[m - 1] + values[m]) / 2.0
    } else {
        values[m]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_without_nuclei_has_no_sizes() {
        let f = prediction_features(&[0; 6], 3, &[0.1; 6], 1.0);
        assert_eq!(f.nuclei, 0.0);
        assert_eq!((f.area_px, f.form_factor, f.foreground_probability), (None, None, None));
        assert_eq!(f.uncertain, 0.0);
    }

    #[test]
    fn sizes_are_medians_over_the_nuclei() {
        // Three nuclei of 1, 2 and 6 pixels: the median is 2 (at scale 1), 0.5 at scale 0.5.
        let labels = [1, 0, 2, 2, 0, 3, 3, 3, 0, 0, 3, 3, 3];
        let probs = [1.0; 13];
        assert_eq!(prediction_features(&labels, 13, &probs, 1.0).area_px, Some(2.0));
        assert_eq!(prediction_features(&labels, 13, &probs, 0.5).area_px, Some(0.5));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
