//! `cellops serve`: the service that runs on the droplet. It serves what a deploy put in a release
//! folder — the cell-parameter files, the model bundles and `serve.json` — over the Open
//! Inference Protocol's REST endpoints (`/v2`, health, model metadata, `infer`) and one
//! extension, `measure`: a raw image in, the per-image summary and the per-nucleus rows out,
//! computed by the same per-image analysis as `evaluate` (`cellops-analysis`), so both give the
//! same numbers for the same image.
//!
//! - [`release`]: a release folder, checked against `deploy.json` and loaded.
//! - [`service`]: the live release, the previous one, reloads, readiness.
//! - [`admission`]: the inference pool and its bounded queue.
//! - [`app`]: the routes. [`metrics`]: `/metrics`. [`admin`]: the admin socket.
//! - [`watch`]: what the Monitor stage reads — per-image features kept by [`evidence`], drift
//!   against each model's reference ([`drift`]) and SLO burn rates ([`slo`]).
//!
//! The only crate that touches the HTTP server stack (axum on tokio).

pub mod admin;
pub mod admission;
pub mod app;
pub mod auth;
pub mod drift;
pub mod evidence;
mod listen;
pub mod metrics;
pub mod release;
mod running;
pub mod service;
pub mod shadow;
mod signals;
pub mod slo;
mod systemd;
pub mod watch;

pub use running::{Running, start};

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cellops_actions::{ActionsError, Annotation, Exit, Level, Runner, StageFailure, conclude};
use cellops_analysis::AnalysisError;
use cellops_formats::FileError;
use cellops_formats::serve::{ServeConfig, ServeLimits};
use cellops_unet::device::{self, Accelerator, DeviceError};

use crate::admin::AdminCommand;
use crate::admission::Pool;
use crate::evidence::Evidence;
use crate::metrics::Metrics;
use crate::service::{Parts, Service};
use crate::watch::Watch;

/// Flags of `serve`. Unset limits come from the release's `serve.json`, else their defaults.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Serve")]
pub struct Args {
    /// The release to serve: the deploy's `current` link (followed again at each reload), or a
    /// release folder.
    #[arg(long, value_name = "DIR", required_unless_present = "admin")]
    pub release: Option<PathBuf>,
    /// Address to listen on [serve.json: listen; default 127.0.0.1:8080, loopback: reach it
    /// through the SSH connection].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The largest request body in bytes [serve.json: limits.max_request_bytes].
    #[arg(long, value_name = "BYTES")]
    pub max_request_bytes: Option<u64>,
    /// Images with more pixels are refused before decoding [serve.json: limits.max_pixels].
    #[arg(long, value_name = "N")]
    pub max_pixels: Option<u64>,
    /// Images analysed at once; 0 = one per core [serve.json: limits.workers].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Requests that may wait for a worker; more get 503 [serve.json: limits.queue].
    #[arg(long, value_name = "N")]
    pub queue: Option<usize>,
    /// Seconds from a body's arrival to its answer; past it, 504 [serve.json:
    /// limits.request_timeout_s].
    #[arg(long, value_name = "SECONDS")]
    pub request_timeout: Option<f64>,
    /// Seconds a client may take to send its body; past it, 408 [serve.json:
    /// limits.upload_timeout_s].
    #[arg(long, value_name = "SECONDS")]
    pub upload_timeout: Option<f64>,
    /// Seconds in-flight requests get after SIGTERM [serve.json: limits.drain_timeout_s].
    #[arg(long, value_name = "SECONDS")]
    pub drain_timeout: Option<f64>,
    /// Seconds a client may take to send a request's headers; past it the connection closes
    /// [serve.json: limits.header_timeout_s].
    #[arg(long, value_name = "SECONDS")]
    pub header_timeout: Option<f64>,
    /// A second listener where every request but liveness needs a bearer token [serve.json:
    /// public.listen].
    #[arg(long, value_name = "ADDR", requires = "token_file")]
    pub public_listen: Option<SocketAddr>,
    /// A third listener for a load balancer on the private network: readiness and liveness
    /// without the token, everything else with it [serve.json: public.private_listen].
    #[arg(long, value_name = "ADDR", requires = "token_file")]
    pub private_listen: Option<SocketAddr>,
    /// The public (and private) listener's token file (mode 600) [serve.json: public.token_file].
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Where the Monitor's evidence is kept (one file of per-image features a UTC day, no
    /// pixels; created mode 700): a restart reads the drift window back. Without it the
    /// evidence lives in memory only (the droplet's unit sets /var/lib/cellops-serve).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Device that runs the models.
    #[arg(long, value_enum, default_value_t = Accelerator::Auto)]
    pub device: Accelerator,
    /// Serve a release folder that no deploy made (no deploy.json) without checking its files;
    /// readiness reports `verified: false`. Deployed releases are always checked.
    #[arg(long)]
    pub allow_unverified: bool,
    /// The admin socket (Unix): `reload` and `status` commands, for the deploy user.
    #[arg(long, value_name = "PATH")]
    pub admin_socket: Option<PathBuf>,
    /// Instead of serving, send this command to the service on --admin-socket and print its
    /// answer.
    #[arg(long, value_enum, requires = "admin_socket")]
    pub admin: Option<AdminCommand>,
}

