//! Segmentation metrics against ground truth, per image and pooled over a dataset.
//!
//! Definitions (StarDist's `matching`, so that figures compare with published ones):
//! - objects are the distinct non-zero labels of each image; IoU is computed for every pair of a
//!   true and a predicted object that overlap;
//! - at threshold τ, objects are matched one to one by an optimal assignment that first maximises
//!   the number of pairs with IoU ≥ τ and then their summed IoU; TP = matched pairs with IoU ≥ τ,
//!   FP = predicted objects − TP, FN = true objects − TP;
//! - precision TP/(TP+FP), recall TP/(TP+FN), F1 2TP/(2TP+FP+FN), accuracy (the DSB 2018 "AP")
//!   TP/(TP+FP+FN) — each 0 when TP is 0; mean matched score = summed IoU of the TPs / TP; mean true
//!   score = that sum / true objects; panoptic quality = that sum / (TP + FP/2 + FN/2);
//! - pooled over images, the counts and IoU sums are added before the ratios are taken;
//! - pixel Dice and IoU compare the foregrounds (label > 0);
//! - the aggregated Jaccard index (Kumar et al. 2017): each true object takes the predicted object
//!   of highest IoU with it, intersections and unions are summed, and the areas of predicted objects
//!   no true object took are added to the union.

use std::collections::HashMap;
use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

use crate::assignment::maximise;

/// The IoU thresholds reported by default.
pub const THRESHOLDS: [f64; 3] = [0.5, 0.75, 0.9];

/// Why two label images cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The images have different numbers of pixels.
    #[error("the prediction has {pred} pixels but the ground truth {truth}")]
    SizeMismatch {
        /// Pixels of the ground truth.
        truth: usize,
        /// Pixels of the prediction.
        pred: usize,
    },
}

/// How two label images overlap: object areas and the intersection of every overlapping pair.
#[derive(Debug, Clone)]
pub struct Overlap {
    true_area: Vec<u64>,
    pred_area: Vec<u64>,
    /// `(true index, predicted index) → shared pixels`.
    pairs: HashMap<(usize, usize), u64>,
    foreground: PixelCounts,
}

/// Foreground pixel counts, for Dice and IoU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PixelCounts {
    /// Foreground in both.
    pub both: u64,
    /// Foreground in the ground truth.
    pub truth: u64,
    /// Foreground in the prediction.
    pub pred: u64,
}

impl PixelCounts {
    /// Dice 2|A∩B|/(|A|+|B|); 1 when both are empty.
    pub fn dice(&self) -> f64 {
        let total = self.truth + self.pred;
        if total == 0 {
            1.0
        } else {
            2.0 * self.both as f64 / total as f64
        }
    }

    /// IoU |A∩B|/|A∪B|; 1 when both are empty.
    pub fn iou(&self) -> f64 {
        let union = self.truth + self.pred - self.both;
        if union == 0 {
            1.0
        } else {
            self.both as f64 / union as f64
        }
    }
}

impl AddAssign for PixelCounts {
    fn add_assign(&mut self, o: Self) {
        self.both += o.both;
        self.truth += o.truth;
        self.pred += o.pred;
    }
}

/// Dense indices for the distinct non-zero labels of an image, in order of first appearance.
fn index_labels<L: Copy + Into<u64>>(labels: &[L]) -> (Vec<usize>, usize) {
    let mut map: HashMap<u64, usize> = HashMap::new();
    let mut last: Option<(u64, usize)> = None;
    let idx = labels
        .iter()
        .map(|&l| {
            let l: u64 = l.into();
            if l == 0 {
                return usize::MAX;
            }
            if let Some((pl, pi)) = last
                && pl == l
            {
                return pi;
            }
            let n = map.len();
            let i = *map.entry(l).or_insert(n);
            last = Some((l, i));
            i
        })
        .collect();
    (idx, map.len())
}

