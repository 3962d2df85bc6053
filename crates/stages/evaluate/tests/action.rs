//! `cellops-evaluate` run the way a workflow runs it: synthetic nuclei in the paper's layout,
//! inputs from `INPUT_*`, outputs, annotations and the step summary in the runner's files.

use std::path::{Path, PathBuf};

use cellops_dataset::synthetic::{self, Style, SynthConfig};
use cellops_dataset::{BuildConfig, Raster, io};
use cellops_test_support::action::{self as harness, ActionRun};
use cellops_test_support::geojson::polygon_area;

fn run_action(dir: &Path, inputs: &[(&str, &str)]) -> ActionRun {
    harness::run_action(Path::new(env!("CARGO_BIN_EXE_cellops-evaluate")), dir, inputs, &[]).expect("run")
}

/// Six 96×96 synthetic fluorescence images in the paper's layout.
fn dataset(root: &Path) -> PathBuf {
    let dir = root.join("data");
    synthetic::write_dataset(
        &SynthConfig {
            count: 6,
            seed: 11,
            size: [96, 96],
            style: Style::Fluorescence,
        },
        &dir,
    )
    .expect("synthetic");
    dir
}

fn params(root: &Path, name: &str, text: &str) -> PathBuf {
    let p = root.join(name);
    std::fs::write(&p, text).expect("params");
    p
}

const PLAIN: &str = "description: synthetic nuclei\npixel_size_um: 0.5\nsegmentation:\n  separation: { method: none }\nclasses:\n  size:\n    - { name: small, max_area_um2: 30 }\n    - { name: large }\n";

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn measuring_the_ground_truth_scores_perfectly_and_writes_every_report() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = dataset(tmp.path());
    let p = params(tmp.path(), "p.yaml", PLAIN);
    let out = tmp.path().join("eval");
    let run = run_action(
        tmp.path(),
        &[
            ("images", &s(&data)),
            ("masks", &s(&data.join("masks"))),
            ("params", &s(&p)),
            ("output", &s(&out)),
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.stdout());
    assert_eq!(run.outputs["f1"], "1.0000");
    assert_eq!(run.outputs["dice"], "1.0000");
    assert_eq!(run.outputs["images"], "6");
    let nuclei: usize = run.outputs["nuclei"].parse().expect("count");
    assert!(nuclei > 6);
    for f in [
        "summary.json",
        "metrics.json",
        "objects.csv",
        "objects.json",
        "images.csv",
        "report.md",
        "report.html",
        "params.yaml",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    assert_eq!(std::fs::read_dir(out.join("overlays")).expect("overlays").count(), 6);
    let csv = std::fs::read_to_string(out.join("objects.csv")).expect("csv");
    assert_eq!(csv.lines().count(), nuclei + 1);
    let header = csv.lines().next().unwrap_or_default();
    for col in [
        "AreaShape_Area",
        "AreaShape_Area_um2",
        "AreaShape_FormFactor",
        "AreaShape_MinFeretDiameter",
        "Intensity_MeanIntensity_Grey",
        "Classify_Size",
    ] {
        assert!(header.split(',').any(|c| c == col), "{col} missing from {header}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary")).expect("json");
    assert_eq!(summary["totals"]["nuclei"], nuclei);
    let classes = &summary["totals"]["size_classes"];
    assert_eq!(
        classes["small"].as_u64().unwrap_or(0) + classes["large"].as_u64().unwrap_or(0),
        nuclei as u64
    );
    assert!(
        run.summary.contains("## Evaluation: synthetic nuclei"),
        "{}",
        run.summary
    );
    assert!(run.summary.contains("| 0.5 |"), "{}", run.summary);
    let html = std::fs::read_to_string(out.join("report.html")).expect("html");
    assert!(html.contains("data:image/png;base64,") && html.contains("<svg"));
    assert!(
        !html.contains("http://")
            || html.matches("http://").count() == html.matches("http://www.w3.org/2000/svg").count()
    );
}

#[test]
fn invalid_parameters_are_annotated_at_line_and_column() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = dataset(tmp.path());
    let p = params(
        tmp.path(),
        "bad.yaml",
        "description: x\npixel_size_um: 0.5\nfilters:\n  min_area_um2: 3\n  max_aera_um2: 4\n",
    );
    let run = run_action(
        tmp.path(),
        &[
            ("images", &s(&data)),
            ("masks", &s(&data.join("masks"))),
            ("params", &s(&p)),
            ("output", &s(&tmp.path().join("eval"))),
        ],
    );
    assert_eq!(run.code(), 2, "{}", run.stdout());
    let out = run.stdout();
    assert!(
        out.contains("::error file=") && out.contains("bad.yaml,line=5,col=3"),
        "{out}"
    );
    assert!(out.contains("max_aera_um2"), "{out}");
    assert!(!tmp.path().join("eval").exists(), "nothing written on failure");
}

