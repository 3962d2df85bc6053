//! The per-image analysis, in one place: an image (decoded under the pixel limit) goes in; its
//! nuclei — segmented by a model bundle under the bundle's preprocessing, taken from a given mask,
//! or found by the classical threshold — come out separated, hole-filled, filtered, measured,
//! classified and summarised under a cell-parameter file, with scores when ground truth is given.
//!
//! `evaluate` calls [`Analyzer::analyse`] for every image of a folder and writes reports; a
//! service calls the same function for one uploaded image and gets the same numbers by
//! construction.
//!
//! ```no_run
//! use cellops_analysis::{Analyzer, Input, Segmenter};
//! use cellops_formats::params::ParamsFile;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let file = ParamsFile::read("cell-params/fluorescence-dapi.yaml".as_ref())?;
//! let analyzer = Analyzer::new(file.params.clone(), Segmenter::Threshold);
//! let input = Input::read("img", ("img.png".as_ref(), None), None, None, 100_000_000)?;
//! let analysed = analyzer.analyse(&input)?;
//! println!("{} nuclei", analysed.measurement.summary.count);
//! # Ok(()) }
//! ```

pub mod calibration;
pub mod geojson;
pub mod overlay;
pub mod segment;
pub mod slide;

use std::path::{Path, PathBuf};

use cellops_dataset::meta::{FileMeta, SizeSource};
use cellops_dataset::{BuildConfig, Raster, io};
use cellops_formats::params::{self, Applied, CellParams, Channel, ParamsFile};
use cellops_measure::metrics::{Scores, THRESHOLDS};
use cellops_measure::objects::{Context, ImageMeasurement, measure_image};
use cellops_unet::inference::{PredictError, Predictor};

pub use calibration::Calibration;
pub use segment::MaskReading;

/// Why an image could not be analysed, or a model not used.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// An image or mask could not be read, decoded or segmented.
    #[error("{path}: {message}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A mask does not fit its image.
    #[error("{mask}: {mask_size} but its image {image} is {image_size}")]
    Mismatch {
        /// The mask (or ground truth) file.
        mask: PathBuf,
        /// Its size.
        mask_size: String,
        /// The image.
        image: PathBuf,
        /// The image's size.
        image_size: String,
    },
    /// The parameter file's preprocessing contradicts the model bundle.
    #[error("{path}:{}: {message}", line.map_or_else(String::new, |(l, c)| format!("{l}:{c}")))]
    Preprocessing {
        /// The parameter file.
        path: PathBuf,
        /// Line and column of the field.
        line: Option<(u64, u64)>,
        /// What differs.
        message: String,
    },
    /// Neither the parameter file nor the image gives the size of a pixel.
    #[error(
        "{path}: no pixel size: the parameter file sets no pixel_size_um and the image records none (OME-XML, ImageJ, or a TIFF resolution in centimetres)"
    )]
    NoPixelSize {
        /// The image.
        path: PathBuf,
    },
    /// The model could not be loaded or run.
    #[error("model {path}: {source}")]
    Model {
        /// The bundle.
        path: PathBuf,
        /// Why.
        source: PredictError,
    },
}

