//! The model bundle: what is trained, versioned and deployed.
//!
//! A directory with
//! - `model.safetensors`: the weights (SafeTensors, loadable from PyTorch by tensor name);
//! - `bundle.json`: format, tool version, the model and training configuration, the preprocessing
//!   the model expects (the dataset's build configuration), input/output channels, the dataset
//!   manifest's sha256, the git commit, final metrics, the weights' sha256 and the bundle id;
//! - `history.jsonl` and `history.csv`: one line per epoch.
//!
//! The id is the first 16 hex digits of the sha256 of `bundle.json`'s content without the id and
//! of the weights, so equal bundles have equal ids. Loading checks the format, the weights' hash
//! and that every tensor the model needs is there with the right shape.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use cellops_dataset::BuildConfig;
use cellops_dataset::manifest::sha256_hex;
use cellops_dataset::staging::{StagingDir, StagingError};

use crate::config::{EpochRecord, TrainConfig, Validation};
use crate::model::{UNet, UNetConfig};
pub use cellops_formats::params::PostProcessing;

pub use cellops_formats::bundle::{
    FORMAT, GOLDEN_IMAGE, GOLDEN_OUTPUT, HISTORY_CSV, HISTORY_JSONL, METADATA, Metrics, WEIGHTS,
};

/// `bundle.json`, typed in full: the architecture and the training configuration included.
pub type BundleMeta = cellops_formats::bundle::BundleMeta<UNetConfig, TrainConfig>;

/// Why a bundle could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// `bundle.json` is missing fields, malformed or of another format version.
    #[error("{path}: not a usable bundle: {message}")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The weights do not match the metadata or the architecture.
    #[error("{path}: {message}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> BundleError + '_ {
    move |e| BundleError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Rewrites SafeTensors bytes with the JSON header's keys sorted (burn writes its metadata map in
/// hash order), so that the same weights always give the same file and bundle id. Tensor offsets
/// are relative to the data section, which is kept as it is.
fn canonical_safetensors(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let len = bytes
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .ok_or("shorter than a SafeTensors header")? as usize;
    let header = bytes.get(8..8 + len).ok_or("truncated SafeTensors header")?;
    // serde_json's map is ordered by key, so a round trip sorts the header.
    let value: serde_json::Value = serde_json::from_slice(header).map_err(|e| e.to_string())?;
    let mut canonical = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
    while canonical.len() % 8 != 0 {
        canonical.push(b' ');
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&(canonical.len() as u64).to_le_bytes());
    out.extend_from_slice(&canonical);
    out.extend_from_slice(&bytes[8 + len..]);
    Ok(out)
}

fn bundle_id(meta: &BundleMeta) -> String {
    let mut m = meta.clone();
    m.id = String::new();
    let json = serde_json::to_vec(&m).unwrap_or_default();
    sha256_hex(&[json, meta.weights_sha256.as_bytes().to_vec()].concat())[..16].to_owned()
}

/// Everything about a trained model except the weights, for [`save`].
#[derive(Debug, Clone)]
pub struct BundleInfo {
    /// The training configuration (its `model` is the architecture).
    pub training: TrainConfig,
    /// The preprocessing of the dataset it was trained on.
    pub preprocessing: BuildConfig,
    /// sha256 of that dataset's manifest.json.
    pub dataset_manifest_sha256: String,
    /// The git commit, when known.
    pub git_commit: Option<String>,
    /// The epoch history.
    pub history: Vec<EpochRecord>,
    /// The epoch whose weights are saved.
    pub best_epoch: usize,
    /// Test-split scores of those weights, when measured.
    pub test: Option<Validation>,
    /// Post-processing tuned on validation, when tuned.
    pub postprocessing: Option<PostProcessing>,
    /// The id of the bundle training started from.
    pub parent: Option<String>,
    /// The golden check's record ([`crate::golden::record`]); its files go in as `extra` files.
    pub golden: Option<cellops_formats::bundle::Golden>,
    /// The reference profile's record; its file goes in as an `extra` file.
    pub reference: Option<cellops_formats::bundle::Reference>,
}

