//! The GitHub Actions runtime that every CellOps binary speaks.
//!
//! One [`Runner`] is the binary's output channel. Inside GitHub Actions (`GITHUB_ACTIONS=true`) it
//! writes the formats the runner parses:
//!
//! - outputs to the file named by `$GITHUB_OUTPUT`, always in the multi-line-safe
//!   `name<<DELIMITER` form with a random delimiter ([`Runner::set_output`]);
//! - Markdown to the file named by `$GITHUB_STEP_SUMMARY` ([`Runner::append_summary`]);
//! - workflow commands on standard output: `::error file=…,line=…,col=…::message` annotations with the
//!   documented escaping ([`Annotation`]), `::add-mask::` for secrets, `::group::` / `::endgroup::`.
//!
//! Outside Actions the same calls print a human form: annotations as `error: file:line:col: message`
//! on standard error, outputs as `name: value` lines, the summary as Markdown on standard output.
//!
//! Inputs come from command-line flags or from `INPUT_<NAME>` environment variables, see [`inputs`].

pub mod command;
pub mod inputs;
pub mod progress;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use command::{Annotation, Level, escape_data, escape_property};

/// Errors of the Actions runtime.
#[derive(Debug, thiserror::Error)]
pub enum ActionsError {
    /// An output name that the runner cannot parse back (empty, or containing `=`, `<` or a newline).
    #[error("invalid output name {0:?}: use letters, digits, '-' and '_'")]
    InvalidOutputName(String),
    /// Writing `$GITHUB_OUTPUT` or `$GITHUB_STEP_SUMMARY` failed.
    #[error("cannot write {path}: {source}")]
    File {
        /// The file that could not be written.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// Writing a workflow command or message to standard output or standard error failed.
    #[error("cannot write to the console: {0}")]
    Console(#[source] std::io::Error),
    /// The operating system gave no randomness for an output delimiter.
    #[error("no randomness for the output delimiter: {0}")]
    Random(String),
}

/// Process exit codes shared by every CellOps binary (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The stage did its work.
    Success = 0,
    /// The stage ran and found problems in its input (invalid data, failed checks).
    Failure = 1,
    /// The command line or the action inputs were wrong.
    Usage = 2,
    /// The stage could not run: I/O, environment or internal errors.
    Error = 3,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

/// An error that ends a stage: what the runner is told about it.
pub trait StageFailure: std::error::Error {
    /// The process exit code.
    fn exit(&self) -> Exit;
    /// The annotation that reports it (on a file and line where there is one).
    fn annotation(&self) -> Annotation;
}

/// Ends a stage the same way in every binary: on success, the headline `success` gives as an
/// info line and its exit code; on failure, the error's annotation and exit code.
pub fn conclude<T, E: StageFailure>(
    runner: &Runner,
    result: Result<T, E>,
    success: impl FnOnce(&T) -> (String, Exit),
) -> Exit {
    match result {
        Ok(done) => {
            let (headline, exit) = success(&done);
            let _ = runner.info(&headline);
            exit
        }
        Err(e) => {
            let _ = runner.annotate(&e.annotation());
            e.exit()
        }
    }
}

/// The commit being built: `GITHUB_SHA` in a workflow, else `git rev-parse HEAD` of the working
/// directory, else none. Recorded in model bundles and releases.
pub fn git_commit() -> Option<String> {
    std::env::var("GITHUB_SHA").ok().filter(|s| !s.is_empty()).or_else(|| {
        std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    })
}

/// A snapshot of the environment variables the runtime reads, so that tests can supply their own.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The current process environment (variables that are not valid UTF-8 are skipped).
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    /// An environment from explicit pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self {
            vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        }
    }

    /// A variable's value; an empty value counts as unset, as the runner sets empty inputs.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Whether this process runs as a GitHub Actions step (`GITHUB_ACTIONS=true`).
    pub fn in_actions(&self) -> bool {
        self.get("GITHUB_ACTIONS") == Some("true")
    }
}

type Sink = Mutex<Box<dyn Write + Send>>;

/// The binary's output channel: GitHub Actions formats inside a workflow, a human form outside.
///
/// All methods take `&self` and are safe to call from several threads.
pub struct Runner {
    in_actions: bool,
    output_file: Option<PathBuf>,
    summary_file: Option<PathBuf>,
    /// `$GITHUB_WORKSPACE`: annotation paths under it are made relative, as the runner needs them.
    workspace: Option<PathBuf>,
    stdout: Sink,
    stderr: Sink,
    /// Outputs set outside Actions, printed by [`Runner::finish`] in a human form.
    pending_outputs: Mutex<Vec<(String, String)>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("in_actions", &self.in_actions)
            .field("output_file", &self.output_file)
            .field("summary_file", &self.summary_file)
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// A runner for this process: reads `GITHUB_ACTIONS`, `GITHUB_OUTPUT` and `GITHUB_STEP_SUMMARY`,
    /// and writes to the real standard output and standard error.
    pub fn from_process() -> Self {
        Self::new(
            &Env::from_process(),
            Box::new(std::io::stdout()),
            Box::new(std::io::stderr()),
        )
    }

