//! The `build` stage: validate and prepare a dataset, as a library (`Args` + [`run`]) shared by the
//! `cellops-build` binary and `cellops build`.
//!
//! Inputs (flags, or `INPUT_*` in a workflow): `dataset`, `output`, `config` and the preprocessing
//! overrides below. Outputs: `manifest`, `images`, `objects`, `problems`. Every problem is an
//! annotation on its file; the step summary gets a Markdown report.
//!
//! On an Actions matrix, `--shard I/N` prepares a balanced share of the items and adds
//! `shard.cbor`; `merge` joins the N output folders into what one unsharded build writes, byte for
//! byte (`cellops_dataset::shard`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cellops_actions::{ActionsError, Annotation, Exit, Level, Runner, StageFailure, conclude, progress::Progress};
use cellops_dataset::config::{
    ColourMode, ConfigError, EqualizeMethod, Filter, LayoutKind, NormalizeMethod, NucleusScale, Polarity, Resize, Tile,
};
use cellops_dataset::shard::{self, MergeError, Shard};
use cellops_dataset::synthetic::{self, Style, SynthConfig, SynthError};
use cellops_dataset::{BuildConfig, BuildError, BuildReport, Outcome, Severity};

/// `build`, or `build merge` of a sharded one: what `cellops build` and `cellops-build` take.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Command {
    /// `merge`, or none to build.
    #[command(subcommand)]
    pub action: Option<Action>,
    /// The build's flags.
    #[command(flatten)]
    pub build: Option<Args>,
}

/// The subcommands of `build`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Action {
    /// Join the output folders of every `--shard I/N` build of one dataset into what the unsharded
    /// build writes (the same files, a byte-identical manifest.json).
    Merge(MergeArgs),
}

/// Flags of `build merge`.
#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// The shards' output folders (each has shard.cbor), in any order.
    #[arg(value_name = "DIR", required = true)]
    pub shards: Vec<PathBuf>,
    /// Output folder for the merged dataset.
    #[arg(long, value_name = "DIR")]
    pub output: PathBuf,
}

/// Command-line flags (and action inputs) of `build`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Build")]
pub struct Args {
    /// Dataset folder (paper, DSB2018, nnU-Net or Cellpose layout). With --synthetic, where the
    /// synthetic dataset is written [default: <output>-synthetic].
    #[arg(long, value_name = "DIR", required_unless_present = "synthetic")]
    pub dataset: Option<PathBuf>,
    /// Output folder for the prepared dataset and manifest.json.
    #[arg(long, value_name = "DIR")]
    pub output: PathBuf,
    /// YAML build configuration; flags below override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Dataset layout.
    #[arg(long, value_enum)]
    pub layout: Option<LayoutKind>,
    /// Channel handling.
    #[arg(long, value_enum)]
    pub colour: Option<ColourMode>,
    /// Resize to WIDTHxHEIGHT (e.g. 256x256).
    #[arg(long, value_name = "WxH", value_parser = parse_size, conflicts_with = "scale")]
    pub resize: Option<[u32; 2]>,
    /// Resize by a factor.
    #[arg(long, value_name = "FACTOR")]
    pub scale: Option<f64>,
    /// Rescale each image isotropically so that its median nucleus (measured on its mask) is this
    /// many pixels wide; inference estimates it. Excludes --resize and --scale.
    #[arg(long, value_name = "PIXELS", conflicts_with_all = ["resize", "scale"])]
    pub nucleus_diameter: Option<f64>,
    /// Image resize filter.
    #[arg(long, value_enum)]
    pub filter: Option<Filter>,
    /// Intensity normalisation.
    #[arg(long, value_enum)]
    pub normalize: Option<NormalizeMethod>,
    /// Percentiles LOW,HIGH for --normalize percentile (e.g. 1,99.8).
    #[arg(long, value_name = "LOW,HIGH", value_parser = parse_pair)]
    pub percentiles: Option<[f64; 2]>,
    /// Which way round intensities go: auto inverts images with a bright background (brightfield,
    /// stained sections) so that nuclei are bright on dark, as in fluorescence.
    #[arg(long, value_enum)]
    pub polarity: Option<Polarity>,
    /// Histogram equalisation.
    #[arg(long, value_enum)]
    pub equalize: Option<EqualizeMethod>,
    /// CLAHE clip limit.
    #[arg(long, value_name = "LIMIT")]
    pub clip_limit: Option<f64>,
    /// CLAHE tile grid COLSxROWS (e.g. 8x8).
    #[arg(long, value_name = "CxR", value_parser = parse_size)]
    pub tile_grid: Option<[u32; 2]>,
    /// Cut images into square patches of this size.
    #[arg(long, value_name = "PIXELS")]
    pub tile: Option<u32>,
    /// Overlap between patches.
    #[arg(long, value_name = "PIXELS", requires = "tile")]
    pub tile_overlap: Option<u32>,
    /// Seed of the train/val/test assignment.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Fraction of items for validation.
    #[arg(long, value_name = "FRACTION")]
    pub val_fraction: Option<f64>,
    /// Fraction of items for testing.
    #[arg(long, value_name = "FRACTION")]
    pub test_fraction: Option<f64>,
    /// CSV with `id` and `split` columns that fixes the split.
    #[arg(long, value_name = "FILE")]
    pub split_file: Option<PathBuf>,
    /// Refuse images with more pixels than this (decompression-bomb guard).
    #[arg(long, value_name = "PIXELS")]
    pub max_pixels: Option<u64>,
    /// Generate a synthetic dataset of N images first, and build it.
    #[arg(long, value_name = "N")]
    pub synthetic: Option<usize>,
    /// Look of the synthetic images.
    #[arg(long, value_enum, default_value_t = Style::Mixed)]
    pub synthetic_style: Style,
    /// Size of the synthetic images.
    #[arg(long, value_name = "WxH", value_parser = parse_size, default_value = "256x256")]
    pub synthetic_size: [u32; 2],
    /// Seed of the synthetic images.
    #[arg(long, default_value_t = 1)]
    pub synthetic_seed: u64,
    /// Prepare only share I/N of the items (the N shares balanced by pixel count, splits as the
    /// whole build assigns them) and write shard.cbor beside the manifest, for `build merge`.
    #[arg(long, value_name = "I/N", value_parser = Shard::parse)]
    pub shard: Option<Shard>,
}

