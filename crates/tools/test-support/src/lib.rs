//! Test harnesses for CellOps' integration tests (and the deploy benchmark), kept out of the
//! libraries' public APIs: a dev-dependency only, never a dependency of a stage or a library.
//!
//! - [`action`]: runs an action's binary the way a workflow runner does.
//! - [`browser`]: a real headless Chromium driven over WebDriver (chromedriver).
//! - [`sshd`]: a real OpenSSH server on 127.0.0.1.
//! - [`github`]: a mock of the GitHub REST API on 127.0.0.1 (wiremock) that octocrab is pointed at.
//! - [`nginx`]: a real nginx on 127.0.0.1 running the server blocks a test gives.
//! - [`images`]: the changes drift scenarios make to synthetic images.
//! - [`files`]: folders compared file by file.
//! - [`kill`]: processes killed part-way.
//! - [`proxy`]: a TCP proxy that cuts the network part-way.
//! - [`tmpfs`]: a small tmpfs, a disk that fills up on demand.
//! - [`unprivileged`]: a binary run as a user whom file permissions bind.

pub mod action;
pub mod browser;
pub mod files;
pub mod geojson;
pub mod github;
pub mod images;
pub mod kill;
pub mod nginx;
pub mod proxy;
pub mod sshd;
pub mod tmpfs;
pub mod unprivileged;

/// A port on 127.0.0.1 that was free a moment ago (another process may take it before the
/// caller binds it: harnesses retry or check that their own process listens).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The `Content-Length` of an HTTP message head (0 when it has none), for tests that speak HTTP
/// over a raw socket.
///
/// ```
/// let head = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n";
/// assert_eq!(cellops_test_support::content_length(head), 11);
/// assert_eq!(cellops_test_support::content_length("GET / HTTP/1.1\r\n\r\n"), 0);
/// ```
pub fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Takes the deploy lock of the release folder `base` as another deploy would hold it right now
/// (`<base>/.lock/owner.json`, fresh, so no stale-lock timeout takes it over); removing the
/// `.lock` folder releases it.
pub fn hold_deploy_lock(base: &std::path::Path) -> std::io::Result<()> {
    let lock = base.join(".lock");
    std::fs::create_dir_all(&lock)?;
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(std::io::Error::other)?
        .as_secs();
    let owner = format!("{{\"host\":\"ci\",\"pid\":1,\"since\":{since},\"since_utc\":\"now\"}}");
    std::fs::write(lock.join("owner.json"), owner)
}
