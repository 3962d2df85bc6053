//! Alert issues against the mock's in-memory issue tracker: one issue per marker, opened on
//! alert, left alone while the alert is the same, commented and brought up to date when it
//! changes, commented and closed on recovery; another marker's issue is another issue.

use std::time::Duration;

use cellops_github::{Alert, Client, IssueAction, RetryPolicy};
use cellops_test_support::github::MockGithub;

fn client(api: &MockGithub) -> Client {
    Client::new("ghs_t0kenFORtests", Some(&api.uri()))
        .expect("client")
        .with_retry_policy(RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(10),
            max_total_wait: Duration::from_secs(2),
        })
}

fn alert<'a>(body: &'a str, fingerprint: &'a str) -> Alert<'a> {
    Alert {
        title: "CellOps monitor: disk alert",
        body,
        fingerprint,
        labels: &["cellops-monitor"],
    }
}

#[test]
fn an_alert_issue_opens_follows_changes_and_closes() {
    let api = MockGithub::start();
    let tracker = api.serve_issues("lab/nuclei");
    let c = client(&api);
    let sync = |a: Option<&Alert<'_>>| c.sync_alert_issue("lab", "nuclei", "monitor-disk", a).expect("sync");

    assert_eq!(sync(None).action, IssueAction::Quiet);
    let opened = sync(Some(&alert("4.0 % free", "disk:alert")));
    assert_eq!((opened.action, opened.number), (IssueAction::Opened, Some(1)));
    // The same alert, other figures: nothing new to say.
    assert_eq!(
        sync(Some(&alert("3.9 % free", "disk:alert"))).action,
        IssueAction::Unchanged
    );
    let changed = sync(Some(&alert("free disk unknown", "disk:warn")));
    assert_eq!((changed.action, changed.number), (IssueAction::Commented, Some(1)));
    // Another kind is another issue.
    let other = c
        .sync_alert_issue("lab", "nuclei", "monitor-live", Some(&alert("down", "live")))
        .expect("sync");
    assert_eq!(other.number, Some(2));
    assert_eq!(sync(None).action, IssueAction::Closed);
    assert_eq!(sync(None).action, IssueAction::Quiet, "a closed issue stays closed");

    let issues = tracker.issues();
    let disk = &issues[0];
    assert_eq!(
        (disk.state.as_str(), disk.labels.as_slice()),
        ("closed", &["cellops-monitor".to_owned()][..])
    );
    assert!(disk.body.contains("<!-- cellops:monitor-disk -->") && disk.body.contains("free disk unknown"));
    assert_eq!(disk.comments.len(), 2, "{:?}", disk.comments);
    assert!(disk.comments[1].starts_with("Recovered"));
    assert_eq!(issues[1].state, "open");
    // A new alert after recovery opens a new issue.
    assert_eq!(sync(Some(&alert("1 % free", "disk:alert"))).number, Some(3));
}
