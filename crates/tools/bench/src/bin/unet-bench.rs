//! `unet-bench`: training-step (or inference) throughput and peak memory of the burn U-Net on one
//! fixed batch, the same work `bench/unet_torch.py` times with PyTorch; prints one JSON line in
//! the same shape.

use cellops_unet::throughput::{Mode, measure};
use cellops_unet::{Device, KernelPath, Norm, UNetConfig, Upsample};
use clap::Parser;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Time U-Net training steps or forward passes on random data.
#[derive(Debug, Parser)]
struct Args {
    /// Batch size.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Side of the square inputs.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// U-Net depth.
    #[arg(long, default_value_t = 3)]
    depth: usize,
    /// Base channels.
    #[arg(long, default_value_t = 16)]
    base: usize,
    /// Normalisation: batch, group or none.
    #[arg(long, default_value = "batch")]
    norm: String,
    /// Upsampling: transposed or bilinear.
    #[arg(long, default_value = "transposed")]
    upsample: String,
    /// Threads (sets the global rayon pool that flex uses).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// train or infer.
    #[arg(long, default_value = "train")]
    mode: String,
    /// Convolution kernels: native (cellops-kernels) or burn (burn's generic path).
    #[arg(long, value_enum, default_value = "native")]
    kernels: KernelPath,
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Minor page faults of this process so far (field 10 of `/proc/self/stat`).
fn minor_faults() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after_name = s.rsplit_once(')')?.1;
            after_name.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    cellops_unet::tune_allocator();
    rayon::ThreadPoolBuilder::new().num_threads(a.threads).build_global()?;
    cellops_unet::set_kernel_path(a.kernels);
    let norm = match a.norm.as_str() {
        "batch" => Norm::Batch,
        "group" => Norm::Group,
        "none" => Norm::None,
        other => anyhow::bail!("unknown norm {other}"),
    };
    let cfg = UNetConfig::new()
        .with_depth(a.depth)
        .with_base_channels(a.base)
        .with_norm(norm);
    let upsample = match a.upsample.as_str() {
        "transposed" => Upsample::Transposed,
        "bilinear" => Upsample::Bilinear,
        other => anyhow::bail!("unknown upsampling {other}"),
    };
    let cfg = cfg.with_upsample(upsample);
    let mode = match a.mode.as_str() {
        "train" => Mode::Train,
        "infer" => Mode::Infer,
        other => anyhow::bail!("unknown mode {other}"),
    };
    let faults = minor_faults();
    let t = measure(&cfg, mode, a.batch, a.size, a.warmup, a.steps, &Device::flex())?;
    let faults_per_step = (minor_faults() - faults) as f64 / (a.warmup + a.steps).max(1) as f64;
    let (steps_per_second, params) = (t.steps_per_second, t.params);
    let out = serde_json::json!({
        "framework": if cfg!(feature = "mimalloc") { "burn-flex+mimalloc" } else { "burn-flex" },
        "kernels": format!("{:?}", a.kernels).to_lowercase(),
        "version": "0.22.1",
        "mode": a.mode,
        "batch": a.batch,
        "size": a.size,
        "depth": a.depth,
        "base": a.base,
        "norm": a.norm,
        "upsample": a.upsample,
        "threads": a.threads,
        "steps": a.steps,
        "steps_per_second": (steps_per_second * 1e4).round() / 1e4,
        "images_per_second": (steps_per_second * a.batch as f64 * 1e3).round() / 1e3,
        "peak_rss_mib": (peak_rss_mib() * 10.0).round() / 10.0,
        "params": params,
        "minor_faults_per_step": faults_per_step.round(),
    });
    #[allow(clippy::print_stdout, reason = "a benchmark driver: its result lines are its output")]
    {
        println!("{out}");
    }
    Ok(())
}
