//! Training checkpoints: everything needed to continue a run after it was killed, so that the
//! continued run ends exactly where an uninterrupted one would.
//!
//! A checkpoint folder holds one directory per epoch, `epoch-0007/`, each with
//! - `model.bpk`: the weights in burn's burnpack format, which keeps parameter ids (the optimizer's
//!   state is keyed by them);
//! - `optimizer.bpk`: AdamW's moments and step counts;
//! - `state.json`: the training configuration, the epoch, the best epoch so far and the history.
//!
//! Each directory is written under a temporary name and renamed into place
//! ([`cellops_dataset::staging`]), so a kill leaves either a complete checkpoint or none. After each epoch the oldest directories are removed, keeping the
//! newest `keep` and the best epoch's (whose weights a resumed run needs to return the best model).

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::Bytes;
use cellops_dataset::staging::{StagingDir, StagingError};
use serde::{Deserialize, Serialize};

use crate::config::{EpochRecord, TrainConfig};
use crate::model::UNet;

/// The checkpoint format identifier.
pub const FORMAT: &str = "cellops.unet-checkpoint/1";

/// `state.json` of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointState {
    /// Always [`FORMAT`].
    pub format: String,
    /// The configuration of the run (a resumed run must use the same).
    pub config: TrainConfig,
    /// The epoch this checkpoint ends (1-based).
    pub epoch: usize,
    /// The best epoch so far.
    pub best_epoch: usize,
    /// Its validation Dice.
    pub best_dice: f64,
    /// Every epoch's record so far.
    pub history: Vec<EpochRecord>,
}

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file or directory could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The checkpoint is unreadable, of another format or incomplete.
    #[error("{path}: not a usable checkpoint: {message}")]
    Invalid {
        /// The path.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The checkpoint comes from a run with another configuration.
    #[error(
        "{path}: the checkpoint was made with another configuration ({field}: {before} then, {now} now); \
         use the same configuration, or another output directory to start afresh"
    )]
    ConfigChanged {
        /// The checkpoint's `state.json`.
        path: PathBuf,
        /// The first differing field, dotted.
        field: String,
        /// Its value in the checkpoint.
        before: String,
        /// Its value now.
        now: String,
    },
}

impl From<StagingError> for CheckpointError {
    fn from(e: StagingError) -> Self {
        CheckpointError::Io {
            path: e.path,
            message: e.source.to_string(),
        }
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> CheckpointError + '_ {
    move |e| CheckpointError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn invalid(path: &Path, message: impl Into<String>) -> CheckpointError {
    CheckpointError::Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// The directory of `epoch`'s checkpoint.
pub fn epoch_dir(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("epoch-{epoch:04}"))
}

/// The complete checkpoints in `dir`, by epoch, ascending. A missing `dir` has none.
pub fn list(dir: &Path) -> Result<Vec<(usize, PathBuf)>, CheckpointError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        if let Some(epoch) = name
            .to_str()
            .and_then(|n| n.strip_prefix("epoch-"))
            .and_then(|n| n.parse::<usize>().ok())
        {
            out.push((epoch, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Removes every checkpoint in `dir` (a fresh run must not leave older epochs that a later
/// `resume` would mistake for its own).
pub fn clear(dir: &Path) -> Result<(), CheckpointError> {
    for (_, path) in list(dir)? {
        std::fs::remove_dir_all(&path).map_err(io_err(&path))?;
    }
    Ok(())
}

fn model_bytes(model: &UNet, path: &Path) -> Result<Vec<u8>, CheckpointError> {
    let mut store = BurnpackStore::from_bytes(None);
    model.save_into(&mut store).map_err(|e| invalid(path, e.to_string()))?;
    let bytes = store.get_bytes().map_err(|e| invalid(path, e.to_string()))?;
    Ok(bytes.to_vec())
}

/// Writes `epoch`'s checkpoint into `dir` atomically, then prunes old ones (keeping the newest
/// `keep`, at least one, and the best epoch's).
pub fn save(
    dir: &Path,
    model: &UNet,
    optimizer: &ModuleOptimizer,
    state: &CheckpointState,
    keep: usize,
) -> Result<PathBuf, CheckpointError> {
    let target = epoch_dir(dir, state.epoch);
    let staging = StagingDir::new(&target)?;
    let weights = model_bytes(model, &staging.path().join("model.bpk"))?;
    let optim_path = staging.path().join("optimizer.bpk");
    let optim = optimizer
        .into_bytes()
        .map_err(|e| invalid(&optim_path, e.to_string()))?;
    let state_path = staging.path().join("state.json");
    let json = serde_json::to_vec_pretty(state).map_err(|e| invalid(&state_path, e.to_string()))?;
    for (name, bytes) in [
        ("model.bpk", &weights[..]),
        ("optimizer.bpk", &optim[..]),
        ("state.json", &json[..]),
    ] {
        let p = staging.path().join(name);
        std::fs::write(&p, bytes).map_err(io_err(&p))?;
    }
    staging.commit(&target)?;
    let all = list(dir)?;
    let keep = keep.max(1);
    let cutoff = all.len().saturating_sub(keep);
    for (epoch, path) in &all[..cutoff] {
        if *epoch != state.best_epoch {
            std::fs::remove_dir_all(path).map_err(io_err(path))?;
        }
    }
    Ok(target)
}

/// The first field (dotted path) where two JSON values differ, with both values.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, prefix: &str) -> Option<(String, String, String)> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<_> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => first_difference(u, v, &path),
                    (u, v) => Some((path, show(u), show(v))),
                }
            })
        }
        _ if a == b => None,
        _ => Some((prefix.to_owned(), a.to_string(), b.to_string())),
    }
}

