//! The tunnel against a real sshd on 127.0.0.1: several connections at once reach a service on
//! the server's loopback and get every byte back; an sshd that only permits another port
//! (the droplet's `PermitOpen`) refuses, and the tunnel says so when it opens.

#![allow(clippy::unwrap_used, reason = "test code")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use cellops_deploy::ssh::{self, Auth, HostCheck, SshOptions};
use cellops_deploy::tunnel::{self, TunnelError};
use cellops_test_support::sshd::Sshd;

fn connect(s: &Sshd) -> ssh::SshRemote {
    let o = SshOptions {
        host: "127.0.0.1".into(),
        port: s.port,
        username: s.user.clone(),
        auth: Auth::Key {
            private_key: s.client_key.clone(),
            passphrase: None,
        },
        host_check: HostCheck::KnownHosts(s.known_hosts_line()),
        connect_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(30),
    };
    ssh::connect(&o).unwrap()
}

/// A service on the "server" (here, this machine's loopback): answers each connection with the
/// bytes it read, reversed, once the client has sent all of them.
fn service() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut got = Vec::new();
                if stream.read_to_end(&mut got).is_ok() {
                    got.reverse();
                    let _ = stream.write_all(&got);
                }
            });
        }
    });
    address
}

fn ask(via: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(via).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(payload).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    back
}

#[test]
fn connections_through_the_tunnel_reach_the_servers_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(&tmp.path().join("sshd")).unwrap();
    let target = service();
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let t = tunnel::open(connect(&sshd), local, "127.0.0.1", target.port()).unwrap();
    let via = t.local;
    let workers: Vec<_> = (0..4u8)
        .map(|k| {
            std::thread::spawn(move || {
                let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8 ^ k).collect();
                let mut want = payload.clone();
                want.reverse();
                assert!(ask(via, &payload) == want, "connection {k}: every byte, in order");
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(ask(via, b"abc"), b"cba", "still forwarding");
    t.close().unwrap();
    assert!(TcpStream::connect(via).is_err(), "closed");
}

#[test]
fn a_server_that_permits_another_port_refuses_when_the_tunnel_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sshd = Sshd::start(&tmp.path().join("sshd")).unwrap();
    let target = service();
    sshd.configure("AllowTcpForwarding local\nPermitOpen 127.0.0.1:1\n")
        .unwrap();
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let err = tunnel::open(connect(&sshd), local, "127.0.0.1", target.port()).unwrap_err();
    assert!(matches!(err, TunnelError::Refused { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{}", target.port())),
        "{err}"
    );
}
