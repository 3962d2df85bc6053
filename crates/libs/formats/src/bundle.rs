//! The model bundle's files and its metadata (`bundle.json`): what is trained, versioned and
//! deployed. The weights and their loading live in the unet crate; this module needs no burn.

use std::path::Path;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::FileError;
use crate::build::BuildConfig;
use crate::params::PostProcessing;

/// The bundle format identifier.
pub const FORMAT: &str = "cellops.unet-bundle/1";
/// The folder a training run writes its bundle into, inside its output folder.
pub const DIR: &str = "bundle";
/// The weights file.
pub const WEIGHTS: &str = "model.safetensors";
/// The metadata file.
pub const METADATA: &str = "bundle.json";
/// The epoch history, one JSON object per line.
pub const HISTORY_JSONL: &str = "history.jsonl";
/// The epoch history as CSV.
pub const HISTORY_CSV: &str = "history.csv";
/// The learning-curve plot that training adds.
pub const LEARNING_CURVE: &str = "learning-curve.svg";
/// The model card of a shipped bundle.
pub const MODEL_CARD: &str = "MODEL_CARD.md";

/// Final metrics of the training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// The epoch whose weights were kept.
    pub best_epoch: usize,
    /// Its pooled validation Dice.
    pub val_dice: f64,
    /// Its pooled validation IoU.
    pub val_iou: f64,
    /// Its pooled validation instance F1 at IoU 0.5 (the score that chose it), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_f1: Option<f64>,
    /// Epochs run.
    pub epochs_run: usize,
    /// Pooled Dice on the dataset's test split, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_dice: Option<f64>,
    /// Pooled IoU on the test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_iou: Option<f64>,
    /// Pooled instance F1 at IoU 0.5 on the test split (threshold 0.5, distance watershed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_f1: Option<f64>,
}

/// The golden input: a fixed image the model was run on when it was bundled (PNG, 8-bit).
pub const GOLDEN_IMAGE: &str = "golden.png";
/// The model's probabilities for the golden input, as recorded when it was bundled: `[C, H, W]`
/// little-endian `f32`.
pub const GOLDEN_OUTPUT: &str = "golden.f32";
/// The most a probability may differ from the recorded one on another device or build.
pub const GOLDEN_MAX_ABS_DIFF: f32 = 1e-3;
/// The least intersection-over-union of the foreground (p > 0.5) with the recorded one.
pub const GOLDEN_MIN_IOU: f64 = 0.99;

/// The golden check's record in `bundle.json`: what the model gave for [`GOLDEN_IMAGE`] when it
/// was bundled. A service loading the bundle runs it again (its warm-up) and must get the same
/// probabilities within [`GOLDEN_MAX_ABS_DIFF`] and the same foreground within
/// [`GOLDEN_MIN_IOU`], so a model trained on one device and served on another passes, and
/// corrupted weights or a broken build do not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Golden {
    /// sha256 of [`GOLDEN_IMAGE`].
    pub image_sha256: String,
    /// sha256 of [`GOLDEN_OUTPUT`].
    pub output_sha256: String,
    /// The output's shape, `[C, H, W]`.
    pub shape: [usize; 3],
    /// Pixels of the first channel over 0.5.
    pub foreground_pixels: usize,
    /// The device it was recorded on (`cpu`, `wgpu`, `cuda`).
    pub device: String,
}

/// The reference profile's file: what the model's training and validation inputs looked like,
/// which the Monitor stage compares live inputs with.
pub const REFERENCE: &str = "reference.json";
/// [`ReferenceProfile::format`].
pub const REFERENCE_FORMAT: &str = "cellops.reference/1";

/// The reference profile's record in `bundle.json`: its hash (so it is part of the bundle's
/// content like the weights) and how many images it describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    /// sha256 of [`REFERENCE`].
    pub sha256: String,
    /// Images in it.
    pub images: usize,
}

/// [`REFERENCE`]: one row of input features per training and validation source image, as `build`
/// recorded them in the dataset's manifest, and one row of prediction features per validation
/// image, as the model segmented it with its tuned post-processing (per-image rows, not
/// aggregates, so drift tests and their thresholds can be computed from it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceProfile {
    /// Always [`REFERENCE_FORMAT`].
    pub format: String,
    /// The input features' names, in the order of each row's values.
    pub features: Vec<String>,
    /// One row per image.
    pub images: Vec<ReferenceImage>,
    /// The prediction features' names ([`PredictionFeatures::NAMES`]), in the order of each
    /// prediction row's values; empty when the profile has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prediction_features: Vec<String>,
    /// One row per validation image; `null` where a value is undefined (no nuclei found).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub predictions: Vec<Vec<Option<f64>>>,
}

