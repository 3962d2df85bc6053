//! Finding the image/mask pairs of a dataset folder in each supported layout.
//!
//! | layout | images | masks |
//! |---|---|---|
//! | `paper` | `original/<name>.<ext>` | `masks/<name>_mask.<ext>` |
//! | `dsb2018` | `<id>/images/<id>.png` | `<id>/masks/*.png`, one binary file per object |
//! | `nnunet` | `imagesTr/<case>_0000.<ext>` | `labelsTr/<case>.<ext>` |
//! | `cellpose` | `<name>.<ext>` | `<name>_masks.<ext>` beside it |
//!
//! `paper` and `cellpose` folders may sit under `train/`, `val/` (or `validation/`) and `test/`,
//! which then fix each item's split.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cellops_formats::links::{Entry, Tree};
use serde::Serialize;

use crate::io::Format;
use crate::problem::{Problem, ProblemKind};
pub use cellops_formats::dataset::{LayoutKind, Subset};

/// Where an item's mask comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum MaskSource {
    /// One label or binary mask file.
    File(PathBuf),
    /// One binary file per object (DSB2018).
    Objects(Vec<PathBuf>),
}

impl MaskSource {
    /// The files, in order.
    pub fn files(&self) -> &[PathBuf] {
        match self {
            MaskSource::File(p) => std::slice::from_ref(p),
            MaskSource::Objects(v) => v,
        }
    }
}

/// One image with its mask; paths are relative to the dataset root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The item's name (file stem), unique within its split.
    pub id: String,
    /// The split given by the folder structure, if any.
    pub given_split: Option<Subset>,
    /// The image file.
    pub image: PathBuf,
    /// The mask.
    pub mask: MaskSource,
}

/// The items found, and the problems met while finding them.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// The layout that was read.
    pub kind: LayoutKind,
    /// Complete image/mask pairs.
    pub items: Vec<Item>,
    /// Orphans, ambiguous names, skipped files.
    pub problems: Vec<Problem>,
}

/// Why a dataset folder could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The folder does not exist or is not a folder.
    #[error("dataset folder {0} does not exist or is not a folder")]
    NotADir(PathBuf),
    /// A folder could not be listed.
    #[error("cannot list {path}: {source}")]
    List {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A link in the dataset resolves outside it (or nowhere).
    #[error(transparent)]
    Link(#[from] cellops_formats::FileError),
    /// No known layout matched.
    #[error(
        "cannot recognise the layout of {0}: expected original/ + masks/ (paper), <id>/images + <id>/masks \
         (dsb2018), imagesTr/ + labelsTr/ (nnunet) or <name>_masks.<ext> files (cellpose)"
    )]
    Unrecognised(PathBuf),
    /// The layout asked for is not what the folder holds.
    #[error("{path} is not a {kind:?} dataset: {missing} not found")]
    Mismatch {
        /// The dataset folder.
        path: PathBuf,
        /// The layout asked for.
        kind: LayoutKind,
        /// What was looked for.
        missing: String,
    },
}

/// Files and folders of a directory of the dataset at `root`, sorted by name, hidden entries
/// skipped. Links inside the dataset are followed (datasets are often assembled from links);
/// a link out of it is refused, naming the link.
fn list(root: &Path, dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), LayoutError> {
    let err = |source| LayoutError::List {
        path: dir.to_owned(),
        source,
    };
    let tree = Tree::new(root)?;
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        match tree.check(&path)? {
            Entry::Folder => dirs.push(path),
            Entry::File => files.push(path),
        }
    }
    files.sort();
    dirs.sort();
    Ok((files, dirs))
}

