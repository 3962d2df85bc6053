//! `monitor` against a real service behind a real sshd on 127.0.0.1: the droplet's base folder
//! holds releases made by `deploy-cell-params`, `cellops serve` serves `current`, and the monitor
//! connects over SSH with the pinned host key and reaches the service through its tunnel. A
//! healthy droplet gives no alert and leaves a heartbeat; then each failure is made and must be
//! detected and named: missed runs, slow answers, a full disk, a failing golden check, a release
//! the service did not follow, not ready, down.

#![allow(clippy::unwrap_used, reason = "test code")]

use std::path::{Path, PathBuf};

use cellops_actions::{Env, Exit, Runner};
use cellops_test_support::github::MockGithub;
use cellops_test_support::sshd::Sshd;
use serde_json::Value;

/// Settings under which any free disk passes: this machine's disk is not the droplet's.
const ANY_DISK: &str = "disk:\n  warn_below_percent: 0\n  alert_below_percent: 0\n";

fn quiet() -> Runner {
    Runner::new(&Env::default(), Box::new(std::io::sink()), Box::new(std::io::sink()))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// A lab's repository: one parameter file and the shipped nuclei bundle (with its reference).
fn lab(root: &Path) -> PathBuf {
    let r = root.join("lab");
    std::fs::create_dir_all(r.join("cell-params")).unwrap();
    std::fs::create_dir_all(r.join("models/nuclei")).unwrap();
    std::fs::copy(
        repo_root().join("cell-params/fluorescence-dapi.yaml"),
        r.join("cell-params/fluorescence-dapi.yaml"),
    )
    .unwrap();
    for entry in std::fs::read_dir(repo_root().join("models/nuclei")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), r.join("models/nuclei").join(entry.file_name())).unwrap();
    }
    r
}

/// Deploys the lab to the droplet's base folder; the release id.
fn deploy(lab: &Path, base: &Path) -> String {
    let mut args = cellops_deploy_cell_params::Args::new(&format!("file://{}", base.display())).unwrap();
    args.root = lab.to_owned();
    args.include = Some("models/**".to_owned());
    match cellops_deploy_cell_params::run(&args, &quiet()).unwrap() {
        cellops_deploy_cell_params::Done::Deployed(outcome, _) => outcome.id,
        other => panic!("{other:?}"),
    }
}

fn serve(base: &Path, state: &Path) -> cellops_serve::Running {
    let mut args = cellops_serve::Args::new(&base.join("current")).unwrap();
    args.listen = Some("127.0.0.1:0".parse().unwrap());
    args.device = cellops_unet::device::Accelerator::Cpu;
    args.state_dir = Some(state.to_owned());
    cellops_serve::start(&args).unwrap()
}

/// Runs the monitor once, keeping alert issues in the mock GitHub at `api`; its exit code and
/// the JSON report it wrote.
fn monitor(sshd: &Sshd, base: &Path, (port, api): (u16, &str), config: Option<&str>, out: &Path) -> (Exit, Value) {
    let target = format!("ssh://{}@127.0.0.1:{}{}", sshd.user, sshd.port, base.display());
    let mut args = cellops_monitor::Args::new(&target).unwrap();
    args.ssh.key = Some(sshd.client_key.clone());
    args.ssh.known_hosts = Some(sshd.known_hosts_line());
    args.service_port = port;
    args.output = out.join("report.json");
    args.timeout = 60;
    args.issues = true;
    args.token = Some("ghs_t0kenFORtests".into());
    args.repository = Some("lab/nuclei".into());
    args.api_url = Some(api.to_owned());
    if let Some(text) = config {
        std::fs::write(out.join("monitor.yaml"), text).unwrap();
        args.config = Some(out.join("monitor.yaml"));
    }
    let _ = std::fs::remove_file(&args.output);
    let exit = cellops_monitor::execute(&args, &quiet());
    let report = serde_json::from_slice(&std::fs::read(&args.output).unwrap()).unwrap();
    (exit, report)
}

fn findings<'a>(report: &'a Value, check: &'a str) -> impl Iterator<Item = &'a Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(move |f| f["check"] == check)
}

/// The worst severity of a check's findings.
fn severity_of(report: &Value, check: &str) -> &'static str {
    let rank = ["ok", "info", "warn", "alert"];
    let worst = findings(report, check)
        .filter_map(|f| rank.iter().position(|r| f["severity"] == *r))
        .max()
        .unwrap_or_else(|| panic!("no {check} finding: {report:#}"));
    rank[worst]
}

