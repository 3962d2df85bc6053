//! The evaluation's results as files: `summary.json` (everything; what `--baseline` reads),
//! `metrics.json`, `objects.csv` / `objects.json` (one row per nucleus, CellProfiler-style
//! columns), `images.csv` (one row per image) and the Markdown report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use cellops_formats::params::Applied;
use cellops_measure::metrics::{Matching, Scores};
use cellops_measure::objects::{Cell, ImageSummary, Stats};
use serde::{Deserialize, Serialize};

pub use cellops_measure::table::Table;

/// The format tag of `summary.json`.
pub const FORMAT: &str = "cellops.evaluation/1";

/// Segmentation scores of one image or of all pooled (StarDist's names for the matching).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageMetrics {
    /// Pixel Dice of the foreground.
    pub dice: f64,
    /// Pixel IoU of the foreground.
    pub iou: f64,
    /// Aggregated Jaccard index.
    pub aji: f64,
    /// Instance matching at each IoU threshold.
    pub matching: Vec<Matching>,
}

impl ImageMetrics {
    /// The figures of `scores`.
    pub fn of(scores: &Scores) -> Self {
        Self {
            dice: scores.pixels.dice(),
            iou: scores.pixels.iou(),
            aji: scores.aji.value(),
            matching: scores.matching(),
        }
    }

    /// The matching at IoU threshold `t`.
    pub fn at(&self, t: f64) -> Option<&Matching> {
        self.matching.iter().find(|m| (m.thresh - t).abs() < 1e-9)
    }
}

/// The parameter file used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamsInfo {
    /// Its path as given.
    pub file: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// Its description.
    pub description: String,
    /// Its pixel size; none when each image's own applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixel_size_um: Option<f64>,
}

impl ParamsInfo {
    /// The pixel size, as the reports' first line says it.
    pub fn pixel_line(&self) -> String {
        match self.pixel_size_um {
            Some(um) => format!("pixel {um} µm"),
            None => "pixel size from each image's metadata".into(),
        }
    }
}

/// Where the segmentation came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// `model` or `masks`.
    pub kind: String,
    /// The bundle or mask folder.
    pub path: String,
    /// The bundle's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_id: Option<String>,
}

/// One image's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Counts, statistics, scores, class.
    #[serde(flatten)]
    pub summary: ImageSummary,
    /// The overlay PNG, relative to the output folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<String>,
    /// The label image (`outputs.labels`), relative to the output folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    /// The nuclei as GeoJSON (`outputs.geojson`), relative to the output folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geojson: Option<String>,
    /// Segmentation scores against the ground truth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<ImageMetrics>,
    /// The classical line's scores on the same image (beside a model's, with ground truth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classical: Option<ImageMetrics>,
    /// Model pixels per image pixel: the factor the model saw the image at (a model trained at
    /// a nucleus scale estimates it per image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// The side of a pixel the image was measured at, in micrometres.
    #[serde(default)]
    pub pixel_size_um: f64,
    /// Where that came from: `parameter file`, or the image's `OME-XML`, `ImageJ metadata` or
    /// `TIFF resolution`.
    #[serde(default)]
    pub pixel_size_from: String,
    /// The image's own pixel size where it differs from the parameter file's (which applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pixel_size_um: Option<f64>,
    /// How a whole-slide image was measured (`--slide`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slide: Option<SlideRecord>,
}

/// How a slide was measured: what of it, in which tiles, under which calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlideRecord {
    /// The slide file.
    pub file: String,
    /// Level 0's width and height.
    pub size: [u32; 2],
    /// The level-0 rectangle the tiles covered: x, y, width, height.
    pub region: [u32; 4],
    /// What was measured: `tissue` (found on the overview) or the `region` given.
    pub area: String,
    /// The area the density is per, in mm².
    pub area_mm2: f64,
    /// Tiles analysed.
    pub tiles: usize,
    /// The side of a tile's core (level-0 pixels).
    pub tile: u32,
    /// The margin read around each core.
    pub overlap: u32,
    /// The grey levels every tile was stretched between (the classical line's; from the
    /// tissue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grey_levels: Option<[f64; 2]>,
    /// The classical threshold every tile was cut at (8-bit grey, after the levels).
    pub threshold: f64,
    /// Where the model's rescaling factor (`scale`) came from, when a model ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_from: Option<String>,
    /// The most nuclei per mm² in a cell of the overview's heat map.
    pub peak_density_per_mm2: f64,
}

