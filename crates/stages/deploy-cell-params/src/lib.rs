//! The `deploy-cell-params` stage: validate the cell-parameter files, then deploy them — and,
//! optionally, model bundles and evaluation results — to a server over SSH (or to a local folder)
//! as an atomic, verified, incremental release; also `rollback` and `list`.
//!
//! Inputs (flags, or `INPUT_*` in a workflow), as in the paper's deploy.yml and appleboy's actions:
//! `host`, `port`, `username`, `key`, `passphrase`, `known-hosts`, `fingerprint`, `target`,
//! `source`, `include`, `keep-releases`, `health-check`, `service-socket`, `command` (`deploy`, `rollback`, `list`),
//! `hosts-file`. Several targets (one per line, or a hosts file) make a fleet deploy, all or
//! nothing ([`cellops_deploy::fleet`]).
//! Outputs: `release-id`, `path`, `files-sent`, `bytes-sent` (summed over a fleet's hosts), `hosts`.
//!
//! Files keep their paths relative to `--root` (default: the working directory, the repository
//! root in a workflow): `cell-params/he.yaml` is `releases/<id>/cell-params/he.yaml` on the server.

pub mod registry;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cellops_actions::{ActionsError, Annotation, Exit, Level, Runner, StageFailure, conclude, progress::Progress};
use cellops_deploy::flags::{SshArgs, split_list};
use cellops_deploy::fleet::{self, FleetError, FleetOutcome, Host};
use cellops_deploy::release::{self, DeployConfig, DeployError, Outcome, Provenance, ReleaseInfo, SourceFile};
use cellops_deploy::remote::{LocalRemote, Remote, sha256_of};
use cellops_deploy::ssh::{self, ConnectError, HostCheck, SshOptions};
use cellops_deploy::target::{self, Target, TargetError};
use cellops_formats::FileError;
use cellops_formats::bundle;
use cellops_formats::links::{Entry, Tree};
use cellops_formats::params::{CellParams, ParamsError};
use cellops_formats::release::LockOwner;

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Command {
    /// Validate and deploy a new release.
    Deploy,
    /// Switch `current` back to the previous release (or `--to`).
    Rollback,
    /// List the releases on the server.
    List,
    /// Forward a local port to the service on the server's loopback through the SSH connection
    /// (the pinned host key as for a deploy) until stopped: `--local`, `--service-port`.
    Tunnel,
    /// Registry: every move of every alias, from the audit log.
    History,
    /// Registry: the release `--alias` points to, now or `--at` a time.
    Which,
    /// Registry: point `--alias` at `--release`, through the promotion gates.
    Promote,
    /// Registry: check the audit log's hash chain and head.
    Verify,
}

