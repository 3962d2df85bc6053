//! Runs an action's binary the way a workflow runner does, for integration tests: a clean
//! environment with `GITHUB_ACTIONS=true`, inputs as `INPUT_<NAME>`, `$GITHUB_OUTPUT` and
//! `$GITHUB_STEP_SUMMARY` files in a folder, which are read back after the run.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

use cellops_actions::parse_outputs;

/// What one run left behind.
#[derive(Debug)]
pub struct ActionRun {
    /// The process's exit status and captured standard output and error.
    pub output: Output,
    /// `$GITHUB_OUTPUT`, parsed.
    pub outputs: HashMap<String, String>,
    /// `$GITHUB_STEP_SUMMARY`.
    pub summary: String,
}

impl ActionRun {
    /// Standard output (where workflow commands such as annotations go).
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// The exit code (-1 when the process was killed by a signal).
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
}

/// Owned inputs (values built at run time) as the runners here take them.
pub fn as_inputs<'a>(owned: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    owned.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Runs `binary` in `dir` with `inputs` (names as in `with:`, e.g. `split-file`) and the extra
/// environment `env`; only `PATH` is kept from this process's environment.
pub fn run_action(
    binary: &Path,
    dir: &Path,
    inputs: &[(&str, &str)],
    env: &[(&str, &str)],
) -> std::io::Result<ActionRun> {
    run_action_with_args(binary, &[], dir, inputs, env)
}

/// [`run_action`] with command-line arguments before the inputs (a subcommand and its
/// positional arguments, as an action's script passes them).
pub fn run_action_with_args(
    binary: &Path,
    args: &[&std::ffi::OsStr],
    dir: &Path,
    inputs: &[(&str, &str)],
    env: &[(&str, &str)],
) -> std::io::Result<ActionRun> {
    run(binary, args, dir, inputs, env, None)
}

/// [`run_action_with_args`] as a user whom file permissions bind ([`crate::unprivileged`]): as
/// root, as `nobody`; as anyone else, as themselves. `dir` must be writable by that user
/// ([`crate::unprivileged::open_up`]).
pub fn run_action_unprivileged(
    binary: &Path,
    args: &[&std::ffi::OsStr],
    dir: &Path,
    inputs: &[(&str, &str)],
    env: &[(&str, &str)],
) -> std::io::Result<ActionRun> {
    let binary = crate::unprivileged::runnable(binary, dir)?;
    run(&binary, args, dir, inputs, env, crate::unprivileged::user())
}

/// Starts `binary` as [`run_action_with_args`] would and returns at once, its output discarded:
/// for tests that kill it part-way.
pub fn spawn_action(
    binary: &Path,
    args: &[&std::ffi::OsStr],
    dir: &Path,
    inputs: &[(&str, &str)],
    env: &[(&str, &str)],
) -> std::io::Result<std::process::Child> {
    let (mut cmd, _) = command(binary, args, dir, inputs, env, None)?;
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
}

fn run(
    binary: &Path,
    args: &[&std::ffi::OsStr],
    dir: &Path,
    inputs: &[(&str, &str)],
    env: &[(&str, &str)],
    user: Option<(u32, u32)>,
) -> std::io::Result<ActionRun> {
    let (mut cmd, (gh_out, gh_sum)) = command(binary, args, dir, inputs, env, user)?;
    let output = cmd.output()?;
    Ok(ActionRun {
        output,
        outputs: parse_outputs(&std::fs::read_to_string(&gh_out).unwrap_or_default()),
        summary: std::fs::read_to_string(&gh_sum).unwrap_or_default(),
    })
}

/// The command a workflow runner would start, and its output and summary files (removed first).
fn command(
    binary: &Path,
    args: &[&std::ffi::OsStr],
    dir: &Path,
    inputs: &[(&str, &str)],
    env: &[(&str, &str)],
    user: Option<(u32, u32)>,
) -> std::io::Result<(Command, (std::path::PathBuf, std::path::PathBuf))> {
    let (gh_out, gh_sum) = (dir.join("github_output"), dir.join("step_summary.md"));
    for f in [&gh_out, &gh_sum] {
        match std::fs::remove_file(f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &gh_out)
        .env("GITHUB_STEP_SUMMARY", &gh_sum);
    for (k, v) in env {
        cmd.env(k, v);
    }
    for (k, v) in inputs {
        cmd.env(format!("INPUT_{}", k.to_uppercase()), v);
    }
    if let Some((uid, gid)) = user {
        use std::os::unix::process::CommandExt as _;
        // As root, std drops the supplementary groups with the switch.
        cmd.uid(uid).gid(gid);
    }
    Ok((cmd, (gh_out, gh_sum)))
}
