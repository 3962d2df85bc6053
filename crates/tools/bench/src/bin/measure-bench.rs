//! `measure-bench`: times connected-component labelling and the full measurement set
//! (`cellops_measure::shape::regionprops` + `intensity::intensities`) over label images, in process,
//! and prints one JSON line per task. `bench/measure_speed.py` runs the same work with OpenCV and
//! scikit-image and compares.
//!
//! Each `<dir>/masks/<id>_mask.png` is binarised (label > 0); its intensity image is
//! `<dir>/original/<id>.png`, of which the first channel (R, or grey) is measured. Loading and
//! binarising are not timed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use cellops_dataset::ops::label::{Connectivity, connected_components, connected_components_with_stats};
use cellops_dataset::{Samples, io};
use cellops_measure::intensity::intensities;
use cellops_measure::shape::regionprops;
use clap::Parser;

/// Time labelling and measuring of binarised label images.
#[derive(Debug, Parser)]
struct Args {
    /// Timed rounds over all images; the median is reported (plus every round).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Untimed rounds first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Tasks, comma-separated: label, label-stats, measure.
    #[arg(long, default_value = "label,label-stats,measure", value_delimiter = ',')]
    tasks: Vec<String>,
    /// Label images, `<dir>/masks/<id>_mask.png`.
    masks: Vec<PathBuf>,
}

struct Image {
    width: usize,
    foreground: Vec<bool>,
    grey: Vec<u8>,
}

fn load(mask: &Path) -> anyhow::Result<Image> {
    let bytes = std::fs::read(mask).with_context(|| format!("reading {}", mask.display()))?;
    let r = io::decode(&bytes, u64::MAX)
        .with_context(|| format!("decoding {}", mask.display()))?
        .raster;
    let foreground: Vec<bool> = match &r.samples {
        Samples::U16(d) => d.iter().map(|&v| v > 0).collect(),
        Samples::U8(d) => d.iter().map(|&v| v > 0).collect(),
    };
    let name = mask
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix("_mask.png"))
        .with_context(|| format!("{} is not <id>_mask.png", mask.display()))?;
    let dir = mask
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("{} is not in <dir>/masks", mask.display()))?;
    let path = dir.join("original").join(format!("{name}.png"));
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let img = io::decode(&bytes, u64::MAX)?.raster;
    anyhow::ensure!(
        (img.width, img.height) == (r.width, r.height),
        "{}: size differs from its mask",
        path.display()
    );
    let c = usize::from(img.channels);
    let Samples::U8(d) = img.samples else {
        anyhow::bail!("{}: 8-bit images only", path.display())
    };
    let grey = d.chunks_exact(c).map(|px| px[0]).collect();
    Ok(Image {
        width: r.width as usize,
        foreground,
        grey,
    })
}

/// Runs `task` on one image; returns (objects, Σ integrated intensity) as a check that both sides
/// did the same work.
fn run(task: &str, im: &Image) -> anyhow::Result<(usize, f64)> {
    Ok(match task {
        "label" => (
            connected_components(&im.foreground, im.width, Connectivity::Eight).1,
            0.0,
        ),
        "label-stats" => {
            let (_, stats) = connected_components_with_stats(&im.foreground, im.width, Connectivity::Eight);
            (stats.len(), stats.iter().map(|s| s.area as f64).sum())
        }
        "measure" => {
            let (labels, n) = connected_components(&im.foreground, im.width, Connectivity::Eight);
            let shape = regionprops(&labels, im.width);
            let intensity = intensities(&labels, &im.grey, 1);
            anyhow::ensure!(shape.len() == n && intensity.len() == n, "object counts differ");
            (n, intensity.iter().map(|p| p.integrated[0]).sum())
        }
        other => anyhow::bail!("unknown task {other}"),
    })
}

/// One round over all images, one after another on this thread (the library does not parallelise
/// labelling or measuring).
fn round(task: &str, images: &[Image]) -> anyhow::Result<(f64, usize, f64)> {
    let start = Instant::now();
    let results: Vec<(usize, f64)> = images.iter().map(|im| run(task, im)).collect::<anyhow::Result<_>>()?;
    let secs = start.elapsed().as_secs_f64();
    let objects = results.iter().map(|r| r.0).sum();
    let check = results.iter().map(|r| r.1).sum();
    Ok((secs, objects, check))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(a.rounds > 0, "--rounds must be at least 1");
    let images: Vec<Image> = a.masks.iter().map(|m| load(m)).collect::<anyhow::Result<_>>()?;
    let pixels: usize = images.iter().map(|im| im.foreground.len()).sum();
    for task in &a.tasks {
        for _ in 0..a.warmup {
            round(task, &images)?;
        }
        let mut times = Vec::with_capacity(a.rounds);
        let (mut objects, mut check) = (0, 0.0);
        for _ in 0..a.rounds {
            let (t, n, c) = round(task, &images)?;
            times.push(t);
            (objects, check) = (n, c);
        }
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        let line = serde_json::json!({
            "side": "cellops",
            "task": task,
            "threads": 1,
            "images": images.len(),
            "pixels": pixels,
            "objects": objects,
            "check": check,
            "rounds_s": times,
            "median_s": sorted[sorted.len() / 2],
        });
        #[allow(clippy::print_stdout, reason = "a benchmark driver: its result lines are its output")]
        {
            println!("{line}");
        }
    }
    Ok(())
}
