//! Splits the foreground of instance-label masks with `instances::split_mask` and scores the result
//! against the masks' own instances (F1 at IoU 0.5, pooled over images); the driver of
//! `bench/watershed_reference.py`.
//!
//! ```text
//! cargo run --release -p cellops-measure --example split_masks -- \
//!     [--config YAML] [--out DIR] [--edt DIR] MASK.png...
//! ```
//!
//! `--config` is an `InstanceConfig` in YAML (default: the defaults). `--out` writes each result as a
//! 16-bit label PNG `DIR/<mask file name>`; `--edt` writes the distance transform of each foreground
//! (`Outside::Foreground`, scipy's convention) as little-endian `f64` to `DIR/<mask file stem>.f64`.
//! Prints one JSON line per mask and a last line with the totals; `seconds` is the time spent in
//! `split_mask` alone (no decoding, scoring or writing).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cellops_dataset::io::{decode, encode_png};
use cellops_dataset::{Raster, Samples};
use cellops_measure::distance::{Outside, distance_transform};
use cellops_measure::instances::{InstanceConfig, split_mask};
use cellops_measure::metrics::{MatchCounts, Overlap};

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let mut config = InstanceConfig::default();
    let mut out: Option<PathBuf> = None;
    let mut edt: Option<PathBuf> = None;
    let mut masks: Vec<PathBuf> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => config = serde_norway::from_str(&args.next().ok_or("--config needs a value")?)?,
            "--out" => out = Some(args.next().ok_or("--out needs a value")?.into()),
            "--edt" => edt = Some(args.next().ok_or("--edt needs a value")?.into()),
            _ => masks.push(a.into()),
        }
    }
    for dir in out.iter().chain(&edt) {
        std::fs::create_dir_all(dir)?;
    }
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    let mut total = MatchCounts::default();
    let mut spent = Duration::ZERO;
    for path in &masks {
        let raster = decode(&std::fs::read(path)?, 1 << 26)?.raster;
        let width = raster.width as usize;
        let truth: Vec<u16> = match raster.samples {
            Samples::U16(v) => v,
            Samples::U8(v) => v.into_iter().map(u16::from).collect(),
        };
        if raster.channels != 1 {
            return Err(format!("{}: not a single-channel label image", path.display()).into());
        }
        let mask: Vec<bool> = truth.iter().map(|&l| l != 0).collect();
        let start = Instant::now();
        let (labels, n) = split_mask(&mask, width, &config)?;
        let took = start.elapsed();
        spent += took;
        let counts = Overlap::new(&truth, &labels)?.matching(0.5);
        total += counts;
        let name = path.file_name().ok_or("mask path without a file name")?;
        if let Some(dir) = &out {
            let labels16: Vec<u16> = labels.iter().map(|&l| u16::try_from(l)).collect::<Result<_, _>>()?;
            let png = encode_png(&Raster::from_u16(raster.width, raster.height, 1, labels16))?;
            std::fs::write(dir.join(name), png)?;
        }
        if let Some(dir) = &edt {
            let d = distance_transform(&mask, width, Outside::Foreground);
            let bytes: Vec<u8> = d.iter().flat_map(|v| v.to_le_bytes()).collect();
            let stem = path.file_stem().ok_or("mask path without a file name")?;
            std::fs::write(dir.join(stem).with_extension("f64"), bytes)?;
        }
        writeln!(
            stdout,
            "{{\"file\":\"{}\",\"n_true\":{},\"n_pred\":{},\"tp\":{},\"fp\":{},\"fn\":{},\"seconds\":{}}}",
            path.display(),
            counts.n_true,
            n,
            counts.tp,
            counts.fp,
            counts.fn_,
            took.as_secs_f64()
        )?;
    }
    let f1 = 2.0 * total.tp as f64 / (2 * total.tp + total.fp + total.fn_).max(1) as f64;
    writeln!(
        stdout,
        "{{\"total\":true,\"images\":{},\"tp\":{},\"fp\":{},\"fn\":{},\"f1\":{},\"seconds\":{}}}",
        masks.len(),
        total.tp,
        total.fp,
        total.fn_,
        f1,
        spent.as_secs_f64()
    )?;
    Ok(())
}
