//! What the Monitor stage watches in an input image ([`ImageFeatures`]), computed the same way
//! for a model's reference (`build` records it for every source image in the manifest) and for
//! every image the service measures: brightness and contrast on the grey plane (mean, standard
//! deviation, 1st and 99th percentiles, all as a fraction of the bit depth's full scale, so 8- and
//! 16-bit images compare), the saturated and black shares, focus (variance of the Laplacian),
//! and the size. No pixels are kept.
//!
//! The grey plane is the image itself (one channel), the luminance of RGB(A) (OpenCV's
//! weights, as [`grey`]), or the mean of other channel counts.

pub use cellops_formats::dataset::{HISTOGRAM_BINS, ImageFeatures};

/// The definition of the features `build` records: part of every item's key, so that a rebuild
/// after it changes records the new features instead of reusing the old.
pub const FEATURES_VERSION: &str = "features/2: grey, colour, stain ODs, 16-bin histogram";

use crate::ops::colour::grey;
use crate::ops::normalize::percentile_from_hist;
use crate::raster::Sample;
use crate::{Raster, Samples};

/// The features of `image`.
///
/// ```
/// use cellops_dataset::ops::features::image_features;
/// let image = cellops_dataset::Raster::from_u8(2, 2, 1, vec![0, 255, 255, 255]);
/// let f = image_features(&image);
/// assert_eq!((f.mean, f.saturated, f.black), (0.75, 0.75, 0.25));
/// ```
pub fn image_features(image: &Raster) -> ImageFeatures {
    let (w, h, c) = (image.width as usize, image.height as usize, image.channels as usize);
    let (grey_features, colour) = match &image.samples {
        Samples::U8(d) => (features(&grey_plane(d, c), 255, w, h), colour(d, c, 255)),
        Samples::U16(d) => (features(&grey_plane(d, c), 65535, w, h), colour(d, c, 65535)),
    };
    match colour {
        Some(k) => ImageFeatures {
            red: Some(k.means[0]),
            green: Some(k.means[1]),
            blue: Some(k.means[2]),
            haematoxylin_od: Some(k.haematoxylin),
            dab_od: Some(k.dab),
            ..grey_features
        },
        None => grey_features,
    }
}

/// What the colour channels of an RGB(A) image say.
struct Colour {
    /// Per-channel means, fractions of full scale.
    means: [f64; 3],
    /// Mean haematoxylin optical density.
    haematoxylin: f64,
    /// Mean DAB optical density.
    dab: f64,
}

/// Channel means and mean stain optical densities of an RGB(A) image (`None` for other channel
/// counts): each channel's OD `−log10(max(v / full, 10⁻⁶))` from a table of every level, the stain
/// amounts from Ruifrok & Johnston's H-DAB basis (negatives clipped, as the measurements do).
fn colour<S: Sample>(data: &[S], channels: usize, max: u32) -> Option<Colour> {
    if !matches!(channels, 3 | 4) || data.is_empty() {
        return None;
    }
    let (_, inverse) = cellops_formats::params::StainVectors::default().basis()?;
    let full = f64::from(max);
    let od: Vec<f64> = (0..=max).map(|v| -(f64::from(v) / full).max(1e-6).log10()).collect();
    let (mut sums, mut h, mut d) = ([0u64; 3], 0.0f64, 0.0f64);
    for px in data.chunks_exact(channels) {
        let v: [u32; 3] = [px[0].into(), px[1].into(), px[2].into()];
        for (s, x) in sums.iter_mut().zip(v) {
            *s += u64::from(x);
        }
        let a = cellops_formats::params::stain_amounts(&inverse, v.map(|x| od[x.min(max) as usize]));
        h += a[0].max(0.0);
        d += a[1].max(0.0);
    }
    let n = (data.len() / channels) as f64;
    Some(Colour {
        means: sums.map(|s| s as f64 / n / full),
        haematoxylin: h / n,
        dab: d / n,
    })
}

