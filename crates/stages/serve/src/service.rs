//! The service's state: the live release, the one before it (kept loaded so that a rollback is
//! instant), reloads, and the phase readiness reports.
//!
//! A request takes the live release once, when it starts, and finishes on it whatever a reload
//! does meanwhile; a reload loads, checks and warms the new release off the request path and
//! swaps it in only when all of that passed. A release that fails is refused and the old one
//! keeps serving; readiness and `cellops_reload_failures_total` say why.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwapOption;
use cellops_formats::FileError;
use cellops_formats::serve::ServeLimits;
use cellops_unet::Device;
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

use crate::ServeError;
use crate::admission::Pool;
use crate::metrics::Metrics;
use crate::release::{Release, Verification};
use crate::watch::Watch;

/// What the service shares between its handlers, its signal handlers and its admin socket.
#[derive(Debug)]
pub struct Service {
    /// What `--release` named (usually the deploy's `current` link), followed at each reload.
    source: PathBuf,
    device: Device,
    verification: Verification,
    current: ArcSwapOption<Release>,
    previous: ArcSwapOption<Release>,
    reloading: tokio::sync::Mutex<()>,
    draining: AtomicBool,
    last_failure: ArcSwapOption<String>,
    events: Option<UnboundedSender<String>>,
    /// The limits (read at start; a reload does not change them).
    pub limits: ServeLimits,
    /// The metrics.
    pub metrics: Metrics,
    /// The inference pool.
    pub pool: Pool,
    /// The evidence for the Monitor stage: feature rows, drift, SLO burn rates.
    pub watch: Watch,
}

/// What a service works with besides its release: limits, metrics, the inference pool and the
/// Monitor's evidence.
#[derive(Debug)]
pub struct Parts {
    /// The limits.
    pub limits: ServeLimits,
    /// The metrics.
    pub metrics: Metrics,
    /// The inference pool.
    pub pool: Pool,
    /// The evidence.
    pub watch: Watch,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Reloaded {
    /// A new release was loaded, checked and swapped in.
    Loaded {
        /// Its id.
        release: String,
    },
    /// The release named was the one already served.
    Unchanged {
        /// Its id.
        release: String,
    },
    /// The release named was the previous one, still loaded: swapped back at once.
    Restored {
        /// Its id.
        release: String,
    },
}

/// A loaded model in the readiness body.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    /// The bundle id.
    pub version: String,
    /// The golden check at load: `passed`, or `absent` for a bundle recorded without one.
    pub golden: &'static str,
    /// Its largest probability difference from the recorded output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub golden_max_abs_diff: Option<f32>,
    /// Its foreground IoU with the recorded output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub golden_iou: Option<f64>,
}

impl ModelStatus {
    fn of(m: &crate::release::Model) -> Self {
        Self {
            version: m.version.clone(),
            golden: if m.golden.is_some() { "passed" } else { "absent" },
            golden_max_abs_diff: m.golden.map(|g| g.max_abs_diff),
            golden_iou: m.golden.map(|g| g.iou),
        }
    }
}

