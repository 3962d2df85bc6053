//! The `pr-report` stage: the pull-request side of changing cell parameters.
//!
//! - `changed`: which files under `cell-params/` (or the `paths` globs) the pull request changes,
//!   renames included, and so which image types need evaluating. Outputs: `files` (one path a
//!   line), `count`, `any` (`true`/`false`), `image-types` (stems of changed `cell-params/*.yaml`,
//!   one a line) and `image-types-json` (the same as a JSON array, for a matrix).
//! - `comment`: the evaluation's Markdown report (`report.md`) as one sticky comment on the pull
//!   request, updated in place on every push. Outputs: `comment-url`, `comment-id`, `action`
//!   (`created`, `updated`, or `skipped` when the token is read-only). With a fork's read-only
//!   token the stage does not fail: the report goes to the step summary, with a notice.
//!
//! Inputs (flags, or `INPUT_*` in a workflow): `command`, `token` (masked), `repository` (default
//! `$GITHUB_REPOSITORY`), `pr` (default: the event's pull-request number from
//! `$GITHUB_EVENT_PATH`), `api-url` (default `$GITHUB_API_URL`, else `https://api.github.com`),
//! `paths`, `report`, `marker`.

use std::fmt::Write as _;
use std::path::PathBuf;

use cellops_actions::{ActionsError, Annotation, Env, Exit, Level, Runner, StageFailure, conclude};
use cellops_github::{ChangedFile, Client, CommentOutcome, GithubError, RetryPolicy, is_read_only};

/// GitHub's limit on a comment body, in characters.
pub const COMMENT_LIMIT: usize = 65_536;

/// The most files GitHub lists for one pull request.
pub const GITHUB_FILES_CAP: usize = 3000;

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Command {
    /// List the changed files that match `paths`.
    Changed,
    /// Post or update the sticky comment with the report.
    Comment,
}

/// Command-line flags (and action inputs) of `pr-report`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Pull-request report")]
pub struct Args {
    /// What to do (also --command).
    #[arg(value_enum, value_name = "COMMAND")]
    pub action: Option<Command>,
    /// What to do: `changed` or `comment`.
    #[arg(long, value_enum)]
    pub command: Option<Command>,
    /// GitHub token (secrets.GITHUB_TOKEN); masked in logs [default: $GITHUB_TOKEN].
    #[arg(long, hide_env_values = true)]
    pub token: Option<String>,
    /// The repository as owner/name [default: $GITHUB_REPOSITORY].
    #[arg(long, value_name = "OWNER/NAME")]
    pub repository: Option<String>,
    /// The pull-request number [default: the event's, from $GITHUB_EVENT_PATH].
    #[arg(long, value_name = "NUMBER")]
    pub pr: Option<u64>,
    /// The REST API's base URL [default: $GITHUB_API_URL, else https://api.github.com].
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    /// `changed`: glob patterns of the files to report, separated by newlines or commas.
    #[arg(long, value_name = "GLOBS", default_value = "cell-params/**")]
    pub paths: String,
    /// `comment`: the Markdown file to post (the evaluation's report.md).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// `comment`: the sticky comment's name, kept in a hidden `<!-- cellops:NAME -->` line.
    #[arg(long, value_name = "NAME", default_value = "cell-params-report")]
    pub marker: String,
}

