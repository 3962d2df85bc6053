//! The `evaluate` stage: segment images with a model bundle (or take given masks), split touching
//! nuclei, measure every nucleus under a cell-parameter file, score against ground truth, and
//! report — as a library (`Args` + [`run`]) shared by `cellops-evaluate` and `cellops evaluate`.
//!
//! Inputs (flags, or `INPUT_*` in a workflow): `images`, `params`, `model` or `masks`,
//! `ground-truth`, `output`, `baseline`. Outputs: `report` (the HTML report), `markdown`,
//! `objects` (the per-nucleus CSV), `nuclei`, `images`, and with ground truth `f1` (F1 at IoU 0.5,
//! pooled) and `dice`.
//!
//! Files in `<output>/` (written to a staging folder and swapped in whole): `summary.json`,
//! `metrics.json`, `objects.csv`, `objects.json`, `images.csv`, `report.md`, `report.html`,
//! `overlays/<image>.png`, `params.yaml` (the parameter file used) and, with a baseline,
//! `diff.json`.

pub mod baseline;
pub mod html;
pub mod inputs;
pub mod overlay;
pub mod report;
pub mod segment;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cellops_actions::{ActionsError, Annotation, Exit, Level, Runner, StageFailure, conclude, progress::Progress};
use cellops_dataset::staging::{StagingDir, StagingError};
use cellops_dataset::{BuildConfig, Raster, io};
use cellops_formats::dataset::Subset;
use cellops_formats::params::{self, CellParams, ParamsError, ParamsFile};
use cellops_measure::metrics::{Scores, THRESHOLDS};
use cellops_measure::objects::{Cell, Context, ImageMeasurement, Stats, measure_image, summarised};
use cellops_unet::device::{self, Accelerator, DeviceError};
use cellops_unet::inference::{PredictConfig, PredictError, Predictor, Tta};
use rayon::prelude::*;
use sha2::Digest as _;

pub use segment::MaskReading;

use crate::report::{Evaluation, ImageMetrics, ImageRecord, ParamsInfo, PostProcessingInfo, SourceInfo, Table, Totals};

/// Command-line flags (and action inputs) of `evaluate`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Evaluate")]
pub struct Args {
    /// Images to evaluate: a folder, or a dataset in the paper's layout (original/ + masks/,
    /// whose masks/ is then the ground truth).
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// Cell-parameter file of the image type (cell-params/<type>.yaml).
    #[arg(long, value_name = "FILE")]
    pub params: PathBuf,
    /// Model bundle (a `train-unet` output's bundle/ folder) that segments the images. Without
    /// --model or --masks, the parameter file must choose `segmentation.method: threshold`.
    #[arg(long, value_name = "DIR", conflicts_with = "masks")]
    pub model: Option<PathBuf>,
    /// Measure these masks (<id>_mask.png or <id>.png) instead of running a model: ground truth
    /// or another tool's segmentation.
    #[arg(long, value_name = "DIR")]
    pub masks: Option<PathBuf>,
    /// How --masks are read.
    #[arg(long, value_enum, default_value_t = MaskReading::Auto)]
    pub masks_kind: MaskReading,
    /// Ground-truth instance masks to score against [default: masks/ of a paper-layout --images].
    #[arg(long, value_name = "DIR")]
    pub ground_truth: Option<PathBuf>,
    /// Only images of this split, from manifest.csv (id and split columns) in --images.
    #[arg(long, value_enum, value_name = "NAME")]
    pub split: Option<Subset>,
    /// Output folder for the reports.
    #[arg(long, value_name = "DIR")]
    pub output: PathBuf,
    /// An earlier evaluation (its output folder or summary.json) to compare with.
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,
    /// Device that runs the model.
    #[arg(long, value_enum, default_value_t = Accelerator::Auto)]
    pub device: Accelerator,
    /// Test-time augmentation of the model: the mean prediction over flipped (4 passes) or all 8
    /// dihedral copies of each image.
    #[arg(long, value_enum, default_value_t = Tta::None)]
    pub tta: Tta,
    /// Overlays embedded in the HTML report (all are written to overlays/).
    #[arg(long, value_name = "N", default_value_t = 12)]
    pub html_overlays: usize,
    /// Images with more pixels than this are refused before decoding.
    #[arg(long, value_name = "PIXELS", default_value_t = 100_000_000)]
    pub max_pixels: u64,
}

