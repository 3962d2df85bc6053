//! Cell-parameter files: how one image type (an organ, a stain, a microscope set-up) is segmented,
//! filtered, measured and classified. One YAML file per image type, `cell-params/<type>.yaml`.
//!
//! Every field except `description` has a default; unknown fields are errors;
//! units are in the names (`_um`, `_um2`, `_px`, `_od`). The JSON Schema of the format is generated
//! from these types by [`schema_json`] and committed as `schema/cell-params.schema.json` (a test
//! keeps it in sync), so editors can complete and check the files.
//!
//! ```yaml
//! description: Ki-67 (DAB) on breast carcinoma, 40x
//! pixel_size_um: 0.25
//! segmentation:
//!   separation: { method: watershed }   # watershed | boundary | none
//!   # probability_threshold, separation.h_px and .boundary_cut, min_area_px: the model
//!   # bundle's tuned values
//! filters: { min_area_um2: 10, max_area_um2: 300, exclude_border: true }
//! stain:
//!   dab_od_thresholds: { weak: 0.15, moderate: 0.3, strong: 0.5 }
//! classes:
//!   image:
//!     - { name: high, when: { score: positive_percent, min: 20 } }
//!     - { name: low }
//! ```
//!
//! Errors name the file, line and column ([`ParamsError`]).

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Connectivity;
use crate::preprocessing::{ColourMode, EqualizeMethod, NormalizeMethod};

/// Files larger than this are refused before parsing (parameter files are a few kB).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The cell parameters of one image type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "CellOps cell parameters", extend("$id" = "https://cellops.dev/schema/cell-params.schema.json"))]
pub struct CellParams {
    /// What images this file is for (stain, tissue, magnification); shown in reports.
    pub description: String,
    /// Side of one (square) pixel in micrometres. Areas in µm² are pixels × pixel_size_um². When
    /// absent, each image's own (OME-XML, ImageJ or TIFF resolution in centimetres) applies, and
    /// an image that records none is an error; when both are known and differ, this one applies
    /// and the report warns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixel_size_um: Option<f64>,
    /// Which channel of a multi-channel image (OME-TIFF, an ImageJ hyperstack, a multi-page
    /// TIFF, or the red, green or blue of a colour image) holds the nuclei: its name as the file
    /// records it (`DAPI`) or its index from 0. Needed when an image has several channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nuclear_channel: Option<Channel>,
    /// The typical nucleus diameter of this image type in micrometres. On a slide, a model
    /// trained at a nucleus scale sees the slide rescaled by the factor this and the slide's
    /// pixel size give, the same for every tile; when absent, the factor is estimated once per
    /// slide, on its middle tile of tissue, and the report says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nucleus_diameter_um: Option<f64>,
    /// What the model's input must look like; checked against the model bundle.
    #[serde(default)]
    pub preprocessing: Preprocessing,
    /// From probabilities (or masks) to separated nuclei.
    #[serde(default)]
    pub segmentation: Segmentation,
    /// Which objects are kept for measuring.
    #[serde(default)]
    pub filters: Filters,
    /// Immunohistochemistry (haematoxylin + DAB) set-up; absent for other stains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stain: Option<Stain>,
    /// Which per-object measurements go into the reports (default: all).
    #[serde(default = "Measurement::all")]
    pub measurements: Vec<Measurement>,
    /// Size classes of nuclei and the rules that classify whole images.
    #[serde(default)]
    pub classes: Classes,
    /// Files written per image besides the tables and overlays (for napari, Fiji and QuPath).
    #[serde(default)]
    pub outputs: Outputs,
}

/// A channel of a multi-channel image: its index from 0, or its name as the file records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Channel {
    /// The channel's index, from 0.
    Index(usize),
    /// The channel's name in the file's metadata (OME-XML `Channel Name`, ImageJ labels).
    Name(String),
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Channel::Index(i) => write!(f, "channel {i}"),
            Channel::Name(n) => write!(f, "channel `{}`", crate::error::excerpt(n)),
        }
    }
}

/// Per-image files `evaluate` writes besides the tables and overlays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Outputs {
    /// The instance labels (`labels/<image>.png`, 16-bit, or `.tif`, 32-bit, when a label
    /// exceeds 65535), each nucleus' label its `ObjectNumber`: napari and Fiji open them as
    /// they are.
    pub labels: bool,
    /// The nuclei as polygons (`geojson/<image>.geojson`), which QuPath imports as detections
    /// with their class and measurements.
    pub geojson: bool,
}

/// The preprocessing the model expects. Fields left out are taken from the model bundle; fields
/// given must equal the bundle's unless `override_bundle` is true, in which case they replace the
/// bundle's for inference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Preprocessing {
    /// Channel handling: `keep`, `grey` or `rgb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colour: Option<ColourMode>,
    /// Histogram equalisation: `none`, `global` or `clahe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equalize: Option<EqualizeMethod>,
    /// Intensity normalisation: `none` or `percentile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<NormalizeMethod>,
    /// Use these settings even where the model bundle was trained with others.
    #[serde(default)]
    pub override_bundle: bool,
}

/// From the network's probability maps (or a threshold, or given masks) to nuclei.
///
/// The post-processing values a model bundle tunes on its validation split
/// (`probability_threshold`, `separation.h_px`, `separation.boundary_cut`, `min_area_px`,
/// `fill_holes_max_area_um2`) are
/// optional: left out, the bundle's tuned value applies (else the built-in default); given, the
/// file's value wins. The report says which applied and where each came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Segmentation {
    /// `model` (the U-Net given with `--model`) or `threshold` (classical: a global threshold
    /// and the distance watershed, no model).
    pub method: SegmentationMethod,
    /// The `threshold` method's settings.
    pub threshold: ThresholdSettings,
    /// Foreground (and boundary) probability threshold, 0–1. Absent: the model bundle's tuned
    /// value, else 0.5.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability_threshold: Option<f64>,
    /// How touching nuclei are split.
    pub separation: Separation,
    /// Which neighbours join pixels into one object: 4 (edges) or 8 (edges and corners).
    pub connectivity: Connectivity,
    /// Holes in a nucleus up to this area (µm²) are filled before measuring; larger holes stay
    /// (and count in the Euler number). 0 keeps all holes. Absent: the model bundle's tuned
    /// value, else 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fill_holes_max_area_um2: Option<f64>,
    /// Objects smaller than this (pixels of the image) after separation merge into the neighbour
    /// they share most border with, or vanish. Absent: the model bundle's tuned value, else 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_area_px: Option<f64>,
}