impl Overlap {
    /// Compares a ground-truth label image with a predicted one (same pixel order; 0 is background,
    /// every other value one object, in any numbering).
    pub fn new<L: Copy + Into<u64>, M: Copy + Into<u64>>(truth: &[L], pred: &[M]) -> Result<Self, MetricsError> {
        if truth.len() != pred.len() {
            return Err(MetricsError::SizeMismatch {
                truth: truth.len(),
                pred: pred.len(),
            });
        }
        let (ti, nt) = index_labels(truth);
        let (pi, np) = index_labels(pred);
        let mut true_area = vec![0u64; nt];
        let mut pred_area = vec![0u64; np];
        let mut pairs: HashMap<(usize, usize), u64> = HashMap::new();
        let mut foreground = PixelCounts::default();
        for (&t, &p) in ti.iter().zip(&pi) {
            let (is_t, is_p) = (t != usize::MAX, p != usize::MAX);
            if is_t {
                true_area[t] += 1;
                foreground.truth += 1;
            }
            if is_p {
                pred_area[p] += 1;
                foreground.pred += 1;
            }
            if is_t && is_p {
                foreground.both += 1;
                *pairs.entry((t, p)).or_insert(0) += 1;
            }
        }
        Ok(Self {
            true_area,
            pred_area,
            pairs,
            foreground,
        })
    }

    /// Number of true objects.
    pub fn n_true(&self) -> usize {
        self.true_area.len()
    }

    /// Number of predicted objects.
    pub fn n_pred(&self) -> usize {
        self.pred_area.len()
    }

    /// Foreground pixel counts.
    pub fn pixels(&self) -> PixelCounts {
        self.foreground
    }

    /// The area of every true object (dense indices, in order of first appearance).
    pub fn true_areas(&self) -> &[u64] {
        &self.true_area
    }

    /// The area of every predicted object (dense indices, in order of first appearance).
    pub fn pred_areas(&self) -> &[u64] {
        &self.pred_area
    }

