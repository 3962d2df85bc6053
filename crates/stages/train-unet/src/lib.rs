//! The `train-unet` stage: train and validate a U-Net on a prepared dataset and write a model
//! bundle, as a library (`Args` + [`run`]) shared by the `cellops-train-unet` binary and
//! `cellops train-unet`.
//!
//! Inputs (flags, or `INPUT_*` in a workflow): `dataset` (a `build` output), `config`, `output`,
//! `device`, `epochs`, `seed`, `resume` and the overrides below. Outputs: `bundle`, `bundle-id`,
//! `val-dice`, `test-dice`, `val-f1`, `test-f1`, `best-epoch`, `epochs-run`, `stopped`. One log line per epoch; the
//! step summary gets the run's facts, a per-epoch table and a chart.
//!
//! Files: `<output>/bundle/` (the model bundle, with `history.csv`, `history.jsonl` and
//! `learning-curve.svg`) and `<output>/checkpoints/epoch-NNNN/`.

pub mod plot;
pub mod rebundle;

use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cellops_actions::{ActionsError, Annotation, Exit, Level, Runner, StageFailure, conclude, progress::Progress};
use cellops_dataset::layout::Subset;
use cellops_formats::bundle::ReferenceProfile;
use cellops_unet::bundle::{self, BundleError, BundleInfo, BundleMeta, PostProcessing};
use cellops_unet::config::Validation;
use cellops_unet::data::{Boundary, DataError, PreparedDataset, Sample};
use cellops_unet::device::{self, Accelerator, DeviceError};
use cellops_unet::training::evaluate_with;
use cellops_unet::tune::{self, Tuned};
use cellops_unet::{Checkpointing, EpochRecord, Fitted, Stop, TrainConfig, TrainError};

/// Command-line flags (and action inputs) of `train-unet`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Train")]
pub struct Args {
    /// A prepared dataset: the output folder of `cellops build` (with manifest.json).
    #[arg(long, value_name = "DIR")]
    pub dataset: PathBuf,
    /// Output folder: the bundle goes to <OUTPUT>/bundle, checkpoints to <OUTPUT>/checkpoints.
    #[arg(long, value_name = "DIR")]
    pub output: PathBuf,
    /// Training configuration (YAML or JSON; see examples/train-unet.yaml); flags below override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Device to train on.
    #[arg(long, value_enum, default_value_t = Accelerator::Auto)]
    pub device: Accelerator,
    /// Maximum number of epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Seed of initialisation, sampling and augmentation (runs on the CPU repeat exactly).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue from the newest checkpoint in <OUTPUT>/checkpoints when there is one (the
    /// configuration must be the same); without one, start afresh.
    #[arg(long)]
    pub resume: bool,
    /// Optimisation steps per epoch.
    #[arg(long, value_name = "N")]
    pub steps_per_epoch: Option<usize>,
    /// Patches per step.
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Side of the square training patches, in pixels.
    #[arg(long, value_name = "PIXELS")]
    pub patch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long, value_name = "LR")]
    pub learning_rate: Option<f64>,
    /// Epochs without a better validation Dice before stopping (0: never stop early).
    #[arg(long, value_name = "EPOCHS")]
    pub patience: Option<usize>,
    /// Validate each epoch on at most this many validation images, evenly spaced (0: all).
    #[arg(long, value_name = "N")]
    pub max_val_images: Option<usize>,
    /// U-Net depth (down-sampling steps).
    #[arg(long)]
    pub depth: Option<usize>,
    /// Channels of the first U-Net level.
    #[arg(long, value_name = "N")]
    pub base_channels: Option<usize>,
    /// Stop after the first epoch that ends past this many minutes; the bundle holds the best
    /// model so far and --resume continues the run.
    #[arg(long, value_name = "MINUTES")]
    pub max_minutes: Option<f64>,
    /// Start from this model's weights (fine-tuning): a bundle folder, or `nuclei` for the shipped
    /// nuclei model. Its architecture replaces the configuration's, and the dataset must be
    /// prepared as it expects.
    #[arg(long, value_name = "BUNDLE")]
    pub init: Option<PathBuf>,
    /// Epoch checkpoints to keep (the best epoch's is kept as well).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub keep_checkpoints: usize,
}