/// Figures over all images.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Images evaluated.
    pub images: usize,
    /// Nuclei measured.
    pub nuclei: usize,
    /// Statistics of each feature over all nuclei.
    pub features: BTreeMap<String, Stats>,
    /// Nuclei per size class.
    pub size_classes: BTreeMap<String, usize>,
    /// Images per image class.
    pub image_classes: BTreeMap<String, usize>,
    /// Nuclei per DAB class (negative, 1+, 2+, 3+), for IHC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dab_classes: Option<[usize; 4]>,
    /// Percentage of DAB-positive nuclei over all images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_percent: Option<f64>,
    /// H-score over all nuclei.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h_score: Option<f64>,
}

impl Totals {
    /// Counts one image's summary in.
    pub fn add(&mut self, s: &ImageSummary) {
        self.nuclei += s.count;
        for (k, n) in &s.size_classes {
            *self.size_classes.entry(k.clone()).or_insert(0) += n;
        }
        if let Some(c) = &s.class {
            *self.image_classes.entry(c.clone()).or_insert(0) += 1;
        }
        if let Some(d) = s.dab_classes {
            let t = self.dab_classes.get_or_insert([0; 4]);
            for (t, d) in t.iter_mut().zip(d) {
                *t += d;
            }
        }
    }

    /// After the last image: the DAB scores over all nuclei and each feature's statistics over
    /// its `values`.
    pub fn finish(&mut self, values: &BTreeMap<String, Vec<f64>>) {
        if let Some((p, h)) = self.dab_classes.and_then(cellops_measure::stain::scores) {
            self.positive_percent = Some(p);
            self.h_score = Some(h);
        }
        self.features = values
            .iter()
            .filter_map(|(k, v)| Stats::of(v).map(|s| (k.clone(), s)))
            .collect();
    }
}

/// Everything an evaluation found (`summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// [`FORMAT`].
    pub format: String,
    /// The cellops version that wrote it.
    pub tool_version: String,
    /// The parameter file.
    pub params: ParamsInfo,
    /// The segmentation's source.
    pub source: SourceInfo,
    /// Per image.
    pub images: Vec<ImageRecord>,
    /// Over all images.
    pub totals: Totals,
    /// Pooled segmentation scores, with ground truth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<ImageMetrics>,
    /// The classical line's pooled scores on the same images (threshold + distance watershed,
    /// no model), beside a model's: whether the model is worth it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classical: Option<ImageMetrics>,
    /// The post-processing that applied and where each value came from (a model bundle's values
    /// are at the model's scale, and follow each image's `scale`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postprocessing: Option<PostProcessingInfo>,
}

/// The post-processing values of a run and their origins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostProcessingInfo {
    /// `model`, `threshold` or `masks`.
    pub method: String,
    /// Each value: name, value, origin.
    pub values: Vec<(String, f64, String)>,
}

impl PostProcessingInfo {
    /// The values of `applied` (at scale 1) under `method`.
    pub fn of(method: &str, applied: &Applied) -> Self {
        let v = &applied.values;
        Self {
            method: method.to_owned(),
            values: vec![
                (
                    "probability_threshold".into(),
                    v.probability_threshold,
                    applied.probability_threshold.as_str().into(),
                ),
                ("h_px".into(), v.h_px, applied.h_px.as_str().into()),
                ("min_area_px".into(), v.min_area_px, applied.min_area_px.as_str().into()),
                (
                    "fill_holes_px".into(),
                    v.fill_holes_px,
                    applied.fill_holes_px.as_str().into(),
                ),
                (
                    "boundary_cut".into(),
                    v.boundary_cut,
                    applied.boundary_cut.as_str().into(),
                ),
            ],
        }
    }
}

