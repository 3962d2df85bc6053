//! Overlay images (what `evaluate` writes and `serve` answers with `overlay=png`): the image (as 8-bit RGB) with each nucleus's contour drawn in its class colour,
//! and ground-truth contours, when given, in white.

use cellops_dataset::{Raster, Samples};
use cellops_measure::objects::Nucleus;
use cellops_measure::stain::DabClass;

/// Contour colour of a DAB class: blue (negative), yellow (1+), orange (2+), red (3+).
pub fn dab_colour(c: DabClass) -> [u8; 3] {
    match c {
        DabClass::Negative => [40, 120, 255],
        DabClass::Weak => [255, 230, 0],
        DabClass::Moderate => [255, 140, 0],
        DabClass::Strong => [230, 0, 0],
    }
}

/// Colours of size classes, in the file's order (cycled).
pub const SIZE_COLOURS: [[u8; 3]; 6] = [
    [0, 200, 255],
    [0, 230, 0],
    [255, 0, 200],
    [255, 200, 0],
    [160, 80, 255],
    [255, 100, 60],
];

/// The colour of nuclei without classes.
pub const PLAIN: [u8; 3] = [0, 255, 0];

/// The contour colour of a nucleus: its DAB class, else its size class, else green.
pub fn colour_of(n: &Nucleus, size_classes: &[String]) -> [u8; 3] {
    if let Some(s) = n.stain {
        return dab_colour(s.class);
    }
    n.size_class
        .as_ref()
        .and_then(|c| size_classes.iter().position(|s| s == c))
        .map_or(PLAIN, |i| SIZE_COLOURS[i % SIZE_COLOURS.len()])
}

/// The image as 8-bit RGB (grey replicated; 16-bit scaled by its maximum; alpha dropped).
pub fn to_rgb8(image: &Raster) -> Vec<u8> {
    let c = usize::from(image.channels).max(1);
    let n = image.width as usize * image.height as usize;
    let pick = |px: usize, k: usize| px * c + if c >= 3 { k } else { 0 };
    let mut out = vec![0u8; n * 3];
    match &image.samples {
        Samples::U8(s) => {
            for i in 0..n {
                for k in 0..3 {
                    out[i * 3 + k] = s[pick(i, k)];
                }
            }
        }
        Samples::U16(s) => {
            let max = f64::from(s.iter().copied().max().unwrap_or(1).max(1));
            for i in 0..n {
                for k in 0..3 {
                    out[i * 3 + k] = (f64::from(s[pick(i, k)]) * 255.0 / max).round() as u8;
                }
            }
        }
    }
    out
}

/// Whether pixel `i` of `labels` lies on its object's contour (a 4-neighbour, or the image edge,
/// differs).
fn on_contour(labels: &[u32], width: usize, height: usize, i: usize) -> bool {
    let l = labels[i];
    if l == 0 {
        return false;
    }
    let (x, y) = (i % width, i / width);
    x == 0
        || y == 0
        || x + 1 == width
        || y + 1 == height
        || labels[i - 1] != l
        || labels[i + 1] != l
        || labels[i - width] != l
        || labels[i + width] != l
}

/// Draws the overlay: the image darkened slightly, ground-truth contours in white, then each
/// nucleus's contour in `colour(label)`.
pub fn draw(image: &Raster, labels: &[u32], truth: Option<&[u32]>, colour: impl Fn(u32) -> Option<[u8; 3]>) -> Raster {
    let (w, h) = (image.width as usize, image.height as usize);
    let mut rgb: Vec<u8> = to_rgb8(image).iter().map(|&v| (u16::from(v) * 4 / 5) as u8).collect();
    if let Some(t) = truth {
        for i in 0..w * h {
            if on_contour(t, w, h, i) {
                rgb[i * 3..i * 3 + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
    }
    for i in 0..w * h {
        if on_contour(labels, w, h, i)
            && let Some(c) = colour(labels[i])
        {
            rgb[i * 3..i * 3 + 3].copy_from_slice(&c);
        }
    }
    Raster::from_u8(image.width, image.height, 3, rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contours_are_coloured_and_interiors_kept() {
        let grey = Raster::from_u8(5, 5, 1, vec![100; 25]);
        let mut labels = vec![0u32; 25];
        for y in 1..4 {
            for x in 1..4 {
                labels[y * 5 + x] = 1;
            }
        }
        let o = draw(&grey, &labels, None, |_| Some([255, 0, 0]));
        let Samples::U8(s) = &o.samples else { panic!("8-bit") };
        assert_eq!(&s[(5 + 1) * 3..(5 + 1) * 3 + 3], &[255, 0, 0]); // corner of the square
        assert_eq!(&s[(2 * 5 + 2) * 3..(2 * 5 + 2) * 3 + 3], &[80, 80, 80]); // centre, darkened
        assert_eq!(&s[0..3], &[80, 80, 80]); // background
    }
}
