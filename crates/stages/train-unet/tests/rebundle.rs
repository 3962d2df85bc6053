//! `cellops bundle`: a trained bundle re-bundled with `--profile` keeps its weights and
//! post-processing and gets a reference profile computed from the dataset; `--add` cannot
//! overwrite the files the bundle writes itself; a dataset prepared otherwise is refused;
//! `--fit-size` fits a size model on a dataset built at a nucleus scale, which the size
//! estimate then starts from.

use std::path::{Path, PathBuf};

use cellops_actions::{Env, Runner};
use cellops_dataset::config::{ColourMode, Resize};
use cellops_dataset::synthetic::{self, Style, SynthConfig};
use cellops_dataset::{BuildConfig, prepare::Quiet};
use cellops_train_unet::rebundle::{self, RebundleArgs};
use cellops_unet::device::Accelerator;

fn quiet() -> Runner {
    Runner::new(&Env::default(), Box::new(std::io::sink()), Box::new(std::io::sink()))
}

/// Twelve 48×48 synthetic images built with `colour`.
fn prepared(root: &Path, name: &str, colour: ColourMode) -> PathBuf {
    prepared_with(root, name, colour, None)
}

/// [`prepared`], rescaled to nuclei of `diameter` pixels when given.
fn prepared_with(root: &Path, name: &str, colour: ColourMode, diameter: Option<f64>) -> PathBuf {
    let raw = root.join("raw");
    if !raw.exists() {
        let cfg = SynthConfig {
            count: 12,
            seed: 3,
            size: [48, 48],
            style: Style::Fluorescence,
        };
        synthetic::write_dataset(&cfg, &raw).expect("synthetic");
    }
    let mut cfg = BuildConfig {
        colour,
        ..BuildConfig::default()
    };
    cfg.split.val_fraction = 0.25;
    cfg.split.test_fraction = 0.25;
    cfg.resize = None::<Resize>;
    cfg.scale = diameter.map(|diameter_px| cellops_formats::build::NucleusScale { diameter_px });
    let out = root.join(name);
    cellops_dataset::build(&raw, &out, &cfg, &Quiet).expect("build");
    out
}

fn args(from: &Path, output: &Path) -> RebundleArgs {
    RebundleArgs {
        from: from.to_owned(),
        output: output.to_owned(),
        dataset: None,
        profile: None,
        fit_size: None,
        add: Vec::new(),
        device: Accelerator::Cpu,
    }
}

/// A bundle trained for one tiny epoch on `dataset`.
fn trained(tmp: &Path, dataset: &Path) -> cellops_train_unet::Finished {
    let config = tmp.join("train.yaml");
    std::fs::write(
        &config,
        "model:\n  depth: 2\n  base_channels: 4\n  norm: Group\npatch_size: 32\nbatch_size: 2\nsteps_per_epoch: 2\n",
    )
    .expect("config");
    let mut train = cellops_train_unet::Args::new(dataset, &tmp.join("run")).expect("args");
    train.config = Some(config);
    train.epochs = Some(1);
    train.device = Accelerator::Cpu;
    cellops_train_unet::run(&train, &quiet()).expect("train")
}

#[test]
fn a_profile_is_added_without_tuning_again() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dataset = prepared(tmp.path(), "prepared", ColourMode::Grey);
    let trained = trained(tmp.path(), &dataset);
    // A bundle without a profile, as bundles were before it (and with another post-processing).
    let bare = tmp.path().join("bare");
    let mut meta = trained.meta.clone();
    meta.reference = None;
    let mut post = meta.postprocessing.unwrap_or_default();
    post.min_area_px = 7.0;
    meta.postprocessing = Some(post);
    let device = cellops_unet::Device::flex();
    let (model, _) = cellops_unet::bundle::load(&trained.bundle, &device).expect("load");
    cellops_unet::bundle::resave(&model, &meta, &bare, &[]).expect("resave");
    assert!(!bare.join("reference.json").exists());

    let out = tmp.path().join("profiled");
    let mut a = args(&bare, &out);
    a.profile = Some(dataset.clone());
    let written = rebundle::run(&a, &quiet()).expect("rebundle");
    assert_eq!(
        written.postprocessing,
        Some(post),
        "the bundle's own post-processing stays"
    );
    assert_eq!(written.weights_sha256, meta.weights_sha256);
    let record = written.reference.clone().expect("a reference record");
    let bytes = std::fs::read(out.join("reference.json")).expect("reference.json");
    let profile =
        cellops_formats::bundle::ReferenceProfile::from_slice(&out.join("reference.json"), &bytes).expect("profile");
    assert_eq!(record.images, profile.images.len());
    let val = profile
        .images
        .iter()
        .filter(|i| i.split == cellops_formats::dataset::Subset::Val)
        .count();
    assert_eq!(profile.predictions.len(), val);
    assert!(val > 0 && profile.prediction_values("nuclei").len() == val);
    cellops_unet::bundle::load(&out, &device).expect("the new bundle loads and its profile verifies");

    // The profile is the bundle's to write.
    let mut a = args(&out, &tmp.path().join("refused"));
    a.add = vec![out.join("reference.json")];
    let err = rebundle::run(&a, &quiet()).expect_err("--add reference.json");
    assert!(err.to_string().contains("writes reference.json itself"), "{err}");
    // A dataset prepared otherwise (RGB) does not describe this model's inputs.
    let rgb = prepared(tmp.path(), "rgb", ColourMode::Rgb);
    let mut a = args(&out, &tmp.path().join("refused"));
    a.profile = Some(rgb);
    assert!(rebundle::run(&a, &quiet()).is_err(), "another preprocessing");
    assert!(!tmp.path().join("refused").exists(), "nothing written");
}