    /// A runner over an explicit environment and console streams (tests use in-memory buffers).
    pub fn new(env: &Env, stdout: Box<dyn Write + Send>, stderr: Box<dyn Write + Send>) -> Self {
        Self {
            in_actions: env.in_actions(),
            output_file: env.get("GITHUB_OUTPUT").map(PathBuf::from),
            summary_file: env.get("GITHUB_STEP_SUMMARY").map(PathBuf::from),
            workspace: env.get("GITHUB_WORKSPACE").map(PathBuf::from),
            stdout: Mutex::new(stdout),
            stderr: Mutex::new(stderr),
            pending_outputs: Mutex::new(Vec::new()),
        }
    }

    /// Whether the workflow-command formats are in use.
    pub fn in_actions(&self) -> bool {
        self.in_actions
    }

    fn write_to(sink: &Sink, text: &str) -> Result<(), ActionsError> {
        let mut w = sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        w.write_all(text.as_bytes())
            .and_then(|()| w.flush())
            .map_err(ActionsError::Console)
    }

    pub(crate) fn out(&self, text: &str) -> Result<(), ActionsError> {
        Self::write_to(&self.stdout, text)
    }

    pub(crate) fn err(&self, text: &str) -> Result<(), ActionsError> {
        Self::write_to(&self.stderr, text)
    }

    /// Sets a step output.
    ///
    /// In Actions it is appended to `$GITHUB_OUTPUT` as
    /// `name<<ghadelimiter_<random>` / value / delimiter, which is safe for any value, multi-line
    /// included. Outside Actions it is kept and printed by [`Runner::finish`].
    pub fn set_output(&self, name: &str, value: &str) -> Result<(), ActionsError> {
        if name.is_empty() || name.contains(['=', '<', '\n', '\r']) || name.trim() != name {
            return Err(ActionsError::InvalidOutputName(name.to_owned()));
        }
        match (&self.output_file, self.in_actions) {
            (Some(path), _) => {
                let delimiter = loop {
                    let d = random_delimiter()?;
                    if !value.contains(&d) {
                        break d;
                    }
                };
                append(path, &format_output(name, value, &delimiter))
            }
            (None, true) => {
                // A runner without GITHUB_OUTPUT is very old; the deprecated command is all there is.
                self.out(&format!(
                    "::set-output name={}::{}\n",
                    escape_property(name),
                    escape_data(value)
                ))
            }
            (None, false) => {
                self.pending_outputs
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((name.to_owned(), value.to_owned()));
                Ok(())
            }
        }
    }

    /// Appends Markdown to the step summary (`$GITHUB_STEP_SUMMARY`); outside Actions, and when no
    /// summary file is set, the Markdown is printed on standard output.
    pub fn append_summary(&self, markdown: &str) -> Result<(), ActionsError> {
        let mut text = markdown.to_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        match &self.summary_file {
            Some(path) => append(path, &text),
            None => self.out(&text),
        }
    }

    /// Emits an annotation: a workflow command in Actions, `level: file:line:col: message` on
    /// standard error outside.
    ///
    /// In Actions, a file path under `$GITHUB_WORKSPACE` is made relative to it, so that the
    /// annotation lands on the file in the repository and in pull-request diffs.
    pub fn annotate(&self, annotation: &Annotation) -> Result<(), ActionsError> {
        if self.in_actions {
            let mut a = annotation.clone();
            if let (Some(ws), Some(file)) = (&self.workspace, &annotation.file)
                && let Ok(rel) = Path::new(file).strip_prefix(ws)
            {
                a.file = Some(rel.to_string_lossy().into_owned());
            }
            self.out(&format!("{}\n", a.to_command()))
        } else {
            self.err(&format!("{}\n", annotation.to_human()))
        }
    }

