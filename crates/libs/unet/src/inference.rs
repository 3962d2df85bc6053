//! Inference: probability maps and masks for images of any size, in bounded memory.
//!
//! Images larger than a tile are cut into overlapping tiles, run through the network a batch of
//! tiles at a time, and blended back: each tile's probabilities are weighted by a window that
//! falls linearly to a small value across the overlap, so seams vanish and the poorly-contexted
//! tile borders count least. Memory is the model's for one batch of tiles plus the output
//! itself (`channels + 1` floats per pixel), whatever the image size.
//!
//! [`Predictor`] applies the preprocessing recorded in a bundle first (the model must see what it
//! was trained on) and maps the probabilities back to the input image's size.

use std::path::Path;

use burn::prelude::*;
use cellops_dataset::ops::scale;
use cellops_dataset::{Fixed, Raster};
use cellops_measure::instances::{Guide, Holes, InstanceConfig, Method, segment, split_mask};
use cellops_measure::threshold::{histogram, otsu};

use crate::bundle::{self, BundleError, BundleMeta};
use crate::data::{Boundary, DISTANCE_CAP_PX, image_to_chw};
use crate::model::UNet;

/// How images are cut into tiles.
#[derive(Config, Debug)]
pub struct PredictConfig {
    /// Side of the square tiles (images smaller than this run whole). 512 was tried so that a
    /// DSB-sized image runs in one pass: slower (70 s against 54 s on the validation split) with
    /// 2.5× the memory (docs/benchmarks.md, serving).
    #[config(default = 256)]
    pub tile: usize,
    /// Overlap between neighbouring tiles, in pixels.
    #[config(default = 32)]
    pub overlap: usize,
    /// Tiles per forward pass.
    #[config(default = 4)]
    pub batch: usize,
    /// Test-time augmentation: the mean of the predictions on transformed copies.
    #[config(default = "Tta::None")]
    pub tta: Tta,
    /// Where the nucleus size estimate of a bundle trained at a nucleus scale starts, when the
    /// bundle has no size model ([`Predictor::start_factor`]).
    #[config(default = "SizeStart::Image")]
    pub start: SizeStart,
}

/// Where [`Predictor::estimate_scale`] starts (a bundle's size model, when it has one, comes
/// first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum SizeStart {
    /// At the image's own size.
    #[default]
    Image,
    /// At the factor that brings the median object of a global threshold to the target: Otsu on
    /// the grey, percentile-normalised, nuclei-bright image (`BuildConfig::threshold_grey`),
    /// holes filled, nothing split. It sees nuclei at their true size, where a model at the
    /// wrong scale loses or cuts them; the image's own size when it finds nothing.
    Threshold,
}

/// Test-time augmentation: the image is predicted as it is and transformed, each prediction is
/// transformed back, and the probabilities are averaged (costs one pass per transform).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Tta {
    /// One pass.
    #[default]
    None,
    /// The image and its horizontal, vertical and double flips (4 passes).
    Flips,
    /// The 8 symmetries of the square: flips, and each also transposed (8 passes).
    Dihedral,
}

impl Tta {
    /// The transforms: bit 0 flips x, bit 1 flips y, bit 2 transposes (after the flips).
    fn transforms(self) -> &'static [u8] {
        match self {
            Tta::None => &[0],
            Tta::Flips => &[0, 1, 2, 3],
            Tta::Dihedral => &[0, 1, 2, 3, 4, 5, 6, 7],
        }
    }
}

/// Applies transform `t` (see [`Tta::transforms`]) to channel-major planes of `h` x `w`; returns
/// the planes and their new height and width.
fn transform(planes: &[f32], channels: usize, h: usize, w: usize, t: u8) -> (Vec<f32>, usize, usize) {
    let (fx, fy, tr) = (t & 1 != 0, t & 2 != 0, t & 4 != 0);
    let (oh, ow) = if tr { (w, h) } else { (h, w) };
    let mut out = vec![0f32; planes.len()];
    for c in 0..channels {
        let src = &planes[c * h * w..(c + 1) * h * w];
        let dst = &mut out[c * h * w..(c + 1) * h * w];
        for y in 0..oh {
            for x in 0..ow {
                // Output (y, x) comes from the flipped image at (x, y) when transposed.
                let (sy, sx) = if tr { (x, y) } else { (y, x) };
                let sy = if fy { h - 1 - sy } else { sy };
                let sx = if fx { w - 1 - sx } else { sx };
                dst[y * ow + x] = src[sy * w + sx];
            }
        }
    }
    (out, oh, ow)
}

/// Undoes [`transform`] on planes of the transformed size `h` x `w`.
fn untransform(planes: &[f32], channels: usize, h: usize, w: usize, t: u8) -> Vec<f32> {
    let (fx, fy, tr) = (t & 1 != 0, t & 2 != 0, t & 4 != 0);
    // The inverse transposes first, then flips the original axes.
    let (th, tw) = if tr { (w, h) } else { (h, w) };
    let transposed = if tr {
        transform(planes, channels, h, w, 4).0
    } else {
        planes.to_vec()
    };
    let flips = u8::from(fx) | (u8::from(fy) << 1);
    transform(&transposed, channels, th, tw, flips).0
}

