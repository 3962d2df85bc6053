//! `cellops-evaluate --slide` run as a workflow runs it, on pyramidal TIFF slides the tests write
//! (`cellops_dataset::slide::Section`: H&E-like nuclei at known places on tissue in an ellipse).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cellops_dataset::slide::Section;
use cellops_test_support::action::{self as harness, ActionRun};
use cellops_test_support::geojson::polygon_area;

const BIN: &str = env!("CARGO_BIN_EXE_cellops-evaluate");

fn run_action(dir: &Path, inputs: &[(&str, &str)]) -> ActionRun {
    harness::run_action(Path::new(BIN), dir, inputs, &[]).expect("run")
}

/// [`run_action`] with inputs whose values are owned.
fn run_owned(dir: &Path, inputs: &[(&str, String)]) -> ActionRun {
    let refs: Vec<(&str, &str)> = inputs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_action(dir, &refs)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Writes a `w`×`h` section as a pyramid of 256-pixel tiles, pixels of 0.5 µm; returns its
/// path and nuclei (centre, radius).
fn section(root: &Path, name: &str, (w, h): (u32, u32)) -> (PathBuf, Vec<(i64, i64, i64)>) {
    let section = Section {
        size: (w, h),
        spacing: 23,
    };
    let path = root.join(format!("{name}.tif"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    section.write(&mut out, 256, 0.5).expect("slide");
    drop(out);
    (path, section.nuclei())
}

fn params(root: &Path, name: &str, text: &str) -> PathBuf {
    let p = root.join(name);
    std::fs::write(&p, text).expect("params");
    p
}

const CLASSICAL: &str = "description: synthetic H&E\nsegmentation: { method: threshold }\nfilters: { min_area_um2: 3 }\noutputs: { geojson: true }\n";

/// The nuclei of an output's objects.csv: centre (hundredths of a pixel) and area, sorted.
fn nuclei(out: &Path) -> Vec<(i64, i64, i64)> {
    let text = std::fs::read_to_string(out.join("objects.csv")).expect("objects");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let (x, y, a) = (at("AreaShape_Center_X"), at("AreaShape_Center_Y"), at("AreaShape_Area"));
    let mut v: Vec<(i64, i64, i64)> = lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            let num = |i: usize| cells[i].parse::<f64>().expect("number");
            (
                (num(x) * 100.0).round() as i64,
                (num(y) * 100.0).round() as i64,
                num(a) as i64,
            )
        })
        .collect();
    v.sort_unstable();
    v
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
}

#[test]
fn a_slide_is_measured_over_its_tissue_into_every_report() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let (slide, truth) = section(root, "section", (1100, 900));
    let p = params(root, "he.yaml", CLASSICAL);
    let out = root.join("out");
    let run = |out: &Path, tile: &str| {
        let inputs = [
            ("slide", s(&slide)),
            ("params", s(&p)),
            ("output", s(out)),
            ("slide-tile", tile.into()),
            ("slide-overlap", "64".into()),
        ];
        run_owned(root, &inputs)
    };
    let done = run(&out, "256");
    assert_eq!(done.code(), 0, "{}", done.stdout());
    // Every nucleus once, at its place.
    let found = nuclei(&out);
    assert_eq!(found.len(), truth.len());
    assert_eq!(done.outputs["nuclei"], truth.len().to_string());
    let centres: BTreeSet<(i64, i64)> = found.iter().map(|&(x, y, _)| (x, y)).collect();
    let missing: Vec<_> = truth
        .iter()
        .filter(|&&(x, y, _)| !centres.contains(&(x * 100, y * 100)))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "centres at the discs' centres, in level-0 pixels: {missing:?} not in {:?}",
        &found[..5]
    );
    // The tissue, not the glass: fewer tiles than the slide has, its area near the ellipse's.
    let summary = json(&out.join("summary.json"));
    let record = &summary["images"][0];
    let slide_record = &record["slide"];
    assert_eq!(slide_record["area"], "tissue");
    assert!(slide_record["tiles"].as_u64().expect("tiles") < 20, "{slide_record}");
    let ellipse_mm2 = std::f64::consts::PI * 0.45 * 0.40 * 1100.0 * 900.0 * 0.25e-6;
    let area = record["area_mm2"].as_f64().expect("area");
    assert!(
        (area / ellipse_mm2 - 1.0).abs() < 0.1,
        "{area} mm² of tissue, the ellipse {ellipse_mm2}"
    );
    assert_eq!(record["pixel_size_from"], "TIFF resolution");
    // GeoJSON in level-0 pixels: a detection per nucleus, as large as its row says.
    let geo = json(&out.join("geojson/section.geojson"));
    let features = geo["features"].as_array().expect("features");
    assert_eq!(features.len(), truth.len());
    let rows = json(&out.join("objects.json"));
    for (f, row) in features.iter().zip(rows.as_array().expect("rows")) {
        assert_eq!(f["properties"]["objectType"], "detection");
        let rings = f["geometry"]["coordinates"].as_array().expect("rings");
        assert_eq!(polygon_area(rings), row["AreaShape_Area"].as_f64().expect("area"));
        assert_eq!(f["properties"]["measurements"]["ObjectNumber"], row["ObjectNumber"]);
    }
    // The overview under the density, in the HTML report.
    assert!(out.join("overlays/section.png").is_file());
    let html = std::fs::read_to_string(out.join("report.html")).expect("html");
    assert!(html.contains("data:image/png;base64,"));
    // One untiled pass finds the same nuclei at the same places.
    let whole = root.join("whole");
    let once = run(&whole, "2048");
    assert_eq!(once.code(), 0, "{}", once.stdout());
    assert_eq!(json(&whole.join("summary.json"))["images"][0]["slide"]["tiles"], 1);
    assert_eq!(nuclei(&whole), found);
}

