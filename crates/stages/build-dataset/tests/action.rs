//! `cellops-build` run the way a workflow runs it: inputs from `INPUT_*`, outputs and summary in the
//! files the runner names, annotations on standard output.

use std::path::{Path, PathBuf};

use cellops_dataset::io::encode_png;
use cellops_dataset::manifest::{Manifest, sha256_hex};
use cellops_dataset::synthetic::{self, Style, SynthConfig};
use cellops_dataset::{Labels, Raster};
use cellops_test_support::action::{self as harness, ActionRun};

fn run_action(dir: &Path, inputs: &[(&str, &str)]) -> ActionRun {
    let env: &[(&str, &str)] = &[];
    harness::run_action(Path::new(env!("CARGO_BIN_EXE_cellops-build")), dir, inputs, env).expect("run cellops-build")
}

fn synth(dir: &Path, count: usize) -> PathBuf {
    let data = dir.join("data");
    let cfg = SynthConfig {
        count,
        seed: 7,
        size: [96, 80],
        style: Style::Mixed,
    };
    synthetic::write_dataset(&cfg, &data).expect("synthetic dataset");
    data
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn read_manifest(out: &Path) -> Manifest {
    serde_json::from_slice(&std::fs::read(out.join("manifest.json")).expect("manifest")).expect("parse manifest")
}

fn png(path: &Path, r: &Raster) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, encode_png(r).expect("encode")).expect("write");
}

fn mask16(l: &Labels) -> Raster {
    Raster::from_u16(l.width, l.height, 1, l.data.clone())
}

#[test]
fn synthetic_dataset_builds_as_an_action() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = synth(tmp.path(), 10);
    let out = tmp.path().join("prepared");
    let run = run_action(
        tmp.path(),
        &[
            ("dataset", s(&data)),
            ("output", s(&out)),
            ("equalize", "clahe"),
            ("resize", "64x64"),
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.stdout());
    let m = read_manifest(&out);
    assert_eq!(run.outputs["manifest"], s(&out.join("manifest.json")));
    assert_eq!(run.outputs["images"], "10");
    assert_eq!(run.outputs["objects"], m.counts.objects.to_string());
    assert_eq!(run.outputs["problems"], "0");
    assert!(m.counts.objects > 20);
    assert_eq!((m.counts.train, m.counts.val, m.counts.test), (6, 2, 2));
    assert!(
        run.summary.contains("## CellOps build") && run.summary.contains("| Images | 10 (train 6 / val 2 / test 2) |"),
        "{}",
        run.summary
    );
    assert!(run.stdout().contains("::group::build "), "{}", run.stdout());
    for item in &m.items {
        assert_eq!(
            item.image_sha256,
            sha256_hex(&std::fs::read(data.join(&item.image)).expect("src"))
        );
        for o in &item.outputs {
            let bytes = std::fs::read(out.join(&o.image)).expect("output image");
            assert_eq!(o.image_sha256, sha256_hex(&bytes));
            assert_eq!(o.size, [64, 64]);
            let img = image::load_from_memory(&bytes).expect("png");
            assert_eq!((img.width(), img.height()), (64, 64));
            let mask = image::load_from_memory(&std::fs::read(out.join(&o.mask)).expect("mask")).expect("png");
            assert_eq!(mask.color(), image::ColorType::L16, "masks are 16-bit labels");
        }
    }
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, std::time::SystemTime)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let meta = std::fs::metadata(&p).expect("meta");
                files.push((
                    p.clone(),
                    std::fs::read(&p).expect("read"),
                    meta.modified().expect("mtime"),
                ));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn rebuilds_are_incremental_and_byte_identical() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = synth(tmp.path(), 6);
    let out = tmp.path().join("prepared");
    let inputs = [("dataset", s(&data)), ("output", s(&out)), ("equalize", "global")];
    assert_eq!(run_action(tmp.path(), &inputs).code(), 0);
    let before = snapshot(&out);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = run_action(tmp.path(), &inputs);
    assert_eq!(again.code(), 0);
    assert!(again.summary.contains("**Unchanged**"), "{}", again.summary);
    assert_eq!(snapshot(&out), before, "nothing rewritten, not even timestamps");

    // A fresh build elsewhere gives byte-identical files.
    let out2 = tmp.path().join("prepared2");
    assert_eq!(
        run_action(
            tmp.path(),
            &[("dataset", s(&data)), ("output", s(&out2)), ("equalize", "global")]
        )
        .code(),
        0
    );
    let strip = |v: Vec<(PathBuf, Vec<u8>, std::time::SystemTime)>, root: &Path| {
        v.into_iter()
            .map(|(p, b, _)| (p.strip_prefix(root).expect("prefix").to_owned(), b))
            .collect::<Vec<_>>()
    };
    let (a, b) = (strip(before.clone(), &out), strip(snapshot(&out2), &out2));
    let manifest = Path::new("manifest.json");
    assert_eq!(
        a.iter().filter(|f| f.0 != manifest).collect::<Vec<_>>(),
        b.iter().filter(|f| f.0 != manifest).collect::<Vec<_>>()
    );

    // Changing one source image re-prepares that item only.
    let m = read_manifest(&out);
    let victim = &m.items[0];
    let (mut img, _) = synthetic::generate_one(
        &SynthConfig {
            count: 1,
            seed: 99,
            size: [96, 80],
            style: Style::Fluorescence,
        },
        0,
    );
    img.width = 96;
    png(&data.join(&victim.image), &img);
    let third = run_action(tmp.path(), &inputs);
    assert_eq!(third.code(), 0, "{}", third.stdout());
    assert!(
        third.summary.contains("1 items prepared, 5 reused"),
        "{}",
        third.summary
    );
}

