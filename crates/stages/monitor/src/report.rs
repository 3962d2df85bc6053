//! The report of a run: JSON (written atomically beside the working files), Markdown for the
//! step summary, an annotation per warning and alert, and the stage's outputs.

use std::path::Path;

use cellops_actions::{ActionsError, Annotation, Level, Runner};
use serde::Serialize;

use crate::checks::{Finding, Severity};

/// A run's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The deploy target checked (no credentials: they are flags of their own).
    pub target: String,
    /// When (UTC, RFC 3339).
    pub time: String,
    /// The worst severity: `ok` (also for info), `warn` or `alert`.
    #[serde(serialize_with = "status")]
    pub status: Severity,
    /// The release `current` points to.
    pub current: Option<String>,
    /// The release a rollback would switch to.
    pub rollback_to: Option<String>,
    /// The models served, by name: their bundle ids.
    pub models: std::collections::BTreeMap<String, String>,
    /// Every finding, worst first.
    pub findings: Vec<Finding>,
}

fn status<S: serde::Serializer>(s: &Severity, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(status_name(*s))
}

/// The name of a run's status: info counts as ok.
pub fn status_name(worst: Severity) -> &'static str {
    match worst {
        Severity::Ok | Severity::Info => "ok",
        Severity::Warn => "warn",
        Severity::Alert => "alert",
    }
}

impl Report {
    /// The report of `findings` (sorted worst first, then by check).
    pub fn new(
        target: &str,
        now: u64,
        (current, rollback_to): (Option<String>, Option<String>),
        models: std::collections::BTreeMap<String, String>,
        mut findings: Vec<Finding>,
    ) -> Self {
        findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.check.cmp(b.check)));
        let status = findings.iter().map(|f| f.severity).max().unwrap_or(Severity::Ok);
        Self {
            target: target.to_owned(),
            time: cellops_formats::release::rfc3339(now),
            status,
            current,
            rollback_to,
            models,
            findings,
        }
    }

    /// The kinds that alerted, without repeats, in report order.
    pub fn alerts(&self) -> Vec<&'static str> {
        let mut kinds: Vec<&'static str> = Vec::new();
        for f in self.findings.iter().filter(|f| f.severity == Severity::Alert) {
            if !kinds.contains(&f.check) {
                kinds.push(f.check);
            }
        }
        kinds
    }

    /// One line for the end of the run.
    pub fn headline(&self) -> String {
        match self.status {
            Severity::Alert => format!("monitor: ALERT ({})", self.alerts().join(", ")),
            Severity::Warn => format!(
                "monitor: warnings ({} findings to look at)",
                self.findings.iter().filter(|f| f.severity == Severity::Warn).count()
            ),
            _ => format!("monitor: ok ({} checks)", self.findings.len()),
        }
    }

    /// The report as Markdown: a headline and one table row per finding.
    pub fn markdown(&self) -> String {
        let icon = |s: Severity| match s {
            Severity::Ok => "✅",
            Severity::Info => "ℹ️",
            Severity::Warn => "⚠️",
            Severity::Alert => "🚨",
        };
        let mut md = format!(
            "## CellOps monitor: {}\n\n{} · release `{}` · {}\n\n| | check | about | finding | what to do |\n|---|---|---|---|---|\n",
            status_name(self.status),
            self.time,
            self.current.as_deref().unwrap_or("none"),
            self.target
        );
        for f in &self.findings {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                icon(f.severity),
                f.check,
                f.subject.as_deref().unwrap_or(""),
                cell(&f.message),
                cell(f.action.as_deref().unwrap_or(""))
            ));
        }
        md
    }

    /// Writes the JSON report to `path` (beside it first, then renamed: never half-written).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        write_json(self, path)
    }

    /// An annotation per warning and alert (naming the target when `fleet`), and the report in
    /// the step summary.
    pub fn publish_findings(&self, runner: &Runner, fleet: bool) -> Result<(), ActionsError> {
        let on = if fleet {
            format!(" on {}", self.target)
        } else {
            String::new()
        };
        for f in self.findings.iter().filter(|f| f.severity >= Severity::Warn) {
            let level = if f.severity == Severity::Alert {
                Level::Error
            } else {
                Level::Warning
            };
            let title = match &f.subject {
                Some(s) => format!("monitor: {} ({s}){on}", f.check),
                None => format!("monitor: {}{on}", f.check),
            };
            runner.annotate(&Annotation::new(level, f.message.clone()).title(&title))?;
        }
        runner.append_summary(&self.markdown())
    }
}

/// Writes `value` as pretty JSON to `path` (beside it first, then renamed: never half-written).
fn write_json<T: Serialize>(value: &T, path: &Path) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial = path.with_file_name(format!(".{name}.partial"));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}

/// What one run found: a report per target (one, or every host of a fleet).
#[derive(Debug, Clone)]
pub struct Checked {
    /// The reports, in the targets' order.
    pub reports: Vec<Report>,
}

/// The JSON report of a fleet: the worst status and every host's report.
#[derive(Serialize)]
struct FleetReport<'a> {
    #[serde(serialize_with = "status")]
    status: Severity,
    time: &'a str,
    hosts: &'a [Report],
}

impl Checked {
    /// The worst status over the targets.
    pub fn status(&self) -> Severity {
        self.reports.iter().map(|r| r.status).max().unwrap_or(Severity::Ok)
    }

    /// The alert kinds over the targets, without repeats.
    pub fn alerts(&self) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        for k in self.reports.iter().flat_map(Report::alerts) {
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        kinds
    }

    /// The line that ends the run.
    pub fn headline(&self) -> String {
        match self.reports.as_slice() {
            [one] => one.headline(),
            many => {
                let hosts: Vec<String> = many
                    .iter()
                    .map(|r| format!("{} {}", r.target, status_name(r.status)))
                    .collect();
                format!(
                    "monitor: {} over {} hosts ({})",
                    status_name(self.status()),
                    many.len(),
                    hosts.join(", ")
                )
            }
        }
    }

    /// Writes the JSON report: one target's report as it is, a fleet's as
    /// `{"status", "time", "hosts": [...]}`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        match self.reports.as_slice() {
            [one] => one.write(path),
            many => write_json(
                &FleetReport {
                    status: self.status(),
                    time: many.first().map_or("", |r| r.time.as_str()),
                    hosts: many,
                },
                path,
            ),
        }
    }

    /// The step summary, an annotation per warning and alert, and the outputs.
    pub fn publish(&self, runner: &Runner, path: &Path) -> Result<(), ActionsError> {
        let fleet = self.reports.len() > 1;
        for r in &self.reports {
            r.publish_findings(runner, fleet)?;
        }
        runner.set_output("status", status_name(self.status()))?;
        runner.set_output("alerts", &self.alerts().join(","))?;
        runner.set_output("report", &path.display().to_string())
    }
}

/// Text for a Markdown table cell: pipes escaped, one line.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
