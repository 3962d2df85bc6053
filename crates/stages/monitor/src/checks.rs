//! The checks: facts ([`crate::collect`]) judged against `monitor.yaml`. Each gives findings of a
//! kind (`live`, `ready`, `release`, `golden`, `error_rate`, `latency`, `burn_rate`, `drift`,
//! `disk`, `dead_man`, `evidence`), a severity and, where there is one, what to do.

use cellops_formats::monitor::MonitorConfig;
use serde::Serialize;
use serde_json::Value;

use crate::collect::{Answer, Droplet, Service};

/// Every kind of check, in report order (one alert issue each).
pub const KINDS: [&str; 12] = [
    "live",
    "ready",
    "release",
    "golden",
    "error_rate",
    "latency",
    "burn_rate",
    "drift",
    "shadow",
    "disk",
    "dead_man",
    "evidence",
];

/// How bad a finding is, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// As it should be.
    Ok,
    /// Worth knowing, nothing wrong (not enough data, a first run).
    Info,
    /// Something to look at.
    Warn,
    /// Something to act on now.
    Alert,
}

impl Severity {
    /// Its name in reports and outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Alert => "alert",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The check's kind.
    pub check: &'static str,
    /// What it is about (a model, an image type), when not the whole service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// How bad.
    pub severity: Severity,
    /// What was found.
    pub message: String,
    /// What to do, when it is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

fn finding(check: &'static str, severity: Severity, message: impl Into<String>) -> Finding {
    Finding {
        check,
        subject: None,
        severity,
        message: message.into(),
        action: None,
    }
}

/// What the checks read besides the facts.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The settings.
    pub config: &'a MonitorConfig,
    /// Now (Unix seconds).
    pub now: u64,
    /// The release to roll back to (the one before the current in the log), when known.
    pub rollback_to: Option<&'a str>,
}

/// The finding of a droplet that cannot be reached at all.
pub fn unreachable(why: &str) -> Finding {
    let mut f = finding("live", Severity::Alert, why);
    f.subject = Some("droplet".into());
    f.action = Some("check the droplet in DigitalOcean's console (power, network, firewall, SSH key)".into());
    f
}

/// Every check's findings.
pub fn judge(droplet: &Droplet, service: &Service, cx: Context<'_>) -> Vec<Finding> {
    let mut out = vec![live(&service.live), ready(&service.ready)];
    out.push(release(droplet, &service.ready, cx));
    out.extend(golden(&service.golden, cx));
    match &service.monitor {
        Ok((200, report)) => {
            out.extend(slo(report, cx.config));
            out.extend(drift(report));
            out.extend(shadow(report, cx.config));
            out.extend(evidence(report));
        }
        Ok((status, body)) => out.push(finding(
            "drift",
            Severity::Warn,
            format!("the service's monitor report answered {status}: {}", reason(body)),
        )),
        Err(e) => out.push(finding("drift", Severity::Warn, format!("no monitor report: {e}"))),
    }
    out.push(disk(&droplet.disk, cx.config));
    out.push(dead_man(&droplet.heartbeat, cx));
    out
}

fn reason(body: &Value) -> String {
    body["error"]
        .as_str()
        .or_else(|| body["reason"].as_str())
        .unwrap_or("no reason given")
        .to_owned()
}

fn live(answer: &Answer) -> Finding {
    match answer {
        Ok((200, _)) => finding("live", Severity::Ok, "the service answers"),
        Ok((status, _)) => finding("live", Severity::Alert, format!("liveness answered {status}")),
        Err(e) => finding("live", Severity::Alert, format!("the service is down: {e}")),
    }
}

fn ready(answer: &Answer) -> Finding {
    match answer {
        Ok((200, _)) => finding("ready", Severity::Ok, "the service is ready"),
        Ok((status, body)) => finding(
            "ready",
            Severity::Alert,
            format!("not ready ({status}): {}", reason(body)),
        ),
        Err(e) => finding("ready", Severity::Alert, format!("no readiness answer: {e}")),
    }
}

