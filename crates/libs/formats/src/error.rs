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

/// The most characters of a file's value an error message quotes.
pub const EXCERPT_CHARS: usize = 16;

/// A value from a file as an error message may quote it: at most [`EXCERPT_CHARS`] characters
/// (then `…`), anything but printable ASCII and letters as `?`, so a message never carries a
/// file's contents (a parameter file that is a link to `/etc/shadow`) into a job log.
///
/// ```
/// use cellops_formats::error::excerpt;
/// assert_eq!(excerpt("min_area"), "min_area");
/// assert_eq!(excerpt("root:$6$saltsalt$hashhash:19000"), "root:$6$saltsalt…");
/// assert_eq!(excerpt("a\u{1b}[2Jb"), "a?[2Jb");
/// ```
pub fn excerpt(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| {
            if c.is_alphanumeric() || c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if value.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// A parser's message about a file (serde's, which quotes the values it rejects in backticks or
/// double quotes) with every quoted value cut to an [`excerpt`] and its location suffix (" at
/// line N column M", reported separately) dropped.
///
/// ```
/// use cellops_formats::error::parser_message;
/// let m = "unknown field `root:$6$saltsalt$hashhash:19000`, expected one of `description`, `filters` at line 1 column 1";
/// assert_eq!(
///     parser_message(m),
///     "unknown field `root:$6$saltsalt…`, expected one of `description`, `filters`"
/// );
/// ```
pub fn parser_message(message: &str) -> String {
    let message = message.find(" at line ").map_or(message, |i| &message[..i]);
    let mut out = String::with_capacity(message.len().min(512));
    let mut rest = message;
    while let Some(start) = rest.find(['`', '"']) {
        let quote = rest[start..].chars().next().unwrap_or('"');
        out.push_str(&rest[..=start]);
        let after = &rest[start + 1..];
        match after.find(quote) {
            Some(end) => {
                out.push_str(&excerpt(&after[..end]));
                out.push(quote);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&excerpt(after));
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A dotted field path from a parser (whose segments may be a file's unknown keys) with each
/// segment cut to an [`excerpt`].
///
/// ```
/// assert_eq!(cellops_formats::error::field_path("filters.min_area_um2"), "filters.min_area_um2");
/// assert_eq!(cellops_formats::error::field_path("root:$6$saltsalt$hash"), "root:$6$saltsalt…");
/// ```
pub fn field_path(dotted: &str) -> String {
    dotted.split('.').map(excerpt).collect::<Vec<_>>().join(".")
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
