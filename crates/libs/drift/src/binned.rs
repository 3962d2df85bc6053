//! Statistics on the shares of two samples in common bins, binned as Evidently bins them: when the
//! reference has more than 20 distinct values, equal-width bins over both samples together, as
//! many as Sturges' rule gives (numpy's `histogram_bin_edges(…, bins="sturges")`); otherwise one
//! bin per distinct value (a count of nuclei is a category, not a continuum).
//!
//! - [`psi`]: the population stability index, `Σ (r − c)·ln(r / c)`, with Evidently's floor for
//!   empty bins (so one empty bin does not make it infinite); drift from 0.1.
//! - [`jensen_shannon`]: the Jensen–Shannon distance of the shares (no floor), natural logarithm,
//!   as `scipy.spatial.distance.jensenshannon`; drift from 0.1.
//! - [`hellinger`]: the Hellinger distance of the two densities over Sturges bins of the distinct
//!   values, as Evidently computes it for numerical features; drift from 0.1.

use crate::{StatsError, check_both, count_at_most, count_below, sorted};

/// Evidently bins by value when the reference has at most this many distinct values.
pub const MAX_DISTINCT_AS_CATEGORIES: usize = 20;

/// The share an empty bin gets in [`psi`], unless a non-empty bin is smaller (then a millionth
/// of the smallest).
pub const EMPTY_BIN_SHARE: f64 = 1e-4;

/// What becomes of an empty bin's zero share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyBins {
    /// Stays 0.
    Keep,
    /// Gets Evidently's floor ([`EMPTY_BIN_SHARE`]).
    Floor,
}

/// Equal-width bin edges over `values` by Sturges' rule, as numpy computes them: `⌈log2 n + 1⌉`
/// bins from the smallest to the largest value (one bin of width 1 around a constant).
///
/// ```
/// use cellops_drift::binned::sturges_edges;
/// assert_eq!(sturges_edges(&[0.0, 1.0, 2.0, 3.0]), [0.0, 1.0, 2.0, 3.0]);
/// assert_eq!(sturges_edges(&[5.0, 5.0]), [4.5, 5.5]);
/// ```
pub fn sturges_edges(values: &[f64]) -> Vec<f64> {
    sturges_edges_of(values.iter().copied())
}

/// [`sturges_edges`] over any sequence of values (one pass for the count and the range).
fn sturges_edges_of(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let (n, lo, hi) = values.fold((0usize, f64::INFINITY, f64::NEG_INFINITY), |(n, lo, hi), v| {
        (n + 1, lo.min(v), hi.max(v))
    });
    if n == 0 {
        return Vec::new();
    }
    let width = (hi - lo) / ((n as f64).log2() + 1.0);
    let (first, last) = if lo == hi { (lo - 0.5, hi + 0.5) } else { (lo, hi) };
    let bins = if width > 0.0 {
        ((last - first) / width).ceil() as usize
    } else {
        1
    };
    linspace(first, last, bins + 1)
}

/// numpy's `linspace(start, stop, num)`: `start + i·step`, the last exactly `stop`.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    let mut out: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    if let Some(last) = out.last_mut() {
        *last = stop;
    }
    out
}

/// How many of `values` fall in each bin of `edges` (ascending), as numpy's `histogram` with
/// given edges counts them: each bin includes its left edge, the last also its right edge, values
/// outside are not counted. No sorting: each value's bin by a binary search over the edges.
pub fn histogram(values: &[f64], edges: &[f64]) -> Vec<usize> {
    let bins = edges.len().saturating_sub(1);
    let mut counts = vec![0usize; bins];
    let Some(&last) = edges.last().filter(|_| bins > 0) else {
        return counts;
    };
    for &v in values {
        let at_or_below = edges.partition_point(|e| *e <= v);
        if at_or_below == 0 || v > last {
            continue;
        }
        counts[(at_or_below - 1).min(bins - 1)] += 1;
    }
    counts
}

/// Whether `values` hold more than `limit` distinct values (stops looking once they do).
fn more_distinct_than(values: &[f64], limit: usize) -> bool {
    let mut seen: Vec<f64> = Vec::with_capacity(limit + 1);
    for &v in values {
        if !seen.contains(&v) {
            seen.push(v);
            if seen.len() > limit {
                return true;
            }
        }
    }
    false
}