impl Args {
    /// The flags at their defaults with the dataset (or, with `synthetic`, where to generate
    /// one) and the output folder given, as the `cellops pipeline` runs the stage (fields are
    /// then set by type).
    pub fn new(dataset: &Path, output: &Path) -> Result<Self, clap::Error> {
        cellops_actions::inputs::defaults(&[("dataset", dataset.as_ref()), ("output", output.as_ref())])
    }
}

/// Parses `WIDTHxHEIGHT` (e.g. `256x256`), both at least 1.
pub fn parse_size(s: &str) -> Result<[u32; 2], String> {
    let (a, b) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("`{s}` is not WIDTHxHEIGHT (e.g. 256x256)"))?;
    let p = |v: &str| v.trim().parse::<u32>().map_err(|e| format!("`{v}` in `{s}`: {e}"));
    let (a, b) = (p(a)?, p(b)?);
    if a == 0 || b == 0 {
        return Err(format!("`{s}`: sizes must be at least 1"));
    }
    Ok([a, b])
}

fn parse_pair(s: &str) -> Result<[f64; 2], String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("`{s}` is not LOW,HIGH (e.g. 1,99.8)"))?;
    let p = |v: &str| v.trim().parse::<f64>().map_err(|e| format!("`{v}` in `{s}`: {e}"));
    Ok([p(a)?, p(b)?])
}

