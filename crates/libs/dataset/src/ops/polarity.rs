//! Polarity: nuclei bright on dark, as in fluorescence. Brightfield and stained sections
//! (haematoxylin-stained nuclei, dark on a bright background) are inverted, so one grey model
//! sees every modality the same way round.

use crate::raster::{Raster, Sample, Samples};

pub use cellops_formats::preprocessing::Polarity;

fn percentile<S: Sample>(sorted_hist: &[u64], n: u64, p: f64) -> usize {
    let rank = ((p / 100.0) * (n - 1) as f64).round() as u64;
    let mut seen = 0;
    for (v, &c) in sorted_hist.iter().enumerate() {
        seen += c;
        if seen > rank {
            return v;
        }
    }
    S::BINS - 1
}

fn bright_background<S: Sample>(data: &[S]) -> bool {
    if data.is_empty() {
        return false;
    }
    let mut hist = vec![0u64; S::BINS];
    for &v in data {
        hist[v.index()] += 1;
    }
    let n = data.len() as u64;
    let (lo, med, hi) = (
        percentile::<S>(&hist, n, 1.0),
        percentile::<S>(&hist, n, 50.0),
        percentile::<S>(&hist, n, 99.0),
    );
    2 * med > lo + hi
}

/// Whether [`apply`] inverts `img` under `polarity`.
pub fn inverts(img: &Raster, polarity: Polarity) -> bool {
    match polarity {
        Polarity::Keep => false,
        Polarity::Invert => true,
        Polarity::Auto => match &img.samples {
            Samples::U8(d) => bright_background(d),
            Samples::U16(d) => bright_background(d),
        },
    }
}

/// Applies `polarity` to every channel.
///
/// ```
/// use cellops_dataset::{Raster, Samples, ops::polarity::{apply, Polarity}};
/// // Mostly bright with one dark nucleus: inverted under `auto`.
/// let img = Raster::from_u8(4, 1, 1, vec![250, 240, 20, 245]);
/// assert_eq!(apply(&img, Polarity::Auto).samples, Samples::U8(vec![5, 15, 235, 10]));
/// // Mostly dark: kept.
/// let img = Raster::from_u8(4, 1, 1, vec![5, 10, 200, 8]);
/// assert_eq!(apply(&img, Polarity::Auto), img);
/// ```
pub fn apply(img: &Raster, polarity: Polarity) -> Raster {
    if !inverts(img, polarity) {
        return img.clone();
    }
    let samples = match &img.samples {
        Samples::U8(d) => Samples::U8(d.iter().map(|&v| u8::MAX - v).collect()),
        Samples::U16(d) => Samples::U16(d.iter().map(|&v| u16::MAX - v).collect()),
    };
    Raster { samples, ..img.clone() }
}