/// The shares of `reference` and `current` in Evidently's common bins (see the module).
pub fn shares(reference: &[f64], current: &[f64], empty: EmptyBins) -> Result<(Vec<f64>, Vec<f64>), StatsError> {
    check_both(reference, current)?;
    let (rn, cn) = (reference.len() as f64, current.len() as f64);
    let (mut rs, mut cs): (Vec<f64>, Vec<f64>) = if more_distinct_than(reference, MAX_DISTINCT_AS_CATEGORIES) {
        let edges = sturges_edges_of(reference.iter().chain(current).copied());
        let share = |s: &[f64], n: f64| histogram(s, &edges).into_iter().map(|k| k as f64 / n).collect();
        (share(reference, rn), share(current, cn))
    } else {
        let (r, c) = (sorted(reference), sorted(current));
        let mut keys: Vec<f64> = r.iter().chain(&c).copied().collect();
        keys.sort_unstable_by(f64::total_cmp);
        keys.dedup();
        let count = |s: &[f64], k: f64| (count_at_most(s, k) - count_below(s, k)) as f64;
        (
            keys.iter().map(|&k| count(&r, k) / rn).collect(),
            keys.iter().map(|&k| count(&c, k) / cn).collect(),
        )
    };
    if empty == EmptyBins::Floor {
        floor_empty(&mut rs);
        floor_empty(&mut cs);
    }
    Ok((rs, cs))
}

/// Evidently's floor: zero shares become [`EMPTY_BIN_SHARE`], or a millionth of the smallest
/// non-zero share when that is not larger than it.
fn floor_empty(shares: &mut [f64]) {
    let smallest = shares
        .iter()
        .copied()
        .filter(|&s| s != 0.0)
        .fold(f64::INFINITY, f64::min);
    let floor = if smallest <= EMPTY_BIN_SHARE {
        smallest / 1e6
    } else {
        EMPTY_BIN_SHARE
    };
    shares.iter_mut().filter(|s| **s == 0.0).for_each(|s| *s = floor);
}

/// The population stability index of `current` against `reference` (Evidently's binning and
/// empty-bin floor, natural logarithm).
///
/// ```
/// use cellops_drift::binned::psi;
/// assert_eq!(psi(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]).unwrap(), 0.0);
/// assert!(psi(&[1.0, 1.0, 2.0, 2.0], &[1.0, 2.0, 2.0, 2.0]).unwrap() > 0.1);
/// ```
pub fn psi(reference: &[f64], current: &[f64]) -> Result<f64, StatsError> {
    let (r, c) = shares(reference, current, EmptyBins::Floor)?;
    Ok(r.iter().zip(&c).map(|(r, c)| (r - c) * (r / c).ln()).sum())
}

/// The population stability index of two distributions already binned alike (shares over the
/// same bins, e.g. pooled grey-level histograms), with Evidently's empty-bin floor.
///
/// ```
/// use cellops_drift::binned::psi_of_shares;
/// assert_eq!(psi_of_shares(&[0.5, 0.5], &[0.5, 0.5]), 0.0);
/// // (0.5 − 0.9)·ln(0.5/0.9) + (0.5 − 0.1)·ln(0.5/0.1)
/// assert!((psi_of_shares(&[0.5, 0.5], &[0.9, 0.1]) - 0.8789).abs() < 1e-4);
/// ```
pub fn psi_of_shares(reference: &[f64], current: &[f64]) -> f64 {
    let (mut r, mut c) = (reference.to_vec(), current.to_vec());
    floor_empty(&mut r);
    floor_empty(&mut c);
    r.iter().zip(&c).map(|(r, c)| (r - c) * (r / c).ln()).sum()
}

/// `x·ln(x/y)`, 0 for `x = 0` (SciPy's `rel_entr` on shares).
fn rel_entr(x: f64, y: f64) -> f64 {
    if x == 0.0 { 0.0 } else { x * (x / y).ln() }
}

/// The Jensen–Shannon distance (square root of the divergence, natural logarithm) between the
/// binned shares of the two samples, without the empty-bin floor.
pub fn jensen_shannon(reference: &[f64], current: &[f64]) -> Result<f64, StatsError> {
    let (p, q) = shares(reference, current, EmptyBins::Keep)?;
    let (sp, sq) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    let divergence: f64 = p
        .iter()
        .zip(&q)
        .map(|(p, q)| {
            let (p, q) = (p / sp, q / sq);
            let m = (p + q) / 2.0;
            rel_entr(p, m) + rel_entr(q, m)
        })
        .sum();
    Ok((divergence / 2.0).sqrt())
}

