//! The nuclei model shipped in `models/nuclei/` (compiled into the binaries): it loads, verifies,
//! has the id its model card records, passes its golden check, and segments nuclei it has never seen.

use std::path::Path;

use cellops_dataset::synthetic::{Style, SynthConfig, generate_one};
use cellops_formats::params::Segmentation;
use cellops_measure::instances::InstanceConfig;
use cellops_measure::metrics::Overlap;
use cellops_unet::Device;
use cellops_unet::bundle::{self, shipped};
use cellops_unet::inference::{PredictConfig, Predictor};

#[test]
fn the_shipped_bundle_loads_verifies_and_has_the_id_of_its_model_card() {
    let b = shipped("nuclei").expect("shipped");
    let (_, meta) = bundle::load(Path::new("nuclei"), &Device::flex()).expect("loads and verifies");
    assert!(
        b.card.contains(&format!("`{}`", meta.id)),
        "the model card names bundle {}",
        meta.id
    );
    // The same files as in the repository, byte for byte.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../models/nuclei");
    assert_eq!(
        std::fs::read(dir.join("model.safetensors")).expect("weights"),
        b.weights
    );
    assert!(meta.postprocessing.is_some(), "tuned post-processing ships with it");
    // Its reference profile ships too, the file bundle.json hashes, with the validation outputs.
    assert_eq!(
        std::fs::read_to_string(dir.join("reference.json")).expect("reference"),
        b.reference
    );
    let record = meta.reference.as_ref().expect("a reference record");
    assert_eq!(
        cellops_formats::release::sha256_of(b.reference.as_bytes())
            .expect("sha")
            .1,
        record.sha256
    );
    let profile =
        cellops_formats::bundle::ReferenceProfile::from_slice(&dir.join("reference.json"), b.reference.as_bytes())
            .expect("the profile reads");
    assert_eq!((profile.images.len(), profile.predictions.len()), (490, 107));
    assert!(meta.preprocessing.scale.is_some(), "trained at a nucleus scale");
    // Its golden check passes here, as it must wherever it is served.
    let predictor = Predictor::load(&dir, &Device::flex(), PredictConfig::new()).expect("load the folder");
    let report = cellops_unet::golden::check(&predictor, &dir)
        .expect("the golden check passes")
        .expect("the shipped bundle records one");
    assert!(report.iou >= 0.99 && report.max_abs_diff <= 1e-3, "{report:?}");
}

#[test]
fn the_shipped_model_segments_synthetic_nuclei() {
    let predictor = Predictor::load(Path::new("nuclei"), &Device::flex(), PredictConfig::new()).expect("load");
    let post = predictor.meta().postprocessing.unwrap_or_default();
    let (mut tp, mut n_true, mut n_pred) = (0, 0, 0);
    for i in 0..3 {
        let cfg = SynthConfig {
            count: 3,
            seed: 21,
            size: [160, 128],
            style: Style::Fluorescence,
        };
        let (image, truth) = generate_one(&cfg, i);
        let p = predictor.predict(&image).expect("predict");
        assert!(p.scale > 0.0);
        let values = Segmentation::default().resolve(Some(1.0), Some(&post), p.scale).values;
        let config = InstanceConfig::from_params(&Segmentation::default(), &values, false);
        let (labels, _) = cellops_measure::instances::segment(p.channel(0), None, p.width, &config).expect("segment");
        let o = Overlap::new(&truth.data, &labels).expect("overlap");
        let m = o.matching(0.5).stats(0.5);
        (tp, n_true, n_pred) = (tp + m.tp, n_true + m.n_true, n_pred + m.n_pred);
    }
    let f1 = 2.0 * tp as f64 / (n_true + n_pred) as f64;
    assert!(f1 > 0.7, "F1@0.5 {f1} ({tp} of {n_true} nuclei, {n_pred} found)");
}
