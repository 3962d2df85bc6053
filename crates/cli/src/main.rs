//! `cellops`: every CellOps stage as a subcommand, reusing each stage's `Args` and `run`, and
//! `pipeline`, which runs them all.

mod pipeline;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use cellops_actions::{Exit, Runner, inputs};
use cellops_dataset::synthetic::{self, Style, SynthConfig};
use clap::{Parser, Subcommand};

/// CellOps: MLOps for microscopy segmentation (Build → Deploy → Monitor).
#[derive(Debug, Parser)]
#[command(name = "cellops", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate and prepare a dataset (images + instance masks) with a manifest.
    Build(Box<cellops_build::Command>),
    /// Train and validate a U-Net on a prepared dataset and write a model bundle.
    TrainUnet(Box<cellops_train_unet::Args>),
    /// Re-bundle a model: tune its post-processing again on a prepared dataset (or add its
    /// reference profile), add files (a model card), write it with this version's format and a
    /// new id.
    Bundle(Box<cellops_train_unet::rebundle::RebundleArgs>),
    /// Segment images, measure every nucleus under a cell-parameter file, score and report.
    Evaluate(Box<cellops_evaluate::Command>),
    /// Validate cell-parameter files and deploy them (with models and results) as an atomic,
    /// verified release over SSH or to a folder; also `rollback` and `list`.
    DeployCellParams(Box<cellops_deploy_cell_params::Args>),
    /// Serve a deployed release: segment and measure images over HTTP (Open Inference Protocol
    /// endpoints and the `measure` extension).
    Serve(Box<cellops_serve::Args>),
    /// Reach the service on the droplet: forward a local port to its loopback port through the
    /// deploy's SSH connection (`deploy-cell-params tunnel`), until Ctrl-C.
    ServeTunnel(Box<cellops_deploy_cell_params::Args>),
    /// Check the deployed service over SSH: live, ready, the release it serves, its golden check,
    /// SLOs, drift, free disk and missed runs; a JSON report and exit 1 on an alert.
    Monitor(Box<cellops_monitor::Args>),
    /// The model registry on the server: `list`, `history`, `which --alias A [--at TIME]`,
    /// `promote --alias A --release ID` (through the promotion gates), `rollback`, `verify` (the
    /// audit log's hash chain); `--target` as for `deploy-cell-params`.
    Registry(Box<cellops_deploy_cell_params::Args>),
    /// Pull-request report: the changed cell-parameter files (`changed`), or the evaluation report
    /// as a sticky PR comment (`comment`).
    PrReport(Box<cellops_pr_report::Args>),
    /// The whole workflow in one command: synthetic data (or a dataset) → build → train-unet →
    /// evaluate → deploy-cell-params (to a local folder by default) → an HTML report.
    Pipeline(Box<pipeline::PipelineArgs>),
    /// Print the JSON Schema of cell-parameter files.
    ParamsSchema,
    /// Write a synthetic nuclei dataset in the paper's layout (original/ + masks/).
    Synthetic(SyntheticArgs),
}

#[derive(Debug, clap::Args)]
struct SyntheticArgs {
    /// Folder to write (created if missing).
    #[arg(long, value_name = "DIR")]
    output: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 16)]
    count: usize,
    /// Seed: the same seed gives the same images.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Look of the images.
    #[arg(long, value_enum, default_value_t = Style::Mixed)]
    style: Style,
    /// Image size WIDTHxHEIGHT.
    #[arg(long, default_value = "256x256", value_parser = cellops_build::parse_size)]
    size: [u32; 2],
}

fn synthetic(args: &SyntheticArgs, runner: &Runner) -> anyhow::Result<()> {
    let cfg = SynthConfig {
        count: args.count,
        seed: args.seed,
        size: args.size,
        style: args.style,
    };
    let objects = synthetic::write_dataset(&cfg, &args.output)
        .with_context(|| format!("writing the synthetic dataset to {}", args.output.display()))?;
    runner.info(&format!(
        "wrote {} synthetic images with {objects} nuclei to {}",
        args.count,
        args.output.display()
    ))?;
    runner.set_output("dataset", &args.output.display().to_string())?;
    runner.set_output("objects", &objects.to_string())?;
    Ok(())
}

fn main() -> ExitCode {
    // Before any thread starts: one allocator arena, freed memory kept (cellops_kernels::memory).
    cellops_unet::tune_allocator();
    let runner = Runner::from_process();
    let cli: Cli = match inputs::parse(&runner) {
        Ok(cli) => cli,
        Err(code) => return code.into(),
    };
    let code = match &cli.command {
        Command::Build(command) => cellops_build::execute_command(command, &runner),
        Command::TrainUnet(args) => cellops_train_unet::execute(args, &runner),
        Command::Bundle(args) => cellops_train_unet::rebundle::execute(args, &runner),
        Command::Evaluate(command) => cellops_evaluate::execute_command(command, &runner),
        Command::DeployCellParams(args) => cellops_deploy_cell_params::execute(args, &runner),
        Command::PrReport(args) => cellops_pr_report::execute(args, &runner),
        Command::Monitor(args) => cellops_monitor::execute(args, &runner),
        Command::Registry(args) => cellops_deploy_cell_params::execute_registry(args, &runner),
        Command::Serve(args) => cellops_serve::execute(args, &runner),
        Command::ServeTunnel(args) => {
            let mut args = args.clone();
            args.action = Some(cellops_deploy_cell_params::Command::Tunnel);
            cellops_deploy_cell_params::execute(&args, &runner)
        }
        Command::ParamsSchema => {
            use std::io::Write as _;
            match std::io::stdout().write_all(cellops_formats::params::schema_json().as_bytes()) {
                Ok(()) => Exit::Success,
                Err(_) => Exit::Error,
            }
        }
        Command::Pipeline(args) => match pipeline::run(args, &runner) {
            Ok(report) => {
                let _ = runner.info(&format!("pipeline done: open {} in a browser", report.display()));
                let _ = runner.set_output("report", &report.display().to_string());
                Exit::Success
            }
            Err(e) => {
                let _ = runner.annotate(&cellops_actions::Annotation::new(
                    cellops_actions::Level::Error,
                    format!("{e:#}"),
                ));
                Exit::Failure
            }
        },
        Command::Synthetic(args) => match synthetic(args, &runner) {
            Ok(()) => Exit::Success,
            Err(e) => {
                let _ = runner.annotate(&cellops_actions::Annotation::new(
                    cellops_actions::Level::Error,
                    format!("{e:#}"),
                ));
                Exit::Error
            }
        },
    };
    let _ = runner.finish();
    code.into()
}