impl Args {
    /// The flags at their defaults with the release given (fields are then set by type).
    pub fn new(release: &Path) -> Result<Self, clap::Error> {
        cellops_actions::inputs::defaults(&[("release", release.as_ref())])
    }

    /// The listen address and limits: each flag, else `serve.json`'s value, else the default.
    pub fn settings(&self, config: &ServeConfig) -> Result<(SocketAddr, ServeLimits), ServeError> {
        let c = config.limits;
        let limits = ServeLimits {
            max_request_bytes: self.max_request_bytes.unwrap_or(c.max_request_bytes),
            max_pixels: self.max_pixels.unwrap_or(c.max_pixels),
            workers: self.workers.unwrap_or(c.workers),
            queue: self.queue.unwrap_or(c.queue),
            request_timeout_s: self.request_timeout.unwrap_or(c.request_timeout_s),
            upload_timeout_s: self.upload_timeout.unwrap_or(c.upload_timeout_s),
            drain_timeout_s: self.drain_timeout.unwrap_or(c.drain_timeout_s),
            header_timeout_s: self.header_timeout.unwrap_or(c.header_timeout_s),
        };
        limits
            .check()
            .map_err(|(field, why)| ServeError::Setting(format!("{field}: {why}")))?;
        Ok((self.listen.unwrap_or(config.listen), limits))
    }
}

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A file of the release (a cell-parameter file, `serve.json`, the bundle) cannot be used.
    #[error(transparent)]
    File(#[from] FileError),
    /// A parameter file does not fit the model.
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    /// A model bundle cannot be loaded.
    #[error("model {path}: {message}")]
    Model {
        /// The bundle.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A limit set by a flag is out of range.
    #[error("{0}")]
    Setting(String),
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
    /// The admin socket refused the command.
    #[error("the service refused `{command}`: {answer}")]
    Refused {
        /// The command.
        command: &'static str,
        /// Its JSON answer.
        answer: String,
    },
    /// The Actions runtime failed.
    #[error(transparent)]
    Actions(#[from] ActionsError),
}

impl StageFailure for ServeError {
    fn exit(&self) -> Exit {
        match self {
            ServeError::File(_) | ServeError::Analysis(_) | ServeError::Setting(_) => Exit::Usage,
            _ => Exit::Failure,
        }
    }

    fn annotation(&self) -> Annotation {
        Annotation::new(Level::Error, self.to_string()).title("serve")
    }
}

/// How a run of the service (or of an admin command) ended.
#[derive(Debug)]
pub enum Served {
    /// The service stopped after serving.
    Stopped {
        /// The release it served last.
        release: String,
        /// The address it listened on.
        address: SocketAddr,
        /// Whether every in-flight request finished within the drain timeout.
        drained: bool,
    },
    /// An admin command was answered.
    Admin {
        /// The service's JSON answer.
        answer: String,
    },
}

pub(crate) fn io(what: &str) -> impl FnOnce(std::io::Error) -> ServeError + '_ {
    move |source| ServeError::Io {
        what: what.to_owned(),
        source,
    }
}

/// A bound listener, and the token it needs (the public one).
struct Listener {
    socket: std::net::TcpListener,
    token: Option<(auth::Token, auth::Open)>,
}

fn bind(address: SocketAddr, token: Option<(auth::Token, auth::Open)>) -> Result<(Listener, SocketAddr), ServeError> {
    let socket = std::net::TcpListener::bind(address).map_err(io("listening"))?;
    socket.set_nonblocking(true).map_err(io("listening"))?;
    let bound = socket.local_addr().map_err(io("listening"))?;
    Ok((Listener { socket, token }, bound))
}

/// A service ready to serve: nothing loaded yet, its listeners bound.
struct Prepared {
    service: Arc<Service>,
    listeners: Vec<Listener>,
    address: SocketAddr,
    public: Option<SocketAddr>,
    private: Option<SocketAddr>,
    device: &'static str,
}

/// The token-guarded listeners: the public one and the private one, from the flags when given,
/// else from serve.json's `public`.
fn guarded_listeners(args: &Args, config: &ServeConfig) -> Vec<(SocketAddr, PathBuf, auth::Open)> {
    let token_file = args
        .token_file
        .clone()
        .or_else(|| config.public.as_ref().map(|p| p.token_file.clone()));
    let Some(token_file) = token_file else {
        return Vec::new();
    };
    let from_file = config.public.as_ref();
    let public = args.public_listen.or(from_file.map(|p| p.listen));
    let private = args.private_listen.or(from_file.and_then(|p| p.private_listen));
    [(public, auth::Open::Liveness), (private, auth::Open::Health)]
        .into_iter()
        .filter_map(|(a, open)| a.map(|a| (a, token_file.clone(), open)))
        .collect()
}

/// Reads the settings, picks the device and binds the listener; `events` gets reload lines.
fn prepare(args: &Args, events: Option<tokio::sync::mpsc::UnboundedSender<String>>) -> Result<Prepared, ServeError> {
    let release = args
        .release
        .as_deref()
        .ok_or_else(|| ServeError::Setting("--release is required".into()))?;
    let config = ServeConfig::of_release(release)?;
    let (listen, limits) = args.settings(&config)?;
    let selected = device::select(args.device)?;
    let workers = match limits.workers {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        n => n,
    };
    let metrics = Metrics::new();
    let pool = Pool::new(workers, limits.queue, metrics.queue_depth.clone());
    let verification = if args.allow_unverified {
        release::Verification::Optional
    } else {
        release::Verification::Required
    };
    config
        .monitor
        .check()
        .map_err(|(field, why)| ServeError::Setting(format!("{field}: {why}")))?;
    let evidence = Evidence::open(args.state_dir.as_deref(), config.monitor.clone(), watch::now())?;
    let parts = Parts {
        limits,
        metrics,
        pool,
        watch: Watch::new(evidence, config.monitor.slo),
    };
    let service = Service::new(release, selected.device, verification, parts, events);
    let (listener, address) = bind(listen, None)?;
    let mut listeners = vec![listener];
    let (mut public, mut private) = (None, None);
    for (a, token_file, open) in guarded_listeners(args, &config) {
        let (l, bound) = bind(a, Some((auth::Token::read(&token_file)?, open)))?;
        listeners.push(l);
        match open {
            auth::Open::Liveness => public = Some(bound),
            auth::Open::Health => private = Some(bound),
        }
    }
    Ok(Prepared {
        service: Arc::new(service),
        listeners,
        address,
        public,
        private,
        device: selected.kind.as_str(),
    })
}

/// Serves on the listener: answers at once (ready is 503 while loading), loads the release, then
/// serves until `stop` resolves; then ready goes 503 and in-flight requests get the drain
/// timeout to finish. `loaded` hears how the first load went. Returns whether all drained.
async fn serve_until(
    service: Arc<Service>,
    listeners: Vec<Listener>,
    stop: impl Future<Output = ()>,
    loaded: impl FnOnce(bool),
) -> Result<bool, ServeError> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for l in listeners {
        let socket = tokio::net::TcpListener::from_std(l.socket).map_err(io("listening"))?;
        let router = match l.token {
            Some((token, open)) => auth::require(app::router(Arc::clone(&service)), token, open),
            None => app::router(Arc::clone(&service)),
        };
        let header_timeout = Duration::from_secs_f64(service.limits.header_timeout_s);
        servers.push(tokio::spawn(listen::serve(socket, router, header_timeout, rx.clone())));
    }
    // Every listener's server, ended together (an error only if one panicked).
    let mut server = tokio::spawn(async move {
        for s in servers {
            s.await.map_err(|e| io("serving")(std::io::Error::other(e)))?;
        }
        Ok::<(), ServeError>(())
    });
    let joined = |r: Result<Result<(), ServeError>, tokio::task::JoinError>| match r {
        Ok(r) => r,
        Err(e) => Err(io("serving")(std::io::Error::other(e))),
    };
    let first = service.reload().await;
    loaded(first.is_ok());
    if let Err(e) = first {
        let _ = tx.send(true);
        let _ = server.await;
        return Err(e);
    }
    tokio::select! {
        () = stop => {}
        ended = &mut server => return joined(ended).map(|()| true),
    }
    service.drain();
    let _ = tx.send(true);
    let drain = Duration::from_secs_f64(service.limits.drain_timeout_s);
    match tokio::time::timeout(drain, server).await {
        Ok(ended) => joined(ended).map(|()| true),
        Err(_) => Ok(false),
    }
}