#[test]
fn broken_dataset_reports_every_problem_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = synth(tmp.path(), 4);
    let o = data.join("original");
    let m = data.join("masks");
    let good = Labels::new(8, 8, (0..64).map(|i| u16::from(i % 8 > 3)).collect());
    let grey = |v: u8| Raster::from_u8(8, 8, 1, vec![v; 64]);
    // orphan image, orphan mask
    png(&o.join("lonely.png"), &grey(10));
    png(&m.join("ghost_mask.png"), &mask16(&good));
    // lossy mask
    png(&o.join("lossy.png"), &grey(20));
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageLuma8(image::GrayImage::from_raw(8, 8, vec![255; 64]).expect("raw"))
        .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
        .expect("jpeg");
    std::fs::write(m.join("lossy_mask.jpg"), jpeg).expect("write");
    // anti-aliased mask
    png(&o.join("soft.png"), &grey(30));
    let mut soft = vec![0u8; 64];
    for (i, v) in soft.iter_mut().enumerate() {
        let (x, y) = (i % 8, i / 8);
        *v = match (x, y) {
            (2..=5, 2..=5) => 255,
            (1 | 6, 2..=5) | (2..=5, 1 | 6) => 128,
            _ => 0,
        };
    }
    png(&m.join("soft_mask.png"), &Raster::from_u8(8, 8, 1, soft));
    // size mismatch
    png(&o.join("sized.png"), &Raster::from_u8(9, 8, 1, vec![0; 72]));
    png(&m.join("sized_mask.png"), &mask16(&good));
    // truncated image
    let mut bytes = encode_png(&grey(40)).expect("encode");
    bytes.truncate(bytes.len() / 2);
    std::fs::write(o.join("cut.png"), bytes).expect("write");
    png(&m.join("cut_mask.png"), &mask16(&good));
    // duplicate of another image's content
    std::fs::copy(o.join("synth_0000.png"), o.join("twin.png")).expect("copy");
    std::fs::copy(m.join("synth_0000_mask.png"), m.join("twin_mask.png")).expect("copy");
    // too large (limit below)
    png(&o.join("huge.png"), &Raster::from_u8(200, 200, 1, vec![5; 40_000]));
    png(
        &m.join("huge_mask.png"),
        &Raster::from_u16(200, 200, 1, vec![1; 40_000]),
    );
    // not an image
    std::fs::write(o.join("notes.txt"), "hello").expect("write");

    let out = tmp.path().join("prepared");
    let run = run_action(
        tmp.path(),
        &[("dataset", s(&data)), ("output", s(&out)), ("max-pixels", "30000")],
    );
    assert_eq!(run.code(), 1, "{}", run.stdout());
    assert!(!out.exists(), "nothing is written when validation fails");
    let parent_entries: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !parent_entries.iter().any(|n| n.contains("staging")),
        "staging removed: {parent_entries:?}"
    );
    let stdout = run.stdout();
    let expect = [
        ("error", "original/lonely.png", "orphan image"),
        ("error", "masks/ghost_mask.png", "orphan mask"),
        ("error", "masks/lossy_mask.jpg", "lossy mask"),
        ("error", "masks/soft_mask.png", "anti aliased mask"),
        ("error", "masks/sized_mask.png", "size mismatch"),
        ("error", "original/cut.png", "corrupt"),
        ("error", "original/twin.png", "duplicate"),
        ("error", "original/huge.png", "too large"),
        ("warning", "original/notes.txt", "skipped"),
    ];
    for (level, file, title) in expect {
        let needle = format!("::{level} file={},title={title}::", s(&data.join(file)));
        assert!(stdout.contains(&needle), "missing {needle}\n{stdout}");
    }
    assert_eq!(run.outputs["problems"], expect.len().to_string());
    assert!(
        run.summary.contains("**Failed**: 8 errors, 1 warnings"),
        "{}",
        run.summary
    );
}