/// Command-line flags (and action inputs) of `deploy-cell-params`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Deploy")]
pub struct Args {
    /// What to do (also --command).
    #[arg(value_enum, value_name = "COMMAND")]
    pub action: Option<Command>,
    /// What to do [default: deploy].
    #[arg(long, value_enum)]
    pub command: Option<Command>,
    /// Where to: ssh://user@host:port/base/path, file:///path, or /base/path on --host. Given
    /// more than once (or one per line), a deploy goes to every target, all or nothing: staged
    /// on all, then switched on all, and switched back everywhere if any host fails.
    #[arg(long, value_name = "URL", required_unless_present = "hosts_file")]
    pub target: Vec<String>,
    /// A file of deploy targets, one per line (`#` comments): what the Terraform output
    /// `deploy_targets` writes for a fleet. Adds to --target.
    #[arg(long, value_name = "FILE")]
    pub hosts_file: Option<PathBuf>,
    /// How to reach the server.
    #[command(flatten)]
    pub ssh: SshArgs,
    /// Folder whose relative paths the release keeps (`--source` and `--include` are relative to
    /// it).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub root: PathBuf,
    /// Folder of cell-parameter files to deploy (validated first), under --root.
    #[arg(long, value_name = "DIR", default_value = "cell-params")]
    pub source: PathBuf,
    /// More files to deploy: glob patterns relative to the working directory (e.g.
    /// `models/unet/bundle/**`), separated by newlines or commas.
    #[arg(long, value_name = "GLOBS")]
    pub include: Option<String>,
    /// Releases kept on the server (older ones are pruned; the current one always stays).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub keep_releases: usize,
    /// Command run on the server in the new release's folder after the switch; if it fails,
    /// `current` goes back to the previous release and the deploy fails.
    #[arg(long, value_name = "SHELL")]
    pub health_check: Option<String>,
    /// The admin socket of `cellops serve` on the server (e.g. /run/cellops-serve/admin.sock):
    /// after the switch the service is asked to follow and must answer, within the health
    /// timeout, that it serves the new release (verified, golden check passed), else `current`
    /// goes back and the deploy fails with the service's reason. A rollback asks it too.
    #[arg(long, value_name = "PATH")]
    pub service_socket: Option<String>,
    /// Health check time limit.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub health_timeout: u64,
    /// A lock older than this is taken over.
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    pub lock_timeout: u64,
    /// Tunnel: the local address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub local: std::net::SocketAddr,
    /// Tunnel: the service's port on the server's loopback.
    #[arg(long, value_name = "PORT", default_value_t = 8080)]
    pub service_port: u16,
    /// Rollback: the release to switch to [default: the one before the current].
    #[arg(long, value_name = "RELEASE")]
    pub to: Option<String>,
    /// Registry: the alias (`production` is `current`; others live under aliases/).
    #[arg(long, value_name = "NAME", default_value = "production")]
    pub alias: String,
    /// Registry `promote`: the release to point the alias at.
    #[arg(long, value_name = "RELEASE")]
    pub release: Option<String>,
    /// Registry `which`: the time to look at (RFC 3339, UTC, e.g. 2026-12-01T09:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Registry `promote`: why (recorded in the log; required with --force).
    #[arg(long)]
    pub reason: Option<String>,
    /// Override failing promotion gates (with --reason; the log records both); a deploy also
    /// makes a new release when nothing changed (else it sends nothing and keeps `current`).
    #[arg(long)]
    pub force: bool,
    /// Registry `promote`: the largest drop in a bundle's test F1@0.5 against production's
    /// bundle at the same path that passes the regression gate.
    #[arg(long, value_name = "F1", default_value_t = 0.01)]
    pub max_regression: f64,
    /// Registry `promote`: mirror the move as a GTO-style tag `cellops#<alias>#<n>` on the
    /// release's commit in this git repository (push it with `git push --tags`).
    #[arg(long, value_name = "DIR")]
    pub tag_repo: Option<PathBuf>,
}

impl Args {
    /// The flags at their defaults with the target given, as the `cellops pipeline` runs the stage
    /// (fields are then set by type).
    pub fn new(target: &str) -> Result<Self, clap::Error> {
        cellops_actions::inputs::defaults(&[("target", target.as_ref())])
    }
}

