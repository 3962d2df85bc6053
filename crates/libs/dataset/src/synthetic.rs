//! A synthetic nuclei generator: microscopy-like images with exact instance masks.
//!
//! Elliptical nuclei of varied size with irregular outlines, touching clusters, chromatin texture,
//! and three looks: H&E-like histology (purple nuclei on pink stroma), IHC (haematoxylin-blue and
//! DAB-brown nuclei of graded intensity on a pale background) and fluorescence (bright nuclei on a
//! dark background, one grey channel). Then optical blur, uneven illumination and sensor noise.
//! Output is deterministic per seed and index, using only integer arithmetic for randomness (no
//! dependence on a random-number crate's version).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::io::encode_png;
use crate::raster::{Labels, Raster};

/// The look of synthetic images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Style {
    /// H&E-like, IHC and fluorescence in turn.
    #[default]
    Mixed,
    /// H&E-like histology (RGB).
    He,
    /// IHC with DAB (brown) and haematoxylin (blue) (RGB).
    Ihc,
    /// Fluorescence (grey).
    Fluorescence,
}

/// Settings of the generator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthConfig {
    /// Number of images.
    pub count: usize,
    /// Seed: the same seed gives the same images.
    pub seed: u64,
    /// Width and height in pixels.
    pub size: [u32; 2],
    /// The look.
    pub style: Style,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            count: 16,
            seed: 1,
            size: [256, 256],
            style: Style::Mixed,
        }
    }
}

/// SplitMix64: a small, well-mixed generator with a fixed definition.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        Self::mix(self.0)
    }
    /// SplitMix64's finaliser: 64 well-mixed bits of `z` (what [`Self::next_u64`] returns of
    /// its state; a hash of a position for generators that draw by place, not in sequence).
    pub fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.unit().max(1e-7);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

/// Smooth value noise in `[0, 1]` at a given cell size, bilinearly interpolated.
fn value_noise(rng: &mut Rng, w: usize, h: usize, cell: f32) -> Vec<f32> {
    let gw = (w as f32 / cell).ceil() as usize + 2;
    let gh = (h as f32 / cell).ceil() as usize + 2;
    let grid: Vec<f32> = (0..gw * gh).map(|_| rng.unit()).collect();
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        let fy = y as f32 / cell;
        let (y0, ty) = (fy as usize, fy.fract());
        for x in 0..w {
            let fx = x as f32 / cell;
            let (x0, tx) = (fx as usize, fx.fract());
            let g = |xx: usize, yy: usize| grid[yy * gw + xx];
            let top = g(x0, y0) * (1.0 - tx) + g(x0 + 1, y0) * tx;
            let bottom = g(x0, y0 + 1) * (1.0 - tx) + g(x0 + 1, y0 + 1) * tx;
            out.push(top * (1.0 - ty) + bottom * ty);
        }
    }
    out
}

/// Separable Gaussian blur of a plane.
fn blur(plane: &mut [f32], w: usize, h: usize, sigma: f32) {
    if sigma <= 0.0 {
        return;
    }
    let r = (sigma * 3.0).ceil() as isize;
    let kernel: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let norm: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / norm).collect();
    let mut tmp = vec![0.0f32; plane.len()];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (k, kv) in kernel.iter().enumerate() {
                let xx = (x as isize + k as isize - r).clamp(0, w as isize - 1) as usize;
                acc += plane[y * w + xx] * kv;
            }
            tmp[y * w + x] = acc;
        }
    }
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (k, kv) in kernel.iter().enumerate() {
                let yy = (y as isize + k as isize - r).clamp(0, h as isize - 1) as usize;
                acc += tmp[yy * w + x] * kv;
            }
            plane[y * w + x] = acc;
        }
    }
}

struct Nucleus {
    cx: f32,
    cy: f32,
    a: f32,
    b: f32,
    angle: f32,
    wobble: [f32; 4],
    /// Stain level 0..=3 (IHC) or brightness (fluorescence), 0..1.
    level: f32,
}

