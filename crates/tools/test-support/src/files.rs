//! Folders compared file by file, as merges of sharded runs are checked against one run.

use std::collections::BTreeMap;
use std::path::Path;

/// Every file under `dir`, by relative path (with `/`), with its bytes.
pub fn tree(dir: &Path) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.insert(rel.to_string_lossy().replace('\\', "/"), std::fs::read(&p)?);
            }
        }
    }
    Ok(out)
}

/// Panics unless `got` holds the same files as `want`, byte for byte, naming the first that
/// differs.
pub fn assert_same(got: &Path, want: &Path) {
    let read = |d: &Path| tree(d).unwrap_or_else(|e| panic!("reading {}: {e}", d.display()));
    let (a, b) = (read(got), read(want));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{} holds other files than {}",
        got.display(),
        want.display()
    );
    for (name, bytes) in &a {
        assert!(bytes == &b[name], "{name} differs from {}'s", want.display());
    }
}