/// The per-image table (`images.csv`): counts, scores, class, tags, dropped objects, metrics, and
/// `Mean_`/`Median_`/`StDev_` of every feature (CellProfiler's per-image aggregate names).
pub fn images_table(e: &Evaluation) -> Table {
    let mut t = Table::default();
    for r in &e.images {
        let s = &r.summary;
        let mut cells = vec![
            ("Image".to_owned(), Cell::Text(s.image.clone())),
            ("Width".into(), Cell::Int(s.width as i64)),
            ("Height".into(), Cell::Int(s.height as i64)),
            ("Count_Nuclei".into(), Cell::Int(s.count as i64)),
            ("Density_per_mm2".into(), Cell::Float(s.density_per_mm2)),
            ("Class".into(), Cell::Text(s.class.clone().unwrap_or_default())),
            ("Tags".into(), Cell::Text(s.tags.join(";"))),
            ("Dropped_TooSmall".into(), Cell::Int(s.dropped.too_small as i64)),
            ("Dropped_TooLarge".into(), Cell::Int(s.dropped.too_large as i64)),
            ("Dropped_FormFactor".into(), Cell::Int(s.dropped.form_factor as i64)),
            ("Dropped_Border".into(), Cell::Int(s.dropped.border as i64)),
        ];
        if let Some(d) = s.dab_classes {
            for (name, n) in ["Negative", "1plus", "2plus", "3plus"].iter().zip(d) {
                cells.push((format!("Count_DAB_{name}"), Cell::Int(n as i64)));
            }
            cells.push((
                "PositivePercent".into(),
                Cell::Float(s.positive_percent.unwrap_or(f64::NAN)),
            ));
            cells.push(("HScore".into(), Cell::Float(s.h_score.unwrap_or(f64::NAN))));
        }
        for (name, n) in &s.size_classes {
            cells.push((format!("Count_Size_{name}"), Cell::Int(*n as i64)));
        }
        if let Some(m) = &r.metrics {
            cells.push(("Dice".into(), Cell::Float(m.dice)));
            cells.push(("IoU".into(), Cell::Float(m.iou)));
            cells.push(("AJI".into(), Cell::Float(m.aji)));
            for x in &m.matching {
                let t = x.thresh;
                cells.push((format!("F1@{t}"), Cell::Float(x.f1)));
                cells.push((format!("Precision@{t}"), Cell::Float(x.precision)));
                cells.push((format!("Recall@{t}"), Cell::Float(x.recall)));
                cells.push((format!("PQ@{t}"), Cell::Float(x.panoptic_quality)));
            }
        }
        for (name, st) in &s.features {
            cells.push((format!("Mean_{name}"), Cell::Float(st.mean)));
            cells.push((format!("Median_{name}"), Cell::Float(st.median)));
            cells.push((format!("StDev_{name}"), Cell::Float(st.std)));
        }
        t.push(cells);
    }
    t
}

/// `metrics.json`: pooled and per-image scores.
pub fn metrics_json(e: &Evaluation) -> Option<serde_json::Value> {
    let pooled = e.metrics.as_ref()?;
    let per_image: serde_json::Map<String, serde_json::Value> = e
        .images
        .iter()
        .filter_map(|r| {
            r.metrics
                .as_ref()
                .map(|m| (r.summary.image.clone(), serde_json::to_value(m).unwrap_or_default()))
        })
        .collect();
    Some(serde_json::json!({
        "format": "cellops.metrics/1",
        "pooled": pooled,
        "images": per_image,
    }))
}

/// Features shown in the reports' tables, in order, when present.
pub const KEY_FEATURES: [&str; 10] = [
    "AreaShape_Area_um2",
    "AreaShape_Perimeter_um",
    "AreaShape_FormFactor",
    "AreaShape_Compactness",
    "AreaShape_Eccentricity",
    "AreaShape_Solidity",
    "AreaShape_EquivalentDiameter_um",
    "AreaShape_MaxFeretDiameter_um",
    "AreaShape_MinFeretDiameter_um",
    "Intensity_MeanOD_DAB",
];