impl Nucleus {
    /// A nucleus of random size, shape, orientation and stain level centred on (cx, cy).
    fn random(rng: &mut Rng, cx: f32, cy: f32, scale: f32) -> Self {
        let a = rng.range(6.0, 14.0) * scale;
        Nucleus {
            cx,
            cy,
            a,
            b: a * rng.range(0.55, 0.95),
            angle: rng.range(0.0, std::f32::consts::PI),
            wobble: [
                rng.range(0.0, 0.08),
                rng.range(0.0, 6.3),
                rng.range(0.0, 0.05),
                rng.range(0.0, 6.3),
            ],
            level: rng.unit(),
        }
    }

    /// Whether (x, y) is inside, with an irregular outline.
    fn contains(&self, x: f32, y: f32) -> bool {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let (s, c) = self.angle.sin_cos();
        let (u, v) = (dx * c + dy * s, -dx * s + dy * c);
        let theta = v.atan2(u);
        let r = 1.0
            + self.wobble[0] * (3.0 * theta + self.wobble[1]).sin()
            + self.wobble[2] * (5.0 * theta + self.wobble[3]).sin();
        (u / self.a).powi(2) + (v / self.b).powi(2) <= r * r
    }
}

/// One synthetic image and its instance mask.
pub fn generate_one(cfg: &SynthConfig, index: usize) -> (Raster, Labels) {
    let mut rng = Rng::new(cfg.seed.wrapping_mul(0x100_0000_01B3) ^ (index as u64).wrapping_mul(0x9E37_79B9));
    for _ in 0..4 {
        rng.next_u64();
    }
    let style = match cfg.style {
        Style::Mixed => [Style::He, Style::Ihc, Style::Fluorescence][index % 3],
        s => s,
    };
    let (w, h) = (cfg.size[0] as usize, cfg.size[1] as usize);
    let scale = (w.min(h) as f32 / 256.0).clamp(0.25, 4.0);
    let nuclei = place_nuclei(&mut rng, w, h, scale);
    let (labels, levels) = rasterise(&nuclei, w, h);
    let texture = value_noise(&mut rng, w, h, 3.0 * scale);
    let stroma = value_noise(&mut rng, w, h, 24.0 * scale);
    let optics = Optics::draw(&mut rng, scale);
    let channels: Vec<[f32; 3]> = labels
        .iter()
        .enumerate()
        .map(|(i, &l)| stain(style, l, texture[i], stroma[i], &levels))
        .collect();
    let grey = style == Style::Fluorescence;
    let n_channels = if grey { 1 } else { 3 };
    let data = optics.capture(&channels, grey, w, h, &mut rng);
    (
        Raster::from_u8(w as u32, h as u32, n_channels as u8, data),
        Labels::new(w as u32, h as u32, labels),
    )
}

/// Nuclei: a density per area, half of them in touching clusters.
fn place_nuclei(rng: &mut Rng, w: usize, h: usize, scale: f32) -> Vec<Nucleus> {
    let target = ((w * h) as f32 / 2600.0 * rng.range(0.6, 1.3)) as usize + 2;
    let mut nuclei: Vec<Nucleus> = Vec::with_capacity(target);
    while nuclei.len() < target {
        let (cx, cy) = match nuclei.last() {
            Some(prev) if rng.unit() < 0.45 => {
                // Touch the previous nucleus.
                let dir = rng.range(0.0, std::f32::consts::TAU);
                let d = (prev.a + prev.b) * 0.5 + 9.0 * scale;
                (prev.cx + d * dir.cos(), prev.cy + d * dir.sin())
            }
            _ => (rng.range(0.0, w as f32), rng.range(0.0, h as f32)),
        };
        nuclei.push(Nucleus::random(rng, cx, cy, scale));
    }
    nuclei
}

