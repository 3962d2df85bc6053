//! The registry on a droplet folder: aliases that keep their history (`which --at`), promotion
//! gates (a bundle without a reference profile, a bundle worse than production's) that only a
//! forced promotion with a reason passes, pruning that spares aliased releases, rollback, and a
//! log whose hash chain catches one edited byte and a cut last line.

use std::path::{Path, PathBuf};

use cellops_actions::{Env, Runner};
use cellops_deploy::registry;
use cellops_deploy::remote::LocalRemote;
use cellops_deploy_cell_params::{Args, Command, Done, run};
use cellops_formats::release::AuditEvent;

fn quiet() -> Runner {
    Runner::new(&Env::default(), Box::new(std::io::sink()), Box::new(std::io::sink()))
}

/// A lab repository: a parameter file and a bundle header made from the shipped model's, edited
/// by `edit` (the weights file is a stand-in: deploys do not load models).
fn lab(root: &Path, description: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let r = root.join("lab");
    std::fs::create_dir_all(r.join("cell-params")).expect("dir");
    std::fs::create_dir_all(r.join("models/nuclei")).expect("dir");
    std::fs::write(
        r.join("cell-params/dapi.yaml"),
        format!("description: {description}\npixel_size_um: 0.5\n"),
    )
    .expect("params");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../models/nuclei/bundle.json");
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(shipped).expect("bundle")).expect("json");
    edit(&mut meta);
    std::fs::write(
        r.join("models/nuclei/bundle.json"),
        serde_json::to_vec(&meta).expect("json"),
    )
    .expect("write");
    std::fs::write(r.join("models/nuclei/model.safetensors"), [7u8; 64]).expect("weights");
    r
}

fn args(server: &Path, command: Command) -> Args {
    let mut a = Args::new(&format!("file://{}", server.display())).expect("args");
    a.action = Some(command);
    a
}

/// Deploys a lab (keeping `keep` releases; forced with a reason when `force`); the release id.
fn try_deploy(
    root: &Path,
    (server, keep, force): (&Path, usize, bool),
    description: &str,
    edit: impl Fn(&mut serde_json::Value),
) -> Result<String, String> {
    let repo = lab(root, description, edit);
    let mut a = args(server, Command::Deploy);
    a.keep_releases = keep;
    a.root = repo;
    a.include = Some("models/**".into());
    a.force = force;
    a.reason = force.then(|| "the lab lead accepts it".to_owned());
    match run(&a, &quiet()) {
        Ok(Done::Deployed(o, _)) => Ok(o.id),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e.to_string()),
    }
}

fn deploy(
    root: &Path,
    (server, keep): (&Path, usize),
    description: &str,
    edit: impl Fn(&mut serde_json::Value),
) -> String {
    try_deploy(root, (server, keep, false), description, edit).expect("deploy")
}

