//! Channel handling: alpha removal, grey/colour conversion, and the luminance used for
//! colour histogram equalisation.

use crate::raster::{Raster, Sample, Samples};

pub use cellops_formats::preprocessing::ColourMode;

/// Rec. 601 luminance `0.299 R + 0.587 G + 0.114 B` in OpenCV's 14-bit fixed point, exactly as
/// the Y channel of `cvtColor(…, COLOR_RGB2YCrCb)` computes it (8- and 16-bit). Colour histogram
/// equalisation works on this channel.
///
/// ```
/// use cellops_dataset::ops::colour::luma;
/// assert_eq!(luma(255u8, 0, 0), 76);
/// assert_eq!(luma(65535u16, 65535, 65535), 65535);
/// ```
#[inline]
pub fn luma<S: Sample>(r: S, g: S, b: S) -> S {
    let (r, g, b): (u32, u32, u32) = (r.into(), g.into(), b.into());
    S::from_u32((r * 4899 + g * 9617 + b * 1868 + (1 << 13)) >> 14)
}

/// The same luminance in OpenCV's 15-bit fixed point, exactly as `cvtColor(…, COLOR_RGB2GRAY)`
/// computes it (8- and 16-bit): what [`ColourMode::Grey`] produces. It differs from [`luma`] by at
/// most 1 on a small fraction of pixels.
///
/// ```
/// use cellops_dataset::ops::colour::grey;
/// assert_eq!(grey(255u8, 0, 0), 76);
/// ```
#[inline]
pub fn grey<S: Sample>(r: S, g: S, b: S) -> S {
    let (r, g, b): (u32, u32, u32) = (r.into(), g.into(), b.into());
    S::from_u32((r * 9798 + g * 19235 + b * 3735 + (1 << 14)) >> 15)
}

fn convert<S: Sample>(data: &[S], channels: u8, mode: ColourMode) -> (u8, Vec<S>) {
    let c = channels as usize;
    let colour = channels >= 3;
    let out_channels: u8 = match (mode, colour) {
        (ColourMode::Grey, _) | (ColourMode::Keep, false) => 1,
        (ColourMode::Rgb, _) | (ColourMode::Keep, true) => 3,
    };
    if c == out_channels as usize {
        return (out_channels, data.to_vec());
    }
    let mut out = Vec::with_capacity(data.len() / c * out_channels as usize);
    for px in data.chunks_exact(c) {
        let grey = if colour { grey(px[0], px[1], px[2]) } else { px[0] };
        match out_channels {
            1 => out.push(grey),
            _ if colour => out.extend_from_slice(&px[..3]),
            _ => out.extend_from_slice(&[grey, grey, grey]),
        }
    }
    (out_channels, out)
}

/// Converts an image to 1 (grey) or 3 (RGB) channels under `mode`; alpha is always dropped.
///
/// ```
/// use cellops_dataset::{Raster, ops::colour::{to_working, ColourMode}};
/// let rgba = Raster::from_u8(1, 1, 4, vec![255, 0, 0, 255]);
/// let grey = to_working(&rgba, ColourMode::Grey);
/// assert_eq!((grey.channels, grey.samples), (1, cellops_dataset::Samples::U8(vec![76])));
/// ```
pub fn to_working(raster: &Raster, mode: ColourMode) -> Raster {
    let (channels, samples) = match &raster.samples {
        Samples::U8(d) => {
            let (c, v) = convert(d, raster.channels, mode);
            (c, Samples::U8(v))
        }
        Samples::U16(d) => {
            let (c, v) = convert(d, raster.channels, mode);
            (c, Samples::U16(v))
        }
    };
    Raster {
        width: raster.width,
        height: raster.height,
        channels,
        samples,
    }
}

/// Replaces the luminance of an RGB image, keeping chroma.
///
/// Histogram equalisation of colour images works on the Y channel of YCrCb (as the paper's authors
/// do with OpenCV). Since R, G and B are each `Y` plus a fixed combination of Cr and Cb, changing Y
/// to `Y'` with Cr and Cb untouched adds `Y' - Y` to every channel: that is what this does, given
/// the rounded luminance plane `y` (from [`luma_plane`]) and its new values `y_new`. It avoids the
/// rounding of a round trip through 8-bit Cr/Cb.
///
/// ```
/// use cellops_dataset::ops::colour::{apply_luma, luma_plane};
/// let mut rgb = vec![100u8, 50, 20];
/// let y = luma_plane(&rgb);
/// apply_luma(&mut rgb, &y, &[y[0] + 10]);
/// assert_eq!(rgb, vec![110, 60, 30]);
/// ```
pub fn apply_luma<S: Sample>(rgb: &mut [S], y: &[S], y_new: &[S]) {
    let max = S::MAX as i32;
    for ((px, &old), &new) in rgb.chunks_exact_mut(3).zip(y).zip(y_new) {
        let delta = new.into() as i32 - old.into() as i32;
        if delta != 0 {
            for s in px.iter_mut() {
                *s = S::from_u32(((*s).into() as i32 + delta).clamp(0, max) as u32);
            }
        }
    }
}

/// The luminance plane of an RGB image (see [`luma`]).
pub fn luma_plane<S: Sample>(rgb: &[S]) -> Vec<S> {
    rgb.chunks_exact(3).map(|p| luma(p[0], p[1], p[2])).collect()
}