fn fmt(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A number in a report table; each renderer formats it its own way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Figure {
    /// A count, written as it is.
    Count(usize),
    /// A measured value (`–` when not finite).
    Value(f64),
}

/// The totals row of both reports (Markdown and HTML): its column names and figures. Stain
/// columns come with IHC files, score columns with ground truth.
pub fn totals_row(e: &Evaluation) -> (Vec<&'static str>, Vec<Figure>) {
    let t = &e.totals;
    let mut names = vec!["images", "nuclei", "nuclei / image"];
    let mut figures = vec![
        Figure::Count(t.images),
        Figure::Count(t.nuclei),
        Figure::Value(t.nuclei as f64 / t.images.max(1) as f64),
    ];
    if let (Some(p), Some(h)) = (t.positive_percent, t.h_score) {
        names.extend(["positive %", "H-score"]);
        figures.extend([Figure::Value(p), Figure::Value(h)]);
    }
    if let Some(m) = &e.metrics {
        let at = m.at(0.5);
        names.extend(["F1@0.5", "PQ@0.5", "Dice", "AJI"]);
        figures.extend([
            Figure::Value(at.map_or(f64::NAN, |x| x.f1)),
            Figure::Value(at.map_or(f64::NAN, |x| x.panoptic_quality)),
            Figure::Value(m.dice),
            Figure::Value(m.aji),
        ]);
    }
    (names, figures)
}

fn figure(f: Figure) -> String {
    match f {
        Figure::Count(n) => n.to_string(),
        Figure::Value(v) => fmt(v),
    }
}

/// The report's title, source line and totals table.
fn markdown_head(md: &mut String, e: &Evaluation) {
    let _ = writeln!(md, "## Evaluation: {}\n", e.params.description);
    let _ = writeln!(
        md,
        "Parameters `{}` ({}) · segmentation from {} `{}`{}\n",
        e.params.file,
        e.params.pixel_line(),
        e.source.kind,
        e.source.path,
        e.source
            .bundle_id
            .as_ref()
            .map(|id| format!(" (bundle {id})"))
            .unwrap_or_default()
    );
    let (names, figures) = totals_row(e);
    let _ = writeln!(md, "| {} |", names.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(names.len()));
    let cells: Vec<String> = figures.into_iter().map(figure).collect();
    let _ = write!(md, "| {} |", cells.join(" | "));
    md.push_str("\n\n");
}

/// The class counts (image, DAB and size classes) and the key features' statistics.
fn markdown_classes(md: &mut String, t: &Totals) {
    if !t.image_classes.is_empty() {
        md.push_str("**Image classes:** ");
        let parts: Vec<String> = t.image_classes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        md.push_str(&parts.join(" · "));
        md.push_str("\n\n");
    }
    if let Some(d) = t.dab_classes {
        let _ = writeln!(
            md,
            "**DAB classes:** negative {} · 1+ {} · 2+ {} · 3+ {}\n",
            d[0], d[1], d[2], d[3]
        );
    }
    if !t.size_classes.is_empty() {
        md.push_str("**Size classes:** ");
        let parts: Vec<String> = t.size_classes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        md.push_str(&parts.join(" · "));
        md.push_str("\n\n");
    }
    let feats: Vec<(&str, &Stats)> = KEY_FEATURES
        .iter()
        .filter_map(|k| t.features.get(*k).map(|s| (*k, s)))
        .collect();
    if !feats.is_empty() {
        md.push_str("### Nuclei (all images)\n\n| feature | mean | median | std |\n|---|---|---|---|\n");
        for (k, s) in feats {
            let _ = writeln!(md, "| {k} | {} | {} | {} |", fmt(s.mean), fmt(s.median), fmt(s.std));
        }
        md.push('\n');
    }
}

/// The pooled scores against ground truth at every IoU threshold.
fn markdown_scores(md: &mut String, m: &ImageMetrics) {
    md.push_str("### Segmentation against ground truth (pooled)\n\n");
    let _ = writeln!(md, "Dice {} · IoU {} · AJI {}\n", fmt(m.dice), fmt(m.iou), fmt(m.aji));
    md.push_str("| IoU τ | TP | FP | FN | precision | recall | F1 | accuracy (DSB) | mean matched IoU | PQ |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for x in &m.matching {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            x.thresh,
            x.tp,
            x.fp,
            x.fn_,
            fmt(x.precision),
            fmt(x.recall),
            fmt(x.f1),
            fmt(x.accuracy),
            fmt(x.mean_matched_score),
            fmt(x.panoptic_quality)
        );
    }
    md.push('\n');
}

