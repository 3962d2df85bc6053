//! Work spread over machines. A [`Shard`] is one share of N, and [`assign`] decides which items
//! each share takes (balanced by pixel count, the same on every machine) — for `evaluate` and
//! for `build`.
//!
//! `build --shard I/N` prepares its share of the dataset ([`crate::prepare::build_share`]) and
//! leaves a [`RECORD`] beside its manifest; [`merge`] joins the output folders of all N shares
//! into exactly what one unsharded build writes: the same prepared files and a byte-identical
//! `manifest.json`, with the checks that need every item (images whose content repeats another's)
//! done again across shares. The record is CBOR, so every number in it comes back bit for bit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cellops_formats::links::{Entry, Tree};
use serde::{Deserialize, Serialize};

use crate::config::BuildConfig;
use crate::layout::Item;
use crate::manifest::{Manifest, ManifestItem, sha256_hex};
use crate::prepare::{self, BuildReport, Outcome};
use crate::problem::{Problem, ProblemKind};
use crate::staging::{StagingDir, StagingError};

/// The shard record's file name in a sharded build's output folder.
pub const RECORD: &str = "shard.cbor";

/// The shard record's format tag.
pub const FORMAT: &str = "cellops.build-shard/1";

/// One share of N (which items it takes: [`assign`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Which share, from 1.
    pub index: usize,
    /// How many shares.
    pub count: usize,
}

impl Shard {
    /// Parses `I/N` (1 ≤ I ≤ N), as `--shard` takes it.
    ///
    /// ```
    /// use cellops_dataset::shard::Shard;
    /// assert_eq!(Shard::parse("2/3"), Ok(Shard { index: 2, count: 3 }));
    /// assert!(Shard::parse("0/3").is_err() && Shard::parse("4/3").is_err() && Shard::parse("3").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self, String> {
        let usage = || format!("`{s}` is not I/N with 1 ≤ I ≤ N (e.g. 2/3)");
        let (i, n) = s.trim().split_once('/').ok_or_else(usage)?;
        let (index, count) = (
            i.trim().parse::<usize>().map_err(|_| usage())?,
            n.trim().parse::<usize>().map_err(|_| usage())?,
        );
        if index == 0 || index > count {
            return Err(usage());
        }
        Ok(Self { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The share (from 1) of each item, given each item's work (its pixel count): the largest
/// first, each to the share with the least work so far (the lowest index on ties) — the same on
/// every machine for the same items, and within one item's work of balanced.
///
/// ```
/// use cellops_dataset::shard::assign;
/// assert_eq!(assign(&[1, 9, 4, 4], 2), vec![2, 1, 2, 2]);
/// assert_eq!(assign(&[5, 5, 5], 1), vec![1, 1, 1]);
/// ```
pub fn assign(work: &[u64], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..work.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(work[i]), i));
    let mut load = vec![0u64; count.max(1)];
    let mut share = vec![0; work.len()];
    for i in order {
        let least = (0..load.len()).min_by_key(|&k| (load[k], k)).unwrap_or(0);
        load[least] += work[i].max(1);
        share[i] = least + 1;
    }
    share
}

/// The positions of the items of `root` that `shard` takes, by their images' pixel counts (read
/// from the headers; an unreadable image counts as one pixel, and its share reports it).
pub fn positions(root: &Path, items: &[Item], shard: Shard) -> Vec<usize> {
    let work: Vec<u64> = items
        .iter()
        .map(|i| crate::io::dimensions(&root.join(&i.image)).map_or(1, |(w, h)| u64::from(w) * u64::from(h)))
        .collect();
    let assigned = assign(&work, shard.count);
    (0..items.len()).filter(|&p| assigned[p] == shard.index).collect()
}

/// Why shard records are not every share of one run, once each (for `build merge` and
/// `evaluate merge` alike).
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// No record was given.
    #[error("no shard given: give every shard's output folder")]
    None,
    /// A record says another number of shards than the first.
    #[error("{path}: the number of shards differs from {first}'s: shards of one run only")]
    Count {
        /// The record.
        path: PathBuf,
        /// The first record.
        first: PathBuf,
    },
    /// A record's share is not one of its count.
    #[error("{path}: shard {shard} is not a share of its count")]
    OutOfRange {
        /// The record.
        path: PathBuf,
        /// Its share.
        shard: Shard,
    },
    /// A share is given twice.
    #[error("shard {shard} given twice: {first} and {second}")]
    Duplicate {
        /// The share.
        shard: Shard,
        /// Its first record.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// Shares are missing.
    #[error("shards {missing} of {count} are missing: give every shard's output folder")]
    Missing {
        /// The missing shares' indexes, comma-separated.
        missing: String,
        /// How many shares the run had.
        count: usize,
    },
}

/// Checks that `records` (each record's path and share) are every share of one run, once each.
///
/// ```
/// use cellops_dataset::shard::{Shard, ShareError, check_shares};
/// let at = |i| ((format!("s{i}")).into(), Shard { index: i, count: 2 });
/// assert!(check_shares(&[at(2), at(1)]).is_ok());
/// assert!(matches!(check_shares(&[at(1)]), Err(ShareError::Missing { .. })));
/// assert!(matches!(check_shares(&[at(1), at(1)]), Err(ShareError::Duplicate { .. })));
/// ```
pub fn check_shares(records: &[(PathBuf, Shard)]) -> Result<(), ShareError> {
    let Some((first_path, first)) = records.first() else {
        return Err(ShareError::None);
    };
    let mut by_index: BTreeMap<usize, &PathBuf> = BTreeMap::new();
    for (path, shard) in records {
        if shard.count != first.count {
            return Err(ShareError::Count {
                path: path.clone(),
                first: first_path.clone(),
            });
        }
        if !(1..=shard.count).contains(&shard.index) {
            return Err(ShareError::OutOfRange {
                path: path.clone(),
                shard: *shard,
            });
        }
        if let Some(other) = by_index.insert(shard.index, path) {
            return Err(ShareError::Duplicate {
                shard: *shard,
                first: other.clone(),
                second: path.clone(),
            });
        }
    }
    let missing: Vec<String> = (1..=first.count)
        .filter(|i| !by_index.contains_key(i))
        .map(|i| i.to_string())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ShareError::Missing {
            missing: missing.join(", "),
            count: first.count,
        })
    }
}

