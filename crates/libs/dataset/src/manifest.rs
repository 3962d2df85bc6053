//! `manifest.json`: what a build read, what it wrote, and with which settings.

use serde::{Deserialize, Serialize};

use crate::config::BuildConfig;
use crate::layout::{LayoutKind, Subset};
use crate::mask::MaskKind;

/// The manifest format identifier.
pub const FORMAT: &str = "cellops.dataset-manifest/1";

/// The manifest of a prepared dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The tool that wrote it.
    pub tool: Tool,
    /// Where the items came from.
    pub source: Source,
    /// The configuration the build ran with.
    pub config: BuildConfig,
    /// sha256 of the configuration's canonical JSON.
    pub config_sha256: String,
    /// Totals.
    pub counts: Counts,
    /// One entry per source image, sorted by split and id.
    pub items: Vec<ManifestItem>,
}

/// Name and version of the writer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// `cellops`.
    pub name: String,
    /// The crate version.
    pub version: String,
}

/// The source dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The dataset folder as given.
    pub root: String,
    /// The layout that was read.
    pub layout: LayoutKind,
}

/// Totals over all items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Source images.
    pub images: usize,
    /// Training images.
    pub train: usize,
    /// Validation images.
    pub val: usize,
    /// Test images.
    pub test: usize,
    /// Output files (image + mask pairs; more than images when tiling).
    pub outputs: usize,
    /// Objects in the source masks.
    pub objects: usize,
}

/// One source image and what was made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestItem {
    /// The item's name.
    pub id: String,
    /// Its split.
    pub split: Subset,
    /// sha256 over tool version, configuration, id, split and source hashes: equal keys mean
    /// equal outputs, which is how rebuilds skip unchanged items.
    pub key: String,
    /// Source image, relative to the dataset root.
    pub image: String,
    /// Source mask file(s), relative to the dataset root.
    pub mask: Vec<String>,
    /// sha256 of the image file.
    pub image_sha256: String,
    /// sha256 of the mask file (for per-object masks: of their names and hashes in order).
    pub mask_sha256: String,
    /// Source size `[width, height]`.
    pub size: [u32; 2],
    /// Source channels.
    pub channels: u8,
    /// Source bits per sample.
    pub bit_depth: u8,
    /// How the mask encoded its objects.
    pub mask_kind: MaskKind,
    /// Objects in the source mask.
    pub objects: usize,
    /// Files written for this item.
    pub outputs: Vec<OutputFile>,
}

/// One written image/mask pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputFile {
    /// Image path, relative to the output folder.
    pub image: String,
    /// Mask path (16-bit instance labels), relative to the output folder.
    pub mask: String,
    /// sha256 of the image file.
    pub image_sha256: String,
    /// sha256 of the mask file.
    pub mask_sha256: String,
    /// `[width, height]`.
    pub size: [u32; 2],
    /// Channels (1 or 3).
    pub channels: u8,
    /// Bits per sample.
    pub bit_depth: u8,
    /// Objects in the mask.
    pub objects: usize,
    /// Tile origin `[x, y]` in the (resized) image, when tiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tile: Option<[u32; 2]>,
    /// The median nucleus diameter of the source mask (pixels), with a `scale` configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nucleus_diameter_px: Option<f64>,
    /// The isotropic factor the image was rescaled by, with a `scale` configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
}

/// Hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
