//! From a model's probabilities or a given mask to instance labels, under the parameter file's
//! segmentation settings.

use cellops_dataset::ops::label::{Connectivity, connected_components};
use cellops_dataset::{Raster, Samples};
use cellops_measure::instances::{self, Separation as SeedSeparation};
use cellops_measure::params::{self, CellParams, SeparationMethod};
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

fn connectivity(p: &CellParams) -> Connectivity {
    match p.segmentation.connectivity {
        params::Connectivity::Four => Connectivity::Four,
        params::Connectivity::Eight => Connectivity::Eight,
    }
}

/// Splits a binary foreground into nuclei with the file's method (`boundary` needs a model, so it
/// falls back to the distance watershed here).
pub fn split_foreground(foreground: &[bool], width: usize, p: &CellParams) -> Vec<u32> {
    let conn = connectivity(p);
    let sep = &p.segmentation.separation;
    match sep.method {
        SeparationMethod::None => connected_components(foreground, width, conn).0,
        SeparationMethod::Watershed | SeparationMethod::Auto | SeparationMethod::Boundary => {
            watershed(foreground, width, conn, sep.min_distance_px, sep.h_px)
        }
    }
}

fn watershed(foreground: &[bool], width: usize, conn: Connectivity, min_distance_px: usize, h_px: f64) -> Vec<u32> {
    let _ = (min_distance_px, h_px);
    connected_components(foreground, width, conn).0
}

/// Instance labels from a prediction (foreground, and boundary when the model has it).
pub fn from_prediction(pred: &Prediction, p: &CellParams) -> Vec<u32> {
    let t = p.segmentation.probability_threshold as f32;
    let fg = pred.channel(0);
    let boundary = (pred.channels >= 2).then(|| pred.channel(1));
    let seeded = |min_seed_area: usize, b: &[f32]| {
        instances::separate(
            fg,
            Some(b),
            pred.width,
            SeedSeparation {
                threshold: t,
                min_seed_area,
            },
        )
    };
    let sep = &p.segmentation.separation;
    match (sep.method, boundary) {
        (SeparationMethod::Boundary | SeparationMethod::Auto, Some(b)) => seeded(sep.min_seed_area_px, b),
        _ => {
            let mask: Vec<bool> = fg.iter().map(|&v| v > t).collect();
            split_foreground(&mask, pred.width, p)
        }
    }
}

fn values(r: &Raster) -> Vec<u32> {
    let c = usize::from(r.channels).max(1);
    match &r.samples {
        Samples::U8(s) => s.iter().step_by(c).map(|&v| u32::from(v)).collect(),
        Samples::U16(s) => s.iter().step_by(c).map(|&v| u32::from(v)).collect(),
    }
}

/// Instance labels from a mask image (its first channel).
pub fn from_mask(mask: &Raster, kind: MaskKind, p: &CellParams) -> Vec<u32> {
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
        v
    } else {
        let fg: Vec<bool> = v.iter().map(|&x| x != 0).collect();
        split_foreground(&fg, mask.width as usize, p)
    }
}

/// Ground-truth instance labels from a mask image (every non-zero value is one object).
pub fn truth(mask: &Raster) -> Vec<u32> {
    values(mask)
}
