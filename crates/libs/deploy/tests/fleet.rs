//! A fleet deploy against three real OpenSSH servers on 127.0.0.1 (separate ports and folders):
//! all healthy, all switched to one id; one refusing the upload, one failing its health check,
//! one killed between the phases — and no host on the new release afterwards. Promotions too, and
//! (on three local folders) a host that fails after it moved its alias.

#![allow(clippy::too_many_lines, reason = "a test reads top to bottom as one scenario")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use cellops_deploy::fleet::{self, Event, FleetError, Host, Phase};
use cellops_deploy::registry::Promotion;
use cellops_deploy::release::{DeployConfig, SourceFile};
use cellops_deploy::ssh::{self, Auth, HostCheck, SshOptions};
use cellops_test_support::sshd::Sshd;

mod support;
use support::source;

/// Three servers; the first one's client key is authorised on all.
struct Fleet {
    servers: Vec<Sshd>,
    bases: Vec<PathBuf>,
}

impl Fleet {
    fn start(root: &Path) -> Self {
        let servers = Sshd::fleet(root, 3).expect("sshd");
        let bases = (0..3).map(|i| root.join(format!("host-{i}"))).collect();
        Self { servers, bases }
    }

    fn hosts(&self) -> Vec<Host> {
        let key = self.servers[0].client_key.clone();
        self.servers
            .iter()
            .zip(&self.bases)
            .map(|(s, base)| {
                let opts = SshOptions {
                    host: "127.0.0.1".into(),
                    port: s.port,
                    username: s.user.clone(),
                    auth: Auth::Key {
                        private_key: key.clone(),
                        passphrase: None,
                    },
                    host_check: HostCheck::KnownHosts(s.known_hosts_line()),
                    connect_timeout: Duration::from_secs(5),
                    io_timeout: Duration::from_secs(20),
                };
                Host {
                    name: format!("127.0.0.1:{}", s.port),
                    remote: Box::new(ssh::connect(&opts).expect("connect")),
                    base: base.display().to_string(),
                }
            })
            .collect()
    }

    /// The release `current` names on each host.
    fn currents(&self) -> Vec<Option<String>> {
        self.bases
            .iter()
            .map(|b| {
                std::fs::read_link(b.join("current"))
                    .ok()
                    .map(|t| t.file_name().expect("name").to_string_lossy().into_owned())
            })
            .collect()
    }

    fn audit(&self, i: usize) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.bases[i].join("deployments.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    fn releases(&self, i: usize) -> Vec<String> {
        let mut r: Vec<String> = std::fs::read_dir(self.bases[i].join("releases"))
            .expect("releases")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        r.sort();
        r
    }
}