fn rel(root: &Path, p: &Path) -> PathBuf {
    p.strip_prefix(root).unwrap_or(p).to_owned()
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Folders that may each hold one group of a layout: the root, then its split folders.
fn split_groups(root: &Path, has: impl Fn(&Path) -> bool) -> Vec<(PathBuf, Option<Subset>)> {
    let mut groups = Vec::new();
    if has(root) {
        groups.push((root.to_owned(), None));
    }
    for name in ["train", "training", "val", "valid", "validation", "test", "testing"] {
        let dir = root.join(name);
        if dir.is_dir() && has(&dir) {
            groups.push((dir, Subset::parse(name)));
        }
    }
    groups
}

fn is_paper(dir: &Path) -> bool {
    dir.join(cellops_formats::dataset::PAPER_IMAGES).is_dir()
        && dir.join(cellops_formats::dataset::PAPER_MASKS).is_dir()
}

fn is_cellpose(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.filter_map(Result::ok).any(|e| {
            let p = e.path();
            Format::from_path(&p).is_some() && stem(&p).ends_with("_masks")
        })
    })
}

fn is_dsb(root: &Path) -> bool {
    std::fs::read_dir(root).is_ok_and(|rd| {
        rd.filter_map(Result::ok)
            .any(|e| e.path().join("images").is_dir() && e.path().join("masks").is_dir())
    })
}

fn is_nnunet(root: &Path) -> bool {
    root.join("imagesTr").is_dir() && root.join("labelsTr").is_dir()
}

/// Finds the items of the dataset at `root`.
pub fn discover(root: &Path, kind: LayoutKind) -> Result<Discovery, LayoutError> {
    if !root.is_dir() {
        return Err(LayoutError::NotADir(root.to_owned()));
    }
    let kind = resolve_kind(root, kind)?;
    let mut d = Discovery {
        kind,
        ..Discovery::default()
    };
    match kind {
        LayoutKind::Paper => discover_paper(root, &mut d)?,
        LayoutKind::Cellpose => discover_cellpose(root, &mut d)?,
        LayoutKind::Nnunet => discover_nnunet(root, &mut d)?,
        LayoutKind::Dsb2018 => discover_dsb(root, &mut d)?,
        LayoutKind::Auto => unreachable!("resolved above"),
    }
    d.items
        .sort_by(|a, b| (a.given_split, &a.id).cmp(&(b.given_split, &b.id)));
    Ok(d)
}

/// The layout to read: `kind` itself, or for `Auto` the first layout the folder holds.
fn resolve_kind(root: &Path, kind: LayoutKind) -> Result<LayoutKind, LayoutError> {
    Ok(match kind {
        LayoutKind::Auto => {
            if !split_groups(root, is_paper).is_empty() {
                LayoutKind::Paper
            } else if is_nnunet(root) {
                LayoutKind::Nnunet
            } else if is_dsb(root) {
                LayoutKind::Dsb2018
            } else if !split_groups(root, is_cellpose).is_empty() {
                LayoutKind::Cellpose
            } else {
                return Err(LayoutError::Unrecognised(root.to_owned()));
            }
        }
        k => k,
    })
}

/// The error for a folder that does not hold the `kind` layout asked for.
fn mismatch(root: &Path, kind: LayoutKind, missing: &str) -> LayoutError {
    LayoutError::Mismatch {
        path: root.to_owned(),
        kind,
        missing: missing.to_owned(),
    }
}

/// Pairs `original/<name>` with `masks/<name>_mask` in the root and each split folder.
fn discover_paper(root: &Path, d: &mut Discovery) -> Result<(), LayoutError> {
    let groups = split_groups(root, is_paper);
    if groups.is_empty() {
        return Err(mismatch(root, d.kind, "original/ and masks/"));
    }
    for (dir, subset) in groups {
        let (images, _) = list(root, &dir.join(cellops_formats::dataset::PAPER_IMAGES))?;
        let (masks, _) = list(root, &dir.join(cellops_formats::dataset::PAPER_MASKS))?;
        pair(
            root,
            d,
            subset,
            images,
            masks,
            |s| {
                s.strip_suffix(cellops_formats::dataset::PAPER_MASK_SUFFIX)
                    .map(str::to_owned)
            },
            "masks/<name>_mask",
        );
    }
    Ok(())
}

