//! Releases on the server, the same for every [`Remote`]:
//!
//! ```text
//! <base>/releases/<id>/...        one folder per release (id: UTC time, content hash, git sha)
//! <base>/releases/<id>/deploy.json   files with sha256, git sha, actor, time, bundle ids
//! <base>/current -> releases/<id>  switched atomically (a new symlink renamed over the old)
//! <base>/deployments.jsonl         append-only audit log of every deploy and rollback
//! <base>/.lock/owner.json          held while a deploy or rollback runs
//! ```
//!
//! A deploy takes the lock, hard-links the files unchanged since the current release into a
//! hidden `.partial-<id>` folder (on the server: no bytes sent), uploads the changed ones there
//! (over SSH as one tar stream: no round trip per file), verifies every uploaded file's sha256 on
//! the server, renames the folder to `releases/<id>`, switches `current`, appends to the audit
//! log, runs the health check (switching back on failure), prunes old releases and releases the
//! lock. Until the switch, `current` and the visible releases are untouched; an interrupted deploy
//! leaves only a hidden partial folder, removed by the next deploy.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cellops_formats::release;
use sha2::Digest as _;

use crate::remote::{CommandOutput, Payload, Remote, RemoteError, RemoteErrorKind};

pub use cellops_formats::release::{AuditEvent, DeployRecord, FORMAT, FileEntry, LockOwner, RollbackReason};
/// The list of uploaded files that travels with an upload (removed after verification).
pub const UPLOAD_LIST: &str = ".cellops-upload-list";

/// A file to deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Its path inside the release (`/`-separated, relative).
    pub rel: String,
    /// Where it is on this machine.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// sha256, hex.
    pub sha256: String,
}

/// Who is deploying, and from what.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// The git commit.
    pub git_sha: Option<String>,
    /// Who.
    pub actor: Option<String>,
    /// The workflow run URL.
    pub run: Option<String>,
    /// Model bundle ids included.
    pub bundle_ids: Vec<String>,
    /// The promotion gates of the models a deploy changes (recorded in the log).
    pub gates: Vec<cellops_formats::release::GateResult>,
    /// Why, when failing gates were overridden.
    pub reason: Option<String>,
}

/// Settings of a deploy.
#[derive(Debug, Clone)]
pub struct DeployConfig {
    /// Releases kept (the current one always is).
    pub keep_releases: usize,
    /// A command run in the new release's folder after the switch.
    pub health_check: Option<String>,
    /// Its time limit (and that of the service check).
    pub health_timeout: Duration,
    /// The admin socket of the service that serves `current` on the server (`cellops serve`):
    /// after the switch it is asked to follow, and the deploy waits, bounded, until it serves the
    /// new release (loaded, verified, golden check passed), else switches back.
    pub service_socket: Option<String>,
    /// A lock older than this is taken over (with a warning in the outcome).
    pub lock_stale_after: Duration,
    /// Provenance recorded in `deploy.json` and the audit log.
    pub provenance: Provenance,
    /// Make a release even when every file equals the current release's (else such a deploy
    /// sends nothing, keeps `current` and only logs the attempt).
    pub force: bool,
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            keep_releases: 5,
            health_check: None,
            health_timeout: Duration::from_secs(60),
            service_socket: None,
            lock_stale_after: Duration::from_secs(30 * 60),
            provenance: Provenance::default(),
            force: false,
        }
    }
}

/// What a deploy did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The new release.
    pub id: String,
    /// Its folder on the server.
    pub path: String,
    /// Files in the release.
    pub files_total: usize,
    /// Files uploaded.
    pub files_sent: usize,
    /// Files hard-linked from the previous release.
    pub files_linked: usize,
    /// Bytes uploaded (file contents and `deploy.json`).
    pub bytes_sent: u64,
    /// The release that was current before.
    pub previous: Option<String>,
    /// Releases removed by pruning.
    pub pruned: Vec<String>,
    /// The health check's result.
    pub health: Option<CommandOutput>,
    /// A stale lock that was taken over.
    pub broke_stale_lock: Option<LockOwner>,
    /// Nothing changed: no release was made, `id` is the current one, which stays.
    pub unchanged: bool,
}

