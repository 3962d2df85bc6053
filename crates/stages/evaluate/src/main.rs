//! `cellops-evaluate`: the `evaluate` action's binary.

use std::process::ExitCode;

use cellops_actions::{Runner, inputs};
use clap::Parser;

/// Segment images, measure every nucleus under a cell-parameter file, score against ground truth
/// and write reports.
#[derive(Debug, Parser)]
#[command(name = "cellops-evaluate", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    command: cellops_evaluate::Command,
}

fn main() -> ExitCode {
    // Before any thread starts: one allocator arena, freed memory kept (cellops_kernels::memory).
    cellops_unet::tune_allocator();
    let runner = Runner::from_process();
    let cli: Cli = match inputs::parse(&runner) {
        Ok(cli) => cli,
        Err(code) => return code.into(),
    };
    let code = cellops_evaluate::execute_command(&cli.command, &runner);
    let _ = runner.finish();
    code.into()
}
