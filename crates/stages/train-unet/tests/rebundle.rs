//! `cellops bundle`: a trained bundle re-bundled with `--profile` keeps its weights and
//! post-processing and gets a reference profile computed from the dataset; `--add` cannot
//! overwrite the files the bundle writes itself; a dataset prepared otherwise is refused.

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
        add: Vec::new(),
        device: Accelerator::Cpu,
    }
}

#[test]
fn a_profile_is_added_without_tuning_again() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dataset = prepared(tmp.path(), "prepared", ColourMode::Grey);
    let config = tmp.path().join("train.yaml");
    std::fs::write(
        &config,
        "model:\n  depth: 2\n  base_channels: 4\n  norm: Group\npatch_size: 32\nbatch_size: 2\nsteps_per_epoch: 2\n",
    )
    .expect("config");
    let mut train = cellops_train_unet::Args::new(&dataset, &tmp.path().join("run")).expect("args");
    train.config = Some(config);
    train.epochs = Some(1);
    train.device = Accelerator::Cpu;
    let trained = cellops_train_unet::run(&train, &quiet()).expect("train");
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
