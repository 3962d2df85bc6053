//! A release on the server: `deploy.json` (what a release holds and where it came from), the
//! lock's `owner.json`, and `deployments.jsonl`, the append-only audit log of every deploy and
//! rollback. The deploy crate writes them; monitoring and people read them.
//!
//! ```text
//! <base>/releases/<id>/deploy.json   RECORD
//! <base>/current -> releases/<id>    CURRENT
//! <base>/deployments.jsonl           LOG (each line carries the sha256 of the one before)
//! <base>/deployments.head            LOG_HEAD (the sha256 of the last line, and the line count)
//! <base>/aliases/<name> -> ../releases/<id>   ALIASES_DIR (`current` is the alias `production`)
//! <base>/.lock/owner.json            LOCK_OWNER
//! ```

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::FileError;

/// The format tag of `deploy.json`.
pub const FORMAT: &str = "cellops.release/1";
/// A release's record, in its folder.
pub const RECORD: &str = "deploy.json";
/// The audit log, at the base folder.
pub const LOG: &str = "deployments.jsonl";
/// The log's head: the sha256 of its last line and its line count, so that a cut log is caught.
pub const LOG_HEAD: &str = "deployments.head";
/// The folder of the aliases other than `production` (links to releases).
pub const ALIASES_DIR: &str = "aliases";
/// The alias of `current`: what serves.
pub const PRODUCTION: &str = "production";
/// The lock holder's file, in the lock folder.
pub const LOCK_OWNER: &str = "owner.json";
/// The folder of a release whose files are programs (the service binary a release ships, so
/// that a rollback rolls it back too): they arrive executable (mode 0755), every other file 0644.
pub const BIN_DIR: &str = "bin";

/// The mode a file of a release gets on the server, from its path inside the release.
///
/// ```
/// use cellops_formats::release::mode_of;
/// assert_eq!(mode_of("bin/cellops-serve"), 0o755);
/// assert_eq!(mode_of("cell-params/he.yaml"), 0o644);
/// assert_eq!(mode_of("models/bin/x"), 0o644);
/// ```
pub fn mode_of(rel: &str) -> u32 {
    match rel.split_once('/') {
        Some((BIN_DIR, rest)) if !rest.is_empty() => 0o755,
        _ => 0o644,
    }
}

/// A file as recorded in `deploy.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path inside the release.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256, hex.
    pub sha256: String,
}

/// `deploy.json`: what a release holds and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployRecord {
    /// [`FORMAT`].
    pub format: String,
    /// The release id.
    pub id: String,
    /// When it was made (UTC, RFC 3339).
    pub created: String,
    /// The git commit deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_sha: Option<String>,
    /// Who deployed it (`GITHUB_ACTOR`, else the local user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The workflow run, when deployed from Actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The release that was current before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Ids of the model bundles included.
    #[serde(default)]
    pub bundle_ids: Vec<String>,
    /// sha256 over the sorted `path sha256` lines.
    pub content_sha256: String,
    /// The files.
    pub files: Vec<FileEntry>,
}

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockOwner {
    /// Machine that took it.
    pub host: String,
    /// Its process.
    pub pid: u32,
    /// Who.
    #[serde(default)]
    pub actor: Option<String>,
    /// The workflow run.
    #[serde(default)]
    pub run: Option<String>,
    /// When (Unix seconds).
    pub since: u64,
    /// When (UTC, RFC 3339).
    pub since_utc: String,
}

/// The event of a line of `deployments.jsonl` ([`LogLine`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum AuditEvent {
    /// A release was made current.
    Deploy {
        /// The new release.
        release: String,
        /// The release that was current before.
        previous: Option<String>,
        /// When (UTC, RFC 3339).
        time: String,
        /// Who.
        actor: Option<String>,
        /// The git commit deployed.
        git_sha: Option<String>,
        /// The workflow run.
        run: Option<String>,
        /// Files in the release.
        files: usize,
        /// Files uploaded.
        files_sent: usize,
        /// Bytes uploaded.
        bytes_sent: u64,
        /// The promotion gates of the models it changed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gates: Vec<GateResult>,
        /// Why, when failing gates were overridden.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An alias was pointed at a release (`production` is `current`).
    Promote {
        /// The alias.
        alias: String,
        /// The release it points to now.
        release: String,
        /// The release it pointed to before.
        from: Option<String>,
        /// When (UTC, RFC 3339).
        time: String,
        /// Who.
        actor: Option<String>,
        /// The workflow run.
        run: Option<String>,
        /// Why (required when a gate was overridden).
        reason: Option<String>,
        /// The promotion gates' results.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gates: Vec<GateResult>,
        /// Whether failing gates were overridden.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        forced: bool,
    },
    /// An alias was removed: a fleet's promotion undone on a host where the alias pointed to
    /// nothing before.
    Unalias {
        /// The alias.
        alias: String,
        /// The release it pointed to.
        from: Option<String>,
        /// When (UTC, RFC 3339).
        time: String,
        /// Who.
        actor: Option<String>,
        /// The workflow run.
        run: Option<String>,
        /// Why.
        reason: Option<String>,
    },
    /// A deploy whose files all equal the current release's: nothing was sent and `current`
    /// stays (it records who tried, and from which commit).
    Unchanged {
        /// The current release, which stays.
        release: String,
        /// When (UTC, RFC 3339).
        time: String,
        /// Who.
        actor: Option<String>,
        /// The git commit deployed.
        git_sha: Option<String>,
        /// The workflow run.
        run: Option<String>,
    },
    /// `current` was switched back.
    Rollback {
        /// The release made current (none when there was no earlier one).
        release: Option<String>,
        /// The release that was current.
        from: Option<String>,
        /// When (UTC, RFC 3339).
        time: String,
        /// Why.
        reason: RollbackReason,
        /// Who.
        actor: Option<String>,
        /// The workflow run.
        run: Option<String>,
    },
}