/// One grey value per pixel, as `u32`.
fn grey_plane<S: Sample>(data: &[S], channels: usize) -> Vec<u32> {
    match channels {
        0 | 1 => data.iter().map(|&v| v.into()).collect(),
        3 | 4 => data
            .chunks_exact(channels)
            .map(|p| grey(p[0], p[1], p[2]).into())
            .collect(),
        c => data
            .chunks_exact(c)
            .map(|p| p.iter().map(|&v| Into::<u32>::into(v)).sum::<u32>() / c as u32)
            .collect(),
    }
}

fn features(plane: &[u32], max: u32, width: usize, height: usize) -> ImageFeatures {
    if plane.is_empty() {
        return ImageFeatures {
            width: width as f64,
            height: height as f64,
            ..ImageFeatures::default()
        };
    }
    let n = plane.len() as u64;
    let full = f64::from(max);
    let mut histogram = vec![0u64; max as usize + 1];
    for &v in plane {
        histogram[v.min(max) as usize] += 1;
    }
    // Mean and variance from the histogram: one pass over the pixels in all.
    let levels = || histogram.iter().enumerate().filter(|(_, k)| **k > 0);
    let mean = levels().map(|(v, &k)| v as f64 * k as f64).sum::<f64>() / n as f64;
    let var = levels()
        .map(|(v, &k)| (v as f64 - mean).powi(2) * k as f64)
        .sum::<f64>()
        / n as f64;
    ImageFeatures {
        mean: mean / full,
        std: var.sqrt() / full,
        p1: percentile_from_hist(&histogram, n, 1.0) / full,
        p99: percentile_from_hist(&histogram, n, 99.0) / full,
        saturated: histogram[max as usize] as f64 / n as f64,
        black: histogram[0] as f64 / n as f64,
        focus: laplacian_variance(plane, width, height) / (full * full),
        width: width as f64,
        height: height as f64,
        histogram: Some(coarse(&histogram, n)),
        ..ImageFeatures::default()
    }
}

/// The histogram of every level folded into [`HISTOGRAM_BINS`] equal bins of the full scale, as
/// shares of the `n` pixels.
fn coarse(levels: &[u64], n: u64) -> [f64; HISTOGRAM_BINS] {
    let mut bins = [0.0; HISTOGRAM_BINS];
    let width = levels.len().div_ceil(HISTOGRAM_BINS).max(1);
    for (v, &k) in levels.iter().enumerate() {
        bins[(v / width).min(HISTOGRAM_BINS - 1)] += k as f64;
    }
    bins.map(|b| b / n.max(1) as f64)
}