fn failed(path: &Path, e: &dyn std::fmt::Display) -> AnalysisError {
    AnalysisError::Decode {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// A decoded image and the file it came from (which errors name).
#[derive(Debug, Clone)]
pub struct Image {
    /// The file (or, for uploaded bytes, the name they go by).
    pub path: PathBuf,
    /// Its pixels (the nuclear channel only, when one was chosen).
    pub raster: Raster,
    /// What the file says about itself: pixel size, channel names.
    pub meta: FileMeta,
}

impl Image {
    /// Reads and decodes a file (the first page of a TIFF: masks and ground truth), refusing
    /// images with more than `max_pixels` pixels before decoding them.
    pub fn read(path: &Path, max_pixels: u64) -> Result<Self, AnalysisError> {
        let bytes = std::fs::read(path).map_err(|e| failed(path, &e))?;
        Self::decode(path, &bytes, max_pixels)
    }

    /// Reads an image to analyse with what its file says about itself, keeping only `channel` of
    /// a multi-channel image ([`io::decode_image`]: several planes need one chosen).
    pub fn read_channel(path: &Path, max_pixels: u64, channel: Option<&Channel>) -> Result<Self, AnalysisError> {
        let bytes = std::fs::read(path).map_err(|e| failed(path, &e))?;
        Self::decode_channel(path, &bytes, max_pixels, channel)
    }

    /// Decodes encoded bytes (PNG, TIFF, BMP, JPEG; a TIFF's first page) that `path` names in
    /// errors; what the file says about itself is not read.
    pub fn decode(path: &Path, bytes: &[u8], max_pixels: u64) -> Result<Self, AnalysisError> {
        let raster = io::decode(bytes, max_pixels).map_err(|e| failed(path, &e))?.raster;
        Ok(Self {
            path: path.to_owned(),
            raster,
            meta: FileMeta::default(),
        })
    }

    /// [`Image::read_channel`] of bytes.
    pub fn decode_channel(
        path: &Path,
        bytes: &[u8],
        max_pixels: u64,
        channel: Option<&Channel>,
    ) -> Result<Self, AnalysisError> {
        let (decoded, meta) = io::decode_image(bytes, max_pixels, channel).map_err(|e| failed(path, &e))?;
        Ok(Self {
            path: path.to_owned(),
            raster: decoded.raster,
            meta,
        })
    }

    /// Checks that `self` (a mask or ground truth) has `image`'s size.
    fn fits(&self, image: &Image) -> Result<(), AnalysisError> {
        let (m, i) = (&self.raster, &image.raster);
        if (m.width, m.height) == (i.width, i.height) {
            return Ok(());
        }
        Err(AnalysisError::Mismatch {
            mask: self.path.clone(),
            mask_size: format!("is {}×{}", m.width, m.height),
            image: image.path.clone(),
            image_size: format!("{}×{}", i.width, i.height),
        })
    }
}

/// One image to analyse, with its mask (for [`Segmenter::Masks`]) and ground truth when given.
#[derive(Debug, Clone)]
pub struct Input {
    /// The image's name (its file stem), which names its nuclei in the reports.
    pub id: String,
    /// The image.
    pub image: Image,
    /// The segmentation to measure, for [`Segmenter::Masks`] (the image itself when absent).
    pub mask: Option<Image>,
    /// Ground-truth instance labels to score against.
    pub truth: Option<Image>,
}

impl Input {
    /// Reads an image (its `channel` only, when one is chosen) and, when given, its mask and
    /// ground truth (each under `max_pixels`, each the image's size).
    pub fn read(
        id: &str,
        (image, channel): (&Path, Option<&Channel>),
        mask: Option<&Path>,
        truth: Option<&Path>,
        max_pixels: u64,
    ) -> Result<Self, AnalysisError> {
        let image = Image::read_channel(image, max_pixels, channel)?;
        let companion = |path: Option<&Path>| -> Result<Option<Image>, AnalysisError> {
            let Some(path) = path else { return Ok(None) };
            let m = Image::read(path, max_pixels)?;
            m.fits(&image)?;
            Ok(Some(m))
        };
        let (mask, truth) = (companion(mask)?, companion(truth)?);
        Ok(Self {
            id: id.to_owned(),
            image,
            mask,
            truth,
        })
    }
}

/// Where an image's nuclei come from.
pub enum Segmenter {
    /// A model bundle's prediction, under the bundle's preprocessing.
    Model {
        /// The loaded model, its preprocessing settled with the parameter file's.
        predictor: Box<Predictor>,
        /// The bundle's folder (errors name it).
        bundle: PathBuf,
    },
    /// Given masks, read as this says.
    Masks(MaskReading),
    /// The classical line: the parameter file's global threshold.
    Threshold,
}

impl Segmenter {
    /// A model's segmenter, with the preprocessing inference applies: the bundle's, unless the
    /// parameter file sets other values (an error unless it also sets `override_bundle`).
    pub fn model(predictor: Predictor, bundle: &Path, file: &ParamsFile) -> Result<Self, AnalysisError> {
        let prep = preprocessing(file, &predictor.meta().preprocessing)?;
        Ok(Segmenter::Model {
            predictor: Box::new(predictor.with_preprocessing(prep)),
            bundle: bundle.to_owned(),
        })
    }

    /// What the segmenter is called in reports: `model`, `masks` or `threshold`.
    pub fn kind(&self) -> &'static str {
        match self {
            Segmenter::Model { .. } => "model",
            Segmenter::Masks(_) => "masks",
            Segmenter::Threshold => "threshold",
        }
    }
}

/// Checks the file's preprocessing against the bundle's and returns what inference must apply.
fn preprocessing(file: &ParamsFile, bundle: &BuildConfig) -> Result<BuildConfig, AnalysisError> {
    let p = &file.params.preprocessing;
    let mut out = bundle.clone();
    let differs = |field: &str, given: &dyn std::fmt::Debug, trained: &dyn std::fmt::Debug| {
        if p.override_bundle {
            return Ok(());
        }
        let (given, trained) = (
            format!("{given:?}").to_lowercase(),
            format!("{trained:?}").to_lowercase(),
        );
        Err(AnalysisError::Preprocessing {
            path: file.path.clone(),
            line: params::locate(&file.text, &format!("preprocessing.{field}")),
            message: format!(
                "preprocessing.{field} is {given} but the model was trained with {trained}; \
                 make them agree or set preprocessing.override_bundle: true"
            ),
        })
    };
    if let Some(c) = p.colour.filter(|&c| c != bundle.colour) {
        differs("colour", &c, &bundle.colour)?;
        out.colour = c;
    }
    if let Some(e) = p.equalize.filter(|&e| e != bundle.equalize.method) {
        differs("equalize", &e, &bundle.equalize.method)?;
        out.equalize.method = e;
    }
    if let Some(n) = p.normalize.filter(|&n| n != bundle.normalize.method) {
        differs("normalize", &n, &bundle.normalize.method)?;
        out.normalize.method = n;
    }
    Ok(out)
}

/// What the analysis of one image found.
#[derive(Debug, Clone)]
pub struct Analysed {
    /// The nuclei, their label image, report rows and the image's summary.
    pub measurement: ImageMeasurement,
    /// The ground-truth labels, when given.
    pub truth: Option<Vec<u32>>,
    /// The factor the model rescaled the image by, when a model ran.
    pub scale: Option<f64>,
    /// Scores against the ground truth, when given.
    pub scores: Option<Scores>,
    /// The classical line's scores beside a model's, with ground truth.
    pub classical: Option<Scores>,
    /// What the model's output looked like (nuclei, their size and shape at the model's scale,
    /// its confidence), when a model ran: drift signals that need no ground truth.
    pub prediction: Option<PredictionFeatures>,
    /// The pixel size the image was measured at, and where it came from.
    pub pixel_size: PixelSize,
}

/// The side of a pixel an image is measured at: the parameter file's when it sets one, else the
/// image's own; with both, the image's too when it disagrees (by more than 1 %).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelSize {
    /// Micrometres.
    pub um: f64,
    /// Where it came from: `parameter file`, or the image's `OME-XML`, `ImageJ metadata` or
    /// `TIFF resolution`.
    pub from: PixelSizeFrom,
    /// The image's own value where it differs from the parameter file's.
    pub image_says: Option<f64>,
}

