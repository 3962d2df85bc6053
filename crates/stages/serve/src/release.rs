//! A deployed release as the service sees it: its files checked against `deploy.json`, every
//! model bundle in it loaded and its golden check passed (the warm-up), one analyzer per image type (a cell-parameter file of
//! `cell-params/`) over the model `serve.json` names for it, and the release id.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cellops_analysis::{Analyzer, Segmenter};
use cellops_formats::bundle::ReferenceProfile;
use cellops_formats::params::ParamsFile;
use cellops_formats::release::DeployRecord;
use cellops_formats::serve::{self, ServeConfig};
use cellops_formats::{FileError, bundle};
use cellops_unet::Device;
use cellops_unet::golden::{self, GoldenReport};
use cellops_unet::inference::{PredictConfig, Predictor};

use crate::ServeError;

/// The folder of a release that holds the cell-parameter files.
pub const PARAMS_DIR: &str = "cell-params";

/// How deep below the release folder bundles are looked for (`unet/bundle/bundle.json`,
/// `models/nuclei/bundle.json`).
const BUNDLE_DEPTH: usize = 3;

/// A model a release serves.
#[derive(Clone)]
pub struct Model {
    /// Its name in URLs: the bundle's folder, or the folder above a folder named `bundle`.
    pub name: String,
    /// The bundle id (the model's version).
    pub version: String,
    /// Input channels (1 grey, 3 RGB).
    pub input_channels: usize,
    /// What each output channel means.
    pub outputs: Vec<String>,
    /// The golden check run when it was loaded (`None`: its bundle records none).
    pub golden: Option<GoldenReport>,
    /// The bundle's folder (the golden files are checked again from it on request).
    pub dir: PathBuf,
    /// The model itself, for `infer` (its clones in the analyzers share the weights).
    pub predictor: Predictor,
    /// Its reference profile (`reference.json`, checked against `bundle.json` when the bundle
    /// loaded), which drift is computed against; `None` for a bundle without one.
    pub reference: Option<Arc<ReferenceProfile>>,
}

/// An image type: its parameter file's analyzer and the model that segments it.
pub struct ImageType {
    /// The model's name.
    pub model: String,
    /// The sha256 of the parameter file, hex.
    pub params_sha256: String,
    /// The analyzer.
    pub analyzer: Analyzer,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("input_channels", &self.input_channels)
            .field("outputs", &self.outputs)
            .field("golden", &self.golden)
            .field("reference_images", &self.reference.as_ref().map(|r| r.images.len()))
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ImageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageType")
            .field("model", &self.model)
            .field("params_sha256", &self.params_sha256)
            .finish_non_exhaustive()
    }
}

/// Whether a release must carry `deploy.json` (and so have its files checked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Verification {
    /// Refuse a release without `deploy.json`: what a deploy made is always checked.
    #[default]
    Required,
    /// Serve a folder that no deploy made unchecked (`--allow-unverified`); readiness says so.
    Optional,
}

/// A loaded release.
#[derive(Debug)]
pub struct Release {
    /// The release id (from `deploy.json`, else the folder's name).
    pub id: String,
    /// The release folder (resolved: a `current` link is followed).
    pub dir: PathBuf,
    /// Whether every file was checked against `deploy.json`'s sha256 (false only for a folder
    /// that no deploy made, served with [`Verification::Optional`]).
    pub verified: bool,
    models: BTreeMap<String, Model>,
    types: BTreeMap<String, ImageType>,
    /// The shadow model, when `serve.json` names one.
    pub shadow: Option<Shadow>,
}

/// A candidate model that also runs, off the latency path, on a share of the measured images.
pub struct Shadow {
    /// Its model name.
    pub model: String,
    /// Its bundle id.
    pub version: String,
    /// The share of measured images it runs on.
    pub share: f64,
    /// One analyzer per image type: the type's parameter file over the candidate.
    analyzers: BTreeMap<String, Analyzer>,
}

