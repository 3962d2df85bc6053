//! The size model: a ridge regression from the model's style on an image at its own size to the
//! log of the factor that brings its nuclei to the model's nucleus diameter. It gives
//! [`Predictor::estimate_scale`] its starting factor, so that the estimate does not hinge on a
//! first pass at the image's own size, where a model trained on nuclei of one size can lose
//! nuclei four times larger altogether.
//!
//! Fitted on training images at several sizes each (the image rescaled by a few factors around
//! its own, the target moved by the same factor), with the ridge penalty chosen by grouped
//! cross-validation (the sizes of one image stay in one fold).

use cellops_dataset::Raster;
pub use cellops_formats::bundle::SizeModel;

use crate::inference::{PredictError, Predictor};

/// One fitting sample: a style and the log factor its image needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeSample {
    /// [`Predictor::size_style`] of the image at the size it was given at.
    pub style: Vec<f32>,
    /// The natural log of the factor that brings its nuclei to the model's diameter.
    pub log_factor: f64,
    /// The source image (samples of one image are never split across folds).
    pub group: usize,
}

/// The sizes each training image is seen at, as factors of its own size: half to double.
pub const SAMPLE_FACTORS: [f64; 3] = [0.5, 1.0, 2.0];
/// Cross-validation folds.
const FOLDS: usize = 5;
/// Ridge penalties tried, relative to the number of samples.
const LAMBDAS: [f64; 7] = [1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0];

/// The samples of one training image whose nuclei need `true_factor`: its style at each of
/// [`SAMPLE_FACTORS`] (the image rescaled by `s` needs `true_factor / s`).
pub fn samples_of(
    predictor: &Predictor,
    image: &Raster,
    true_factor: f64,
    group: usize,
) -> Result<Vec<SizeSample>, PredictError> {
    SAMPLE_FACTORS
        .iter()
        .map(|&s| {
            Ok(SizeSample {
                style: predictor.size_style(image, s)?,
                log_factor: (true_factor / s).ln(),
                group,
            })
        })
        .collect()
}

/// Fits the size model; `None` with fewer than two groups or no samples of one width.
pub fn fit(samples: &[SizeSample]) -> Option<SizeModel> {
    let width = samples.first()?.style.len();
    let groups = samples
        .iter()
        .map(|s| s.group)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if groups < 2 || width == 0 || samples.iter().any(|s| s.style.len() != width) {
        return None;
    }
    let (mean, scale) = standardisation(samples, width);
    let rows: Vec<Vec<f64>> = samples
        .iter()
        .map(|s| {
            s.style
                .iter()
                .zip(&mean)
                .zip(&scale)
                .map(|((&x, m), sd)| (f64::from(x) - m) / sd)
                .collect()
        })
        .collect();
    let y: Vec<f64> = samples.iter().map(|s| s.log_factor).collect();
    if y.iter().any(|v| !v.is_finite()) {
        return None;
    }
    // Groups numbered 0.. in order of appearance, so that every fold holds some.
    let mut numbers = std::collections::BTreeMap::new();
    let fold_of: Vec<usize> = samples
        .iter()
        .map(|s| {
            let next = numbers.len();
            *numbers.entry(s.group).or_insert(next)
        })
        .collect();
    let folds = FOLDS.min(groups);
    let n = samples.len() as f64;
    let (lambda, cv_mse) = LAMBDAS
        .iter()
        .map(|&l| (l * n, cross_validated_mse(&rows, &y, &fold_of, folds, l * n)))
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    let all: Vec<usize> = (0..rows.len()).collect();
    let (weights, intercept) = ridge(&rows, &y, &all, lambda)?;
    if !(cv_mse.is_finite() && intercept.is_finite() && weights.iter().all(|w| w.is_finite())) {
        return None;
    }
    Some(SizeModel {
        mean,
        scale,
        weights,
        intercept,
        lambda,
        samples: samples.len(),
        cv_rmse_log2: cv_mse.sqrt() / std::f64::consts::LN_2,
    })
}

/// Each feature's mean and standard deviation (1 where it does not vary).
fn standardisation(samples: &[SizeSample], width: usize) -> (Vec<f64>, Vec<f64>) {
    let n = samples.len() as f64;
    let mut mean = vec![0.0; width];
    for s in samples {
        mean.iter_mut().zip(&s.style).for_each(|(m, &x)| *m += f64::from(x) / n);
    }
    let mut var = vec![0.0; width];
    for s in samples {
        for ((v, &x), m) in var.iter_mut().zip(&s.style).zip(&mean) {
            *v += (f64::from(x) - m).powi(2) / n;
        }
    }
    let scale = var
        .iter()
        .map(|v| if *v > 1e-12 && v.is_finite() { v.sqrt() } else { 1.0 })
        .collect();
    (mean, scale)
}

