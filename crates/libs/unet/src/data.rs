//! Training data: a prepared dataset (the output of `build`) read through its manifest, turned into
//! model inputs and targets, cut into random patches with augmentation, and batched.
//!
//! Targets have one or two channels: foreground (any object), and optionally the boundary of each
//! object (object pixels with a 4-neighbour outside the object, background or another object). The
//! boundary channel lets `evaluate` split touching nuclei: foreground minus boundary leaves seeds that
//! are separated even where nuclei touch.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use cellops_dataset::io::decode;
use cellops_dataset::layout::Subset;
use cellops_dataset::manifest::Manifest;
use cellops_dataset::synthetic::Rng;
use cellops_dataset::{Raster, Samples};
use cellops_measure::distance::{Outside, distance_transform};

/// Why training data could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The manifest is missing or unreadable.
    #[error("cannot read {path}: {message} (is this a `cellops build` output?)")]
    Manifest {
        /// The manifest path.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// An image or mask file is missing or corrupt.
    #[error("cannot read {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Images in the dataset have different channel counts.
    #[error(
        "{path} has {found} channels but the dataset's first image has {expected}; build with --colour grey or rgb"
    )]
    Channels {
        /// The file.
        path: PathBuf,
        /// Channels found.
        found: usize,
        /// Channels expected.
        expected: usize,
    },
    /// A split has no items.
    #[error("the {0} split of the dataset is empty")]
    EmptySplit(&'static str),
}

/// Image samples as stored in memory: in their file's bit depth (1 or 2 bytes per value instead
/// of 4), turned into floats in 0..1 only where a patch or an image is cut.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// 8-bit values (`v / 255`).
    U8(Vec<u8>),
    /// 16-bit values (`v / 65535`).
    U16(Vec<u16>),
    /// Values already in 0..1.
    F32(Vec<f32>),
}

