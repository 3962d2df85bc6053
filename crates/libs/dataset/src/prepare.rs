//! The build pipeline: discover → read, hash, validate, preprocess (in parallel) → write a prepared
//! dataset and its manifest, atomically and incrementally.
//!
//! Nothing is written to the output folder unless every item is valid: items are prepared in a
//! staging folder beside the output, which replaces the output in one rename at the end. Items whose
//! key (tool version, configuration, id, split, source hashes) matches the existing manifest are
//! hard-linked from the existing output instead of being decoded again; when every item matches and
//! the manifest would be byte-identical, nothing is written at all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::config::{BuildConfig, ConfigError, Equalize, EqualizeMethod, Filter, NormalizeMethod};
use crate::io::{self, DecodeError, Format};
use crate::layout::{self, Discovery, Item, LayoutError, MaskSource, Subset};
use crate::manifest::{self, Counts, Manifest, ManifestItem, OutputFile, Source, Tool, sha256_hex};
use crate::mask::{self, MaskKind};
use crate::ops::polarity::Polarity;
use crate::ops::{colour, equalize, normalize, polarity, resize, scale, tile};
use crate::problem::{Problem, ProblemKind, Severity};
use crate::raster::{Labels, Raster, Sample, Samples};
use crate::shard::{self, Shard};
use crate::split::{self, SplitError};
use crate::staging::{StagingDir, StagingError};

/// The version written into manifests and item keys.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

impl From<StagingError> for BuildError {
    fn from(e: StagingError) -> Self {
        BuildError::Write {
            path: e.path,
            source: e.source,
        }
    }
}

