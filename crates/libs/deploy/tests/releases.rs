//! The release logic against a real OpenSSH server on 127.0.0.1 (started by the tests, with
//! generated keys) and against a local folder (`file://`): the same cases for both.

#![allow(clippy::too_many_lines, reason = "a test reads top to bottom as one scenario")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use cellops_deploy::release::{self, DeployConfig, DeployError};
use cellops_deploy::remote::{LocalRemote, Remote};
use cellops_deploy::ssh::{self, Auth, ConnectError, HostCheck, SshOptions};
use cellops_test_support::sshd::{Sshd, keygen};

mod support;
use support::source;

fn options(s: &Sshd, auth: Auth, host_check: HostCheck) -> SshOptions {
    SshOptions {
        host: "127.0.0.1".into(),
        port: s.port,
        username: s.user.clone(),
        auth,
        host_check,
        connect_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(30),
    }
}

fn key_auth(s: &Sshd) -> Auth {
    Auth::Key {
        private_key: s.client_key.clone(),
        passphrase: None,
    }
}

fn connect(s: &Sshd) -> Box<dyn Remote> {
    Box::new(ssh::connect(&options(s, key_auth(s), HostCheck::KnownHosts(s.known_hosts_line()))).expect("connect"))
}

/// The release cases, on any remote.
fn release_cases(
    mut open: impl FnMut() -> Box<dyn Remote>,
    base: &str,
    src: &Path,
    on_server: &dyn Fn(&str) -> PathBuf,
) {
    let cfg = DeployConfig {
        keep_releases: 2,
        ..DeployConfig::default()
    };
    let big = vec![7u8; 300_000];
    let v1 = source(
        src,
        &[
            ("cell-params/he.yaml", b"description: he\npixel_size_um: 0.25\n"),
            ("cell-params/ki67.yaml", b"description: ki67\npixel_size_um: 0.5\n"),
            ("models/bundle/model.safetensors", &big),
        ],
    );
    // First deploy: everything is sent.
    let mut r = open();
    let first = release::deploy(r.as_mut(), base, &v1, &cfg, &mut |_| {}).expect("first deploy");
    assert_eq!(
        (first.files_sent, first.files_linked, first.previous.as_deref()),
        (3, 0, None)
    );
    assert!(first.bytes_sent > 300_000);
    let current = std::fs::read_link(on_server("current")).expect("current link");
    assert_eq!(current, PathBuf::from(format!("releases/{}", first.id)));
    assert_eq!(
        std::fs::read(on_server(&format!(
            "releases/{}/models/bundle/model.safetensors",
            first.id
        )))
        .expect("file"),
        big
    );
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(on_server(&format!("releases/{}/deploy.json", first.id))).expect("deploy.json"),
    )
    .expect("json");
    assert_eq!(record["files"].as_array().map(Vec::len), Some(3));
    assert_eq!(record["files"][0]["path"], "cell-params/he.yaml");
    // No change: no release, nothing sent, `current` stays; the attempt is logged.
    let same = release::deploy(r.as_mut(), base, &v1, &cfg, &mut |_| {}).expect("no-change deploy");
    assert!(same.unchanged);
    assert_eq!(
        (same.id.as_str(), same.files_sent, same.bytes_sent),
        (first.id.as_str(), 0, 0)
    );
    assert_eq!(
        release::list(r.as_mut(), base).expect("list").len(),
        1,
        "no new release"
    );
    assert_eq!(current, std::fs::read_link(on_server("current")).expect("current link"));
    // Forced: a new release, but nothing except deploy.json is sent (hard links of the files).
    let forced = DeployConfig {
        force: true,
        ..cfg.clone()
    };
    let second = release::deploy(r.as_mut(), base, &v1, &forced, &mut |_| {}).expect("forced deploy");
    assert!(!second.unchanged);
    assert_eq!((second.files_sent, second.files_linked), (0, 3));
    assert!(second.bytes_sent < 4096, "sent {} bytes", second.bytes_sent);
    assert_eq!(second.previous.as_deref(), Some(first.id.as_str()));
    // One file changed: one file sent.
    let v2 = source(
        src,
        &[("cell-params/he.yaml", b"description: he v2\npixel_size_um: 0.25\n")],
    );
    let mut v2_all = v1.clone();
    v2_all[0] = v2[0].clone();
    let third = release::deploy(r.as_mut(), base, &v2_all, &cfg, &mut |_| {}).expect("one change");
    assert_eq!((third.files_sent, third.files_linked), (1, 2));
    // keep_releases = 2: the first release was pruned.
    assert_eq!(third.pruned, vec![first.id.clone()]);
    assert!(!on_server(&format!("releases/{}", first.id)).exists());
    // Rollback goes to the previous release and is logged.
    let (from, to) = release::rollback(r.as_mut(), base, None, &cfg).expect("rollback");
    assert_eq!(
        (from.as_deref(), to.as_str()),
        (Some(third.id.as_str()), second.id.as_str())
    );
    assert_eq!(
        std::fs::read_link(on_server("current")).expect("link"),
        PathBuf::from(format!("releases/{}", second.id))
    );
    let e = release::rollback(r.as_mut(), base, Some("nope"), &cfg).expect_err("unknown id");
    assert!(matches!(e, DeployError::NoSuchRelease { .. }), "{e}");
    let log = std::fs::read_to_string(on_server("deployments.jsonl")).expect("audit log");
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(
        events
            .iter()
            .map(|e| e["event"].as_str().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["deploy", "unchanged", "deploy", "deploy", "rollback"]
    );
    // A failing health check switches back and fails.
    let bad = DeployConfig {
        health_check: Some("test -f cell-params/missing.yaml || { echo missing file; exit 3; }".into()),
        ..forced.clone()
    };
    let e = release::deploy(r.as_mut(), base, &v1, &bad, &mut |_| {}).expect_err("health check fails");
    match &e {
        DeployError::HealthCheck {
            rolled_back_to, output, ..
        } => {
            assert_eq!(rolled_back_to.as_deref(), Some(second.id.as_str()));
            assert!(output.output.contains("missing file"), "{output:?}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        std::fs::read_link(on_server("current")).expect("link"),
        PathBuf::from(format!("releases/{}", second.id))
    );
    let good = DeployConfig {
        health_check: Some("test -f cell-params/he.yaml && echo ok".into()),
        ..forced.clone()
    };
    let healthy = release::deploy(r.as_mut(), base, &v1, &good, &mut |_| {}).expect("healthy");
    assert!(healthy.health.as_ref().is_some_and(|h| h.output.contains("ok")));
    // A held lock refuses a concurrent deploy, naming the holder.
    std::fs::create_dir(on_server(".lock")).expect("lock");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    std::fs::write(
        on_server(".lock/owner.json"),
        format!(r#"{{"host":"runner-7","pid":42,"actor":"alice","run":null,"since":{now},"since_utc":"now"}}"#),
    )
    .expect("owner");
    let e = release::deploy(r.as_mut(), base, &v1, &cfg, &mut |_| {}).expect_err("locked");
    assert!(
        matches!(e, DeployError::Locked { .. }) && e.to_string().contains("alice"),
        "{e}"
    );
    // A stale lock is taken over.
    let stale = DeployConfig {
        lock_stale_after: Duration::from_secs(0),
        ..cfg.clone()
    };
    let o = release::deploy(r.as_mut(), base, &v1, &stale, &mut |_| {}).expect("stale lock taken over");
    assert_eq!(o.broke_stale_lock.map(|l| l.actor), Some(Some("alice".into())));
    assert!(!on_server(".lock").exists(), "lock released");
    let listed = release::list(r.as_mut(), base).expect("list");
    assert_eq!(listed.iter().filter(|x| x.current).count(), 1);
    assert!(listed.iter().all(|x| !x.id.starts_with('.')));
    // Files under bin/ arrive executable (a release ships its service binary), the rest not.
    let mut with_bin = v1.clone();
    with_bin.extend(source(src, &[("bin/tool", b"#!/bin/sh\necho tool ran\n")]));
    let run_it = DeployConfig {
        health_check: Some("bin/tool".into()),
        ..cfg.clone()
    };
    let o = release::deploy(r.as_mut(), base, &with_bin, &run_it, &mut |_| {}).expect("a release with a program");
    assert!(o.health.as_ref().is_some_and(|h| h.output.contains("tool ran")));
    let mode = |rel: &str| {
        use std::os::unix::fs::PermissionsExt as _;
        let path = on_server(&format!("releases/{}/{rel}", o.id));
        std::fs::metadata(path).expect("file").permissions().mode() & 0o777
    };
    assert_eq!((mode("bin/tool"), mode("cell-params/he.yaml")), (0o755, 0o644));
}

#[test]
fn releases_over_ssh() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sshd = Sshd::start(&tmp.path().join("sshd")).expect("sshd");
    let base = tmp.path().join("server");
    let b = base.display().to_string();
    release_cases(|| connect(&sshd), &b, &tmp.path().join("src"), &|rel| base.join(rel));
}

#[test]
fn releases_in_a_local_folder() {
    let tmp = tempfile::tempdir().expect("tmp");
    let base = tmp.path().join("server");
    let b = base.display().to_string();
    release_cases(|| Box::new(LocalRemote), &b, &tmp.path().join("src"), &|rel| {
        base.join(rel)
    });
}

#[test]
fn host_keys_are_verified() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sshd = Sshd::start(&tmp.path().join("sshd")).expect("sshd");
    // Nothing pinned: refused, with the offered key's fingerprint and how to pin it.
    let e = ssh::connect(&options(&sshd, key_auth(&sshd), HostCheck::Fingerprints(Vec::new()))).expect_err("unpinned");
    let ConnectError::HostKeyUnknown {
        fingerprint, key_type, ..
    } = &e
    else {
        panic!("{e}")
    };
    assert_eq!(key_type, "ssh-ed25519");
    let keygen_fp = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(tmp.path().join("sshd/host_ed25519.pub"))
        .output()
        .expect("ssh-keygen -l");
    assert!(
        String::from_utf8_lossy(&keygen_fp.stdout).contains(fingerprint.as_str()),
        "{fingerprint}"
    );
    assert!(e.to_string().contains("pin it with fingerprint"), "{e}");
    // The right fingerprint connects; another one is a mismatch.
    ssh::connect(&options(
        &sshd,
        key_auth(&sshd),
        HostCheck::Fingerprints(vec![fingerprint.clone()]),
    ))
    .expect("pinned");
    let other = keygen(tmp.path(), "other", "ed25519", "", "").expect("key").1;
    let other_line = format!(
        "[127.0.0.1]:{} {}",
        sshd.port,
        other.split(' ').take(2).collect::<Vec<_>>().join(" ")
    );
    let e = ssh::connect(&options(&sshd, key_auth(&sshd), HostCheck::KnownHosts(other_line))).expect_err("mismatch");
    assert!(matches!(e, ConnectError::HostKeyMismatch { .. }), "{e}");
    assert!(e.to_string().contains("MISMATCH"), "{e}");
    let e = ssh::connect(&options(
        &sshd,
        key_auth(&sshd),
        HostCheck::Fingerprints(vec!["SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()]),
    ))
    .expect_err("wrong fingerprint");
    assert!(matches!(e, ConnectError::HostKeyMismatch { .. }), "{e}");
    let e = ssh::connect(&options(
        &sshd,
        key_auth(&sshd),
        HostCheck::KnownHosts("garbage line".into()),
    ))
    .expect_err("bad known_hosts");
    assert!(matches!(e, ConnectError::KnownHostsLine { line: 1, .. }), "{e}");
}

#[test]
fn credentials_errors_say_what_is_wrong() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sshd = Sshd::start(&tmp.path().join("sshd")).expect("sshd");
    let pin = || HostCheck::KnownHosts(sshd.known_hosts_line());
    // A key the server does not know.
    let (stranger, _) = keygen(tmp.path(), "stranger", "ed25519", "", "").expect("key");
    let e = ssh::connect(&options(
        &sshd,
        Auth::Key {
            private_key: stranger,
            passphrase: None,
        },
        pin(),
    ))
    .expect_err("unknown key");
    assert!(matches!(e, ConnectError::AuthRejected { .. }), "{e}");
    assert!(e.to_string().contains("authorized_keys"), "{e}");
    // An encrypted key: no passphrase, a wrong one, the right one.
    let (locked, public) = keygen(tmp.path(), "locked", "ed25519", "correct horse", "").expect("key");
    sshd.authorize(&public).expect("authorize");
    let with = |p: Option<&str>| Auth::Key {
        private_key: locked.clone(),
        passphrase: p.map(str::to_owned),
    };
    let e = ssh::connect(&options(&sshd, with(None), pin())).expect_err("no passphrase");
    assert!(matches!(e, ConnectError::NeedsPassphrase), "{e}");
    let e = ssh::connect(&options(&sshd, with(Some("wrong")), pin())).expect_err("wrong passphrase");
    assert!(matches!(e, ConnectError::WrongPassphrase { .. }), "{e}");
    ssh::connect(&options(&sshd, with(Some("correct horse")), pin())).expect("right passphrase");
    // PEM (RSA) keys work too.
    let (rsa, rsa_pub) = keygen(tmp.path(), "rsa", "rsa", "", "PEM").expect("key");
    sshd.authorize(&rsa_pub).expect("authorize");
    ssh::connect(&options(
        &sshd,
        Auth::Key {
            private_key: rsa,
            passphrase: None,
        },
        pin(),
    ))
    .expect("PEM RSA key");
    // A public key pasted instead of the private one.
    let e = ssh::connect(&options(
        &sshd,
        Auth::Key {
            private_key: public,
            passphrase: None,
        },
        pin(),
    ))
    .expect_err("public key");
    assert!(e.to_string().contains("this is a public key"), "{e}");
    // Nobody listening.
    let mut o = options(&sshd, key_auth(&sshd), pin());
    o.port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let e = ssh::connect(&o).expect_err("refused");
    assert!(matches!(e, ConnectError::Refused { .. }), "{e}");
}

#[test]
fn a_server_killed_mid_upload_leaves_current_and_releases_untouched() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut sshd = Sshd::start(&tmp.path().join("sshd")).expect("sshd");
    let base = tmp.path().join("server");
    let b = base.display().to_string();
    let cfg = DeployConfig::default();
    let small = source(
        &tmp.path().join("src"),
        &[("cell-params/a.yaml", b"description: a\npixel_size_um: 1\n")],
    );
    let first = {
        let mut r = connect(&sshd);
        release::deploy(r.as_mut(), &b, &small, &cfg, &mut |_| {}).expect("first")
    };
    let big: Vec<u8> = (0..8_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut files = small.clone();
    files.extend(source(&tmp.path().join("src"), &[("models/big.bin", &big)]));
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    let mut r = connect(&sshd);
    let mut sent = 0u64;
    let mut killed = false;
    let e = release::deploy(r.as_mut(), &b, &files, &cfg, &mut |k| {
        sent += k;
        if sent > 1_000_000 && !killed {
            killed = true;
            sshd.kill();
        }
    })
    .expect_err("the server died");
    assert!(killed, "the upload never got going: {e}");
    drop(r);
    assert_eq!(
        std::fs::read_link(base.join("current")).expect("current"),
        PathBuf::from(format!("releases/{}", first.id))
    );
    assert_eq!(
        releases(&base).0,
        vec![first.id.clone()],
        "no partial release is visible"
    );
    // The server comes back: the lock left behind refuses, a stale-lock timeout takes it over,
    // and the leftover partial upload is cleaned up.
    sshd.restart().expect("restart");
    let mut r = connect(&sshd);
    let e = release::deploy(r.as_mut(), &b, &files, &cfg, &mut |_| {}).expect_err("still locked");
    assert!(matches!(e, DeployError::Locked { .. }), "{e}");
    let retry = DeployConfig {
        lock_stale_after: Duration::from_secs(0),
        ..cfg
    };
    let o = release::deploy(r.as_mut(), &b, &files, &retry, &mut |_| {}).expect("after restart");
    assert_eq!(o.files_linked, 1);
    assert_eq!(
        releases(&base).1,
        Vec::<String>::new(),
        "partial uploads are cleaned up"
    );
}

/// The folders under `<base>/releases`: the visible releases, and the hidden (partial) ones.
fn releases(base: &Path) -> (Vec<String>, Vec<String>) {
    std::fs::read_dir(base.join("releases"))
        .expect("releases")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .partition(|n| !n.starts_with('.'))
}

#[test]
fn a_network_cut_mid_upload_leaves_current_and_releases_untouched() {
    use cellops_test_support::proxy::{Cut, Proxy};
    let tmp = tempfile::tempdir().expect("tmp");
    let sshd = Sshd::start(&tmp.path().join("sshd")).expect("sshd");
    let base = tmp.path().join("server");
    let b = base.display().to_string();
    let cfg = DeployConfig::default();
    let small = source(
        &tmp.path().join("src"),
        &[("cell-params/a.yaml", b"description: a\npixel_size_um: 1\n")],
    );
    let first = release::deploy(connect(&sshd).as_mut(), &b, &small, &cfg, &mut |_| {}).expect("first");
    let big: Vec<u8> = (0..8_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut files = small.clone();
    files.extend(source(&tmp.path().join("src"), &[("models/big.bin", &big)]));
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    let retry = DeployConfig {
        lock_stale_after: Duration::from_secs(0),
        ..cfg.clone()
    };
    for how in [Cut::Reset, Cut::Silence] {
        let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], sshd.port));
        let proxy = Proxy::start(upstream, 1_000_000, how).expect("proxy");
        // The server's key, known at the proxy's port.
        let known = sshd
            .known_hosts_line()
            .replace(&format!("]:{} ", sshd.port), &format!("]:{} ", proxy.port));
        let through = SshOptions {
            port: proxy.port,
            io_timeout: Duration::from_secs(3),
            ..options(&sshd, key_auth(&sshd), HostCheck::KnownHosts(known))
        };
        let mut r: Box<dyn Remote> = Box::new(ssh::connect(&through).expect("connect through the proxy"));
        // The lock an earlier cut left behind is taken over: this is about the upload.
        let e = release::deploy(r.as_mut(), &b, &files, &retry, &mut |_| {}).expect_err("the network is cut");
        assert!(
            proxy.cut.load(std::sync::atomic::Ordering::SeqCst),
            "{how:?}: cut before the upload ended: {e}"
        );
        assert!(e.to_string().contains("the connection broke"), "{how:?}: {e}");
        drop(r);
        drop(proxy);
        assert_eq!(
            std::fs::read_link(base.join("current")).expect("current"),
            PathBuf::from(format!("releases/{}", first.id)),
            "{how:?}: {e}"
        );
        assert_eq!(
            releases(&base).0,
            vec![first.id.clone()],
            "{how:?}: no partial release is visible"
        );
    }
    // The network back: the lock left behind is taken over once stale, the leftovers removed.
    let o = release::deploy(connect(&sshd).as_mut(), &b, &files, &retry, &mut |_| {}).expect("after the cut");
    let (visible, hidden) = releases(&base);
    assert_eq!(visible.len(), 2, "{o:?}");
    assert!(hidden.is_empty(), "partial uploads are cleaned up: {hidden:?}");
}