impl Default for Segmentation {
    fn default() -> Self {
        Self {
            method: SegmentationMethod::Model,
            threshold: ThresholdSettings::default(),
            probability_threshold: None,
            separation: Separation::default(),
            connectivity: Connectivity::Eight,
            fill_holes_max_area_um2: None,
            min_area_px: None,
        }
    }
}

/// Where the foreground comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SegmentationMethod {
    /// The U-Net model given to `evaluate` (`--model`), or given masks (`--masks`).
    #[default]
    Model,
    /// A global threshold of the preprocessed grey image (`threshold.method`), then the
    /// distance watershed: no model at all.
    Threshold,
}

/// How the threshold is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdMethod {
    /// Otsu's method: the threshold that maximises the between-class variance.
    #[default]
    Otsu,
    /// Li's minimum cross-entropy, iterated as scikit-image does.
    Li,
    /// The triangle method (Zack et al.): for histograms with one dominant peak.
    Triangle,
    /// A fixed grey level (of the 8-bit preprocessed image).
    Fixed,
}

/// The classical method's threshold, applied to the 8-bit grey image after the file's
/// preprocessing (percentile normalisation, and nuclei made bright on dark).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdSettings {
    /// `otsu` (default), `li`, `triangle` or `fixed`, per image.
    pub method: ThresholdMethod,
    /// The grey level (0–255) for `fixed`.
    pub value: f64,
}

impl Default for ThresholdSettings {
    fn default() -> Self {
        Self {
            method: ThresholdMethod::Otsu,
            value: 128.0,
        }
    }
}

/// Post-processing values: the built-in defaults, a bundle's tuned values (at the model's
/// scale), or a parameter file's (at the image's).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostProcessing {
    /// Foreground probability threshold.
    pub probability_threshold: f64,
    /// The distance watershed's minimum dynamic, pixels.
    pub h_px: f64,
    /// Objects below this area (pixels) merge into a neighbour or vanish.
    pub min_area_px: f64,
    /// Holes up to this area (pixels) are filled.
    pub fill_holes_px: f64,
    /// The distance watershed leaves foreground pixels whose boundary probability is above this
    /// out of the distance transform (a model with a boundary channel); 1 ignores the channel.
    /// Bundles written before it existed read as 1.
    #[serde(default = "no_boundary_cut")]
    pub boundary_cut: f64,
}

impl PostProcessing {
    /// The same values for pixels `scale` times as wide: lengths (`h_px`) times `scale`, areas
    /// (`min_area_px`, `fill_holes_px`) times its square; probabilities unchanged.
    ///
    /// ```
    /// use cellops_formats::params::PostProcessing;
    /// let tuned = PostProcessing { h_px: 2.0, min_area_px: 48.0, ..Default::default() };
    /// let half = tuned.rescaled(0.5);
    /// assert_eq!((half.h_px, half.min_area_px, half.probability_threshold), (1.0, 12.0, 0.5));
    /// ```
    pub fn rescaled(&self, scale: f64) -> PostProcessing {
        PostProcessing {
            h_px: self.h_px * scale,
            min_area_px: self.min_area_px * scale * scale,
            fill_holes_px: self.fill_holes_px * scale * scale,
            ..*self
        }
    }
}

/// One line for logs and reports: `threshold 0.7, h 1 px, min area 48 px, holes 256 px` (and
/// `, boundary cut 0.5` when the boundary channel is used).
impl std::fmt::Display for PostProcessing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "threshold {}, h {} px, min area {} px, holes {} px",
            self.probability_threshold, self.h_px, self.min_area_px, self.fill_holes_px
        )?;
        if self.boundary_cut < 1.0 {
            write!(f, ", boundary cut {}", self.boundary_cut)?;
        }
        Ok(())
    }
}

/// [`PostProcessing::boundary_cut`]'s default: the boundary channel is not used.
fn no_boundary_cut() -> f64 {
    1.0
}

impl Default for PostProcessing {
    fn default() -> Self {
        Self {
            probability_threshold: 0.5,
            h_px: 0.75,
            min_area_px: 0.0,
            fill_holes_px: 0.0,
            boundary_cut: no_boundary_cut(),
        }
    }
}

/// Where an applied post-processing value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The parameter file set it.
    File,
    /// The model bundle's value, tuned on its validation split.
    Bundle,
    /// The built-in default.
    Default,
}

impl Origin {
    /// How a report names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::File => "parameter file",
            Origin::Bundle => "model bundle (tuned on validation)",
            Origin::Default => "default",
        }
    }
}

/// The post-processing values that apply, each with its origin; sizes in the image's pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Applied {
    /// The values.
    pub values: PostProcessing,
    /// Origin of the probability threshold.
    pub probability_threshold: Origin,
    /// Origin of `h_px`.
    pub h_px: Origin,
    /// Origin of the minimum area.
    pub min_area_px: Origin,
    /// Origin of the hole filling.
    pub fill_holes_px: Origin,
    /// Origin of the boundary cut.
    pub boundary_cut: Origin,
}

/// How touching nuclei are split: `method`, and the settings of the methods that use them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Separation {
    /// `watershed` (default), `boundary` or `none`.
    pub method: SeparationMethod,
    /// `boundary`: seeds smaller than this (pixels) are dropped.
    pub min_seed_area_px: usize,
    /// `watershed`: where the markers come from, `h_maxima` or `peak_local_max`.
    pub markers: MarkerRule,
    /// `watershed` with `h_maxima`: a distance peak must rise this much (pixels) above the saddle
    /// towards a higher peak to become its own marker; larger values split less. Absent: the
    /// model bundle's tuned value, else 0.75 (which separated DSB 2018's true masks best, tuned on
    /// its train split).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h_px: Option<f64>,
    /// `watershed` with a model that has a boundary channel: pixels whose boundary probability
    /// is above this (0–1) are left out of the distance transform, so the boundaries the network
    /// draws between touching nuclei cut the distance map where the mask has no neck; 1 ignores
    /// the channel. Absent: the model bundle's tuned value, else 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub boundary_cut: Option<f64>,
    /// `watershed` with `peak_local_max`: markers at least this far apart (pixels), as
    /// scikit-image's `peak_local_max(min_distance=…)`.
    pub min_distance_px: usize,
}

