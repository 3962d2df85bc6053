//! Measuring segmentations: how well a predicted instance segmentation matches the truth.
//!
//! [`metrics`] follows the conventions of StarDist's `matching` (the names in its JSON output are
//! the same): objects are matched one to one by IoU with an optimal assignment
//! ([`assignment::maximise`]), a match counts when its IoU reaches the threshold τ, and from the
//! true positives, false positives and false negatives come precision, recall, F1, the DSB's
//! "accuracy" TP/(TP+FP+FN), mean matched IoU and panoptic quality; plus pixel Dice/IoU and the
//! aggregated Jaccard index. Per-nucleus morphometry follows in the same crate, and the separation
//! of touching nuclei ([`instances`]: boundary seeds, or [`distance`] transform + [`watershed`]).

pub mod assignment;
pub mod contour;
pub mod distance;
pub mod instances;
pub mod intensity;
pub mod metrics;
pub mod objects;
pub mod profile;
pub mod shape;
pub mod stain;
pub mod table;
pub mod threshold;
pub mod watershed;
