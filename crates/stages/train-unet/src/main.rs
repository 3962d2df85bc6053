//! `cellops-train-unet`: the `train-unet` action's binary.

use std::process::ExitCode;

use cellops_actions::{Runner, inputs};
use clap::Parser;

/// Train and validate a U-Net on a prepared dataset and write a versioned model bundle.
#[derive(Debug, Parser)]
#[command(name = "cellops-train-unet", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: cellops_train_unet::Args,
}

fn main() -> ExitCode {
    // Before any thread starts: one allocator arena, freed memory kept (cellops_kernels::memory).
    cellops_unet::tune_allocator();
    let runner = Runner::from_process();
    let cli: Cli = match inputs::parse(&runner) {
        Ok(cli) => cli,
        Err(code) => return code.into(),
    };
    let code = cellops_train_unet::execute(&cli.args, &runner);
    let _ = runner.finish();
    code.into()
}
