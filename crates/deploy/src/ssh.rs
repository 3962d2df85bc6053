//! The SSH transport: connecting with a verified host key and an in-memory private key, and
//! [`Remote`] over SFTP (files) and exec channels (links, hashes, the atomic symlink switch, health
//! checks). The only module of the workspace that touches `ssh2`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use sha2::Digest as _;
use ssh2::{CheckResult, ErrorCode, ExtendedData, HostKeyType, KnownHostFileKind, OpenFlags, OpenType, Session, Sftp};

use crate::keys::{self, KeyError};
use crate::remote::{CommandOutput, Remote, RemoteError, RemoteErrorKind, parse_df, shell_quote};

/// How the client proves who it is.
#[derive(Clone)]
pub enum Auth {
    /// A private key (OpenSSH or PEM text) and its passphrase.
    Key {
        /// The key's text; never printed.
        private_key: String,
        /// Its passphrase, if it is encrypted.
        passphrase: Option<String>,
    },
    /// A password (only when explicitly given).
    Password(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Key { passphrase, .. } => write!(
                f,
                "Key {{ private_key: <redacted>, passphrase: {} }}",
                if passphrase.is_some() { "<redacted>" } else { "none" }
            ),
            Auth::Password(_) => f.write_str("Password(<redacted>)"),
        }
    }
}

/// How the server's host key is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCheck {
    /// OpenSSH `known_hosts` lines (plain or hashed host names, `[host]:port` for other ports).
    KnownHosts(String),
    /// Accepted `SHA256:…` fingerprints (as `ssh-keygen -lf` prints them).
    Fingerprints(Vec<String>),
    /// No check at all (explicit opt-out; the caller warns loudly).
    Insecure,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User name.
    pub username: String,
    /// Credentials.
    pub auth: Auth,
    /// Host-key verification.
    pub host_check: HostCheck,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of each blocking SSH operation.
    pub io_timeout: Duration,
}

/// Why a connection could not be made, in terms a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The host name does not resolve.
    #[error("cannot resolve host `{host}`: {message} (check the host input / SSH_HOST secret)")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's message.
        message: String,
    },
    /// Nothing listens there.
    #[error("connection refused by {addr} (is sshd running on port {port}? is the port right?)")]
    Refused {
        /// The address tried.
        addr: SocketAddr,
        /// The port.
        port: u16,
    },
    /// No answer in time.
    #[error(
        "no answer from {addr} within {secs} s (firewall? the droplet's firewall allows SSH only from its listed CIDRs)"
    )]
    Timeout {
        /// The address tried.
        addr: SocketAddr,
        /// Seconds waited.
        secs: u64,
    },
    /// Another network error.
    #[error("cannot connect to {addr}: {message}")]
    Network {
        /// The address tried.
        addr: SocketAddr,
        /// The OS's message.
        message: String,
    },
    /// The SSH handshake failed.
    #[error("SSH handshake with {host}:{port} failed: {message}")]
    Handshake {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// libssh2's message.
        message: String,
    },
    /// The server's key is not in the known hosts / fingerprints given.
    #[error(
        "host key of {host}:{port} is not trusted: the server offered {key_type} {fingerprint}, which is not in \
         known-hosts/fingerprint. If that is the server's key (check it out of band: `ssh-keyscan -p {port} {host} | \
         ssh-keygen -lf -` on a trusted network, or the Terraform output host_key_fingerprint), pin it with \
         fingerprint: {fingerprint} or the known-hosts line `{known_hosts_line}`"
    )]
    HostKeyUnknown {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Offered key type (`ssh-ed25519`, …).
        key_type: String,
        /// Offered key's fingerprint.
        fingerprint: String,
        /// A known_hosts line for it.
        known_hosts_line: String,
    },
    /// The server's key differs from the pinned one.
    #[error(
        "HOST KEY MISMATCH for {host}:{port}: the server offered {key_type} {fingerprint}, but known-hosts/fingerprint \
         pins a different key. This is what a man-in-the-middle looks like; if the server was rebuilt, update the pin"
    )]
    HostKeyMismatch {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Offered key type.
        key_type: String,
        /// Offered key's fingerprint.
        fingerprint: String,
    },
    /// The known-hosts input has a line libssh2 cannot read.
    #[error("known-hosts line {line}: cannot parse it ({message}); expected `host key-type base64-key`")]
    KnownHostsLine {
        /// 1-based line.
        line: usize,
        /// Why.
        message: String,
    },
    /// The private key input is unusable.
    #[error("private key: {0}")]
    Key(#[from] KeyError),
    /// The key is encrypted and no passphrase was given.
    #[error("the private key is encrypted: set the passphrase input (SERVER_PASSPHRASE secret)")]
    NeedsPassphrase,
    /// The passphrase does not decrypt the key.
    #[error("wrong passphrase for the private key (or a key type libssh2 cannot read): {message}")]
    WrongPassphrase {
        /// libssh2's message.
        message: String,
    },
    /// The server refused the credentials.
    #[error(
        "the server refused {method} authentication for user `{user}` (is the public key in ~{user}/.ssh/authorized_keys? the server accepts: {accepted})"
    )]
    AuthRejected {
        /// User.
        user: String,
        /// `publickey` or `password`.
        method: &'static str,
        /// Methods the server offers.
        accepted: String,
    },
    /// SFTP could not be started.
    #[error("SFTP subsystem unavailable on {host}: {message}")]
    Sftp {
        /// Host.
        host: String,
        /// libssh2's message.
        message: String,
    },
}