#[cfg(unix)]
#[test]
fn a_parameter_file_linked_out_of_the_checkout_is_refused_unread() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = dataset(tmp.path());
    let checkout = tmp.path().join("repo");
    std::fs::create_dir_all(checkout.join("cell-params")).expect("dir");
    std::fs::write(
        tmp.path().join("shadow"),
        "root:$6$saltsaltsalt$hashhash:19000:0:99999:7:::\n",
    )
    .expect("secret");
    std::os::unix::fs::symlink(tmp.path().join("shadow"), checkout.join("cell-params/x.yaml")).expect("link");
    let run = run_action(
        &checkout,
        &[
            ("images", &s(&data)),
            ("params", "cell-params/x.yaml"),
            ("output", &s(&tmp.path().join("eval"))),
        ],
    );
    let out = run.stdout();
    assert_eq!(run.code(), 2, "{out}");
    assert!(
        out.contains("cell-params/x.yaml") && out.contains("resolves outside"),
        "{out}"
    );
    assert!(!out.contains("saltsalt"), "never read: {out}");
    assert!(!tmp.path().join("eval").exists(), "nothing written");
}

#[test]
fn a_mask_of_another_size_is_a_clear_error_and_nothing_is_written() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = dataset(tmp.path());
    let masks = tmp.path().join("masks");
    std::fs::create_dir(&masks).expect("dir");
    for e in std::fs::read_dir(data.join("masks")).expect("masks") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, masks.join(p.file_name().expect("name"))).expect("copy");
    }
    let small = io::encode_png(&Raster::from_u8(10, 12, 1, vec![0; 120])).expect("png");
    let mut all: Vec<PathBuf> = std::fs::read_dir(&masks)
        .expect("masks")
        .map(|e| e.expect("entry").path())
        .collect();
    all.sort();
    let (victim, second) = (all[0].clone(), all[3].clone());
    std::fs::write(&victim, &small).expect("write");
    std::fs::write(&second, b"not a png").expect("write");
    let out = tmp.path().join("eval");
    std::fs::create_dir(&out).expect("previous output");
    std::fs::write(out.join("keep.txt"), "old").expect("old file");
    let p = params(tmp.path(), "p.yaml", PLAIN);
    let run = run_action(
        tmp.path(),
        &[
            ("images", &s(&data)),
            ("masks", &s(&masks)),
            ("params", &s(&p)),
            ("output", &s(&out)),
        ],
    );
    assert_eq!(run.code(), 1, "{}", run.stdout());
    let text = run.stdout();
    assert!(
        text.contains("is 10×12 but its image") && text.contains("96×96"),
        "{text}"
    );
    assert!(text.contains(&format!("file={}", victim.display())), "{text}");
    // Every bad file is reported, not just the first.
    assert!(text.contains(&format!("file={}", second.display())), "{text}");
    assert_eq!(std::fs::read_to_string(out.join("keep.txt")).expect("untouched"), "old");
}

#[test]
fn baseline_comparison_reports_changed_counts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = dataset(tmp.path());
    let before = params(tmp.path(), "before.yaml", PLAIN);
    let after = params(
        tmp.path(),
        "after.yaml",
        &format!("{PLAIN}filters:\n  min_area_um2: 40\n"),
    );
    let common = |p: &Path, out: &Path, baseline: Option<&Path>| {
        let mut inputs = vec![
            ("images", s(&data)),
            ("masks", s(&data.join("masks"))),
            ("params", s(p)),
            ("output", s(out)),
        ];
        if let Some(b) = baseline {
            inputs.push(("baseline", s(b)));
        }
        let inputs: Vec<(&str, &str)> = inputs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_action(tmp.path(), &inputs)
    };
    let first = common(&before, &tmp.path().join("base"), None);
    assert_eq!(first.code(), 0, "{}", first.stdout());
    let second = common(&after, &tmp.path().join("head"), Some(&tmp.path().join("base")));
    assert_eq!(second.code(), 0, "{}", second.stdout());
    let n0: f64 = first.outputs["nuclei"].parse().expect("n");
    let n1: f64 = second.outputs["nuclei"].parse().expect("n");
    assert!(n1 < n0, "the larger minimum area drops nuclei: {n0} -> {n1}");
    assert!(
        second.summary.contains("### Compared with the baseline"),
        "{}",
        second.summary
    );
    assert!(second.summary.contains("different from now"), "{}", second.summary);
    let diff: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("head/diff.json")).expect("diff.json"))
            .expect("json");
    assert_eq!(diff["totals"][0]["before"], n0);
    assert_eq!(diff["totals"][0]["after"], n1);
    assert_eq!(diff["totals"][0]["delta"], n1 - n0);
    // The recall against ground truth fell: flagged.
    let f1 = diff["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .find(|m| m["name"] == "F1@0.5")
        .expect("f1");
    assert_eq!(f1["flagged"], true, "{f1}");
}

