//! `cellops-deploy-cell-params`: the `deploy-cell-params` action's binary.

use std::process::ExitCode;

use cellops_actions::{Runner, inputs};
use clap::Parser;

/// Validate cell-parameter files and deploy them (with models and results) to a server over SSH,
/// or to a local folder, as atomic, verified releases.
#[derive(Debug, Parser)]
#[command(name = "cellops-deploy-cell-params", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: cellops_deploy_cell_params::Args,
}

fn main() -> ExitCode {
    let runner = Runner::from_process();
    let cli: Cli = match inputs::parse(&runner) {
        Ok(cli) => cli,
        Err(code) => return code.into(),
    };
    let code = cellops_deploy_cell_params::execute(&cli.args, &runner);
    let _ = runner.finish();
    code.into()
}
