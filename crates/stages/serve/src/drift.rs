//! Drift: each image type's window of rows ([`crate::evidence`]) against its model's reference
//! profile (`reference.json` in the bundle), feature by feature, by the two-sample
//! Kolmogorov–Smirnov statistic with warn and alert levels calibrated from bootstrap chunks of the
//! reference at the window's size (`cellops-drift`). Input features compare every image of the
//! type; prediction features only those the current model segmented. A window under
//! `min_window` images says "not enough data", never "no drift".

use std::collections::BTreeMap;

use cellops_drift::thresholds::{Calibration, LevelSource, Statistic, Verdict, calibrate, judge};
use cellops_formats::bundle::{PredictionFeatures, ReferenceProfile};
use cellops_formats::dataset::ImageFeatures;
use serde::Serialize;

use crate::evidence::Row;

/// The statistic features are judged by.
pub const STATISTIC: Statistic = Statistic::KolmogorovSmirnov;
/// Bootstrap chunks drawn to calibrate a feature's levels.
pub const CHUNKS: usize = 200;
/// The calibration's seed (fixed: the same reference and window size give the same levels).
const SEED: u64 = 17;

/// A verdict, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Below the warning level.
    NoDrift,
    /// Too few images in the window to judge.
    NotEnoughData,
    /// The model has no reference profile (or none for this feature): nothing to compare with.
    NoReference,
    /// At or above the warning level.
    Warn,
    /// At or above the alert level.
    Alert,
}

impl Status {
    /// The gauge value of `cellops_drift_status`: -1 not enough data or no reference, 0 no drift,
    /// 1 warn, 2 alert.
    pub fn gauge(self) -> i64 {
        match self {
            Status::NotEnoughData | Status::NoReference => -1,
            Status::NoDrift => 0,
            Status::Warn => 1,
            Status::Alert => 2,
        }
    }
}

/// Which side of the model a feature describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The image as it arrived.
    Input,
    /// What the model made of it.
    Prediction,
}

impl Kind {
    /// Its name in reports and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Input => "input",
            Kind::Prediction => "prediction",
        }
    }
}

/// One feature judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureDrift {
    /// Its name (`ImageFeatures::NAMES`, `PredictionFeatures::NAMES`).
    pub name: &'static str,
    /// Input or prediction.
    pub kind: Kind,
    /// The statistic's name.
    pub statistic: &'static str,
    /// The window's score (none without enough data).
    pub score: Option<f64>,
    /// The warning level (none without a reference).
    pub warn: Option<f64>,
    /// The alert level.
    pub alert: Option<f64>,
    /// `calibrated` (bootstrap chunks of the reference) or `default` (the usual constants).
    pub levels: &'static str,
    /// Values in the reference.
    pub reference_values: usize,
    /// Values in the window.
    pub window_values: usize,
    /// The verdict.
    pub status: Status,
}

/// One image type's drift.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeDrift {
    /// The image type.
    pub image_type: String,
    /// The model's bundle id.
    pub model: String,
    /// Images in the window (of any model).
    pub window_images: usize,
    /// Images in the model's reference profile (0: none).
    pub reference_images: usize,
    /// The worst feature's verdict (not enough data while the window is short).
    pub status: Status,
    /// The features at warn or alert, worst first (what a person reads first).
    pub drifted: Vec<&'static str>,
    /// Every feature.
    pub features: Vec<FeatureDrift>,
}

/// What one image type is compared with: its model and that model's reference.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// The image type.
    pub image_type: &'a str,
    /// Its model's bundle id.
    pub model: &'a str,
    /// Its model's reference profile.
    pub reference: Option<&'a ReferenceProfile>,
}

/// Judges each subject's rows among `rows`.
pub fn judge_all(subjects: &[Subject<'_>], rows: &[Row], min_window: usize) -> Vec<TypeDrift> {
    let mut by_type: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by_type.entry(r.image_type.as_str()).or_default().push(r);
    }
    subjects
        .iter()
        .map(|s| judge_type(s, by_type.get(s.image_type).map_or(&[][..], Vec::as_slice), min_window))
        .collect()
}

