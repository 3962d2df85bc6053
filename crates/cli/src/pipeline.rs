//! `cellops pipeline`: the paper's whole Build → Deploy → Monitor workflow in one command, on
//! synthetic data by default: synthetic dataset → build (prepared as the shipped nuclei model
//! expects) → train-unet (fine-tuning that model) → evaluate (under a cell-parameter file, beside
//! the classical line) → deploy-cell-params (to a local `file://` folder by default) — each stage
//! run through its own library `execute`, exactly as its action would run it — → serve (the
//! deployed release, on a free loopback port; every image measured through HTTP must give
//! `evaluate`'s nuclei).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use cellops_actions::{Exit, Runner};
use cellops_unet::device::Accelerator;

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
    #[arg(long, value_name = "WxH", value_parser = cellops_build::parse_size, default_value = "256x256")]
    pub size: [u32; 2],
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
    /// Device for training and inference.
    #[arg(long, value_enum, default_value_t = Accelerator::Auto)]
    pub device: Accelerator,
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
    let meta = cellops_unet::bundle::parse_meta(&metadata).context("reading the initial model's bundle.json")?;
    let config = cellops_dataset::BuildConfig {
        split: cellops_dataset::config::Split::default(),
        ..meta.preprocessing
    };
    Ok(serde_json::to_string_pretty(&config)?)
}

/// Builds the dataset (from synthetic nuclei unless one is given) into `prepared`, prepared as the
/// model that training starts from expects; returns the images to evaluate.
fn build(a: &PipelineArgs, prepared: &Path, runner: &Runner) -> anyhow::Result<PathBuf> {
    let out = &a.output;
    let build_config = out.join("build.json");
    std::fs::write(&build_config, build_config_json(&a.init)?)
        .with_context(|| format!("writing {}", build_config.display()))?;
    let images = a.dataset.clone().unwrap_or_else(|| out.join("synthetic"));
    let mut build = cellops_build::Args::new(&images, prepared)?;
    build.config = Some(build_config);
    if a.dataset.is_none() {
        build.synthetic = Some(a.synthetic);
        build.synthetic_size = a.size;
    }
    runner.info("== build")?;
    check("build", cellops_build::execute(&build, runner))?;
    Ok(images)
}

/// Trains (fine-tunes `--init`, or from scratch with `none`) on `prepared` into `model`.
fn train(a: &PipelineArgs, prepared: &Path, model: &Path, runner: &Runner) -> anyhow::Result<()> {
    runner.info("== train-unet")?;
    let mut train = cellops_train_unet::Args::new(prepared, model)?;
    train.epochs = Some(a.epochs);
    train.steps_per_epoch = Some(a.steps_per_epoch);
    train.device = a.device;
    train.init = (a.init != "none").then(|| PathBuf::from(&a.init));
    check("train-unet", cellops_train_unet::execute(&train, runner))
}

/// Copies the cell-parameter file (`--params`, the repository's, or the built-in one) into the
/// output's `cell-params/`, which is what gets deployed; returns the copy.
fn params_copy(a: &PipelineArgs) -> anyhow::Result<PathBuf> {
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
    let params_dir = a.output.join("cell-params");
    std::fs::create_dir_all(&params_dir)?;
    let params = params_dir.join(name);
    std::fs::write(&params, params_src)?;
    Ok(params)
}

/// Runs the pipeline; returns the evaluation report's path.
pub fn run(a: &PipelineArgs, runner: &Runner) -> anyhow::Result<PathBuf> {
    let out = &a.output;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let prepared = out.join("prepared");
    let model = out.join("unet");
    let eval = out.join("eval");
    // 1. Build; 2. train.
    let images = build(a, &prepared, runner)?;
    train(a, &prepared, &model, runner)?;
    // 3. Evaluate under the cell parameters.
    let params = params_copy(a)?;
    runner.info("== evaluate")?;
    let mut evaluate = cellops_evaluate::Args::new(&images, &params, &eval)?;
    evaluate.model = Some(model.join(cellops_formats::bundle::DIR));
    evaluate.device = a.device;
    check("evaluate", cellops_evaluate::execute(&evaluate, runner))?;
    // 4. Deploy parameters, model and evaluation.
    runner.info("== deploy-cell-params")?;
    let target = a
        .target
        .clone()
        .unwrap_or_else(|| format!("file://{}", out.join("server").display()));
    let mut deploy = cellops_deploy_cell_params::Args::new(&target)?;
    // Everything deployed lies under the output folder; the release keeps paths relative to it.
    deploy.root = out.clone();
    deploy.source = PathBuf::from("cell-params");
    deploy.include = Some("unet/bundle/**,eval/summary.json,eval/report.html,eval/objects.csv,eval/images.csv".into());
    check(
        "deploy-cell-params",
        cellops_deploy_cell_params::execute(&deploy, runner),
    )?;
    // 5. Serve the release that was deployed (when it is a local folder) and measure the images
    // through HTTP: the answers must be evaluate's.
    if a.target.is_none() {
        serve_check(a, &out.join("server/current"), &images, &eval, runner)?;
    }
    Ok(eval.join(cellops_evaluate::REPORT_HTML))
}