/// Probabilities for every output channel of the model, at the image's size.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
    /// Output channels (foreground, then boundary when the model has it).
    pub channels: usize,
    /// Probabilities in 0..=1, channel-major (`[C, H, W]`).
    pub probabilities: Vec<f32>,
    /// Model pixels per image pixel: the factor the image was rescaled by before the network saw
    /// it (1 when it was not). Post-processing sizes tuned at the model's scale (pixels) are
    /// divided by it to apply to these probabilities, which are at the image's own size.
    pub scale: f64,
}

impl Prediction {
    /// One channel's probabilities (`[H, W]`).
    pub fn channel(&self, c: usize) -> &[f32] {
        let n = self.width * self.height;
        &self.probabilities[c * n..(c + 1) * n]
    }

    /// The second channel as a separation guide, for a model whose second channel holds `second`
    /// (a distance channel in pixels of this prediction's grid); `None` without one.
    pub fn guide(&self, second: Boundary) -> Option<Guide<'_>> {
        if self.channels < 2 {
            return None;
        }
        match second {
            Boundary::None => None,
            Boundary::Full | Boundary::Contact => Some(Guide::Boundary(self.channel(1))),
            Boundary::Distance => Some(Guide::Distance {
                map: self.channel(1),
                px_per_unit: DISTANCE_CAP_PX / self.scale,
            }),
        }
    }

    /// The foreground mask: 1 where the foreground probability exceeds `threshold`, else 0.
    pub fn mask(&self, threshold: f32) -> Vec<u8> {
        self.channel(0).iter().map(|&p| u8::from(p > threshold)).collect()
    }
}

/// Tile origins along one axis of `len` pixels: tiles of `tile` (or `len` when smaller) that
/// start every `tile - overlap` pixels, the last one flush with the end.
fn origins(len: usize, tile: usize, overlap: usize) -> Vec<usize> {
    if len <= tile {
        return vec![0];
    }
    let stride = tile.saturating_sub(overlap).max(1);
    let mut out: Vec<usize> = (0..).map(|k| k * stride).take_while(|&o| o + tile < len).collect();
    out.push(len - tile);
    out
}

/// The blending weight along one axis of a tile of `len`, for a pixel `i` from its start: rises
/// linearly over `ramp` pixels from each edge that borders another tile.
fn ramp(i: usize, len: usize, ramp: usize, open_start: bool, open_end: bool) -> f32 {
    let mut w = 1.0f32;
    if ramp > 0 {
        let r = ramp as f32 + 1.0;
        if open_start {
            w = w.min((i as f32 + 1.0) / r);
        }
        if open_end {
            w = w.min((len - i) as f32 / r);
        }
    }
    w
}

/// Runs `model` over a channel-major image (`[C, H, W]`, values as in training) and returns the
/// sigmoid probabilities of every output channel.
pub fn predict_chw(
    model: &UNet,
    image: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    cfg: &PredictConfig,
    device: &Device,
) -> Prediction {
    cellops_kernels::on_pool(|| {
        augmented(image, channels, height, width, cfg, |input, n, th, tw| {
            let x = Tensor::<1>::from_floats(input, device).reshape([n, channels, th, tw]);
            let probs = burn::tensor::activation::sigmoid(model.forward(x));
            let [_, oc, _, _] = probs.dims();
            (probs.into_data().try_to_vec::<f32>().unwrap_or_default(), oc)
        })
    })
}

/// [`tiled`] once per test-time transform of `cfg.tta`, each result transformed back; the mean.
fn augmented(
    image: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    cfg: &PredictConfig,
    mut run: impl FnMut(&[f32], usize, usize, usize) -> (Vec<f32>, usize),
) -> Prediction {
    let transforms = cfg.tta.transforms();
    let mut mean: Option<Prediction> = None;
    for &t in transforms {
        let (input, h, w) = transform(image, channels, height, width, t);
        let p = tiled(&input, channels, h, w, cfg, &mut run);
        let back = untransform(&p.probabilities, p.channels, h, w, t);
        match &mut mean {
            None => {
                mean = Some(Prediction {
                    probabilities: back,
                    width,
                    height,
                    ..p
                })
            }
            Some(m) => m.probabilities.iter_mut().zip(&back).for_each(|(a, b)| *a += b),
        }
    }
    let mut m = mean.unwrap_or(Prediction {
        width,
        height,
        channels: 0,
        probabilities: Vec::new(),
        scale: 1.0,
    });
    let k = transforms.len() as f32;
    if k > 1.0 {
        m.probabilities.iter_mut().for_each(|v| *v /= k);
    }
    m
}

