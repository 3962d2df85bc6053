//! Compare mode: how an evaluation differs from an earlier one (`--baseline`): counts, feature
//! means, IHC scores and metrics, per image class changes. The pull-request report for changed
//! cell parameters is built on this.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::report::{Evaluation, FORMAT, KEY_FEATURES};

/// A relative change of at least this much in an image's nucleus count is flagged.
pub const COUNT_FLAG: f64 = 0.10;
/// A drop of at least this much in F1@0.5 (or Dice) is flagged.
pub const METRIC_FLAG: f64 = 0.02;

/// A figure before and after.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delta {
    /// What it is.
    pub name: String,
    /// In the baseline.
    pub before: Option<f64>,
    /// Now.
    pub after: Option<f64>,
    /// `after − before`, when both exist.
    pub delta: Option<f64>,
    /// Whether the change crosses a flag threshold.
    pub flagged: bool,
}

impl Delta {
    fn new(name: impl Into<String>, before: Option<f64>, after: Option<f64>) -> Self {
        Self {
            name: name.into(),
            before,
            after,
            delta: before.zip(after).map(|(b, a)| a - b),
            flagged: false,
        }
    }
}

/// One image's change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageDelta {
    /// The image.
    pub image: String,
    /// Nuclei before and after.
    pub count: Delta,
    /// Class before.
    pub class_before: Option<String>,
    /// Class after.
    pub class_after: Option<String>,
    /// Count change ≥ 10 %, class changed, or F1@0.5 dropped ≥ 0.02.
    pub flagged: bool,
}

/// The difference between a baseline evaluation and this one (`diff.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    /// The baseline's `summary.json`.
    pub baseline: PathBuf,
    /// Parameter file of the baseline and of now (sha256 differs when the file changed).
    pub params: [crate::report::ParamsInfo; 2],
    /// Totals (nuclei, per image, IHC scores).
    pub totals: Vec<Delta>,
    /// Means of the key features over all nuclei.
    pub features: Vec<Delta>,
    /// Pooled segmentation metrics.
    pub metrics: Vec<Delta>,
    /// Images present in both, changed ones first.
    pub images: Vec<ImageDelta>,
    /// Images only in the baseline.
    pub removed: Vec<String>,
    /// Images only now.
    pub added: Vec<String>,
}

/// Errors reading a baseline.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// It could not be read.
    #[error("baseline {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// Reads the baseline: an earlier output folder or its `summary.json`.
pub fn load(path: &Path) -> Result<(PathBuf, Evaluation), BaselineError> {
    let file = if path.is_dir() {
        path.join("summary.json")
    } else {
        path.to_owned()
    };
    let err = |message: String| BaselineError::Read {
        path: file.clone(),
        message,
    };
    let text = std::fs::read_to_string(&file).map_err(|e| err(e.to_string()))?;
    let e: Evaluation = serde_json::from_str(&text).map_err(|e| err(format!("not an evaluation summary: {e}")))?;
    if e.format != FORMAT {
        return Err(err(format!("format {} is not {FORMAT}", e.format)));
    }
    Ok((file, e))
}

