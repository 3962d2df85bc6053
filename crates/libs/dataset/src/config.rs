//! The build configuration: defined with the other files that pass between stages in
//! [`cellops_formats::build`], re-exported here where the dataset code uses it.

pub use cellops_formats::build::*;