/// Cuts the image into tiles, runs `run` on batches of them (`[n, C, th, tw]` in, `[n, C_out,
/// th, tw]` and `C_out` out) and blends the results into one map.
fn tiled(
    image: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    cfg: &PredictConfig,
    mut run: impl FnMut(&[f32], usize, usize, usize) -> (Vec<f32>, usize),
) -> Prediction {
    let (th, tw) = (cfg.tile.max(1).min(height), cfg.tile.max(1).min(width));
    let (ys, xs) = (origins(height, th, cfg.overlap), origins(width, tw, cfg.overlap));
    let tiles: Vec<(usize, usize)> = ys.iter().flat_map(|&y| xs.iter().map(move |&x| (y, x))).collect();
    let plane = height * width;
    let mut out_channels = 0;
    let mut sum: Vec<f32> = Vec::new();
    let mut weight = vec![0f32; plane];
    let ramp_len = cfg.overlap.min(th.min(tw) / 2);
    for chunk in tiles.chunks(cfg.batch.max(1)) {
        let input = crop_tiles(image, channels, height, width, chunk, th, tw);
        let (values, oc) = run(&input, chunk.len(), th, tw);
        if out_channels == 0 {
            out_channels = oc;
            sum = vec![0f32; oc * plane];
        }
        for (k, &(y0, x0)) in chunk.iter().enumerate() {
            for ty in 0..th {
                let wy = ramp(ty, th, ramp_len, y0 > 0, y0 + th < height);
                for tx in 0..tw {
                    let wx = ramp(tx, tw, ramp_len, x0 > 0, x0 + tw < width);
                    let w = wy * wx;
                    let dst = (y0 + ty) * width + x0 + tx;
                    weight[dst] += w;
                    for c in 0..oc {
                        sum[c * plane + dst] += w * values[((k * oc + c) * th + ty) * tw + tx];
                    }
                }
            }
        }
    }
    for c in 0..out_channels {
        for (v, w) in sum[c * plane..(c + 1) * plane].iter_mut().zip(&weight) {
            *v /= *w;
        }
    }
    Prediction {
        width,
        height,
        channels: out_channels,
        probabilities: sum,
        scale: 1.0,
    }
}

/// The `th × tw` tiles at `origins` of a channel-major image, one after another (`[n, C, th, tw]`).
fn crop_tiles(
    image: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    origins: &[(usize, usize)],
    th: usize,
    tw: usize,
) -> Vec<f32> {
    let plane = height * width;
    let mut input = Vec::with_capacity(origins.len() * channels * th * tw);
    for &(y0, x0) in origins {
        for c in 0..channels {
            for y in y0..y0 + th {
                let row = c * plane + y * width + x0;
                input.extend_from_slice(&image[row..row + tw]);
            }
        }
    }
    input
}

/// Bilinear resampling of a channel-major float image (pixel centres aligned, as OpenCV's
/// `INTER_LINEAR`).
fn resize_planes(data: &[f32], channels: usize, h: usize, w: usize, nh: usize, nw: usize) -> Vec<f32> {
    let axis = |n_out: usize, n_in: usize| -> Vec<(usize, usize, f32)> {
        (0..n_out)
            .map(|o| {
                let s = ((o as f32 + 0.5) * n_in as f32 / n_out as f32 - 0.5).max(0.0);
                let i0 = (s.floor() as usize).min(n_in - 1);
                let i1 = (i0 + 1).min(n_in - 1);
                (i0, i1, s - i0 as f32)
            })
            .collect()
    };
    let (ay, ax) = (axis(nh, h), axis(nw, w));
    let mut out = Vec::with_capacity(channels * nh * nw);
    for c in 0..channels {
        let p = &data[c * h * w..(c + 1) * h * w];
        for &(y0, y1, fy) in &ay {
            for &(x0, x1, fx) in &ax {
                let top = p[y0 * w + x0] * (1.0 - fx) + p[y0 * w + x1] * fx;
                let bottom = p[y1 * w + x0] * (1.0 - fx) + p[y1 * w + x1] * fx;
                out.push(top * (1.0 - fy) + bottom * fy);
            }
        }
    }
    out
}

/// Why an image could not be segmented.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// The bundle could not be loaded.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The bundle's preprocessing failed on the image.
    #[error("preprocessing failed: {0}")]
    Preprocess(String),
    /// The preprocessed image has another number of channels than the model takes.
    #[error(
        "the image has {found} channels after preprocessing but the model takes {expected}; \
         the bundle's preprocessing (colour) does not fit this image"
    )]
    Channels {
        /// Channels of the preprocessed image.
        found: usize,
        /// Channels the model takes.
        expected: usize,
    },
    /// A prepared input's shape does not fit the model or its values.
    #[error("{0}")]
    Shape(String),
}

/// A loaded bundle, ready to segment images. Clones share the weights' memory.
#[derive(Debug, Clone)]
pub struct Predictor {
    model: UNet,
    meta: BundleMeta,
    device: Device,
    preprocessing: Option<cellops_dataset::BuildConfig>,
    /// Tiling.
    pub config: PredictConfig,
}

impl Predictor {
    /// Loads the bundle in `dir` onto `device`.
    pub fn load(dir: &Path, device: &Device, config: PredictConfig) -> Result<Self, PredictError> {
        let (model, meta) = bundle::load(dir, device)?;
        Ok(Self::from_parts(model, meta, device, config))
    }