#[test]
fn ihc_images_get_dab_classes_positive_percent_and_h_score() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (img_dir, mask_dir) = (tmp.path().join("img"), tmp.path().join("mask"));
    std::fs::create_dir_all(&img_dir).expect("dir");
    std::fs::create_dir_all(&mask_dir).expect("dir");
    // Four nuclei: DAB OD 0.1 (negative), 0.3 (1+), 0.5 (2+), 0.9 (3+) on white.
    let (w, r) = (64usize, 6.0f64);
    let centres = [(14.0, 14.0), (14.0, 46.0), (46.0, 14.0), (46.0, 46.0)];
    let dab = [0.269f64, 0.568, 0.778];
    let norm = (dab.iter().map(|c| c * c).sum::<f64>()).sqrt();
    let mut rgb = vec![255u8; w * w * 3];
    let mut labels = vec![0u16; w * w];
    for (k, ((cy, cx), od)) in centres.iter().zip([0.1, 0.3, 0.5, 0.9]).enumerate() {
        for y in 0..w {
            for x in 0..w {
                if (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2) <= r * r {
                    labels[y * w + x] = k as u16 + 1;
                    for c in 0..3 {
                        rgb[(y * w + x) * 3 + c] = (255.0 * 10f64.powf(-od * dab[c] / norm)).round() as u8;
                    }
                }
            }
        }
    }
    std::fs::write(
        img_dir.join("slide1.png"),
        io::encode_png(&Raster::from_u8(64, 64, 3, rgb)).expect("png"),
    )
    .expect("write");
    std::fs::write(
        mask_dir.join("slide1_mask.png"),
        io::encode_png(&Raster::from_u16(64, 64, 1, labels)).expect("png"),
    )
    .expect("write");
    let p = params(
        tmp.path(),
        "ki67.yaml",
        "description: ki67\npixel_size_um: 0.5\nstain:\n  dab_od_thresholds: { weak: 0.2, moderate: 0.4, strong: 0.6 }\nclasses:\n  image:\n    - { name: ki67-high, when: { score: positive_percent, min: 30 } }\n    - { name: ki67-low }\n",
    );
    let out = tmp.path().join("eval");
    let run = run_action(
        tmp.path(),
        &[
            ("images", &s(&img_dir)),
            ("masks", &s(&mask_dir)),
            ("params", &s(&p)),
            ("output", &s(&out)),
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.stdout());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary")).expect("json");
    let image = &summary["images"][0];
    assert_eq!(image["dab_classes"], serde_json::json!([1, 1, 1, 1]));
    assert_eq!(image["positive_percent"], 75.0);
    assert_eq!(image["h_score"], 150.0);
    assert_eq!(image["class"], "ki67-high");
    let csv = std::fs::read_to_string(out.join("objects.csv")).expect("csv");
    assert!(csv.contains(",3+,") && csv.contains(",negative,"), "{csv}");
    assert!(
        run.summary.contains("DAB classes:** negative 1 · 1+ 1 · 2+ 1 · 3+ 1"),
        "{}",
        run.summary
    );
}