/// Loads the release and serves it until SIGINT or SIGTERM (SIGHUP reloads); in-flight requests
/// finish first, up to the drain timeout. With `--admin`, sends that command instead.
pub fn run(args: &Args, runner: &Runner) -> Result<Served, ServeError> {
    if let (Some(command), Some(socket)) = (args.admin, &args.admin_socket) {
        let (ok, answer) = admin::send(socket, command).map_err(io("asking the admin socket"))?;
        if !ok {
            return Err(ServeError::Refused {
                command: command.as_str(),
                answer,
            });
        }
        return Ok(Served::Admin { answer });
    }
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let p = prepare(args, Some(tx))?;
    let (service, address) = (Arc::clone(&p.service), p.address);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io("starting the runtime"))?;
    let drained = rt.block_on(async {
        runner.info(&format!(
            "loading {} on {} (http://{address} answers; ready is 503 until it is loaded)",
            service.source().display(),
            p.device
        ))?;
        if let Some(socket) = &args.admin_socket {
            admin::listen(socket, Arc::clone(&service)).map_err(io("opening the admin socket"))?;
        }
        signals::reload_on_hangup(Arc::clone(&service));
        let ready = Arc::clone(&service);
        if let Some(private) = p.private {
            runner.info(&format!(
                "private listener on http://{private} (health without the token, the rest with it)"
            ))?;
        }
        if let Some(public) = p.public {
            runner.info(&format!("public listener on http://{public} (bearer token required)"))?;
        }
        let serving = serve_until(Arc::clone(&service), p.listeners, signals::terminated(), move |ok| {
            if ok {
                ready.event(describe(&ready, address));
                systemd::notify("READY=1");
                systemd::watchdog();
            }
        });
        tokio::pin!(serving);
        loop {
            tokio::select! {
                ended = &mut serving => {
                    while let Ok(line) = events.try_recv() {
                        runner.info(&line)?;
                    }
                    break ended;
                }
                Some(line) = events.recv() => runner.info(&line)?,
            }
        }
    })?;
    Ok(Served::Stopped {
        release: service.current().map(|r| r.id.clone()).unwrap_or_default(),
        address,
        drained,
    })
}

/// A line about the release served and where.
fn describe(service: &Service, address: SocketAddr) -> String {
    let Some(r) = service.current() else {
        return format!("listening on http://{address}");
    };
    let models: Vec<String> = r
        .models()
        .map(|m| format!("{} (bundle {})", m.name, m.version))
        .collect();
    format!(
        "release {}: models {}, image types {}; {} workers, queue {}\nlistening on http://{address}",
        r.id,
        models.join(", "),
        r.types().join(", "),
        service.pool.workers(),
        service.limits.queue
    )
}

/// Runs the service and concludes as every stage does.
pub fn execute(args: &Args, runner: &Runner) -> Exit {
    conclude(runner, run(args, runner), |done| match done {
        Served::Stopped {
            release,
            address,
            drained,
        } => (
            format!(
                "served release {release} on http://{address}{}",
                if *drained {
                    ""
                } else {
                    "; stopped before every in-flight request finished (drain timeout)"
                }
            ),
            Exit::Success,
        ),
        Served::Admin { answer } => (answer.clone(), Exit::Success),
    })
}
