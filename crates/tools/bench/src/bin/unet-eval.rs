//! `unet-eval`: scores a model bundle on one split of a prepared dataset — pixel Dice/IoU and
//! instance matching (F1, DSB accuracy, PQ at τ = 0.5, 0.75, 0.9; AJI), nuclei separated with the
//! model's boundary channel — and prints one JSON line. The split's images are already
//! preprocessed by `build`, so they go to the network as they are.

use std::path::PathBuf;

use anyhow::Context as _;
use cellops_dataset::layout::Subset;
use cellops_measure::instances::{Separation, separate};
use cellops_measure::metrics::{Scores, THRESHOLDS};
use cellops_unet::Device;
use cellops_unet::data::PreparedDataset;
use cellops_unet::inference::{PredictConfig, predict_chw};
use clap::Parser;

/// Score a bundle on a split of a prepared dataset.
#[derive(Debug, Parser)]
struct Args {
    /// The model bundle (a `train-unet` output's `bundle/`).
    #[arg(long)]
    bundle: PathBuf,
    /// The prepared dataset it was trained on.
    #[arg(long)]
    dataset: PathBuf,
    /// train, val or test.
    #[arg(long, default_value = "test")]
    split: String,
    /// Also write each image's true and predicted labels here (`<k>_true.png`, `<k>_pred.png`,
    /// 16-bit), for checking the metrics with `bench/matching_reference.py`.
    #[arg(long)]
    write: Option<PathBuf>,
    /// Probability threshold.
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    cellops_unet::tune_allocator();
    let split = match a.split.as_str() {
        "train" => Subset::Train,
        "val" => Subset::Val,
        "test" => Subset::Test,
        other => anyhow::bail!("unknown split {other}"),
    };
    let device = Device::flex();
    let (model, meta) = cellops_unet::bundle::load(&a.bundle, &device).context("loading the bundle")?;
    let dataset = PreparedDataset::open(&a.dataset)?;
    // Instance labels come from the masks; the loader gives foreground/boundary targets, so read
    // the labels again per item.
    let samples = dataset.load(split, cellops_unet::data::Boundary::None)?;
    let labels = dataset.load_labels(split)?;
    let sep = Separation {
        threshold: a.threshold,
        ..Separation::default()
    };
    let mut pooled = Scores::default();
    let tiling = PredictConfig::new();
    if let Some(dir) = &a.write {
        std::fs::create_dir_all(dir)?;
    }
    for (k, (s, truth)) in samples.iter().zip(&labels).enumerate() {
        let p = predict_chw(
            &model,
            &s.image.to_f32(),
            s.channels,
            s.height,
            s.width,
            &tiling,
            &device,
        );
        let boundary = (p.channels > 1).then(|| p.channel(1));
        let pred = separate(p.channel(0), boundary, s.width, sep);
        pooled.add(&Scores::of(truth, &pred, &THRESHOLDS)?);
        if let Some(dir) = &a.write {
            let (w, h) = (s.width as u32, s.height as u32);
            let pred16: Vec<u16> = pred.iter().map(|&l| u16::try_from(l).unwrap_or(u16::MAX)).collect();
            for (name, data) in [("true", truth.clone()), ("pred", pred16)] {
                let png = cellops_dataset::io::encode_png(&cellops_dataset::Raster::from_u16(w, h, 1, data))?;
                std::fs::write(dir.join(format!("{k:03}_{name}.png")), png)?;
            }
        }
    }
    let out = serde_json::json!({
        "bundle": meta.id,
        "split": a.split,
        "images": samples.len(),
        "pixel_dice": pooled.pixels.dice(),
        "pixel_iou": pooled.pixels.iou(),
        "aji": pooled.aji.value(),
        "matching": pooled.matching(),
    });
    #[allow(clippy::print_stdout, reason = "a benchmark driver: its result lines are its output")]
    {
        println!("{out}");
    }
    Ok(())
}