#[test]
fn a_model_bundle_segments_and_its_preprocessing_is_enforced() {
    use cellops_unet::bundle::{self, BundleInfo};
    use cellops_unet::model::{Norm, UNetConfig};
    use cellops_unet::{Device, TrainConfig};
    let tmp = tempfile::tempdir().expect("tmp");
    let data = dataset(tmp.path());
    let device = Device::flex();
    device.seed(5);
    let cfg = UNetConfig::new()
        .with_depth(2)
        .with_base_channels(4)
        .with_norm(Norm::None);
    let model = cfg.init(&device);
    let prep = BuildConfig {
        colour: cellops_dataset::config::ColourMode::Grey,
        ..BuildConfig::default()
    };
    let info = BundleInfo::new(TrainConfig::new().with_model(cfg), prep);
    let bundle_dir = tmp.path().join("bundle");
    bundle::save(&model, &info, &bundle_dir, &[]).expect("bundle");
    let p = params(
        tmp.path(),
        "p.yaml",
        "description: x\npixel_size_um: 0.5\npreprocessing:\n  colour: grey\n",
    );
    let out = tmp.path().join("eval");
    let run = run_action(
        tmp.path(),
        &[
            ("images", &s(&data)),
            ("model", &s(&bundle_dir)),
            ("params", &s(&p)),
            ("output", &s(&out)),
            ("device", "cpu"),
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.stdout());
    let dice: f64 = run.outputs["dice"].parse().expect("dice");
    assert!((0.0..=1.0).contains(&dice));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary")).expect("json");
    assert_eq!(summary["source"]["kind"], "model");
    assert_eq!(summary["source"]["bundle_id"].as_str().map(str::len), Some(16));
    // A file that wants RGB input for a grey model is refused at its line, unless overridden.
    let rgb = params(
        tmp.path(),
        "rgb.yaml",
        "description: x\npixel_size_um: 0.5\npreprocessing:\n  colour: rgb\n",
    );
    let run = run_action(
        tmp.path(),
        &[
            ("images", &s(&data)),
            ("model", &s(&bundle_dir)),
            ("params", &s(&rgb)),
            ("output", &s(&tmp.path().join("eval2"))),
            ("device", "cpu"),
        ],
    );
    assert_eq!(run.code(), 2, "{}", run.stdout());
    assert!(run.stdout().contains("rgb.yaml,line=4,col=3"), "{}", run.stdout());
    assert!(
        run.stdout()
            .contains("preprocessing.colour is rgb but the model was trained with grey"),
        "{}",
        run.stdout()
    );
}

#[test]
fn the_classical_mode_needs_no_model_and_refuses_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = dataset(tmp.path());
    let p = params(
        tmp.path(),
        "threshold.yaml",
        "description: x\npixel_size_um: 0.5\nsegmentation:\n  method: threshold\n  threshold: { method: otsu }\n",
    );
    let out = tmp.path().join("eval");
    let run = run_action(
        tmp.path(),
        &[("images", &s(&data)), ("params", &s(&p)), ("output", &s(&out))],
    );
    assert_eq!(run.code(), 0, "{}", run.stdout());
    // Synthetic fluorescence nuclei on a dark background: a threshold finds most of them.
    let f1: f64 = run.outputs["f1"].parse().expect("f1");
    assert!(f1 > 0.7, "classical F1 {f1}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary")).expect("json");
    assert_eq!(summary["source"]["kind"], "threshold");
    assert_eq!(summary["postprocessing"]["method"], "threshold");
    let md = std::fs::read_to_string(out.join("report.md")).expect("report");
    assert!(md.contains("### Post-processing (threshold)"), "{md}");

    // With a model as well, the file's choice and the flag contradict each other.
    let run = run_action(
        tmp.path(),
        &[
            ("images", &s(&data)),
            ("params", &s(&p)),
            ("model", "nuclei"),
            ("output", &s(&tmp.path().join("eval2"))),
        ],
    );
    assert_eq!(run.code(), 2, "{}", run.stdout());
    let text = run.stdout();
    assert!(
        text.contains("--model") && text.contains("segmentation.method: threshold"),
        "{text}"
    );
    assert!(text.contains("threshold.yaml:4:3"), "{text}");
    assert!(!tmp.path().join("eval2").exists());
}

/// The synthetic images as 16-bit TIFFs whose signal sits in the lowest grey levels (a camera
/// floor at 120, nuclei a few hundred levels above it), without masks: what a lab's microscope
/// writes. Returns the folder and the number of true nuclei.
fn sixteen_bit_tiffs(root: &Path) -> (PathBuf, usize) {
    let data = dataset(root);
    let dir = root.join("tiffs");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut nuclei = 0;
    for entry in std::fs::read_dir(data.join("original")).expect("originals") {
        let path = entry.expect("entry").path();
        let grey = image::open(&path).expect("png").to_luma8();
        let (w, h) = grey.dimensions();
        let deep = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(w, h, |x, y| {
            image::Luma([120 + 4 * u16::from(grey.get_pixel(x, y)[0])])
        });
        let name = path.file_stem().expect("stem").to_string_lossy().into_owned();
        deep.save(dir.join(format!("{name}.tif"))).expect("tiff");
        let mask = io::decode(
            &std::fs::read(data.join("masks").join(format!("{name}_mask.png"))).expect("mask"),
            u64::MAX,
        )
        .expect("decode")
        .raster;
        let mut labels: Vec<u32> = match mask.samples {
            cellops_dataset::Samples::U16(v) => v.into_iter().map(u32::from).filter(|&l| l != 0).collect(),
            cellops_dataset::Samples::U8(v) => v.into_iter().map(u32::from).filter(|&l| l != 0).collect(),
        };
        labels.sort_unstable();
        labels.dedup();
        nuclei += labels.len();
    }
    (dir, nuclei)
}

