//! From a model's probabilities or a given mask to instance labels, under the parameter file's
//! segmentation settings.

use cellops_dataset::mask::{self, MaskKind};
use cellops_dataset::{Fixed, Raster, Samples, threshold_plane};
use cellops_formats::params::{CellParams, PostProcessing};
use cellops_measure::instances::{Guide, InstanceConfig, segment, split_mask};
use cellops_measure::threshold::threshold;
use cellops_measure::watershed::WatershedError;
use cellops_unet::data::Boundary;
use cellops_unet::inference::Prediction;

/// How given masks are read: as the user says, or recognised by [`mask::encoding`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum MaskReading {
    /// Instance labels when the mask has more than one non-zero value, else binary.
    #[default]
    Auto,
    /// Every non-zero value is one object (16-bit instance masks, as DSB2018's).
    Instances,
    /// Non-zero is foreground; nuclei are separated by the parameter file's method.
    Binary,
}

/// Splits a binary foreground into nuclei with the file's method (`boundary` needs a model's
/// boundary channel, so masks are split by the distance watershed).
pub fn split_foreground(
    foreground: &[bool],
    width: usize,
    p: &CellParams,
    pixel_size_um: f64,
) -> Result<Vec<u32>, WatershedError> {
    let values = p.segmentation.resolve(Some(pixel_size_um), None, 1.0).values;
    let config = InstanceConfig::from_params(&p.segmentation, &values, false);
    split_mask(foreground, width, &config).map(|(labels, _)| labels)
}

/// Instance labels from a prediction (foreground, and the second channel when the model has one:
/// what it holds is `second`), under the file's post-processing where it sets values and the
/// bundle's tuned `bundle` values elsewhere (at the model's scale, so sizes follow the
/// prediction's `scale`); `pixel_size_um` is the image's.
pub fn from_prediction(
    pred: &Prediction,
    second: Boundary,
    (p, pixel_size_um): (&CellParams, f64),
    bundle: Option<&PostProcessing>,
) -> Result<Vec<u32>, WatershedError> {
    let guide = pred.guide(second);
    let values = p.segmentation.resolve(Some(pixel_size_um), bundle, pred.scale).values;
    let has_boundary = matches!(guide, Some(Guide::Boundary(_)));
    let config = InstanceConfig::from_params(&p.segmentation, &values, has_boundary);
    segment(pred.channel(0), guide, pred.width, &config).map(|(labels, _)| labels)
}

/// Instance labels by the classical method: the file's global threshold (`segmentation.threshold`)
/// of the grey plane of [`classical_plane`], holes filled (all of them, unless the file says how
/// large), then the file's separation (the distance watershed by default).
pub fn classical(image: &Raster, p: &CellParams, pixel_size_um: f64) -> Result<Vec<u32>, ClassicalError> {
    classical_fixed(image, p, pixel_size_um, None)
}

/// The classical line's 8-bit grey plane of `image` ([`cellops_dataset::threshold_plane`]: its
/// levels and polarity from `fixed` when given, else from the image), and its width.
pub fn classical_plane(image: &Raster, fixed: Option<&Fixed>) -> Result<(Vec<u8>, usize), ClassicalError> {
    threshold_plane(image, fixed)
        .map_err(|e| ClassicalError::Preprocess(e.to_string()))?
        .ok_or_else(|| ClassicalError::Preprocess("normalisation did not give 8-bit samples".into()))
}

/// [`classical`] with the grey levels, polarity and threshold fixed beforehand (a slide's: the
/// same for every tile) instead of taken from the image.
pub fn classical_fixed(
    image: &Raster,
    p: &CellParams,
    pixel_size_um: f64,
    fixed: Option<(&Fixed, f64)>,
) -> Result<Vec<u32>, ClassicalError> {
    let (plane, width) = classical_plane(image, fixed.map(|f| f.0))?;
    let settings = p.segmentation.threshold;
    let t = fixed.map_or_else(|| threshold(&plane, settings.method, settings.value), |f| f.1);
    let foreground: Vec<bool> = plane.iter().map(|&v| f64::from(v) > t).collect();
    let mut values = p.segmentation.resolve(Some(pixel_size_um), None, 1.0).values;
    if p.segmentation.fill_holes_max_area_um2.is_none() {
        values.fill_holes_px = foreground.len() as f64;
    }
    let config = InstanceConfig::from_params(&p.segmentation, &values, false);
    Ok(split_mask(&foreground, width, &config)?.0)
}

