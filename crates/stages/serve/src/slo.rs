//! Service-level objectives and their burn rates, from the requests that do work (`infer`,
//! `measure`): per-minute counts of the last 24 hours, in memory. A request is bad for
//! availability when it is answered with a server error (5xx, a full queue's 503 included) and
//! bad for latency when it took longer than the objective's bound; client errors (4xx) count
//! for neither. The burn rate of a window is its bad share divided by the error budget
//! (`1 − target`): 1 spends the budget exactly over the SLO period, 14.4 over an hour is the
//! usual page (the Google SRE workbook's multiwindow alerts pair 1 h with 5 min, 6 h with 30 min).

use std::collections::VecDeque;
use std::sync::Mutex;

use cellops_formats::serve::Slo;
use serde::Serialize;

/// The windows burn rates are computed over, in seconds, and their names.
pub const WINDOWS: [(u64, &str); 5] = [
    (300, "5m"),
    (1800, "30m"),
    (3600, "1h"),
    (21_600, "6h"),
    (86_400, "24h"),
];

/// One minute's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Minute {
    minute: u64,
    total: u64,
    failed: u64,
    slow: u64,
}

/// The tracker.
#[derive(Debug)]
pub struct Tracker {
    slo: Slo,
    minutes: Mutex<VecDeque<Minute>>,
}

/// One objective over one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Burn {
    /// `availability` or `latency`.
    pub objective: &'static str,
    /// The window's name (`5m`, `1h`, …).
    pub window: &'static str,
    /// Requests counted.
    pub requests: u64,
    /// Bad ones.
    pub bad: u64,
    /// The bad share (none without requests).
    pub bad_ratio: Option<f64>,
    /// The burn rate (none without requests).
    pub burn_rate: Option<f64>,
}

impl Tracker {
    /// A tracker of `slo`.
    pub fn new(slo: Slo) -> Self {
        Self {
            slo,
            minutes: Mutex::new(VecDeque::new()),
        }
    }

    /// The objectives.
    pub fn slo(&self) -> Slo {
        self.slo
    }

    /// Counts one request answered at `at` (Unix seconds) with `status` after `seconds`.
    pub fn record(&self, at: u64, status: u16, seconds: f64) {
        if (400..500).contains(&status) {
            return;
        }
        let minute = at / 60;
        let mut minutes = self.minutes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if minutes.back().is_none_or(|m| m.minute < minute) {
            minutes.push_back(Minute {
                minute,
                ..Minute::default()
            });
        }
        // A clock that stepped back counts into the latest minute.
        if let Some(m) = minutes.back_mut() {
            m.total += 1;
            m.failed += u64::from(status >= 500);
            m.slow += u64::from(seconds > self.slo.latency_s);
        }
        let oldest = minute.saturating_sub(WINDOWS[WINDOWS.len() - 1].0 / 60);
        while minutes.front().is_some_and(|m| m.minute < oldest) {
            minutes.pop_front();
        }
    }

    /// Every objective's burn rate over every window, as of `now`.
    pub fn burn_rates(&self, now: u64) -> Vec<Burn> {
        let minutes = self.minutes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = Vec::new();
        for (objective, target) in [
            ("availability", self.slo.availability),
            ("latency", self.slo.latency_target),
        ] {
            for (secs, window) in WINDOWS {
                // Minutes whose start lies within the window (the current one included).
                let from = (now / 60).saturating_sub(secs / 60 - 1);
                let (mut requests, mut bad) = (0, 0);
                for m in minutes.iter().filter(|m| m.minute >= from) {
                    requests += m.total;
                    bad += if objective == "availability" { m.failed } else { m.slow };
                }
                let bad_ratio = (requests > 0).then(|| bad as f64 / requests as f64);
                out.push(Burn {
                    objective,
                    window,
                    requests,
                    bad,
                    bad_ratio,
                    burn_rate: bad_ratio.map(|r| r / (1.0 - target)),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burn_rates_divide_the_bad_share_by_the_budget() {
        let t = Tracker::new(Slo {
            availability: 0.99,
            latency_s: 1.0,
            latency_target: 0.9,
        });
        let now = 1_000_000 * 60;
        // Two hours ago: 10 failures of 10. In the last five minutes: 100 requests, 2 failed,
        // 20 slow, and client errors that count for nothing.
        for _ in 0..10 {
            t.record(now - 7200, 500, 0.1);
        }
        for k in 0..100 {
            t.record(now - 60, if k < 2 { 503 } else { 200 }, if k < 20 { 2.0 } else { 0.5 });
            t.record(now - 60, 413, 9.0);
        }
        let rates = t.burn_rates(now);
        let get = |o: &str, w: &str| rates.iter().find(|b| b.objective == o && b.window == w).expect("burn");
        let a = get("availability", "5m");
        assert_eq!((a.requests, a.bad), (100, 2));
        assert!((a.burn_rate.expect("rate") - 2.0).abs() < 1e-9);
        let l = get("latency", "5m");
        assert!((l.burn_rate.expect("rate") - 2.0).abs() < 1e-9, "{l:?}");
        let day = get("availability", "24h");
        assert_eq!((day.requests, day.bad), (110, 12));
        let empty = Tracker::new(Slo::default()).burn_rates(now);
        assert!(empty.iter().all(|b| b.burn_rate.is_none() && b.requests == 0));
    }
}