impl Default for Separation {
    fn default() -> Self {
        Self {
            method: SeparationMethod::Watershed,
            min_seed_area_px: 4,
            markers: MarkerRule::HMaxima,
            h_px: None,
            boundary_cut: None,
            min_distance_px: 7,
        }
    }
}

/// Methods that split touching nuclei.
///
/// The distance watershed is the default, for models too: with the DSB 2018 U-Net of
/// `docs/benchmarks.md` it scored F1@0.5 0.656 on the validation split against 0.564 for the
/// model's boundary channel (test: 0.690 against 0.598).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SeparationMethod {
    /// Distance transform of the foreground, markers at its peaks, marker-controlled watershed.
    #[default]
    Watershed,
    /// Seeds are foreground minus the model's boundary channel, grown back over the foreground
    /// (needs a model with a boundary channel; otherwise the watershed is used).
    Boundary,
    /// No splitting: connected components of the foreground.
    None,
}

/// Where the distance watershed's markers come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MarkerRule {
    /// Regional maxima of the distance map with a dynamic of at least `h_px`.
    #[default]
    HMaxima,
    /// Local maxima at least `min_distance_px` apart.
    PeakLocalMax,
}

impl Segmentation {
    /// The post-processing that applies: each value from this file where it sets one, else from
    /// the model bundle's tuned `bundle` values (sizes at the model's scale, turned into image
    /// pixels by `scale`, model pixels per image pixel), else the default. `fill_holes_max_area_um2`
    /// needs the pixel size: without one it is left to the bundle or the default.
    pub fn resolve(&self, pixel_size_um: Option<f64>, bundle: Option<&PostProcessing>, scale: f64) -> Applied {
        let d = PostProcessing::default();
        let pick = |file: Option<f64>, tuned: Option<f64>, default: f64| match (file, tuned) {
            (Some(v), _) => (v, Origin::File),
            (None, Some(v)) => (v, Origin::Bundle),
            (None, None) => (default, Origin::Default),
        };
        let s = if scale > 0.0 && scale.is_finite() { scale } else { 1.0 };
        let (t, t_o) = pick(
            self.probability_threshold,
            bundle.map(|b| b.probability_threshold),
            d.probability_threshold,
        );
        let bundle = bundle.map(|b| b.rescaled(1.0 / s));
        let bundle = bundle.as_ref();
        let (h, h_o) = pick(self.separation.h_px, bundle.map(|b| b.h_px), d.h_px);
        let (a, a_o) = pick(self.min_area_px, bundle.map(|b| b.min_area_px), d.min_area_px);
        let holes_px = self
            .fill_holes_max_area_um2
            .zip(pixel_size_um)
            .map(|(um2, um)| um2 / (um * um));
        let (f, f_o) = pick(holes_px, bundle.map(|b| b.fill_holes_px), d.fill_holes_px);
        let (c, c_o) = pick(
            self.separation.boundary_cut,
            bundle.map(|b| b.boundary_cut),
            d.boundary_cut,
        );
        Applied {
            values: PostProcessing {
                probability_threshold: t,
                h_px: h,
                min_area_px: a,
                fill_holes_px: f,
                boundary_cut: c,
            },
            probability_threshold: t_o,
            h_px: h_o,
            min_area_px: a_o,
            fill_holes_px: f_o,
            boundary_cut: c_o,
        }
    }
}

/// Which objects are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Filters {
    /// Smaller objects (µm²) are dropped.
    pub min_area_um2: f64,
    /// Larger objects (µm²) are dropped; absent: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_area_um2: Option<f64>,
    /// Allowed range of the form factor 4π·area/perimeter² (1 for a disc).
    pub form_factor: Range,
    /// Drop objects that touch the image border (their shape is cut off).
    pub exclude_border: bool,
}

impl Default for Filters {
    fn default() -> Self {
        Self {
            min_area_um2: 0.0,
            max_area_um2: None,
            form_factor: Range::default(),
            exclude_border: false,
        }
    }
}

/// A closed range; either end may be left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// Lower bound (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Upper bound (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl Range {
    /// Whether `v` lies in the range.
    ///
    /// ```
    /// use cellops_formats::params::Range;
    /// assert!(Range { min: Some(0.5), max: None }.contains(0.7));
    /// assert!(!Range { min: Some(0.5), max: Some(0.6) }.contains(0.7));
    /// ```
    pub fn contains(&self, v: f64) -> bool {
        self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }
}

/// Haematoxylin + DAB immunohistochemistry: colour deconvolution and DAB scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stain {
    /// Optical-density vectors (R, G, B) of the stains; normalised before use.
    #[serde(default)]
    pub vectors: StainVectors,
    /// Intensity of unstained background per channel (R, G, B), usually 255 for 8-bit images.
    #[serde(default = "default_background")]
    pub background: [f64; 3],
    /// Mean nuclear DAB optical density from which a nucleus is weak (1+), moderate (2+) and
    /// strong (3+); below `weak` it is negative.
    pub dab_od_thresholds: DabThresholds,
}

fn default_background() -> [f64; 3] {
    [255.0; 3]
}

/// Stain optical-density vectors (R, G, B).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StainVectors {
    /// Haematoxylin.
    pub haematoxylin: [f64; 3],
    /// DAB (3,3'-diaminobenzidine).
    pub dab: [f64; 3],
    /// The third stain or residual; absent: the cross product of the other two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual: Option<[f64; 3]>,
}

impl Default for StainVectors {
    /// Ruifrok & Johnston's H-DAB vectors (as QuPath's defaults).
    fn default() -> Self {
        Self {
            haematoxylin: [0.651, 0.701, 0.290],
            dab: [0.269, 0.568, 0.778],
            residual: None,
        }
    }
}

/// A 3×3 matrix, rows first.
pub type Matrix3 = [[f64; 3]; 3];

/// Stain amounts of a pixel's optical densities `od` (`od · inverse`, the inverse of a
/// [`StainVectors::basis`]); not clipped.
pub fn stain_amounts(inverse: &Matrix3, od: [f64; 3]) -> [f64; 3] {
    let m = inverse;
    [
        od[0] * m[0][0] + od[1] * m[1][0] + od[2] * m[2][0],
        od[0] * m[0][1] + od[1] * m[1][1] + od[2] * m[2][1],
        od[0] * m[0][2] + od[1] * m[1][2] + od[2] * m[2][2],
    ]
}

