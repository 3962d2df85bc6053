//! When a score means drift: levels calibrated from the reference itself, and a verdict for a
//! window that never says "no drift" about too few images.
//!
//! Calibration draws `chunks` bootstrap samples of the window's size from the reference (with
//! replacement, a seeded generator: the same reference and seed give the same levels) and scores
//! each against the whole reference: that is how far a window of this size wanders by chance
//! alone. Warn at mean + 2σ of those scores, alert at mean + 3σ. A reference too small to
//! resample (fewer than [`MIN_CALIBRATION_REFERENCE`] values, or under twice the window) falls
//! back to the usual constants ([`Statistic::default_levels`]).

use crate::binned::{hellinger, jensen_shannon, psi};
use crate::distance::wasserstein_normed;
use crate::ks::ks_2samp;
use crate::{Sample, StatsError, check};

/// The smallest reference that is calibrated rather than given the usual constants.
pub const MIN_CALIBRATION_REFERENCE: usize = 50;

/// A drift statistic, as a score that grows with drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    /// The two-sample Kolmogorov–Smirnov statistic D.
    KolmogorovSmirnov,
    /// The population stability index.
    Psi,
    /// Evidently's normed Wasserstein distance.
    Wasserstein,
    /// The Jensen–Shannon distance.
    JensenShannon,
    /// The Hellinger distance.
    Hellinger,
}

impl Statistic {
    /// Every statistic.
    pub const ALL: [Self; 5] = [
        Self::KolmogorovSmirnov,
        Self::Psi,
        Self::Wasserstein,
        Self::JensenShannon,
        Self::Hellinger,
    ];

    /// Its name in reports and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::KolmogorovSmirnov => "ks",
            Self::Psi => "psi",
            Self::Wasserstein => "wasserstein_normed",
            Self::JensenShannon => "jensen_shannon",
            Self::Hellinger => "hellinger",
        }
    }

    /// The score of `current` against `reference`.
    pub fn score(self, reference: &[f64], current: &[f64]) -> Result<f64, StatsError> {
        match self {
            Self::KolmogorovSmirnov => ks_2samp(reference, current).map(|t| t.statistic),
            Self::Psi => psi(reference, current),
            Self::Wasserstein => wasserstein_normed(reference, current),
            Self::JensenShannon => jensen_shannon(reference, current),
            Self::Hellinger => hellinger(reference, current),
        }
    }

    /// The usual constants, for a reference too small to calibrate: Evidently's drift threshold
    /// 0.1 (warn) and 0.2 (alert; PSI's rule of thumb says 0.25); for KS the asymptotic critical
    /// values of D at the 5 % and 1 % levels for these sample sizes.
    pub fn default_levels(self, reference_len: usize, window_len: usize) -> Levels {
        let (warn, alert) = match self {
            Self::KolmogorovSmirnov => {
                let (n, m) = (reference_len.max(1) as f64, window_len.max(1) as f64);
                let scale = ((n + m) / (n * m)).sqrt();
                let critical = |alpha: f64| (-(alpha / 2.0).ln() / 2.0).sqrt() * scale;
                (critical(0.05), critical(0.01))
            }
            Self::Psi => (0.1, 0.25),
            Self::Wasserstein | Self::JensenShannon | Self::Hellinger => (0.1, 0.2),
        };
        Levels {
            warn,
            alert,
            source: LevelSource::Default,
        }
    }
}

/// Where levels came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelSource {
    /// Bootstrap chunks of the reference.
    Calibrated {
        /// How many chunks were scored.
        chunks: usize,
    },
    /// The usual constants.
    Default,
}

/// The scores from which a window warns and alerts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    /// A score at least this is a warning.
    pub warn: f64,
    /// A score at least this is an alert.
    pub alert: f64,
    /// Where the levels came from.
    pub source: LevelSource,
}

/// How to calibrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calibration {
    /// The window's size: each chunk has this many values.
    pub window: usize,
    /// How many chunks are drawn.
    pub chunks: usize,
    /// The generator's seed.
    pub seed: u64,
}

/// SplitMix64: a small seeded generator, enough to draw bootstrap indices.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An index below `n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

/// The levels of `statistic` for windows of `cal.window` values against `reference`.
pub fn calibrate(statistic: Statistic, reference: &[f64], cal: &Calibration) -> Result<Levels, StatsError> {
    check(reference, Sample::Reference)?;
    let fallback = statistic.default_levels(reference.len(), cal.window);
    if cal.window == 0 || cal.chunks < 2 || reference.len() < MIN_CALIBRATION_REFERENCE.max(2 * cal.window) {
        return Ok(fallback);
    }
    let mut rng = SplitMix(cal.seed);
    let mut scores = Vec::with_capacity(cal.chunks);
    let mut chunk = vec![0.0; cal.window];
    for _ in 0..cal.chunks {
        for v in &mut chunk {
            *v = reference[rng.below(reference.len())];
        }
        scores.push(statistic.score(reference, &chunk)?);
    }
    let n = scores.len() as f64;
    let mean = scores.iter().sum::<f64>() / n;
    let sigma = (scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / (n - 1.0)).sqrt();
    if sigma <= 0.0 || !sigma.is_finite() {
        // A constant reference: every chunk scores the same, chance tells nothing.
        return Ok(fallback);
    }
    Ok(Levels {
        warn: mean + 2.0 * sigma,
        alert: mean + 3.0 * sigma,
        source: LevelSource::Calibrated { chunks: cal.chunks },
    })
}

