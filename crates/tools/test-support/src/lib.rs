//! Test harnesses for CellOps' integration tests (and the deploy benchmark), kept out of the
//! libraries' public APIs: a dev-dependency only, never a dependency of a stage or a library.
//!
//! - [`action`]: runs an action's binary the way a workflow runner does.
//! - [`sshd`]: a real OpenSSH server on 127.0.0.1.
//! - [`github`]: a mock of the GitHub REST API on 127.0.0.1 (wiremock) that octocrab is pointed at.

pub mod action;
pub mod github;
pub mod sshd;
