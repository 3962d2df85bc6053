//! `cellops-train-unet` run the way a workflow runs it: a real prepared dataset (synthetic nuclei
//! through `build`), inputs from `INPUT_*`, outputs and summary in the runner's files.

use std::path::{Path, PathBuf};

use cellops_dataset::config::{ColourMode, Resize};
use cellops_dataset::synthetic::{self, Style, SynthConfig};
use cellops_dataset::{BuildConfig, prepare::Quiet};
use cellops_test_support::action::{self as harness, ActionRun};

fn run_action(dir: &Path, inputs: &[(&str, &str)]) -> ActionRun {
    let env: &[(&str, &str)] = &[("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")];
    harness::run_action(Path::new(env!("CARGO_BIN_EXE_cellops-train-unet")), dir, inputs, env)
        .expect("run cellops-train-unet")
}

/// Eight 64×64 grey synthetic images, built with a 4/2/2 split.
fn prepared(root: &Path) -> PathBuf {
    let raw = root.join("raw");
    synthetic::write_dataset(
        &SynthConfig {
            count: 8,
            seed: 7,
            size: [64, 64],
            style: Style::Fluorescence,
        },
        &raw,
    )
    .expect("synthetic");
    let mut cfg = BuildConfig {
        colour: ColourMode::Grey,
        ..BuildConfig::default()
    };
    cfg.split.val_fraction = 0.25;
    cfg.split.test_fraction = 0.25;
    cfg.resize = None::<Resize>;
    let out = root.join("prepared");
    cellops_dataset::build(&raw, &out, &cfg, &Quiet).expect("build");
    out
}

const TINY: &str =
    "model:\n  depth: 2\n  base_channels: 4\n  norm: Group\npatch_size: 32\nbatch_size: 2\nsteps_per_epoch: 3\n";

#[test]
fn trains_writes_a_bundle_and_resumes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dataset = prepared(tmp.path());
    let config = tmp.path().join("train.yaml");
    std::fs::write(&config, TINY).expect("config");
    let output = tmp.path().join("run");
    let (d, c, o) = (
        dataset.display().to_string(),
        config.display().to_string(),
        output.display().to_string(),
    );
    let inputs = [
        ("dataset", d.as_str()),
        ("config", c.as_str()),
        ("output", o.as_str()),
        ("device", "cpu"),
        ("epochs", "2"),
        ("resume", "true"),
    ];
    let first = run_action(tmp.path(), &inputs);
    assert_eq!(first.code(), 0, "{}", first.stdout());
    // One log line per epoch.
    assert!(first.stdout().contains("epoch 1/2:") && first.stdout().contains("epoch 2/2:"));
    let bundle = PathBuf::from(&first.outputs["bundle"]);
    assert_eq!(bundle, output.join("bundle"));
    // The reference profile: one row per training and validation image, hashed in bundle.json.
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("bundle.json")).expect("bundle.json")).expect("json");
    let reference = std::fs::read(bundle.join("reference.json")).expect("reference.json");
    let profile: serde_json::Value = serde_json::from_slice(&reference).expect("json");
    let rows = profile["images"].as_array().expect("rows");
    assert!(
        !rows.is_empty() && rows.iter().all(|r| r["split"] != "test"),
        "{profile}"
    );
    assert_eq!(meta["reference"]["images"].as_u64(), Some(rows.len() as u64));
    // And one row of prediction features per validation image, named.
    let val_rows = rows.iter().filter(|r| r["split"] == "val").count();
    let predictions = profile["predictions"].as_array().expect("prediction rows");
    assert_eq!(predictions.len(), val_rows, "{profile}");
    assert_eq!(profile["prediction_features"][0], "nuclei");
    assert!(
        predictions
            .iter()
            .all(|r| r.as_array().is_some_and(|v| v.len() == 5 && v[0].is_number())),
        "{profile}"
    );
    let sha = cellops_formats::release::sha256_of(reference.as_slice())
        .expect("sha")
        .1;
    assert_eq!(meta["reference"]["sha256"].as_str(), Some(sha.as_str()));
    // A changed profile is refused when the bundle is loaded.
    let copy = output.join("bundle-edited");
    std::fs::create_dir_all(&copy).expect("copy");
    for entry in std::fs::read_dir(&bundle).expect("bundle") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), copy.join(entry.file_name())).expect("copy");
    }
    std::fs::write(copy.join("reference.json"), [&reference[..], b" "].concat()).expect("edit");
    let device = cellops_unet::Device::flex();
    let err = cellops_unet::bundle::load(&copy, &device).expect_err("an edited profile");
    assert!(err.to_string().contains("reference.json"), "{err}");
    cellops_unet::bundle::load(&bundle, &device).expect("the bundle as written loads");
    let id = &first.outputs["bundle-id"];
    assert_eq!(id.len(), 16);
    let val: f64 = first.outputs["val-dice"].parse().expect("number");
    assert!((0.0..=1.0).contains(&val));
    assert!(first.outputs.contains_key("test-dice"), "the dataset has a test split");
    assert_eq!(first.outputs["stopped"], "completed");
    for f in [
        "model.safetensors",
        "bundle.json",
        "history.csv",
        "history.jsonl",
        "learning-curve.svg",
    ] {
        assert!(bundle.join(f).is_file(), "{f}");
    }
    let csv = std::fs::read_to_string(bundle.join("history.csv")).expect("csv");
    assert_eq!(csv.lines().count(), 3, "header + one line per epoch");
    // The bundle loads, with the facts the run used.
    let (_, meta) = cellops_unet::bundle::load(&bundle, &burn_free_device()).expect("load");
    assert_eq!(&meta.id, id);
    assert_eq!(meta.input_channels, 1);
    assert_eq!(
        meta.git_commit.as_deref(),
        Some("0123456789abcdef0123456789abcdef01234567")
    );
    assert_eq!(meta.training.model.depth, 2);
    assert!(first.summary.contains("## CellOps train-unet") && first.summary.contains("| 2"));
    assert!(first.summary.contains("xychart-beta"));

    // Resuming a finished run trains nothing more and writes the same bundle.
    let again = run_action(tmp.path(), &inputs);
    assert_eq!(again.code(), 0, "{}", again.stdout());
    assert!(again.stdout().contains("resuming after epoch 2"), "{}", again.stdout());
    assert_eq!(&again.outputs["bundle-id"], id);

    // Resuming with another configuration is refused and names the field.
    let mut changed = inputs.to_vec();
    changed.push(("learning-rate", "0.01"));
    let refused = run_action(tmp.path(), &changed);
    assert_eq!(refused.code(), 2, "{}", refused.stdout());
    assert!(refused.stdout().contains("::error") && refused.stdout().contains("learning_rate"));
}

