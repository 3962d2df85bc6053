//! `cellops-serve`: the service binary that runs on the droplet.

use std::process::ExitCode;

use cellops_actions::{Runner, inputs};
use clap::Parser;

/// Serves a deployed release: segment and measure images over HTTP.
#[derive(Debug, Parser)]
#[command(name = "cellops-serve", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: cellops_serve::Args,
}

fn main() -> ExitCode {
    // Before any thread starts: one allocator arena, freed memory kept (cellops_kernels::memory).
    cellops_unet::tune_allocator();
    let runner = Runner::from_process();
    let cli: Cli = match inputs::parse(&runner) {
        Ok(cli) => cli,
        Err(code) => return code.into(),
    };
    let code = cellops_serve::execute(&cli.args, &runner);
    let _ = runner.finish();
    code.into()
}
