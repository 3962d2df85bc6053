//! Where a deploy goes: `ssh://[user@]host[:port]/base/path`, `file:///path` (or
//! `file://relative/path`), or a bare `/base/path` on the host given separately.

use std::path::PathBuf;

/// A parsed deploy target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A server over SSH; parts left out come from the `host`, `port` and `username` inputs.
    Ssh {
        /// User, if in the URL.
        user: Option<String>,
        /// Host, if in the URL.
        host: Option<String>,
        /// Port, if in the URL.
        port: Option<u16>,
        /// Absolute base path on the server.
        base: String,
    },
    /// A folder on this machine.
    File {
        /// The folder.
        base: PathBuf,
    },
}

/// A target that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target `{target}`: {message} (expected ssh://user@host:port/base/path, file:///path or /base/path)")]
pub struct TargetError {
    /// The input.
    pub target: String,
    /// What is wrong.
    pub message: String,
}

/// Parses a target.
///
/// ```
/// use cellops_deploy::target::{parse, Target};
/// assert_eq!(
///     parse("ssh://deploy@example.org:2222/srv/cells").unwrap(),
///     Target::Ssh { user: Some("deploy".into()), host: Some("example.org".into()), port: Some(2222), base: "/srv/cells".into() }
/// );
/// assert_eq!(parse("file:///tmp/x").unwrap(), Target::File { base: "/tmp/x".into() });
/// assert_eq!(parse("/srv/cells").unwrap(), Target::Ssh { user: None, host: None, port: None, base: "/srv/cells".into() });
/// ```
pub fn parse(target: &str) -> Result<Target, TargetError> {
    let err = |message: &str| TargetError {
        target: target.to_owned(),
        message: message.to_owned(),
    };
    let t = target.trim();
    if let Some(rest) = t.strip_prefix("file://") {
        if rest.is_empty() {
            return Err(err("no folder after file://"));
        }
        return Ok(Target::File {
            base: PathBuf::from(rest),
        });
    }
    if let Some(rest) = t.strip_prefix("ssh://") {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => return Err(err("no base path after the host")),
        };
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u.to_owned()), h),
            Some(_) => return Err(err("empty user name before @")),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| err("unclosed [ in an IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p.parse::<u16>().map_err(|_| err("the port is not a number 1–65535"))?),
                None if after.is_empty() => None,
                None => return Err(err("unexpected text after the IPv6 address")),
            };
            (h.to_owned(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    Some(p.parse::<u16>().map_err(|_| err("the port is not a number 1–65535"))?),
                ),
                None => (hostport.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err(err("no host"));
        }
        if port == Some(0) {
            return Err(err("the port is not a number 1–65535"));
        }
        return Ok(Target::Ssh {
            user,
            host: Some(host),
            port,
            base: path.to_owned(),
        });
    }
    if t.starts_with('/') {
        return Ok(Target::Ssh {
            user: None,
            host: None,
            port: None,
            base: t.to_owned(),
        });
    }
    if t.contains("://") {
        return Err(err("unknown scheme"));
    }
    Err(err("a server base path must be absolute"))
}

/// Every target of a fleet: each line of each `given` value (an action input may hold one per
/// line) and of `hosts_file` (what Terraform's `deploy_targets` output writes), blank lines and
/// `#` comments skipped, in order; a target given twice, or none at all, is an error.
///
/// ```
/// use cellops_deploy::target::list;
/// let given = ["ssh://a/srv\n# b is down\nssh://c/srv".to_owned()];
/// assert_eq!(list(&given, None).unwrap(), ["ssh://a/srv", "ssh://c/srv"]);
/// assert!(list(&["/srv".into(), " /srv ".into()], None).is_err());
/// ```
pub fn list(given: &[String], hosts_file: Option<&std::path::Path>) -> Result<Vec<String>, TargetError> {
    let err = |target: &str, message: String| TargetError {
        target: target.to_owned(),
        message,
    };
    let mut lines: Vec<String> = given.iter().flat_map(|t| t.lines()).map(str::to_owned).collect();
    if let Some(file) = hosts_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| err(&file.display().to_string(), format!("cannot read the hosts file: {e}")))?;
        lines.extend(text.lines().map(str::to_owned));
    }
    let mut out: Vec<String> = Vec::new();
    for t in lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if out.iter().any(|o| o == t) {
            return Err(err(t, "given twice".into()));
        }
        out.push(t.to_owned());
    }
    if out.is_empty() {
        return Err(err(
            "(none)",
            "give --target (one per line for several) or --hosts-file".into(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_and_errors() {
        assert_eq!(
            parse("ssh://[::1]:2200/b").expect("v6"),
            Target::Ssh {
                user: None,
                host: Some("::1".into()),
                port: Some(2200),
                base: "/b".into()
            }
        );
        for bad in [
            "ssh://host",
            "ssh://host:x/b",
            "ssh://:22/b",
            "http://x/y",
            "relative/dir",
            "file://",
            "ssh://h:0/b",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse("file://demo/server").expect("relative"),
            Target::File {
                base: "demo/server".into()
            }
        );
    }
}