impl Args {
    /// The flags at their defaults with the prepared dataset and the output folder given, as the `cellops pipeline` runs the stage
    /// (fields are then set by type).
    pub fn new(dataset: &Path, output: &Path) -> Result<Self, clap::Error> {
        cellops_actions::inputs::defaults(&[("dataset", dataset.as_ref()), ("output", output.as_ref())])
    }
}

/// A training configuration file that cannot be used: file, line, column and what is wrong.
pub type ConfigFileError = cellops_formats::FileError;

/// Errors of the stage.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The configuration file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigFileError),
    /// The flags contradict each other or the dataset.
    #[error("{0}")]
    Usage(String),
    /// The dataset could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The device could not be used.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The bundle could not be written.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The golden check could not be recorded.
    #[error(transparent)]
    Golden(#[from] cellops_unet::golden::GoldenError),
    /// A dataset's image could not be run through the model (fitting the size model).
    #[error(transparent)]
    Predict(#[from] cellops_unet::inference::PredictError),
    /// The Actions runtime could not write outputs or the summary.
    #[error(transparent)]
    Actions(#[from] ActionsError),
}

impl StageFailure for StageError {
    fn exit(&self) -> Exit {
        match self {
            StageError::Config(_) | StageError::Usage(_) => Exit::Usage,
            StageError::Train(TrainError::Checkpoint(cellops_unet::checkpoint::CheckpointError::ConfigChanged {
                ..
            })) => Exit::Usage,
            StageError::Data(_) | StageError::Device(_) | StageError::Train(_) | StageError::Predict(_) => {
                Exit::Failure
            }
            StageError::Bundle(_) | StageError::Golden(_) | StageError::Actions(_) => Exit::Error,
        }
    }

    /// On the configuration file and line when the error is there.
    fn annotation(&self) -> Annotation {
        match self {
            StageError::Config(c) => Annotation::new(Level::Error, c.message.clone())
                .title("invalid training configuration")
                .file(c.path.display().to_string())
                .at(c.line, c.column),
            _ => Annotation::new(Level::Error, self.to_string()).title("train-unet"),
        }
    }
}

/// The 1-based line of the first line in `text` that defines `key` (`key:` or `"key":`).
fn line_of_key(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .position(|l| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with(&format!("{key}:")) || t.contains(&format!("\"{key}\":"))
        })
        .map(|i| i as u64 + 1)
}

/// The first key (dotted) of `given` that `known` does not have.
fn unknown_key(given: &serde_json::Value, known: &serde_json::Value, prefix: &str) -> Option<(String, String)> {
    let (serde_json::Value::Object(g), serde_json::Value::Object(k)) = (given, known) else {
        return None;
    };
    g.iter().find_map(|(name, v)| {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match k.get(name) {
            None => Some((path, name.clone())),
            Some(kv) => unknown_key(v, kv, &path),
        }
    })
}

/// Reads a training configuration (YAML, or JSON, which is YAML too). Missing fields take their
/// defaults; syntax errors, unknown fields and wrong types are errors naming the file and line.
pub fn load_config(path: &Path) -> Result<TrainConfig, ConfigFileError> {
    load_config_with_given(path).map(|(c, _)| c)
}

/// [`load_config`], also returning the fields the file set (for defaults that depend on the data).
fn load_config_with_given(path: &Path) -> Result<(TrainConfig, serde_json::Value), ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError::new(path, format!("cannot read: {e}")))?;
    parse_config_with_given(path, &text)
}

/// A training configuration's text (`path` names it in errors), checked as [`load_config`]
/// checks a file.
pub fn parse_config(path: &Path, text: &str) -> Result<TrainConfig, ConfigFileError> {
    parse_config_with_given(path, text).map(|(c, _)| c)
}