/// Errors that stop a build before or after validation (problems in the data are not errors: they
/// are listed in the [`BuildReport`]).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The dataset folder could not be read.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The split file is unusable.
    #[error(transparent)]
    Split(#[from] SplitError),
    /// The output folder holds something that is not a CellOps build.
    #[error("output folder {0} is not empty and holds no manifest.json: refusing to replace it")]
    OutputNotOurs(PathBuf),
    /// The output folder is inside the dataset, or the dataset inside it.
    #[error("output folder {output} overlaps the dataset folder {dataset}")]
    OutputOverlaps {
        /// The output folder.
        output: PathBuf,
        /// The dataset folder.
        dataset: PathBuf,
    },
    /// The existing manifest cannot be read.
    #[error("existing manifest {path} is unreadable ({message}); remove the output folder to rebuild")]
    OldManifest {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Writing the output failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An image could not be encoded.
    #[error("cannot encode {path}: {message}")]
    Encode {
        /// The file being written.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// Receives progress from a running build (from several threads).
pub trait Observer: Sync {
    /// The number of items found.
    fn started(&self, _items: usize) {}
    /// One item has been read (and prepared, unless it had problems).
    fn item_done(&self, _id: &str) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Quiet;
impl Observer for Quiet {}

/// What happened to the output folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A new output was written (some or all items prepared afresh).
    Written,
    /// Every item and the manifest were already up to date: nothing was written.
    Unchanged,
    /// Validation found errors: nothing was written.
    Failed,
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// What happened to the output.
    pub outcome: Outcome,
    /// The layout that was read.
    pub layout: layout::LayoutKind,
    /// The manifest path (written, or existing when unchanged).
    pub manifest_path: PathBuf,
    /// Totals (of the new manifest; of the valid items when failed).
    pub counts: Counts,
    /// Items prepared afresh.
    pub prepared: usize,
    /// Items reused from the previous build.
    pub reused: usize,
    /// All problems, errors first, then by path.
    pub problems: Vec<Problem>,
}

impl BuildReport {
    /// Number of error-level problems.
    pub fn errors(&self) -> usize {
        self.problems.iter().filter(|p| p.severity == Severity::Error).count()
    }

    /// Number of warnings.
    pub fn warnings(&self) -> usize {
        self.problems.len() - self.errors()
    }
}

/// Builds the dataset at `dataset` into `output` under `config`.
pub fn build(
    dataset: &Path,
    output: &Path,
    config: &BuildConfig,
    observer: &dyn Observer,
) -> Result<BuildReport, BuildError> {
    build_share(dataset, output, config, None, observer)
}

/// Builds the share `shard` of the dataset (all of it with none): splits are assigned over every
/// item, so each share's items land where the unsharded build puts them, and a share leaves a
/// [`shard::RECORD`] beside its manifest for [`shard::merge`].
pub fn build_share(
    dataset: &Path,
    output: &Path,
    config: &BuildConfig,
    shard: Option<Shard>,
    observer: &dyn Observer,
) -> Result<BuildReport, BuildError> {
    config.validate(Path::new("<config>"))?;
    check_overlap(dataset, output)?;
    let Discovery {
        kind,
        items,
        mut problems,
    } = layout::discover(dataset, config.layout)?;
    let split_map = match &config.split.file {
        Some(f) => Some(split::read_split_file(f)?),
        None => None,
    };
    let (splits, split_problems) = split::assign(&items, &config.split, split_map.as_ref());
    problems.extend(split_problems);
    let all: Vec<String> = items.iter().map(|i| slash(&i.image)).collect();
    let share = shard.map(|s| (s, shard::positions(dataset, &items, s)));
    let (items, splits): (Vec<Item>, Vec<Option<Subset>>) = match &share {
        Some((_, at)) => at.iter().map(|&p| (items[p].clone(), splits[p])).unzip(),
        None => (items, splits),
    };
    observer.started(items.len());

    let manifest_path = output.join(cellops_formats::dataset::MANIFEST);
    let old = read_old_manifest(output, &manifest_path)?;
    let old_items: HashMap<&str, &ManifestItem> = old
        .as_ref()
        .map(|(m, _)| m.items.iter().map(|i| (i.key.as_str(), i)).collect())
        .unwrap_or_default();

    let config_json = serde_json::to_vec(config).map_err(|e| BuildError::Encode {
        path: manifest_path.clone(),
        message: e.to_string(),
    })?;
    let config_sha256 = sha256_hex(&config_json);
    let staging = StagingDir::new(output)?;
    let ctx = Ctx {
        root: dataset,
        config,
        config_sha256: &config_sha256,
        old_root: output,
        old_items: &old_items,
        staging: staging.path(),
    };
    let results = ctx.process_all(&items, &splits, observer);
    let (mut entries, reused) = gather(&items, results, &mut problems)?;
    sort_problems(&mut problems);
    entries.sort_by(|a, b| (a.split, &a.id).cmp(&(b.split, &b.id)));
    let counts = count(&entries);
    let mut report = BuildReport {
        outcome: Outcome::Failed,
        layout: kind,
        manifest_path: manifest_path.clone(),
        counts,
        prepared: entries.len() - reused,
        reused,
        problems,
    };
    if report.errors() > 0 {
        return Ok(report); // the staging folder is removed on drop
    }
    let manifest = new_manifest(dataset, kind, config, config_sha256, counts, entries);
    let json = manifest_json(&manifest, &manifest_path)?;
    let record = share.map(|(shard, at)| {
        shard::Record {
            format: shard::FORMAT.into(),
            tool_version: TOOL_VERSION.into(),
            shard,
            items: all,
            share: at,
            manifest,
            problems: report.problems.clone(),
        }
        .encode()
    });
    let old_record = std::fs::read(output.join(shard::RECORD)).ok();
    if let Some((_, old_bytes)) = &old
        && old_bytes == json.as_bytes()
        && reused == report.counts.images
        && old_record == record
    {
        report.outcome = Outcome::Unchanged;
        return Ok(report);
    }
    write_file(
        &staging.path().join(cellops_formats::dataset::MANIFEST),
        json.as_bytes(),
    )?;
    if let Some(bytes) = record {
        write_file(&staging.path().join(shard::RECORD), &bytes)?;
    }
    staging.commit(output)?;
    report.outcome = Outcome::Written;
    Ok(report)
}

/// Errors first, then by path.
pub(crate) fn sort_problems(problems: &mut [Problem]) {
    problems.sort_by(|a, b| (b.severity, &a.path, a.kind).cmp(&(a.severity, &b.path, b.kind)));
}

/// The manifest as `manifest.json` holds it: pretty JSON and a newline.
pub(crate) fn manifest_json(manifest: &Manifest, path: &Path) -> Result<String, BuildError> {
    let mut json = serde_json::to_string_pretty(manifest).map_err(|e| BuildError::Encode {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    json.push('\n');
    Ok(json)
}

/// Why an image whose content repeats `first`'s is an error.
pub(crate) fn duplicate_message(first: &Path) -> String {
    format!("same content as {}; duplicates leak between splits", first.display())
}

/// Collects the per-item results in item order: their problems (plus one for each image whose
/// content repeats an earlier one's) go into `problems`; returns the manifest entries and how many
/// items were reused. The first item that failed to be written stops the build.
fn gather(
    items: &[Item],
    results: Vec<ItemResult>,
    problems: &mut Vec<Problem>,
) -> Result<(Vec<ManifestItem>, usize), BuildError> {
    let mut entries = Vec::new();
    let mut reused = 0;
    let mut by_hash: HashMap<String, PathBuf> = HashMap::new();
    for (item, r) in items.iter().zip(results) {
        let r = r?;
        problems.extend(r.problems);
        if let Some(h) = &r.image_sha256 {
            if let Some(first) = by_hash.get(h) {
                problems.push(Problem::error(
                    ProblemKind::Duplicate,
                    &item.image,
                    duplicate_message(first),
                ));
            } else {
                by_hash.insert(h.clone(), item.image.clone());
            }
        }
        reused += usize::from(r.reused);
        entries.extend(r.entry);
    }
    Ok((entries, reused))
}

/// The manifest of a successful build of `dataset`.
fn new_manifest(
    dataset: &Path,
    kind: layout::LayoutKind,
    config: &BuildConfig,
    config_sha256: String,
    counts: Counts,
    entries: Vec<ManifestItem>,
) -> Manifest {
    Manifest {
        format: manifest::FORMAT.to_owned(),
        tool: Tool {
            name: "cellops".to_owned(),
            version: TOOL_VERSION.to_owned(),
        },
        source: Source {
            root: dataset.to_string_lossy().replace('\\', "/"),
            layout: kind,
        },
        config: config.clone(),
        config_sha256,
        counts,
        items: entries,
    }
}

pub(crate) fn count(entries: &[ManifestItem]) -> Counts {
    let mut c = Counts {
        images: entries.len(),
        ..Counts::default()
    };
    for e in entries {
        match e.split {
            Subset::Train => c.train += 1,
            Subset::Val => c.val += 1,
            Subset::Test => c.test += 1,
        }
        c.outputs += e.outputs.len();
        c.objects += e.objects;
    }
    c
}

fn check_overlap(dataset: &Path, output: &Path) -> Result<(), BuildError> {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let (d, o) = (abs(dataset), abs(output));
    let d = d.canonicalize().unwrap_or(d);
    let o = match (o.parent(), o.file_name()) {
        (Some(parent), Some(name)) => parent.canonicalize().map(|p| p.join(name)).unwrap_or(o.clone()),
        _ => o,
    };
    if o.starts_with(&d) || d.starts_with(&o) {
        return Err(BuildError::OutputOverlaps {
            output: output.to_owned(),
            dataset: dataset.to_owned(),
        });
    }
    Ok(())
}

pub(crate) fn read_old_manifest(output: &Path, path: &Path) -> Result<Option<(Manifest, Vec<u8>)>, BuildError> {
    if !output.exists() {
        return Ok(None);
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let empty = std::fs::read_dir(output)
                .map_err(|source| BuildError::Write {
                    path: output.to_owned(),
                    source,
                })?
                .next()
                .is_none();
            return if empty {
                Ok(None)
            } else {
                Err(BuildError::OutputNotOurs(output.to_owned()))
            };
        }
        Err(source) => {
            return Err(BuildError::Write {
                path: path.to_owned(),
                source,
            });
        }
    };
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| BuildError::OldManifest {
        path: path.to_owned(),
        message: cellops_formats::error::parser_message(&e.to_string()),
    })?;
    if m.format != manifest::FORMAT {
        return Err(BuildError::OldManifest {
            path: path.to_owned(),
            message: format!("format {} is not {}", m.format, manifest::FORMAT),
        });
    }
    Ok(Some((m, bytes)))
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| BuildError::Write {
            path: parent.to_owned(),
            source,
        })?;
    }
    std::fs::write(path, bytes).map_err(|source| BuildError::Write {
        path: path.to_owned(),
        source,
    })
}

#[derive(Default)]
struct ItemOk {
    entry: Option<ManifestItem>,
    problems: Vec<Problem>,
    image_sha256: Option<String>,
    reused: bool,
}

type ItemResult = Result<ItemOk, BuildError>;

struct Ctx<'a> {
    root: &'a Path,
    config: &'a BuildConfig,
    config_sha256: &'a str,
    old_root: &'a Path,
    old_items: &'a HashMap<&'a str, &'a ManifestItem>,
    staging: &'a Path,
}

