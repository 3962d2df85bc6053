//! Synthetic images for drift scenarios, and the changes the scenarios make to them: brighter,
//! blurred.

use cellops_dataset::synthetic::{Style, SynthConfig, generate_one};
use cellops_dataset::{Raster, Samples};

/// `count` synthetic `side`×`side` images of `style` from `seed`.
#[must_use]
pub fn synthetic(style: Style, seed: u64, count: usize, side: u32) -> Vec<Raster> {
    let cfg = SynthConfig {
        count,
        seed,
        size: [side, side],
        style,
    };
    (0..count).map(|i| generate_one(&cfg, i).0).collect()
}

fn samples(image: &Raster) -> &[u8] {
    match &image.samples {
        Samples::U8(d) => d,
        Samples::U16(_) => panic!("the drift scenarios change 8-bit images"),
    }
}

/// `image` with `f` applied to every 8-bit sample.
///
/// # Panics
///
/// For a 16-bit image (a harness: failing loudly is its job).
#[must_use]
pub fn map_samples(image: &Raster, f: impl Fn(u8) -> u8) -> Raster {
    let d = samples(image).iter().map(|&v| f(v)).collect();
    Raster::from_u8(image.width, image.height, image.channels, d)
}

/// `image` twice as bright (saturating).
///
/// # Panics
///
/// For a 16-bit image.
#[must_use]
pub fn brighten(image: &Raster) -> Raster {
    map_samples(image, |v| v.saturating_mul(2))
}

/// A 3×3 box blur of every channel (the outermost pixels kept).
///
/// # Panics
///
/// For a 16-bit image.
#[must_use]
pub fn box_blur(image: &Raster) -> Raster {
    let d = samples(image);
    let (w, h, c) = (image.width as usize, image.height as usize, image.channels as usize);
    let mut out = d.to_vec();
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            for ch in 0..c {
                let sum: u32 = (0..9)
                    .map(|k| u32::from(d[((y + k / 3 - 1) * w + x + k % 3 - 1) * c + ch]))
                    .sum();
                out[(y * w + x) * c + ch] = (sum / 9) as u8;
            }
        }
    }
    Raster::from_u8(image.width, image.height, image.channels, out)
}
