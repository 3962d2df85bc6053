//! The build configuration: a YAML file, overridable by flags.
//!
//! ```yaml
//! layout: auto            # auto | paper | dsb2018 | nnunet | cellpose
//! max_pixels: 100000000   # refuse larger images (decompression-bomb guard)
//! colour: keep            # keep | grey | rgb
//! resize: { width: 256, height: 256, filter: bilinear }   # or { scale: 0.5 }
//! scale: { diameter_px: 24 }    # or: rescale so the median nucleus is this wide (not with resize)
//! normalize: { method: percentile, low: 1.0, high: 99.8 } # method: percentile (default) or none
//! polarity: auto          # keep (default) | invert | auto: nuclei bright on dark
//! equalize: { method: clahe, clip_limit: 2.0, tile_grid: [8, 8] }  # method: none, global or clahe
//! tile: { size: 256, overlap: 32 }
//! split: { seed: 42, val_fraction: 0.15, test_fraction: 0.15 }
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::dataset::LayoutKind;
pub use crate::preprocessing::{ColourMode, EqualizeMethod, Filter, NormalizeMethod, Polarity};

/// Everything `build` does to a dataset. Every field has a default; unknown fields are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuildConfig {
    /// Which dataset layout to read.
    pub layout: LayoutKind,
    /// Images with more pixels than this are refused before they are decoded.
    pub max_pixels: u64,
    /// Channel handling.
    pub colour: ColourMode,
    /// Resizing, if any.
    pub resize: Option<Resize>,
    /// Isotropic rescaling to a nucleus size, if any (instead of `resize`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<NucleusScale>,
    /// Intensity normalisation.
    pub normalize: Normalize,
    /// Which way round intensities go (after normalisation): nuclei bright on dark.
    #[serde(skip_serializing_if = "is_keep")]
    pub polarity: Polarity,
    /// Histogram equalisation.
    pub equalize: Equalize,
    /// Tiling into patches, if any.
    pub tile: Option<Tile>,
    /// How items are split into train / val / test.
    pub split: Split,
}

impl Default for BuildConfig {
    fn default() -> Self {
        Self {
            layout: LayoutKind::Auto,
            max_pixels: 100_000_000,
            colour: ColourMode::Keep,
            resize: None,
            scale: None,
            normalize: Normalize::default(),
            polarity: Polarity::Keep,
            equalize: Equalize::default(),
            tile: None,
            split: Split::default(),
        }
    }
}

fn is_keep(p: &Polarity) -> bool {
    *p == Polarity::Keep
}

/// Isotropic rescaling so that the median nucleus (equivalent diameter of the mask's objects)
/// becomes `diameter_px` wide. `build` measures each image's nuclei on its mask; inference, which
/// has no mask, estimates them (see `cellops-unet`'s predictor). Factors stay within 1/8..=8.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NucleusScale {
    /// Target median nucleus diameter in pixels.
    pub diameter_px: f64,
}

/// Target size: `width` and `height` (one of them alone keeps the aspect ratio), or `scale`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Resize {
    /// Target width in pixels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Target height in pixels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Scale factor for both axes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// Image filter (masks always use nearest neighbour).
    pub filter: Filter,
}

impl Resize {
    /// The output size for an input of `w` x `h`.
    ///
    /// ```
    /// use cellops_formats::build::Resize;
    /// let r = Resize { width: Some(128), ..Default::default() };
    /// assert_eq!(r.target(256, 200), (128, 100));
    /// ```
    pub fn target(&self, w: u32, h: u32) -> (u32, u32) {
        let round = |v: f64| (v.round() as u32).max(1);
        match (self.width, self.height, self.scale) {
            (Some(tw), Some(th), _) => (tw, th),
            (Some(tw), None, _) => (tw, round(f64::from(h) * f64::from(tw) / f64::from(w))),
            (None, Some(th), _) => (round(f64::from(w) * f64::from(th) / f64::from(h)), th),
            (None, None, Some(s)) => (round(f64::from(w) * s), round(f64::from(h) * s)),
            (None, None, None) => (w, h),
        }
    }
}

