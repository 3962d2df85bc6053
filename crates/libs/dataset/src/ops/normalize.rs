//! Percentile intensity normalisation to 8 bits.

use crate::raster::{Raster, Sample, Samples};

/// The value at percentile `p` (0–100) of a histogram of `n` samples, interpolated linearly
/// between order statistics as NumPy's default `percentile` does.
pub(crate) fn percentile_from_hist(hist: &[u64], n: u64, p: f64) -> f64 {
    let rank = (p / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
    let lo_rank = rank.floor() as u64;
    let frac = rank - lo_rank as f64;
    let value_at = |k: u64| {
        let mut seen = 0;
        for (v, &c) in hist.iter().enumerate() {
            seen += c;
            if seen > k {
                return v as f64;
            }
        }
        (hist.len() - 1) as f64
    };
    let lo = value_at(lo_rank);
    if frac == 0.0 {
        lo
    } else {
        lo + frac * (value_at(lo_rank + 1) - lo)
    }
}

fn levels_of<S: Sample>(data: &[S], low: f64, high: f64) -> Option<(f64, f64)> {
    let mut hist = vec![0u64; S::BINS];
    for &v in data {
        hist[v.index()] += 1;
    }
    let n = data.len() as u64;
    (n > 0).then(|| {
        (
            percentile_from_hist(&hist, n, low),
            percentile_from_hist(&hist, n, high),
        )
    })
}

fn map_samples<S: Sample>(data: &[S], (lo, hi): (f64, f64)) -> Vec<u8> {
    if hi <= lo {
        return vec![0; data.len()];
    }
    let scale = 255.0 / (hi - lo);
    // One table lookup per sample.
    let lut: Vec<u8> = (0..S::BINS)
        .map(|v| ((v as f64 - lo) * scale).round().clamp(0.0, 255.0) as u8)
        .collect();
    data.iter().map(|v| lut[v.index()]).collect()
}

/// The values at the `low` and `high` percentiles of all samples of `img` (channels together),
/// at its own bit depth: what [`percentile`] maps to 0 and 255. `None` for an empty image.
///
/// ```
/// use cellops_dataset::{Raster, ops::normalize::percentile_levels};
/// let img = Raster::from_u8(4, 1, 1, vec![10, 20, 30, 40]);
/// assert_eq!(percentile_levels(&img, 0.0, 100.0), Some((10.0, 40.0)));
/// ```
pub fn percentile_levels(img: &Raster, low: f64, high: f64) -> Option<(f64, f64)> {
    match &img.samples {
        Samples::U8(d) => levels_of(d, low, high),
        Samples::U16(d) => levels_of(d, low, high),
    }
}

/// Maps `lo..hi` linearly onto 0..255, clipping outside it (every value 0 when `hi <= lo`); the
/// result is 8-bit. [`percentile`] with levels fixed beforehand — for a slide, once for all its
/// tiles.
///
/// ```
/// use cellops_dataset::{Raster, Samples, ops::normalize::stretch};
/// let img = Raster::from_u8(4, 1, 1, vec![0, 10, 20, 30]);
/// assert_eq!(stretch(&img, (10.0, 20.0)).samples, Samples::U8(vec![0, 0, 255, 255]));
/// ```
pub fn stretch(img: &Raster, levels: (f64, f64)) -> Raster {
    let data = match &img.samples {
        Samples::U8(d) => map_samples(d, levels),
        Samples::U16(d) => map_samples(d, levels),
    };
    Raster::from_u8(img.width, img.height, img.channels, data)
}

/// Maps the `low`..`high` percentile range of all samples (channels together, so colour balance is
/// kept) linearly onto 0..255, clipping outside it; the result is 8-bit.
///
/// ```
/// use cellops_dataset::{Raster, Samples, ops::normalize::percentile};
/// let img = Raster::from_u16(4, 1, 1, vec![1000, 2000, 3000, 4000]);
/// assert_eq!(percentile(&img, 0.0, 100.0).samples, Samples::U8(vec![0, 85, 170, 255]));
/// ```
pub fn percentile(img: &Raster, low: f64, high: f64) -> Raster {
    match percentile_levels(img, low, high) {
        Some(levels) => stretch(img, levels),
        None => Raster::from_u8(img.width, img.height, img.channels, Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16-bit camera image: a floor at 120 and nuclei a few hundred grey levels above it, in the
    /// lowest 2 % of the range. Divided by 65535 it would be nearly black; percentiles at its own
    /// bit depth stretch it over all of 0..255.
    #[test]
    fn a_sixteen_bit_image_in_low_grey_levels_is_stretched_not_squeezed() {
        let mut data = vec![120u16; 1000];
        for (i, v) in data.iter_mut().enumerate().skip(700) {
            *v = 300 + (i as u16 - 700) * 3; // 300..1197
        }
        let img = Raster::from_u16(100, 10, 1, data);
        let Samples::U8(out) = percentile(&img, 1.0, 99.8).samples else {
            panic!("8-bit output")
        };
        assert_eq!(out[0], 0, "the floor maps to black");
        assert_eq!(*out.iter().max().expect("max"), 255);
        // Nuclei keep their contrast: their values spread over most of the 8-bit range.
        let nuclei: std::collections::BTreeSet<u8> = out[700..].iter().copied().collect();
        assert!(nuclei.len() > 200, "{} grey levels", nuclei.len());
        assert!(
            out[700] > 30,
            "the dimmest nucleus stands out from the floor: {}",
            out[700]
        );
    }
}