impl BundleInfo {
    /// The information of a model without a training record (made or converted outside
    /// `train-unet`): no dataset, history, metrics, post-processing, parent or golden check.
    pub fn new(training: TrainConfig, preprocessing: BuildConfig) -> Self {
        Self {
            training,
            preprocessing,
            dataset_manifest_sha256: String::new(),
            git_commit: None,
            history: Vec::new(),
            best_epoch: 0,
            test: None,
            postprocessing: None,
            parent: None,
            golden: None,
            reference: None,
        }
    }
}

/// Writes a bundle as the directory `dir` and returns its metadata. The bundle is written beside
/// `dir` under a temporary name and swapped in by renames, so `dir` always holds a whole bundle
/// (the old one or the new one), never a mix. `extra` files (plots, reports) go in with it.
pub fn save(model: &UNet, info: &BundleInfo, dir: &Path, extra: &[(&str, Vec<u8>)]) -> Result<BundleMeta, BundleError> {
    let staging = StagingDir::new(dir)?;
    let meta = write_into(model, info, staging.path(), extra)?;
    staging.commit(dir)?;
    Ok(meta)
}

impl From<StagingError> for BundleError {
    fn from(e: StagingError) -> Self {
        BundleError::Io {
            path: e.path,
            message: e.source.to_string(),
        }
    }
}

