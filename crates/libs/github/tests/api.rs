//! The client against a local mock of the GitHub REST API (wiremock on 127.0.0.1): pagination,
//! the sticky comment, retries and the errors a stage must tell apart.

use std::time::{Duration, Instant};

use cellops_github::{ChangedFile, Client, CommentAction, GithubError, RetryPolicy, is_read_only};
use cellops_test_support::github::MockGithub;
use serde_json::json;
use wiremock::matchers::{body_string_contains, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, ResponseTemplate};

const TOKEN: &str = "ghs_t0kenFORtests";

/// The mock GitHub API, and a client for it with quick retries.
fn client(api: &MockGithub) -> Client {
    Client::new(TOKEN, Some(&api.uri()))
        .expect("client")
        .with_retry_policy(RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(20),
            max_total_wait: Duration::from_secs(5),
        })
}

fn file(name: &str) -> serde_json::Value {
    json!({"sha": "abc", "filename": name, "status": "modified", "additions": 1, "deletions": 0, "changes": 1})
}

fn comment(id: u64, body: &str, login: &str, kind: &str) -> serde_json::Value {
    json!({
        "id": id,
        "body": body,
        "html_url": format!("https://github.com/o/r/pull/7#issuecomment-{id}"),
        "user": {"login": login, "type": kind},
        "created_at": "2025-01-01T00:00:00Z"
    })
}

#[test]
fn changed_files_follow_link_pagination_across_three_pages() {
    let api = MockGithub::start();
    let base = format!("{}/repos/o/r/pulls/7/files", api.uri());
    let link = |next: u32| {
        format!("<{base}?per_page=100&page={next}>; rel=\"next\", <{base}?per_page=100&page=3>; rel=\"last\"")
    };
    api.mount(
        Mock::given(method("GET"))
            .and(path("/repos/o/r/pulls/7/files"))
            .and(query_param_is_missing("page"))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("link", link(2).as_str())
                    .set_body_json(json!([file("cell-params/he.yaml"), file("README.md")])),
            )
            .expect(1),
    );
    api.mount(
        Mock::given(method("GET"))
            .and(path("/repos/o/r/pulls/7/files"))
            .and(query_param("page", "2"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("link", link(3).as_str())
                    .set_body_json(json!([
                        file("src/a.rs"),
                        {"filename": "cell-params/ki67.yaml", "status": "renamed",
                         "previous_filename": "cell-params/ki-67.yaml", "additions": 0, "deletions": 0, "changes": 0}
                    ])),
            )
            .expect(1),
    );
    api.mount(
        Mock::given(method("GET"))
            .and(path("/repos/o/r/pulls/7/files"))
            .and(query_param("page", "3"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([file("cell-params/dapi.yaml")])))
            .expect(1),
    );
    let files = client(&api).changed_files("o", "r", 7).expect("files");
    let names: Vec<&str> = files.iter().map(|f| f.filename.as_str()).collect();
    assert_eq!(
        names,
        [
            "cell-params/he.yaml",
            "README.md",
            "src/a.rs",
            "cell-params/ki67.yaml",
            "cell-params/dapi.yaml"
        ]
    );
    assert_eq!(
        files[3],
        ChangedFile {
            filename: "cell-params/ki67.yaml".into(),
            status: "renamed".into(),
            previous_filename: Some("cell-params/ki-67.yaml".into()),
        }
    );
    api.verify();
}

