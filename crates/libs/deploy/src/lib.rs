//! Deploying files to a server as atomic, verified, incremental releases — over SSH
//! ([`ssh`] and [`tunnel`], the only modules of the workspace that touch `ssh2`) or to a local folder
//! ([`remote::LocalRemote`], for `file://` targets), with the same release logic ([`release`]), on
//! one host or, all or nothing, on several ([`fleet`]).
//!
//! Security defaults: the host key is always verified (known_hosts lines or `SHA256:`
//! fingerprints; skipping needs an explicit opt-out), the private key stays in memory, and errors
//! say what to fix ([`ssh::ConnectError`], [`keys`]).

#[cfg(feature = "clap")]
pub mod flags;
pub mod fleet;
pub mod keys;
pub mod registry;
pub mod release;
pub mod remote;
pub mod ssh;
pub mod target;
pub mod tunnel;