/// The model's weights as canonical SafeTensors bytes (`path` names them in errors).
fn canonical_weights(model: &UNet, path: &Path) -> Result<Vec<u8>, BundleError> {
    let mut store = SafetensorsStore::from_bytes(None);
    model.save_into(&mut store).map_err(|e| BundleError::Weights {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    store
        .get_bytes()
        .map_err(|e| e.to_string())
        .and_then(|b| canonical_safetensors(&b))
        .map_err(|message| BundleError::Weights {
            path: path.to_owned(),
            message,
        })
}

/// Writes `bundle.json` into `dir`.
fn write_metadata(meta: &BundleMeta, dir: &Path) -> Result<(), BundleError> {
    let meta_path = dir.join(METADATA);
    let json = serde_json::to_string_pretty(meta).map_err(|e| BundleError::Metadata {
        path: meta_path.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&meta_path, json + "\n").map_err(io_err(&meta_path))
}

fn write_into(
    model: &UNet,
    info: &BundleInfo,
    dir: &Path,
    extra: &[(&str, Vec<u8>)],
) -> Result<BundleMeta, BundleError> {
    let weights_path = dir.join(WEIGHTS);
    let weights = canonical_weights(model, &weights_path)?;
    let best = info.history.get(info.best_epoch.wrapping_sub(1));
    let outputs = match info.training.model.out_channels {
        1 => vec!["foreground".to_owned()],
        2 => ["foreground"]
            .into_iter()
            .chain(info.training.targets().output_name())
            .map(str::to_owned)
            .collect(),
        n => (0..n).map(|i| format!("channel{i}")).collect(),
    };
    let mut meta = BundleMeta {
        format: FORMAT.to_owned(),
        id: String::new(),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        model: info.training.model.clone(),
        training: info.training.clone(),
        preprocessing: info.preprocessing.clone(),
        input_channels: info.training.model.in_channels,
        outputs,
        dataset_manifest_sha256: info.dataset_manifest_sha256.clone(),
        git_commit: info.git_commit.clone(),
        metrics: Metrics {
            best_epoch: info.best_epoch,
            val_dice: best.map_or(0.0, |r| r.val_dice),
            val_iou: best.map_or(0.0, |r| r.val_iou),
            val_f1: best.and_then(|r| r.val_f1),
            epochs_run: info.history.len(),
            test_dice: info.test.map(|t| t.dice),
            test_iou: info.test.map(|t| t.iou),
            test_f1: info.test.and_then(|t| t.f1),
        },
        weights_sha256: sha256_hex(&weights),
        postprocessing: info.postprocessing,
        parent: info.parent.clone(),
        golden: info.golden.clone(),
        reference: info.reference.clone(),
        size_model: None,
    };
    meta.id = bundle_id(&meta);
    std::fs::write(&weights_path, &weights).map_err(io_err(&weights_path))?;
    let mut jsonl = String::new();
    let mut csv = String::from("epoch,train_loss,val_dice,val_iou,val_f1,learning_rate,patches_per_second,seconds\n");
    for r in &info.history {
        jsonl.push_str(&serde_json::to_string(r).unwrap_or_default());
        jsonl.push('\n');
        let f1 = r.val_f1.map(|v| v.to_string()).unwrap_or_default();
        let _ = writeln!(
            csv,
            "{},{},{},{},{f1},{},{},{}",
            r.epoch, r.train_loss, r.val_dice, r.val_iou, r.learning_rate, r.patches_per_second, r.seconds
        );
    }
    for (name, bytes) in [(HISTORY_JSONL, jsonl.as_bytes()), (HISTORY_CSV, csv.as_bytes())]
        .into_iter()
        .chain(extra.iter().map(|(n, b)| (*n, &b[..])))
    {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(io_err(&p))?;
    }
    write_metadata(&meta, dir)?;
    Ok(meta)
}

/// Writes `model` with `meta` (as read from another bundle, with any field changed: new
/// post-processing, new metrics) as the bundle `dir`, under this tool's version and format and a
/// recomputed id; `extra` files go in with it. What `cellops bundle` uses to re-bundle a model.
pub fn resave(
    model: &UNet,
    meta: &BundleMeta,
    dir: &Path,
    extra: &[(&str, Vec<u8>)],
) -> Result<BundleMeta, BundleError> {
    let staging = StagingDir::new(dir)?;
    let weights_path = staging.path().join(WEIGHTS);
    let weights = canonical_weights(model, &weights_path)?;
    let mut meta = BundleMeta {
        format: FORMAT.to_owned(),
        id: String::new(),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        weights_sha256: sha256_hex(&weights),
        ..meta.clone()
    };
    meta.id = bundle_id(&meta);
    std::fs::write(&weights_path, &weights).map_err(io_err(&weights_path))?;
    for (name, bytes) in extra {
        let p = staging.path().join(name);
        std::fs::write(&p, bytes).map_err(io_err(&p))?;
    }
    write_metadata(&meta, staging.path())?;
    staging.commit(dir)?;
    Ok(meta)
}

/// Reads a bundle's metadata and weights onto `device`, checking format, id, hash and shapes.
/// `dir` may also be the name of a bundle shipped inside the binary ([`SHIPPED`], e.g. `nuclei`)
/// where no folder of that name exists.
pub fn load(dir: &Path, device: &Device) -> Result<(UNet, BundleMeta), BundleError> {
    if !dir.exists()
        && let Some(b) = dir.to_str().and_then(shipped)
    {
        return from_bytes(
            b.metadata,
            b.weights.to_vec(),
            &Path::new(SHIPPED_DIR).join(b.name),
            device,
        );
    }
    let meta_path = dir.join(METADATA);
    let text = std::fs::read_to_string(&meta_path).map_err(io_err(&meta_path))?;
    let weights_path = dir.join(WEIGHTS);
    let weights = std::fs::read(&weights_path).map_err(io_err(&weights_path))?;
    let (model, meta) = from_bytes(&text, weights, dir, device)?;
    check_reference(dir, &meta)?;
    Ok((model, meta))
}

/// A bundle's reference profile must be the file its `bundle.json` hashed (like the weights).
fn check_reference(dir: &Path, meta: &BundleMeta) -> Result<(), BundleError> {
    let Some(reference) = &meta.reference else {
        return Ok(());
    };
    let path = dir.join(cellops_formats::bundle::REFERENCE);
    let bytes = std::fs::read(&path).map_err(io_err(&path))?;
    let found = sha256_hex(&bytes);
    if found == reference.sha256 {
        Ok(())
    } else {
        Err(BundleError::Metadata {
            path,
            message: format!(
                "its sha256 is {found}, bundle.json records {}: the file was changed",
                reference.sha256
            ),
        })
    }
}

/// A bundle compiled into the binary, so that a lab can segment on day one without training
/// or downloading anything.
#[derive(Debug, Clone, Copy)]
pub struct Shipped {
    /// The name `--model` takes.
    pub name: &'static str,
    /// `bundle.json`.
    pub metadata: &'static str,
    /// `model.safetensors`.
    pub weights: &'static [u8],
    /// The model card (Markdown).
    pub card: &'static str,
    /// The reference profile (`reference.json`), which `bundle.json` hashes.
    pub reference: &'static str,
}

/// Where the shipped bundles live in the repository (relative to its root).
pub const SHIPPED_DIR: &str = "models";

/// The bundles shipped inside the binary.
pub const SHIPPED: &[Shipped] = &[Shipped {
    name: "nuclei",
    metadata: include_str!("../../../../models/nuclei/bundle.json"),
    weights: include_bytes!("../../../../models/nuclei/model.safetensors"),
    card: include_str!("../../../../models/nuclei/MODEL_CARD.md"),
    reference: include_str!("../../../../models/nuclei/reference.json"),
}];

/// The shipped bundle called `name`.
pub fn shipped(name: &str) -> Option<&'static Shipped> {
    SHIPPED.iter().find(|b| b.name == name)
}

/// Lays `given` over `base`, key by key (objects merge, anything else replaces): how a partial
/// configuration is completed with defaults.
pub fn merge_json(base: &mut serde_json::Value, given: serde_json::Value) {
    match (base, given) {
        (serde_json::Value::Object(b), serde_json::Value::Object(g)) => {
            for (k, v) in g {
                match b.get_mut(&k) {
                    Some(slot) => merge_json(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// `bundle.json` with the defaults of configuration fields that a bundle written by an earlier
/// version lacks (burn's configurations require every field when read).
fn with_defaults(mut written: serde_json::Value) -> serde_json::Value {
    let defaults = [
        ("training", serde_json::to_value(TrainConfig::new())),
        ("model", serde_json::to_value(UNetConfig::new())),
    ];
    for (key, default) in defaults {
        if let (Some(given), Ok(mut full)) = (written.get_mut(key), default) {
            merge_json(&mut full, given.take());
            *given = full;
        }
    }
    written
}

/// `bundle.json`'s text read as metadata, fields that a bundle written by an earlier version
/// lacks taking their defaults (the id is not checked: [`load`] does that).
pub fn parse_meta(text: &str) -> Result<BundleMeta, serde_json::Error> {
    serde_json::from_value(with_defaults(serde_json::from_str(text)?))
}

/// A bundle from its `bundle.json` text and weights (`dir` names it in errors).
fn from_bytes(text: &str, weights: Vec<u8>, dir: &Path, device: &Device) -> Result<(UNet, BundleMeta), BundleError> {
    let meta_path = dir.join(METADATA);
    let invalid = |e: serde_json::Error| BundleError::Metadata {
        path: meta_path.clone(),
        message: cellops_formats::error::parser_message(&e.to_string()),
    };
    let written: serde_json::Value = serde_json::from_str(text).map_err(invalid)?;
    let meta: BundleMeta = serde_json::from_value(with_defaults(written.clone())).map_err(invalid)?;
    if meta.format != FORMAT {
        return Err(BundleError::Metadata {
            path: meta_path,
            message: format!("format {} is not {FORMAT}; rebuild it with this version", meta.format),
        });
    }
    // The id covers the metadata as written; a bundle from a version whose configurations had
    // fewer fields reads with their defaults, and its id is not recomputed.
    let current = serde_json::to_value(&meta).is_ok_and(|v| v == written);
    if current && bundle_id(&meta) != meta.id {
        return Err(BundleError::Metadata {
            path: meta_path,
            message: format!("the content does not match its id {}: bundle.json was edited", meta.id),
        });
    }
    let weights_path = dir.join(WEIGHTS);
    if sha256_hex(&weights) != meta.weights_sha256 {
        return Err(BundleError::Weights {
            path: weights_path,
            message: "sha256 differs from bundle.json: the weights are corrupt or were replaced".into(),
        });
    }
    let mut model = meta.model.init(device);
    let mut store = SafetensorsStore::from_bytes(Some(weights));
    let applied = model.load_from(&mut store).map_err(|e| BundleError::Weights {
        path: weights_path.clone(),
        message: e.to_string(),
    })?;
    if !applied.missing.is_empty() || !applied.errors.is_empty() {
        return Err(BundleError::Weights {
            path: weights_path,
            message: format!(
                "weights do not fit the architecture in bundle.json: {} missing, {} errors",
                applied.missing.len(),
                applied.errors.len()
            ),
        });
    }
    Ok((model, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Norm;

    fn info() -> BundleInfo {
        let training = TrainConfig::new().with_model(
            UNetConfig::new()
                .with_depth(2)
                .with_base_channels(4)
                .with_norm(Norm::Group),
        );
        BundleInfo {
            dataset_manifest_sha256: "ab".repeat(32),
            git_commit: Some("0123abc".into()),
            ..BundleInfo::new(training, BuildConfig::default())
        }
    }

    #[test]
    fn metadata_from_an_earlier_version_reads_with_defaults() {
        let shipped = shipped("nuclei").expect("shipped");
        let mut v: serde_json::Value = serde_json::from_str(shipped.metadata).expect("json");
        let augment = v["training"]["augment"].as_object_mut().expect("augment");
        augment.remove("nuclei_bias");
        let text = v.to_string();
        assert!(
            serde_json::from_str::<BundleMeta>(&text).is_err(),
            "plain serde wants every field"
        );
        let meta = parse_meta(&text).expect("reads");
        assert!((meta.training.augment.nuclei_bias - 0.7).abs() < 1e-6);
        assert_eq!(meta.id, v["id"].as_str().expect("id"));
    }

    #[test]
    fn round_trip_is_exact() {
        let _rng = crate::flex_rng_lock();
        let device = Device::flex();
        let info = info();
        let model = info.training.model.init(&device);
        let dir = tempfile::tempdir().expect("tmp");
        let meta = save(&model, &info, dir.path(), &[]).expect("save");
        assert_eq!(meta.id.len(), 16);
        let (loaded, meta2) = load(dir.path(), &device).expect("load");
        assert_eq!(meta2.id, meta.id);
        let x = Tensor::<4>::ones([1, 1, 12, 12], &device);
        let (a, b) = (model.forward(x.clone()).into_data(), loaded.forward(x).into_data());
        assert_eq!(a, b, "identical outputs");
        // Saving again gives the same id.
        let again = save(&loaded, &info, &dir.path().join("again"), &[]).expect("save");
        assert_eq!(again.id, meta.id);
    }

    #[test]
    fn corrupt_or_incompatible_bundles_are_refused() {
        let _rng = crate::flex_rng_lock();
        let device = Device::flex();
        let info = info();
        let model = info.training.model.init(&device);
        let dir = tempfile::tempdir().expect("tmp");
        save(&model, &info, dir.path(), &[]).expect("save");
        // Corrupt weights.
        let w = dir.path().join(WEIGHTS);
        let mut bytes = std::fs::read(&w).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&w, &bytes).expect("write");
        let err = load(dir.path(), &device).expect_err("corrupt");
        assert!(err.to_string().contains("sha256 differs"), "{err}");
        // Another architecture in bundle.json.
        save(&model, &info, dir.path(), &[]).expect("save");
        let meta_path = dir.path().join(METADATA);
        let mut meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&meta_path).expect("read")).expect("json");
        meta["model"]["base_channels"] = 8.into();
        std::fs::write(&meta_path, meta.to_string()).expect("write");
        let err = load(dir.path(), &device).expect_err("incompatible");
        assert!(matches!(err, BundleError::Weights { .. }), "{err}");
        // Missing metadata.
        std::fs::remove_file(&meta_path).expect("rm");
        assert!(matches!(load(dir.path(), &device), Err(BundleError::Io { .. })));
    }
}
