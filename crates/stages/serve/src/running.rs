//! The service on a thread of its own, for the pipeline's check and for tools: [`start`] returns
//! once the release is loaded and the listener answers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::service::Service;
use crate::{Args, ServeError, io, prepare, serve_until};

/// A running service: stopped, after its in-flight requests, by [`Running::stop`] or when
/// dropped.
#[derive(Debug)]
pub struct Running {
    /// The address it listens on.
    pub address: SocketAddr,
    /// The release it serves.
    pub release: String,
    /// Image type → the model (name in URLs) that segments it.
    pub types: BTreeMap<String, String>,
    /// The service, for reloads and readiness.
    pub service: Arc<Service>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<bool, ServeError>>>,
}

impl Running {
    /// Stops the service and waits for it (in-flight requests finish first).
    pub fn stop(mut self) -> Result<(), ServeError> {
        self.shut()
    }

    fn shut(&mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result.map(drop),
            Some(Err(_)) => Err(io("serving")(std::io::Error::other("the server thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shut();
    }
}

/// Loads the release and serves it on a thread of its own; returns once it is ready.
pub fn start(args: &Args) -> Result<Running, ServeError> {
    let p = prepare(args, None)?;
    let (service, address) = (Arc::clone(&p.service), p.address);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<bool>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(io("starting the runtime"))?;
        let stop = async move {
            let _ = stop_rx.await;
        };
        rt.block_on(serve_until(p.service, p.listeners, stop, move |ok| {
            let _ = ready_tx.send(ok);
        }))
    });
    if ready_rx.recv() != Ok(true) {
        return Err(match thread.join() {
            Ok(Err(e)) => e,
            _ => io("starting the service")(std::io::Error::other("it stopped before it was ready")),
        });
    }
    let current = service
        .current()
        .ok_or_else(|| io("starting the service")(std::io::Error::other("nothing loaded")))?;
    let types = current
        .types()
        .into_iter()
        .filter_map(|t| current.image_type(t).map(|i| (t.to_owned(), i.model.clone())))
        .collect();
    Ok(Running {
        address,
        release: current.id.clone(),
        types,
        service,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}
