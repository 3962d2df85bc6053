//! `cellops-bench`: times histogram equalisation and CLAHE over a folder of images, the same work
//! `bench/equalize_reference.py` times with OpenCV, and prints one JSON line.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use cellops_dataset::ops::colour::{ColourMode, to_working};
use cellops_dataset::ops::equalize::{Clahe, clahe, equalize};
use cellops_dataset::{Raster, Samples, io};
use clap::Parser;

/// Time equalisation and CLAHE on every image of a folder (converted to 8-bit grey).
#[derive(Debug, Parser)]
struct Args {
    /// Folder of images (e.g. ../shared/data/dsb2018/original).
    #[arg(long)]
    images: PathBuf,
    /// Repetitions; the best is reported.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Threads: 1 runs images one after another; more runs images in parallel.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// CLAHE clip limit.
    #[arg(long, default_value_t = 2.0)]
    clip_limit: f64,
    /// CLAHE grid (square).
    #[arg(long, default_value_t = 8)]
    grid: u32,
    /// Write the equalised and CLAHE planes as PNG here, for comparison with OpenCV.
    #[arg(long)]
    write: Option<PathBuf>,
}

fn grey(r: &Raster) -> anyhow::Result<(usize, Vec<u8>)> {
    match to_working(r, ColourMode::Grey).samples {
        Samples::U8(v) => Ok((r.width as usize, v)),
        Samples::U16(_) => anyhow::bail!("16-bit images are not part of this benchmark"),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.images)
        .with_context(|| format!("listing {}", args.images.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    let mut planes = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let d = io::decode(&bytes, u64::MAX).with_context(|| format!("decoding {}", f.display()))?;
        planes.push(grey(&d.raster)?);
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads).build()?;
    let params = Clahe {
        clip_limit: args.clip_limit,
        tiles_x: args.grid,
        tiles_y: args.grid,
    };
    let time = |f: &(dyn Fn(&mut Vec<u8>, usize) + Sync)| -> f64 {
        let mut best = f64::INFINITY;
        for _ in 0..args.reps {
            let mut work: Vec<(usize, Vec<u8>)> = planes.clone();
            let t = Instant::now();
            pool.install(|| {
                use rayon::prelude::*;
                work.par_iter_mut().for_each(|(w, p)| f(p, *w));
            });
            best = best.min(t.elapsed().as_secs_f64());
        }
        best * 1e3
    };
    let eq_ms = time(&|p, _| equalize(p));
    let clahe_ms = time(&|p, w| clahe(p, w, params));
    if let Some(dir) = &args.write {
        std::fs::create_dir_all(dir)?;
        for (f, (w, p)) in files.iter().zip(&planes) {
            let name = f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let h = (p.len() / w) as u32;
            std::fs::write(
                dir.join(format!("{name}_grey.png")),
                io::encode_png(&Raster::from_u8(*w as u32, h, 1, p.clone()))?,
            )?;
            let mut e = p.clone();
            equalize(&mut e);
            std::fs::write(
                dir.join(format!("{name}_eq.png")),
                io::encode_png(&Raster::from_u8(*w as u32, h, 1, e))?,
            )?;
            let mut c = p.clone();
            clahe(&mut c, *w, params);
            std::fs::write(
                dir.join(format!("{name}_clahe.png")),
                io::encode_png(&Raster::from_u8(*w as u32, h, 1, c))?,
            )?;
        }
    }
    let pixels: usize = planes.iter().map(|(_, p)| p.len()).sum();
    let line = serde_json::json!({
        "tool": "cellops",
        "images": planes.len(),
        "megapixels": pixels as f64 / 1e6,
        "threads": args.threads,
        "equalize_ms": eq_ms,
        "clahe_ms": clahe_ms,
    });
    #[allow(clippy::print_stdout, reason = "the benchmark's one result line")]
    {
        println!("{line}");
    }
    Ok(())
}
