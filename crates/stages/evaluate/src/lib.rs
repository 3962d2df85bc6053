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
//! `overlays/<image>.png`, `params.yaml` (the parameter file used), with a baseline `diff.json`,
//! and on request `labels/<image>.png|tif` and `geojson/<image>.geojson`.
//!
//! On an Actions matrix, `--shard I/N` measures a balanced share and adds `shard.cbor`; `merge`
//! joins the N shard folders into what one unsharded run writes, byte for byte ([`shard`]).

pub mod baseline;
pub mod html;
pub mod inputs;
pub mod report;
pub mod shard;
pub mod slides;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cellops_actions::{ActionsError, Annotation, Exit, Level, Runner, StageFailure, conclude, progress::Progress};
use cellops_analysis::slide::Tiling;
use cellops_analysis::{Analysed, AnalysisError, Analyzer, Input, Segmenter};
use cellops_dataset::io;
use cellops_dataset::slide::Rect;
use cellops_dataset::staging::{StagingDir, StagingError};
use cellops_formats::dataset::Subset;
use cellops_formats::params::{self, ParamsError, ParamsFile};
use cellops_measure::metrics::Scores;
use cellops_measure::objects::{ImageMeasurement, summarised};
use cellops_unet::device::{self, Accelerator, DeviceError};
use cellops_unet::inference::{PredictConfig, Predictor, Tta};
use rayon::prelude::*;
use sha2::Digest as _;

pub use cellops_analysis::MaskReading;

/// The HTML report's file name in the output folder.
pub const REPORT_HTML: &str = "report.html";

use crate::report::{Evaluation, ImageMetrics, ImageRecord, ParamsInfo, PostProcessingInfo, SourceInfo, Table, Totals};
use crate::shard::{Measured, RunInfo, Shard};

/// `evaluate` and its `merge` subcommand, as the binaries parse them.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Command {
    /// `merge`, or none to evaluate.
    #[command(subcommand)]
    pub action: Option<Action>,
    /// The evaluation's flags.
    #[command(flatten)]
    pub evaluate: Option<Args>,
}

/// The subcommands of `evaluate`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Action {
    /// Join the output folders of every `--shard I/N` run of one evaluation into what the
    /// unsharded run writes (byte for byte; pooled figures from pooled counts).
    Merge(MergeArgs),
}

/// Flags of `evaluate merge`.
#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// The shards' output folders (each has shard.cbor), in any order.
    #[arg(value_name = "DIR", required = true)]
    pub shards: Vec<PathBuf>,
    /// Output folder for the merged reports.
    #[arg(long, value_name = "DIR")]
    pub output: PathBuf,
    /// An earlier evaluation (its output folder or summary.json) to compare with.
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,
}

/// Command-line flags (and action inputs) of `evaluate`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Evaluate")]
pub struct Args {
    /// Images to evaluate: a folder, or a dataset in the paper's layout (original/ + masks/,
    /// whose masks/ is then the ground truth).
    #[arg(long, value_name = "DIR", required_unless_present = "slides")]
    pub images: Option<PathBuf>,
    /// A whole-slide image (pyramidal tiled TIFF) to measure tile by tile instead of --images;
    /// repeat for several (the action's `slides` input: newline-separated files or globs). Its
    /// tissue is measured, or --region; nuclei go to objects.csv and, with --geojson, to
    /// geojson/<slide>.geojson in level-0 pixels.
    #[arg(long = "slide", value_name = "FILE", conflicts_with_all = ["images", "masks", "ground_truth", "split", "shard", "labels"])]
    pub slides: Vec<PathBuf>,
    /// Measure only this rectangle of each slide, `x,y,w,h` in level-0 pixels [default: the
    /// tissue the slide's overview shows].
    #[arg(long, value_name = "X,Y,W,H", value_parser = slides::parse_region, requires = "slides")]
    pub region: Option<Rect>,
    /// Side of the tiles a slide is measured in (level-0 pixels).
    #[arg(long, value_name = "PX", default_value_t = Tiling::default().tile, value_parser = clap::value_parser!(u32).range(128..=8192))]
    pub slide_tile: u32,
    /// Margin read around each slide tile (level-0 pixels): wider than the largest nucleus, so
    /// that a nucleus cut by a seam is seen whole by the tile that owns its centre.
    #[arg(long, value_name = "PX", default_value_t = Tiling::default().overlap, value_parser = clap::value_parser!(u32).range(8..=2048))]
    pub slide_overlap: u32,
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
    /// Side of the square tiles the model runs on (images up to this size, after rescaling, run
    /// whole; larger ones in overlapping tiles): memory against speed.
    #[arg(long, value_name = "PX", default_value_t = PredictConfig::new().tile, value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u32).range(64..=4096), |v| v as usize))]
    pub tile: usize,
    /// Overlays embedded in the HTML report (all are written to overlays/).
    #[arg(long, value_name = "N", default_value_t = 12)]
    pub html_overlays: usize,
    /// Images with more pixels than this are refused before decoding.
    #[arg(long, value_name = "PIXELS", default_value_t = 100_000_000)]
    pub max_pixels: u64,
    /// Also write each image's instance labels (labels/<image>.png, 16-bit, or .tif, 32-bit),
    /// each nucleus' label its ObjectNumber, for napari and Fiji (also `outputs.labels` in the
    /// parameter file).
    #[arg(long)]
    pub labels: bool,
    /// Also write each image's nuclei as GeoJSON polygons (geojson/<image>.geojson) that QuPath
    /// imports as detections (also `outputs.geojson` in the parameter file).
    #[arg(long)]
    pub geojson: bool,
    /// Measure only share I of N (the N shares balanced by pixel count, the same on every
    /// machine) and write shard.cbor beside the reports, for `evaluate merge` (an Actions matrix
    /// of N jobs).
    #[arg(long, value_name = "I/N", value_parser = Shard::parse)]
    pub shard: Option<Shard>,
}