/// Errors of the stage.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The cell-parameter file is invalid.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// The inputs could not be found or paired.
    #[error(transparent)]
    Input(#[from] inputs::InputError),
    /// An image or mask could not be decoded.
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
    /// The model could not be loaded or run.
    #[error("model {path}: {source}")]
    Model {
        /// The bundle.
        path: PathBuf,
        /// Why.
        source: PredictError,
    },
    /// The device could not be used.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The baseline could not be read.
    #[error(transparent)]
    Baseline(#[from] baseline::BaselineError),
    /// The reports could not be written.
    #[error("writing {path}: {message}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The flags contradict each other or the parameter file.
    #[error("{0}")]
    Usage(String),
    /// The Actions runtime could not write outputs or the summary.
    #[error(transparent)]
    Actions(#[from] ActionsError),
}

/// The error for `segmentation.method: threshold` given together with `--model` or `--masks`.
fn usage_conflict(path: &Path, text: &str, model: bool) -> StageError {
    let flag = if model { "--model" } else { "--masks" };
    let at = params::locate(text, "segmentation.method")
        .map(|(l, c)| format!(":{l}:{c}"))
        .unwrap_or_default();
    StageError::Usage(format!(
        "{flag} was given but {}{at} sets `segmentation.method: threshold`, which segments without one; \
         drop {flag} or set `segmentation.method: model`",
        path.display()
    ))
}

impl From<StagingError> for StageError {
    fn from(e: StagingError) -> Self {
        StageError::Write {
            path: e.path,
            message: e.source.to_string(),
        }
    }
}

impl StageFailure for StageError {
    fn exit(&self) -> Exit {
        match self {
            StageError::Params(_)
            | StageError::Preprocessing { .. }
            | StageError::Baseline(_)
            | StageError::Usage(_) => Exit::Usage,
            StageError::Input(inputs::InputError::Missing { .. }) => Exit::Failure,
            StageError::Input(_) => Exit::Usage,
            StageError::Decode { .. }
            | StageError::Mismatch { .. }
            | StageError::Model { .. }
            | StageError::Device(_) => Exit::Failure,
            StageError::Write { .. } | StageError::Actions(_) => Exit::Error,
        }
    }

    fn annotation(&self) -> Annotation {
        let on = |title: &str, file: &Path| {
            Annotation::new(Level::Error, self.to_string())
                .title(title)
                .file(file.display().to_string())
        };
        match self {
            StageError::Params(p) => Annotation::new(Level::Error, p.message.clone())
                .title("invalid cell parameters")
                .file(p.path.display().to_string())
                .at(p.line, p.column),
            StageError::Preprocessing { path, line, message } => Annotation::new(Level::Error, message.clone())
                .title("preprocessing differs from the model's")
                .file(path.display().to_string())
                .at(line.map(|l| l.0), line.map(|l| l.1)),
            StageError::Decode { path, .. } => on("unreadable image", path),
            StageError::Mismatch { mask, .. } => on("mask does not fit its image", mask),
            StageError::Input(inputs::InputError::Missing { image, .. }) => on("no mask for image", image),
            _ => Annotation::new(Level::Error, self.to_string()).title("evaluate"),
        }
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct Finished {
    /// Everything measured (what `summary.json` holds).
    pub evaluation: Evaluation,
    /// The comparison with the baseline.
    pub diff: Option<baseline::Diff>,
    /// The output folder.
    pub output: PathBuf,
    /// Wall time in seconds.
    pub seconds: f64,
}

enum Source {
    Model(Box<Predictor>),
    Masks(MaskReading),
    Threshold,
}

fn decode(path: &Path, max_pixels: u64) -> Result<Raster, StageError> {
    let bytes = std::fs::read(path).map_err(|e| StageError::Decode {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    io::decode(&bytes, max_pixels)
        .map(|d| d.raster)
        .map_err(|e| StageError::Decode {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

fn same_size(mask: &Raster, mask_path: &Path, image: &Raster, image_path: &Path) -> Result<(), StageError> {
    if (mask.width, mask.height) == (image.width, image.height) {
        return Ok(());
    }
    Err(StageError::Mismatch {
        mask: mask_path.to_owned(),
        mask_size: format!("is {}×{}", mask.width, mask.height),
        image: image_path.to_owned(),
        image_size: format!("{}×{}", image.width, image.height),
    })
}

/// One evaluated image.
struct One {
    record: ImageRecord,
    rows: Vec<Vec<(String, Cell)>>,
    scores: Option<Scores>,
    classical: Option<Scores>,
    overlay: Vec<u8>,
}

/// Instance labels of an image from the run's source, and the model's scale when a model ran.
fn labels_of(
    item: &inputs::Item,
    image: &Raster,
    source: &Source,
    ctx: &Context<'_>,
    args: &Args,
) -> Result<(Vec<u32>, Option<f64>), StageError> {
    let failed = |path: &Path, e: &dyn std::fmt::Display| StageError::Decode {
        path: path.to_owned(),
        message: e.to_string(),
    };
    match source {
        Source::Model(p) => {
            let pred = p.predict(image).map_err(|e| StageError::Model {
                path: args.model.clone().unwrap_or_default(),
                source: e,
            })?;
            let meta = p.meta();
            let labels =
                segment::from_prediction(&pred, meta.training.targets(), ctx.params, meta.postprocessing.as_ref())
                    .map_err(|e| failed(&item.image, &e))?;
            Ok((labels, Some(pred.scale)))
        }
        Source::Threshold => Ok((
            segment::classical(image, ctx.params).map_err(|e| failed(&item.image, &e))?,
            None,
        )),
        Source::Masks(kind) => {
            let path = item.mask.as_deref().unwrap_or(&item.image);
            let mask = decode(path, args.max_pixels)?;
            same_size(&mask, path, image, &item.image)?;
            let labels = segment::from_mask(&mask, *kind, ctx.params).map_err(|e| failed(path, &e))?;
            Ok((labels, None))
        }
    }
}

/// The classical line's scores on an image, beside a model's (with ground truth only).
fn classical_scores(
    item: &inputs::Item,
    image: &Raster,
    truth: &[u32],
    ctx: &Context<'_>,
) -> Result<Scores, StageError> {
    let failed = |e: &dyn std::fmt::Display| StageError::Decode {
        path: item.image.clone(),
        message: e.to_string(),
    };
    let labels = segment::classical(image, ctx.params).map_err(|e| failed(&e))?;
    let measured = measure_image(&item.id, labels, image.width as usize, Some(image), ctx);
    Scores::of(truth, &measured.segmentation, &THRESHOLDS).map_err(|e| failed(&e))
}

fn evaluate_one(item: &inputs::Item, source: &Source, ctx: &Context<'_>, args: &Args) -> Result<One, StageError> {
    let image = decode(&item.image, args.max_pixels)?;
    let width = image.width as usize;
    let (labels, scale) = labels_of(item, &image, source, ctx, args)?;
    let truth = match &item.truth {
        Some(path) => {
            let t = decode(path, args.max_pixels)?;
            same_size(&t, path, &image, &item.image)?;
            Some(segment::truth(&t))
        }
        None => None,
    };
    let ImageMeasurement {
        nuclei,
        labels,
        segmentation,
        rows,
        summary,
    } = measure_image(&item.id, labels, width, Some(&image), ctx);
    let scores = truth
        .as_ref()
        .map(|t| Scores::of(t, &segmentation, &THRESHOLDS))
        .transpose()
        .map_err(|e| StageError::Decode {
            path: item.image.clone(),
            message: e.to_string(),
        })?;
    let classical = match (source, &truth) {
        (Source::Model(_), Some(t)) => Some(classical_scores(item, &image, t, ctx)?),
        _ => None,
    };
    let size_names: Vec<String> = ctx.params.classes.size.iter().map(|c| c.name.clone()).collect();
    let colours: BTreeMap<u32, [u8; 3]> = nuclei
        .iter()
        .map(|n| (n.shape.label as u32, overlay::colour_of(n, &size_names)))
        .collect();
    let drawn = overlay::draw(&image, &labels, truth.as_deref(), |l| colours.get(&l).copied());
    let png = io::encode_png(&drawn).map_err(|e| StageError::Write {
        path: PathBuf::from(format!("overlays/{}.png", item.id)),
        message: e.to_string(),
    })?;
    Ok(One {
        record: ImageRecord {
            summary,
            overlay: Some(format!("overlays/{}.png", item.id)),
            metrics: scores.as_ref().map(ImageMetrics::of),
            classical: classical.as_ref().map(ImageMetrics::of),
            scale,
        },
        rows,
        scores,
        classical,
        overlay: png,
    })
}

/// Checks the file's preprocessing against the bundle's and returns what inference must apply.
fn preprocessing(
    params: &CellParams,
    text: &str,
    path: &Path,
    bundle: &BuildConfig,
) -> Result<BuildConfig, StageError> {
    let p = &params.preprocessing;
    let mut out = bundle.clone();
    let (colour, equalize, normalize) = (p.colour, p.equalize, p.normalize);
    let differs = |field: &str, file: String, model: String| -> Result<(), StageError> {
        if p.override_bundle {
            return Ok(());
        }
        Err(StageError::Preprocessing {
            path: path.to_owned(),
            line: params::locate(text, &format!("preprocessing.{field}")),
            message: format!(
                "preprocessing.{field} is {file} but the model was trained with {model}; \
                 make them agree or set preprocessing.override_bundle: true"
            ),
        })
    };
    if let Some(c) = colour
        && c != bundle.colour
    {
        differs(
            "colour",
            format!("{c:?}").to_lowercase(),
            format!("{:?}", bundle.colour).to_lowercase(),
        )?;
        out.colour = c;
    }
    if let Some(e) = equalize
        && e != bundle.equalize.method
    {
        differs(
            "equalize",
            format!("{e:?}").to_lowercase(),
            format!("{:?}", bundle.equalize.method).to_lowercase(),
        )?;
        out.equalize.method = e;
    }
    if let Some(n) = normalize
        && n != bundle.normalize.method
    {
        differs(
            "normalize",
            format!("{n:?}").to_lowercase(),
            format!("{:?}", bundle.normalize.method).to_lowercase(),
        )?;
        out.normalize.method = n;
    }
    Ok(out)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StageError> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| StageError::Write {
        path,
        message: e.to_string(),
    })
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut s = serde_json::to_vec_pretty(v).unwrap_or_default();
    s.push(b'\n');
    s
}

/// Runs the stage and reports through `runner`.
pub fn run(args: &Args, runner: &Runner) -> Result<Finished, StageError> {
    let started = Instant::now();
    // Read once: the text that is hashed, copied and searched for lines is the text parsed.
    let file = ParamsFile::read(&args.params)?;
    let (params, params_text) = (&file.params, &file.text);
    let ctx = Context::new(params);
    let only = args
        .split
        .map(|s| inputs::split_ids(&args.images.join(cellops_formats::dataset::SPLIT_CSV), s))
        .transpose()?;
    let items = inputs::discover(
        &args.images,
        args.masks.as_deref(),
        args.ground_truth.as_deref(),
        only.as_ref(),
    )?;
    let baseline = args.baseline.as_deref().map(baseline::load).transpose()?;
    let method = params.segmentation.method;
    let (source, source_info, learning_curve) = match (&args.model, &args.masks) {
        (Some(_), _) | (_, Some(_)) if method == params::SegmentationMethod::Threshold => {
            return Err(usage_conflict(&args.params, params_text, args.model.is_some()));
        }
        (None, None) if method == params::SegmentationMethod::Threshold => (
            Source::Threshold,
            SourceInfo {
                kind: "threshold".into(),
                path: format!("{:?}", params.segmentation.threshold.method).to_lowercase(),
                bundle_id: None,
            },
            None,
        ),
        (Some(bundle), _) => {
            let selected = device::select(args.device)?;
            let predictor = Predictor::load(bundle, &selected.device, PredictConfig::new().with_tta(args.tta))
                .map_err(|e| StageError::Model {
                    path: bundle.clone(),
                    source: e,
                })?;
            let prep = preprocessing(params, params_text, &args.params, &predictor.meta().preprocessing)?;
            let id = predictor.meta().id.clone();
            runner.info(&format!(
                "model {} (bundle {id}) on {}",
                bundle.display(),
                selected.kind.as_str()
            ))?;
            let curve = std::fs::read_to_string(bundle.join(cellops_formats::bundle::LEARNING_CURVE)).ok();
            (
                Source::Model(Box::new(predictor.with_preprocessing(prep))),
                SourceInfo {
                    kind: "model".into(),
                    path: bundle.display().to_string(),
                    bundle_id: Some(id),
                },
                curve,
            )
        }
        (None, Some(m)) => {
            if params.segmentation.separation.method == params::SeparationMethod::Boundary {
                let at = params::locate(params_text, "segmentation.separation");
                runner.annotate(
                    &Annotation::new(
                        Level::Warning,
                        "separation method `boundary` needs a model's boundary channel; masks are split by the distance watershed",
                    )
                    .file(args.params.display().to_string())
                    .at(at.map(|a| a.0), at.map(|a| a.1)),
                )?;
            }
            (
                Source::Masks(args.masks_kind),
                SourceInfo {
                    kind: "masks".into(),
                    path: m.display().to_string(),
                    bundle_id: None,
                },
                None,
            )
        }
        (None, None) => {
            return Err(StageError::Usage(
                "give --model (a bundle) or --masks, or choose `segmentation.method: threshold` in the parameter file"
                    .into(),
            ));
        }
    };
    let applied = match &source {
        Source::Model(p) => Some(("model", p.meta().postprocessing)),
        Source::Threshold => Some(("threshold", None)),
        Source::Masks(_) => None,
    }
    .map(|(name, tuned)| {
        PostProcessingInfo::of(
            name,
            &params.segmentation.resolve(params.pixel_size_um, tuned.as_ref(), 1.0),
        )
    });
    runner.info(&format!(
        "evaluating {} images of {} under {}",
        items.len(),
        args.images.display(),
        args.params.display()
    ))?;
    let staging = StagingDir::new(&args.output)?;
    let out = staging.path().to_owned();
    let overlays_dir = out.join("overlays");
    std::fs::create_dir_all(&overlays_dir).map_err(|e| StageError::Write {
        path: overlays_dir.clone(),
        message: e.to_string(),
    })?;
    let progress = Progress::new(runner, items.len() as u64, "images");
    let process = |item: &inputs::Item| -> Result<One, StageError> {
        let mut one = evaluate_one(item, &source, &ctx, args)?;
        write(
            &overlays_dir,
            &format!("{}.png", item.id),
            &std::mem::take(&mut one.overlay),
        )?;
        progress.inc();
        Ok(one)
    };
    let outcomes: Vec<Result<One, StageError>> = match &source {
        // The model already uses every core; masks and thresholds are measured an image per core.
        Source::Model(_) => items.iter().map(process).collect(),
        Source::Masks(_) | Source::Threshold => items.par_iter().map(process).collect(),
    };
    progress.finish();
    // Every bad image is reported (an annotation on its file), not just the first; the first one
    // ends the stage.
    let mut results = Vec::with_capacity(outcomes.len());
    let mut first_error = None;
    for o in outcomes {
        match o {
            Ok(one) => results.push(one),
            Err(e) if first_error.is_none() => first_error = Some(e),
            Err(e) => runner.annotate(&e.annotation())?,
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    // Objects table, totals, pooled scores.
    let mut objects = Table::default();
    let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut pooled: Option<Scores> = None;
    let mut classical: Option<Scores> = None;
    let mut totals = Totals {
        images: results.len(),
        ..Totals::default()
    };
    for r in &mut results {
        for row in std::mem::take(&mut r.rows) {
            for (k, c) in &row {
                if summarised(k)
                    && let Some(v) = c.as_f64().filter(|v| v.is_finite())
                {
                    values.entry(k.clone()).or_default().push(v);
                }
            }
            objects.push(row);
        }
        let s = &r.record.summary;
        totals.nuclei += s.count;
        for (k, n) in &s.size_classes {
            *totals.size_classes.entry(k.clone()).or_insert(0) += n;
        }
        if let Some(c) = &s.class {
            *totals.image_classes.entry(c.clone()).or_insert(0) += 1;
        }
        if let Some(d) = s.dab_classes {
            let t = totals.dab_classes.get_or_insert([0; 4]);
            for k in 0..4 {
                t[k] += d[k];
            }
        }
        if let Some(sc) = &r.scores {
            pooled.get_or_insert_with(Scores::default).add(sc);
        }
        if let Some(sc) = &r.classical {
            classical.get_or_insert_with(Scores::default).add(sc);
        }
    }
    if let Some((p, h)) = totals.dab_classes.and_then(cellops_measure::stain::scores) {
        totals.positive_percent = Some(p);
        totals.h_score = Some(h);
    }
    totals.features = values
        .iter()
        .filter_map(|(k, v)| Stats::of(v).map(|s| (k.clone(), s)))
        .collect();
    let evaluation = Evaluation {
        format: report::FORMAT.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        params: ParamsInfo {
            file: args.params.display().to_string(),
            sha256: format!("{:x}", sha2::Sha256::digest(params_text.as_bytes())),
            description: params.description.clone(),
            pixel_size_um: params.pixel_size_um,
        },
        source: source_info,
        images: results.iter().map(|r| r.record.clone()).collect(),
        totals,
        metrics: pooled.as_ref().map(ImageMetrics::of),
        classical: classical.as_ref().map(ImageMetrics::of),
        postprocessing: applied,
    };
    let diff = baseline.map(|(path, before)| baseline::diff(path, &before, &evaluation));
    let diff_md = diff.as_ref().map(|d| baseline::markdown(d, 20));
    let markdown = report::markdown(&evaluation, diff_md.as_deref(), 30);
    let html_overlays: Vec<(String, Vec<u8>)> = evaluation
        .images
        .iter()
        .take(args.html_overlays)
        .filter_map(|r| {
            std::fs::read(overlays_dir.join(format!("{}.png", r.summary.image)))
                .ok()
                .map(|b| (r.summary.image.clone(), b))
        })
        .collect();
    let distributions: Vec<(&str, Vec<f64>)> = [
        "AreaShape_Area_um2",
        "AreaShape_FormFactor",
        "AreaShape_Eccentricity",
        "AreaShape_Solidity",
        "AreaShape_MinFeretDiameter_um",
        "Intensity_MeanOD_DAB",
    ]
    .into_iter()
    .filter_map(|k| values.get(k).map(|v| (k, v.clone())))
    .collect();
    let page = html::report(
        &evaluation,
        &html::Extras {
            distributions,
            overlays: html_overlays,
            learning_curve,
            diff: diff.as_ref(),
        },
    );
    write(&out, "summary.json", &json(&evaluation))?;
    if let Some(m) = report::metrics_json(&evaluation) {
        write(&out, "metrics.json", &json(&m))?;
    }
    write(&out, "objects.csv", objects.csv().as_bytes())?;
    write(&out, "objects.json", &json(&objects.json()))?;
    write(&out, "images.csv", report::images_table(&evaluation).csv().as_bytes())?;
    write(&out, "report.md", markdown.as_bytes())?;
    write(&out, "report.html", page.as_bytes())?;
    write(&out, "params.yaml", params_text.as_bytes())?;
    if let Some(d) = &diff {
        write(&out, "diff.json", &json(d))?;
    }
    staging.commit(&args.output)?;
    let o = &args.output;
    runner.set_output("report", &o.join("report.html").display().to_string())?;
    runner.set_output("markdown", &o.join("report.md").display().to_string())?;
    runner.set_output("objects", &o.join("objects.csv").display().to_string())?;
    runner.set_output("nuclei", &evaluation.totals.nuclei.to_string())?;
    runner.set_output("images", &evaluation.totals.images.to_string())?;
    if let Some(m) = &evaluation.metrics {
        runner.set_output("f1", &format!("{:.4}", m.at(0.5).map_or(0.0, |x| x.f1)))?;
        runner.set_output("dice", &format!("{:.4}", m.dice))?;
    }
    runner.append_summary(&markdown)?;
    Ok(Finished {
        evaluation,
        diff,
        output: args.output.clone(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The line that ends a successful run.
pub fn headline(f: &Finished) -> String {
    let e = &f.evaluation;
    let mut s = format!("evaluated {} images: {} nuclei", e.totals.images, e.totals.nuclei);
    if let (Some(p), Some(h)) = (e.totals.positive_percent, e.totals.h_score) {
        s.push_str(&format!(", {p:.1} % positive, H-score {h:.0}"));
    }
    if let Some(m) = &e.metrics {
        s.push_str(&format!(
            "; F1@0.5 {:.4}, Dice {:.4}",
            m.at(0.5).map_or(0.0, |x| x.f1),
            m.dice
        ));
    }
    if let Some(d) = &f.diff {
        let n = d.images.iter().filter(|i| i.flagged).count();
        s.push_str(&format!("; {n} images changed against the baseline"));
    }
    s.push_str(&format!(
        " in {:.1} s; report: {}",
        f.seconds,
        f.output.join("report.html").display()
    ));
    s
}

/// Runs the stage and ends it the way every stage ends (annotation and exit code on failure).
pub fn execute(args: &Args, runner: &Runner) -> Exit {
    conclude(runner, run(args, runner), |done| (headline(done), Exit::Success))
}