/// A release as `list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseInfo {
    /// Its id.
    pub id: String,
    /// Whether `current` points at it.
    pub current: bool,
    /// Its `deploy.json`, when readable.
    pub record: Option<DeployRecord>,
}

/// Deploy errors.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A remote operation failed.
    #[error("{what}: {source}{}", hint(&source.kind))]
    Remote {
        /// What was being done.
        what: String,
        /// The failure.
        source: RemoteError,
    },
    /// Another deploy holds the lock.
    #[error(
        "another deploy is running: {} holds the lock since {} ({} s ago, pid {}{}); it is taken over after {} s, or remove {}",
        .owner.actor.as_deref().unwrap_or(&.owner.host), .owner.since_utc, .age_secs, .owner.pid,
        .owner.run.as_ref().map(|r| format!(", run {r}")).unwrap_or_default(), .stale_after_secs, .path
    )]
    Locked {
        /// The holder.
        owner: Box<LockOwner>,
        /// Its age.
        age_secs: u64,
        /// When it counts as stale.
        stale_after_secs: u64,
        /// The lock folder.
        path: String,
    },
    /// Not enough space on the server.
    #[error("not enough space on the server: {needed} bytes to send, {free} free under {path}")]
    DiskFull {
        /// Bytes needed.
        needed: u64,
        /// Bytes free.
        free: u64,
        /// Where.
        path: String,
    },
    /// A file arrived different from what was sent.
    #[error("{path} arrived with sha256 {got} instead of {expected}; nothing was published")]
    Verify {
        /// The remote file.
        path: String,
        /// Expected sha256.
        expected: String,
        /// Received sha256.
        got: String,
    },
    /// The health check failed; `current` was switched back.
    #[error(
        "health check failed for release {id} ({}); current {}. Output:\n{}",
        if .output.timed_out { "timed out".to_owned() } else { format!("exit status {}", .output.status.map_or("none".into(), |s| s.to_string())) },
        .rolled_back_to.as_ref().map_or_else(|| "was removed (there was no previous release)".to_owned(), |p| format!("is back on {p}")),
        .output.output.trim()
    )]
    HealthCheck {
        /// The failed release.
        id: String,
        /// What the check printed.
        output: CommandOutput,
        /// The release now current again.
        rolled_back_to: Option<String>,
    },
    /// After a rollback switched `current`, the service did not follow.
    #[error("current is now {id}, but the service did not follow it: {}", .output.trim())]
    ServiceDidNotFollow {
        /// The release `current` names.
        id: String,
        /// What the service answered.
        output: String,
    },
    /// A rollback target does not exist.
    #[error("no release `{id}` on the server (available: {})", .available.join(", "))]
    NoSuchRelease {
        /// The id asked for.
        id: String,
        /// The ids there are.
        available: Vec<String>,
    },
    /// Nothing to roll back to.
    #[error("nothing to roll back to: {0}")]
    NothingToRollBack(String),
    /// The audit log is not what was written (an edited, cut or unreadable line).
    #[error("the audit log cannot be trusted: {0}")]
    Log(String),
    /// An alias name that cannot be used.
    #[error("alias `{0}`: use lowercase letters, digits, '-' and '_' (at most 64)")]
    BadAlias(String),
    /// A promotion gate failed and the promotion was not forced with a reason.
    #[error("promotion refused: {0} (force it with a reason to override; the log records both)")]
    GateFailed(String),
    /// A source file's name cannot be deployed.
    #[error(
        "{0}: file names with newlines or backslashes, absolute paths, `..`, or a top-level deploy.json cannot be deployed"
    )]
    BadName(String),
}

fn hint(kind: &RemoteErrorKind) -> &'static str {
    match kind {
        RemoteErrorKind::PermissionDenied => {
            " (permission denied: the deploy user must own the base path; see infra/README.md)"
        }
        RemoteErrorKind::NoSpace => " (the server's disk is full)",
        RemoteErrorKind::Disconnected => " (the connection broke; current is unchanged unless the switch was reported)",
        _ => "",
    }
}

pub(crate) fn ctx(what: impl Into<String>) -> impl FnOnce(RemoteError) -> DeployError {
    let what = what.into();
    move |source| DeployError::Remote { what, source }
}