impl Args {
    /// The flags at their defaults with the images, the parameter file and the output folder given, as the `cellops pipeline` runs the stage
    /// (fields are then set by type).
    pub fn new(images: &Path, params: &Path, output: &Path) -> Result<Self, clap::Error> {
        cellops_actions::inputs::defaults(&[
            ("images", images.as_ref()),
            ("params", params.as_ref()),
            ("output", output.as_ref()),
        ])
    }
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
    /// An image could not be analysed, or the model not used.
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
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
    /// Shard records could not be merged.
    #[error(transparent)]
    Shard(#[from] shard::ShardError),
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
            | StageError::Analysis(AnalysisError::Preprocessing { .. })
            | StageError::Baseline(_)
            | StageError::Usage(_)
            | StageError::Shard(_) => Exit::Usage,
            StageError::Input(inputs::InputError::Missing { .. }) => Exit::Failure,
            StageError::Input(_) => Exit::Usage,
            StageError::Analysis(_) | StageError::Device(_) => Exit::Failure,
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
            StageError::Analysis(AnalysisError::Preprocessing { path, line, message }) => {
                Annotation::new(Level::Error, message.clone())
                    .title("preprocessing differs from the model's")
                    .file(path.display().to_string())
                    .at(line.map(|l| l.0), line.map(|l| l.1))
            }
            StageError::Analysis(AnalysisError::Decode { path, .. }) => on("unreadable image", path),
            StageError::Analysis(AnalysisError::Mismatch { mask, .. }) => on("mask does not fit its image", mask),
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
    /// The share measured, for a `--shard` run.
    pub shard: Option<Shard>,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// The files written for one image, by path relative to the output folder.
type Files = Vec<(String, Vec<u8>)>;

/// Analyses one image and encodes its files: the overlay (PNG) and, when asked for, the label
/// image and the GeoJSON of its nuclei.
fn evaluate_one(item: &inputs::Item, analyzer: &Analyzer, args: &Args) -> Result<(Measured, Files), StageError> {
    let input = Input::read(
        &item.id,
        (&item.image, analyzer.channel()),
        item.mask.as_deref(),
        item.truth.as_deref(),
        args.max_pixels,
    )?;
    let analysed = analyzer.analyse(&input)?;
    let (files, named) = encode_files(&item.id, &input, &analysed, analyzer, outputs(args, analyzer))?;
    let Analysed {
        measurement,
        scale,
        scores,
        classical,
        pixel_size,
        ..
    } = analysed;
    let ImageMeasurement { rows, summary, .. } = measurement;
    let measured = Measured {
        record: ImageRecord {
            summary,
            overlay: Some(named.overlay),
            labels: named.labels,
            geojson: named.geojson,
            metrics: scores.as_ref().map(ImageMetrics::of),
            classical: classical.as_ref().map(ImageMetrics::of),
            scale,
            pixel_size_um: pixel_size.um,
            pixel_size_from: pixel_size.source().to_owned(),
            image_pixel_size_um: pixel_size.image_says,
            slide: None,
        },
        rows,
        scores,
        classical,
    };
    Ok((measured, files))
}

/// Where an image's files went, relative to the output folder.
struct Named {
    overlay: String,
    labels: Option<String>,
    geojson: Option<String>,
}

/// Encodes an image's files: the overlay always, the label image and the GeoJSON when `wanted`.
fn encode_files(
    id: &str,
    input: &Input,
    analysed: &Analysed,
    analyzer: &Analyzer,
    wanted: params::Outputs,
) -> Result<(Files, Named), StageError> {
    let failed = |rel: &str, message: String| StageError::Write {
        path: PathBuf::from(rel),
        message,
    };
    let mut files: Files = Vec::new();
    let overlay = format!("overlays/{id}.png");
    let png = io::encode_png(&analyzer.overlay(input, analysed)).map_err(|e| failed(&overlay, e.to_string()))?;
    files.push((overlay.clone(), png));
    let labels = if wanted.labels {
        let (w, h) = (input.image.raster.width, input.image.raster.height);
        let (bytes, kind) = io::encode_labels(&analysed.measurement.labels, w, h).map_err(|m| failed(id, m))?;
        let rel = format!("labels/{id}.{}", kind.extension());
        files.push((rel.clone(), bytes));
        Some(rel)
    } else {
        None
    };
    let geojson = wanted.geojson.then(|| {
        let rel = format!("geojson/{id}.geojson");
        files.push((rel.clone(), json(&analyzer.geojson(input, analysed))));
        rel
    });
    Ok((
        files,
        Named {
            overlay,
            labels,
            geojson,
        },
    ))
}

/// The per-image files asked for, by the flags or the parameter file.
fn outputs(args: &Args, analyzer: &Analyzer) -> params::Outputs {
    let file = analyzer.params().outputs;
    params::Outputs {
        labels: args.labels || file.labels,
        geojson: args.geojson || file.geojson,
    }
}

/// Writes `bytes` to `rel` under `dir`, making its folder.
fn write_file(dir: &Path, rel: &str, bytes: &[u8]) -> Result<(), StageError> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| StageError::Write {
            path: parent.to_owned(),
            message: e.to_string(),
        })?;
    }
    write(dir, rel, bytes)
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

