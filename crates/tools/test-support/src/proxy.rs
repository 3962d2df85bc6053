//! A TCP proxy on 127.0.0.1 that cuts the network part-way: it forwards to an upstream port until
//! the client has sent a number of bytes, then either resets both connections or goes silent
//! (forwarding nothing more, closing nothing — a link that died without a word).

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How the network fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Both connections are shut down (a FIN each way, not an RST): each side sees the
    /// connection end.
    Reset,
    /// Nothing more goes through either way and nothing is closed: only a timeout notices.
    Silence,
}

/// A proxy accepting on [`Proxy::port`]; it stops (and closes every connection) when dropped.
#[derive(Debug)]
pub struct Proxy {
    /// The port clients connect to.
    pub port: u16,
    /// Bytes the clients sent so far (all connections).
    pub sent: Arc<AtomicU64>,
    /// Set once the cut happened.
    pub cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    threads: Threads,
}

/// The proxy's threads, joined when it is dropped (so every socket is closed by then).
type Threads = Arc<std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>>;

impl Proxy {
    /// Forwards 127.0.0.1:<port> to `upstream`, cutting as `how` once clients sent more than
    /// `after` bytes.
    pub fn start(upstream: SocketAddr, after: u64, how: Cut) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let (sent, cut, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let threads: Threads = Arc::default();
        let shared = Shared {
            after,
            how,
            sent: Arc::clone(&sent),
            cut: Arc::clone(&cut),
            stop: Arc::clone(&stop),
            threads: Arc::clone(&threads),
        };
        let acceptor = std::thread::spawn(move || accept(&listener, upstream, &shared));
        threads
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .push(acceptor);
        Ok(Self {
            port,
            sent,
            cut,
            stop,
            threads,
        })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The acceptor first (it adds pumps), then every pump: each stops within its 50 ms read
        // timeout and shuts its sockets down.
        loop {
            let next = self
                .threads
                .lock()
                .ok()
                .and_then(|mut t| (!t.is_empty()).then(|| t.remove(0)));
            let Some(handle) = next else { break };
            let _ = handle.join();
        }
    }
}

#[derive(Clone)]
struct Shared {
    after: u64,
    how: Cut,
    sent: Arc<AtomicU64>,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    threads: Threads,
}

fn accept(listener: &TcpListener, upstream: SocketAddr, s: &Shared) {
    while !s.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                for (from, to, counted) in [(&client, &server, true), (&server, &client, false)] {
                    let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    let shared = s.clone();
                    let pump = std::thread::spawn(move || pump(from, to, counted, &shared));
                    if let Ok(mut t) = s.threads.lock() {
                        t.push(pump);
                    }
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Copies `from` to `to` until either ends, the cut, or the proxy stops.
fn pump(mut from: TcpStream, mut to: TcpStream, counted: bool, s: &Shared) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 16 * 1024];
    loop {
        if s.stop.load(Ordering::SeqCst) {
            break;
        }
        if s.cut.load(Ordering::SeqCst) {
            if s.how == Cut::Reset {
                break;
            }
            // Silence: hold the sockets open, forward nothing, until the proxy stops.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        if counted && s.sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > s.after {
            s.cut.store(true, Ordering::SeqCst);
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