pub use cellops_formats::release::rfc3339;

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// sha256 over the sorted `path sha256` lines of `files`.
pub fn content_hash(files: &[SourceFile]) -> String {
    let mut lines: Vec<String> = files.iter().map(|f| format!("{} {}\n", f.rel, f.sha256)).collect();
    lines.sort();
    format!("{:x}", sha2::Sha256::digest(lines.concat().as_bytes()))
}

/// The release id: UTC time, the content hash's first 8 digits, the git sha's first 7 (or `local`).
///
/// ```
/// let id = cellops_deploy::release::release_id(0, &"ab".repeat(32), Some("0123456789"));
/// assert_eq!(id, "19700101T000000Z-abababab-0123456");
/// ```
pub fn release_id(secs: u64, content: &str, git: Option<&str>) -> String {
    let t = rfc3339(secs).replace(['-', ':'], "");
    let git: String = git
        .map(|g| g.chars().take(7).collect())
        .filter(|g: &String| !g.is_empty())
        .unwrap_or_else(|| "local".into());
    format!("{t}-{}-{git}", &content[..8.min(content.len())])
}

/// Checks that a release-relative path is safe to use on the server.
pub fn check_name(rel: &str) -> Result<(), DeployError> {
    let bad = rel.is_empty()
        || rel.starts_with('/')
        || rel.contains(['\n', '\r', '\\', '\0'])
        || rel.split('/').any(|s| s.is_empty() || s == "." || s == "..")
        || rel == release::RECORD
        || rel == UPLOAD_LIST;
    if bad {
        Err(DeployError::BadName(rel.to_owned()))
    } else {
        Ok(())
    }
}

pub(crate) struct Layout {
    pub(crate) base: String,
}

impl Layout {
    pub(crate) fn of(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
        }
    }
    pub(crate) fn releases(&self) -> String {
        format!("{}/releases", self.base)
    }
    pub(crate) fn release(&self, id: &str) -> String {
        format!("{}/releases/{id}", self.base)
    }
    pub(crate) fn current(&self) -> String {
        format!("{}/current", self.base)
    }
    pub(crate) fn lock(&self) -> String {
        format!("{}/.lock", self.base)
    }
    pub(crate) fn log(&self) -> String {
        format!("{}/{}", self.base, release::LOG)
    }
}

pub(crate) fn current_id(remote: &mut dyn Remote, l: &Layout) -> Result<Option<String>, DeployError> {
    let target = remote
        .read_link(&l.current())
        .map_err(ctx("reading the current link"))?;
    Ok(target
        .and_then(|t| t.rsplit('/').next().map(str::to_owned))
        .filter(|s| !s.is_empty()))
}

pub(crate) fn release_ids(remote: &mut dyn Remote, l: &Layout) -> Result<Vec<String>, DeployError> {
    Ok(remote
        .list(&l.releases())
        .map_err(ctx("listing releases"))?
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect())
}

fn read_record(remote: &mut dyn Remote, l: &Layout, id: &str) -> Option<DeployRecord> {
    let bytes = remote.read(&format!("{}/{}", l.release(id), release::RECORD)).ok()??;
    serde_json::from_slice(&bytes).ok()
}

/// Takes the lock (taking over a stale one); returns the stale owner it replaced.
pub(crate) fn lock(
    remote: &mut dyn Remote,
    l: &Layout,
    stale_after: Duration,
    who: &Provenance,
) -> Result<Option<LockOwner>, DeployError> {
    remote.mkdir_all(&l.base).map_err(ctx(format!("creating {}", l.base)))?;
    let mut broke = None;
    for _ in 0..2 {
        if remote.mkdir_new(&l.lock()).map_err(ctx("taking the deploy lock"))? {
            let now = now_secs();
            let owner = LockOwner {
                host: std::env::var("HOSTNAME")
                    .or_else(|_| std::env::var("RUNNER_NAME"))
                    .unwrap_or_else(|_| "unknown".into()),
                pid: std::process::id(),
                actor: who.actor.clone(),
                run: who.run.clone(),
                since: now,
                since_utc: rfc3339(now),
            };
            let json = serde_json::to_vec_pretty(&owner).unwrap_or_default();
            remote
                .write(&format!("{}/{}", l.lock(), release::LOCK_OWNER), &json)
                .map_err(ctx("writing the lock's owner"))?;
            return Ok(broke);
        }
        let owner: Option<LockOwner> = remote
            .read(&format!("{}/{}", l.lock(), release::LOCK_OWNER))
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let owner = owner.unwrap_or(LockOwner {
            host: "unknown".into(),
            pid: 0,
            actor: None,
            run: None,
            since: 0,
            since_utc: rfc3339(0),
        });
        let age = now_secs().saturating_sub(owner.since);
        if age < stale_after.as_secs() {
            return Err(DeployError::Locked {
                owner: Box::new(owner),
                age_secs: age,
                stale_after_secs: stale_after.as_secs(),
                path: l.lock(),
            });
        }
        remote.remove_all(&[l.lock()]).map_err(ctx("removing a stale lock"))?;
        broke = Some(owner);
    }
    Err(DeployError::Remote {
        what: "taking the deploy lock".into(),
        source: RemoteError::new(l.lock(), RemoteErrorKind::Other, "lost the race for the lock twice"),
    })
}

