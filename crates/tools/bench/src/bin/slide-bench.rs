//! `slide-bench`: writes a synthetic pyramidal slide tile by tile (grey discs of nuclear size on a
//! dim background, one every 23 pixels of a lattice, pixel 0.5 µm in the resolution tags), then
//! measures it with `cellops_analysis::slide::measure` and the classical threshold, and prints one
//! JSON line: size, tiles, nuclei found and expected, and the seconds of each phase. Run it under
//! `/usr/bin/time -v` for the peak memory (bench/slide.sh does).

use std::io::BufWriter;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use cellops_analysis::slide::{Tiling, measure};
use cellops_analysis::{Analyzer, Segmenter};
use cellops_dataset::slide::{Rect, Slide, write_pyramid};
use cellops_formats::params::CellParams;
use cellops_measure::objects::Cell;
use clap::Parser;

/// Write a synthetic slide and measure it tile by tile.
#[derive(Debug, Parser)]
struct Args {
    /// The slide's side in pixels.
    #[arg(long, default_value_t = 20_000)]
    size: u32,
    /// The side of a tile's core.
    #[arg(long, default_value_t = 1024)]
    tile: u32,
    /// The overlap read around each core.
    #[arg(long, default_value_t = 64)]
    overlap: u32,
    /// Where the slide is written (reused when it is there).
    #[arg(long, default_value = ".bench/slide/slide.tif")]
    slide: PathBuf,
}

/// Disc centres every 23 pixels, radius 5: what the slide holds at level 0.
const SPACING: u32 = 23;

fn inside(x: u32, y: u32) -> bool {
    let (cx, cy) = (x % SPACING, y % SPACING);
    let (dx, dy) = (i64::from(cx) - 11, i64::from(cy) - 11);
    dx * dx + dy * dy <= 25
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let started = Instant::now();
    if !a.slide.exists() {
        if let Some(dir) = a.slide.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::File::create(&a.slide).with_context(|| format!("creating {}", a.slide.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        write_pyramid(&mut out, (a.size, a.size, 1), 512, 0.5, |level, r| {
            let step = 1u32 << level;
            let mut v = Vec::with_capacity(r.area() as usize);
            for y in r.y..r.y + r.h {
                for x in r.x..r.x + r.w {
                    v.push(if inside(x * step, y * step) { 200 } else { 20 });
                }
            }
            v
        })?;
    }
    let written = started.elapsed().as_secs_f64();
    let params = CellParams::from_yaml(
        "description: synthetic slide\nsegmentation:\n  method: threshold\n  threshold: { method: fixed, value: 128 }\n  separation: { method: none }\nfilters: { min_area_um2: 1, exclude_border: true }\n",
        std::path::Path::new("slide-bench.yaml"),
    )?;
    let analyzer = Analyzer::new(params, Segmenter::Threshold);
    let mut slide = Slide::open(&a.slide)?;
    let (w, h) = slide.size();
    let region = Rect { x: 0, y: 0, w, h };
    let t0 = Instant::now();
    // What a slide's report keeps of each nucleus: its area for the statistics; the rows would
    // stream to objects.csv.
    let mut area_um2 = 0.0;
    let mut sink = |_, row: Vec<(String, Cell)>| {
        if let Some((_, Cell::Float(a))) = row.iter().find(|(k, _)| k == "AreaShape_Area_um2") {
            area_um2 += a;
        }
        Ok(())
    };
    let tiling = Tiling {
        tile: a.tile,
        overlap: a.overlap,
    };
    let limit = u64::from(a.tile + 2 * a.overlap).pow(2);
    let measured = measure(
        &analyzer,
        &mut slide,
        "slide",
        (region, tiling),
        limit,
        (&mut sink, &mut |_, _| {}),
    )?;
    // Discs whose whole lies inside the slide: the ones a border filter keeps.
    let per_side = |n: u32| (0..n / SPACING).filter(|i| i * SPACING + 16 < n).count();
    let line = serde_json::json!({
        "size": a.size,
        "tile": a.tile,
        "overlap": a.overlap,
        "tiles": measured.tiles,
        "nuclei": measured.nuclei,
        "mean_area_um2": area_um2 / measured.nuclei.max(1) as f64,
        "expected": per_side(w) * per_side(h),
        "levels": slide.levels.len(),
        "write_s": written,
        "measure_s": t0.elapsed().as_secs_f64(),
    });
    #[allow(clippy::print_stdout, reason = "a benchmark driver: its result line is its output")]
    {
        println!("{line}");
    }
    Ok(())
}
