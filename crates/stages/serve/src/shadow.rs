//! The shadow model's agreement with the model that answers: on every `round(1 / share)`-th
//! measured image the candidate segments the same image on a worker of its own (one at a time, off
//! the latency path: when it is still busy the image is skipped, never queued), and its nuclei are
//! compared with the answer's — foreground Dice of the two segmentations, the difference in nuclei
//! counted and in their mean area.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Running sums of one image type's comparisons.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    compared: u64,
    skipped: u64,
    dice: f64,
    count_difference: f64,
    area_difference: f64,
}

/// One image type's agreement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeAgreement {
    /// The image type.
    pub image_type: String,
    /// Images both models segmented.
    pub compared: u64,
    /// Images sampled while the shadow was still busy (not compared).
    pub skipped: u64,
    /// Mean foreground Dice of the two segmentations.
    pub mean_dice: Option<f64>,
    /// Mean of (shadow's nuclei − the answer's nuclei).
    pub mean_count_difference: Option<f64>,
    /// Mean of (shadow's mean nucleus area − the answer's), pixels.
    pub mean_area_difference_px: Option<f64>,
}

/// The shadow's agreement, per image type, since the service started (or the shadow changed).
#[derive(Debug, Default)]
pub struct Agreement {
    seen: AtomicU64,
    busy: std::sync::atomic::AtomicBool,
    by_type: Mutex<BTreeMap<(String, String), Sums>>,
}

/// What one segmentation says, for comparing.
#[derive(Debug, Clone)]
pub struct Segmentation<'a> {
    /// Instance labels (0 = background).
    pub labels: &'a [u32],
    /// Nuclei counted.
    pub count: usize,
    /// Mean nucleus area, pixels (none without nuclei).
    pub mean_area: Option<f64>,
}

/// Foreground Dice of two label images of the same size (1 when both are empty).
///
/// ```
/// assert_eq!(cellops_serve::shadow::dice(&[1, 1, 0, 0], &[2, 0, 0, 3]), 0.5);
/// ```
pub fn dice(a: &[u32], b: &[u32]) -> f64 {
    let (mut both, mut na, mut nb) = (0u64, 0u64, 0u64);
    for (&x, &y) in a.iter().zip(b) {
        na += u64::from(x != 0);
        nb += u64::from(y != 0);
        both += u64::from(x != 0 && y != 0);
    }
    if na + nb == 0 {
        1.0
    } else {
        2.0 * both as f64 / (na + nb) as f64
    }
}

impl Agreement {
    /// Whether this measured image is one the shadow should also run on (every
    /// `round(1 / share)`-th), and the shadow is free; marks it busy when it is.
    pub fn take(&self, share: f64, shadow_version: &str, image_type: &str) -> bool {
        let every = (1.0 / share).round().max(1.0) as u64;
        if !self.seen.fetch_add(1, Ordering::Relaxed).is_multiple_of(every) {
            return false;
        }
        if self.busy.swap(true, Ordering::AcqRel) {
            self.sums(shadow_version, image_type, |s| s.skipped += 1);
            return false;
        }
        true
    }

    /// Records one comparison and frees the shadow.
    pub fn record(&self, shadow_version: &str, image_type: &str, answer: &Segmentation<'_>, shadow: &Segmentation<'_>) {
        let d = dice(answer.labels, shadow.labels);
        self.sums(shadow_version, image_type, |s| {
            s.compared += 1;
            s.dice += d;
            s.count_difference += shadow.count as f64 - answer.count as f64;
            s.area_difference += shadow.mean_area.unwrap_or(0.0) - answer.mean_area.unwrap_or(0.0);
        });
        self.release();
    }

    /// Frees the shadow without a comparison (it failed on the image).
    pub fn release(&self) {
        self.busy.store(false, Ordering::Release);
    }

    fn sums(&self, version: &str, image_type: &str, f: impl FnOnce(&mut Sums)) {
        let mut by_type = self.by_type.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(by_type.entry((version.to_owned(), image_type.to_owned())).or_default());
    }

    /// The agreement of the shadow `version`, per image type.
    pub fn of(&self, version: &str) -> Vec<TypeAgreement> {
        let by_type = self.by_type.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        by_type
            .iter()
            .filter(|((v, _), _)| v == version)
            .map(|((_, t), s)| {
                let mean = |sum: f64| (s.compared > 0).then(|| sum / s.compared as f64);
                TypeAgreement {
                    image_type: t.clone(),
                    compared: s.compared,
                    skipped: s.skipped,
                    mean_dice: mean(s.dice),
                    mean_count_difference: mean(s.count_difference),
                    mean_area_difference_px: mean(s.area_difference),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disagreement_shows_and_a_busy_shadow_skips() {
        let a = Agreement::default();
        assert!(a.take(0.5, "v", "dapi"), "the first of every two");
        assert!(!a.take(0.5, "v", "dapi"), "not sampled");
        assert!(!a.take(0.5, "v", "dapi"), "sampled, but the shadow is busy");
        let answer = Segmentation {
            labels: &[1, 1, 0, 0],
            count: 1,
            mean_area: Some(2.0),
        };
        let shadow = Segmentation {
            labels: &[0, 1, 0, 2],
            count: 2,
            mean_area: Some(1.0),
        };
        a.record("v", "dapi", &answer, &shadow);
        let got = a.of("v");
        assert_eq!(got.len(), 1);
        let t = &got[0];
        assert_eq!((t.compared, t.skipped), (1, 1));
        assert_eq!(
            (t.mean_dice, t.mean_count_difference, t.mean_area_difference_px),
            (Some(0.5), Some(1.0), Some(-1.0))
        );
        assert!(a.of("other").is_empty());
    }
}
