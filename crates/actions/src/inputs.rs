//! Action inputs: every long flag `--name` of a clap command can also be given as the environment
//! variable `INPUT_<NAME>`, the way the runner passes a step's `with:` values.
//!
//! The runner's mangling: the input name upper-cased, spaces replaced by `_`; hyphens are kept
//! (`keep-releases` → `INPUT_KEEP-RELEASES`). Because composite actions and shells cannot always
//! export names with hyphens, `INPUT_KEEP_RELEASES` is accepted too. An empty value counts as unset,
//! as the runner passes inputs that were not given as empty strings. A flag on the command line wins
//! over the environment.

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

/// Binds every long flag of `cmd` to its `INPUT_*` variable when that variable is set and not empty:
/// the variable's value becomes the flag's default (so a flag given on the command line wins), and
/// the help text gains a paragraph that names the variables.
pub fn bind_inputs(cmd: Command, env: &Env) -> Command {
    let names: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_owned()).collect();
    let mut cmd = cmd;
    for name in names {
        cmd = cmd.mut_subcommand(name, |sub| bind_inputs(sub, env));
    }
    let cmd = cmd.mut_args(|arg| {
        let Some(long) = arg.get_long().map(str::to_owned) else {
            return arg;
        };
        match find_env(env, &long) {
            Some((_, value)) => arg
                .default_value(value.to_owned())
                .required(false)
                .required_unless_present(clap::builder::Resettable::Reset),
            None => arg,
        }
    });
    let names: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !matches!(*l, "help" | "version"))
        .map(|l| format!("--{l} = {}", env_name(l)))
        .collect();
    if names.is_empty() {
        return cmd;
    }
    cmd.after_help(format!(
        "In a GitHub Actions step every flag is also an input, read from its INPUT_* variable \
         (a flag on the command line wins; an empty value is unset):\n  {}",
        names.join("\n  ")
    ))
}

/// Parses `A` from the command line, with `INPUT_*` variables filling in flags that are not given.
///
/// A usage error names the input both ways (`--dataset` / `INPUT_DATASET`), is an `::error::`
/// annotation in Actions, and ends the process with exit code 2; `--help` and `--version` print and
/// exit 0, as usual.
pub fn parse<A: clap::CommandFactory + FromArgMatches>(runner: &Runner) -> A {
    let env = Env::from_process();
    match try_parse_from::<A, _, _>(std::env::args_os(), &env) {
        Ok(a) => a,
        Err(e) => exit_with(runner, e),
    }
}

/// Parses `A` from explicit arguments and environment; see [`parse`].
pub fn try_parse_from<A, I, T>(args: I, env: &Env) -> Result<A, clap::Error>
where
    A: clap::CommandFactory + FromArgMatches,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cmd = bind_inputs(A::command(), env);
    let mut matches: ArgMatches = cmd.clone().try_get_matches_from(args)?;
    A::from_arg_matches_mut(&mut matches).map_err(|e| e.with_cmd(&cmd))
}

/// Reports a clap error the way [`parse`] does and exits.
pub fn exit_with(runner: &Runner, e: clap::Error) -> ! {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    let rendered = e.render().to_string();
    let mut message = rendered.trim_end().to_owned();
    let flags: Vec<String> = rendered
        .split(|c: char| c.is_whitespace() || c == '\'' || c == '`')
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| w.split(['=', ' ', '<']).next().unwrap_or(w).to_owned())
        .filter(|w| !w.is_empty() && w != "help")
        .collect();
    if let Some(flag) = flags.first() {
        message.push_str(&format!(
            "\n\nset it with --{flag} or, in a workflow, with the action input `{flag}` ({})",
            env_name(flag)
        ));
    }
    if runner.in_actions() {
        let title = flags
            .first()
            .map_or("invalid inputs".to_owned(), |f| format!("input `{f}`"));
        let _ = runner.annotate(&Annotation::new(Level::Error, message.clone()).title(title));
    } else {
        #[allow(clippy::print_stderr)] // the one place a usage error is printed before exiting
        {
            eprintln!("{message}");
        }
    }
    std::process::exit(crate::Exit::Usage as i32)
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
    }
    #[derive(clap::Args, Debug)]
    struct BuildArgs {
        #[arg(long)]
        output: String,
    }

    #[test]
    fn subcommands_read_inputs_too() {
        let Umbrella::Build(b) = try_parse_from(["x", "build"], &env(&[("INPUT_OUTPUT", "out")])).expect("parse");
        assert_eq!(b.output, "out");
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