/// [`parse_config`], also returning the fields the text set.
fn parse_config_with_given(path: &Path, text: &str) -> Result<(TrainConfig, serde_json::Value), ConfigFileError> {
    let err = |line, column, message: String| ConfigFileError {
        path: path.to_owned(),
        line,
        column,
        message,
    };
    if text.trim().is_empty() {
        return Ok((TrainConfig::new(), serde_json::json!({})));
    }
    let given: serde_json::Value = serde_norway::from_str(text).map_err(|e| {
        let loc = e.location();
        let message = cellops_formats::error::parser_message(&e.to_string());
        err(
            loc.as_ref().map(|l| l.line() as u64),
            loc.as_ref().map(|l| l.column() as u64),
            message,
        )
    })?;
    if !given.is_object() {
        return Err(err(Some(1), None, "expected a mapping of settings".into()));
    }
    // Defaults through text, so f32 fields keep their shortest form.
    let mut merged: serde_json::Value = serde_json::to_string(&TrainConfig::new())
        .and_then(|t| serde_json::from_str(&t))
        .map_err(|e| err(None, None, e.to_string()))?;
    if let Some((dotted, key)) = unknown_key(&given, &merged, "") {
        let dotted = cellops_formats::error::field_path(&dotted);
        return Err(err(line_of_key(text, &key), None, format!("unknown field `{dotted}`")));
    }
    bundle::merge_json(&mut merged, given.clone());
    let cfg = serde_path_to_error::deserialize::<_, TrainConfig>(merged).map_err(|e| {
        let dotted = e.path().to_string();
        let key = dotted.rsplit('.').next().unwrap_or(&dotted).to_owned();
        let message = cellops_formats::error::parser_message(&e.inner().to_string());
        err(
            line_of_key(text, &key),
            None,
            format!("{}: {message}", cellops_formats::error::field_path(&dotted)),
        )
    })?;
    Ok((cfg, given))
}

/// The configuration from the file (if any) with the flags applied. `dataset_channels` is used
/// for the model's input channels unless the file sets them.
pub fn resolve_config(args: &Args, dataset_channels: usize) -> Result<TrainConfig, StageError> {
    let mut c = match &args.config {
        Some(p) => {
            let (mut c, given) = load_config_with_given(p)?;
            if given.pointer("/model/in_channels").is_none() {
                c.model.in_channels = dataset_channels;
            }
            c
        }
        None => TrainConfig::new().with_model(cellops_unet::UNetConfig::new().with_in_channels(dataset_channels)),
    };
    if let Some(v) = args.epochs {
        c.epochs = v;
    }
    if let Some(v) = args.seed {
        c.seed = v;
    }
    if let Some(v) = args.steps_per_epoch {
        c.steps_per_epoch = v;
    }
    if let Some(v) = args.batch_size {
        c.batch_size = v;
    }
    if let Some(v) = args.patch_size {
        c.patch_size = v;
    }
    if let Some(v) = args.learning_rate {
        c.learning_rate = v;
    }
    if let Some(v) = args.max_val_images {
        c.max_val_images = v;
    }
    if let Some(v) = args.patience {
        c.patience = v;
    }
    if let Some(v) = args.depth {
        c.model.depth = v;
    }
    if let Some(v) = args.base_channels {
        c.model.base_channels = v;
    }
    let m = &c.model;
    let problems = [
        (c.epochs == 0, "epochs must be at least 1"),
        (c.steps_per_epoch == 0, "steps_per_epoch must be at least 1"),
        (c.batch_size == 0, "batch_size must be at least 1"),
        (c.patch_size < 8, "patch_size must be at least 8"),
        (
            !(c.learning_rate > 0.0 && c.learning_rate.is_finite()),
            "learning_rate must be positive",
        ),
        (m.depth == 0 || m.depth > 8, "model.depth must be 1 to 8"),
        (m.base_channels == 0, "model.base_channels must be at least 1"),
        (
            !(1..=2).contains(&m.out_channels),
            "model.out_channels must be 1 (foreground) or 2 (foreground + boundary)",
        ),
        (!(0.0..1.0).contains(&m.dropout), "model.dropout must be in 0..1"),
    ];
    if let Some((_, message)) = problems.iter().find(|(bad, _)| *bad) {
        let origin = args
            .config
            .as_ref()
            .map_or_else(|| "flags".to_owned(), |p| p.display().to_string());
        return Err(StageError::Usage(format!("{origin}: {message}")));
    }
    if m.in_channels != dataset_channels {
        return Err(StageError::Usage(format!(
            "the model takes {} input channels but the dataset's images have {dataset_channels}",
            m.in_channels
        )));
    }
    Ok(c)
}