impl Pixels {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Pixels::U8(v) => v.len(),
            Pixels::U16(v) => v.len(),
            Pixels::F32(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i` in 0..1.
    #[inline]
    pub fn get(&self, i: usize) -> f32 {
        match self {
            Pixels::U8(v) => f32::from(v[i]) / 255.0,
            Pixels::U16(v) => f32::from(v[i]) / 65535.0,
            Pixels::F32(v) => v[i],
        }
    }

    /// All values in 0..1.
    pub fn to_f32(&self) -> Vec<f32> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }
}

/// One image and its targets, in memory.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Channels.
    pub channels: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
    /// Image, channel-major (`[C, H, W]`).
    pub image: Pixels,
    /// Targets (0 or 1), channel-major (`[T, H, W]`): foreground, then boundary if asked for.
    pub target: Vec<u8>,
    /// Number of target channels.
    pub target_channels: usize,
    /// What the second target channel holds.
    pub second: Boundary,
    /// Instance labels (`[H, W]`, 0 = background), for instance scores during validation; empty
    /// when unknown.
    pub labels: Vec<u16>,
}

/// Converts an image to channel-major floats in 0..1.
pub fn image_to_chw(r: &Raster) -> Vec<f32> {
    image_to_pixels(r).to_f32()
}

/// Interleaved samples (`[H·W, C]`) to planes (`[C, H·W]`).
fn planar<T: Copy + Default>(interleaved: &[T], channels: usize) -> Vec<T> {
    let n = interleaved.len() / channels.max(1);
    let mut out = vec![T::default(); interleaved.len()];
    for (i, px) in interleaved.chunks_exact(channels).enumerate() {
        for (k, &v) in px.iter().enumerate() {
            out[k * n + i] = v;
        }
    }
    out
}

/// Converts an image to channel-major samples in its own bit depth.
pub fn image_to_pixels(r: &Raster) -> Pixels {
    let c = r.channels as usize;
    match &r.samples {
        Samples::U8(d) => Pixels::U8(planar(d, c)),
        Samples::U16(d) => Pixels::U16(planar(d, c)),
    }
}

/// The second target channel: which object pixels count as boundary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Boundary {
    /// No boundary channel (foreground only).
    None,
    /// Every object pixel with a 4-neighbour outside the object (background, another object or
    /// the image border).
    #[default]
    Full,
    /// Only object pixels with a 4-neighbour in *another* object: where nuclei touch, the pixels
    /// that separate them (a sparse target; weight it up with `loss.boundary_weight`).
    Contact,
    /// Not a boundary but a distance map: each object pixel's Euclidean distance to the nearest
    /// pixel outside its object (the background, or the pixels where it touches another object),
    /// capped at [`DISTANCE_CAP_PX`] and stored as 0..=255 of the cap. The network regresses it
    /// (sigmoid × cap, learnt by cross-entropy against the soft target), and the distance watershed
    /// takes its markers from the prediction instead of the thresholded mask's distance transform.
    Distance,
}

/// The largest distance (pixels at the model's scale) that a [`Boundary::Distance`] channel
/// represents: at the shipped 20 px nucleus scale, the centre of a nucleus four times the median
/// area is 20 px from its outline.
pub const DISTANCE_CAP_PX: f64 = 32.0;

/// Steps of the stored distance target between 0 and [`DISTANCE_CAP_PX`].
const DISTANCE_STEPS: f64 = 255.0;

impl Boundary {
    /// Target channels: 1 without a boundary channel, else 2.
    pub fn channels(self) -> usize {
        if self == Boundary::None { 1 } else { 2 }
    }

    /// The training target of a stored value of channel `channel`: 0 or 1, except a distance
    /// channel's fraction of the cap.
    pub fn target_value(self, channel: usize, stored: u8) -> f32 {
        if channel == 1 && self == Boundary::Distance {
            (f64::from(stored) / DISTANCE_STEPS) as f32
        } else {
            f32::from(stored)
        }
    }

    /// The name of the second output channel (`None` when there is none).
    pub fn output_name(self) -> Option<&'static str> {
        match self {
            Boundary::None => None,
            Boundary::Full | Boundary::Contact => Some("boundary"),
            Boundary::Distance => Some("distance"),
        }
    }
}

/// Foreground and (optionally) boundary targets from instance labels, channel-major.
///
/// ```
/// use cellops_unet::data::{targets, Boundary};
/// let labels = [0u16, 1, 1, 1, 2, 2];
/// let t = targets(&labels, 6, Boundary::Full);
/// assert_eq!(&t[..6], &[0, 1, 1, 1, 1, 1]);
/// // Every object pixel of a one-row image touches the outside, so all are boundary.
/// assert_eq!(&t[6..], &[0, 1, 1, 1, 1, 1]);
/// // Only where objects 1 and 2 touch is contact.
/// assert_eq!(&targets(&labels, 6, Boundary::Contact)[6..], &[0, 0, 0, 1, 1, 0]);
/// ```
pub fn targets(labels: &[u16], width: usize, boundary: Boundary) -> Vec<u8> {
    let n = labels.len();
    let height = n / width;
    let mut out = vec![0u8; boundary.channels() * n];
    for (i, &l) in labels.iter().enumerate() {
        if l == 0 {
            continue;
        }
        out[i] = 1;
        let (x, y) = (i % width, i / width);
        let neighbours = [
            (x > 0).then(|| i - 1),
            (x + 1 < width).then(|| i + 1),
            (y > 0).then(|| i - width),
            (y + 1 < height).then(|| i + width),
        ];
        let edge = match boundary {
            Boundary::None => false,
            Boundary::Full => neighbours.iter().any(|j| j.is_none_or(|j| labels[j] != l)),
            // The distance map starts from the contact pixels, which count as outside.
            Boundary::Contact | Boundary::Distance => {
                neighbours.iter().flatten().any(|&j| labels[j] != l && labels[j] != 0)
            }
        };
        if edge {
            out[n + i] = 1;
        }
    }
    if boundary == Boundary::Distance {
        let (foreground, second) = out.split_at_mut(n);
        distance_target(foreground, width, second);
    }
    out
}

/// Turns the contact pixels in `second` into the [`Boundary::Distance`] target: each foreground
/// pixel's distance to the nearest pixel that is background or contact (outside both objects).
fn distance_target(foreground: &[u8], width: usize, second: &mut [u8]) {
    let inside: Vec<bool> = foreground
        .iter()
        .zip(second.iter())
        .map(|(&f, &c)| f == 1 && c == 0)
        .collect();
    let dist = distance_transform(&inside, width, Outside::Foreground);
    for (o, d) in second.iter_mut().zip(dist) {
        // An image with no outside pixel at all has infinite distances: the cap.
        *o = (d.min(DISTANCE_CAP_PX) / DISTANCE_CAP_PX * DISTANCE_STEPS).round() as u8;
    }
}

/// A prepared dataset opened through its manifest.
#[derive(Debug, Clone)]
pub struct PreparedDataset {
    root: PathBuf,
    manifest: Manifest,
}

impl PreparedDataset {
    /// Opens `<dir>/manifest.json`.
    pub fn open(dir: &Path) -> Result<Self, DataError> {
        let path = dir.join(cellops_formats::dataset::MANIFEST);
        let err = |message: String| DataError::Manifest {
            path: path.clone(),
            message,
        };
        let bytes = std::fs::read(&path).map_err(|e| err(e.to_string()))?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| err(cellops_formats::error::parser_message(&e.to_string())))?;
        Ok(Self {
            root: dir.to_owned(),
            manifest,
        })
    }

    /// The dataset's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The source images of a split and the factor `build` rescaled each by (the nucleus scale
    /// measured on its mask), read from the source folder the manifest names (as `build` was
    /// given it: relative to the folder it ran in, or absolute). Items without a factor (a
    /// dataset built without a nucleus scale) are left out.
    pub fn sources(&self, split: Subset) -> Result<Vec<(Raster, f64)>, DataError> {
        let root = Path::new(&self.manifest.source.root);
        let mut out = Vec::new();
        for item in self.manifest.items.iter().filter(|i| i.split == split) {
            let Some(factor) = item.outputs.first().and_then(|o| o.scale) else {
                continue;
            };
            let path = root.join(&item.image);
            let file_err = |message: String| DataError::File {
                path: path.clone(),
                message,
            };
            let bytes = std::fs::read(&path).map_err(|e| {
                file_err(format!(
                    "{e} (the source images are read from the manifest's source.root, relative to \
                     the folder `build` ran in)"
                ))
            })?;
            let raster = decode(&bytes, self.manifest.config.max_pixels)
                .map_err(|e| file_err(e.to_string()))?
                .raster;
            out.push((raster, factor));
        }
        Ok(out)
    }

    /// The instance labels of every output pair of a split, in the order of [`Self::load`].
    pub fn load_labels(&self, split: Subset) -> Result<Vec<Vec<u16>>, DataError> {
        let mut out = Vec::new();
        for item in self.manifest.items.iter().filter(|i| i.split == split) {
            for o in &item.outputs {
                let path = self.root.join(&o.mask);
                let file_err = |message: String| DataError::File {
                    path: path.clone(),
                    message,
                };
                let bytes = std::fs::read(&path).map_err(|e| file_err(e.to_string()))?;
                match decode(&bytes, u64::MAX)
                    .map_err(|e| file_err(e.to_string()))?
                    .raster
                    .samples
                {
                    Samples::U16(labels) => out.push(labels),
                    Samples::U8(_) => return Err(file_err("masks of a prepared dataset are 16-bit labels".into())),
                }
            }
        }
        Ok(out)
    }

    /// Loads every output pair of a split into memory.
    pub fn load(&self, split: Subset, boundary: Boundary) -> Result<Vec<Sample>, DataError> {
        let mut out = Vec::new();
        for item in self.manifest.items.iter().filter(|i| i.split == split) {
            for o in &item.outputs {
                let read = |rel: &str| -> Result<Raster, DataError> {
                    let path = self.root.join(rel);
                    let file_err = |message: String| DataError::File {
                        path: path.clone(),
                        message,
                    };
                    let bytes = std::fs::read(&path).map_err(|e| file_err(e.to_string()))?;
                    decode(&bytes, u64::MAX)
                        .map(|d| d.raster)
                        .map_err(|e| file_err(e.to_string()))
                };
                let image = read(&o.image)?;
                let mask = read(&o.mask)?;
                let Samples::U16(labels) = mask.samples else {
                    return Err(DataError::File {
                        path: self.root.join(&o.mask),
                        message: "masks of a prepared dataset are 16-bit labels".into(),
                    });
                };
                let channels = image.channels as usize;
                if let Some(first) = out.first().map(|s: &Sample| s.channels)
                    && first != channels
                {
                    return Err(DataError::Channels {
                        path: self.root.join(&o.image),
                        found: channels,
                        expected: first,
                    });
                }
                out.push(Sample {
                    channels,
                    height: image.height as usize,
                    width: image.width as usize,
                    image: image_to_pixels(&image),
                    target: targets(&labels, image.width as usize, boundary),
                    target_channels: boundary.channels(),
                    second: boundary,
                    labels,
                });
            }
        }
        if out.is_empty() {
            return Err(DataError::EmptySplit(split.as_str()));
        }
        Ok(out)
    }
}

/// Augmentation settings.
#[derive(Config, Debug)]
pub struct AugmentConfig {
    /// Random horizontal and vertical flips.
    #[config(default = true)]
    pub flips: bool,
    /// Random 90° rotations (square patches only).
    #[config(default = true)]
    pub rotations: bool,
    /// Brightness jitter: a random offset in ±this (image range 0..1).
    #[config(default = 0.1)]
    pub brightness: f32,
    /// Contrast jitter: a random factor in 1 ± this.
    #[config(default = 0.2)]
    pub contrast: f32,
    /// Share of patches centred on a nucleus (a random foreground pixel, give or take half a
    /// patch) rather than placed anywhere, so that sparse images still teach nuclei.
    #[config(default = 0.7)]
    pub nuclei_bias: f32,
    /// Scale jitter: each patch is resampled by a random factor in `1/(1 + scale) ..= 1 + scale`
    /// (log-uniform; the image bilinear, the targets nearest), so that the model also sees nuclei
    /// somewhat off the build's diameter, as an estimated scale gives them; 0 samples at the
    /// build's scale.
    #[config(default = 0.0)]
    pub scale: f32,
}

/// Tries at drawing a foreground pixel uniformly before scanning for one.
const FOREGROUND_TRIES: usize = 32;

/// A foreground pixel of `s` (row-major index), uniform over the foreground when drawing finds
/// one within [`FOREGROUND_TRIES`], else the first at or after a random pixel (wrapping round),
/// so one is found whenever there is any, however sparse the image.
fn foreground_pixel(s: &Sample, rng: &mut Rng) -> Option<usize> {
    let plane = s.width * s.height;
    let mut draw = || (rng.next_u64() % plane as u64) as usize;
    if let Some(i) = (0..FOREGROUND_TRIES).map(|_| draw()).find(|&i| s.target[i] != 0) {
        return Some(i);
    }
    let start = draw();
    (start..plane).chain(0..start).find(|&i| s.target[i] != 0)
}

/// The top-left corner of a patch of `size` in `s`: on a nucleus with probability
/// `aug.nuclei_bias` (when the image has one), anywhere otherwise.
fn patch_origin(s: &Sample, size: usize, aug: &AugmentConfig, rng: &mut Rng) -> (usize, usize) {
    let span = |len: usize| len.saturating_sub(size);
    let pick = |rng: &mut Rng, len: usize| (rng.next_u64() % (span(len) as u64 + 1)) as usize;
    if aug.nuclei_bias > 0.0
        && rng.unit() < aug.nuclei_bias
        && let Some(i) = foreground_pixel(s, rng)
    {
        // The nucleus lands anywhere in the patch, not always at its centre.
        let mut place = |c: usize, len: usize| {
            let offset = (rng.next_u64() % size as u64) as usize;
            c.saturating_sub(offset).min(span(len))
        };
        let y0 = place(i / s.width, s.height);
        return (y0, place(i % s.width, s.width));
    }
    (pick(rng, s.height), pick(rng, s.width))
}

/// A random square patch of `size` (the whole sample, edge-padded, where it is smaller), augmented.
/// Returns `(image, target)`, channel-major.
pub fn random_patch(s: &Sample, size: usize, aug: &AugmentConfig, rng: &mut Rng) -> (Vec<f32>, Vec<f32>) {
    // Source pixels per patch pixel (drawn only when jittering, so that the stream of draws of
    // unjittered training is unchanged).
    let step = if aug.scale > 0.0 {
        (f64::from(aug.scale).ln_1p() * (2.0 * f64::from(rng.unit()) - 1.0)).exp()
    } else {
        1.0
    };
    let extent = ((size as f64 * step).ceil() as usize).max(1);
    let (y0, x0) = patch_origin(s, extent, aug, rng);
    let flip_x = aug.flips && rng.next_u64() & 1 == 1;
    let flip_y = aug.flips && rng.next_u64() & 1 == 1;
    let rot = if aug.rotations { rng.next_u64() % 4 } else { 0 };
    let gain = 1.0 + aug.contrast * (2.0 * rng.unit() - 1.0);
    let offset = aug.brightness * (2.0 * rng.unit() - 1.0);
    // Source coordinate of patch pixel (px, py) after flips and rotation; clamped (edge padding).
    let source = |px: usize, py: usize| {
        let (mut x, mut y) = (px, py);
        for _ in 0..rot {
            (x, y) = (size - 1 - y, x);
        }
        if flip_x {
            x = size - 1 - x;
        }
        if flip_y {
            y = size - 1 - y;
        }
        (x, y)
    };
    let sampler = Resampler {
        s,
        origin: (x0, y0),
        step,
    };
    let plane = s.width * s.height;
    let mut image = vec![0f32; s.channels * size * size];
    let mut target = vec![0f32; s.target_channels * size * size];
    for py in 0..size {
        for px in 0..size {
            let (x, y) = source(px, py);
            let dst = py * size + px;
            let taps = sampler.taps(x, y);
            for c in 0..s.channels {
                let v: f32 = taps.iter().map(|&(i, w)| w * s.image.get(c * plane + i)).sum();
                // Contrast about mid-grey, then brightness; exact when both are zero.
                image[c * size * size + dst] = (v + (v - 0.5) * (gain - 1.0) + offset).clamp(0.0, 1.0);
            }
            let src = sampler.nearest(x, y);
            for t in 0..s.target_channels {
                target[t * size * size + dst] = s.second.target_value(t, s.target[t * plane + src]);
            }
        }
    }
    (image, target)
}

/// Where a patch pixel's values come from in a sample: `step` source pixels per patch pixel from
/// `origin` (x, y), clamped to the sample (edge padding).
struct Resampler<'a> {
    s: &'a Sample,
    origin: (usize, usize),
    step: f64,
}