/// Whether the service can answer, and why not.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// Ready to measure.
    pub ready: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The release served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Whether its files were checked against `deploy.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// The models, by name.
    pub models: std::collections::BTreeMap<String, ModelStatus>,
    /// The release kept loaded for an instant rollback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Why the last reload was refused, until another release is served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reload_error: Option<String>,
}

impl Service {
    /// A service of the release at `source` with nothing loaded yet (not ready); `events`
    /// receives a line for each reload.
    pub fn new(
        source: &Path,
        device: Device,
        verification: Verification,
        parts: Parts,
        events: Option<UnboundedSender<String>>,
    ) -> Self {
        let Parts {
            limits,
            metrics,
            pool,
            watch,
        } = parts;
        Self {
            source: source.to_owned(),
            device,
            verification,
            current: ArcSwapOption::empty(),
            previous: ArcSwapOption::empty(),
            reloading: tokio::sync::Mutex::new(()),
            draining: AtomicBool::new(false),
            last_failure: ArcSwapOption::empty(),
            events,
            limits,
            metrics,
            pool,
            watch,
        }
    }

    /// The live release, if one is loaded.
    pub fn current(&self) -> Option<Arc<Release>> {
        self.current.load_full()
    }

    /// The release before it, still loaded.
    pub fn previous(&self) -> Option<Arc<Release>> {
        self.previous.load_full()
    }

    /// Readiness goes 503 from now on (SIGTERM: drain, then exit).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether the service can answer, and why not.
    pub fn readiness(&self) -> Readiness {
        let current = self.current();
        let last = self.last_failure.load_full().map(|s| (*s).clone());
        let reason = if self.draining.load(Ordering::Acquire) {
            Some("shutting down: draining in-flight requests".to_owned())
        } else if current.is_none() {
            Some(
                last.clone()
                    .unwrap_or_else(|| format!("loading {}", self.source.display())),
            )
        } else {
            None
        };
        Readiness {
            ready: reason.is_none(),
            reason,
            release: current.as_ref().map(|r| r.id.clone()),
            verified: current.as_ref().map(|r| r.verified),
            models: current
                .iter()
                .flat_map(|r| r.models().map(|m| (m.name.clone(), ModelStatus::of(m))))
                .collect(),
            previous: self.previous().map(|r| r.id.clone()),
            last_reload_error: last.filter(|_| current.is_some()),
        }
    }

    /// Follows the source (the `current` link) and serves what it names: nothing to do when it
    /// is served already, an instant swap when it is the previous release, else a load, check
    /// and swap off the request path. A failure leaves the live release serving.
    pub async fn reload(self: &Arc<Self>) -> Result<Reloaded, ServeError> {
        let _one_at_a_time = self.reloading.lock().await;
        let result = self.reload_locked().await;
        match &result {
            Ok(r) => {
                // A refusal stays visible until another release is served.
                if !matches!(r, Reloaded::Unchanged { .. }) {
                    self.last_failure.store(None);
                }
                self.event(format!("reload: {}", reload_line(r)));
            }
            Err(why) => {
                self.metrics.reload_failures.inc();
                self.last_failure.store(Some(Arc::new(why.to_string())));
                let now = self
                    .current()
                    .map_or_else(|| "nothing".to_owned(), |r| format!("release {}", r.id));
                self.event(format!("reload refused, still serving {now}: {why}"));
            }
        }
        result
    }

    async fn reload_locked(self: &Arc<Self>) -> Result<Reloaded, ServeError> {
        let target = self
            .source
            .canonicalize()
            .map_err(|e| FileError::new(&self.source, format!("cannot open the release: {e}")))?;
        let current = self.current();
        if let Some(c) = current.as_ref().filter(|c| c.dir == target) {
            return Ok(Reloaded::Unchanged { release: c.id.clone() });
        }
        if let Some(p) = self.previous().filter(|p| p.dir == target) {
            self.swap_in(Arc::clone(&p));
            return Ok(Reloaded::Restored { release: p.id.clone() });
        }
        let (device, verification) = (self.device.clone(), self.verification);
        let loaded = tokio::task::spawn_blocking(move || Release::load(&target, &device, verification))
            .await
            .map_err(|e| crate::io("loading the release")(std::io::Error::other(e)))??;
        let id = loaded.id.clone();
        self.swap_in(Arc::new(loaded));
        Ok(Reloaded::Loaded { release: id })
    }

    /// Makes `release` the live one; the live one becomes the previous.
    fn swap_in(&self, release: Arc<Release>) {
        self.metrics.set_models(&release);
        let old = self.current.swap(Some(release));
        if old.is_some() {
            self.previous.store(old);
        }
    }

    /// The path it serves from (the `current` link).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Sends a line to whoever reports the service's events.
    pub(crate) fn event(&self, line: String) {
        if let Some(tx) = &self.events {
            let _ = tx.send(line);
        }
    }
}

fn reload_line(r: &Reloaded) -> String {
    match r {
        Reloaded::Loaded { release } => format!("now serving release {release}"),
        Reloaded::Unchanged { release } => format!("release {release} is already served"),
        Reloaded::Restored { release } => format!("back to release {release} (kept loaded)"),
    }
}
