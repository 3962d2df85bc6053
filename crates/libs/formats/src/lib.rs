//! The files that pass between CellOps' stages, in one place: what each file holds, how it is
//! read (once, under a size cap) and how its errors name the file, line and column.
//!
//! No image codecs and no burn: a stage that only moves files (`deploy-cell-params`) reads and
//! checks them without compiling either.
//!
//! - [`build`]: the build configuration (`build --config`), which a bundle records as the
//!   preprocessing its model expects.
//! - [`dataset`]: a prepared dataset's `manifest.json`, its layouts and splits, split CSV files.
//! - [`bundle`]: the model bundle's file names and `bundle.json`.
//! - [`params`]: cell-parameter files (`cell-params/<image-type>.yaml`): types, checks, their JSON
//!   Schema and reference page, and [`params::ParamsFile`], a file read once.
//! - [`preprocessing`]: the preprocessing settings shared by the build configuration, the model
//!   bundle and the cell parameters.
//! - [`release`]: a deployed release's `deploy.json`, the deploy lock's owner and the audit log
//!   `deployments.jsonl`.
//! - [`serve`]: a release's `serve.json` (the service's listen address, limits, models).
//! - [`FileError`]: a file that cannot be used, with the place in it.
//! - [`Connectivity`]: which neighbours join pixels into one object.

pub mod build;
pub mod bundle;
mod connectivity;
pub mod dataset;
pub mod error;
pub mod links;
pub mod monitor;
pub mod params;
pub mod preprocessing;
pub mod release;
pub mod serve;

pub use connectivity::Connectivity;
pub use error::FileError;
