//! `cellops registry`: the registry commands beside `list` and `rollback` — `history` (every move
//! of every alias, from the log), `which` (the release an alias points to, now or `--at` a time),
//! `promote` (an alias to a release, through the promotion gates) and `verify` (the log's chain and
//! head). The logic is `cellops_deploy::registry`'s.

use std::fmt::Write as _;

use cellops_actions::Runner;
use cellops_deploy::fleet;
use cellops_deploy::registry::{self, Promotion};
use cellops_deploy::release::DeployConfig;
use cellops_deploy::remote::Remote;
use cellops_formats::bundle::BundleHeader;
use cellops_formats::release::{GateResult, PRODUCTION};

use cellops_deploy::release::SourceFile;

use crate::{Args, Done, StageError, open, open_hosts, provenance, targets};

/// `history`: every line of the log, oldest first.
pub fn run_history(args: &Args, runner: &Runner) -> Result<Done, StageError> {
    let (mut remote, base) = open(args, runner)?;
    let lines = registry::history(remote.as_mut(), &base)?;
    let mut md = String::from(
        "## Registry history\n\n| time | alias | release | event | actor | reason |\n|---|---|---|---|---|---|\n",
    );
    for line in &lines {
        let e = &line.event;
        let (alias, release) = e.moved();
        let (kind, actor, reason) = match e {
            cellops_formats::release::AuditEvent::Deploy { actor, .. } => ("deploy", actor.clone(), None),
            cellops_formats::release::AuditEvent::Unchanged { actor, .. } => {
                ("deploy (unchanged)", actor.clone(), None)
            }
            cellops_formats::release::AuditEvent::Rollback { actor, reason, .. } => (
                "rollback",
                actor.clone(),
                serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned)),
            ),
            cellops_formats::release::AuditEvent::Promote {
                actor, reason, forced, ..
            } => (
                if *forced { "promote (forced)" } else { "promote" },
                actor.clone(),
                reason.clone(),
            ),
            cellops_formats::release::AuditEvent::Unalias { actor, reason, .. } => {
                ("unalias", actor.clone(), reason.clone())
            }
        };
        let release = release.unwrap_or("(none)");
        runner.info(&format!("{} {alias} -> {release} ({kind})", e.time()))?;
        let _ = writeln!(
            md,
            "| {} | {alias} | {release} | {kind} | {} | {} |",
            e.time(),
            actor.unwrap_or_default(),
            reason.unwrap_or_default().replace('|', "\\|")
        );
    }
    runner.append_summary(&md)?;
    Ok(Done::Registry(format!("{} moves in the log", lines.len())))
}

/// `which`: the release `--alias` points to, now (the links) or `--at` a time (the log).
pub fn run_which(args: &Args, runner: &Runner) -> Result<Done, StageError> {
    let (mut remote, base) = open(args, runner)?;
    let alias = args.alias.as_str();
    let release = match &args.at {
        Some(at) => {
            let lines = registry::history(remote.as_mut(), &base)?;
            registry::which(&lines, alias, Some(at))
        }
        None => registry::aliases(remote.as_mut(), &base)?.remove(alias).flatten(),
    };
    runner.set_output("release-id", release.as_deref().unwrap_or(""))?;
    let when = args
        .at
        .as_deref()
        .map_or_else(|| "now".to_owned(), |t| format!("at {t}"));
    Ok(Done::Registry(match release {
        Some(r) => format!("{alias} {when}: {r}"),
        None => format!("{alias} {when}: no release"),
    }))
}

/// `verify`: the log's chain and head.
pub fn run_verify(args: &Args, runner: &Runner) -> Result<Done, StageError> {
    let (mut remote, base) = open(args, runner)?;
    let v = registry::verify(remote.as_mut(), &base)?;
    // The first line of a chain has no prev: the line after it vouches for it.
    let chained = if v.unchained < v.lines {
        v.lines - v.unchained + 1
    } else {
        0
    };
    Ok(Done::Registry(format!(
        "the log is intact: {} lines, {chained} chained",
        v.lines
    )))
}

