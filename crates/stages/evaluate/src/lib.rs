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
pub mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cellops_actions::{ActionsError, Annotation, Exit, Level, Runner, StageFailure, conclude, progress::Progress};
use cellops_analysis::{Analysed, AnalysisError, Analyzer, Input, Segmenter};
use cellops_dataset::io;
use cellops_dataset::staging::{StagingDir, StagingError};
use cellops_formats::dataset::Subset;
use cellops_formats::params::{self, ParamsError, ParamsFile};
use cellops_measure::metrics::Scores;
use cellops_measure::objects::{Cell, ImageMeasurement, summarised};
use cellops_unet::device::{self, Accelerator, DeviceError};
use cellops_unet::inference::{PredictConfig, Predictor, Tta};
use rayon::prelude::*;
use sha2::Digest as _;

pub use cellops_analysis::MaskReading;

/// The HTML report's file name in the output folder.
pub const REPORT_HTML: &str = "report.html";

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
            | StageError::Usage(_) => Exit::Usage,
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
    /// Wall time in seconds.
    pub seconds: f64,
}

/// One evaluated image: its record, report rows and scores, and its overlay (PNG).
struct One {
    record: ImageRecord,
    rows: Vec<Vec<(String, Cell)>>,
    scores: Option<Scores>,
    classical: Option<Scores>,
    overlay: Vec<u8>,
}

/// Analyses one image and draws its overlay.
fn evaluate_one(item: &inputs::Item, analyzer: &Analyzer, args: &Args) -> Result<One, StageError> {
    let input = Input::read(
        &item.id,
        &item.image,
        item.mask.as_deref(),
        item.truth.as_deref(),
        args.max_pixels,
    )?;
    let analysed = analyzer.analyse(&input)?;
    let drawn = analyzer.overlay(&input, &analysed);
    let Analysed {
        measurement,
        scale,
        scores,
        classical,
        ..
    } = analysed;
    let ImageMeasurement { rows, summary, .. } = measurement;
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
/// thresholds an image per core), writing overlays into `overlays_dir`. Every bad image is
/// reported (an annotation on its file), not just the first; the first one ends the stage.
fn evaluate_all(
    items: &[inputs::Item],
    analyzer: &Analyzer,
    args: &Args,
    runner: &Runner,
    overlays_dir: &Path,
) -> Result<Vec<One>, StageError> {
    let progress = Progress::new(runner, items.len() as u64, "images");
    let process = |item: &inputs::Item| -> Result<One, StageError> {
        let mut one = evaluate_one(item, analyzer, args)?;
        write(
            overlays_dir,
            &format!("{}.png", item.id),
            &std::mem::take(&mut one.overlay),
        )?;
        progress.inc();
        Ok(one)
    };
    let outcomes: Vec<Result<One, StageError>> = match analyzer.segmenter() {
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

/// Pools the images' rows, summaries and scores (the rows are moved out of `results`).
fn pool(results: &mut [One]) -> Pooled {
    let mut p = Pooled {
        objects: Table::default(),
        values: BTreeMap::new(),
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
    args: &Args,
) -> String {
    let overlays: Vec<(String, Vec<u8>)> = evaluation
        .images
        .iter()
        .take(args.html_overlays)
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
    if let Some(m) = &evaluation.metrics {
        runner.set_output("f1", &format!("{:.4}", m.at(0.5).map_or(0.0, |x| x.f1)))?;
        runner.set_output("dice", &format!("{:.4}", m.dice))?;
    }
    runner.append_summary(markdown)?;
    Ok(())
}

/// Runs the stage and reports through `runner`: find the inputs, analyse each image, write the
/// reports (into a staging folder swapped in whole).
pub fn run(args: &Args, runner: &Runner) -> Result<Finished, StageError> {
    let started = Instant::now();
    // Read once: the text that is hashed, copied and searched for lines is the text parsed.
    let file = ParamsFile::read(&args.params)?;
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
    let (segmenter, source_info, learning_curve) = segmenter(args, &file, runner)?;
    let analyzer = Analyzer::new(file.params.clone(), segmenter);
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
    let mut results = evaluate_all(&items, &analyzer, args, runner, &overlays_dir)?;
    let pooled = pool(&mut results);
    let evaluation = Evaluation {
        format: report::FORMAT.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        params: ParamsInfo {
            file: args.params.display().to_string(),
            sha256: format!("{:x}", sha2::Sha256::digest(file.text.as_bytes())),
            description: file.params.description.clone(),
            pixel_size_um: file.params.pixel_size_um,
        },
        source: source_info,
        images: results.iter().map(|r| r.record.clone()).collect(),
        totals: pooled.totals,
        metrics: pooled.scores.as_ref().map(ImageMetrics::of),
        classical: pooled.classical.as_ref().map(ImageMetrics::of),
        postprocessing: analyzer
            .postprocessing()
            .map(|applied| PostProcessingInfo::of(analyzer.segmenter().kind(), &applied)),
    };
    let diff = baseline.map(|(path, before)| baseline::diff(path, &before, &evaluation));
    let diff_md = diff.as_ref().map(|d| baseline::markdown(d, 20));
    let markdown = report::markdown(&evaluation, diff_md.as_deref(), 30);
    let page = html_page(
        &evaluation,
        &pooled.values,
        &overlays_dir,
        learning_curve,
        diff.as_ref(),
        args,
    );
    write(&out, "summary.json", &json(&evaluation))?;
    if let Some(m) = report::metrics_json(&evaluation) {
        write(&out, "metrics.json", &json(&m))?;
    }
    write(&out, "objects.csv", pooled.objects.csv().as_bytes())?;
    write(&out, "objects.json", &json(&pooled.objects.json()))?;
    write(&out, "images.csv", report::images_table(&evaluation).csv().as_bytes())?;
    write(&out, "report.md", markdown.as_bytes())?;
    write(&out, REPORT_HTML, page.as_bytes())?;
    write(&out, "params.yaml", file.text.as_bytes())?;
    if let Some(d) = &diff {
        write(&out, "diff.json", &json(d))?;
    }
    staging.commit(&args.output)?;
    report_outputs(runner, &args.output, &evaluation, &markdown)?;
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
        f.output.join(REPORT_HTML).display()
    ));
    s
}

/// Runs the stage and ends it the way every stage ends (annotation and exit code on failure).
pub fn execute(args: &Args, runner: &Runner) -> Exit {
    conclude(runner, run(args, runner), |done| (headline(done), Exit::Success))
}