fn slash(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "/")
}

fn decode_problem(path: &Path, e: DecodeError) -> Problem {
    let kind = match e {
        DecodeError::UnknownFormat
        | DecodeError::PixelType(_)
        | DecodeError::Empty
        | DecodeError::ChannelNeeded { .. }
        | DecodeError::NoSuchChannel { .. } => ProblemKind::Unsupported,
        DecodeError::TooLarge { .. } => ProblemKind::TooLarge,
        DecodeError::Corrupt { .. } => ProblemKind::Corrupt,
    };
    Problem::error(kind, path, e.to_string())
}

/// The hash of an item's mask: the file's SHA-256, or for per-object masks one over each file's
/// name and SHA-256.
fn hash_masks(mask: &MaskSource, mask_bytes: &[Vec<u8>]) -> String {
    match mask {
        MaskSource::File(_) => sha256_hex(&mask_bytes[0]),
        MaskSource::Objects(files) => {
            let mut h = Sha256::new();
            for (f, b) in files.iter().zip(mask_bytes) {
                h.update(slash(f.file_name().map(Path::new).unwrap_or(f)).as_bytes());
                h.update(sha256_hex(b).as_bytes());
            }
            manifest::hex(&h.finalize())
        }
    }
}

/// Turns the decoded mask files into instance labels, freeing them; `None` when they are unusable
/// (the problem is in `out`). Overlapping object masks are a warning.
fn interpret_mask(mask: &MaskSource, parts: Vec<Raster>, out: &mut ItemOk) -> Option<(Labels, MaskKind)> {
    let mask_path = &mask.files()[0];
    let interpreted = match mask {
        MaskSource::File(_) => match mask::interpret(&parts[0]) {
            Ok(x) => x,
            Err(d) => {
                out.problems.push(Problem::error(d.kind, mask_path, d.message));
                return None;
            }
        },
        MaskSource::Objects(_) => match mask::combine_objects(&parts) {
            Ok((l, overlap)) => {
                if overlap > 0 {
                    let dir = mask_path.parent().unwrap_or(mask_path);
                    out.problems.push(Problem::warning(
                        ProblemKind::OverlappingMasks,
                        dir,
                        format!("{overlap} pixels belong to more than one object mask; the first mask keeps them"),
                    ));
                }
                (l, MaskKind::PerObject)
            }
            Err(d) => {
                out.problems.push(Problem::error(d.kind, mask_path, d.message));
                return None;
            }
        },
    };
    Some(interpreted)
}