impl Shadow {
    /// The analyzer of an image type.
    pub fn analyzer(&self, image_type: &str) -> Option<&Analyzer> {
        self.analyzers.get(image_type)
    }
}

impl std::fmt::Debug for Shadow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shadow")
            .field("model", &self.model)
            .field("version", &self.version)
            .field("share", &self.share)
            .finish_non_exhaustive()
    }
}

impl Release {
    /// Loads the release in `dir` (a release folder or the `current` link): checks its files
    /// against `deploy.json` (required unless `verification` is optional), reads `serve.json`
    /// and every parameter file, and loads every model bundle onto `device`.
    pub fn load(dir: &Path, device: &Device, verification: Verification) -> Result<Self, ServeError> {
        let dir = dir
            .canonicalize()
            .map_err(|e| FileError::new(dir, format!("cannot open the release: {e}")))?;
        let record = DeployRecord::read(&dir)?;
        match (&record, verification) {
            (Some(r), _) => r.verify(&dir)?,
            (None, Verification::Optional) => {}
            (None, Verification::Required) => {
                return Err(FileError::new(
                    &dir.join(cellops_formats::release::RECORD),
                    "missing: without it the release's files cannot be checked; serve a deployed \
                     release, or pass --allow-unverified for a folder that no deploy made",
                )
                .into());
            }
        }
        let verified = record.is_some();
        let config = ServeConfig::of_release(&dir)?;
        let files = params_files(&dir)?;
        let models = find_bundles(&dir)?
            .into_iter()
            .map(|b| load_model(&b, device).map(|m| (m.name.clone(), (b, m))))
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        let mut types = BTreeMap::new();
        let mut shadow = shadow_of(&dir, &config, &models)?;
        for (name, file) in files {
            let model = model_of(&dir, &config, &models, &name)?;
            let (bundle_dir, m) = &models[&model];
            if let Some(s) = &mut shadow {
                let (shadow_dir, candidate) = &models[&s.model];
                let segmenter = Segmenter::model(candidate.predictor.clone(), shadow_dir, &file)?;
                s.analyzers
                    .insert(name.clone(), Analyzer::new(file.params.clone(), segmenter));
            }
            let segmenter = Segmenter::model(m.predictor.clone(), bundle_dir, &file)?;
            let params_sha256 = sha256_hex(file.text.as_bytes());
            let analyzer = Analyzer::new(file.params, segmenter);
            types.insert(
                name,
                ImageType {
                    model,
                    params_sha256,
                    analyzer,
                },
            );
        }
        Ok(Self {
            id: record.map_or_else(|| folder_name(&dir), |r| r.id),
            verified,
            dir,
            models: models.into_iter().map(|(k, (_, m))| (k, m)).collect(),
            types,
            shadow,
        })
    }

    /// The image types (parameter file names without `.yaml`), sorted.
    pub fn types(&self) -> Vec<&str> {
        self.types.keys().map(String::as_str).collect()
    }

    /// An image type.
    pub fn image_type(&self, name: &str) -> Option<&ImageType> {
        self.types.get(name)
    }

    /// The models, by name.
    pub fn models(&self) -> impl Iterator<Item = &Model> {
        self.models.values()
    }

