//! `serve.json`: how the service serves a release — where it listens, its limits, and which model
//! each image type uses. It travels in the release beside the parameter files and the bundles, so
//! a rollback rolls it back too. Every field is optional; the service's flags override it.
//!
//! Its JSON Schema is generated from these types by [`schema_json`] and committed as
//! `schema/serve.schema.json` (a test keeps the two in sync).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::FileError;

/// The file's name, at the top of a release.
pub const FILE: &str = "serve.json";

/// `serve.json` is small; anything larger is refused before it is parsed.
const MAX_BYTES: u64 = 64 * 1024;

/// `serve.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(title = "CellOps service settings", extend("$id" = "https://cellops.dev/schema/serve.schema.json"))]
pub struct ServeConfig {
    /// The schema this file follows (editors use it; the service ignores it).
    #[serde(rename = "$schema", skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The address the service listens on. Loopback by default: people and CI reach it through
    /// the SSH connection; a public listener belongs behind the droplet's nginx.
    pub listen: SocketAddr,
    /// Limits on requests and the work they start.
    pub limits: ServeLimits,
    /// An optional second listener for people and tools that cannot use the SSH tunnel: every
    /// request but liveness needs the bearer token; put it behind the droplet's nginx (TLS) and
    /// open it in the firewall to listed networks only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public: Option<PublicListener>,
    /// Which model (bundle folder name) serves each image type (parameter file name without
    /// `.yaml`). Needed only when a release holds more than one bundle.
    pub models: BTreeMap<String, String>,
    /// What the service keeps for the Monitor stage: per-image features, drift windows, SLOs.
    pub monitor: MonitorSettings,
    /// A candidate model run as a shadow on a share of the measured images, off the latency
    /// path; its agreement with the model that answers is recorded (`/v2/monitor`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowSettings>,
}

/// The shadow model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowSettings {
    /// The candidate's model name (a bundle folder of the release that no image type uses).
    pub model: String,
    /// The share of measured images it also runs on, in (0, 1]: every `round(1 / share)`-th.
    pub share: f64,
}

/// The evidence the service keeps and judges (issue 17's Monitor stage reads it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorSettings {
    /// Days of per-image feature files kept on disk (one file per UTC day); older ones are
    /// deleted.
    #[schemars(range(min = 1, max = 3660))]
    pub retention_days: u32,
    /// Rows kept per UTC day; images past it are counted, not kept (bounds the disk).
    #[schemars(range(min = 1))]
    pub max_rows_per_day: usize,
    /// The drift window: the images measured in the last this many hours are compared with the
    /// model's reference profile.
    pub window_hours: f64,
    /// Images a window needs before it is judged; fewer say "not enough data", never "no drift".
    #[schemars(range(min = 1))]
    pub min_window: usize,
    /// The service-level objectives whose burn rates the service computes.
    pub slo: Slo,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self {
            retention_days: 30,
            max_rows_per_day: 100_000,
            window_hours: 24.0,
            min_window: 30,
            slo: Slo::default(),
        }
    }
}

/// Service-level objectives: the share of requests that must succeed, and the share that must
/// be answered within a latency.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Slo {
    /// Share of requests answered without a server error (5xx), e.g. 0.995.
    pub availability: f64,
    /// The latency objective's bound, in seconds.
    pub latency_s: f64,
    /// Share of requests that must be answered within `latency_s`, e.g. 0.95 (a p95 objective).
    pub latency_target: f64,
}

impl Default for Slo {
    fn default() -> Self {
        Self {
            availability: 0.995,
            latency_s: 5.0,
            latency_target: 0.95,
        }
    }
}