#[test]
fn config_errors_point_at_file_line_and_column() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = synth(tmp.path(), 2);
    let cfg = tmp.path().join("build.yaml");
    std::fs::write(&cfg, "colour: grey\nresize:\n  width: 64\n  hieght: 64\n").expect("write");
    let run = run_action(
        tmp.path(),
        &[
            ("dataset", s(&data)),
            ("output", s(&tmp.path().join("o"))),
            ("config", s(&cfg)),
        ],
    );
    assert_eq!(run.code(), 2);
    let stdout = run.stdout();
    let needle = format!(
        "::error file={},line=4,col=3,title=invalid build configuration::resize: unknown field `hieght`",
        s(&cfg)
    );
    assert!(stdout.contains(&needle), "{stdout}");
}

#[test]
fn missing_input_is_a_usage_error_naming_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let run = run_action(tmp.path(), &[("dataset", "x")]);
    assert_eq!(run.code(), 2);
    let stdout = run.stdout();
    assert!(
        stdout.contains("::error title=input `output`::") && stdout.contains("INPUT_OUTPUT"),
        "{stdout}"
    );
}

#[test]
fn refuses_to_replace_a_folder_it_did_not_write() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = synth(tmp.path(), 2);
    let out = tmp.path().join("precious");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::write(out.join("thesis.tex"), "years of work").expect("write");
    let run = run_action(tmp.path(), &[("dataset", s(&data)), ("output", s(&out))]);
    assert_eq!(run.code(), 1);
    assert!(run.stdout().contains("holds no manifest.json"), "{}", run.stdout());
    assert_eq!(
        std::fs::read_to_string(out.join("thesis.tex")).expect("kept"),
        "years of work"
    );
}