/// A sharded build's record ([`RECORD`]): which share of which items, and the share's manifest
/// and warnings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// [`FORMAT`].
    pub format: String,
    /// The cellops version that wrote it (a merge takes only its own version's records).
    pub tool_version: String,
    /// Which share.
    pub shard: Shard,
    /// Every item's image (relative to the dataset), in the order the layout found them.
    pub items: Vec<String>,
    /// The positions in `items` of this share's.
    pub share: Vec<usize>,
    /// The share's manifest, as its `manifest.json` holds it.
    pub manifest: Manifest,
    /// The share's problems (warnings: a share with errors writes nothing).
    pub problems: Vec<Problem>,
}

impl Record {
    /// The record as bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        // Writing to a Vec fails only on a type serde cannot encode, which a Record is not.
        let _ = ciborium::into_writer(self, &mut bytes);
        bytes
    }
}

/// Why the output folders of a sharded build cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A record or prepared file is a link out of its shard's folder.
    #[error(transparent)]
    Link(#[from] cellops_formats::FileError),
    /// A record or prepared file could not be read, or is not what it claims.
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A record was written by another format or version.
    #[error(
        "{path}: written by another version or format; this is cellops {} ({FORMAT}): build every shard and merge with one version",
        prepare::TOOL_VERSION
    )]
    Version {
        /// The record.
        path: PathBuf,
    },
    /// A record belongs to another build than the first one.
    #[error("{path}: {what} differs from {first}'s: shards of one build only")]
    Mismatch {
        /// The record.
        path: PathBuf,
        /// The first record.
        first: PathBuf,
        /// What differs.
        what: &'static str,
    },
    /// The records are not every share of one build, once each.
    #[error(transparent)]
    Shares(#[from] ShareError),
    /// The output folder holds something that is not a CellOps build, or cannot be written.
    #[error(transparent)]
    Output(#[from] prepare::BuildError),
}

impl From<StagingError> for MergeError {
    fn from(e: StagingError) -> Self {
        MergeError::Output(e.into())
    }
}

/// Reads the record in a shard's output folder (a link out of the folder is refused unread).
pub fn read(dir: &Path) -> Result<Record, MergeError> {
    let path = dir.join(RECORD);
    let failed = |message: String| MergeError::Read {
        path: path.clone(),
        message,
    };
    if !path.exists() && !path.is_symlink() {
        return Err(failed(format!(
            "missing: {} is not the output of a `build --shard` run",
            dir.display()
        )));
    }
    Tree::new(dir)?.check(&path)?;
    let bytes = std::fs::read(&path).map_err(|e| failed(format!("cannot read: {e}")))?;
    let record: Record = ciborium::from_reader(bytes.as_slice())
        .map_err(|_| failed("not a build shard record of this version (it does not decode)".into()))?;
    if record.format != FORMAT || record.tool_version != prepare::TOOL_VERSION {
        return Err(MergeError::Version { path });
    }
    Ok(record)
}

/// A merged build: its report, and the dataset and configuration the shares were built from.
#[derive(Debug, Clone)]
pub struct Merged {
    /// What a build of the whole dataset reports (the shares' problems, once each).
    pub report: BuildReport,
    /// The dataset folder, as the shares' manifests record it.
    pub dataset: PathBuf,
    /// The build configuration.
    pub config: BuildConfig,
}

/// Joins the output folders of every share of one build into `output`: the prepared files of
/// every share, checked against their sha256, and the manifest the unsharded build writes. An
/// image whose content repeats another share's fails the merge as it fails an unsharded build
/// (the report lists it; nothing is written).
pub fn merge(dirs: &[PathBuf], output: &Path) -> Result<Merged, MergeError> {
    let records = dirs
        .iter()
        .map(|d| Ok((d.clone(), read(d)?)))
        .collect::<Result<Vec<_>, MergeError>>()?;
    let joined = join(records)?;
    let manifest_path = output.join(cellops_formats::dataset::MANIFEST);
    let mut problems: Vec<Problem> = Vec::new();
    for p in joined.problems.into_iter().chain(duplicates(&joined.entries)) {
        if !problems.contains(&p) {
            problems.push(p);
        }
    }
    prepare::sort_problems(&mut problems);
    let mut entries: Vec<ManifestItem> = joined.entries.iter().map(|(_, e)| e.clone()).collect();
    entries.sort_by(|a, b| (a.split, &a.id).cmp(&(b.split, &b.id)));
    let counts = prepare::count(&entries);
    let mut report = BuildReport {
        outcome: Outcome::Failed,
        layout: joined.manifest.source.layout,
        manifest_path: manifest_path.clone(),
        counts,
        prepared: entries.len(),
        reused: 0,
        problems,
    };
    let dataset = PathBuf::from(&joined.manifest.source.root);
    let config = joined.manifest.config.clone();
    let merged = |report| Merged {
        report,
        dataset: dataset.clone(),
        config: config.clone(),
    };
    if report.errors() > 0 {
        return Ok(merged(report));
    }
    prepare::read_old_manifest(output, &manifest_path)?;
    let staging = StagingDir::new(output)?;
    for (dir, entry) in &joined.entries {
        copy_outputs(dir, entry, staging.path())?;
    }
    let manifest = Manifest {
        counts,
        items: entries,
        ..joined.manifest
    };
    let json = prepare::manifest_json(&manifest, &manifest_path)?;
    prepare::write_file(
        &staging.path().join(cellops_formats::dataset::MANIFEST),
        json.as_bytes(),
    )?;
    staging.commit(output)?;
    report.outcome = Outcome::Written;
    Ok(merged(report))
}

/// The build that shard records make up together.
struct Joined {
    /// The first share's manifest (its header is every share's).
    manifest: Manifest,
    /// Every entry with its shard's folder, in the order the layout found the items.
    entries: Vec<(PathBuf, ManifestItem)>,
    /// Every share's problems.
    problems: Vec<Problem>,
}

/// Checks that the records are every share of one build, once each, and joins them.
fn join(records: Vec<(PathBuf, Record)>) -> Result<Joined, MergeError> {
    let shares: Vec<(PathBuf, Shard)> = records.iter().map(|(d, r)| (d.join(RECORD), r.shard)).collect();
    check_shares(&shares)?;
    let Some((first_path, first)) = records.first().map(|(d, r)| (d.join(RECORD), r.clone())) else {
        return Err(ShareError::None.into());
    };
    let position: std::collections::HashMap<&str, usize> =
        first.items.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    let mut covered = std::collections::HashSet::new();
    let mut entries: Vec<(usize, PathBuf, ManifestItem)> = Vec::new();
    let mut problems = Vec::new();
    for (dir, record) in records {
        let path = dir.join(RECORD);
        let differs = |what| MergeError::Mismatch {
            path: path.clone(),
            first: first_path.clone(),
            what,
        };
        if record.items != first.items {
            return Err(differs("the list of images"));
        }
        if record.manifest.source != first.manifest.source || record.manifest.tool != first.manifest.tool {
            return Err(differs("the dataset"));
        }
        if record.manifest.config_sha256 != first.manifest.config_sha256 {
            return Err(differs("the build configuration"));
        }
        for &at in &record.share {
            if at >= first.items.len() || !covered.insert(at) {
                let message = format!("its share names item {} twice or out of the list", at + 1);
                return Err(MergeError::Read { path, message });
            }
        }
        let share: std::collections::HashSet<usize> = record.share.iter().copied().collect();
        for e in record.manifest.items {
            let at = position.get(e.image.as_str()).copied();
            let Some(at) = at.filter(|a| share.contains(a)) else {
                let message = format!(
                    "item `{}` is not one of this share's images",
                    cellops_formats::error::excerpt(&e.id)
                );
                return Err(MergeError::Read { path, message });
            };
            entries.push((at, dir.clone(), e));
        }
        problems.extend(record.problems);
    }
    if let Some(lost) = (0..first.items.len()).find(|p| !covered.contains(p)) {
        return Err(MergeError::Read {
            path: first_path,
            message: format!(
                "image `{}` is in no shard: the shares were planned differently (build every shard of one dataset with one version)",
                cellops_formats::error::excerpt(&first.items[lost])
            ),
        });
    }
    entries.sort_by_key(|(at, ..)| *at);
    Ok(Joined {
        manifest: first.manifest,
        entries: entries.into_iter().map(|(_, d, e)| (d, e)).collect(),
        problems,
    })
}

/// An error for each image whose content repeats an earlier one's, as an unsharded build finds.
fn duplicates(entries: &[(PathBuf, ManifestItem)]) -> Vec<Problem> {
    let mut first: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (_, e) in entries {
        match first.get(e.image_sha256.as_str()) {
            Some(earlier) => out.push(Problem::error(
                ProblemKind::Duplicate,
                Path::new(&e.image),
                prepare::duplicate_message(Path::new(earlier)),
            )),
            None => {
                first.insert(&e.image_sha256, &e.image);
            }
        }
    }
    out
}

/// Copies an entry's prepared files from its shard's folder into `to`, each checked against the
/// sha256 the manifest gives it (a link out of the folder, a path out of it, or a changed file
/// is refused).
fn copy_outputs(dir: &Path, entry: &ManifestItem, to: &Path) -> Result<(), MergeError> {
    let tree = Tree::new(dir)?;
    for o in &entry.outputs {
        for (rel, sha) in [(&o.image, &o.image_sha256), (&o.mask, &o.mask_sha256)] {
            let path = dir.join(rel);
            let failed = |message: &str| MergeError::Read {
                path: path.clone(),
                message: message.to_owned(),
            };
            cellops_formats::links::check_relative(Path::new(rel))?;
            if !matches!(tree.check(&path)?, Entry::File) {
                return Err(failed("not a file"));
            }
            let bytes = std::fs::read(&path).map_err(|e| failed(&format!("cannot read: {e}")))?;
            if sha256_hex(&bytes) != *sha {
                return Err(failed(
                    "its sha256 is not the one its manifest gives: rebuild the shard",
                ));
            }
            prepare::write_file(&to.join(rel), &bytes)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_item_once() {
        for n in 1..6 {
            let work: Vec<u64> = (0..17u64).map(|i| (i * 7919) % 23).collect();
            let a = assign(&work, n);
            assert!(a.iter().all(|&s| (1..=n).contains(&s)));
            let loads: Vec<u64> = (1..=n)
                .map(|s| (0..17).filter(|&i| a[i] == s).map(|i| work[i].max(1)).sum())
                .collect();
            let (lo, hi) = (loads.iter().min().copied(), loads.iter().max().copied());
            assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 22), "{loads:?}");
        }
    }
}