impl MonitorSettings {
    /// Checks the values a schema cannot; the dotted field and why.
    pub fn check(&self) -> Result<(), (String, String)> {
        let ratio = |v: f64| v.is_finite() && v > 0.0 && v < 1.0;
        let checks = [
            (
                "monitor.window_hours",
                self.window_hours.is_finite() && self.window_hours > 0.0 && self.window_hours <= 24.0 * 31.0,
                "a number of hours in (0, 744]",
            ),
            (
                "monitor.retention_days",
                (1..=3660).contains(&self.retention_days),
                "a number of days in [1, 3660]",
            ),
            ("monitor.max_rows_per_day", self.max_rows_per_day >= 1, "at least 1"),
            ("monitor.min_window", self.min_window >= 1, "at least 1"),
            (
                "monitor.slo.availability",
                ratio(self.slo.availability),
                "a share in (0, 1)",
            ),
            (
                "monitor.slo.latency_target",
                ratio(self.slo.latency_target),
                "a share in (0, 1)",
            ),
            (
                "monitor.slo.latency_s",
                self.slo.latency_s.is_finite() && self.slo.latency_s > 0.0,
                "a positive number of seconds",
            ),
        ];
        match checks.into_iter().find(|(_, ok, _)| !ok) {
            Some((field, _, why)) => Err((field.to_owned(), format!("must be {why}"))),
            None => Ok(()),
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            schema: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            limits: ServeLimits::default(),
            public: None,
            models: BTreeMap::new(),
            monitor: MonitorSettings::default(),
            shadow: None,
        }
    }
}

/// The public listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublicListener {
    /// Its address (nginx proxies to it; loopback unless nginx runs elsewhere).
    pub listen: SocketAddr,
    /// A file holding the bearer token (one word, at least 16 characters, mode 600).
    pub token_file: std::path::PathBuf,
    /// A listener for a load balancer on the private network (a fleet): liveness and readiness
    /// answer without the token there, for its health check; everything else needs the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_listen: Option<SocketAddr>,
}

/// Limits of the service: every refusal names the one it met and its value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServeLimits {
    /// The largest request body, in bytes (default: a 2048×2048 16-bit RGB TIFF, with room).
    #[schemars(range(min = 1))]
    pub max_request_bytes: u64,
    /// Images with more pixels than this are refused from their header, before decoding.
    #[schemars(range(min = 1))]
    pub max_pixels: u64,
    /// Images analysed at once (the inference pool); 0 = one per CPU core.
    pub workers: usize,
    /// Requests that may wait for a worker; more are answered 503 with `Retry-After`.
    pub queue: usize,
    /// Seconds from a request's arrival to its answer (waiting and analysis); past it, 504.
    #[schemars(range(min = 0.001))]
    pub request_timeout_s: f64,
    /// Seconds a client may take to send its body; past it, 408.
    #[schemars(range(min = 0.001))]
    pub upload_timeout_s: f64,
    /// Seconds a client may take to send a request's headers (and an idle keep-alive connection
    /// may wait); past it the connection closes.
    #[schemars(range(min = 0.001))]
    pub header_timeout_s: f64,
    /// Seconds in-flight requests get to finish after SIGTERM before the service exits.
    #[schemars(range(min = 0.0))]
    pub drain_timeout_s: f64,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: 32 * 1024 * 1024,
            max_pixels: 100_000_000,
            workers: 0,
            queue: 64,
            request_timeout_s: 60.0,
            upload_timeout_s: 30.0,
            header_timeout_s: 30.0,
            drain_timeout_s: 30.0,
        }
    }
}

