//! The registry: which release each alias points to, now and at any time before, and a log that
//! keeps its history honest. `current` is the alias `production` (what serves); other aliases
//! (`staging`, …) are links under `<base>/aliases/`, switched atomically the same way. Every move
//! is a line of `deployments.jsonl` that carries the sha256 of the line before it, and
//! `deployments.head` holds the last line's sha256 and the line count, so [`verify`] catches a
//! line edited, removed, inserted or cut off the end. Pruning never removes a release an alias
//! points to.

use std::collections::BTreeMap;

use cellops_formats::release::{
    ALIASES_DIR, AuditEvent, GateResult, LOG, LOG_HEAD, LogHead, LogLine, PRODUCTION, sha256_of,
};

use crate::release::{
    DeployConfig, DeployError, Layout, ctx, current_id, follow, lock, now_secs, release_ids, rfc3339, unlock,
};
use crate::remote::Remote;

fn sha(bytes: &[u8]) -> String {
    sha256_of(bytes).map(|(_, h)| h).unwrap_or_default()
}

/// The log's lines (none when there is no log yet), without their newlines.
fn log_lines(remote: &mut dyn Remote, l: &Layout) -> Result<Vec<String>, DeployError> {
    let log = remote
        .read(&l.log())
        .map_err(ctx(format!("reading {LOG}")))?
        .unwrap_or_default();
    Ok(String::from_utf8_lossy(&log)
        .lines()
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Appends `event` to the log, chained to the line before, and moves the head.
pub(crate) fn append(remote: &mut dyn Remote, l: &Layout, event: AuditEvent) -> Result<(), DeployError> {
    let lines = log_lines(remote, l)?;
    let prev = lines.last().map(|x| sha(x.as_bytes()));
    let line = serde_json::to_string(&LogLine { event, prev }).unwrap_or_default();
    remote
        .append(&l.log(), format!("{line}\n").as_bytes())
        .map_err(ctx(format!("appending to {LOG}")))?;
    let head = LogHead {
        sha256: sha(line.as_bytes()),
        lines: lines.len() + 1,
    };
    let partial = format!("{}/.{LOG_HEAD}.partial", l.base);
    remote
        .write(&partial, &serde_json::to_vec(&head).unwrap_or_default())
        .and_then(|()| remote.rename(&partial, &format!("{}/{LOG_HEAD}", l.base)))
        .map_err(ctx(format!("writing {LOG_HEAD}")))
}

/// Every line of the log, oldest first (an unreadable line is an error naming it).
pub fn history(remote: &mut dyn Remote, base: &str) -> Result<Vec<LogLine>, DeployError> {
    let l = Layout::of(base);
    let log = remote
        .read(&l.log())
        .map_err(ctx(format!("reading {LOG}")))?
        .unwrap_or_default();
    String::from_utf8_lossy(&log)
        .lines()
        .enumerate()
        .filter(|(_, x)| !x.trim().is_empty())
        .map(|(k, x)| {
            serde_json::from_str(x).map_err(|e| DeployError::Log(format!("{LOG}:{}: cannot be read: {e}", k + 1)))
        })
        .collect()
}

/// What [`verify`] found in a sound log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Lines in the log.
    pub lines: usize,
    /// Lines without `prev` at the log's start: written before the chain, or (the first of them)
    /// the chain's own first line.
    pub unchained: usize,
}

/// Checks the log's chain and its head: a line whose `prev` is not the sha256 of the line before,
/// a chained log without a head, or a head that is not its last line is an error naming the line.
pub fn verify(remote: &mut dyn Remote, base: &str) -> Result<Verified, DeployError> {
    let lines = log_lines(remote, &Layout::of(base))?;
    let broken = |what: String| Err(DeployError::Log(what));
    let mut unchained = 0;
    for (k, line) in lines.iter().enumerate() {
        let parsed: LogLine = match serde_json::from_str(line) {
            Ok(p) => p,
            Err(e) => return broken(format!("{LOG}:{}: cannot be read: {e}", k + 1)),
        };
        match (&parsed.prev, k) {
            (None, _) if unchained == k => unchained += 1,
            (None, _) => return broken(format!("{LOG}:{}: the chain stops here (no prev)", k + 1)),
            (Some(_), 0) => {
                return broken(format!(
                    "{LOG}:1: the first line names a line before it: lines were removed"
                ));
            }
            (Some(p), _) if *p != sha(lines[k - 1].as_bytes()) => {
                return broken(format!(
                    "{LOG}:{}: prev is not the sha256 of line {k}: the log was edited",
                    k + 1
                ));
            }
            _ => {}
        }
    }
    let head = remote
        .read(&format!("{base}/{LOG_HEAD}"))
        .map_err(ctx(format!("reading {LOG_HEAD}")))?;
    match (head, lines.last()) {
        (None, Some(_)) if unchained < lines.len() => broken(format!("{LOG_HEAD} is missing")),
        (None, _) => Ok(Verified {
            lines: lines.len(),
            unchained,
        }),
        (Some(bytes), last) => {
            let head: LogHead =
                serde_json::from_slice(&bytes).map_err(|e| DeployError::Log(format!("{LOG_HEAD}: {e}")))?;
            let last_sha = last.map(|x| sha(x.as_bytes())).unwrap_or_default();
            if head.lines != lines.len() || head.sha256 != last_sha {
                return broken(format!(
                    "{LOG_HEAD} says {} lines ending in {}, the log has {} ending in {}: lines were cut off or added",
                    head.lines,
                    &head.sha256.get(..12).unwrap_or_default(),
                    lines.len(),
                    &last_sha.get(..12).unwrap_or_default()
                ));
            }
            Ok(Verified {
                lines: lines.len(),
                unchained,
            })
        }
    }
}

/// The release `alias` pointed to at `at` (RFC 3339, UTC; none: now) by the log's account.
pub fn which(lines: &[LogLine], alias: &str, at: Option<&str>) -> Option<String> {
    lines
        .iter()
        .take_while(|x| at.is_none_or(|t| x.event.time() <= t))
        .filter(|x| x.event.moved().0 == alias)
        .last()
        .and_then(|x| x.event.moved().1.map(str::to_owned))
}

/// The aliases and the releases they point to now: `production` (`current`) and every link under
/// `aliases/`.
pub fn aliases(remote: &mut dyn Remote, base: &str) -> Result<BTreeMap<String, Option<String>>, DeployError> {
    let l = Layout::of(base);
    let mut out = BTreeMap::from([(PRODUCTION.to_owned(), current_id(remote, &l)?)]);
    let dir = format!("{base}/{ALIASES_DIR}");
    let names = remote.list(&dir).unwrap_or_default();
    for name in names.into_iter().filter(|n| !n.starts_with('.')) {
        let target = remote
            .read_link(&format!("{dir}/{name}"))
            .map_err(ctx(format!("reading alias {name}")))?;
        out.insert(name, target.and_then(|t| t.rsplit('/').next().map(str::to_owned)));
    }
    Ok(out)
}

/// An alias name: lowercase letters, digits, `-` and `_`, not `production`'s own link.
fn check_alias(alias: &str) -> Result<(), DeployError> {
    let ok = !alias.is_empty()
        && alias.len() <= 64
        && alias
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(DeployError::BadAlias(alias.to_owned()))
    }
}

