//! The `monitor` stage: checks a deployed CellOps service where it runs. Over SSH with the pinned
//! host key (the flags of `deploy-cell-params`), it reads the droplet's `current` link, the last
//! production move in `deployments.jsonl`, free disk and the previous run's heartbeat, then opens a
//! tunnel to the service on the droplet's loopback and reads liveness, readiness, the golden check
//! run again and `/v2/monitor` (drift per image type, SLO burn rates, latency). The findings
//! ([`checks`]) go to a JSON report, the step summary (Markdown) and annotations; the exit code
//! says the worst severity: 0 (ok, info, warnings), 1 (an alert), 2 (usage), 3 (could not run).
//! Every run leaves a heartbeat on the droplet so that the next one can tell that runs were missed.
//!
//! Outputs: `status` (`ok`, `warn`, `alert`), `alerts` (the kinds that alerted, comma-separated),
//! `report` (the JSON report's path).

pub mod alerts;
pub mod checks;
pub mod collect;
pub mod report;

use std::path::PathBuf;
use std::time::Duration;

use cellops_actions::{ActionsError, Annotation, Exit, Level, Runner, StageFailure, conclude};
use cellops_deploy::flags::SshArgs;
use cellops_deploy::remote::{LocalRemote, Remote};
use cellops_deploy::target::{self, Target, TargetError};
use cellops_formats::FileError;
use cellops_formats::monitor::{HEARTBEAT, Heartbeat, MonitorConfig};

use crate::checks::{Context, Finding, Severity};
use crate::collect::{Droplet, Service};
use crate::report::{Checked, Report};

/// Command-line flags (and action inputs) of `monitor`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Monitor")]
pub struct Args {
    /// The deploy's target: ssh://user@host:port/base/path (or file:///path with --service-url).
    /// Given more than once (or one per line), every host of a fleet is checked: one report
    /// with each host's, the worst status deciding the exit code.
    #[arg(long, value_name = "URL", required_unless_present = "hosts_file")]
    pub target: Vec<String>,
    /// A file of targets, one per line (`#` comments): Terraform's `deploy_targets` output.
    #[arg(long, value_name = "FILE")]
    pub hosts_file: Option<PathBuf>,
    /// How to reach the server.
    #[command(flatten)]
    pub ssh: SshArgs,
    /// The service's port on the server's loopback, reached through a tunnel over the SSH
    /// connection.
    #[arg(long, value_name = "PORT", default_value_t = 8080)]
    pub service_port: u16,
    /// Ask the service at this http:// URL instead of through a tunnel (a file:// target, or a
    /// monitor running on the droplet itself).
    #[arg(long, value_name = "URL")]
    pub service_url: Option<String>,
    /// The settings file (monitor.yaml: SLOs, free disk, dead-man hours) [default: the defaults].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the JSON report is written.
    #[arg(long, value_name = "FILE", default_value = "monitor-report.json")]
    pub output: PathBuf,
    /// Seconds each request to the service may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: u64,
    /// Keep one GitHub issue per alert kind: opened on alert, commented when it changes, closed
    /// on recovery (needs a token that may write issues).
    #[arg(long)]
    pub issues: bool,
    /// GitHub token for --issues (secrets.GITHUB_TOKEN); masked in logs [default: $GITHUB_TOKEN].
    #[arg(long, hide_env_values = true)]
    pub token: Option<String>,
    /// The repository of the issues, owner/name [default: $GITHUB_REPOSITORY].
    #[arg(long, value_name = "OWNER/NAME")]
    pub repository: Option<String>,
    /// The REST API's base URL [default: $GITHUB_API_URL, else https://api.github.com].
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
}

impl Args {
    /// The flags at their defaults with the target given (fields are then set by type).
    pub fn new(target: &str) -> Result<Self, clap::Error> {
        cellops_actions::inputs::defaults(&[("target", target.as_ref())])
    }
}