#[test]
fn a_pagination_link_off_the_api_host_is_not_followed() {
    let api = MockGithub::start();
    api.mount(
        Mock::given(method("GET"))
            .and(path("/repos/o/r/pulls/7/files"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("link", "<http://192.0.2.1/steal?page=2>; rel=\"next\"")
                    .set_body_json(json!([file("a")])),
            ),
    );
    let err = client(&api).changed_files("o", "r", 7).expect_err("foreign link");
    assert!(matches!(err, GithubError::Pagination { .. }), "{err}");
    assert!(err.to_string().contains("not on the API host"), "{err}");
}

fn mount_comment_pages(api: &MockGithub, page1: serde_json::Value, page2: serde_json::Value) {
    let base = format!("{}/repos/o/r/issues/7/comments", api.uri());
    api.mount(
        Mock::given(method("GET"))
            .and(path("/repos/o/r/issues/7/comments"))
            .and(query_param_is_missing("page"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("link", format!("<{base}?per_page=100&page=2>; rel=\"next\"").as_str())
                    .set_body_json(page1),
            ),
    );
    api.mount(
        Mock::given(method("GET"))
            .and(path("/repos/o/r/issues/7/comments"))
            .and(query_param("page", "2"))
            .respond_with(ResponseTemplate::new(200).set_body_json(page2)),
    );
}

#[test]
fn the_marked_comment_on_page_two_is_updated_in_place() {
    let api = MockGithub::start();
    mount_comment_pages(
        &api,
        json!([comment(1, "LGTM", "alice", "User"), comment(2, "nice", "bob", "User")]),
        json!([
            comment(3, "more", "alice", "User"),
            comment(
                42,
                "<!-- cellops:cell-params-report -->\nold report",
                "github-actions[bot]",
                "Bot"
            )
        ]),
    );
    api.mount(
        Mock::given(method("PATCH"))
            .and(path("/repos/o/r/issues/comments/42"))
            .and(body_string_contains(
                "<!-- cellops:cell-params-report -->\\n## new report",
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(comment(42, "x", "github-actions[bot]", "Bot")))
            .expect(1),
    );
    api.mount(
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201))
            .expect(0),
    );
    let out = client(&api)
        .upsert_sticky_comment("o", "r", 7, "cell-params-report", "## new report")
        .expect("upsert");
    assert_eq!(out.action, CommentAction::Updated);
    assert_eq!(out.id, 42);
    assert_eq!(out.html_url, "https://github.com/o/r/pull/7#issuecomment-42");
    api.verify();
}

#[test]
fn without_a_marked_comment_one_is_created() {
    let api = MockGithub::start();
    mount_comment_pages(
        &api,
        json!([comment(
            1,
            "<!-- cellops:other-report -->\nnot ours",
            "github-actions[bot]",
            "Bot"
        )]),
        json!([comment(2, "LGTM", "alice", "User")]),
    );
    api.mount(
        Mock::given(method("POST"))
            .and(path("/repos/o/r/issues/7/comments"))
            .and(body_string_contains("<!-- cellops:cell-params-report -->"))
            .respond_with(ResponseTemplate::new(201).set_body_json(comment(77, "x", "github-actions[bot]", "Bot")))
            .expect(1),
    );
    api.mount(
        Mock::given(method("PATCH"))
            .respond_with(ResponseTemplate::new(200))
            .expect(0),
    );
    let out = client(&api)
        .upsert_sticky_comment("o", "r", 7, "cell-params-report", "report")
        .expect("upsert");
    assert_eq!((out.action, out.id), (CommentAction::Created, 77));
    api.verify();
}

#[test]
fn of_several_marked_comments_the_token_users_is_updated() {
    let api = MockGithub::start();
    let marked = "<!-- cellops:cell-params-report -->\nreport";
    mount_comment_pages(
        &api,
        json!([comment(10, marked, "cellops-bot", "User")]),
        // A later comment that quotes the marker, by someone else.
        json!([comment(11, &format!("> {marked}"), "mallory", "User")]),
    );
    api.mount(
        Mock::given(method("GET"))
            .and(path("/user"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"login": "cellops-bot", "type": "User"}))),
    );
    api.mount(
        Mock::given(method("PATCH"))
            .and(path("/repos/o/r/issues/comments/10"))
            .respond_with(ResponseTemplate::new(200).set_body_json(comment(10, "x", "cellops-bot", "User")))
            .expect(1),
    );
    let out = client(&api)
        .upsert_sticky_comment("o", "r", 7, "cell-params-report", "report")
        .expect("upsert");
    assert_eq!((out.action, out.id), (CommentAction::Updated, 10));
    api.verify();
}

#[test]
fn a_bad_marker_is_refused_before_any_request() {
    let api = MockGithub::start();
    let err = client(&api)
        .upsert_sticky_comment("o", "r", 7, "x --> <script>", "b")
        .expect_err("marker");
    assert!(matches!(err, GithubError::InvalidMarker(_)), "{err}");
    assert!(api.requests().is_empty());
}

#[test]
fn a_502_is_retried_then_succeeds() {
    let api = MockGithub::start();
    api.mount(
        Mock::given(method("GET"))
            .and(path("/repos/o/r/pulls/7/files"))
            .respond_with(ResponseTemplate::new(502).set_body_string("Bad Gateway"))
            .up_to_n_times(1),
    );
    api.mount(
        Mock::given(method("GET"))
            .and(path("/repos/o/r/pulls/7/files"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([file("cell-params/he.yaml")]))),
    );
    let files = client(&api).changed_files("o", "r", 7).expect("retried");
    assert_eq!(files.len(), 1);
    assert_eq!(api.requests().len(), 2);
}

#[test]
fn a_create_that_failed_with_a_5xx_looks_again_before_posting_again() {
    let api = MockGithub::start();
    mount_comment_pages(&api, json!([]), json!([]));
    api.mount(
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(502))
            .up_to_n_times(1),
    );
    api.mount(
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(201).set_body_json(comment(
            8,
            "x",
            "github-actions[bot]",
            "Bot",
        ))),
    );
    let out = client(&api)
        .upsert_sticky_comment("o", "r", 7, "cell-params-report", "report")
        .expect("upsert");
    assert_eq!((out.action, out.id), (CommentAction::Created, 8));
    let reqs = api.requests();
    let methods: Vec<String> = reqs.iter().map(|r| r.method.to_string()).collect();
    // List (2 pages), POST 502, list again (2 pages), POST.
    assert_eq!(methods, ["GET", "GET", "POST", "GET", "GET", "POST"]);
}

