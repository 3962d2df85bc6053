//! What a deploy needs from the machine it deploys to, and the local-folder implementation
//! (`file://` targets). [`crate::ssh::SshRemote`] implements the same over SSH.
//!
//! Paths are absolute, `/`-separated strings on the remote side.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// What went wrong with a remote operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteErrorKind {
    /// The path does not exist.
    NotFound,
    /// The server refused access.
    PermissionDenied,
    /// The file system is full.
    NoSpace,
    /// The connection broke.
    Disconnected,
    /// Anything else.
    Other,
}

/// A failed remote operation, with the path it was about.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RemoteError {
    /// The remote path (or the command).
    pub path: String,
    /// The class of failure.
    pub kind: RemoteErrorKind,
    /// What the server or the OS said.
    pub message: String,
}

impl RemoteError {
    /// An error about `path`.
    pub fn new(path: impl Into<String>, kind: RemoteErrorKind, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            kind,
            message: message.into(),
        }
    }

    fn io(path: &str, e: &std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => RemoteErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => RemoteErrorKind::PermissionDenied,
            std::io::ErrorKind::StorageFull => RemoteErrorKind::NoSpace,
            _ => RemoteErrorKind::Other,
        };
        Self::new(path, kind, e.to_string())
    }
}

/// The result of a command run on the remote side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// The exit status (`None` when killed or timed out).
    pub status: Option<i32>,
    /// Standard output and error, interleaved as far as the transport allows.
    pub output: String,
    /// Whether the timeout ended it.
    pub timed_out: bool,
}

impl CommandOutput {
    /// Whether it exited with 0.
    pub fn success(&self) -> bool {
        self.status == Some(0) && !self.timed_out
    }
}

/// The content of a file to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A file on this machine.
    File(std::path::PathBuf),
    /// Bytes in memory.
    Bytes(Vec<u8>),
}

impl Payload {
    /// Opens it for reading, with its length.
    pub fn open(&self) -> std::io::Result<(Box<dyn Read + '_>, u64)> {
        match self {
            Payload::File(p) => {
                let f = std::fs::File::open(p)?;
                let len = f.metadata()?.len();
                Ok((Box::new(f), len))
            }
            Payload::Bytes(b) => Ok((Box::new(b.as_slice()), b.len() as u64)),
        }
    }
}

/// Operations on the machine a release goes to. Bulk operations take whole lists, so that a
/// transport with per-operation latency (SSH) can do each in one round trip.
pub trait Remote {
    /// `ssh://user@host:port` or `file://`, for messages.
    fn describe(&self) -> String;
    /// Creates a directory and its parents.
    fn mkdir_all(&mut self, path: &str) -> Result<(), RemoteError>;
    /// Creates a directory if it does not exist; `false` if it already did (atomic: the lock).
    fn mkdir_new(&mut self, path: &str) -> Result<bool, RemoteError>;
    /// Writes one small file (creating or truncating it).
    fn write(&mut self, path: &str, data: &[u8]) -> Result<(), RemoteError>;
    /// Uploads files into `dir` at their relative paths (creating subdirectories), calling `sent`
    /// with byte counts; returns the sha256 (hex) of each file as stored on the remote side, read
    /// back from its disk, for verification.
    fn upload(
        &mut self,
        dir: &str,
        files: &[(String, Payload)],
        sent: &mut dyn FnMut(u64),
    ) -> Result<Vec<String>, RemoteError>;
    /// A file's contents, `None` if it does not exist.
    fn read(&mut self, path: &str) -> Result<Option<Vec<u8>>, RemoteError>;
    /// Appends to a file, creating it.
    fn append(&mut self, path: &str, data: &[u8]) -> Result<(), RemoteError>;
    /// Renames `from` to `to`, as rename(2): a file at `to` is replaced atomically (a folder at
    /// `to` must not exist).
    fn rename(&mut self, from: &str, to: &str) -> Result<(), RemoteError>;
    /// Points the symbolic link `link` at `target`, atomically (a new link renamed over the old).
    fn replace_symlink(&mut self, link: &str, target: &str) -> Result<(), RemoteError>;
    /// Where a symbolic link points, `None` if it does not exist.
    fn read_link(&mut self, link: &str) -> Result<Option<String>, RemoteError>;
    /// The entry names in a directory (empty if it does not exist).
    fn list(&mut self, dir: &str) -> Result<Vec<String>, RemoteError>;
    /// Removes files or directory trees (nothing for missing ones).
    fn remove_all(&mut self, paths: &[String]) -> Result<(), RemoteError>;
    /// Hard-links (or, across file systems, copies) each relative path from `from_dir` into
    /// `to_dir`, creating directories.
    fn link_files(&mut self, from_dir: &str, to_dir: &str, rels: &[String]) -> Result<(), RemoteError>;
    /// Removes one file.
    fn remove_file(&mut self, path: &str) -> Result<(), RemoteError>;
    /// Removes one empty directory.
    fn remove_dir(&mut self, path: &str) -> Result<(), RemoteError>;
    /// Runs a shell command in `cwd` with a timeout.
    fn run(&mut self, command: &str, cwd: &str, timeout: Duration) -> Result<CommandOutput, RemoteError>;
    /// Free bytes on the file system of `path`, when known.
    fn free_bytes(&mut self, path: &str) -> Result<Option<u64>, RemoteError>;
}