pub(crate) fn unlock(remote: &mut dyn Remote, l: &Layout) {
    // Two quick file operations (no remote process); the full removal if something else is in it.
    let owner = format!("{}/{}", l.lock(), release::LOCK_OWNER);
    if remote.remove_file(&owner).is_err() || remote.remove_dir(&l.lock()).is_err() {
        let _ = remote.remove_all(&[l.lock()]);
    }
}

fn audit(remote: &mut dyn Remote, l: &Layout, event: &AuditEvent) -> Result<(), DeployError> {
    crate::registry::append(remote, l, event.clone())
}

/// Deploys `files` to `base` on `remote`; `progress` hears bytes sent.
pub fn deploy(
    remote: &mut dyn Remote,
    base: &str,
    files: &[SourceFile],
    cfg: &DeployConfig,
    progress: &mut dyn FnMut(u64),
) -> Result<Outcome, DeployError> {
    for f in files {
        check_name(&f.rel)?;
    }
    let l = Layout {
        base: base.trim_end_matches('/').to_owned(),
    };
    let broke = lock(remote, &l, cfg.lock_stale_after, &cfg.provenance)?;
    let r = deploy_locked(remote, &l, files, cfg, progress);
    unlock(remote, &l);
    r.map(|mut o| {
        o.broke_stale_lock = broke;
        o
    })
}

fn deploy_locked(
    remote: &mut dyn Remote,
    l: &Layout,
    files: &[SourceFile],
    cfg: &DeployConfig,
    progress: &mut dyn FnMut(u64),
) -> Result<Outcome, DeployError> {
    let plan = plan(remote, l, files)?;
    if !cfg.force && plan.unchanged {
        let current = plan.previous.clone().unwrap_or_default();
        return unchanged(remote, l, cfg, &current, files.len());
    }
    let id = release_id(plan.now, &plan.content, cfg.provenance.git_sha.as_deref());
    let staged = stage(remote, l, files, cfg, &plan, &id, progress)?;
    let mut outcome = switch(remote, l, cfg, staged)?;
    outcome.pruned = prune(remote, l, cfg.keep_releases, &outcome.id)?;
    Ok(outcome)
}

/// What a host has before a deploy: its current release, that release's files, and the new
/// content's hash and earliest release time there.
pub(crate) struct Plan {
    pub(crate) previous: Option<String>,
    pub(crate) old: std::collections::HashMap<String, FileEntry>,
    pub(crate) content: String,
    /// Every file equals the current release's.
    pub(crate) unchanged: bool,
    /// The earliest time part of a new release's id that sorts after every release there.
    pub(crate) now: u64,
}

/// Reads what a deploy of `files` needs to know about the host (under its lock).
pub(crate) fn plan(remote: &mut dyn Remote, l: &Layout, files: &[SourceFile]) -> Result<Plan, DeployError> {
    remove_interrupted_uploads(remote, l)?;
    let previous = current_id(remote, l)?;
    let record = previous.as_deref().and_then(|p| read_record(remote, l, p));
    let content = content_hash(files);
    let unchanged = record.as_ref().is_some_and(|r| r.content_sha256 == content);
    let old = record
        .map(|r| r.files.into_iter().map(|f| (f.path.clone(), f)).collect())
        .unwrap_or_default();
    let now = release_time(remote, l, &content)?;
    Ok(Plan {
        previous,
        old,
        content,
        unchanged,
        now,
    })
}

