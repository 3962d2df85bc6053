//! Symbolic links in a tree that a pull request may control (a cell-parameter source, a dataset,
//! the files an include glob picks): git checks links out as links, so a file of the tree can
//! point anywhere on the runner. A link that resolves inside its tree is read like the file it
//! points to; one that resolves outside it, or nowhere, is refused with an error that names the
//! link — never followed, never read, never deployed.

use std::path::{Path, PathBuf};

use crate::FileError;

/// A folder whose links must stay inside it.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The folder as given (named in errors).
    root: PathBuf,
    /// The folder with every link resolved.
    resolved: PathBuf,
}

/// What a checked entry of a [`Tree`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A file, or a link to a file inside the tree.
    File,
    /// A folder, or a link to a folder inside the tree.
    Folder,
}

impl Tree {
    /// The tree under `root`, which must exist (`root` itself may be a link).
    pub fn new(root: &Path) -> Result<Self, FileError> {
        let resolved = std::fs::canonicalize(root).map_err(|e| FileError::new(root, format!("cannot read: {e}")))?;
        Ok(Self {
            root: root.to_owned(),
            resolved,
        })
    }

    /// The folder with every link resolved.
    pub fn resolved(&self) -> &Path {
        &self.resolved
    }

    /// Checks `path`, an entry found by listing a folder of this tree: what it is when it may be
    /// read, an error naming it when it is a link that resolves outside the tree or nowhere.
    ///
    /// ```
    /// use cellops_formats::links::{Entry, Tree};
    /// let tmp = tempfile::tempdir().unwrap();
    /// let root = tmp.path().join("repo");
    /// std::fs::create_dir(&root).unwrap();
    /// std::fs::write(root.join("a.yaml"), "x").unwrap();
    /// std::fs::write(tmp.path().join("secret"), "s").unwrap();
    /// # #[cfg(unix)] {
    /// std::os::unix::fs::symlink(root.join("a.yaml"), root.join("b.yaml")).unwrap();
    /// std::os::unix::fs::symlink(tmp.path().join("secret"), root.join("c.yaml")).unwrap();
    /// let tree = Tree::new(&root).unwrap();
    /// assert_eq!(tree.check(&root.join("b.yaml")).unwrap(), Entry::File);
    /// let err = tree.check(&root.join("c.yaml")).unwrap_err().to_string();
    /// assert!(err.contains("c.yaml") && err.contains("outside"), "{err}");
    /// # }
    /// ```
    pub fn check(&self, path: &Path) -> Result<Entry, FileError> {
        let meta = std::fs::symlink_metadata(path).map_err(|e| FileError::new(path, format!("cannot read: {e}")))?;
        let link = meta.file_type().is_symlink();
        let shown = if self.root == Path::new(".") {
            "the working folder".to_owned()
        } else {
            self.root.display().to_string()
        };
        let refused_as = |what: &str, why: &str| {
            FileError::new(
                path,
                format!("{what} {why}: refused, not followed (links may only point inside {shown})"),
            )
        };
        let refused = |why: &str| refused_as("a symbolic link", why);
        let target = std::fs::canonicalize(path).map_err(|_| refused("to nothing that exists"))?;
        // Not a link itself, the entry may still sit in a linked folder: what counts is where
        // it resolves.
        if !target.starts_with(&self.resolved) {
            let what = if link {
                "a symbolic link"
            } else {
                "reached through a symbolic link"
            };
            return Err(refused_as(what, &format!("that resolves outside {shown}")));
        }
        Ok(if target.is_dir() { Entry::Folder } else { Entry::File })
    }
}

/// Checks a file named by a relative path without `..` (a parameter file in the checkout, as a
/// workflow names it): through links or not, it must resolve inside the working folder. Absolute
/// paths and paths with `..` are the caller's explicit choice and are not checked.
pub fn check_relative(path: &Path) -> Result<(), FileError> {
    let explicit = path.is_absolute() || path.components().any(|c| matches!(c, std::path::Component::ParentDir));
    if explicit || std::fs::symlink_metadata(path).is_err() {
        // Missing files are reported by the read that follows.
        return Ok(());
    }
    let here = Tree::new(Path::new("."))?;
    let mut walked = PathBuf::new();
    for part in path.components() {
        walked.push(part);
        here.check(&walked)?;
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_inside_are_read_and_links_outside_or_nowhere_are_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("repo");
        std::fs::create_dir_all(root.join("sub")).expect("dirs");
        std::fs::write(root.join("sub/a.yaml"), "a").expect("a");
        std::fs::write(tmp.path().join("outside.yaml"), "secret").expect("outside");
        symlink(root.join("sub"), root.join("dir-link")).expect("link");
        symlink(tmp.path().join("outside.yaml"), root.join("out.yaml")).expect("link");
        symlink(tmp.path(), root.join("up")).expect("link");
        symlink(root.join("missing"), root.join("dangling.yaml")).expect("link");
        // The root given through a link of its own.
        symlink(&root, tmp.path().join("alias")).expect("link");
        for given in [root.clone(), tmp.path().join("alias")] {
            let tree = Tree::new(&given).expect("tree");
            assert_eq!(tree.check(&given.join("sub")).expect("dir"), Entry::Folder);
            assert_eq!(tree.check(&given.join("sub/a.yaml")).expect("file"), Entry::File);
            assert_eq!(tree.check(&given.join("dir-link")).expect("inside"), Entry::Folder);
            for bad in ["out.yaml", "up"] {
                let e = tree.check(&given.join(bad)).expect_err(bad);
                assert_eq!(e.path, given.join(bad));
                assert!(e.message.contains("resolves outside"), "{e}");
                assert!(!e.to_string().contains("secret"));
            }
            let e = tree.check(&given.join("dangling.yaml")).expect_err("dangling");
            assert!(e.message.contains("to nothing"), "{e}");
            // A plain file in a folder that is a link out of the tree.
            let e = tree
                .check(&given.join("up/outside.yaml"))
                .expect_err("through a linked folder");
            assert!(e.message.contains("reached through a symbolic link"), "{e}");
        }
    }
}