impl StainVectors {
    /// The unit OD vectors (rows: haematoxylin, DAB, residual) and their inverse, or `None` when
    /// the vectors are degenerate (zero, not finite or linearly dependent).
    ///
    /// ```
    /// use cellops_formats::params::StainVectors;
    /// assert!(StainVectors::default().basis().is_some());
    /// let same = StainVectors { dab: [0.651, 0.701, 0.290], ..StainVectors::default() };
    /// assert!(same.basis().is_none(), "haematoxylin and DAB along one vector");
    /// ```
    #[must_use]
    pub fn basis(&self) -> Option<(Matrix3, Matrix3)> {
        let h = unit(self.haematoxylin)?;
        let d = unit(self.dab)?;
        let r = unit(self.residual.unwrap_or_else(|| cross(h, d)))?;
        let vectors = [h, d, r];
        Some((vectors, invert(vectors)?))
    }
}

fn unit(v: [f64; 3]) -> Option<[f64; 3]> {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    (n > 1e-12 && n.is_finite()).then(|| [v[0] / n, v[1] / n, v[2] / n])
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn invert(m: Matrix3) -> Option<Matrix3> {
    let c0 = cross(m[1], m[2]);
    let det = m[0][0] * c0[0] + m[0][1] * c0[1] + m[0][2] * c0[2];
    if det.abs() < 1e-9 || !det.is_finite() {
        return None;
    }
    let c1 = cross(m[2], m[0]);
    let c2 = cross(m[0], m[1]);
    // inverse = adjugate / det; column j of the inverse is the cofactor vector c_j.
    let mut inv = [[0.0; 3]; 3];
    for i in 0..3 {
        inv[i] = [c0[i] / det, c1[i] / det, c2[i] / det];
    }
    Some(inv)
}

/// DAB optical-density class limits (ascending).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DabThresholds {
    /// 1+ from here.
    pub weak: f64,
    /// 2+ from here.
    pub moderate: f64,
    /// 3+ from here.
    pub strong: f64,
}

/// One per-object measurement (or group of them) that can be reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Measurement {
    /// `AreaShape_Area` (px and µm²).
    Area,
    /// `AreaShape_Perimeter` (px and µm).
    Perimeter,
    /// `AreaShape_FormFactor`: 4π·area/perimeter².
    FormFactor,
    /// `AreaShape_Compactness`.
    Compactness,
    /// `AreaShape_BoundingBox{Minimum,Maximum}_{X,Y}` and `AreaShape_BoundingBoxArea`.
    BoundingBox,
    /// `AreaShape_Center_X`, `AreaShape_Center_Y`.
    Center,
    /// `AreaShape_MajorAxisLength`, `AreaShape_MinorAxisLength`.
    Axes,
    /// `AreaShape_Orientation` (degrees).
    Orientation,
    /// `AreaShape_Eccentricity`.
    Eccentricity,
    /// `AreaShape_EquivalentDiameter`.
    EquivalentDiameter,
    /// `AreaShape_ConvexArea` and `AreaShape_Solidity`.
    Convexity,
    /// `AreaShape_Extent`.
    Extent,
    /// `AreaShape_EulerNumber`.
    EulerNumber,
    /// `AreaShape_MaxFeretDiameter`, `AreaShape_MinFeretDiameter`.
    Feret,
    /// `Intensity_{Mean,Std,Min,Max,Integrated,Median}Intensity_<channel>`.
    Intensity,
}

impl Measurement {
    /// Every measurement, in report order.
    pub fn all() -> Vec<Measurement> {
        use Measurement::*;
        vec![
            Area,
            Perimeter,
            FormFactor,
            Compactness,
            BoundingBox,
            Center,
            Axes,
            Orientation,
            Eccentricity,
            EquivalentDiameter,
            Convexity,
            Extent,
            EulerNumber,
            Feret,
            Intensity,
        ]
    }
}

/// Classification rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Classes {
    /// Size classes of nuclei by area, ascending: a nucleus gets the first class whose
    /// `max_area_um2` it does not exceed (the last class may leave it out).
    pub size: Vec<SizeClass>,
    /// Image classes: an image gets the first class whose condition holds (a class without
    /// `when` always holds).
    pub image: Vec<ImageClass>,
}

/// A size class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SizeClass {
    /// Its name (a tag on the nucleus).
    pub name: String,
    /// Largest area in the class (µm², inclusive); absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_area_um2: Option<f64>,
}

/// An image class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageClass {
    /// Its name.
    pub name: String,
    /// The condition; absent: always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
}

/// `score` lies in `min..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The image-level score tested.
    pub score: Score,
    /// Lower bound (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Upper bound (exclusive, so consecutive classes can share limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// Image-level scores that rules can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    /// Number of nuclei kept.
    Count,
    /// Nuclei per mm² of image.
    DensityPerMm2,
    /// Mean nuclear area, µm².
    MeanAreaUm2,
    /// Mean form factor.
    MeanFormFactor,
    /// Percentage of DAB-positive (1+ or more) nuclei (IHC only).
    PositivePercent,
    /// H-score 0–300: 1·%1+ + 2·%2+ + 3·%3+ (IHC only).
    HScore,
}

impl Score {
    /// The score's name as in the file and the reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Score::Count => "count",
            Score::DensityPerMm2 => "density_per_mm2",
            Score::MeanAreaUm2 => "mean_area_um2",
            Score::MeanFormFactor => "mean_form_factor",
            Score::PositivePercent => "positive_percent",
            Score::HScore => "h_score",
        }
    }
}

impl Condition {
    /// Whether `v` satisfies the condition (`min <= v < max`).
    pub fn holds(&self, v: f64) -> bool {
        self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v < m)
    }
}

/// A cell-parameter file that cannot be used: file, line, column and what is wrong.
pub type ParamsError = crate::FileError;