fn message_of(report: &Value, check: &str) -> String {
    findings(report, check)
        .filter_map(|f| f["message"].as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The kinds that alerted.
fn alerts(report: &Value) -> Vec<&str> {
    let mut kinds: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "alert")
        .filter_map(|f| f["check"].as_str())
        .collect();
    kinds.dedup();
    kinds
}

/// Measures a synthetic image through the service `n` times.
fn measure(address: std::net::SocketAddr, n: usize) {
    use cellops_dataset::synthetic::{Style, SynthConfig, generate_one};
    let cfg = SynthConfig {
        count: 1,
        seed: 4,
        size: [96, 96],
        style: Style::Fluorescence,
    };
    let png = cellops_dataset::io::encode_png(&generate_one(&cfg, 0).0).unwrap();
    for _ in 0..n {
        let url = format!("http://{address}/v2/models/nuclei/measure?params=fluorescence-dapi");
        let r = ureq::post(&url)
            .set("Content-Type", "image/png")
            .send_bytes(&png)
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[test]
fn each_failure_is_detected_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(&tmp.path().join("sshd")).unwrap();
    let base = tmp.path().join("droplet");
    let lab = lab(tmp.path());
    let first = deploy(&lab, &base);
    let service = serve(&base, &tmp.path().join("state"));
    let github = MockGithub::start();
    let tracker = github.serve_issues("lab/nuclei");
    let uri = github.uri();
    let port = (service.address.port(), uri.as_str());
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();

    // Healthy: nothing alerts; the first run has no earlier heartbeat and leaves one.
    let (exit, report) = monitor(&sshd, &base, port, Some(ANY_DISK), &out);
    assert_eq!(exit, Exit::Success, "{report:#}");
    assert_eq!(report["status"], "ok", "{report:#}");
    for check in ["live", "ready", "release", "golden", "disk"] {
        assert_eq!(severity_of(&report, check), "ok", "{check}: {report:#}");
    }
    assert_eq!(report["current"], first.as_str());
    let heartbeat = base.join("monitor/last-run.json");
    assert!(heartbeat.is_file(), "a heartbeat is left on the droplet");

    // Missed runs: the last heartbeat is ten hours old.
    let mut beat: serde_json::Value = serde_json::from_slice(&std::fs::read(&heartbeat).unwrap()).unwrap();
    beat["at"] = (beat["at"].as_u64().unwrap() - 36_000).into();
    std::fs::write(&heartbeat, serde_json::to_vec(&beat).unwrap()).unwrap();
    let (exit, report) = monitor(&sshd, &base, port, Some(ANY_DISK), &out);
    assert_eq!((exit, severity_of(&report, "dead_man")), (Exit::Failure, "alert"));
    assert!(
        message_of(&report, "dead_man").contains("silent for 10.0 h"),
        "{report:#}"
    );

    // Slow, and a full disk: objectives no service meets.
    measure(service.address, 3);
    let strict = "slo:\n  window: 5m\n  p95_latency_s: 0.0001\n  min_requests: 3\ndisk:\n  warn_below_percent: 100\n  alert_below_percent: 100\n";
    let (_, report) = monitor(&sshd, &base, port, Some(strict), &out);
    assert_eq!(severity_of(&report, "latency"), "alert", "{report:#}");
    assert_eq!(severity_of(&report, "error_rate"), "ok");
    assert_eq!(severity_of(&report, "disk"), "alert");
    assert_eq!(alerts(&report), ["disk", "latency"]);

    // A golden check that fails now: the served bundle's recorded output is not what it was.
    let golden = base.join(format!("releases/{first}/models/nuclei/golden.f32"));
    let mut bytes = std::fs::read(&golden).unwrap();
    bytes[0] ^= 0x40;
    std::fs::remove_file(&golden).unwrap();
    std::fs::write(&golden, &bytes).unwrap();
    let (_, report) = monitor(&sshd, &base, port, Some(ANY_DISK), &out);
    assert_eq!(severity_of(&report, "golden"), "alert");
    assert!(message_of(&report, "golden").contains("golden.f32"), "{report:#}");

    // A release the service did not follow: `current` moved, the service still serves the first.
    std::fs::write(lab.join("cell-params/fluorescence-dapi.yaml"), {
        let text = std::fs::read_to_string(lab.join("cell-params/fluorescence-dapi.yaml")).unwrap();
        text.replacen("description:", "description: v2 -", 1)
    })
    .unwrap();
    let second = deploy(&lab, &base);
    let (_, report) = monitor(&sshd, &base, port, Some(ANY_DISK), &out);
    assert_eq!(severity_of(&report, "release"), "alert");
    let why = message_of(&report, "release");
    assert!(
        why.contains(&format!("serves {first}")) && why.contains(&format!("`current` is {second}")),
        "{why}"
    );
    assert_eq!(report["rollback_to"], first.as_str());

    // Not ready (draining), then down.
    service.service.drain();
    let (_, report) = monitor(&sshd, &base, port, Some(ANY_DISK), &out);
    assert_eq!(severity_of(&report, "ready"), "alert");
    assert!(message_of(&report, "ready").contains("draining"), "{report:#}");
    service.stop().unwrap();
    let (exit, report) = monitor(&sshd, &base, port, Some(ANY_DISK), &out);
    assert_eq!((exit, severity_of(&report, "live")), (Exit::Failure, "alert"));
    assert!(alerts(&report).contains(&"live"), "{report:#}");

    // One issue per alert kind, closed on recovery; the ones still failing stay open.
    let issues = tracker.issues();
    let issue = |kind: &str| {
        issues
            .iter()
            .find(|i| i.title.starts_with(&format!("CellOps monitor: {kind} alert")))
            .unwrap_or_else(|| panic!("no {kind} issue in {issues:#?}"))
    };
    let dead_man = issue("dead_man");
    assert_eq!(dead_man.state, "closed");
    assert!(dead_man.comments.last().is_some_and(|c| c.starts_with("Recovered")));
    assert_eq!(
        (issue("disk").state.as_str(), issue("latency").state.as_str()),
        ("closed", "closed")
    );
    let release = issue("release");
    assert!(
        release.body.contains(&format!("rollback --to {first}")),
        "{}",
        release.body
    );
    assert!(
        release.body.contains("bundle `"),
        "the bundle id is named: {}",
        release.body
    );
    assert_eq!(issue("live").state, "open");
    assert_eq!(issues.iter().filter(|i| i.title.contains(": live alert")).count(), 1);
    assert!(issues.iter().all(|i| i.labels == ["cellops-monitor"]));
}

#[test]
fn a_fleet_is_checked_host_by_host_and_the_worst_decides() {
    let tmp = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(&tmp.path().join("sshd")).unwrap();
    let (healthy, empty) = (tmp.path().join("droplet-1"), tmp.path().join("droplet-2"));
    deploy(&lab(tmp.path()), &healthy);
    std::fs::create_dir_all(&empty).unwrap();
    let service = serve(&healthy, &tmp.path().join("state"));
    let target = |base: &Path| format!("ssh://{}@127.0.0.1:{}{}", sshd.user, sshd.port, base.display());
    // One target as the input's line, the other from a hosts file.
    let hosts = tmp.path().join("hosts.txt");
    std::fs::write(&hosts, format!("# fleet\n{}\n", target(&empty))).unwrap();
    let mut args = cellops_monitor::Args::new(&target(&healthy)).unwrap();
    args.hosts_file = Some(hosts);
    args.ssh.key = Some(sshd.client_key.clone());
    args.ssh.known_hosts = Some(sshd.known_hosts_line());
    args.service_port = service.address.port();
    args.output = tmp.path().join("report.json");
    std::fs::write(tmp.path().join("monitor.yaml"), ANY_DISK).unwrap();
    args.config = Some(tmp.path().join("monitor.yaml"));
    let exit = cellops_monitor::execute(&args, &quiet());
    let report: Value = serde_json::from_slice(&std::fs::read(&args.output).unwrap()).unwrap();
    assert_eq!(exit, Exit::Failure, "{report:#}");
    assert_eq!(report["status"], "alert", "{report:#}");
    let hosts = report["hosts"].as_array().expect("a report per host");
    assert_eq!(hosts.len(), 2);
    assert_eq!(hosts[0]["target"], target(&healthy).as_str());
    assert_eq!(hosts[0]["status"], "ok", "{:#}", hosts[0]);
    assert_eq!(
        hosts[1]["status"], "alert",
        "the host without a release: {:#}",
        hosts[1]
    );
    assert_eq!(severity_of(&hosts[1], "release"), "alert", "{:#}", hosts[1]);
}