/// How the run segments its images (from the flags and the parameter file), what the reports
/// call it, and the bundle's learning curve when a model runs.
fn segmenter(
    args: &Args,
    file: &ParamsFile,
    runner: &Runner,
) -> Result<(Segmenter, SourceInfo, Option<String>), StageError> {
    let params = &file.params;
    let threshold = params.segmentation.method == params::SegmentationMethod::Threshold;
    let info = |kind: &str, path: String, bundle_id: Option<String>| SourceInfo {
        kind: kind.into(),
        path,
        bundle_id,
    };
    match (&args.model, &args.masks) {
        (Some(_), _) | (_, Some(_)) if threshold => Err(usage_conflict(&args.params, &file.text, args.model.is_some())),
        (None, None) if threshold => {
            let method = format!("{:?}", params.segmentation.threshold.method).to_lowercase();
            Ok((Segmenter::Threshold, info("threshold", method, None), None))
        }
        (Some(bundle), _) => {
            let selected = device::select(args.device)?;
            let predictor = Predictor::load(
                bundle,
                &selected.device,
                PredictConfig::new().with_tta(args.tta).with_tile(args.tile),
            )
            .map_err(|source| AnalysisError::Model {
                path: bundle.clone(),
                source,
            })?;
            let id = predictor.meta().id.clone();
            let segmenter = Segmenter::model(predictor, bundle, file)?;
            runner.info(&format!(
                "model {} (bundle {id}) on {}",
                bundle.display(),
                selected.kind.as_str()
            ))?;
            let curve = std::fs::read_to_string(bundle.join(cellops_formats::bundle::LEARNING_CURVE)).ok();
            Ok((segmenter, info("model", bundle.display().to_string(), Some(id)), curve))
        }
        (None, Some(m)) => {
            if params.segmentation.separation.method == params::SeparationMethod::Boundary {
                let at = params::locate(&file.text, "segmentation.separation");
                runner.annotate(
                    &Annotation::new(
                        Level::Warning,
                        "separation method `boundary` needs a model's boundary channel; masks are split by the distance watershed",
                    )
                    .file(args.params.display().to_string())
                    .at(at.map(|a| a.0), at.map(|a| a.1)),
                )?;
            }
            Ok((
                Segmenter::Masks(args.masks_kind),
                info("masks", m.display().to_string(), None),
                None,
            ))
        }
        (None, None) => Err(StageError::Usage(
            "give --model (a bundle) or --masks, or choose `segmentation.method: threshold` in the parameter file"
                .into(),
        )),
    }
}

