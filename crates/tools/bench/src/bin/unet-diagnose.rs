//! `unet-diagnose`: where a bundle's instance errors come from, on one split of DSB2018 at the
//! images' original size (as `evaluate` segments them). For every image it predicts at the
//! model's own size estimate (`Predictor::predict`, what users get) and, with `--oracle`, at the
//! scale measured on the true mask (what `build` trained at), segments under a parameter file
//! with the bundle's tuned post-processing, and sorts every missed nucleus by cause:
//!
//! - `absent`: under half of it lies in the predicted foreground;
//! - `merged`: one predicted object covers at least half of it and half of another true nucleus;
//! - `split`: in the foreground, but no predicted object covers half of it;
//! - `shape`: a predicted object covers half of it, yet their IoU is under 0.5.
//!
//! Prints one JSON line per image (`--per-image`) and a summary line per scale and category.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::Context as _;
use cellops_analysis::segment;
use cellops_dataset::ops::scale;
use cellops_formats::params::ParamsFile;
use cellops_measure::instances;
use cellops_unet::Device;
use cellops_unet::inference::{PredictConfig, Prediction, Predictor};
use clap::Parser;
use serde_json::json;

/// Diagnose a bundle's instance errors on a DSB2018 split.
#[derive(Debug, Parser)]
struct Args {
    /// The model bundle folder.
    #[arg(long)]
    bundle: PathBuf,
    /// DSB2018 (`original/`, `masks/`, `manifest.csv`).
    #[arg(long)]
    dataset: PathBuf,
    /// train, val or test.
    #[arg(long, default_value = "val")]
    split: String,
    /// The parameter file.
    #[arg(long, default_value = "cell-params/fluorescence-dapi.yaml")]
    params: PathBuf,
    /// Also predict at the scale measured on the true mask.
    #[arg(long)]
    oracle: bool,
    /// Print a line per image.
    #[arg(long)]
    per_image: bool,
    /// Instead: predict every image at each factor of a geometric grid (steps of √2 from 1/4 to 2)
    /// and print, per factor, the F1 and the signals a scale estimate could use.
    #[arg(long)]
    grid: bool,
    /// At most this many images.
    #[arg(long, default_value_t = usize::MAX)]
    limit: usize,
}

/// Counts pooled over images.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct Tally {
    images: usize,
    truths: usize,
    preds: usize,
    tp: usize,
    absent: usize,
    merged: usize,
    split: usize,
    shape: usize,
    /// False positives that touch no true nucleus.
    fp_background: usize,
    /// Other false positives (fragments or oversized objects over true nuclei).
    fp_overlap: usize,
    /// Missed nuclei smaller than 1/4 of the image's median true area.
    fn_small: usize,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.images += o.images;
        self.truths += o.truths;
        self.preds += o.preds;
        self.tp += o.tp;
        self.absent += o.absent;
        self.merged += o.merged;
        self.split += o.split;
        self.shape += o.shape;
        self.fp_background += o.fp_background;
        self.fp_overlap += o.fp_overlap;
        self.fn_small += o.fn_small;
    }

    fn f1(&self) -> f64 {
        let (fp, fn_) = (self.preds - self.tp, self.truths - self.tp);
        2.0 * self.tp as f64 / (2 * self.tp + fp + fn_).max(1) as f64
    }
}

