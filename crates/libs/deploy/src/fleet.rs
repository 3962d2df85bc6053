//! One release on several hosts, all or nothing: every host is locked and planned, the release
//! is staged (uploaded, verified, published under `releases/`, not current) on all of them in
//! parallel, and only then switched host by host, each health-checked. If any host fails in
//! either phase, no host ends on the new release: hosts already switched are switched back (and
//! log why), staged copies that never became current are removed, and the error names the host,
//! the phase and the reason. One release id on every host, one audit line per host.
//!
//! Hosts are switched one after another, so for the seconds between the first switch and a
//! failure some hosts serve the new release; a load balancer sees each switch as a reload.
//!
//! [`rollback`] and [`promote`] move every host the same way: checked on all hosts before anything
//! moves, then host by host, undone on the hosts already moved when one refuses.

use std::time::Duration;

use cellops_formats::release::RollbackReason;

use crate::registry::{self, Promotion};
use crate::release::{
    self, DeployConfig, DeployError, Layout, Outcome, Plan, SourceFile, Staged, check_name, lock, release_id, unlock,
};
use crate::remote::Remote;

/// One host of a fleet.
pub struct Host {
    /// How messages name it (the target as given).
    pub name: String,
    /// Its connection.
    pub remote: Box<dyn Remote + Send>,
    /// The deploy's base path there.
    pub base: String,
}

/// A step of a fleet deploy, as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// A host has the release staged (uploaded and verified, not current).
    Staged {
        /// The host.
        host: &'a str,
        /// Bytes sent to it.
        bytes_sent: u64,
    },
    /// Every host has release `id` staged: the switch begins.
    AllStaged {
        /// The release.
        id: &'a str,
    },
    /// A host serves the release (switched, health checks passed).
    Switched {
        /// The host.
        host: &'a str,
    },
}

/// The phase of a fleet deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Taking the host's deploy lock.
    Lock,
    /// Reading the host's releases.
    Plan,
    /// Uploading, verifying and publishing the release.
    Stage,
    /// Making it current and checking its health.
    Switch,
    /// Removing old releases after every host switched.
    Prune,
    /// Switching `current` back to an earlier release (a fleet's rollback).
    Rollback,
    /// Pointing an alias at a release (a fleet's promotion).
    Promote,
}

impl Phase {
    /// The phase's name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Lock => "lock",
            Phase::Plan => "plan",
            Phase::Stage => "stage",
            Phase::Switch => "switch",
            Phase::Prune => "prune",
            Phase::Rollback => "roll back",
            Phase::Promote => "promote",
        }
    }
}

/// A host that failed, in which phase and why.
#[derive(Debug)]
pub struct HostFailure {
    /// The host.
    pub host: String,
    /// The phase.
    pub phase: Phase,
    /// Why.
    pub error: DeployError,
}

/// Why a fleet deploy failed, and where every host stands.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct FleetError {
    /// The release being deployed, once named.
    pub id: Option<String>,
    /// The hosts that failed.
    pub failures: Vec<HostFailure>,
    /// Hosts switched back to their previous release.
    pub switched_back: Vec<String>,
    /// Hosts that could not be switched back, and why: they may still be on the new release.
    pub stuck: Vec<(String, String)>,
}

impl FleetError {
    fn one(host: &str, phase: Phase, error: DeployError) -> Self {
        Self {
            id: None,
            failures: vec![HostFailure {
                host: host.to_owned(),
                phase,
                error,
            }],
            switched_back: Vec::new(),
            stuck: Vec::new(),
        }
    }

    fn describe(&self) -> String {
        let failed: Vec<String> = self
            .failures
            .iter()
            .map(|f| format!("{} failed to {}: {}", f.host, f.phase.as_str(), f.error))
            .collect();
        let mut s = failed.join("; ");
        let id = self.id.as_deref().unwrap_or("the new release");
        if self.failures.iter().all(|f| f.phase == Phase::Prune) {
            s.push_str(&format!(". {id} is current on every host"));
            return s;
        }
        let moving = |p: Phase| self.failures.iter().any(|f| f.phase == p);
        if self.stuck.is_empty() && moving(Phase::Rollback) {
            s.push_str(". Every host is on the release it was on before");
        } else if self.stuck.is_empty() && moving(Phase::Promote) {
            s.push_str(". Every host's alias points where it did before");
        } else if self.stuck.is_empty() {
            s.push_str(&format!(". No host is on {id}"));
        } else {
            let stuck: Vec<String> = self.stuck.iter().map(|(h, why)| format!("{h} ({why})")).collect();
            s.push_str(&format!(
                ". Could not switch back {}: they may still be on {id}",
                stuck.join(", ")
            ));
        }
        if !self.switched_back.is_empty() {
            s.push_str(&format!("; switched back: {}", self.switched_back.join(", ")));
        }
        s
    }
}