/// The Markdown report (also the step summary). At most `max_rows` images are listed.
pub fn markdown(e: &Evaluation, diff: Option<&str>, max_rows: usize) -> String {
    let mut md = String::new();
    let t = &e.totals;
    markdown_head(&mut md, e);
    markdown_classes(&mut md, t);
    if let Some(pp) = &e.postprocessing {
        md.push_str(&postprocessing_markdown(pp));
    }
    if let (Some(m), Some(c)) = (&e.metrics, &e.classical) {
        md.push_str(&versus_classical(m, c));
    }
    if let Some(m) = &e.metrics {
        markdown_scores(&mut md, m);
    }
    if let Some(d) = diff {
        md.push_str(d);
        md.push('\n');
    }
    let _ = writeln!(md, "### Images\n");
    let ihc = t.positive_percent.is_some();
    let _ = writeln!(
        md,
        "| image | nuclei | density / mm² | class |{}{}",
        if ihc { " positive % | H-score |" } else { "" },
        if e.metrics.is_some() { " F1@0.5 | Dice |" } else { "" }
    );
    let cols = 4 + if ihc { 2 } else { 0 } + if e.metrics.is_some() { 2 } else { 0 };
    let _ = writeln!(md, "|{}", "---|".repeat(cols));
    for r in e.images.iter().take(max_rows) {
        let s = &r.summary;
        let _ = write!(
            md,
            "| {} | {} | {} | {} |",
            s.image,
            s.count,
            fmt(s.density_per_mm2),
            s.class.as_deref().unwrap_or("")
        );
        if ihc {
            let _ = write!(
                md,
                " {} | {} |",
                fmt(s.positive_percent.unwrap_or(f64::NAN)),
                fmt(s.h_score.unwrap_or(f64::NAN))
            );
        }
        if let Some(m) = &r.metrics {
            let _ = write!(md, " {} | {} |", fmt(m.at(0.5).map_or(f64::NAN, |x| x.f1)), fmt(m.dice));
        } else if e.metrics.is_some() {
            md.push_str(" | |");
        }
        md.push('\n');
    }
    if e.images.len() > max_rows {
        let _ = writeln!(md, "\n… and {} more in `images.csv`.", e.images.len() - max_rows);
    }
    md
}

/// The post-processing section of the report.
fn postprocessing_markdown(pp: &PostProcessingInfo) -> String {
    let mut md = format!(
        "### Post-processing ({})\n\n| setting | value | from |\n|---|---|---|\n",
        pp.method
    );
    for (name, value, origin) in &pp.values {
        let _ = writeln!(md, "| {name} | {} | {origin} |", fmt(*value));
    }
    md.push_str("\nA model bundle's sizes are in pixels at the model's scale and follow each image's scale.\n\n");
    md
}

/// The model's pooled scores beside the classical line's.
fn versus_classical(m: &ImageMetrics, c: &ImageMetrics) -> String {
    let mut md = String::from(
        "### Model vs classical (same images)\n\n| segmentation | F1@0.5 | AP@0.5 | PQ@0.5 | F1@0.75 | Dice |\n|---|---|---|---|---|---|\n",
    );
    for (name, x) in [("model", m), ("classical (threshold + watershed)", c)] {
        let (a, b) = (x.at(0.5), x.at(0.75));
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} |",
            fmt(a.map_or(f64::NAN, |v| v.f1)),
            fmt(a.map_or(f64::NAN, |v| v.accuracy)),
            fmt(a.map_or(f64::NAN, |v| v.panoptic_quality)),
            fmt(b.map_or(f64::NAN, |v| v.f1)),
            fmt(x.dice)
        );
    }
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_take_the_union_of_columns_and_quote_csv() {
        let mut t = Table::default();
        t.push(vec![("a".into(), Cell::Int(1)), ("b".into(), Cell::Text("x,y".into()))]);
        t.push(vec![("a".into(), Cell::Int(2)), ("c".into(), Cell::Float(f64::NAN))]);
        assert_eq!(t.csv(), "a,b,c\n1,\"x,y\",\n2,,\n");
        let j = t.json();
        assert_eq!(j[1]["c"], serde_json::Value::Null);
        assert!(j[1].get("b").is_none());
    }
}
