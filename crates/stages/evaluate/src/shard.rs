//! Evaluation spread over machines: `--shard I/N` measures a deterministic share of the images
//! (the N shares balanced by pixel count, [`assign`]) and leaves beside its reports a
//! [`RECORD`] of everything measured; `merge` joins the records of all N shards into exactly what
//! one unsharded run writes — the same files, byte for byte, with pooled figures recomputed
//! from the pooled counts.
//!
//! The record is CBOR, not JSON, so that every number (NaN included) comes back bit for bit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cellops_formats::links::{Entry, Tree};
use cellops_measure::metrics::Scores;
use cellops_measure::objects::Cell;
use serde::{Deserialize, Serialize};

use crate::report::{ImageRecord, ParamsInfo, PostProcessingInfo, SourceInfo};

/// The shard record's file name in a shard's output folder.
pub const RECORD: &str = "shard.cbor";

/// The shard record's format tag.
pub const FORMAT: &str = "cellops.evaluation-shard/1";

pub use cellops_dataset::shard::{Shard, ShareError, assign, check_shares};

/// What every image of a run shares: the parameter file, the segmentation's source and
/// post-processing, and what the reports embed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The parameter file.
    pub params: ParamsInfo,
    /// Its text (written as `params.yaml`).
    pub params_text: String,
    /// The segmentation's source.
    pub source: SourceInfo,
    /// The post-processing that applied.
    pub postprocessing: Option<PostProcessingInfo>,
    /// The model bundle's learning curve (CSV), shown in the HTML report.
    pub learning_curve: Option<String>,
    /// Overlays embedded in the HTML report.
    pub html_overlays: usize,
}

/// One image's results: its record, its nuclei's report rows and its scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// The image's record in `summary.json`.
    pub record: ImageRecord,
    /// One row per nucleus (`objects.csv`).
    pub rows: Vec<Vec<(String, Cell)>>,
    /// Scores against the ground truth.
    pub scores: Option<Scores>,
    /// The classical line's scores beside a model's.
    pub classical: Option<Scores>,
}

/// An image in a shard record, with its position in the sorted list of all images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    /// Position in [`Record::ids`].
    pub position: usize,
    /// Its results.
    pub measured: Measured,
}

/// A shard's record (`shard.cbor`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// [`FORMAT`].
    pub format: String,
    /// The cellops version that wrote it (a merge takes only its own version's records).
    pub tool_version: String,
    /// Which share.
    pub shard: Shard,
    /// Every image of the unsharded run, in order.
    pub ids: Vec<String>,
    /// What the run's images share.
    pub info: RunInfo,
    /// This share's images.
    pub images: Vec<Placed>,
}