/// The served release, `current` and the log's last production move must be one release.
fn release(droplet: &Droplet, ready: &Answer, cx: Context<'_>) -> Finding {
    let served = ready
        .as_ref()
        .ok()
        .and_then(|(_, b)| b["release"].as_str().map(str::to_owned));
    let current = match &droplet.current {
        Ok(c) => c.clone(),
        Err(e) => return finding("release", Severity::Warn, format!("cannot read `current`: {e}")),
    };
    let logged = match &droplet.last_move {
        Ok(m) => m.as_ref().and_then(|(r, _)| r.clone()),
        Err(e) => return finding("release", Severity::Warn, e.clone()),
    };
    let name = |r: &Option<String>| r.clone().unwrap_or_else(|| "none".into());
    if served.is_some() && served == current && current == logged {
        return finding("release", Severity::Ok, format!("serving {}", name(&served)));
    }
    let mut f = finding(
        "release",
        Severity::Alert,
        format!(
            "the service serves {}, `current` is {}, the log's last move made {} current",
            name(&served),
            name(&current),
            name(&logged)
        ),
    );
    f.action = Some(match cx.rollback_to {
        Some(to) if served.is_some() => format!(
            "see why the service did not follow (readiness, journalctl -u cellops-serve); roll back to {to} if the new release is at fault"
        ),
        _ => "see why the service did not follow (readiness, journalctl -u cellops-serve)".into(),
    });
    f
}

fn golden(answers: &[(String, Answer)], cx: Context<'_>) -> Vec<Finding> {
    answers
        .iter()
        .map(|(model, answer)| {
            let mut f = match answer {
                Ok((200, b)) if b["passed"] == true => finding(
                    "golden",
                    Severity::Ok,
                    format!("golden check {}", b["golden"].as_str().unwrap_or("passed")),
                ),
                Ok((200, b)) => {
                    let mut f = finding("golden", Severity::Alert, format!("golden check failed: {}", reason(b)));
                    f.action = cx
                        .rollback_to
                        .map(|to| format!("the model no longer gives what it gave when bundled: roll back to {to}"));
                    f
                }
                Ok((status, b)) => finding(
                    "golden",
                    Severity::Warn,
                    format!("golden check not run ({status}): {}", reason(b)),
                ),
                Err(e) => finding("golden", Severity::Warn, format!("golden check not run: {e}")),
            };
            f.subject = Some(model.clone());
            f
        })
        .collect()
}

/// Error rate and p95 latency over the configured window, and multiwindow burn-rate alerts.
fn slo(report: &Value, config: &MonitorConfig) -> Vec<Finding> {
    let t = &config.slo;
    let window = |list: &str, objective: Option<&str>, w: &str| -> Value {
        report["slo"][list]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|b| b["window"] == w && objective.is_none_or(|o| b["objective"] == o))
            })
            .cloned()
            .unwrap_or(Value::Null)
    };
    let availability = window("burn_rates", Some("availability"), &t.window);
    let requests = availability["requests"].as_u64().unwrap_or(0);
    if requests < t.min_requests {
        return vec![finding(
            "error_rate",
            Severity::Info,
            format!(
                "{requests} requests in the last {}: under min_requests ({}), not judged",
                t.window, t.min_requests
            ),
        )];
    }
    let mut out = Vec::new();
    let rate = availability["bad_ratio"].as_f64().unwrap_or(0.0);
    let severity = if rate > t.error_rate {
        Severity::Alert
    } else {
        Severity::Ok
    };
    out.push(finding(
        "error_rate",
        severity,
        format!(
            "{:.2} % of {requests} requests failed in the last {} (objective ≤ {:.2} %)",
            100.0 * rate,
            t.window,
            100.0 * t.error_rate
        ),
    ));
    let p95 = window("latency", None, &t.window)["p95_s"].as_f64();
    let severity = if p95.is_some_and(|p| p > t.p95_latency_s) {
        Severity::Alert
    } else {
        Severity::Ok
    };
    out.push(finding(
        "latency",
        severity,
        format!(
            "p95 latency ≤ {} s in the last {} (objective ≤ {} s)",
            p95.map_or_else(|| "?".into(), |p| format!("{p}")),
            t.window,
            t.p95_latency_s
        ),
    ));
    out.extend(burn(report));
    out
}

