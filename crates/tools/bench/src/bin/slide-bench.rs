//! `slide-bench`: writes a synthetic pyramidal slide tile by tile — 8-bit RGB, an H&E-like
//! section (pink tissue in an ellipse on white glass, purple nuclei of radius 4 to 7 pixels on a
//! jittered 23-pixel lattice, pixel 0.5 µm in the resolution tags) — and prints one JSON line:
//! its size, levels, the nuclei it holds inside the tissue, and the seconds it took.
//! `bench/slide.sh` then measures it with `cellops-evaluate --slide` and the Python reference.

use std::io::BufWriter;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use cellops_dataset::slide::write_pyramid;
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

/// The lattice's spacing: one nucleus per cell.
const SPACING: u32 = 23;

/// A fixed-definition hash of a lattice cell (SplitMix64's finaliser).
fn hash(i: u64, j: u64) -> u64 {
    let mut z = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ j.wrapping_add(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The nucleus of lattice cell `(i, j)`: its centre and radius.
fn nucleus(i: u32, j: u32) -> (i64, i64, i64) {
    let h = hash(u64::from(i), u64::from(j));
    let jitter = |s: u64| (s % 5) as i64 - 2;
    let cx = i64::from(i * SPACING) + 11 + jitter(h);
    let cy = i64::from(j * SPACING) + 11 + jitter(h >> 8);
    (cx, cy, 4 + ((h >> 16) % 4) as i64)
}

/// Whether level-0 point `(x, y)` of a `size`² slide is tissue (an ellipse leaving glass at
/// the corners and edges).
fn tissue(x: i64, y: i64, size: i64) -> bool {
    let (c, a, b) = (size / 2, size * 45 / 100, size * 40 / 100);
    let (dx, dy) = ((x - c) as f64 / a as f64, (y - c) as f64 / b as f64);
    dx * dx + dy * dy <= 1.0
}

/// The colour of level-0 pixel `(x, y)`.
fn pixel(x: u32, y: u32, size: i64) -> [u8; 3] {
    let (i, j) = (x / SPACING, y / SPACING);
    let (cx, cy, r) = nucleus(i, j);
    let (px, py) = (i64::from(x), i64::from(y));
    let noise = (hash(u64::from(x), u64::from(y)) % 9) as u8;
    if !tissue(cx, cy, size) && !tissue(px, py, size) {
        return [236 + noise, 236 + noise, 238 + noise];
    }
    if tissue(cx, cy, size) && (px - cx).pow(2) + (py - cy).pow(2) <= r * r {
        [92 + noise, 58 + noise, 140 + noise]
    } else if tissue(px, py, size) {
        [222 + noise, 160 + noise, 196 + noise]
    } else {
        [236 + noise, 236 + noise, 238 + noise]
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let started = Instant::now();
    if let Some(dir) = a.slide.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::File::create(&a.slide).with_context(|| format!("creating {}", a.slide.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let size = i64::from(a.size);
    let levels = write_pyramid(&mut out, (a.size, a.size, 3), 512, 0.5, |level, r| {
        let step = 1u32 << level;
        let mut v = Vec::with_capacity(r.area() as usize * 3);
        for y in r.y..r.y + r.h {
            for x in r.x..r.x + r.w {
                v.extend(pixel(x * step, y * step, size));
            }
        }
        v
    })?;
    // The nuclei whose whole disc lies in the slide and whose centre lies in the tissue.
    let cells = a.size / SPACING;
    let expected = (0..cells)
        .flat_map(|j| (0..cells).map(move |i| nucleus(i, j)))
        .filter(|&(x, y, r)| tissue(x, y, size) && x - r >= 0 && y - r >= 0 && x + r < size && y + r < size)
        .count();
    let line = serde_json::json!({
        "size": a.size,
        "levels": levels.len(),
        "expected": expected,
        "write_s": started.elapsed().as_secs_f64(),
    });
    #[allow(clippy::print_stdout, reason = "a benchmark driver: its result line is its output")]
    {
        println!("{line}");
    }
    Ok(())
}
