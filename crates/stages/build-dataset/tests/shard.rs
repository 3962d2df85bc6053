//! `build --shard I/N` on every share, then `build merge`, against one unsharded build: the same
//! files and manifest, byte for byte — and merges that cannot be right are refused.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use cellops_dataset::synthetic::{self, Style, SynthConfig};
use cellops_formats::dataset::{PAPER_IMAGES, PAPER_MASK_SUFFIX, PAPER_MASKS};
use cellops_test_support::action::{self as harness, ActionRun};
use cellops_test_support::files::assert_same;

const BIN: &str = env!("CARGO_BIN_EXE_cellops-build");

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Eleven 96×80 synthetic images in the paper's layout, and a stray file that every share warns
/// about.
fn setup(root: &Path) -> PathBuf {
    let data = root.join("data");
    let cfg = SynthConfig {
        count: 11,
        seed: 5,
        size: [96, 80],
        style: Style::Mixed,
    };
    synthetic::write_dataset(&cfg, &data).expect("synthetic");
    std::fs::write(data.join(PAPER_IMAGES).join("notes.txt"), "not an image").expect("stray");
    data
}

/// CLAHE and 48-pixel tiles: several prepared pairs per item.
const FLAGS: &[(&str, &str)] = &[("equalize", "clahe"), ("tile", "48"), ("tile-overlap", "8")];

fn build(root: &Path, data: &Path, out: &Path, extra: &[(&str, &str)]) -> ActionRun {
    let mut inputs = vec![("dataset", s(data)), ("output", s(out))];
    inputs.extend_from_slice(FLAGS);
    inputs.extend_from_slice(extra);
    harness::run_action(Path::new(BIN), root, &inputs, &[]).expect("run")
}

fn merge(root: &Path, shards: &[PathBuf], out: &Path) -> ActionRun {
    let mut args: Vec<&OsStr> = vec![OsStr::new("merge")];
    args.extend(shards.iter().map(|p| p.as_os_str()));
    harness::run_action_with_args(Path::new(BIN), &args, root, &[("output", s(out))], &[]).expect("run")
}

/// Builds every share of `count` and returns their output folders.
fn shards(root: &Path, data: &Path, tag: &str, count: usize, extra: &[(&str, &str)]) -> Vec<PathBuf> {
    (1..=count)
        .map(|index| {
            let out = root.join(format!("{tag}-{index}-of-{count}"));
            let shard = format!("{index}/{count}");
            let mut inputs = extra.to_vec();
            inputs.push(("shard", shard.as_str()));
            let run = build(root, data, &out, &inputs);
            assert_eq!(run.code(), 0, "shard {shard}: {}", run.stdout());
            assert!(
                run.stdout().contains(&format!("shard {shard}: built")),
                "{}",
                run.stdout()
            );
            out
        })
        .collect()
}

#[test]
fn merged_shards_equal_one_build_byte_for_byte() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let data = setup(root);
    let whole = root.join("whole");
    let one = build(root, &data, &whole, &[]);
    assert_eq!(one.code(), 0, "{}", one.stdout());
    assert_eq!(one.outputs["problems"], "1", "the stray file: {}", one.stdout());
    let mut three = Vec::new();
    for n in [1, 2, 3, 7] {
        let dirs = shards(root, &data, "shard", n, &[]);
        if n == 3 {
            three.clone_from(&dirs);
        }
        let merged = root.join(format!("merged-{n}"));
        let run = merge(root, &dirs, &merged);
        assert_eq!(run.code(), 0, "{n} shards: {}", run.stdout());
        assert_same(&merged, &whole);
        for key in ["images", "objects", "problems"] {
            assert_eq!(run.outputs[key], one.outputs[key], "{key} of {n} shards");
        }
        assert_eq!(run.stdout().matches("notes.txt").count(), 1, "{}", run.stdout());
    }
    // A shard built again unchanged writes nothing; merging into the merged folder replaces it.
    let run = build(root, &data, &three[0], &[("shard", "1/3")]);
    assert!(
        run.stdout().contains("shard 1/3: 4 images up to date"),
        "{}",
        run.stdout()
    );
    let run = merge(root, &three, &root.join("merged-1"));
    assert_eq!(run.code(), 0, "{}", run.stdout());
    assert_same(&root.join("merged-1"), &whole);
}