impl Ctx<'_> {
    /// Processes every item that has a split, in parallel, reporting each to `observer`; items
    /// without a split give an empty result.
    fn process_all(&self, items: &[Item], splits: &[Option<Subset>], observer: &dyn Observer) -> Vec<ItemResult> {
        items
            .par_iter()
            .zip(splits.par_iter())
            .map(|(item, split)| {
                let r = match split {
                    Some(s) => self.process(item, *s),
                    None => Ok(ItemOk::default()),
                };
                observer.item_done(&item.id);
                r
            })
            .collect()
    }

    fn process(&self, item: &Item, split: Subset) -> ItemResult {
        let mut out = ItemOk::default();
        let Some((image_bytes, mask_bytes)) = self.read_sources(item, &mut out) else {
            return Ok(out);
        };
        let image_sha256 = sha256_hex(&image_bytes);
        let mask_sha256 = hash_masks(&item.mask, &mask_bytes);
        out.image_sha256 = Some(image_sha256.clone());
        let key = self.item_key(item, split, &image_sha256, &mask_sha256);
        if let Some(old) = self.old_items.get(key.as_str())
            && self.relink(old)?
        {
            out.entry = Some((*old).clone());
            out.reused = true;
            return Ok(out);
        }

        let Some((image, parts)) = self.decode_sources(item, image_bytes, &mask_bytes, &mut out) else {
            return Ok(out);
        };
        let mask_path = &item.mask.files()[0];
        let Some((labels, kind)) = interpret_mask(&item.mask, parts, &mut out) else {
            return Ok(out);
        };
        if (labels.width, labels.height) != (image.width, image.height) {
            out.problems.push(Problem::error(
                ProblemKind::SizeMismatch,
                mask_path,
                format!(
                    "mask is {}x{} but image {} is {}x{}",
                    labels.width,
                    labels.height,
                    slash(&item.image),
                    image.width,
                    image.height
                ),
            ));
            return Ok(out);
        }
        // Masks come out of `mask` numbered 1..=N, so the largest label is the object count.
        let objects = usize::from(labels.data.iter().copied().max().unwrap_or(0));
        if objects == 0 {
            out.problems.push(Problem::warning(
                ProblemKind::EmptyMask,
                mask_path,
                "mask has no objects",
            ));
        }
        let (outputs, lost) = self.prepare(item, split, &image, labels, objects)?;
        if lost > 0 {
            out.problems.push(Problem::warning(
                ProblemKind::ObjectsLost,
                mask_path,
                format!("{lost} of {objects} objects vanish at the output size; resize less"),
            ));
        }
        out.entry = Some(ManifestItem {
            id: item.id.clone(),
            split,
            key,
            image: slash(&item.image),
            mask: item.mask.files().iter().map(|p| slash(p)).collect(),
            image_sha256,
            mask_sha256,
            size: [image.width, image.height],
            channels: image.channels,
            bit_depth: image.samples.bit_depth(),
            mask_kind: kind,
            objects,
            outputs,
            features: Some(crate::ops::features::image_features(&image)),
        });
        Ok(out)
    }

    /// Reads the bytes of the item's image and mask files; `None` when one cannot be read (the
    /// problem is in `out`).
    fn read_sources(&self, item: &Item, out: &mut ItemOk) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
        let read = |rel: &Path| std::fs::read(self.root.join(rel));
        let image_bytes = match read(&item.image) {
            Ok(b) => b,
            Err(e) => {
                out.problems.push(Problem::error(
                    ProblemKind::Unreadable,
                    &item.image,
                    format!("cannot read: {e}"),
                ));
                return None;
            }
        };
        let mut mask_bytes = Vec::new();
        for m in item.mask.files() {
            match read(m) {
                Ok(b) => mask_bytes.push(b),
                Err(e) => {
                    out.problems
                        .push(Problem::error(ProblemKind::Unreadable, m, format!("cannot read: {e}")));
                    return None;
                }
            }
        }
        Some((image_bytes, mask_bytes))
    }

    /// The item's key: what its prepared files and recorded features depend on (tool version,
    /// the features' definition, configuration, id, split, source hashes).
    fn item_key(&self, item: &Item, split: Subset, image_sha256: &str, mask_sha256: &str) -> String {
        let mut h = Sha256::new();
        for part in [
            TOOL_VERSION,
            crate::ops::features::FEATURES_VERSION,
            self.config_sha256,
            &item.id,
            split.as_str(),
            image_sha256,
            mask_sha256,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        manifest::hex(&h.finalize())
    }

    /// Checks that the masks are lossless and decodes the image and the mask files; `None` when any
    /// of that fails (the problems are in `out`).
    fn decode_sources(
        &self,
        item: &Item,
        image_bytes: Vec<u8>,
        mask_bytes: &[Vec<u8>],
        out: &mut ItemOk,
    ) -> Option<(Raster, Vec<Raster>)> {
        // Masks must be lossless.
        for (m, b) in item.mask.files().iter().zip(mask_bytes) {
            if Format::from_path(m) == Some(Format::Jpeg) || io::sniff(b) == Some(Format::Jpeg) {
                out.problems.push(Problem::error(
                    ProblemKind::LossyMask,
                    m,
                    "mask is JPEG: lossy compression changes labels; save masks as PNG or TIFF",
                ));
            }
        }
        let image = match io::decode(&image_bytes, self.config.max_pixels) {
            Ok(d) => Some(d.raster),
            Err(e) => {
                out.problems.push(decode_problem(&item.image, e));
                None
            }
        };
        drop(image_bytes);
        if !out.problems.is_empty() {
            return None;
        }
        let mut parts = Vec::new();
        for (m, b) in item.mask.files().iter().zip(mask_bytes) {
            match io::decode(b, self.config.max_pixels) {
                Ok(d) => parts.push(d.raster),
                Err(e) => out.problems.push(decode_problem(m, e)),
            }
        }
        let image = image?;
        if !out.problems.is_empty() {
            return None;
        }
        Some((image, parts))
    }

    /// Hard-links (or copies) an unchanged item's files from the old output into staging, after
    /// checking that they still hold what the manifest says. Returns false if any file is missing
    /// or changed, in which case the item is prepared again.
    fn relink(&self, old: &ManifestItem) -> Result<bool, BuildError> {
        for o in &old.outputs {
            for (rel, sha) in [(&o.image, &o.image_sha256), (&o.mask, &o.mask_sha256)] {
                let src = self.old_root.join(rel);
                match std::fs::read(&src) {
                    Ok(b) if sha256_hex(&b) == *sha => {}
                    _ => return Ok(false),
                }
            }
        }
        for o in &old.outputs {
            for rel in [&o.image, &o.mask] {
                let (src, dst) = (self.old_root.join(rel), self.staging.join(rel));
                if let Some(parent) = dst.parent() {
                    std::fs::create_dir_all(parent).map_err(|source| BuildError::Write {
                        path: parent.to_owned(),
                        source,
                    })?;
                }
                if std::fs::hard_link(&src, &dst).is_err() {
                    std::fs::copy(&src, &dst).map_err(|source| BuildError::Write {
                        path: dst.clone(),
                        source,
                    })?;
                }
            }
        }
        Ok(true)
    }

    /// Preprocesses one valid item and writes its files into staging. Returns the outputs and the
    /// number of objects lost to resizing.
    fn prepare(
        &self,
        item: &Item,
        split: Subset,
        image: &Raster,
        labels: Labels,
        objects: usize,
    ) -> Result<(Vec<OutputFile>, usize), BuildError> {
        let cfg = self.config;
        let diameter = cfg.scale.and_then(|_| scale::median_diameter(&labels.data));
        let factor = match (cfg.scale, diameter) {
            (Some(s), Some(d)) => Some(scale::factor(s.diameter_px, d)),
            _ => None,
        };
        let img = preprocess_scaled(image, cfg, factor).map_err(|e| BuildError::Encode {
            path: item.image.clone(),
            message: e.to_string(),
        })?;
        let mut mask = labels;
        let mut lost = 0;
        if (img.width, img.height) != (mask.width, mask.height) {
            mask = resize::resize_labels(&mask, img.width, img.height);
            lost = objects.saturating_sub(mask.count_objects());
        }
        // (image, mask, file name, tile origin) for each output pair; without tiling, the whole image
        // moves through without a copy.
        let parts: Vec<(Raster, Labels, String, Option<[u32; 2]>)> = match cfg.tile {
            Some(t) => tile::tiles(img.width, img.height, t.size, t.overlap)
                .into_iter()
                .map(|r| {
                    (
                        tile::crop_image(&img, r),
                        tile::crop_labels(&mask, r),
                        format!("{}_x{}_y{}", item.id, r.x, r.y),
                        Some([r.x, r.y]),
                    )
                })
                .collect(),
            None => vec![(img, mask, item.id.clone(), None)],
        };
        let dir = Path::new(split.as_str());
        let mut outputs = Vec::with_capacity(parts.len());
        for (part_img, mut part_mask, name, origin) in parts {
            let objects = crate::ops::label::relabel_sequential(&mut part_mask.data);
            let image_rel = dir
                .join(cellops_formats::dataset::PAPER_IMAGES)
                .join(format!("{name}.png"));
            let mask_rel = dir
                .join(cellops_formats::dataset::PAPER_MASKS)
                .join(format!("{name}{}.png", cellops_formats::dataset::PAPER_MASK_SUFFIX));
            let enc_err = |path: &Path| {
                let path = path.to_owned();
                move |e: image::ImageError| BuildError::Encode {
                    path,
                    message: e.to_string(),
                }
            };
            let img_png = io::encode_png(&part_img).map_err(enc_err(&image_rel))?;
            let mask_raster = Raster::from_u16(part_mask.width, part_mask.height, 1, part_mask.data);
            let mask_png = io::encode_png(&mask_raster).map_err(enc_err(&mask_rel))?;
            write_file(&self.staging.join(&image_rel), &img_png)?;
            write_file(&self.staging.join(&mask_rel), &mask_png)?;
            outputs.push(OutputFile {
                image: slash(&image_rel),
                mask: slash(&mask_rel),
                image_sha256: sha256_hex(&img_png),
                mask_sha256: sha256_hex(&mask_png),
                size: [part_img.width, part_img.height],
                channels: part_img.channels,
                bit_depth: part_img.samples.bit_depth(),
                objects,
                tile: origin,
                nucleus_diameter_px: diameter,
                scale: factor,
            });
        }
        Ok((outputs, lost))
    }
}

