//! `cellops-pr-report` run the way a workflow runs it: inputs from `INPUT_*`, the pull request from
//! the event file, outputs and summary in the runner's files, and the GitHub API a local mock on
//! 127.0.0.1 (wiremock) that `api-url` points at.

use std::path::Path;

use cellops_test_support::action::{self as harness, ActionRun};
use cellops_test_support::github::MockGithub;
use serde_json::json;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, ResponseTemplate};

const TOKEN: &str = "ghs_SecretT0kenForTheTest";

/// A workspace with a pull_request event for #7 of o/r.
fn workspace(root: &Path) {
    std::fs::write(
        root.join("event.json"),
        json!({"action": "synchronize", "number": 7, "pull_request": {"number": 7}}).to_string(),
    )
    .expect("event");
}

fn run(dir: &Path, api: &MockGithub, inputs: &[(&str, &str)]) -> ActionRun {
    let uri = api.uri();
    let event = dir.join("event.json");
    let event = event.to_str().expect("utf-8");
    let mut all: Vec<(&str, &str)> = vec![("token", TOKEN), ("api-url", uri.as_str())];
    all.extend_from_slice(inputs);
    harness::run_action(
        Path::new(env!("CARGO_BIN_EXE_cellops-pr-report")),
        dir,
        &all,
        &[
            ("GITHUB_REPOSITORY", "o/r"),
            ("GITHUB_EVENT_PATH", event),
            ("GITHUB_EVENT_NAME", "pull_request"),
        ],
    )
    .expect("run")
}

/// The token is masked before anything else and appears nowhere but in the mask command.
fn assert_masked(run: &ActionRun) {
    let out = run.stdout();
    assert!(
        out.starts_with(&format!("::add-mask::{TOKEN}\n")),
        "the token is masked first:\n{out}"
    );
    assert_eq!(out.matches(TOKEN).count(), 1, "{out}");
    assert!(!run.summary.contains(TOKEN));
    assert!(!String::from_utf8_lossy(&run.output.stderr).contains(TOKEN));
}

#[test]
fn changed_lists_cell_parameter_files_and_image_types() {
    let tmp = tempfile::tempdir().expect("tmp");
    workspace(tmp.path());
    let api = MockGithub::start();
    api.mount(
        Mock::given(method("GET"))
            .and(path("/repos/o/r/pulls/7/files"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"filename": "cell-params/he.yaml", "status": "modified"},
            {"filename": "README.md", "status": "modified"},
            {"filename": "cell-params/ki67.yaml", "status": "renamed", "previous_filename": "cell-params/ki-67.yaml"},
            {"filename": "cell-params/notes/history.md", "status": "added"},
            {"filename": "cell-params/dapi.yml", "status": "removed"}
        ]))),
    );
    let run = run(tmp.path(), &api, &[("command", "changed")]);
    assert_eq!(run.code(), 0, "{}", run.stdout());
    assert_masked(&run);
    assert_eq!(
        run.outputs["files"],
        "cell-params/he.yaml\ncell-params/ki67.yaml\ncell-params/ki-67.yaml\ncell-params/notes/history.md\ncell-params/dapi.yml"
    );
    assert_eq!(run.outputs["count"], "5");
    assert_eq!(run.outputs["any"], "true");
    assert_eq!(run.outputs["image-types"], "dapi\nhe\nki-67\nki67");
    assert_eq!(run.outputs["image-types-json"], r#"["dapi","he","ki-67","ki67"]"#);
    assert!(
        run.summary
            .contains("| `cell-params/ki-67.yaml` | renamed to cell-params/ki67.yaml |"),
        "{}",
        run.summary
    );
    assert!(!run.summary.contains("README.md"));
}

#[test]
fn changed_with_nothing_matching_says_so() {
    let tmp = tempfile::tempdir().expect("tmp");
    workspace(tmp.path());
    let api = MockGithub::start();
    api.mount(
        Mock::given(method("GET"))
            .and(path("/repos/o/r/pulls/12/files"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!([{"filename": "src/x.rs", "status": "added"}])),
            ),
    );
    let run = run(tmp.path(), &api, &[("command", "changed"), ("pr", "12")]);
    assert_eq!(run.code(), 0, "{}", run.stdout());
    assert_eq!(run.outputs["files"], "");
    assert_eq!(run.outputs["count"], "0");
    assert_eq!(run.outputs["any"], "false");
    assert_eq!(run.outputs["image-types-json"], "[]");
    assert!(run.summary.contains("nothing to evaluate"), "{}", run.summary);
}

