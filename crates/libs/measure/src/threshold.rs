//! Global thresholds of a grey image, as scikit-image computes them (`threshold_otsu`,
//! `threshold_li`, `threshold_triangle` on an integer image): the classical segmentation that
//! needs no model, and the line every model is compared with.
//!
//! Each works on the histogram of an 8-bit plane and returns a threshold `t`; the foreground is
//! `value > t`, as in scikit-image.

pub use cellops_formats::params::ThresholdMethod;

/// The 256-bin histogram of an 8-bit plane.
///
/// ```
/// let h = cellops_measure::threshold::histogram(&[0, 0, 255]);
/// assert_eq!((h[0], h[255]), (2, 1));
/// ```
pub fn histogram(values: &[u8]) -> [u64; 256] {
    let mut h = [0u64; 256];
    for &v in values {
        h[usize::from(v)] += 1;
    }
    h
}

/// The smallest and largest occupied bins, or `None` for an empty histogram.
fn occupied(hist: &[u64; 256]) -> Option<(usize, usize)> {
    let lo = hist.iter().position(|&c| c > 0)?;
    let hi = hist.iter().rposition(|&c| c > 0)?;
    Some((lo, hi))
}

/// Otsu's threshold (`skimage.filters.threshold_otsu` of a `uint8` image).
///
/// ```
/// use cellops_measure::threshold::{histogram, otsu};
/// assert_eq!(otsu(&histogram(&[10, 10, 12, 200, 201, 203])), 12.0);
/// ```
pub fn otsu(hist: &[u64; 256]) -> f64 {
    let Some((lo, hi)) = occupied(hist) else {
        return 0.0;
    };
    if lo == hi {
        return lo as f64;
    }
    // Over the bins lo..=hi (scikit-image's bin centres), class 0 is `bins <= t`.
    let (mut w0, mut s0) = (0f64, 0f64);
    let total: f64 = hist[lo..=hi].iter().map(|&c| c as f64).sum();
    let sum: f64 = (lo..=hi).map(|v| v as f64 * hist[v] as f64).sum();
    let (mut best, mut best_t) = (f64::NEG_INFINITY, lo);
    for (t, &count) in hist.iter().enumerate().take(hi).skip(lo) {
        w0 += count as f64;
        s0 += t as f64 * count as f64;
        let w1 = total - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let (m0, m1) = (s0 / w0, (sum - s0) / w1);
        let between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if between > best {
            (best, best_t) = (between, t);
        }
    }
    best_t as f64
}

/// Li's threshold (`skimage.filters.threshold_li` of a `uint8` image, default tolerance and
/// initial guess).
///
/// ```
/// use cellops_measure::threshold::{histogram, li};
/// let t = li(&histogram(&[10, 10, 12, 200, 201, 203]));
/// assert!(t > 12.0 && t < 200.0);
/// ```
pub fn li(hist: &[u64; 256]) -> f64 {
    let Some((lo, hi)) = occupied(hist) else {
        return 0.0;
    };
    if lo == hi {
        return lo as f64;
    }
    // Values shifted so that the smallest is 0 (logarithms of the class means need positives).
    let n: f64 = hist.iter().map(|&c| c as f64).sum();
    let mean = (lo..=hi).map(|v| v as f64 * hist[v] as f64).sum::<f64>() / n;
    // Half the smallest gap between distinct values.
    let present: Vec<usize> = (lo..=hi).filter(|&v| hist[v] > 0).collect();
    let tolerance = present.windows(2).map(|w| w[1] - w[0]).min().unwrap_or(1) as f64 / 2.0;
    let shift = lo as f64;
    let mut t_next = mean - shift;
    let mut t_curr = -2.0 * tolerance;
    for _ in 0..1000 {
        if (t_next - t_curr).abs() <= tolerance {
            break;
        }
        t_curr = t_next;
        let (mut nf, mut sf, mut nb, mut sb) = (0f64, 0f64, 0f64, 0f64);
        for (v, &count) in hist.iter().enumerate().take(hi + 1).skip(lo) {
            let (x, c) = (v as f64 - shift, count as f64);
            if x > t_curr {
                (nf, sf) = (nf + c, sf + c * x);
            } else {
                (nb, sb) = (nb + c, sb + c * x);
            }
        }
        if nf == 0.0 || nb == 0.0 {
            break;
        }
        let (mean_fore, mean_back) = (sf / nf, sb / nb);
        if mean_back == 0.0 {
            break;
        }
        t_next = (mean_back - mean_fore) / (mean_back.ln() - mean_fore.ln());
    }
    t_next + shift
}

/// The triangle threshold (`skimage.filters.threshold_triangle` of a `uint8` image).
///
/// ```
/// use cellops_measure::threshold::{histogram, triangle};
/// // A dark peak with a long bright tail: the threshold sits at the foot of the peak.
/// let mut v = vec![5u8; 100];
/// v.extend((6..=100).map(|x| x as u8));
/// let t = triangle(&histogram(&v));
/// assert!(t >= 5.0 && t < 20.0, "{t}");
/// ```
pub fn triangle(hist: &[u64; 256]) -> f64 {
    let Some((lo, hi)) = occupied(hist) else {
        return 0.0;
    };
    if lo == hi {
        return lo as f64;
    }
    // scikit-image's histogram of an integer image spans lo..=hi, one bin per value.
    let mut h: Vec<f64> = hist[lo..=hi].iter().map(|&c| c as f64).collect();
    let nbins = h.len();
    let mut peak = h
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |b, (i, &c)| if c > b.1 { (i, c) } else { b })
        .0;
    let nonzero: Vec<usize> = (0..nbins).filter(|&i| h[i] > 0.0).collect();
    let (mut low, high) = (nonzero[0], nonzero[nonzero.len() - 1]);
    let flip = peak - low < high - peak;
    if flip {
        h.reverse();
        low = nbins - high - 1;
        peak = nbins - peak - 1;
    }
    let width = (peak - low) as f64;
    let height = h[peak];
    let norm = (height * height + width * width).sqrt();
    let (ph, pw) = (height / norm, width / norm);
    let mut best = (0usize, f64::NEG_INFINITY);
    for x in 0..peak - low {
        let length = ph * x as f64 - pw * h[x + low];
        if length > best.1 {
            best = (x, length);
        }
    }
    let mut level = best.0 + low;
    if flip {
        level = nbins - level - 1;
    }
    (level + lo) as f64
}

/// The threshold of `values` by `method` (`fixed` returns `value`).
pub fn threshold(values: &[u8], method: ThresholdMethod, value: f64) -> f64 {
    let h = histogram(values);
    match method {
        ThresholdMethod::Otsu => otsu(&h),
        ThresholdMethod::Li => li(&h),
        ThresholdMethod::Triangle => triangle(&h),
        ThresholdMethod::Fixed => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn constant_images_threshold_at_their_value() {
        let h = histogram(&[7; 10]);
        assert_eq!((otsu(&h), li(&h), triangle(&h)), (7.0, 7.0, 7.0));
    }

    proptest! {
        /// Two well separated populations are always split between them.
        #[test]
        fn bimodal_images_split_between_the_modes(
            a in 0u8..60, b in 160u8..=255, na in 5usize..200, nb in 5usize..200
        ) {
            let mut v = vec![a; na];
            v.extend(std::iter::repeat_n(b, nb));
            let h = histogram(&v);
            for t in [otsu(&h), li(&h)] {
                prop_assert!(t >= f64::from(a) && t < f64::from(b), "{t}");
            }
        }
    }
}