/// The image half of a build's preprocessing, for one image: colour conversion, resizing,
/// normalisation and equalisation, exactly as [`build`] applies them. Inference applies it to new
/// images so that a model sees what it was trained on. Tiling is not part of it.
pub fn preprocess(image: &Raster, cfg: &BuildConfig) -> Result<Raster, resize::ResizeError> {
    preprocess_scaled(image, cfg, None)
}

/// [`preprocess`] with an isotropic rescaling `factor` (for a configuration with `scale`: the
/// factor that brings this image's nuclei to the target diameter; `None` or 1 keeps the size).
pub fn preprocess_scaled(
    image: &Raster,
    cfg: &BuildConfig,
    factor: Option<f64>,
) -> Result<Raster, resize::ResizeError> {
    preprocess_fixed(image, cfg, factor, None)
}

/// What a slide fixes once for all its tiles in place of each image's own statistics in
/// [`preprocess_fixed`]: the percentile normalisation's levels and the polarity's choice, so that
/// a tile is prepared as the whole slide would be, whatever else the tile holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fixed {
    /// The working image's values mapped to 0 and 255 (`None`: no percentile normalisation, or
    /// an empty sample).
    pub levels: Option<(f64, f64)>,
    /// Whether the polarity inverts.
    pub invert: bool,
}