#[test]
fn merges_that_cannot_be_right_are_refused_and_write_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let data = setup(root);
    let dirs = shards(root, &data, "shard", 3, &[]);
    let out = root.join("merged");
    let refused = |shards: &[PathBuf], why: &str| {
        let run = merge(root, shards, &out);
        assert_eq!(run.code(), 2, "{}", run.stdout());
        assert!(run.stdout().contains(why), "wanted {why:?}: {}", run.stdout());
        assert!(!out.exists(), "nothing written");
    };
    refused(&dirs[..2], "shards 3 of 3 are missing");
    refused(&[dirs[0].clone(), dirs[1].clone(), dirs[1].clone()], "given twice");
    let other = shards(root, &data, "seeded", 3, &[("seed", "99")]);
    refused(
        &[dirs[0].clone(), dirs[1].clone(), other[2].clone()],
        "the build configuration differs",
    );
    let whole = root.join("whole");
    assert_eq!(build(root, &data, &whole, &[]).code(), 0);
    refused(&[whole], "is not the output of a `build --shard` run");
    std::fs::write(dirs[1].join("shard.cbor"), b"\xff\x00not cbor").expect("corrupt");
    refused(&dirs, "does not decode");

    // A prepared file changed after its shard was built.
    let dirs = shards(root, &data, "fresh", 3, &[]);
    let manifest: cellops_dataset::manifest::Manifest =
        serde_json::from_slice(&std::fs::read(dirs[2].join("manifest.json")).expect("manifest")).expect("json");
    let changed = dirs[2].join(&manifest.items[0].outputs[0].mask);
    std::fs::write(&changed, b"changed").expect("change");
    refused(&dirs, "its sha256 is not the one its manifest gives");
}

#[test]
fn an_image_repeated_in_another_share_fails_the_merge_as_it_fails_one_build() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let data = setup(root);
    // `synth_0000_copy` sorts right after `synth_0000`: with equal sizes, the two land in different
    // shares of two.
    for (dir, suffix) in [(PAPER_IMAGES, ""), (PAPER_MASKS, PAPER_MASK_SUFFIX)] {
        let from = data.join(dir).join(format!("synth_0000{suffix}.png"));
        std::fs::copy(&from, data.join(dir).join(format!("synth_0000_copy{suffix}.png"))).expect("copy");
    }
    let whole = build(root, &data, &root.join("whole"), &[]);
    assert_eq!(whole.code(), 1, "{}", whole.stdout());
    let dirs = shards(root, &data, "shard", 2, &[]);
    let out = root.join("merged");
    let run = merge(root, &dirs, &out);
    assert_eq!(run.code(), 1, "{}", run.stdout());
    assert!(!out.exists(), "nothing written");
    let line = |r: &ActionRun| {
        r.stdout()
            .lines()
            .find(|l| l.contains("same content as"))
            .map(str::to_owned)
    };
    assert!(line(&run).is_some(), "{}", run.stdout());
    assert_eq!(line(&run), line(&whole), "the same problem on the same file");
}

#[test]
fn the_action_expands_its_merge_input_s_globs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let data = setup(root);
    let whole = root.join("whole");
    assert_eq!(build(root, &data, &whole, &[]).code(), 0);
    shards(root, &data, "shard", 3, &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../scripts/run-stage.sh");
    let run = |merge: &str, out: &Path| {
        let inputs = [("merge", merge), ("output", s(out))];
        harness::run_action(
            &script,
            root,
            &inputs,
            &[("CELLOPS_BIN", BIN), ("CELLOPS_STAGE", "build")],
        )
        .expect("run")
    };
    let glob = format!("{}/shard-*-of-3\n", root.display());
    let merged = root.join("merged");
    let done = run(&glob, &merged);
    assert_eq!(done.code(), 0, "{}", done.stdout());
    assert_same(&merged, &whole);
    let none = run(&format!("{}/nothing-*", root.display()), &root.join("none"));
    assert_eq!(none.code(), 2, "{}", none.stdout());
    assert!(
        none.stdout()
            .contains("::error title=build merge::no shard folder matches"),
        "{}",
        none.stdout()
    );
}
