//! Action inputs: every long flag `--name` of a clap command can also be given as the environment
//! variable `INPUT_<NAME>`, the way the runner passes a step's `with:` values.
//!
//! The runner's mangling: the input name upper-cased, spaces replaced by `_`; hyphens are kept
//! (`keep-releases` → `INPUT_KEEP-RELEASES`). Because composite actions and shells cannot always
//! export names with hyphens, `INPUT_KEEP_RELEASES` is accepted too. An empty value counts as unset,
//! as the runner passes inputs that were not given as empty strings. A flag on the command line wins
//! over the environment.

use std::ffi::OsString;

use clap::{ArgMatches, Command, FromArgMatches, error::ErrorKind};

use crate::{Annotation, Env, Level, Runner};

/// The environment variable the runner sets for an input (`keep-releases` → `INPUT_KEEP-RELEASES`).
///
/// ```
/// assert_eq!(cellops_actions::inputs::env_name("keep-releases"), "INPUT_KEEP-RELEASES");
/// assert_eq!(cellops_actions::inputs::env_name("my input"), "INPUT_MY_INPUT");
/// ```
pub fn env_name(input: &str) -> String {
    format!("INPUT_{}", input.replace(' ', "_").to_uppercase())
}

/// The variable that carries an input in `env`, if it is set and non-empty: the runner's name
/// first, then the same name with `-` written as `_`.
pub fn find_env<'e>(env: &'e Env, input: &str) -> Option<(String, &'e str)> {
    let exact = env_name(input);
    let underscored = exact.replace('-', "_");
    [exact, underscored]
        .into_iter()
        .find_map(|name| env.get(&name).map(|v| (name, v)))
}

/// Adds a help paragraph naming the `INPUT_*` variable of every long flag, to `cmd` and its
/// subcommands.
pub fn document_inputs(cmd: Command) -> Command {
    let names: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_owned()).collect();
    let mut cmd = cmd;
    for name in names {
        cmd = cmd.mut_subcommand(name, document_inputs);
    }
    let flags: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !matches!(*l, "help" | "version"))
        .map(|l| format!("--{l} = {}", env_name(l)))
        .collect();
    if flags.is_empty() {
        return cmd;
    }
    cmd.after_long_help(format!(
        "In a GitHub Actions step every flag is also an input, read from its INPUT_* variable \
         (a flag on the command line wins; an empty value is unset):\n  {}",
        flags.join("\n  ")
    ))
}