/// Intensity normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Normalize {
    /// The method.
    pub method: NormalizeMethod,
    /// Lower percentile (for `percentile`).
    pub low: f64,
    /// Upper percentile (for `percentile`).
    pub high: f64,
}

impl Default for Normalize {
    fn default() -> Self {
        Self {
            method: NormalizeMethod::Percentile,
            low: 1.0,
            high: 99.8,
        }
    }
}

/// Histogram equalisation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Equalize {
    /// The method.
    pub method: EqualizeMethod,
    /// CLAHE contrast limit (OpenCV's `clipLimit`; 0 disables clipping).
    pub clip_limit: f64,
    /// CLAHE tiles across and down (OpenCV's `tileGridSize`).
    pub tile_grid: [u32; 2],
}

impl Default for Equalize {
    fn default() -> Self {
        Self {
            method: EqualizeMethod::None,
            clip_limit: 2.0,
            tile_grid: [8, 8],
        }
    }
}

/// Tiling into square patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tile {
    /// Patch side in pixels.
    pub size: u32,
    /// Overlap between neighbouring patches in pixels.
    #[serde(default)]
    pub overlap: u32,
}

/// Splitting into train / val / test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Split {
    /// Seed of the deterministic assignment.
    pub seed: u64,
    /// Fraction of items for validation.
    pub val_fraction: f64,
    /// Fraction of items for testing.
    pub test_fraction: f64,
    /// A CSV file with `id` and `split` columns that fixes the split (e.g. DSB2018's manifest.csv).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

impl Default for Split {
    fn default() -> Self {
        Self {
            seed: 42,
            val_fraction: 0.15,
            test_fraction: 0.15,
            file: None,
        }
    }
}

