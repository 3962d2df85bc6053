//! The prepared dataset: the layouts `build` reads, the splits, how masks encode objects, the
//! manifest that `build` writes (`manifest.json`) and the split CSV files that fix a split.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::build::BuildConfig;

/// The manifest's file name, at the root of a prepared dataset.
pub const MANIFEST: &str = "manifest.json";
/// The paper's layout: images in this folder…
pub const PAPER_IMAGES: &str = "original";
/// …and their masks in this one…
pub const PAPER_MASKS: &str = "masks";
/// …named after the image with this suffix (`original/a.png` ↔ `masks/a_mask.png`).
pub const PAPER_MASK_SUFFIX: &str = "_mask";
/// The split file DSB2018 and datasets like it carry at their root (`id` and `split` columns).
pub const SPLIT_CSV: &str = "manifest.csv";

/// The dataset layouts `build` reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum LayoutKind {
    /// Recognise the layout from the folder's contents.
    #[default]
    Auto,
    /// The paper's `original/` + `masks/` (`_mask` suffix).
    Paper,
    /// Kaggle Data Science Bowl 2018 (`<id>/images`, `<id>/masks`).
    Dsb2018,
    /// nnU-Net raw (`imagesTr`, `labelsTr`).
    Nnunet,
    /// Cellpose (`_masks` beside each image).
    Cellpose,
}

/// A dataset split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Subset {
    /// Training.
    Train,
    /// Validation.
    Val,
    /// Test.
    Test,
}

impl LayoutKind {
    /// The name used in configuration files and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            LayoutKind::Auto => "auto",
            LayoutKind::Paper => "paper",
            LayoutKind::Dsb2018 => "dsb2018",
            LayoutKind::Nnunet => "nnunet",
            LayoutKind::Cellpose => "cellpose",
        }
    }
}

impl Subset {
    /// All subsets in order.
    pub const ALL: [Subset; 3] = [Subset::Train, Subset::Val, Subset::Test];

    /// The folder name.
    pub fn as_str(self) -> &'static str {
        match self {
            Subset::Train => "train",
            Subset::Val => "val",
            Subset::Test => "test",
        }
    }

    /// Parses a folder or CSV name (`validation` is accepted for `val`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" | "training" => Some(Subset::Train),
            "val" | "valid" | "validation" => Some(Subset::Val),
            "test" | "testing" => Some(Subset::Test),
            _ => None,
        }
    }
}

/// How a mask file encodes its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskKind {
    /// One foreground value (1, 255, …): objects are its 8-connected components.
    Binary,
    /// One value per object (8- or 16-bit labels).
    Instance,
    /// Assembled from one binary file per object (DSB2018).
    PerObject,
}

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
    /// What the Monitor stage watches in the source image (manifests written before it have
    /// none; a rebuild that reuses an unchanged item keeps what it had).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<ImageFeatures>,
}

/// What the Monitor stage watches in an input image, computed the same way for a model's
/// reference (the source images of its dataset, recorded here by `build`) and for every image the
/// service measures (`cellops_dataset::ops::features`). Grey-level values are fractions of the
/// bit depth's full scale, so 8- and 16-bit images compare. No pixels are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageFeatures {
    /// Mean grey level, 0..=1 of full scale.
    pub mean: f64,
    /// Standard deviation of the grey level, same scale.
    pub std: f64,
    /// 1st percentile (numpy's linear interpolation), same scale.
    pub p1: f64,
    /// 99th percentile, same scale.
    pub p99: f64,
    /// Share of pixels at the full-scale value.
    pub saturated: f64,
    /// Share of pixels at 0.
    pub black: f64,
    /// Variance of the 4-neighbour Laplacian of the grey plane (full scale = 1), over interior
    /// pixels: falls as the image blurs.
    pub focus: f64,
    /// Width in pixels.
    pub width: f64,
    /// Height in pixels.
    pub height: f64,
    /// Mean of the red channel, fraction of full scale (colour images only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub red: Option<f64>,
    /// Mean of the green channel (colour images only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub green: Option<f64>,
    /// Mean of the blue channel (colour images only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue: Option<f64>,
    /// Mean haematoxylin optical density (Ruifrok & Johnston's H-DAB vectors, background at full
    /// scale; colour images only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub haematoxylin_od: Option<f64>,
    /// Mean DAB optical density (colour images only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dab_od: Option<f64>,
    /// The grey plane's histogram at the image's bit depth, in [`HISTOGRAM_BINS`] equal bins of
    /// its full scale, as shares of the pixels (manifests written before it have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<[f64; HISTOGRAM_BINS]>,
}

/// Bins of [`ImageFeatures::histogram`].
pub const HISTOGRAM_BINS: usize = 16;

impl ImageFeatures {
    /// The feature names, in [`ImageFeatures::values`]' order (and the field names).
    pub const NAMES: [&'static str; 14] = [
        "mean",
        "std",
        "p1",
        "p99",
        "saturated",
        "black",
        "focus",
        "width",
        "height",
        "red",
        "green",
        "blue",
        "haematoxylin_od",
        "dab_od",
    ];

    /// The values, in [`ImageFeatures::NAMES`]' order (`None`: not defined for this image).
    pub fn values(&self) -> [Option<f64>; 14] {
        [
            Some(self.mean),
            Some(self.std),
            Some(self.p1),
            Some(self.p99),
            Some(self.saturated),
            Some(self.black),
            Some(self.focus),
            Some(self.width),
            Some(self.height),
            self.red,
            self.green,
            self.blue,
            self.haematoxylin_od,
            self.dab_od,
        ]
    }
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

/// A split file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    /// The file could not be read.
    #[error("cannot read split file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CSV is malformed.
    #[error("{path}:{line}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Reads `id,split` pairs from a CSV file with a header naming (at least) `id` and `split`.
pub fn read_split_file(path: &Path) -> Result<HashMap<String, Subset>, SplitError> {
    let text = std::fs::read_to_string(path).map_err(|source| SplitError::Read {
        path: path.to_owned(),
        source,
    })?;
    let malformed = |line: usize, message: String| SplitError::Malformed {
        path: path.to_owned(),
        line,
        message,
    };
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| malformed(1, "empty file".into()))?;
    let cols: Vec<&str> = header.split(',').map(|c| c.trim().trim_matches('"')).collect();
    let find = |name: &str| {
        cols.iter().position(|c| c.eq_ignore_ascii_case(name)).ok_or_else(|| {
            let found: Vec<String> = cols.iter().take(8).map(|c| crate::error::excerpt(c)).collect();
            malformed(
                1,
                format!("header has no `{name}` column (found: {})", found.join(", ")),
            )
        })
    };
    let (id_col, split_col) = (find("id")?, find("split")?);
    let mut map = HashMap::new();
    for (i, line) in lines {
        let fields: Vec<&str> = line.split(',').map(|c| c.trim().trim_matches('"')).collect();
        let (Some(id), Some(split)) = (fields.get(id_col), fields.get(split_col)) else {
            return Err(malformed(
                i + 1,
                format!("expected {} fields, found {}", cols.len(), fields.len()),
            ));
        };
        let subset = Subset::parse(split).ok_or_else(|| {
            let split = crate::error::excerpt(split);
            malformed(i + 1, format!("unknown split `{split}` (use train, val or test)"))
        })?;
        if map.insert((*id).to_owned(), subset).is_some() {
            let id = crate::error::excerpt(id);
            return Err(malformed(i + 1, format!("id `{id}` listed twice")));
        }
    }
    Ok(map)
}