impl Resampler<'_> {
    /// The source position (x, y) of the centre of patch pixel (x, y), in pixel-centre
    /// coordinates, clamped to the sample.
    fn position(&self, x: usize, y: usize) -> (f64, f64) {
        let at = |p: usize, o: usize, len: usize| {
            (o as f64 + (p as f64 + 0.5) * self.step - 0.5).clamp(0.0, (len - 1) as f64)
        };
        (at(x, self.origin.0, self.s.width), at(y, self.origin.1, self.s.height))
    }

    /// The row-major index of the source pixel nearest to patch pixel (x, y).
    fn nearest(&self, x: usize, y: usize) -> usize {
        let (sx, sy) = self.position(x, y);
        sy.round() as usize * self.s.width + sx.round() as usize
    }

    /// The source pixels (row-major index) and bilinear weights of patch pixel (x, y). At the
    /// build's scale positions are whole pixels, so the first tap has weight 1 and the patch is an
    /// exact crop.
    fn taps(&self, x: usize, y: usize) -> [(usize, f32); 4] {
        let w = self.s.width;
        let (sx, sy) = self.position(x, y);
        let (xa, ya) = (sx.floor() as usize, sy.floor() as usize);
        let (xb, yb) = ((xa + 1).min(w - 1), (ya + 1).min(self.s.height - 1));
        let (fx, fy) = ((sx - xa as f64) as f32, (sy - ya as f64) as f32);
        [
            (ya * w + xa, (1.0 - fx) * (1.0 - fy)),
            (ya * w + xb, fx * (1.0 - fy)),
            (yb * w + xa, (1.0 - fx) * fy),
            (yb * w + xb, fx * fy),
        ]
    }
}

