//! The one place CellOps talks to the GitHub REST API (through `octocrab`).
//!
//! A [`Client`] is synchronous: it owns a single-threaded Tokio runtime and blocks on each call, so
//! that the stage binaries stay plain, synchronous programs. (Do not call it from inside an async
//! runtime.) It offers what the pull-request report needs:
//!
//! - [`Client::changed_files`]: the files a pull request changes, following the `Link` header's
//!   pages (GitHub lists at most 3000 files);
//! - [`Client::upsert_sticky_comment`]: one comment per pull request that is found again by a
//!   hidden marker (`<!-- cellops:<marker> -->`) and updated in place on every run;
//! - [`Client::sync_alert_issue`]: one issue per alert kind, found by a marker the same way:
//!   opened on alert, commented when the alert changes, closed on recovery.
//!
//! Server errors (5xx) and rate limits (403/429 with `Retry-After`, or `x-ratelimit-remaining: 0`
//! with `x-ratelimit-reset`) are retried with exponential backoff within a [`RetryPolicy`]; other
//! failures become a [`GithubError`] that says what went wrong and what to check. A read-only
//! token (pull requests from forks) is told apart with [`is_read_only`].

mod issues;

pub use issues::{Alert, IssueAction, IssueOutcome};

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use octocrab::{Octocrab, Page};
use serde::Deserialize;

/// How many pages are followed at most (100 items a page), a guard against a server that never
/// stops paginating.
const MAX_PAGES: usize = 500;

/// The message GitHub gives when a token lacks a permission (e.g. a fork's read-only
/// `GITHUB_TOKEN` trying to comment).
const READ_ONLY_MESSAGE: &str = "resource not accessible by integration";

/// Errors of the GitHub client.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    /// The API base URL cannot be used.
    #[error("invalid GitHub API URL `{url}`: {message}")]
    InvalidApiUrl {
        /// The URL as given.
        url: String,
        /// Why it cannot be used.
        message: String,
    },
    /// The async runtime or the HTTP client could not be set up.
    #[error("cannot set up the GitHub client: {0}")]
    Setup(String),
    /// The sticky-comment marker cannot be embedded in an HTML comment.
    #[error("invalid comment marker `{0}`: use letters, digits, '.', '_' and '-'")]
    InvalidMarker(String),
    /// 401: the token is missing, malformed, expired or revoked.
    #[error(
        "{what}: GitHub rejected the token (401 {message}); check the token input (secrets.GITHUB_TOKEN or a valid personal access token)"
    )]
    Unauthorized {
        /// The operation.
        what: String,
        /// GitHub's message.
        message: String,
    },
    /// 403 "Resource not accessible by integration": the token may read but not write (the
    /// read-only `GITHUB_TOKEN` of a pull request from a fork, or missing `permissions:`).
    #[error(
        "{what}: the token is read-only here (403 {message}); pull requests from forks get a read-only GITHUB_TOKEN, otherwise grant `permissions: pull-requests: write`"
    )]
    ReadOnly {
        /// The operation.
        what: String,
        /// GitHub's message.
        message: String,
    },
    /// 403 for another reason (not a rate limit).
    #[error("{what}: forbidden (403 {message})")]
    Forbidden {
        /// The operation.
        what: String,
        /// GitHub's message.
        message: String,
    },
    /// 404: the repository, pull request or comment does not exist, or the token cannot see it.
    #[error(
        "{what}: not found (404 {message}); check the repository and pull-request number, and that the token can access the repository"
    )]
    NotFound {
        /// The operation.
        what: String,
        /// GitHub's message.
        message: String,
    },
    /// 422: GitHub refused the request's content.
    #[error("{what}: GitHub refused the request (422 {message}){}", details(.errors))]
    Validation {
        /// The operation.
        what: String,
        /// GitHub's message.
        message: String,
        /// The individual validation errors GitHub listed.
        errors: Vec<String>,
    },
    /// Still rate limited after the retries, or the wait GitHub asked for exceeds the policy.
    #[error("{what}: rate limited by GitHub ({status} {message}){}", wait_hint(.wait))]
    RateLimited {
        /// The operation.
        what: String,
        /// 403 or 429.
        status: u16,
        /// GitHub's message.
        message: String,
        /// How long GitHub asked to wait, when it said so.
        wait: Option<Duration>,
    },
    /// A server error (5xx) that persisted through the retries.
    #[error("{what}: GitHub server error ({status} {message}) after {attempts} attempt(s)")]
    Server {
        /// The operation.
        what: String,
        /// The status code.
        status: u16,
        /// GitHub's message.
        message: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// Another unexpected HTTP status.
    #[error("{what}: unexpected response {status} ({message})")]
    Status {
        /// The operation.
        what: String,
        /// The status code.
        status: u16,
        /// GitHub's message.
        message: String,
    },
    /// The request did not get an HTTP response (DNS, connection, TLS, timeout).
    #[error("{what}: cannot reach the GitHub API: {message}")]
    Transport {
        /// The operation.
        what: String,
        /// The underlying error.
        message: String,
    },
    /// The response was not what the API documents.
    #[error("{what}: unexpected response from GitHub: {message}")]
    Decode {
        /// The operation.
        what: String,
        /// What could not be read.
        message: String,
    },
    /// A pagination link pointed away from the API host (the token is never sent elsewhere), or
    /// pagination did not end.
    #[error("{what}: {message}")]
    Pagination {
        /// The operation.
        what: String,
        /// What was wrong.
        message: String,
    },
}