    /// A predictor of a model already in memory with its bundle's metadata.
    pub fn from_parts(model: UNet, meta: BundleMeta, device: &Device, config: PredictConfig) -> Self {
        Self {
            model,
            meta,
            device: device.clone(),
            preprocessing: None,
            config,
        }
    }

    /// The bundle's metadata.
    pub fn meta(&self) -> &BundleMeta {
        &self.meta
    }

    /// Uses `preprocessing` instead of the bundle's (for images prepared differently from the
    /// training set; the model still needs its number of input channels).
    pub fn with_preprocessing(mut self, preprocessing: cellops_dataset::BuildConfig) -> Self {
        self.preprocessing = Some(preprocessing);
        self
    }

    /// The preprocessing applied to images: the bundle's, unless replaced.
    pub fn preprocessing(&self) -> &cellops_dataset::BuildConfig {
        self.preprocessing.as_ref().unwrap_or(&self.meta.preprocessing)
    }

    /// The model's probabilities for an input already prepared as it expects — `[C, H, W]`
    /// floats, no preprocessing, no rescaling: what the Open Inference Protocol's `infer` takes.
    pub fn probabilities(
        &self,
        chw: &[f32],
        [channels, height, width]: [usize; 3],
    ) -> Result<Prediction, PredictError> {
        let expected = self.meta.input_channels;
        if channels != expected {
            return Err(PredictError::Shape(format!(
                "the model takes {expected} input channel(s), not {channels}"
            )));
        }
        let size = channels.checked_mul(height).and_then(|n| n.checked_mul(width));
        if height == 0 || width == 0 || size != Some(chw.len()) {
            return Err(PredictError::Shape(format!(
                "{} values do not fill a {channels}×{height}×{width} input",
                chw.len()
            )));
        }
        Ok(predict_chw(
            &self.model,
            chw,
            channels,
            height,
            width,
            &self.config,
            &self.device,
        ))
    }

    /// Segments an image as it comes from disk: applies the bundle's preprocessing, predicts, and
    /// returns probabilities at the image's own size.
    ///
    /// A bundle trained at a nucleus scale needs the image's nucleus size, which an image without
    /// a mask does not tell, so the model finds it with its own segmentation, as Cellpose refines
    /// its size estimate ([`Self::estimate_scale`]). An image where nothing is found keeps its
    /// size.
    pub fn predict(&self, image: &Raster) -> Result<Prediction, PredictError> {
        match self.preprocessing().scale.map(|s| s.diameter_px) {
            Some(target) => Ok(self.estimate_scale(image, target)?.prediction),
            None => self.predict_at(image, None),
        }
    }

    /// The factor that brings the nuclei of `image` to the bundle's `target` diameter, and the
    /// prediction at it.
    ///
    /// The model runs at the image's own size; the median diameter of the nuclei it finds gives
    /// the next factor, and it runs again until the factor settles (within 15 %), at most
    /// [`SCALE_PASSES`] times more. A model sees nuclei a little nearer the size it was trained
    /// at than they are (their measured size moves by about [`SCALE_GAIN`] of the true change),
    /// so each step is divided by that gain, not taken as it is. A model that sees nuclei far too
    /// large cuts each of them into pieces of about its own size, which looks settled: a
    /// last pass at half the factor tells them apart — real nuclei shrink with the image,
    /// pieces of a larger one do not — and the estimate starts again from there.
    pub fn estimate_scale(&self, image: &Raster, target: f64) -> Result<ScaleEstimate, PredictError> {
        let start = self.start_factor(image, target)?;
        let first = self.settle(image, target, self.predict_at(image, Some(start))?, start)?;
        let Some(diameter) = first.model_diameter else {
            return Ok(first);
        };
        let half = (first.factor / 2.0).max(1.0 / scale::MAX_FACTOR);
        if half >= first.factor {
            return Ok(first);
        }
        let probe = self.predict_at(image, Some(half))?;
        match nucleus_diameter(&probe, target / (SPECK * half)) {
            // Both in model pixels: the nuclei at half the factor against those at the factor.
            Some(d) if fragmented(d * half, diameter) => Ok(ScaleEstimate {
                start,
                ..self.settle(image, target, probe, half)?
            }),
            _ => Ok(first),
        }
    }

    /// Where the size estimate for a `target` diameter starts: the bundle's size model's factor
    /// for the image's style, else as the configuration's [`SizeStart`] says (the image's own
    /// size for a style the size model cannot read).
    pub fn start_factor(&self, image: &Raster, target: f64) -> Result<f64, PredictError> {
        let Some(size) = &self.meta.size_model else {
            return match self.config.start {
                SizeStart::Image => Ok(1.0),
                SizeStart::Threshold => Ok(threshold_factor(image, target)?.unwrap_or(1.0)),
            };
        };
        let style = self.size_style(image, 1.0)?;
        Ok(size
            .log_factor(&style)
            .map_or(1.0, |l| l.exp().clamp(1.0 / scale::MAX_FACTOR, scale::MAX_FACTOR)))
    }