/// Pairs `<name>` with `<name>_masks` beside it in the root and each split folder, skipping
/// Cellpose's own output files.
fn discover_cellpose(root: &Path, d: &mut Discovery) -> Result<(), LayoutError> {
    let groups = split_groups(root, is_cellpose);
    if groups.is_empty() {
        return Err(mismatch(root, d.kind, "<name>_masks.<ext> files"));
    }
    for (dir, subset) in groups {
        let (files, _) = list(root, &dir)?;
        let (masks, images): (Vec<_>, Vec<_>) = files
            .into_iter()
            .filter(|p| !is_cellpose_byproduct(p))
            .partition(|p| stem(p).ends_with("_masks"));
        pair(
            root,
            d,
            subset,
            images,
            masks,
            |s| s.strip_suffix("_masks").map(str::to_owned),
            "<name>_masks",
        );
    }
    Ok(())
}

/// Pairs channel 0000 of each case in `imagesTr/` with its label in `labelsTr/`; other channels
/// become warnings.
fn discover_nnunet(root: &Path, d: &mut Discovery) -> Result<(), LayoutError> {
    if !is_nnunet(root) {
        return Err(mismatch(root, d.kind, "imagesTr/ and labelsTr/"));
    }
    let (images, _) = list(root, &root.join("imagesTr"))?;
    let (labels, _) = list(root, &root.join("labelsTr"))?;
    let mut channel0 = Vec::new();
    for img in images {
        let s = stem(&img);
        match s.rsplit_once('_') {
            Some((_, "0000")) => channel0.push(img),
            Some((_, ch)) if ch.len() == 4 && ch.bytes().all(|b| b.is_ascii_digit()) => {
                d.problems.push(Problem::warning(
                    ProblemKind::Ignored,
                    rel(root, &img),
                    format!("channel {ch} ignored: only channel 0000 of each case is read"),
                ));
            }
            _ => channel0.push(img),
        }
    }
    // Images are `<case>_0000`, labels `<case>`: pair on the case name.
    let naming = Naming {
        image_key: &|image_stem| image_stem.strip_suffix("_0000").unwrap_or(image_stem).to_owned(),
        mask_key: &|mask_stem| Some(mask_stem.to_owned()),
        expected: "labelsTr/<case>",
    };
    pair_with(root, d, None, channel0, labels, &naming);
    Ok(())
}

/// Reads every `<id>/` folder of a DSB2018 dataset.
fn discover_dsb(root: &Path, d: &mut Discovery) -> Result<(), LayoutError> {
    if !is_dsb(root) {
        return Err(mismatch(root, d.kind, "<id>/images and <id>/masks"));
    }
    let (_, dirs) = list(root, root)?;
    for dir in dirs {
        discover_dsb_item(root, &dir, d)?;
    }
    Ok(())
}

/// Adds the item of one DSB2018 `<id>/` folder (one image in `images/`, object masks in `masks/`),
/// or the problem that keeps it out; folders without `images/` are passed over.
fn discover_dsb_item(root: &Path, dir: &Path, d: &mut Discovery) -> Result<(), LayoutError> {
    let images_dir = dir.join("images");
    if !images_dir.is_dir() {
        return Ok(());
    }
    let (files, _) = list(root, &images_dir)?;
    let images: Vec<PathBuf> = files.into_iter().filter(|p| Format::from_path(p).is_some()).collect();
    let id = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let image = match images.as_slice() {
        [one] => one.clone(),
        [] => {
            d.problems.push(Problem::error(
                ProblemKind::OrphanMask,
                rel(root, dir),
                "no image in images/ for these masks",
            ));
            return Ok(());
        }
        many => {
            d.problems.push(Problem::error(
                ProblemKind::Ambiguous,
                rel(root, &images_dir),
                format!("{} images where one is expected", many.len()),
            ));
            return Ok(());
        }
    };
    let masks_dir = dir.join("masks");
    let objects: Vec<PathBuf> = if masks_dir.is_dir() {
        list(root, &masks_dir)?
            .0
            .into_iter()
            .filter(|p| Format::from_path(p).is_some())
            .map(|p| rel(root, &p))
            .collect()
    } else {
        Vec::new()
    };
    if objects.is_empty() {
        d.problems.push(Problem::error(
            ProblemKind::OrphanImage,
            rel(root, &image),
            "no object masks in masks/",
        ));
        return Ok(());
    }
    d.items.push(Item {
        id,
        given_split: None,
        image: rel(root, &image),
        mask: MaskSource::Objects(objects),
    });
    Ok(())
}

