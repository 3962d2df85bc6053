//! `regionprops`: measures every object of each label image given (16-bit PNG/TIFF masks) with
//! `cellops_measure::shape` and prints one JSON line per image, for `bench/regionprops_reference.py`
//! to compare with scikit-image.

use std::path::PathBuf;

use anyhow::Context as _;
use cellops_dataset::{Samples, io};
use cellops_measure::intensity::intensities;
use cellops_measure::shape::regionprops;
use clap::Parser;

/// Measure objects of label images.
#[derive(Debug, Parser)]
struct Args {
    /// Also measure intensities in `<DIR>/<id>.png` for each `<id>_mask.png` (RGB channels of
    /// RGBA images).
    #[arg(long, value_name = "DIR")]
    image_dir: Option<PathBuf>,
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
        let labels: Vec<u16> = match r.samples {
            Samples::U16(d) => d,
            Samples::U8(d) => d.into_iter().map(u16::from).collect(),
        };
        let intensity = match &a.image_dir {
            Some(dir) => {
                let name = f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix("_mask.png"))
                    .with_context(|| format!("{} is not <id>_mask.png", f.display()))?;
                let path = dir.join(format!("{name}.png"));
                let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                let img = io::decode(&bytes, u64::MAX)?.raster;
                let c = usize::from(img.channels);
                let Samples::U8(d) = img.samples else {
                    anyhow::bail!("{}: 8-bit images only", path.display())
                };
                // Drop alpha.
                let keep = c.min(3);
                let rgb: Vec<u8> = d.chunks_exact(c).flat_map(|px| px[..keep].to_vec()).collect();
                Some(intensities(&labels, &rgb, keep))
            }
            None => None,
        };
        let line = serde_json::json!({ "file": f.display().to_string(), "objects": props, "intensity": intensity });
        #[allow(clippy::print_stdout, reason = "a benchmark driver: its result lines are its output")]
        {
            println!("{line}");
        }
    }
    Ok(())
}
