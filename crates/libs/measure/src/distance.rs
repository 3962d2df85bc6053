//! Exact Euclidean distance transform of a binary mask.
//!
//! For every foreground pixel, the Euclidean distance (in pixels) from its centre to the centre of
//! the nearest background pixel; background pixels get 0. The algorithm is Meijster, Roerdink and
//! Hesselink's separable one (2000; the lower envelope of parabolas of Felzenszwalb and Huttenlocher,
//! in integer arithmetic): a pass down and up each column finds the vertical distance to the
//! nearest background pixel, then a pass along each row takes, for every pixel, the minimum over the
//! row of `(x − x')² + g(x')²` with the lower envelope of those parabolas. Both passes are linear,
//! so the whole transform is O(pixels). Squared distances are exact integers; the distance is their
//! square root in `f64`, which is exactly what `scipy.ndimage.distance_transform_edt` computes (it
//! takes the root of the sum of the squared integer offsets to the nearest background pixel), so
//! the two agree bit for bit.
//!
//! What lies beyond the image is a choice ([`Outside`]): scipy treats it as foreground (only real
//! background pixels count, so a nucleus cut by the image edge keeps growing towards it); treating it
//! as background makes the distance at most the distance to the image edge plus one.

use serde::{Deserialize, Serialize};

/// What the pixels beyond the image border count as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outside {
    /// Beyond the border is foreground: only background pixels inside the image count. This is what
    /// `scipy.ndimage.distance_transform_edt` does. An image without any background pixel has no
    /// finite distance: every pixel gets `f64::INFINITY` (scipy returns meaningless finite values
    /// there).
    #[default]
    Foreground,
    /// Beyond the border is background: a pixel in the first or last row or column is at most 1
    /// from the background (as if the image were padded with one ring of background).
    Background,
}

/// Squared distances to the nearest background pixel, as exact integers; `u64::MAX` where there is
/// no background (only possible with [`Outside::Foreground`] and an all-foreground image). `mask` is
/// `true` on the foreground, rows of `width` pixels; a trailing partial row is ignored (gets 0).
///
/// ```
/// use cellops_measure::distance::{Outside, squared_distance_transform};
/// let mask = [false, true, true, true, true];
/// assert_eq!(squared_distance_transform(&mask, 5, Outside::Foreground), vec![0, 1, 4, 9, 16]);
/// // A single row: the rows above and below are outside the image, hence background at distance 1.
/// assert_eq!(squared_distance_transform(&mask, 5, Outside::Background), vec![0, 1, 1, 1, 1]);
/// ```
pub fn squared_distance_transform(mask: &[bool], width: usize, outside: Outside) -> Vec<u64> {
    let mut out = vec![0u64; mask.len()];
    let height = mask.len().checked_div(width).unwrap_or(0);
    if height == 0 {
        return out;
    }
    // "Infinity" larger than any real distance, small enough that sums of squares do not overflow.
    let inf = (width + height) as u64;
    let mut g = vec![0u64; width * height];
    // Column pass: vertical distance to the nearest background pixel in the same column.
    for x in 0..width {
        let mut prev = match outside {
            Outside::Background => 0,
            Outside::Foreground => inf,
        };
        for y in 0..height {
            let i = y * width + x;
            prev = if mask[i] { (prev + 1).min(inf) } else { 0 };
            g[i] = prev;
        }
        let mut next = match outside {
            Outside::Background => 0,
            Outside::Foreground => inf,
        };
        for y in (0..height).rev() {
            let i = y * width + x;
            next = if mask[i] { (next + 1).min(inf) } else { 0 };
            g[i] = g[i].min(next);
        }
    }
    // Row pass: lower envelope of the parabolas (x − u)² + g(u)².
    let mut s = vec![0usize; width]; // abscissae of the parabolas in the envelope
    let mut t = vec![0usize; width]; // where each one starts to be the lowest
    let mut row_g = vec![0u64; width];
    for y in 0..height {
        let row = y * width;
        for x in 0..width {
            let v = g[row + x];
            row_g[x] = v * v;
        }
        let f = |x: usize, u: usize| -> u64 {
            let d = x.abs_diff(u) as u64;
            d * d + row_g[u]
        };
        // First x at which the parabola at u is at or below the one at i (i < u), floor division.
        let sep = |i: usize, u: usize| -> i64 {
            let (i, u) = (i as i64, u as i64);
            let num = u * u - i * i + row_g[u as usize] as i64 - row_g[i as usize] as i64;
            num.div_euclid(2 * (u - i))
        };
        let mut q = 0usize;
        s[0] = 0;
        t[0] = 0;
        for u in 1..width {
            // Pop parabolas that the new one undercuts where they start.
            let mut empty = false;
            while f(t[q], s[q]) > f(t[q], u) {
                if q == 0 {
                    empty = true;
                    break;
                }
                q -= 1;
            }
            if empty {
                s[0] = u;
            } else {
                let w = 1 + sep(s[q], u);
                if w < width as i64 {
                    q += 1;
                    s[q] = u;
                    // w > t[q − 1] ≥ 0 here, so the cast is exact.
                    t[q] = w as usize;
                }
            }
        }
        for x in (0..width).rev() {
            let mut d = f(x, s[q]);
            if outside == Outside::Background {
                let to_edge = (x + 1).min(width - x) as u64;
                d = d.min(to_edge * to_edge);
            }
            out[row + x] = if d >= inf * inf { u64::MAX } else { d };
            if x == t[q] && q > 0 {
                q -= 1;
            }
        }
    }
    out
}