#[test]
fn a_size_model_is_fitted_on_the_training_sources_and_starts_the_estimate() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dataset = prepared_with(tmp.path(), "scaled", ColourMode::Grey, Some(12.0));
    let trained = trained(tmp.path(), &dataset);
    assert!(trained.meta.size_model.is_none(), "training fits none");
    let out = tmp.path().join("sized");
    let mut a = args(&trained.bundle, &out);
    a.fit_size = Some(dataset.clone());
    let written = rebundle::run(&a, &quiet()).expect("rebundle");
    let size = written.size_model.clone().expect("a size model");
    let train_items = cellops_unet::data::PreparedDataset::open(&dataset)
        .expect("open")
        .manifest()
        .counts
        .train;
    assert_eq!(size.samples, 3 * train_items, "three sizes of every training image");
    assert!(size.cv_rmse_log2.is_finite() && size.lambda > 0.0, "{size:?}");
    let device = cellops_unet::Device::flex();
    let predictor =
        cellops_unet::inference::Predictor::load(&out, &device, cellops_unet::inference::PredictConfig::new())
            .expect("loads");
    assert_eq!(predictor.meta().size_model.as_ref(), Some(&size));
    let image = cellops_dataset::io::decode(
        &std::fs::read(
            tmp.path()
                .join("raw/original")
                .read_dir()
                .expect("raw")
                .next()
                .expect("an image")
                .expect("entry")
                .path(),
        )
        .expect("read"),
        u64::MAX,
    )
    .expect("decode")
    .raster;
    let start = predictor.start_factor(&image, 20.0).expect("start");
    let style = predictor.size_style(&image, 1.0).expect("style");
    let expected = size.log_factor(&style).expect("the style fits the size model").exp();
    let max = cellops_dataset::ops::scale::MAX_FACTOR;
    assert!(
        (start - expected.clamp(1.0 / max, max)).abs() < 1e-9,
        "{start} vs {expected}"
    );
    // The bundle's size model is what the estimate starts from: without it, the image's own size.
    let mut bare = predictor.meta().clone();
    bare.size_model = None;
    let (model, _) = cellops_unet::bundle::load(&out, &device).expect("load");
    let config = cellops_unet::inference::PredictConfig::new();
    let plain = cellops_unet::inference::Predictor::from_parts(model, bare, &device, config);
    assert_eq!(plain.start_factor(&image, 20.0).expect("start"), 1.0);

    // A dataset built without a nucleus scale has nothing to fit on.
    let unscaled = prepared(tmp.path(), "unscaled", ColourMode::Grey);
    let bare = trained_unscaled_refused(tmp.path(), &unscaled);
    assert!(bare.contains("size model") && bare.contains("unscaled"), "{bare}");
}

/// The error of `--fit-size` on a dataset without a nucleus scale, for a bundle trained on it.
fn trained_unscaled_refused(tmp: &Path, dataset: &Path) -> String {
    let run = tmp.join("run-unscaled");
    let mut train = cellops_train_unet::Args::new(dataset, &run).expect("args");
    train.config = Some(tmp.join("train.yaml"));
    train.epochs = Some(1);
    train.device = Accelerator::Cpu;
    let trained = cellops_train_unet::run(&train, &quiet()).expect("train");
    let mut a = args(&trained.bundle, &tmp.join("refused-size"));
    a.fit_size = Some(dataset.to_owned());
    let err = rebundle::run(&a, &quiet()).expect_err("no scale").to_string();
    assert!(!tmp.join("refused-size").exists(), "nothing written");
    err
}
