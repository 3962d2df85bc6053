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

/// Whether a quoted word is one of the program's own names (a field or variant: lowercase
/// snake_case, at most 32 characters), which a message shows whole, rather than a file's value.
fn own_name(word: &str) -> bool {
    !word.is_empty()
        && word.len() <= 32
        && word
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A parser's message about a file (serde's, which quotes the values it rejects in backticks or
/// double quotes, the latter with `\"` escapes) with every quoted value that is not one of the
/// program's own names cut to an [`excerpt`], and its location suffix (" at line N column M",
/// reported separately) dropped.
///
/// ```
/// use cellops_formats::error::parser_message;
/// let m = "unknown field `root:$6$saltsalt$hashhash:19000`, expected one of `description`, `probability_threshold` at line 1 column 1";
/// assert_eq!(
///     parser_message(m),
///     "unknown field `root:$6$saltsalt…`, expected one of `description`, `probability_threshold`"
/// );
/// // An escaped quote does not end the value early.
/// let m = r#"invalid type: string "TOKEN=\"supersecretvalue\" and more", expected f64"#;
/// assert_eq!(parser_message(m), r#"invalid type: string "TOKEN=\"supersec…", expected f64"#);
/// ```
pub fn parser_message(message: &str) -> String {
    let message = message.find(" at line ").map_or(message, |i| &message[..i]);
    let mut out = String::with_capacity(message.len().min(512));
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '`' && c != '"' {
            continue;
        }
        // The quoted value, up to the closing quote (a double-quoted one skips `\` escapes).
        let mut value = String::new();
        let mut closed = false;
        while let Some(v) = chars.next() {
            if v == c {
                closed = true;
                break;
            }
            value.push(v);
            if v == '\\'
                && c == '"'
                && let Some(escaped) = chars.next()
            {
                value.push(escaped);
            }
        }
        out.push_str(&if own_name(&value) { value } else { excerpt(&value) });
        if closed {
            out.push(c);
        }
    }
    out
}

/// A dotted field path from a parser (whose segments may be a file's unknown keys) with each
/// segment that is not one of the program's own names cut to an [`excerpt`].
///
/// ```
/// assert_eq!(cellops_formats::error::field_path("segmentation.probability_threshold"), "segmentation.probability_threshold");
/// assert_eq!(cellops_formats::error::field_path("root:$6$saltsalt$hash"), "root:$6$saltsalt…");
/// ```
pub fn field_path(dotted: &str) -> String {
    dotted
        .split('.')
        .map(|s| if own_name(s) { s.to_owned() } else { excerpt(s) })
        .collect::<Vec<_>>()
        .join(".")
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