/// Where a dotted key path (`filters.min_area_um2`, `classes.image.1.when`) is in YAML text: the
/// 1-based line and column of its key, or of the nearest enclosing key found (block and one-line
/// flow style).
///
/// ```
/// let text = "filters:\n  min_area_um2: 3\nclasses:\n  image:\n    - { name: a, when: { score: count } }\n";
/// assert_eq!(cellops_formats::params::locate(text, "filters.min_area_um2"), Some((2, 3)));
/// assert_eq!(cellops_formats::params::locate(text, "classes.image.0.when"), Some((5, 18)));
/// ```
pub fn locate(text: &str, dotted: &str) -> Option<(u64, u64)> {
    let path: Vec<&str> = dotted.split('.').collect();
    let lines: Vec<&str> = text.lines().collect();
    let mut found = None;
    let (mut from, mut to) = (0, lines.len());
    let mut min_indent = 0usize;
    for seg in &path {
        let seg = *seg;
        let mut hit = None;
        if let Ok(index) = seg.parse::<usize>() {
            // The index-th sequence item at the shallowest indentation of this block.
            let items: Vec<usize> = (from..to)
                .filter(|&i| {
                    let t = lines[i].trim_start();
                    t.starts_with("- ") || t == "-"
                })
                .collect();
            let indent = items
                .iter()
                .map(|&i| lines[i].len() - lines[i].trim_start().len())
                .min();
            if let Some(indent) = indent {
                let same: Vec<usize> = items
                    .into_iter()
                    .filter(|&i| lines[i].len() - lines[i].trim_start().len() == indent)
                    .collect();
                if let Some(&i) = same.get(index) {
                    let end = same.get(index + 1).copied().unwrap_or(to);
                    hit = Some((i, indent + 2, end));
                }
            }
        } else {
            for i in from..to {
                let line = lines[i];
                let body = line.trim_start();
                let body_start = line.len() - body.len();
                let (body, col) = match body.strip_prefix("- ") {
                    Some(rest) => (rest, body_start + 2),
                    None => (body, body_start),
                };
                let matches = col >= min_indent
                    && (body.strip_prefix(seg).is_some_and(|r| r.trim_start().starts_with(':'))
                        || body
                            .strip_prefix('"')
                            .and_then(|r| r.strip_prefix(seg))
                            .is_some_and(|r| r.starts_with('"')));
                if matches {
                    // The block of this key: following lines indented deeper than the key.
                    let end = (i + 1..to)
                        .find(|&j| {
                            let t = lines[j].trim_start();
                            !t.is_empty() && !t.starts_with('#') && lines[j].len() - t.len() <= col
                        })
                        .unwrap_or(to);
                    hit = Some((i, col, end));
                    break;
                }
                // Flow mappings on one line: `key: { a: 1, seg: 2 }`.
                if let Some(pos) = line
                    .find(&format!(" {seg}:"))
                    .or_else(|| line.find(&format!("{{{seg}:")))
                {
                    hit = Some((i, pos + 1, i + 1));
                    break;
                }
            }
        }
        match hit {
            Some((line, col, end)) => {
                found = Some((line as u64 + 1, col as u64 + 1));
                from = line;
                to = end;
                // Keys below a key are indented deeper; keys of a sequence item start at its column.
                min_indent = if seg.parse::<usize>().is_ok() { col } else { col + 1 };
            }
            None => break,
        }
    }
    found
}

/// A parameter file read once: its path, its text (what is hashed, copied beside the results and
/// searched for the line of a value) and what it says. The file is refused before it is read when
/// it is larger than [`MAX_FILE_BYTES`].
#[derive(Debug, Clone, PartialEq)]
pub struct ParamsFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its text, exactly as read.
    pub text: String,
    /// What it says, checked.
    pub params: CellParams,
}

impl ParamsFile {
    /// Reads and checks a parameter file.
    ///
    /// # Errors
    ///
    /// The file cannot be read, is larger than [`MAX_FILE_BYTES`], is named by a relative path
    /// that a link takes out of the working folder ([`crate::links::check_relative`]), or is not
    /// a valid parameter file (the error names the line and column).
    pub fn read(path: &Path) -> Result<Self, ParamsError> {
        crate::links::check_relative(path)?;
        let text = crate::error::read_capped(path, MAX_FILE_BYTES, "a parameter file")?;
        let params = CellParams::from_yaml(&text, path)?;
        Ok(Self {
            path: path.to_owned(),
            text,
            params,
        })
    }

    /// The 1-based line and column of the value at a dotted path in this file's text (see
    /// [`locate`]).
    #[must_use]
    pub fn locate(&self, dotted: &str) -> Option<(u64, u64)> {
        locate(&self.text, dotted)
    }
}

impl CellParams {
    /// Reads and checks a parameter file (see [`ParamsFile::read`], which keeps the text too).
    ///
    /// # Errors
    ///
    /// As [`ParamsFile::read`].
    pub fn from_file(path: &Path) -> Result<Self, ParamsError> {
        ParamsFile::read(path).map(|f| f.params)
    }

