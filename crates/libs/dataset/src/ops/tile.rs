//! Tiling images and masks into patches.

use crate::raster::{Labels, Raster, Samples};

/// Start offsets of tiles of `size` along an axis of `len` with `overlap`: evenly stepped, the last
/// tile moved back to end at the edge (no padding). An axis shorter than a tile gives one tile of
/// the whole axis.
///
/// ```
/// use cellops_dataset::ops::tile::origins;
/// assert_eq!(origins(10, 4, 0), vec![0, 4, 6]);
/// assert_eq!(origins(10, 4, 2), vec![0, 2, 4, 6]);
/// assert_eq!(origins(3, 4, 0), vec![0]);
/// ```
pub fn origins(len: u32, size: u32, overlap: u32) -> Vec<u32> {
    if len <= size || size == 0 {
        return vec![0];
    }
    let step = size.saturating_sub(overlap).max(1);
    let mut out: Vec<u32> = (0..).map(|k| k * step).take_while(|&o| o + size < len).collect();
    out.push(len - size);
    out.dedup();
    out
}

/// A rectangle of a tile: origin and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// The tiles covering an image of `width` x `height`, row by row.
pub fn tiles(width: u32, height: u32, size: u32, overlap: u32) -> Vec<Rect> {
    let xs = origins(width, size, overlap);
    let ys = origins(height, size, overlap);
    ys.iter()
        .flat_map(|&y| {
            xs.iter().map(move |&x| Rect {
                x,
                y,
                width: size.min(width),
                height: size.min(height),
            })
        })
        .collect()
}

fn crop_slice<T: Copy>(data: &[T], width: u32, channels: usize, r: Rect) -> Vec<T> {
    let mut out = Vec::with_capacity(r.width as usize * r.height as usize * channels);
    for y in r.y..r.y + r.height {
        let start = (y as usize * width as usize + r.x as usize) * channels;
        out.extend_from_slice(&data[start..start + r.width as usize * channels]);
    }
    out
}

/// Crops an image.
pub fn crop_image(img: &Raster, r: Rect) -> Raster {
    let c = img.channels as usize;
    let samples = match &img.samples {
        Samples::U8(d) => Samples::U8(crop_slice(d, img.width, c, r)),
        Samples::U16(d) => Samples::U16(crop_slice(d, img.width, c, r)),
    };
    Raster {
        width: r.width,
        height: r.height,
        channels: img.channels,
        samples,
    }
}

/// Crops a mask.
pub fn crop_labels(mask: &Labels, r: Rect) -> Labels {
    Labels::new(r.width, r.height, crop_slice(&mask.data, mask.width, 1, r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn tiles_cover_every_pixel(len in 1u32..500, size in 1u32..128, overlap in 0u32..64) {
            let o = origins(len, size, overlap);
            let mut covered = vec![false; len as usize];
            for &s in &o {
                prop_assert!(s + size.min(len) <= len);
                for c in &mut covered[s as usize..(s + size.min(len)) as usize] {
                    *c = true;
                }
            }
            prop_assert!(covered.iter().all(|&c| c));
            prop_assert!(o.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
