//! Replacing a directory atomically: write everything into a staging directory beside it, then
//! swap it in. Readers see the old directory or the new one, never a mix; a failure before the
//! swap leaves the old one untouched and the staging directory removed.
//!
//! On Linux the swap is one `renameat2(RENAME_EXCHANGE)`, so a process killed at any instant
//! leaves the target whole — old or new, never missing. Elsewhere (or on a file system without
//! it) it is two renames, and a kill between them leaves the target missing and the old one as
//! `.<name>.staging-<pid>.old`, which the next [`StagingDir::new`] beside the same target puts
//! back. Staging folders of processes that are gone (killed before they could clean up) are
//! removed by it.

use std::path::{Path, PathBuf};

/// A file-system operation that failed, with its path.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct StagingError {
    /// The path.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> StagingError + '_ {
    move |source| StagingError {
        path: path.to_owned(),
        source,
    }
}

/// A staging directory beside a target directory; removed on drop unless committed.
#[derive(Debug)]
pub struct StagingDir {
    path: PathBuf,
    committed: bool,
}

impl StagingDir {
    /// Creates `.<name>.staging-<pid>` beside `target` (and `target`'s parent if needed),
    /// removing what processes that are gone left there.
    pub fn new(target: &Path) -> Result<Self, StagingError> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(at(parent))?;
        remove_abandoned(parent, &name, target);
        let path = parent.join(format!(".{name}.staging-{}", std::process::id()));
        // This pid's, left by a killed process that had it before (pids are reused).
        for own in [path.clone(), old_of(&path)] {
            if own.exists() {
                std::fs::remove_dir_all(&own).map_err(at(&own))?;
            }
        }
        std::fs::create_dir(&path).map_err(at(&path))?;
        Ok(Self { path, committed: false })
    }

    /// The staging directory, to write into.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces `target` with the staging directory. If the swap fails, the previous `target` is
    /// put back.
    pub fn commit(mut self, target: &Path) -> Result<(), StagingError> {
        if target.exists() {
            if exchange(&self.path, target) {
                // The staging path now holds the old directory (a kill while it is removed
                // leaves it to the next run's clean-up).
                self.committed = true;
                return std::fs::remove_dir_all(&self.path).map_err(at(&self.path));
            }
            let old = old_of(&self.path);
            std::fs::rename(target, &old).map_err(at(target))?;
            if let Err(e) = std::fs::rename(&self.path, target) {
                let _ = std::fs::rename(&old, target);
                return Err(at(target)(e));
            }
            std::fs::remove_dir_all(&old).map_err(at(&old))?;
        } else {
            std::fs::rename(&self.path, target).map_err(at(target))?;
        }
        self.committed = true;
        Ok(())
    }
}

/// Where the two-rename swap moves the old directory: the staging path with `.old` appended
/// (`Path::with_extension` would replace its `staging-<pid>` "extension").
fn old_of(staging: &Path) -> PathBuf {
    let mut s = staging.as_os_str().to_owned();
    s.push(".old");
    PathBuf::from(s)
}

/// Swaps two directories in one atomic step; false where the system cannot (then nothing moved).
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> bool {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).is_ok()
}

/// Swaps two directories in one atomic step; false where the system cannot (then nothing moved).
#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> bool {
    false
}

/// Removes `.<name>.staging-<pid>` (and its `.old`) beside the target for every pid that is no
/// longer running: what a killed process left — except an `.old` while the target is missing,
/// which is put back as the target. Where running processes cannot be told (no
/// `/proc`), nothing is removed. (Pids are this machine's: a target on a file system that
/// several machines write to at once is not supported.)
fn remove_abandoned(parent: &Path, name: &str, target: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    if !Path::new("/proc/self").exists() {
        return;
    }
    let prefix = format!(".{name}.staging-");
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&prefix) else {
            continue;
        };
        let pid = rest.strip_suffix(".old").unwrap_or(rest);
        let gone = pid
            .parse::<u32>()
            .is_ok_and(|p| !Path::new(&format!("/proc/{p}")).exists());
        if !gone {
            continue;
        }
        // Killed between the two renames of the fallback swap: the old output is put back.
        if rest.ends_with(".old") && !target.exists() && std::fs::rename(e.path(), target).is_ok() {
            continue;
        }
        let _ = std::fs::remove_dir_all(e.path());
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_replaces_and_drop_cleans_up() {
        let tmp = tempfile::tempdir().expect("tmp");
        let target = tmp.path().join("out");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("old.txt"), "old").expect("write");
        // An abandoned staging directory leaves the target as it was.
        let abandoned = StagingDir::new(&target).expect("staging");
        std::fs::write(abandoned.path().join("new.txt"), "new").expect("write");
        drop(abandoned);
        assert!(target.join("old.txt").exists());
        assert_eq!(std::fs::read_dir(tmp.path()).expect("ls").count(), 1, "staging removed");
        // A committed one replaces it whole.
        let s = StagingDir::new(&target).expect("staging");
        std::fs::write(s.path().join("new.txt"), "new").expect("write");
        s.commit(&target).expect("commit");
        assert!(target.join("new.txt").exists() && !target.join("old.txt").exists());
        assert_eq!(
            std::fs::read_dir(tmp.path()).expect("ls").count(),
            1,
            "nothing left beside it"
        );
    }

    #[test]
    fn what_a_process_that_is_gone_left_is_removed_and_a_live_one_s_is_kept() {
        let tmp = tempfile::tempdir().expect("tmp");
        let target = tmp.path().join("out");
        // A pid above the kernel's limit (4,194,304) is never running.
        let gone = tmp.path().join(".out.staging-4194305");
        let gone_old = tmp.path().join(".out.staging-4194306.old");
        // Pid 1 (init) always runs: another build at work beside this one.
        let live = tmp.path().join(".out.staging-1");
        let other = tmp.path().join(".other.staging-4194305");
        for d in [&gone, &gone_old, &live, &other] {
            std::fs::create_dir(d).expect("mkdir");
        }
        let s = StagingDir::new(&target).expect("staging");
        assert_eq!(
            s.path(),
            tmp.path().join(format!(".out.staging-{}", std::process::id()))
        );
        assert!(
            !gone.exists() && !gone_old.exists(),
            "a killed build's leftovers removed"
        );
        assert!(live.exists(), "a running process's staging kept");
        assert!(other.exists(), "another target's left alone");
    }
}