#[test]
fn persistent_server_errors_give_up_after_the_policy() {
    let api = MockGithub::start();
    api.mount(
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(503).set_body_json(json!({"message": "Service Unavailable"}))),
    );
    let err = client(&api).changed_files("o", "r", 7).expect_err("gives up");
    assert!(
        matches!(
            err,
            GithubError::Server {
                status: 503,
                attempts: 3,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(api.requests().len(), 3);
}

#[test]
fn a_429_with_retry_after_waits_and_retries() {
    let api = MockGithub::start();
    api.mount(
        Mock::given(method("GET"))
            .and(path("/repos/o/r/pulls/7/files"))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("retry-after", "1")
                    .set_body_json(json!({"message": "You have exceeded a secondary rate limit"})),
            )
            .up_to_n_times(1),
    );
    api.mount(
        Mock::given(method("GET"))
            .and(path("/repos/o/r/pulls/7/files"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([file("x")]))),
    );
    let start = Instant::now();
    let files = client(&api).changed_files("o", "r", 7).expect("retried");
    assert_eq!(files.len(), 1);
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        start.elapsed()
    );
    assert_eq!(api.requests().len(), 2);
}

#[test]
fn a_rate_limit_longer_than_the_policy_allows_fails_at_once() {
    let api = MockGithub::start();
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    api.mount(
        Mock::given(method("GET")).respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .set_body_json(json!({"message": "API rate limit exceeded"})),
        ),
    );
    let err = client(&api).changed_files("o", "r", 7).expect_err("rate limited");
    match &err {
        GithubError::RateLimited {
            status: 403,
            wait: Some(w),
            ..
        } => {
            assert!(*w > Duration::from_secs(3000), "{w:?}");
        }
        other => panic!("expected a rate limit, got {other}"),
    }
    assert!(!is_read_only(&err));
    assert_eq!(api.requests().len(), 1, "no pointless retries");
}

#[test]
fn a_401_is_a_clear_error_and_not_retried() {
    let api = MockGithub::start();
    api.mount(
        Mock::given(method("GET")).respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "message": "Bad credentials",
            "documentation_url": "https://docs.github.com/rest"
        }))),
    );
    let err = client(&api).changed_files("o", "r", 7).expect_err("401");
    assert!(matches!(err, GithubError::Unauthorized { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("Bad credentials") && text.contains("token"), "{text}");
    assert!(!text.contains(TOKEN), "the token is never in a message");
    assert_eq!(api.requests().len(), 1);
}

#[test]
fn a_fork_read_only_token_is_told_apart() {
    let api = MockGithub::start();
    mount_comment_pages(&api, json!([]), json!([]));
    api.mount(
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "message": "Resource not accessible by integration",
            "documentation_url": "https://docs.github.com/rest/issues/comments#create-an-issue-comment"
        }))),
    );
    let err = client(&api)
        .upsert_sticky_comment("o", "r", 7, "cell-params-report", "report")
        .expect_err("read-only");
    assert!(is_read_only(&err), "{err}");
    assert!(err.to_string().contains("read-only"), "{err}");
}

#[test]
fn not_found_and_validation_errors_say_what_failed() {
    let api = MockGithub::start();
    api.mount(
        Mock::given(method("GET"))
            .and(path("/repos/o/r/pulls/9/files"))
            .respond_with(ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"}))),
    );
    let err = client(&api).changed_files("o", "r", 9).expect_err("404");
    assert!(matches!(err, GithubError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("o/r#9"), "{err}");

    mount_comment_pages(&api, json!([]), json!([]));
    api.mount(
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "message": "Validation Failed",
            "errors": [{"resource": "IssueComment", "code": "custom", "field": "body",
                        "message": "Body is too long (maximum is 65536 characters)"}]
        }))),
    );
    let err = client(&api)
        .upsert_sticky_comment("o", "r", 7, "cell-params-report", "report")
        .expect_err("422");
    assert!(matches!(err, GithubError::Validation { .. }), "{err}");
    assert!(err.to_string().contains("Body is too long"), "{err}");
}

#[test]
fn bad_api_urls_are_refused() {
    for url in ["ftp://x", "api.github.com", "https://"] {
        assert!(
            matches!(Client::new(TOKEN, Some(url)), Err(GithubError::InvalidApiUrl { .. })),
            "{url}"
        );
    }
}
