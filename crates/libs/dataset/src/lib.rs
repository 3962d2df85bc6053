//! Datasets for microscopy segmentation: layouts, validation, preprocessing, splits, manifests,
//! and a synthetic nuclei generator.
//!
//! The entry point is [`prepare::build`]; the pieces are usable on their own.

pub mod config;
pub mod io;
pub mod layout;
pub mod manifest;
pub mod mask;
pub mod meta;
pub mod ops;
pub mod prepare;
pub mod problem;
pub mod raster;
pub mod shard;
pub mod slide;
pub mod split;
pub mod staging;
pub mod synthetic;

pub use config::BuildConfig;
pub use prepare::{
    BuildError, BuildReport, Fixed, Observer, Outcome, build, build_share, preprocess, preprocess_fixed,
    preprocess_scaled, threshold_plane,
};
pub use problem::{Problem, ProblemKind, Severity};
pub use raster::{Labels, Raster, Samples};