/// Why a run could not be made (a run that found problems is not an error: see [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// Flags contradict each other or are missing.
    #[error("{0}")]
    Usage(String),
    /// The target cannot be parsed.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The settings file cannot be used.
    #[error(transparent)]
    Config(#[from] FileError),
    /// The report cannot be written.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The alert issues could not be kept in step.
    #[error("alert issues: {0}")]
    Github(#[from] cellops_github::GithubError),
    /// The Actions runtime failed.
    #[error(transparent)]
    Actions(#[from] ActionsError),
}

impl StageFailure for StageError {
    fn exit(&self) -> Exit {
        match self {
            StageError::Usage(_) | StageError::Target(_) | StageError::Config(_) => Exit::Usage,
            StageError::Write { .. } | StageError::Github(_) | StageError::Actions(_) => Exit::Error,
        }
    }

    fn annotation(&self) -> Annotation {
        Annotation::new(Level::Error, self.to_string()).title("monitor")
    }
}

/// A droplet that could not be reached over SSH: every droplet fact is that reason.
fn unreachable(why: &str) -> Droplet {
    Droplet {
        current: Err(why.to_owned()),
        last_move: Err(why.to_owned()),
        disk: Err(why.to_owned()),
        heartbeat: Err(why.to_owned()),
    }
}

/// A service that could not be asked: every answer is that reason.
fn unasked(why: &str) -> Service {
    Service {
        live: Err(why.to_owned()),
        ready: Err(why.to_owned()),
        golden: Vec::new(),
        monitor: Err(why.to_owned()),
    }
}

/// The droplet's files (over SSH, or a folder) and its base path, or why it cannot be reached.
type Reached = Result<(Box<dyn Remote>, String), String>;

/// The remote and its base path; inside, `Err` with the reason when it cannot be reached.
fn open(args: &Args, target: &Target) -> Result<Reached, StageError> {
    Ok(match target {
        Target::File { base } => Ok((Box::new(LocalRemote), base.display().to_string())),
        Target::Ssh { user, host, port, base } => {
            let opts = args
                .ssh
                .options(user.clone(), host.clone(), *port)
                .map_err(StageError::Usage)?;
            cellops_deploy::ssh::connect(&opts)
                .map(|r| (Box::new(r) as Box<dyn Remote>, base.clone()))
                .map_err(|e| format!("the droplet cannot be reached over SSH: {e}"))
        }
    })
}

/// Asks the service: at `--service-url`, or through a tunnel over a second SSH connection.
fn ask_service(args: &Args, target: &Target) -> Result<Service, StageError> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    if let Some(url) = &args.service_url {
        return Ok(collect::service(url.trim_end_matches('/'), timeout));
    }
    let Target::Ssh { user, host, port, .. } = target else {
        return Err(StageError::Usage("a file:// target needs --service-url".into()));
    };
    let opts = args
        .ssh
        .options(user.clone(), host.clone(), *port)
        .map_err(StageError::Usage)?;
    let remote = match cellops_deploy::ssh::connect(&opts) {
        Ok(r) => r,
        Err(e) => return Ok(unasked(&format!("no SSH connection for the tunnel: {e}"))),
    };
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    match cellops_deploy::tunnel::open(remote, local, "127.0.0.1", args.service_port) {
        Ok(tunnel) => {
            let service = collect::service(&format!("http://{}", tunnel.local), timeout);
            let _ = tunnel.close();
            Ok(service)
        }
        Err(e) => Ok(unasked(&format!("the service does not answer on the droplet: {e}"))),
    }
}

/// The release before the current one on the droplet (what a rollback would switch to).
fn previous_release(remote: &mut dyn Remote, base: &str, current: Option<&str>) -> Option<String> {
    let releases = cellops_deploy::release::list(remote, base).ok()?;
    let at = releases.iter().position(|r| Some(r.id.as_str()) == current)?;
    at.checked_sub(1).map(|k| releases[k].id.clone())
}

/// The workflow run's URL, in a workflow.
fn run_url() -> Option<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Some(format!(
        "{}/{}/actions/runs/{}",
        var("GITHUB_SERVER_URL")?,
        var("GITHUB_REPOSITORY")?,
        var("GITHUB_RUN_ID")?
    ))
}

/// Leaves this run's heartbeat on the droplet; a finding when it cannot.
fn leave_heartbeat(remote: &mut dyn Remote, base: &str, now: u64, status: Severity) -> Option<Finding> {
    let beat = Heartbeat {
        at: now,
        time: cellops_formats::release::rfc3339(now),
        status: report::status_name(status).to_owned(),
        run: run_url(),
    };
    let path = format!("{}/{HEARTBEAT}", base.trim_end_matches('/'));
    let dir = path.rsplit_once('/').map_or(base.to_owned(), |(d, _)| d.to_owned());
    let bytes = serde_json::to_vec(&beat).unwrap_or_default();
    let written = remote.mkdir_all(&dir).and_then(|()| remote.write(&path, &bytes));
    written.err().map(|e| Finding {
        check: "dead_man",
        subject: None,
        severity: Severity::Warn,
        message: format!("this run's heartbeat could not be written: {e}"),
        action: None,
    })
}