#[test]
fn regions_unreadable_slides_and_conflicting_flags_are_clear_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let (slide, truth) = section(root, "s", (700, 500));
    // Nuclei cut by the region's edge are left out.
    let p = params(
        root,
        "he.yaml",
        &CLASSICAL.replace("min_area_um2: 3", "min_area_um2: 3, exclude_border: true"),
    );
    let out = root.join("out");
    let run = |inputs: &[(&str, &str)]| {
        let mut all = vec![
            ("params", p.to_str().expect("utf-8")),
            ("output", out.to_str().expect("utf-8")),
        ];
        all.extend_from_slice(inputs);
        run_action(root, &all)
    };
    // A region: only its nuclei.
    let (x, y, w, h) = (160, 96, 320, 256);
    let region = run(&[("slide", &s(&slide)), ("region", &format!("{x},{y},{w},{h}"))]);
    assert_eq!(region.code(), 0, "{}", region.stdout());
    let inside = truth
        .iter()
        .filter(|&&(cx, cy, r)| cx - r > x && cx + r < x + w - 1 && cy - r > y && cy + r < y + h - 1)
        .count();
    assert_eq!(nuclei(&out).len(), inside);
    assert_eq!(json(&out.join("summary.json"))["images"][0]["slide"]["area"], "region");
    // Outside the slide: the file named, nothing written over the last output.
    let before = std::fs::read(out.join("objects.csv")).expect("objects");
    let outside = run(&[("slide", &s(&slide)), ("region", "600,0,200,100")]);
    assert_ne!(outside.code(), 0);
    assert!(
        outside.stdout().contains("not inside the slide (700×500)"),
        "{}",
        outside.stdout()
    );
    assert!(outside.stdout().contains("s.tif"), "{}", outside.stdout());
    assert_eq!(std::fs::read(out.join("objects.csv")).expect("objects"), before);
    // Not a TIFF: named, refused.
    let png = root.join("photo.tif");
    std::fs::write(&png, b"\x89PNG\r\n\x1a\nnot a slide").expect("write");
    let bad = run(&[("slide", &s(&png))]);
    assert_ne!(bad.code(), 0);
    assert!(bad.stdout().contains("photo.tif"), "{}", bad.stdout());
    // A relative path whose link leads out of the working folder: refused by name, unread.
    let elsewhere = tempfile::tempdir().expect("elsewhere");
    let (outside, _) = section(elsewhere.path(), "outside", (300, 200));
    std::os::unix::fs::symlink(&outside, root.join("linked.tif")).expect("link");
    let linked = run(&[("slide", "linked.tif")]);
    assert_eq!(linked.code(), 2, "{}", linked.stdout());
    assert!(linked.stdout().contains("linked.tif"), "{}", linked.stdout());
    // A malformed region, or slides with images or labels: usage errors.
    assert_eq!(run(&[("slide", &s(&slide)), ("region", "1,2,3")]).code(), 2);
    assert_eq!(run(&[("slide", &s(&slide)), ("images", &s(root))]).code(), 2);
    assert_eq!(run(&[("slide", &s(&slide)), ("labels", "true")]).code(), 2);
}

