//! The real DSB2018 data beside the checkout (`../shared/data/dsb2018`), a slice of it, built as an
//! Action. Where the data is absent the test says so and passes, unless `CELLOPS_REQUIRE_SHARED=1`
//! (CI sets it), in which case absence is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

fn shared() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/data/dsb2018");
    if dir.join("manifest.csv").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var("CELLOPS_REQUIRE_SHARED").as_deref() != Ok("1"),
        "CELLOPS_REQUIRE_SHARED=1 but {} is missing",
        dir.display()
    );
    #[allow(clippy::print_stderr, reason = "a skipped test says why on the test log")]
    {
        eprintln!("skipping: {} not found", dir.display());
    }
    None
}

#[test]
fn dsb2018_slice_builds_with_its_fixed_split() {
    let Some(src) = shared() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("dsb");
    std::fs::create_dir_all(data.join("original")).expect("mkdir");
    std::fs::create_dir_all(data.join("masks")).expect("mkdir");
    let csv = std::fs::read_to_string(src.join("manifest.csv")).expect("manifest.csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n).expect("column");
    let (id_c, nuclei_c, split_c) = (col("id"), col("nuclei"), col("split"));
    // One histology image at least, then the first few others.
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let mut chosen: Vec<&Vec<&str>> = rows.iter().filter(|r| r.contains(&"histology_rgb")).take(2).collect();
    chosen.extend(rows.iter().filter(|r| !r.contains(&"histology_rgb")).take(8));
    let mut split_csv = String::from("id,split\n");
    let mut nuclei = 0usize;
    let mut splits = [0usize; 3];
    for r in &chosen {
        let id = r[id_c];
        std::fs::copy(
            src.join(format!("original/{id}.png")),
            data.join(format!("original/{id}.png")),
        )
        .expect("copy");
        std::fs::copy(
            src.join(format!("masks/{id}_mask.png")),
            data.join(format!("masks/{id}_mask.png")),
        )
        .expect("copy");
        split_csv.push_str(&format!("{id},{}\n", r[split_c]));
        nuclei += r[nuclei_c].parse::<usize>().expect("nuclei");
        splits[["train", "val", "test"]
            .iter()
            .position(|s| *s == r[split_c])
            .expect("split")] += 1;
    }
    let split_file = tmp.path().join("split.csv");
    std::fs::write(&split_file, split_csv).expect("write");
    let out = tmp.path().join("prepared");
    let gh_out = tmp.path().join("out.txt");
    let gh_sum = tmp.path().join("summary.md");
    let status = Command::new(env!("CARGO_BIN_EXE_cellops-build"))
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &gh_out)
        .env("GITHUB_STEP_SUMMARY", &gh_sum)
        .env("INPUT_DATASET", &data)
        .env("INPUT_OUTPUT", &out)
        .env("INPUT_RESIZE", "128x128")
        .env("INPUT_EQUALIZE", "clahe")
        .env("INPUT_SPLIT-FILE", &split_file)
        .output()
        .expect("run");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stdout));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).expect("manifest")).expect("json");
    let counts = &m["counts"];
    assert_eq!(counts["images"], chosen.len());
    assert_eq!(
        counts["objects"], nuclei,
        "object counts agree with the dataset's own manifest"
    );
    assert_eq!(
        [counts["train"].clone(), counts["val"].clone(), counts["test"].clone()],
        splits.map(serde_json::Value::from)
    );
    let outputs = std::fs::read_to_string(&gh_out).expect("outputs");
    assert!(
        outputs.contains("objects<<") && outputs.contains(&format!("\n{nuclei}\n")),
        "{outputs}"
    );
    // Histology images stay RGB; 16-bit instance masks stay instance masks.
    assert!(
        m["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|i| i["outputs"][0]["channels"] == 3)
    );
}