/// Quotes a string for a POSIX shell.
///
/// ```
/// assert_eq!(cellops_deploy::remote::shell_quote("it's"), r#"'it'\''s'"#);
/// ```
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub use cellops_formats::release::sha256_of;

/// A folder on this machine (`file://` targets): the same release logic without a network.
#[derive(Debug, Default)]
pub struct LocalRemote;

fn parent_of(p: &Path) -> Option<&Path> {
    p.parent().filter(|d| !d.as_os_str().is_empty())
}

impl Remote for LocalRemote {
    fn describe(&self) -> String {
        "file://".into()
    }

    fn mkdir_all(&mut self, path: &str) -> Result<(), RemoteError> {
        std::fs::create_dir_all(path).map_err(|e| RemoteError::io(path, &e))
    }

    fn mkdir_new(&mut self, path: &str) -> Result<bool, RemoteError> {
        match std::fs::create_dir(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(RemoteError::io(path, &e)),
        }
    }

    fn write(&mut self, path: &str, data: &[u8]) -> Result<(), RemoteError> {
        std::fs::write(path, data).map_err(|e| RemoteError::io(path, &e))
    }

    fn upload(
        &mut self,
        dir: &str,
        files: &[(String, Payload)],
        sent: &mut dyn FnMut(u64),
    ) -> Result<Vec<String>, RemoteError> {
        let mut hashes = Vec::with_capacity(files.len());
        for (rel, payload) in files {
            let path = format!("{dir}/{rel}");
            if let Some(d) = parent_of(Path::new(&path)) {
                std::fs::create_dir_all(d).map_err(|e| RemoteError::io(&path, &e))?;
            }
            let (mut data, _) = payload.open().map_err(|e| RemoteError::io(&path, &e))?;
            let mut f = std::fs::File::create(&path).map_err(|e| RemoteError::io(&path, &e))?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let k = data.read(&mut buf).map_err(|e| RemoteError::io(&path, &e))?;
                if k == 0 {
                    break;
                }
                std::io::Write::write_all(&mut f, &buf[..k]).map_err(|e| RemoteError::io(&path, &e))?;
                sent(k as u64);
            }
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::Permissions::from_mode(cellops_formats::release::mode_of(rel));
                f.set_permissions(mode).map_err(|e| RemoteError::io(&path, &e))?;
            }
            f.sync_all().map_err(|e| RemoteError::io(&path, &e))?;
            drop(f);
            let stored = std::fs::File::open(&path).map_err(|e| RemoteError::io(&path, &e))?;
            hashes.push(
                sha256_of(stored)
                    .map(|(_, h)| h)
                    .map_err(|e| RemoteError::io(&path, &e))?,
            );
        }
        Ok(hashes)
    }

    fn read(&mut self, path: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RemoteError::io(path, &e)),
        }
    }

    fn append(&mut self, path: &str, data: &[u8]) -> Result<(), RemoteError> {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| RemoteError::io(path, &e))?;
        f.write_all(data).map_err(|e| RemoteError::io(path, &e))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), RemoteError> {
        std::fs::rename(from, to).map_err(|e| RemoteError::io(to, &e))
    }

    fn replace_symlink(&mut self, link: &str, target: &str) -> Result<(), RemoteError> {
        let tmp = format!("{link}.new-{}", std::process::id());
        let _ = std::fs::remove_file(&tmp);
        symlink(target, &tmp).map_err(|e| RemoteError::io(&tmp, &e))?;
        std::fs::rename(&tmp, link).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            RemoteError::io(link, &e)
        })
    }

    fn read_link(&mut self, link: &str) -> Result<Option<String>, RemoteError> {
        match std::fs::read_link(link) {
            Ok(t) => Ok(Some(t.to_string_lossy().into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RemoteError::io(link, &e)),
        }
    }

    fn list(&mut self, dir: &str) -> Result<Vec<String>, RemoteError> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RemoteError::io(dir, &e)),
        };
        let mut names = Vec::new();
        for e in rd {
            let e = e.map_err(|e| RemoteError::io(dir, &e))?;
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn remove_all(&mut self, paths: &[String]) -> Result<(), RemoteError> {
        for path in paths {
            let p = Path::new(path);
            let r = match std::fs::symlink_metadata(p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => Err(e),
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
                Ok(_) => std::fs::remove_file(p),
            };
            r.map_err(|e| RemoteError::io(path, &e))?;
        }
        Ok(())
    }

    fn link_files(&mut self, from_dir: &str, to_dir: &str, rels: &[String]) -> Result<(), RemoteError> {
        for rel in rels {
            let (from, to) = (format!("{from_dir}/{rel}"), format!("{to_dir}/{rel}"));
            if let Some(d) = parent_of(Path::new(&to)) {
                std::fs::create_dir_all(d).map_err(|e| RemoteError::io(&to, &e))?;
            }
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).map_err(|e| RemoteError::io(&to, &e))?;
            }
        }
        Ok(())
    }

    fn remove_file(&mut self, path: &str) -> Result<(), RemoteError> {
        std::fs::remove_file(path).map_err(|e| RemoteError::io(path, &e))
    }

    fn remove_dir(&mut self, path: &str) -> Result<(), RemoteError> {
        std::fs::remove_dir(path).map_err(|e| RemoteError::io(path, &e))
    }

    fn run(&mut self, command: &str, cwd: &str, timeout: Duration) -> Result<CommandOutput, RemoteError> {
        run_local(command, cwd, timeout)
    }

    fn free_bytes(&mut self, path: &str) -> Result<Option<u64>, RemoteError> {
        let out = std::process::Command::new("df")
            .args(["-Pk", "--", path])
            .output()
            .map_err(|e| RemoteError::io(path, &e))?;
        Ok(parse_df(&String::from_utf8_lossy(&out.stdout)))
    }
}