/// Euclidean distance of every foreground pixel to the nearest background pixel (0 on the
/// background), `f64::INFINITY` where there is none; see [`squared_distance_transform`]. With
/// [`Outside::Foreground`] it equals `scipy.ndimage.distance_transform_edt(mask)` exactly.
///
/// ```
/// use cellops_measure::distance::{Outside, distance_transform};
/// let mask = [true, true,
///             true, false];
/// let d = distance_transform(&mask, 2, Outside::Foreground);
/// assert_eq!(d, vec![2f64.sqrt(), 1.0, 1.0, 0.0]);
/// ```
pub fn distance_transform(mask: &[bool], width: usize, outside: Outside) -> Vec<f64> {
    squared_distance_transform(mask, width, outside)
        .into_iter()
        .map(|d| {
            if d == u64::MAX {
                f64::INFINITY
            } else {
                (d as f64).sqrt()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Brute force: the minimum squared distance to any background pixel (and to the ring of pixels
    /// around the image when that counts as background).
    fn brute(mask: &[bool], width: usize, outside: Outside) -> Vec<u64> {
        let height = mask.len() / width;
        let mut bg: Vec<(i64, i64)> = (0..width * height)
            .filter(|&i| !mask[i])
            .map(|i| ((i / width) as i64, (i % width) as i64))
            .collect();
        if outside == Outside::Background {
            let (h, w) = (height as i64, width as i64);
            for x in -1..=w {
                bg.push((-1, x));
                bg.push((h, x));
            }
            for y in -1..=h {
                bg.push((y, -1));
                bg.push((y, w));
            }
        }
        (0..width * height)
            .map(|i| {
                let (y, x) = ((i / width) as i64, (i % width) as i64);
                bg.iter()
                    .map(|&(by, bx)| ((y - by) * (y - by) + (x - bx) * (x - bx)) as u64)
                    .min()
                    .unwrap_or(u64::MAX)
            })
            .collect()
    }

    #[test]
    fn a_disc_centre_is_its_radius_away() {
        let (w, r) = (21usize, 7i64);
        let mask: Vec<bool> = (0..w * w)
            .map(|i| {
                let (y, x) = ((i / w) as i64 - 10, (i % w) as i64 - 10);
                y * y + x * x <= r * r
            })
            .collect();
        let d = distance_transform(&mask, w, Outside::Foreground);
        // The nearest background pixels to the centre are the (±5, ±5) ones: 50 > 49.
        assert_eq!(d[10 * w + 10], 50f64.sqrt());
        assert_eq!(d[0], 0.0);
    }

    #[test]
    fn no_background_is_infinitely_far() {
        let d = distance_transform(&[true; 6], 3, Outside::Foreground);
        assert!(d.iter().all(|v| v.is_infinite()));
        let d = distance_transform(&[true; 6], 3, Outside::Background);
        assert_eq!(d, vec![1.0; 6]);
        assert!(distance_transform(&[], 0, Outside::Foreground).is_empty());
    }

    proptest! {
        #[test]
        fn equals_brute_force(bits in proptest::collection::vec(proptest::bool::weighted(0.8), 1..300), w in 1usize..25) {
            let w = w.min(bits.len());
            let bits = &bits[..bits.len() / w * w];
            for outside in [Outside::Foreground, Outside::Background] {
                prop_assert_eq!(squared_distance_transform(bits, w, outside), brute(bits, w, outside));
            }
        }
    }
}