/// The CPU device, through the crate's own selection.
fn burn_free_device() -> cellops_unet::Device {
    cellops_unet::device::select(cellops_unet::device::Accelerator::Cpu)
        .expect("cpu")
        .device
}

#[test]
fn bad_inputs_fail_with_annotations() {
    let tmp = tempfile::tempdir().expect("tmp");
    // A configuration with a typo: an annotation on its line.
    let config = tmp.path().join("train.yaml");
    std::fs::write(&config, "epochs: 2\nmodel:\n  dept: 3\n").expect("config");
    let dataset = prepared(tmp.path());
    let (d, c) = (dataset.display().to_string(), config.display().to_string());
    let run = run_action(
        tmp.path(),
        &[("dataset", &d), ("config", &c), ("output", "out"), ("device", "cpu")],
    );
    assert_eq!(run.code(), 2);
    let line = run
        .stdout()
        .lines()
        .find(|l| l.starts_with("::error"))
        .unwrap_or_default()
        .to_owned();
    assert!(line.contains("line=3") && line.contains("model.dept"), "{line}");
    assert!(!tmp.path().join("out").exists(), "nothing written");

    // Not a prepared dataset.
    let run = run_action(
        tmp.path(),
        &[("dataset", "/nonexistent"), ("output", "out"), ("device", "cpu")],
    );
    assert_eq!(run.code(), 1);
    assert!(run.stdout().contains("manifest.json"), "{}", run.stdout());

    // A device this build lacks.
    if !cfg!(feature = "cuda") {
        let run = run_action(tmp.path(), &[("dataset", &d), ("output", "out"), ("device", "cuda")]);
        assert_eq!(run.code(), 1);
        assert!(run.stdout().contains("no cuda support"), "{}", run.stdout());
    }
}

/// The inputs of a two-epoch TINY training of `dataset` into `output`.
fn tiny_inputs(root: &Path, dataset: &Path, output: &Path) -> Vec<(&'static str, String)> {
    let config = root.join("train.yaml");
    std::fs::write(&config, TINY).expect("config");
    vec![
        ("dataset", dataset.display().to_string()),
        ("config", config.display().to_string()),
        ("output", output.display().to_string()),
        ("device", "cpu".into()),
        ("epochs", "2".into()),
    ]
}