fn judge_type(subject: &Subject<'_>, rows: &[&Row], min_window: usize) -> TypeDrift {
    let mut features = Vec::new();
    for (k, name) in ImageFeatures::NAMES.iter().enumerate() {
        let window: Vec<f64> = rows.iter().filter_map(|r| r.input.get(k).copied().flatten()).collect();
        let reference = subject.reference.map(|p| p.input_values(name)).unwrap_or_default();
        features.push(feature(name, Kind::Input, &reference, &window, min_window));
    }
    features.push(histogram(subject, rows, min_window));
    let own: Vec<&&Row> = rows.iter().filter(|r| r.model == subject.model).collect();
    for (k, name) in PredictionFeatures::NAMES.iter().enumerate() {
        let window: Vec<f64> = own
            .iter()
            .filter_map(|r| r.prediction.as_ref()?.get(k).copied().flatten())
            .collect();
        let reference = subject.reference.map(|p| p.prediction_values(name)).unwrap_or_default();
        features.push(feature(name, Kind::Prediction, &reference, &window, min_window));
    }
    let status = if subject.reference.is_none() {
        Status::NoReference
    } else if rows.len() < min_window.max(1) {
        Status::NotEnoughData
    } else {
        features
            .iter()
            .map(|f| f.status)
            .filter(|s| matches!(s, Status::NoDrift | Status::Warn | Status::Alert))
            .max()
            .unwrap_or(Status::NotEnoughData)
    };
    let mut drifted: Vec<&FeatureDrift> = features
        .iter()
        .filter(|f| matches!(f.status, Status::Warn | Status::Alert))
        .collect();
    drifted.sort_by(|a, b| b.status.cmp(&a.status).then(a.name.cmp(b.name)));
    TypeDrift {
        image_type: subject.image_type.to_owned(),
        model: subject.model.to_owned(),
        window_images: rows.len(),
        reference_images: subject.reference.map_or(0, |p| p.images.len()),
        status,
        drifted: drifted.iter().map(|f| f.name).collect(),
        features,
    }
}

/// The mean of equal-length share vectors (none when there are none).
fn pooled<'a>(histograms: impl Iterator<Item = &'a [f64]>) -> Option<Vec<f64>> {
    let mut sum: Option<Vec<f64>> = None;
    let mut n = 0.0;
    for h in histograms {
        match &mut sum {
            Some(s) if s.len() == h.len() => s.iter_mut().zip(h).for_each(|(s, v)| *s += v),
            Some(_) => continue,
            None => sum = Some(h.to_vec()),
        }
        n += 1.0;
    }
    sum.map(|s| s.into_iter().map(|v| v / n).collect())
}

/// The grey-level histogram: the window's pooled histogram against the reference's, by PSI with
/// the usual levels (0.1 warn, 0.25 alert).
fn histogram(subject: &Subject<'_>, rows: &[&Row], min_window: usize) -> FeatureDrift {
    let reference = subject.reference.and_then(|p| pooled(p.histograms().into_iter()));
    let window: Vec<&[f64]> = rows.iter().filter_map(|r| r.histogram.as_deref()).collect();
    let levels = Statistic::Psi.default_levels(0, 0);
    let mut out = FeatureDrift {
        name: "histogram",
        kind: Kind::Input,
        statistic: Statistic::Psi.name(),
        score: None,
        warn: Some(levels.warn),
        alert: Some(levels.alert),
        levels: "default",
        reference_values: subject.reference.map_or(0, |p| p.histograms().len()),
        window_values: window.len(),
        status: Status::NoReference,
    };
    let Some(reference) = reference else {
        (out.warn, out.alert) = (None, None);
        return out;
    };
    if window.len() < min_window.max(1) {
        out.status = Status::NotEnoughData;
        return out;
    }
    let score = pooled(window.into_iter()).map_or(0.0, |w| cellops_drift::binned::psi_of_shares(&reference, &w));
    out.score = Some(score);
    out.status = if score >= levels.alert {
        Status::Alert
    } else if score >= levels.warn {
        Status::Warn
    } else {
        Status::NoDrift
    };
    out
}

