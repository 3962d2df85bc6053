//! A small tmpfs — a disk that fills up on demand — for fault tests. Mounting needs root (or
//! `CAP_SYS_ADMIN`); where it is refused the test is told to skip, unless
//! `CELLOPS_REQUIRE_TMPFS=1` (which `.ci/run` sets when the machine can mount one), when the
//! refusal fails the test instead.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs, unmounted when dropped.
#[derive(Debug)]
pub struct Tmpfs {
    /// Where it is mounted.
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` at `parent/<name>`; `None` (said on standard error) where this
    /// machine does not allow it.
    ///
    /// # Panics
    ///
    /// When mounting is refused and `CELLOPS_REQUIRE_TMPFS=1`.
    pub fn mount(parent: &Path, name: &str, bytes: u64) -> Option<Self> {
        let path = parent.join(name);
        std::fs::create_dir_all(&path).ok()?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(&path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Self { path }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    std::env::var("CELLOPS_REQUIRE_TMPFS").as_deref() != Ok("1"),
                    "CELLOPS_REQUIRE_TMPFS=1 but a tmpfs cannot be mounted: {why}"
                );
                #[allow(clippy::print_stderr, reason = "a skipped test says why on the test log")]
                {
                    eprintln!("skipping: a tmpfs cannot be mounted here ({why}); run as root to test a full disk");
                }
                None
            }
        }
    }
}

impl Tmpfs {
    /// Grows (or shrinks) the disk to `bytes`, keeping what is on it: the disk freed up, as an
    /// operator does after a failure.
    pub fn resize(&self, bytes: u64) -> std::io::Result<()> {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={bytes}")])
            .arg(&self.path)
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "remounting {}: {status}",
                self.path.display()
            )))
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
