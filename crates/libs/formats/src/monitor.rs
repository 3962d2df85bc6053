//! `monitor.yaml`: what `cellops monitor` holds the droplet to — service-level objectives, free
//! disk, how long the monitor may stay silent — and the record it leaves on the droplet
//! ([`Heartbeat`]). Every field is optional. Its JSON Schema is generated from these types
//! ([`schema_json`]) and committed as `schema/monitor.schema.json` (a test keeps the two in sync).

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::FileError;

/// The heartbeat's file on the droplet, under the deploy's base folder.
pub const HEARTBEAT: &str = "monitor/last-run.json";

/// The file is small; anything larger is refused before it is parsed.
const MAX_BYTES: u64 = 64 * 1024;

/// `monitor.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(title = "CellOps monitor settings", extend("$id" = "https://cellops.dev/schema/monitor.schema.json"))]
pub struct MonitorConfig {
    /// The objectives the service is held to over `slo.window`.
    pub slo: SloTargets,
    /// Free disk on the droplet (the file system of the deploy's base folder).
    pub disk: DiskLimits,
    /// A monitor run more than this many hours after the last one alerts: runs were missed (a
    /// disabled schedule, a broken workflow), and alerts with them.
    #[schemars(range(min = 1))]
    pub dead_man_hours: f64,
    /// A shadow model whose mean foreground Dice with the served model is below this warns: the
    /// candidate would change the measurements.
    #[schemars(range(min = 0, max = 1))]
    pub shadow_min_dice: f64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            slo: SloTargets::default(),
            disk: DiskLimits::default(),
            dead_man_hours: 3.0,
            shadow_min_dice: 0.9,
        }
    }
}

/// The objectives, judged from the service's own counts over one of its windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SloTargets {
    /// The window judged: one of the service's (`5m`, `30m`, `1h`, `6h`, `24h`).
    pub window: String,
    /// The largest share of work requests answered with a server error.
    pub error_rate: f64,
    /// The largest 95th-percentile latency of work requests, in seconds.
    pub p95_latency_s: f64,
    /// Fewer requests in the window than this are not judged (one failure of three is no rate).
    #[schemars(range(min = 1))]
    pub min_requests: u64,
}

impl Default for SloTargets {
    fn default() -> Self {
        Self {
            window: "1h".into(),
            error_rate: 0.01,
            p95_latency_s: 5.0,
            min_requests: 20,
        }
    }
}

/// Free-disk levels, in percent of the file system.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DiskLimits {
    /// Below this a warning.
    pub warn_below_percent: f64,
    /// Below this an alert.
    pub alert_below_percent: f64,
}

impl Default for DiskLimits {
    fn default() -> Self {
        Self {
            warn_below_percent: 15.0,
            alert_below_percent: 5.0,
        }
    }
}

/// The windows a service reports (`cellops serve`'s `/v2/monitor`).
pub const WINDOWS: [&str; 5] = ["5m", "30m", "1h", "6h", "24h"];

impl MonitorConfig {
    /// Reads `monitor.yaml` at `path`; errors name the file, line and column.
    pub fn read(path: &Path) -> Result<Self, FileError> {
        let text = crate::error::read_capped(path, MAX_BYTES, "monitor.yaml")?;
        Self::parse(path, &text)
    }

    /// Parses and checks the text (`path` names it in errors); empty text is the defaults.
    pub fn parse(path: &Path, text: &str) -> Result<Self, FileError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let config: Self = serde_norway::from_str(text).map_err(|e| {
            let message = crate::error::parser_message(&e.to_string());
            FileError {
                path: path.to_owned(),
                line: e.location().map(|l| l.line() as u64),
                column: e.location().map(|l| l.column() as u64),
                message,
            }
        })?;
        config.check().map_err(|m| FileError::new(path, m))?;
        Ok(config)
    }

    /// Checks the values a schema cannot.
    fn check(&self) -> Result<(), String> {
        let s = &self.slo;
        if !WINDOWS.contains(&s.window.as_str()) {
            return Err(format!(
                "slo.window: `{}` is not one of {}",
                s.window,
                WINDOWS.join(", ")
            ));
        }
        if !(s.error_rate.is_finite() && (0.0..1.0).contains(&s.error_rate)) {
            return Err("slo.error_rate: must be a share in [0, 1)".into());
        }
        if !(s.p95_latency_s.is_finite() && s.p95_latency_s > 0.0) {
            return Err("slo.p95_latency_s: must be a positive number of seconds".into());
        }
        let d = self.disk;
        let percent = |v: f64| v.is_finite() && (0.0..=100.0).contains(&v);
        if !(percent(d.warn_below_percent) && percent(d.alert_below_percent))
            || d.alert_below_percent > d.warn_below_percent
        {
            return Err("disk: the levels must be percentages with alert_below_percent ≤ warn_below_percent".into());
        }
        if !(self.dead_man_hours.is_finite() && self.dead_man_hours >= 1.0) {
            return Err("dead_man_hours: must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.shadow_min_dice) {
            return Err("shadow_min_dice: must be a Dice in [0, 1]".into());
        }
        Ok(())
    }
}

/// What a monitor run leaves on the droplet ([`HEARTBEAT`]): when it ran and what it found, so the
/// next run knows how long the monitor was silent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// When (Unix seconds).
    pub at: u64,
    /// When (UTC, RFC 3339).
    pub time: String,
    /// The run's status (`ok`, `warn`, `alert`).
    pub status: String,
    /// The workflow run, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

/// The JSON Schema of `monitor.yaml`, pretty-printed (what `schema/monitor.schema.json` holds).
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(MonitorConfig);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors_that_name_the_place() {
        let p = Path::new("monitor.yaml");
        assert_eq!(MonitorConfig::parse(p, "").expect("empty"), MonitorConfig::default());
        let c = MonitorConfig::parse(p, "slo:\n  p95_latency_s: 2\n").expect("parses");
        assert_eq!((c.slo.p95_latency_s, c.slo.window.as_str()), (2.0, "1h"));
        let e = MonitorConfig::parse(p, "slo:\n  p95_latency: 2\n").expect_err("unknown field");
        assert!(e.to_string().starts_with("monitor.yaml:2:"), "{e}");
        let e = MonitorConfig::parse(p, "slo:\n  window: 2h\n").expect_err("window");
        assert!(e.to_string().contains("slo.window: `2h` is not one of"), "{e}");
        let e = MonitorConfig::parse(p, "disk:\n  alert_below_percent: 20\n").expect_err("levels");
        assert!(e.to_string().contains("alert_below_percent"), "{e}");
    }
}
