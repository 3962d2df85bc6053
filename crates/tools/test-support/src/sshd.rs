//! A real OpenSSH server for tests: `sshd` on 127.0.0.1 at a free port, with a generated host key
//! and client keys in a folder, stopped by its own process group (the daemon and every session it
//! forked). Used by the `deploy` crate's and the `deploy-cell-params` action's integration tests
//! and by `deploy-bench`.
//!
//! Needs `sshd` and `ssh-keygen` (Debian/Ubuntu: `apt-get install openssh-server`).

use std::io;
use std::net::TcpStream;

use crate::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running sshd.
#[derive(Debug)]
pub struct Sshd {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The folder with its configuration and keys.
    pub dir: PathBuf,
    /// The user tests log in as (the one running them).
    pub user: String,
    /// The authorised client key (OpenSSH private key text, unencrypted).
    pub client_key: String,
    /// The host key's public line (`ssh-ed25519 AAAA…`).
    pub host_public: String,
    /// Lines added to the configuration ([`Sshd::configure`]).
    extra: String,
    child: Option<Child>,
}

fn sshd_binary() -> io::Result<PathBuf> {
    ["/usr/sbin/sshd", "/usr/bin/sshd", "/usr/local/sbin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "sshd not found: install openssh-server (apt-get install openssh-server)",
            )
        })
}

/// Generates a key pair with `ssh-keygen` (`kind`: `ed25519`, `ecdsa`, `rsa`), protected by
/// `passphrase` (empty: none), in `format` (`""`: OpenSSH's own, `"PEM"`); returns the private
/// key's text and the public line.
pub fn keygen(dir: &Path, name: &str, kind: &str, passphrase: &str, format: &str) -> io::Result<(String, String)> {
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", passphrase, "-C", "cellops-test", "-f"])
        .arg(&path);
    if !format.is_empty() {
        cmd.args(["-m", format]);
    }
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let private = std::fs::read_to_string(&path)?;
    let public = std::fs::read_to_string(dir.join(format!("{name}.pub")))?;
    Ok((private, public.trim().to_owned()))
}

fn current_user() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".into())
}

impl Sshd {
    /// Generates keys in `dir` and starts sshd; waits until it accepts connections.
    pub fn start(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (_, host_public) = keygen(dir, "host_ed25519", "ed25519", "", "")?;
        let (client_key, client_public) = keygen(dir, "client_ed25519", "ed25519", "", "")?;
        std::fs::write(dir.join("authorized_keys"), format!("{client_public}\n"))?;
        let mut s = Self {
            port: 0,
            dir: dir.to_owned(),
            user: current_user(),
            client_key,
            host_public,
            extra: String::new(),
            child: None,
        };
        s.restart()?;
        Ok(s)
    }

    /// Restarts sshd with `lines` added to its configuration (e.g. the droplet's
    /// `AllowTcpForwarding local` and `PermitOpen`).
    pub fn configure(&mut self, lines: &str) -> io::Result<()> {
        self.extra = lines.trim_end().to_owned() + "\n";
        self.restart()
    }

    /// `count` servers in `root/sshd-<i>`, each accepting the first one's client key (one deploy
    /// key for a fleet, as Terraform sets it up).
    pub fn fleet(root: &Path, count: usize) -> io::Result<Vec<Self>> {
        let mut servers: Vec<Self> = Vec::with_capacity(count);
        for i in 0..count {
            let s = Self::start(&root.join(format!("sshd-{i}")))?;
            if let Some(first) = servers.first() {
                let public = std::fs::read_to_string(first.dir.join("client_ed25519.pub"))?;
                s.authorize(public.trim())?;
            }
            servers.push(s);
        }
        Ok(servers)
    }

    /// Adds a public key line to the authorised keys.
    pub fn authorize(&self, public_line: &str) -> io::Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("authorized_keys"))?;
        writeln!(f, "{public_line}")
    }

    /// (Re)starts sshd with the same keys, on a new free port. A free port can be taken by another
    /// test's sshd before ours binds it: ready means our own process wrote its pid file (sshd does
    /// that once it listens) and the port accepts; an sshd that exited is retried on another port.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        // sshd refuses to start without its privilege-separation directory when run as root.
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut last = None;
        for _ in 0..5 {
            match self.spawn_on_free_port()? {
                Ok((port, child)) => {
                    self.port = port;
                    self.child = Some(child);
                    return Ok(());
                }
                Err(exited) => last = Some(exited),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("sshd did not start")))
    }

    /// One attempt: `Ok(Ok(..))` listening, `Ok(Err(..))` sshd exited (port taken?), `Err` otherwise.
    fn spawn_on_free_port(&self) -> io::Result<Result<(u16, Child), io::Error>> {
        let port = free_port()?;
        let d = self.dir.display();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
             UsePAM no\nSubsystem sftp internal-sftp\nLogLevel ERROR\nMaxStartups 50\n{}",
            self.extra
        );
        let cfg = self.dir.join("sshd_config");
        std::fs::write(&cfg, config)?;
        let pid_file = self.dir.join("sshd.pid");
        let _ = std::fs::remove_file(&pid_file);
        let log = std::fs::File::create(self.dir.join("sshd.log"))?;
        let mut cmd = Command::new(sshd_binary()?);
        cmd.arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let mut child = cmd.spawn()?;
        let started = Instant::now();
        loop {
            let ours = std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == child.id().to_string());
            if ours && TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Ok((port, child)));
            }
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default();
                return Ok(Err(io::Error::other(format!("sshd exited ({status}): {log}"))));
            }
            if started.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                return Err(io::Error::other("sshd did not listen within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A known_hosts line for this server (`[127.0.0.1]:port ssh-ed25519 AAAA…`).
    pub fn known_hosts_line(&self) -> String {
        let mut parts = self.host_public.split_whitespace();
        let (kind, key) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        format!("[127.0.0.1]:{} {kind} {key}", self.port)
    }

    /// Stops sshd and every session it started (each session is its own process group, so the
    /// process tree is walked), at once, like a crashed or rebooted server.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let mut pids = descendants(c.id());
            pids.push(c.id());
            let args: Vec<String> = pids.iter().map(u32::to_string).collect();
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(&args)
                .stderr(Stdio::null())
                .status();
            let _ = c.wait();
        }
    }
}

/// Every process below `pid` (from `ps`).
fn descendants(pid: u32) -> Vec<u32> {
    let out = Command::new("ps")
        .args(["-eo", "pid=,ppid="])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let pairs: Vec<(u32, u32)> = out
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace().map(|x| x.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &pairs {
            if parent == p && !found.contains(&child) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}
