//! Drift statistics for the Monitor stage: how far the images (and the model's answers) of a
//! window have moved from a model's reference, with the tests and distances users know from
//! Evidently, NannyML and whylogs, computed the way SciPy and Evidently compute them so that a
//! number here means what it means there (each is tested against their values on fixtures).
//!
//! - [`ks`]: the two-sample Kolmogorov–Smirnov test (statistic and p-value, as `scipy.stats.ks_2samp`).
//! - [`distance`]: the Wasserstein distance (as `scipy.stats.wasserstein_distance`) and Evidently's
//!   normed Wasserstein distance.
//! - [`binned`]: the statistics on binned shares, with Evidently's binning: the population
//!   stability index (PSI, with its empty-bin floor), the Jensen–Shannon distance (as
//!   `scipy.spatial.distance.jensenshannon`, natural logarithm) and the Hellinger distance.
//! - [`thresholds`]: warn and alert levels calibrated from the reference itself (bootstrap chunks
//!   of the window's size), the usual constants as a fallback, and a verdict that says "not
//!   enough data" about a window with too few images, never "no drift".
//!
//!
//! What is watched in an input image is `cellops_dataset::ops::features` (`build` records it in
//! the manifest for every source image).
//!
//! Samples are plain `f64` slices, one value per image (or per nucleus); every function refuses an
//! empty sample or a value that is not finite with a [`StatsError`]. No burn, no I/O.

pub mod binned;
pub mod distance;
pub mod ks;
pub mod thresholds;

/// Which of the two samples a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// The reference (the model's training and validation images).
    Reference,
    /// The window being checked.
    Current,
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Reference => "reference",
            Self::Current => "current",
        })
    }
}

/// Why a statistic could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// A sample holds no values.
    #[error("the {0} sample is empty")]
    Empty(Sample),
    /// A sample holds NaN or an infinity.
    #[error("the {sample} sample holds a value that is not finite (at index {index})")]
    NotFinite {
        /// The sample.
        sample: Sample,
        /// The value's index in it.
        index: usize,
    },
    /// The two samples together span more than an `f64` can hold (bins and areas overflow).
    #[error("the samples span a range too wide to compute with (from {low:e} to {high:e})")]
    RangeTooWide {
        /// The smallest value.
        low: f64,
        /// The largest value.
        high: f64,
    },
}

/// Checks a sample: not empty, every value finite.
fn check(values: &[f64], sample: Sample) -> Result<(), StatsError> {
    if values.is_empty() {
        return Err(StatsError::Empty(sample));
    }
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(StatsError::NotFinite { sample, index }),
        None => Ok(()),
    }
}

/// Checks both samples ([`check`]) and that their range is finite.
fn check_both(reference: &[f64], current: &[f64]) -> Result<(), StatsError> {
    check(reference, Sample::Reference)?;
    check(current, Sample::Current)?;
    let (low, high) = reference
        .iter()
        .chain(current)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if (high - low).is_finite() {
        Ok(())
    } else {
        Err(StatsError::RangeTooWide { low, high })
    }
}

/// The values sorted ascending (finite values: a total order).
fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_unstable_by(f64::total_cmp);
    v
}

/// Walks the distinct values of two sorted samples in ascending order, calling
/// `f(value, at_most_a, at_most_b, next)`: how many values of each sample are `<= value`, and the
/// next distinct value of the two (`None` after the last). One pass, no searching.
fn walk(a: &[f64], b: &[f64], mut f: impl FnMut(f64, usize, usize, Option<f64>)) {
    let smallest = |i: usize, j: usize| match (a.get(i), b.get(j)) {
        (Some(&x), Some(&y)) => Some(x.min(y)),
        (Some(&x), None) | (None, Some(&x)) => Some(x),
        (None, None) => None,
    };
    let (mut i, mut j) = (0, 0);
    while let Some(v) = smallest(i, j) {
        while a.get(i).is_some_and(|&x| x <= v) {
            i += 1;
        }
        while b.get(j).is_some_and(|&x| x <= v) {
            j += 1;
        }
        f(v, i, j, smallest(i, j));
    }
}

/// How many of the sorted `values` are `<= x` (numpy's `searchsorted(x, side="right")`).
fn count_at_most(sorted: &[f64], x: f64) -> usize {
    sorted.partition_point(|v| *v <= x)
}

/// How many of the sorted `values` are `< x` (numpy's `searchsorted(x, side="left")`).
fn count_below(sorted: &[f64], x: f64) -> usize {
    sorted.partition_point(|v| *v < x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_non_finite_samples_are_refused_by_name() {
        assert_eq!(check_both(&[], &[1.0]), Err(StatsError::Empty(Sample::Reference)));
        assert_eq!(check_both(&[1.0], &[]), Err(StatsError::Empty(Sample::Current)));
        let wide = check_both(&[-1e308], &[1e308]).expect_err("an error");
        assert!(matches!(wide, StatsError::RangeTooWide { .. }), "{wide}");
        let e = check_both(&[1.0], &[2.0, f64::NAN]).expect_err("an error");
        assert_eq!(
            e.to_string(),
            "the current sample holds a value that is not finite (at index 1)"
        );
    }

    #[test]
    fn the_walk_counts_what_searching_counts() {
        let (a, b) = ([1.0, 2.0, 2.0, 5.0], [0.0, 2.0, 3.0]);
        let mut seen = Vec::new();
        walk(&a, &b, |v, i, j, next| seen.push((v, i, j, next)));
        for &(v, i, j, _) in &seen {
            assert_eq!((i, j), (count_at_most(&a, v), count_at_most(&b, v)));
        }
        let values: Vec<f64> = seen.iter().map(|s| s.0).collect();
        assert_eq!(values, [0.0, 1.0, 2.0, 3.0, 5.0]);
        assert_eq!(seen.last().map(|s| s.3), Some(None));
    }

    #[test]
    fn search_counts_match_numpy_sides() {
        let s = [1.0, 2.0, 2.0, 3.0];
        assert_eq!((count_below(&s, 2.0), count_at_most(&s, 2.0)), (1, 3));
        assert_eq!((count_below(&s, 0.0), count_at_most(&s, 9.0)), (0, 4));
    }
}
