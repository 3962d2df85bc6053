//! What a slide fixes once for all its tiles: the grey levels the normalisation stretches, the
//! polarity, the classical threshold and the model's rescaling factor. An image is analysed with
//! its own statistics; a tile must not be — a tile of background alone would be stretched to
//! full range, and a nucleus cut by a seam would be segmented differently in its two tiles. With
//! one calibration, every tile is prepared as one untiled pass of the region would prepare it.

use cellops_dataset::{BuildConfig, Fixed, Raster};
use cellops_formats::params::CellParams;
use cellops_measure::threshold::threshold;

use crate::segment::{ClassicalError, classical_plane};

/// A slide's statistics, fixed for every tile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// The classical line's grey levels and polarity.
    pub classical: Fixed,
    /// The classical threshold, on the 8-bit grey plane after `classical`.
    pub threshold: f64,
    /// The model's levels and polarity under its bundle's preprocessing, when a model segments.
    pub model: Option<Fixed>,
    /// The model's rescaling factor, when its bundle was trained at a nucleus scale.
    pub factor: Option<Factor>,
}

/// The factor a model rescales a slide by (model pixels per slide pixel), and where it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Factor {
    /// The factor.
    pub value: f64,
    /// Where it came from.
    pub from: FactorFrom,
}

/// Where a slide's rescaling factor came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FactorFrom {
    /// The parameter file's `nucleus_diameter_um` and the slide's pixel size.
    NucleusDiameter,
    /// The model's own size estimate, once, on the tile read at this level-0 origin.
    Estimate {
        /// The tile's left edge.
        x: u32,
        /// The tile's top edge.
        y: u32,
    },
}

impl FactorFrom {
    /// How reports say it.
    pub fn describe(&self) -> String {
        match self {
            FactorFrom::NucleusDiameter => "nucleus_diameter_um and the slide's pixel size".into(),
            FactorFrom::Estimate { x, y } => {
                format!("estimated once, on the tile at {x},{y} (set nucleus_diameter_um to fix it)")
            }
        }
    }
}

impl Calibration {
    /// The calibration of a slide whose pixels `sample` stands for (its tissue at a reduced
    /// level, as one row), under `params` and, when a model segments, its preprocessing `model`.
    pub fn of(
        params: &CellParams,
        model: Option<&BuildConfig>,
        sample: &Raster,
        factor: Option<Factor>,
    ) -> Result<Self, ClassicalError> {
        let classical = Fixed::of(sample, &BuildConfig::threshold_grey());
        let (plane, _) = classical_plane(sample, Some(&classical))?;
        let settings = params.segmentation.threshold;
        Ok(Self {
            classical,
            threshold: threshold(&plane, settings.method, settings.value),
            model: model.map(|cfg| Fixed::of(sample, cfg)),
            factor,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use cellops_dataset::Samples;

    use super::*;

    #[test]
    fn levels_and_threshold_come_from_the_sample_not_the_tile() {
        let params = CellParams::from_yaml(
            "description: t\nsegmentation: { method: threshold }\n",
            Path::new("t.yaml"),
        )
        .expect("params");
        // Background 20, nuclei 200: the threshold falls between them.
        let sample = Raster::from_u8(10, 1, 1, vec![20, 20, 20, 20, 20, 20, 200, 200, 200, 20]);
        let c = Calibration::of(&params, None, &sample, None).expect("calibration");
        assert_eq!(c.classical.levels, Some((20.0, 200.0)));
        assert!(!c.classical.invert);
        assert!((0.0..255.0).contains(&c.threshold), "{}", c.threshold);
        // A tile of background alone stays dark under the slide's levels.
        let tile = Raster::from_u8(2, 1, 1, vec![20, 22]);
        let (plane, _) = classical_plane(&tile, Some(&c.classical)).expect("plane");
        assert_eq!(plane, vec![0, 3]);
        let Samples::U8(own) = cellops_dataset::preprocess(&tile, &BuildConfig::threshold_grey())
            .expect("own")
            .samples
        else {
            unreachable!()
        };
        assert_eq!(own.iter().max(), Some(&255), "its own statistics would stretch it");
    }
}