/// Where a pixel size came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelSizeFrom {
    /// The parameter file's `pixel_size_um`.
    ParameterFile,
    /// The image file's metadata.
    Image(SizeSource),
}

impl PixelSize {
    /// The pixel size of `image` under `params`.
    pub fn of(params: &CellParams, image: &Image) -> Result<Self, AnalysisError> {
        Self::of_meta(params, &image.path, &image.meta)
    }

    /// The pixel size of a file (`path`, which says `meta` about itself) under `params`.
    pub fn of_meta(params: &CellParams, path: &Path, meta: &FileMeta) -> Result<Self, AnalysisError> {
        let own = meta.pixel_size;
        match (params.pixel_size_um, own) {
            (Some(um), own) => Ok(Self {
                um,
                from: PixelSizeFrom::ParameterFile,
                image_says: own.map(|(o, _)| o).filter(|o| (o - um).abs() > 0.01 * um),
            }),
            (None, Some((um, source))) => Ok(Self {
                um,
                from: PixelSizeFrom::Image(source),
                image_says: None,
            }),
            (None, None) => Err(AnalysisError::NoPixelSize { path: path.to_owned() }),
        }
    }

    /// How reports say where it came from.
    pub fn source(&self) -> &'static str {
        match self.from {
            PixelSizeFrom::ParameterFile => "parameter file",
            PixelSizeFrom::Image(s) => s.as_str(),
        }
    }
}