fn details(errors: &[String]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!(": {}", errors.join("; "))
    }
}

fn wait_hint(wait: &Option<Duration>) -> String {
    match wait {
        Some(w) => format!("; GitHub asked to wait {}s", w.as_secs()),
        None => String::new(),
    }
}

/// Whether `err` is the 403 a read-only token gets when it tries to write (a pull request from a
/// fork with its read-only `GITHUB_TOKEN`): then a stage may fall back to the step summary.
pub fn is_read_only(err: &GithubError) -> bool {
    matches!(err, GithubError::ReadOnly { .. })
}

/// How failed requests are retried: server errors (5xx) and rate limits only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The backoff before the first retry of a server error; doubled before each later one.
    pub base_delay: Duration,
    /// The most time spent waiting in all for one operation. A rate limit that asks for a longer
    /// wait than is left fails at once ([`GithubError::RateLimited`]).
    pub max_total_wait: Duration,
}

impl Default for RetryPolicy {
    /// Three attempts, 2 s then 4 s of backoff, at most 90 s of waiting in all.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_secs(2),
            max_total_wait: Duration::from_secs(90),
        }
    }
}

/// A changed file of a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedFile {
    /// The path in the pull request's head.
    pub filename: String,
    /// GitHub's status: `added`, `removed`, `modified`, `renamed`, `copied`, `changed`, `unchanged`.
    pub status: String,
    /// The path before a rename (or copy).
    pub previous_filename: Option<String>,
}

/// Whether a sticky comment was created or an existing one updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentAction {
    /// No comment had the marker: a new one was posted.
    Created,
    /// The comment with the marker was edited in place.
    Updated,
}

impl CommentAction {
    /// `created` or `updated`.
    pub fn as_str(self) -> &'static str {
        match self {
            CommentAction::Created => "created",
            CommentAction::Updated => "updated",
        }
    }
}

/// What [`Client::upsert_sticky_comment`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentOutcome {
    /// Created or updated.
    pub action: CommentAction,
    /// The comment's id.
    pub id: u64,
    /// The comment's web address.
    pub html_url: String,
}

/// A marker must fit in an HTML comment: letters, digits, '.', '_' and '-', no "--".
fn check_marker(marker: &str) -> Result<(), GithubError> {
    let fits = !marker.is_empty()
        && marker
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !marker.contains("--");
    if fits {
        Ok(())
    } else {
        Err(GithubError::InvalidMarker(marker.to_owned()))
    }
}

/// The hidden line that identifies a sticky comment: `<!-- cellops:<marker> -->`.
pub fn marker_line(marker: &str) -> String {
    format!("<!-- cellops:{marker} -->")
}

