//! Running a binary as a user whom file permissions bind, for permission-denied tests. Root
//! passes every permission check, so as root the binary runs as `nobody` (65534:65534); as
//! anyone else it runs as that user, whom `chmod` already binds.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// `nobody`'s uid and gid.
const NOBODY: (u32, u32) = (65_534, 65_534);

/// The uid and gid to switch to: `nobody` when this process is root, none otherwise.
pub fn user() -> Option<(u32, u32)> {
    is_root().then_some(NOBODY)
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// Makes `dir` writable by anyone and every folder above it searchable, so that the unprivileged
/// user can work there (a test's temporary folder is its owner's alone).
pub fn open_up(dir: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    for parent in dir.ancestors().skip(1) {
        let mode = std::fs::metadata(parent)?.permissions().mode();
        if mode & 0o001 == 0 && user().is_some() {
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(mode | 0o001))?;
        }
    }
    Ok(())
}

/// `binary`, or a copy of it in `dir` when the unprivileged user cannot reach it where it is
/// (a target folder under a private home).
pub fn runnable(binary: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    let reachable = binary
        .ancestors()
        .skip(1)
        .all(|p| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    if reachable || user().is_none() {
        return Ok(binary.to_owned());
    }
    let copy = dir.join(binary.file_name().unwrap_or_default());
    std::fs::copy(binary, &copy)?;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))?;
    Ok(copy)
}

/// Takes every permission from `path` (`chmod 000`): the unprivileged user can neither read it
/// nor, for a folder, list or enter it.
pub fn lock(path: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000))
}

/// Makes a folder read-only for everyone but root (`chmod 555`).
pub fn read_only(dir: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555))
}
