//! `drift-bench`: times `cellops_drift`'s drift statistics on two samples read from files of
//! little-endian `f64` (written by `bench/monitor.sh` for SciPy and Evidently to read the same
//! values) and prints one JSON line per statistic: its value and the best time of `--repeat` runs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use cellops_drift::StatsError;
use cellops_drift::binned::{hellinger, jensen_shannon, psi};
use cellops_drift::distance::{wasserstein, wasserstein_normed};
use cellops_drift::ks::ks_2samp;
use clap::Parser;

/// Time the drift statistics on two samples.
#[derive(Debug, Parser)]
struct Args {
    /// The reference sample (little-endian f64).
    #[arg(long, value_name = "FILE")]
    reference: PathBuf,
    /// The current sample (little-endian f64).
    #[arg(long, value_name = "FILE")]
    current: PathBuf,
    /// Runs per statistic; the best is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

fn read(path: &Path) -> anyhow::Result<Vec<f64>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(bytes.len() % 8 == 0, "{} is not a whole number of f64", path.display());
    Ok(bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

type Statistic = fn(&[f64], &[f64]) -> Result<f64, StatsError>;

/// The KS statistic (its p-value at this size is asymptotic, where SciPy's differs by method).
fn ks_statistic(r: &[f64], c: &[f64]) -> Result<f64, StatsError> {
    ks_2samp(r, c).map(|t| t.statistic)
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let (r, c) = (read(&a.reference)?, read(&a.current)?);
    let statistics: [(&str, Statistic); 6] = [
        ("ks_statistic", ks_statistic),
        ("wasserstein", wasserstein),
        ("wasserstein_normed", wasserstein_normed),
        ("psi", psi),
        ("jensen_shannon", jensen_shannon),
        ("hellinger", hellinger),
    ];
    for (name, f) in statistics {
        let mut best = f64::INFINITY;
        let mut value = f64::NAN;
        for _ in 0..a.repeat.max(1) {
            let started = Instant::now();
            value = f(&r, &c).with_context(|| name.to_owned())?;
            best = best.min(started.elapsed().as_secs_f64());
        }
        let line =
            serde_json::json!({"statistic": name, "value": value, "seconds": best, "samples": r.len() + c.len()});
        #[allow(clippy::print_stdout, reason = "a benchmark driver: its result lines are its output")]
        {
            println!("{line}");
        }
    }
    Ok(())
}
