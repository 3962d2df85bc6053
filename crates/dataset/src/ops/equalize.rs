//! Histogram equalisation: global, and contrast-limited adaptive (CLAHE).
//!
//! Both follow OpenCV's definitions (`cv::equalizeHist`, `cv::createCLAHE`) so that results agree
//! with the tools labs already use: the same look-up tables, the same clip-limit arithmetic and
//! residual redistribution, the same reflect-101 padding when the image does not divide into the
//! tile grid, and the same bilinear interpolation between tile tables. They work on one plane of
//! 8-bit or 16-bit samples (OpenCV's `equalizeHist` is 8-bit only; here 16-bit uses 65536 bins, as
//! OpenCV's CLAHE does). Colour images are equalised on their luminance, see
//! [`crate::ops::colour::apply_luma`].

use crate::raster::Sample;

/// Rounds half to even, as OpenCV's `saturate_cast` does, and clamps to the sample range.
///
/// Adding and removing 2^23 rounds a float in `[0, 2^23)` to an integer in the FPU's default
/// round-half-to-even mode: one addition instead of a `roundeven` library call on CPUs without
/// SSE4.1, which the portable x86-64 baseline assumes.
#[inline]
fn saturate<S: Sample>(v: f32) -> S {
    const MAGIC: f32 = 8_388_608.0;
    let v = v.clamp(0.0, S::MAX as f32);
    S::from_u32(((v + MAGIC) - MAGIC) as u32)
}

fn histogram<S: Sample>(plane: &[S]) -> Vec<u32> {
    let mut hist = vec![0u32; S::BINS];
    for &v in plane {
        hist[v.index()] += 1;
    }
    hist
}

/// The look-up table of global histogram equalisation (OpenCV's `equalizeHist`).
pub fn equalize_lut<S: Sample>(plane: &[S]) -> Vec<S> {
    let hist = histogram(plane);
    let total = plane.len() as u64;
    let Some(first) = hist.iter().position(|&h| h != 0) else {
        return (0..S::BINS as u32).map(S::from_u32).collect();
    };
    if u64::from(hist[first]) == total {
        return vec![S::from_u32(first as u32); S::BINS];
    }
    let scale = (S::BINS - 1) as f32 / (total - u64::from(hist[first])) as f32;
    let mut lut = vec![S::default(); S::BINS];
    let mut sum: u64 = 0;
    for i in first + 1..S::BINS {
        sum += u64::from(hist[i]);
        lut[i] = saturate(sum as f32 * scale);
    }
    lut
}

/// Global histogram equalisation of one plane, in place.
///
/// ```
/// let mut px = vec![10u8, 10, 20, 30];
/// cellops_dataset::ops::equalize::equalize(&mut px);
/// assert_eq!(px, vec![0, 0, 128, 255]);
/// ```
pub fn equalize<S: Sample>(plane: &mut [S]) {
    let lut = equalize_lut(plane);
    for v in plane.iter_mut() {
        *v = lut[v.index()];
    }
}

/// CLAHE settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clahe {
    /// Contrast limit: a bin may hold at most `clip_limit` times the average count; 0 disables
    /// clipping (plain adaptive equalisation). OpenCV's default is 40, common practice 2.
    pub clip_limit: f64,
    /// Tiles across (columns).
    pub tiles_x: u32,
    /// Tiles down (rows).
    pub tiles_y: u32,
}

impl Default for Clahe {
    fn default() -> Self {
        Self {
            clip_limit: 2.0,
            tiles_x: 8,
            tiles_y: 8,
        }
    }
}

/// Reflect-101 index (`dcb|abcd|cba` without repeating the edge), for padding.
#[inline]
fn reflect101(i: usize, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let period = 2 * (len - 1);
    let i = i % period;
    if i < len { i } else { period - i }
}