/// The SRE workbook's multiwindow burn-rate alerts: 14.4 over 1 h and 5 min (alert), 6 over 6 h
/// and 30 min (warn).
fn burn(report: &Value) -> Vec<Finding> {
    let rate = |objective: &str, w: &str| -> f64 {
        report["slo"]["burn_rates"]
            .as_array()
            .and_then(|a| a.iter().find(|b| b["objective"] == objective && b["window"] == w))
            .and_then(|b| b["burn_rate"].as_f64())
            .unwrap_or(0.0)
    };
    let mut out = Vec::new();
    for objective in ["availability", "latency"] {
        let (fast, slow) = (
            (rate(objective, "1h"), rate(objective, "5m")),
            (rate(objective, "6h"), rate(objective, "30m")),
        );
        let (severity, what) = if fast.0 >= 14.4 && fast.1 >= 14.4 {
            (
                Severity::Alert,
                format!(
                    "burning the {objective} budget {:.1}× over 1 h (and {:.1}× over 5 min)",
                    fast.0, fast.1
                ),
            )
        } else if slow.0 >= 6.0 && slow.1 >= 6.0 {
            (
                Severity::Warn,
                format!(
                    "burning the {objective} budget {:.1}× over 6 h (and {:.1}× over 30 min)",
                    slow.0, slow.1
                ),
            )
        } else {
            continue;
        };
        let mut f = finding("burn_rate", severity, what);
        f.subject = Some(objective.to_owned());
        out.push(f);
    }
    out
}

/// Each image type's drift verdict from the service.
fn drift(report: &Value) -> Vec<Finding> {
    let types = report["drift"].as_array().cloned().unwrap_or_default();
    types
        .iter()
        .map(|t| {
            let name = t["image_type"].as_str().unwrap_or("?").to_owned();
            let drifted: Vec<&str> = t["drifted"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let images = t["window_images"].as_u64().unwrap_or(0);
            let (severity, message) = match t["status"].as_str().unwrap_or("") {
                "alert" => (
                    Severity::Alert,
                    format!("drifted from the model's reference: {}", drifted.join(", ")),
                ),
                "warn" => (Severity::Warn, format!("drifting: {}", drifted.join(", "))),
                "no_drift" => (Severity::Ok, format!("no drift over {images} images")),
                "not_enough_data" => (
                    Severity::Info,
                    format!("not enough data: {images} images in the window"),
                ),
                "no_reference" => (
                    Severity::Info,
                    "the model has no reference profile to compare with".to_owned(),
                ),
                other => (Severity::Warn, format!("unknown drift status `{other}`")),
            };
            let mut f = finding("drift", severity, message);
            if severity >= Severity::Warn {
                f.action = Some(format!(
                    "look at recent `{name}` images; if the lab's images changed for good, retrain with recent images"
                ));
            }
            f.subject = Some(name);
            f
        })
        .collect()
}

/// The shadow model's agreement with the served one, per image type.
fn shadow(report: &Value, config: &MonitorConfig) -> Vec<Finding> {
    let Some(s) = report.get("shadow").filter(|s| s.is_object()) else {
        return Vec::new();
    };
    let model = s["model"].as_str().unwrap_or("?");
    s["types"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let compared = t["compared"].as_u64().unwrap_or(0);
            let (severity, message) = match t["mean_dice"].as_f64() {
                None => (Severity::Info, format!("shadow `{model}`: nothing compared yet")),
                Some(d) => {
                    let text = format!(
                        "shadow `{model}` over {compared} images: mean Dice {d:.3}, nuclei {:+.1}, mean area {:+.1} px",
                        t["mean_count_difference"].as_f64().unwrap_or(0.0),
                        t["mean_area_difference_px"].as_f64().unwrap_or(0.0)
                    );
                    let severity = if d < config.shadow_min_dice {
                        Severity::Warn
                    } else {
                        Severity::Info
                    };
                    (severity, text)
                }
            };
            let mut f = finding("shadow", severity, message);
            f.subject = t["image_type"].as_str().map(str::to_owned);
            f
        })
        .collect()
}

