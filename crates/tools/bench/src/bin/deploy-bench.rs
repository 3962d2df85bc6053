//! `deploy-bench`: cellops' deploy against OpenSSH `scp -r`, to a real sshd on 127.0.0.1 started
//! here (`cellops_deploy::harness`), on the same tree: N small files plus one large bundle file.
//! Three scenarios, each timed end to end (connection included), alternating the two tools:
//! first deploy, no-change redeploy, one small file changed. Prints one JSON line per run.

// A benchmark driver: its output is the point.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark driver: its output is the point"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cellops_deploy::release::{self, DeployConfig, SourceFile};
use cellops_deploy::remote::{Remote, sha256_of};
use cellops_deploy::ssh::{self, Auth, HostCheck, SshOptions};
use cellops_test_support::sshd::Sshd;
use clap::Parser;

/// Deploy benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Small files in the tree.
    #[arg(long, default_value_t = 1000)]
    files: usize,
    /// Size of the large file, MiB.
    #[arg(long, default_value_t = 50)]
    bundle_mib: usize,
    /// Rounds (each runs every scenario with both tools).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Print where cellops' time goes (per remote operation) to stderr.
    #[arg(long)]
    profile: bool,
    /// Scratch folder [default: a temporary one].
    #[arg(long)]
    work: Option<PathBuf>,
}

fn tree(root: &Path, files: usize, bundle_mib: usize) -> anyhow::Result<Vec<SourceFile>> {
    let mut out = Vec::new();
    let mut write = |rel: String, bytes: Vec<u8>| -> anyhow::Result<()> {
        let p = root.join(&rel);
        std::fs::create_dir_all(p.parent().context("parent")?)?;
        std::fs::write(&p, &bytes)?;
        let (size, sha256) = sha256_of(bytes.as_slice())?;
        out.push(SourceFile {
            rel,
            path: p,
            size,
            sha256,
        });
        Ok(())
    };
    for i in 0..files {
        // 1–4 KiB of text-like bytes, different per file.
        let len = 1024 + (i * 37) % 3072;
        let body: Vec<u8> = (0..len).map(|j| b'a' + ((i * 31 + j * 7) % 26) as u8).collect();
        write(format!("cell-params/group{:02}/params{i:04}.yaml", i % 20), body)?;
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let big: Vec<u8> = (0..bundle_mib << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    write("models/bundle/model.safetensors".into(), big)?;
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

fn scp(sshd: &Sshd, src: &Path, dest: &str, known_hosts: &Path) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let status = Command::new("scp")
        .args(["-q", "-r", "-P", &sshd.port.to_string(), "-i"])
        .arg(sshd.dir.join("client_ed25519"))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .arg(src)
        .arg(format!("{}@127.0.0.1:{dest}", sshd.user))
        .status()?;
    if !status.success() {
        bail!("scp failed: {status}");
    }
    Ok(t.elapsed())
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let tmp = tempfile_dir(a.work.clone())?;
    let sshd = Sshd::start(&tmp.join("sshd"))?;
    let known_hosts = tmp.join("known_hosts");
    std::fs::write(&known_hosts, format!("{}\n", sshd.known_hosts_line()))?;
    let src = tmp.join("src");
    let mut files = tree(&src, a.files, a.bundle_mib)?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    let opts = SshOptions {
        host: "127.0.0.1".into(),
        port: sshd.port,
        username: sshd.user.clone(),
        auth: Auth::Key {
            private_key: sshd.client_key.clone(),
            passphrase: None,
        },
        host_check: HostCheck::KnownHosts(sshd.known_hosts_line()),
        connect_timeout: Duration::from_secs(10),
        io_timeout: Duration::from_secs(120),
    };
    let cfg = DeployConfig {
        keep_releases: 3,
        ..DeployConfig::default()
    };
    let changed = files
        .iter()
        .position(|f| f.rel.ends_with("params0001.yaml"))
        .context("file 1")?;
    for round in 0..a.rounds {
        let base = tmp.join(format!("server-{round}"));
        let b = base.display().to_string();
        let scp_dest = tmp.join(format!("scp-{round}"));
        std::fs::create_dir_all(&scp_dest)?;
        for (scenario, edit) in [("first", false), ("no-change", false), ("one-changed", true)] {
            if edit {
                let f = &mut files[changed];
                let mut body = std::fs::read(&f.path)?;
                body.extend_from_slice(format!("# round {round}\n").as_bytes());
                std::fs::write(&f.path, &body)?;
                (f.size, f.sha256) = sha256_of(body.as_slice())?;
            }
            let t = Instant::now();
            let mut remote = ssh::connect(&opts)?;
            let connected = t.elapsed();
            let mut timed = Timed {
                inner: &mut remote,
                spent: Default::default(),
            };
            let o = release::deploy(&mut timed, &b, &files, &cfg, &mut |_| {})?;
            let ours = t.elapsed();
            if a.profile {
                eprintln!("{scenario}: connect {connected:?}, {:?}", timed.spent);
                eprintln!("cipher: {:?}", remote.cipher());
            }
            drop(remote);
            // scp copies the whole tree every time (it has no notion of what is there already).
            let theirs = scp(&sshd, &src, &format!("{}/{scenario}", scp_dest.display()), &known_hosts)?;
            println!(
                "{}",
                serde_json::json!({
                    "round": round, "scenario": scenario, "files": files.len(), "tree_bytes": total,
                    "cellops_s": ours.as_secs_f64(), "cellops_files_sent": o.files_sent, "cellops_bytes_sent": o.bytes_sent,
                    "scp_s": theirs.as_secs_f64(), "scp_bytes_sent": total,
                })
            );
        }
    }
    Ok(())
}

/// Wraps a remote and adds up the time spent in each operation (`--profile`).
struct Timed<'a> {
    inner: &'a mut dyn Remote,
    spent: std::collections::BTreeMap<&'static str, (u32, Duration)>,
}

impl Timed<'_> {
    fn time<T>(&mut self, op: &'static str, f: impl FnOnce(&mut dyn Remote) -> T) -> T {
        let t = Instant::now();
        let r = f(self.inner);
        let e = self.spent.entry(op).or_default();
        e.0 += 1;
        e.1 += t.elapsed();
        r
    }
}