impl Fixed {
    /// The statistics of `sample` (any pixels of the slide: a reduced level, its tissue) under
    /// `cfg`: the working image's percentile levels and, after them, the polarity's choice.
    pub fn of(sample: &Raster, cfg: &BuildConfig) -> Self {
        let working = colour::to_working(sample, cfg.colour);
        let levels = (cfg.normalize.method == NormalizeMethod::Percentile)
            .then(|| normalize::percentile_levels(&working, cfg.normalize.low, cfg.normalize.high))
            .flatten();
        let normalised = match levels {
            Some(l) => normalize::stretch(&working, l),
            None => working,
        };
        Self {
            levels,
            invert: polarity::inverts(&normalised, cfg.polarity),
        }
    }
}

/// The 8-bit grey plane a global threshold sees, and its width: `image` under
/// [`BuildConfig::threshold_grey`], its levels and polarity from `fixed` when given. `None` when
/// the samples stayed wider than 8 bits (levels fixed without any).
pub fn threshold_plane(image: &Raster, fixed: Option<&Fixed>) -> Result<Option<(Vec<u8>, usize)>, resize::ResizeError> {
    let grey = preprocess_fixed(image, &BuildConfig::threshold_grey(), None, fixed)?;
    let width = grey.width as usize;
    Ok(match grey.samples {
        Samples::U8(plane) => Some((plane, width)),
        Samples::U16(_) => None,
    })
}

