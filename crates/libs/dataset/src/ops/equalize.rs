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

/// The histogram of a plane. Four partial histograms, summed at the end, let consecutive equal
/// samples update different counters instead of waiting on one another.
fn histogram<S: Sample>(plane: &[S]) -> Vec<u32> {
    let mut parts = vec![0u32; 4 * S::BINS];
    let (h0, rest) = parts.split_at_mut(S::BINS);
    let (h1, rest) = rest.split_at_mut(S::BINS);
    let (h2, h3) = rest.split_at_mut(S::BINS);
    let mut chunks = plane.chunks_exact(4);
    for c in &mut chunks {
        h0[c[0].index()] += 1;
        h1[c[1].index()] += 1;
        h2[c[2].index()] += 1;
        h3[c[3].index()] += 1;
    }
    for &v in chunks.remainder() {
        h0[v.index()] += 1;
    }
    for i in 0..S::BINS {
        h0[i] += h1[i] + h2[i] + h3[i];
    }
    parts.truncate(S::BINS);
    parts
}

/// Adds samples to a histogram. For 8-bit samples, alternate samples go to `partial` so that runs of
/// equal values do not serialise on one counter; the caller merges `partial` in.
#[inline]
fn count_into<S: Sample>(hist: &mut [u32], partial: &mut [u32], samples: &[S]) {
    if partial.len() == hist.len() {
        let mut pairs = samples.chunks_exact(2);
        for p in &mut pairs {
            hist[p[0].index()] += 1;
            partial[p[1].index()] += 1;
        }
        for &v in pairs.remainder() {
            hist[v.index()] += 1;
        }
    } else {
        for &v in samples {
            hist[v.index()] += 1;
        }
    }
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
    let lut = &lut[..S::BINS];
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
#[allow(
    clippy::too_many_lines,
    reason = "hot per-pixel kernel: one body that follows OpenCV's CLAHE step by step (padding, clipped \
              tile tables, bilinear interpolation) so its bit-exact arithmetic can be checked against it"
)]
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
    // Values are whole numbers, stored as f32 for the interpolation below.
    let mut lut = vec![0f32; tiles_x * tiles_y * bins];
    let mut hist = vec![0u32; bins];
    // A second counter array for 8-bit samples (see `count_into`); merged after each tile.
    let mut partial = vec![0u32; if bins == 256 { bins } else { 0 }];
    let col_map: Vec<usize> = (0..padded_w).map(|x| reflect101(x, width)).collect();
    for ty in 0..tiles_y {
        for tx in 0..tiles_x {
            hist.fill(0);
            let (x0, x1) = (tx * tile_w, (tx + 1) * tile_w);
            for y in ty * tile_h..(ty + 1) * tile_h {
                let row = &plane[reflect101(y, height) * width..][..width];
                if x1 <= width {
                    count_into(&mut hist, &mut partial, &row[x0..x1]);
                } else {
                    for &x in &col_map[x0..x1] {
                        hist[row[x].index()] += 1;
                    }
                }
            }
            for (h, p) in hist.iter_mut().zip(partial.iter_mut()) {
                *h += std::mem::take(p);
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
                *t = saturate::<S>(sum as f32 * lut_scale).into() as f32;
            }
        }
    }

    // Bilinear interpolation between the four nearest tiles' tables, with OpenCV's weights and
    // arithmetic. Columns are processed in runs that share their two tile columns, so the four
    // tables of a run are fixed-length slices indexed by the sample: no per-pixel index arithmetic.
    let inv_tw = 1.0 / tile_w as f32;
    let inv_th = 1.0 / tile_h as f32;
    let mut xa = Vec::with_capacity(width);
    let mut xa1 = Vec::with_capacity(width);
    // (first column, end column, left tile, right tile)
    let mut runs: Vec<(usize, usize, usize, usize)> = Vec::new();
    for x in 0..width {
        let txf = x as f32 * inv_tw - 0.5;
        let t1 = txf.floor();
        let a = txf - t1;
        let t1 = t1 as i64;
        let (left, right) = (t1.max(0) as usize, ((t1 + 1).max(0) as usize).min(tiles_x - 1));
        xa.push(a);
        xa1.push(1.0 - a);
        match runs.last_mut() {
            Some(r) if (r.2, r.3) == (left, right) => r.1 = x + 1,
            _ => runs.push((x, x + 1, left, right)),
        }
    }
    for y in 0..height {
        let tyf = y as f32 * inv_th - 0.5;
        let t1 = tyf.floor();
        let ya = tyf - t1;
        let ya1 = 1.0 - ya;
        let t1 = t1 as i64;
        let ty1 = t1.max(0) as usize;
        let ty2 = ((t1 + 1).max(0) as usize).min(tiles_y - 1);
        let row = &mut plane[y * width..][..width];
        for &(x0, x1, left, right) in &runs {
            let table = |ty: usize, tx: usize| &lut[(ty * tiles_x + tx) * bins..][..bins];
            let (p1a, p1b, p2a, p2b) = (table(ty1, left), table(ty1, right), table(ty2, left), table(ty2, right));
            for ((v, &a), &a1) in row[x0..x1].iter_mut().zip(&xa[x0..x1]).zip(&xa1[x0..x1]) {
                let s = v.index();
                let top = p1a[s] * a1 + p1b[s] * a;
                let bottom = p2a[s] * a1 + p2b[s] * a;
                *v = saturate(top * ya1 + bottom * ya);
            }
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