/// A promotion: which alias, to which release, why, and the gates it was judged by.
#[derive(Debug, Clone)]
pub struct Promotion<'a> {
    /// The alias (`production` switches `current` and asks the service to follow).
    pub alias: &'a str,
    /// The release.
    pub release: &'a str,
    /// Why (needed when `forced`).
    pub reason: Option<&'a str>,
    /// The gates' results.
    pub gates: Vec<GateResult>,
    /// Whether failing gates are overridden.
    pub forced: bool,
}

/// Points an alias at a release under the deploy lock and logs the move; returns the release it
/// pointed to before. A failing gate refuses the move unless forced with a reason.
pub fn promote(
    remote: &mut dyn Remote,
    base: &str,
    p: &Promotion<'_>,
    cfg: &DeployConfig,
) -> Result<Option<String>, DeployError> {
    check_alias(p.alias)?;
    let failed: Vec<&GateResult> = p.gates.iter().filter(|g| !g.passed).collect();
    let overridden = p.forced && p.reason.is_some_and(|r| !r.trim().is_empty());
    if !failed.is_empty() && !overridden {
        return Err(DeployError::GateFailed(
            failed
                .iter()
                .map(|g| format!("{}: {}", g.gate, g.detail))
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    let l = Layout::of(base);
    lock(remote, &l, cfg.lock_stale_after, &cfg.provenance)?;
    let r = (|| {
        let ids = release_ids(remote, &l)?;
        if !ids.iter().any(|i| i == p.release) {
            return Err(DeployError::NoSuchRelease {
                id: p.release.to_owned(),
                available: ids,
            });
        }
        let from = aliases(remote, base)?.remove(p.alias).flatten();
        if p.alias == PRODUCTION {
            remote
                .replace_symlink(&l.current(), &format!("releases/{}", p.release))
                .map_err(ctx("switching current"))?;
        } else {
            let dir = format!("{base}/{ALIASES_DIR}");
            remote.mkdir_all(&dir).map_err(ctx(format!("creating {dir}")))?;
            remote
                .replace_symlink(&format!("{dir}/{}", p.alias), &format!("../releases/{}", p.release))
                .map_err(ctx(format!("switching alias {}", p.alias)))?;
        }
        append(
            remote,
            &l,
            AuditEvent::Promote {
                alias: p.alias.to_owned(),
                release: p.release.to_owned(),
                from: from.clone(),
                time: rfc3339(now_secs()),
                actor: cfg.provenance.actor.clone(),
                run: cfg.provenance.run.clone(),
                reason: p.reason.map(str::to_owned),
                gates: p.gates.clone(),
                forced: p.forced && !failed.is_empty(),
            },
        )?;
        if p.alias == PRODUCTION {
            follow(remote, &l, cfg, p.release)?;
        }
        Ok(from)
    })();
    unlock(remote, &l);
    r
}

/// Points `alias` back to `to` under the lock, logged with `reason` — or, when it pointed to
/// nothing before (`to` none), removes it and logs that: how a fleet's promotion is undone on the
/// hosts it reached.
pub fn restore(
    remote: &mut dyn Remote,
    base: &str,
    alias: &str,
    to: Option<&str>,
    reason: &str,
    cfg: &DeployConfig,
) -> Result<(), DeployError> {
    if let Some(release) = to {
        let back = Promotion {
            alias,
            release,
            reason: Some(reason),
            gates: Vec::new(),
            forced: false,
        };
        return promote(remote, base, &back, cfg).map(|_| ());
    }
    check_alias(alias)?;
    let l = Layout::of(base);
    lock(remote, &l, cfg.lock_stale_after, &cfg.provenance)?;
    let r = (|| {
        let from = aliases(remote, base)?.remove(alias).flatten();
        let link = if alias == PRODUCTION {
            l.current()
        } else {
            format!("{base}/{ALIASES_DIR}/{alias}")
        };
        remote
            .remove_all(&[link])
            .map_err(ctx(format!("removing alias {alias}")))?;
        append(
            remote,
            &l,
            AuditEvent::Unalias {
                alias: alias.to_owned(),
                from,
                time: rfc3339(now_secs()),
                actor: cfg.provenance.actor.clone(),
                run: cfg.provenance.run.clone(),
                reason: Some(reason.to_owned()),
            },
        )
    })();
    unlock(remote, &l);
    r
}