    /// Refines a factor from `prediction`, made at `factor` (see [`Self::estimate_scale`]).
    fn settle(
        &self,
        image: &Raster,
        target: f64,
        mut prediction: Prediction,
        mut factor: f64,
    ) -> Result<ScaleEstimate, PredictError> {
        let factor_at_start = factor;
        let mut model_diameter = None;
        for _ in 0..SCALE_PASSES {
            // The diameter is in image pixels, whatever the factor the model saw the image at;
            // objects under a quarter of the target at the model's scale are specks.
            let Some(d) = nucleus_diameter(&prediction, target / (SPECK * factor)) else {
                break;
            };
            model_diameter = Some(d * factor);
            let next = next_factor(factor, d * factor, target);
            if (next / factor).ln().abs() < SCALE_TOLERANCE.ln_1p() {
                break;
            }
            factor = next;
            prediction = self.predict_at(image, Some(factor))?;
        }
        Ok(ScaleEstimate {
            start: factor_at_start,
            factor,
            model_diameter,
            prediction,
        })
    }

    /// What the bundle's size model reads: [`Self::style`] of `image` rescaled by `factor` times
    /// each of [`STYLE_SCALES`], one after another — nuclei far larger than the model's own are
    /// out of its encoder's reach at the image's size but not at a quarter of it.
    pub fn size_style(&self, image: &Raster, factor: f64) -> Result<Vec<f32>, PredictError> {
        let mut out = Vec::new();
        for s in STYLE_SCALES {
            out.extend(self.style(image, factor * s)?);
        }
        Ok(out)
    }

    /// `image` with the bundle's preprocessing, rescaled by `factor`: channel-major values and
    /// `[C, H, W]`, the channels checked against the model's.
    fn prepare(
        &self,
        image: &Raster,
        factor: Option<f64>,
        fixed: Option<&Fixed>,
    ) -> Result<(Vec<f32>, [usize; 3]), PredictError> {
        let prepared = cellops_dataset::preprocess_fixed(image, self.preprocessing(), factor, fixed)
            .map_err(|e| PredictError::Preprocess(e.to_string()))?;
        let channels = prepared.channels as usize;
        if channels != self.meta.input_channels {
            return Err(PredictError::Channels {
                found: channels,
                expected: self.meta.input_channels,
            });
        }
        let shape = [channels, prepared.height as usize, prepared.width as usize];
        Ok((image_to_chw(&prepared), shape))
    }

    /// The model's style ([`UNet::style`]) on `image` rescaled by `factor`, averaged over tiles
    /// of the configured size.
    pub fn style(&self, image: &Raster, factor: f64) -> Result<Vec<f32>, PredictError> {
        let (chw, [channels, h, w]) = self.prepare(image, Some(factor), None)?;
        let (th, tw) = (self.config.tile.max(1).min(h), self.config.tile.max(1).min(w));
        let tiles: Vec<(usize, usize)> = origins(h, th, 0)
            .into_iter()
            .flat_map(|y| origins(w, tw, 0).into_iter().map(move |x| (y, x)))
            .collect();
        let mut sum: Vec<f32> = Vec::new();
        for chunk in tiles.chunks(self.config.batch.max(1)) {
            let input = crop_tiles(&chw, channels, h, w, chunk, th, tw);
            let x = Tensor::<1>::from_floats(input.as_slice(), &self.device).reshape([chunk.len(), channels, th, tw]);
            let style: Vec<f32> = self.model.style(x).into_data().try_to_vec::<f32>().unwrap_or_default();
            let width = style.len() / chunk.len();
            if width == 0 {
                return Err(PredictError::Shape("the model gave no style for the image".into()));
            }
            sum.resize(width, 0.0);
            for row in style.chunks(width) {
                sum.iter_mut().zip(row).for_each(|(s, v)| *s += v / tiles.len() as f32);
            }
        }
        Ok(sum)
    }

    /// [`Self::predict`] at a given rescaling factor (for a bundle trained at a nucleus scale;
    /// `None` applies the preprocessing as it is).
    pub fn predict_at(&self, image: &Raster, factor: Option<f64>) -> Result<Prediction, PredictError> {
        self.predict_fixed(image, factor, None)
    }

    /// [`Self::predict_at`] with the normalisation's levels and the polarity fixed beforehand
    /// (a slide's, the same for every tile) instead of taken from `image`.
    pub fn predict_fixed(
        &self,
        image: &Raster,
        factor: Option<f64>,
        fixed: Option<&Fixed>,
    ) -> Result<Prediction, PredictError> {
        let (chw, [channels, h, w]) = self.prepare(image, factor, fixed)?;
        let mut p = predict_chw(&self.model, &chw, channels, h, w, &self.config, &self.device);
        let (oh, ow) = (image.height as usize, image.width as usize);
        if (oh, ow) != (h, w) {
            p.probabilities = resize_planes(&p.probabilities, p.channels, h, w, oh, ow);
            (p.height, p.width) = (oh, ow);
            p.scale = ((h * w) as f64 / (oh * ow) as f64).sqrt();
        }
        Ok(p)
    }
}