/// OpenSSH's name of a host-key type.
pub fn key_type_name(t: HostKeyType) -> &'static str {
    match t {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown",
    }
}

/// `SHA256:<base64 without padding>` of a key blob, as `ssh-keygen -l` prints it.
///
/// ```
/// assert_eq!(
///     cellops_deploy::ssh::fingerprint(b""),
///     "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
/// );
/// ```
pub fn fingerprint(blob: &[u8]) -> String {
    let digest = sha2::Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// Whether `given` (as typed by a user: `SHA256:abc…`, with or without padding) is `actual`.
fn same_fingerprint(given: &str, actual: &str) -> bool {
    let norm = |s: &str| s.trim().trim_end_matches('=').to_owned();
    norm(given) == norm(actual)
}

fn ssh_err_kind(e: &ssh2::Error) -> RemoteErrorKind {
    match e.code() {
        ErrorCode::SFTP(2) | ErrorCode::SFTP(10) => RemoteErrorKind::NotFound,
        ErrorCode::SFTP(3) => RemoteErrorKind::PermissionDenied,
        ErrorCode::SFTP(14) => RemoteErrorKind::NoSpace,
        // Socket send/recv/disconnect/timeout, and "channel failure"s after the server went away.
        ErrorCode::Session(-7 | -9 | -13 | -43 | -44 | -21 | -26) => RemoteErrorKind::Disconnected,
        _ => RemoteErrorKind::Other,
    }
}

fn rerr(path: &str, e: &ssh2::Error) -> RemoteError {
    RemoteError::new(path, ssh_err_kind(e), e.message().to_owned())
}

fn ioerr(path: &str, e: &std::io::Error) -> RemoteError {
    let kind = match e.kind() {
        std::io::ErrorKind::TimedOut
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted
        | std::io::ErrorKind::BrokenPipe
        | std::io::ErrorKind::UnexpectedEof => RemoteErrorKind::Disconnected,
        _ => RemoteErrorKind::Other,
    };
    RemoteError::new(path, kind, e.to_string())
}

fn tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| ConnectError::Resolve {
            host: host.to_owned(),
            message: e.to_string(),
        })?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => {
                last = Some(match e.kind() {
                    std::io::ErrorKind::ConnectionRefused => ConnectError::Refused { addr: *addr, port },
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ConnectError::Timeout {
                        addr: *addr,
                        secs: timeout.as_secs(),
                    },
                    _ => ConnectError::Network {
                        addr: *addr,
                        message: e.to_string(),
                    },
                });
            }
        }
    }
    Err(last.unwrap_or_else(|| ConnectError::Resolve {
        host: host.to_owned(),
        message: "no addresses".into(),
    }))
}