#[test]
fn permission_denied_on_the_output_fails_by_name_before_training() {
    use cellops_test_support::unprivileged::{open_up, read_only};
    let tmp = tempfile::tempdir().expect("tmp");
    open_up(tmp.path()).expect("open up");
    let dataset = prepared(tmp.path());
    let ro = tmp.path().join("ro");
    std::fs::create_dir(&ro).expect("mkdir");
    read_only(&ro).expect("chmod");
    let inputs = tiny_inputs(tmp.path(), &dataset, &ro.join("run"));
    let bin = Path::new(env!("CARGO_BIN_EXE_cellops-train-unet"));
    let run = harness::run_action_unprivileged(bin, &[], tmp.path(), &harness::as_inputs(&inputs), &[]).expect("run");
    assert_ne!(run.code(), 0, "{}", run.stdout());
    assert!(
        run.stdout().contains(&ro.display().to_string()) && run.stdout().contains("Permission denied"),
        "{}",
        run.stdout()
    );
    assert!(
        !run.stdout().contains("epoch 1/2:"),
        "refused before training: {}",
        run.stdout()
    );
    assert_eq!(std::fs::read_dir(&ro).expect("list").count(), 0, "nothing written");
}

#[test]
fn a_full_disk_while_training_fails_by_name_and_leaves_no_bundle() {
    use cellops_test_support::tmpfs::Tmpfs;
    let tmp = tempfile::tempdir().expect("tmp");
    let dataset = prepared(tmp.path());
    let Some(disk) = Tmpfs::mount(tmp.path(), "full", 24 * 1024) else {
        return;
    };
    let output = disk.path.join("run");
    let owned = tiny_inputs(tmp.path(), &dataset, &output);
    let inputs = harness::as_inputs(&owned);
    let run = run_action(tmp.path(), &inputs);
    assert_ne!(run.code(), 0, "{}", run.stdout());
    assert!(run.stdout().contains("No space left on device"), "{}", run.stdout());
    assert!(!output.join("bundle").exists(), "no half-written bundle");
    let staged: Vec<String> = cellops_test_support::files::tree(&disk.path)
        .expect("list")
        .into_keys()
        .filter(|k| k.contains("staging"))
        .collect();
    assert!(staged.is_empty(), "no staging folder left: {staged:?}");
    // Space freed, the same command with `resume` finishes the run.
    disk.resize(64 << 20).expect("resize");
    let mut again = inputs.clone();
    again.push(("resume", "true"));
    let run = run_action(tmp.path(), &again);
    assert_eq!(run.code(), 0, "{}", run.stdout());
    assert!(output.join("bundle/bundle.json").exists());
}

#[test]
fn training_killed_at_any_point_resumes_to_the_bundle_of_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dataset = prepared(tmp.path());
    let run_inputs = |output: &Path| {
        let mut i = tiny_inputs(tmp.path(), &dataset, output);
        i.retain(|(k, _)| *k != "epochs");
        i.extend([("epochs", "6".to_owned()), ("resume", "true".to_owned())]);
        i
    };
    let run = |output: &Path| run_action(tmp.path(), &harness::as_inputs(&run_inputs(output)));
    // The uninterrupted run.
    let straight = tmp.path().join("straight");
    let started = std::time::Instant::now();
    let whole = run(&straight);
    let full = started.elapsed();
    assert_eq!(whole.code(), 0, "{}", whole.stdout());
    // The same run killed at twelve points, resumed each time.
    let killed = tmp.path().join("killed");
    let bin = Path::new(env!("CARGO_BIN_EXE_cellops-train-unet"));
    let env = [("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")];
    cellops_test_support::kill::at_points(
        12,
        full,
        |_| {
            harness::spawn_action(bin, &[], tmp.path(), &harness::as_inputs(&run_inputs(&killed)), &env).expect("start")
        },
        |i| {
            let bundle = killed.join("bundle");
            if bundle.exists() {
                cellops_unet::bundle::load(&bundle, &burn_free_device())
                    .unwrap_or_else(|e| panic!("kill {i} left a bundle that does not load: {e}"));
            }
        },
    );
    let last = run(&killed);
    assert_eq!(last.code(), 0, "{}", last.stdout());
    assert_eq!(last.outputs["bundle-id"], whole.outputs["bundle-id"]);
    let weights = |dir: &Path| std::fs::read(dir.join("bundle/model.safetensors")).expect("weights");
    assert!(weights(&killed) == weights(&straight), "the weights equal bit for bit");
}