/// A release uploaded, verified and published under `releases/` on a host, not yet current.
#[derive(Debug, Clone)]
pub(crate) struct Staged {
    pub(crate) id: String,
    pub(crate) path: String,
    pub(crate) previous: Option<String>,
    files_total: usize,
    files_sent: usize,
    files_linked: usize,
    pub(crate) bytes_sent: u64,
}

/// Uploads the files that changed since `plan.previous` (hard-linking the others) into a hidden
/// folder, verifies every upload and publishes it as release `id` — without making it current.
pub(crate) fn stage(
    remote: &mut dyn Remote,
    l: &Layout,
    files: &[SourceFile],
    cfg: &DeployConfig,
    plan: &Plan,
    id: &str,
    progress: &mut dyn FnMut(u64),
) -> Result<Staged, DeployError> {
    let partial = format!("{}/.partial-{id}", l.releases());
    let (mut link, mut send) = (Vec::new(), Vec::new());
    for f in files {
        match plan.old.get(&f.rel) {
            Some(o) if o.sha256 == f.sha256 && o.size == f.size => link.push(f.rel.clone()),
            _ => send.push(f),
        }
    }
    let record = new_record(id, plan.now, cfg, plan.previous.clone(), plan.content.clone(), files);
    let mut record_json = serde_json::to_vec_pretty(&record).unwrap_or_default();
    record_json.push(b'\n');
    let needed: u64 = send.iter().map(|f| f.size).sum::<u64>() + record_json.len() as u64;
    check_free_space(remote, l, needed)?;
    // Everything goes into the hidden partial folder first; it becomes a release only once every
    // uploaded file has been verified on the server.
    remote.mkdir_all(&partial).map_err(ctx(format!("creating {partial}")))?;
    if let Some(p) = plan.previous.as_deref() {
        remote
            .link_files(&l.release(p), &partial, &link)
            .map_err(ctx("linking unchanged files"))?;
    }
    let bytes_sent = upload_verified(remote, &partial, &send, record_json, progress)?;
    let path = l.release(id);
    remote
        .rename(&partial, &path)
        .map_err(ctx(format!("publishing {path}")))?;
    Ok(Staged {
        id: id.to_owned(),
        path,
        previous: plan.previous.clone(),
        files_total: files.len(),
        files_sent: send.len(),
        files_linked: link.len(),
        bytes_sent,
    })
}

/// Makes a staged release current, logs it and runs the health checks (switching back when one
/// fails); old releases are pruned by the caller.
pub(crate) fn switch(
    remote: &mut dyn Remote,
    l: &Layout,
    cfg: &DeployConfig,
    staged: Staged,
) -> Result<Outcome, DeployError> {
    let Staged { id, path, previous, .. } = &staged;
    remote
        .replace_symlink(&l.current(), &format!("releases/{id}"))
        .map_err(ctx("switching current"))?;
    audit(
        remote,
        l,
        &AuditEvent::Deploy {
            release: id.clone(),
            previous: previous.clone(),
            time: rfc3339(now_secs()),
            actor: cfg.provenance.actor.clone(),
            git_sha: cfg.provenance.git_sha.clone(),
            run: cfg.provenance.run.clone(),
            files: staged.files_total,
            files_sent: staged.files_sent,
            bytes_sent: staged.bytes_sent,
            gates: cfg.provenance.gates.clone(),
            reason: cfg.provenance.reason.clone(),
        },
    )?;
    let health = health_check(remote, l, cfg, id, previous.as_deref(), path)?;
    Ok(Outcome {
        path: staged.path,
        files_total: staged.files_total,
        files_sent: staged.files_sent,
        files_linked: staged.files_linked,
        bytes_sent: staged.bytes_sent,
        previous: staged.previous,
        health,
        broke_stale_lock: None,
        unchanged: false,
        id: staged.id,
        pruned: Vec::new(),
    })
}