/// Errors of the stage.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// Inputs are missing or contradict each other.
    #[error("{0}")]
    Usage(String),
    /// The report or the event file could not be read.
    #[error("{path}: {message}")]
    Local {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The GitHub API failed.
    #[error(transparent)]
    Github(#[from] GithubError),
    /// The Actions runtime failed.
    #[error(transparent)]
    Actions(#[from] ActionsError),
}

impl StageFailure for StageError {
    fn exit(&self) -> Exit {
        match self {
            StageError::Usage(_) => Exit::Usage,
            _ => Exit::Error,
        }
    }

    fn annotation(&self) -> Annotation {
        let title = match self {
            StageError::Usage(_) => "pr-report: invalid inputs",
            StageError::Github(GithubError::Unauthorized { .. }) => "GitHub token rejected",
            StageError::Github(GithubError::NotFound { .. }) => "GitHub: not found",
            StageError::Github(GithubError::ReadOnly { .. } | GithubError::Forbidden { .. }) => {
                "GitHub: permission denied"
            }
            StageError::Github(GithubError::RateLimited { .. }) => "GitHub: rate limited",
            StageError::Github(GithubError::Validation { .. }) => "GitHub refused the request",
            StageError::Github(_) => "GitHub API error",
            _ => "pr-report",
        };
        let mut a = Annotation::new(Level::Error, self.to_string()).title(title);
        if let StageError::Local { path, .. } = self {
            a = a.file(path.display().to_string());
        }
        a
    }
}

/// What a run did.
#[derive(Debug)]
pub enum Done {
    /// `changed`: the matching files and the image types.
    Changed {
        /// Matching paths.
        files: Vec<String>,
        /// Stems of changed `cell-params/*.yaml`.
        image_types: Vec<String>,
    },
    /// `comment`: the comment.
    Commented(CommentOutcome),
    /// `comment` with a read-only token: the report went to the step summary.
    Skipped,
}

fn split_list(s: &str) -> Vec<String> {
    s.split([',', '\n'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The pull-request number of the event in `$GITHUB_EVENT_PATH`: `pull_request.number`, an
/// issue comment's `issue.number` when the issue is a pull request, or a top-level `number`.
pub fn event_pr_number(event: &serde_json::Value) -> Option<u64> {
    let n = |v: &serde_json::Value| v.get("number").and_then(serde_json::Value::as_u64);
    event
        .get("pull_request")
        .and_then(n)
        .or_else(|| {
            event
                .get("issue")
                .filter(|i| i.get("pull_request").is_some())
                .and_then(n)
        })
        .or_else(|| n(event))
}

/// The settings a run resolved from its inputs and the environment.
#[derive(Debug)]
struct Resolved {
    command: Command,
    token: String,
    owner: String,
    repo: String,
    pr: u64,
    api_url: String,
}

fn resolve(args: &Args, env: &Env) -> Result<Resolved, StageError> {
    let command = match (args.action, args.command) {
        (Some(a), Some(b)) if a != b => {
            return Err(StageError::Usage(format!(
                "command given twice: `{a:?}` and --command `{b:?}`"
            )));
        }
        (a, b) => a
            .or(b)
            .ok_or_else(|| StageError::Usage("no command: set the command input to `changed` or `comment`".into()))?,
    };
    let token = args
        .token
        .clone()
        .filter(|t| !t.trim().is_empty())
        .or_else(|| env.get("GITHUB_TOKEN").map(str::to_owned))
        .ok_or_else(|| {
            StageError::Usage("no token: set the token input (e.g. `token: ${{ secrets.GITHUB_TOKEN }}`)".into())
        })?;
    let repository = args
        .repository
        .clone()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| env.get("GITHUB_REPOSITORY").map(str::to_owned))
        .ok_or_else(|| StageError::Usage("no repository: set the repository input (owner/name)".into()))?;
    let (owner, repo) = repository
        .trim()
        .split_once('/')
        .filter(|(o, r)| {
            let name = |n: &str| {
                !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            };
            name(o) && name(r)
        })
        .ok_or_else(|| StageError::Usage(format!("repository `{repository}` is not owner/name")))?;
    let pr = match args.pr {
        Some(n) => n,
        None => {
            let path = env.get("GITHUB_EVENT_PATH").map(PathBuf::from).ok_or_else(|| {
                StageError::Usage("no pull request: set the pr input (outside a pull_request event)".into())
            })?;
            let text = std::fs::read_to_string(&path).map_err(|e| StageError::Local {
                path: path.clone(),
                message: format!("cannot read the event: {e}"),
            })?;
            let event: serde_json::Value = serde_json::from_str(&text).map_err(|e| StageError::Local {
                path: path.clone(),
                message: format!("the event is not JSON: {e}"),
            })?;
            event_pr_number(&event).ok_or_else(|| {
                StageError::Usage(format!(
                    "the {} event is not about a pull request: set the pr input",
                    env.get("GITHUB_EVENT_NAME").unwrap_or("workflow's")
                ))
            })?
        }
    };
    let api_url = args
        .api_url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .or_else(|| env.get("GITHUB_API_URL").map(str::to_owned))
        .unwrap_or_else(|| "https://api.github.com".to_owned());
    Ok(Resolved {
        command,
        token,
        owner: owner.to_owned(),
        repo: repo.to_owned(),
        pr,
        api_url,
    })
}

/// The changed paths that match `globs` (either name of a rename), each once, in GitHub's order.
pub fn matching_files(files: &[ChangedFile], globs: &str) -> Result<Vec<(String, String)>, StageError> {
    let mut builder = globset::GlobSetBuilder::new();
    let patterns = split_list(globs);
    if patterns.is_empty() {
        return Err(StageError::Usage("paths is empty: give at least one glob".into()));
    }
    for g in &patterns {
        builder.add(
            globset::GlobBuilder::new(g)
                .literal_separator(true)
                .build()
                .map_err(|e| StageError::Usage(format!("paths pattern `{g}`: {e}")))?,
        );
    }
    let set = builder
        .build()
        .map_err(|e| StageError::Usage(format!("paths patterns: {e}")))?;
    let mut out: Vec<(String, String)> = Vec::new();
    for f in files {
        let mut push = |path: &str, status: String| {
            if set.is_match(path) && !out.iter().any(|(p, _)| p == path) {
                out.push((path.to_owned(), status));
            }
        };
        push(&f.filename, f.status.clone());
        if let Some(prev) = &f.previous_filename {
            push(prev, format!("{} to {}", f.status, f.filename));
        }
    }
    Ok(out)
}

/// The image types of changed parameter files: stems of `cell-params/<type>.yaml` (or `.yml`).
pub fn image_types(paths: &[String]) -> Vec<String> {
    let mut types: Vec<String> = paths
        .iter()
        .filter_map(|p| p.strip_prefix("cell-params/"))
        .filter(|rest| !rest.contains('/'))
        .filter_map(|name| name.strip_suffix(".yaml").or_else(|| name.strip_suffix(".yml")))
        .filter(|stem| !stem.is_empty())
        .map(str::to_owned)
        .collect();
    types.sort();
    types.dedup();
    types
}

/// `text` cut to at most `limit` characters at a line boundary (never inside a table row), with
/// an open code fence closed and a note saying how much was left out. Text within the limit is
/// returned as it is.
pub fn truncate_markdown(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let total_lines = text.lines().count();
    let note = |kept: usize| {
        format!(
            "\n\n> [!NOTE]\n> The report was truncated to fit GitHub's {COMMENT_LIMIT}-character limit: \
             {kept} of {total_lines} lines are shown. The full report is in the workflow run's step \
             summary and artifacts.\n"
        )
    };
    // Room for the note (with the largest line counts) and a closing fence.
    let reserve = note(total_lines).chars().count() + 8;
    let budget = limit.saturating_sub(reserve);
    let mut kept = String::new();
    let mut used = 0;
    let mut lines = 0;
    let mut in_fence = false;
    for line in text.split_inclusive('\n') {
        let n = line.chars().count();
        if used + n > budget {
            break;
        }
        kept.push_str(line);
        used += n;
        lines += 1;
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
    }
    if !kept.ends_with('\n') && !kept.is_empty() {
        kept.push('\n');
    }
    if in_fence {
        kept.push_str("```\n");
    }
    kept.push_str(&note(lines));
    kept
}

/// Runs the stage with this process's environment and reports through `runner`.
pub fn run(args: &Args, runner: &Runner) -> Result<Done, StageError> {
    run_with(args, runner, &Env::from_process(), RetryPolicy::default())
}

/// Runs the stage with an explicit environment (`GITHUB_*` defaults) and retry policy.
pub fn run_with(args: &Args, runner: &Runner, env: &Env, retry: RetryPolicy) -> Result<Done, StageError> {
    for secret in [&args.token, &env.get("GITHUB_TOKEN").map(str::to_owned)]
        .into_iter()
        .flatten()
    {
        let secret = secret.trim();
        if !secret.is_empty() {
            runner.mask(secret)?;
        }
    }
    let r = resolve(args, env)?;
    let client = Client::new(&r.token, Some(&r.api_url))?.with_retry_policy(retry);
    match r.command {
        Command::Changed => changed(args, runner, &client, &r),
        Command::Comment => comment(args, runner, &client, &r),
    }
}

fn changed(args: &Args, runner: &Runner, client: &Client, r: &Resolved) -> Result<Done, StageError> {
    let all = client.changed_files(&r.owner, &r.repo, r.pr)?;
    if all.len() >= GITHUB_FILES_CAP {
        runner.annotate(&Annotation::new(
            Level::Warning,
            format!(
                "#{} changes {} or more files: GitHub lists only the first {GITHUB_FILES_CAP}, so changed \
                 parameter files may be missing from this list",
                r.pr,
                all.len()
            ),
        ))?;
    }
    let matched = matching_files(&all, &args.paths)?;
    let files: Vec<String> = matched.iter().map(|(p, _)| p.clone()).collect();
    let types = image_types(&files);
    runner.set_output("files", &files.join("\n"))?;
    runner.set_output("count", &files.len().to_string())?;
    runner.set_output("any", if files.is_empty() { "false" } else { "true" })?;
    runner.set_output("image-types", &types.join("\n"))?;
    runner.set_output("image-types-json", &serde_json::Value::from(types.clone()).to_string())?;
    let mut md = format!(
        "## Changed files matching `{}` in #{}\n\n",
        split_list(&args.paths).join("`, `"),
        r.pr
    );
    if matched.is_empty() {
        let _ = writeln!(
            md,
            "None of the {} changed files match: nothing to evaluate.",
            all.len()
        );
    } else {
        let _ = writeln!(md, "| file | status |\n|---|---|");
        for (p, status) in &matched {
            let _ = writeln!(md, "| `{p}` | {status} |");
        }
        if !types.is_empty() {
            let _ = writeln!(
                md,
                "\nImage types to evaluate: {}",
                types.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
            );
        }
    }
    runner.append_summary(&md)?;
    Ok(Done::Changed {
        files,
        image_types: types,
    })
}

fn comment(args: &Args, runner: &Runner, client: &Client, r: &Resolved) -> Result<Done, StageError> {
    let path = args
        .report
        .clone()
        .ok_or_else(|| StageError::Usage("comment needs the report input (a Markdown file)".into()))?;
    let report = std::fs::read_to_string(&path).map_err(|e| StageError::Local {
        path: path.clone(),
        message: format!("cannot read the report: {e}"),
    })?;
    // The marker line is prepended by the client; keep well clear of the limit.
    let body = truncate_markdown(&report, COMMENT_LIMIT - 256);
    match client.upsert_sticky_comment(&r.owner, &r.repo, r.pr, &args.marker, &body) {
        Ok(outcome) => {
            runner.set_output("comment-url", &outcome.html_url)?;
            runner.set_output("comment-id", &outcome.id.to_string())?;
            runner.set_output("action", outcome.action.as_str())?;
            runner.append_summary(&format!(
                "Report {} as [a comment on #{}]({}).\n",
                outcome.action.as_str(),
                r.pr,
                outcome.html_url
            ))?;
            Ok(Done::Commented(outcome))
        }
        Err(e) if is_read_only(&e) => {
            runner.annotate(
                &Annotation::new(
                    Level::Notice,
                    format!(
                        "The report could not be posted on #{}: the token is read-only (pull requests from forks \
                         get a read-only GITHUB_TOKEN; otherwise grant `permissions: pull-requests: write`). \
                         The report is in this step's summary.",
                        r.pr
                    ),
                )
                .title("PR comment not posted"),
            )?;
            runner.set_output("comment-url", "")?;
            runner.set_output("comment-id", "")?;
            runner.set_output("action", "skipped")?;
            // The step summary takes up to 1 MiB.
            runner.append_summary(&truncate_markdown(&report, 900_000 / 4))?;
            Ok(Done::Skipped)
        }
        Err(e) => Err(e.into()),
    }
}

/// The line that ends a successful run.
pub fn headline(d: &Done) -> String {
    match d {
        Done::Changed { files, image_types } => format!(
            "{} matching changed file(s); image types: {}",
            files.len(),
            if image_types.is_empty() {
                "none".to_owned()
            } else {
                image_types.join(", ")
            }
        ),
        Done::Commented(o) => format!("comment {}: {}", o.action.as_str(), o.html_url),
        Done::Skipped => "comment not posted (read-only token); the report is in the step summary".to_owned(),
    }
}

/// Runs the stage and ends it the way every stage ends.
pub fn execute(args: &Args, runner: &Runner) -> Exit {
    conclude(runner, run(args, runner), |d| (headline(d), Exit::Success))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pr_number_from_events() {
        let pr = serde_json::json!({"number": 7, "pull_request": {"number": 7}});
        assert_eq!(event_pr_number(&pr), Some(7));
        let comment = serde_json::json!({"issue": {"number": 9, "pull_request": {"url": "u"}}});
        assert_eq!(event_pr_number(&comment), Some(9));
        let issue = serde_json::json!({"issue": {"number": 9}});
        assert_eq!(event_pr_number(&issue), None);
        assert_eq!(event_pr_number(&serde_json::json!({"ref": "refs/heads/main"})), None);
    }

    #[test]
    fn image_types_are_stems_of_top_level_yaml() {
        let paths = [
            "cell-params/he.yaml",
            "cell-params/x/y.yaml",
            "cell-params/a.yml",
            "cell-params/readme.md",
            "b.yaml",
        ]
        .map(str::to_owned);
        assert_eq!(image_types(&paths), ["a", "he"]);
    }

    #[test]
    fn short_reports_are_untouched() {
        assert_eq!(truncate_markdown("| a |\n|---|\n", 100), "| a |\n|---|\n");
    }

    #[test]
    fn long_reports_are_cut_between_table_rows() {
        let mut report = String::from("## Evaluation\n\n| image | F1 | note |\n|---|---|---|\n");
        for i in 0..5000 {
            report.push_str(&format!("| image-{i:05} | 0.{i:04} | ünïcödé ✓ |\n"));
        }
        assert!(report.chars().count() > COMMENT_LIMIT);
        let cut = truncate_markdown(&report, COMMENT_LIMIT - 256);
        assert!(cut.chars().count() <= COMMENT_LIMIT - 256);
        let (table, note) = cut.split_once("\n\n> [!NOTE]").expect("note");
        let original: std::collections::HashSet<&str> = report.lines().collect();
        for line in table.lines() {
            assert!(original.contains(line), "a cut line: {line:?}");
        }
        assert!(
            table
                .lines()
                .last()
                .is_some_and(|l| l.starts_with("| image-") && l.ends_with('|'))
        );
        assert!(note.contains("lines are shown"), "{note}");
    }

    #[test]
    fn an_open_code_fence_is_closed() {
        let report = format!("intro\n```\n{}", "log line\n".repeat(1000));
        let cut = truncate_markdown(&report, 2000);
        assert!(cut.chars().count() <= 2000);
        assert_eq!(cut.matches("```").count(), 2, "{cut}");
    }
}