/// Why shard records cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// A record or overlay is a link out of its shard's folder, or cannot be read.
    #[error(transparent)]
    Link(#[from] cellops_formats::FileError),
    /// A record could not be read.
    #[error("{path}: {message}")]
    Read {
        /// The record (or overlay) file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A record was written by another format or version.
    #[error("{path}: written by {found}; this is cellops {} ({FORMAT}): run every shard and the merge with one version", env!("CARGO_PKG_VERSION"))]
    Version {
        /// The record.
        path: PathBuf,
        /// Its format and version.
        found: String,
    },
    /// A record belongs to another run than the first one.
    #[error("{path}: {what} differs from {first}'s: shards of one run only")]
    Mismatch {
        /// The record.
        path: PathBuf,
        /// The first record.
        first: PathBuf,
        /// What differs.
        what: &'static str,
    },
    /// The records are not every share of one run, once each.
    #[error(transparent)]
    Shares(#[from] ShareError),
    /// A record's images are not its share of the run's.
    #[error("{path}: {message}")]
    Invalid {
        /// The record.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Encodes a record.
pub fn encode(record: &Record) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    ciborium::into_writer(record, &mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Reads the record in a shard's output folder (a link out of the folder is refused unread).
pub fn read(dir: &Path) -> Result<Record, ShardError> {
    let path = dir.join(RECORD);
    let failed = |message: String| ShardError::Read {
        path: path.clone(),
        message,
    };
    if !path.exists() && !path.is_symlink() {
        return Err(failed(format!(
            "missing: {} is not the output of an `evaluate --shard` run",
            dir.display()
        )));
    }
    Tree::new(dir)?.check(&path)?;
    let bytes = std::fs::read(&path).map_err(|e| failed(format!("cannot read: {e}")))?;
    let record: Record = ciborium::from_reader(bytes.as_slice()).map_err(|e| failed(cbor_message(&e)))?;
    if record.format != FORMAT || record.tool_version != env!("CARGO_PKG_VERSION") {
        return Err(ShardError::Version {
            path,
            found: format!(
                "cellops {} ({})",
                cellops_formats::error::excerpt(&record.tool_version),
                cellops_formats::error::excerpt(&record.format)
            ),
        });
    }
    Ok(record)
}

/// What is wrong with a record that does not decode, quoting none of its values.
fn cbor_message(e: &ciborium::de::Error<std::io::Error>) -> String {
    use ciborium::de::Error;
    match e {
        Error::Io(e) => format!("cannot read: {e}"),
        Error::Syntax(at) => format!("not a shard record (malformed at byte {at})"),
        Error::Semantic(at, m) => format!(
            "not a shard record of this version{}: {}",
            at.map(|a| format!(" (at byte {a})")).unwrap_or_default(),
            cellops_formats::error::parser_message(m)
        ),
        Error::RecursionLimitExceeded => "not a shard record (nested too deep)".into(),
    }
}

/// An image id that names a file in one folder: no separators, not `.` or `..`.
fn plain_name(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && !id.contains(['/', '\\', '\0'])
}

/// Checks that `record`'s images are images of `ids`, in order, each named by its id.
fn check_share(path: &Path, record: &Record) -> Result<(), ShardError> {
    let invalid = |message: String| ShardError::Invalid {
        path: path.to_owned(),
        message,
    };
    let positions: Vec<usize> = record.images.iter().map(|p| p.position).collect();
    if positions.windows(2).any(|w| w[0] >= w[1]) || positions.last().is_some_and(|&p| p >= record.ids.len()) {
        return Err(invalid(format!(
            "its images are not images of the run's {} in order",
            record.ids.len()
        )));
    }
    for placed in &record.images {
        let id = &record.ids[placed.position];
        if placed.measured.record.summary.image != *id || !plain_name(id) {
            return Err(invalid(format!(
                "image {} is recorded as `{}`",
                placed.position + 1,
                cellops_formats::error::excerpt(&placed.measured.record.summary.image)
            )));
        }
    }
    Ok(())
}

/// The run that shard records make up together.
#[derive(Debug)]
pub struct Joined {
    /// What the run's images share.
    pub info: RunInfo,
    /// Every image, in the unsharded order, with the shard folder its overlay is in.
    pub images: Vec<(PathBuf, Measured)>,
}

/// Joins the records of every share of one run (`(folder, record)` pairs, in any order).
pub fn join(records: Vec<(PathBuf, Record)>) -> Result<Joined, ShardError> {
    let shares: Vec<(PathBuf, Shard)> = records.iter().map(|(d, r)| (d.join(RECORD), r.shard)).collect();
    check_shares(&shares)?;
    let Some((first_dir, first)) = records.first().map(|(d, r)| (d.join(RECORD), r.clone())) else {
        return Err(ShareError::None.into());
    };
    let mut by_index: BTreeMap<usize, (PathBuf, Record)> = BTreeMap::new();
    for (dir, record) in records {
        let path = dir.join(RECORD);
        let differs = |what| ShardError::Mismatch {
            path: path.clone(),
            first: first_dir.clone(),
            what,
        };
        if record.ids != first.ids {
            return Err(differs("the list of images"));
        }
        if record.info.params != first.info.params || record.info.params_text != first.info.params_text {
            return Err(differs("the parameter file"));
        }
        if record.info != first.info {
            return Err(differs("the segmentation (source, post-processing or report settings)"));
        }
        check_share(&path, &record)?;
        by_index.insert(record.shard.index, (dir, record));
    }
    let mut images: Vec<(usize, PathBuf, Measured)> = by_index
        .into_values()
        .flat_map(|(dir, record)| {
            record
                .images
                .into_iter()
                .map(move |p| (p.position, dir.clone(), p.measured))
        })
        .collect();
    images.sort_by_key(|(position, ..)| *position);
    // Every image in exactly one share.
    let positions: Vec<usize> = images.iter().map(|(p, ..)| *p).collect();
    if let Some(p) = (0..first.ids.len()).find(|&p| positions.get(p) != Some(&p)) {
        let id = cellops_formats::error::excerpt(&first.ids[p]);
        let how = if positions.contains(&p) {
            "in two shards"
        } else {
            "in no shard"
        };
        return Err(ShardError::Invalid {
            path: first_dir,
            message: format!("image `{id}` is {how}: shards of different runs"),
        });
    }
    Ok(Joined {
        info: first.info,
        images: images.into_iter().map(|(_, dir, m)| (dir, m)).collect(),
    })
}

/// The files a record lists for its image (overlay, labels, GeoJSON), each checked to be one of
/// the names `evaluate` gives them — nothing else is copied from a shard's folder.
pub fn files(record: &ImageRecord) -> Vec<String> {
    let id = &record.summary.image;
    let allowed = [
        format!("overlays/{id}.png"),
        format!("labels/{id}.png"),
        format!("labels/{id}.tif"),
        format!("geojson/{id}.geojson"),
    ];
    [&record.overlay, &record.labels, &record.geojson]
        .into_iter()
        .flatten()
        .filter(|rel| allowed.contains(rel))
        .cloned()
        .collect()
}

/// Reads the file `rel` of a shard's output folder (a link out of it is refused).
pub fn file(dir: &Path, rel: &str) -> Result<Vec<u8>, ShardError> {
    let path = dir.join(rel);
    let failed = |message: String| ShardError::Read {
        path: path.clone(),
        message,
    };
    match Tree::new(dir)?.check(&path)? {
        Entry::File => std::fs::read(&path).map_err(|e| failed(format!("cannot read: {e}"))),
        Entry::Folder => Err(failed("not a file".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_balanced_by_work() {
        let work: Vec<u64> = (0..40).map(|i| (i * 7919 % 97 + 1) * 1000).collect();
        for count in 1..=7 {
            let share = assign(&work, count);
            assert!(share.iter().all(|&s| (1..=count).contains(&s)));
            let loads: Vec<u64> = (1..=count)
                .map(|s| share.iter().zip(&work).filter(|(k, _)| **k == s).map(|(_, w)| w).sum())
                .collect();
            let (max, min) = (loads.iter().max().unwrap_or(&0), loads.iter().min().unwrap_or(&0));
            assert!(max - min <= *work.iter().max().unwrap_or(&0), "{count}: {loads:?}");
        }
        assert_eq!(Shard::parse(" 1 / 1 "), Ok(Shard { index: 1, count: 1 }));
        assert!(Shard::parse("1/0").is_err() && Shard::parse("a/2").is_err() && Shard::parse("-1/2").is_err());
    }

    #[test]
    fn image_ids_that_leave_the_folder_are_not_names() {
        assert!(plain_name("img_01"));
        for bad in ["", ".", "..", "../x", "a/b", "a\\b"] {
            assert!(!plain_name(bad), "{bad}");
        }
    }
}