/// What a run produced.
#[derive(Debug)]
pub struct Finished {
    /// The bundle's metadata.
    pub meta: BundleMeta,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The training result (history, best epoch, why it stopped).
    pub fitted: Fitted,
    /// The device used.
    pub device: Accelerator,
    /// Wall time of the whole stage, in seconds.
    pub seconds: f64,
    /// The post-processing search on the validation split.
    pub tuned: Option<Tuned>,
}

struct Reporter<'a> {
    runner: &'a Runner,
    progress: Progress,
    epochs: usize,
    started: Instant,
    budget: Option<f64>,
    best: f64,
    steps_per_epoch: u64,
}

impl cellops_unet::Observer for Reporter<'_> {
    fn resumed(&mut self, history: &[EpochRecord]) {
        self.best = history
            .iter()
            .map(|r| r.val_f1.unwrap_or(r.val_dice))
            .fold(self.best, f64::max);
        self.progress.inc_by(history.len() as u64 * self.steps_per_epoch);
        let last = history.last().map_or(0, |r| r.epoch);
        self.progress.suspend(|| {
            let _ = self.runner.info(&format!(
                "resuming after epoch {last} (best validation dice so far {:.4})",
                self.best
            ));
        });
    }

    fn step(&mut self, _epoch: usize, _step: usize, _loss: f32) {
        self.progress.inc();
    }

    fn epoch(&mut self, r: &EpochRecord) -> ControlFlow<()> {
        let score = r.val_f1.unwrap_or(r.val_dice);
        let better = score > self.best;
        if better {
            self.best = score;
        }
        let f1 = r.val_f1.map(|v| format!(", f1 {v:.4}")).unwrap_or_default();
        let line = format!(
            "epoch {}/{}: loss {:.4}, val dice {:.4}, iou {:.4}{f1}{}, lr {:.2e}, {:.1} patches/s, {:.1} s",
            r.epoch,
            self.epochs,
            r.train_loss,
            r.val_dice,
            r.val_iou,
            if better { " (best)" } else { "" },
            r.learning_rate,
            r.patches_per_second,
            r.seconds
        );
        self.progress.suspend(|| {
            let _ = self.runner.info(&line);
        });
        self.progress.set_message(format!("val dice {:.4}", r.val_dice));
        match self.budget {
            Some(minutes) if self.started.elapsed().as_secs_f64() >= minutes * 60.0 => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    }
}

/// The model `--init` names (a bundle folder, or a shipped bundle such as `nuclei`), loaded for
/// training; its architecture replaces the configuration's. The dataset must be prepared as the
/// model expects (colour, normalisation, polarity, scale), or fine-tuning would teach it another
/// input.
fn initial_model(
    args: &Args,
    cfg: &mut TrainConfig,
    manifest: &cellops_dataset::manifest::Manifest,
    device: &cellops_unet::Device,
) -> Result<Option<(cellops_unet::UNet, String)>, StageError> {
    let Some(spec) = &args.init else {
        return Ok(None);
    };
    let (model, meta) = bundle::load(spec, &device.clone().autodiff())?;
    check_preprocessing(spec, &meta.preprocessing, &manifest.config, &args.dataset)?;
    if meta.model.in_channels != cfg.model.in_channels {
        return Err(StageError::Usage(format!(
            "--init {}: the model takes {} channel(s) but the dataset has {}",
            spec.display(),
            meta.model.in_channels,
            cfg.model.in_channels
        )));
    }
    cfg.model = meta.model;
    Ok(Some((model, meta.id)))
}