#[test]
fn the_shipped_model_segments_sixteen_bit_tiffs_and_says_which_post_processing_applied() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (tiffs, truth) = sixteen_bit_tiffs(tmp.path());
    let p = params(
        tmp.path(),
        "p.yaml",
        "description: x\npixel_size_um: 0.5\nsegmentation:\n  min_area_px: 5\n",
    );
    let out = tmp.path().join("eval");
    let run = run_action(
        tmp.path(),
        &[
            ("images", &s(&tiffs)),
            ("model", "nuclei"),
            ("params", &s(&p)),
            ("output", &s(&out)),
            ("device", "cpu"),
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.stdout());
    let found: usize = run.outputs["nuclei"].parse().expect("count");
    assert!(
        found as f64 > 0.7 * truth as f64 && (found as f64) < 1.3 * truth as f64,
        "{found} nuclei found, {truth} drawn"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary")).expect("json");
    assert_eq!(summary["source"]["path"], "nuclei");
    let values = summary["postprocessing"]["values"].as_array().expect("values");
    let origin = |name: &str| {
        values
            .iter()
            .find(|v| v[0] == name)
            .map(|v| v[2].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(origin("min_area_px").as_deref(), Some("parameter file"));
    assert_eq!(origin("h_px").as_deref(), Some("model bundle (tuned on validation)"));
    let md = std::fs::read_to_string(out.join("report.md")).expect("report");
    assert!(md.contains("### Post-processing (model)"), "{md}");
    // Every image was rescaled to the model's nucleus size.
    assert!(
        summary["images"]
            .as_array()
            .expect("images")
            .iter()
            .all(|i| i["scale"].as_f64().is_some())
    );
}

#[test]
fn label_images_and_geojson_match_the_objects_table() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = dataset(tmp.path());
    let p = params(tmp.path(), "p.yaml", &format!("{PLAIN}outputs:\n  labels: true\n"));
    let out = tmp.path().join("eval");
    let run = run_action(
        tmp.path(),
        &[
            ("images", &s(&data)),
            ("masks", &s(&data.join("masks"))),
            ("params", &s(&p)),
            ("output", &s(&out)),
            ("geojson", "true"),
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.stdout());
    let objects: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("objects.json")).expect("objects")).expect("json");
    let images: Vec<String> = std::fs::read_dir(data.join("original"))
        .expect("originals")
        .map(|e| {
            e.expect("entry")
                .path()
                .file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(images.len(), 6);
    for id in &images {
        let rows: Vec<&serde_json::Value> = objects.iter().filter(|r| r["Image"] == id.as_str()).collect();
        assert!(!rows.is_empty(), "{id}");
        // The label image: 16-bit, each nucleus' pixels under its ObjectNumber.
        let labels = image::open(out.join(format!("labels/{id}.png")))
            .expect("labels")
            .to_luma16();
        for r in &rows {
            let number = r["ObjectNumber"].as_u64().expect("number");
            let pixels = labels.pixels().filter(|p| u64::from(p[0]) == number).count() as f64;
            assert_eq!(
                pixels,
                r["AreaShape_Area"].as_f64().expect("area"),
                "{id} nucleus {number}"
            );
        }
        // The GeoJSON: one detection per nucleus, its polygon's area its pixel count.
        let fc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(format!("geojson/{id}.geojson"))).expect("geojson"))
                .expect("json");
        assert_eq!(fc["type"], "FeatureCollection");
        let features = fc["features"].as_array().expect("features");
        assert_eq!(features.len(), rows.len(), "{id}");
        for f in features {
            let props = &f["properties"];
            assert_eq!(props["objectType"], "detection");
            assert!(
                matches!(props["classification"]["name"].as_str(), Some("small" | "large")),
                "{props}"
            );
            assert_eq!(props["classification"]["color"].as_array().map(Vec::len), Some(3));
            let m = &props["measurements"];
            let area = match f["geometry"]["type"].as_str() {
                Some("Polygon") => polygon_area(f["geometry"]["coordinates"].as_array().expect("rings")),
                Some("MultiPolygon") => f["geometry"]["coordinates"]
                    .as_array()
                    .expect("polygons")
                    .iter()
                    .map(|p| polygon_area(p.as_array().expect("rings")))
                    .sum(),
                other => panic!("geometry {other:?}"),
            };
            assert_eq!(area, m["AreaShape_Area"].as_f64().expect("area"), "{id}: {m}");
        }
    }
    let summary = std::fs::read_to_string(out.join("summary.json")).expect("summary");
    assert!(summary.contains("\"labels\": \"labels/") && summary.contains("\"geojson\": \"geojson/"));
}

#[test]
fn a_full_disk_fails_the_run_by_name_and_leaves_nothing_half_written() {
    use cellops_test_support::tmpfs::Tmpfs;
    let tmp = tempfile::tempdir().expect("tmp");
    let data = dataset(tmp.path());
    let p = params(tmp.path(), "p.yaml", PLAIN);
    // 48 KiB: the overlays alone do not fit.
    let Some(disk) = Tmpfs::mount(tmp.path(), "full", 48 * 1024) else {
        return;
    };
    let out = disk.path.join("eval");
    let run = run_action(
        tmp.path(),
        &[
            ("images", &s(&data)),
            ("masks", &s(&data.join("masks"))),
            ("params", &s(&p)),
            ("output", &s(&out)),
        ],
    );
    assert_eq!(run.code(), 3, "{}", run.stdout());
    assert!(run.stdout().contains("No space left on device"), "{}", run.stdout());
    let left: Vec<_> = std::fs::read_dir(&disk.path).expect("list").collect();
    assert!(left.is_empty(), "nothing half-written: {left:?}");
}

#[test]
fn permission_denied_fails_by_name_and_leaves_nothing_behind() {
    use cellops_test_support::unprivileged::{lock, open_up, read_only};
    let tmp = tempfile::tempdir().expect("tmp");
    open_up(tmp.path()).expect("open up");
    let data = dataset(tmp.path());
    let p = params(tmp.path(), "p.yaml", PLAIN);
    let run = |out: &Path| {
        let inputs = [
            ("images", s(&data)),
            ("masks", s(&data.join("masks"))),
            ("params", s(&p)),
            ("output", s(out)),
        ];
        let bin = Path::new(env!("CARGO_BIN_EXE_cellops-evaluate"));
        harness::run_action_unprivileged(bin, &[], tmp.path(), &harness::as_inputs(&inputs), &[]).expect("run")
    };
    // An output folder where the user may not write.
    let ro = tmp.path().join("ro");
    std::fs::create_dir(&ro).expect("mkdir");
    read_only(&ro).expect("chmod");
    let denied = run(&ro.join("eval"));
    assert_eq!(denied.code(), 3, "{}", denied.stdout());
    assert!(
        denied.stdout().contains(&s(&ro)) && denied.stdout().contains("Permission denied"),
        "{}",
        denied.stdout()
    );
    assert_eq!(std::fs::read_dir(&ro).expect("list").count(), 0, "nothing written");
    // An image it may not read.
    let image = std::fs::read_dir(data.join("original"))
        .expect("list")
        .next()
        .expect("an image")
        .expect("entry")
        .path();
    lock(&image).expect("chmod");
    let out = tmp.path().join("eval");
    let unreadable = run(&out);
    assert_ne!(unreadable.code(), 0, "{}", unreadable.stdout());
    let name = image.file_name().expect("name").to_string_lossy().into_owned();
    assert!(
        unreadable.stdout().contains(&name) && unreadable.stdout().contains("Permission denied"),
        "{}",
        unreadable.stdout()
    );
    assert!(!out.exists(), "nothing written");
}

#[test]
fn an_evaluation_killed_at_any_point_leaves_a_whole_output_and_no_leftovers() {
    use cellops_test_support::files::tree;
    let tmp = tempfile::tempdir().expect("tmp");
    let data = dataset(tmp.path());
    // Two parameter files, so that every run replaces the output with other content.
    let two = [
        params(tmp.path(), "a.yaml", PLAIN),
        params(
            tmp.path(),
            "b.yaml",
            &PLAIN.replace("max_area_um2: 30", "max_area_um2: 50"),
        ),
    ];
    let out = tmp.path().join("eval");
    let inputs = |p: usize| {
        [
            ("images", s(&data)),
            ("masks", s(&data.join("masks"))),
            ("params", s(&two[p])),
            ("output", s(&out)),
        ]
    };
    let run = |p: usize| run_action(tmp.path(), &harness::as_inputs(&inputs(p)));
    let mut whole = Vec::new();
    let mut full = std::time::Duration::ZERO;
    for p in 0..2 {
        let started = std::time::Instant::now();
        assert_eq!(run(p).code(), 0);
        full = full.max(started.elapsed());
        whole.push(tree(&out).expect("tree"));
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_cellops-evaluate"));
    cellops_test_support::kill::at_points(
        12,
        full,
        |i| harness::spawn_action(bin, &[], tmp.path(), &harness::as_inputs(&inputs(i % 2)), &[]).expect("start"),
        |i| {
            let now = tree(&out).expect("the output is there, whole");
            assert!(whole.contains(&now), "killed run {i} left a mix of two evaluations");
        },
    );
    let last = run(1);
    assert_eq!(last.code(), 0, "{}", last.stdout());
    assert_eq!(tree(&out).expect("tree"), whole[1]);
    let beside: Vec<String> = std::fs::read_dir(tmp.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".eval."))
        .collect();
    assert!(
        beside.is_empty(),
        "the killed runs' staging folders are cleaned up: {beside:?}"
    );
}

/// `dir/original/<id>.tif` for every image of `data`: an OME-TIFF of two planes, a `GFP` plane
/// (the grey image inverted: something to measure by mistake) and the grey image as `DAPI`, with
/// the pixel size `um` in its OME-XML; the same grey images as PNGs in `pngs/original/`; the
/// masks copied beside both.
fn ome_tiffs(data: &Path, dir: &Path, pngs: &Path, um: f64) {
    use tiff::encoder::{TiffEncoder, colortype::Gray8};
    use tiff::tags::Tag;
    for d in [dir, pngs] {
        std::fs::create_dir_all(d.join("original")).expect("mkdir");
        std::fs::create_dir_all(d.join("masks")).expect("mkdir");
    }
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="96" SizeY="96" SizeC="2" SizeZ="1" SizeT="1" PhysicalSizeX="{}" PhysicalSizeXUnit="nm" PhysicalSizeY="{}" PhysicalSizeYUnit="nm"><Channel ID="Channel:0:0" Name="GFP" SamplesPerPixel="1"/><Channel ID="Channel:0:1" Name="DAPI" SamplesPerPixel="1"/><TiffData IFD="0" PlaneCount="2"/></Pixels></Image></OME>"#,
        um * 1000.0,
        um * 1000.0
    );
    for e in std::fs::read_dir(data.join("original")).expect("list") {
        let path = e.expect("entry").path();
        let grey = cellops_dataset::preprocess(
            &io::decode(&std::fs::read(&path).expect("read"), 1 << 20)
                .expect("decode")
                .raster,
            &BuildConfig {
                colour: cellops_dataset::config::ColourMode::Grey,
                ..BuildConfig::default()
            },
        )
        .expect("grey");
        let cellops_dataset::Samples::U8(dapi) = &grey.samples else {
            panic!("8-bit synthetic images");
        };
        let gfp: Vec<u8> = dapi.iter().map(|v| 255 - v).collect();
        let id = path.file_stem().expect("stem").to_string_lossy().into_owned();
        let mut out = std::io::Cursor::new(Vec::new());
        let mut tiff = TiffEncoder::new(&mut out).expect("tiff");
        for (i, plane) in [&gfp, dapi].into_iter().enumerate() {
            let mut page = tiff.new_image::<Gray8>(grey.width, grey.height).expect("page");
            if i == 0 {
                page.encoder()
                    .write_tag(Tag::ImageDescription, xml.as_str())
                    .expect("description");
            }
            page.write_data(plane).expect("pixels");
        }
        std::fs::write(dir.join("original").join(format!("{id}.tif")), out.into_inner()).expect("write");
        let png = io::encode_png(&grey).expect("png");
        std::fs::write(pngs.join("original").join(format!("{id}.png")), png).expect("write");
        let mask = format!("{id}_mask.png");
        for d in [dir, pngs] {
            std::fs::copy(data.join("masks").join(&mask), d.join("masks").join(&mask)).expect("mask");
        }
    }
}

