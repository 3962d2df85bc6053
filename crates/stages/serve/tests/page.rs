//! The page (`GET /`) in a real headless Chromium, used as a technician uses it: the image types
//! appear in the picker, an image chosen in the file input is measured, and the overlay, the
//! nuclei table and the downloaded CSV hold the numbers `evaluate` reports for the same image,
//! bundle and parameter file. The page's script runs under the service's Content Security Policy.

mod support;

use std::time::Duration;

use cellops_test_support::browser::Browser;
use serde_json::Value;
use support::{evaluate, release, serve, synthetic_image};

/// What the page shows as text for `value`: numbers to six significant digits, null empty.
fn matches(shown: &str, value: &Value) -> bool {
    match value {
        Value::Null => shown.is_empty(),
        Value::Number(n) => {
            let (Some(expected), Ok(got)) = (n.as_f64(), shown.parse::<f64>()) else {
                return false;
            };
            (got - expected).abs() <= 1e-5 * expected.abs().max(1e-12)
        }
        Value::String(s) => shown == s,
        Value::Bool(b) => shown.parse::<bool>() == Ok(*b),
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// The page's nuclei table: its header cells and its rows of cell texts.
fn table(browser: &Browser) -> (Vec<String>, Vec<Vec<String>>) {
    let got = browser
        .script(
            "const t = document.getElementById('objects');
             const text = (cells) => [...cells].map((c) => c.textContent);
             return { head: text(t.tHead.querySelectorAll('th')),
                      rows: [...t.tBodies[0].rows].map((r) => text(r.cells)) };",
        )
        .expect("read the table");
    let head = serde_json::from_value(got["head"].clone()).expect("header cells as text");
    let rows = serde_json::from_value(got["rows"].clone()).expect("rows of cells as text");
    (head, rows)
}

#[test]
fn an_image_measured_through_the_page_shows_what_evaluate_reports() {
    let tmp = tempfile::tempdir().expect("tmp");
    let release = release(tmp.path());
    let (images, image, stem) = synthetic_image(tmp.path());
    let server = serve(&release, &[]);
    let downloads = tmp.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads folder");
    let browser = Browser::start(&downloads).unwrap_or_else(|e| panic!("start headless chromium: {e}"));

    browser.open(&format!("{}/", server.base)).expect("open the page");
    let wait = Duration::from_secs(60);
    let types = browser
        .wait_for(
            "const o = [...document.querySelectorAll('#type option')].map((o) => o.textContent);
             return o.length ? o : null;",
            wait,
        )
        .expect("the picker lists the image types");
    assert_eq!(types, serde_json::json!(["fluorescence-dapi (model nuclei)"]));
    let header = browser
        .script("return document.getElementById('release').textContent")
        .expect("header");
    assert_eq!(header, "release release-1");

    browser.choose_file("#file", &image).expect("choose the image");
    let status = browser
        .wait_for(
            "const s = document.getElementById('status');
             return (s.className === 'error' || !document.getElementById('result').hidden) ? s.textContent : null;",
            wait,
        )
        .expect("the page measured the image");
    let (rows, _, csv) = evaluate(
        &images.join("original"),
        &release.join("cell-params/fluorescence-dapi.yaml"),
        &release.join("models/nuclei"),
        &tmp.path().join("eval"),
    );
    assert!(!rows.is_empty(), "evaluate found nuclei");
    assert!(
        status
            .as_str()
            .is_some_and(|s| s.starts_with(&format!("{} nuclei in ", rows.len()))),
        "status line: {status}"
    );

    // The nuclei table: evaluate's columns, in order, and its values.
    let (head, shown) = table(&browser);
    let columns: Vec<&String> = rows[0].as_object().expect("a row is an object").keys().collect();
    assert_eq!(head.iter().collect::<Vec<_>>(), columns, "the table's columns");
    assert_eq!(shown.len(), rows.len(), "one table row per nucleus");
    for (i, (cells, row)) in shown.iter().zip(&rows).enumerate() {
        for (cell, column) in cells.iter().zip(&columns) {
            assert!(
                matches(cell, &row[column.as_str()]),
                "nucleus {i}, {column}: page {cell:?}, evaluate {}",
                row[column.as_str()]
            );
        }
    }

    // The overlay decoded in the browser at the image's size (synthetic_image makes 128×128).
    let overlay = browser
        .script("const i = document.getElementById('overlay'); return [i.naturalWidth, i.naturalHeight];")
        .expect("overlay size");
    assert_eq!(overlay, serde_json::json!([128, 128]), "the contour overlay");

    // "Download CSV" saves evaluate's objects.csv.
    browser.click("#csv").expect("click Download CSV");
    let saved = downloads.join(format!("{stem}-objects.csv"));
    let deadline = std::time::Instant::now() + wait;
    while !saved.is_file() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let text =
        std::fs::read_to_string(&saved).unwrap_or_else(|e| panic!("{} was not downloaded: {e}", saved.display()));
    assert_eq!(text, csv, "the downloaded CSV is evaluate's objects.csv");
}