impl Analysed {
    /// The share of pixels the model was unsure of (foreground probability in [`UNCERTAIN`]),
    /// when a model ran.
    pub fn uncertain(&self) -> Option<f64> {
        self.prediction.map(|p| p.uncertain)
    }
}

pub use cellops_measure::profile::{PredictionFeatures, UNCERTAIN, prediction_features, uncertain_share};

/// Labels from a segmenter, with the model's foreground probabilities and scale when one ran.
struct Segmented {
    labels: Vec<u32>,
    model: Option<(Vec<f32>, f64)>,
}

impl Segmented {
    /// Labels no model produced.
    fn plain(labels: Vec<u32>) -> Self {
        Self { labels, model: None }
    }
}

/// Analyses images under one parameter file with one segmenter.
pub struct Analyzer {
    params: CellParams,
    segmenter: Segmenter,
}

impl Analyzer {
    /// An analyzer of a (validated) parameter file's image type.
    pub fn new(params: CellParams, segmenter: Segmenter) -> Self {
        Self { params, segmenter }
    }

    /// The parameter file's contents.
    pub fn params(&self) -> &CellParams {
        &self.params
    }

    /// The segmenter.
    pub fn segmenter(&self) -> &Segmenter {
        &self.segmenter
    }

    /// The post-processing applied to a model's or the threshold's foreground at the image's own
    /// scale (none for given instance masks): the file's values where it sets them, else the
    /// bundle's tuned ones, else the defaults.
    pub fn postprocessing(&self) -> Option<Applied> {
        let p = &self.params;
        let tuned = match &self.segmenter {
            Segmenter::Model { predictor, .. } => predictor.meta().postprocessing,
            Segmenter::Threshold => None,
            Segmenter::Masks(_) => return None,
        };
        Some(p.segmentation.resolve(p.pixel_size_um, tuned.as_ref(), 1.0))
    }

    /// Segments, separates, measures, classifies and summarises one image, and scores it when
    /// the input has ground truth.
    pub fn analyse(&self, input: &Input) -> Result<Analysed, AnalysisError> {
        self.analyse_with(input, None)
    }

    /// [`Self::analyse`] with a slide's statistics fixed beforehand (`None`: the image's own).
    pub fn analyse_with(&self, input: &Input, calibration: Option<&Calibration>) -> Result<Analysed, AnalysisError> {
        let pixel_size = PixelSize::of(&self.params, &input.image)?;
        let ctx = Context::new(&self.params, pixel_size.um);
        let image = &input.image.raster;
        let Segmented { labels, model } = self.labels(input, pixel_size.um, calibration)?;
        let truth = input.truth.as_ref().map(|t| segment::truth(&t.raster));
        let measurement = measure_image(&input.id, labels, image.width as usize, Some(image), &ctx);
        let prediction = model.as_ref().map(|(foreground, scale)| {
            prediction_features(&measurement.segmentation, image.width as usize, foreground, *scale)
        });
        let scores = truth
            .as_ref()
            .map(|t| Scores::of(t, &measurement.segmentation, &THRESHOLDS))
            .transpose()
            .map_err(|e| failed(&input.image.path, &e))?;
        let classical = match (&self.segmenter, &truth) {
            (Segmenter::Model { .. }, Some(t)) => Some(self.classical_scores(input, t, &ctx)?),
            _ => None,
        };
        Ok(Analysed {
            measurement,
            truth,
            scale: model.map(|(_, scale)| scale),
            scores,
            classical,
            prediction,
            pixel_size,
        })
    }

