//! `cellops pipeline` at tiny scale, run from a folder without the repository's files (as on a
//! fresh machine): synthetic nuclei → build → train → evaluate → deploy to a local folder → an
//! HTML report with overlays, the learning curve and distributions.

use std::process::Command;

#[test]
fn the_whole_pipeline_runs_and_leaves_a_report_and_a_release() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = Command::new(env!("CARGO_BIN_EXE_cellops"))
        .current_dir(tmp.path())
        .env_remove("GITHUB_ACTIONS")
        .args([
            "pipeline",
            "--output",
            "run",
            "--synthetic",
            "8",
            "--size",
            "64x64",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--device",
            "cpu",
        ])
        .output()
        .expect("run cellops pipeline");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    for stage in [
        "== build",
        "== train-unet",
        "== evaluate",
        "== deploy-cell-params",
        "== serve",
        "the same nuclei as evaluate",
        "pipeline done",
    ] {
        assert!(log.contains(stage), "{stage} missing from\n{log}");
    }
    let run = tmp.path().join("run");
    let html = std::fs::read_to_string(run.join("eval/report.html")).expect("report.html");
    assert!(html.contains("data:image/png;base64,"), "overlays embedded");
    assert!(html.contains("id=\"training\""), "learning curve included");
    assert!(html.contains("id=\"distributions\""), "distributions included");
    assert!(html.contains("id=\"metrics\""), "metrics against the synthetic masks");
    // The model was fine-tuned from the shipped one, and the classical line stands beside it.
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("unet/bundle/bundle.json")).expect("bundle")).expect("json");
    let shipped: serde_json::Value =
        serde_json::from_str(cellops_unet::bundle::shipped("nuclei").expect("shipped").metadata).expect("json");
    assert_eq!(bundle["parent"], shipped["id"]);
    let md = std::fs::read_to_string(run.join("eval/report.md")).expect("report.md");
    assert!(md.contains("### Model vs classical (same images)"), "{md}");
    // The built-in parameter file was used and deployed with the model and the evaluation.
    let current = run.join("server/current");
    assert!(current.join("cell-params/fluorescence-dapi.yaml").is_file());
    assert!(current.join("unet/bundle/model.safetensors").is_file());
    assert!(current.join("eval/report.html").is_file());
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(current.join("deploy.json")).expect("deploy.json")).expect("json");
    assert_eq!(record["bundle_ids"].as_array().map(Vec::len), Some(1));
    // The trained bundle carries its golden check, which the service passed when it loaded it.
    assert!(current.join("unet/bundle/golden.f32").is_file());
    let check: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("serve-check.json")).expect("serve-check.json")).expect("json");
    assert_eq!(check["same_as_evaluate"], true);
    assert!(check["images"].as_u64().is_some_and(|n| n > 0), "{check}");
    assert!(
        check["latency_ms"]["p50"].as_f64().is_some_and(|ms| ms > 0.0),
        "{check}"
    );
    // The latency is in the report too, beside the evaluation.
    let html = std::fs::read_to_string(run.join("eval/report.html")).expect("report.html");
    let p50 = format!(
        "<td>{:.0}</td>",
        check["latency_ms"]["p50"].as_f64().unwrap_or_default()
    );
    let section = html
        .split("<h2 id=\"serve\">Serve check</h2>")
        .nth(1)
        .expect("a Serve check section");
    assert!(section.contains(&p50), "the section shows p50 {p50}: {section}");
    assert!(html.ends_with("</body></html>\n"), "still one whole document");
}
