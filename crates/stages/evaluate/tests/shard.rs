//! `evaluate --shard I/N` on every share, then `evaluate merge`, against one unsharded run:
//! the same files, byte for byte — and merges that cannot be right are refused.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use cellops_dataset::synthetic::{self, Style, SynthConfig};
use cellops_test_support::action::{self as harness, ActionRun};
use cellops_test_support::files::assert_same;

const BIN: &str = env!("CARGO_BIN_EXE_cellops-evaluate");

/// The classical line (threshold + watershed) scored against ground truth: imperfect, so pooled
/// counts, medians and per-image figures all matter.
const THRESHOLD: &str = "description: sharded\npixel_size_um: 0.5\nsegmentation:\n  method: threshold\n  threshold: { method: otsu }\nclasses:\n  size:\n    - { name: small, max_area_um2: 30 }\n    - { name: large }\n";

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Seven 96×96 synthetic fluorescence images in the paper's layout, and the parameter file.
fn setup(root: &Path) -> (PathBuf, PathBuf) {
    let data = root.join("data");
    synthetic::write_dataset(
        &SynthConfig {
            count: 7,
            seed: 23,
            size: [96, 96],
            style: Style::Fluorescence,
        },
        &data,
    )
    .expect("synthetic");
    let params = root.join("p.yaml");
    std::fs::write(&params, THRESHOLD).expect("params");
    (data, params)
}

fn evaluate(root: &Path, inputs: &[(&str, &str)]) -> ActionRun {
    harness::run_action(Path::new(BIN), root, inputs, &[]).expect("run")
}

fn merge(root: &Path, shards: &[PathBuf], inputs: &[(&str, &str)]) -> ActionRun {
    let mut args: Vec<&OsStr> = vec![OsStr::new("merge")];
    args.extend(shards.iter().map(|p| p.as_os_str()));
    harness::run_action_with_args(Path::new(BIN), &args, root, inputs, &[]).expect("run")
}

/// Runs every share of `count` and returns their output folders.
fn shards(root: &Path, tag: &str, count: usize, inputs: &[(&str, &str)]) -> Vec<PathBuf> {
    (1..=count)
        .map(|index| {
            let out = root.join(format!("{tag}-shard-{index}-of-{count}"));
            let spec = format!("{index}/{count}");
            let (out_s, mut with) = (s(&out), inputs.to_vec());
            with.extend([("output", out_s.as_str()), ("shard", spec.as_str())]);
            let run = evaluate(root, &with);
            assert_eq!(run.code(), 0, "shard {spec}: {}", run.stdout());
            assert!(out.join("shard.cbor").is_file());
            out
        })
        .collect()
}

#[test]
fn merged_shards_equal_the_unsharded_run_byte_for_byte() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let (data, params) = setup(root);
    let (data_s, params_s) = (s(&data), s(&params));
    let common = [
        ("images", data_s.as_str()),
        ("params", params_s.as_str()),
        ("labels", "true"),
        ("geojson", "true"),
    ];
    // A baseline from other parameters, so the merge's diff is not empty.
    let other = root.join("other.yaml");
    std::fs::write(&other, format!("{THRESHOLD}filters:\n  min_area_um2: 20\n")).expect("params");
    let base = root.join("base");
    let run = evaluate(
        root,
        &[("images", &data_s), ("params", &s(&other)), ("output", &s(&base))],
    );
    assert_eq!(run.code(), 0, "{}", run.stdout());

    let whole = root.join("whole");
    let mut with = common.to_vec();
    let (whole_s, base_s) = (s(&whole), s(&base));
    with.extend([("output", whole_s.as_str()), ("baseline", base_s.as_str())]);
    let unsharded = evaluate(root, &with);
    assert_eq!(unsharded.code(), 0, "{}", unsharded.stdout());
    assert!(!whole.join("shard.cbor").exists());
    let f1: f64 = unsharded.outputs["f1"].parse().expect("f1");
    assert!(f1 > 0.3 && f1 < 1.0, "an imperfect segmentation to pool: F1 {f1}");

    // 9 shares of 7 images: two shards measure nothing and still merge.
    for count in [1, 2, 3, 7, 9] {
        let mut dirs = shards(root, "t", count, &common);
        dirs.reverse(); // any order
        let merged = root.join(format!("merged-{count}"));
        let run = merge(root, &dirs, &[("output", &s(&merged)), ("baseline", &base_s)]);
        assert_eq!(run.code(), 0, "merge of {count}: {}", run.stdout());
        assert_same(&merged, &whole);
        assert_eq!(run.outputs["f1"], unsharded.outputs["f1"]);
        assert_eq!(run.outputs["nuclei"], unsharded.outputs["nuclei"]);
        assert_eq!(run.summary, unsharded.summary, "the step summary too");
    }
}

