//! systemd's notify protocol, for `Type=notify` units: `READY=1` once the release is loaded,
//! `STOPPING=1` when draining, and `WATCHDOG=1` at half the unit's `WatchdogSec` from a task of
//! the runtime, so that a runtime that stops scheduling gets the service restarted. Nothing
//! happens outside systemd (no `NOTIFY_SOCKET`).

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends `state` (e.g. `READY=1`) to systemd when it asked for notifications.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    #[cfg(target_os = "linux")]
    if let Some(name) = path.as_encoded_bytes().strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt as _;
        if let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(name) {
            let _ = socket.send_to_addr(state.as_bytes(), &addr);
        }
        return;
    }
    let _ = socket.send_to(state.as_bytes(), &path);
}

/// Pings systemd's watchdog at half its interval, when the unit has one.
pub fn watchdog() {
    let Some(usec) = std::env::var("WATCHDOG_USEC").ok().and_then(|v| v.parse::<u64>().ok()) else {
        return;
    };
    let every = Duration::from_micros(usec / 2).max(Duration::from_millis(100));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            notify("WATCHDOG=1");
        }
    });
}