/// The variance of `4·p − (up + down + left + right)` over the interior pixels (0 when there
/// are none).
fn laplacian_variance(plane: &[u32], width: usize, height: usize) -> f64 {
    if width < 3 || height < 3 || plane.len() < width * height {
        return 0.0;
    }
    let at = |x: usize, y: usize| f64::from(plane[y * width + x]);
    // Welford's running mean and variance: no buffer of the whole response.
    let (mut n, mut mean, mut m2) = (0.0f64, 0.0f64, 0.0f64);
    for y in 1..height - 1 {
        for x in 1..width - 1 {
            let v = 4.0 * at(x, y) - at(x - 1, y) - at(x + 1, y) - at(x, y - 1) - at(x, y + 1);
            n += 1.0;
            let delta = v - mean;
            mean += delta / n;
            m2 += delta * (v - mean);
        }
    }
    m2 / n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_images_get_channel_means_and_stain_densities() {
        // A pixel of pure haematoxylin (OD 0.5 along its unit vector) and a white one.
        let h = [0.651f64, 0.701, 0.290];
        let norm = h.iter().map(|v| v * v).sum::<f64>().sqrt();
        let stained: Vec<u8> = h
            .iter()
            .map(|v| (255.0 * 10f64.powf(-0.5 * v / norm)).round() as u8)
            .collect();
        let image = Raster::from_u8(2, 1, 3, [stained.clone(), vec![255; 3]].concat());
        let f = image_features(&image);
        assert!((f.haematoxylin_od.expect("colour") - 0.25).abs() < 0.01, "{f:?}");
        assert!(f.dab_od.expect("colour") < 0.01, "{f:?}");
        let red = (f64::from(stained[0]) + 255.0) / 2.0 / 255.0;
        assert!((f.red.expect("colour") - red).abs() < 1e-12);
        let shares = f.histogram.expect("histogram");
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-12 && shares[HISTOGRAM_BINS - 1] == 0.5);
        // Grey images have none of the colour features.
        let grey = image_features(&Raster::from_u8(2, 1, 1, vec![0, 255]));
        assert_eq!((grey.red, grey.haematoxylin_od), (None, None));
    }

    #[test]
    fn percentiles_interpolate_as_numpy() {
        // numpy.percentile([0, 10, 20, 30], [1, 99]) = [0.3, 29.7]
        let mut h = vec![0u64; 31];
        for v in [0, 10, 20, 30] {
            h[v] += 1;
        }
        assert!((percentile_from_hist(&h, 4, 1.0) - 0.3).abs() < 1e-12);
        assert!((percentile_from_hist(&h, 4, 99.0) - 29.7).abs() < 1e-12);
    }

    #[test]
    fn the_same_picture_at_8_and_16_bits_has_the_same_features() {
        let values: Vec<u8> = (0..64u32).map(|i| ((i * 37) % 256) as u8).collect();
        let a = image_features(&Raster::from_u8(8, 8, 1, values.clone()));
        let wide: Vec<u16> = values.iter().map(|&v| u16::from(v) * 257).collect();
        let b = image_features(&Raster {
            width: 8,
            height: 8,
            channels: 1,
            samples: Samples::U16(wide),
        });
        for (name, (x, y)) in ImageFeatures::NAMES.iter().zip(a.values().into_iter().zip(b.values())) {
            assert_eq!(x.is_some(), y.is_some(), "{name}");
            let (x, y) = (x.unwrap_or_default(), y.unwrap_or_default());
            assert!((x - y).abs() < 1e-9, "{name}: {x} vs {y}");
        }
        assert_eq!(a.histogram, b.histogram);
    }

    #[test]
    fn blur_lowers_focus_and_a_dim_image_has_lower_percentiles() {
        let sharp: Vec<u8> = (0..256)
            .map(|i| if (i / 16 + i % 16) % 2 == 0 { 200 } else { 20 })
            .collect();
        let blurred: Vec<u8> = vec![110; 256];
        let f = |d: Vec<u8>| image_features(&Raster::from_u8(16, 16, 1, d));
        let (s, b) = (f(sharp.clone()), f(blurred));
        assert!(s.focus > 0.1 && b.focus == 0.0, "{s:?} {b:?}");
        let dim = f(sharp.iter().map(|v| v / 4).collect());
        assert!(dim.p99 < s.p99 / 3.0 && dim.mean < s.mean / 3.0, "{dim:?}");
    }

    #[test]
    fn empty_and_short_rasters_do_not_panic() {
        let empty = image_features(&Raster::from_u8(0, 0, 1, Vec::new()));
        assert_eq!((empty.mean, empty.p99, empty.saturated), (0.0, 0.0, 0.0));
        let short = Raster {
            width: 4,
            height: 4,
            channels: 1,
            samples: Samples::U8(vec![9; 5]),
        };
        assert_eq!(image_features(&short).focus, 0.0);
    }

    #[test]
    fn colour_images_are_seen_through_their_luminance() {
        let red = image_features(&Raster::from_u8(1, 1, 3, vec![255, 0, 0]));
        assert!((red.mean - 76.0 / 255.0).abs() < 1e-12, "{red:?}");
    }
}