/// Evaluates every item (a model image by image, as it already uses every core; masks and
/// thresholds an image per core), writing each image's files under `out`. Every bad image is
/// reported (an annotation on its file), not just the first; the first one ends the stage.
fn evaluate_all(
    items: &[inputs::Item],
    analyzer: &Analyzer,
    args: &Args,
    runner: &Runner,
    out: &Path,
) -> Result<Vec<Measured>, StageError> {
    let progress = Progress::new(runner, items.len() as u64, "images");
    let process = |item: &inputs::Item| -> Result<Measured, StageError> {
        let (measured, files) = evaluate_one(item, analyzer, args)?;
        for (rel, bytes) in files {
            write_file(out, &rel, &bytes)?;
        }
        progress.inc();
        Ok(measured)
    };
    let outcomes: Vec<Result<Measured, StageError>> = match analyzer.segmenter() {
        Segmenter::Model { .. } => items.iter().map(process).collect(),
        Segmenter::Masks(_) | Segmenter::Threshold => items.par_iter().map(process).collect(),
    };
    progress.finish();
    let mut results = Vec::with_capacity(outcomes.len());
    let mut first_error = None;
    for o in outcomes {
        match o {
            Ok(one) => results.push(one),
            Err(e) if first_error.is_none() => first_error = Some(e),
            Err(e) => runner.annotate(&e.annotation())?,
        }
    }
    first_error.map_or(Ok(results), Err)
}

/// The objects table, every summarised feature's values, the totals and pooled scores of a run.
struct Pooled {
    objects: Table,
    values: BTreeMap<String, Vec<f64>>,
    totals: Totals,
    scores: Option<Scores>,
    classical: Option<Scores>,
}

/// Pools the images' rows, summaries and scores (the rows are moved out of `results`) onto
/// `values` already pooled (a slide's, whose rows were streamed).
fn pool(results: &mut [Measured], values: BTreeMap<String, Vec<f64>>) -> Pooled {
    let mut p = Pooled {
        objects: Table::default(),
        values,
        totals: Totals {
            images: results.len(),
            ..Totals::default()
        },
        scores: None,
        classical: None,
    };
    for r in results.iter_mut() {
        for row in std::mem::take(&mut r.rows) {
            for (k, c) in &row {
                if summarised(k)
                    && let Some(v) = c.as_f64().filter(|v| v.is_finite())
                {
                    p.values.entry(k.clone()).or_default().push(v);
                }
            }
            p.objects.push(row);
        }
        p.totals.add(&r.record.summary);
        if let Some(sc) = &r.scores {
            p.scores.get_or_insert_with(Scores::default).add(sc);
        }
        if let Some(sc) = &r.classical {
            p.classical.get_or_insert_with(Scores::default).add(sc);
        }
    }
    p.totals.finish(&p.values);
    p
}

/// The features whose distributions the HTML report plots.
const DISTRIBUTIONS: [&str; 6] = [
    "AreaShape_Area_um2",
    "AreaShape_FormFactor",
    "AreaShape_Eccentricity",
    "AreaShape_Solidity",
    "AreaShape_MinFeretDiameter_um",
    "Intensity_MeanOD_DAB",
];

/// The HTML report, with the first overlays, the distributions, the learning curve and the diff.
fn html_page(
    evaluation: &Evaluation,
    values: &BTreeMap<String, Vec<f64>>,
    overlays_dir: &Path,
    learning_curve: Option<String>,
    diff: Option<&baseline::Diff>,
    html_overlays: usize,
) -> String {
    let overlays: Vec<(String, Vec<u8>)> = evaluation
        .images
        .iter()
        .take(html_overlays)
        .filter_map(|r| {
            std::fs::read(overlays_dir.join(format!("{}.png", r.summary.image)))
                .ok()
                .map(|b| (r.summary.image.clone(), b))
        })
        .collect();
    let distributions: Vec<(&str, Vec<f64>)> = DISTRIBUTIONS
        .into_iter()
        .filter_map(|k| values.get(k).map(|v| (k, v.clone())))
        .collect();
    html::report(
        evaluation,
        &html::Extras {
            distributions,
            overlays,
            learning_curve,
            diff,
        },
    )
}