/// What a window's score says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Too few values to say anything (never read as "no drift").
    NotEnoughData {
        /// Values in the window.
        have: usize,
        /// Values needed.
        need: usize,
    },
    /// Below the warning level.
    NoDrift,
    /// At or above the warning level.
    Warn,
    /// At or above the alert level.
    Alert,
}

/// A window judged: its score (none without enough data) and the verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    /// The statistic.
    pub statistic: Statistic,
    /// The window's score.
    pub score: Option<f64>,
    /// The levels it was judged by.
    pub levels: Levels,
    /// The verdict.
    pub verdict: Verdict,
}

/// Judges `window` against `reference` by `levels`; a window of fewer than `min_window` values
/// is [`Verdict::NotEnoughData`].
pub fn judge(
    statistic: Statistic,
    reference: &[f64],
    window: &[f64],
    levels: Levels,
    min_window: usize,
) -> Result<Judgement, StatsError> {
    let need = min_window.max(1);
    if window.len() < need {
        return Ok(Judgement {
            statistic,
            score: None,
            levels,
            verdict: Verdict::NotEnoughData {
                have: window.len(),
                need,
            },
        });
    }
    let score = statistic.score(reference, window)?;
    let verdict = if score >= levels.alert {
        Verdict::Alert
    } else if score >= levels.warn {
        Verdict::Warn
    } else {
        Verdict::NoDrift
    };
    Ok(Judgement {
        statistic,
        score: Some(score),
        levels,
        verdict,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` values of a normal distribution (Box–Muller on the crate's generator).
    fn normal(rng: &mut SplitMix, n: usize, mean: f64, sd: f64) -> Vec<f64> {
        let mut uniform = || (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        (0..n)
            .map(|_| {
                let (u, v) = (uniform().max(1e-300), uniform());
                mean + sd * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
            })
            .collect()
    }

    #[test]
    fn calibrated_levels_let_chance_pass_and_catch_a_shift() {
        let mut rng = SplitMix(11);
        let reference = normal(&mut rng, 2000, 50.0, 10.0);
        let cal = Calibration {
            window: 100,
            chunks: 200,
            seed: 3,
        };
        for statistic in Statistic::ALL {
            let levels = calibrate(statistic, &reference, &cal).expect("levels");
            assert_eq!(levels.source, LevelSource::Calibrated { chunks: 200 }, "{statistic:?}");
            assert!(levels.warn < levels.alert, "{statistic:?}: {levels:?}");
            assert_eq!(
                calibrate(statistic, &reference, &cal).expect("levels"),
                levels,
                "same seed, same levels"
            );
            let (mut alerts_same, mut alerts_shifted) = (0, 0);
            for _ in 0..60 {
                let same = normal(&mut rng, 100, 50.0, 10.0);
                let shifted = normal(&mut rng, 100, 60.0, 10.0);
                let judged = |w: &[f64]| judge(statistic, &reference, w, levels, 30).expect("judged").verdict;
                alerts_same += usize::from(judged(&same) == Verdict::Alert);
                alerts_shifted += usize::from(judged(&shifted) == Verdict::Alert);
            }
            assert!(
                alerts_same <= 3,
                "{statistic:?}: {alerts_same} of 60 in-distribution windows alerted"
            );
            assert_eq!(alerts_shifted, 60, "{statistic:?}: a one-σ shift alerts every time");
        }
    }

    #[test]
    fn a_small_reference_gets_the_usual_constants() {
        let reference: Vec<f64> = (0..40).map(f64::from).collect();
        let cal = Calibration {
            window: 30,
            chunks: 100,
            seed: 1,
        };
        let levels = calibrate(Statistic::Psi, &reference, &cal).expect("levels");
        assert_eq!(
            (levels.warn, levels.alert, levels.source),
            (0.1, 0.25, LevelSource::Default)
        );
        let ks = calibrate(Statistic::KolmogorovSmirnov, &reference, &cal).expect("levels");
        // D's critical value at 5 % for 40 and 30 values: 1.358·√(70/1200).
        assert!((ks.warn - 1.358_1 * (70.0f64 / 1200.0).sqrt()).abs() < 1e-3, "{ks:?}");
    }

    #[test]
    fn too_few_images_is_not_enough_data_never_no_drift() {
        let reference: Vec<f64> = (0..100).map(f64::from).collect();
        let levels = Statistic::Hellinger.default_levels(100, 5);
        let j = judge(Statistic::Hellinger, &reference, &[1.0, 2.0, 3.0], levels, 30).expect("judged");
        assert_eq!(j.verdict, Verdict::NotEnoughData { have: 3, need: 30 });
        assert_eq!(j.score, None);
    }
}