/// [`preprocess_scaled`] with the normalisation's levels and the polarity fixed beforehand (a
/// slide's, from [`Fixed::of`]) instead of taken from `image`; `None` takes them from `image`.
pub fn preprocess_fixed(
    image: &Raster,
    cfg: &BuildConfig,
    factor: Option<f64>,
    fixed: Option<&Fixed>,
) -> Result<Raster, resize::ResizeError> {
    let mut img = colour::to_working(image, cfg.colour);
    let target = match (&cfg.resize, factor) {
        (Some(r), _) => Some((r.target(img.width, img.height), r.filter)),
        (None, Some(f)) => Some((scale::scaled_size(img.width, img.height, f), Filter::default())),
        (None, None) => None,
    };
    if let Some(((w, h), filter)) = target
        && (w, h) != (img.width, img.height)
    {
        img = resize::resize_image(&img, w, h, filter)?;
    }
    match fixed {
        None => {
            if cfg.normalize.method == NormalizeMethod::Percentile {
                img = normalize::percentile(&img, cfg.normalize.low, cfg.normalize.high);
            }
            img = polarity::apply(&img, cfg.polarity);
        }
        Some(f) => {
            if let Some(levels) = f.levels {
                img = normalize::stretch(&img, levels);
            }
            let how = if f.invert { Polarity::Invert } else { Polarity::Keep };
            img = polarity::apply(&img, how);
        }
    }
    match &mut img.samples {
        Samples::U8(d) => equalise(d, img.width as usize, img.channels, cfg.equalize),
        Samples::U16(d) => equalise(d, img.width as usize, img.channels, cfg.equalize),
    }
    Ok(img)
}

/// Equalises a 1-channel plane, or the luminance of an RGB image.
fn equalise<S: Sample>(data: &mut [S], width: usize, channels: u8, how: Equalize) {
    let run = |plane: &mut [S]| match how.method {
        EqualizeMethod::None => {}
        EqualizeMethod::Global => equalize::equalize(plane),
        EqualizeMethod::Clahe => equalize::clahe(
            plane,
            width,
            equalize::Clahe {
                clip_limit: how.clip_limit,
                tiles_x: how.tile_grid[0],
                tiles_y: how.tile_grid[1],
            },
        ),
    };
    if how.method == EqualizeMethod::None {
        return;
    }
    if channels == 1 {
        run(data);
    } else {
        let y = colour::luma_plane(data);
        let mut y_new = y.clone();
        run(&mut y_new);
        colour::apply_luma(data, &y, &y_new);
    }
}