/// Compares `now` with `before`.
pub fn diff(baseline: PathBuf, before: &Evaluation, now: &Evaluation) -> Diff {
    let (bt, nt) = (&before.totals, &now.totals);
    let per_image = |t: &crate::report::Totals| (t.images > 0).then(|| t.nuclei as f64 / t.images as f64);
    let mut totals = vec![
        Delta::new("nuclei", Some(bt.nuclei as f64), Some(nt.nuclei as f64)),
        Delta::new("nuclei per image", per_image(bt), per_image(nt)),
    ];
    if bt.positive_percent.is_some() || nt.positive_percent.is_some() {
        totals.push(Delta::new("positive %", bt.positive_percent, nt.positive_percent));
        totals.push(Delta::new("H-score", bt.h_score, nt.h_score));
    }
    if let Some(t) = totals.first_mut() {
        t.flagged = relative(t).is_some_and(|r| r.abs() >= COUNT_FLAG);
    }
    let features = KEY_FEATURES
        .iter()
        .filter(|k| bt.features.contains_key(**k) || nt.features.contains_key(**k))
        .map(|k| {
            let mut d = Delta::new(
                *k,
                bt.features.get(*k).map(|s| s.mean),
                nt.features.get(*k).map(|s| s.mean),
            );
            d.flagged = relative(&d).is_some_and(|r| r.abs() >= COUNT_FLAG);
            d
        })
        .collect();
    let mut metrics = Vec::new();
    if before.metrics.is_some() || now.metrics.is_some() {
        let (b, n) = (before.metrics.as_ref(), now.metrics.as_ref());
        for t in [0.5, 0.75, 0.9] {
            let mut d = Delta::new(
                format!("F1@{t}"),
                b.and_then(|m| m.at(t)).map(|m| m.f1),
                n.and_then(|m| m.at(t)).map(|m| m.f1),
            );
            d.flagged = d.delta.is_some_and(|x| x <= -METRIC_FLAG);
            metrics.push(d);
        }
        let mut d = Delta::new(
            "PQ@0.5",
            b.and_then(|m| m.at(0.5)).map(|m| m.panoptic_quality),
            n.and_then(|m| m.at(0.5)).map(|m| m.panoptic_quality),
        );
        d.flagged = d.delta.is_some_and(|x| x <= -METRIC_FLAG);
        metrics.push(d);
        for (name, get) in [
            ("Dice", (|m: &crate::report::ImageMetrics| m.dice) as fn(&_) -> f64),
            ("AJI", |m| m.aji),
        ] {
            let mut d = Delta::new(name, b.map(get), n.map(get));
            d.flagged = d.delta.is_some_and(|x| x <= -METRIC_FLAG);
            metrics.push(d);
        }
    }
    let old: BTreeMap<&str, &crate::report::ImageRecord> =
        before.images.iter().map(|r| (r.summary.image.as_str(), r)).collect();
    let new: BTreeMap<&str, &crate::report::ImageRecord> =
        now.images.iter().map(|r| (r.summary.image.as_str(), r)).collect();
    let mut images: Vec<ImageDelta> = new
        .iter()
        .filter_map(|(id, n)| old.get(id).map(|b| (id, b, n)))
        .map(|(id, b, n)| {
            let count = Delta::new("nuclei", Some(b.summary.count as f64), Some(n.summary.count as f64));
            let f1 = |r: &crate::report::ImageRecord| r.metrics.as_ref().and_then(|m| m.at(0.5)).map(|m| m.f1);
            let f1_drop = f1(b).zip(f1(n)).is_some_and(|(x, y)| y - x <= -METRIC_FLAG);
            let count_change =
                relative(&count).is_some_and(|r| r.abs() >= COUNT_FLAG) && count.delta.is_some_and(|d| d.abs() >= 2.0);
            ImageDelta {
                image: (*id).to_owned(),
                flagged: count_change || b.summary.class != n.summary.class || f1_drop,
                class_before: b.summary.class.clone(),
                class_after: n.summary.class.clone(),
                count,
            }
        })
        .collect();
    images.sort_by_key(|d| (!d.flagged, d.count.delta.map_or(0, |x| -(x.abs() as i64))));
    Diff {
        baseline,
        params: [before.params.clone(), now.params.clone()],
        totals,
        features,
        metrics,
        images,
        removed: old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .map(|k| (*k).to_owned())
            .collect(),
        added: new
            .keys()
            .filter(|k| !old.contains_key(*k))
            .map(|k| (*k).to_owned())
            .collect(),
    }
}

fn relative(d: &Delta) -> Option<f64> {
    match (d.before, d.delta) {
        (Some(b), Some(x)) if b != 0.0 => Some(x / b),
        (Some(_), Some(x)) if x != 0.0 => Some(f64::INFINITY),
        _ => None,
    }
}

fn cell(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() && v.abs() >= 100.0 => format!("{v:.1}"),
        Some(v) if v.is_finite() => format!("{v:.4}"),
        _ => "–".into(),
    }
}

fn signed(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() && v.abs() >= 100.0 => format!("{v:+.1}"),
        Some(v) if v.is_finite() => format!("{v:+.4}"),
        _ => "–".into(),
    }
}

/// The diff as a Markdown section. At most `max_images` changed images are listed.
pub fn markdown(d: &Diff, max_images: usize) -> String {
    let mut md = String::new();
    let changed = d.params[0].sha256 != d.params[1].sha256;
    let _ = writeln!(
        md,
        "### Compared with the baseline\n\nBaseline `{}` (parameters `{}`{}).\n",
        d.baseline.display(),
        d.params[0].file,
        if changed {
            ", different from now"
        } else {
            ", same as now"
        }
    );
    md.push_str("| | before | after | change | |\n|---|---|---|---|---|\n");
    for x in d.totals.iter().chain(&d.features).chain(&d.metrics) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            x.name,
            cell(x.before),
            cell(x.after),
            signed(x.delta),
            if x.flagged { "⚠️" } else { "" }
        );
    }
    let flagged: Vec<&ImageDelta> = d.images.iter().filter(|i| i.flagged).collect();
    let _ = writeln!(
        md,
        "\n{} of {} images changed noticeably (nuclei ±{:.0} %, class, or F1@0.5 −{}).",
        flagged.len(),
        d.images.len(),
        COUNT_FLAG * 100.0,
        METRIC_FLAG
    );
    if !flagged.is_empty() {
        md.push_str("\n| image | nuclei before | after | class before | after |\n|---|---|---|---|---|\n");
        for i in flagged.iter().take(max_images) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                i.image,
                cell(i.count.before).trim_end_matches(".0000"),
                cell(i.count.after).trim_end_matches(".0000"),
                i.class_before.as_deref().unwrap_or(""),
                i.class_after.as_deref().unwrap_or("")
            );
        }
    }
    if !d.added.is_empty() || !d.removed.is_empty() {
        let _ = writeln!(md, "\nImages added: {}; removed: {}.", d.added.len(), d.removed.len());
    }
    md
}