#[test]
fn a_model_run_merges_byte_for_byte() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let (data, _) = setup(root);
    let params = root.join("model.yaml");
    std::fs::write(&params, "description: x\npixel_size_um: 0.5\n").expect("params");
    let (data_s, params_s) = (s(&data), s(&params));
    let common = [
        ("images", data_s.as_str()),
        ("params", params_s.as_str()),
        ("model", "nuclei"),
        ("device", "cpu"),
    ];
    let whole = root.join("whole");
    let mut with = common.to_vec();
    let whole_s = s(&whole);
    with.push(("output", whole_s.as_str()));
    let run = evaluate(root, &with);
    assert_eq!(run.code(), 0, "{}", run.stdout());
    let dirs = shards(root, "m", 3, &common);
    let merged = root.join("merged");
    let run = merge(root, &dirs, &[("output", &s(&merged))]);
    assert_eq!(run.code(), 0, "{}", run.stdout());
    assert_same(&merged, &whole);
}

#[test]
fn merges_that_cannot_be_right_are_refused_and_write_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let (data, params) = setup(root);
    let (data_s, params_s) = (s(&data), s(&params));
    let common = [("images", data_s.as_str()), ("params", params_s.as_str())];
    let dirs = shards(root, "a", 3, &common);
    let out = root.join("merged");
    let refused = |shards: &[PathBuf], needle: &str| {
        let run = merge(root, shards, &[("output", &s(&out))]);
        assert_eq!(run.code(), 2, "{}", run.stdout());
        assert!(run.stdout().contains(needle), "{needle} in {}", run.stdout());
        assert!(!out.exists(), "nothing written");
    };
    refused(&dirs[..2], "shards 3 of 3 are missing");
    refused(
        &[dirs[0].clone(), dirs[1].clone(), dirs[1].clone()],
        "shard 2/3 given twice",
    );
    // A share of another run: other parameters.
    let other = root.join("other.yaml");
    std::fs::write(&other, THRESHOLD.replace("otsu", "triangle")).expect("params");
    let foreign = shards(root, "b", 3, &[("images", &data_s), ("params", &s(&other))]);
    refused(
        &[dirs[0].clone(), dirs[1].clone(), foreign[2].clone()],
        "the parameter file differs",
    );
    // A different split of the same run.
    let halves = shards(root, "c", 2, &common);
    refused(&[dirs[0].clone(), halves[1].clone()], "the number of shards differs");
    // A folder that is no shard, and a record that is not one.
    refused(
        &[root.join("data"), dirs[1].clone(), dirs[2].clone()],
        "is not the output of an `evaluate --shard` run",
    );
    let broken = root.join("broken");
    std::fs::create_dir_all(&broken).expect("dir");
    std::fs::write(
        broken.join("shard.cbor"),
        b"root:$6$saltsalt$hashhash:19000:0:99999:7:::",
    )
    .expect("write");
    let run = merge(root, &[broken], &[("output", &s(&out))]);
    assert_eq!(run.code(), 2);
    assert!(run.stdout().contains("not a shard record"), "{}", run.stdout());
    assert!(!run.stdout().contains("hashhash"), "{}", run.stdout());
    // An overlay that is a link out of its shard's folder is not read.
    #[cfg(unix)]
    {
        let overlays = dirs[0].join("overlays");
        let first = std::fs::read_dir(&overlays)
            .expect("overlays")
            .next()
            .expect("one")
            .expect("entry")
            .path();
        std::fs::remove_file(&first).expect("remove");
        std::os::unix::fs::symlink(root.join("p.yaml"), &first).expect("link");
        refused(&dirs, "outside");
    }
}
