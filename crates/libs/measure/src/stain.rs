//! Colour deconvolution of brightfield immunohistochemistry (Ruifrok & Johnston, 2001) and DAB
//! scoring.
//!
//! Each RGB pixel `I` becomes optical densities `OD_c = −log10(max(I_c / I0_c, 10⁻⁶))` (`I0` the
//! unstained background, usually 255), and the stain amounts are `OD · M⁻¹`, where the rows of
//! `M` are the unit OD vectors of haematoxylin, DAB and a residual (by default the normalised cross
//! product of the first two, as QuPath does). Negative amounts are clipped to 0, as scikit-image's
//! `separate_stains` does; its outputs are scaled by 1/6 (`log(10⁻⁶)` normalisation), so ours are
//! exactly 6× scikit-image's for the same matrix (checked by `bench/stain_reference.py`).
//!
//! A nucleus is scored by the mean DAB optical density over its pixels against the parameter
//! file's thresholds: negative, 1+ (weak), 2+ (moderate), 3+ (strong). The image's positive
//! percentage is the share of 1+ to 3+ nuclei and its H-score `1·%1+ + 2·%2+ + 3·%3+` (0–300).

use serde::Serialize;

use cellops_formats::params::{DabThresholds, StainVectors};

/// The deconvolution matrix of a stain set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StainMatrix {
    /// Unit OD vectors (rows): haematoxylin, DAB, residual.
    pub vectors: [[f64; 3]; 3],
    /// `vectors⁻¹`: OD (row vector) times this gives the stain amounts.
    pub inverse: [[f64; 3]; 3],
}

impl StainMatrix {
    /// The matrix of `vectors`, or `None` when they are degenerate (zero or linearly dependent).
    ///
    /// ```
    /// use cellops_formats::params::StainVectors;
    /// use cellops_measure::stain::StainMatrix;
    /// let m = StainMatrix::new(&StainVectors::default()).expect("H-DAB is invertible");
    /// // Pure haematoxylin of OD 0.5 is 0.5 haematoxylin and no DAB.
    /// let h = m.vectors[0];
    /// let amounts = m.amounts([0.5 * h[0], 0.5 * h[1], 0.5 * h[2]]);
    /// assert!((amounts[0] - 0.5).abs() < 1e-12 && amounts[1].abs() < 1e-12);
    /// ```
    pub fn new(v: &StainVectors) -> Option<Self> {
        let (vectors, inverse) = v.basis()?;
        Some(Self { vectors, inverse })
    }

    /// Stain amounts (haematoxylin, DAB, residual) of an optical-density triple, negatives kept.
    pub fn amounts(&self, od: [f64; 3]) -> [f64; 3] {
        cellops_formats::params::stain_amounts(&self.inverse, od)
    }

    /// Haematoxylin and DAB optical density of every pixel of an interleaved image with at least
    /// three channels (R, G, B first; others ignored), clipped at 0.
    pub fn deconvolve<S: Copy + Into<f64>>(
        &self,
        samples: &[S],
        channels: usize,
        background: [f64; 3],
    ) -> (Vec<f32>, Vec<f32>) {
        let n = samples.len().checked_div(channels).unwrap_or(0);
        let mut h = Vec::with_capacity(n);
        let mut d = Vec::with_capacity(n);
        if channels < 3 {
            return (vec![0.0; n], vec![0.0; n]);
        }
        for px in samples.chunks_exact(channels) {
            let od = [0, 1, 2].map(|c| -(px[c].into() / background[c]).max(1e-6).log10());
            let a = self.amounts(od);
            h.push(a[0].max(0.0) as f32);
            d.push(a[1].max(0.0) as f32);
        }
        (h, d)
    }
}

/// DAB staining class of a nucleus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum DabClass {
    /// Below the weak threshold.
    #[serde(rename = "negative")]
    Negative,
    /// Weak (1+).
    #[serde(rename = "1+")]
    Weak,
    /// Moderate (2+).
    #[serde(rename = "2+")]
    Moderate,
    /// Strong (3+).
    #[serde(rename = "3+")]
    Strong,
}

impl DabClass {
    /// The class of a mean DAB optical density.
    ///
    /// ```
    /// use cellops_formats::params::DabThresholds;
    /// use cellops_measure::stain::DabClass;
    /// let t = DabThresholds { weak: 0.2, moderate: 0.4, strong: 0.6 };
    /// assert_eq!(DabClass::of(0.1, &t), DabClass::Negative);
    /// assert_eq!(DabClass::of(0.4, &t), DabClass::Moderate);
    /// assert_eq!(DabClass::of(2.0, &t).score(), 3);
    /// ```
    pub fn of(od: f64, t: &DabThresholds) -> Self {
        if od >= t.strong {
            DabClass::Strong
        } else if od >= t.moderate {
            DabClass::Moderate
        } else if od >= t.weak {
            DabClass::Weak
        } else {
            DabClass::Negative
        }
    }

    /// 0 (negative) to 3 (3+).
    pub fn score(self) -> u8 {
        self as u8
    }

    /// The class's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            DabClass::Negative => "negative",
            DabClass::Weak => "1+",
            DabClass::Moderate => "2+",
            DabClass::Strong => "3+",
        }
    }
}

/// Positive percentage and H-score from the number of nuclei in each class
/// (negative, 1+, 2+, 3+); `None` without nuclei.
///
/// ```
/// use cellops_measure::stain::scores;
/// assert_eq!(scores([50, 20, 20, 10]), Some((50.0, 90.0)));
/// ```
pub fn scores(counts: [usize; 4]) -> Option<(f64, f64)> {
    let total: usize = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let pct = |n: usize| 100.0 * n as f64 / total as f64;
    let positive = pct(counts[1] + counts[2] + counts[3]);
    let h = pct(counts[1]) + 2.0 * pct(counts[2]) + 3.0 * pct(counts[3]);
    Some((positive, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn white_is_no_stain_and_pure_stains_separate() {
        let m = StainMatrix::new(&StainVectors::default()).expect("invertible");
        let (h, d) = m.deconvolve(&[255u8, 255, 255], 3, [255.0; 3]);
        assert_eq!((h[0], d[0]), (0.0, 0.0));
        // Synthesise a DAB-only pixel of OD 0.8 and get it back.
        let dab = m.vectors[1];
        let rgb: Vec<f64> = dab.iter().map(|c| 255.0 * 10f64.powf(-0.8 * c)).collect();
        let (h, d) = m.deconvolve(&rgb, 3, [255.0; 3]);
        assert!((f64::from(d[0]) - 0.8).abs() < 1e-5, "{}", d[0]);
        assert!(h[0].abs() < 1e-5, "{}", h[0]);
    }

    #[test]
    fn inverse_is_an_inverse() {
        let m = StainMatrix::new(&StainVectors::default()).expect("invertible");
        for (i, row) in m.vectors.iter().enumerate() {
            let a = m.amounts(*row);
            for (j, v) in a.iter().enumerate() {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((v - want).abs() < 1e-12, "{i} {j} {v}");
            }
        }
    }

    #[test]
    fn dependent_vectors_are_refused() {
        let v = StainVectors {
            haematoxylin: [0.6, 0.7, 0.3],
            dab: [1.2, 1.4, 0.6],
            residual: None,
        };
        assert!(StainMatrix::new(&v).is_none());
    }

    #[test]
    fn h_score_extremes() {
        assert_eq!(scores([0, 0, 0, 7]), Some((100.0, 300.0)));
        assert_eq!(scores([7, 0, 0, 0]), Some((0.0, 0.0)));
        assert_eq!(scores([0; 4]), None);
    }
}