/// The command line with `INPUT_*` values appended for the long flags of the invoked command (or
/// subcommand) that the command line does not give. Appending them as flags (rather than as
/// defaults) keeps clap's checks (required, conflicts, requirements) working for inputs.
pub fn with_env_inputs(cmd: &Command, args: Vec<OsString>, env: &Env) -> Result<Vec<OsString>, clap::Error> {
    // The subcommand invoked, however deep (`cellops evaluate merge`).
    let mut target = cmd;
    for a in args.iter().skip(1) {
        let a = a.to_string_lossy();
        if a.starts_with('-') {
            continue;
        }
        match target.find_subcommand(a.as_ref()) {
            Some(sub) => target = sub,
            None => break,
        }
    }
    let given = |long: &str| {
        args.iter().any(|a| {
            let a = a.to_string_lossy();
            a.strip_prefix("--")
                .is_some_and(|rest| rest == long || rest.strip_prefix(long).is_some_and(|r| r.starts_with('=')))
        })
    };
    let mut out = args.clone();
    for arg in target.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") || given(long) {
            continue;
        }
        let Some((name, value)) = find_env(env, long) else {
            continue;
        };
        if arg.get_action().takes_values() {
            out.push(format!("--{long}={value}").into());
        } else {
            match value.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => out.push(format!("--{long}").into()),
                "false" | "no" | "off" | "0" => {}
                other => {
                    return Err(cmd.clone().error(
                        ErrorKind::InvalidValue,
                        format!("invalid value '{other}' for '--{long}' (from {name}): use true or false"),
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// Parses `A` from the command line, with `INPUT_*` variables filling in flags that are not given.
///
/// A usage error names the input both ways (`--dataset` / `INPUT_DATASET`), is an `::error::`
/// annotation in Actions (else a message on the runner's standard error), and comes back as
/// [`Exit::Usage`](crate::Exit::Usage) for the binary to end with; `--help` and `--version` are
/// written to the runner's standard output and come back as [`Exit::Success`](crate::Exit::Success).
///
/// # Errors
///
/// The exit code the binary ends with when it should not run.
pub fn parse<A: clap::CommandFactory + FromArgMatches>(runner: &Runner) -> Result<A, crate::Exit> {
    let env = Env::from_process();
    try_parse_from::<A, _, _>(std::env::args_os(), &env).map_err(|e| report(runner, &e))
}

/// Parses `A` from explicit arguments and environment; see [`parse`].
pub fn try_parse_from<A, I, T>(args: I, env: &Env) -> Result<A, clap::Error>
where
    A: clap::CommandFactory + FromArgMatches,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cmd = document_inputs(A::command());
    let args = with_env_inputs(&cmd, args.into_iter().map(Into::into).collect(), env)?;
    let mut matches: ArgMatches = cmd.clone().try_get_matches_from(args)?;
    A::from_arg_matches_mut(&mut matches).map_err(|e| e.with_cmd(&cmd))
}

/// A stage's flags at their declared defaults, with the required ones given by name: for callers
/// (the `cellops pipeline`) that build a stage's `Args` and then set its fields by type. The
/// defaults stay in one place, on the flags.
pub fn defaults<A: clap::Args>(required: &[(&str, &std::ffi::OsStr)]) -> Result<A, clap::Error> {
    let cmd = A::augment_args(Command::new("defaults").no_binary_name(true));
    let argv = required
        .iter()
        .flat_map(|(name, value)| [OsString::from(format!("--{name}")), value.to_os_string()]);
    A::from_arg_matches(&cmd.try_get_matches_from(argv)?)
}

/// Reports a clap error the way [`parse`] does and gives the exit code the binary ends with.
pub fn report(runner: &Runner, e: &clap::Error) -> crate::Exit {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = runner.out(&e.render().to_string());
        return crate::Exit::Success;
    }
    let rendered = e.render().to_string();
    let mut message = rendered.trim_end().to_owned();
    let flags: Vec<String> = rendered
        .split(|c: char| c.is_whitespace() || c == '\'' || c == '`')
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| w.split(['=', ' ', '<']).next().unwrap_or(w).to_owned())
        .filter(|w| !w.is_empty() && w != "help")
        .collect();
    let hint = match e.kind() {
        ErrorKind::MissingRequiredArgument => Some("set it with"),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => Some("it comes from"),
        _ => None,
    };
    if let (Some(flag), Some(hint)) = (flags.first(), hint) {
        message.push_str(&format!(
            "\n\n{hint} --{flag} or, in a workflow, the action input `{flag}` ({})",
            env_name(flag)
        ));
    }
    if runner.in_actions() {
        let title = flags
            .first()
            .map_or("invalid inputs".to_owned(), |f| format!("input `{f}`"));
        let _ = runner.annotate(&Annotation::new(Level::Error, message.clone()).title(title));
    } else {
        let _ = runner.err(&format!("{message}\n"));
    }
    crate::Exit::Usage
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Args {
        #[arg(long)]
        dataset: std::path::PathBuf,
        #[arg(long, default_value_t = 3)]
        keep_releases: u32,
        #[arg(long)]
        verbose: bool,
    }

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn env_fills_missing_flags() {
        let a: Args = try_parse_from(
            ["x"],
            &env(&[
                ("INPUT_DATASET", "data"),
                ("INPUT_KEEP-RELEASES", "5"),
                ("INPUT_VERBOSE", "true"),
            ]),
        )
        .expect("parse");
        assert_eq!(a.dataset, std::path::Path::new("data"));
        assert_eq!(a.keep_releases, 5);
        assert!(a.verbose);
    }

    #[test]
    fn underscore_spelling_and_false_booleans() {
        let a: Args = try_parse_from(
            ["x", "--dataset", "d"],
            &env(&[("INPUT_KEEP_RELEASES", "7"), ("INPUT_VERBOSE", "false")]),
        )
        .expect("parse");
        assert_eq!(a.keep_releases, 7);
        assert!(!a.verbose);
    }

    #[test]
    fn flags_win_and_empty_values_are_unset() {
        let a: Args = try_parse_from(
            ["x", "--dataset", "flag"],
            &env(&[("INPUT_DATASET", "env"), ("INPUT_KEEP-RELEASES", "")]),
        )
        .expect("parse");
        assert_eq!(a.dataset, std::path::Path::new("flag"));
        assert_eq!(a.keep_releases, 3);
    }

    #[derive(Parser, Debug)]
    enum Umbrella {
        Build(BuildArgs),
        #[command(subcommand)]
        Evaluate(Nested),
    }
    #[derive(clap::Subcommand, Debug)]
    enum Nested {
        Merge(BuildArgs),
    }
    #[derive(clap::Args, Debug)]
    struct BuildArgs {
        #[arg(long)]
        output: String,
    }

    #[test]
    fn subcommands_read_inputs_too() {
        let parsed = try_parse_from(["x", "build"], &env(&[("INPUT_OUTPUT", "out")])).expect("parse");
        let Umbrella::Build(b) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(b.output, "out");
        let parsed = try_parse_from(["x", "evaluate", "merge"], &env(&[("INPUT_OUTPUT", "deep")])).expect("parse");
        let Umbrella::Evaluate(Nested::Merge(m)) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(m.output, "deep");
    }

    #[derive(Parser, Debug)]
    struct Either {
        #[arg(long, required_unless_present = "synthetic")]
        dataset: Option<String>,
        #[arg(long)]
        synthetic: Option<u32>,
        #[arg(long, conflicts_with = "synthetic")]
        scale: Option<f64>,
    }

    #[test]
    fn inputs_satisfy_and_trip_clap_rules() {
        let a: Either = try_parse_from(["x"], &env(&[("INPUT_SYNTHETIC", "4")])).expect("required_unless is met");
        assert_eq!(a.synthetic, Some(4));
        let e = try_parse_from::<Either, _, _>(["x"], &env(&[("INPUT_SYNTHETIC", "4"), ("INPUT_SCALE", "2")]))
            .expect_err("conflict");
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        let e =
            try_parse_from::<Args, _, _>(["x", "--dataset=d"], &env(&[("INPUT_VERBOSE", "maybe")])).expect_err("bool");
        assert!(e.to_string().contains("INPUT_VERBOSE"), "{e}");
    }

    #[test]
    fn errors_name_the_input() {
        let e = try_parse_from::<Args, _, _>(["x"], &env(&[("INPUT_DATASET", "")])).expect_err("missing");
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        assert!(e.to_string().contains("--dataset"));
        let e = try_parse_from::<Args, _, _>(["x", "--dataset", "d"], &env(&[("INPUT_KEEP-RELEASES", "many")]))
            .expect_err("malformed");
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        assert!(e.to_string().contains("many"), "{e}");
    }
}