/// The instance labels of `nuclei` on a `w`×`h` grid, and the stain level of each label (index 0:
/// background). Earlier nuclei keep contested pixels, so objects touch but never overlap; nuclei
/// that paint no pixel get no label.
fn rasterise(nuclei: &[Nucleus], w: usize, h: usize) -> (Vec<u16>, Vec<f32>) {
    let mut labels = vec![0u16; w * h];
    let mut next = 0u16;
    let mut levels = vec![0.0f32];
    for n in nuclei {
        let reach = n.a.max(n.b) * 1.2;
        let (x0, x1) = (
            (n.cx - reach).max(0.0) as usize,
            ((n.cx + reach).ceil() as usize).min(w),
        );
        let (y0, y1) = (
            (n.cy - reach).max(0.0) as usize,
            ((n.cy + reach).ceil() as usize).min(h),
        );
        let mut painted = 0usize;
        let id = next + 1;
        for y in y0..y1 {
            for x in x0..x1 {
                if labels[y * w + x] == 0 && n.contains(x as f32 + 0.5, y as f32 + 0.5) {
                    labels[y * w + x] = id;
                    painted += 1;
                }
            }
        }
        if painted > 0 {
            next = id;
            levels.push(n.level);
        }
    }
    (labels, levels)
}

/// The RGB colour of a pixel with label `l` (0: background) in `style`, given the nuclear texture
/// `t` and stroma noise `s` there and the stain level of each label.
fn stain(style: Style, l: u16, t: f32, s: f32, levels: &[f32]) -> [f32; 3] {
    match style {
        Style::He => {
            if l == 0 {
                [225.0 + 20.0 * s, 160.0 + 40.0 * s, 195.0 + 25.0 * s]
            } else {
                let d = 0.75 + 0.35 * t;
                [110.0 * d, 70.0 * d, 150.0 * d]
            }
        }
        Style::Ihc => {
            if l == 0 {
                [232.0 + 12.0 * s, 226.0 + 12.0 * s, 218.0 + 14.0 * s]
            } else {
                let lv = levels[l as usize];
                let d = 0.8 + 0.3 * t;
                if lv < 0.45 {
                    [115.0 * d, 125.0 * d, 185.0 * d] // haematoxylin only
                } else {
                    let k = 1.0 - (lv - 0.45) * 1.2; // darker brown for stronger DAB
                    [165.0 * k * d, 110.0 * k * d, 60.0 * k * d]
                }
            }
        }
        Style::Fluorescence | Style::Mixed => {
            let v = if l == 0 {
                12.0 + 10.0 * s
            } else {
                (80.0 + 150.0 * levels[l as usize]) * (0.75 + 0.4 * t)
            };
            [v, v, v]
        }
    }
}

/// How the synthetic microscope images a slide: uneven illumination, blur and sensor noise.
struct Optics {
    illum_amp: f32,
    blur_sigma: f32,
    noise_sigma: f32,
    /// The direction of the illumination gradient.
    ux: f32,
    uy: f32,
}

impl Optics {
    /// Random optics for an image at `scale`.
    fn draw(rng: &mut Rng, scale: f32) -> Self {
        let illum_dir = rng.range(0.0, std::f32::consts::TAU);
        let illum_amp = rng.range(0.05, 0.25);
        let blur_sigma = rng.range(0.5, 1.4) * scale;
        let noise_sigma = rng.range(2.0, 6.0);
        let (ux, uy) = (illum_dir.cos(), illum_dir.sin());
        Optics {
            illum_amp,
            blur_sigma,
            noise_sigma,
            ux,
            uy,
        }
    }

    /// The illumination factor at (x, y): a linear gradient with a radial fall-off.
    fn illumination(&self, x: usize, y: usize, w: usize, h: usize) -> f32 {
        let t = ((x as f32 / w as f32 - 0.5) * self.ux + (y as f32 / h as f32 - 0.5) * self.uy) * 2.0;
        let (dx, dy) = (x as f32 / w as f32 - 0.5, y as f32 / h as f32 - 0.5);
        (1.0 + self.illum_amp * t) * (1.0 - 0.3 * self.illum_amp * (dx * dx + dy * dy) * 4.0)
    }

