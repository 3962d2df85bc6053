//! A mock of the GitHub REST API on 127.0.0.1 (wiremock), on its own runtime so that the client
//! under test blocks on its own, as a stage does.

use wiremock::{Mock, MockServer, Request};

/// A running mock server.
#[derive(Debug)]
pub struct MockGithub {
    rt: tokio::runtime::Runtime,
    server: MockServer,
}

impl MockGithub {
    /// Starts a server on a free port of 127.0.0.1.
    ///
    /// # Panics
    ///
    /// When no runtime can be built or the server does not listen on 127.0.0.1 (a test harness:
    /// failing loudly is its job).
    #[must_use]
    pub fn start() -> MockGithub {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let server = rt.block_on(MockServer::start());
        assert!(server.uri().starts_with("http://127.0.0.1:"), "{}", server.uri());
        MockGithub { rt, server }
    }

    /// Adds a response rule.
    pub fn mount(&self, mock: Mock) {
        self.rt.block_on(mock.mount(&self.server));
    }

    /// The base URL that the client's `api-url` points at.
    #[must_use]
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// Every request received so far.
    ///
    /// # Panics
    ///
    /// When request recording is off (it is on by default).
    #[must_use]
    pub fn requests(&self) -> Vec<Request> {
        self.rt.block_on(self.server.received_requests()).expect("recording")
    }

    /// Checks the mounted rules' expected call counts.
    ///
    /// # Panics
    ///
    /// When an expectation is not met.
    pub fn verify(&self) {
        self.rt.block_on(self.server.verify());
    }
}

/// An issue of the [`IssueTracker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedIssue {
    /// Its number.
    pub number: u64,
    /// Its title.
    pub title: String,
    /// Its body, as last set.
    pub body: String,
    /// `open` or `closed`.
    pub state: String,
    /// Its labels.
    pub labels: Vec<String>,
    /// Its comments' bodies, in order.
    pub comments: Vec<String>,
}

/// A repository's issues kept in memory behind the mock: listing open issues, opening,
/// commenting, editing and closing them behave as GitHub's REST API does, so that a client can
/// be run again and again against the state its earlier runs left.
#[derive(Debug, Clone, Default)]
pub struct IssueTracker {
    issues: std::sync::Arc<std::sync::Mutex<Vec<TrackedIssue>>>,
}

impl IssueTracker {
    /// The issues so far.
    ///
    /// # Panics
    ///
    /// When a responder panicked while holding the lock.
    #[must_use]
    pub fn issues(&self) -> Vec<TrackedIssue> {
        self.issues.lock().expect("issues").clone()
    }

    fn json(issue: &TrackedIssue, repo: &str) -> serde_json::Value {
        serde_json::json!({
            "number": issue.number,
            "title": issue.title,
            "body": issue.body,
            "state": issue.state,
            "labels": issue.labels.iter().map(|l| serde_json::json!({"name": l})).collect::<Vec<_>>(),
            "html_url": format!("https://github.com/{repo}/issues/{}", issue.number),
        })
    }

    fn respond(&self, request: &Request, repo: &str) -> wiremock::ResponseTemplate {
        use wiremock::ResponseTemplate;
        let mut issues = self.issues.lock().expect("issues");
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let text = |k: &str| body[k].as_str().unwrap_or_default().to_owned();
        let rest = request.url.path().trim_start_matches(&format!("/repos/{repo}/issues"));
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        let number = parts.first().and_then(|n| n.parse::<u64>().ok());
        let at = number.and_then(|n| issues.iter().position(|i| i.number == n));
        match (request.method.as_str(), parts.as_slice(), at) {
            ("GET", [], _) => {
                let open: Vec<_> = issues
                    .iter()
                    .filter(|i| i.state == "open")
                    .map(|i| Self::json(i, repo))
                    .collect();
                ResponseTemplate::new(200).set_body_json(open)
            }
            ("POST", [], _) => {
                let issue = TrackedIssue {
                    number: issues.len() as u64 + 1,
                    title: text("title"),
                    body: text("body"),
                    state: "open".into(),
                    labels: body["labels"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|l| l.as_str().map(str::to_owned))
                        .collect(),
                    comments: Vec::new(),
                };
                let json = Self::json(&issue, repo);
                issues.push(issue);
                ResponseTemplate::new(201).set_body_json(json)
            }
            ("PATCH", [_], Some(k)) => {
                if let Some(b) = body["body"].as_str() {
                    issues[k].body = b.to_owned();
                }
                if let Some(s) = body["state"].as_str() {
                    issues[k].state = s.to_owned();
                }
                ResponseTemplate::new(200).set_body_json(Self::json(&issues[k], repo))
            }
            ("POST", [_, "comments"], Some(k)) => {
                issues[k].comments.push(text("body"));
                let id = issues.iter().map(|i| i.comments.len()).sum::<usize>();
                ResponseTemplate::new(201)
                    .set_body_json(serde_json::json!({"id": id, "body": text("body"), "html_url": ""}))
            }
            _ => ResponseTemplate::new(404).set_body_json(serde_json::json!({"message": "Not Found"})),
        }
    }
}

impl MockGithub {
    /// Serves the issues of `repo` (`owner/name`) from an in-memory tracker, returned.
    pub fn serve_issues(&self, repo: &str) -> IssueTracker {
        let tracker = IssueTracker::default();
        let (t, r) = (tracker.clone(), repo.to_owned());
        let pattern = format!("^/repos/{}/issues(/.*)?$", regex_escape(repo));
        self.mount(
            Mock::given(wiremock::matchers::path_regex(pattern.as_str()))
                .respond_with(move |request: &Request| t.respond(request, &r)),
        );
        tracker
    }
}

/// `s` with the characters a regular expression treats specially escaped.
fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}
