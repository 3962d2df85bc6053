//! `regionprops`: measures every object of each label image given (16-bit PNG/TIFF masks) with
//! `cellops_measure::shape` and prints one JSON line per image, for `bench/regionprops_reference.py`
//! to compare with scikit-image.

use std::path::PathBuf;

use anyhow::Context as _;
use cellops_dataset::{Samples, io};
use cellops_measure::shape::regionprops;
use clap::Parser;

/// Measure objects of label images.
#[derive(Debug, Parser)]
struct Args {
    /// Label images.
    files: Vec<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    for f in &a.files {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let r = io::decode(&bytes, u64::MAX)
            .with_context(|| format!("decoding {}", f.display()))?
            .raster;
        let width = r.width as usize;
        let props = match &r.samples {
            Samples::U16(d) => regionprops(d, width),
            Samples::U8(d) => regionprops(d, width),
        };
        let line = serde_json::json!({ "file": f.display().to_string(), "objects": props });
        #[allow(clippy::print_stdout)]
        {
            println!("{line}");
        }
    }
    Ok(())
}