    /// Parses and checks YAML text; `path` names it in errors.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ParamsError> {
        let de = serde_norway::Deserializer::from_str(text);
        let params: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            // Unknown keys and rejected values are the file's own text: quoted as excerpts only.
            let dotted = crate::error::field_path(&e.path().to_string());
            let inner = e.into_inner();
            let loc = inner.location();
            let message = crate::error::parser_message(&inner.to_string());
            // serde_norway already names the enclosing mapping ("filters: unknown field …").
            let head = message.split(": ").next().unwrap_or_default();
            let named = message.contains(": ") && (dotted == head || dotted.starts_with(&format!("{head}.")));
            let message = if dotted.is_empty() || dotted == "." || named {
                message
            } else {
                format!("{dotted}: {message}")
            };
            ParamsError {
                path: path.to_owned(),
                line: loc.as_ref().map(|l| l.line() as u64),
                column: loc.as_ref().map(|l| l.column() as u64),
                message,
            }
        })?;
        params.validate().map_err(|(field, message)| {
            let at = locate(text, &field);
            ParamsError {
                path: path.to_owned(),
                line: at.map(|a| a.0),
                column: at.map(|a| a.1),
                message: format!("{field}: {message}"),
            }
        })?;
        Ok(params)
    }

    /// Checks what the types cannot express; on failure, the dotted field and the problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let finite_pos = |v: f64| v.is_finite() && v > 0.0;
        if self.description.trim().is_empty() {
            return bad("description", "must not be empty".into());
        }
        if let Some(um) = self.pixel_size_um.filter(|&um| !finite_pos(um)) {
            return bad(
                "pixel_size_um",
                format!("{um} must be a positive number of micrometres"),
            );
        }
        if let Some(d) = self.nucleus_diameter_um.filter(|&d| !finite_pos(d) || d > 1000.0) {
            return bad(
                "nucleus_diameter_um",
                format!("{d} must be a positive number of micrometres, at most 1000"),
            );
        }
        if let Some(Channel::Name(n)) = &self.nuclear_channel
            && n.trim().is_empty()
        {
            return bad("nuclear_channel", "must name a channel or give its index".into());
        }
        self.validate_segmentation()?;
        self.validate_filters()?;
        self.validate_stain()?;
        let mut seen = std::collections::HashSet::new();
        for m in &self.measurements {
            if !seen.insert(*m) {
                return bad("measurements", format!("{m:?} is listed twice"));
            }
        }
        self.validate_classes()
    }

    /// The checks of `segmentation`.
    fn validate_segmentation(&self) -> Result<(), (String, String)> {
        let s = &self.segmentation;
        if let Some(t) = s.probability_threshold
            && !(t > 0.0 && t < 1.0)
        {
            return bad(
                "segmentation.probability_threshold",
                format!("{t} must be between 0 and 1"),
            );
        }
        if let Some(c) = s.separation.boundary_cut
            && !(0.0..=1.0).contains(&c)
        {
            return bad(
                "segmentation.separation.boundary_cut",
                format!("{c} must be between 0 and 1"),
            );
        }
        let non_negative = [
            ("segmentation.separation.h_px", s.separation.h_px),
            ("segmentation.fill_holes_max_area_um2", s.fill_holes_max_area_um2),
            ("segmentation.min_area_px", s.min_area_px),
        ];
        for (field, v) in non_negative {
            if let Some(v) = v
                && !(v.is_finite() && v >= 0.0)
            {
                return bad(field, format!("{v} must be >= 0"));
            }
        }
        let t = s.threshold.value;
        if !(t.is_finite() && (0.0..=255.0).contains(&t)) {
            return bad(
                "segmentation.threshold.value",
                format!("{t} must be a grey level in 0..=255"),
            );
        }
        Ok(())
    }

    /// The checks of `filters`.
    fn validate_filters(&self) -> Result<(), (String, String)> {
        let f = &self.filters;
        if !(f.min_area_um2.is_finite() && f.min_area_um2 >= 0.0) {
            return bad("filters.min_area_um2", format!("{} must be >= 0", f.min_area_um2));
        }
        if let Some(max) = f.max_area_um2
            && !(max.is_finite() && max > f.min_area_um2)
        {
            return bad(
                "filters.max_area_um2",
                format!("{max} must be larger than min_area_um2 ({})", f.min_area_um2),
            );
        }
        if let (Some(lo), Some(hi)) = (f.form_factor.min, f.form_factor.max)
            && lo > hi
        {
            return bad("filters.form_factor", format!("min {lo} is above max {hi}"));
        }
        Ok(())
    }

    /// The checks of `stain`, when there is one.
    fn validate_stain(&self) -> Result<(), (String, String)> {
        if let Some(st) = &self.stain {
            let v = &st.vectors;
            for (name, vec) in [("haematoxylin", v.haematoxylin), ("dab", v.dab)] {
                if vec.iter().any(|c| !c.is_finite() || *c < 0.0) || vec.iter().all(|c| *c == 0.0) {
                    return bad(
                        &format!("stain.vectors.{name}"),
                        format!("{vec:?} must be non-negative and not all zero"),
                    );
                }
            }
            if let Some(r) = v.residual
                && (r.iter().any(|c| !c.is_finite()) || r.iter().all(|c| *c == 0.0))
            {
                return bad(
                    "stain.vectors.residual",
                    format!("{r:?} must be finite and not all zero"),
                );
            }
            if v.basis().is_none() {
                return bad(
                    "stain.vectors",
                    "the stain vectors are linearly dependent (the deconvolution matrix is singular)".into(),
                );
            }
            if st.background.iter().any(|b| !(b.is_finite() && *b > 0.0)) {
                return bad("stain.background", format!("{:?} must be positive", st.background));
            }
            let t = st.dab_od_thresholds;
            if !(t.weak > 0.0 && t.weak < t.moderate && t.moderate < t.strong && t.strong.is_finite()) {
                return bad(
                    "stain.dab_od_thresholds",
                    format!(
                        "need 0 < weak < moderate < strong, got {}, {}, {}",
                        t.weak, t.moderate, t.strong
                    ),
                );
            }
        }
        Ok(())
    }

    /// The checks of `classes`: size classes in increasing order, image classes that can be scored.
    fn validate_classes(&self) -> Result<(), (String, String)> {
        let mut last = f64::NEG_INFINITY;
        for (i, c) in self.classes.size.iter().enumerate() {
            let field = format!("classes.size.{i}");
            match c.max_area_um2 {
                Some(m) if m > last => last = m,
                Some(m) => return bad(&field, format!("max_area_um2 {m} must be above the previous class's")),
                None if i + 1 != self.classes.size.len() => {
                    return bad(&field, "only the last size class may leave out max_area_um2".into());
                }
                None => {}
            }
        }
        for (i, c) in self.classes.image.iter().enumerate() {
            if let Some(w) = &c.when {
                if matches!(w.score, Score::PositivePercent | Score::HScore) && self.stain.is_none() {
                    return bad(
                        &format!("classes.image.{i}.when"),
                        format!("{} needs a stain section", w.score.as_str()),
                    );
                }
                if let (Some(lo), Some(hi)) = (w.min, w.max)
                    && lo >= hi
                {
                    return bad(
                        &format!("classes.image.{i}.when"),
                        format!("min {lo} is not below max {hi}"),
                    );
                }
            }
        }
        Ok(())
    }

    /// The size class of a nucleus of `area_um2`.
    pub fn size_class(&self, area_um2: f64) -> Option<&str> {
        self.classes
            .size
            .iter()
            .find(|c| c.max_area_um2.is_none_or(|m| area_um2 <= m))
            .map(|c| c.name.as_str())
    }
}

/// A failed check of [`CellParams::validate`]: the dotted field and the problem.
fn bad(field: &str, message: String) -> Result<(), (String, String)> {
    Err((field.to_owned(), message))
}

/// The JSON Schema of cell-parameter files, pretty-printed (what `schema/cell-params.schema.json`
/// holds).
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(CellParams);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