/// Refuses a dataset prepared otherwise than the model `spec` expects (`model`): fine-tuning or
/// tuning on it would teach or measure another input.
pub(crate) fn check_preprocessing(
    spec: &Path,
    model: &cellops_dataset::BuildConfig,
    dataset: &cellops_dataset::BuildConfig,
    dataset_dir: &Path,
) -> Result<(), StageError> {
    let differs = [
        ("colour", model.colour != dataset.colour),
        ("normalize", model.normalize != dataset.normalize),
        ("polarity", model.polarity != dataset.polarity),
        ("scale", model.scale != dataset.scale),
        ("resize", model.resize != dataset.resize),
        ("equalize", model.equalize != dataset.equalize),
    ];
    match differs.iter().find(|(_, d)| *d) {
        Some((field, _)) => Err(StageError::Usage(format!(
            "{}: the model was trained on images prepared with another `{field}` than {}; \
             build the dataset with the model's preprocessing ({})",
            spec.display(),
            dataset_dir.display(),
            serde_json::to_string(model).unwrap_or_default()
        ))),
        None => Ok(()),
    }
}

/// Runs the stage: reads the dataset, trains with checkpoints, measures the best model on the
/// test split, writes the bundle, and reports through `runner`.
pub fn run(args: &Args, runner: &Runner) -> Result<Finished, StageError> {
    let started = Instant::now();
    let dataset = PreparedDataset::open(&args.dataset)?;
    let channels = dataset_channels(&dataset, args)?;
    let mut cfg = resolve_config(args, channels)?;
    let selected = device::select(args.device)?;
    let (init, parent) = initial_model(args, &mut cfg, dataset.manifest(), &selected.device)?.unzip();
    let boundary = cfg.targets();
    let (train, val) = load_train_val(args, runner, &dataset, boundary, channels)?;
    runner.info(&format!(
        "device: {} ({} epochs of {} steps, batch {}×{}², U-Net depth {}, {} base channels)",
        selected.kind.as_str(),
        cfg.epochs,
        cfg.steps_per_epoch,
        cfg.batch_size,
        cfg.patch_size,
        cfg.model.depth,
        cfg.model.base_channels
    ))?;
    let checkpoints = Checkpointing {
        dir: Some(args.output.join("checkpoints")),
        keep: args.keep_checkpoints,
        resume: args.resume,
    };
    let progress = Progress::new(runner, (cfg.epochs * cfg.steps_per_epoch) as u64, "steps");
    let mut reporter = Reporter {
        runner,
        progress: progress.clone(),
        epochs: cfg.epochs,
        started,
        budget: args.max_minutes,
        best: f64::NEG_INFINITY,
        steps_per_epoch: cfg.steps_per_epoch as u64,
    };
    let fitted = {
        let _group = runner.group("train")?;
        let r = cellops_unet::fit_from(init, &cfg, &train, &val, &selected.device, &checkpoints, &mut reporter);
        progress.finish();
        r?
    };
    drop(train);
    let tuned = {
        let _group = runner.group("tune post-processing on validation")?;
        tune::tune(&fitted.model, &val, &selected.device)
    };
    if let Some(t) = &tuned {
        runner.info(&tuned_line(t))?;
    }
    let post = tuned.as_ref().map(|t| t.values);
    let test = evaluate_test(&dataset, boundary, &fitted.model, &selected.device, post)?;
    let golden = cellops_unet::golden::record(
        &fitted.model,
        cfg.model.in_channels,
        &selected.device,
        selected.kind.as_str(),
    )?;
    let info = BundleInfo {
        training: cfg.clone(),
        preprocessing: dataset.manifest().config.clone(),
        dataset_manifest_sha256: manifest_sha256(&args.dataset)?,
        git_commit: cellops_actions::git_commit(),
        history: fitted.history.clone(),
        best_epoch: fitted.best_epoch,
        test,
        postprocessing: post,
        parent,
        golden: Some(golden.record),
        reference: None,
    };
    let bundle_dir = args.output.join(cellops_formats::bundle::DIR);
    let svg = plot::learning_curve_svg(&fitted.history, fitted.best_epoch);
    let mut extra = vec![(cellops_formats::bundle::LEARNING_CURVE, svg.into_bytes())];
    extra.extend(golden.files);
    // What the training and validation inputs looked like, for the Monitor stage.
    let profile = tuned.as_ref().map(|t| t.profile.as_slice()).unwrap_or_default();
    let reference = ReferenceProfile::of_manifest(dataset.manifest()).map(|p| p.with_predictions(profile).to_file());
    let info = match reference {
        Some((record, bytes)) => {
            extra.push((cellops_formats::bundle::REFERENCE, bytes));
            BundleInfo {
                reference: Some(record),
                ..info
            }
        }
        None => info,
    };
    let meta = bundle::save(&fitted.model, &info, &bundle_dir, &extra)?;
    let finished = Finished {
        meta,
        bundle: bundle_dir,
        fitted,
        device: selected.kind,
        seconds: started.elapsed().as_secs_f64(),
        tuned,
    };
    set_outputs(runner, &finished)?;
    runner.append_summary(&summary(&finished, args))?;
    Ok(finished)
}