/// The sizes, relative to the image's, whose styles [`Predictor::size_style`] joins.
pub const STYLE_SCALES: [f64; 3] = [1.0, 0.5, 0.25];

/// Rescaled passes of [`Predictor::estimate_scale`] at most, after the first.
pub const SCALE_PASSES: usize = 3;
/// A factor within this relative change of the previous one ends the estimate.
const SCALE_TOLERANCE: f64 = 0.15;
/// How much of a change of the true nucleus size the shipped model's measured diameter follows
/// (the slope of log measured on log true size: 0.71 on DSB2018's validation fluorescence, 0.58
/// on its histology; docs/benchmarks.md).
pub const SCALE_GAIN: f64 = 0.7;
/// Nuclei at half the factor at least this share of their size at the factor (in model pixels)
/// were pieces of larger nuclei.
const FRAGMENTS: f64 = 0.8;

/// The factor after `factor`, at which the nuclei measured `model_diameter` (model pixels)
/// against a `target`: the step towards the target divided by [`SCALE_GAIN`], within
/// `1/MAX_FACTOR ..= MAX_FACTOR`.
///
/// ```
/// use cellops_unet::inference::next_factor;
/// // Nuclei already at the target keep the factor; nuclei at half of it get more than double.
/// assert_eq!(next_factor(1.5, 20.0, 20.0), 1.5);
/// assert!(next_factor(1.0, 10.0, 20.0) > 2.0);
/// ```
pub fn next_factor(factor: f64, model_diameter: f64, target: f64) -> f64 {
    if !(model_diameter > 0.0 && target > 0.0) {
        return factor;
    }
    let step = (target / model_diameter).powf(1.0 / SCALE_GAIN);
    (factor * step).clamp(1.0 / scale::MAX_FACTOR, scale::MAX_FACTOR)
}

/// Whether nuclei of `at_half` model pixels at half a factor, against `at_factor` at the factor,
/// were pieces of larger nuclei: real nuclei shrink with the image.
fn fragmented(at_half: f64, at_factor: f64) -> bool {
    at_half >= FRAGMENTS * at_factor
}

/// What [`Predictor::estimate_scale`] found.
#[derive(Debug, Clone)]
pub struct ScaleEstimate {
    /// The factor the estimate started from ([`Predictor::start_factor`]).
    pub start: f64,
    /// The factor the image was rescaled by.
    pub factor: f64,
    /// The median nucleus diameter last measured, in the model's pixels (at the factor it was
    /// measured at), if any nucleus was found.
    pub model_diameter: Option<f64>,
    /// The prediction at `factor`, at the image's own size.
    pub prediction: Prediction,
}

/// Objects narrower than the target diameter over this, at the model's scale, are not nuclei.
const SPECK: f64 = 4.0;

/// The factor that brings the nuclei of a global Otsu threshold of `image` to `target`
/// ([`SizeStart::Threshold`]), within the rescaling's bounds; `None` when it finds none.
pub fn threshold_factor(image: &Raster, target: f64) -> Result<Option<f64>, PredictError> {
    let Some((plane, width)) =
        cellops_dataset::threshold_plane(image, None).map_err(|e| PredictError::Preprocess(e.to_string()))?
    else {
        return Ok(None);
    };
    let t = otsu(&histogram(&plane));
    let mask: Vec<bool> = plane.iter().map(|&v| f64::from(v) > t).collect();
    // Holes filled and nothing split: the distance watershed's fixed depth cuts large or
    // textured nuclei into pieces, which biased the start low (docs/benchmarks.md, step 13).
    let config = InstanceConfig {
        method: Method::None,
        holes: Holes::FillSmallerThan { area_px: mask.len() },
        ..InstanceConfig::default()
    };
    let Ok((labels, _)) = split_mask(&mask, width, &config) else {
        return Ok(None);
    };
    let max = scale::MAX_FACTOR;
    Ok(scale::median_diameter_above(&labels, THRESHOLD_SPECK_PX).map(|d| (target / d).clamp(1.0 / max, max)))
}

/// Objects of a threshold narrower than this (image pixels) are specks, not nuclei.
const THRESHOLD_SPECK_PX: f64 = 4.0;