    /// Asks the runner to mask a secret in all later log lines. Each line of a multi-line secret is
    /// masked on its own, as the runner matches masks line by line. Outside Actions this does nothing:
    /// a terminal has no masking, so binaries never print secrets in the first place.
    pub fn mask(&self, secret: &str) -> Result<(), ActionsError> {
        if !self.in_actions {
            return Ok(());
        }
        for line in secret.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
            self.out(&format!("::add-mask::{}\n", escape_data(line)))?;
        }
        Ok(())
    }

    /// Starts a collapsible log group; the group ends when the guard is dropped.
    pub fn group(&self, title: &str) -> Result<Group<'_>, ActionsError> {
        if self.in_actions {
            self.out(&format!("::group::{}\n", escape_data(title)))?;
        } else {
            self.err(&format!("== {title}\n"))?;
        }
        Ok(Group { runner: self })
    }

    /// A plain log line (standard error outside Actions, so that standard output stays parseable).
    pub fn info(&self, message: &str) -> Result<(), ActionsError> {
        if self.in_actions {
            self.out(&format!("{message}\n"))
        } else {
            self.err(&format!("{message}\n"))
        }
    }

    /// A debug line: `::debug::` in Actions (shown when step debugging is on); nothing outside.
    pub fn debug(&self, message: &str) -> Result<(), ActionsError> {
        if self.in_actions {
            self.out(&format!("::debug::{}\n", escape_data(message)))
        } else {
            Ok(())
        }
    }

    /// Ends the run: outside Actions, prints the outputs that were set as `name: value` lines.
    pub fn finish(&self) -> Result<(), ActionsError> {
        let pending = std::mem::take(
            &mut *self
                .pending_outputs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (name, value) in pending {
            self.out(&format!("{name}: {value}\n"))?;
        }
        Ok(())
    }
}

/// A log group, ended (`::endgroup::`) when dropped.
#[derive(Debug)]
pub struct Group<'a> {
    runner: &'a Runner,
}

impl Drop for Group<'_> {
    fn drop(&mut self) {
        if self.runner.in_actions {
            // Nothing useful can be done if the console is gone.
            let _ = self.runner.out("::endgroup::\n");
        }
    }
}

/// The exact text appended to `$GITHUB_OUTPUT` for one output.
pub fn format_output(name: &str, value: &str, delimiter: &str) -> String {
    format!("{name}<<{delimiter}\n{value}\n{delimiter}\n")
}

/// Reads `$GITHUB_OUTPUT` back as the runner does (`name=value` lines and `name<<DELIM` heredocs);
/// later values win. For tests and for steps that read another step's outputs.
///
/// ```
/// let text = cellops_actions::format_output("a", "x\ny", "EOF") + "b=2\n";
/// let out = cellops_actions::parse_outputs(&text);
/// assert_eq!((out["a"].as_str(), out["b"].as_str()), ("x\ny", "2"));
/// ```
pub fn parse_outputs(text: &str) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delim)) = line.split_once("<<") {
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delim).collect();
            out.insert(name.to_owned(), value.join("\n"));
        } else if let Some((name, value)) = line.split_once('=') {
            out.insert(name.to_owned(), value.to_owned());
        }
    }
    out
}

fn random_delimiter() -> Result<String, ActionsError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| ActionsError::Random(e.to_string()))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("ghadelimiter_{hex}"))
}

