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

/// Reads a text file of at most `max` bytes (`what` names the kind of file in errors, e.g.
/// "a parameter file"); the cap holds even when the file grows between the check and the read.
pub(crate) fn read_capped(path: &Path, max: u64, what: &str) -> Result<String, FileError> {
    use std::io::Read as _;
    let err = |message: String| FileError::new(path, message);
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
    if meta.len() > max {
        return Err(err(format!(
            "{} bytes is too large for {what} (limit {max})",
            meta.len()
        )));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max + 1).read_to_string(&mut text))
        .map_err(|e| err(format!("cannot read: {e}")))?;
    if text.len() as u64 > max {
        return Err(err(format!("more than {max} bytes is too large for {what}")));
    }
    Ok(text)
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
