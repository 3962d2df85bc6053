//! The SSH transport: connecting with a verified host key and an in-memory private key, and
//! [`Remote`] over SFTP (files) and exec channels (links, hashes, the atomic symlink switch, health
//! checks). The only module of the workspace that touches `ssh2`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use sha2::Digest as _;
use ssh2::{
    CheckResult, ErrorCode, ExtendedData, HostKeyType, KnownHostFileKind, MethodType, OpenFlags, OpenType, Session,
    Sftp,
};

use crate::keys::{self, KeyError};
use crate::remote::{CommandOutput, Payload, Remote, RemoteError, RemoteErrorKind, shell_quote};

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

/// Prefers AES (hardware-accelerated through OpenSSL on every current CPU) over ChaCha20, in
/// the order OpenSSH itself prefers among what libssh2 supports; the server still chooses among
/// what both offer, so nothing becomes weaker.
fn prefer_fast_ciphers(session: &Session) {
    let wanted = [
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        "aes128-ctr",
        "aes256-ctr",
        "chacha20-poly1305@openssh.com",
    ];
    for t in [MethodType::CryptCs, MethodType::CryptSc] {
        let Ok(supported) = session.supported_algs(t) else {
            continue;
        };
        let prefs: Vec<&str> = wanted.iter().copied().filter(|w| supported.contains(w)).collect();
        if !prefs.is_empty() {
            let _ = session.method_pref(t, &prefs.join(","));
        }
    }
}

/// A connected, authenticated session with SFTP.
pub struct SshRemote {
    session: Session,
    sftp: Sftp,
    describe: String,
    io_timeout: Duration,
    /// An upload found the connection broken: every later operation fails at once instead of
    /// waiting out its timeout on a dead link (the clean-up after the upload, the disconnect).
    broken: bool,
}

impl std::fmt::Debug for SshRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshRemote").field("target", &self.describe).finish()
    }
}

impl SshRemote {
    /// The SSH session, for a tunnel (blocking I/O gets no timeout: a tunnel waits on its peers).
    pub fn into_session(self) -> Session {
        // A session is a shared handle: the clone outlives the SFTP channel dropped with self.
        let session = self.session.clone();
        drop(self);
        session.set_timeout(0);
        session
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
    prefer_fast_ciphers(&session);
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
        broken: false,
    })
}

use crate::keys::KeyKind;

impl Drop for SshRemote {
    fn drop(&mut self) {
        if self.broken {
            // Freeing the session says goodbye to the server: not over a dead link.
            self.session.set_timeout(1);
        }
    }
}

impl SshRemote {
    /// Fails at once, about `path`, once the connection broke.
    fn intact(&self, path: &str) -> Result<(), RemoteError> {
        if self.broken {
            return Err(RemoteError::new(
                path,
                RemoteErrorKind::Disconnected,
                "not tried: the connection broke earlier",
            ));
        }
        Ok(())
    }