/// Sets the step's outputs and summary.
fn report_outputs(runner: &Runner, o: &Path, evaluation: &Evaluation, markdown: &str) -> Result<(), StageError> {
    runner.set_output("report", &o.join(REPORT_HTML).display().to_string())?;
    runner.set_output("markdown", &o.join("report.md").display().to_string())?;
    runner.set_output("objects", &o.join("objects.csv").display().to_string())?;
    runner.set_output("nuclei", &evaluation.totals.nuclei.to_string())?;
    runner.set_output("images", &evaluation.totals.images.to_string())?;
    for r in &evaluation.images {
        if let Some(own) = r.image_pixel_size_um {
            runner.annotate(
                &Annotation::new(
                    Level::Warning,
                    format!(
                        "{}: the image's metadata says a pixel is {own} µm; the parameter file's {} µm applies",
                        r.summary.image, r.pixel_size_um
                    ),
                )
                .title("pixel sizes disagree"),
            )?;
        }
    }
    if let Some(m) = &evaluation.metrics {
        runner.set_output("f1", &format!("{:.4}", m.at(0.5).map_or(0.0, |x| x.f1)))?;
        runner.set_output("dice", &format!("{:.4}", m.dice))?;
    }
    runner.append_summary(markdown)?;
    Ok(())
}

/// What a run's reports hold, for its outputs and summary.
struct Reported {
    evaluation: Evaluation,
    diff: Option<baseline::Diff>,
    markdown: String,
}

/// Writes every report of `results` into `out` (whose `overlays/` already holds their
/// overlays): what an unsharded run, a shard and a merge all write.
fn write_reports(
    out: &Path,
    info: &RunInfo,
    mut results: Vec<Measured>,
    baseline: Option<(PathBuf, Evaluation)>,
    streamed: Option<BTreeMap<String, Vec<f64>>>,
) -> Result<Reported, StageError> {
    // Slides' rows went to the tables as they were found; their values come pooled.
    let rows_written = streamed.is_some();
    let pooled = pool(&mut results, streamed.unwrap_or_default());
    let evaluation = Evaluation {
        format: report::FORMAT.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        params: info.params.clone(),
        source: info.source.clone(),
        images: results.into_iter().map(|r| r.record).collect(),
        totals: pooled.totals,
        metrics: pooled.scores.as_ref().map(ImageMetrics::of),
        classical: pooled.classical.as_ref().map(ImageMetrics::of),
        postprocessing: info.postprocessing.clone(),
    };
    let diff = baseline.map(|(path, before)| baseline::diff(path, &before, &evaluation));
    let diff_md = diff.as_ref().map(|d| baseline::markdown(d, 20));
    let markdown = report::markdown(&evaluation, diff_md.as_deref(), 30);
    let page = html_page(
        &evaluation,
        &pooled.values,
        &out.join("overlays"),
        info.learning_curve.clone(),
        diff.as_ref(),
        info.html_overlays,
    );
    write(out, "summary.json", &json(&evaluation))?;
    if let Some(m) = report::metrics_json(&evaluation) {
        write(out, "metrics.json", &json(&m))?;
    }
    if !rows_written {
        write(out, "objects.csv", pooled.objects.csv().as_bytes())?;
        write(out, "objects.json", &json(&pooled.objects.json()))?;
    }
    write(out, "images.csv", report::images_table(&evaluation).csv().as_bytes())?;
    write(out, "report.md", markdown.as_bytes())?;
    write(out, REPORT_HTML, page.as_bytes())?;
    write(out, "params.yaml", info.params_text.as_bytes())?;
    if let Some(d) = &diff {
        write(out, "diff.json", &json(d))?;
    }
    Ok(Reported {
        evaluation,
        diff,
        markdown,
    })
}

/// A staging folder for `output` with an empty `overlays/` in it.
fn staging_for(output: &Path) -> Result<StagingDir, StageError> {
    let staging = StagingDir::new(output)?;
    let overlays = staging.path().join("overlays");
    std::fs::create_dir_all(&overlays).map_err(|e| StageError::Write {
        path: overlays,
        message: e.to_string(),
    })?;
    Ok(staging)
}