/// `promote`: `--alias` to `--release`, through the gates (forced with `--force --reason`); on
/// several targets all or nothing ([`fleet::promote`]), the gates judged on every host.
pub fn run_promote(args: &Args, runner: &Runner, cfg: DeployConfig) -> Result<Done, StageError> {
    let release = args
        .release
        .as_deref()
        .ok_or_else(|| StageError::Usage("promote needs --release".into()))?;
    let mut hosts = open_hosts(args, runner, &targets(args)?)?;
    let mut gates: Vec<GateResult> = Vec::new();
    for h in &mut hosts {
        for g in host_gates(h.remote.as_mut(), &h.base, release, args.max_regression)? {
            if !gates.contains(&g) {
                gates.push(g);
            }
        }
    }
    report_gates(runner, &gates)?;
    let cfg = DeployConfig {
        provenance: provenance(Vec::new()),
        ..cfg
    };
    let p = Promotion {
        alias: &args.alias,
        release,
        reason: args.reason.as_deref(),
        gates,
        forced: args.force,
    };
    let moved = match hosts.as_mut_slice() {
        [one] => vec![(
            one.name.clone(),
            registry::promote(one.remote.as_mut(), &one.base, &p, &cfg)?,
        )],
        all => fleet::promote(all, &p, &cfg)?,
    };
    if let Some(repo) = &args.tag_repo {
        let first = &mut hosts[0];
        let sha = release_commit(first.remote.as_mut(), &first.base, release)
            .ok_or_else(|| StageError::Usage(format!("release {release} records no git commit to tag")))?;
        let tag = mirror_tag(repo, &args.alias, release, &sha, args.reason.as_deref())?;
        runner.info(&format!("tagged {sha} as {tag} in {}", repo.display()))?;
        runner.set_output("tag", &tag)?;
    }
    let from = moved.first().and_then(|(_, f)| f.clone());
    runner.set_output("release-id", release)?;
    runner.set_output("previous", from.as_deref().unwrap_or(""))?;
    runner.set_output("hosts", &moved.len().to_string())?;
    let was = |f: &Option<String>| f.clone().unwrap_or_else(|| "none".into());
    Ok(Done::Registry(match moved.as_slice() {
        [(_, f)] => format!("{} now points to {release} (was {})", args.alias, was(f)),
        _ => moved
            .iter()
            .map(|(h, f)| format!("{h}: {} now points to {release} (was {})", args.alias, was(f)))
            .collect::<Vec<_>>()
            .join("\n"),
    }))
}

/// The promotion gates of `release` on one host, against the release its `production` serves.
fn host_gates(
    remote: &mut dyn Remote,
    base: &str,
    release: &str,
    max_regression: f64,
) -> Result<Vec<GateResult>, StageError> {
    let production = registry::aliases(remote, base)?.remove(PRODUCTION).flatten();
    let ours = bundles(remote, base, release);
    let theirs = production.map(|p| bundles(remote, base, &p)).unwrap_or_default();
    Ok(gates(&ours, &theirs, max_regression))
}

/// The git commit a release's `deploy.json` records.
fn release_commit(remote: &mut dyn Remote, base: &str, id: &str) -> Option<String> {
    let path = format!("{base}/releases/{id}/{}", cellops_formats::release::RECORD);
    let record: cellops_formats::release::DeployRecord = serde_json::from_slice(&remote.read(&path).ok()??).ok()?;
    record.git_sha
}

