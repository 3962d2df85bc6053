//! The two-sample Kolmogorov–Smirnov test, two-sided, as `scipy.stats.ks_2samp(reference,
//! current)` computes it: the statistic is the largest gap between the two empirical CDFs; the
//! p-value is exact (lattice-path counting) when neither sample has more than 10,000 values, and
//! asymptotic otherwise. The asymptotic p-value here is Kolmogorov's limiting distribution at
//! `√(n·m/(n+m))·D` (`scipy.special.kolmogorov`); SciPy's own asymptotic branch uses the
//! finite-n distribution `kstwo` instead, so above 10,000 values the two differ slightly.
//! Evidently's KS drift test is this p-value (drift when it is at most 0.05).

use crate::{StatsError, check_both, sorted, walk};

/// Above this many values in either sample the p-value is asymptotic (SciPy's `MAX_AUTO_N`).
pub const MAX_EXACT_N: usize = 10_000;

/// How the p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KsMethod {
    /// Counting the lattice paths that stay within the statistic (Hodges; Viehmann's recursion).
    Exact,
    /// Kolmogorov's limiting distribution.
    Asymptotic,
}

/// The test's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsTest {
    /// The largest absolute difference between the two empirical CDFs (in 0..=1).
    pub statistic: f64,
    /// The probability of a statistic at least this large if both samples came from one
    /// distribution.
    pub p_value: f64,
    /// How the p-value was computed.
    pub method: KsMethod,
}