/// What the reports say about the run as a whole.
fn run_info(
    args: &Args,
    file: &ParamsFile,
    analyzer: &Analyzer,
    source: SourceInfo,
    learning_curve: Option<String>,
) -> RunInfo {
    RunInfo {
        params: ParamsInfo {
            file: args.params.display().to_string(),
            sha256: format!("{:x}", sha2::Sha256::digest(file.text.as_bytes())),
            description: file.params.description.clone(),
            pixel_size_um: file.params.pixel_size_um,
        },
        params_text: file.text.clone(),
        source,
        postprocessing: analyzer
            .postprocessing()
            .map(|applied| PostProcessingInfo::of(analyzer.segmenter().kind(), &applied)),
        learning_curve,
        html_overlays: args.html_overlays,
    }
}

/// The positions of the images that `shard` measures (all of them without one); shares are
/// balanced by pixel count, read from each image's header (its file size when unreadable).
fn share_of(shard: Option<Shard>, items: &[inputs::Item]) -> Vec<usize> {
    let Some(shard) = shard else {
        return (0..items.len()).collect();
    };
    let work: Vec<u64> = items
        .iter()
        .map(|i| {
            io::dimensions(&i.image).map_or_else(
                || std::fs::metadata(&i.image).map_or(1, |m| m.len()),
                |(w, h)| u64::from(w) * u64::from(h),
            )
        })
        .collect();
    let assigned = shard::assign(&work, shard.count);
    (0..items.len()).filter(|&p| assigned[p] == shard.index).collect()
}

/// Runs the stage and reports through `runner`: find the inputs, analyse each image (of the
/// share, with `--shard`), write the reports (into a staging folder swapped in whole).
pub fn run(args: &Args, runner: &Runner) -> Result<Finished, StageError> {
    let started = Instant::now();
    // Read once: the text that is hashed, copied and searched for lines is the text parsed.
    let file = ParamsFile::read(&args.params)?;
    let Some(images) = &args.images else {
        return run_slides(args, &file, runner, started);
    };
    let only = args
        .split
        .map(|s| inputs::split_ids(&images.join(cellops_formats::dataset::SPLIT_CSV), s))
        .transpose()?;
    let items = inputs::discover(
        images,
        args.masks.as_deref(),
        args.ground_truth.as_deref(),
        only.as_ref(),
    )?;
    let baseline = args.baseline.as_deref().map(baseline::load).transpose()?;
    let (segmenter, source_info, learning_curve) = segmenter(args, &file, runner)?;
    let analyzer = Analyzer::new(file.params.clone(), segmenter);
    let info = run_info(args, &file, &analyzer, source_info, learning_curve);
    let positions = share_of(args.shard, &items);
    let share: Vec<inputs::Item> = positions.iter().map(|&p| items[p].clone()).collect();
    let which = args
        .shard
        .map(|s| format!("shard {s}: {} of ", share.len()))
        .unwrap_or_default();
    runner.info(&format!(
        "evaluating {which}{} images of {} under {}",
        items.len(),
        images.display(),
        args.params.display()
    ))?;
    let staging = staging_for(&args.output)?;
    let out = staging.path().to_owned();
    let results = evaluate_all(&share, &analyzer, args, runner, &out)?;
    let results = match args.shard {
        Some(shard) => write_record(&out, &args.output, shard, &items, &info, &positions, results)?,
        None => results,
    };
    let reported = write_reports(&out, &info, results, baseline, None)?;
    publish(staging, &args.output, runner, reported, args.shard, started)
}

/// `run` for `--slide`: every slide measured tile by tile, its rows streamed to the tables, the
/// other reports written as for images.
fn run_slides(args: &Args, file: &ParamsFile, runner: &Runner, started: Instant) -> Result<Finished, StageError> {
    if args.slides.is_empty() {
        return Err(StageError::Usage(
            "give --images (a folder) or --slide (a whole-slide image)".into(),
        ));
    }
    let baseline = args.baseline.as_deref().map(baseline::load).transpose()?;
    let (segmenter, source_info, learning_curve) = segmenter(args, file, runner)?;
    let analyzer = Analyzer::new(file.params.clone(), segmenter);
    if file.params.outputs.labels {
        runner.annotate(
            &Annotation::new(
                Level::Warning,
                "outputs.labels is not written for slides (a label image as large as the slide); use outputs.geojson",
            )
            .file(args.params.display().to_string()),
        )?;
    }
    let info = run_info(args, file, &analyzer, source_info, learning_curve);
    runner.info(&format!(
        "evaluating {} slide(s) under {}",
        args.slides.len(),
        args.params.display()
    ))?;
    let staging = staging_for(&args.output)?;
    let out = staging.path().to_owned();
    let measured = slides::evaluate(args, &analyzer, runner, &out)?;
    let reported = write_reports(&out, &info, measured.results, baseline, Some(measured.values))?;
    publish(staging, &args.output, runner, reported, None, started)
}