#[cfg(unix)]
fn symlink(target: &str, link: &str) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(_target: &str, _link: &str) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "file:// targets need symbolic links (Unix)",
    ))
}

/// Available bytes from `df -Pk` output (the last line's fourth column, in KiB).
///
/// ```
/// let out = "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/vda 100 40 60 40% /\n";
/// assert_eq!(cellops_deploy::remote::parse_df(out), Some(60 * 1024));
/// ```
pub fn parse_df(out: &str) -> Option<u64> {
    let last = out.lines().rev().find(|l| !l.trim().is_empty())?;
    let kib: u64 = last.split_whitespace().nth(3)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs `sh -c command` in `cwd`, killing it after `timeout`.
fn run_local(command: &str, cwd: &str, timeout: Duration) -> Result<CommandOutput, RemoteError> {
    use std::io::Read as _;
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec 2>&1; {command}"))
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped());
    // Its own process group, so that a timeout kills whatever the command started too.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|e| RemoteError::io(cwd, &e))?;
    let mut stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let started = std::time::Instant::now();
    let (status, timed_out) = loop {
        match child.try_wait().map_err(|e| RemoteError::io(cwd, &e))? {
            Some(s) => break (s.code(), false),
            None if started.elapsed() >= timeout => {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                break (None, true);
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let output = reader.join().unwrap_or_default();
    Ok(CommandOutput {
        status,
        output,
        timed_out,
    })
}
