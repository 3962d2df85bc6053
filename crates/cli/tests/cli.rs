//! The umbrella CLI outside Actions (human form) and inside (inputs, outputs).

use std::process::Command;

fn cellops() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cellops"));
    c.env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("GITHUB_STEP_SUMMARY");
    c
}

#[test]
fn synthetic_then_build_in_a_terminal() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let out = cellops()
        .args([
            "synthetic",
            "--count",
            "3",
            "--size",
            "64x64",
            "--style",
            "ihc",
            "--output",
        ])
        .arg(&data)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_dir(data.join("masks")).expect("masks").count(), 3);

    let prepared = tmp.path().join("prepared");
    let out = cellops()
        .args(["build", "--equalize", "global", "--dataset"])
        .arg(&data)
        .arg("--output")
        .arg(&prepared)
        .output()
        .expect("run");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("## CellOps build") && stdout.contains("images: 3\n"),
        "{stdout}"
    );
    assert!(stderr.contains("built 3 images (3 prepared, 0 reused)"), "{stderr}");
    assert!(!stdout.contains("::"), "no workflow commands outside Actions: {stdout}");
}

#[test]
fn build_subcommand_reads_action_inputs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let gh_out = tmp.path().join("out");
    let out = cellops()
        .arg("build")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &gh_out)
        .env("GITHUB_STEP_SUMMARY", tmp.path().join("summary"))
        .env("INPUT_SYNTHETIC", "2")
        .env("INPUT_SYNTHETIC-SIZE", "48x48")
        .env("INPUT_OUTPUT", tmp.path().join("prepared"))
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let outputs = std::fs::read_to_string(gh_out).expect("outputs");
    assert!(outputs.contains("images<<") && outputs.contains("\n2\n"), "{outputs}");
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let out = cellops().arg("deploy-everything").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}
