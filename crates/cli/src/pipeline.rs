//! `cellops pipeline`: the paper's whole Build → Deploy → Monitor workflow in one command, on
//! synthetic data by default: synthetic dataset → build (prepared as the shipped nuclei model
//! expects) → train-unet (fine-tuning that model) → evaluate (under a cell-parameter file, beside
//! the classical line) → deploy-cell-params (to a local `file://` folder by default) — each stage
//! run through its own library `execute`, exactly as its action would run it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use cellops_actions::{Exit, Runner};
use clap::Parser;

/// The example cell-parameter file used when neither `--params` nor `cell-params/` exists.
const DEFAULT_PARAMS: &str = include_str!("../../../cell-params/fluorescence-dapi.yaml");

/// Flags of `cellops pipeline`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Pipeline")]
pub struct PipelineArgs {
    /// Folder for everything the run produces.
    #[arg(long, value_name = "DIR", default_value = "demo/pipeline")]
    pub output: PathBuf,
    /// A dataset in the paper's layout (original/ + masks/) instead of synthetic images.
    #[arg(long, value_name = "DIR")]
    pub dataset: Option<PathBuf>,
    /// Synthetic images to generate (without --dataset).
    #[arg(long, value_name = "N", default_value_t = 24)]
    pub synthetic: usize,
    /// Synthetic image size WIDTHxHEIGHT.
    #[arg(long, value_name = "WxH", default_value = "256x256")]
    pub size: String,
    /// The model training starts from: a bundle folder, `nuclei` (the shipped nuclei model,
    /// fine-tuned on the images) or `none` (train from scratch).
    #[arg(long, value_name = "BUNDLE", default_value = "nuclei")]
    pub init: String,
    /// Training epochs.
    #[arg(long, default_value_t = 4)]
    pub epochs: usize,
    /// Optimisation steps per epoch.
    #[arg(long, value_name = "N", default_value_t = 15)]
    pub steps_per_epoch: usize,
    /// Cell-parameter file [default: cell-params/fluorescence-dapi.yaml, or the built-in copy].
    #[arg(long, value_name = "FILE")]
    pub params: Option<PathBuf>,
    /// Deploy target [default: file://<OUTPUT>/server].
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Device for training and inference (auto, cpu, wgpu, cuda).
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// Parses a stage's `Args` from flags, as its binary would.
fn stage_args<A: clap::Args>(flags: &[String]) -> anyhow::Result<A> {
    #[derive(Parser)]
    struct Wrap<T: clap::Args> {
        #[command(flatten)]
        inner: T,
    }
    let argv = std::iter::once("cellops".to_owned()).chain(flags.iter().cloned());
    Ok(Wrap::<A>::try_parse_from(argv)
        .with_context(|| format!("stage flags {flags:?}"))?
        .inner)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn check(stage: &str, exit: Exit) -> anyhow::Result<()> {
    if exit == Exit::Success {
        Ok(())
    } else {
        bail!(
            "the {stage} stage failed (exit code {}); see its messages above",
            exit as u8
        )
    }
}

/// The build configuration (JSON, which the YAML loader reads) for training from `init`: the
/// preprocessing the model was trained with, or the shipped nuclei model's for `none`.
fn build_config_json(init: &str) -> anyhow::Result<String> {
    let bundle = match init {
        "none" => Path::new("nuclei"),
        other => Path::new(other),
    };
    let metadata = match cellops_unet::bundle::shipped(&bundle.display().to_string()) {
        Some(b) if !bundle.exists() => b.metadata.to_owned(),
        _ => {
            let path = bundle.join(cellops_unet::bundle::METADATA);
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?
        }
    };
    let meta: cellops_unet::bundle::BundleMeta =
        serde_json::from_str(&metadata).context("reading the initial model's bundle.json")?;
    let config = cellops_dataset::BuildConfig {
        split: cellops_dataset::config::Split::default(),
        ..meta.preprocessing
    };
    Ok(serde_json::to_string_pretty(&config)?)
}

/// Runs the pipeline; returns the evaluation report's path.
pub fn run(a: &PipelineArgs, runner: &Runner) -> anyhow::Result<PathBuf> {
    let out = &a.output;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let prepared = out.join("prepared");
    let model = out.join("unet");
    let eval = out.join("eval");
    // 1. Build (from synthetic nuclei unless a dataset is given), prepared as the model that
    // training starts from expects.
    let build_config = out.join("build.json");
    std::fs::write(&build_config, build_config_json(&a.init)?)
        .with_context(|| format!("writing {}", build_config.display()))?;
    let mut build = vec!["--output".to_owned(), s(&prepared), "--config".into(), s(&build_config)];
    let images = match &a.dataset {
        Some(d) => {
            build.extend(["--dataset".into(), s(d)]);
            d.clone()
        }
        None => {
            let synth = out.join("synthetic");
            build.extend([
                "--synthetic".into(),
                a.synthetic.to_string(),
                "--synthetic-size".into(),
                a.size.clone(),
                "--dataset".into(),
                s(&synth),
            ]);
            synth
        }
    };
    runner.info("== build")?;
    check("build", cellops_build::execute(&stage_args(&build)?, runner))?;
    // 2. Train.
    runner.info("== train-unet")?;
    let train = vec![
        "--dataset".to_owned(),
        s(&prepared),
        "--output".into(),
        s(&model),
        "--epochs".into(),
        a.epochs.to_string(),
        "--steps-per-epoch".into(),
        a.steps_per_epoch.to_string(),
        "--device".into(),
        a.device.clone(),
    ];
    let train = match a.init.as_str() {
        "none" => train,
        init => [train, vec!["--init".into(), init.to_owned()]].concat(),
    };
    check("train-unet", cellops_train_unet::execute(&stage_args(&train)?, runner))?;
    // 3. Evaluate under the cell parameters (a copy in the output, which is what gets deployed).
    let params_src = match &a.params {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        None => {
            std::fs::read_to_string("cell-params/fluorescence-dapi.yaml").unwrap_or_else(|_| DEFAULT_PARAMS.to_owned())
        }
    };
    let name = a.params.as_ref().and_then(|p| p.file_name()).map_or_else(
        || "fluorescence-dapi.yaml".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let params_dir = out.join("cell-params");
    std::fs::create_dir_all(&params_dir)?;
    let params = params_dir.join(name);
    std::fs::write(&params, params_src)?;
    runner.info("== evaluate")?;
    let evaluate = vec![
        "--images".to_owned(),
        s(&images),
        "--model".into(),
        s(&model.join(cellops_formats::bundle::DIR)),
        "--params".into(),
        s(&params),
        "--output".into(),
        s(&eval),
        "--device".into(),
        a.device.clone(),
    ];
    check("evaluate", cellops_evaluate::execute(&stage_args(&evaluate)?, runner))?;
    // 4. Deploy parameters, model and evaluation.
    runner.info("== deploy-cell-params")?;
    let target = a
        .target
        .clone()
        .unwrap_or_else(|| format!("file://{}", s(&out.join("server"))));
    // Everything deployed lies under the output folder; the release keeps paths relative to it.
    let include = "unet/bundle/**,eval/summary.json,eval/report.html,eval/objects.csv,eval/images.csv";
    let deploy = vec![
        "--target".to_owned(),
        target,
        "--root".into(),
        s(out),
        "--source".into(),
        "cell-params".into(),
        "--include".into(),
        include.into(),
    ];
    check(
        "deploy-cell-params",
        cellops_deploy_cell_params::execute(&stage_args(&deploy)?, runner),
    )?;
    Ok(eval.join("report.html"))
}
