//! The drift scenario on the real service: a model trained on synthetic fluorescence images
//! (its bundle carrying the reference profile `train-unet` wrote) serves five image types, each
//! sent its own images through HTTP — new images from the same source, brightened ones, blurred
//! ones, H&E-looking ones, and too few to judge. `GET /v2/monitor` must alert on the drifted
//! types and name their features, stay quiet on the fresh one, say "not enough data" for the
//! short window, expose the verdicts in `/metrics`, and read the evidence back after a restart.

mod support;

use std::path::{Path, PathBuf};

use cellops_dataset::Raster;
use cellops_dataset::io::encode_png;
use cellops_dataset::synthetic::{Style, SynthConfig, write_dataset};
use cellops_test_support::images::{box_blur, brighten};
use serde_json::Value;
use support::{get, record, repo, serve};

const SIZE: u32 = 64;
const WINDOW: usize = 40;
const TINY: &str =
    "model:\n  depth: 2\n  base_channels: 4\n  norm: Group\npatch_size: 32\nbatch_size: 2\nsteps_per_epoch: 3\n";

/// Trains a tiny model on 120 synthetic fluorescence images and returns its bundle.
fn trained_bundle(root: &Path) -> PathBuf {
    use cellops_dataset::config::{BuildConfig, ColourMode, Resize};
    let raw = root.join("raw");
    let cfg = SynthConfig {
        count: 120,
        seed: 1,
        size: [SIZE, SIZE],
        style: Style::Fluorescence,
    };
    write_dataset(&cfg, &raw).expect("synthetic");
    let mut build = BuildConfig {
        colour: ColourMode::Grey,
        ..BuildConfig::default()
    };
    build.split.val_fraction = 0.25;
    build.split.test_fraction = 0.1;
    build.resize = None::<Resize>;
    let prepared = root.join("prepared");
    cellops_dataset::build(&raw, &prepared, &build, &cellops_dataset::prepare::Quiet).expect("build");
    let config = root.join("train.yaml");
    std::fs::write(&config, TINY).expect("config");
    let mut args = cellops_train_unet::Args::new(&prepared, &root.join("run")).expect("args");
    args.config = Some(config);
    args.epochs = Some(2);
    args.device = cellops_unet::device::Accelerator::Cpu;
    let runner = cellops_actions::Runner::new(
        &cellops_actions::Env::default(),
        Box::new(std::io::sink()),
        Box::new(std::io::sink()),
    );
    cellops_train_unet::run(&args, &runner).expect("train").bundle
}

/// A release serving the bundle under five image types (copies of the DAPI parameter file).
fn release(root: &Path, bundle: &Path, types: &[&str]) -> PathBuf {
    let r = root.join("release-drift");
    let models = r.join("models/nuclei");
    std::fs::create_dir_all(&models).expect("dir");
    for entry in std::fs::read_dir(bundle).expect("bundle") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), models.join(entry.file_name())).expect("copy");
    }
    std::fs::create_dir_all(r.join("cell-params")).expect("dir");
    for t in types {
        std::fs::copy(
            repo().join("cell-params/fluorescence-dapi.yaml"),
            r.join(format!("cell-params/{t}.yaml")),
        )
        .expect("params");
    }
    record(&r, "release-drift");
    r
}

fn images(style: Style, seed: u64, count: usize) -> Vec<Raster> {
    cellops_test_support::images::synthetic(style, seed, count, SIZE)
}

/// Measures every image as `image_type` through HTTP.
fn send(base: &str, image_type: &str, images: &[Raster]) {
    for (k, image) in images.iter().enumerate() {
        let png = encode_png(image).expect("png");
        let url = format!("{base}/v2/models/nuclei/measure?params={image_type}&name=i{k}");
        let (status, body) = support::post(&url, &png);
        assert_eq!(status, 200, "{body}");
    }
}