fn registry_says(server: &Path, command: Command, set: impl Fn(&mut Args)) -> Result<String, String> {
    let mut a = args(server, command);
    set(&mut a);
    match run(&a, &quiet()) {
        Ok(Done::Registry(line)) => Ok(line),
        Ok(Done::RolledBack(_, to, _)) => Ok(to),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn aliases_gates_history_and_an_honest_log() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server = tmp.path().join("droplet");
    let base = server.display().to_string();
    let keep2 = (server.as_path(), 2);
    let r1 = deploy(tmp.path(), keep2, "one", |_| {});
    let r2 = deploy(tmp.path(), keep2, "two", |_| {});
    assert_eq!(
        registry_says(&server, Command::Which, |_| {}),
        Ok(format!("production now: {r2}"))
    );

    // staging → r1; it survives pruning (keep 2) while newer deploys go by.
    let said = registry_says(&server, Command::Promote, |a| {
        a.alias = "staging".into();
        a.release = Some(r1.clone());
    });
    assert_eq!(said, Ok(format!("staging now points to {r1} (was none)")));
    let r3 = deploy(tmp.path(), keep2, "three", |_| {});
    let r4 = deploy(tmp.path(), keep2, "four", |_| {});
    let left: Vec<String> = std::fs::read_dir(server.join("releases"))
        .expect("releases")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(left.contains(&r1) && !left.contains(&r2), "{left:?}");
    assert!(left.contains(&r3) && left.contains(&r4), "{left:?}");

    // The gates, for a deploy that changes the model: no reference profile, then a worse test
    // F1; refused (nothing deployed), then forced with a reason, which the log keeps.
    let no_reference = |m: &mut serde_json::Value| {
        m.as_object_mut().expect("object").remove("reference");
        m["id"] = "bare000000000000".into();
    };
    let refused = try_deploy(tmp.path(), (&server, 9, false), "bare", no_reference).expect_err("no reference");
    assert!(refused.contains("no reference.json"), "{refused}");
    assert_eq!(
        registry_says(&server, Command::Which, |_| {}),
        Ok(format!("production now: {r4}"))
    );
    let bare = try_deploy(tmp.path(), (&server, 9, true), "bare", no_reference).expect("forced");
    let worse_f1 = |m: &mut serde_json::Value| {
        m["metrics"]["test_f1"] = 0.5.into();
        m["id"] = "worse00000000000".into();
    };
    let refused = try_deploy(tmp.path(), (&server, 9, false), "worse", worse_f1).expect_err("a regression");
    assert!(refused.contains("regression"), "{refused}");
    let worse = try_deploy(tmp.path(), (&server, 9, true), "worse", worse_f1).expect("forced");
    let promote = |release: &str, force: bool| {
        registry_says(&server, Command::Promote, |a| {
            a.release = Some(release.to_owned());
            a.force = force;
            a.reason = force.then(|| "hotfix, approved by the lab lead".to_owned());
        })
    };
    let refused = promote(&bare, false).expect_err("no reference");
    assert!(
        refused.contains("reference: models/nuclei/bundle.json: no reference.json"),
        "{refused}"
    );
    // `worse` is production now (its deploy made it current); put r4 back first.
    assert!(promote(&r4, false).is_ok());
    let refused = promote(&worse, false).expect_err("a regression");
    assert!(
        refused.contains("test F1@0.5 0.5000 against production's 0.8104"),
        "{refused}"
    );
    assert!(promote(&worse, true).is_ok(), "forced with a reason");

    // Rollback is a registry move too; the history tells every move in order.
    assert_eq!(
        registry_says(&server, Command::Rollback, |a| a.to = Some(r4.clone())),
        Ok(r4.clone())
    );
    let mut remote = LocalRemote;
    let lines = registry::history(&mut remote, &base).expect("history");
    let kinds: Vec<&str> = lines
        .iter()
        .map(|l| match &l.event {
            AuditEvent::Deploy { .. } => "deploy",
            AuditEvent::Unchanged { .. } => "unchanged",
            AuditEvent::Rollback { .. } => "rollback",
            AuditEvent::Promote { forced: true, .. } => "forced",
            AuditEvent::Unalias { .. } => "unalias",
            AuditEvent::Promote { .. } => "promote",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "deploy", "deploy", "promote", "deploy", "deploy", "deploy", "deploy", "promote", "forced", "rollback"
        ]
    );
    let AuditEvent::Promote { reason, gates, .. } = &lines[8].event else {
        panic!()
    };
    assert_eq!(reason.as_deref(), Some("hotfix, approved by the lab lead"));
    assert!(gates.iter().any(|g| g.gate == "regression" && !g.passed));
    // which --at: before anything, nothing; at the end, what serves.
    let at = |t: &str| registry::which(&lines, "production", Some(t));
    assert_eq!(at("2000-01-01T00:00:00Z"), None);
    assert_eq!(at("2999-01-01T00:00:00Z"), Some(r4.clone()));
    assert_eq!(registry::which(&lines, "staging", None), Some(r1.clone()));
    let says = registry_says(&server, Command::Which, |a| a.at = Some("2000-01-01T00:00:00Z".into()));
    assert_eq!(says, Ok("production at 2000-01-01T00:00:00Z: no release".into()));

    an_honest_log_verifies_and_an_edited_one_does_not(&server, &r3);
}

/// The log verifies; with one byte of `edit_in`'s id changed, or its last line cut, it does not.
fn an_honest_log_verifies_and_an_edited_one_does_not(server: &Path, edit_in: &str) {
    // An honest log verifies; one byte edited, or its last line cut, does not.
    assert!(registry_says(server, Command::Verify, |_| {}).is_ok_and(|s| s.contains("10 lines, 10 chained")));
    let log = server.join("deployments.jsonl");
    let original = std::fs::read(&log).expect("log");
    let mut edited = original.clone();
    let at = edited
        .windows(edit_in.len())
        .position(|w| w == edit_in.as_bytes())
        .expect("a line to edit");
    edited[at] = b'0' + (edited[at] - b'0' + 1) % 10;
    std::fs::write(&log, &edited).expect("edit");
    let err = registry_says(server, Command::Verify, |_| {}).expect_err("edited");
    assert!(err.contains("the log was edited"), "{err}");
    let cut = &original[..original[..original.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("lines")
        + 1];
    std::fs::write(&log, cut).expect("cut");
    let err = registry_says(server, Command::Verify, |_| {}).expect_err("cut");
    assert!(err.contains("lines were cut off or added"), "{err}");
}

#[test]
fn which_at_replays_the_log() {
    use cellops_formats::release::LogLine;
    let promote = |alias: &str, release: &str, time: &str| LogLine {
        event: AuditEvent::Promote {
            alias: alias.into(),
            release: release.into(),
            from: None,
            time: time.into(),
            actor: None,
            run: None,
            reason: None,
            gates: Vec::new(),
            forced: false,
        },
        prev: None,
    };
    let lines = [
        promote("production", "a", "2026-12-01T09:00:00Z"),
        promote("staging", "b", "2026-12-02T09:00:00Z"),
        promote("production", "c", "2026-12-03T09:00:00Z"),
    ];
    assert_eq!(
        registry::which(&lines, "production", Some("2026-12-02T23:59:59Z")),
        Some("a".into())
    );
    assert_eq!(
        registry::which(&lines, "production", Some("2026-12-03T09:00:00Z")),
        Some("c".into())
    );
    assert_eq!(registry::which(&lines, "staging", Some("2026-12-01T12:00:00Z")), None);
}

/// Runs git in `repo`; its standard output.
fn git(repo: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn promotions_are_mirrored_as_gto_tags_on_the_release_commit() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = lab(tmp.path(), "tagged", |_| {});
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(
        &repo,
        &[
            "-c",
            "user.name=lab",
            "-c",
            "user.email=lab@example.org",
            "commit",
            "-qm",
            "cell params",
        ],
    );
    let sha = git(&repo, &["rev-parse", "HEAD"]);
    // The deploy records the commit (GITHUB_SHA, as in a workflow).
    let server = tmp.path().join("droplet");
    let target = format!("file://{}", server.display());
    let run_bin = cellops_test_support::action::run_action(
        Path::new(env!("CARGO_BIN_EXE_cellops-deploy-cell-params")),
        &repo,
        &[("target", &target), ("include", "models/**")],
        &[("GITHUB_SHA", &sha), ("GITHUB_ACTOR", "lab")],
    )
    .expect("deploy");
    assert_eq!(run_bin.code(), 0, "{}", run_bin.stdout());
    let release = run_bin.outputs["release-id"].clone();
    for expected in ["cellops#staging#1", "cellops#staging#2"] {
        let said = registry_says(&server, Command::Promote, |a| {
            a.alias = "staging".into();
            a.release = Some(release.clone());
            a.reason = Some("nightly".into());
            a.tag_repo = Some(repo.clone());
        });
        assert!(said.is_ok(), "{said:?}");
        assert_eq!(
            git(&repo, &["rev-list", "-n", "1", expected]),
            sha,
            "{expected} is on the release's commit"
        );
    }
    let message = git(
        &repo,
        &["tag", "-l", "--format=%(contents:subject)", "cellops#staging#2"],
    );
    assert_eq!(message, format!("staging -> release {release}: nightly"));
}