/// The Hellinger distance as Evidently computes it for a numerical feature: both samples'
/// densities over Sturges bins of the distinct values of the two together, their Bhattacharyya
/// coefficient `Σ √(p·q)·width` clipped to 0..=1, and `√(1 − coefficient)`.
pub fn hellinger(reference: &[f64], current: &[f64]) -> Result<f64, StatsError> {
    check_both(reference, current)?;
    let mut keys: Vec<f64> = reference.iter().chain(current).copied().collect();
    keys.sort_unstable_by(f64::total_cmp);
    keys.dedup();
    let edges = sturges_edges(&keys);
    let density = |s: &[f64]| -> Vec<f64> {
        let counts = histogram(s, &edges);
        let total = counts.iter().sum::<usize>() as f64;
        counts
            .iter()
            .zip(edges.windows(2))
            .map(|(&k, e)| k as f64 / (e[1] - e[0]) / total)
            .collect()
    };
    let (p, q) = (density(reference), density(current));
    let (first, last) = (edges[0], edges[edges.len() - 1]);
    let width = (last - first) / (edges.len() - 1) as f64;
    let coefficient: f64 = p.iter().zip(&q).map(|(p, q)| (p * q).sqrt() * width).sum();
    Ok((1.0 - coefficient.clamp(0.0, 1.0)).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_like_numpy() {
        let s = [3.0, 0.5, 1.0, 0.0, 2.0, 1.0];
        assert_eq!(histogram(&s, &[0.0, 1.0, 2.0, 3.0]), [2, 2, 2]);
        assert_eq!(histogram(&s, &[0.5, 1.5]), [3]);
    }

    proptest::proptest! {
        #[test]
        fn histogram_agrees_with_searching_the_sorted_values(
            values in proptest::collection::vec(-50i32..50, 0..60),
            cuts in proptest::collection::btree_set(-60i32..60, 0..8),
        ) {
            let values: Vec<f64> = values.into_iter().map(|v| f64::from(v) / 4.0).collect();
            let edges: Vec<f64> = cuts.into_iter().map(|c| f64::from(c) / 4.0).collect();
            let s = crate::sorted(&values);
            let k = edges.len().saturating_sub(1);
            // numpy: searchsorted left at every edge but the last, right at the last.
            let cumulative: Vec<usize> = edges
                .iter()
                .enumerate()
                .map(|(i, &e)| if i == k { count_at_most(&s, e) } else { count_below(&s, e) })
                .collect();
            let expected: Vec<usize> = cumulative.windows(2).map(|w| w[1] - w[0]).collect();
            proptest::prop_assert_eq!(histogram(&values, &edges), expected);
        }
    }

    #[test]
    fn few_distinct_values_are_binned_by_value() {
        let (r, c) = shares(&[1.0, 1.0, 2.0, 2.0], &[2.0, 3.0], EmptyBins::Keep).expect("the statistic");
        assert_eq!((r, c), (vec![0.5, 0.5, 0.0], vec![0.0, 0.5, 0.5]));
        let (r, _) = shares(&[1.0, 1.0, 2.0, 2.0], &[2.0, 3.0], EmptyBins::Floor).expect("the statistic");
        assert_eq!(r, [0.5, 0.5, EMPTY_BIN_SHARE]);
    }

    #[test]
    fn distances_of_a_sample_to_itself_are_zero_and_of_disjoint_ones_large() {
        let a: Vec<f64> = (0..200).map(|i| f64::from(i) * 0.1).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 100.0).collect();
        assert_eq!(jensen_shannon(&a, &a).expect("the statistic"), 0.0);
        assert!(hellinger(&a, &a).expect("the statistic") < 1e-7);
        assert!((jensen_shannon(&a, &b).expect("the statistic") - std::f64::consts::LN_2.sqrt()).abs() < 1e-12);
        assert_eq!(hellinger(&a, &b).expect("the statistic"), 1.0);
        assert!(psi(&a, &b).expect("the statistic") > 10.0);
    }
}
