//! A candidate model in the release runs as a shadow on the measured images (every one, at share
//! 1), off the latency path: its agreement with the model that answers is in `/v2/monitor`. The
//! candidate here is a copy of the served model, so they agree exactly; `shadow::dice` and the
//! sums are tested on disagreeing labels in the crate.

mod support;

use support::{get, post, record, release_named, serve, synthetic_image};

#[test]
fn the_shadow_agrees_with_a_copy_of_itself() {
    let tmp = tempfile::tempdir().expect("tmp");
    let r = release_named(tmp.path(), "release-shadow");
    let candidate = r.join("models/candidate");
    std::fs::create_dir_all(&candidate).expect("dir");
    for entry in std::fs::read_dir(r.join("models/nuclei")).expect("bundle") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), candidate.join(entry.file_name())).expect("copy");
    }
    // No `models` mapping: the one model that is not the shadow serves the image type.
    std::fs::write(
        r.join("serve.json"),
        r#"{"shadow": {"model": "candidate", "share": 1.0}}"#,
    )
    .expect("serve.json");
    record(&r, "release-shadow");
    let server = serve(&r, &[]);
    let (_, image, _) = synthetic_image(tmp.path());
    let png = std::fs::read(&image).expect("image");
    for _ in 0..3 {
        let url = format!("{}/v2/models/nuclei/measure?params=fluorescence-dapi", server.base);
        let (status, body) = post(&url, &png);
        assert_eq!(status, 200, "{body}");
    }
    // The shadow runs after each answer: wait until all three were compared or skipped.
    let mut report = serde_json::Value::Null;
    for _ in 0..300 {
        report = get(&format!("{}/v2/monitor", server.base)).1;
        let t = &report["shadow"]["types"][0];
        if t["compared"].as_u64().unwrap_or(0) + t["skipped"].as_u64().unwrap_or(0) == 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let shadow = &report["shadow"];
    assert_eq!(shadow["model"], "candidate", "{report}");
    let t = &shadow["types"][0];
    assert_eq!(t["image_type"], "fluorescence-dapi");
    assert!(t["compared"].as_u64().is_some_and(|n| n >= 1), "{report}");
    assert_eq!(
        t["compared"].as_u64().unwrap_or(0) + t["skipped"].as_u64().unwrap_or(0),
        3,
        "{report}"
    );
    assert_eq!(
        (t["mean_dice"].as_f64(), t["mean_count_difference"].as_f64()),
        (Some(1.0), Some(0.0))
    );
    // A shadow that is not in the release is refused, naming serve.json's field.
    std::fs::write(r.join("serve.json"), r#"{"shadow": {"model": "absent", "share": 0.5}}"#).expect("serve.json");
    record(&r, "release-shadow");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cellops-serve"))
        .args([
            "--release",
            &r.display().to_string(),
            "--listen",
            "127.0.0.1:0",
            "--device",
            "cpu",
        ])
        .env_remove("GITHUB_ACTIONS")
        .output()
        .expect("run");
    let said = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && said.contains("shadow.model: no model `absent`"),
        "{said}"
    );
}