/// What a fleet deploy did.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetOutcome {
    /// The release every host is on.
    pub id: String,
    /// Nothing changed on any host: no release was made.
    pub unchanged: bool,
    /// Each host's outcome, in the order given.
    pub hosts: Vec<(String, Outcome)>,
}

/// Deploys `files` to every host, all or nothing; `progress` hears bytes sent (from several
/// threads), `on_event` each host's progress through the phases.
pub fn deploy(
    hosts: &mut [Host],
    files: &[SourceFile],
    cfg: &DeployConfig,
    progress: &(dyn Fn(u64) + Sync),
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<FleetOutcome, FleetError> {
    let name = hosts.first().map(|h| h.name.clone()).unwrap_or_default();
    for f in files {
        check_name(&f.rel).map_err(|e| FleetError::one(&name, Phase::Plan, e))?;
    }
    let layouts: Vec<Layout> = hosts.iter().map(|h| Layout::of(&h.base)).collect();
    let mut broke = Vec::with_capacity(hosts.len());
    for i in 0..hosts.len() {
        match lock(
            hosts[i].remote.as_mut(),
            &layouts[i],
            cfg.lock_stale_after,
            &cfg.provenance,
        ) {
            Ok(b) => broke.push(b),
            Err(e) => {
                let failed = FleetError::one(&hosts[i].name, Phase::Lock, e);
                unlock_all(&mut hosts[..i], &layouts);
                return Err(failed);
            }
        }
    }
    let r = deploy_locked(hosts, &layouts, files, cfg, progress, on_event);
    unlock_all(hosts, &layouts);
    r.map(|mut o| {
        for ((_, outcome), b) in o.hosts.iter_mut().zip(broke) {
            outcome.broke_stale_lock = b;
        }
        o
    })
}

fn unlock_all(hosts: &mut [Host], layouts: &[Layout]) {
    for (h, l) in hosts.iter_mut().zip(layouts) {
        unlock(h.remote.as_mut(), l);
    }
}

fn deploy_locked(
    hosts: &mut [Host],
    layouts: &[Layout],
    files: &[SourceFile],
    cfg: &DeployConfig,
    progress: &(dyn Fn(u64) + Sync),
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<FleetOutcome, FleetError> {
    let mut plans = Vec::with_capacity(hosts.len());
    for (h, l) in hosts.iter_mut().zip(layouts) {
        plans.push(release::plan(h.remote.as_mut(), l, files).map_err(|e| FleetError::one(&h.name, Phase::Plan, e))?);
    }
    if !cfg.force && plans.iter().all(|p| p.unchanged) {
        return unchanged(hosts, layouts, files, cfg, &plans);
    }
    // One id, after every host's newest release.
    let now = plans.iter().map(|p| p.now).max().unwrap_or_default();
    let content = plans.first().map(|p| p.content.clone()).unwrap_or_default();
    let id = release_id(now, &content, cfg.provenance.git_sha.as_deref());
    let plans: Vec<Plan> = plans.into_iter().map(|p| Plan { now, ..p }).collect();
    let (mut staged, mut failures) = (Vec::with_capacity(hosts.len()), Vec::new());
    let results = stage_all(hosts, layouts, files, cfg, &plans, &id, progress);
    for (h, s) in hosts.iter().zip(results) {
        match s {
            Ok(s) => staged.push(s),
            Err(error) => failures.push(HostFailure {
                host: h.name.clone(),
                phase: Phase::Stage,
                error,
            }),
        }
    }
    if !failures.is_empty() {
        remove_staged(hosts, layouts, &id);
        return Err(FleetError {
            id: Some(id),
            failures,
            switched_back: Vec::new(),
            stuck: Vec::new(),
        });
    }
    for (h, s) in hosts.iter().zip(&staged) {
        on_event(Event::Staged {
            host: &h.name,
            bytes_sent: s.bytes_sent,
        });
    }
    on_event(Event::AllStaged { id: &id });
    let outcomes = switch_all(hosts, layouts, cfg, staged, &id, on_event)?;
    prune_all(hosts, layouts, cfg, outcomes, id)
}

/// Stages release `id` on every host at once (a thread per host).
fn stage_all(
    hosts: &mut [Host],
    layouts: &[Layout],
    files: &[SourceFile],
    cfg: &DeployConfig,
    plans: &[Plan],
    id: &str,
    progress: &(dyn Fn(u64) + Sync),
) -> Vec<Result<Staged, DeployError>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = hosts
            .iter_mut()
            .zip(layouts)
            .zip(plans)
            .map(|((h, l), p)| {
                scope.spawn(move || release::stage(h.remote.as_mut(), l, files, cfg, p, id, &mut |k| progress(k)))
            })
            .collect();
        handles
            .into_iter()
            .map(|t| {
                t.join().unwrap_or_else(|_| {
                    Err(DeployError::Remote {
                        what: "staging".into(),
                        source: crate::remote::RemoteError::new(
                            id,
                            crate::remote::RemoteErrorKind::Other,
                            "the upload thread panicked",
                        ),
                    })
                })
            })
            .collect()
    })
}