/// The images `evaluate` read: `original/` of a paper-layout dataset, else the folder itself.
fn image_files(images: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let original = images.join(cellops_formats::dataset::PAPER_IMAGES);
    let dir = if original.is_dir() { original } else { images.to_owned() };
    cellops_dataset::io::image_files(&dir).with_context(|| format!("listing {}", dir.display()))
}

/// Starts `cellops serve` on `release` at a free loopback port, measures every image through
/// HTTP and checks the nuclei equal `evaluate`'s `objects.json`; reports the median latency.
fn serve_check(a: &PipelineArgs, release: &Path, images: &Path, eval: &Path, runner: &Runner) -> anyhow::Result<()> {
    runner.info("== serve")?;
    let mut args = cellops_serve::Args::new(release)?;
    args.listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    args.device = a.device;
    let running = cellops_serve::start(&args).context("starting the service")?;
    let evaluated: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(eval.join("objects.json")).context("reading objects.json")?)?;
    let params = a
        .params
        .as_ref()
        .and_then(|p| p.file_stem())
        .map_or_else(|| "fluorescence-dapi".to_owned(), |n| n.to_string_lossy().into_owned());
    let Some(model) = running.types.get(&params).cloned() else {
        bail!("the service has no image type `{params}`");
    };
    let mut latencies = Vec::new();
    let files = image_files(images)?;
    for file in &files {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let url = format!(
            "http://{}/v2/models/{model}/measure?params={params}&name={stem}",
            running.address
        );
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let started = std::time::Instant::now();
        let answer: serde_json::Value = ureq::post(&url)
            .send_bytes(&bytes)
            .with_context(|| format!("measuring {} through the service", file.display()))?
            .into_json()?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        let expected: Vec<&serde_json::Value> = evaluated.iter().filter(|r| r["Image"] == stem.as_str()).collect();
        let served: Vec<&serde_json::Value> = answer["objects"]
            .as_array()
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        if served != expected {
            bail!(
                "the service measured {} nuclei in {} where evaluate measured {}",
                served.len(),
                file.display(),
                expected.len()
            );
        }
    }
    let running_release = running.release.clone();
    running.stop().context("stopping the service")?;
    report_latency(&a.output, eval, &running_release, &mut latencies, runner)
}

/// The serve check's latencies: a line, `serve-check.json` in the output folder, a table in the
/// step summary and a section of the evaluation's report.
fn report_latency(
    out: &Path,
    eval: &Path,
    release: &str,
    latencies: &mut [f64],
    runner: &Runner,
) -> anyhow::Result<()> {
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).copied().unwrap_or(f64::NAN)
    };
    let (p50, p90, max) = (at(0.5), at(0.9), at(1.0));
    let n = latencies.len();
    let record = serde_json::json!({
        "release": release,
        "images": n,
        "same_as_evaluate": true,
        "latency_ms": { "p50": p50, "p90": p90, "max": max },
    });
    let path = out.join("serve-check.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&record)?)
        .with_context(|| format!("writing {}", path.display()))?;
    runner.append_summary(&format!(
        "## Serve check\n\n{n} images measured through `cellops serve` (release `{release}`, one request at a time): \
         the same nuclei as `evaluate`.\n\n| latency | p50 | p90 | max |\n|---|---|---|---|\n| ms | {p50:.0} | {p90:.0} | {max:.0} |\n"
    ))?;
    runner.info(&format!(
        "measured {n} images through the service (release {release}): the same nuclei as evaluate; latency p50 {p50:.0} ms, p90 {p90:.0} ms, max {max:.0} ms ({})",
        path.display()
    ))?;
    let escape = cellops_evaluate::html::escape;
    let section = format!(
        "<p>{n} images measured through <code>cellops serve</code> (release <code>{}</code>, one request at a time, \
         over HTTP on 127.0.0.1): the same nuclei as this evaluation.</p><table><tr><th>latency</th><th>p50</th><th>p90</th><th>max</th></tr>\
         <tr><td>ms</td><td>{p50:.0}</td><td>{p90:.0}</td><td>{max:.0}</td></tr></table>",
        escape(release)
    );
    add_to_report(
        &eval.join(cellops_evaluate::REPORT_HTML),
        "serve",
        "Serve check",
        &section,
    )
}

/// Adds a section to the evaluation's report, written whole (a temporary file renamed over it).
fn add_to_report(report: &Path, id: &str, heading: &str, body: &str) -> anyhow::Result<()> {
    let page = std::fs::read_to_string(report).with_context(|| format!("reading {}", report.display()))?;
    let Some(page) = cellops_evaluate::html::add_section(&page, id, heading, body) else {
        bail!("{} does not end like a cellops report", report.display());
    };
    let tmp = report.with_extension("html.tmp");
    std::fs::write(&tmp, page).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, report).with_context(|| format!("replacing {}", report.display()))
}
