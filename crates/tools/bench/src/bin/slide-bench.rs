//! `slide-bench`: writes a synthetic pyramidal slide tile by tile — 8-bit RGB, an H&E-like
//! section (`cellops_dataset::slide::Section`: pink tissue in an ellipse on white glass, purple
//! nuclei of radius 4 to 7 pixels on a jittered 23-pixel lattice, pixel 0.5 µm in the resolution
//! tags) — and its nuclei's centres (`<slide>.nuclei.csv`), and prints one JSON line: its size,
//! levels, the nuclei it holds, and the seconds it took. `bench/slide.sh` then measures it with
//! `cellops-evaluate --slide` and the Python reference.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use cellops_dataset::slide::Section;
use clap::Parser;

/// Write a synthetic RGB slide.
#[derive(Debug, Parser)]
struct Args {
    /// The slide's side in pixels.
    #[arg(long, default_value_t = 20_000)]
    size: u32,
    /// Where the slide is written (replaced).
    #[arg(long, default_value = ".bench/slide/slide.tif")]
    slide: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let started = Instant::now();
    if let Some(dir) = a.slide.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::File::create(&a.slide).with_context(|| format!("creating {}", a.slide.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let section = Section {
        size: (a.size, a.size),
        spacing: 23,
    };
    let levels = section.write(&mut out, 512, 0.5)?;
    out.flush()?;
    let nuclei = section.nuclei();
    let mut truth = BufWriter::new(std::fs::File::create(a.slide.with_extension("nuclei.csv"))?);
    writeln!(truth, "x,y,radius")?;
    for (x, y, r) in &nuclei {
        writeln!(truth, "{x},{y},{r}")?;
    }
    truth.flush()?;
    let line = serde_json::json!({
        "size": a.size,
        "levels": levels.len(),
        "expected": nuclei.len(),
        "write_s": started.elapsed().as_secs_f64(),
    });
    #[allow(clippy::print_stdout, reason = "a benchmark driver: its result line is its output")]
    {
        println!("{line}");
    }
    Ok(())
}