    /// The channel of multi-channel images this analyzer measures (the parameter file's
    /// `nuclear_channel`).
    pub fn channel(&self) -> Option<&Channel> {
        self.params.nuclear_channel.as_ref()
    }

    /// The input drawn with each nucleus's contour in its class colour (size classes of this
    /// parameter file, DAB classes for IHC) and ground-truth contours, when known, in white.
    pub fn overlay(&self, input: &Input, analysed: &Analysed) -> Raster {
        let size_names: Vec<String> = self.params.classes.size.iter().map(|c| c.name.clone()).collect();
        let colours: std::collections::BTreeMap<u32, [u8; 3]> = analysed
            .measurement
            .nuclei
            .iter()
            .map(|n| (n.shape.label as u32, overlay::colour_of(n, &size_names)))
            .collect();
        overlay::draw(
            &input.image.raster,
            &analysed.measurement.labels,
            analysed.truth.as_deref(),
            |l| colours.get(&l).copied(),
        )
    }

    /// The nuclei as a GeoJSON FeatureCollection that QuPath imports as detections (polygons in
    /// the image's pixels, classes coloured as in [`Analyzer::overlay`], the report's columns as
    /// measurements).
    pub fn geojson(&self, input: &Input, analysed: &Analysed) -> serde_json::Value {
        let size_names: Vec<String> = self.params.classes.size.iter().map(|c| c.name.clone()).collect();
        geojson::feature_collection(&analysed.measurement, input.image.raster.width as usize, &size_names)
    }

    /// Instance labels of an image from the segmenter, and the model's scale and uncertainty
    /// when a model ran.
    fn labels(&self, input: &Input, um: f64, calibration: Option<&Calibration>) -> Result<Segmented, AnalysisError> {
        let params = &self.params;
        let image = &input.image;
        match &self.segmenter {
            Segmenter::Model { predictor, bundle } => {
                let pred = match calibration {
                    None => predictor.predict(&image.raster),
                    Some(c) => predictor.predict_fixed(&image.raster, c.factor.map(|f| f.value), c.model.as_ref()),
                }
                .map_err(|source| AnalysisError::Model {
                    path: bundle.clone(),
                    source,
                })?;
                let meta = predictor.meta();
                let labels = segment::from_prediction(
                    &pred,
                    meta.training.targets(),
                    (params, um),
                    meta.postprocessing.as_ref(),
                )
                .map_err(|e| failed(&image.path, &e))?;
                // The foreground is the first channel: keep it, drop the rest (no copy).
                let (scale, mut foreground) = (pred.scale, pred.probabilities);
                foreground.truncate(pred.width * pred.height);
                Ok(Segmented {
                    labels,
                    model: Some((foreground, scale)),
                })
            }
            Segmenter::Threshold => {
                let fixed = calibration.map(|c| (&c.classical, c.threshold));
                let labels =
                    segment::classical_fixed(&image.raster, params, um, fixed).map_err(|e| failed(&image.path, &e))?;
                Ok(Segmented::plain(labels))
            }
            Segmenter::Masks(reading) => {
                let mask = input.mask.as_ref().unwrap_or(image);
                let labels =
                    segment::from_mask(&mask.raster, *reading, params, um).map_err(|e| failed(&mask.path, &e))?;
                Ok(Segmented::plain(labels))
            }
        }
    }

    /// The classical line's scores on an image, beside a model's (with ground truth only).
    fn classical_scores(&self, input: &Input, truth: &[u32], ctx: &Context<'_>) -> Result<Scores, AnalysisError> {
        let image = &input.image;
        let labels =
            segment::classical(&image.raster, &self.params, ctx.pixel_size_um).map_err(|e| failed(&image.path, &e))?;
        let measured = measure_image(&input.id, labels, image.raster.width as usize, Some(&image.raster), ctx);
        Scores::of(truth, &measured.segmentation, &THRESHOLDS).map_err(|e| failed(&image.path, &e))
    }
}
