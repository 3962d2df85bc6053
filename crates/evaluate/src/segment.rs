//! From a model's probabilities or a given mask to instance labels, under the parameter file's
//! segmentation settings.

use cellops_dataset::{Raster, Samples};
use cellops_measure::instances::{segment, split_mask};
use cellops_measure::params::CellParams;
use cellops_measure::watershed::WatershedError;
use cellops_unet::inference::Prediction;

/// How given masks are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum MaskKind {
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
pub fn split_foreground(foreground: &[bool], width: usize, p: &CellParams) -> Result<Vec<u32>, WatershedError> {
    let config = p.segmentation.instance_config(p.pixel_size_um, false);
    split_mask(foreground, width, &config).map(|(labels, _)| labels)
}

/// Instance labels from a prediction (foreground, and boundary when the model has it).
pub fn from_prediction(pred: &Prediction, p: &CellParams) -> Result<Vec<u32>, WatershedError> {
    let boundary = (pred.channels >= 2).then(|| pred.channel(1));
    let config = p.segmentation.instance_config(p.pixel_size_um, boundary.is_some());
    segment(pred.channel(0), boundary, pred.width, &config).map(|(labels, _)| labels)
}

fn values(r: &Raster) -> Vec<u32> {
    let c = usize::from(r.channels).max(1);
    match &r.samples {
        Samples::U8(s) => s.iter().step_by(c).map(|&v| u32::from(v)).collect(),
        Samples::U16(s) => s.iter().step_by(c).map(|&v| u32::from(v)).collect(),
    }
}

/// Instance labels from a mask image (its first channel).
pub fn from_mask(mask: &Raster, kind: MaskKind, p: &CellParams) -> Result<Vec<u32>, WatershedError> {
    let v = values(mask);
    let instances = match kind {
        MaskKind::Instances => true,
        MaskKind::Binary => false,
        MaskKind::Auto => {
            let first = v.iter().copied().find(|&x| x != 0);
            first.is_some_and(|f| v.iter().any(|&x| x != 0 && x != f))
        }
    };
    if instances {
        Ok(v)
    } else {
        let fg: Vec<bool> = v.iter().map(|&x| x != 0).collect();
        split_foreground(&fg, mask.width as usize, p)
    }
}

/// Ground-truth instance labels from a mask image (every non-zero value is one object).
pub fn truth(mask: &Raster) -> Vec<u32> {
    values(mask)
}
