//! A real nginx for tests: the `server` blocks a test gives (for example the droplet's HTTPS front
//! rendered from `infra/cloud-init.yaml.tftpl`), checked with `nginx -t` and run in the foreground
//! as one process with every path in a folder. Used by `crates/tools/infra`'s tests.
//!
//! Needs `nginx` 1.19.5 or later (for `-e`; Debian 12 has 1.22: `apt-get install nginx`) and, for
//! [`self_signed`], `openssl`.

use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx, stopped when dropped.
#[derive(Debug)]
pub struct Nginx {
    /// The port on 127.0.0.1 its first `listen` uses (the one [`Nginx::start`] waits for).
    pub port: u16,
    child: Child,
}

fn nginx_binary() -> io::Result<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "nginx not found: apt-get install nginx"))
}

/// Writes a self-signed certificate for `name` (subject and DNS name) and its key into `dir` as
/// `<name>.crt` and `<name>.key`; returns their paths.
pub fn self_signed(dir: &Path, name: &str) -> io::Result<(PathBuf, PathBuf)> {
    let (crt, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-days", "2", "-subj", &format!("/CN={name}"), "-addext"])
        .arg(format!("subjectAltName=DNS:{name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok((crt, key))
}

/// The main configuration around the test's `server` blocks: one foreground process, logs and
/// temporary files in `dir`.
fn main_config(dir: &Path, servers: &str) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  \
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
         scgi_temp_path {d}/scgi;\n{servers}\n}}\n"
    )
}

impl Nginx {
    /// Checks the configuration with `nginx -t` (its complaint is the error) and starts nginx;
    /// waits until `port` on 127.0.0.1 accepts connections.
    pub fn start(dir: &Path, servers: &str, port: u16) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, main_config(dir, servers))?;
        let nginx = nginx_binary()?;
        let mut base = Command::new(&nginx);
        base.arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf);
        let check = Command::new(&nginx)
            .args(base.get_args())
            .arg("-t")
            .stdin(Stdio::null())
            .output()?;
        if !check.status.success() {
            return Err(io::Error::other(format!(
                "nginx -t refused the configuration: {}",
                String::from_utf8_lossy(&check.stderr)
            )));
        }
        let child = base
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut me = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = me.child.try_wait()? {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                return Err(io::Error::other(format!("nginx exited ({status}): {log}")));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("nginx did not listen within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Another process may have taken the port first: then ours has exited ("address in use")
        // while the connection above reached the other one.
        std::thread::sleep(Duration::from_millis(100));
        if let Some(status) = me.child.try_wait()? {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            return Err(io::Error::other(format!("nginx exited ({status}): {log}")));
        }
        Ok(me)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
