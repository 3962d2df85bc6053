//! Problems found in a dataset: each names the file it is about.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How bad a problem is: errors stop the build, warnings are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Reported; the build goes on.
    Warning,
    /// The build writes nothing and fails.
    Error,
}

/// What kind of problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// The file could not be read (permissions, I/O).
    Unreadable,
    /// The file is not an image CellOps reads, or its pixel type is unsupported.
    Unsupported,
    /// The file is truncated or corrupt.
    Corrupt,
    /// The image has more pixels than the configured limit.
    TooLarge,
    /// A mask stored in a lossy format (JPEG), whose labels cannot be trusted.
    LossyMask,
    /// A binary mask with intermediate values along object edges (anti-aliasing).
    AntiAliasedMask,
    /// A mask with colour channels that differ: labels must be grey.
    ColourMask,
    /// Image and mask sizes differ.
    SizeMismatch,
    /// An image without a mask.
    OrphanImage,
    /// A mask without an image.
    OrphanMask,
    /// Two images with the same content.
    Duplicate,
    /// Two images map to the same item name.
    Ambiguous,
    /// A mask with no objects.
    EmptyMask,
    /// Per-object masks (DSB2018) that claim the same pixels.
    OverlappingMasks,
    /// Objects that resizing made vanish.
    ObjectsLost,
    /// A file in an image or mask folder that is not an image, skipped.
    Skipped,
    /// Extra channels or files that the layout's reader ignores.
    Ignored,
    /// An item the split file does not list, or lists with an unknown split.
    Split,
}

/// One problem, about one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// How bad it is.
    pub severity: Severity,
    /// What kind.
    pub kind: ProblemKind,
    /// The file it is about (as found under the dataset root).
    pub path: PathBuf,
    /// A sentence a person can act on.
    pub message: String,
}

impl Problem {
    /// An error.
    pub fn error(kind: ProblemKind, path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            kind,
            path: path.into(),
            message: message.into(),
        }
    }

    /// A warning.
    pub fn warning(kind: ProblemKind, path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            kind,
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{level}: {}: {}", self.path.display(), self.message)
    }
}