    /// Every overlapping pair: `(true index, predicted index, shared pixels)`, in no set order.
    pub fn pairs(&self) -> impl Iterator<Item = (usize, usize, u64)> + '_ {
        self.pairs.iter().map(|(&(t, p), &n)| (t, p, n))
    }

    fn iou(&self, t: usize, p: usize, inter: u64) -> f64 {
        inter as f64 / (self.true_area[t] + self.pred_area[p] - inter) as f64
    }

    /// Optimal one-to-one matching at IoU threshold `thresh` (see the module documentation).
    /// Objects only compete with objects they overlap, so the assignment is solved separately on
    /// each connected group of overlapping objects, which keeps large images fast.
    pub fn matching(&self, thresh: f64) -> MatchCounts {
        let (nt, np) = (self.n_true(), self.n_pred());
        // Union-find over true objects (0..nt) and predicted objects (nt..nt+np).
        let mut parent: Vec<usize> = (0..nt + np).collect();
        fn find(parent: &mut [usize], mut x: usize) -> usize {
            while parent[x] != x {
                parent[x] = parent[parent[x]];
                x = parent[x];
            }
            x
        }
        for &(t, p) in self.pairs.keys() {
            let (a, b) = (find(&mut parent, t), find(&mut parent, nt + p));
            if a != b {
                parent[a] = b;
            }
        }
        let mut groups: HashMap<usize, (Vec<usize>, Vec<usize>)> = HashMap::new();
        for (t, _) in self.pairs.keys() {
            let r = find(&mut parent, *t);
            groups.entry(r).or_default();
        }
        for t in 0..nt {
            let r = find(&mut parent, t);
            if let Some(g) = groups.get_mut(&r) {
                g.0.push(t);
            }
        }
        for p in 0..np {
            let r = find(&mut parent, nt + p);
            if let Some(g) = groups.get_mut(&r) {
                g.1.push(p);
            }
        }
        // Groups in the order of their first true object, so that the float sum below is the same
        // in every run (a hash map's order is not).
        let mut groups: Vec<(Vec<usize>, Vec<usize>)> = groups.into_values().collect();
        groups.sort_unstable_by_key(|(ts, _)| ts.first().copied());
        let mut tp = 0usize;
        let mut sum = 0f64;
        for (ts, ps) in &groups {
            let (rows, cols) = (ts.len(), ps.len());
            // Count dominates: each pair at or above the threshold is worth 1, plus its IoU scaled
            // so that all IoUs together stay below 1.
            let scale = 1.0 / (2.0 * rows.min(cols) as f64);
            let mut score = vec![0f64; rows * cols];
            for (r, &t) in ts.iter().enumerate() {
                for (c, &p) in ps.iter().enumerate() {
                    if let Some(&inter) = self.pairs.get(&(t, p)) {
                        let iou = self.iou(t, p, inter);
                        score[r * cols + c] = f64::from(u8::from(iou >= thresh)) + iou * scale;
                    }
                }
            }
            for (r, c) in maximise(&score, rows, cols) {
                if let Some(&inter) = self.pairs.get(&(ts[r], ps[c])) {
                    let iou = self.iou(ts[r], ps[c], inter);
                    if iou >= thresh {
                        tp += 1;
                        sum += iou;
                    }
                }
            }
        }
        MatchCounts {
            tp,
            fp: np - tp,
            fn_: nt - tp,
            n_true: nt,
            n_pred: np,
            sum_matched_score: sum,
        }
    }

    /// The aggregated Jaccard index's intersection and union sums (see the module documentation).
    pub fn aji_counts(&self) -> AjiCounts {
        let mut best: Vec<Option<(f64, usize, u64)>> = vec![None; self.n_true()];
        for (&(t, p), &inter) in &self.pairs {
            let iou = self.iou(t, p, inter);
            // Ties go to the lower predicted index, so results do not depend on hash order.
            if best[t].is_none_or(|(b, bp, _)| iou > b || (iou == b && p < bp)) {
                best[t] = Some((iou, p, inter));
            }
        }
        let mut used = vec![false; self.n_pred()];
        let (mut inter_sum, mut union_sum) = (0u64, 0u64);
        for (t, b) in best.iter().enumerate() {
            match b {
                Some((_, p, inter)) => {
                    inter_sum += inter;
                    union_sum += self.true_area[t] + self.pred_area[*p] - inter;
                    used[*p] = true;
                }
                None => union_sum += self.true_area[t],
            }
        }
        union_sum += self
            .pred_area
            .iter()
            .zip(&used)
            .filter(|(_, u)| !**u)
            .map(|(a, _)| a)
            .sum::<u64>();
        AjiCounts {
            intersection: inter_sum,
            union: union_sum,
        }
    }
}

/// The aggregated Jaccard index's sums; add them over images to pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AjiCounts {
    /// Summed intersections.
    pub intersection: u64,
    /// Summed unions plus unmatched predicted areas.
    pub union: u64,
}

impl AjiCounts {
    /// The index; 1 when there is nothing in either image.
    pub fn value(&self) -> f64 {
        if self.union == 0 {
            1.0
        } else {
            self.intersection as f64 / self.union as f64
        }
    }
}

impl AddAssign for AjiCounts {
    fn add_assign(&mut self, o: Self) {
        self.intersection += o.intersection;
        self.union += o.union;
    }
}

/// The counts of a matching; add them over images to pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MatchCounts {
    /// True positives.
    pub tp: usize,
    /// False positives.
    pub fp: usize,
    /// False negatives.
    #[serde(rename = "fn")]
    pub fn_: usize,
    /// True objects.
    pub n_true: usize,
    /// Predicted objects.
    pub n_pred: usize,
    /// Summed IoU of the true positives.
    pub sum_matched_score: f64,
}

