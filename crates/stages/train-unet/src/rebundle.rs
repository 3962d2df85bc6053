//! `cellops bundle`: re-bundle a model — read a bundle (a folder or a shipped name), optionally
//! tune its post-processing again on a prepared dataset's validation split, score its test split
//! and write its reference profile anew from that dataset, add files (a model card), and write it
//! under this version's format with a new id.

use std::path::{Path, PathBuf};

use cellops_actions::Runner;
use cellops_dataset::layout::Subset;
use cellops_formats::bundle::{PredictionFeatures, ReferenceProfile};
use cellops_unet::bundle::{self, BundleMeta};
use cellops_unet::data::{DataError, PreparedDataset};
use cellops_unet::device::{self, Accelerator};
use cellops_unet::inference::{PredictConfig, Predictor};
use cellops_unet::size::{self, SizeModel};
use cellops_unet::training::evaluate_with;
use cellops_unet::tune;

use crate::{StageError, check_preprocessing, tuned_line};

/// Flags of `cellops bundle`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Bundle")]
pub struct RebundleArgs {
    /// The bundle to read: a folder, or a shipped name (`nuclei`).
    #[arg(long, value_name = "BUNDLE")]
    pub from: PathBuf,
    /// The folder the new bundle is written to (replaced whole, atomically).
    #[arg(long, value_name = "DIR")]
    pub output: PathBuf,
    /// A prepared dataset (a `build` output with the model's preprocessing): the post-processing
    /// is tuned again on its validation split, the test scores measured on its test split, and
    /// the reference profile written anew (its inputs' features, the model's outputs on validation).
    #[arg(long, value_name = "DIR")]
    pub dataset: Option<PathBuf>,
    /// A prepared dataset to write the reference profile from — its training and validation
    /// inputs' features, the model's outputs on its validation split under the bundle's own
    /// post-processing — without tuning or scoring again (`--dataset` also writes it).
    #[arg(long, value_name = "DIR", conflicts_with = "dataset")]
    pub profile: Option<PathBuf>,
    /// A prepared dataset built at a nucleus scale to fit the size model on: the model's style
    /// on each training source image at half, its own and double its size, regressed on the
    /// factor `build` measured on its mask (the size estimate then starts where the size model
    /// says, not at the image's own size). The source images must be where the manifest says.
    #[arg(long, value_name = "DIR")]
    pub fit_size: Option<PathBuf>,
    /// A file to add to the bundle under its own name (a model card); repeatable.
    #[arg(long = "add", value_name = "FILE")]
    pub add: Vec<PathBuf>,
    /// Device for the tuning.
    #[arg(long, value_enum, default_value_t = Accelerator::Auto)]
    pub device: Accelerator,
}

/// Files of a bundle folder that travel with it when it is re-bundled.
const CARRIED: [&str; 4] = [
    bundle::HISTORY_CSV,
    bundle::HISTORY_JSONL,
    cellops_formats::bundle::LEARNING_CURVE,
    cellops_formats::bundle::REFERENCE,
];

fn read(path: &Path) -> Result<Vec<u8>, StageError> {
    std::fs::read(path).map_err(|e| StageError::Usage(format!("{}: {e}", path.display())))
}

