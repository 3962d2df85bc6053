//! What the deploy tests share: source files written for a deploy.

use std::path::Path;

use cellops_deploy::release::SourceFile;
use cellops_deploy::remote::sha256_of;

/// Writes `files` (relative path, bytes) under `root` and returns them as a deploy's sources.
pub fn source(root: &Path, files: &[(&str, &[u8])]) -> Vec<SourceFile> {
    let mut out = Vec::new();
    for (rel, bytes) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        std::fs::write(&p, bytes).expect("write");
        let (size, sha256) = sha256_of(std::fs::File::open(&p).expect("open")).expect("hash");
        out.push(SourceFile {
            rel: (*rel).to_owned(),
            path: p,
            size,
            sha256,
        });
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    out
}