/// Whether the service keeps all its evidence.
fn evidence(report: &Value) -> Option<Finding> {
    let e = &report["evidence"];
    let errors = e["write_errors"].as_u64().unwrap_or(0);
    let dropped = e["dropped_today"].as_u64().unwrap_or(0);
    if errors > 0 {
        Some(finding(
            "evidence",
            Severity::Warn,
            format!("{errors} feature rows could not be written to the state folder"),
        ))
    } else if dropped > 0 {
        Some(finding(
            "evidence",
            Severity::Info,
            format!("{dropped} images today past max_rows_per_day were not kept"),
        ))
    } else if report["persisted"] == false {
        Some(finding(
            "evidence",
            Severity::Info,
            "the service keeps its evidence in memory only (no --state-dir)",
        ))
    } else {
        None
    }
}

fn disk(disk: &Result<(u64, u64), String>, config: &MonitorConfig) -> Finding {
    let (free, total) = match disk {
        Ok(d) => *d,
        Err(e) => return finding("disk", Severity::Warn, format!("free disk unknown: {e}")),
    };
    let percent = 100.0 * free as f64 / total.max(1) as f64;
    let limits = config.disk;
    let severity = if percent < limits.alert_below_percent {
        Severity::Alert
    } else if percent < limits.warn_below_percent {
        Severity::Warn
    } else {
        Severity::Ok
    };
    let mut f = finding(
        "disk",
        severity,
        format!(
            "{percent:.1} % free ({:.1} GiB of {:.1} GiB)",
            free as f64 / 1073741824.0,
            total as f64 / 1073741824.0
        ),
    );
    if severity >= Severity::Warn {
        f.action =
            Some("free space on the droplet: fewer kept releases (keep-releases), old logs, a larger volume".into());
    }
    f
}

fn dead_man(heartbeat: &Result<Option<cellops_formats::monitor::Heartbeat>, String>, cx: Context<'_>) -> Finding {
    match heartbeat {
        Err(e) => finding(
            "dead_man",
            Severity::Warn,
            format!("the last run's heartbeat cannot be read: {e}"),
        ),
        Ok(None) => finding("dead_man", Severity::Info, "no earlier monitor run on record"),
        Ok(Some(h)) => {
            let hours = cx.now.saturating_sub(h.at) as f64 / 3600.0;
            if hours > cx.config.dead_man_hours {
                let mut f = finding(
                    "dead_man",
                    Severity::Alert,
                    format!(
                        "the monitor was silent for {hours:.1} h (last run {}; limit {} h): alerts may have been missed",
                        h.time, cx.config.dead_man_hours
                    ),
                );
                f.action = Some("check that the monitor workflow is enabled and its schedule runs".into());
                f
            } else {
                finding(
                    "dead_man",
                    Severity::Ok,
                    format!("last run {} ({hours:.1} h ago)", h.time),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shadow_that_disagrees_warns() {
        let report = |dice: f64| {
            serde_json::json!({"shadow": {"model": "candidate", "types": [
                {"image_type": "dapi", "compared": 12, "mean_dice": dice, "mean_count_difference": 1.5, "mean_area_difference_px": -3.0}
            ]}})
        };
        let config = MonitorConfig::default();
        let close = shadow(&report(0.95), &config);
        assert_eq!((close.len(), close[0].severity), (1, Severity::Info));
        let far = shadow(&report(0.5), &config);
        assert_eq!(far[0].severity, Severity::Warn);
        assert_eq!(far[0].subject.as_deref(), Some("dapi"));
        assert!(
            far[0].message.contains("mean Dice 0.500, nuclei +1.5"),
            "{}",
            far[0].message
        );
        assert!(
            shadow(&serde_json::json!({}), &config).is_empty(),
            "no shadow, no finding"
        );
    }
}
