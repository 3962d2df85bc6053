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