/// Errors of the stage (problems in the data are not errors; they are in the report).
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The configuration file or flags are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The build could not run.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The synthetic dataset could not be written.
    #[error(transparent)]
    Synthetic(#[from] SynthError),
    /// The shards' output folders cannot be merged.
    #[error(transparent)]
    Merge(#[from] MergeError),
    /// The Actions runtime could not write outputs or the summary.
    #[error(transparent)]
    Actions(#[from] ActionsError),
    /// The command line is incomplete.
    #[error("{0}")]
    Usage(String),
}

/// Build errors that refuse the input or the output folder (exit 1), not failures to run.
fn refused(e: &BuildError) -> bool {
    matches!(
        e,
        BuildError::Layout(_) | BuildError::Split(_) | BuildError::OutputNotOurs(_) | BuildError::OutputOverlaps { .. }
    )
}

impl StageFailure for StageError {
    fn exit(&self) -> Exit {
        match self {
            StageError::Config(_) | StageError::Usage(_) => Exit::Usage,
            StageError::Build(BuildError::Config(_)) => Exit::Usage,
            // The shard folders given are not one build's, as `evaluate merge` says of its own.
            StageError::Merge(MergeError::Output(e)) | StageError::Build(e) if refused(e) => Exit::Failure,
            StageError::Merge(MergeError::Output(_)) => Exit::Error,
            StageError::Merge(_) => Exit::Usage,
            _ => Exit::Error,
        }
    }

    /// On the configuration file and line when the error is there.
    fn annotation(&self) -> Annotation {
        match self {
            StageError::Config(ConfigError::Parse {
                path,
                location,
                message,
            })
            | StageError::Build(BuildError::Config(ConfigError::Parse {
                path,
                location,
                message,
            })) => Annotation::new(Level::Error, message.clone())
                .title("invalid build configuration")
                .file(path.display().to_string())
                .at(location.map(|l| l.0), location.map(|l| l.1)),
            _ => Annotation::new(Level::Error, self.to_string()).title("build"),
        }
    }
}

/// The configuration from the file (if any) with the flags applied.
pub fn resolve_config(args: &Args) -> Result<BuildConfig, ConfigError> {
    let mut c = match &args.config {
        Some(p) => BuildConfig::from_file(p)?,
        None => BuildConfig::default(),
    };
    if let Some(l) = args.layout {
        c.layout = l;
    }
    if let Some(m) = args.colour {
        c.colour = m;
    }
    if let Some([w, h]) = args.resize {
        c.resize = Some(Resize {
            width: Some(w),
            height: Some(h),
            scale: None,
            filter: c.resize.map(|r| r.filter).unwrap_or_default(),
        });
    }
    if let Some(s) = args.scale {
        c.resize = Some(Resize {
            width: None,
            height: None,
            scale: Some(s),
            filter: c.resize.map(|r| r.filter).unwrap_or_default(),
        });
    }
    if let Some(d) = args.nucleus_diameter {
        c.resize = None;
        c.scale = Some(NucleusScale { diameter_px: d });
    }
    if let Some(p) = args.polarity {
        c.polarity = p;
    }
    if let Some(f) = args.filter {
        match &mut c.resize {
            Some(r) => r.filter = f,
            None => {
                return Err(ConfigError::Invalid {
                    path: "<flags>".into(),
                    message: "--filter needs --resize, --scale or a resize section".into(),
                });
            }
        }
    }
    if let Some(m) = args.normalize {
        c.normalize.method = m;
    }
    if let Some([lo, hi]) = args.percentiles {
        c.normalize.low = lo;
        c.normalize.high = hi;
    }
    if let Some(m) = args.equalize {
        c.equalize.method = m;
    }
    if let Some(l) = args.clip_limit {
        c.equalize.clip_limit = l;
    }
    if let Some(g) = args.tile_grid {
        c.equalize.tile_grid = g;
    }
    if let Some(size) = args.tile {
        c.tile = Some(Tile {
            size,
            overlap: args.tile_overlap.unwrap_or(0),
        });
    }
    if let Some(s) = args.seed {
        c.split.seed = s;
    }
    if let Some(v) = args.val_fraction {
        c.split.val_fraction = v;
    }
    if let Some(t) = args.test_fraction {
        c.split.test_fraction = t;
    }
    if let Some(f) = &args.split_file {
        c.split.file = Some(f.clone());
    }
    if let Some(m) = args.max_pixels {
        c.max_pixels = m;
    }
    let origin = args.config.clone().unwrap_or_else(|| "<flags>".into());
    c.validate(&origin)?;
    Ok(c)
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The build's report.
    pub report: BuildReport,
    /// The dataset folder that was read.
    pub dataset: PathBuf,
    /// The share prepared, for a `--shard` run.
    pub shard: Option<Shard>,
}

impl Finished {
    /// The exit code: failure when validation found errors.
    pub fn exit(&self) -> Exit {
        if self.report.outcome == Outcome::Failed {
            Exit::Failure
        } else {
            Exit::Success
        }
    }
}

struct Observer(Progress);

impl cellops_dataset::Observer for Observer {
    fn started(&self, items: usize) {
        self.0.set_total(items as u64);
    }
    fn item_done(&self, _id: &str) {
        self.0.inc();
    }
}

/// Runs the stage: generates the synthetic dataset if asked, builds, and reports through `runner`
/// (annotations for every problem, outputs, step summary).
pub fn run(args: &Args, runner: &Runner) -> Result<Finished, StageError> {
    let config = resolve_config(args)?;
    let dataset = match (&args.dataset, args.synthetic) {
        (Some(d), None) => d.clone(),
        (dataset, Some(count)) => {
            let dir = dataset.clone().unwrap_or_else(|| {
                let mut s = args.output.clone().into_os_string();
                s.push("-synthetic");
                PathBuf::from(s)
            });
            let cfg = SynthConfig {
                count,
                seed: args.synthetic_seed,
                size: args.synthetic_size,
                style: args.synthetic_style,
            };
            let objects = synthetic::write_dataset(&cfg, &dir)?;
            runner.info(&format!(
                "generated {count} synthetic images with {objects} nuclei in {}",
                dir.display()
            ))?;
            dir
        }
        (None, None) => unreachable!("clap requires --dataset or --synthetic"),
    };
    let progress = Progress::new(runner, 0, "images");
    let report = {
        let what = args.shard.map(|s| format!(" (shard {s})")).unwrap_or_default();
        let _group = runner.group(&format!("build {}{what}", dataset.display()))?;
        let observer = Observer(progress.clone());
        let r = cellops_dataset::build_share(&dataset, &args.output, &config, args.shard, &observer);
        progress.finish();
        r?
    };
    publish(runner, &report, &dataset, &args.output, &config)?;
    Ok(Finished {
        report,
        dataset,
        shard: args.shard,
    })
}

/// Joins the output folders of a sharded build ([`shard::merge`]) and reports it as a build.
pub fn merge(args: &MergeArgs, runner: &Runner) -> Result<Finished, StageError> {
    runner.info(&format!("merging {} shards", args.shards.len()))?;
    let merged = shard::merge(&args.shards, &args.output)?;
    publish(runner, &merged.report, &merged.dataset, &args.output, &merged.config)?;
    Ok(Finished {
        report: merged.report,
        dataset: merged.dataset,
        shard: None,
    })
}

/// Every problem as an annotation on its file, the outputs and the step summary.
fn publish(
    runner: &Runner,
    report: &BuildReport,
    dataset: &Path,
    output: &Path,
    config: &BuildConfig,
) -> Result<(), StageError> {
    for p in &report.problems {
        let level = match p.severity {
            Severity::Error => Level::Error,
            Severity::Warning => Level::Warning,
        };
        let file = dataset.join(&p.path);
        runner.annotate(
            &Annotation::new(level, p.message.clone())
                .file(file.display().to_string())
                .title(kind_title(p.kind)),
        )?;
    }
    runner.set_output("manifest", &report.manifest_path.display().to_string())?;
    runner.set_output("images", &report.counts.images.to_string())?;
    runner.set_output("objects", &report.counts.objects.to_string())?;
    runner.set_output("problems", &report.problems.len().to_string())?;
    runner.append_summary(&summary(report, dataset, output, config))?;
    Ok(())
}

fn kind_title(kind: cellops_dataset::ProblemKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('-', " ")))
        .unwrap_or_else(|| format!("{kind:?}"))
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown report of a build.
pub fn summary(report: &BuildReport, dataset: &Path, output: &Path, config: &BuildConfig) -> String {
    let c = &report.counts;
    let mut s = String::from("## CellOps build\n\n");
    let outcome = match report.outcome {
        Outcome::Written => format!(
            "✅ **Written**: {} items prepared, {} reused from the previous build",
            report.prepared, report.reused
        ),
        Outcome::Unchanged => {
            "✅ **Unchanged**: every item and the manifest were up to date; nothing was written".into()
        }
        Outcome::Failed => format!(
            "❌ **Failed**: {} errors, {} warnings; nothing was written to the output",
            report.errors(),
            report.warnings()
        ),
    };
    let _ = writeln!(s, "{outcome}\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(
        s,
        "| Dataset | `{}` ({} layout) |",
        dataset.display(),
        report.layout.as_str()
    );
    let _ = writeln!(s, "| Output | `{}` |", output.display());
    let _ = writeln!(
        s,
        "| Images | {} (train {} / val {} / test {}) |",
        c.images, c.train, c.val, c.test
    );
    let _ = writeln!(s, "| Output pairs | {} |", c.outputs);
    let _ = writeln!(s, "| Objects | {} |", c.objects);
    let _ = writeln!(
        s,
        "| Problems | {} errors, {} warnings |",
        report.errors(),
        report.warnings()
    );
    let steps = describe(config);
    let _ = writeln!(s, "| Preprocessing | {} |", md_escape(&steps));
    if !report.problems.is_empty() {
        let _ = writeln!(s, "\n### Problems\n\n| | Kind | File | Problem |\n|---|---|---|---|");
        const SHOWN: usize = 100;
        for p in report.problems.iter().take(SHOWN) {
            let icon = if p.severity == Severity::Error { "❌" } else { "⚠️" };
            let _ = writeln!(
                s,
                "| {icon} | {} | `{}` | {} |",
                kind_title(p.kind),
                md_escape(&p.path.display().to_string()),
                md_escape(&p.message)
            );
        }
        if report.problems.len() > SHOWN {
            let _ = writeln!(
                s,
                "\n…and {} more (all are annotations on the run).",
                report.problems.len() - SHOWN
            );
        }
    }
    s
}

/// A one-line description of the preprocessing steps.
pub fn describe(c: &BuildConfig) -> String {
    let mut steps = vec![format!("colour {:?}", c.colour).to_lowercase()];
    if let Some(r) = &c.resize {
        steps.push(match (r.width, r.height, r.scale) {
            (_, _, Some(s)) => format!("resize ×{s} ({:?})", r.filter).to_lowercase(),
            (w, h, None) => format!(
                "resize to {}x{} ({:?})",
                w.map_or("auto".into(), |v| v.to_string()),
                h.map_or("auto".into(), |v| v.to_string()),
                r.filter
            )
            .to_lowercase(),
        });
    }
    if let Some(sc) = &c.scale {
        steps.push(format!("rescale to a median nucleus of {} px", sc.diameter_px));
    }
    if c.normalize.method == NormalizeMethod::Percentile {
        steps.push(format!("percentiles {}–{} → 8-bit", c.normalize.low, c.normalize.high));
    }
    if c.polarity != Polarity::Keep {
        steps.push(format!("polarity {:?}", c.polarity).to_lowercase());
    }
    match c.equalize.method {
        EqualizeMethod::None => {}
        EqualizeMethod::Global => steps.push("global histogram equalisation".into()),
        EqualizeMethod::Clahe => steps.push(format!(
            "CLAHE clip {} grid {}x{}",
            c.equalize.clip_limit, c.equalize.tile_grid[0], c.equalize.tile_grid[1]
        )),
    }
    if let Some(t) = &c.tile {
        steps.push(format!("tiles {}px overlap {}", t.size, t.overlap));
    }
    steps.join(", ")
}

/// Runs the stage and reports everything through `runner`, returning the process exit code: what
/// both `cellops-build` and `cellops build` do.
pub fn execute(args: &Args, runner: &Runner) -> Exit {
    conclude(runner, run(args, runner), |done| (headline(done), done.exit()))
}

/// Runs `build` or `build merge`, as the command line says, and ends it the same way.
pub fn execute_command(command: &Command, runner: &Runner) -> Exit {
    match (&command.action, &command.build) {
        (Some(Action::Merge(m)), _) => conclude(runner, merge(m, runner), |done| (headline(done), done.exit())),
        (None, Some(args)) => execute(args, runner),
        (None, None) => conclude(
            runner,
            Err::<Finished, _>(StageError::Usage(
                "give --dataset (or --synthetic) and --output, or `merge DIR… --output DIR`".into(),
            )),
            |done| (headline(done), done.exit()),
        ),
    }
}

/// Prints the human outcome line for a terminal (used by the binaries after [`run`]).
pub fn headline(f: &Finished) -> String {
    let r = &f.report;
    let share = f.shard.map(|s| format!("shard {s}: ")).unwrap_or_default();
    let line = match r.outcome {
        Outcome::Written => format!(
            "built {} images ({} prepared, {} reused) with {} objects into {}",
            r.counts.images,
            r.prepared,
            r.reused,
            r.counts.objects,
            r.manifest_path
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
        Outcome::Unchanged => format!("{} images up to date; nothing written", r.counts.images),
        Outcome::Failed => format!(
            "validation failed: {} errors, {} warnings in {}; nothing written",
            r.errors(),
            r.warnings(),
            f.dataset.display()
        ),
    };
    format!("{share}{line}")
}
