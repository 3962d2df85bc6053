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

/// Upper bounds of the latency buckets, seconds: 1 ms doubling to 65.5 s (then one open bucket).
const LATENCY_BOUNDS: [f64; 17] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384, 32.768,
    65.536,
];

/// One minute's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Minute {
    minute: u64,
    total: u64,
    failed: u64,
    slow: u64,
    /// Requests per latency bucket ([`LATENCY_BOUNDS`], then one past the last bound).
    latency: [u64; LATENCY_BOUNDS.len() + 1],
}

/// Latency percentiles over one window (each the upper bound of the bucket it falls in: an
/// upper estimate, within a factor of 2).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    /// The window's name.
    pub window: &'static str,
    /// Requests counted.
    pub requests: u64,
    /// Median, seconds (none without requests; infinite past the last bucket).
    pub p50_s: Option<f64>,
    /// 95th percentile, seconds.
    pub p95_s: Option<f64>,
    /// 99th percentile, seconds.
    pub p99_s: Option<f64>,
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
            m.latency[LATENCY_BOUNDS.partition_point(|&b| b < seconds)] += 1;
        }
        let oldest = minute.saturating_sub(WINDOWS[WINDOWS.len() - 1].0 / 60);
        while minutes.front().is_some_and(|m| m.minute < oldest) {
            minutes.pop_front();
        }
    }

    /// Latency percentiles over every window, as of `now`.
    pub fn latencies(&self, now: u64) -> Vec<Latency> {
        let minutes = self.minutes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        WINDOWS
            .iter()
            .map(|&(secs, window)| {
                let from = (now / 60).saturating_sub(secs / 60 - 1);
                let mut counts = [0u64; LATENCY_BOUNDS.len() + 1];
                for m in minutes.iter().filter(|m| m.minute >= from) {
                    for (c, n) in counts.iter_mut().zip(m.latency) {
                        *c += n;
                    }
                }
                let requests: u64 = counts.iter().sum();
                let quantile = |q: f64| quantile(&counts, requests, q);
                Latency {
                    window,
                    requests,
                    p50_s: quantile(0.5),
                    p95_s: quantile(0.95),
                    p99_s: quantile(0.99),
                }
            })
            .collect()
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

/// The upper bound of the bucket holding the `q` quantile of `requests` counted in `counts`.
fn quantile(counts: &[u64], requests: u64, q: f64) -> Option<f64> {
    if requests == 0 {
        return None;
    }
    let rank = (q * requests as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (k, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(LATENCY_BOUNDS.get(k).copied().unwrap_or(f64::INFINITY));
        }
    }
    Some(f64::INFINITY)
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
        // Latency: 80 of the last five minutes' 100 took 0.5 s (bucket ≤ 0.512), 20 took 2 s
        // (≤ 2.048): the median is in the first bucket, p95 and p99 in the second.
        let five = t.latencies(now).into_iter().find(|l| l.window == "5m").expect("5m");
        assert_eq!((five.requests, five.p50_s, five.p95_s), (100, Some(0.512), Some(2.048)));
        assert_eq!(quantile(&[0, 0], 0, 0.5), None);
    }
}
