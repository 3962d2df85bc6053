//! The service's life on the droplet, against the real binary: reloads under load (several
//! clients while the release link is switched several times: no failed request, every answer
//! names exactly one release), a corrupted release refused while the old one serves, an instant
//! rollback to the release kept loaded, SIGTERM under load dropping no in-flight request, and
//! overload beyond the queue turned away at once (503, `Retry-After`) with the service unharmed.

#![allow(clippy::unwrap_used, reason = "test code")]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cellops_serve::admin::{AdminCommand, send};
use serde_json::Value;
use support::{get, release_named, serve};

/// A small fluorescence image (PNG) with a few nuclei.
fn image() -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = cellops_dataset::synthetic::SynthConfig {
        count: 1,
        seed: 3,
        size: [64, 64],
        style: cellops_dataset::synthetic::Style::Fluorescence,
    };
    cellops_dataset::synthetic::write_dataset(&cfg, tmp.path()).unwrap();
    let file = std::fs::read_dir(tmp.path().join("original"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::read(file).unwrap()
}

/// Points `<base>/current` at `releases/<id>` atomically, as a deploy does.
fn switch(base: &Path, id: &str) {
    let tmp = base.join("current.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(Path::new("releases").join(id), &tmp).unwrap();
    std::fs::rename(&tmp, base.join("current")).unwrap();
}

/// A deploy base with the releases `ids`, each recorded, `current` on the first.
fn base(root: &Path, ids: &[&str]) -> PathBuf {
    let base = root.join("srv");
    for id in ids {
        release_named(&base.join("releases"), id);
    }
    switch(&base, ids[0]);
    base
}

fn reload(socket: &Path) -> (bool, Value) {
    let (ok, answer) = send(socket, AdminCommand::Reload).unwrap();
    (ok, serde_json::from_str(&answer).unwrap())
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

/// What a client saw: when it asked, the status (0 when no answer came), the release header
/// and the body's release.
type Seen = (Instant, u16, Option<String>, Option<String>);

/// Waits until `n` more answers arrived at the clients counting into `answered` (however loaded
/// the machine), at most a minute.
fn answers(answered: &AtomicUsize, n: usize) {
    let target = answered.load(Ordering::Relaxed) + n;
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.load(Ordering::Relaxed) < target {
        assert!(Instant::now() < deadline, "the clients got no answers");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `n` clients measuring `image` in a loop until `stop`, counting answers into `answered`; what
/// each request saw.
fn clients(
    base_url: &str,
    n: usize,
    stop: &Arc<AtomicBool>,
    answered: &Arc<AtomicUsize>,
) -> Vec<std::thread::JoinHandle<Vec<Seen>>> {
    let png = Arc::new(image());
    (0..n)
        .map(|_| {
            let url = format!("{base_url}/v2/models/nuclei/measure?params=fluorescence-dapi");
            let (png, stop, answered) = (Arc::clone(&png), Arc::clone(stop), Arc::clone(answered));
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().max_idle_connections(0).build();
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let asked = Instant::now();
                    let r = agent.post(&url).set("Content-Type", "image/png").send_bytes(&png);
                    answered.fetch_add(1, Ordering::Relaxed);
                    seen.push(match r {
                        Ok(r) => {
                            let header = r.header("x-cellops-release").map(str::to_owned);
                            let body: Value = r.into_json().unwrap_or(Value::Null);
                            (asked, 200, header, body["release"].as_str().map(str::to_owned))
                        }
                        Err(ureq::Error::Status(code, _)) => (asked, code, None, None),
                        Err(_) => (asked, 0, None, None),
                    });
                }
                seen
            })
        })
        .collect()
}

#[test]
fn reloads_under_load_fail_no_request_and_every_answer_names_one_release() {
    let tmp = tempfile::tempdir().unwrap();
    let base = base(tmp.path(), &["r1", "r2", "r3"]);
    let socket = tmp.path().join("admin.sock");
    let server = serve(
        &base.join("current"),
        &["--admin-socket", socket.to_str().unwrap(), "--workers", "2"],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let workers = clients(&server.base, 4, &stop, &answered);
    // r1 → r2 (load) → r3 (load) → r2 (kept loaded: instant) → r3 (instant) → r1 by SIGHUP (load).
    let mut outcomes = Vec::new();
    for id in ["r2", "r3", "r2", "r3"] {
        answers(&answered, 8);
        switch(&base, id);
        let (ok, answer) = reload(&socket);
        assert!(ok, "{answer}");
        assert_eq!(answer["status"]["release"], id, "{answer}");
        outcomes.push(answer["reload"]["outcome"].as_str().unwrap().to_owned());
    }
    assert_eq!(outcomes, ["loaded", "loaded", "restored", "restored"]);
    answers(&answered, 8);
    switch(&base, "r1");
    signal(server.child.id(), "HUP");
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&format!("{}/v2/health/ready", server.base)).1["release"] != "r1" {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(100));
    }
    answers(&answered, 8);
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    let failed: Vec<_> = seen.iter().filter(|s| s.1 != 200).map(|s| s.1).collect();
    assert!(failed.is_empty(), "failed requests during reloads: {failed:?}");
    for (_, _, header, body) in &seen {
        assert_eq!(header, body, "the header and the body name the same release");
        assert!(matches!(header.as_deref(), Some("r1" | "r2" | "r3")), "{header:?}");
    }
    let releases: std::collections::BTreeSet<_> = seen.iter().filter_map(|s| s.2.clone()).collect();
    assert_eq!(releases.len(), 3, "answers came from every release: {releases:?}");
}

#[test]
fn a_corrupted_release_is_refused_while_the_old_one_serves_and_rollback_is_instant() {
    let tmp = tempfile::tempdir().unwrap();
    let base = base(tmp.path(), &["good", "bad", "next"]);
    let weights = base.join("releases/bad/models/nuclei/model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&weights, bytes).unwrap();
    let socket = tmp.path().join("admin.sock");
    let server = serve(&base.join("current"), &["--admin-socket", socket.to_str().unwrap()]);
    let ready = || get(&format!("{}/v2/health/ready", server.base));

    switch(&base, "bad");
    let (ok, answer) = reload(&socket);
    assert!(!ok, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("model.safetensors") && error.contains("differs from deploy.json"),
        "{error}"
    );
    let (status, body) = ready();
    assert_eq!(status, 200, "the old release still serves: {body}");
    assert_eq!(body["release"], "good");
    assert!(
        body["last_reload_error"]
            .as_str()
            .unwrap()
            .contains("model.safetensors"),
        "{body}"
    );
    let metrics = ureq::get(&format!("{}/metrics", server.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.lines().any(|l| l == "cellops_reload_failures_total 1"),
        "{metrics}"
    );
    let url = format!("{}/v2/models/nuclei/measure?params=fluorescence-dapi", server.base);
    let answer = ureq::post(&url)
        .set("Content-Type", "image/png")
        .send_bytes(&image())
        .unwrap();
    assert_eq!(answer.header("x-cellops-release"), Some("good"));

    // A good release loads; the one before stays loaded, so going back needs no load.
    switch(&base, "next");
    assert!(reload(&socket).0);
    let (status, body) = ready();
    assert_eq!(
        (status, body["release"].as_str(), body["previous"].as_str()),
        (200, Some("next"), Some("good"))
    );
    assert!(body.get("last_reload_error").is_none(), "{body}");
    std::fs::remove_dir_all(base.join("releases/good/models")).unwrap();
    switch(&base, "good");
    let (ok, answer) = reload(&socket);
    assert!(ok, "{answer}");
    assert_eq!(answer["reload"]["outcome"], "restored");
    assert_eq!(ready().1["release"], "good");
}

#[test]
fn overload_beyond_the_queue_is_turned_away_at_once_and_the_service_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let base = base(tmp.path(), &["r1"]);
    let server = serve(&base.join("current"), &["--workers", "1", "--queue", "1"]);
    let url = format!("{}/v2/models/nuclei/measure?params=fluorescence-dapi", server.base);
    let png = Arc::new(image());
    // Twelve clients at once on one worker and one place in the queue.
    let start = Arc::new(std::sync::Barrier::new(12));
    let seen: Vec<(u16, Option<String>)> = (0..12)
        .map(|_| {
            let (url, png, start) = (url.clone(), Arc::clone(&png), Arc::clone(&start));
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
                start.wait();
                match agent.post(&url).set("Content-Type", "image/png").send_bytes(&png) {
                    Ok(r) => (r.status(), None),
                    Err(ureq::Error::Status(code, r)) => (code, r.header("retry-after").map(str::to_owned)),
                    Err(e) => panic!("no answer under overload: {e}"),
                }
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let ok = seen.iter().filter(|s| s.0 == 200).count();
    let busy: Vec<_> = seen.iter().filter(|s| s.0 == 503).collect();
    assert_eq!(ok + busy.len(), 12, "every answer is 200 or 503: {seen:?}");
    // How many are turned away depends on how fast the one worker is: at least one is, with
    // twelve at once and room for two.
    assert!(ok >= 1 && !busy.is_empty(), "one worker and one queue place: {seen:?}");
    assert!(
        busy.iter().all(|s| s.1.as_deref() == Some("1")),
        "503s say when to retry: {seen:?}"
    );
    // Then it serves as before, and its metrics count what it refused.
    let (status, _) = get(&format!("{}/v2/health/ready", server.base));
    assert_eq!(status, 200);
    let (status, body) = support::post(&url, &png);
    assert_eq!(status, 200, "{body}");
    let metrics = ureq::get(&format!("{}/metrics", server.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let refused = metrics
        .lines()
        .find(|l| l.starts_with("cellops_http_requests_total") && l.contains("503"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(refused, Some(busy.len() as f64), "{metrics}");
}

#[test]
fn sigterm_under_load_answers_every_request_already_asked_then_exits() {
    let tmp = tempfile::tempdir().unwrap();
    let base = base(tmp.path(), &["r1"]);
    let mut server = serve(&base.join("current"), &["--workers", "1", "--queue", "16"]);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let workers = clients(&server.base, 4, &stop, &answered);
    answers(&answered, 8);
    // Those were asked at least this long before SIGTERM.
    std::thread::sleep(Duration::from_millis(300));
    let terminated = Instant::now();
    signal(server.child.id(), "TERM");
    let status = server.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(status.success(), "exit status {status}");
    let seen: Vec<Seen> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    // Asked well before SIGTERM (so the server had accepted it): answered in full.
    let asked_before: Vec<_> = seen
        .iter()
        .filter(|s| s.0 + Duration::from_millis(200) < terminated)
        .collect();
    assert!(
        asked_before.len() >= 4,
        "{} requests before SIGTERM",
        asked_before.len()
    );
    let dropped: Vec<_> = asked_before.iter().filter(|s| s.1 != 200).collect();
    assert!(
        dropped.is_empty(),
        "requests in flight at SIGTERM were dropped: {dropped:?}"
    );
}

#[test]
fn the_droplets_unit_starts_the_binary_with_flags_it_takes() {
    let template = std::fs::read_to_string(support::repo().join("infra/cloud-init.yaml.tftpl")).unwrap();
    // One ExecStart with the public listener behind nginx, one with the private listener of a
    // load-balanced fleet as well, one without either.
    let lines: Vec<&str> = template
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("ExecStart=${base_path}/current/bin/cellops-serve"))
        .collect();
    assert_eq!(lines.len(), 3, "the unit's ExecStart lines: {lines:?}");
    assert!(lines.iter().any(|l| l.contains("--public-listen")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("--private-listen")), "{lines:?}");
    for line in lines {
        // Terraform's values, and the credentials folder systemd puts for %d.
        let line = line
            .replace("${base_path}", "/srv/cellops")
            .replace("${serve_port}", "8080")
            .replace("${public_port}", "8081")
            // systemd's value from the EnvironmentFile the metadata script writes.
            .replace("$${PRIVATE_LISTEN}", "10.117.0.2:8082")
            .replace("%d", "/run/credentials/cellops-serve.service");
        assert!(!line.contains("${"), "a template value this test does not fill: {line}");
        let args: Vec<&str> = line.split_whitespace().skip(1).collect();
        assert!(args.contains(&"--admin-socket"), "{line}");
        // clap stops at --help only after every flag before it was known and its value parsed.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cellops-serve"))
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_cellops-serve"))
        .args(["--no-such-flag", "--help"])
        .output()
        .unwrap();
    assert!(!bad.status.success(), "an unknown flag before --help fails");
}