impl AddAssign for MatchCounts {
    fn add_assign(&mut self, o: Self) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
        self.n_true += o.n_true;
        self.n_pred += o.n_pred;
        self.sum_matched_score += o.sum_matched_score;
    }
}

/// The figures of a matching at one threshold (StarDist's names).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Matching {
    /// The IoU threshold τ.
    pub thresh: f64,
    /// True positives.
    pub tp: usize,
    /// False positives.
    pub fp: usize,
    /// False negatives.
    #[serde(rename = "fn")]
    pub fn_: usize,
    /// TP / (TP + FP).
    pub precision: f64,
    /// TP / (TP + FN).
    pub recall: f64,
    /// TP / (TP + FP + FN): the DSB 2018 score at this threshold.
    pub accuracy: f64,
    /// 2 TP / (2 TP + FP + FN).
    pub f1: f64,
    /// True objects.
    pub n_true: usize,
    /// Predicted objects.
    pub n_pred: usize,
    /// Summed IoU of the true positives / true objects.
    pub mean_true_score: f64,
    /// Summed IoU of the true positives / TP.
    pub mean_matched_score: f64,
    /// Summed IoU of the true positives / (TP + FP/2 + FN/2).
    pub panoptic_quality: f64,
}

impl MatchCounts {
    /// The ratios at threshold `thresh`.
    pub fn stats(&self, thresh: f64) -> Matching {
        let (tp, fp, fn_) = (self.tp as f64, self.fp as f64, self.fn_ as f64);
        let ratio = |num: f64, den: f64| if self.tp > 0 && den > 0.0 { num / den } else { 0.0 };
        Matching {
            thresh,
            tp: self.tp,
            fp: self.fp,
            fn_: self.fn_,
            precision: ratio(tp, tp + fp),
            recall: ratio(tp, tp + fn_),
            accuracy: ratio(tp, tp + fp + fn_),
            f1: ratio(2.0 * tp, 2.0 * tp + fp + fn_),
            n_true: self.n_true,
            n_pred: self.n_pred,
            mean_true_score: ratio(self.sum_matched_score, self.n_true as f64),
            mean_matched_score: ratio(self.sum_matched_score, tp),
            panoptic_quality: ratio(self.sum_matched_score, tp + fp / 2.0 + fn_ / 2.0),
        }
    }
}

/// Everything measured for one image (or pooled over many), at the given thresholds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Foreground pixel counts.
    pub pixels: PixelCounts,
    /// The aggregated Jaccard index's sums.
    pub aji: AjiCounts,
    /// `(threshold, counts)` for each threshold.
    pub matches: Vec<(f64, MatchCounts)>,
}

impl Scores {
    /// Scores one image.
    pub fn of<L: Copy + Into<u64>, M: Copy + Into<u64>>(
        truth: &[L],
        pred: &[M],
        thresholds: &[f64],
    ) -> Result<Self, MetricsError> {
        let o = Overlap::new(truth, pred)?;
        Ok(Self {
            pixels: o.pixels(),
            aji: o.aji_counts(),
            matches: thresholds.iter().map(|&t| (t, o.matching(t))).collect(),
        })
    }

    /// Adds another image's scores (same thresholds) to these.
    pub fn add(&mut self, other: &Scores) {
        self.pixels += other.pixels;
        self.aji += other.aji;
        if self.matches.is_empty() {
            self.matches = other.matches.clone();
        } else {
            for ((_, a), (_, b)) in self.matches.iter_mut().zip(&other.matches) {
                *a += *b;
            }
        }
    }

