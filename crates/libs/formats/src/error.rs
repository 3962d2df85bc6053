//! The error of a file that cannot be used, naming the file and, when known, the line and column.

use std::path::{Path, PathBuf};

/// A configuration file that cannot be used, with the place in it when known (training configs,
/// cell-parameter files); its `Display` is `path:line:column: message`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", place(.path, *.line, *.column))]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl FileError {
    /// An error about the whole file (no line or column).
    pub fn new(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

fn place(path: &Path, line: Option<u64>, column: Option<u64>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("{}:{l}:{c}", path.display()),
        (Some(l), None) => format!("{}:{l}", path.display()),
        _ => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_starts_with_the_place() {
        let e = FileError {
            path: PathBuf::from("cell-params/x.yaml"),
            line: Some(3),
            column: Some(7),
            message: "unknown field".into(),
        };
        assert_eq!(e.to_string(), "cell-params/x.yaml:3:7: unknown field");
        let e = FileError { column: None, ..e };
        assert_eq!(e.to_string(), "cell-params/x.yaml:3: unknown field");
        let e = FileError { line: None, ..e };
        assert_eq!(e.to_string(), "cell-params/x.yaml: unknown field");
    }
}
