//! Distances between two samples' distributions that need no bins: the first Wasserstein
//! (earth mover's) distance, as `scipy.stats.wasserstein_distance(u, v)`, and Evidently's normed
//! form (divided by the reference's standard deviation, so that 0.1 means "moved by a tenth of
//! the reference's spread" whatever the feature's unit).

use crate::{StatsError, check_both, sorted, walk};

/// Evidently's floor on the reference's standard deviation in [`wasserstein_normed`].
pub const MIN_NORM: f64 = 0.001;

/// The first Wasserstein distance between the empirical distributions of `u` and `v`: the area
/// between their CDFs, in the values' unit.
///
/// ```
/// use cellops_drift::distance::wasserstein;
/// assert_eq!(wasserstein(&[0.0, 1.0, 3.0], &[5.0, 6.0, 8.0]).unwrap(), 5.0);
/// ```
pub fn wasserstein(u: &[f64], v: &[f64]) -> Result<f64, StatsError> {
    check_both(u, v)?;
    let (su, sv) = (sorted(u), sorted(v));
    let (nu, nv) = (su.len() as f64, sv.len() as f64);
    let mut total = 0.0;
    walk(&su, &sv, |value, i, j, next| {
        if let Some(next) = next {
            total += (i as f64 / nu - j as f64 / nv).abs() * (next - value);
        }
    });
    Ok(total)
}

/// The population standard deviation (numpy's `std`, `ddof = 0`).
///
/// ```
/// assert_eq!(cellops_drift::distance::std_dev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap(), 2.0);
/// ```
pub fn std_dev(values: &[f64]) -> Result<f64, StatsError> {
    check_both(values, values)?;
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    Ok((values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt())
}

/// Evidently's normed Wasserstein distance: [`wasserstein`] divided by the reference's standard
/// deviation (at least [`MIN_NORM`]). Evidently calls drift from 0.1.
pub fn wasserstein_normed(reference: &[f64], current: &[f64]) -> Result<f64, StatsError> {
    let distance = wasserstein(reference, current)?;
    Ok(distance / std_dev(reference)?.max(MIN_NORM))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn wasserstein_is_a_symmetric_distance_that_follows_a_shift(
            u in prop::collection::vec(-1e3f64..1e3, 1..40),
            v in prop::collection::vec(-1e3f64..1e3, 1..40),
            shift in -100f64..100.0,
        ) {
            let d = wasserstein(&u, &v).expect("the statistic");
            prop_assert!(d >= 0.0);
            prop_assert!((d - wasserstein(&v, &u).expect("the statistic")).abs() <= 1e-9 * d.max(1.0));
            prop_assert!(wasserstein(&u, &u).expect("the statistic") == 0.0);
            // Moving every value by `shift` moves the distribution by exactly |shift|.
            let moved: Vec<f64> = u.iter().map(|x| x + shift).collect();
            prop_assert!((wasserstein(&u, &moved).expect("the statistic") - shift.abs()).abs() <= 1e-9 * 1e3);
        }
    }

    #[test]
    fn the_norm_has_a_floor_for_a_constant_reference() {
        assert_eq!(
            wasserstein_normed(&[2.0, 2.0], &[2.5]).expect("the statistic"),
            0.5 / MIN_NORM
        );
    }
}
