//! The preprocessing settings that the build configuration, the model bundle and the cell
//! parameters share: one enum per setting, written the same way in every file.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How images' channels are prepared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ColourMode {
    /// Grey stays grey, colour becomes RGB; alpha is dropped.
    #[default]
    Keep,
    /// Everything becomes one grey channel (luminance `0.299 R + 0.587 G + 0.114 B`).
    Grey,
    /// Everything becomes RGB (grey is copied into three channels).
    Rgb,
}

/// Intensity normalisation methods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum NormalizeMethod {
    /// Samples are kept as they are (8- or 16-bit).
    None,
    /// Percentile range `low`..`high` (0–100) of each image, at its own bit depth, mapped to
    /// 0..255; output is 8-bit. The default: a 16-bit image whose signal sits in its lowest grey
    /// levels is stretched, not squeezed into a few levels.
    #[default]
    Percentile,
}

/// Histogram equalisation methods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum EqualizeMethod {
    /// No equalisation.
    #[default]
    None,
    /// Global histogram equalisation (luminance only for colour images).
    Global,
    /// CLAHE (luminance only for colour images).
    Clahe,
}

/// Which way round the model sees intensities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Polarity {
    /// As they are.
    #[default]
    Keep,
    /// Always inverted (`max − v`).
    Invert,
    /// Inverted when the background is bright: when the median sample lies above the middle of
    /// the 1st–99th percentile range (most of an image is background).
    Auto,
}

/// The filter used to resize images (masks always use nearest neighbour).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    /// Nearest neighbour.
    Nearest,
    /// Bilinear, antialiased when shrinking (as Pillow's `BILINEAR`).
    #[default]
    Bilinear,
    /// Box filter: the area average when shrinking (like OpenCV's `INTER_AREA`).
    Area,
    /// Catmull-Rom bicubic, antialiased.
    Bicubic,
    /// Lanczos with three lobes, antialiased.
    Lanczos3,
}
