//! `cellops-pr-report`: the `pr-report` action's binary.

use std::process::ExitCode;

use cellops_actions::{Runner, inputs};
use clap::Parser;

/// Which cell-parameter files a pull request changes (`changed`), and the evaluation report as
/// one sticky pull-request comment (`comment`).
#[derive(Debug, Parser)]
#[command(name = "cellops-pr-report", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: cellops_pr_report::Args,
}

fn main() -> ExitCode {
    let runner = Runner::from_process();
    let cli: Cli = match inputs::parse(&runner) {
        Ok(cli) => cli,
        Err(code) => return code.into(),
    };
    let code = cellops_pr_report::execute(&cli.args, &runner);
    let _ = runner.finish();
    code.into()
}