    /// The negotiated cipher (client to server), for diagnostics.
    pub fn cipher(&self) -> Option<String> {
        self.session.methods(MethodType::CryptCs).map(str::to_owned)
    }

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
            return Err(classified(what, &out));
        }
        Ok(out)
    }

    /// [`Remote::upload`]'s tar stream and checksums.
    fn stream(
        &mut self,
        dir: &str,
        files: &[(String, Payload)],
        sent: &mut dyn FnMut(u64),
    ) -> Result<Vec<String>, RemoteError> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let list_name = crate::release::UPLOAD_LIST;
        let command = format!(
            "mkdir -p -- {d} && tar -x -f - -C {d} --no-same-owner 2>&1 && cd -- {d} && \
             xargs -0 sha256sum -- < {l} && rm -f -- {l}",
            d = shell_quote(dir),
            l = list_name
        );
        let mut ch = self.session.channel_session().map_err(|e| rerr(dir, &e))?;
        ch.handle_extended_data(ExtendedData::Merge)
            .map_err(|e| rerr(dir, &e))?;
        ch.exec(&command).map_err(|e| rerr(dir, &e))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let header = |len: u64, rel: &str| {
            let mut h = tar::Header::new_gnu();
            h.set_size(len);
            h.set_mode(cellops_formats::release::mode_of(rel));
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mtime(now);
            h
        };
        {
            // Large writes: libssh2 sends up to a full window per call.
            let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(
                1 << 20,
                Counting {
                    inner: &mut ch,
                    sent,
                    failed: false,
                },
            ));
            let list = nul_list(&files.iter().map(|f| f.0.clone()).collect::<Vec<_>>());
            tar.append_data(&mut header(list.len() as u64, list_name), list_name, list.as_slice())
                .map_err(|e| ioerr(dir, &e))?;
            for (rel, payload) in files {
                let (reader, len) = payload.open().map_err(|e| ioerr(rel, &e))?;
                tar.append_data(&mut header(len, rel), rel, reader)
                    .map_err(|e| ioerr(&format!("{dir}/{rel}"), &e))?;
            }
            tar.into_inner()
                .and_then(|mut w| w.flush())
                .map_err(|e| ioerr(dir, &e))?;
        }
        ch.send_eof().map_err(|e| rerr(dir, &e))?;
        let mut out = String::new();
        ch.read_to_string(&mut out).map_err(|e| ioerr(dir, &e))?;
        ch.wait_close().map_err(|e| rerr(dir, &e))?;
        if ch.exit_status().map_err(|e| rerr(dir, &e))? != 0 {
            return Err(classified(dir, &out));
        }
        let hashes: Vec<String> = out
            .lines()
            .map(|l| l.trim_start_matches('\\').chars().take(64).collect())
            .collect();
        if hashes.len() != files.len() {
            return Err(RemoteError::new(
                dir,
                RemoteErrorKind::Other,
                format!(
                    "expected {} checksums after the upload, got: {}",
                    files.len(),
                    out.trim()
                ),
            ));
        }
        Ok(hashes)
    }
}

/// Counts bytes written through it; after the first failure every write fails at once (the
/// buffers above it flush again as they are dropped, and each try would wait out the timeout).
struct Counting<'a, W: Write> {
    inner: W,
    sent: &'a mut dyn FnMut(u64),
    failed: bool,
}

impl<W: Write> Counting<'_, W> {
    fn guard<T>(&mut self, r: std::io::Result<T>) -> std::io::Result<T> {
        self.failed |= r.is_err();
        r
    }

    fn check(&self) -> std::io::Result<()> {
        if self.failed {
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "an earlier write failed",
            ));
        }
        Ok(())
    }
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.check()?;
        let r = self.inner.write(buf);
        let n = self.guard(r)?;
        (self.sent)(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.check()?;
        let r = self.inner.flush();
        self.guard(r)
    }
}

fn nul_list(rels: &[String]) -> Vec<u8> {
    let mut list = Vec::new();
    for p in rels {
        list.extend_from_slice(p.as_bytes());
        list.push(0);
    }
    list
}