/// Removes release `id`'s staged folders (and partial uploads) where it never became current.
fn remove_staged(hosts: &mut [Host], layouts: &[Layout], id: &str) {
    for (h, l) in hosts.iter_mut().zip(layouts) {
        let current = release::current_id(h.remote.as_mut(), l).ok().flatten();
        if current.as_deref() != Some(id) {
            let partial = format!("{}/.partial-{id}", l.releases());
            let _ = h.remote.remove_all(&[l.release(id), partial]);
        }
    }
}

/// Switches every host in order; on the first failure switches the others back.
fn switch_all(
    hosts: &mut [Host],
    layouts: &[Layout],
    cfg: &DeployConfig,
    staged: Vec<Staged>,
    id: &str,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<Vec<Outcome>, FleetError> {
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(hosts.len());
    for (i, s) in staged.into_iter().enumerate() {
        let previous = s.previous.clone();
        match release::switch(hosts[i].remote.as_mut(), &layouts[i], cfg, s) {
            Ok(o) => {
                on_event(Event::Switched { host: &hosts[i].name });
                outcomes.push(o);
            }
            Err(error) => {
                let mut failed = FleetError {
                    id: Some(id.to_owned()),
                    failures: Vec::new(),
                    switched_back: Vec::new(),
                    stuck: Vec::new(),
                };
                // A failed health check has switched its host back already.
                let own = !matches!(error, DeployError::HealthCheck { .. });
                failed.failures.push(HostFailure {
                    host: hosts[i].name.clone(),
                    phase: Phase::Switch,
                    error,
                });
                let back: Vec<(usize, Option<String>)> = outcomes
                    .iter()
                    .enumerate()
                    .map(|(j, o)| (j, o.previous.clone()))
                    .chain(own.then_some((i, previous)))
                    .collect();
                revert(hosts, layouts, cfg, id, &back, &mut failed);
                remove_staged(hosts, layouts, id);
                return Err(failed);
            }
        }
    }
    Ok(outcomes)
}

/// Switches `back` (host index, previous release) back where they are on `id`.
fn revert(
    hosts: &mut [Host],
    layouts: &[Layout],
    cfg: &DeployConfig,
    id: &str,
    back: &[(usize, Option<String>)],
    failed: &mut FleetError,
) {
    let quick = DeployConfig {
        health_timeout: cfg.health_timeout.min(Duration::from_secs(30)),
        ..cfg.clone()
    };
    for (j, previous) in back {
        let (h, l) = (&mut hosts[*j], &layouts[*j]);
        match release::current_id(h.remote.as_mut(), l) {
            Ok(Some(c)) if c == id => {}
            Ok(_) => continue,
            Err(e) => {
                failed.stuck.push((h.name.clone(), e.to_string()));
                continue;
            }
        }
        match release::switch_back(
            h.remote.as_mut(),
            l,
            &quick,
            id,
            previous.as_deref(),
            RollbackReason::FleetHostFailed,
        ) {
            Ok(()) => failed.switched_back.push(h.name.clone()),
            Err(e) => failed.stuck.push((h.name.clone(), e.to_string())),
        }
    }
}

/// Prunes old releases on every host once all serve `id`.
fn prune_all(
    hosts: &mut [Host],
    layouts: &[Layout],
    cfg: &DeployConfig,
    outcomes: Vec<Outcome>,
    id: String,
) -> Result<FleetOutcome, FleetError> {
    let mut done = Vec::with_capacity(hosts.len());
    let mut failures = Vec::new();
    for ((h, l), mut o) in hosts.iter_mut().zip(layouts).zip(outcomes) {
        match release::prune(h.remote.as_mut(), l, cfg.keep_releases, &id) {
            Ok(p) => o.pruned = p,
            Err(error) => failures.push(HostFailure {
                host: h.name.clone(),
                phase: Phase::Prune,
                error,
            }),
        }
        done.push((h.name.clone(), o));
    }
    if !failures.is_empty() {
        return Err(FleetError {
            id: Some(id),
            failures,
            switched_back: Vec::new(),
            stuck: Vec::new(),
        });
    }
    Ok(FleetOutcome {
        id,
        unchanged: false,
        hosts: done,
    })
}

/// Every host already has this content current: log the attempt on each, send nothing.
fn unchanged(
    hosts: &mut [Host],
    layouts: &[Layout],
    files: &[SourceFile],
    cfg: &DeployConfig,
    plans: &[Plan],
) -> Result<FleetOutcome, FleetError> {
    let mut done = Vec::with_capacity(hosts.len());
    for ((h, l), p) in hosts.iter_mut().zip(layouts).zip(plans) {
        let current = p.previous.clone().unwrap_or_default();
        let o = release::unchanged(h.remote.as_mut(), l, cfg, &current, files.len())
            .map_err(|e| FleetError::one(&h.name, Phase::Plan, e))?;
        done.push((h.name.clone(), o));
    }
    Ok(FleetOutcome {
        id: done.first().map(|(_, o)| o.id.clone()).unwrap_or_default(),
        unchanged: true,
        hosts: done,
    })
}

/// Switches every host back to release `to` (default: the one before the hosts' current release,
/// which must then be the same everywhere), all or nothing: every host is checked to have the
/// release first, and if a switch fails the hosts already switched go back. Returns each host's
/// `(host, from, to)`.
pub fn rollback(
    hosts: &mut [Host],
    to: Option<&str>,
    cfg: &DeployConfig,
) -> Result<Vec<(String, Option<String>, String)>, FleetError> {
    let target = rollback_target(hosts, to)?;
    let mut done: Vec<(String, Option<String>, String)> = Vec::with_capacity(hosts.len());
    for i in 0..hosts.len() {
        let h = &mut hosts[i];
        match release::rollback(h.remote.as_mut(), &h.base, Some(&target), cfg) {
            Ok((from, to)) => done.push((h.name.clone(), from, to)),
            Err(error) => {
                let mut failed = FleetError::one(&h.name, Phase::Rollback, error);
                failed.id = Some(target.clone());
                for (j, (name, from, _)) in done.iter().enumerate() {
                    let back = from.as_deref();
                    match back.map(|b| release::rollback(hosts[j].remote.as_mut(), &hosts[j].base, Some(b), cfg)) {
                        Some(Ok(_)) => failed.switched_back.push(name.clone()),
                        Some(Err(e)) => failed.stuck.push((name.clone(), e.to_string())),
                        None => failed.stuck.push((name.clone(), "it had no release before".into())),
                    }
                }
                return Err(failed);
            }
        }
    }
    Ok(done)
}

/// The release a fleet's rollback switches to, checked on every host before anything moves:
/// `to`, or the one before the current release that every host must share; present everywhere.
fn rollback_target(hosts: &mut [Host], to: Option<&str>) -> Result<String, FleetError> {
    let mut listed = Vec::with_capacity(hosts.len());
    for h in hosts.iter_mut() {
        let releases =
            release::list(h.remote.as_mut(), &h.base).map_err(|e| FleetError::one(&h.name, Phase::Rollback, e))?;
        listed.push(releases);
    }
    let refused = |host: &str, why: DeployError| FleetError::one(host, Phase::Rollback, why);
    let current = |r: &[release::ReleaseInfo]| r.iter().find(|x| x.current).map(|x| x.id.clone());
    let target = match to {
        Some(t) => t.to_owned(),
        None => {
            let first = current(&listed[0]);
            if let Some((h, r)) = hosts.iter().zip(&listed).find(|(_, r)| current(r) != first) {
                let show = |c: Option<String>| c.unwrap_or_else(|| "none".into());
                let why = format!(
                    "the hosts are on different releases ({} here, {} on {}): give the release to switch to",
                    show(current(r)),
                    show(first.clone()),
                    hosts[0].name
                );
                return Err(refused(&h.name, DeployError::NothingToRollBack(why)));
            }
            let ids: Vec<&String> = listed[0].iter().map(|r| &r.id).collect();
            let at = ids.iter().position(|i| Some(*i) == first.as_ref()).unwrap_or(ids.len());
            let Some(before) = at.checked_sub(1).map(|p| ids[p].clone()) else {
                let why = DeployError::NothingToRollBack("no release before the current one".into());
                return Err(refused(&hosts[0].name, why));
            };
            before
        }
    };
    for (h, r) in hosts.iter().zip(&listed) {
        if !r.iter().any(|x| x.id == target) {
            let available = r.iter().map(|x| x.id.clone()).collect();
            return Err(refused(
                &h.name,
                DeployError::NoSuchRelease {
                    id: target.clone(),
                    available,
                },
            ));
        }
    }
    Ok(target)
}

/// Points `p.alias` at `p.release` on every host, all or nothing: every host is checked to have
/// the release before anything moves; if a host refuses (its lock held, a gate, the service not
/// following), the hosts already moved are pointed back (or the alias removed where it pointed to
/// nothing), each logged with why. Returns each host's `(host, from)`.
pub fn promote(
    hosts: &mut [Host],
    p: &Promotion<'_>,
    cfg: &DeployConfig,
) -> Result<Vec<(String, Option<String>)>, FleetError> {
    let mut before = Vec::with_capacity(hosts.len());
    for h in hosts.iter_mut() {
        let refused = |e| FleetError::one(&h.name, Phase::Promote, e);
        let ids = release::release_ids(h.remote.as_mut(), &Layout::of(&h.base)).map_err(refused)?;
        if !ids.iter().any(|i| i == p.release) {
            return Err(refused(DeployError::NoSuchRelease {
                id: p.release.to_owned(),
                available: ids,
            }));
        }
        let mut aliases = registry::aliases(h.remote.as_mut(), &h.base).map_err(refused)?;
        before.push(aliases.remove(p.alias).flatten());
    }
    let mut done: Vec<(String, Option<String>)> = Vec::with_capacity(hosts.len());
    for i in 0..hosts.len() {
        match registry::promote(hosts[i].remote.as_mut(), &hosts[i].base, p, cfg) {
            Ok(from) => done.push((hosts[i].name.clone(), from)),
            Err(error) => {
                let mut failed = FleetError::one(&hosts[i].name, Phase::Promote, error);
                failed.id = Some(p.release.to_owned());
                let why = format!("another host failed ({})", hosts[i].name);
                // The host that refused may have moved before it did (the service not
                // following its new production): it goes back too.
                let h = &mut hosts[i];
                let now = registry::aliases(h.remote.as_mut(), &h.base)
                    .ok()
                    .and_then(|mut a| a.remove(p.alias).flatten());
                let mut back = done.clone();
                if now.as_deref() == Some(p.release) && before[i].as_deref() != Some(p.release) {
                    back.push((h.name.clone(), before[i].clone()));
                }
                for (j, (name, from)) in back.iter().enumerate() {
                    let h = &mut hosts[j];
                    match registry::restore(h.remote.as_mut(), &h.base, p.alias, from.as_deref(), &why, cfg) {
                        Ok(()) => failed.switched_back.push(name.clone()),
                        Err(e) => failed.stuck.push((name.clone(), e.to_string())),
                    }
                }
                return Err(failed);
            }
        }
    }
    Ok(done)
}