/// What the Monitor stage watches in a model's output on one image, computed the same way for a
/// bundle's reference (validation images, at the model's scale) and for every image the service
/// measures. Sizes are in pixels at the model's scale (the image's pixels times the factor the
/// model rescaled it by), so they compare across microscopes whose pixel size differs and need no
/// pixel size that a training set rarely states. No pixels are kept.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictionFeatures {
    /// Nuclei found.
    pub nuclei: f64,
    /// Median nucleus area, pixels at the model's scale; `None` without nuclei.
    pub area_px: Option<f64>,
    /// Median form factor (4π·area / perimeter²); `None` without nuclei.
    pub form_factor: Option<f64>,
    /// Mean foreground probability over the nuclei's pixels; `None` without nuclei.
    pub foreground_probability: Option<f64>,
    /// Share of the image's pixels whose foreground probability is uncertain (between 0.3 and
    /// 0.7, exclusive).
    pub uncertain: f64,
}

impl PredictionFeatures {
    /// The feature names, in [`PredictionFeatures::values`]' order (and the field names).
    pub const NAMES: [&'static str; 5] = [
        "nuclei",
        "area_px",
        "form_factor",
        "foreground_probability",
        "uncertain",
    ];

    /// The values, in [`PredictionFeatures::NAMES`]' order.
    pub fn values(&self) -> [Option<f64>; 5] {
        [
            Some(self.nuclei),
            self.area_px,
            self.form_factor,
            self.foreground_probability,
            Some(self.uncertain),
        ]
    }
}

/// One image of a [`ReferenceProfile`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceImage {
    /// The manifest item's id.
    pub id: String,
    /// Its split.
    pub split: crate::dataset::Subset,
    /// Its features, in [`ReferenceProfile::features`]' order (`null`: not defined for it).
    pub values: Vec<Option<f64>>,
    /// Its grey-level histogram (shares of `HISTOGRAM_BINS` equal bins), when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Vec<f64>>,
}

impl ReferenceProfile {
    /// The profile of a dataset's training and validation images from its manifest; `None` when
    /// `build` recorded no features (a manifest written before it did).
    pub fn of_manifest(manifest: &crate::dataset::Manifest) -> Option<Self> {
        use crate::dataset::{ImageFeatures, Subset};
        let images: Vec<ReferenceImage> = manifest
            .items
            .iter()
            .filter(|i| matches!(i.split, Subset::Train | Subset::Val))
            .filter_map(|i| {
                i.features.map(|f| ReferenceImage {
                    id: i.id.clone(),
                    split: i.split,
                    values: f.values().to_vec(),
                    histogram: f.histogram.map(|h| h.to_vec()),
                })
            })
            .collect();
        (!images.is_empty()).then(|| Self {
            format: REFERENCE_FORMAT.to_owned(),
            features: ImageFeatures::NAMES.iter().map(|n| (*n).to_owned()).collect(),
            images,
            prediction_features: Vec::new(),
            predictions: Vec::new(),
        })
    }

    /// The profile with the model's prediction features on the validation images (replacing any
    /// it had).
    pub fn with_predictions(mut self, rows: &[PredictionFeatures]) -> Self {
        self.prediction_features = if rows.is_empty() {
            Vec::new()
        } else {
            PredictionFeatures::NAMES.iter().map(|n| (*n).to_owned()).collect()
        };
        self.predictions = rows.iter().map(|r| r.values().to_vec()).collect();
        self
    }

    /// Reads a profile from its file's bytes (`path` names it in errors).
    pub fn from_slice(path: &Path, bytes: &[u8]) -> Result<Self, FileError> {
        let profile: Self = serde_json::from_slice(bytes).map_err(|e| FileError {
            path: path.to_owned(),
            line: Some(e.line() as u64),
            column: Some(e.column() as u64),
            message: crate::error::parser_message(&e.to_string()),
        })?;
        if profile.format != REFERENCE_FORMAT {
            return Err(FileError::new(
                path,
                format!("format {:?}, expected {REFERENCE_FORMAT:?}", profile.format),
            ));
        }
        Ok(profile)
    }

    /// The values of the input feature `name` over the images (empty when it has none).
    pub fn input_values(&self, name: &str) -> Vec<f64> {
        let Some(k) = self.features.iter().position(|f| f == name) else {
            return Vec::new();
        };
        self.images
            .iter()
            .filter_map(|i| i.values.get(k).copied().flatten())
            .collect()
    }

    /// The images' histograms (those that have one).
    pub fn histograms(&self) -> Vec<&[f64]> {
        self.images.iter().filter_map(|i| i.histogram.as_deref()).collect()
    }

    /// The defined values of the prediction feature `name` over the validation images.
    pub fn prediction_values(&self, name: &str) -> Vec<f64> {
        let Some(k) = self.prediction_features.iter().position(|f| f == name) else {
            return Vec::new();
        };
        self.predictions
            .iter()
            .filter_map(|r| r.get(k).copied().flatten())
            .collect()
    }

    /// The file's bytes and its record for `bundle.json`.
    pub fn to_file(&self) -> (Reference, Vec<u8>) {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        bytes.push(b'\n');
        let sha256 = crate::release::sha256_of(bytes.as_slice())
            .map(|(_, h)| h)
            .unwrap_or_default();
        (
            Reference {
                sha256,
                images: self.images.len(),
            },
            bytes,
        )
    }
}

