//! A deployed release as the service sees it: one analyzer per image type (a cell-parameter file
//! of `cell-params/`) over the release's model bundle, and the release id from `deploy.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cellops_analysis::{Analyzer, Segmenter};
use cellops_formats::params::ParamsFile;
use cellops_formats::{FileError, bundle, release};
use cellops_unet::Device;
use cellops_unet::inference::{PredictConfig, Predictor};

use crate::ServeError;

/// The folder of a release that holds the cell-parameter files.
pub const PARAMS_DIR: &str = "cell-params";

/// How deep below the release folder bundles are looked for (`unet/bundle/bundle.json`,
/// `models/nuclei/bundle.json`).
const BUNDLE_DEPTH: usize = 3;

/// The model a release serves.
#[derive(Debug, Clone)]
pub struct Model {
    /// Its name in URLs: the bundle's folder, or the folder above a folder named `bundle`.
    pub name: String,
    /// The bundle id (the model's version).
    pub version: String,
    /// Input channels (1 grey, 3 RGB).
    pub input_channels: usize,
    /// What each output channel means.
    pub outputs: Vec<String>,
}

/// A loaded release.
pub struct Release {
    /// The release id (from `deploy.json`, else the folder's name).
    pub id: String,
    /// The model.
    pub model: Model,
    /// The model itself, for `infer` (its clones in the analyzers share the weights).
    pub predictor: Predictor,
    types: BTreeMap<String, Analyzer>,
}

impl std::fmt::Debug for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Release")
            .field("id", &self.id)
            .field("model", &self.model)
            .field("types", &self.types.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Release {
    /// Loads the release in `dir` (a release folder or the `current` link): every parameter file,
    /// the one model bundle, onto `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ServeError> {
        let dir = dir
            .canonicalize()
            .map_err(|e| FileError::new(dir, format!("cannot open the release: {e}")))?;
        let files = params_files(&dir)?;
        let bundle_dir = find_bundle(&dir)?;
        let predictor = Predictor::load(&bundle_dir, device, PredictConfig::new()).map_err(|e| ServeError::Model {
            path: bundle_dir.clone(),
            message: e.to_string(),
        })?;
        let meta = predictor.meta();
        let model = Model {
            name: model_name(&bundle_dir),
            version: meta.id.clone(),
            input_channels: meta.input_channels,
            outputs: meta.outputs.clone(),
        };
        let mut types = BTreeMap::new();
        for (name, file) in files {
            let segmenter = Segmenter::model(predictor.clone(), &bundle_dir, &file)?;
            types.insert(name, Analyzer::new(file.params, segmenter));
        }
        Ok(Self {
            id: release_id(&dir),
            model,
            predictor,
            types,
        })
    }

    /// The image types (parameter file names without `.yaml`), sorted.
    pub fn types(&self) -> Vec<&str> {
        self.types.keys().map(String::as_str).collect()
    }

    /// The analyzer of an image type.
    pub fn analyzer(&self, image_type: &str) -> Option<&Analyzer> {
        self.types.get(image_type)
    }
}

/// The release's id: `deploy.json`'s, else the folder's name.
fn release_id(dir: &Path) -> String {
    std::fs::read(dir.join(release::RECORD))
        .ok()
        .and_then(|b| serde_json::from_slice::<release::DeployRecord>(&b).ok())
        .map(|r| r.id)
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
}

/// Every `cell-params/*.yaml` (or `.yml`), read and checked, by image type.
fn params_files(dir: &Path) -> Result<BTreeMap<String, ParamsFile>, ServeError> {
    let folder = dir.join(PARAMS_DIR);
    let entries = std::fs::read_dir(&folder).map_err(|e| FileError::new(&folder, format!("cannot list: {e}")))?;
    let mut files = BTreeMap::new();
    for entry in entries {
        let path = entry
            .map_err(|e| FileError::new(&folder, format!("cannot list: {e}")))?
            .path();
        let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        let Some(stem) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            continue;
        };
        if is_yaml {
            files.insert(stem, ParamsFile::read(&path)?);
        }
    }
    if files.is_empty() {
        return Err(FileError::new(&folder, "no cell-parameter files (*.yaml) to serve").into());
    }
    Ok(files)
}

/// The one bundle folder (holding `bundle.json`) below `dir`.
fn find_bundle(dir: &Path) -> Result<PathBuf, ServeError> {
    let mut found = Vec::new();
    let mut level = vec![dir.to_owned()];
    for _ in 0..BUNDLE_DEPTH {
        let mut next = Vec::new();
        for d in level {
            if d.join(bundle::METADATA).is_file() {
                found.push(d.clone());
            }
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            next.extend(entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()));
        }
        level = next;
    }
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(FileError::new(dir, format!("no model bundle ({}) in the release", bundle::METADATA)).into()),
        _ => Err(FileError::new(
            dir,
            format!(
                "{} model bundles in the release ({}); serve one",
                found.len(),
                found
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .into()),
    }
}

/// The model's name: its folder, or the folder above one named `bundle` (`unet/bundle` → `unet`).
fn model_name(bundle_dir: &Path) -> String {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    match name(bundle_dir) {
        Some(n) if n == bundle::DIR => bundle_dir.parent().and_then(name).unwrap_or(n),
        Some(n) => n,
        None => "model".to_owned(),
    }
}