fn show(v: Option<&serde_json::Value>) -> String {
    v.map_or_else(|| "absent".to_owned(), ToString::to_string)
}

/// A checkpoint read back: the model and optimizer at its epoch, the best model so far, and the
/// state.
pub struct Restored {
    /// The weights at the checkpoint's epoch.
    pub model: UNet,
    /// The optimizer at the checkpoint's epoch.
    pub optimizer: ModuleOptimizer,
    /// The best epoch's weights.
    pub best: UNet,
    /// `state.json`.
    pub state: CheckpointState,
    /// The checkpoint's directory.
    pub path: PathBuf,
}

impl std::fmt::Debug for Restored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restored")
            .field("state", &self.state)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn load_model(cfg: &TrainConfig, path: &Path, device: &Device) -> Result<UNet, CheckpointError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let mut model = cfg.model.init(device);
    let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes)));
    let applied = model.load_from(&mut store).map_err(|e| invalid(path, e.to_string()))?;
    if !applied.missing.is_empty() || !applied.errors.is_empty() {
        return Err(invalid(
            path,
            format!(
                "weights do not fit the architecture: {} missing, {} errors",
                applied.missing.len(),
                applied.errors.len()
            ),
        ));
    }
    Ok(model)
}

/// Reads the newest checkpoint in `dir` for a run of `cfg`, onto `device` (an autodiff device for
/// training). `fresh` is the optimizer the run would start with (its settings are kept, its state
/// replaced). Returns `None` when there is no checkpoint.
pub fn load_latest(
    dir: &Path,
    cfg: &TrainConfig,
    fresh: ModuleOptimizer,
    device: &Device,
) -> Result<Option<Restored>, CheckpointError> {
    let Some((_, path)) = list(dir)?.pop() else {
        return Ok(None);
    };
    let state_path = path.join("state.json");
    let text = std::fs::read(&state_path).map_err(io_err(&state_path))?;
    let raw: serde_json::Value = serde_json::from_slice(&text).map_err(|e| invalid(&state_path, e.to_string()))?;
    if raw.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(invalid(&state_path, format!("format is not {FORMAT}")));
    }
    // Compare through text, which writes f32 fields in their shortest form on both sides.
    let as_value = |c: &TrainConfig| {
        serde_json::to_string(c)
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t))
            .map_err(|e| invalid(&state_path, e.to_string()))
    };
    let then: TrainConfig = raw
        .get("config")
        .cloned()
        .ok_or_else(|| invalid(&state_path, "no config"))
        .and_then(|c| serde_json::from_value(c).map_err(|e| invalid(&state_path, e.to_string())))?;
    if let Some((field, before, now)) = first_difference(&as_value(&then)?, &as_value(cfg)?, "") {
        return Err(CheckpointError::ConfigChanged {
            path: state_path,
            field,
            before,
            now,
        });
    }
    let state: CheckpointState = serde_json::from_value(raw).map_err(|e| invalid(&state_path, e.to_string()))?;
    let model = load_model(cfg, &path.join("model.bpk"), device)?;
    let best = if state.best_epoch == state.epoch {
        model.clone()
    } else {
        load_model(cfg, &epoch_dir(dir, state.best_epoch).join("model.bpk"), device)?
    };
    let optim_path = path.join("optimizer.bpk");
    let optim_bytes = std::fs::read(&optim_path).map_err(io_err(&optim_path))?;
    let optimizer = fresh
        .from_bytes(Bytes::from_bytes_vec(optim_bytes))
        .map_err(|e| invalid(&optim_path, e.to_string()))?;
    Ok(Some(Restored {
        model,
        optimizer,
        best,
        state,
        path,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_are_named_by_path() {
        let _rng = crate::flex_rng_lock();
        let a = json!({"model": {"depth": 3, "norm": "Batch"}, "epochs": 5});
        let b = json!({"model": {"depth": 4, "norm": "Batch"}, "epochs": 5});
        assert_eq!(
            first_difference(&a, &b, ""),
            Some(("model.depth".into(), "3".into(), "4".into()))
        );
        assert_eq!(first_difference(&a, &a, ""), None);
    }

    #[test]
    fn listing_ignores_partial_and_foreign_entries() {
        let _rng = crate::flex_rng_lock();
        let dir = tempfile::tempdir().expect("tmp");
        for name in ["epoch-0002", "epoch-0010", ".epoch-0011.partial", "notes"] {
            std::fs::create_dir(dir.path().join(name)).expect("mkdir");
        }
        let epochs: Vec<usize> = list(dir.path()).expect("list").into_iter().map(|e| e.0).collect();
        assert_eq!(epochs, [2, 10]);
        assert!(list(&dir.path().join("missing")).expect("none").is_empty());
    }
}
