//! `cellops-monitor`: the `monitor` action's binary.

use std::process::ExitCode;

use cellops_actions::{Runner, inputs};
use clap::Parser;

/// Check a deployed CellOps service over SSH: live, ready, the release it serves, its golden
/// check, SLOs, drift, free disk and missed runs; exit 1 on an alert.
#[derive(Debug, Parser)]
#[command(name = "cellops-monitor", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: cellops_monitor::Args,
}

fn main() -> ExitCode {
    let runner = Runner::from_process();
    let cli: Cli = match inputs::parse(&runner) {
        Ok(cli) => cli,
        Err(code) => return code.into(),
    };
    let code = cellops_monitor::execute(&cli.args, &runner);
    let _ = runner.finish();
    code.into()
}
