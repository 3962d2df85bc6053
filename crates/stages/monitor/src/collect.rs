//! What a monitor run learns, before anything is judged: from the droplet's files (the `current`
//! link, the last production move in `deployments.jsonl`, free disk, the previous heartbeat) and
//! from the service (liveness, readiness, the golden check run again, `/v2/monitor`). A fact that
//! could not be had is kept as the reason why, so that the checks can name it.

use std::time::Duration;

use cellops_deploy::remote::Remote;
use cellops_formats::monitor::{HEARTBEAT, Heartbeat};
use cellops_formats::release::{LOG, LogLine, PRODUCTION};
use serde_json::Value;

/// The service's answer to one request: the status and JSON body, or why there was none.
pub type Answer = Result<(u16, Value), String>;

/// What the droplet's files say.
#[derive(Debug, Clone)]
pub struct Droplet {
    /// The release `current` points to (none: no link).
    pub current: Result<Option<String>, String>,
    /// The release the last line of `deployments.jsonl` made current, and that line's time.
    pub last_move: Result<Option<(Option<String>, String)>, String>,
    /// Free and total bytes of the base folder's file system.
    pub disk: Result<(u64, u64), String>,
    /// The previous run's heartbeat (none: the first run).
    pub heartbeat: Result<Option<Heartbeat>, String>,
}

/// What the service says.
#[derive(Debug, Clone)]
pub struct Service {
    /// `GET /v2/health/live`.
    pub live: Answer,
    /// `GET /v2/health/ready`.
    pub ready: Answer,
    /// `GET /v2/models/{name}/golden` for each model readiness names.
    pub golden: Vec<(String, Answer)>,
    /// `GET /v2/monitor`.
    pub monitor: Answer,
}

/// Reads the droplet's side through `remote` (base folder `base`).
pub fn droplet(remote: &mut dyn Remote, base: &str) -> Droplet {
    let base = base.trim_end_matches('/');
    let current = remote
        .read_link(&format!("{base}/current"))
        .map(|l| l.map(|t| t.rsplit('/').next().unwrap_or_default().to_owned()))
        .map_err(|e| e.to_string());
    let last_move = remote
        .read(&format!("{base}/{LOG}"))
        .map_err(|e| e.to_string())
        .and_then(|bytes| last_production_move(bytes.as_deref().unwrap_or_default()));
    let disk = free_disk(remote, base);
    let heartbeat = remote
        .read(&format!("{base}/{HEARTBEAT}"))
        .map_err(|e| e.to_string())
        .and_then(|b| {
            b.map(|b| serde_json::from_slice(&b).map_err(|e| format!("{HEARTBEAT}: {e}")))
                .transpose()
        });
    Droplet {
        current,
        last_move,
        disk,
        heartbeat,
    }
}

/// The release the log's last production move made current (`None` inside for a rollback to
/// nothing) and that line's time; `None` for a log without one.
pub fn last_production_move(log: &[u8]) -> Result<Option<(Option<String>, String)>, String> {
    let text = String::from_utf8_lossy(log);
    for line in text.lines().rev().filter(|l| !l.trim().is_empty()) {
        let parsed: LogLine = serde_json::from_str(line).map_err(|e| format!("{LOG}: a line cannot be read: {e}"))?;
        let (alias, release) = parsed.event.moved();
        if alias == PRODUCTION {
            return Ok(Some((release.map(str::to_owned), parsed.event.time().to_owned())));
        }
    }
    Ok(None)
}

/// Free and total bytes of the file system holding `base` (`df -Pk`).
fn free_disk(remote: &mut dyn Remote, base: &str) -> Result<(u64, u64), String> {
    let quoted = cellops_deploy::remote::shell_quote(base);
    let out = remote
        .run(&format!("df -Pk {quoted}"), base, Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(format!("df failed: {}", out.output.trim()));
    }
    parse_df(&out.output).ok_or_else(|| format!("df said something unexpected: {}", out.output.trim()))
}

/// Available and total bytes from `df -Pk` output (the second line: total and available are the
/// second and fourth columns, in KiB).
///
/// ```
/// let out = "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/vda1 1000 900 100 90% /\n";
/// assert_eq!(cellops_monitor::collect::parse_df(out), Some((102_400, 1_024_000)));
/// ```
pub fn parse_df(out: &str) -> Option<(u64, u64)> {
    let fields: Vec<&str> = out.lines().nth(1)?.split_whitespace().collect();
    let total: u64 = fields.get(1)?.parse().ok()?;
    let available: u64 = fields.get(3)?.parse().ok()?;
    Some((available * 1024, total * 1024))
}

/// Asks the service at `base` (an `http://` URL) for everything the checks read.
pub fn service(base: &str, timeout: Duration) -> Service {
    let agent = ureq::AgentBuilder::new().timeout(timeout).build();
    let get = |path: &str| -> Answer {
        let r = match agent.get(&format!("{base}{path}")).call() {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e.to_string()),
        };
        let status = r.status();
        let body = r.into_json::<Value>().unwrap_or(Value::Null);
        Ok((status, body))
    };
    let live = get("/v2/health/live");
    let ready = get("/v2/health/ready");
    let models: Vec<String> = ready
        .as_ref()
        .ok()
        .and_then(|(_, b)| b["models"].as_object().map(|m| m.keys().cloned().collect()))
        .unwrap_or_default();
    let golden = models
        .into_iter()
        .map(|m| {
            let answer = get(&format!("/v2/models/{m}/golden"));
            (m, answer)
        })
        .collect();
    let monitor = get("/v2/monitor");
    Service {
        live,
        ready,
        golden,
        monitor,
    }
}