/// Writes a shard's record of `results` (the images at `positions` of `items`) into `out`, and
/// hands the results back for the shard's own reports.
fn write_record(
    out: &Path,
    output: &Path,
    shard: Shard,
    items: &[inputs::Item],
    info: &RunInfo,
    positions: &[usize],
    results: Vec<Measured>,
) -> Result<Vec<Measured>, StageError> {
    let record = shard::Record {
        format: shard::FORMAT.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        shard,
        ids: items.iter().map(|i| i.id.clone()).collect(),
        info: info.clone(),
        images: positions
            .iter()
            .zip(results)
            .map(|(&position, measured)| shard::Placed { position, measured })
            .collect(),
    };
    let bytes = shard::encode(&record).map_err(|message| StageError::Write {
        path: output.join(shard::RECORD),
        message,
    })?;
    write(out, shard::RECORD, &bytes)?;
    Ok(record.images.into_iter().map(|p| p.measured).collect())
}

/// Swaps the staged reports in as `output` and sets the step's outputs and summary.
fn publish(
    staging: StagingDir,
    output: &Path,
    runner: &Runner,
    reported: Reported,
    shard: Option<Shard>,
    started: Instant,
) -> Result<Finished, StageError> {
    staging.commit(output)?;
    report_outputs(runner, output, &reported.evaluation, &reported.markdown)?;
    Ok(Finished {
        evaluation: reported.evaluation,
        diff: reported.diff,
        output: output.to_owned(),
        shard,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Joins the shard folders of one run into the reports the unsharded run writes.
pub fn merge(args: &MergeArgs, runner: &Runner) -> Result<Finished, StageError> {
    let started = Instant::now();
    let records = args
        .shards
        .iter()
        .map(|dir| Ok((dir.clone(), shard::read(dir)?)))
        .collect::<Result<Vec<_>, StageError>>()?;
    let joined = shard::join(records)?;
    let baseline = args.baseline.as_deref().map(baseline::load).transpose()?;
    runner.info(&format!(
        "merging {} shards: {} images",
        args.shards.len(),
        joined.images.len()
    ))?;
    let staging = staging_for(&args.output)?;
    let out = staging.path().to_owned();
    let mut results = Vec::with_capacity(joined.images.len());
    for (dir, measured) in joined.images {
        for rel in shard::files(&measured.record) {
            write_file(&out, &rel, &shard::file(&dir, &rel)?)?;
        }
        results.push(measured);
    }
    let reported = write_reports(&out, &joined.info, results, baseline, None)?;
    publish(staging, &args.output, runner, reported, None, started)
}

/// The line that ends a successful run.
pub fn headline(f: &Finished) -> String {
    let e = &f.evaluation;
    let share = f.shard.map(|s| format!("shard {s}: ")).unwrap_or_default();
    let mut s = format!(
        "{share}evaluated {} images: {} nuclei",
        e.totals.images, e.totals.nuclei
    );
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
        f.output.join(REPORT_HTML).display()
    ));
    s
}

/// Runs the stage and ends it the way every stage ends (annotation and exit code on failure).
pub fn execute(args: &Args, runner: &Runner) -> Exit {
    conclude(runner, run(args, runner), |done| (headline(done), Exit::Success))
}

/// Runs `evaluate` or `evaluate merge`, as the command line says, and ends it the same way.
pub fn execute_command(command: &Command, runner: &Runner) -> Exit {
    match (&command.action, &command.evaluate) {
        (Some(Action::Merge(m)), _) => conclude(runner, merge(m, runner), |done| (headline(done), Exit::Success)),
        (None, Some(args)) => execute(args, runner),
        (None, None) => conclude(
            runner,
            Err::<Finished, _>(StageError::Usage(
                "give --images, --params and --output, or `merge DIR… --output DIR`".into(),
            )),
            |done| (headline(done), Exit::Success),
        ),
    }
}