/// The two-sided two-sample KS test of `reference` against `current`.
///
/// ```
/// use cellops_drift::ks::{KsMethod, ks_2samp};
/// let t = ks_2samp(&[1.0, 2.0, 3.0, 4.0], &[3.0, 4.0, 5.0, 6.0]).unwrap();
/// assert_eq!((t.statistic, t.method), (0.5, KsMethod::Exact));
/// assert!((t.p_value - 0.771_428_571_428_571_4).abs() < 1e-12);
/// ```
pub fn ks_2samp(reference: &[f64], current: &[f64]) -> Result<KsTest, StatsError> {
    check_both(reference, current)?;
    let (a, b) = (sorted(reference), sorted(current));
    let (n1, n2) = (a.len(), b.len());
    let (mut above, mut below) = (f64::NEG_INFINITY, f64::INFINITY);
    walk(&a, &b, |_, i, j, _| {
        let gap = i as f64 / n1 as f64 - j as f64 / n2 as f64;
        above = above.max(gap);
        below = below.min(gap);
    });
    let below = (-below).clamp(0.0, 1.0);
    let d = if below > above { below } else { above };
    if n1.max(n2) <= MAX_EXACT_N
        && let Some((statistic, p)) = exact(n1, n2, d)
    {
        return Ok(KsTest {
            statistic,
            p_value: p.clamp(0.0, 1.0),
            method: KsMethod::Exact,
        });
    }
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let en = m * n / (m + n);
    Ok(KsTest {
        statistic: d,
        p_value: kolmogorov_sf(en.sqrt() * d).clamp(0.0, 1.0),
        method: KsMethod::Asymptotic,
    })
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The exact p-value for sample sizes `n1`, `n2` and statistic `d`: the statistic snapped to the
/// lattice (`h / lcm`) and the probability; `None` where the floating-point computation fails
/// (SciPy then falls back to the asymptotic p-value, and so does [`ks_2samp`]).
fn exact(n1: usize, n2: usize, d: f64) -> Option<(f64, f64)> {
    let g = gcd(n1, n2);
    let lcm = (n1 / g) * n2;
    let h = (d * lcm as f64).round_ties_even() as usize;
    let d = h as f64 / lcm as f64;
    if h == 0 {
        return Some((d, 1.0));
    }
    let p = if n1 == n2 {
        prob_outside_square(n1, h)
    } else {
        prob_outside_band(n1, n2, g, h)?
    };
    (p.is_finite() && (0.0..=1.0).contains(&p)).then_some((d, p))
}

/// Equal sizes `n`: the share of lattice paths that leave the band `|x − y| < h`.
fn prob_outside_square(n: usize, h: usize) -> f64 {
    let (n, h) = (n as f64, h as f64);
    let mut p = 0.0;
    let mut k = (n / h).floor();
    while k >= 0.0 {
        let mut p1 = 1.0;
        let mut j = 0.0;
        while j < h {
            p1 = (n - k * h - j) * p1 / (n + k * h + j + 1.0);
            j += 1.0;
        }
        p = p1 * (1.0 - p);
        k -= 1.0;
    }
    2.0 * p
}

/// Unequal sizes: one minus the share of lattice paths from (0, 0) to (m, n) that stay strictly
/// inside `|x/m − y/n| < h / lcm(m, n)`, computed directly as Viehmann's recursion does (one
/// sliding column; no large binomial coefficients).
fn prob_outside_band(m: usize, n: usize, g: usize, h: usize) -> Option<f64> {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (mg, ng) = ((m / g) as f64, (n / g) as f64);
    let hf = h as f64;
    let mut minj = 0usize;
    let mut maxj = ((hf / mg).ceil() as usize).min(n + 1);
    let mut curlen = maxj - minj;
    let len = (2 * maxj + 2).min(n + 1);
    let mut a = vec![1.0f64; len];
    a.get_mut(minj..maxj)?.iter_mut().for_each(|v| *v = 0.0);
    for i in 1..=m {
        let (lastminj, lastlen) = (minj, curlen);
        let low = ((ng * i as f64 - hf) / mg).floor() + 1.0;
        minj = if low > 0.0 { (low as usize).min(n) } else { 0 };
        maxj = (((ng * i as f64 + hf) / mg).ceil() as usize).min(n + 1);
        if maxj <= minj {
            return Some(1.0);
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        for jj in 0..maxj - minj {
            let j = (jj + minj) as f64;
            val = (a.get(jj + minj - lastminj)? * i as f64 + val * j) / (i as f64 + j);
            *a.get_mut(jj)? = val;
        }
        curlen = maxj - minj;
        // Entries the window left behind count as outside again.
        for v in a.iter_mut().take(lastlen).skip(curlen) {
            *v = 1.0;
        }
    }
    a.get(maxj - minj - 1).copied()
}

/// Kolmogorov's limiting distribution's survival function, `P(K > y)`
/// (`scipy.special.kolmogorov`).
///
/// ```
/// use cellops_drift::ks::kolmogorov_sf;
/// assert_eq!(kolmogorov_sf(0.0), 1.0);
/// assert!((kolmogorov_sf(1.0) - 0.269_999_671_677_355_4).abs() < 1e-12);
/// ```
pub fn kolmogorov_sf(y: f64) -> f64 {
    use std::f64::consts::PI;
    if y <= 0.0 {
        return 1.0;
    }
    if y < 1.0 {
        // Small y: the CDF's theta-function series converges fast.
        let w = PI * PI / (8.0 * y * y);
        let sum: f64 = (1..=20).map(|k| (-((2 * k - 1) as f64).powi(2) * w).exp()).sum();
        return 1.0 - (2.0 * PI).sqrt() / y * sum;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let term = (-2.0 * (k * k) as f64 * y * y).exp();
        if term == 0.0 {
            break;
        }
        sum += if k % 2 == 1 { term } else { -term };
    }
    2.0 * sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_samples_have_no_gap_and_p_one() {
        let t = ks_2samp(&[1.0, 2.0, 3.0], &[3.0, 1.0, 2.0]).expect("the statistic");
        assert_eq!((t.statistic, t.p_value), (0.0, 1.0));
    }

    #[test]
    fn disjoint_samples_have_the_largest_gap() {
        let t = ks_2samp(&[1.0, 2.0, 3.0], &[10.0, 11.0, 12.0, 13.0, 14.0]).expect("the statistic");
        assert_eq!(t.statistic, 1.0);
        assert!(t.p_value < 0.05, "{t:?}");
        // Symmetric in the two samples.
        let u = ks_2samp(&[10.0, 11.0, 12.0, 13.0, 14.0], &[1.0, 2.0, 3.0]).expect("the statistic");
        assert_eq!(t, u);
    }

    #[test]
    fn large_samples_use_the_asymptotic_distribution() {
        let a: Vec<f64> = (0..10_001).map(|i| i as f64).collect();
        let b: Vec<f64> = (0..500).map(|i| i as f64 * 20.0).collect();
        assert_eq!(ks_2samp(&a, &b).expect("the statistic").method, KsMethod::Asymptotic);
    }
}