/// Segmentation by Otsu's threshold and size classes, without a pixel size or a channel.
const OTSU: &str = "segmentation:\n  method: threshold\n  threshold: { method: otsu }\nclasses:\n  size:\n    - { name: small, max_area_um2: 30 }\n    - { name: large }\n";

/// The synthetic images as OME-TIFFs (`ome/`) and grey PNGs (`grey/`), pixel 0.5 µm.
fn ome_setup(root: &Path) -> (PathBuf, PathBuf) {
    let data = dataset(root);
    let (ome, grey) = (root.join("ome"), root.join("grey"));
    ome_tiffs(&data, &ome, &grey, 0.5);
    (ome, grey)
}

fn evaluate_with(root: &Path, images: &Path, params: &Path, out: &Path) -> ActionRun {
    run_action(
        root,
        &[("images", &s(images)), ("params", &s(params)), ("output", &s(out))],
    )
}

#[test]
fn ome_tiffs_give_their_nuclear_channel_and_pixel_size() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (ome, grey) = ome_setup(tmp.path());
    let evaluate = |images: &Path, params: &Path, out: &Path| evaluate_with(tmp.path(), images, params, out);
    // The same images as grey PNGs with the pixel size in the parameter file, and as OME-TIFFs
    // whose DAPI plane the file chooses by name, the pixel size from their OME-XML.
    let png = params(
        tmp.path(),
        "png.yaml",
        &format!("description: png\npixel_size_um: 0.5\n{OTSU}"),
    );
    let by_name = params(
        tmp.path(),
        "ome.yaml",
        &format!("description: ome\nnuclear_channel: DAPI\n{OTSU}"),
    );
    let (a, b) = (tmp.path().join("png"), tmp.path().join("ome-out"));
    let plain = evaluate(&grey, &png, &a);
    assert_eq!(plain.code(), 0, "{}", plain.stdout());
    let read = evaluate(&ome, &by_name, &b);
    assert_eq!(read.code(), 0, "{}", read.stdout());
    let objects = |d: &Path| std::fs::read(d.join("objects.csv")).expect("objects");
    assert!(objects(&a) == objects(&b), "the same nuclei, the same µm");
    let rows = std::fs::read_to_string(a.join("objects.csv"))
        .expect("csv")
        .lines()
        .count();
    assert!(rows > 10, "nuclei measured: {rows} rows");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("summary.json")).expect("summary")).expect("json");
    let first = &summary["images"][0];
    assert_eq!(
        (first["pixel_size_um"].as_f64(), first["pixel_size_from"].as_str()),
        (Some(0.5), Some("OME-XML"))
    );
    assert!(
        std::fs::read_to_string(b.join("report.md"))
            .expect("md")
            .contains("pixel size from each image's metadata")
    );
    // By index, the same; the other plane, other nuclei.
    let by_index = params(
        tmp.path(),
        "index.yaml",
        &format!("description: i\nnuclear_channel: 1\n{OTSU}"),
    );
    let c = tmp.path().join("index-out");
    assert_eq!(evaluate(&ome, &by_index, &c).code(), 0);
    assert!(objects(&c) == objects(&a));
    let gfp = params(
        tmp.path(),
        "gfp.yaml",
        &format!("description: g\nnuclear_channel: GFP\n{OTSU}"),
    );
    let d = tmp.path().join("gfp-out");
    assert_eq!(evaluate(&ome, &gfp, &d).code(), 0);
    assert!(objects(&d) != objects(&a), "the other plane is other pixels");
}

