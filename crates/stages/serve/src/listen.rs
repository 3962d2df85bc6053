//! The accept loop: every connection served by hyper's HTTP/1 builder with a timer, so that a
//! client must send its request headers within `header_timeout_s` (axum's `serve` sets no timer,
//! and hyper's header-read timeout then never applies: a client trickling its headers would hold
//! a connection forever). On stop the listener closes, idle connections close, and requests in
//! flight finish before [`serve`] returns.

use std::pin::pin;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long the loop waits after a failed accept (out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `router` on `listener` until `stop` turns true; returns once every connection ended.
pub async fn serve(listener: TcpListener, router: Router, header_timeout: Duration, stop: watch::Receiver<bool>) {
    let mut connections = tokio::task::JoinSet::new();
    let mut stopping = stop.clone();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            () = async { let _ = stopping.wait_for(|s| *s).await; } => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(ACCEPT_BACKOFF).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let mut stop = stop.clone();
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
            let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
            tokio::select! {
                _ = conn.as_mut() => {}
                () = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}
