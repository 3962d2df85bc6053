//! Replacing a directory atomically: write everything into a staging directory beside it, then
//! swap it in by renames. Readers see the old directory or the new one, never a mix; a failure
//! before the swap leaves the old one untouched and the staging directory removed.

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
    /// Creates `.<name>.staging-<pid>` beside `target` (and `target`'s parent if needed).
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
        let path = parent.join(format!(".{name}.staging-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(at(&path))?;
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
            let old = self.path.with_extension("old");
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
}