/// A deploy of exactly the current release's content: nothing sent, `current` kept, the attempt
/// logged.
pub(crate) fn unchanged(
    remote: &mut dyn Remote,
    l: &Layout,
    cfg: &DeployConfig,
    current: &str,
    files: usize,
) -> Result<Outcome, DeployError> {
    audit(
        remote,
        l,
        &AuditEvent::Unchanged {
            release: current.to_owned(),
            time: rfc3339(now_secs()),
            actor: cfg.provenance.actor.clone(),
            git_sha: cfg.provenance.git_sha.clone(),
            run: cfg.provenance.run.clone(),
        },
    )?;
    Ok(Outcome {
        id: current.to_owned(),
        path: l.release(current),
        files_total: files,
        files_sent: 0,
        files_linked: 0,
        bytes_sent: 0,
        previous: Some(current.to_owned()),
        pruned: Vec::new(),
        health: None,
        broke_stale_lock: None,
        unchanged: true,
    })
}

/// Creates the releases folder if needed and removes the leftovers of interrupted deploys.
fn remove_interrupted_uploads(remote: &mut dyn Remote, l: &Layout) -> Result<(), DeployError> {
    remote
        .mkdir_all(&l.releases())
        .map_err(ctx(format!("creating {}", l.releases())))?;
    let leftovers: Vec<String> = remote
        .list(&l.releases())
        .map_err(ctx("listing releases"))?
        .into_iter()
        .filter(|n| n.starts_with(".partial-"))
        .map(|n| format!("{}/{n}", l.releases()))
        .collect();
    remote
        .remove_all(&leftovers)
        .map_err(ctx("removing an interrupted upload"))
}

/// The time part of the new release's id.
fn release_time(remote: &mut dyn Remote, l: &Layout, content: &str) -> Result<u64, DeployError> {
    // Ids sort in deploy order (pruning and rollback rely on it): the time part is moved past the
    // newest existing release's when the clock has not (two deploys in one second, clock skew).
    let existing = release_ids(remote, l)?;
    let newest = existing
        .iter()
        .map(|i| i.split('-').next().unwrap_or_default().to_owned())
        .max();
    let mut now = now_secs();
    while newest
        .as_deref()
        .is_some_and(|n| release_id(now, content, None).split('-').next().unwrap_or_default() <= n)
    {
        now += 1;
    }
    Ok(now)
}

/// The deploy record (`deploy.json`) of release `id`, created at `now`.
fn new_record(
    id: &str,
    now: u64,
    cfg: &DeployConfig,
    previous: Option<String>,
    content: String,
    files: &[SourceFile],
) -> DeployRecord {
    DeployRecord {
        format: FORMAT.into(),
        id: id.to_owned(),
        created: rfc3339(now),
        git_sha: cfg.provenance.git_sha.clone(),
        actor: cfg.provenance.actor.clone(),
        run: cfg.provenance.run.clone(),
        previous,
        bundle_ids: cfg.provenance.bundle_ids.clone(),
        content_sha256: content,
        files: files
            .iter()
            .map(|f| FileEntry {
                path: f.rel.clone(),
                size: f.size,
                sha256: f.sha256.clone(),
            })
            .collect(),
    }
}

/// Fails when the server reports less free space than `needed` bytes plus a margin.
fn check_free_space(remote: &mut dyn Remote, l: &Layout, needed: u64) -> Result<(), DeployError> {
    if let Some(free) = remote.free_bytes(&l.base).map_err(ctx("checking free space"))?
        && free < needed + needed / 10 + (1 << 20)
    {
        return Err(DeployError::DiskFull {
            needed,
            free,
            path: l.base.clone(),
        });
    }
    Ok(())
}

