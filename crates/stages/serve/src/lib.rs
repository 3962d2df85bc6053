//! `cellops serve`: the service that runs on the droplet. It serves what a deploy put in a release
//! folder — the cell-parameter files and the model bundle — over the Open Inference Protocol's
//! REST endpoints (`/v2`, health, model metadata) and one extension, `measure`: a raw image in,
//! the per-image summary and the per-nucleus rows out, computed by the same per-image analysis as
//! `evaluate` (`cellops-analysis`), so both give the same numbers for the same image.
//!
//! The only crate that touches the HTTP server stack (axum on tokio).

pub mod app;
pub mod metrics;
pub mod release;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use cellops_actions::{ActionsError, Annotation, Exit, Level, Runner, StageFailure, conclude};
use cellops_analysis::AnalysisError;
use cellops_formats::FileError;
use cellops_unet::device::{self, Accelerator, DeviceError};

use crate::app::{AppState, Limits};
use crate::release::Release;

/// Flags of `serve`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Serve")]
pub struct Args {
    /// The release to serve: a release folder, or the deploy's `current` link.
    #[arg(long, value_name = "DIR")]
    pub release: PathBuf,
    /// Address to listen on (loopback by default: reach it through the SSH connection).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The largest request body in bytes (default: a 2048×2048 16-bit RGB TIFF, with room).
    #[arg(long, value_name = "BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Images with more pixels than this are refused before they are decoded.
    #[arg(long, value_name = "N", default_value_t = 100_000_000)]
    pub max_pixels: u64,
    /// Device that runs the model.
    #[arg(long, value_enum, default_value_t = Accelerator::Auto)]
    pub device: Accelerator,
}

impl Args {
    /// The flags at their defaults with the release given (fields are then set by type).
    pub fn new(release: &std::path::Path) -> Result<Self, clap::Error> {
        cellops_actions::inputs::defaults(&[("release", release.as_ref())])
    }
}

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A file of the release (a cell-parameter file, the bundle) cannot be used.
    #[error(transparent)]
    File(#[from] FileError),
    /// A parameter file does not fit the model.
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    /// The model bundle cannot be loaded.
    #[error("model {path}: {message}")]
    Model {
        /// The bundle.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The device cannot be used.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The address cannot be listened on, or the server failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The Actions runtime failed.
    #[error(transparent)]
    Actions(#[from] ActionsError),
}

impl StageFailure for ServeError {
    fn exit(&self) -> Exit {
        match self {
            ServeError::File(_) | ServeError::Analysis(_) => Exit::Usage,
            _ => Exit::Failure,
        }
    }

    fn annotation(&self) -> Annotation {
        Annotation::new(Level::Error, self.to_string()).title("serve")
    }
}

/// How a run of the service ended.
#[derive(Debug)]
pub struct Served {
    /// The release it served.
    pub release: String,
    /// The address it listened on.
    pub address: SocketAddr,
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> ServeError + '_ {
    move |source| ServeError::Io {
        what: what.to_owned(),
        source,
    }
}

/// Loads the release the flags name onto their device; returns the state handlers share and a
/// line that describes it.
fn load(args: &Args) -> Result<(Arc<AppState>, String), ServeError> {
    let selected = device::select(args.device)?;
    let release = Release::load(&args.release, &selected.device)?;
    let line = format!(
        "release {}: model {} (bundle {}) on {}, image types {}",
        release.id,
        release.model.name,
        release.model.version,
        selected.kind.as_str(),
        release.types().join(", ")
    );
    let limits = Limits {
        max_request_bytes: args.max_request_bytes,
        max_pixels: args.max_pixels,
    };
    let metrics = metrics::Metrics::new(&release.id, &release.model.name, &release.model.version);
    Ok((
        Arc::new(AppState {
            release,
            limits,
            metrics,
        }),
        line,
    ))
}

/// A service running on a thread of its own (the pipeline's check, tools): stopped, after its
/// in-flight requests, by [`Running::stop`] or when dropped.
#[derive(Debug)]
pub struct Running {
    /// The address it listens on.
    pub address: SocketAddr,
    /// The release it serves.
    pub release: String,
    /// The model's name in URLs.
    pub model: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServeError>>>,
}

impl Running {
    /// Stops the service and waits for it.
    pub fn stop(mut self) -> Result<(), ServeError> {
        self.shut()
    }

    fn shut(&mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(ServeError::Io {
                what: "serving".into(),
                source: std::io::Error::other("the server thread panicked"),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shut();
    }
}

/// Loads the release and serves it on a thread of its own; returns once it listens.
pub fn start(args: &Args) -> Result<Running, ServeError> {
    let (state, _) = load(args)?;
    let listener = std::net::TcpListener::bind(args.listen).map_err(io("listening"))?;
    listener.set_nonblocking(true).map_err(io("listening"))?;
    let address = listener.local_addr().map_err(io("listening"))?;
    let (release, model) = (state.release.id.clone(), state.release.model.name.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(io("starting the runtime"))?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).map_err(io("listening"))?;
            axum::serve(listener, app::router(state))
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .map_err(io("serving"))
        })
    });
    Ok(Running {
        address,
        release,
        model,
        stop: Some(tx),
        thread: Some(thread),
    })
}

/// Loads the release and serves it until SIGINT or SIGTERM; in-flight requests finish first.
pub fn run(args: &Args, runner: &Runner) -> Result<Served, ServeError> {
    let (state, line) = load(args)?;
    let id = state.release.id.clone();
    runner.info(&line)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io("starting the runtime"))?;
    let address = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(io("listening"))?;
        let address = listener.local_addr().map_err(io("listening"))?;
        runner.info(&format!("listening on http://{address}"))?;
        axum::serve(listener, app::router(state))
            .with_graceful_shutdown(shutdown())
            .await
            .map_err(io("serving"))?;
        Ok::<_, ServeError>(address)
    })?;
    Ok(Served { release: id, address })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return interrupt.await.unwrap_or(()),
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// Runs the service and concludes as every stage does.
pub fn execute(args: &Args, runner: &Runner) -> Exit {
    conclude(runner, run(args, runner), |done| {
        (
            format!("served release {} on http://{}", done.release, done.address),
            Exit::Success,
        )
    })
}