/// The number of channels of the dataset's images (those of its first output file).
fn dataset_channels(dataset: &PreparedDataset, args: &Args) -> Result<usize, StageError> {
    dataset
        .manifest()
        .items
        .iter()
        .flat_map(|i| i.outputs.iter())
        .map(|o| usize::from(o.channels))
        .next()
        .ok_or_else(|| StageError::Usage(format!("{}: the dataset has no images", args.dataset.display())))
}

/// Loads the training and validation splits (in a log group) and reports their sizes; a dataset
/// without validation images is a usage error.
fn load_train_val(
    args: &Args,
    runner: &Runner,
    dataset: &PreparedDataset,
    boundary: Boundary,
    channels: usize,
) -> Result<(Vec<Sample>, Vec<Sample>), StageError> {
    let _group = runner.group(&format!("load {}", args.dataset.display()))?;
    let train = dataset.load(Subset::Train, boundary)?;
    let val = dataset.load(Subset::Val, boundary).map_err(|e| match e {
        DataError::EmptySplit(_) => StageError::Usage(format!(
            "{}: the dataset has no validation images; build it with --val-fraction (e.g. 0.2)",
            args.dataset.display()
        )),
        e => e.into(),
    })?;
    runner.info(&format!(
        "dataset {}: {} training and {} validation images, {channels} channel(s)",
        args.dataset.display(),
        train.len(),
        val.len()
    ))?;
    Ok((train, val))
}

