//! What the formats' test files share: the repository root and the check that a committed
//! generated file (a JSON Schema, a reference page) equals what the types generate.

use std::path::{Path, PathBuf};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// Fails unless the committed file at `rel` (from the root) is `generated`; with
/// `CELLOPS_BLESS=1` it writes it first. `test` names the test file that regenerates it.
pub fn assert_committed(rel: &str, generated: &str, test: &str) {
    let path = root().join(rel);
    if std::env::var("CELLOPS_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, generated).expect("write the generated file");
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (CELLOPS_BLESS=1 creates it)", path.display()));
    assert!(
        committed == generated,
        "{} is out of date: run CELLOPS_BLESS=1 cargo test -p cellops-formats --test {test}",
        path.display()
    );
}
