//! A local port forwarded through the deploy's SSH connection (`direct-tcpip`, what `ssh -L`
//! does): how people and CI reach the service on the droplet, which listens on loopback only
//! while the firewall stays SSH-only. The host key is pinned as for a deploy.
//!
//! One thread drives every forwarded connection over the one session, in non-blocking mode:
//! libssh2 sessions are not safe to block in from several threads at once.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ssh2::{Channel, ErrorCode, Session};

use crate::ssh::SshRemote;

/// libssh2's "would block".
const EAGAIN: i32 = -37;
/// How long the loop sleeps when nothing moved.
const IDLE: Duration = Duration::from_millis(2);

/// Why the tunnel could not open or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The local port cannot be listened on.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server refused to forward (sshd's `AllowTcpForwarding` / `PermitOpen`, or nothing
    /// listens there).
    #[error("the server refused to forward to {to}: {message}")]
    Refused {
        /// `host:port` on the server.
        to: String,
        /// What it said.
        message: String,
    },
    /// The session broke.
    #[error("the SSH session failed: {0}")]
    Session(String),
}

/// An open tunnel: connections to [`Tunnel::local`] reach `to` on the server.
#[derive(Debug)]
pub struct Tunnel {
    /// The local address (a port of 0 was given one).
    pub local: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<(), TunnelError>>>,
}

impl Tunnel {
    /// Stops forwarding (open connections are closed) and returns how the loop ended.
    pub fn close(mut self) -> Result<(), TunnelError> {
        self.shut()
    }

    /// Waits until the loop ends (an error; or forever, for a person's `tunnel` command).
    pub fn wait(mut self) -> Result<(), TunnelError> {
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(TunnelError::Session("the tunnel thread panicked".into())),
            None => Ok(()),
        }
    }

    fn shut(&mut self) -> Result<(), TunnelError> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(TunnelError::Session("the tunnel thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.shut();
    }
}

/// Listens on `local` and forwards each connection through `remote`'s session to `host:port`
/// as the server sees it (e.g. `127.0.0.1:8080`). The first connection is opened at once to
/// check that the server forwards at all, so a refusal is an error here, not later.
pub fn open(remote: SshRemote, local: SocketAddr, host: &str, port: u16) -> Result<Tunnel, TunnelError> {
    let session = remote.into_session();
    let to = format!("{host}:{port}");
    // Ask once, blocking, so that a server that refuses says so now.
    let probe = session
        .channel_direct_tcpip(host, port, None)
        .map_err(|e| TunnelError::Refused {
            to: to.clone(),
            message: e.message().to_owned(),
        })?;
    drop(probe);
    let listener = TcpListener::bind(local).map_err(|source| TunnelError::Listen { address: local, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| TunnelError::Listen { address: local, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| TunnelError::Listen { address: local, source })?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let host = host.to_owned();
    let thread = std::thread::spawn(move || {
        session.set_blocking(false);
        Forwarder {
            session,
            listener,
            host,
            port,
            conns: Vec::new(),
        }
        .run(&flag)
    });
    Ok(Tunnel {
        local,
        stop,
        thread: Some(thread),
    })
}

/// One forwarded connection and the bytes on their way.
struct Conn {
    tcp: TcpStream,
    channel: Channel,
    up: Vec<u8>,
    down: Vec<u8>,
    tcp_done: bool,
    channel_done: bool,
}

struct Forwarder {
    session: Session,
    listener: TcpListener,
    host: String,
    port: u16,
    conns: Vec<Conn>,
}

fn would_block(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::WouldBlock
}

impl Forwarder {
    fn run(mut self, stop: &AtomicBool) -> Result<(), TunnelError> {
        while !stop.load(Ordering::Acquire) {
            let mut moved = self.accept()?;
            for c in &mut self.conns {
                moved |= pump(c);
            }
            self.conns.retain(|c| !(c.tcp_done && c.channel_done));
            if !moved {
                std::thread::sleep(IDLE);
            }
        }
        Ok(())
    }

    /// Takes a waiting local connection, if any, and opens its channel.
    fn accept(&mut self) -> Result<bool, TunnelError> {
        let tcp = match self.listener.accept() {
            Ok((tcp, _)) => tcp,
            Err(e) if would_block(&e) => return Ok(false),
            Err(e) => return Err(TunnelError::Session(format!("accepting: {e}"))),
        };
        let channel = loop {
            match self.session.channel_direct_tcpip(&self.host, self.port, None) {
                Ok(c) => break c,
                Err(e) if e.code() == ErrorCode::Session(EAGAIN) => std::thread::sleep(IDLE),
                Err(_) => {
                    // This connection cannot be forwarded; the others go on.
                    let _ = tcp.shutdown(Shutdown::Both);
                    return Ok(true);
                }
            }
        };
        tcp.set_nonblocking(true)
            .map_err(|e| TunnelError::Session(format!("local socket: {e}")))?;
        self.conns.push(Conn {
            tcp,
            channel,
            up: Vec::new(),
            down: Vec::new(),
            tcp_done: false,
            channel_done: false,
        });
        Ok(true)
    }
}

/// Moves what can move, both ways, without blocking; whether anything did.
fn pump(c: &mut Conn) -> bool {
    let mut moved = false;
    let mut buf = [0u8; 32 * 1024];
    if !c.tcp_done && c.up.is_empty() {
        match c.tcp.read(&mut buf) {
            Ok(0) => {
                c.tcp_done = true;
                let _ = c.channel.send_eof();
            }
            Ok(n) => c.up.extend_from_slice(&buf[..n]),
            Err(e) if would_block(&e) => {}
            Err(_) => c.tcp_done = true,
        }
    }
    if !c.up.is_empty() {
        match c.channel.write(&c.up) {
            Ok(n) => {
                c.up.drain(..n);
                moved = n > 0;
            }
            Err(e) if would_block(&e) => {}
            Err(_) => (c.tcp_done, c.channel_done) = (true, true),
        }
    }
    if !c.channel_done && c.down.is_empty() {
        match c.channel.read(&mut buf) {
            Ok(0) if c.channel.eof() => {
                c.channel_done = true;
                let _ = c.tcp.shutdown(Shutdown::Write);
            }
            Ok(n) => {
                c.down.extend_from_slice(&buf[..n]);
                moved |= n > 0;
            }
            Err(e) if would_block(&e) => {}
            Err(_) => c.channel_done = true,
        }
    }
    if !c.down.is_empty() {
        match c.tcp.write(&c.down) {
            Ok(n) => {
                c.down.drain(..n);
                moved = true;
            }
            Err(e) if would_block(&e) => {}
            Err(_) => (c.tcp_done, c.channel_done) = (true, true),
        }
    }
    if c.tcp_done && c.channel_done {
        let _ = c.channel.close();
    }
    moved
}