/// A configuration error, with the place in the file where there is one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or does not match the schema.
    #[error("{path}{}: {message}", location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line and column, when known.
        location: Option<(u64, u64)>,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: {message}")]
    Invalid {
        /// The file, or `<flags>` for command-line values.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl BuildConfig {
    /// What a global threshold sees: one grey channel, percentile-normalised at the image's own
    /// bit depth, nuclei bright on dark whatever the modality, no resizing. The classical
    /// segmentation's preprocessing, and where a model's nucleus size estimate starts.
    pub fn threshold_grey() -> Self {
        Self {
            colour: ColourMode::Grey,
            polarity: Polarity::Auto,
            normalize: Normalize {
                method: NormalizeMethod::Percentile,
                ..Normalize::default()
            },
            ..Self::default()
        }
    }

    /// Reads a YAML configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }

    /// Parses YAML text; `path` names it in errors.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let cfg: Self = serde_norway::from_str(text).map_err(|e| {
            let location = e.location().map(|l| (l.line() as u64, l.column() as u64));
            // The location is reported separately; values are quoted as excerpts.
            let message = crate::error::parser_message(&e.to_string());
            ConfigError::Parse {
                path: path.to_owned(),
                location,
                message,
            }
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Checks value ranges that types cannot express.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |message: String| {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                message,
            })
        };
        if let Some(r) = &self.resize {
            match (r.width, r.height, r.scale) {
                (None, None, None) => return bad("resize needs width and/or height, or scale".into()),
                (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                    return bad("resize takes either width/height or scale, not both".into());
                }
                _ => {}
            }
            if r.width == Some(0) || r.height == Some(0) {
                return bad("resize width and height must be at least 1".into());
            }
            if let Some(s) = r.scale
                && !(s > 0.0 && s.is_finite() && s <= 64.0)
            {
                return bad(format!("resize scale {s} must be in (0, 64]"));
            }
        }
        if let Some(s) = &self.scale {
            if self.resize.is_some() {
                return bad("scale and resize exclude each other: choose one".into());
            }
            if !(s.diameter_px >= 2.0 && s.diameter_px <= 512.0) {
                return bad(format!("scale diameter_px {} must be in 2..=512", s.diameter_px));
            }
        }
        let Normalize { low, high, .. } = self.normalize;
        if !(0.0..=100.0).contains(&low) || !(0.0..=100.0).contains(&high) || low >= high {
            return bad(format!("percentiles need 0 <= low < high <= 100, got {low} and {high}"));
        }
        let Equalize {
            clip_limit, tile_grid, ..
        } = self.equalize;
        if !(clip_limit >= 0.0 && clip_limit.is_finite()) {
            return bad(format!("clip_limit {clip_limit} must be >= 0"));
        }
        if tile_grid[0] == 0 || tile_grid[1] == 0 || tile_grid[0] > 256 || tile_grid[1] > 256 {
            return bad(format!("tile_grid {tile_grid:?} must be 1..=256 in each direction"));
        }
        if let Some(t) = &self.tile
            && (t.size == 0 || t.overlap >= t.size)
        {
            return bad(format!(
                "tile size {} must be > 0 and larger than overlap {}",
                t.size, t.overlap
            ));
        }
        let s = &self.split;
        if !(0.0..1.0).contains(&s.val_fraction)
            || !(0.0..1.0).contains(&s.test_fraction)
            || s.val_fraction + s.test_fraction >= 1.0
        {
            return bad(format!(
                "val_fraction {} and test_fraction {} must be >= 0 and sum to less than 1",
                s.val_fraction, s.test_fraction
            ));
        }
        if self.max_pixels == 0 {
            return bad("max_pixels must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_config_parses() {
        let yaml = "layout: paper\ncolour: grey\nresize: { width: 128, height: 96, filter: area }\n\
                    normalize: { method: percentile, low: 1, high: 99.5 }\n\
                    equalize: { method: clahe, clip_limit: 3, tile_grid: [4, 2] }\n\
                    tile: { size: 64, overlap: 8 }\nsplit: { seed: 7, val_fraction: 0.2, test_fraction: 0.1 }\n";
        let c = BuildConfig::from_yaml(yaml, Path::new("c.yaml")).expect("parse");
        assert_eq!(c.layout, LayoutKind::Paper);
        assert_eq!(
            c.equalize,
            Equalize {
                method: EqualizeMethod::Clahe,
                clip_limit: 3.0,
                tile_grid: [4, 2]
            }
        );
        assert_eq!(c.tile, Some(Tile { size: 64, overlap: 8 }));
        // A round trip through YAML is lossless.
        let back = serde_norway::to_string(&c).expect("yaml");
        assert_eq!(BuildConfig::from_yaml(&back, Path::new("x")).expect("reparse"), c);
    }

    #[test]
    fn unknown_fields_are_errors_with_location() {
        let err = BuildConfig::from_yaml(
            "colour: grey\nequalize:\n  method: clahe\n  clip: 2\n",
            Path::new("c.yaml"),
        )
        .expect_err("unknown field");
        match err {
            ConfigError::Parse { location, message, .. } => {
                assert!(message.contains("clip"), "{message}");
                assert_eq!(location, Some((4, 3)), "{message}");
            }
            other => panic!("unexpected {other}"),
        }
        let err = BuildConfig::from_yaml("colr: grey\n", Path::new("c.yaml")).expect_err("unknown");
        assert!(err.to_string().starts_with("c.yaml:1:1: unknown field `colr`"), "{err}");
    }

    #[test]
    fn ranges_are_checked() {
        for bad in [
            "resize: {}",
            "resize: { width: 10, scale: 2 }",
            "normalize: { method: percentile, low: 50, high: 10 }",
            "equalize: { method: clahe, tile_grid: [0, 8] }",
            "tile: { size: 16, overlap: 16 }",
            "scale: { diameter_px: 1 }",
            "scale: { diameter_px: 20 }\nresize: { scale: 0.5 }",
            "split: { val_fraction: 0.6, test_fraction: 0.5 }",
        ] {
            assert!(
                matches!(
                    BuildConfig::from_yaml(bad, Path::new("c")),
                    Err(ConfigError::Invalid { .. })
                ),
                "{bad}"
            );
        }
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// The example shipped in `examples/build.yaml` stays valid.
    #[test]
    fn shipped_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../examples/build.yaml");
        let c = BuildConfig::from_file(&path).expect("examples/build.yaml is valid");
        assert_eq!(c.scale, Some(NucleusScale { diameter_px: 20.0 }));
        assert_eq!(
            (c.normalize.method, c.polarity),
            (NormalizeMethod::Percentile, Polarity::Auto)
        );
        assert_eq!((c.resize, c.equalize.method), (None, EqualizeMethod::None));
    }
}