    /// The 8-bit image of the stained slide `channels` (one grey channel, or RGB): blurred, lit and
    /// noisy (signal-dependent noise for grey).
    fn capture(&self, channels: &[[f32; 3]], grey: bool, w: usize, h: usize, rng: &mut Rng) -> Vec<u8> {
        let n_channels = if grey { 1 } else { 3 };
        let mut data = vec![0u8; w * h * n_channels];
        for c in 0..n_channels {
            let mut plane: Vec<f32> = channels.iter().map(|px| px[c]).collect();
            blur(&mut plane, w, h, self.blur_sigma);
            for y in 0..h {
                for x in 0..w {
                    let i = y * w + x;
                    let mut v = plane[i] * self.illumination(x, y, w, h);
                    let sigma = if grey {
                        self.noise_sigma * 0.5 + 0.35 * v.max(0.0).sqrt()
                    } else {
                        self.noise_sigma
                    };
                    v += sigma * rng.normal();
                    data[i * n_channels + c] = v.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        data
    }
}

/// Errors writing a synthetic dataset.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A file or folder could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The path.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An image could not be encoded.
    #[error("cannot encode a synthetic image: {0}")]
    Encode(String),
}

/// Writes a synthetic dataset in the paper's layout (`original/synth_NNNN.png`,
/// `masks/synth_NNNN_mask.png`) under `dir`. Returns the number of objects written.
pub fn write_dataset(cfg: &SynthConfig, dir: &Path) -> Result<usize, SynthError> {
    use rayon::prelude::*;
    for sub in [
        cellops_formats::dataset::PAPER_IMAGES,
        cellops_formats::dataset::PAPER_MASKS,
    ] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(|source| SynthError::Write { path: p, source })?;
    }
    let width = cfg.count.saturating_sub(1).max(1).to_string().len().max(4);
    (0..cfg.count)
        .into_par_iter()
        .map(|i| {
            let (img, mask) = generate_one(cfg, i);
            let objects = mask.count_objects();
            let name = format!("synth_{i:0width$}");
            let mask_raster = Raster::from_u16(mask.width, mask.height, 1, mask.data);
            for (rel, raster) in [
                (format!("original/{name}.png"), &img),
                (format!("masks/{name}_mask.png"), &mask_raster),
            ] {
                let bytes = encode_png(raster).map_err(|e| SynthError::Encode(e.to_string()))?;
                let path = dir.join(rel);
                std::fs::write(&path, bytes).map_err(|source| SynthError::Write { path, source })?;
            }
            Ok(objects)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        let cfg = SynthConfig {
            size: [96, 80],
            ..SynthConfig::default()
        };
        let (a, la) = generate_one(&cfg, 0);
        let (b, lb) = generate_one(&cfg, 0);
        assert_eq!((&a, &la), (&b, &lb));
        let (c, _) = generate_one(&cfg, 3);
        assert_ne!(a, c);
        assert!(la.count_objects() >= 2, "has nuclei");
        assert_eq!((a.width, a.height, a.channels), (96, 80, 3));
        // Fluorescence is grey.
        assert_eq!(generate_one(&cfg, 2).0.channels, 1);
    }

    #[test]
    fn some_nuclei_touch() {
        let cfg = SynthConfig {
            size: [256, 256],
            style: Style::Fluorescence,
            ..SynthConfig::default()
        };
        let touching = (0..4).any(|i| {
            let (_, l) = generate_one(&cfg, i);
            let w = l.width as usize;
            l.data
                .windows(2)
                .enumerate()
                .any(|(k, p)| (k + 1) % w != 0 && p[0] != 0 && p[1] != 0 && p[0] != p[1])
        });
        assert!(touching, "clusters of touching nuclei are generated");
    }
}