fn verify_host(session: &Session, o: &SshOptions) -> Result<(), ConnectError> {
    let (blob, kind) = session.host_key().ok_or_else(|| ConnectError::Handshake {
        host: o.host.clone(),
        port: o.port,
        message: "the server sent no host key".into(),
    })?;
    let key_type = key_type_name(kind).to_owned();
    let fp = fingerprint(blob);
    let host_field = if o.port == 22 {
        o.host.clone()
    } else {
        format!("[{}]:{}", o.host, o.port)
    };
    let line = format!(
        "{host_field} {key_type} {}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    );
    let unknown = || ConnectError::HostKeyUnknown {
        host: o.host.clone(),
        port: o.port,
        key_type: key_type.clone(),
        fingerprint: fp.clone(),
        known_hosts_line: line.clone(),
    };
    match &o.host_check {
        HostCheck::Insecure => Ok(()),
        HostCheck::Fingerprints(list) => {
            if list.iter().any(|g| same_fingerprint(g, &fp)) {
                Ok(())
            } else if list.is_empty() {
                Err(unknown())
            } else {
                Err(ConnectError::HostKeyMismatch {
                    host: o.host.clone(),
                    port: o.port,
                    key_type,
                    fingerprint: fp,
                })
            }
        }
        HostCheck::KnownHosts(text) => {
            let mut kh = session.known_hosts().map_err(|e| ConnectError::Handshake {
                host: o.host.clone(),
                port: o.port,
                message: e.message().to_owned(),
            })?;
            for (i, l) in text.lines().enumerate() {
                let l = l.trim();
                if l.is_empty() || l.starts_with('#') {
                    continue;
                }
                kh.read_str(l, KnownHostFileKind::OpenSSH)
                    .map_err(|e| ConnectError::KnownHostsLine {
                        line: i + 1,
                        message: e.message().to_owned(),
                    })?;
            }
            match kh.check_port(&o.host, o.port, blob) {
                CheckResult::Match => Ok(()),
                CheckResult::Mismatch => Err(ConnectError::HostKeyMismatch {
                    host: o.host.clone(),
                    port: o.port,
                    key_type,
                    fingerprint: fp,
                }),
                CheckResult::NotFound | CheckResult::Failure => Err(unknown()),
            }
        }
    }
}

/// A connected, authenticated session with SFTP.
pub struct SshRemote {
    session: Session,
    sftp: Sftp,
    describe: String,
    io_timeout: Duration,
}

impl std::fmt::Debug for SshRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshRemote").field("target", &self.describe).finish()
    }
}

/// Connects, verifies the host key, authenticates and opens SFTP.
pub fn connect(o: &SshOptions) -> Result<SshRemote, ConnectError> {
    // Check the key before the network, so a wrong secret fails fast and clearly.
    let kind = match &o.auth {
        Auth::Key {
            private_key,
            passphrase,
        } => {
            let k = keys::classify(private_key)?;
            if k.encrypted() && passphrase.as_deref().is_none_or(str::is_empty) {
                return Err(ConnectError::NeedsPassphrase);
            }
            Some(k)
        }
        Auth::Password(_) => None,
    };
    let stream = tcp(&o.host, o.port, o.connect_timeout)?;
    let handshake = |message: String| ConnectError::Handshake {
        host: o.host.clone(),
        port: o.port,
        message,
    };
    let mut session = Session::new().map_err(|e| handshake(e.message().to_owned()))?;
    session.set_timeout(o.io_timeout.as_millis().min(u128::from(u32::MAX)) as u32);
    session.set_tcp_stream(stream);
    session.handshake().map_err(|e| handshake(e.message().to_owned()))?;
    verify_host(&session, o)?;
    let accepted = || {
        session
            .auth_methods(&o.username)
            .map(str::to_owned)
            .unwrap_or_else(|_| "unknown".into())
    };
    match &o.auth {
        Auth::Key {
            private_key,
            passphrase,
        } => {
            let pass = passphrase.as_deref().filter(|p| !p.is_empty());
            if let Err(e) = session.userauth_pubkey_memory(&o.username, None, private_key, pass) {
                // -16: the key could not be read (with a valid format: the passphrase is wrong);
                // -18/-19: the server refused it.
                return Err(match e.code() {
                    ErrorCode::Session(-16) if kind.is_some_and(KeyKind::encrypted) => ConnectError::WrongPassphrase {
                        message: e.message().to_owned(),
                    },
                    ErrorCode::Session(-16) => ConnectError::Key(KeyError::Unrecognised(format!(
                        "a key libssh2 cannot read ({})",
                        e.message()
                    ))),
                    _ => ConnectError::AuthRejected {
                        user: o.username.clone(),
                        method: "publickey",
                        accepted: accepted(),
                    },
                });
            }
        }
        Auth::Password(p) => {
            if session.userauth_password(&o.username, p).is_err() {
                return Err(ConnectError::AuthRejected {
                    user: o.username.clone(),
                    method: "password",
                    accepted: accepted(),
                });
            }
        }
    }
    if !session.authenticated() {
        return Err(ConnectError::AuthRejected {
            user: o.username.clone(),
            method: "publickey",
            accepted: accepted(),
        });
    }
    let sftp = session.sftp().map_err(|e| ConnectError::Sftp {
        host: o.host.clone(),
        message: e.message().to_owned(),
    })?;
    Ok(SshRemote {
        session,
        sftp,
        describe: format!("ssh://{}@{}:{}", o.username, o.host, o.port),
        io_timeout: o.io_timeout,
    })
}

use crate::keys::KeyKind;