/// Re-bundles as [`RebundleArgs`] says and returns the new bundle's metadata.
pub fn run(args: &RebundleArgs, runner: &Runner) -> Result<BundleMeta, StageError> {
    let selected = device::select(args.device)?;
    let (model, mut meta) = bundle::load(&args.from, &selected.device)?;
    let mut extra: Vec<(String, Vec<u8>)> = Vec::new();
    if args.from.is_dir() {
        for name in CARRIED {
            if let Ok(bytes) = std::fs::read(args.from.join(name)) {
                extra.push((name.to_owned(), bytes));
            }
        }
    } else if let Some(shipped) = args.from.to_str().and_then(bundle::shipped) {
        // A shipped bundle's files travel from the binary.
        extra.push((
            cellops_formats::bundle::MODEL_CARD.to_owned(),
            shipped.card.as_bytes().to_vec(),
        ));
        extra.push((
            cellops_formats::bundle::REFERENCE.to_owned(),
            shipped.reference.as_bytes().to_vec(),
        ));
    }
    for path in &args.add {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| StageError::Usage(format!("{}: not a file", path.display())))?;
        if [
            bundle::METADATA,
            bundle::WEIGHTS,
            bundle::GOLDEN_IMAGE,
            bundle::GOLDEN_OUTPUT,
            cellops_formats::bundle::REFERENCE,
        ]
        .contains(&name.as_str())
        {
            return Err(StageError::Usage(format!(
                "--add {}: the bundle writes {name} itself",
                path.display()
            )));
        }
        extra.retain(|(n, _)| *n != name);
        extra.push((name, read(path)?));
    }
    if let Some(dir) = &args.dataset {
        let dataset = PreparedDataset::open(dir)?;
        check_preprocessing(&args.from, &meta.preprocessing, &dataset.manifest().config, dir)?;
        let targets = meta.training.targets();
        let val = dataset.load(Subset::Val, targets)?;
        let tuned = tune::tune(&model, &val, &selected.device);
        if let Some(t) = &tuned {
            runner.info(&tuned_line(t))?;
            meta.postprocessing = Some(t.values);
            meta.metrics.val_f1 = Some(t.f1);
        }
        // The reference profile is written anew: this dataset's inputs, this tuning's outputs.
        let profile = tuned.as_ref().map(|t| t.profile.as_slice()).unwrap_or_default();
        set_reference(&mut meta, &mut extra, &dataset, profile);
        match dataset.load(Subset::Test, targets) {
            Ok(test) => {
                let v = evaluate_with(
                    &model,
                    &test,
                    &selected.device,
                    &meta.postprocessing.unwrap_or_default(),
                );
                (meta.metrics.test_dice, meta.metrics.test_iou, meta.metrics.test_f1) =
                    (Some(v.dice), Some(v.iou), v.f1);
            }
            Err(DataError::EmptySplit(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(dir) = &args.profile {
        let dataset = PreparedDataset::open(dir)?;
        check_preprocessing(&args.from, &meta.preprocessing, &dataset.manifest().config, dir)?;
        let val = dataset.load(Subset::Val, meta.training.targets())?;
        let values = meta.postprocessing.unwrap_or_default();
        let profile = tune::profile_at(&model, &val, &values, &selected.device);
        runner.info(&format!(
            "reference profile: prediction features of {} validation images",
            profile.len()
        ))?;
        set_reference(&mut meta, &mut extra, &dataset, &profile);
    }
    if let Some(dir) = &args.fit_size {
        let dataset = PreparedDataset::open(dir)?;
        check_preprocessing(&args.from, &meta.preprocessing, &dataset.manifest().config, dir)?;
        meta.size_model = Some(fit_size(&model, &meta, &dataset, &selected.device, runner)?);
    }
    // The golden check is recorded again on this device, by this build.
    let golden = cellops_unet::golden::record(&model, meta.input_channels, &selected.device, selected.kind.as_str())?;
    meta.golden = Some(golden.record);
    extra.extend(golden.files.into_iter().map(|(n, b)| (n.to_owned(), b)));
    let extra: Vec<(&str, Vec<u8>)> = extra.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let meta = bundle::resave(&model, &meta, &args.output, &extra)?;
    runner.set_output("bundle", &args.output.display().to_string())?;
    runner.set_output("bundle-id", &meta.id)?;
    Ok(meta)
}

/// Fits the size model of `model` on the training split's source images of `dataset`.
fn fit_size(
    model: &cellops_unet::UNet,
    meta: &BundleMeta,
    dataset: &PreparedDataset,
    device: &cellops_unet::Device,
    runner: &Runner,
) -> Result<SizeModel, StageError> {
    let predictor = Predictor::from_parts(model.clone(), meta.clone(), device, PredictConfig::new());
    let sources = dataset.sources(Subset::Train)?;
    let mut samples = Vec::with_capacity(sources.len() * size::SAMPLE_FACTORS.len());
    for (group, (image, factor)) in sources.iter().enumerate() {
        samples.extend(size::samples_of(&predictor, image, *factor, group)?);
    }
    let fitted = size::fit(&samples).ok_or_else(|| {
        StageError::Usage(format!(
            "{}: too few training images with a nucleus scale to fit a size model ({})",
            dataset.root().display(),
            sources.len()
        ))
    })?;
    runner.info(&format!(
        "size model: {} samples of {} images, cross-validated error ×{:.2} (λ {:.3})",
        fitted.samples,
        sources.len(),
        fitted.cv_rmse_log2.exp2(),
        fitted.lambda
    ))?;
    Ok(fitted)
}

/// Replaces the bundle's reference profile with `dataset`'s training and validation inputs and
/// the model's `profile` rows (none when the manifest has no features).
fn set_reference(
    meta: &mut BundleMeta,
    extra: &mut Vec<(String, Vec<u8>)>,
    dataset: &PreparedDataset,
    profile: &[PredictionFeatures],
) {
    extra.retain(|(n, _)| n != cellops_formats::bundle::REFERENCE);
    meta.reference = None;
    if let Some(p) = ReferenceProfile::of_manifest(dataset.manifest()) {
        let (record, bytes) = p.with_predictions(profile).to_file();
        meta.reference = Some(record);
        extra.push((cellops_formats::bundle::REFERENCE.to_owned(), bytes));
    }
}

/// Runs `cellops bundle` and ends it the way every stage ends.
pub fn execute(args: &RebundleArgs, runner: &Runner) -> cellops_actions::Exit {
    cellops_actions::conclude(runner, run(args, runner), |meta| {
        (
            format!("bundle {} written to {}", meta.id, args.output.display()),
            cellops_actions::Exit::Success,
        )
    })
}
