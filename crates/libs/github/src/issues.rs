//! Alert issues: one open issue per alert kind, found again by a hidden marker (as the sticky
//! comment is), so that an alert that lasts for days is one issue, not one a run. Opened on
//! alert; while it lasts, commented (and its body brought up to date) only when what is failing
//! changes, as a caller-given fingerprint of it says; commented and closed on recovery.

use serde::{Deserialize, Serialize};

use crate::{Client, GithubError, marker_line};

/// An alert to keep an issue open for.
#[derive(Debug, Clone, Copy)]
pub struct Alert<'a> {
    /// The issue's title.
    pub title: &'a str,
    /// The issue's text (Markdown): what fails, the figures, what to do.
    pub body: &'a str,
    /// What identifies this state of the alert (e.g. the failing checks, sorted): a new
    /// fingerprint is a change worth a comment; the same one is not (times and figures that move
    /// every run stay out of it).
    pub fingerprint: &'a str,
    /// Labels of a new issue.
    pub labels: &'a [&'a str],
}

/// What [`Client::sync_alert_issue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueAction {
    /// A new issue was opened.
    Opened,
    /// The open issue got a comment: the alert changed.
    Commented,
    /// The open issue already says this.
    Unchanged,
    /// The open issue was commented and closed: the alert is over.
    Closed,
    /// No alert and no open issue: nothing to do.
    Quiet,
}

/// What was done, and to which issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueOutcome {
    /// What was done.
    pub action: IssueAction,
    /// The issue's number (none when quiet).
    pub number: Option<u64>,
    /// Its web address.
    pub html_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawIssue {
    number: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    html_url: String,
    /// Present on pull requests, which the issues list also returns.
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct NewIssue<'a> {
    title: &'a str,
    body: String,
    labels: &'a [&'a str],
}

/// The hidden line that carries an alert's fingerprint.
fn fingerprint_line(fingerprint: &str) -> String {
    let safe: String = fingerprint
        .chars()
        .map(|c| if c == '-' || c == '>' || c.is_control() { '_' } else { c })
        .collect();
    format!("<!-- cellops-fingerprint:{safe} -->")
}

impl Client {
    /// Keeps the alert issue marked `marker` in `owner/repo` in step with `alert`: opens one for a
    /// new alert, comments when its fingerprint changes, closes it with a comment when `alert` is
    /// `None`; the oldest open marked issue is the one kept.
    pub fn sync_alert_issue(
        &self,
        owner: &str,
        repo: &str,
        marker: &str,
        alert: Option<&Alert<'_>>,
    ) -> Result<IssueOutcome, GithubError> {
        let mut done = self.sync_alert_issues(owner, repo, &[(marker, alert)])?;
        Ok(done.remove(0))
    }

    /// [`Client::sync_alert_issue`] for several markers, listing the open issues once.
    pub fn sync_alert_issues(
        &self,
        owner: &str,
        repo: &str,
        alerts: &[(&str, Option<&Alert<'_>>)],
    ) -> Result<Vec<IssueOutcome>, GithubError> {
        for (marker, _) in alerts {
            crate::check_marker(marker)?;
        }
        self.block_on(async {
            let open = self.open_issues(owner, repo).await?;
            let mut done = Vec::with_capacity(alerts.len());
            for (marker, alert) in alerts {
                let line = marker_line(marker);
                let issue = open
                    .iter()
                    .filter(|i| i.body.as_deref().is_some_and(|b| b.contains(&line)))
                    .min_by_key(|i| i.number);
                done.push(self.sync_one(owner, repo, &line, *alert, issue).await?);
            }
            Ok(done)
        })
    }

    /// One marker's issue brought in step with its alert.
    async fn sync_one(
        &self,
        owner: &str,
        repo: &str,
        line: &str,
        alert: Option<&Alert<'_>>,
        open: Option<&RawIssue>,
    ) -> Result<IssueOutcome, GithubError> {
        match (alert, open) {
            (None, None) => Ok(IssueOutcome {
                action: IssueAction::Quiet,
                number: None,
                html_url: None,
            }),
            (Some(a), None) => {
                let new = NewIssue {
                    title: a.title,
                    body: format!("{line}\n{}\n{}", fingerprint_line(a.fingerprint), a.body),
                    labels: a.labels,
                };
                let what = format!("opening an issue in {owner}/{repo}");
                let issues = format!("/repos/{owner}/{repo}/issues");
                let created: RawIssue = self
                    .with_retries(&what, false, || self.crab.post(issues.as_str(), Some(&new)))
                    .await?;
                Ok(outcome(IssueAction::Opened, &created))
            }
            (Some(a), Some(issue)) => {
                let fingerprint = fingerprint_line(a.fingerprint);
                if issue.body.as_deref().is_some_and(|b| b.contains(&fingerprint)) {
                    return Ok(outcome(IssueAction::Unchanged, issue));
                }
                self.comment(owner, repo, issue.number, a.body).await?;
                let body = format!("{line}\n{fingerprint}\n{}", a.body);
                self.patch_issue(owner, repo, issue.number, &serde_json::json!({ "body": body }))
                    .await?;
                Ok(outcome(IssueAction::Commented, issue))
            }
            (None, Some(issue)) => {
                let note = "Recovered: this check passes again. Closed by `cellops monitor`.";
                self.comment(owner, repo, issue.number, note).await?;
                let closed = serde_json::json!({ "state": "closed", "state_reason": "completed" });
                self.patch_issue(owner, repo, issue.number, &closed).await?;
                Ok(outcome(IssueAction::Closed, issue))
            }
        }
    }

    /// The open issues (not pull requests) of `owner/repo`.
    async fn open_issues(&self, owner: &str, repo: &str) -> Result<Vec<RawIssue>, GithubError> {
        let what = format!("listing the open issues of {owner}/{repo}");
        let first = format!("/repos/{owner}/{repo}/issues?state=open&per_page=100");
        let all: Vec<RawIssue> = self.all_pages(&what, first).await?;
        Ok(all.into_iter().filter(|i| i.pull_request.is_none()).collect())
    }

    async fn comment(&self, owner: &str, repo: &str, number: u64, body: &str) -> Result<(), GithubError> {
        let what = format!("commenting on {owner}/{repo}#{number}");
        let route = format!("/repos/{owner}/{repo}/issues/{number}/comments");
        let payload = crate::serde_json_body(body);
        let _: serde_json::Value = self
            .with_retries(&what, false, || self.crab.post(route.as_str(), Some(&payload)))
            .await?;
        Ok(())
    }

    async fn patch_issue(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        payload: &serde_json::Value,
    ) -> Result<(), GithubError> {
        let what = format!("updating {owner}/{repo}#{number}");
        let route = format!("/repos/{owner}/{repo}/issues/{number}");
        let _: serde_json::Value = self
            .with_retries(&what, true, || self.crab.patch(route.as_str(), Some(payload)))
            .await?;
        Ok(())
    }
}

fn outcome(action: IssueAction, issue: &RawIssue) -> IssueOutcome {
    IssueOutcome {
        action,
        number: Some(issue.number),
        html_url: Some(issue.html_url.clone()),
    }
}
