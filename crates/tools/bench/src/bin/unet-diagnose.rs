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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use cellops_analysis::segment;
use cellops_dataset::ops::scale;
use cellops_formats::dataset::{PAPER_IMAGES, PAPER_MASK_SUFFIX, PAPER_MASKS, SPLIT_CSV, Subset, read_split_file};
use cellops_formats::params::ParamsFile;
use cellops_measure::metrics::Overlap;
use cellops_unet::Device;
use cellops_unet::inference::{PredictConfig, Prediction, Predictor, SizeStart, nucleus_diameter};
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
    /// Where the size estimate starts (for a bundle without a size model).
    #[arg(long, value_enum, default_value_t = SizeStart::Image)]
    start: SizeStart,
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

impl std::ops::AddAssign<&Tally> for Tally {
    fn add_assign(&mut self, o: &Tally) {
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
}

impl Tally {
    fn f1(&self) -> f64 {
        let (fp, fn_) = (self.preds - self.tp, self.truths - self.tp);
        2.0 * self.tp as f64 / (2 * self.tp + fp + fn_).max(1) as f64
    }
}

/// Sorts the errors of `pred` against `truth` (label images of the same size).
fn diagnose(truth: &[u32], pred: &[u32]) -> anyhow::Result<Tally> {
    let o = Overlap::new(truth, pred)?;
    let (t_area, p_area) = (o.true_areas(), o.pred_areas());
    let pairs: Vec<(usize, usize, u64)> = o.pairs().collect();
    // IoU > 0.5 pairs are one-to-one, so they are the optimal matching at τ = 0.5.
    let mut matched_t = vec![false; t_area.len()];
    let mut matched_p = vec![false; p_area.len()];
    // Per true nucleus: pixels in any predicted object, and its largest overlap (object, pixels).
    let mut in_fg = vec![0u64; t_area.len()];
    let mut best: Vec<Option<(usize, u64)>> = vec![None; t_area.len()];
    // Per predicted object: how many true nuclei it covers at least half of.
    let mut covers = vec![0usize; p_area.len()];
    let mut touches = vec![false; p_area.len()];
    for &(t, p, n) in &pairs {
        if n as f64 / (t_area[t] + p_area[p] - n) as f64 > 0.5 {
            (matched_t[t], matched_p[p]) = (true, true);
        }
        in_fg[t] += n;
        if best[t].is_none_or(|(_, m)| n > m) {
            best[t] = Some((p, n));
        }
        covers[p] += usize::from(2 * n >= t_area[t]);
        touches[p] = true;
    }
    let mut areas = t_area.to_vec();
    areas.sort_unstable();
    let median = areas.get(areas.len() / 2).copied().unwrap_or(0);
    let mut out = Tally {
        images: 1,
        truths: t_area.len(),
        preds: p_area.len(),
        tp: matched_t.iter().filter(|&&m| m).count(),
        ..Tally::default()
    };
    for (t, &area) in t_area.iter().enumerate().filter(|&(t, _)| !matched_t[t]) {
        out.fn_small += usize::from(4 * area < median);
        match best[t] {
            _ if 2 * in_fg[t] < area => out.absent += 1,
            Some((p, n)) if 2 * n >= area && covers[p] >= 2 => out.merged += 1,
            Some((_, n)) if 2 * n >= area => out.shape += 1,
            _ => out.split += 1,
        }
    }
    for p in (0..p_area.len()).filter(|&p| !matched_p[p]) {
        if touches[p] {
            out.fp_overlap += 1;
        } else {
            out.fp_background += 1;
        }
    }
    Ok(out)
}

/// The images of `split` in a DSB2018 copy: `(id, category)` from its `manifest.csv`.
fn images_of(dataset: &Path, split: &str) -> anyhow::Result<Vec<(String, String)>> {
    let path = dataset.join(SPLIT_CSV);
    let split = Subset::parse(split).with_context(|| format!("unknown split {split}"))?;
    let splits = read_split_file(&path)?;
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let (id, category) = column("id")
        .zip(column("category"))
        .with_context(|| format!("{}: no id and category columns", path.display()))?;
    Ok(lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|r| r.len() > id.max(category) && splits.get(r[id]) == Some(&split))
        .map(|r| (r[id].to_owned(), r[category].to_owned()))
        .collect())
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    cellops_unet::tune_allocator();
    let device = Device::flex();
    let predictor =
        Predictor::load(&a.bundle, &device, PredictConfig::new().with_start(a.start)).context("loading the bundle")?;
    let params = ParamsFile::read(&a.params)?.params;
    // DSB's images record no pixel size: the parameter file must give one.
    let um = params
        .pixel_size_um
        .ok_or_else(|| anyhow::anyhow!("{} sets no pixel_size_um", a.params.display()))?;
    let meta = predictor.meta().clone();
    let target = meta
        .preprocessing
        .scale
        .map(|s| s.diameter_px)
        .context("the bundle has no scale")?;
    let mut totals: BTreeMap<(String, String), Tally> = BTreeMap::new();
    for (id, category) in images_of(&a.dataset, &a.split)?.iter().take(a.limit) {
        let (id, category) = (id.as_str(), category.as_str());
        let read = |p: PathBuf| -> anyhow::Result<cellops_dataset::Raster> {
            let bytes = std::fs::read(&p).with_context(|| p.display().to_string())?;
            Ok(cellops_dataset::io::decode(&bytes, 1 << 28)?.raster)
        };
        let image = read(a.dataset.join(PAPER_IMAGES).join(format!("{id}.png")))?;
        let mask = a.dataset.join(PAPER_MASKS).join(format!("{id}{PAPER_MASK_SUFFIX}.png"));
        let truth = segment::truth(&read(mask)?);
        let true_factor = scale::factor(target, scale::median_diameter(&truth).unwrap_or(target));
        if a.grid {
            grid(&predictor, &image, &truth, (&params, um), id, category, true_factor)?;
            continue;
        }
        let estimate = predictor.estimate_scale(&image, target)?;
        let start = estimate.start;
        let mut runs: Vec<(&str, f64, Prediction)> = vec![("estimate", estimate.factor, estimate.prediction)];
        if a.oracle {
            runs.push(("oracle", true_factor, predictor.predict_at(&image, Some(true_factor))?));
        }
        for (name, factor, pred) in runs {
            let labels = segment::from_prediction(
                &pred,
                meta.training.targets(),
                (&params, um),
                meta.postprocessing.as_ref(),
            )?;
            let t = diagnose(&truth, &labels)?;
            if a.per_image {
                #[allow(clippy::print_stdout, reason = "a benchmark driver: its result lines are its output")]
                {
                    println!(
                        "{}",
                        json!({"id": id, "category": category, "scale": name, "factor": factor, "start": start,
                               "true_factor": true_factor, "f1": t.f1(), "tally": t})
                    );
                }
            }
            for key in [category, "all"] {
                *totals.entry((name.to_owned(), key.to_owned())).or_default() += &t;
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
    params: (&cellops_formats::params::CellParams, f64),
    id: &str,
    category: &str,
    true_factor: f64,
) -> anyhow::Result<()> {
    let meta = predictor.meta();
    let target = meta.preprocessing.scale.map_or(20.0, |s| s.diameter_px);
    for k in -4..=2 {
        let factor = 2f64.powf(f64::from(k) / 2.0);
        let pred = predictor.predict_at(image, Some(factor))?;
        let labels = segment::from_prediction(&pred, meta.training.targets(), params, meta.postprocessing.as_ref())?;
        let t = diagnose(truth, &labels)?;
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
        let min_diameter = target / (4.0 * factor);
        let d = scale::median_diameter_above(&labels, min_diameter).unwrap_or(0.0);
        // What the size estimate measures: the foreground alone, split by the distance watershed.
        let d_fg = nucleus_diameter(&pred, min_diameter).unwrap_or(0.0);
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