/// The median diameter (image pixels) of the nuclei at least `min_diameter` wide in a
/// prediction, split by the default distance watershed so that clumps do not count as one large
/// nucleus: what [`Predictor::estimate_scale`] measures.
pub fn nucleus_diameter(p: &Prediction, min_diameter: f64) -> Option<f64> {
    let (labels, _) = segment(p.channel(0), None, p.width, &InstanceConfig::default()).ok()?;
    scale::median_diameter_above(&labels, min_diameter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Norm, UNetConfig};

    #[test]
    fn tiles_cover_the_axis_and_end_flush() {
        let _rng = crate::flex_rng_lock();
        assert_eq!(origins(100, 256, 32), [0]);
        assert_eq!(origins(256, 256, 32), [0]);
        assert_eq!(origins(500, 256, 32), [0, 224, 244]);
        for len in 1..300 {
            let o = origins(len, 64, 16);
            let tile = len.min(64);
            assert_eq!(o.last().map(|l| l + tile), Some(len));
            assert!(o.windows(2).all(|w| w[1] > w[0] && w[1] <= w[0] + tile), "{len}: {o:?}");
        }
    }

    #[test]
    fn the_threshold_start_measures_the_nuclei_of_a_dim_16_bit_image() {
        // A dim 16-bit image (camera floor 120, nuclei at 1,100): nine discs 24 px wide, six of
        // them with a hole 12 px wide (kept, the median would be 21 px), two touching (one
        // object: the median is still a single disc's), and three specks.
        let (w, h) = (200u32, 200u32);
        let disc = |x: f64, y: f64, cx: f64, cy: f64, r: f64| (x - cx).powi(2) + (y - cy).powi(2) <= r * r;
        let centres: Vec<(f64, f64)> = (0..3)
            .flat_map(|i| (0..3).map(move |j| (35.0 + 60.0 * f64::from(i), 35.0 + 60.0 * f64::from(j))))
            .chain([(160.0, 183.0), (183.5, 183.0)])
            .collect();
        let samples: Vec<u16> = (0..w * h)
            .map(|i| {
                let (x, y) = (f64::from(i % w), f64::from(i / w));
                let inside = centres.iter().any(|&(cx, cy)| disc(x, y, cx, cy, 12.0));
                let hole = centres[..6].iter().any(|&(cx, cy)| disc(x, y, cx, cy, 6.0));
                let speck = [(10.0, 190.0), (190.0, 10.0), (100.0, 5.0)]
                    .iter()
                    .any(|&(cx, cy)| disc(x, y, cx, cy, 1.0));
                if (inside && !hole) || speck {
                    1100
                } else {
                    120 + (i % 7) as u16
                }
            })
            .collect();
        let image = Raster::from_u16(w, h, 1, samples);
        let factor = threshold_factor(&image, 20.0)
            .expect("preprocess")
            .expect("nuclei found");
        let diameter = 20.0 / factor;
        assert!((diameter - 24.0).abs() < 1.0, "median diameter {diameter}");
        // Nothing above the floor: nothing to measure, and the estimate starts at the image's size.
        let flat = Raster::from_u16(w, h, 1, vec![120; (w * h) as usize]);
        assert_eq!(threshold_factor(&flat, 20.0).expect("preprocess"), None);
    }

    #[test]
    fn tiled_prediction_stays_close_to_the_whole_image_prediction() {
        let _rng = crate::flex_rng_lock();
        let device = Device::flex();
        device.seed(3);
        let model = UNetConfig::new()
            .with_depth(2)
            .with_base_channels(4)
            .with_norm(Norm::None)
            .init(&device);
        // Without normalisation every operation is local, so tiles agree with the whole image
        // except near their borders, where the overlap's blending takes over.
        let (h, w) = (150, 170);
        let image: Vec<f32> = (0..h * w).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
        let whole = predict_chw(&model, &image, 1, h, w, &PredictConfig::new().with_tile(512), &device);
        assert_eq!((whole.channels, whole.probabilities.len()), (2, 2 * h * w));
        let cut = predict_chw(
            &model,
            &image,
            1,
            h,
            w,
            &PredictConfig::new().with_tile(96).with_overlap(48).with_batch(3),
            &device,
        );
        assert_eq!((cut.width, cut.height, cut.channels), (w, h, 2));
        // Probabilities stay probabilities, and blending is a convex combination of tile outputs
        // that each agree with the whole image far from tile borders: the maps stay close.
        assert!(cut.probabilities.iter().all(|p| (0.0..=1.0).contains(p)));
        // Tiles see less context at their borders; the overlap's blending keeps that small.
        let worst = whole
            .probabilities
            .iter()
            .zip(&cut.probabilities)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 0.05, "worst difference {worst}");
        // One tile covering everything is the whole-image prediction exactly.
        let one = predict_chw(&model, &image, 1, h, w, &PredictConfig::new().with_tile(170), &device);
        assert_eq!(one.probabilities, whole.probabilities);
    }

    #[test]
    fn blending_puts_every_tile_back_where_it_came_from() {
        let _rng = crate::flex_rng_lock();
        // With a model that returns its input, any tiling must give the image back.
        let (h, w) = (37, 53);
        let image: Vec<f32> = (0..2 * h * w).map(|i| (i % 97) as f32).collect();
        for (tile, overlap, batch) in [(16, 4, 1), (16, 0, 3), (20, 8, 5), (64, 8, 2), (7, 6, 4)] {
            let cfg = PredictConfig::new()
                .with_tile(tile)
                .with_overlap(overlap)
                .with_batch(batch);
            let p = tiled(&image, 2, h, w, &cfg, |input, _, _, _| (input.to_vec(), 2));
            let worst = p
                .probabilities
                .iter()
                .zip(&image)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-3, "tile {tile} overlap {overlap}: off by {worst}");
        }
    }

    #[test]
    fn test_time_transforms_are_undone() {
        let _rng = crate::flex_rng_lock();
        let (c, h, w) = (2, 3, 5);
        let planes: Vec<f32> = (0..c * h * w).map(|v| v as f32).collect();
        for t in 0..8u8 {
            let (out, oh, ow) = transform(&planes, c, h, w, t);
            assert_eq!(oh * ow, h * w);
            assert_eq!((oh, ow) == (w, h), t & 4 != 0);
            assert_eq!(untransform(&out, c, oh, ow, t), planes, "transform {t}");
        }
        // A model that returns its input gives the image back under any augmentation.
        for tta in [Tta::Flips, Tta::Dihedral] {
            let cfg = PredictConfig::new().with_tile(4).with_overlap(2).with_tta(tta);
            let p = augmented(&planes, c, h, w, &cfg, |input, _, _, _| (input.to_vec(), c));
            let worst = p
                .probabilities
                .iter()
                .zip(&planes)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "{tta:?}: {worst}");
        }
    }

    #[test]
    fn a_model_that_follows_the_gain_is_settled_in_one_step() {
        // Measured diameters that move by SCALE_GAIN of the true change, around a true factor.
        for true_factor in [0.3, 0.7, 1.0, 1.8, 3.5] {
            let measured = |f: f64| 20.0 * (f / true_factor).powf(SCALE_GAIN);
            for start in [0.25, 1.0, 2.0] {
                let next = next_factor(start, measured(start), 20.0);
                assert!(
                    (next / true_factor - 1.0).abs() < 1e-9,
                    "{start} → {next}, not {true_factor}"
                );
            }
        }
        assert_eq!(next_factor(1.0, 1.0, 20.0), scale::MAX_FACTOR);
        assert_eq!(next_factor(1.0, 400.0, 20.0), 1.0 / scale::MAX_FACTOR);
        assert_eq!(next_factor(0.5, 0.0, 20.0), 0.5);
    }

    #[test]
    fn pieces_of_large_nuclei_do_not_shrink_with_the_image() {
        // Real nuclei at half the factor: the gain law's size.
        assert!(!fragmented(20.0 * 0.5f64.powf(SCALE_GAIN), 20.0));
        // A model cutting large nuclei into pieces of its own size finds them at half the factor too.
        assert!(fragmented(21.0, 20.0));
        assert!(fragmented(18.0, 20.0));
    }

    #[test]
    fn resampling_keeps_constants_and_sizes() {
        let _rng = crate::flex_rng_lock();
        let data = vec![0.25f32; 2 * 3 * 4];
        let out = resize_planes(&data, 2, 3, 4, 7, 5);
        assert_eq!(out.len(), 2 * 7 * 5);
        assert!(out.iter().all(|v| (v - 0.25).abs() < 1e-6));
    }

    #[test]
    fn predictor_applies_the_bundle_preprocessing_and_answers_at_the_image_size() {
        let _rng = crate::flex_rng_lock();
        use crate::bundle::{BundleInfo, save};
        use crate::config::TrainConfig;
        use cellops_dataset::BuildConfig;
        use cellops_dataset::config::{ColourMode, Resize};

        let device = Device::flex();
        let training = TrainConfig::new().with_model(
            UNetConfig::new()
                .with_depth(2)
                .with_base_channels(4)
                .with_norm(Norm::Group),
        );
        let preprocessing = BuildConfig {
            colour: ColourMode::Grey,
            resize: Some(Resize {
                width: Some(32),
                height: Some(32),
                ..Default::default()
            }),
            ..BuildConfig::default()
        };
        let info = BundleInfo::new(training.clone(), preprocessing);
        let dir = tempfile::tempdir().expect("tmp");
        save(&training.model.init(&device), &info, dir.path(), &[]).expect("save");
        let predictor = Predictor::load(dir.path(), &device, PredictConfig::new()).expect("load");
        // An RGB image of another size: made grey, resized to 32x32, predicted, resized back.
        let rgb = Raster::from_u8(50, 40, 3, (0..50 * 40 * 3).map(|i| (i % 251) as u8).collect());
        let p = predictor.predict(&rgb).expect("predict");
        assert_eq!((p.width, p.height, p.channels), (50, 40, 2));
        assert_eq!(p.mask(0.5).len(), 50 * 40);
        assert!(p.probabilities.iter().all(|v| (0.0..=1.0).contains(v)));

        // A bundle whose model takes 3 channels cannot take the grey image its preprocessing makes.
        let rgb_training = training.clone().with_model(training.model.clone().with_in_channels(3));
        let info3 = BundleInfo {
            training: rgb_training.clone(),
            ..info
        };
        let dir3 = tempfile::tempdir().expect("tmp");
        save(&rgb_training.model.init(&device), &info3, dir3.path(), &[]).expect("save");
        let p3 = Predictor::load(dir3.path(), &device, PredictConfig::new()).expect("load");
        assert!(matches!(
            p3.predict(&rgb),
            Err(PredictError::Channels { found: 1, expected: 3 })
        ));
    }
}