/// Why the classical method failed on an image.
#[derive(Debug, thiserror::Error)]
pub enum ClassicalError {
    /// The image could not be preprocessed.
    #[error("preprocessing failed: {0}")]
    Preprocess(String),
    /// The watershed refused the mask.
    #[error(transparent)]
    Watershed(#[from] WatershedError),
}

fn values(r: &Raster) -> Vec<u32> {
    let c = usize::from(r.channels).max(1);
    match &r.samples {
        Samples::U8(s) => s.iter().step_by(c).map(|&v| u32::from(v)).collect(),
        Samples::U16(s) => s.iter().step_by(c).map(|&v| u32::from(v)).collect(),
    }
}

/// Instance labels from a mask image (its first channel).
pub fn from_mask(
    mask: &Raster,
    kind: MaskReading,
    p: &CellParams,
    pixel_size_um: f64,
) -> Result<Vec<u32>, WatershedError> {
    let v = values(mask);
    let instances = match kind {
        MaskReading::Instances => true,
        MaskReading::Binary => false,
        MaskReading::Auto => mask::encoding(v.iter().copied()) == MaskKind::Instance,
    };
    if instances {
        Ok(v)
    } else {
        let fg: Vec<bool> = v.iter().map(|&x| x != 0).collect();
        split_foreground(&fg, mask.width as usize, p, pixel_size_um)
    }
}

/// Ground-truth instance labels from a mask image (every non-zero value is one object).
pub fn truth(mask: &Raster) -> Vec<u32> {
    values(mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellops_formats::params::CellParams;
    use std::path::Path;

    /// Three separate discs and two touching ones, bright on a dark 16-bit background with a floor.
    fn discs() -> (Raster, usize) {
        let (w, h) = (96u32, 64u32);
        let centres = [(15.0, 15.0), (45.0, 15.0), (75.0, 15.0), (30.0, 45.0), (47.0, 45.0)];
        let data = (0..w * h)
            .map(|i| {
                let (x, y) = (f64::from(i % w), f64::from(i / w));
                let inside = centres
                    .iter()
                    .any(|(cx, cy)| (x - cx).powi(2) + (y - cy).powi(2) <= 81.0);
                if inside {
                    900 + (i % 7) as u16 * 10
                } else {
                    120 + (i % 5) as u16 * 4
                }
            })
            .collect();
        (Raster::from_u16(w, h, 1, data), centres.len())
    }

    fn params(yaml: &str) -> CellParams {
        CellParams::from_yaml(yaml, Path::new("p.yaml")).expect("params")
    }

    #[test]
    fn the_classical_method_finds_known_nuclei_and_splits_touching_ones() {
        let (image, n) = discs();
        // (The triangle method is for one dominant peak and takes this test's noisy background
        // in; it is checked against scikit-image in cellops-measure.)
        for method in ["otsu", "li"] {
            let p = params(&format!(
                "description: x\npixel_size_um: 1\nsegmentation: {{ method: threshold, threshold: {{ method: {method} }} }}\n"
            ));
            let labels = classical(&image, &p, 0.5).expect("classical");
            let count = labels.iter().copied().max().unwrap_or(0) as usize;
            assert_eq!(count, n, "{method}");
        }
        // A fixed level above the nuclei finds nothing; inverted polarity is automatic.
        let p = params(
            "description: x\npixel_size_um: 1\nsegmentation: { method: threshold, threshold: { method: fixed, value: 255 } }\n",
        );
        assert!(classical(&image, &p, 0.5).expect("classical").iter().all(|&l| l == 0));
        let Samples::U16(bright) = &image.samples else {
            unreachable!()
        };
        let dark = Raster::from_u16(image.width, image.height, 1, bright.iter().map(|v| 1200 - v).collect());
        let p = params("description: x\npixel_size_um: 1\nsegmentation: { method: threshold }\n");
        assert_eq!(
            classical(&dark, &p, 0.5).expect("classical").iter().copied().max(),
            Some(n as u32)
        );
    }
}