/// One line of `deployments.jsonl`: an event and the sha256 (hex) of the line before it, which
/// chains the log (lines written before the chain have none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// sha256 of the previous line's bytes (without its newline); none for the first line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
}

/// [`LOG_HEAD`]: the last line's sha256 and how many lines the log has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogHead {
    /// sha256 of the last line (without its newline).
    pub sha256: String,
    /// Lines in the log.
    pub lines: usize,
}

/// A promotion gate's result, as the log records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateResult {
    /// The gate (`reference`, `regression`).
    pub gate: String,
    /// Whether it passed.
    pub passed: bool,
    /// What it found.
    pub detail: String,
}

impl AuditEvent {
    /// The alias this event moved and the release it pointed it to (none: to nothing).
    pub fn moved(&self) -> (&str, Option<&str>) {
        match self {
            AuditEvent::Deploy { release, .. } | AuditEvent::Unchanged { release, .. } => (PRODUCTION, Some(release)),
            AuditEvent::Rollback { release, .. } => (PRODUCTION, release.as_deref()),
            AuditEvent::Promote { alias, release, .. } => (alias, Some(release)),
            AuditEvent::Unalias { alias, .. } => (alias, None),
        }
    }

    /// When (UTC, RFC 3339).
    pub fn time(&self) -> &str {
        match self {
            AuditEvent::Deploy { time, .. }
            | AuditEvent::Unchanged { time, .. }
            | AuditEvent::Rollback { time, .. }
            | AuditEvent::Promote { time, .. }
            | AuditEvent::Unalias { time, .. } => time,
        }
    }
}

/// Why a rollback happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RollbackReason {
    /// The new release's health check failed.
    #[serde(rename = "health check failed")]
    HealthCheckFailed,
    /// Someone asked for it.
    #[serde(rename = "requested")]
    Requested,
    /// Another host of the fleet failed its stage or switch: no host keeps the new release.
    #[serde(rename = "another host failed")]
    FleetHostFailed,
}

/// The sha256 of a reader, hex, and its length.
pub fn sha256_of(mut r: impl Read) -> std::io::Result<(u64, String)> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, format!("{:x}", h.finalize())))
}

impl DeployRecord {
    /// Reads `deploy.json` in the release folder `dir`; `None` when there is none (a folder that
    /// no deploy made).
    pub fn read(dir: &Path) -> Result<Option<Self>, FileError> {
        let path = dir.join(RECORD);
        if !path.exists() {
            return Ok(None);
        }
        let text = crate::error::read_capped(&path, MAX_RECORD_BYTES, "a release record")?;
        serde_json::from_str(&text).map(Some).map_err(|e| FileError {
            path: path.clone(),
            line: Some(e.line() as u64),
            column: Some(e.column() as u64),
            message: crate::error::parser_message(&e.to_string()),
        })
    }

    /// Checks that every file the record lists is in `dir` with its recorded size and sha256;
    /// the error names the first file that is missing or differs.
    pub fn verify(&self, dir: &Path) -> Result<(), FileError> {
        for f in &self.files {
            let path = dir.join(&f.path);
            let err = |m: String| FileError::new(&path, m);
            let file =
                std::fs::File::open(&path).map_err(|e| err(format!("listed in {RECORD} but cannot be read: {e}")))?;
            let (size, sha256) = sha256_of(file).map_err(|e| err(format!("cannot read: {e}")))?;
            if size != f.size || sha256 != f.sha256 {
                return Err(err(format!(
                    "differs from {RECORD} (sha256 {sha256}, {size} bytes; recorded {}, {} bytes)",
                    f.sha256, f.size
                )));
            }
        }
        Ok(())
    }
}

/// `deploy.json` lists every file of a release; a few MiB is far beyond any real one.
const MAX_RECORD_BYTES: u64 = 16 * 1024 * 1024;

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time.
///
/// ```
/// assert_eq!(cellops_formats::release::rfc3339(0), "1970-01-01T00:00:00Z");
/// assert_eq!(cellops_formats::release::rfc3339(1_796_000_000), "2026-11-30T00:53:20Z");
/// ```
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_lines_name_their_event_and_reason_as_before() {
        let line = r#"{"event":"rollback","release":"a","from":"b","time":"t","reason":"health check failed","actor":null,"run":null}"#;
        let e: AuditEvent = serde_json::from_str(line).expect("a rollback line");
        assert!(matches!(
            e,
            AuditEvent::Rollback {
                reason: RollbackReason::HealthCheckFailed,
                ..
            }
        ));
        let back = serde_json::to_value(&e).expect("json");
        assert_eq!(back, serde_json::from_str::<serde_json::Value>(line).expect("json"));
    }
}