impl SshRemote {
    /// Runs `command` through the server's shell, feeding `stdin`; returns the exit status and the
    /// merged output.
    fn exec(&mut self, command: &str, stdin: &[u8]) -> Result<(i32, String), RemoteError> {
        let mut ch = self.session.channel_session().map_err(|e| rerr(command, &e))?;
        ch.handle_extended_data(ExtendedData::Merge)
            .map_err(|e| rerr(command, &e))?;
        ch.exec(command).map_err(|e| rerr(command, &e))?;
        if !stdin.is_empty() {
            ch.write_all(stdin).map_err(|e| ioerr(command, &e))?;
        }
        ch.send_eof().map_err(|e| rerr(command, &e))?;
        let mut out = String::new();
        ch.read_to_string(&mut out).map_err(|e| ioerr(command, &e))?;
        ch.wait_close().map_err(|e| rerr(command, &e))?;
        let status = ch.exit_status().map_err(|e| rerr(command, &e))?;
        Ok((status, out))
    }

    fn exec_ok(&mut self, command: &str, stdin: &[u8], what: &str) -> Result<String, RemoteError> {
        let (status, out) = self.exec(command, stdin)?;
        if status != 0 {
            let kind = if out.contains("Permission denied") {
                RemoteErrorKind::PermissionDenied
            } else if out.contains("No space left") {
                RemoteErrorKind::NoSpace
            } else {
                RemoteErrorKind::Other
            };
            return Err(RemoteError::new(what, kind, out.trim().to_owned()));
        }
        Ok(out)
    }
}

impl Remote for SshRemote {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn mkdir_all(&mut self, path: &str) -> Result<(), RemoteError> {
        self.exec_ok(&format!("mkdir -p -- {}", shell_quote(path)), b"", path)
            .map(|_| ())
    }

    fn mkdir_new(&mut self, path: &str) -> Result<bool, RemoteError> {
        match self.sftp.mkdir(Path::new(path), 0o755) {
            Ok(()) => Ok(true),
            Err(e) => match self.sftp.lstat(Path::new(path)) {
                Ok(_) => Ok(false),
                Err(_) => Err(rerr(path, &e)),
            },
        }
    }

    fn write(&mut self, path: &str, data: &mut dyn Read, sent: &mut dyn FnMut(u64)) -> Result<(), RemoteError> {
        let mut f = self
            .sftp
            .open_mode(
                Path::new(path),
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                0o644,
                OpenType::File,
            )
            .map_err(|e| rerr(path, &e))?;
        let mut buf = vec![0u8; 1 << 15];
        loop {
            let k = data.read(&mut buf).map_err(|e| ioerr(path, &e))?;
            if k == 0 {
                break;
            }
            f.write_all(&buf[..k]).map_err(|e| ioerr(path, &e))?;
            sent(k as u64);
        }
        f.close().map_err(|e| rerr(path, &e))
    }

    fn read(&mut self, path: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        let mut f = match self.sftp.open(Path::new(path)) {
            Ok(f) => f,
            Err(e) if ssh_err_kind(&e) == RemoteErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(rerr(path, &e)),
        };
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(|e| ioerr(path, &e))?;
        Ok(Some(buf))
    }

    fn append(&mut self, path: &str, data: &[u8]) -> Result<(), RemoteError> {
        let mut f = self
            .sftp
            .open_mode(
                Path::new(path),
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::APPEND,
                0o644,
                OpenType::File,
            )
            .map_err(|e| rerr(path, &e))?;
        f.write_all(data).map_err(|e| ioerr(path, &e))?;
        f.close().map_err(|e| rerr(path, &e))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), RemoteError> {
        self.exec_ok(&format!("mv -T -- {} {}", shell_quote(from), shell_quote(to)), b"", to)
            .map(|_| ())
    }

