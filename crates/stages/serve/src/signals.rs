//! The signals the service answers: SIGINT and SIGTERM stop it (after draining), SIGHUP reloads
//! (what a systemd path unit or `systemctl reload` sends).

use std::sync::Arc;

use crate::service::Service;

/// Resolves on SIGINT or SIGTERM.
pub async fn terminated() {
    let interrupt = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return interrupt.await.unwrap_or(()),
    };
    tokio::select! {
        _ = interrupt => {}
        _ = term.recv() => {}
    }
    crate::systemd::notify("STOPPING=1");
}

/// Reloads the service on every SIGHUP (outcomes go to the service's events).
pub fn reload_on_hangup(service: Arc<Service>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let _ = service.reload().await;
        }
    });
}