#[derive(Debug, Deserialize)]
struct RawFile {
    filename: String,
    status: String,
    #[serde(default)]
    previous_filename: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawUser {
    login: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    html_url: String,
    #[serde(default)]
    user: Option<RawUser>,
}

/// A synchronous GitHub REST API client.
pub struct Client {
    crab: Octocrab,
    runtime: tokio::runtime::Runtime,
    /// Scheme and authority of the API (`https://api.github.com`): pagination links must stay there.
    origin: String,
    retry: RetryPolicy,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("origin", &self.origin)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// What one failed attempt means: the error to report if it is not retried, and whether (and
/// after how long at least) it may be retried.
struct Failure {
    error: GithubError,
    /// `Some(None)`: retry after the policy's backoff; `Some(Some(d))`: after `d`, as GitHub asked.
    retry: Option<Option<Duration>>,
}

impl Client {
    /// A client authenticated with `token`, for `api_base` (GitHub Enterprise Server's
    /// `https://HOST/api/v3`, `$GITHUB_API_URL`, a test server) or `https://api.github.com`.
    pub fn new(token: &str, api_base: Option<&str>) -> Result<Client, GithubError> {
        let base = api_base
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .unwrap_or("https://api.github.com")
            .trim_end_matches('/')
            .to_owned();
        let bad = |message: &str| GithubError::InvalidApiUrl {
            url: base.clone(),
            message: message.to_owned(),
        };
        let (scheme, rest) = base
            .split_once("://")
            .ok_or_else(|| bad("expected http:// or https://"))?;
        if scheme != "https" && scheme != "http" {
            return Err(bad("expected http:// or https://"));
        }
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let origin = format!("{scheme}://{authority}");
        if token.trim().is_empty() {
            return Err(GithubError::Setup("the token is empty".into()));
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(GithubError::Setup(
                "the client is synchronous: create it outside an async runtime".into(),
            ));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| GithubError::Setup(format!("async runtime: {e}")))?;
        // octocrab spawns its request buffer's worker on the current runtime.
        let crab = runtime.block_on(async {
            Octocrab::builder()
                .personal_token(token.trim().to_owned())
                .base_uri(base.as_str())
                .map_err(|e| bad(&e.to_string()))?
                .set_connect_timeout(Some(Duration::from_secs(30)))
                .set_read_timeout(Some(Duration::from_secs(60)))
                .build()
                .map_err(|e| GithubError::Setup(e.to_string()))
        })?;
        Ok(Client {
            crab,
            runtime,
            origin,
            retry: RetryPolicy::default(),
        })
    }

    /// Runs `fut` on the client's runtime; refuses (rather than panics) inside another runtime.
    fn block_on<T>(&self, fut: impl Future<Output = Result<T, GithubError>>) -> Result<T, GithubError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(GithubError::Setup(
                "the client is synchronous: call it outside an async runtime (e.g. from spawn_blocking)".into(),
            ));
        }
        self.runtime.block_on(fut)
    }

    /// The same client with another retry policy (tests use short waits).
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Client {
        self.retry = RetryPolicy {
            max_attempts: policy.max_attempts.max(1),
            ..policy
        };
        self
    }

    /// The files pull request `pr` of `owner/repo` changes, in GitHub's order, following every
    /// page (100 files a page; GitHub lists at most 3000 files).
    pub fn changed_files(&self, owner: &str, repo: &str, pr: u64) -> Result<Vec<ChangedFile>, GithubError> {
        let what = format!("listing the files of pull request {owner}/{repo}#{pr}");
        let first = format!("/repos/{owner}/{repo}/pulls/{pr}/files?per_page=100");
        let files: Vec<RawFile> = self.block_on(self.all_pages(&what, first))?;
        Ok(files
            .into_iter()
            .map(|f| ChangedFile {
                filename: f.filename,
                status: f.status,
                previous_filename: f.previous_filename,
            })
            .collect())
    }