fn deploy(
    hosts: &mut [Host],
    files: &[SourceFile],
    cfg: &DeployConfig,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<fleet::FleetOutcome, FleetError> {
    fleet::deploy(hosts, files, cfg, &|_| {}, on_event)
}

#[test]
fn a_fleet_switches_all_or_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let mut fleet = Fleet::start(root);
    let src = root.join("src");
    let cfg = DeployConfig {
        health_check: Some("test -f cell-params/he.yaml && test ! -e ../../unhealthy".into()),
        health_timeout: Duration::from_secs(10),
        ..DeployConfig::default()
    };

    // All healthy: one id everywhere, one audit line per host.
    let v1 = source(
        &src,
        &[("cell-params/he.yaml", b"description: a\npixel_size_um: 0.5\n")],
    );
    let mut events = Vec::new();
    let done = deploy(&mut fleet.hosts(), &v1, &cfg, &mut |e| events.push(format!("{e:?}"))).expect("deploy");
    assert!(!done.unchanged);
    assert_eq!(done.hosts.len(), 3);
    assert!(done.hosts.iter().all(|(_, o)| o.id == done.id));
    assert_eq!(fleet.currents(), vec![Some(done.id.clone()); 3]);
    for i in 0..3 {
        let log = fleet.audit(i);
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0]["release"], done.id.as_str());
    }
    let staged_at = events
        .iter()
        .position(|e| e.starts_with("AllStaged"))
        .expect("all staged");
    assert_eq!(events.iter().filter(|e| e.starts_with("Staged")).count(), 3);
    assert!(
        events[..staged_at].iter().all(|e| e.starts_with("Staged")),
        "{events:?}"
    );
    let v1_id = done.id;

    // Nothing changed anywhere: nothing made.
    let same = deploy(&mut fleet.hosts(), &v1, &cfg, &mut |_| {}).expect("deploy");
    assert!(same.unchanged);
    assert_eq!(same.id, v1_id);

    // A new release that fails its health check on host 1: host 0 is switched back, host 2 never
    // switched, and nothing of it stays where it never was current.
    let v2 = source(
        &src,
        &[("cell-params/he.yaml", b"description: b\npixel_size_um: 0.5\n")],
    );
    std::fs::write(fleet.bases[1].join("unhealthy"), b"").expect("marker");
    let err = deploy(&mut fleet.hosts(), &v2, &cfg, &mut |_| {}).expect_err("health check fails on host 1");
    let host1 = format!("127.0.0.1:{}", fleet.servers[1].port);
    assert_eq!(err.failures.len(), 1, "{err}");
    assert_eq!(
        (err.failures[0].host.as_str(), err.failures[0].phase),
        (host1.as_str(), Phase::Switch)
    );
    assert_eq!(err.switched_back, vec![format!("127.0.0.1:{}", fleet.servers[0].port)]);
    assert!(err.stuck.is_empty(), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&host1) && message.contains("health check failed"),
        "{message}"
    );
    assert_eq!(fleet.currents(), vec![Some(v1_id.clone()); 3]);
    let failed_id = err.id.clone().expect("id");
    assert!(
        !fleet.releases(2).contains(&failed_id),
        "never current on host 2: removed"
    );
    let back = fleet.audit(0);
    assert_eq!(back.last().expect("line")["reason"], "another host failed", "{back:?}");
    std::fs::remove_file(fleet.bases[1].join("unhealthy")).expect("marker");

    // A host that refuses the upload (its `tar` fails): nothing switched, nothing staged left.
    let fake = root.join("fake-bin");
    std::fs::create_dir_all(&fake).expect("dir");
    let tar = fake.join("tar");
    std::fs::write(&tar, "#!/bin/sh\necho 'tar: refused by policy' >&2\nexit 2\n").expect("tar");
    std::fs::set_permissions(&tar, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    fleet.servers[2]
        .configure(&format!("SetEnv PATH={}:/usr/local/bin:/usr/bin:/bin", fake.display()))
        .expect("restart");
    let err = deploy(&mut fleet.hosts(), &v2, &cfg, &mut |_| {}).expect_err("host 2 refuses");
    let host2 = format!("127.0.0.1:{}", fleet.servers[2].port);
    assert_eq!(err.failures.len(), 1, "{err}");
    assert_eq!(
        (err.failures[0].host.as_str(), err.failures[0].phase),
        (host2.as_str(), Phase::Stage)
    );
    assert!(err.to_string().contains("refused by policy"), "{err}");
    assert_eq!(fleet.currents(), vec![Some(v1_id.clone()); 3]);
    for i in 0..3 {
        assert_eq!(fleet.releases(i), vec![v1_id.clone()], "host {i}");
    }
    fleet.servers[2].configure("").expect("restart");

    // A host killed between the phases: the others are switched back.
    let mut hosts = fleet.hosts();
    let victim = format!("127.0.0.1:{}", fleet.servers[2].port);
    let err = {
        let server = &mut fleet.servers[2];
        deploy(&mut hosts, &v2, &cfg, &mut |e| {
            if matches!(e, Event::AllStaged { .. }) {
                server.kill();
            }
        })
        .expect_err("host 2 is gone")
    };
    assert_eq!(
        (err.failures[0].host.as_str(), err.failures[0].phase),
        (victim.as_str(), Phase::Switch)
    );
    assert_eq!(err.switched_back.len(), 2, "{err}");
    // Unreachable, it cannot be checked: the error says so rather than claim it is clean.
    assert_eq!(
        err.stuck.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>(),
        vec![victim.as_str()]
    );
    assert_eq!(fleet.currents(), vec![Some(v1_id.clone()); 3]);
    // It comes back (its lock is stale by then or taken over) and the next deploy lands everywhere.
    fleet.servers[2].restart().expect("restart");
    std::fs::remove_dir_all(fleet.bases[2].join(".lock")).expect("the dead host's lock");
    let done = deploy(&mut fleet.hosts(), &v2, &cfg, &mut |_| {}).expect("deploy");
    assert_eq!(fleet.currents(), vec![Some(done.id.clone()); 3]);

    // A fleet rollback that one host refuses half-way (another deploy holds its lock) leaves
    // every host where it was; an unreachable host stops it before anything moves.
    let v2_id = done.id;
    let lock = fleet.bases[2].join(".lock");
    cellops_test_support::hold_deploy_lock(&fleet.bases[2]).expect("lock");
    let err = fleet::rollback(&mut fleet.hosts(), Some(&v1_id), &cfg).expect_err("host 2 is locked");
    assert_eq!(err.failures[0].phase, Phase::Rollback, "{err}");
    assert_eq!(err.switched_back.len(), 2, "{err}");
    assert!(err.to_string().contains("on the release it was on before"), "{err}");
    assert_eq!(fleet.currents(), vec![Some(v2_id.clone()); 3]);
    std::fs::remove_dir_all(&lock).expect("unlock");
    let mut hosts = fleet.hosts();
    fleet.servers[2].kill();
    let err = fleet::rollback(&mut hosts, None, &cfg).expect_err("host 2 is gone");
    assert!(
        err.switched_back.is_empty() && err.stuck.is_empty(),
        "nothing moved: {err}"
    );
    assert_eq!(fleet.currents(), vec![Some(v2_id.clone()); 3]);
    fleet.servers[2].restart().expect("restart");
    let moved = fleet::rollback(&mut fleet.hosts(), None, &cfg).expect("rollback");
    assert!(
        moved
            .iter()
            .all(|(_, from, to)| from.as_deref() == Some(v2_id.as_str()) && *to == v1_id)
    );
    assert_eq!(fleet.currents(), vec![Some(v1_id.clone()); 3]);

    promotes_all_or_nothing(&fleet, &cfg, &v1_id, &v2_id);
}

