//! The connection flags every stage that reaches the server shares (`deploy-cell-params`,
//! `monitor`): host, port, user, credentials and the pinned host key, as clap arguments (and so
//! as action inputs), and how they become [`SshOptions`]. Behind the `clap` feature.

use std::time::Duration;

use crate::ssh::{Auth, HostCheck, SshOptions};

/// How to reach the server over SSH.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SshArgs {
    /// Server host (when the target is a bare path, or to override the URL's).
    #[arg(long)]
    pub host: Option<String>,
    /// SSH port.
    #[arg(long)]
    pub port: Option<u16>,
    /// SSH user.
    #[arg(long)]
    pub username: Option<String>,
    /// Private key (OpenSSH or PEM text, e.g. from a secret); kept in memory, masked in logs.
    #[arg(long, hide_env_values = true)]
    pub key: Option<String>,
    /// Passphrase of the private key.
    #[arg(long)]
    pub passphrase: Option<String>,
    /// Password authentication (only used when given; prefer a key).
    #[arg(long)]
    pub password: Option<String>,
    /// known_hosts lines that pin the server's host key.
    #[arg(long, value_name = "LINES")]
    pub known_hosts: Option<String>,
    /// Accepted host-key fingerprints (SHA256:…), separated by commas, spaces or newlines.
    #[arg(long, value_name = "SHA256")]
    pub fingerprint: Option<String>,
    /// Do not verify the server's host key (dangerous: anyone on the path can impersonate it).
    #[arg(long)]
    pub insecure_skip_host_key_check: bool,
    /// TCP connect timeout.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub connect_timeout: u64,
}

/// Splits a list given with commas, spaces or newlines.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

impl SshArgs {
    /// The secrets among the flags (to mask in logs).
    pub fn secrets(&self) -> impl Iterator<Item = &String> {
        [&self.key, &self.passphrase, &self.password].into_iter().flatten()
    }

    /// The options for the target's `user`, `host` and `port` (each from the URL or its flag; a
    /// contradiction is an error that says which). Host-key checking is off only when asked
    /// ([`HostCheck::Insecure`]: the caller warns); with nothing pinned the connection shows the
    /// offered key and refuses.
    pub fn options(&self, user: Option<String>, host: Option<String>, port: Option<u16>) -> Result<SshOptions, String> {
        let pick = |url: Option<String>, flag: Option<String>, what: &str| match (url, flag) {
            (Some(a), Some(b)) if a != b => {
                Err(format!("the target says {what} `{a}` but the {what} input says `{b}`"))
            }
            (a, b) => Ok(a.or(b)),
        };
        let host =
            pick(host, self.host.clone(), "host")?.ok_or("no host: give it in the target URL or the host input")?;
        let username = pick(user, self.username.clone(), "username")?
            .ok_or("no username: give it in the target URL or the username input")?;
        let port = match (port, self.port) {
            (Some(a), Some(b)) if a != b => {
                return Err(format!("the target says port {a} but the port input says {b}"));
            }
            (a, b) => a.or(b).unwrap_or(22),
        };
        let auth = match (&self.key, &self.password) {
            (Some(k), _) if !k.trim().is_empty() => Auth::Key {
                private_key: k.clone(),
                passphrase: self.passphrase.clone(),
            },
            (_, Some(p)) if !p.is_empty() => Auth::Password(p.clone()),
            _ => return Err("no credentials: set the key input (an SSH private key secret), or password".into()),
        };
        let host_check = if self.insecure_skip_host_key_check {
            HostCheck::Insecure
        } else if let Some(kh) = self.known_hosts.as_ref().filter(|k| !k.trim().is_empty()) {
            HostCheck::KnownHosts(kh.clone())
        } else if let Some(fp) = self.fingerprint.as_ref().filter(|f| !f.trim().is_empty()) {
            HostCheck::Fingerprints(split_list(fp))
        } else {
            HostCheck::Fingerprints(Vec::new())
        };
        Ok(SshOptions {
            host,
            port,
            username,
            auth,
            host_check,
            connect_timeout: Duration::from_secs(self.connect_timeout.max(1)),
            io_timeout: Duration::from_secs(120),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_and_flags_must_agree() {
        let args = SshArgs {
            key: Some("KEY".into()),
            port: Some(2222),
            ..SshArgs::default()
        };
        let o = args
            .options(Some("deploy".into()), Some("h".into()), None)
            .expect("options");
        assert_eq!((o.port, o.username.as_str()), (2222, "deploy"));
        let e = args
            .options(Some("deploy".into()), Some("h".into()), Some(22))
            .expect_err("two ports");
        assert!(e.contains("port 22 but the port input says 2222"), "{e}");
        let none = SshArgs::default().options(Some("u".into()), Some("h".into()), None);
        assert!(none.expect_err("no key").starts_with("no credentials"));
        assert_eq!(
            split_list("SHA256:a, SHA256:b\nSHA256:c"),
            ["SHA256:a", "SHA256:b", "SHA256:c"]
        );
    }
}