/// Stacks patches into `[B, C, P, P]` image and `[B, T, P, P]` target tensors.
pub fn batch(
    patches: &[(Vec<f32>, Vec<f32>)],
    channels: usize,
    target_channels: usize,
    size: usize,
    device: &Device,
) -> (Tensor<4>, Tensor<4>) {
    let b = patches.len();
    let images: Vec<f32> = patches.iter().flat_map(|p| p.0.iter().copied()).collect();
    let targets: Vec<f32> = patches.iter().flat_map(|p| p.1.iter().copied()).collect();
    (
        Tensor::<1>::from_floats(images.as_slice(), device).reshape([b, channels, size, size]),
        Tensor::<1>::from_floats(targets.as_slice(), device).reshape([b, target_channels, size, size]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sample {
        // 3x2 image with labels [[1, 1, 0], [2, 2, 0]].
        let labels = [1u16, 1, 0, 2, 2, 0];
        Sample {
            channels: 1,
            height: 2,
            width: 3,
            image: Pixels::F32(vec![0.0, 0.1, 0.2, 0.3, 0.4, 0.5]),
            target: targets(&labels, 3, Boundary::Full),
            target_channels: 2,
            second: Boundary::Full,
            labels: labels.to_vec(),
        }
    }

    #[test]
    fn biased_patches_hold_nuclei() {
        // One 3x3 nucleus in a 64x64 image: unbiased 16-pixel patches mostly miss it.
        let mut labels = vec![0u16; 64 * 64];
        for y in 40..43 {
            labels[y * 64 + 50..y * 64 + 53].fill(1);
        }
        let s = Sample {
            channels: 1,
            height: 64,
            width: 64,
            image: Pixels::U8(vec![0; 64 * 64]),
            target: targets(&labels, 64, Boundary::None),
            target_channels: 1,
            second: Boundary::None,
            labels,
        };
        let hits = |bias: f32| {
            let aug = AugmentConfig::new().with_nuclei_bias(bias);
            let mut rng = Rng::new(5);
            (0..200)
                .filter(|_| random_patch(&s, 16, &aug, &mut rng).1.iter().any(|&t| t > 0.0))
                .count()
        };
        assert!(hits(0.0) < 40, "{}", hits(0.0));
        assert!(hits(1.0) == 200, "{}", hits(1.0));
    }

    #[test]
    fn touching_objects_have_boundaries_between_them() {
        let labels = [1u16, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2];
        let t = targets(&labels, 6, Boundary::Full);
        let boundary = &t[18..];
        // The middle row's interior pixels (x = 1 and 4) are not on any edge; x = 2 and 3 touch the
        // other object.
        assert_eq!(&boundary[6..12], &[1, 0, 1, 1, 0, 1]);
    }

    /// Two `side`×`side` squares (labels 1 and 2) touching side by side, one pixel of background
    /// around them: width, height and labels.
    fn two_squares(side: usize) -> (usize, usize, Vec<u16>) {
        let (w, h) = (2 * side + 2, side + 2);
        let mut labels = vec![0u16; w * h];
        for y in 1..=side {
            for x in 1..=side {
                labels[y * w + x] = 1;
                labels[y * w + x + side] = 2;
            }
        }
        (w, h, labels)
    }

    #[test]
    fn contact_targets_lie_exactly_where_objects_touch() {
        // Two 3x3 squares side by side (columns 1-3 and 4-6) in a 5x8 image, one pixel of
        // background around them: contact is columns 3 and 4 of the square rows, nothing else.
        let (w, h, labels) = two_squares(3);
        let t = targets(&labels, w, Boundary::Contact);
        let contact: Vec<(usize, usize)> = (0..w * h)
            .filter(|&i| t[w * h + i] == 1)
            .map(|i| (i % w, i / w))
            .collect();
        assert_eq!(contact, [(3, 1), (4, 1), (3, 2), (4, 2), (3, 3), (4, 3)]);
        // The foreground channel is the same as with full boundaries, which mark every outline.
        let full = targets(&labels, w, Boundary::Full);
        assert_eq!(t[..w * h], full[..w * h]);
        assert_eq!(full[w * h..].iter().filter(|&&v| v == 1).count(), 16);
    }

    #[test]
    fn distance_targets_fall_to_zero_outside_and_where_objects_touch() {
        // Two 5x5 squares side by side (columns 1-5 and 6-10) in a 7x12 image.
        let (w, h, labels) = two_squares(5);
        let t = targets(&labels, w, Boundary::Distance);
        let d = |x: usize, y: usize| f64::from(t[w * h + y * w + x]) / 255.0 * DISTANCE_CAP_PX;
        let step = DISTANCE_CAP_PX / 255.0;
        // Background and the touching columns 5 and 6 are 0 (outside both squares); (3, 3) is 2 px
        // from the contact, 3 px from the background; pixels next to the background are 1 px.
        for (x, y, want) in [
            (0, 0, 0.0),
            (5, 3, 0.0),
            (6, 3, 0.0),
            (3, 3, 2.0),
            (2, 3, 2.0),
            (1, 3, 1.0),
            (8, 1, 1.0),
        ] {
            assert!(
                (d(x, y) - want).abs() <= step / 2.0,
                "({x}, {y}): {} vs {want}",
                d(x, y)
            );
        }
        // Symmetric about the contact; the stored values read back as fractions of the cap.
        assert_eq!(t[w * h + 3 * w + 3], t[w * h + 3 * w + 8]);
        assert_eq!(Boundary::Distance.target_value(1, 255), 1.0);
        assert_eq!(Boundary::Distance.target_value(0, 1), 1.0);
        assert_eq!(t[..w * h], targets(&labels, w, Boundary::Full)[..w * h]);
    }

    #[test]
    fn scale_jitter_resizes_nuclei_within_its_range() {
        // One disc of radius 10 in a 40x40 image: 64-pixel patches always hold all of it.
        let w = 40usize;
        let labels: Vec<u16> = (0..w * w)
            .map(|i| {
                let (x, y) = ((i % w) as f64 - 19.5, (i / w) as f64 - 19.5);
                u16::from(x * x + y * y <= 100.0)
            })
            .collect();
        let area = labels.iter().filter(|&&l| l != 0).count() as f32;
        let s = Sample {
            channels: 1,
            height: w,
            width: w,
            image: Pixels::F32(labels.iter().map(|&l| f32::from(l)).collect()),
            target: targets(&labels, w, Boundary::None),
            target_channels: 1,
            second: Boundary::None,
            labels,
        };
        let aug = AugmentConfig::new()
            .with_brightness(0.0)
            .with_contrast(0.0)
            .with_scale(0.5);
        let mut rng = Rng::new(3);
        let ratios: Vec<f32> = (0..100)
            .map(|_| {
                let (img, tgt) = random_patch(&s, 64, &aug, &mut rng);
                let fg = tgt.iter().filter(|&&t| t > 0.0).count() as f32;
                // The image is resampled with its target: the same disc, softened at its edge.
                let bright: f32 = img.iter().sum();
                assert!((bright / fg - 1.0).abs() < 0.15, "image {bright} against target {fg}");
                fg / area
            })
            .collect();
        // Areas scale by the square of a factor in 1/1.5..=1.5, give or take the disc's pixels.
        assert!(ratios.iter().all(|&r| (0.4..=2.5).contains(&r)), "{ratios:?}");
        assert!(
            ratios.iter().any(|&r| r < 0.7) && ratios.iter().any(|&r| r > 1.5),
            "{ratios:?}"
        );
        // No jitter: the disc as it is.
        let aug = aug.with_scale(0.0);
        let (_, tgt) = random_patch(&s, 64, &aug, &mut rng);
        assert_eq!(tgt.iter().filter(|&&t| t > 0.0).count() as f32, area);
    }

    #[test]
    fn patches_without_augmentation_are_crops() {
        let aug = AugmentConfig::new()
            .with_flips(false)
            .with_rotations(false)
            .with_brightness(0.0)
            .with_contrast(0.0);
        let (img, tgt) = random_patch(&sample(), 2, &aug, &mut Rng::new(1));
        assert_eq!(img.len(), 4);
        assert_eq!(tgt.len(), 8);
        // Every image value comes from the sample, with its own target.
        for v in &img {
            assert!(sample().image.to_f32().contains(v));
        }
    }

    #[test]
    fn augmentation_keeps_image_and_target_aligned() {
        let s = sample();
        let aug = AugmentConfig::new().with_brightness(0.0).with_contrast(0.0);
        for seed in 0..20 {
            let (img, tgt) = random_patch(&s, 3, &aug, &mut Rng::new(seed));
            for (i, v) in img.iter().enumerate() {
                let src = s
                    .image
                    .to_f32()
                    .iter()
                    .position(|x| (x - v).abs() < 1e-6)
                    .expect("value from the sample");
                assert_eq!(
                    tgt[i],
                    f32::from(s.target[src]),
                    "foreground follows its pixel (seed {seed})"
                );
            }
        }
    }
}
