//! The `cellops-monitor` binary as the monitor action runs it (`INPUT_*`, `$GITHUB_OUTPUT`, the
//! step summary): a droplet folder whose service does not answer is an alert (exit 1) with the
//! outputs set and the report written; a broken settings file is a usage error that names its
//! line; a file:// target without a service URL is a usage error.

use std::path::Path;

use cellops_test_support::action::{ActionRun, run_action};

fn monitor(dir: &Path, inputs: &[(&str, &str)]) -> ActionRun {
    run_action(Path::new(env!("CARGO_BIN_EXE_cellops-monitor")), dir, inputs, &[]).expect("run cellops-monitor")
}

#[test]
fn the_action_contract() {
    let tmp = tempfile::tempdir().expect("tmp");
    let droplet = tmp.path().join("droplet");
    std::fs::create_dir_all(&droplet).expect("droplet");
    let target = format!("file://{}", droplet.display());
    // Nothing listens on this port: the listener is dropped before the run.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let url = format!("http://{closed}");
    let report = tmp.path().join("report.json");
    let r = report.display().to_string();
    let run = monitor(
        tmp.path(),
        &[("target", &target), ("service-url", &url), ("output", &r)],
    );
    assert_eq!(run.output.status.code(), Some(1), "{}", run.stdout());
    assert_eq!(run.outputs["status"], "alert");
    assert!(
        run.outputs["alerts"].split(',').any(|k| k == "live"),
        "{:?}",
        run.outputs
    );
    assert_eq!(run.outputs["report"], r);
    assert!(
        run.stdout().contains("::error title=monitor%3A live::"),
        "{}",
        run.stdout()
    );
    assert!(run.summary.contains("## CellOps monitor: alert"), "{}", run.summary);
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    assert_eq!(written["status"], "alert");
    // The run left its heartbeat in the droplet's base folder.
    assert!(droplet.join("monitor/last-run.json").is_file());

    let config = tmp.path().join("monitor.yaml");
    std::fs::write(&config, "slo:\n  window: 1h\n  p95: 3\n").expect("config");
    let c = config.display().to_string();
    let run = monitor(
        tmp.path(),
        &[("target", &target), ("service-url", &url), ("config", &c)],
    );
    assert_eq!(run.output.status.code(), Some(2), "{}", run.stdout());
    assert!(run.stdout().contains("monitor.yaml:3:"), "{}", run.stdout());

    let run = monitor(tmp.path(), &[("target", &target)]);
    assert_eq!(run.output.status.code(), Some(2), "{}", run.stdout());
    assert!(run.stdout().contains("needs --service-url"), "{}", run.stdout());
}
