//! `cellops-build`: the `build` action's binary.

use std::process::ExitCode;

use cellops_actions::{Runner, inputs};
use clap::Parser;

/// Validate and prepare a microscopy segmentation dataset (images + instance masks).
#[derive(Debug, Parser)]
#[command(name = "cellops-build", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    command: cellops_build::Command,
}

fn main() -> ExitCode {
    let runner = Runner::from_process();
    let cli: Cli = match inputs::parse(&runner) {
        Ok(cli) => cli,
        Err(code) => return code.into(),
    };
    let code = cellops_build::execute_command(&cli.command, &runner);
    let _ = runner.finish();
    code.into()
}