/// Areas and overlaps of two label images.
fn diagnose(truth: &[u32], pred: &[u32]) -> Tally {
    let mut t_area: HashMap<u32, usize> = HashMap::new();
    let mut p_area: HashMap<u32, usize> = HashMap::new();
    let mut both: HashMap<(u32, u32), usize> = HashMap::new();
    let mut t_fg: HashMap<u32, usize> = HashMap::new();
    for (&t, &p) in truth.iter().zip(pred) {
        if t != 0 {
            *t_area.entry(t).or_default() += 1;
        }
        if p != 0 {
            *p_area.entry(p).or_default() += 1;
        }
        if t != 0 && p != 0 {
            *both.entry((t, p)).or_default() += 1;
            *t_fg.entry(t).or_default() += 1;
        }
    }
    let iou = |t: u32, p: u32, n: usize| n as f64 / (t_area[&t] + p_area[&p] - n) as f64;
    // IoU > 0.5 pairs are one-to-one, so they are the optimal matching at τ = 0.5.
    let mut matched_t = std::collections::HashSet::new();
    let mut matched_p = std::collections::HashSet::new();
    for (&(t, p), &n) in &both {
        if iou(t, p, n) > 0.5 {
            matched_t.insert(t);
            matched_p.insert(p);
        }
    }
    // For each predicted object, the true nuclei it covers at least half of.
    let mut covers: HashMap<u32, usize> = HashMap::new();
    for (&(t, p), &n) in &both {
        if 2 * n >= t_area[&t] {
            *covers.entry(p).or_default() += 1;
        }
    }
    let mut areas: Vec<usize> = t_area.values().copied().collect();
    areas.sort_unstable();
    let median = areas.get(areas.len() / 2).copied().unwrap_or(0);
    let mut out = Tally {
        images: 1,
        truths: t_area.len(),
        preds: p_area.len(),
        tp: matched_t.len(),
        ..Tally::default()
    };
    for (&t, &area) in &t_area {
        if matched_t.contains(&t) {
            continue;
        }
        if 4 * area < median {
            out.fn_small += 1;
        }
        let in_fg = t_fg.get(&t).copied().unwrap_or(0);
        let best = both
            .iter()
            .filter(|((tt, _), _)| *tt == t)
            .max_by_key(|(_, n)| **n)
            .map(|((_, p), n)| (*p, *n));
        match best {
            _ if 2 * in_fg < area => out.absent += 1,
            Some((p, n)) if 2 * n >= area && covers.get(&p).copied().unwrap_or(0) >= 2 => out.merged += 1,
            Some((_, n)) if 2 * n >= area => out.shape += 1,
            _ => out.split += 1,
        }
    }
    for &p in p_area.keys() {
        if matched_p.contains(&p) {
            continue;
        }
        if both.keys().any(|(_, pp)| *pp == p) {
            out.fp_overlap += 1;
        } else {
            out.fp_background += 1;
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let device = Device::flex();
    let predictor = Predictor::load(&a.bundle, &device, PredictConfig::new()).context("loading the bundle")?;
    let params = ParamsFile::read(&a.params)?.params;
    let meta = predictor.meta().clone();
    let target = meta
        .preprocessing
        .scale
        .map(|s| s.diameter_px)
        .context("the bundle has no scale")?;
    let manifest = std::fs::read_to_string(a.dataset.join("manifest.csv"))?;
    let mut totals: BTreeMap<(String, String), Tally> = BTreeMap::new();
    let rows = manifest.lines().skip(1).map(|l| l.split(',').collect::<Vec<_>>());
    for row in rows.filter(|r| r.len() > 5 && r[5] == a.split).take(a.limit) {
        let (id, category) = (row[0], row[1]);
        let read = |p: PathBuf| -> anyhow::Result<cellops_dataset::Raster> {
            let bytes = std::fs::read(&p).with_context(|| p.display().to_string())?;
            Ok(cellops_dataset::io::decode(&bytes, 1 << 28)?.raster)
        };
        let image = read(a.dataset.join("original").join(format!("{id}.png")))?;
        let truth = segment::truth(&read(a.dataset.join("masks").join(format!("{id}_mask.png")))?);
        let true_factor = scale::factor(target, scale::median_diameter(&truth).unwrap_or(target));
        if a.grid {
            grid(&predictor, &image, &truth, &params, id, category, true_factor)?;
            continue;
        }
        let estimate = predictor.estimate_scale(&image, target)?;
        let mut runs: Vec<(&str, f64, Prediction)> = vec![("estimate", estimate.factor, estimate.prediction)];
        if a.oracle {
            runs.push(("oracle", true_factor, predictor.predict_at(&image, Some(true_factor))?));
        }
        for (name, factor, pred) in runs {
            let labels =
                segment::from_prediction(&pred, meta.training.targets(), &params, meta.postprocessing.as_ref())?;
            let t = diagnose(&truth, &labels);
            if a.per_image {
                #[allow(clippy::print_stdout, reason = "a benchmark driver: its result lines are its output")]
                {
                    println!(
                        "{}",
                        json!({"id": id, "category": category, "scale": name, "factor": factor,
                               "true_factor": true_factor, "f1": t.f1(), "tally": t})
                    );
                }
            }
            for key in [category, "all"] {
                totals.entry((name.to_owned(), key.to_owned())).or_default().add(&t);
            }
        }
    }
    for ((name, category), t) in &totals {
        #[allow(clippy::print_stdout, reason = "a benchmark driver: its result lines are its output")]
        {
            println!(
                "{}",
                json!({"scale": name, "category": category, "f1": t.f1(), "tally": t})
            );
        }
    }
    Ok(())
}

/// One image at every factor of a geometric grid: F1 and candidate signals for choosing a scale.
fn grid(
    predictor: &Predictor,
    image: &cellops_dataset::Raster,
    truth: &[u32],
    params: &cellops_formats::params::CellParams,
    id: &str,
    category: &str,
    true_factor: f64,
) -> anyhow::Result<()> {
    let meta = predictor.meta();
    for k in -4..=2 {
        let factor = 2f64.powf(f64::from(k) / 2.0);
        let pred = predictor.predict_at(image, Some(factor))?;
        let labels = segment::from_prediction(&pred, meta.training.targets(), params, meta.postprocessing.as_ref())?;
        let t = diagnose(truth, &labels);
        let fg = pred.channel(0);
        let bd = (pred.channels > 1).then(|| pred.channel(1));
        let (mut unc, mut near, mut inside, mut bd_in, mut n_fg) = (0.0, 0usize, 0.0, 0usize, 0usize);
        for (i, &p) in fg.iter().enumerate() {
            let p = f64::from(p);
            if p > 0.1 {
                unc += 4.0 * p * (1.0 - p);
                near += 1;
            }
            if p > 0.5 {
                n_fg += 1;
                if let Some(b) = bd {
                    inside += f64::from(b[i]);
                    bd_in += usize::from(b[i] > 0.5);
                }
            }
        }
        let d = scale::median_diameter_above(&labels, 20.0 / (4.0 * factor)).unwrap_or(0.0);
        // What `Predictor::predict` measures: the foreground alone, split by the distance watershed.
        let (fg_labels, _) = instances::segment(fg, None, pred.width, &instances::InstanceConfig::default())?;
        let d_fg = scale::median_diameter_above(&fg_labels, 20.0 / (4.0 * factor)).unwrap_or(0.0);
        #[allow(clippy::print_stdout, reason = "a benchmark driver: its result lines are its output")]
        {
            println!(
                "{}",
                json!({"id": id, "category": category, "factor": factor, "true_factor": true_factor,
                       "f1": t.f1(), "tp": t.tp, "truths": t.truths, "preds": t.preds,
                       "diameter_model": d * factor, "diameter_fg": d_fg * factor, "uncertainty": unc / near.max(1) as f64,
                       "boundary_in_fg": inside / n_fg.max(1) as f64,
                       "boundary_share": bd_in as f64 / n_fg.max(1) as f64, "fg_share": n_fg as f64 / fg.len() as f64})
            );
        }
    }
    Ok(())
}