    /// The matching figures at each threshold.
    pub fn matching(&self) -> Vec<Matching> {
        self.matches.iter().map(|(t, c)| c.stats(*t)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Found by the property test below: at τ = 0.1 two assignments tie on the objective, and the
    /// two directions pick different ones; counts and F1 agree, PQ need not.
    #[test]
    fn low_threshold_ties_keep_counts_symmetric() {
        let truth: Vec<u8> = vec![
            2, 3, 1, 0, 3, 0, 2, 1, 2, 2, 2, 1, 2, 2, 3, 2, 2, 2, 3, 0, 1, 3, 2, 0, 3, 0, 1, 2, 2, 0, 3, 0, 1, 2, 0, 0,
        ];
        let pred: Vec<u8> = vec![
            2, 1, 0, 0, 3, 0, 1, 3, 1, 1, 0, 3, 2, 1, 3, 3, 1, 2, 0, 0, 0, 3, 2, 0, 3, 0, 3, 2, 3, 0, 2, 0, 0, 0, 3, 1,
        ];
        let a = Overlap::new(&truth, &pred).expect("same size").matching(0.1);
        let b = Overlap::new(&pred, &truth).expect("same size").matching(0.1);
        assert_eq!((a.tp, a.fp, a.fn_), (b.tp, b.fn_, b.fp));
    }

    #[test]
    fn perfect_prediction_scores_one_whatever_the_numbering() {
        let truth: Vec<u16> = vec![0, 1, 1, 0, 2, 2, 2, 0, 3];
        let pred: Vec<u32> = vec![0, 7, 7, 0, 5, 5, 5, 0, 9];
        let s = Scores::of(&truth, &pred, &THRESHOLDS).expect("same size");
        for m in s.matching() {
            assert_eq!((m.tp, m.fp, m.fn_), (3, 0, 0));
            assert_eq!(
                (m.f1, m.accuracy, m.panoptic_quality, m.mean_matched_score),
                (1.0, 1.0, 1.0, 1.0)
            );
        }
        assert_eq!((s.pixels.dice(), s.aji.value()), (1.0, 1.0));
    }

    #[test]
    fn a_split_nucleus_is_one_match_and_one_false_positive() {
        // Truth: one object of 6 pixels; prediction: split into 4 + 2.
        let truth = [1u8, 1, 1, 1, 1, 1];
        let pred = [1u8, 1, 1, 1, 2, 2];
        let o = Overlap::new(&truth, &pred).expect("same size");
        let m = o.matching(0.5).stats(0.5);
        assert_eq!((m.tp, m.fp, m.fn_), (1, 1, 0));
        assert!((m.mean_matched_score - 4.0 / 6.0).abs() < 1e-12);
        assert!((m.f1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.panoptic_quality - (4.0 / 6.0) / 1.5).abs() < 1e-12);
        // At 0.75 the 4/6 overlap no longer counts.
        assert_eq!(o.matching(0.75).tp, 0);
        // AJI: the truth takes object 1 (IoU 4/6); object 2 is unused and joins the union.
        assert_eq!(
            o.aji_counts(),
            AjiCounts {
                intersection: 4,
                union: 6 + 2
            }
        );
        assert_eq!(o.pixels().dice(), 1.0);
    }

    #[test]
    fn optimal_assignment_beats_greedy_below_one_half() {
        // IoU(t1, p1) = 4/8, IoU(t1, p2) = 2/6, IoU(t2, p1) = 2/6, t2 and p2 do not touch. At
        // τ = 0.3, greedy by IoU pairs t1 with p1 and leaves t2 alone (1 match); the optimum pairs
        // t1 with p2 and t2 with p1 (2 matches).
        let truth = [0u8, 0, 1, 1, 1, 1, 1, 1, 2, 2];
        let pred = [0u8, 0, 2, 2, 1, 1, 1, 1, 1, 1];
        let o = Overlap::new(&truth, &pred).expect("same size");
        let m = o.matching(0.3);
        assert_eq!(m.tp, 2);
        assert!((m.sum_matched_score - 2.0 / 3.0).abs() < 1e-12);
        // At 0.5 only t1–p1 counts.
        assert_eq!(o.matching(0.5).tp, 1);
    }

    #[test]
    fn sizes_must_agree() {
        assert!(matches!(
            Overlap::new(&[0u8; 4], &[0u8; 5]),
            Err(MetricsError::SizeMismatch { truth: 4, pred: 5 })
        ));
    }

    proptest! {
        #[test]
        fn counts_are_consistent_and_symmetric(
            truth in proptest::collection::vec(0u8..4, 36),
            pred in proptest::collection::vec(0u8..4, 36),
        ) {
            let a = Overlap::new(&truth, &pred).expect("same size");
            let b = Overlap::new(&pred, &truth).expect("same size");
            for t in [0.1, 0.5, 0.75] {
                let (ma, mb) = (a.matching(t), b.matching(t));
                prop_assert_eq!(ma.tp + ma.fp, ma.n_pred);
                prop_assert_eq!(ma.tp + ma.fn_, ma.n_true);
                // Swapping truth and prediction swaps FP and FN and keeps TP, F1 and PQ.
                prop_assert_eq!((ma.tp, ma.fp, ma.fn_), (mb.tp, mb.fn_, mb.fp));
                let (sa, sb) = (ma.stats(t), mb.stats(t));
                prop_assert!((sa.f1 - sb.f1).abs() < 1e-12);
                // Below 0.5 an object can match several partners, and assignments that tie on
                // StarDist's objective (count, then the IoU of *all* assigned pairs) may differ in
                // the IoU of the matched ones, so PQ is symmetric only from 0.5 up, where matches
                // are unique.
                if t >= 0.5 {
                    prop_assert!((sa.panoptic_quality - sb.panoptic_quality).abs() < 1e-12);
                }
                prop_assert!((0.0..=1.0).contains(&sa.panoptic_quality));
                prop_assert!((0.0..=1.0).contains(&sa.f1));
            }
            prop_assert!((a.pixels().dice() - b.pixels().dice()).abs() < 1e-12);
            let aji = a.aji_counts().value();
            prop_assert!((0.0..=1.0).contains(&aji));
        }

        #[test]
        fn pooling_adds_counts(
            x in proptest::collection::vec(0u8..3, 16),
            y in proptest::collection::vec(0u8..3, 16),
        ) {
            let one = Scores::of(&x, &y, &THRESHOLDS).expect("same size");
            let mut pooled = Scores::default();
            pooled.add(&one);
            pooled.add(&one);
            prop_assert_eq!(pooled.matches[0].1.tp, 2 * one.matches[0].1.tp);
            prop_assert_eq!(pooled.pixels.both, 2 * one.pixels.both);
            // Ratios are unchanged by pooling an image with itself.
            prop_assert!((pooled.matching()[0].f1 - one.matching()[0].f1).abs() < 1e-12);
        }
    }

    #[test]
    fn matched_scores_sum_in_the_same_order_every_time() {
        // Many separate objects, each matched with a different IoU: the sum of IoUs depends on
        // the order it is added in, which must not follow a hash map's (random) order.
        let (w, h) = (200usize, 40usize);
        let (mut truth, mut pred) = (vec![0u32; w * h], vec![0u32; w * h]);
        for k in 0..40usize {
            let x0 = k * 5;
            for y in 0..(10 + k % 30) {
                truth[y * w + x0] = k as u32 + 1;
                truth[y * w + x0 + 1] = k as u32 + 1;
                pred[y * w + x0] = k as u32 + 1;
            }
            for y in 0..(7 + k % 13) {
                pred[y * w + x0 + 1] = k as u32 + 1;
            }
        }
        let first = Overlap::new(&truth, &pred).expect("same size").matching(0.5);
        for _ in 0..50 {
            let again = Overlap::new(&truth, &pred).expect("same size").matching(0.5);
            assert_eq!(again.sum_matched_score.to_bits(), first.sum_matched_score.to_bits());
        }
        assert_eq!(first.tp, 40);
    }
}
