//! `cellops-fuzz`: runs the fuzz targets (`bench/fuzz.sh` drives it) and prints one JSON line per
//! target; exits 1 when any target panicked or hung, writing each finding's input under `--out`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use cellops_fuzz::{Settings, run, targets};
use clap::Parser;

/// Fuzz CellOps' parsers.
#[derive(Debug, Parser)]
struct Args {
    /// A target's name, or `all`.
    #[arg(long, default_value = "all")]
    target: String,
    /// Cases per target at most.
    #[arg(long, default_value_t = 1_000_000)]
    cases: u64,
    /// Seconds per target at most.
    #[arg(long)]
    seconds: Option<u64>,
    /// The seed of the mutations.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds one case may take before it counts as a hang.
    #[arg(long, default_value_t = 10)]
    hang_after: u64,
    /// Where findings' inputs are written.
    #[arg(long, default_value = "fuzz-findings")]
    out: PathBuf,
}

#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a fuzz driver: result lines are its output, findings go to stderr"
)]
fn main() -> anyhow::Result<std::process::ExitCode> {
    let a = Args::parse();
    let chosen: Vec<_> = targets()
        .into_iter()
        .filter(|t| a.target == "all" || t.name == a.target)
        .collect();
    anyhow::ensure!(!chosen.is_empty(), "no target called {}", a.target);
    let settings = Settings {
        cases: a.cases,
        seed: a.seed,
        budget: a.seconds.map(Duration::from_secs),
        hang_after: Duration::from_secs(a.hang_after),
    };
    let mut failed = false;
    for t in &chosen {
        let r = run(t, settings);
        for (kind, f) in r
            .findings
            .iter()
            .map(|f| ("panic", f))
            .chain(r.hang.iter().map(|f| ("hang", f)))
        {
            std::fs::create_dir_all(&a.out).with_context(|| a.out.display().to_string())?;
            let path = a
                .out
                .join(format!("{}-{kind}-seed{}-case{}.bin", t.name, a.seed, f.case));
            std::fs::write(&path, &f.input).with_context(|| path.display().to_string())?;
            eprintln!(
                "{}: {kind} at case {}: {} ({})",
                t.name,
                f.case,
                f.message,
                path.display()
            );
        }
        failed |= !r.findings.is_empty() || r.hang.is_some();
        let line = serde_json::json!({
            "target": t.name, "cases": r.cases, "accepted": r.accepted, "panics": r.findings.len(),
            "hang": r.hang.is_some(), "seconds": r.elapsed.as_secs_f64(),
            "slowest_ms": r.slowest.as_secs_f64() * 1e3, "seed": a.seed,
        });
        println!("{line}");
    }
    Ok(if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    })
}