#[test]
fn comment_posts_the_report_as_a_sticky_comment() {
    let tmp = tempfile::tempdir().expect("tmp");
    workspace(tmp.path());
    std::fs::write(
        tmp.path().join("report.md"),
        "## Evaluation\n\n| image | F1 |\n|---|---|\n| a | 0.91 |\n",
    )
    .expect("report");
    let api = MockGithub::start();
    api.mount(
        Mock::given(method("GET"))
            .and(path("/repos/o/r/issues/7/comments"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([]))),
    );
    api.mount(
        Mock::given(method("POST"))
            .and(path("/repos/o/r/issues/7/comments"))
            .and(body_string_contains(
                "<!-- cellops:cell-params-report -->\\n## Evaluation",
            ))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "id": 5, "body": "x", "html_url": "https://github.com/o/r/pull/7#issuecomment-5",
                "user": {"login": "github-actions[bot]", "type": "Bot"}
            })))
            .expect(1),
    );
    let run = run(tmp.path(), &api, &[("command", "comment"), ("report", "report.md")]);
    assert_eq!(run.code(), 0, "{}", run.stdout());
    assert_masked(&run);
    assert_eq!(run.outputs["action"], "created");
    assert_eq!(
        run.outputs["comment-url"],
        "https://github.com/o/r/pull/7#issuecomment-5"
    );
    assert_eq!(run.outputs["comment-id"], "5");
    api.verify();
}

#[test]
fn a_fork_pull_request_gets_the_report_in_the_summary_and_a_notice() {
    let tmp = tempfile::tempdir().expect("tmp");
    workspace(tmp.path());
    std::fs::write(tmp.path().join("report.md"), "## Evaluation\n\nF1 0.91\n").expect("report");
    let api = MockGithub::start();
    api.mount(
        Mock::given(method("GET"))
            .and(path("/repos/o/r/issues/7/comments"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([]))),
    );
    api.mount(Mock::given(method("POST")).respond_with(
        ResponseTemplate::new(403).set_body_json(json!({"message": "Resource not accessible by integration"})),
    ));
    let run = run(tmp.path(), &api, &[("command", "comment"), ("report", "report.md")]);
    assert_eq!(
        run.code(),
        0,
        "a read-only token does not fail the job:\n{}",
        run.stdout()
    );
    let out = run.stdout();
    assert!(out.contains("::notice title=PR comment not posted::"), "{out}");
    assert!(!out.contains("::error"), "{out}");
    assert!(run.summary.contains("## Evaluation\n\nF1 0.91"), "{}", run.summary);
    assert_eq!(run.outputs["action"], "skipped");
    assert_eq!(run.outputs["comment-url"], "");
}

#[test]
fn a_rejected_token_fails_with_a_clear_annotation() {
    let tmp = tempfile::tempdir().expect("tmp");
    workspace(tmp.path());
    let api = MockGithub::start();
    api.mount(
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({"message": "Bad credentials"}))),
    );
    let run = run(tmp.path(), &api, &[("command", "changed")]);
    assert_eq!(run.code(), 3, "{}", run.stdout());
    assert_masked(&run);
    let out = run.stdout();
    assert!(out.contains("::error title=GitHub token rejected::"), "{out}");
    assert!(out.contains("Bad credentials"), "{out}");
}

#[test]
fn missing_inputs_are_usage_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    workspace(tmp.path());
    let api = MockGithub::start();
    // No report for `comment`.
    let run1 = run(tmp.path(), &api, &[("command", "comment")]);
    assert_eq!(run1.code(), 2, "{}", run1.stdout());
    assert!(run1.stdout().contains("report input"), "{}", run1.stdout());
    // Not a pull-request event and no pr input.
    std::fs::write(tmp.path().join("event.json"), r#"{"ref": "refs/heads/main"}"#).expect("event");
    let run2 = run(tmp.path(), &api, &[("command", "changed")]);
    assert_eq!(run2.code(), 2, "{}", run2.stdout());
    assert!(run2.stdout().contains("set the pr input"), "{}", run2.stdout());
}

#[test]
fn a_malformed_repository_is_a_usage_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    workspace(tmp.path());
    let api = MockGithub::start();
    let run = run(tmp.path(), &api, &[("command", "changed"), ("repository", "o/r?x=1")]);
    assert_eq!(run.code(), 2, "{}", run.stdout());
    assert!(run.stdout().contains("is not owner/name"), "{}", run.stdout());
}
