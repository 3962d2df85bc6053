//! Which images to evaluate, and the masks and ground truth that go with each.
//!
//! `--images` is a folder of images, or a dataset in the paper's layout (`original/` images,
//! `masks/<id>_mask.png`), whose `masks/` is then the default ground truth. Masks and ground truth
//! for image `<id>` are `<id>_mask.<ext>` or `<id>.<ext>` in their folders (PNG, TIFF, BMP).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use cellops_dataset::io::{self, Format};
use cellops_formats::dataset::{SplitError, Subset, read_split_file};
use cellops_formats::links::{Entry, Tree};

/// One image to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The image's name (file stem).
    pub id: String,
    /// The image file.
    pub image: PathBuf,
    /// Its segmentation to measure (with `--masks`).
    pub mask: Option<PathBuf>,
    /// Its ground-truth instance mask (with `--ground-truth` or a paper-layout dataset).
    pub truth: Option<PathBuf>,
}

/// Inputs that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A folder could not be listed.
    #[error("cannot list {path}: {source}")]
    List {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A link among the images or masks resolves outside their folder (or nowhere).
    #[error(transparent)]
    Link(#[from] cellops_formats::FileError),
    /// No images were found.
    #[error("{0}: no images (png, tif, jpg, bmp) found")]
    NoImages(PathBuf),
    /// An image has no mask (or ground truth) file.
    #[error("{image}: no {what} for it in {dir} (looked for {id}_mask.* and {id}.*)")]
    Missing {
        /// The image.
        image: PathBuf,
        /// Its id.
        id: String,
        /// "mask" or "ground truth".
        what: &'static str,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// The split file is unusable.
    #[error(transparent)]
    Split(#[from] SplitError),
    /// The split file lists no image of the split asked for.
    #[error("{path}: no rows with split `{}`", .split.as_str())]
    EmptySplit {
        /// The CSV file.
        path: PathBuf,
        /// The split asked for.
        split: Subset,
    },
}

fn is_image(p: &Path) -> bool {
    Format::from_path(p).is_some()
}

/// The images in `dir`, a folder of the tree `root`: links out of the tree are refused.
fn list(root: &Path, dir: &Path) -> Result<Vec<PathBuf>, InputError> {
    let err = |source| InputError::List {
        path: dir.to_owned(),
        source,
    };
    let tree = Tree::new(root)?;
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).map_err(err)? {
        let p = e.map_err(err)?.path();
        if is_image(&p) && tree.check(&p)? == Entry::File {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

fn find(dir: &Path, id: &str) -> Option<PathBuf> {
    [
        format!("{id}{}", cellops_formats::dataset::PAPER_MASK_SUFFIX),
        id.to_owned(),
    ]
    .iter()
    .flat_map(|stem| io::EXTENSIONS.iter().map(move |e| dir.join(format!("{stem}.{e}"))))
    .find(|p| p.is_file())
}

/// Image ids of `split` in a CSV with `id` and `split` columns (e.g. DSB2018's manifest.csv).
pub fn split_ids(path: &Path, split: Subset) -> Result<HashSet<String>, InputError> {
    // The split file sits in the dataset; a link out of it is not read.
    if let Some(dir) = path.parent().filter(|d| d.is_dir())
        && path.exists()
    {
        Tree::new(dir)?.check(path)?;
    }
    let ids: HashSet<String> = read_split_file(path)?
        .into_iter()
        .filter_map(|(id, s)| (s == split).then_some(id))
        .collect();
    if ids.is_empty() {
        return Err(InputError::EmptySplit {
            path: path.to_owned(),
            split,
        });
    }
    Ok(ids)
}

/// The images under `images` (a folder, or a paper-layout dataset), each with its mask and ground
/// truth when those folders are given, restricted to `only` ids when given.
pub fn discover(
    images: &Path,
    masks: Option<&Path>,
    truth: Option<&Path>,
    only: Option<&HashSet<String>>,
) -> Result<Vec<Item>, InputError> {
    let original = images.join(cellops_formats::dataset::PAPER_IMAGES);
    let (image_dir, default_truth) = if original.is_dir() {
        let m = images.join(cellops_formats::dataset::PAPER_MASKS);
        (original, m.is_dir().then_some(m))
    } else {
        (images.to_owned(), None)
    };
    // The dataset's own masks must stay inside it; folders given on their own, inside themselves.
    let mask_tree = masks.map(Tree::new).transpose()?;
    let truth_tree = truth
        .or(default_truth.is_some().then_some(images))
        .map(Tree::new)
        .transpose()?;
    let truth = truth.map(Path::to_owned).or(default_truth);
    let mut items = Vec::new();
    for image in list(images, &image_dir)? {
        let Some(id) = image.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            continue;
        };
        if id.ends_with(cellops_formats::dataset::PAPER_MASK_SUFFIX) || only.is_some_and(|o| !o.contains(&id)) {
            continue;
        }
        let lookup = |dir: &Path, tree: &Tree, what: &'static str| -> Result<PathBuf, InputError> {
            let found = find(dir, &id).ok_or_else(|| InputError::Missing {
                image: image.clone(),
                id: id.clone(),
                what,
                dir: dir.to_owned(),
            })?;
            tree.check(&found)?;
            Ok(found)
        };
        let mask = masks
            .zip(mask_tree.as_ref())
            .map(|(d, t)| lookup(d, t, "mask"))
            .transpose()?;
        let truth = truth
            .as_deref()
            .zip(truth_tree.as_ref())
            .map(|(d, t)| lookup(d, t, "ground truth"))
            .transpose()?;
        items.push(Item { id, image, mask, truth });
    }
    if items.is_empty() {
        return Err(InputError::NoImages(image_dir));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_layout_brings_its_ground_truth_and_missing_masks_are_named() {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(d.path().join("original")).expect("dir");
        std::fs::create_dir_all(d.path().join("masks")).expect("dir");
        for f in ["original/a.png", "original/b.png", "masks/a_mask.png", "masks/b.png"] {
            std::fs::write(d.path().join(f), b"x").expect("write");
        }
        let items = discover(d.path(), None, None, None).expect("found");
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0].truth.as_deref(),
            Some(d.path().join("masks/a_mask.png").as_path())
        );
        assert_eq!(items[1].truth.as_deref(), Some(d.path().join("masks/b.png").as_path()));
    }

    #[test]
    fn missing_mask_names_image_and_folder() {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(d.path().join("img")).expect("dir");
        std::fs::create_dir_all(d.path().join("m")).expect("dir");
        std::fs::write(d.path().join("img/x1.png"), b"x").expect("write");
        let e = discover(&d.path().join("img"), Some(&d.path().join("m")), None, None).expect_err("missing");
        let msg = e.to_string();
        assert!(
            msg.contains("x1.png") && msg.contains("x1_mask") && msg.contains("/m"),
            "{msg}"
        );
    }

    #[test]
    fn split_file_selects_ids() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join(cellops_formats::dataset::SPLIT_CSV);
        std::fs::write(&p, "id,category,split\na,x,train\nb,x,test\n").expect("write");
        let ids = split_ids(&p, Subset::Test).expect("ids");
        assert_eq!(ids.len(), 1);
        assert!(ids.contains("b"));
        let err = split_ids(&p, Subset::Val).expect_err("no val rows");
        assert!(err.to_string().ends_with("no rows with split `val`"), "{err}");
    }
}