/// The model's scores on the test split with the post-processing `post` (the default without);
/// `None` when the dataset has no test split.
fn evaluate_test(
    dataset: &PreparedDataset,
    boundary: Boundary,
    model: &cellops_unet::UNet,
    device: &cellops_unet::Device,
    post: Option<PostProcessing>,
) -> Result<Option<Validation>, StageError> {
    match dataset.load(Subset::Test, boundary) {
        Ok(samples) => Ok(Some(evaluate_with(model, &samples, device, &post.unwrap_or_default()))),
        Err(DataError::EmptySplit(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The SHA-256 of the manifest of the dataset at `dataset_dir`.
fn manifest_sha256(dataset_dir: &Path) -> Result<String, StageError> {
    Ok(cellops_dataset::manifest::sha256_hex(
        &std::fs::read(dataset_dir.join(cellops_formats::dataset::MANIFEST)).map_err(|e| DataError::Manifest {
            path: dataset_dir.join(cellops_formats::dataset::MANIFEST),
            message: e.to_string(),
        })?,
    ))
}

/// Sets the stage's outputs from a finished run.
fn set_outputs(runner: &Runner, finished: &Finished) -> Result<(), StageError> {
    let m = &finished.meta.metrics;
    runner.set_output("bundle", &finished.bundle.display().to_string())?;
    runner.set_output("bundle-id", &finished.meta.id)?;
    runner.set_output("val-dice", &format!("{:.4}", m.val_dice))?;
    if let Some(d) = m.test_dice {
        runner.set_output("test-dice", &format!("{d:.4}"))?;
    }
    if let Some(f) = m.val_f1 {
        runner.set_output("val-f1", &format!("{f:.4}"))?;
    }
    if let Some(f) = m.test_f1 {
        runner.set_output("test-f1", &format!("{f:.4}"))?;
    }
    runner.set_output("best-epoch", &m.best_epoch.to_string())?;
    runner.set_output("epochs-run", &m.epochs_run.to_string())?;
    runner.set_output("stopped", stop_name(finished.fitted.stop))?;
    Ok(())
}

fn stop_name(s: Stop) -> &'static str {
    match s {
        Stop::Completed => "completed",
        Stop::EarlyStopped => "early-stopped",
        Stop::Interrupted => "interrupted",
    }
}

/// The Markdown report of a run: facts, a Mermaid chart of validation Dice and loss, and the
/// per-epoch table.
pub fn summary(f: &Finished, args: &Args) -> String {
    let m = &f.meta.metrics;
    let cfg = &f.meta.training;
    let mut s = String::from("## CellOps train-unet\n\n");
    let how = match f.fitted.stop {
        Stop::Completed => "all epochs ran".to_owned(),
        Stop::EarlyStopped => format!("stopped early: no better validation Dice for {} epochs", cfg.patience),
        Stop::Interrupted => "stopped at the time budget; `--resume` continues the run".to_owned(),
    };
    let _ = writeln!(
        s,
        "✅ **Validation Dice {:.4}** at epoch {} of {} ({how})\n",
        m.val_dice, m.best_epoch, m.epochs_run
    );
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| Bundle | `{}` (id `{}`) |", f.bundle.display(), f.meta.id);
    let _ = writeln!(s, "| Dataset | `{}` |", args.dataset.display());
    let _ = writeln!(
        s,
        "| Model | U-Net depth {}, {} base channels, {:?} norm, {:?} upsampling, {} → {} channels ({}) |",
        cfg.model.depth,
        cfg.model.base_channels,
        cfg.model.norm,
        cfg.model.upsample,
        cfg.model.in_channels,
        cfg.model.out_channels,
        f.meta.outputs.join(", ")
    );
    let _ = writeln!(
        s,
        "| Training | {} steps/epoch, batch {} × {}², AdamW lr {} (cosine), seed {} |",
        cfg.steps_per_epoch, cfg.batch_size, cfg.patch_size, cfg.learning_rate, cfg.seed
    );
    let _ = writeln!(s, "| Device | {} |", f.device.as_str());
    let f1 = |v: Option<f64>| v.map(|f| format!(", F1@0.5 {f:.4}")).unwrap_or_default();
    let _ = writeln!(
        s,
        "| Validation | Dice {:.4}, IoU {:.4}{} |",
        m.val_dice,
        m.val_iou,
        f1(m.val_f1)
    );
    if let (Some(d), Some(i)) = (m.test_dice, m.test_iou) {
        let _ = writeln!(s, "| Test | Dice {d:.4}, IoU {i:.4}{} |", f1(m.test_f1));
    }
    if let Some(t) = &f.tuned {
        let _ = writeln!(
            s,
            "| Post-processing (tuned on validation) | {}: F1@0.5 {:.4} (defaults {:.4}) |",
            t.values, t.f1, t.default_f1
        );
    }
    if let Some(e) = f.fitted.resumed_from {
        let _ = writeln!(s, "| Resumed | after epoch {e} |");
    }
    let _ = writeln!(s, "| Time | {:.1} s |", f.seconds);
    let h = &f.fitted.history;
    if !h.is_empty() {
        let list =
            |v: &dyn Fn(&EpochRecord) -> f64| h.iter().map(|r| format!("{:.4}", v(r))).collect::<Vec<_>>().join(", ");
        let epochs = h.iter().map(|r| r.epoch.to_string()).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            s,
            "\n```mermaid\nxychart-beta\n    title \"Validation Dice (line) and training loss (bars)\"\n    x-axis \"epoch\" [{epochs}]\n    y-axis 0 --> {:.2}\n    bar [{}]\n    line [{}]\n```",
            h.iter().map(|r| r.train_loss).fold(1.0, f64::max).min(10.0),
            list(&|r| r.train_loss),
            list(&|r| r.val_dice)
        );
        let _ = writeln!(
            s,
            "\n| Epoch | Loss | Val Dice | Val IoU | LR | Patches/s | Seconds |\n|---:|---:|---:|---:|---:|---:|---:|"
        );
        const SHOWN: usize = 60;
        if h.len() > SHOWN {
            let _ = writeln!(s, "| … | | | | | | |");
        }
        for r in h.iter().skip(h.len().saturating_sub(SHOWN)) {
            let mark = if r.epoch == m.best_epoch { " **best**" } else { "" };
            let _ = writeln!(
                s,
                "| {}{mark} | {:.4} | {:.4} | {:.4} | {:.2e} | {:.1} | {:.1} |",
                r.epoch, r.train_loss, r.val_dice, r.val_iou, r.learning_rate, r.patches_per_second, r.seconds
            );
        }
    }
    s
}

/// The log line of the post-processing search.
pub(crate) fn tuned_line(t: &Tuned) -> String {
    format!(
        "post-processing tuned on validation ({} settings tried): {}: F1@0.5 {:.4} (defaults {:.4})",
        t.trials.len(),
        t.values,
        t.f1,
        t.default_f1
    )
}

/// The human outcome line.
pub fn headline(f: &Finished) -> String {
    let m = &f.meta.metrics;
    let test = m.test_dice.map(|d| format!(", test dice {d:.4}")).unwrap_or_default();
    let test_f1 = m.test_f1.map(|v| format!(" f1 {v:.4}")).unwrap_or_default();
    let val_f1 = m.val_f1.map(|v| format!(" f1 {v:.4}")).unwrap_or_default();
    format!(
        "trained {} epochs ({}) on {}: val dice {:.4}{val_f1} at epoch {}{test}{test_f1}; bundle {} in {}",
        m.epochs_run,
        stop_name(f.fitted.stop),
        f.device.as_str(),
        m.val_dice,
        m.best_epoch,
        f.meta.id,
        f.bundle.display()
    )
}

/// Runs the stage and reports everything through `runner`, returning the process exit code: what
/// both `cellops-train-unet` and `cellops train-unet` do.
pub fn execute(args: &Args, runner: &Runner) -> Exit {
    conclude(runner, run(args, runner), |done| (headline(done), Exit::Success))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("train.yaml");
        std::fs::write(&p, text).expect("write");
        (dir, p)
    }

    #[test]
    fn config_files_take_defaults_and_reject_unknown_fields() {
        let (_d, p) = write("epochs: 3\nmodel:\n  depth: 2\n  norm: Group\n");
        let c = load_config(&p).expect("valid");
        assert_eq!((c.epochs, c.model.depth, c.batch_size), (3, 2, 8));
        let (_d, p) = write("epochs: 3\nmodel:\n  depth: 2\n  widht: 4\n");
        let e = load_config(&p).expect_err("unknown");
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.to_string().contains("model.widht"), "{e}");
        let (_d, p) = write("epochs: many\n");
        let e = load_config(&p).expect_err("type");
        assert_eq!(e.line, Some(1), "{e}");
        assert!(e.to_string().contains("train.yaml:1: epochs: invalid type"), "{e}");
        let (_d, p) = write("epochs: [1\n");
        let e = load_config(&p).expect_err("syntax");
        assert!(e.line.is_some() && e.column.is_some(), "{e}");
        let (_d, p) = write("{\"epochs\": 2, \"loss\": {\"dice_weight\": 0.5}}");
        assert_eq!(load_config(&p).expect("json").loss.dice_weight, 0.5);
    }

    #[test]
    fn the_example_configuration_is_valid_and_states_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../examples/train-unet.yaml");
        let c = load_config(&example).expect("example loads");
        let json = |c: &TrainConfig| serde_json::to_string(c).expect("json");
        assert_eq!(json(&c), json(&TrainConfig::new()));
    }
}