impl ServeLimits {
    /// Checks the values a schema cannot (finite, positive times); the dotted field and why.
    pub fn check(&self) -> Result<(), (String, String)> {
        let times = [
            ("request_timeout_s", self.request_timeout_s, false),
            ("upload_timeout_s", self.upload_timeout_s, false),
            ("header_timeout_s", self.header_timeout_s, false),
            ("drain_timeout_s", self.drain_timeout_s, true),
        ];
        for (name, value, zero_ok) in times {
            let ok = value.is_finite() && (value > 0.0 || (zero_ok && value == 0.0)) && value <= 86_400.0;
            if !ok {
                return Err((
                    format!("limits.{name}"),
                    format!("{value} is not a number of seconds in (0, 86400]"),
                ));
            }
        }
        if self.max_request_bytes == 0 || self.max_pixels == 0 {
            return Err((
                "limits".into(),
                "max_request_bytes and max_pixels must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

impl ServeConfig {
    /// Reads and checks `serve.json` at `path`; errors name the file, line and column.
    pub fn read(path: &Path) -> Result<Self, FileError> {
        let text = crate::error::read_capped(path, MAX_BYTES, "serve.json")?;
        Self::parse(path, &text)
    }

    /// The `serve.json` at the top of the release folder `dir`, or the defaults when it has none.
    pub fn of_release(dir: &Path) -> Result<Self, FileError> {
        let path = dir.join(FILE);
        if path.exists() {
            Self::read(&path)
        } else {
            Ok(Self::default())
        }
    }

    /// Parses and checks the text of `serve.json` (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, FileError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let config: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            FileError {
                path: path.to_owned(),
                line: Some(inner.line() as u64),
                column: Some(inner.column() as u64),
                message: if field == "." {
                    crate::error::parser_message(&inner.to_string())
                } else {
                    format!(
                        "{}: {}",
                        crate::error::field_path(&field),
                        crate::error::parser_message(&inner.to_string())
                    )
                },
            }
        })?;
        config
            .limits
            .check()
            .and_then(|()| config.monitor.check())
            .and_then(|()| match &config.shadow {
                Some(s) if !(s.share.is_finite() && s.share > 0.0 && s.share <= 1.0) => {
                    Err(("shadow.share".into(), "must be a share in (0, 1]".into()))
                }
                _ => Ok(()),
            })
            .map_err(|(field, why)| FileError::new(path, format!("{field}: {why}")))?;
        Ok(config)
    }
}

/// The JSON Schema of `serve.json`, pretty-printed (what `schema/serve.schema.json` holds).
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(ServeConfig);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_settings_out_of_range_name_their_field() {
        for (text, field) in [
            (
                r#"{"monitor": {"slo": {"availability": 1.0}}}"#,
                "monitor.slo.availability",
            ),
            (r#"{"monitor": {"window_hours": 0}}"#, "monitor.window_hours"),
            (r#"{"monitor": {"min_window": 0}}"#, "monitor.min_window"),
        ] {
            let e = ServeConfig::parse(Path::new("serve.json"), text).expect_err(text);
            assert!(
                e.to_string().starts_with(&format!("serve.json: {field}: must be")),
                "{e}"
            );
        }
        let c = ServeConfig::parse(Path::new("serve.json"), r#"{"monitor": {"window_hours": 6}}"#).expect("parses");
        assert_eq!((c.monitor.window_hours, c.monitor.min_window), (6.0, 30));
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        let c = ServeConfig::parse(Path::new("serve.json"), "{}").expect("parses");
        assert_eq!(c, ServeConfig::default());
    }

    #[test]
    fn unknown_fields_and_bad_times_name_the_file_and_place() {
        let e = ServeConfig::parse(
            Path::new("r/serve.json"),
            "{\n  \"limits\": {\"queue\": 2, \"qeue\": 3}\n}",
        )
        .expect_err("unknown field");
        let text = e.to_string();
        assert!(text.starts_with("r/serve.json:2:"), "{text}");
        assert!(text.contains("qeue"), "{text}");
        let e = ServeConfig::parse(Path::new("serve.json"), r#"{"limits": {"request_timeout_s": 0}}"#)
            .expect_err("zero deadline");
        assert!(e.to_string().contains("limits.request_timeout_s"), "{e}");
    }

    #[test]
    fn models_map_image_types_to_bundles() {
        let c = ServeConfig::parse(
            Path::new("serve.json"),
            r#"{"listen": "127.0.0.1:9000", "models": {"he-nuclei": "histology"}}"#,
        )
        .expect("parses");
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.models["he-nuclei"], "histology");
    }
}