/// One feature's window against its reference values.
fn feature(name: &'static str, kind: Kind, reference: &[f64], window: &[f64], min_window: usize) -> FeatureDrift {
    let mut out = FeatureDrift {
        name,
        kind,
        statistic: STATISTIC.name(),
        score: None,
        warn: None,
        alert: None,
        levels: "default",
        reference_values: reference.len(),
        window_values: window.len(),
        status: Status::NoReference,
    };
    if reference.is_empty() {
        return out;
    }
    let cal = Calibration {
        window: window.len().max(min_window),
        chunks: CHUNKS,
        seed: SEED,
    };
    let judged = calibrate(STATISTIC, reference, &cal)
        .and_then(|levels| judge(STATISTIC, reference, window, levels, min_window));
    let Ok(j) = judged else {
        // A reference or window holding a non-finite value: nothing sound to say.
        return out;
    };
    out.warn = Some(j.levels.warn);
    out.alert = Some(j.levels.alert);
    out.levels = match j.levels.source {
        LevelSource::Calibrated { .. } => "calibrated",
        LevelSource::Default => "default",
    };
    out.score = j.score;
    out.status = match j.verdict {
        Verdict::NotEnoughData { .. } => Status::NotEnoughData,
        Verdict::NoDrift => Status::NoDrift,
        Verdict::Warn => Status::Warn,
        Verdict::Alert => Status::Alert,
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellops_formats::bundle::ReferenceImage;
    use cellops_formats::dataset::Subset;

    /// A reference of `n` images whose mean grey level spreads evenly over 0.2..0.4.
    fn reference(n: usize) -> ReferenceProfile {
        ReferenceProfile {
            format: cellops_formats::bundle::REFERENCE_FORMAT.into(),
            features: ImageFeatures::NAMES.iter().map(|s| (*s).to_owned()).collect(),
            images: (0..n)
                .map(|i| ReferenceImage {
                    id: format!("r{i}"),
                    split: Subset::Train,
                    values: vec![Some(0.2 + 0.2 * i as f64 / n as f64); 14],
                    histogram: None,
                })
                .collect(),
            prediction_features: Vec::new(),
            predictions: Vec::new(),
        }
    }

    fn rows(n: usize, value: impl Fn(usize) -> f64) -> Vec<Row> {
        (0..n)
            .map(|i| Row {
                at: 0,
                image_type: "dapi".into(),
                model: "m".into(),
                input: vec![Some(value(i)); 14],
                histogram: None,
                prediction: None,
            })
            .collect()
    }

    #[test]
    fn a_shifted_window_alerts_and_a_short_one_cannot_be_judged() {
        let r = reference(200);
        let subject = Subject {
            image_type: "dapi",
            model: "m",
            reference: Some(&r),
        };
        let same = judge_all(
            std::slice::from_ref(&subject),
            &rows(40, |i| 0.2 + 0.2 * (i as f64 + 0.5) / 40.0),
            30,
        );
        assert_eq!(same[0].status, Status::NoDrift, "{:?}", same[0]);
        let bright = judge_all(
            std::slice::from_ref(&subject),
            &rows(40, |i| 0.5 + 0.001 * i as f64),
            30,
        );
        assert_eq!(bright[0].status, Status::Alert);
        assert!(bright[0].drifted.contains(&"mean"), "{:?}", bright[0].drifted);
        assert_eq!(bright[0].features[0].levels, "calibrated");
        // The reference has no prediction rows: those features say so.
        let nuclei = bright[0].features.iter().find(|f| f.name == "nuclei").expect("nuclei");
        assert_eq!(nuclei.status, Status::NoReference);
        let few = judge_all(std::slice::from_ref(&subject), &rows(5, |_| 0.9), 30);
        assert_eq!(few[0].status, Status::NotEnoughData);
        assert!(few[0].drifted.is_empty());
        let none = judge_all(
            &[Subject {
                reference: None,
                ..subject
            }],
            &rows(40, |_| 0.9),
            30,
        );
        assert_eq!(none[0].status, Status::NoReference);
    }
}
