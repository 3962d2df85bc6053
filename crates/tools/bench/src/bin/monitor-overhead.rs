//! For `bench/monitor.sh overhead`: what the Monitor's evidence costs per measured image. For
//! every image of a folder, measured in-process as the service measures it (a release loaded as
//! the service loads it), times the analysis (which now includes the prediction features), the
//! prediction features again on their own, the input features, and keeping the row (JSON line
//! appended to a day file); then times the drift report over the window those rows make.
//! Prints one JSON line.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use cellops_serve::evidence::{Evidence, Row};
use clap::Parser;

/// Monitor overhead driver.
#[derive(Debug, Parser)]
struct Cli {
    /// A folder of images (PNG, TIFF), measured in turn.
    #[arg(long)]
    images: PathBuf,
    /// The release folder (as the service loads it; deploy.json optional).
    #[arg(long)]
    release: PathBuf,
    /// The image type.
    #[arg(long)]
    params: String,
    /// At most this many images.
    #[arg(long, default_value_t = 200)]
    limit: usize,
}

/// Seconds spent in each part, summed over the images.
#[derive(Debug, Default)]
struct Totals {
    images: usize,
    analyse: f64,
    prediction_features: f64,
    input_features: f64,
    keep_row: f64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let device = cellops_unet::Device::flex();
    let unchecked = cellops_serve::release::Verification::Optional;
    let release = cellops_serve::release::Release::load(&cli.release, &device, unchecked)?;
    let t = release
        .image_type(&cli.params)
        .with_context(|| format!("no image type {}", cli.params))?;
    let files =
        cellops_dataset::io::image_files(&cli.images).with_context(|| format!("listing {}", cli.images.display()))?;
    if files.is_empty() {
        bail!("no images in {}", cli.images.display());
    }
    let state = std::env::temp_dir().join(format!("monitor-overhead-{}", std::process::id()));
    let evidence = Evidence::open(Some(&state), Default::default(), cellops_serve::evidence::now())?;
    let mut totals = Totals::default();
    let version = release.model(&t.model).map(|m| m.version.clone()).unwrap_or_default();
    let tag = (cli.params.as_str(), version.as_str());
    for file in files.iter().take(cli.limit) {
        measure(file, t, tag, &evidence, &mut totals)?;
    }
    let started = Instant::now();
    let report =
        cellops_serve::watch::Watch::new(evidence, Default::default()).report(&release, cellops_serve::evidence::now());
    let report_s = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&state);
    let features = totals.prediction_features + totals.input_features + totals.keep_row;
    // The analysis time includes the prediction features once: the measure work without them.
    let measure = totals.analyse - totals.prediction_features;
    let line = serde_json::json!({
            "images": totals.images,
            "measure_s": measure,
            "prediction_features_s": totals.prediction_features,
            "input_features_s": totals.input_features,
            "keep_row_s": totals.keep_row,
            "overhead_percent": 100.0 * features / measure,
            "report_s": report_s,
            "window_rows": report.evidence.window_rows,
    });
    #[allow(clippy::print_stdout, reason = "a benchmark driver: its result line is its output")]
    {
        println!("{line}");
    }
    Ok(())
}

/// Measures one image and times each part.
fn measure(
    file: &Path,
    t: &cellops_serve::release::ImageType,
    (image_type, model): (&str, &str),
    evidence: &Evidence,
    totals: &mut Totals,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let image = cellops_analysis::Image::decode(file, &bytes, 100_000_000)?;
    let input = cellops_analysis::Input {
        id: "bench".into(),
        image,
        mask: None,
        truth: None,
    };
    let started = Instant::now();
    let analysed = t.analyzer.analyse(&input)?;
    totals.analyse += started.elapsed().as_secs_f64();
    let raster = &input.image.raster;
    // The probabilities are not kept in the answer: the same work on a map of the same size.
    let probabilities = vec![0.5f32; raster.width as usize * raster.height as usize];
    let started = Instant::now();
    let again = cellops_analysis::prediction_features(
        &analysed.measurement.segmentation,
        raster.width as usize,
        &probabilities,
        analysed.scale.unwrap_or(1.0),
    );
    totals.prediction_features += started.elapsed().as_secs_f64();
    let started = Instant::now();
    let features = cellops_dataset::ops::features::image_features(raster);
    totals.input_features += started.elapsed().as_secs_f64();
    let started = Instant::now();
    evidence.push(Row {
        at: cellops_serve::evidence::now(),
        image_type: image_type.into(),
        model: model.into(),
        input: features.values().to_vec(),
        histogram: features.histogram.map(|h| h.to_vec()),
        prediction: Some(again.values().to_vec()),
    });
    totals.keep_row += started.elapsed().as_secs_f64();
    totals.images += 1;
    Ok(())
}