/// Runs the checks on every target and writes the report; the report says what was found.
pub fn run(args: &Args, runner: &Runner) -> Result<Checked, StageError> {
    for secret in args.ssh.secrets() {
        for line in secret.lines().map(str::trim).filter(|l| l.len() >= 4) {
            runner.mask(line)?;
        }
    }
    let config = match &args.config {
        Some(path) => MonitorConfig::read(path)?,
        None => MonitorConfig::default(),
    };
    let targets = target::list(&args.target, args.hosts_file.as_deref())?;
    if targets.len() > 1 && args.service_url.is_some() {
        return Err(StageError::Usage(
            "--service-url names one service: a fleet's are asked through each host's tunnel".into(),
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let reports = targets
        .iter()
        .map(|t| check(args, &config, t, now))
        .collect::<Result<Vec<_>, _>>()?;
    let checked = Checked { reports };
    checked.write(&args.output).map_err(|source| StageError::Write {
        path: args.output.clone(),
        source,
    })?;
    checked.publish(runner, &args.output)?;
    if args.issues {
        for report in &checked.reports {
            file_issues(args, runner, report)?;
        }
    }
    Ok(checked)
}

/// Checks one target: the droplet over SSH, the service through its tunnel.
fn check(args: &Args, config: &MonitorConfig, given: &str, now: u64) -> Result<Report, StageError> {
    let target = target::parse(given)?;
    let mut remote = open(args, &target)?;
    let droplet = match &mut remote {
        Ok((r, base)) => collect::droplet(r.as_mut(), base),
        Err(why) => unreachable(why),
    };
    let service = ask_service(args, &target)?;
    let current = droplet.current.as_ref().ok().cloned().flatten();
    let rollback_to = match &mut remote {
        Ok((r, base)) => previous_release(r.as_mut(), base, current.as_deref()),
        Err(_) => None,
    };
    let cx = Context {
        config,
        now,
        rollback_to: rollback_to.as_deref(),
    };
    let mut findings = checks::judge(&droplet, &service, cx);
    if let Err(why) = &remote {
        findings.insert(0, checks::unreachable(why));
    }
    let worst = findings.iter().map(|f| f.severity).max().unwrap_or(Severity::Ok);
    if let Ok((r, base)) = &mut remote {
        findings.extend(leave_heartbeat(r.as_mut(), base, now, worst));
    }
    let models = served_models(&service);
    Ok(Report::new(given, now, (current, rollback_to), models, findings))
}

/// The models readiness names, with their bundle ids.
fn served_models(service: &Service) -> std::collections::BTreeMap<String, String> {
    let Ok((_, ready)) = &service.ready else {
        return Default::default();
    };
    ready["models"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, m)| (name.clone(), m["version"].as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// Keeps the alert issues in step with the report.
fn file_issues(args: &Args, runner: &Runner, report: &Report) -> Result<(), StageError> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let token = args
        .token
        .clone()
        .or_else(|| var("GITHUB_TOKEN"))
        .ok_or_else(|| StageError::Usage("--issues needs a token (the token input, or $GITHUB_TOKEN)".into()))?;
    runner.mask(&token)?;
    let repository = args
        .repository
        .clone()
        .or_else(|| var("GITHUB_REPOSITORY"))
        .ok_or_else(|| StageError::Usage("--issues needs the repository (owner/name, or $GITHUB_REPOSITORY)".into()))?;
    let Some((owner, repo)) = repository.split_once('/') else {
        return Err(StageError::Usage(format!(
            "repository `{repository}` is not owner/name"
        )));
    };
    let api = args.api_url.clone().or_else(|| var("GITHUB_API_URL"));
    let client = cellops_github::Client::new(&token, api.as_deref())?;
    for (kind, outcome) in alerts::sync(report, &client, owner, repo)? {
        use cellops_github::IssueAction as A;
        let what = match outcome.action {
            A::Opened => "opened",
            A::Commented => "commented on",
            A::Closed => "closed",
            A::Unchanged | A::Quiet => continue,
        };
        let url = outcome.html_url.unwrap_or_default();
        runner.info(&format!("{kind}: {what} issue #{} {url}", outcome.number.unwrap_or(0)))?;
    }
    Ok(())
}

/// Runs the stage and concludes as every stage does: exit 1 on an alert.
pub fn execute(args: &Args, runner: &Runner) -> Exit {
    conclude(runner, run(args, runner), |r| {
        let exit = if r.status() == Severity::Alert {
            Exit::Failure
        } else {
            Exit::Success
        };
        (r.headline(), exit)
    })
}
