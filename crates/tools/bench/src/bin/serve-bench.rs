//! Load for `bench/serve.sh`: measures images at a fixed concurrency for a fixed time and prints
//! one JSON line (images/s, p50/p99 latency, failures).
//!
//! - `--url URL`: POSTs the images to a running service (ours or the Python reference), one
//!   keep-alive connection per client.
//! - `--release DIR --params TYPE`: the same work in-process — decode, analyse, the rows as JSON —
//!   with the release loaded as the service loads it: what HTTP adds is the difference.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

/// Serving benchmark driver.
#[derive(Debug, Parser)]
struct Cli {
    /// A folder of images (PNG, TIFF), measured in turn.
    #[arg(long)]
    images: PathBuf,
    /// The measure URL of a running service (with `?params=…`).
    #[arg(long, conflicts_with = "release")]
    url: Option<String>,
    /// In-process: the release folder.
    #[arg(long, requires = "params")]
    release: Option<PathBuf>,
    /// In-process: the image type.
    #[arg(long)]
    params: Option<String>,
    /// Clients (threads) asking at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Seconds of warm-up, not counted.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// A label for the JSON line.
    #[arg(long, default_value = "")]
    label: String,
}

type Work = Arc<dyn Fn(&[u8]) -> anyhow::Result<()> + Send + Sync>;

fn images(dir: &Path) -> anyhow::Result<Vec<Arc<Vec<u8>>>> {
    let files = cellops_dataset::io::image_files(dir).with_context(|| format!("listing {}", dir.display()))?;
    if files.is_empty() {
        bail!("no images in {}", dir.display());
    }
    files
        .iter()
        .map(|f| {
            Ok(Arc::new(
                std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
            ))
        })
        .collect()
}

fn http(url: String) -> Work {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build();
    Arc::new(move |bytes: &[u8]| {
        let r = agent.post(&url).set("Content-Type", "image/png").send_bytes(bytes)?;
        let _ = r.into_string()?;
        Ok(())
    })
}

fn in_process(release: &Path, params: &str) -> anyhow::Result<Work> {
    let device = cellops_unet::device::select(cellops_unet::device::Accelerator::Cpu)?.device;
    // Benchmark releases are folders no deploy made.
    let unchecked = cellops_serve::release::Verification::Optional;
    let release = Arc::new(cellops_serve::release::Release::load(release, &device, unchecked)?);
    if release.image_type(params).is_none() {
        bail!("no image type {params} in the release");
    }
    let params = params.to_owned();
    Ok(Arc::new(move |bytes: &[u8]| {
        let t = release.image_type(&params).context("image type")?;
        let image = cellops_analysis::Image::decode(Path::new("upload"), bytes, 100_000_000)?;
        let input = cellops_analysis::Input {
            id: "upload".into(),
            image,
            mask: None,
            truth: None,
        };
        let analysed = t.analyzer.analyse(&input)?;
        let mut table = cellops_measure::table::Table::default();
        for row in analysed.measurement.rows {
            table.push(row);
        }
        let body = serde_json::json!({ "summary": analysed.measurement.summary, "objects": table.json() });
        let _ = serde_json::to_vec(&body)?;
        Ok(())
    }))
}

/// Each client asks in a loop until `stop`; its latencies (ms) after `counting`, and failures.
fn run_clients(cli: &Cli, work: &Work, images: &[Arc<Vec<u8>>]) -> (Vec<f64>, usize, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..cli.concurrency.max(1))
        .map(|k| {
            let (work, stop, counting) = (Arc::clone(work), Arc::clone(&stop), Arc::clone(&counting));
            let images: Vec<_> = images.to_vec();
            std::thread::spawn(move || {
                let (mut lat, mut failed, mut i) = (Vec::new(), 0usize, k);
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let ok = work(&images[i % images.len()]).is_ok();
                    i += 1;
                    if counting.load(Ordering::Relaxed) {
                        if ok {
                            lat.push(started.elapsed().as_secs_f64() * 1000.0);
                        } else {
                            failed += 1;
                        }
                    }
                }
                (lat, failed)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(cli.warmup));
    counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(cli.seconds));
    counting.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (mut all, mut failed) = (Vec::new(), 0);
    for h in handles {
        if let Ok((l, f)) = h.join() {
            all.extend(l);
            failed += f;
        }
    }
    (all, failed, elapsed)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cellops_unet::tune_allocator();
    let images = images(&cli.images)?;
    let (mode, work) = match (&cli.url, &cli.release, &cli.params) {
        (Some(url), _, _) => ("http", http(url.clone())),
        (None, Some(r), Some(p)) => ("in-process", in_process(r, p)?),
        _ => bail!("give --url, or --release and --params"),
    };
    let (mut lat, failed, elapsed) = run_clients(&cli, &work, &images);
    lat.sort_by(f64::total_cmp);
    let line = serde_json::json!({
        "label": cli.label,
        "mode": mode,
        "images": images.len(),
        "concurrency": cli.concurrency,
        "seconds": elapsed,
        "requests": lat.len(),
        "failed": failed,
        "images_per_s": lat.len() as f64 / elapsed,
        "p50_ms": percentile(&lat, 0.5),
        "p99_ms": percentile(&lat, 0.99),
    });
    #[expect(clippy::print_stdout, reason = "a benchmark driver prints its result line")]
    {
        println!("{line}");
    }
    Ok(())
}