#[test]
fn a_missing_channel_or_pixel_size_is_refused_and_a_disagreement_warns() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (ome, grey) = ome_setup(tmp.path());
    let evaluate = |images: &Path, params: &Path, out: &Path| evaluate_with(tmp.path(), images, params, out);
    let none = params(tmp.path(), "none.yaml", &format!("description: n\n{OTSU}"));
    let refused = evaluate(&ome, &none, &tmp.path().join("none-out"));
    assert_ne!(refused.code(), 0);
    assert!(
        refused
            .stdout()
            .contains("2 channels (GFP, DAPI); choose the nuclear one with `nuclear_channel`"),
        "{}",
        refused.stdout()
    );
    let wrong = params(
        tmp.path(),
        "wrong.yaml",
        &format!("description: w\nnuclear_channel: Hoechst\n{OTSU}"),
    );
    let refused = evaluate(&ome, &wrong, &tmp.path().join("wrong-out"));
    assert!(
        refused.stdout().contains("channel `Hoechst` is not in the image"),
        "{}",
        refused.stdout()
    );
    // A parameter file's pixel size wins, and a disagreement is a warning.
    let disagree = params(
        tmp.path(),
        "disagree.yaml",
        &format!("description: d\npixel_size_um: 0.6\nnuclear_channel: DAPI\n{OTSU}"),
    );
    let warned = evaluate(&ome, &disagree, &tmp.path().join("disagree-out"));
    assert_eq!(warned.code(), 0, "{}", warned.stdout());
    assert!(
        warned.stdout().contains("::warning title=pixel sizes disagree::")
            && warned
                .stdout()
                .contains("says a pixel is 0.5 µm; the parameter file's 0.6 µm applies"),
        "{}",
        warned.stdout()
    );
    // PNGs record no pixel size: without one in the parameter file, refused by name.
    let unknown = evaluate(&grey, &none, &tmp.path().join("unknown-out"));
    assert_ne!(unknown.code(), 0);
    assert!(unknown.stdout().contains("no pixel size"), "{}", unknown.stdout());
}