/// Uploads the changed files `send` and the deploy record into `partial`, and checks every
/// upload's SHA-256 as the server computed it. Returns the bytes sent.
fn upload_verified(
    remote: &mut dyn Remote,
    partial: &str,
    send: &[&SourceFile],
    record_json: Vec<u8>,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, DeployError> {
    let record_sha = format!("{:x}", sha2::Sha256::digest(&record_json));
    let mut uploads: Vec<(String, Payload)> = send
        .iter()
        .map(|f| (f.rel.clone(), Payload::File(f.path.clone())))
        .collect();
    uploads.push(("deploy.json".into(), Payload::Bytes(record_json)));
    let mut bytes_sent = 0u64;
    let got = remote
        .upload(partial, &uploads, &mut |k| {
            bytes_sent += k;
            progress(k);
        })
        .map_err(ctx(format!("uploading to {partial}")))?;
    let expected = send
        .iter()
        .map(|f| f.sha256.as_str())
        .chain(std::iter::once(record_sha.as_str()));
    for ((rel, _), (want, have)) in uploads.iter().zip(expected.zip(&got)) {
        if want != have {
            return Err(DeployError::Verify {
                path: format!("{partial}/{rel}"),
                expected: want.to_owned(),
                got: have.clone(),
            });
        }
    }
    Ok(bytes_sent)
}

/// The shell command, run in a release folder on the server, that asks the service on `socket`
/// to follow `current` (its `--admin reload`, with the release's own `bin/cellops-serve` when it
/// ships one) and waits up to `seconds` for it to answer: a service that is restarting has no
/// socket for a moment; a service that refused the release answers at once, with its reason.
pub fn service_reload_command(socket: &str, seconds: u64) -> String {
    format!(
        "bin=bin/cellops-serve; [ -x \"$bin\" ] || bin=cellops-serve; i=0; \
         until out=$(\"$bin\" --admin-socket {socket} --admin reload 2>&1); do \
         case \"$out\" in *refused*) printf '%s\\n' \"$out\"; exit 1;; esac; \
         i=$((i+1)); if [ \"$i\" -ge {seconds} ]; then printf '%s\\n' \"$out\"; exit 1; fi; sleep 1; done; \
         printf '%s\\n' \"$out\"",
        socket = crate::remote::shell_quote(socket),
    )
}

/// Runs the service check (when a service socket is set) and the configured health check in the
/// new release `final_dir`. When either fails, `current` goes back to `previous` (or is removed),
/// the service is asked to follow it back, the rollback is logged and the deploy fails.
fn health_check(
    remote: &mut dyn Remote,
    l: &Layout,
    cfg: &DeployConfig,
    id: &str,
    previous: Option<&str>,
    final_dir: &str,
) -> Result<Option<CommandOutput>, DeployError> {
    let seconds = cfg.health_timeout.as_secs().max(1);
    let service = cfg
        .service_socket
        .as_deref()
        .map(|s| service_reload_command(s, seconds));
    let user = cfg.health_check.clone().filter(|c| !c.trim().is_empty());
    let mut passed: Option<CommandOutput> = None;
    for cmd in [service, user].into_iter().flatten() {
        let out = remote
            .run(&cmd, final_dir, cfg.health_timeout + Duration::from_secs(5))
            .map_err(ctx("running the health check"))?;
        if !out.success() {
            switch_back(remote, l, cfg, id, previous, RollbackReason::HealthCheckFailed)?;
            return Err(DeployError::HealthCheck {
                id: id.to_owned(),
                output: out,
                rolled_back_to: previous.map(str::to_owned),
            });
        }
        passed = Some(match passed {
            Some(p) => CommandOutput {
                output: p.output + &out.output,
                ..out
            },
            None => out,
        });
    }
    Ok(passed)
}

/// Asks the service (when a socket is set) to follow `current`, now on `target`.
pub(crate) fn follow(remote: &mut dyn Remote, l: &Layout, cfg: &DeployConfig, target: &str) -> Result<(), DeployError> {
    let Some(socket) = &cfg.service_socket else {
        return Ok(());
    };
    let seconds = cfg.health_timeout.as_secs().max(1);
    let out = remote
        .run(
            &service_reload_command(socket, seconds),
            &l.release(target),
            cfg.health_timeout + Duration::from_secs(5),
        )
        .map_err(ctx("asking the service to follow"))?;
    if out.success() {
        return Ok(());
    }
    Err(DeployError::ServiceDidNotFollow {
        id: target.to_owned(),
        output: out.output,
    })
}

/// Points `current` back at `previous` (or removes it), asks the service to follow, and logs the
/// rollback of `id`.
pub(crate) fn switch_back(
    remote: &mut dyn Remote,
    l: &Layout,
    cfg: &DeployConfig,
    id: &str,
    previous: Option<&str>,
    reason: RollbackReason,
) -> Result<(), DeployError> {
    match previous {
        Some(p) => remote
            .replace_symlink(&l.current(), &format!("releases/{p}"))
            .map_err(ctx("switching current back"))?,
        None => remote.remove_all(&[l.current()]).map_err(ctx("removing current"))?,
    }
    if let (Some(socket), Some(p)) = (&cfg.service_socket, previous) {
        // Best effort: a service that refused the new release still serves the previous one.
        let _ = remote.run(
            &service_reload_command(socket, 10),
            &l.release(p),
            Duration::from_secs(15),
        );
    }
    audit(
        remote,
        l,
        &AuditEvent::Rollback {
            release: previous.map(str::to_owned),
            from: Some(id.to_owned()),
            time: rfc3339(now_secs()),
            reason,
            actor: cfg.provenance.actor.clone(),
            run: cfg.provenance.run.clone(),
        },
    )
}

/// Removes all but the newest `keep` releases (never `current`, nor one an alias points to).
pub(crate) fn prune(
    remote: &mut dyn Remote,
    l: &Layout,
    keep: usize,
    current: &str,
) -> Result<Vec<String>, DeployError> {
    let ids = release_ids(remote, l)?;
    let pinned: Vec<String> = crate::registry::aliases(remote, &l.base)?
        .into_values()
        .flatten()
        .collect();
    let keep = keep.max(1);
    let pruned: Vec<String> = if ids.len() > keep {
        ids[..ids.len() - keep]
            .iter()
            .filter(|id| *id != current && !pinned.contains(id))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let paths: Vec<String> = pruned.iter().map(|id| l.release(id)).collect();
    remote.remove_all(&paths).map_err(ctx("pruning old releases"))?;
    Ok(pruned)
}

/// The releases on the server, oldest first.
pub fn list(remote: &mut dyn Remote, base: &str) -> Result<Vec<ReleaseInfo>, DeployError> {
    let l = Layout {
        base: base.trim_end_matches('/').to_owned(),
    };
    let current = current_id(remote, &l)?;
    let ids = release_ids(remote, &l)?;
    Ok(ids
        .into_iter()
        .map(|id| ReleaseInfo {
            current: current.as_deref() == Some(id.as_str()),
            record: read_record(remote, &l, &id),
            id,
        })
        .collect())
}

/// Switches `current` to release `to`, or to the one before the current release; returns
/// `(from, to)`.
pub fn rollback(
    remote: &mut dyn Remote,
    base: &str,
    to: Option<&str>,
    cfg: &DeployConfig,
) -> Result<(Option<String>, String), DeployError> {
    let l = Layout {
        base: base.trim_end_matches('/').to_owned(),
    };
    lock(remote, &l, cfg.lock_stale_after, &cfg.provenance)?;
    let r = (|| {
        let current = current_id(remote, &l)?;
        let ids = release_ids(remote, &l)?;
        let target = match to {
            Some(t) if ids.iter().any(|i| i == t) => t.to_owned(),
            Some(t) => {
                return Err(DeployError::NoSuchRelease {
                    id: t.to_owned(),
                    available: ids,
                });
            }
            None => {
                let cur = current
                    .clone()
                    .ok_or_else(|| DeployError::NothingToRollBack("no current release".into()))?;
                let pos = ids.iter().position(|i| *i == cur).unwrap_or(ids.len());
                ids[..pos]
                    .last()
                    .cloned()
                    .ok_or_else(|| DeployError::NothingToRollBack(format!("{cur} is the oldest release")))?
            }
        };
        remote
            .replace_symlink(&l.current(), &format!("releases/{target}"))
            .map_err(ctx("switching current"))?;
        audit(
            remote,
            &l,
            &AuditEvent::Rollback {
                release: Some(target.clone()),
                from: current.clone(),
                time: rfc3339(now_secs()),
                reason: RollbackReason::Requested,
                actor: cfg.provenance.actor.clone(),
                run: cfg.provenance.run.clone(),
            },
        )?;
        follow(remote, &l, cfg, &target)?;
        Ok((current, target))
    })();
    unlock(remote, &l);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_that_cannot_be_deployed() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "a//b",
            "x\ny",
            "a\\b",
            "deploy.json",
            "./a",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["cell-params/he.yaml", "a b/c.d", "bundle/model.safetensors"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
    }

    proptest! {
        #[test]
        fn ids_sort_by_time(a in 0u64..4_000_000_000, b in 0u64..4_000_000_000) {
            let (ia, ib) = (release_id(a, "00000000", None), release_id(b, "00000000", None));
            prop_assert_eq!(a.cmp(&b), ia.cmp(&ib));
        }
    }
}