    /// Posts `body` as the sticky comment `marker` on issue or pull request `issue`, or updates
    /// the comment that already carries the marker. The body gets the hidden marker line
    /// prepended.
    ///
    /// With several marked comments, the newest one written by the token's user is updated (the
    /// newest by a bot when the user cannot be looked up, as with an Actions token; else the
    /// newest). A create that failed with a server error is retried only after looking for the
    /// marker again, so a retry never posts a second comment.
    pub fn upsert_sticky_comment(
        &self,
        owner: &str,
        repo: &str,
        issue: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentOutcome, GithubError> {
        check_marker(marker)?;
        let line = marker_line(marker);
        let full = format!("{line}\n{body}");
        self.block_on(async {
            let mut waited = Duration::ZERO;
            let mut attempt = 1;
            loop {
                let existing = self.find_marked(owner, repo, issue, &line).await?;
                let payload = serde_json_body(&full);
                if let Some(id) = existing {
                    let what = format!("updating comment {id} on {owner}/{repo}#{issue}");
                    let route = format!("/repos/{owner}/{repo}/issues/comments/{id}");
                    let c: RawComment = self
                        .with_retries(&what, true, || self.crab.patch(route.as_str(), Some(&payload)))
                        .await?;
                    return Ok(CommentOutcome {
                        action: CommentAction::Updated,
                        id: c.id,
                        html_url: c.html_url,
                    });
                }
                let what = format!("commenting on {owner}/{repo}#{issue}");
                let route = format!("/repos/{owner}/{repo}/issues/{issue}/comments");
                match self
                    .with_retries::<RawComment, _, _>(&what, false, || self.crab.post(route.as_str(), Some(&payload)))
                    .await
                {
                    Ok(c) => {
                        return Ok(CommentOutcome {
                            action: CommentAction::Created,
                            id: c.id,
                            html_url: c.html_url,
                        });
                    }
                    Err(GithubError::Server { .. })
                        if attempt < self.retry.max_attempts
                            && waited + self.backoff(attempt) <= self.retry.max_total_wait =>
                    {
                        let d = self.backoff(attempt);
                        tokio::time::sleep(d).await;
                        waited += d;
                        attempt += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        })
    }

    /// The id of the comment to update: the marked comment chosen as documented on
    /// [`Client::upsert_sticky_comment`].
    async fn find_marked(&self, owner: &str, repo: &str, issue: u64, line: &str) -> Result<Option<u64>, GithubError> {
        let what = format!("listing the comments of {owner}/{repo}#{issue}");
        let first = format!("/repos/{owner}/{repo}/issues/{issue}/comments?per_page=100");
        let comments: Vec<RawComment> = self.all_pages(&what, first).await?;
        let mut marked: Vec<RawComment> = comments
            .into_iter()
            .filter(|c| c.body.as_deref().is_some_and(|b| b.contains(line)))
            .collect();
        if marked.len() > 1 {
            // Installation tokens (GITHUB_TOKEN) cannot read /user: then prefer bots' comments.
            let me: Option<String> = self
                .with_retries("looking up the token's user", true, || {
                    self.crab.get::<RawUser, _, ()>("/user", None)
                })
                .await
                .ok()
                .map(|u| u.login);
            let mine = |c: &RawComment| match (&me, &c.user) {
                (Some(me), Some(u)) => &u.login == me,
                (None, Some(u)) => u.kind.as_deref() == Some("Bot"),
                _ => false,
            };
            if marked.iter().any(mine) {
                marked.retain(|c| mine(c));
            }
        }
        Ok(marked.iter().map(|c| c.id).max())
    }

    /// Every item of a paginated list, from `first` along the `Link: rel="next"` pages.
    async fn all_pages<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        first: String,
    ) -> Result<Vec<T>, GithubError> {
        let mut items = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(route) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(GithubError::Pagination {
                    what: what.to_owned(),
                    message: format!("more than {MAX_PAGES} pages; giving up"),
                });
            }
            let mut page: Page<T> = self
                .with_retries(what, true, || self.crab.get(route.as_str(), None::<&()>))
                .await?;
            items.append(&mut page.take_items());
            if let Some(uri) = &page.next {
                let link = uri.to_string();
                let origin = match (uri.scheme_str(), uri.authority()) {
                    (Some(s), Some(a)) => format!("{s}://{a}"),
                    _ => self.origin.clone(),
                };
                if !origin.eq_ignore_ascii_case(&self.origin) {
                    return Err(GithubError::Pagination {
                        what: what.to_owned(),
                        message: format!(
                            "the next page `{link}` is not on the API host {}; not following it",
                            self.origin
                        ),
                    });
                }
                next = Some(link);
            }
        }
        Ok(items)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.retry
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
    }

    /// Runs `call` until it succeeds, retrying within the policy. `idempotent` requests are also
    /// retried after server errors; others only after rate limits (rejected before any effect).
    async fn with_retries<T, F, Fut>(&self, what: &str, idempotent: bool, mut call: F) -> Result<T, GithubError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = octocrab::Result<T>>,
    {
        let mut waited = Duration::ZERO;
        let mut attempt = 1;
        loop {
            let err = match call().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let failure = classify(what, &err, attempt, idempotent);
            let Some(asked) = failure.retry else {
                return Err(failure.error);
            };
            let delay = asked.unwrap_or_else(|| self.backoff(attempt));
            if attempt >= self.retry.max_attempts || waited + delay > self.retry.max_total_wait {
                return Err(failure.error);
            }
            tokio::time::sleep(delay).await;
            waited += delay;
            attempt += 1;
        }
    }
}

fn serde_json_body(body: &str) -> std::collections::BTreeMap<&'static str, String> {
    std::collections::BTreeMap::from([("body", body.to_owned())])
}

fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An error and its sources, one after the other (octocrab's transport errors say little alone).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// One validation error as GitHub lists it (`{"resource","field","code","message"}`).
fn validation_detail(v: &serde_json::Value) -> String {
    if let Some(m) = v.get("message").and_then(|m| m.as_str()) {
        return m.to_owned();
    }
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("");
    match (field("field"), field("code")) {
        ("", "") => v.to_string(),
        (f, c) => format!("{f}: {c}"),
    }
}

fn classify(what: &str, err: &octocrab::Error, attempt: u32, idempotent: bool) -> Failure {
    let what = what.to_owned();
    let fail = |error| Failure { error, retry: None };
    let gh = match err {
        octocrab::Error::GitHub { source, .. } => source,
        octocrab::Error::Json { .. } | octocrab::Error::Serde { .. } => {
            return fail(GithubError::Decode {
                what,
                message: chain(err),
            });
        }
        _ => {
            return fail(GithubError::Transport {
                what,
                message: chain(err),
            });
        }
    };
    let status = gh.status_code.as_u16();
    let message = gh.message.clone();
    let header = |name: &str| {
        gh.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
    };
    let retry_after = header("retry-after").and_then(|v| v.parse::<u64>().ok());
    let exhausted = header("x-ratelimit-remaining").as_deref() == Some("0");
    let reset = gh
        .rate_limit_reset
        .or_else(|| header("x-ratelimit-reset").and_then(|v| v.parse().ok()));
    let lower = message.to_ascii_lowercase();
    match status {
        401 => fail(GithubError::Unauthorized { what, message }),
        403 | 429 if retry_after.is_some() || exhausted || status == 429 || lower.contains("rate limit") => {
            let wait = match (retry_after, exhausted, reset) {
                (Some(s), _, _) => Some(Duration::from_secs(s)),
                (None, true, Some(r)) => Some(Duration::from_secs(r.saturating_sub(now_epoch()) + 1)),
                _ => None,
            };
            Failure {
                error: GithubError::RateLimited {
                    what,
                    status,
                    message,
                    wait,
                },
                retry: Some(wait),
            }
        }
        403 if lower.contains(READ_ONLY_MESSAGE) => fail(GithubError::ReadOnly { what, message }),
        403 => fail(GithubError::Forbidden { what, message }),
        404 => fail(GithubError::NotFound { what, message }),
        422 => fail(GithubError::Validation {
            what,
            message,
            errors: gh.errors.iter().flatten().map(validation_detail).collect(),
        }),
        500..=599 => Failure {
            error: GithubError::Server {
                what,
                status,
                message,
                attempts: attempt,
            },
            retry: idempotent.then_some(None),
        },
        _ => fail(GithubError::Status { what, status, message }),
    }
}