#[test]
fn permission_denied_is_named_and_nothing_is_written() {
    use cellops_test_support::unprivileged::{lock, open_up, read_only};
    let tmp = tempfile::tempdir().expect("tmp");
    open_up(tmp.path()).expect("open up");
    let data = synth(tmp.path(), 4);
    let run = |out: &Path| {
        let inputs = [("dataset", s(&data)), ("output", s(out))];
        harness::run_action_unprivileged(
            Path::new(env!("CARGO_BIN_EXE_cellops-build")),
            &[],
            tmp.path(),
            &inputs,
            &[],
        )
        .expect("run")
    };
    // An output folder where the user may not write.
    let ro = tmp.path().join("ro");
    std::fs::create_dir(&ro).expect("mkdir");
    read_only(&ro).expect("chmod");
    let denied = run(&ro.join("prepared"));
    assert_eq!(denied.code(), 3, "{}", denied.stdout());
    assert!(
        denied.stdout().contains(s(&ro)) && denied.stdout().contains("Permission denied"),
        "{}",
        denied.stdout()
    );
    assert_eq!(std::fs::read_dir(&ro).expect("list").count(), 0, "nothing written");
    // A mask it may not read: a problem on that file, and no output.
    let mask = data.join("masks/synth_0002_mask.png");
    lock(&mask).expect("chmod");
    let out = tmp.path().join("prepared");
    let unreadable = run(&out);
    assert_eq!(unreadable.code(), 1, "{}", unreadable.stdout());
    let line = unreadable
        .stdout()
        .lines()
        .find(|l| l.starts_with("::error file=") && l.contains("synth_0002_mask.png"))
        .map(str::to_owned);
    assert!(
        line.as_deref().is_some_and(|l| l.contains("Permission denied")),
        "{}",
        unreadable.stdout()
    );
    assert!(!out.exists(), "nothing written");
}

#[test]
fn a_full_disk_fails_the_build_by_name_and_leaves_nothing_half_written() {
    use cellops_test_support::tmpfs::Tmpfs;
    let tmp = tempfile::tempdir().expect("tmp");
    let data = synth(tmp.path(), 10);
    // 32 KiB: the prepared images and masks do not fit.
    let Some(disk) = Tmpfs::mount(tmp.path(), "full", 32 * 1024) else {
        return;
    };
    let out = disk.path.join("prepared");
    let inputs = [("dataset", s(&data)), ("output", s(&out))];
    let run = run_action(tmp.path(), &inputs);
    assert_eq!(run.code(), 3, "{}", run.stdout());
    assert!(run.stdout().contains("No space left on device"), "{}", run.stdout());
    let left: Vec<_> = std::fs::read_dir(&disk.path).expect("list").collect();
    assert!(left.is_empty(), "nothing half-written: {left:?}");
    // Space freed, the same build succeeds.
    disk.resize(16 << 20).expect("resize");
    let run = run_action(tmp.path(), &inputs);
    assert_eq!(run.code(), 0, "{}", run.stdout());
    assert_eq!(read_manifest(&out).counts.images, 10);
}

#[test]
fn a_build_killed_at_any_point_leaves_a_whole_output_and_no_leftovers() {
    use cellops_test_support::files::tree;
    let tmp = tempfile::tempdir().expect("tmp");
    let data = synth(tmp.path(), 24);
    let out = tmp.path().join("prepared");
    // Two configurations, so that every run replaces the output with other content.
    let configs: [&[(&str, &str)]; 2] = [&[("equalize", "none")], &[("equalize", "clahe"), ("tile", "48")]];
    let inputs = |c: usize| {
        let mut i = vec![("dataset", s(&data)), ("output", s(&out))];
        i.extend_from_slice(configs[c]);
        i
    };
    let mut whole = Vec::new();
    let mut full = std::time::Duration::ZERO;
    for c in 0..2 {
        let started = std::time::Instant::now();
        assert_eq!(run_action(tmp.path(), &inputs(c)).code(), 0);
        full = full.max(started.elapsed());
        whole.push(tree(&out).expect("tree"));
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_cellops-build"));
    cellops_test_support::kill::at_points(
        12,
        full,
        |i| harness::spawn_action(bin, &[], tmp.path(), &inputs(i % 2), &[]).expect("start"),
        |i| {
            let now = tree(&out).expect("the output is there, whole");
            assert!(whole.contains(&now), "killed run {i} left a mix of two builds");
        },
    );
    assert_eq!(run_action(tmp.path(), &inputs(1)).code(), 0);
    assert_eq!(tree(&out).expect("tree"), whole[1]);
    let beside: Vec<String> = std::fs::read_dir(tmp.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".prepared."))
        .collect();
    assert!(
        beside.is_empty(),
        "the killed runs' staging folders are cleaned up: {beside:?}"
    );
}
