//! From a `build` output to a batch the model takes.

use burn::prelude::*;
use cellops_dataset::config::ColourMode;
use cellops_dataset::layout::Subset;
use cellops_dataset::prepare::Quiet;
use cellops_dataset::synthetic::{Rng, Style, SynthConfig, write_dataset};
use cellops_dataset::{BuildConfig, build};
use cellops_unet::UNetConfig;
use cellops_unet::data::{AugmentConfig, DataError, PreparedDataset, batch, random_patch};

#[test]
fn prepared_dataset_feeds_the_model() {
    let tmp = tempfile::tempdir().expect("tmp");
    let raw = tmp.path().join("raw");
    let cfg = SynthConfig {
        count: 8,
        seed: 4,
        size: [48, 40],
        style: Style::Mixed,
    };
    write_dataset(&cfg, &raw).expect("synthetic");
    let prepared = tmp.path().join("prepared");
    let build_cfg = BuildConfig {
        colour: ColourMode::Grey,
        ..BuildConfig::default()
    };
    build(&raw, &prepared, &build_cfg, &Quiet).expect("build");

    let ds = PreparedDataset::open(&prepared).expect("open");
    let train = ds
        .load(Subset::Train, cellops_unet::data::Boundary::Full)
        .expect("train split");
    assert_eq!(train.len(), ds.manifest().counts.train);
    let s = &train[0];
    assert_eq!((s.channels, s.height, s.width, s.target_channels), (1, 40, 48, 2));
    assert!(s.target[..40 * 48].contains(&1), "foreground present");

    let mut rng = Rng::new(9);
    let aug = AugmentConfig::new();
    let patches: Vec<_> = train
        .iter()
        .take(3)
        .map(|s| random_patch(s, 32, &aug, &mut rng))
        .collect();
    let device = Device::flex();
    let (x, y) = batch(&patches, 1, 2, 32, &device);
    assert_eq!(x.dims(), [3, 1, 32, 32]);
    assert_eq!(y.dims(), [3, 2, 32, 32]);
    let model = UNetConfig::new().with_depth(2).with_base_channels(4).init(&device);
    assert_eq!(model.forward(x).dims(), [3, 2, 32, 32]);
}

#[test]
fn a_folder_without_manifest_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let err = PreparedDataset::open(tmp.path()).expect_err("no manifest");
    assert!(matches!(err, DataError::Manifest { .. }));
    assert!(err.to_string().contains("is this a `cellops build` output?"), "{err}");
}