/// Creates the GTO-style tag `cellops#<alias>#<n>` (n one past the alias's last) on `sha` in the
/// git repository `repo`, annotated with the release and the reason; returns the tag.
pub fn mirror_tag(
    repo: &std::path::Path,
    alias: &str,
    release: &str,
    sha: &str,
    reason: Option<&str>,
) -> Result<String, StageError> {
    let git = |args: &[&str]| -> Result<String, StageError> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .map_err(|e| StageError::Usage(format!("{}: cannot run git: {e}", repo.display())))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(StageError::Usage(format!(
                "{}: git {}: {}",
                repo.display(),
                args.first().copied().unwrap_or_default(),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    };
    let prefix = format!("cellops#{alias}#");
    let last = git(&["tag", "--list", &format!("{prefix}*")])?
        .lines()
        .filter_map(|t| t.strip_prefix(&prefix)?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let tag = format!("{prefix}{}", last + 1);
    let message = match reason {
        Some(r) => format!("{alias} -> release {release}: {r}"),
        None => format!("{alias} -> release {release}"),
    };
    git(&["tag", "-a", &tag, sha, "-m", &message])?;
    Ok(tag)
}

/// The bundles (`bundle.json` paths) a release holds, and their headers.
fn bundles(remote: &mut dyn Remote, base: &str, id: &str) -> Vec<(String, Option<BundleHeader>)> {
    let dir = format!("{base}/releases/{id}");
    let record: Option<cellops_formats::release::DeployRecord> = remote
        .read(&format!("{dir}/{}", cellops_formats::release::RECORD))
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let paths: Vec<String> = record
        .map(|r| r.files.into_iter().map(|f| f.path))
        .into_iter()
        .flatten()
        .filter(|p| is_bundle_json(p))
        .collect();
    paths
        .into_iter()
        .map(|p| {
            let header = remote
                .read(&format!("{dir}/{p}"))
                .ok()
                .flatten()
                .and_then(|b| serde_json::from_slice(&b).ok());
            (p, header)
        })
        .collect()
}

/// The bundles of a deploy's `files` that production (by path) does not serve with the same id,
/// judged by the gates against production's; none when no model changes.
pub fn deploy_gates(remote: &mut dyn Remote, base: &str, files: &[SourceFile], max_regression: f64) -> Vec<GateResult> {
    let production = registry::aliases(remote, base)
        .ok()
        .and_then(|mut a| a.remove(PRODUCTION).flatten());
    let theirs = production.map(|p| bundles(remote, base, &p)).unwrap_or_default();
    let id = |h: &Option<BundleHeader>| h.as_ref().map(|h| h.id.clone());
    let ours: Vec<(String, Option<BundleHeader>)> = files
        .iter()
        .filter(|f| is_bundle_json(&f.rel))
        .map(|f| {
            let header = std::fs::read(&f.path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            (f.rel.clone(), header)
        })
        .filter(|(rel, header)| {
            let before = theirs.iter().find(|(p, _)| p == rel).map(|(_, h)| id(h));
            before.is_none_or(|b| b != id(header))
        })
        .collect();
    gates(&ours, &theirs, max_regression)
}

/// Reports each gate.
fn report_gates(runner: &Runner, gates: &[GateResult]) -> Result<(), StageError> {
    for g in gates {
        let verdict = if g.passed { "passed" } else { "FAILED" };
        runner.info(&format!("gate {}: {verdict} ({})", g.gate, g.detail))?;
    }
    Ok(())
}

/// Reports the gates and refuses failing ones unless `--force` with a `--reason`.
pub fn judge_gates(runner: &Runner, gates: &[GateResult], args: &Args) -> Result<(), StageError> {
    report_gates(runner, gates)?;
    let failed: Vec<String> = gates
        .iter()
        .filter(|g| !g.passed)
        .map(|g| format!("{}: {}", g.gate, g.detail))
        .collect();
    let overridden = args.force && args.reason.as_deref().is_some_and(|r| !r.trim().is_empty());
    if failed.is_empty() || overridden {
        return Ok(());
    }
    Err(StageError::Deploy(cellops_deploy::release::DeployError::GateFailed(
        failed.join("; "),
    )))
}

fn is_bundle_json(path: &str) -> bool {
    let name = cellops_formats::bundle::METADATA;
    path == name || path.ends_with(&format!("/{name}"))
}

/// The promotion gates of a candidate's bundles (`ours`, by path) against production's
/// (`theirs`): every bundle carries a reference profile (Monitor needs it), and none scores worse
/// on its test split than production's bundle at the same path by more than `max_regression`
/// (instance F1).
pub fn gates(
    ours: &[(String, Option<BundleHeader>)],
    theirs: &[(String, Option<BundleHeader>)],
    max_regression: f64,
) -> Vec<GateResult> {
    let mut out = Vec::new();
    for (path, header) in ours {
        let gate = |gate: &str, passed: bool, detail: String| GateResult {
            gate: gate.to_owned(),
            passed,
            detail: format!("{path}: {detail}"),
        };
        let Some(h) = header else {
            out.push(gate("reference", false, "bundle.json cannot be read".into()));
            continue;
        };
        out.push(match &h.reference {
            Some(r) => gate("reference", true, format!("reference profile of {} images", r.images)),
            None => gate(
                "reference",
                false,
                "no reference.json: Monitor could not judge drift".into(),
            ),
        });
        let before = theirs
            .iter()
            .find(|(p, _)| p == path)
            .and_then(|(_, h)| h.as_ref())
            .and_then(|h| h.metrics.test_f1);
        out.push(match (h.metrics.test_f1, before) {
            (Some(now), Some(was)) if now < was - max_regression => gate(
                "regression",
                false,
                format!("test F1@0.5 {now:.4} against production's {was:.4} (more than {max_regression} worse)"),
            ),
            (Some(now), Some(was)) => gate(
                "regression",
                true,
                format!("test F1@0.5 {now:.4} against production's {was:.4}"),
            ),
            _ => gate("regression", true, "no test F1 to compare with production's".into()),
        });
    }
    out
}
