//! What the service tells the Monitor stage: the evidence it keeps ([`crate::evidence`]), drift
//! against each model's reference ([`crate::drift`]) and SLO burn rates ([`crate::slo`]), as one
//! JSON report (`GET /v2/monitor`) and as gauges in `/metrics`. Drift is recomputed only when new
//! rows arrived, the release changed or the last judgement is older than [`REFRESH_SECS`] (the
//! window slides with time), so scrapes stay cheap.

use std::sync::Mutex;

use cellops_formats::serve::{MonitorSettings, Slo};
use serde::Serialize;

use crate::drift::{self, Subject, TypeDrift};
use crate::evidence::{self, Counts, Evidence, Row};
use crate::release::Release;
use crate::shadow::{Agreement, TypeAgreement};
use crate::slo::{Burn, Latency, Tracker};

/// A judgement older than this is recomputed even without new rows.
pub const REFRESH_SECS: u64 = 60;

/// The report of `GET /v2/monitor`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// When it was computed (RFC 3339, UTC).
    pub computed_at: String,
    /// The release judged.
    pub release: String,
    /// The drift window, in hours.
    pub window_hours: f64,
    /// Images a window needs before it is judged.
    pub min_window: usize,
    /// Whether rows are kept on disk (a restart keeps them) or only in memory.
    pub persisted: bool,
    /// How complete the evidence is.
    pub evidence: Counts,
    /// Each image type's drift.
    pub drift: Vec<TypeDrift>,
    /// The objectives.
    pub slo: SloReport,
    /// The shadow model's agreement with the model that answers, when the release has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowReport>,
}

/// The shadow model and its agreement per image type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowReport {
    /// Its model name.
    pub model: String,
    /// Its bundle id.
    pub version: String,
    /// The share of measured images it runs on.
    pub share: f64,
    /// Per image type.
    pub types: Vec<TypeAgreement>,
}

/// The objectives and their burn rates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloReport {
    /// Share of work requests without a server error.
    pub availability: f64,
    /// The latency bound, seconds.
    pub latency_s: f64,
    /// Share of work requests within the bound.
    pub latency_target: f64,
    /// Burn rates per objective and window.
    pub burn_rates: Vec<Burn>,
    /// Latency percentiles per window.
    pub latency: Vec<Latency>,
}

/// A drift judgement and what it was computed from.
#[derive(Debug, Clone)]
struct Judged {
    generation: u64,
    release: String,
    at: u64,
    drift: Vec<TypeDrift>,
}

/// The evidence, the SLO tracker and the last drift judgement.
#[derive(Debug)]
pub struct Watch {
    /// The rows.
    pub evidence: Evidence,
    /// The objectives' counts.
    pub slo: Tracker,
    /// The shadow model's agreement.
    pub shadow: Agreement,
    judged: Mutex<Option<Judged>>,
}

impl Watch {
    /// A watch over `evidence` with `slo`.
    pub fn new(evidence: Evidence, slo: Slo) -> Self {
        Self {
            evidence,
            slo: Tracker::new(slo),
            shadow: Agreement::default(),
            judged: Mutex::new(None),
        }
    }

    /// The settings rows are kept and judged under.
    pub fn settings(&self) -> &MonitorSettings {
        self.evidence.settings()
    }

    /// Keeps one measured image's row.
    pub fn keep(&self, row: Row) {
        self.evidence.push(row);
    }

    /// The report on `release` as of `now` (CPU work: call it off the async threads).
    pub fn report(&self, release: &Release, now: u64) -> Report {
        let settings = self.evidence.settings();
        let slo = self.slo.slo();
        Report {
            computed_at: cellops_formats::release::rfc3339(now),
            release: release.id.clone(),
            window_hours: settings.window_hours,
            min_window: settings.min_window,
            persisted: self.evidence.dir().is_some(),
            evidence: self.evidence.counts(now),
            drift: self.drift(release, now),
            slo: SloReport {
                availability: slo.availability,
                latency_s: slo.latency_s,
                latency_target: slo.latency_target,
                burn_rates: self.slo.burn_rates(now),
                latency: self.slo.latencies(now),
            },
            shadow: release.shadow.as_ref().map(|s| ShadowReport {
                model: s.model.clone(),
                version: s.version.clone(),
                share: s.share,
                types: self.shadow.of(&s.version),
            }),
        }
    }

    /// Each image type's drift, from the cache when it is still good.
    fn drift(&self, release: &Release, now: u64) -> Vec<TypeDrift> {
        let mut judged = self.judged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (rows, generation) = self.evidence.window(now);
        if let Some(j) = judged.as_ref()
            && j.generation == generation
            && j.release == release.id
            && now.saturating_sub(j.at) < REFRESH_SECS
        {
            return j.drift.clone();
        }
        let subjects: Vec<Subject<'_>> = release
            .types()
            .into_iter()
            .filter_map(|name| {
                let t = release.image_type(name)?;
                let model = release.model(&t.model)?;
                Some(Subject {
                    image_type: name,
                    model: &model.version,
                    reference: model.reference.as_deref(),
                })
            })
            .collect();
        let drift = drift::judge_all(&subjects, &rows, self.settings().min_window);
        *judged = Some(Judged {
            generation,
            release: release.id.clone(),
            at: now,
            drift: drift.clone(),
        });
        drift
    }
}

/// Now, in Unix seconds.
pub fn now() -> u64 {
    evidence::now()
}
