//! Alerts where the team already looks: one GitHub issue per alert kind (`monitor-<kind>`
//! marker, `cellops-monitor` label), opened when the kind alerts, commented when what alerts
//! changes, closed when it recovers (`cellops_github::Client::sync_alert_issue`).

use cellops_github::{Alert, Client, GithubError, IssueOutcome};

use crate::checks::{Finding, KINDS, Severity};
use crate::report::Report;

/// The label of every alert issue.
pub const LABEL: &str = "cellops-monitor";

/// Brings every kind's issue in step with `report` (the open issues listed once); what was done
/// for each kind.
pub fn sync(
    report: &Report,
    client: &Client,
    owner: &str,
    repo: &str,
) -> Result<Vec<(&'static str, IssueOutcome)>, GithubError> {
    /// One kind's issue, as it should read.
    struct Kind {
        marker: String,
        title: String,
        body: String,
        fingerprint: String,
        alerting: bool,
    }
    let kinds: Vec<Kind> = KINDS
        .iter()
        .map(|kind| {
            let alerting: Vec<&Finding> = report
                .findings
                .iter()
                .filter(|f| f.check == *kind && f.severity == Severity::Alert)
                .collect();
            Kind {
                marker: format!("monitor-{kind}"),
                title: format!("CellOps monitor: {kind} alert ({})", report.target),
                body: body(report, kind, &alerting),
                fingerprint: fingerprint(kind, &alerting),
                alerting: !alerting.is_empty(),
            }
        })
        .collect();
    let alerts: Vec<Option<Alert<'_>>> = kinds
        .iter()
        .map(|k| {
            k.alerting.then_some(Alert {
                title: &k.title,
                body: &k.body,
                fingerprint: &k.fingerprint,
                labels: &[LABEL],
            })
        })
        .collect();
    let pairs: Vec<(&str, Option<&Alert<'_>>)> = kinds
        .iter()
        .zip(&alerts)
        .map(|(k, a)| (k.marker.as_str(), a.as_ref()))
        .collect();
    let done = client.sync_alert_issues(owner, repo, &pairs)?;
    Ok(KINDS.into_iter().zip(done).collect())
}

/// What identifies the alert's state: the kind and what it is about (for drift, also the
/// features: a new drifted feature is news; a score that moves is not).
fn fingerprint(kind: &str, alerting: &[&Finding]) -> String {
    let mut parts: Vec<String> = alerting
        .iter()
        .map(|f| {
            let about = f.subject.clone().unwrap_or_default();
            if kind == "drift" {
                format!("{about}={}", f.message)
            } else {
                about
            }
        })
        .collect();
    parts.sort();
    let mut text = format!("{kind}:{}", parts.join(";"));
    text.retain(|c| c.is_ascii_alphanumeric() || " :;=,._".contains(c));
    text
}

/// The issue's text: the failing checks, the release and models, what to do, every finding.
fn body(report: &Report, kind: &str, alerting: &[&Finding]) -> String {
    let mut md = format!(
        "### `{kind}` alerts on {}\n\nLast checked {} · release `{}`",
        report.target,
        report.time,
        report.current.as_deref().unwrap_or("none")
    );
    for (name, id) in &report.models {
        md.push_str(&format!(" · model `{name}` (bundle `{id}`)"));
    }
    md.push_str("\n\n| about | finding | what to do |\n|---|---|---|\n");
    for f in alerting {
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            f.subject.as_deref().unwrap_or(""),
            f.message.replace('|', "\\|"),
            f.action.as_deref().unwrap_or("").replace('|', "\\|")
        ));
    }
    if let Some(to) = &report.rollback_to
        && matches!(kind, "release" | "golden" | "error_rate" | "latency" | "burn_rate")
    {
        md.push_str(&format!(
            "\nTo go back: `cellops deploy-cell-params rollback --to {to}` (or the deploy workflow's rollback).\n"
        ));
    }
    md.push_str("\n<details><summary>Every check of this run</summary>\n\n");
    md.push_str(&report.markdown());
    md.push_str("\n</details>\n");
    md
}