impl Remote for SshRemote {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn mkdir_all(&mut self, path: &str) -> Result<(), RemoteError> {
        self.intact(path)?;
        // Over SFTP, one component at a time: cheaper than a remote process.
        let mut prefix = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            prefix.push('/');
            prefix.push_str(part);
            match self.sftp.stat(Path::new(&prefix)) {
                Ok(st) if st.is_dir() => continue,
                Ok(_) => {
                    return Err(RemoteError::new(
                        &prefix,
                        RemoteErrorKind::Other,
                        "exists and is not a folder",
                    ));
                }
                Err(_) => {
                    if let Err(e) = self.sftp.mkdir(Path::new(&prefix), 0o755) {
                        // Lost a race with another creator: fine if it is a folder now.
                        if !self.sftp.stat(Path::new(&prefix)).is_ok_and(|st| st.is_dir()) {
                            return Err(rerr(&prefix, &e));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn mkdir_new(&mut self, path: &str) -> Result<bool, RemoteError> {
        self.intact(path)?;
        match self.sftp.mkdir(Path::new(path), 0o755) {
            Ok(()) => Ok(true),
            Err(e) => match self.sftp.lstat(Path::new(path)) {
                Ok(_) => Ok(false),
                Err(_) => Err(rerr(path, &e)),
            },
        }
    }

    fn write(&mut self, path: &str, data: &[u8]) -> Result<(), RemoteError> {
        self.intact(path)?;
        let mut f = self
            .sftp
            .open_mode(
                Path::new(path),
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                0o644,
                OpenType::File,
            )
            .map_err(|e| rerr(path, &e))?;
        f.write_all(data).map_err(|e| ioerr(path, &e))?;
        f.close().map_err(|e| rerr(path, &e))
    }

    /// One tar stream into one remote `tar -x`, then `sha256sum` of what landed on disk, in the
    /// same remote command: no round trip per file, full bandwidth.
    fn upload(
        &mut self,
        dir: &str,
        files: &[(String, Payload)],
        sent: &mut dyn FnMut(u64),
    ) -> Result<Vec<String>, RemoteError> {
        self.intact(dir)?;
        self.stream(dir, files, sent).map_err(|mut e| {
            // A channel's writes report libssh2's failures without their code: a connection
            // that can no longer open a channel is what broke.
            if e.kind == RemoteErrorKind::Other && self.session.channel_session().is_err() {
                e.kind = RemoteErrorKind::Disconnected;
            }
            self.broken = e.kind == RemoteErrorKind::Disconnected;
            e
        })
    }

    fn read(&mut self, path: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        self.intact(path)?;
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
        self.intact(path)?;
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
        self.intact(from)?;
        // SFTP v3 cannot rename over an existing file; `mv -T` is rename(2), which can.
        let cmd = format!("mv -T -- {} {}", shell_quote(from), shell_quote(to));
        self.exec_ok(&cmd, b"", to).map(|_| ())
    }

    fn replace_symlink(&mut self, link: &str, target: &str) -> Result<(), RemoteError> {
        self.intact(link)?;
        // SFTP v3 cannot rename over an existing link; `mv -T` is rename(2).
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
        self.intact(link)?;
        match self.sftp.readlink(Path::new(link)) {
            Ok(p) => Ok(Some(p.to_string_lossy().into_owned())),
            Err(e) => match self.sftp.lstat(Path::new(link)) {
                Err(le) if ssh_err_kind(&le) == RemoteErrorKind::NotFound => Ok(None),
                _ => Err(rerr(link, &e)),
            },
        }
    }

    fn list(&mut self, dir: &str) -> Result<Vec<String>, RemoteError> {
        self.intact(dir)?;
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

    fn remove_all(&mut self, paths: &[String]) -> Result<(), RemoteError> {
        self.intact(paths.first().map_or("", String::as_str))?;
        if paths.is_empty() {
            return Ok(());
        }
        let quoted: Vec<String> = paths.iter().map(|p| shell_quote(p)).collect();
        self.exec_ok(&format!("rm -rf -- {}", quoted.join(" ")), b"", &paths[0])
            .map(|_| ())
    }

    fn link_files(&mut self, from_dir: &str, to_dir: &str, rels: &[String]) -> Result<(), RemoteError> {
        self.intact(to_dir)?;
        if rels.is_empty() {
            return Ok(());
        }
        // One `cp -l --parents` (GNU) per xargs batch: hard links with their folders.
        let cmd = format!(
            "mkdir -p -- {to} && cd -- {from} && xargs -0 cp -l --parents -t {to} --",
            to = shell_quote(to_dir),
            from = shell_quote(from_dir)
        );
        self.exec_ok(&cmd, &nul_list(rels), "linking unchanged files")
            .map(|_| ())
    }

    fn remove_file(&mut self, path: &str) -> Result<(), RemoteError> {
        self.intact(path)?;
        self.sftp.unlink(Path::new(path)).map_err(|e| rerr(path, &e))
    }

    fn remove_dir(&mut self, path: &str) -> Result<(), RemoteError> {
        self.intact(path)?;
        self.sftp.rmdir(Path::new(path)).map_err(|e| rerr(path, &e))
    }

    fn run(&mut self, command: &str, cwd: &str, timeout: Duration) -> Result<CommandOutput, RemoteError> {
        self.intact(command)?;
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
        self.intact(path)?;
        // statvfs@openssh.com; servers without it just skip the check.
        let Ok(mut d) = self.sftp.opendir(Path::new(path)) else {
            return Ok(None);
        };
        Ok(d.statvfs().ok().map(|st| st.f_bavail.saturating_mul(st.f_frsize)))
    }
}

/// An error from a remote command's output: permission, space or other.
fn classified(what: &str, out: &str) -> RemoteError {
    let kind = if out.contains("Permission denied") {
        RemoteErrorKind::PermissionDenied
    } else if out.contains("No space left") {
        RemoteErrorKind::NoSpace
    } else {
        RemoteErrorKind::Other
    };
    RemoteError::new(what, kind, out.trim().to_owned())
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