    fn rename_many(&mut self, pairs: &[(String, String)]) -> Result<(), RemoteError> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut script = String::from("set -e\n");
        for (from, to) in pairs {
            script.push_str(&format!("mv -T -- {} {}\n", shell_quote(from), shell_quote(to)));
        }
        self.exec_ok("sh -s", script.as_bytes(), "moving uploads into place")
            .map(|_| ())
    }

    fn replace_symlink(&mut self, link: &str, target: &str) -> Result<(), RemoteError> {
        let tmp = format!("{link}.new");
        let cmd = format!(
            "rm -f -- {t} && ln -s -- {target} {t} && mv -T -- {t} {link}",
            t = shell_quote(&tmp),
            target = shell_quote(target),
            link = shell_quote(link)
        );
        self.exec_ok(&cmd, b"", link).map(|_| ())
    }

    fn read_link(&mut self, link: &str) -> Result<Option<String>, RemoteError> {
        match self.sftp.readlink(Path::new(link)) {
            Ok(p) => Ok(Some(p.to_string_lossy().into_owned())),
            Err(e) => match self.sftp.lstat(Path::new(link)) {
                Err(le) if ssh_err_kind(&le) == RemoteErrorKind::NotFound => Ok(None),
                _ => Err(rerr(link, &e)),
            },
        }
    }

    fn list(&mut self, dir: &str) -> Result<Vec<String>, RemoteError> {
        match self.sftp.readdir(Path::new(dir)) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .into_iter()
                    .filter_map(|(p, _)| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect();
                names.sort();
                Ok(names)
            }
            Err(e) if ssh_err_kind(&e) == RemoteErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(rerr(dir, &e)),
        }
    }

    fn remove_all(&mut self, path: &str) -> Result<(), RemoteError> {
        self.exec_ok(&format!("rm -rf -- {}", shell_quote(path)), b"", path)
            .map(|_| ())
    }

    fn link_files(&mut self, pairs: &[(String, String)]) -> Result<(), RemoteError> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut script = String::from("set -e\n");
        let mut dirs = std::collections::BTreeSet::new();
        for (_, to) in pairs {
            if let Some((d, _)) = to.rsplit_once('/') {
                dirs.insert(d.to_owned());
            }
        }
        for d in &dirs {
            script.push_str(&format!("mkdir -p -- {}\n", shell_quote(d)));
        }
        for (from, to) in pairs {
            let (f, t) = (shell_quote(from), shell_quote(to));
            script.push_str(&format!("ln -- {f} {t} 2>/dev/null || cp -p -- {f} {t}\n"));
        }
        self.exec_ok("sh -s", script.as_bytes(), "linking unchanged files")
            .map(|_| ())
    }

    fn hash_files(&mut self, paths: &[String]) -> Result<Vec<(u64, String)>, RemoteError> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let mut list = Vec::new();
        for p in paths {
            list.extend_from_slice(p.as_bytes());
            list.push(0);
        }
        let sums = self.exec_ok("xargs -0 sha256sum --", &list, "sha256sum")?;
        let sizes = self.exec_ok("xargs -0 stat -c %s --", &list, "stat")?;
        let hashes: Vec<String> = sums
            .lines()
            .map(|l| l.trim_start_matches('\\').chars().take(64).collect())
            .collect();
        let sizes: Vec<u64> = sizes.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if hashes.len() != paths.len() || sizes.len() != paths.len() {
            return Err(RemoteError::new(
                "sha256sum",
                RemoteErrorKind::Other,
                format!(
                    "expected {} lines from sha256sum and stat, got {} and {}",
                    paths.len(),
                    hashes.len(),
                    sizes.len()
                ),
            ));
        }
        Ok(sizes.into_iter().zip(hashes).collect())
    }

    fn run(&mut self, command: &str, cwd: &str, timeout: Duration) -> Result<CommandOutput, RemoteError> {
        let secs = timeout.as_secs().max(1);
        let wrapped = format!(
            "cd -- {} && exec timeout -k 5 {secs} sh -c {} 2>&1",
            shell_quote(cwd),
            shell_quote(command)
        );
        // The session's own timeout must outlast the command's.
        self.session
            .set_timeout(((secs + 30) * 1000).min(u64::from(u32::MAX)) as u32);
        let r = self.exec(&wrapped, b"");
        self.session
            .set_timeout(self.io_timeout.as_millis().min(u128::from(u32::MAX)) as u32);
        let (status, output) = r?;
        Ok(CommandOutput {
            timed_out: status == 124 || status == 137,
            status: Some(status),
            output,
        })
    }

    fn free_bytes(&mut self, path: &str) -> Result<Option<u64>, RemoteError> {
        let (status, out) = self.exec(&format!("df -Pk -- {}", shell_quote(path)), b"")?;
        Ok(if status == 0 { parse_df(&out) } else { None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_compare_with_or_without_padding() {
        assert!(same_fingerprint("SHA256:abc=", "SHA256:abc"));
        assert!(same_fingerprint(" SHA256:abc ", "SHA256:abc"));
        assert!(!same_fingerprint("SHA256:abd", "SHA256:abc"));
    }

    #[test]
    fn secrets_are_not_in_debug_output() {
        let a = Auth::Key {
            private_key: "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret".into(),
            passphrase: Some("hunter2".into()),
        };
        let d = format!("{a:?} {:?}", Auth::Password("pw123".into()));
        assert!(
            !d.contains("secret") && !d.contains("hunter2") && !d.contains("pw123"),
            "{d}"
        );
    }
}