/// Errors of the stage.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// Flags contradict each other or are missing.
    #[error("{0}")]
    Usage(String),
    /// The target cannot be parsed.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// Parameter files are invalid (each one is annotated).
    #[error("{} invalid parameter file(s); nothing was uploaded", .0.len())]
    Invalid(Vec<ParamsError>),
    /// A bundle's `bundle.json` is not a readable bundle header.
    #[error(transparent)]
    Bundle(#[from] FileError),
    /// A local file could not be read.
    #[error("{path}: {message}")]
    Local {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// No connection.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The deploy failed.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// The deploy to a fleet failed (no host keeps the new release).
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// The tunnel could not open or stopped.
    #[error(transparent)]
    Tunnel(#[from] cellops_deploy::tunnel::TunnelError),
    /// The Actions runtime failed.
    #[error(transparent)]
    Actions(#[from] ActionsError),
}

impl StageFailure for StageError {
    fn exit(&self) -> Exit {
        match self {
            StageError::Usage(_) | StageError::Target(_) | StageError::Invalid(_) | StageError::Bundle(_) => {
                Exit::Usage
            }
            StageError::Actions(_) | StageError::Local { .. } => Exit::Error,
            _ => Exit::Failure,
        }
    }

    fn annotation(&self) -> Annotation {
        let title = match self {
            StageError::Connect(ConnectError::HostKeyMismatch { .. }) => "host key mismatch",
            StageError::Connect(ConnectError::HostKeyUnknown { .. }) => "unknown host key",
            StageError::Connect(_) => "cannot connect",
            StageError::Tunnel(_) => "tunnel failed",
            StageError::Deploy(DeployError::HealthCheck { .. }) => "health check failed, rolled back",
            StageError::Deploy(DeployError::Locked { .. }) => "deploy locked",
            StageError::Fleet(_) => "fleet deploy failed, no host switched",
            StageError::Invalid(_) => "invalid cell parameters",
            StageError::Bundle(_) => "invalid model bundle",
            _ => "deploy-cell-params",
        };
        Annotation::new(Level::Error, self.to_string()).title(title)
    }
}

/// What a run did.
#[derive(Debug)]
pub enum Done {
    /// A deploy.
    Deployed(Box<Outcome>, String),
    /// A deploy to a fleet.
    Fleet(Box<FleetOutcome>),
    /// A rollback: from, to.
    RolledBack(Option<String>, String, String),
    /// The releases.
    Listed(Vec<ReleaseInfo>, String),
    /// A tunnel that stopped: its local address.
    Tunnelled(std::net::SocketAddr),
    /// A registry command: what it says.
    Registry(String),
}

fn rel_of(path: &Path) -> String {
    path.components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// What [`walk`] found: the files, and the entries it refused (links out of the tree).
#[derive(Default)]
struct Walked {
    files: Vec<PathBuf>,
    refused: Vec<FileError>,
    seen: Vec<PathBuf>,
}

/// The files under `dir` (hidden entries skipped), in name order. Entries are checked against
/// `tree`: one that resolves outside it is refused (never read or walked), a folder reached twice
/// through links is walked once.
fn walk(tree: &Tree, dir: &Path, out: &mut Walked) -> Result<(), StageError> {
    let listed = std::fs::read_dir(dir).and_then(|rd| rd.collect::<Result<Vec<_>, _>>());
    let mut entries = listed.map_err(|e| local(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let p = e.path();
        match tree.check(&p) {
            Ok(Entry::Folder) => {
                // A folder reached twice (through a link) is walked once: no cycles.
                let real = std::fs::canonicalize(&p).map_err(|e| local(&p, e))?;
                if !out.seen.contains(&real) {
                    out.seen.push(real);
                    walk(tree, &p, out)?;
                }
            }
            Ok(Entry::File) => out.files.push(p),
            Err(e) => out.refused.push(e),
        }
    }
    Ok(())
}

/// A file of the tree that cannot be deployed (a link out of it), as [`StageError::Local`].
fn refused(e: FileError) -> StageError {
    StageError::Local {
        path: e.path,
        message: e.message,
    }
}

fn local(path: &Path, e: impl std::fmt::Display) -> StageError {
    StageError::Local {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Collects and validates what to deploy: the source folder's files (parameter files must be
/// valid) and the include globs; returns the files and the bundle ids found.
pub fn collect(args: &Args, runner: &Runner) -> Result<(Vec<SourceFile>, Vec<String>), StageError> {
    let mut paths = Vec::new();
    let root = &args.root;
    let source = if root == Path::new(".") {
        args.source.clone()
    } else {
        root.join(&args.source)
    };
    if !source.is_dir() {
        return Err(StageError::Usage(format!(
            "source {} is not a folder (the cell-parameter files to deploy)",
            source.display()
        )));
    }
    let tree = Tree::new(root).map_err(refused)?;
    let mut walked = Walked::default();
    walk(&tree, &source, &mut walked)?;
    if let Some(e) = walked.refused.into_iter().next() {
        return Err(refused(e));
    }
    paths.extend(walked.files);
    let rel_to_root = |p: &Path| rel_of(p.strip_prefix(root).unwrap_or(p));
    let mut invalid = Vec::new();
    for p in &paths {
        if p.extension().is_some_and(|x| x == "yaml" || x == "yml")
            && let Err(e) = CellParams::from_file(p)
        {
            // Relative to the root: the repository's own path, where GitHub shows the annotation.
            let shown = rel_of(e.path.strip_prefix(root).unwrap_or(&e.path));
            runner.annotate(
                &Annotation::new(Level::Error, e.message.clone())
                    .title("invalid cell parameters")
                    .file(shown)
                    .at(e.line, e.column),
            )?;
            invalid.push(e);
        }
    }
    if !invalid.is_empty() {
        return Err(StageError::Invalid(invalid));
    }
    if let Some(globs) = &args.include {
        let mut builder = globset::GlobSetBuilder::new();
        let patterns = split_list(globs);
        for g in &patterns {
            if Path::new(g).is_absolute() || g.contains("..") {
                return Err(StageError::Usage(format!(
                    "include pattern `{g}` must be relative to the root folder ({}), without `..`",
                    root.display()
                )));
            }
            builder.add(
                globset::GlobBuilder::new(g)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| StageError::Usage(format!("include pattern `{g}`: {e}")))?,
            );
        }
        let set = builder
            .build()
            .map_err(|e| StageError::Usage(format!("include patterns: {e}")))?;
        let mut all = Walked::default();
        walk(&tree, root, &mut all)?;
        // Links out of the tree matter where a pattern picks them (a folder: anything under it).
        if let Some(e) = all.refused.into_iter().find(|e| {
            let rel = rel_to_root(&e.path);
            set.is_match(&rel) || set.is_match(format!("{rel}/x"))
        }) {
            return Err(refused(e));
        }
        let before = paths.len();
        for p in all.files {
            let rel = rel_to_root(&p);
            if set.is_match(&rel) && !paths.iter().any(|q| rel_to_root(q) == rel) {
                paths.push(p);
            }
        }
        if paths.len() == before {
            runner.annotate(&Annotation::new(
                Level::Warning,
                format!("include `{globs}` matched no files"),
            ))?;
        }
    }
    let mut files = Vec::new();
    let mut bundles = Vec::new();
    for p in paths {
        let f = std::fs::File::open(&p).map_err(|e| local(&p, e))?;
        let (size, sha256) = sha256_of(f).map_err(|e| local(&p, e))?;
        let rel = rel_to_root(&p);
        release::check_name(&rel)?;
        if p.file_name().is_some_and(|n| n == bundle::METADATA) {
            bundles.push(bundle::read_header(&p)?.id);
        }
        files.push(SourceFile {
            rel,
            path: p,
            size,
            sha256,
        });
    }
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok((files, bundles))
}

/// The SSH options of the target's `user`, `host` and `port` (each from the URL or its input) and
/// the credentials and host check the inputs give; a warning when host keys go unchecked.
fn ssh_options(
    args: &Args,
    runner: &Runner,
    user: Option<String>,
    host: Option<String>,
    port: Option<u16>,
) -> Result<SshOptions, StageError> {
    let opts = args.ssh.options(user, host, port).map_err(StageError::Usage)?;
    if matches!(opts.host_check, HostCheck::Insecure) {
        runner.annotate(
            &Annotation::new(
                Level::Warning,
                "host key verification is OFF (insecure-skip-host-key-check): anyone between this \
                     runner and the server can impersonate it and read the deploy; pin known-hosts or fingerprint",
            )
            .title("INSECURE: host key not verified"),
        )?;
    }
    Ok(opts)
}

/// Every target: each line of each --target and of --hosts-file, each once.
pub fn targets(args: &Args) -> Result<Vec<String>, StageError> {
    Ok(target::list(&args.target, args.hosts_file.as_deref())?)
}

/// The one target of a command that takes one.
fn single_target(args: &Args) -> Result<String, StageError> {
    let mut all = targets(args)?;
    if all.len() > 1 {
        return Err(StageError::Usage(format!(
            "{} targets given; every command but tunnel takes several, a tunnel goes to one host",
            all.len()
        )));
    }
    Ok(all.remove(0))
}

/// Connects to the target (SSH) or opens the folder (`file://`); returns it and its base path.
pub fn open(args: &Args, runner: &Runner) -> Result<(Box<dyn Remote + Send>, String), StageError> {
    open_target(args, runner, &single_target(args)?)
}

/// Connects to every target of a fleet, in order.
pub(crate) fn open_hosts(args: &Args, runner: &Runner, targets: &[String]) -> Result<Vec<Host>, StageError> {
    targets
        .iter()
        .map(|t| {
            let (remote, base) = open_target(args, runner, t)?;
            Ok(Host {
                name: t.clone(),
                remote,
                base,
            })
        })
        .collect()
}

/// Connects to `target` with the SSH flags of `args`.
fn open_target(args: &Args, runner: &Runner, target: &str) -> Result<(Box<dyn Remote + Send>, String), StageError> {
    match target::parse(target)? {
        Target::File { base } => {
            let base = if base.is_absolute() {
                base
            } else {
                std::env::current_dir().map_err(|e| local(&base, e))?.join(base)
            };
            Ok((Box::new(LocalRemote), base.display().to_string()))
        }
        Target::Ssh { user, host, port, base } => {
            let opts = ssh_options(args, runner, user, host, port)?;
            let remote = ssh::connect(&opts)?;
            Ok((Box::new(remote), base))
        }
    }
}

pub(crate) fn provenance(bundles: Vec<String>) -> Provenance {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let run = match (var("GITHUB_SERVER_URL"), var("GITHUB_REPOSITORY"), var("GITHUB_RUN_ID")) {
        (Some(s), Some(r), Some(id)) => Some(format!("{s}/{r}/actions/runs/{id}")),
        _ => None,
    };
    let git = cellops_actions::git_commit();
    Provenance {
        git_sha: git,
        actor: var("GITHUB_ACTOR").or_else(|| var("USER")),
        run,
        bundle_ids: bundles,
        gates: Vec::new(),
        reason: None,
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// Runs the stage and reports through `runner`.
pub fn run(args: &Args, runner: &Runner) -> Result<Done, StageError> {
    for secret in args.ssh.secrets() {
        for line in secret.lines().map(str::trim).filter(|l| l.len() >= 4) {
            runner.mask(line)?;
        }
    }
    let command = match (args.action, args.command) {
        (Some(a), Some(b)) if a != b => {
            return Err(StageError::Usage(format!(
                "command given twice: `{a:?}` and --command `{b:?}`"
            )));
        }
        (a, b) => a.or(b).unwrap_or(Command::Deploy),
    };
    let cfg = DeployConfig {
        keep_releases: args.keep_releases.max(1),
        health_check: args.health_check.clone().filter(|h| !h.trim().is_empty()),
        health_timeout: Duration::from_secs(args.health_timeout.max(1)),
        service_socket: args.service_socket.clone().filter(|s| !s.trim().is_empty()),
        lock_stale_after: Duration::from_secs(args.lock_timeout),
        provenance: Provenance::default(),
        force: args.force,
    };
    if matches!(
        command,
        Command::List | Command::History | Command::Which | Command::Verify
    ) {
        let all = targets(args)?;
        if all.len() > 1 {
            return each_host(args, runner, command, &all);
        }
    }
    match command {
        Command::Deploy => run_deploy(args, runner, cfg),
        Command::Rollback => run_rollback(args, runner, cfg),
        Command::List => run_list(args, runner),
        Command::Tunnel => run_tunnel(args, runner),
        Command::History => registry::run_history(args, runner),
        Command::Which => registry::run_which(args, runner),
        Command::Promote => registry::run_promote(args, runner, cfg),
        Command::Verify => registry::run_verify(args, runner),
    }
}

/// A read-only registry command (`list`, `history`, `which`, `verify`) on every host of a fleet,
/// one after another, each in its own section of the log and summary; the first failure stops.
fn each_host(args: &Args, runner: &Runner, command: Command, hosts: &[String]) -> Result<Done, StageError> {
    let mut lines = Vec::with_capacity(hosts.len());
    for host in hosts {
        let one = Args {
            target: vec![host.clone()],
            hosts_file: None,
            action: Some(command),
            command: None,
            ..args.clone()
        };
        runner.append_summary(&format!("### {host}\n\n"))?;
        let _group = runner.group(host)?;
        let done = match command {
            Command::List => run_list(&one, runner)?,
            Command::History => registry::run_history(&one, runner)?,
            Command::Which => registry::run_which(&one, runner)?,
            _ => registry::run_verify(&one, runner)?,
        };
        lines.push(format!("{host}: {}", headline(&done)));
    }
    Ok(Done::Registry(lines.join("\n")))
}

/// `tunnel`: forwards `--local` to `127.0.0.1:<service-port>` on the server until stopped.
fn run_tunnel(args: &Args, runner: &Runner) -> Result<Done, StageError> {
    let Target::Ssh { user, host, port, .. } = target::parse(&single_target(args)?)? else {
        return Err(StageError::Usage("a tunnel needs an ssh:// target".into()));
    };
    let opts = ssh_options(args, runner, user, host, port)?;
    let remote = ssh::connect(&opts)?;
    let t = cellops_deploy::tunnel::open(remote, args.local, "127.0.0.1", args.service_port)?;
    let local = t.local;
    runner.set_output("url", &format!("http://{local}"))?;
    runner.info(&format!(
        "forwarding http://{local} to 127.0.0.1:{} on {}; Ctrl-C stops",
        args.service_port, opts.host
    ))?;
    t.wait()?;
    Ok(Done::Tunnelled(local))
}

/// `deploy`: validates and collects the files, deploys them as a new release and reports it.
fn run_deploy(args: &Args, runner: &Runner, cfg: DeployConfig) -> Result<Done, StageError> {
    // Validate before touching the network: invalid parameters are never uploaded.
    let (files, bundles) = collect(args, runner)?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    runner.info(&format!(
        "{} files ({}) to deploy, parameter files valid",
        files.len(),
        human_bytes(total)
    ))?;
    let all = targets(args)?;
    if all.len() > 1 {
        return run_fleet(args, runner, cfg, &all, files, bundles);
    }
    let (mut remote, base) = open(args, runner)?;
    let cfg = gated(args, runner, cfg, remote.as_mut(), &base, &files, bundles)?;
    let progress = Progress::new(runner, total, "bytes");
    let outcome = release::deploy(remote.as_mut(), &base, &files, &cfg, &mut |k| progress.inc_by(k));
    progress.finish();
    let outcome = outcome?;
    if let Some(lock) = &outcome.broke_stale_lock {
        stale_lock_taken(runner, lock, "")?;
    }
    runner.set_output("release-id", &outcome.id)?;
    runner.set_output("path", &outcome.path)?;
    runner.set_output("files-sent", &outcome.files_sent.to_string())?;
    runner.set_output("bytes-sent", &outcome.bytes_sent.to_string())?;
    runner.set_output("previous", outcome.previous.as_deref().unwrap_or(""))?;
    let where_ = format!("{}{}", remote.describe(), base);
    runner.append_summary(&summary(&outcome, &where_))?;
    Ok(Done::Deployed(Box::new(outcome), where_))
}

/// Warns that a stale deploy lock (`on` names the host of a fleet) was taken over.
fn stale_lock_taken(runner: &Runner, lock: &LockOwner, on: &str) -> Result<(), StageError> {
    runner.annotate(&Annotation::new(
        Level::Warning,
        format!(
            "took over a stale deploy lock{on} held by {} since {}",
            lock.actor.as_deref().unwrap_or(&lock.host),
            lock.since_utc
        ),
    ))?;
    Ok(())
}

/// `cfg` with who deploys what (the bundles) and the promotion gates of the models it changes,
/// judged against the releases on `remote` (a fleet's first host): a failing gate stops here.
fn gated(
    args: &Args,
    runner: &Runner,
    cfg: DeployConfig,
    remote: &mut dyn Remote,
    base: &str,
    files: &[SourceFile],
    bundles: Vec<String>,
) -> Result<DeployConfig, StageError> {
    let gates = registry::deploy_gates(remote, base, files, args.max_regression);
    registry::judge_gates(runner, &gates, args)?;
    Ok(DeployConfig {
        provenance: Provenance {
            gates,
            reason: args.reason.clone().filter(|_| args.force),
            ..provenance(bundles)
        },
        ..cfg
    })
}

/// A deploy to several targets, all or nothing ([`fleet::deploy`]); the promotion gates are judged
/// against the first host's releases.
fn run_fleet(
    args: &Args,
    runner: &Runner,
    cfg: DeployConfig,
    targets: &[String],
    files: Vec<SourceFile>,
    bundles: Vec<String>,
) -> Result<Done, StageError> {
    let mut hosts = open_hosts(args, runner, targets)?;
    runner.info(&format!("deploying to {} hosts, all or nothing", hosts.len()))?;
    let first = &mut hosts[0];
    let cfg = gated(args, runner, cfg, first.remote.as_mut(), &first.base, &files, bundles)?;
    let total: u64 = files.iter().map(|f| f.size).sum::<u64>() * hosts.len() as u64;
    let progress = Progress::new(runner, total, "bytes");
    let mut lines = Vec::new();
    let outcome = fleet::deploy(&mut hosts, &files, &cfg, &|k| progress.inc_by(k), &mut |e| {
        lines.push(match e {
            fleet::Event::Staged { host, bytes_sent } => format!("staged on {host} ({})", human_bytes(bytes_sent)),
            fleet::Event::AllStaged { id } => format!("{id} staged on every host; switching"),
            fleet::Event::Switched { host } => format!("{host} switched and healthy"),
        })
    });
    progress.finish();
    for l in &lines {
        runner.info(l)?;
    }
    let outcome = outcome?;
    for (host, o) in &outcome.hosts {
        if let Some(lock) = &o.broke_stale_lock {
            stale_lock_taken(runner, lock, &format!(" on {host}"))?;
        }
    }
    let sum = |f: fn(&Outcome) -> u64| outcome.hosts.iter().map(|(_, o)| f(o)).sum::<u64>().to_string();
    let mut previous: Vec<&str> = outcome
        .hosts
        .iter()
        .filter_map(|(_, o)| o.previous.as_deref())
        .collect();
    previous.sort_unstable();
    previous.dedup();
    runner.set_output("release-id", &outcome.id)?;
    runner.set_output("path", &outcome.hosts[0].1.path)?;
    runner.set_output("files-sent", &sum(|o| o.files_sent as u64))?;
    runner.set_output("bytes-sent", &sum(|o| o.bytes_sent))?;
    runner.set_output("previous", &previous.join(","))?;
    runner.set_output("hosts", &outcome.hosts.len().to_string())?;
    runner.append_summary(&fleet_summary(&outcome))?;
    Ok(Done::Fleet(Box::new(outcome)))
}

fn fleet_summary(f: &FleetOutcome) -> String {
    let what = if f.unchanged { "Unchanged" } else { "Deployed" };
    let mut md = format!(
        "## {what}: release `{}` on {} hosts\n\n| host | previous | files sent | bytes sent | health |\n|---|---|---|---|---|\n",
        f.id,
        f.hosts.len()
    );
    for (host, o) in &f.hosts {
        let _ = writeln!(
            md,
            "| `{host}` | {} | {} | {} | {} |",
            o.previous.as_deref().unwrap_or("–"),
            o.files_sent,
            human_bytes(o.bytes_sent),
            o.health
                .as_ref()
                .map_or("–", |h| if h.success() { "passed" } else { "failed" })
        );
    }
    md
}

/// `rollback`: points `current` back at an earlier release and reports it.
fn run_rollback(args: &Args, runner: &Runner, cfg: DeployConfig) -> Result<Done, StageError> {
    let all = targets(args)?;
    if all.len() > 1 {
        return run_fleet_rollback(args, runner, cfg, &all);
    }
    let (mut remote, base) = open(args, runner)?;
    let cfg = DeployConfig {
        provenance: provenance(Vec::new()),
        ..cfg
    };
    let (from, to) = release::rollback(remote.as_mut(), &base, args.to.as_deref(), &cfg)?;
    let path = format!("{base}/releases/{to}");
    runner.set_output("release-id", &to)?;
    runner.set_output("path", &path)?;
    runner.set_output("files-sent", "0")?;
    runner.set_output("bytes-sent", "0")?;
    runner.set_output("previous", from.as_deref().unwrap_or(""))?;
    runner.append_summary(&format!(
        "## Rolled back\n\n`current` on {}{base}: {} → **{to}**\n",
        remote.describe(),
        from.as_deref().unwrap_or("(none)")
    ))?;
    Ok(Done::RolledBack(from, to, format!("{}{base}", remote.describe())))
}

/// `rollback` on every host of a fleet, all or nothing ([`fleet::rollback`]).
fn run_fleet_rollback(args: &Args, runner: &Runner, cfg: DeployConfig, targets: &[String]) -> Result<Done, StageError> {
    let cfg = DeployConfig {
        provenance: provenance(Vec::new()),
        ..cfg
    };
    let mut hosts = open_hosts(args, runner, targets)?;
    let moved = fleet::rollback(&mut hosts, args.to.as_deref(), &cfg)?;
    let to = moved.first().map(|(_, _, to)| to.clone()).unwrap_or_default();
    let mut md = format!(
        "## Rolled back {} hosts to **{to}**

| host | from |
|---|---|
",
        moved.len()
    );
    for (host, from, _) in &moved {
        let _ = writeln!(md, "| `{host}` | {} |", from.as_deref().unwrap_or("(none)"));
    }
    runner.set_output("release-id", &to)?;
    runner.set_output("hosts", &moved.len().to_string())?;
    runner.append_summary(&md)?;
    let from = moved.first().and_then(|(_, f, _)| f.clone());
    Ok(Done::RolledBack(from, to, format!("{} hosts", moved.len())))
}

/// `list`: prints the releases, newest first, and sets the outputs to the current one.
fn run_list(args: &Args, runner: &Runner) -> Result<Done, StageError> {
    let (mut remote, base) = open(args, runner)?;
    let releases = release::list(remote.as_mut(), &base)?;
    let aliases = cellops_deploy::registry::aliases(remote.as_mut(), &base)?;
    let names = |id: &str| -> String {
        let n: Vec<&str> = aliases
            .iter()
            .filter(|(_, r)| r.as_deref() == Some(id))
            .map(|(a, _)| a.as_str())
            .collect();
        n.join(",")
    };
    let mut md = format!(
        "## Releases on {}{base}\n\n| release | current | aliases | created | git | actor | files |\n|---|---|---|---|---|---|---|\n",
        remote.describe()
    );
    for r in releases.iter().rev() {
        let rec = r.record.as_ref();
        let line = format!(
            "{} {} [{}] {} {} {} files",
            if r.current { "*" } else { " " },
            r.id,
            names(&r.id),
            rec.map_or("?", |x| x.created.as_str()),
            rec.and_then(|x| x.git_sha.as_deref())
                .map_or("-", |g| &g[..7.min(g.len())]),
            rec.map_or(0, |x| x.files.len())
        );
        runner.info(&line)?;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.id,
            if r.current { "✅" } else { "" },
            names(&r.id),
            rec.map_or("?", |x| x.created.as_str()),
            rec.and_then(|x| x.git_sha.as_deref()).unwrap_or(""),
            rec.and_then(|x| x.actor.as_deref()).unwrap_or(""),
            rec.map_or(0, |x| x.files.len())
        );
    }
    if let Some(c) = releases.iter().find(|r| r.current) {
        runner.set_output("release-id", &c.id)?;
        runner.set_output("path", &format!("{base}/releases/{}", c.id))?;
    }
    runner.append_summary(&md)?;
    Ok(Done::Listed(releases, format!("{}{base}", remote.describe())))
}

fn summary(o: &Outcome, target: &str) -> String {
    if o.unchanged {
        return format!(
            "## Unchanged: release `{}`\n\nEvery file equals the current release's on `{target}`: \
             nothing was sent and `current` stays (`force` makes a new release anyway).\n",
            o.id
        );
    }
    let mut md = format!("## Deployed release `{}`\n\n", o.id);
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| target | `{target}` |");
    let _ = writeln!(
        md,
        "| previous | {} |",
        o.previous.as_deref().unwrap_or("(first release)")
    );
    let _ = writeln!(
        md,
        "| files | {} ({} sent, {} unchanged and linked on the server) |",
        o.files_total, o.files_sent, o.files_linked
    );
    let _ = writeln!(md, "| bytes sent | {} |", human_bytes(o.bytes_sent));
    if let Some(h) = &o.health {
        let _ = writeln!(md, "| health check | passed |");
        let out = h.output.trim();
        if !out.is_empty() {
            let _ = writeln!(md, "\n```\n{out}\n```");
        }
    }
    if !o.pruned.is_empty() {
        let _ = writeln!(md, "| pruned | {} |", o.pruned.join(", "));
    }
    md
}

/// The line that ends a successful run.
pub fn headline(d: &Done) -> String {
    match d {
        Done::Deployed(o, target) if o.unchanged => format!(
            "unchanged, release {} on {target}: nothing sent ({} files equal the current release)",
            o.id, o.files_total
        ),
        Done::Deployed(o, target) => format!(
            "deployed release {} to {target}: {} files, {} sent ({} bytes), {} linked",
            o.id, o.files_total, o.files_sent, o.bytes_sent, o.files_linked
        ),
        Done::Fleet(f) if f.unchanged => {
            format!("unchanged, release {} on {} hosts: nothing sent", f.id, f.hosts.len())
        }
        Done::Fleet(f) => format!(
            "deployed release {} to {} hosts, all switched: {} bytes sent",
            f.id,
            f.hosts.len(),
            f.hosts.iter().map(|(_, o)| o.bytes_sent).sum::<u64>()
        ),
        Done::RolledBack(from, to, target) => format!(
            "rolled back {target}: current {} -> {to}",
            from.as_deref().unwrap_or("(none)")
        ),
        Done::Listed(r, target) => format!("{} releases on {target}", r.len()),
        Done::Tunnelled(local) => format!("the tunnel on {local} stopped"),
        Done::Registry(line) => line.clone(),
    }
}

/// Runs a registry command (`cellops registry`): every command but `deploy` and `tunnel`.
pub fn execute_registry(args: &Args, runner: &Runner) -> Exit {
    let command = args.action.or(args.command);
    if matches!(command, None | Some(Command::Deploy | Command::Tunnel)) {
        let e = StageError::Usage(
            "cellops registry takes list, history, which, promote, rollback or verify (deploy with cellops deploy-cell-params)".into(),
        );
        return cellops_actions::conclude::<Done, _>(runner, Err(e), |_| (String::new(), Exit::Success));
    }
    execute(args, runner)
}

/// Runs the stage and ends it the way every stage ends.
pub fn execute(args: &Args, runner: &Runner) -> Exit {
    conclude(runner, run(args, runner), |d| (headline(d), Exit::Success))
}