/// A fleet promotion: nothing moves for a release one host lacks; a host that refuses half-way
/// (its lock held) leaves every host's alias where it was — removed again where it was new,
/// pointed back where it pointed elsewhere, each logged with why.
fn promotes_all_or_nothing(fleet: &Fleet, cfg: &DeployConfig, v1: &str, v2: &str) {
    let staging = |fleet: &Fleet| -> Vec<Option<String>> {
        fleet
            .bases
            .iter()
            .map(|b| {
                std::fs::read_link(b.join("aliases/staging"))
                    .ok()
                    .map(|t| t.file_name().expect("name").to_string_lossy().into_owned())
            })
            .collect()
    };
    let promotion = |release| Promotion {
        alias: "staging",
        release,
        reason: None,
        gates: Vec::new(),
        forced: false,
    };
    let err =
        fleet::promote(&mut fleet.hosts(), &promotion("20000101T000000Z-none"), cfg).expect_err("no such release");
    assert_eq!(err.failures[0].phase, Phase::Promote, "{err}");
    assert!(err.switched_back.is_empty(), "nothing moved: {err}");

    let hold = |on: bool| {
        if on {
            cellops_test_support::hold_deploy_lock(&fleet.bases[2]).expect("lock");
        } else {
            std::fs::remove_dir_all(fleet.bases[2].join(".lock")).expect("unlock");
        }
    };
    hold(true);
    let err = fleet::promote(&mut fleet.hosts(), &promotion(v2), cfg).expect_err("host 2 is locked");
    assert_eq!(
        (err.failures[0].phase, err.switched_back.len()),
        (Phase::Promote, 2),
        "{err}"
    );
    assert!(err.to_string().contains("points where it did before"), "{err}");
    assert_eq!(staging(fleet), vec![None; 3], "the new alias removed again");
    let last = fleet.audit(0).pop().expect("a line");
    assert_eq!(last["event"], "unalias", "{last}");
    assert!(
        last["reason"]
            .as_str()
            .is_some_and(|r| r.contains("another host failed")),
        "{last}"
    );
    hold(false);

    let moved = fleet::promote(&mut fleet.hosts(), &promotion(v2), cfg).expect("promote");
    assert!(moved.iter().all(|(_, from)| from.is_none()), "{moved:?}");
    assert_eq!(staging(fleet), vec![Some(v2.to_owned()); 3]);
    hold(true);
    fleet::promote(&mut fleet.hosts(), &promotion(v1), cfg).expect_err("host 2 is locked");
    assert_eq!(staging(fleet), vec![Some(v2.to_owned()); 3], "pointed back");
    let last = fleet.audit(1).pop().expect("a line");
    assert_eq!(
        (last["event"].as_str(), last["release"].as_str()),
        (Some("promote"), Some(v2))
    );
    hold(false);
    assert_eq!(fleet.currents(), vec![Some(v1.to_owned()); 3], "production untouched");
}

/// Three local folders as a fleet (`file://`).
fn local_hosts(root: &Path) -> Vec<Host> {
    (0..3)
        .map(|i| Host {
            name: format!("file://host-{i}"),
            remote: Box::new(cellops_deploy::remote::LocalRemote),
            base: root.join(format!("host-{i}")).display().to_string(),
        })
        .collect()
}

#[test]
fn a_host_that_fails_after_moving_its_alias_is_moved_back_too() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let files = source(
        &root.join("src"),
        &[("cell-params/a.yaml", b"description: a\npixel_size_um: 1\n")],
    );
    let cfg = DeployConfig::default();
    let id = deploy(&mut local_hosts(root), &files, &cfg, &mut |_| {})
        .expect("deploy")
        .id;
    // Host 2 switches its alias, then cannot log the move (its log's head is a folder).
    let head = root.join("host-2/deployments.head");
    std::fs::remove_file(&head).expect("head");
    std::fs::create_dir(&head).expect("a folder in its place");
    let promotion = Promotion {
        alias: "staging",
        release: &id,
        reason: None,
        gates: Vec::new(),
        forced: false,
    };
    let err = fleet::promote(&mut local_hosts(root), &promotion, &cfg).expect_err("host 2 cannot log");
    assert_eq!(err.failures[0].host, "file://host-2", "{err}");
    assert_eq!(err.switched_back, vec!["file://host-0", "file://host-1"], "{err}");
    // It could not log its way back either (and says so), but its alias is gone again.
    assert_eq!(err.stuck.len(), 1, "{err}");
    for i in 0..3 {
        assert!(
            std::fs::symlink_metadata(root.join(format!("host-{i}/aliases/staging"))).is_err(),
            "host {i} keeps no staging alias: {err}"
        );
    }
}