type R<T> = Result<T, cellops_deploy::remote::RemoteError>;

impl Remote for Timed<'_> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn mkdir_all(&mut self, p: &str) -> R<()> {
        self.time("mkdir_all", |r| r.mkdir_all(p))
    }
    fn mkdir_new(&mut self, p: &str) -> R<bool> {
        self.time("mkdir_new", |r| r.mkdir_new(p))
    }
    fn write(&mut self, p: &str, d: &[u8]) -> R<()> {
        self.time("write", |r| r.write(p, d))
    }
    fn upload(
        &mut self,
        dir: &str,
        files: &[(String, cellops_deploy::remote::Payload)],
        s: &mut dyn FnMut(u64),
    ) -> R<Vec<String>> {
        self.time("upload", |r| r.upload(dir, files, s))
    }
    fn read(&mut self, p: &str) -> R<Option<Vec<u8>>> {
        self.time("read", |r| r.read(p))
    }
    fn append(&mut self, p: &str, d: &[u8]) -> R<()> {
        self.time("append", |r| r.append(p, d))
    }
    fn rename(&mut self, a: &str, b: &str) -> R<()> {
        self.time("rename", |r| r.rename(a, b))
    }
    fn replace_symlink(&mut self, l: &str, t: &str) -> R<()> {
        self.time("replace_symlink", |r| r.replace_symlink(l, t))
    }
    fn read_link(&mut self, l: &str) -> R<Option<String>> {
        self.time("read_link", |r| r.read_link(l))
    }
    fn list(&mut self, d: &str) -> R<Vec<String>> {
        self.time("list", |r| r.list(d))
    }
    fn remove_all(&mut self, p: &[String]) -> R<()> {
        self.time("remove_all", |r| r.remove_all(p))
    }
    fn link_files(&mut self, from: &str, to: &str, rels: &[String]) -> R<()> {
        self.time("link_files", |r| r.link_files(from, to, rels))
    }
    fn remove_file(&mut self, p: &str) -> R<()> {
        self.time("remove_file", |r| r.remove_file(p))
    }
    fn remove_dir(&mut self, p: &str) -> R<()> {
        self.time("remove_dir", |r| r.remove_dir(p))
    }
    fn run(&mut self, c: &str, cwd: &str, t: Duration) -> R<cellops_deploy::remote::CommandOutput> {
        self.time("run", |r| r.run(c, cwd, t))
    }
    fn free_bytes(&mut self, p: &str) -> R<Option<u64>> {
        self.time("free_bytes", |r| r.free_bytes(p))
    }
}

/// The scratch folder: given, or a fresh one under the system's temp dir.
fn tempfile_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let d = given.unwrap_or_else(|| std::env::temp_dir().join(format!("cellops-deploy-bench-{}", std::process::id())));
    if d.exists() {
        std::fs::remove_dir_all(&d)?;
    }
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
