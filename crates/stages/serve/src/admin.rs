//! The admin socket: a Unix socket, writable by the deploy user's group and nobody else, that
//! takes one command per connection (`reload`, `status`) and answers one JSON line. Admin actions
//! are never on the HTTP listener. `cellops-serve --admin-socket PATH --admin reload` is its
//! client (what a deploy runs on the droplet, without sudo).

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};

use crate::service::Service;

/// A command of the admin socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AdminCommand {
    /// Follow the release link and serve what it names (load, check, swap; the old release
    /// keeps serving when the new one fails).
    Reload,
    /// The readiness body.
    Status,
}

impl AdminCommand {
    /// The word sent on the socket.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminCommand::Reload => "reload",
            AdminCommand::Status => "status",
        }
    }
}

/// A command longer than this is not one.
const MAX_COMMAND: u64 = 64;
/// How long a client may take to send its command.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Listens on `path` (a stale socket file is replaced; a live one is an error) and answers
/// commands until the runtime ends.
pub fn listen(path: &Path, service: Arc<Service>) -> std::io::Result<()> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("a service already answers on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream, Arc::clone(&service)));
        }
    });
    Ok(())
}

async fn answer(stream: UnixStream, service: Arc<Service>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_COMMAND));
    let got = tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line)).await;
    let reply = match (got, line.trim()) {
        (Err(_), _) => json!({ "ok": false, "error": "no command within 5 s" }),
        (Ok(_), "status") => json!({ "ok": true, "status": service.readiness() }),
        (Ok(_), "reload") => match service.reload().await {
            Ok(r) => json!({ "ok": true, "reload": r, "status": service.readiness() }),
            Err(e) => json!({ "ok": false, "error": e.to_string(), "status": service.readiness() }),
        },
        (Ok(_), _) => json!({ "ok": false, "error": "unknown command (reload, status)" }),
    };
    let mut bytes = reply.to_string().into_bytes();
    bytes.push(b'\n');
    let _ = write.write_all(&bytes).await;
}

/// Sends `command` to the service listening on `path` and returns its JSON answer; `Ok(false,
/// answer)` when the service refused.
pub fn send(path: &Path, command: AdminCommand) -> std::io::Result<(bool, String)> {
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.write_all(format!("{}\n", command.as_str()).as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    let ok = serde_json::from_str::<serde_json::Value>(&line)
        .ok()
        .and_then(|v| v["ok"].as_bool())
        .unwrap_or(false);
    Ok((ok, line.trim_end().to_owned()))
}