/// `bundle.json`: typed in full by the unet crate (`Model` and `Training` are its architecture and
/// training configuration); read with the defaults ([`BundleHeader`]) by stages that only need the
/// id, preprocessing, channels, metrics and post-processing defaults and must not depend on burn.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleMeta<Model = IgnoredAny, Training = IgnoredAny> {
    /// Always [`FORMAT`].
    pub format: String,
    /// Content-derived id (empty while it is being computed).
    pub id: String,
    /// Version of the tool that wrote it.
    pub tool_version: String,
    /// The architecture.
    pub model: Model,
    /// The training configuration.
    pub training: Training,
    /// The preprocessing the model expects: inference must apply the same.
    pub preprocessing: BuildConfig,
    /// Input channels (1 grey, 3 RGB).
    pub input_channels: usize,
    /// What each output channel means, in order.
    pub outputs: Vec<String>,
    /// sha256 of the dataset's manifest.json.
    pub dataset_manifest_sha256: String,
    /// The git commit the run came from, when known.
    pub git_commit: Option<String>,
    /// Final metrics.
    pub metrics: Metrics,
    /// The id of the bundle this model was fine-tuned from (`train-unet --init`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Post-processing tuned on the validation split (sizes in pixels at the model's scale):
    /// what `evaluate` applies where a parameter file sets nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postprocessing: Option<PostProcessing>,
    /// sha256 of `model.safetensors`.
    pub weights_sha256: String,
    /// The golden check (bundles written before it have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub golden: Option<Golden>,
    /// The reference profile (bundles trained on a dataset whose manifest has features).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    /// The size model: where the model's own size estimate starts on an image of unknown nucleus
    /// size (bundles fitted before it have none and start at the image's own size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_model: Option<SizeModel>,
}

/// A ridge regression from a model's style (the mean of its encoder's features over an image at
/// its own size) to the log of the factor that brings the image's nuclei to the model's nucleus
/// diameter, as Cellpose's size model regresses the log diameter on its network's style.
/// Fitted on training images at several sizes; recorded in `bundle.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeModel {
    /// Each style feature's mean over the fitting samples.
    pub mean: Vec<f64>,
    /// Each style feature's standard deviation over the fitting samples (1 where it was 0).
    pub scale: Vec<f64>,
    /// The weight of each standardised feature.
    pub weights: Vec<f64>,
    /// The log factor of a style at the mean.
    pub intercept: f64,
    /// The ridge penalty chosen by cross-validation.
    pub lambda: f64,
    /// Samples (image and size) it was fitted on.
    pub samples: usize,
    /// Its cross-validated root mean square error, in log₂ of the factor.
    pub cv_rmse_log2: f64,
}

impl SizeModel {
    /// The natural log of the factor the regression gives for `style`; `None` when the style's
    /// width is not the model's (a size model from another architecture) or it is not finite.
    ///
    /// ```
    /// use cellops_formats::bundle::SizeModel;
    /// let m = SizeModel {
    ///     mean: vec![1.0],
    ///     scale: vec![2.0],
    ///     weights: vec![0.5],
    ///     intercept: 0.1,
    ///     lambda: 1.0,
    ///     samples: 10,
    ///     cv_rmse_log2: 0.3,
    /// };
    /// assert_eq!(m.log_factor(&[5.0]), Some(1.1));
    /// assert_eq!(m.log_factor(&[5.0, 1.0]), None);
    /// ```
    pub fn log_factor(&self, style: &[f32]) -> Option<f64> {
        if style.len() != self.weights.len() || self.mean.len() != style.len() || self.scale.len() != style.len() {
            return None;
        }
        let y = style
            .iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .zip(&self.weights)
            .map(|(((&x, m), s), w)| (f64::from(x) - m) / s * w)
            .sum::<f64>()
            + self.intercept;
        y.is_finite().then_some(y)
    }
}

/// `bundle.json` read without the architecture and training configuration.
pub type BundleHeader = BundleMeta<IgnoredAny, IgnoredAny>;

/// The most `bundle.json` may hold (it is a few kilobytes).
pub const MAX_METADATA_BYTES: u64 = 1 << 20;

/// Reads a bundle's `bundle.json` (at most [`MAX_METADATA_BYTES`]) and checks its format.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join(cellops_formats::bundle::METADATA);
/// std::fs::write(&path, r#"{"format": "other/1"}"#).unwrap();
/// let err = cellops_formats::bundle::read_header(&path).unwrap_err();
/// assert!(err.to_string().contains("not a bundle"), "{err}");
/// ```
pub fn read_header(path: &Path) -> Result<BundleHeader, FileError> {
    let text = crate::error::read_capped(path, MAX_METADATA_BYTES, "a bundle's metadata")?;
    #[derive(Deserialize)]
    struct Format {
        format: Option<String>,
    }
    let format = serde_json::from_str::<Format>(&text).ok().and_then(|f| f.format);
    if format.as_deref() != Some(FORMAT) {
        return Err(FileError::new(path, format!("not a bundle of format {FORMAT}")));
    }
    serde_json::from_str(&text).map_err(|e| FileError {
        path: path.to_owned(),
        line: Some(e.line() as u64),
        column: Some(e.column() as u64),
        message: crate::error::parser_message(&e.to_string()),
    })
}