fn is_cellpose_byproduct(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.ends_with("_seg.npy")
        || name.contains("_flows")
        || name.contains("_cp_output")
        || name.ends_with("_outlines.txt")
}

fn pair(
    root: &Path,
    d: &mut Discovery,
    subset: Option<Subset>,
    images: Vec<PathBuf>,
    masks: Vec<PathBuf>,
    mask_key: impl Fn(&str) -> Option<String>,
    pattern: &str,
) {
    let naming = Naming {
        image_key: &|s| s.to_owned(),
        mask_key: &mask_key,
        expected: pattern,
    };
    pair_with(root, d, subset, images, masks, &naming);
}

/// How a layout names its files: the pairing key of an image's and of a mask's file stem (none: the
/// mask's name does not follow the layout), and the mask name it expects, for messages.
struct Naming<'a> {
    image_key: &'a dyn Fn(&str) -> String,
    mask_key: &'a dyn Fn(&str) -> Option<String>,
    expected: &'a str,
}

/// Which side of a pair a file is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Image,
    Mask,
}

fn pair_with(
    root: &Path,
    d: &mut Discovery,
    subset: Option<Subset>,
    images: Vec<PathBuf>,
    masks: Vec<PathBuf>,
    naming: &Naming<'_>,
) {
    let by_key = index(root, d, images, Side::Image, naming);
    let mut masks_by_key = index(root, d, masks, Side::Mask, naming);
    for (key, img) in by_key {
        match masks_by_key.remove(&key) {
            Some(mask) => d.items.push(Item {
                id: key,
                given_split: subset,
                image: rel(root, &img),
                mask: MaskSource::File(rel(root, &mask)),
            }),
            None => d.problems.push(Problem::error(
                ProblemKind::OrphanImage,
                rel(root, &img),
                format!(
                    "no mask for this image (expected {}.<ext>)",
                    naming.expected.replace("<name>", &key).replace("<case>", &key)
                ),
            )),
        }
    }
    for (_, mask) in masks_by_key {
        d.problems.push(Problem::error(
            ProblemKind::OrphanMask,
            rel(root, &mask),
            "no image for this mask",
        ));
    }
}

/// The files of one side by pairing key; files CellOps cannot read, masks whose names do not follow
/// the layout and second files with the same key become problems.
fn index(
    root: &Path,
    d: &mut Discovery,
    files: Vec<PathBuf>,
    side: Side,
    naming: &Naming<'_>,
) -> BTreeMap<String, PathBuf> {
    let mut by_key: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        if Format::from_path(&file).is_none() {
            d.problems.push(Problem::warning(
                ProblemKind::Skipped,
                rel(root, &file),
                "not an image CellOps reads (PNG, TIFF, BMP, JPEG); skipped",
            ));
            continue;
        }
        let key = match side {
            Side::Image => Some((naming.image_key)(&stem(&file))),
            Side::Mask => (naming.mask_key)(&stem(&file)),
        };
        let Some(key) = key else {
            d.problems.push(Problem::error(
                ProblemKind::OrphanMask,
                rel(root, &file),
                format!("mask name does not follow {}.<ext>", naming.expected),
            ));
            continue;
        };
        if let Some(prev) = by_key.get(&key) {
            let keep = match side {
                Side::Image => "keep one image per name",
                Side::Mask => "keep one mask per image",
            };
            d.problems.push(Problem::error(
                ProblemKind::Ambiguous,
                rel(root, &file),
                format!("same name as {}; {keep}", rel(root, prev).display()),
            ));
            continue;
        }
        by_key.insert(key, file);
    }
    by_key
}