    /// A model by name.
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.get(name)
    }

    /// The sha256 of a model's parameter files: of the sorted `<image type> <sha256>` lines
    /// (the one file's own sha256 when it serves one image type).
    pub fn params_sha256(&self, model: &str) -> String {
        let lines: Vec<_> = self.types.iter().filter(|(_, t)| t.model == model).collect();
        match lines.as_slice() {
            [(_, one)] => one.params_sha256.clone(),
            all => sha256_hex(
                all.iter()
                    .map(|(k, t)| format!("{k} {}\n", t.params_sha256))
                    .collect::<String>()
                    .as_bytes(),
            ),
        }
    }

    /// The image types a model segments.
    pub fn types_of(&self, model: &str) -> Vec<&str> {
        self.types
            .iter()
            .filter(|(_, t)| t.model == model)
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

fn load_model(bundle_dir: &Path, device: &Device) -> Result<Model, ServeError> {
    let predictor = Predictor::load(bundle_dir, device, PredictConfig::new()).map_err(|e| ServeError::Model {
        path: bundle_dir.to_owned(),
        message: e.to_string(),
    })?;
    // The warm-up: the golden input must give what the model gave when it was bundled.
    let golden = golden::check(&predictor, bundle_dir).map_err(|e| ServeError::Model {
        path: bundle_dir.to_owned(),
        message: e.to_string(),
    })?;
    let meta = predictor.meta();
    let reference = match meta.reference {
        Some(_) => {
            let path = bundle_dir.join(bundle::REFERENCE);
            let bytes = std::fs::read(&path).map_err(|e| FileError::new(&path, format!("cannot read: {e}")))?;
            Some(Arc::new(ReferenceProfile::from_slice(&path, &bytes)?))
        }
        None => None,
    };
    Ok(Model {
        reference,
        dir: bundle_dir.to_owned(),
        name: model_name(bundle_dir),
        version: meta.id.clone(),
        input_channels: meta.input_channels,
        outputs: meta.outputs.clone(),
        golden,
        predictor,
    })
}

/// The shadow `serve.json` names (its analyzers still empty), checked against the release's models.
fn shadow_of(
    dir: &Path,
    config: &ServeConfig,
    models: &BTreeMap<String, (PathBuf, Model)>,
) -> Result<Option<Shadow>, FileError> {
    let Some(s) = &config.shadow else {
        return Ok(None);
    };
    let Some((_, m)) = models.get(&s.model) else {
        let names = models.keys().cloned().collect::<Vec<_>>().join(", ");
        return Err(FileError::new(
            &dir.join(serve::FILE),
            format!("shadow.model: no model `{}` in the release (it has: {names})", s.model),
        ));
    };
    Ok(Some(Shadow {
        model: s.model.clone(),
        version: m.version.clone(),
        share: s.share,
        analyzers: BTreeMap::new(),
    }))
}

/// The model that segments an image type: `serve.json`'s choice, else the release's only model.
fn model_of<T>(
    dir: &Path,
    config: &ServeConfig,
    models: &BTreeMap<String, T>,
    image_type: &str,
) -> Result<String, FileError> {
    let names = || models.keys().cloned().collect::<Vec<_>>().join(", ");
    let path = dir.join(serve::FILE);
    match config.models.get(image_type) {
        Some(m) if models.contains_key(m) => Ok(m.clone()),
        Some(m) => Err(FileError::new(
            &path,
            format!(
                "models.{image_type}: no model `{m}` in the release (it has: {})",
                names()
            ),
        )),
        None => {
            // The shadow serves no image type: the one other model does.
            let shadow = config.shadow.as_ref().map(|s| s.model.as_str());
            let mut serving = models.keys().filter(|k| Some(k.as_str()) != shadow);
            match (serving.next(), serving.next()) {
                (Some(only), None) => Ok(only.clone()),
                _ => Err(FileError::new(
                    &path,
                    format!(
                        "models: say which model serves image type `{image_type}` (the release has {})",
                        names()
                    ),
                )),
            }
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    cellops_formats::release::sha256_of(bytes)
        .map(|(_, h)| h)
        .unwrap_or_default()
}

fn folder_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
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

/// Every bundle folder (holding `bundle.json`) below `dir`, with distinct model names.
fn find_bundles(dir: &Path) -> Result<Vec<PathBuf>, ServeError> {
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
    if found.is_empty() {
        return Err(FileError::new(dir, format!("no model bundle ({}) in the release", bundle::METADATA)).into());
    }
    let mut names = BTreeMap::new();
    for b in &found {
        if let Some(other) = names.insert(model_name(b), b) {
            return Err(FileError::new(
                b,
                format!(
                    "two bundles would both be model `{}` (also {}); rename one folder",
                    model_name(b),
                    other.display()
                ),
            )
            .into());
        }
    }
    Ok(found)
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