#[test]
fn the_actions_slides_input_takes_globs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let (a, ta) = section(root, "a", (600, 400));
    let (_, tb) = section(root, "b", (500, 500));
    let p = params(root, "he.yaml", CLASSICAL);
    let out = root.join("out");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../scripts/run-stage.sh");
    let run = |slides: &str| {
        let inputs = [
            ("slides", slides),
            ("params", p.to_str().expect("utf-8")),
            ("output", out.to_str().expect("utf-8")),
        ];
        harness::run_action(
            &script,
            root,
            &inputs,
            &[("CELLOPS_BIN", BIN), ("CELLOPS_STAGE", "evaluate")],
        )
        .expect("run")
    };
    let both = run(&format!("{}/*.tif\n", root.display()));
    assert_eq!(both.code(), 0, "{}", both.stdout());
    assert_eq!(both.outputs["images"], "2");
    assert_eq!(both.outputs["nuclei"], (ta.len() + tb.len()).to_string());
    let one = run(&s(&a));
    assert_eq!(one.outputs["nuclei"], ta.len().to_string());
    let none = run(&format!("{}/nothing-*.svs", root.display()));
    assert_eq!(none.code(), 2);
    assert!(
        none.stdout()
            .contains("::error title=evaluate slides::no slide matches"),
        "{}",
        none.stdout()
    );
}

#[test]
fn the_shipped_model_on_a_slide_agrees_with_one_untiled_pass() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let (slide, truth) = section(root, "m", (1024, 768));
    let p = params(
        root,
        "model.yaml",
        "description: synthetic H&E, shipped model\nnucleus_diameter_um: 5.5\n",
    );
    let (x, y, w, h) = (320, 256, 384, 256);
    let run = |out: &Path, tile: &str| {
        let region = format!("{x},{y},{w},{h}");
        let inputs = [
            ("slide", s(&slide)),
            ("params", s(&p)),
            ("model", "nuclei".into()),
            ("output", s(out)),
            ("region", region),
            ("slide-tile", tile.into()),
            ("slide-overlap", "64".into()),
        ];
        let done = run_owned(root, &inputs);
        assert_eq!(done.code(), 0, "{}", done.stdout());
        done
    };
    let (tiled, whole) = (root.join("tiled"), root.join("whole"));
    let done = run(&tiled, "128");
    assert!(
        done.stdout().contains("×1.812 (nucleus_diameter_um"),
        "{}",
        done.stdout()
    );
    run(&whole, "1024");
    let (a, b) = (nuclei(&tiled), nuclei(&whole));
    let inside = truth
        .iter()
        .filter(|&&(cx, cy, _)| (x..x + w).contains(&cx) && (y..y + h).contains(&cy))
        .count();
    assert!(
        a.len().abs_diff(inside) <= inside / 50,
        "{} nuclei, {inside} drawn",
        a.len()
    );
    assert_eq!(a.len(), b.len(), "as many nuclei tiled as untiled");
    let same = a.iter().filter(|n| b.binary_search(n).is_ok()).count();
    assert!(
        same * 100 >= a.len() * 97,
        "{same} of {} the same, pixel for pixel",
        a.len()
    );
}