/// The mean squared error of ridge fits with `lambda`, each predicting the fold it left out
/// (`fold_of`: each sample's group number, 0..; folds by group).
fn cross_validated_mse(rows: &[Vec<f64>], y: &[f64], fold_of: &[usize], folds: usize, lambda: f64) -> f64 {
    let mut sse = 0.0;
    for k in 0..folds {
        let (test, train): (Vec<usize>, Vec<usize>) = (0..rows.len()).partition(|&i| fold_of[i] % folds == k);
        let Some((w, b)) = ridge(rows, y, &train, lambda) else {
            return f64::INFINITY;
        };
        sse += test
            .iter()
            .map(|&i| (dot(&rows[i], &w) + b - y[i]).powi(2))
            .sum::<f64>();
    }
    sse / rows.len() as f64
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Ridge regression on the rows `use_rows`: weights and intercept (not penalised).
fn ridge(rows: &[Vec<f64>], y: &[f64], use_rows: &[usize], lambda: f64) -> Option<(Vec<f64>, f64)> {
    let width = rows.first()?.len();
    let n = use_rows.len() as f64;
    if use_rows.is_empty() {
        return None;
    }
    // Centre on these rows, so the intercept is their mean.
    let mut mx = vec![0.0; width];
    let mut my = 0.0;
    for &i in use_rows {
        mx.iter_mut().zip(&rows[i]).for_each(|(m, x)| *m += x / n);
        my += y[i] / n;
    }
    let mut a = vec![0.0; width * width];
    let mut rhs = vec![0.0; width];
    for &i in use_rows {
        let xc: Vec<f64> = rows[i].iter().zip(&mx).map(|(x, m)| x - m).collect();
        for (r, &xr) in xc.iter().enumerate() {
            rhs[r] += xr * (y[i] - my);
            for (c, &xcc) in xc.iter().enumerate().skip(r) {
                a[r * width + c] += xr * xcc;
            }
        }
    }
    for r in 0..width {
        a[r * width + r] += lambda;
        for c in 0..r {
            a[r * width + c] = a[c * width + r];
        }
    }
    let w = cholesky_solve(&mut a, &rhs, width)?;
    let b = my - dot(&mx, &w);
    Some((w, b))
}

/// Solves `a x = b` for a symmetric positive definite `a` (row-major, `n × n`, overwritten by
/// its Cholesky factor); `None` when it is not positive definite.
fn cholesky_solve(a: &mut [f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let d = a[j * n + j] - (0..j).map(|k| a[j * n + k].powi(2)).sum::<f64>();
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let s = a[i * n + j] - (0..j).map(|k| a[i * n + k] * a[j * n + k]).sum::<f64>();
            a[i * n + j] = s / d;
        }
    }
    let mut z = vec![0.0; n];
    for i in 0..n {
        z[i] = (b[i] - (0..i).map(|k| a[i * n + k] * z[k]).sum::<f64>()) / a[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (z[i] - (i + 1..n).map(|k| a[k * n + i] * x[k]).sum::<f64>()) / a[i * n + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(style: Vec<f32>, log_factor: f64, group: usize) -> SizeSample {
        SizeSample {
            style,
            log_factor,
            group,
        }
    }

    #[test]
    fn cholesky_solves_a_small_system() {
        // [[4, 2], [2, 3]] x = [2, 1] → x = [0.5, 0].
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        let x = cholesky_solve(&mut a, &[2.0, 1.0], 2).expect("positive definite");
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
        assert!(cholesky_solve(&mut [0.0, 1.0, 1.0, 0.0], &[1.0, 1.0], 2).is_none());
    }

    #[test]
    fn recovers_a_linear_rule_and_ignores_noise_features() {
        // log factor = 0.8·x0 − 0.3·x1 + 0.2; x2 is unrelated.
        let samples: Vec<SizeSample> = (0..60)
            .map(|i| {
                let (x0, x1, x2) = ((i % 7) as f32, (i % 5) as f32 * 0.5, ((i * 37) % 11) as f32);
                sample(vec![x0, x1, x2], 0.8 * f64::from(x0) - 0.3 * f64::from(x1) + 0.2, i / 3)
            })
            .collect();
        let m = fit(&samples).expect("fitted");
        assert_eq!(m.samples, 60);
        assert!(m.cv_rmse_log2 < 0.05, "{m:?}");
        let y = m.log_factor(&[3.0, 1.0, 5.0]).expect("a factor");
        assert!((y - (2.4 - 0.3 + 0.2)).abs() < 0.05, "{y}");
    }

    #[test]
    fn refuses_what_cannot_be_fitted() {
        assert!(fit(&[]).is_none());
        // One image only: nothing to cross-validate on.
        let one = vec![sample(vec![1.0], 0.0, 0), sample(vec![2.0], 1.0, 0)];
        assert!(fit(&one).is_none());
        let ragged = vec![sample(vec![1.0], 0.0, 0), sample(vec![2.0, 1.0], 1.0, 1)];
        assert!(fit(&ragged).is_none());
        let not_finite = vec![sample(vec![1.0], f64::NAN, 0), sample(vec![2.0], 1.0, 1)];
        assert!(fit(&not_finite).is_none());
    }

    #[test]
    fn groups_of_any_numbers_fill_every_fold() {
        // Groups 0, 10, 20, …: numbered by appearance, every fold has a training set.
        let samples: Vec<SizeSample> = (0..20)
            .map(|i| {
                sample(
                    vec![i as f32, (i % 3) as f32],
                    0.5 * f64::from(i),
                    10 * (i as usize / 2),
                )
            })
            .collect();
        let m = fit(&samples).expect("fitted");
        assert!(m.cv_rmse_log2.is_finite(), "{m:?}");
    }
}