/// The reference of the format in Markdown, generated from the JSON Schema (what
/// `docs/cell-params.md` holds; a test keeps it in sync).
pub fn reference_markdown() -> String {
    use serde_json::Value;
    use std::fmt::Write as _;
    let schema: Value = serde_json::from_str(&schema_json()).unwrap_or(Value::Null);
    let one_line = |v: &Value| {
        v.as_str()
            .unwrap_or("")
            .split("\n\n")
            .next()
            .unwrap_or("")
            .replace('\n', " ")
            .replace('|', "\\|")
    };
    let link = |r: &str| {
        let name = r.rsplit('/').next().unwrap_or(r);
        format!("[{name}](#{})", name.to_lowercase())
    };
    fn enum_values(v: &Value) -> Option<Vec<String>> {
        if let Some(e) = v.get("enum").and_then(Value::as_array) {
            return Some(e.iter().map(|x| x.to_string().trim_matches('"').to_owned()).collect());
        }
        let one = v.get("oneOf").and_then(Value::as_array)?;
        one.iter()
            .map(|o| o.get("const").map(|c| c.to_string().trim_matches('"').to_owned()))
            .collect()
    }
    let type_of = |v: &Value| -> String {
        // `Option<T>`: `anyOf: [T, null]`.
        let v = v
            .get("anyOf")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|x| x.get("type") != Some(&Value::String("null".into()))))
            .unwrap_or(v);
        if let Some(r) = v.get("$ref").and_then(Value::as_str) {
            return link(r);
        }
        if let Some(vals) = enum_values(v) {
            return vals.iter().map(|x| format!("`{x}`")).collect::<Vec<_>>().join(" \\| ");
        }
        let t: Vec<String> = match v.get("type") {
            Some(Value::String(t)) => vec![t.clone()],
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(|t| t.as_str())
                .filter(|t| *t != "null")
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        match t.first().map(String::as_str) {
            Some("array") => {
                let items = v
                    .get("items")
                    .map_or_else(String::new, |i| match i.get("$ref").and_then(Value::as_str) {
                        Some(r) => link(r),
                        None => i.get("type").and_then(Value::as_str).unwrap_or("value").to_owned(),
                    });
                format!("list of {items}")
            }
            Some(t) => t.to_owned(),
            None => "value".into(),
        }
    };
    let table = |md: &mut String, obj: &Value| {
        let required: Vec<&str> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(props) = obj.get("properties").and_then(Value::as_object) else {
            return;
        };
        md.push_str("| field | type | default | description |\n|---|---|---|---|\n");
        for (name, p) in props {
            let default = if required.contains(&name.as_str()) {
                "**required**".to_owned()
            } else {
                p.get("default").map_or_else(|| "none".to_owned(), |d| format!("`{d}`"))
            };
            let _ = writeln!(
                md,
                "| `{name}` | {} | {default} | {} |",
                type_of(p),
                one_line(&p["description"])
            );
        }
    };
    let mut md = String::from(
        "# Cell-parameter files: reference\n\n<!-- Generated from schema/cell-params.schema.json by `cellops_formats::params::reference_markdown`; \
         regenerate with `CELLOPS_BLESS=1 cargo test -p cellops-formats --test params_files`. -->\n\n\
         One YAML file per image type in `cell-params/`. Unknown fields are errors (reported with file, line and column); \
         units are in the names. Editors with the YAML language server check the files against the schema when they start with \
         `# yaml-language-server: $schema=../schema/cell-params.schema.json`. Examples: `cell-params/*.yaml`.\n\n## The file\n\n",
    );
    table(&mut md, &schema);
    if let Some(defs) = schema.get("$defs").and_then(Value::as_object) {
        for (name, d) in defs {
            let _ = write!(md, "\n## {name}\n\n");
            let desc = d["description"].as_str().unwrap_or("").replace('\n', " ");
            if !desc.is_empty() {
                let _ = writeln!(md, "{desc}\n");
            }
            if d.get("properties").is_some() {
                table(&mut md, d);
            } else if let Some(one) = d.get("oneOf").and_then(Value::as_array) {
                md.push_str("| value | meaning |\n|---|---|\n");
                for o in one {
                    let _ = writeln!(
                        md,
                        "| `{}` | {} |",
                        o.get("const")
                            .map_or_else(String::new, |c| c.to_string().trim_matches('"').to_owned()),
                        one_line(&o["description"])
                    );
                }
            } else if let Some(vals) = enum_values(d) {
                let _ = writeln!(
                    md,
                    "One of: {}.",
                    vals.iter().map(|x| format!("`{x}`")).collect::<Vec<_>>().join(", ")
                );
            }
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CellParams, ParamsError> {
        CellParams::from_yaml(text, Path::new("p.yaml"))
    }

    #[test]
    fn minimal_file_takes_defaults() {
        let p = parse("description: x\npixel_size_um: 0.5\n").expect("parses");
        assert_eq!(p.segmentation, Segmentation::default());
        assert_eq!(p.measurements, Measurement::all());
        assert!(p.stain.is_none());
    }

    #[test]
    fn unknown_field_is_reported_at_its_line_and_column() {
        let e = parse("description: x\npixel_size_um: 0.5\nfilters:\n  min_area_um2: 3\n  max_aera_um2: 4\n")
            .expect_err("typo");
        assert_eq!((e.line, e.column), (Some(5), Some(3)), "{e}");
        assert!(e.message.contains("max_aera_um2"), "{e}");
        assert!(e.to_string().starts_with("p.yaml:5:3: filters"), "{e}");
    }

    #[test]
    fn wrong_type_is_reported_at_the_value() {
        let e = parse("description: x\npixel_size_um: big\n").expect_err("type");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("pixel_size_um"), "{e}");
    }

    #[test]
    fn syntax_error_has_a_location() {
        let e = parse("description: x\npixel_size_um: [0.5\n").expect_err("syntax");
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn range_errors_point_at_the_field() {
        let e = parse("description: x\npixel_size_um: 0.5\nfilters:\n  min_area_um2: 30\n  max_area_um2: 20\n")
            .expect_err("range");
        assert_eq!((e.line, e.column), (Some(5), Some(3)), "{e}");
        let e = parse(
            "description: x\npixel_size_um: 0.5\nclasses:\n  size:\n    - name: a\n    - name: b\n      max_area_um2: 3\n",
        )
        .expect_err("open class not last");
        assert_eq!((e.line, e.column), (Some(5), Some(7)), "{e}");
        let e = parse("description: x\npixel_size_um: 0.5\nclasses:\n  image:\n    - { name: hi, when: { score: h_score, min: 100 } }\n")
            .expect_err("needs stain");
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("stain"), "{e}");
    }

    #[test]
    fn stain_thresholds_must_ascend() {
        let e = parse(
            "description: x\npixel_size_um: 0.5\nstain:\n  dab_od_thresholds: { weak: 0.3, moderate: 0.2, strong: 0.5 }\n",
        )
        .expect_err("order");
        assert_eq!(e.line, Some(4), "{e}");
    }

    #[test]
    fn size_and_image_classes() {
        let p = parse(
            "description: x\npixel_size_um: 0.5\nclasses:\n  size:\n    - { name: small, max_area_um2: 20 }\n    - { name: large }\n  image:\n    - { name: dense, when: { score: density_per_mm2, min: 1000 } }\n    - { name: sparse }\n",
        )
        .expect("parses");
        assert_eq!(p.size_class(20.0), Some("small"));
        assert_eq!(p.size_class(20.5), Some("large"));
        assert!(p.classes.image[0].when.expect("rule").holds(1000.0));
        assert!(!p.classes.image[0].when.expect("rule").holds(999.0));
    }

    #[test]
    fn separation_methods_parse() {
        let p = parse(
            "description: x\npixel_size_um: 0.5\nsegmentation:\n  connectivity: 4\n  separation: { method: watershed, min_distance_px: 5 }\n",
        )
        .expect("parses");
        assert_eq!(p.segmentation.connectivity, Connectivity::Four);
        assert_eq!(p.segmentation.separation.method, SeparationMethod::Watershed);
        assert_eq!(p.segmentation.separation.min_distance_px, 5);
        assert_eq!(p.segmentation.separation.h_px, None);
        let applied = p.segmentation.resolve(Some(0.5), None, 1.0);
        assert_eq!(applied.values, PostProcessing::default());
        assert_eq!(applied.h_px, Origin::Default);
        let with_boundary = parse(
            "description: x\npixel_size_um: 0.5\nsegmentation: { fill_holes_max_area_um2: 1, separation: { method: boundary } }\n",
        )
        .expect("parses");
        assert_eq!(with_boundary.segmentation.separation.method, SeparationMethod::Boundary);
        let values = with_boundary.segmentation.resolve(Some(0.5), None, 1.0).values;
        assert_eq!(values.fill_holes_px, 4.0, "1 µm² at 0.5 µm pixels");
        let e = parse("description: x\npixel_size_um: 0.5\nsegmentation:\n  separation: { method: magic }\n")
            .expect_err("unknown method");
        assert_eq!(e.line, Some(4), "{e}");
    }

    #[test]
    fn file_values_win_over_the_bundle_and_bundle_sizes_follow_the_scale() {
        let tuned = PostProcessing {
            probability_threshold: 0.4,
            h_px: 2.0,
            min_area_px: 16.0,
            fill_holes_px: 8.0,
            boundary_cut: 0.5,
        };
        let p = parse("description: x\npixel_size_um: 0.5\nsegmentation: { probability_threshold: 0.6 }\n")
            .expect("parses");
        // The model saw the image at half its size: its pixels are twice as wide.
        let a = p.segmentation.resolve(Some(0.5), Some(&tuned), 0.5);
        assert_eq!(
            (a.values.probability_threshold, a.probability_threshold),
            (0.6, Origin::File)
        );
        assert_eq!((a.values.h_px, a.h_px), (4.0, Origin::Bundle));
        assert_eq!((a.values.min_area_px, a.min_area_px), (64.0, Origin::Bundle));
        assert_eq!(a.values.fill_holes_px, 32.0);
        // The boundary cut is a probability: it does not follow the scale.
        assert_eq!((a.values.boundary_cut, a.boundary_cut), (0.5, Origin::Bundle));
        let off = parse("description: x\npixel_size_um: 0.5\nsegmentation: { separation: { boundary_cut: 1 } }\n")
            .expect("parses")
            .segmentation;
        let a = off.resolve(Some(0.5), Some(&tuned), 0.5);
        assert_eq!((a.values.boundary_cut, a.boundary_cut), (1.0, Origin::File));
        let e = parse("description: x\npixel_size_um: 0.5\nsegmentation:\n  separation: { boundary_cut: 1.5 }\n")
            .expect_err("out of range");
        assert!(e.message.contains("between 0 and 1"), "{e}");
    }

    #[test]
    fn a_parameter_file_is_read_once_under_the_cap() {
        let dir = std::env::temp_dir().join(format!("cellops-params-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("x.yaml");
        std::fs::write(
            &path,
            "description: x\npixel_size_um: 0.5\nfilters: { min_area_um2: 3 }\n",
        )
        .expect("write");
        let f = ParamsFile::read(&path).expect("reads");
        assert_eq!(f.params.pixel_size_um, Some(0.5));
        assert!(
            matches!(f.locate("filters.min_area_um2"), Some((3, _))),
            "{:?}",
            f.locate("filters.min_area_um2")
        );
        assert!(f.text.starts_with("description: x"));
        let big = dir.join("big.yaml");
        std::fs::write(&big, "#".repeat(MAX_FILE_BYTES as usize + 1)).expect("write");
        let e = ParamsFile::read(&big).expect_err("too large");
        assert!(e.message.contains("too large"), "{e}");
        assert!(
            !e.to_string().contains("###"),
            "the file's contents are not echoed: {e}"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn threshold_method_parses() {
        let p = parse(
            "description: x\npixel_size_um: 0.5\nsegmentation: { method: threshold, threshold: { method: li } }\n",
        )
        .expect("parses");
        assert_eq!(p.segmentation.method, SegmentationMethod::Threshold);
        assert_eq!(p.segmentation.threshold.method, ThresholdMethod::Li);
        let e =
            parse("description: x\npixel_size_um: 0.5\nsegmentation:\n  threshold: { method: fixed, value: 300 }\n")
                .expect_err("out of range");
        assert!(e.message.contains("0..=255"), "{e}");
    }

    #[test]
    fn round_trips_through_yaml() {
        let p = parse("description: x\npixel_size_um: 0.5\nstain:\n  dab_od_thresholds: { weak: 0.1, moderate: 0.2, strong: 0.3 }\n")
            .expect("parses");
        let text = serde_norway::to_string(&p).expect("serialises");
        assert_eq!(parse(&text).expect("re-parses"), p);
    }
}