/// Contrast-limited adaptive histogram equalisation of one plane of `width` columns, in place.
///
/// ```
/// use cellops_dataset::ops::equalize::{clahe, Clahe};
/// let mut px: Vec<u8> = (0..64).map(|i| (i % 8 * 4) as u8).collect();
/// clahe(&mut px, 8, Clahe { clip_limit: 2.0, tiles_x: 2, tiles_y: 2 });
/// assert!(px.iter().max() > Some(&28), "contrast is stretched");
/// ```
pub fn clahe<S: Sample>(plane: &mut [S], width: usize, params: Clahe) {
    if width == 0 || plane.is_empty() {
        return;
    }
    let height = plane.len() / width;
    let tiles_x = params.tiles_x.max(1) as usize;
    let tiles_y = params.tiles_y.max(1) as usize;
    // When the image does not divide into the grid, OpenCV pads it (reflect-101) by
    // `tiles - n % tiles` on *both* axes, so an axis that divides still grows by a whole tile.
    let (padded_w, padded_h) = if width.is_multiple_of(tiles_x) && height.is_multiple_of(tiles_y) {
        (width, height)
    } else {
        (width + tiles_x - width % tiles_x, height + tiles_y - height % tiles_y)
    };
    let (tile_w, tile_h) = (padded_w / tiles_x, padded_h / tiles_y);
    let bins = S::BINS;
    let tile_total = (tile_w * tile_h) as f64;
    let lut_scale = (bins - 1) as f32 / tile_total as f32;
    let clip_limit: u32 = if params.clip_limit > 0.0 {
        ((params.clip_limit * tile_total / bins as f64) as u32).max(1)
    } else {
        0
    };

    // One look-up table per tile, tile after tile in row order.
    let mut lut = vec![S::default(); tiles_x * tiles_y * bins];
    let mut hist = vec![0u32; bins];
    let col_map: Vec<usize> = (0..padded_w).map(|x| reflect101(x, width)).collect();
    for ty in 0..tiles_y {
        for tx in 0..tiles_x {
            hist.fill(0);
            let (x0, x1) = (tx * tile_w, (tx + 1) * tile_w);
            for y in ty * tile_h..(ty + 1) * tile_h {
                let row = &plane[reflect101(y, height) * width..][..width];
                if x1 <= width {
                    for &v in &row[x0..x1] {
                        hist[v.index()] += 1;
                    }
                } else {
                    for &x in &col_map[x0..x1] {
                        hist[row[x].index()] += 1;
                    }
                }
            }
            if clip_limit > 0 {
                let mut clipped: u32 = 0;
                for h in hist.iter_mut() {
                    if *h > clip_limit {
                        clipped += *h - clip_limit;
                        *h = clip_limit;
                    }
                }
                let batch = clipped / bins as u32;
                let mut residual = clipped - batch * bins as u32;
                for h in hist.iter_mut() {
                    *h += batch;
                }
                if residual != 0 {
                    let step = (bins / residual as usize).max(1);
                    let mut i = 0;
                    while i < bins && residual > 0 {
                        hist[i] += 1;
                        residual -= 1;
                        i += step;
                    }
                }
            }
            let table = &mut lut[(ty * tiles_x + tx) * bins..][..bins];
            let mut sum: u32 = 0;
            for (t, &h) in table.iter_mut().zip(&hist) {
                sum += h;
                *t = saturate(sum as f32 * lut_scale);
            }
        }
    }

    // Bilinear interpolation between the four nearest tiles' tables.
    let inv_tw = 1.0 / tile_w as f32;
    let inv_th = 1.0 / tile_h as f32;
    let mut ind1 = Vec::with_capacity(width);
    let mut ind2 = Vec::with_capacity(width);
    let mut xa = Vec::with_capacity(width);
    for x in 0..width {
        let txf = x as f32 * inv_tw - 0.5;
        let t1 = txf.floor();
        let a = txf - t1;
        let t1 = t1 as i64;
        ind1.push(t1.max(0) as usize * bins);
        ind2.push(((t1 + 1) as usize).min(tiles_x - 1) * bins);
        xa.push(a);
    }
    for y in 0..height {
        let tyf = y as f32 * inv_th - 0.5;
        let t1 = tyf.floor();
        let ya = tyf - t1;
        let t1 = t1 as i64;
        let ty1 = t1.max(0) as usize;
        let ty2 = ((t1 + 1) as usize).min(tiles_y - 1);
        let plane1 = &lut[ty1 * tiles_x * bins..][..tiles_x * bins];
        let plane2 = &lut[ty2 * tiles_x * bins..][..tiles_x * bins];
        let row = &mut plane[y * width..][..width];
        for (x, v) in row.iter_mut().enumerate() {
            let s = v.index();
            let (i1, i2, a) = (ind1[x] + s, ind2[x] + s, xa[x]);
            let a1 = 1.0 - a;
            let top = plane1[i1].into() as f32 * a1 + plane1[i2].into() as f32 * a;
            let bottom = plane2[i1].into() as f32 * a1 + plane2[i2].into() as f32 * a;
            *v = saturate(top * (1.0 - ya) + bottom * ya);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn constant_image_stays_constant() {
        let mut px = vec![77u8; 100];
        equalize(&mut px);
        assert!(px.iter().all(|&v| v == 77));
    }

    #[test]
    fn sixteen_bit_uses_full_range() {
        let mut px: Vec<u16> = vec![100, 200, 300, 400];
        equalize(&mut px);
        assert_eq!(px, vec![0, 21845, 43690, 65535]);
    }

    #[test]
    fn clahe_on_uniform_image_is_uniform() {
        let mut px = vec![128u8; 37 * 23];
        clahe(&mut px, 37, Clahe::default());
        let first = px[0];
        assert!(px.iter().all(|&v| v == first));
    }

    #[test]
    fn reflect101_matches_opencv() {
        let got: Vec<usize> = (0..8).map(|i| reflect101(i, 5)).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4, 3, 2, 1]);
    }

    proptest! {
        #[test]
        fn equalize_is_monotone(px in proptest::collection::vec(any::<u8>(), 1..400)) {
            let lut = equalize_lut(&px);
            let mut out = px.clone();
            equalize(&mut out);
            for (a, b) in px.iter().zip(&out) {
                prop_assert_eq!(lut[*a as usize], *b);
            }
            let mut used: Vec<u8> = px.clone();
            used.sort_unstable();
            used.dedup();
            for w in used.windows(2) {
                prop_assert!(lut[w[0] as usize] <= lut[w[1] as usize]);
            }
        }

        #[test]
        fn clahe_keeps_size_and_order_within_a_tile(
            w in 1usize..40, h in 1usize..40, seed in any::<u64>(), clip in 0.0f64..8.0
        ) {
            let mut state = seed;
            let mut px: Vec<u8> = (0..w * h).map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 56) as u8
            }).collect();
            let orig = px.clone();
            clahe(&mut px, w, Clahe { clip_limit: clip, tiles_x: 1, tiles_y: 1 });
            prop_assert_eq!(px.len(), w * h);
            // With one tile, CLAHE is a single monotone table.
            for i in 0..orig.len() {
                for j in 0..orig.len() {
                    if orig[i] < orig[j] {
                        prop_assert!(px[i] <= px[j]);
                    }
                }
            }
        }
    }
}