fn append(path: &Path, text: &str) -> Result<(), ActionsError> {
    let file_err = |source| ActionsError::File {
        path: path.to_owned(),
        source,
    };
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(file_err)?;
    f.write_all(text.as_bytes()).map_err(file_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A clonable in-memory console stream.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("buffer").clone()).expect("utf-8")
        }
    }

    fn runner(env: &[(&str, &str)]) -> (Runner, Buf, Buf) {
        let (o, e) = (Buf::default(), Buf::default());
        let r = Runner::new(
            &Env::from_pairs(env.iter().copied()),
            Box::new(o.clone()),
            Box::new(e.clone()),
        );
        (r, o, e)
    }

    /// Parses `$GITHUB_OUTPUT` the way the runner does (`name<<delim` heredocs and `name=value`).
    fn parse_output_file(text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut lines = text.split('\n');
        while let Some(line) = lines.next() {
            if line.is_empty() {
                continue;
            }
            if let Some((name, delim)) = line.split_once("<<") {
                let mut value = Vec::new();
                for l in lines.by_ref() {
                    if l == delim {
                        break;
                    }
                    value.push(l);
                }
                out.push((name.to_owned(), value.join("\n")));
            } else if let Some((n, v)) = line.split_once('=') {
                out.push((n.to_owned(), v.to_owned()));
            }
        }
        out
    }

    #[test]
    fn outputs_use_heredoc_with_random_delimiter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("out");
        let f = file.to_str().expect("utf-8");
        let (r, stdout, _) = runner(&[("GITHUB_ACTIONS", "true"), ("GITHUB_OUTPUT", f)]);
        r.set_output("manifest", "/tmp/x/manifest.json").expect("set");
        r.set_output("report", "line one\nline two\n\nghadelimiter_fake")
            .expect("set");
        r.finish().expect("finish");
        let text = std::fs::read_to_string(&file).expect("read");
        let first = text.lines().next().expect("line");
        let delim = first.strip_prefix("manifest<<").expect("heredoc form");
        assert!(delim.starts_with("ghadelimiter_") && delim.len() == "ghadelimiter_".len() + 32);
        assert_eq!(
            parse_output_file(&text),
            vec![
                ("manifest".into(), "/tmp/x/manifest.json".into()),
                ("report".into(), "line one\nline two\n\nghadelimiter_fake".into())
            ]
        );
        // Two outputs never share a delimiter.
        let delims: Vec<_> = text.lines().filter_map(|l| l.split_once("<<").map(|p| p.1)).collect();
        assert_ne!(delims[0], delims[1]);
        assert_eq!(stdout.text(), "", "nothing printed in Actions");
    }

    #[test]
    fn outputs_outside_actions_print_at_finish() {
        let (r, stdout, _) = runner(&[]);
        r.set_output("images", "12").expect("set");
        assert_eq!(stdout.text(), "");
        r.finish().expect("finish");
        assert_eq!(stdout.text(), "images: 12\n");
    }

    #[test]
    fn bad_output_names_are_refused() {
        let (r, _, _) = runner(&[]);
        for name in ["", "a=b", "a<<b", "a\nb", " a"] {
            assert!(
                matches!(r.set_output(name, "v"), Err(ActionsError::InvalidOutputName(_))),
                "{name:?}"
            );
        }
    }

    #[test]
    fn summary_appends_markdown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("summary.md");
        std::fs::write(&file, "# earlier step\n").expect("write");
        let f = file.to_str().expect("utf-8");
        let (r, stdout, _) = runner(&[("GITHUB_ACTIONS", "true"), ("GITHUB_STEP_SUMMARY", f)]);
        r.append_summary("## build\n| a | b |\n|---|---|").expect("append");
        assert_eq!(
            std::fs::read_to_string(&file).expect("read"),
            "# earlier step\n## build\n| a | b |\n|---|---|\n"
        );
        assert_eq!(stdout.text(), "");
    }

    #[test]
    fn annotations_masks_and_groups_in_actions() {
        let (r, stdout, stderr) = runner(&[("GITHUB_ACTIONS", "true")]);
        {
            let _g = r.group("validate: 3 images").expect("group");
            r.annotate(
                &Annotation::new(Level::Error, "size 10x12 differs from\nmask 10x11")
                    .file("data/a,b:c.png")
                    .line(3)
                    .col(7)
                    .title("size mismatch"),
            )
            .expect("annotate");
        }
        r.mask("s3cret\nsecond-line\n").expect("mask");
        assert_eq!(
            stdout.text(),
            "::group::validate: 3 images\n\
             ::error file=data/a%2Cb%3Ac.png,line=3,col=7,title=size mismatch::size 10x12 differs from%0Amask 10x11\n\
             ::endgroup::\n\
             ::add-mask::s3cret\n\
             ::add-mask::second-line\n"
        );
        assert_eq!(stderr.text(), "");
    }

    #[test]
    fn annotation_paths_are_relative_to_the_workspace() {
        let (r, stdout, _) = runner(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_WORKSPACE", "/home/runner/work/lab/lab"),
        ]);
        r.annotate(&Annotation::new(Level::Error, "bad").file("/home/runner/work/lab/lab/data/masks/a_mask.png"))
            .expect("annotate");
        r.annotate(&Annotation::new(Level::Error, "bad").file("/elsewhere/x.png"))
            .expect("annotate");
        assert_eq!(
            stdout.text(),
            "::error file=data/masks/a_mask.png::bad\n::error file=/elsewhere/x.png::bad\n"
        );
    }

    #[test]
    fn human_form_outside_actions() {
        let (r, stdout, stderr) = runner(&[("GITHUB_ACTIONS", "false")]);
        r.annotate(&Annotation::new(Level::Warning, "orphan mask").file("masks/x_mask.png"))
            .expect("annotate");
        r.annotate(&Annotation::new(Level::Error, "bad value").file("c.yaml").line(4).col(2))
            .expect("annotate");
        r.mask("s3cret").expect("mask");
        assert_eq!(stdout.text(), "");
        assert_eq!(
            stderr.text(),
            "warning: masks/x_mask.png: orphan mask\nerror: c.yaml:4:2: bad value\n"
        );
    }

    #[test]
    fn empty_env_values_count_as_unset() {
        let env = Env::from_pairs([("INPUT_CONFIG", ""), ("GITHUB_ACTIONS", "true")]);
        assert_eq!(env.get("INPUT_CONFIG"), None);
        assert!(env.in_actions());
    }
}
