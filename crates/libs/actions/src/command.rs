//! Workflow commands (`::name key=value,…::data`) and their escaping, as the runner parses them.

use std::fmt::Write as _;

/// Escapes a command's data part: `%`, carriage return and line feed (as `@actions/core` does).
///
/// ```
/// assert_eq!(cellops_actions::escape_data("50%\nof it"), "50%25%0Aof it");
/// ```
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a command property value: the data escapes plus `:` and `,`.
///
/// ```
/// assert_eq!(cellops_actions::escape_property("a,b:c"), "a%2Cb%3Ac");
/// ```
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// The severity of an annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// `::notice::`.
    Notice,
    /// `::warning::`.
    Warning,
    /// `::error::`.
    Error,
}

impl Level {
    /// The workflow command's name, which is also the word of the human form.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Notice => "notice",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// An annotation on a file (and optionally a line and column), shown on the run and on the diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// Severity.
    pub level: Level,
    /// The message; may span lines.
    pub message: String,
    /// Path of the file, relative to the repository root where possible.
    pub file: Option<String>,
    /// 1-based line.
    pub line: Option<u64>,
    /// 1-based last line.
    pub end_line: Option<u64>,
    /// 1-based column.
    pub col: Option<u64>,
    /// 1-based last column.
    pub end_column: Option<u64>,
    /// A short title shown above the message.
    pub title: Option<String>,
}

impl Annotation {
    /// An annotation with a message and nothing else.
    pub fn new(level: Level, message: impl Into<String>) -> Self {
        Self {
            level,
            message: message.into(),
            file: None,
            line: None,
            end_line: None,
            col: None,
            end_column: None,
            title: None,
        }
    }

    /// Sets the file.
    pub fn file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }

    /// Sets the line.
    pub fn line(mut self, line: u64) -> Self {
        self.line = Some(line);
        self
    }

    /// Sets the line and column where they are known (a position in a configuration file).
    pub fn at(mut self, line: Option<u64>, col: Option<u64>) -> Self {
        self.line = line.or(self.line);
        self.col = col.or(self.col);
        self
    }

    /// Sets the last line.
    pub fn end_line(mut self, line: u64) -> Self {
        self.end_line = Some(line);
        self
    }

    /// Sets the column.
    pub fn col(mut self, col: u64) -> Self {
        self.col = Some(col);
        self
    }

    /// Sets the last column.
    pub fn end_column(mut self, col: u64) -> Self {
        self.end_column = Some(col);
        self
    }

    /// Sets the title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// The workflow command, e.g. `::error file=a.png,line=3::message`.
    ///
    /// ```
    /// use cellops_actions::{Annotation, Level};
    /// let a = Annotation::new(Level::Error, "100% wrong").file("x.yaml").line(2).col(5);
    /// assert_eq!(a.to_command(), "::error file=x.yaml,line=2,col=5::100%25 wrong");
    /// ```
    pub fn to_command(&self) -> String {
        let mut props = Vec::new();
        if let Some(f) = &self.file {
            props.push(format!("file={}", escape_property(f)));
        }
        let numbers = [
            ("line", self.line),
            ("endLine", self.end_line),
            ("col", self.col),
            ("endColumn", self.end_column),
        ];
        for (key, value) in numbers {
            if let Some(v) = value {
                props.push(format!("{key}={v}"));
            }
        }
        if let Some(t) = &self.title {
            props.push(format!("title={}", escape_property(t)));
        }
        let mut s = format!("::{}", self.level.as_str());
        if !props.is_empty() {
            let _ = write!(s, " {}", props.join(","));
        }
        let _ = write!(s, "::{}", escape_data(&self.message));
        s
    }

    /// The human form, e.g. `error: x.yaml:2:5: message`.
    ///
    /// ```
    /// use cellops_actions::{Annotation, Level};
    /// let a = Annotation::new(Level::Warning, "orphan").file("m.png");
    /// assert_eq!(a.to_human(), "warning: m.png: orphan");
    /// ```
    pub fn to_human(&self) -> String {
        let mut s = format!("{}: ", self.level.as_str());
        if let Some(f) = &self.file {
            s.push_str(f);
            if let Some(l) = self.line {
                let _ = write!(s, ":{l}");
                if let Some(c) = self.col {
                    let _ = write!(s, ":{c}");
                }
            }
            s.push_str(": ");
        }
        if let Some(t) = &self.title {
            let _ = write!(s, "{t}: ");
        }
        s.push_str(&self.message);
        s
    }
}