fn type_report<'a>(report: &'a Value, image_type: &str) -> &'a Value {
    report["drift"]
        .as_array()
        .expect("drift")
        .iter()
        .find(|t| t["image_type"] == image_type)
        .unwrap_or_else(|| panic!("no {image_type} in {report}"))
}

fn drifted(report: &Value, image_type: &str) -> Vec<String> {
    type_report(report, image_type)["drifted"]
        .as_array()
        .expect("drifted")
        .iter()
        .map(|v| v.as_str().expect("name").to_owned())
        .collect()
}

#[test]
fn the_service_alerts_on_drifted_image_types_and_names_their_features() {
    let tmp = tempfile::tempdir().expect("tmp");
    let bundle = trained_bundle(tmp.path());
    let types = ["fresh", "bright", "blurred", "he", "few"];
    let r = release(tmp.path(), &bundle, &types);
    let state = tmp.path().join("state");
    let state_arg = state.display().to_string();
    let server = serve(&r, &["--state-dir", &state_arg]);
    let base = server.base.clone();

    let fresh = images(Style::Fluorescence, 2, WINDOW);
    send(&base, "fresh", &fresh);
    send(&base, "bright", &fresh.iter().map(brighten).collect::<Vec<_>>());
    send(&base, "blurred", &fresh.iter().map(box_blur).collect::<Vec<_>>());
    send(&base, "he", &images(Style::He, 3, WINDOW));
    send(&base, "few", &fresh[..5]);

    let (status, report) = get(&format!("{base}/v2/monitor"));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["persisted"], true);
    let fresh_report = type_report(&report, "fresh");
    assert_eq!(fresh_report["window_images"], WINDOW);
    assert_ne!(
        fresh_report["status"], "alert",
        "new images from the same source: {fresh_report}"
    );
    assert!(
        fresh_report["reference_images"].as_u64().is_some_and(|n| n >= 100),
        "{fresh_report}"
    );
    // The prediction features were judged against the model's own validation outputs.
    let nuclei = fresh_report["features"]
        .as_array()
        .expect("features")
        .iter()
        .find(|f| f["name"] == "nuclei")
        .expect("nuclei");
    assert_eq!(nuclei["kind"], "prediction");
    assert!(nuclei["score"].is_number(), "{nuclei}");

    assert_eq!(type_report(&report, "bright")["status"], "alert");
    let moved = drifted(&report, "bright");
    assert!(
        moved.iter().any(|f| f == "mean") && moved.iter().any(|f| f == "p99"),
        "brightened: {moved:?}"
    );
    assert!(drifted(&report, "blurred").iter().any(|f| f == "focus"), "blurred");
    assert_eq!(type_report(&report, "he")["status"], "alert", "H&E-looking images");
    let few = type_report(&report, "few");
    assert_eq!(
        (few["status"].as_str(), few["window_images"].as_u64()),
        (Some("not_enough_data"), Some(5))
    );
    assert!(few["drifted"].as_array().is_some_and(Vec::is_empty));

    // The same verdicts as gauges.
    let metrics = ureq::get(&format!("{base}/metrics"))
        .call()
        .expect("metrics")
        .into_string()
        .expect("text");
    assert!(
        metrics.contains("cellops_drift_status{image_type=\"bright\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cellops_drift_status{image_type=\"few\"} -1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cellops_slo_burn_rate{objective=\"availability\",window=\"5m\"} 0.0"),
        "{metrics}"
    );

    // A restart reads the window back from the state folder; no pixels were kept there.
    drop(server);
    let again = serve(&r, &["--state-dir", &state_arg]);
    let (_, after) = get(&format!("{}/v2/monitor", again.base));
    assert_eq!(type_report(&after, "bright")["status"], "alert", "{after}");
    assert_eq!(after["evidence"]["window_rows"], 4 * WINDOW + 5);
    let kept: String = std::fs::read_dir(&state)
        .expect("state")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("text"))
        .collect();
    assert_eq!(kept.lines().count(), 4 * WINDOW + 5);
    assert!(kept.lines().all(|l| l.len() < 1_000), "rows are features, not images");
}
