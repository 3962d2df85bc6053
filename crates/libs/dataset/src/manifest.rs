//! `manifest.json`: its types live in [`cellops_formats::dataset`]; the hashes that fill it
//! are computed here.

pub use cellops_formats::dataset::{Counts, FORMAT, Manifest, ManifestItem, OutputFile, Source, Tool};

/// Hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
