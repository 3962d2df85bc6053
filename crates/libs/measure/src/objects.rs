//! Measuring the nuclei of one image under a cell-parameter file: filters, shape and
//! intensity measurements, DAB scoring, size classes, and the image's summary, scores and class.
//!
//! Columns use CellProfiler's names (`AreaShape_Area`, `Intensity_MeanIntensity_Grey`, …); lengths
//! and areas are also given in µm and µm² (`…_um`, `…_um2`) from the file's pixel size.
//! `AreaShape_Orientation` is in degrees: scikit-image's orientation (the angle between the row
//! axis and the major axis) × 180/π. `AreaShape_Center_X/Y` are the centroid's column and row.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use cellops_dataset::{Raster, Samples};

use crate::intensity::{IntensityProps, intensities};
use crate::shape::{RegionProps, regionprops};
use crate::stain::{DabClass, StainMatrix, scores};
use cellops_formats::params::{CellParams, Measurement, Score};

/// A value in a report table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Cell {
    /// An integer.
    Int(i64),
    /// A real number (non-finite values are written as empty / `null`).
    Float(f64),
    /// Text.
    Text(String),
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Int(v) => write!(f, "{v}"),
            Cell::Float(v) if v.is_finite() => write!(f, "{v}"),
            Cell::Float(_) => Ok(()),
            Cell::Text(t) => f.write_str(t),
        }
    }
}

impl Cell {
    /// The number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Int(v) => Some(*v as f64),
            Cell::Float(v) => Some(*v),
            Cell::Text(_) => None,
        }
    }
}

/// DAB measurements of one nucleus.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NucleusStain {
    /// Mean haematoxylin optical density.
    pub haematoxylin_od: f64,
    /// Mean DAB optical density.
    pub dab_od: f64,
    /// The DAB class.
    pub class: DabClass,
}

/// One measured nucleus.
#[derive(Debug, Clone, PartialEq)]
pub struct Nucleus {
    /// Shape measurements (pixels).
    pub shape: RegionProps,
    /// Whether it touches the image border.
    pub touches_border: bool,
    /// Per-channel intensities, when an image was given.
    pub intensity: Option<IntensityProps>,
    /// DAB scoring, for IHC parameter files with an RGB image.
    pub stain: Option<NucleusStain>,
    /// Its size class, when the file defines them.
    pub size_class: Option<String>,
}

/// Why objects were not measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// Below `filters.min_area_um2`.
    pub too_small: usize,
    /// Above `filters.max_area_um2`.
    pub too_large: usize,
    /// Form factor outside `filters.form_factor`.
    pub form_factor: usize,
    /// Touching the border with `filters.exclude_border`.
    pub border: usize,
}

/// Mean, median and (population) standard deviation of a feature over an image's nuclei.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub median: f64,
    /// Standard deviation (divided by n).
    pub std: f64,
}

impl Stats {
    /// Stats of `values` (`None` when empty).
    ///
    /// ```
    /// use cellops_measure::objects::Stats;
    /// let s = Stats::of(&[1.0, 2.0, 3.0, 10.0]).expect("values");
    /// assert_eq!((s.mean, s.median), (4.0, 2.5));
    /// ```
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let m = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[m]
        } else {
            (sorted[m - 1] + sorted[m]) / 2.0
        };
        Some(Self { mean, median, std })
    }
}

/// The per-image summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageSummary {
    /// The image's name (file stem).
    pub image: String,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Nuclei measured (after filters).
    pub count: usize,
    /// Image area in mm².
    pub area_mm2: f64,
    /// Nuclei per mm².
    pub density_per_mm2: f64,
    /// Objects dropped by the filters.
    pub dropped: Dropped,
    /// Per-feature statistics over the nuclei, by column name.
    pub features: BTreeMap<String, Stats>,
    /// Nuclei per size class.
    pub size_classes: BTreeMap<String, usize>,
    /// Nuclei per DAB class (negative, 1+, 2+, 3+), for IHC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dab_classes: Option<[usize; 4]>,
    /// Percentage of DAB-positive nuclei, for IHC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub positive_percent: Option<f64>,
    /// H-score (0–300), for IHC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h_score: Option<f64>,
    /// The image's class under the file's rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Tags: the class, `empty` without nuclei, `ihc-negative` when no nucleus is DAB-positive.
    pub tags: Vec<String>,
}

impl ImageSummary {
    /// An image-level score, when defined.
    pub fn score(&self, s: Score) -> Option<f64> {
        match s {
            Score::Count => Some(self.count as f64),
            Score::DensityPerMm2 => Some(self.density_per_mm2),
            Score::MeanAreaUm2 => self.features.get("AreaShape_Area_um2").map(|s| s.mean),
            Score::MeanFormFactor => self.features.get("AreaShape_FormFactor").map(|s| s.mean),
            Score::PositivePercent => self.positive_percent,
            Score::HScore => self.h_score,
        }
    }
}

/// Everything measured in one image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageMeasurement {
    /// The nuclei, by label.
    pub nuclei: Vec<Nucleus>,
    /// The label image after the filters (dropped objects are 0).
    pub labels: Vec<u32>,
    /// The segmentation to score against ground truth: after the size and shape filters, but
    /// with objects on the border kept (ground truth has them).
    pub segmentation: Vec<u32>,
    /// The report columns of each nucleus ([`columns`]), in the order of `nuclei`.
    pub rows: Vec<Vec<(String, Cell)>>,
    /// The summary.
    pub summary: ImageSummary,
}

/// What is being measured and how it is named.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The parameter file.
    pub params: &'a CellParams,
    /// The side of a pixel in micrometres: the parameter file's, or the image's own.
    pub pixel_size_um: f64,
    /// The deconvolution matrix, for IHC files.
    pub stain: Option<StainMatrix>,
}

impl<'a> Context<'a> {
    /// The context of a (validated) parameter file for an image with pixels of `pixel_size_um`.
    pub fn new(params: &'a CellParams, pixel_size_um: f64) -> Self {
        Self {
            params,
            pixel_size_um,
            stain: params.stain.as_ref().and_then(|s| StainMatrix::new(&s.vectors)),
        }
    }
}

/// Names of the measured channels of an image with `channels` samples per pixel (alpha dropped).
pub fn channel_names(channels: usize) -> Vec<&'static str> {
    match channels {
        1 | 2 => vec!["Grey"],
        _ => vec!["Red", "Green", "Blue"],
    }
}

fn interleaved_f64(raster: &Raster) -> (Vec<f64>, usize) {
    let c = usize::from(raster.channels);
    let keep = match c {
        1 | 2 => 1,
        _ => 3,
    };
    let mut out = Vec::with_capacity(raster.samples.len() / c.max(1) * keep);
    match &raster.samples {
        Samples::U8(s) => {
            for px in s.chunks_exact(c) {
                out.extend(px[..keep].iter().map(|&v| f64::from(v)));
            }
        }
        Samples::U16(s) => {
            for px in s.chunks_exact(c) {
                out.extend(px[..keep].iter().map(|&v| f64::from(v)));
            }
        }
    }
    (out, keep)
}

/// Measures the objects of `labels` (`width` wide) under the context's parameter file, with
/// intensities from `image` when given (it must have the same size).
pub fn measure_image(
    name: &str,
    mut labels: Vec<u32>,
    width: usize,
    image: Option<&Raster>,
    ctx: &Context<'_>,
) -> ImageMeasurement {
    let p = ctx.params;
    let height = labels.len().checked_div(width).unwrap_or(0);
    let um2 = ctx.pixel_size_um * ctx.pixel_size_um;
    let mut dropped = Dropped::default();
    let mut keep = std::collections::HashSet::new();
    let mut border_dropped = std::collections::HashSet::new();
    let mut kept_props = Vec::new();
    for shape in regionprops(&labels, width) {
        let area = shape.area as f64 * um2;
        let border = shape.bbox[0] == 0 || shape.bbox[1] == 0 || shape.bbox[2] == height || shape.bbox[3] == width;
        if area < p.filters.min_area_um2 {
            dropped.too_small += 1;
        } else if p.filters.max_area_um2.is_some_and(|m| area > m) {
            dropped.too_large += 1;
        } else if !p.filters.form_factor.contains(shape.form_factor) {
            dropped.form_factor += 1;
        } else if border && p.filters.exclude_border {
            dropped.border += 1;
            border_dropped.insert(shape.label as u32);
        } else {
            keep.insert(shape.label as u32);
            kept_props.push((shape, border));
        }
    }
    let mut segmentation = labels.clone();
    for (l, s) in labels.iter_mut().zip(segmentation.iter_mut()) {
        if *l != 0 && !keep.contains(l) {
            if !border_dropped.contains(l) {
                *s = 0;
            }
            *l = 0;
        }
    }
    let image = image.filter(|r| r.width as usize == width && r.height as usize == height);
    let (mut intensity, stain) = match image {
        Some(r) => {
            let (samples, channels) = interleaved_f64(r);
            let by_label: BTreeMap<u64, IntensityProps> = intensities(&labels, &samples, channels)
                .into_iter()
                .map(|i| (i.label, i))
                .collect();
            let stain = match (&ctx.stain, &p.stain) {
                (Some(m), Some(s)) if channels == 3 => {
                    let (h, d) = m.deconvolve(&samples, channels, s.background);
                    let hd: Vec<f32> = h.iter().zip(&d).flat_map(|(a, b)| [*a, *b]).collect();
                    let means: BTreeMap<u64, (f64, f64)> = intensities(&labels, &hd, 2)
                        .into_iter()
                        .map(|i| (i.label, (i.mean[0], i.mean[1])))
                        .collect();
                    Some((means, s.dab_od_thresholds))
                }
                _ => None,
            };
            (Some(by_label), stain)
        }
        None => (None, None),
    };
    let nuclei: Vec<Nucleus> = kept_props
        .into_iter()
        .map(|(shape, touches_border)| {
            let label = shape.label;
            let area_um2 = shape.area as f64 * um2;
            Nucleus {
                touches_border,
                intensity: intensity.as_mut().and_then(|m| m.remove(&label)),
                stain: stain.as_ref().and_then(|(means, t)| {
                    means.get(&label).map(|&(h, d)| NucleusStain {
                        haematoxylin_od: h,
                        dab_od: d,
                        class: DabClass::of(d, t),
                    })
                }),
                size_class: p.size_class(area_um2).map(str::to_owned),
                shape,
            }
        })
        .collect();
    let channels = image.map(|r| usize::from(r.channels));
    let rows: Vec<Vec<(String, Cell)>> = nuclei.iter().map(|n| columns(name, n, ctx, channels)).collect();
    let measured = Measured {
        name,
        width,
        height,
        nuclei: &nuclei,
        rows: &rows,
        channels,
    };
    let summary = summarise(&measured, dropped, ctx);
    ImageMeasurement {
        nuclei,
        labels,
        segmentation,
        rows,
        summary,
    }
}

/// The report columns of a nucleus, in order (the same names for every nucleus of a run).
pub fn columns(image: &str, n: &Nucleus, ctx: &Context<'_>, channels: Option<usize>) -> Vec<(String, Cell)> {
    let p = ctx.params;
    let s = &n.shape;
    let um = ctx.pixel_size_um;
    let um2 = um * um;
    let mut out: Vec<(String, Cell)> = vec![
        ("Image".into(), Cell::Text(image.to_owned())),
        ("ObjectNumber".into(), Cell::Int(s.label as i64)),
    ];
    let mut f = |name: &str, v: f64| out.push((name.to_owned(), Cell::Float(v)));
    for m in &p.measurements {
        match m {
            Measurement::Area => {
                f("AreaShape_Area", s.area as f64);
                f("AreaShape_Area_um2", s.area as f64 * um2);
            }
            Measurement::Perimeter => {
                f("AreaShape_Perimeter", s.perimeter);
                f("AreaShape_Perimeter_um", s.perimeter * um);
            }
            Measurement::FormFactor => f("AreaShape_FormFactor", s.form_factor),
            Measurement::Compactness => f("AreaShape_Compactness", s.compactness),
            Measurement::BoundingBox => {
                f("AreaShape_BoundingBoxMinimum_X", s.bbox[1] as f64);
                f("AreaShape_BoundingBoxMinimum_Y", s.bbox[0] as f64);
                f("AreaShape_BoundingBoxMaximum_X", s.bbox[3] as f64);
                f("AreaShape_BoundingBoxMaximum_Y", s.bbox[2] as f64);
                let a = ((s.bbox[2] - s.bbox[0]) * (s.bbox[3] - s.bbox[1])) as f64;
                f("AreaShape_BoundingBoxArea", a);
                f("AreaShape_BoundingBoxArea_um2", a * um2);
            }
            Measurement::Center => {
                f("AreaShape_Center_X", s.centroid[1]);
                f("AreaShape_Center_Y", s.centroid[0]);
                f("AreaShape_Center_X_um", s.centroid[1] * um);
                f("AreaShape_Center_Y_um", s.centroid[0] * um);
            }
            Measurement::Axes => {
                f("AreaShape_MajorAxisLength", s.major_axis_length);
                f("AreaShape_MinorAxisLength", s.minor_axis_length);
                f("AreaShape_MajorAxisLength_um", s.major_axis_length * um);
                f("AreaShape_MinorAxisLength_um", s.minor_axis_length * um);
            }
            Measurement::Orientation => f("AreaShape_Orientation", s.orientation.to_degrees()),
            Measurement::Eccentricity => f("AreaShape_Eccentricity", s.eccentricity),
            Measurement::EquivalentDiameter => {
                f("AreaShape_EquivalentDiameter", s.equivalent_diameter);
                f("AreaShape_EquivalentDiameter_um", s.equivalent_diameter * um);
            }
            Measurement::Convexity => {
                f("AreaShape_ConvexArea", s.convex_area as f64);
                f("AreaShape_ConvexArea_um2", s.convex_area as f64 * um2);
                f("AreaShape_Solidity", s.solidity);
            }
            Measurement::Extent => f("AreaShape_Extent", s.extent),
            Measurement::EulerNumber => f("AreaShape_EulerNumber", s.euler_number as f64),
            Measurement::Feret => {
                f("AreaShape_MaxFeretDiameter", s.max_feret_diameter);
                f("AreaShape_MinFeretDiameter", s.min_feret_diameter);
                f("AreaShape_MaxFeretDiameter_um", s.max_feret_diameter * um);
                f("AreaShape_MinFeretDiameter_um", s.min_feret_diameter * um);
            }
            Measurement::Intensity => {
                if let Some(c) = channels {
                    intensity_columns(n, c, &mut f);
                }
            }
        }
    }
    if ctx.stain.is_some() && channels.is_some_and(|c| c >= 3) {
        let st = n.stain.as_ref();
        f(
            "Intensity_MeanOD_Haematoxylin",
            st.map_or(f64::NAN, |s| s.haematoxylin_od),
        );
        f("Intensity_MeanOD_DAB", st.map_or(f64::NAN, |s| s.dab_od));
        out.push((
            "Classify_DAB".into(),
            Cell::Text(st.map_or(String::new(), |s| s.class.as_str().to_owned())),
        ));
    }
    if !p.classes.size.is_empty() {
        out.push((
            "Classify_Size".into(),
            Cell::Text(n.size_class.clone().unwrap_or_default()),
        ));
    }
    out.push(("TouchesBorder".into(), Cell::Int(i64::from(n.touches_border))));
    out
}

/// The intensity columns of a nucleus in an image of `channels` channels, through `f` (NaN where
/// the nucleus has no intensity).
fn intensity_columns(n: &Nucleus, channels: usize, f: &mut impl FnMut(&str, f64)) {
    let names = channel_names(channels);
    for (k, ch) in names.iter().enumerate() {
        let i = n.intensity.as_ref();
        let get = |v: Option<&Vec<f64>>| v.and_then(|v| v.get(k).copied()).unwrap_or(f64::NAN);
        f(&format!("Intensity_MeanIntensity_{ch}"), get(i.map(|i| &i.mean)));
        f(&format!("Intensity_StdIntensity_{ch}"), get(i.map(|i| &i.std)));
        f(&format!("Intensity_MinIntensity_{ch}"), get(i.map(|i| &i.min)));
        f(&format!("Intensity_MaxIntensity_{ch}"), get(i.map(|i| &i.max)));
        f(
            &format!("Intensity_IntegratedIntensity_{ch}"),
            get(i.map(|i| &i.integrated)),
        );
        f(&format!("Intensity_MedianIntensity_{ch}"), get(i.map(|i| &i.median)));
    }
}

/// Whether a column is summarised per image (numbers of physical meaning; positions, boxes and
/// identifiers are left out).
pub fn summarised(name: &str) -> bool {
    !(name.starts_with("AreaShape_Center")
        || name.starts_with("AreaShape_BoundingBox")
        || name == "ObjectNumber"
        || name == "TouchesBorder")
}

/// One image's measurements, as [`summarise`] reads them.
struct Measured<'a> {
    name: &'a str,
    width: usize,
    height: usize,
    nuclei: &'a [Nucleus],
    rows: &'a [Vec<(String, Cell)>],
    /// The intensity image's channels, when one was measured.
    channels: Option<usize>,
}

fn summarise(m: &Measured<'_>, dropped: Dropped, ctx: &Context<'_>) -> ImageSummary {
    let mut pooled = Summariser::new(ctx, m.channels);
    for (n, row) in m.nuclei.iter().zip(m.rows) {
        pooled.add(n, row);
    }
    let area_mm2 = (m.width * m.height) as f64 * ctx.pixel_size_um * ctx.pixel_size_um * 1e-6;
    pooled.finish(m.name, (m.width, m.height), area_mm2, dropped)
}

/// Pools nuclei into an image's summary as they come: the nuclei of one image, or those of a
/// slide's tiles, which are never all in memory (only their summarised values are kept).
pub struct Summariser<'a> {
    ctx: &'a Context<'a>,
    values: BTreeMap<String, Vec<f64>>,
    size_classes: BTreeMap<String, usize>,
    dab_classes: Option<[usize; 4]>,
    count: usize,
}

impl<'a> Summariser<'a> {
    /// An empty pool for nuclei measured under `ctx` in an image of `channels` channels (`None`
    /// without an intensity image).
    pub fn new(ctx: &'a Context<'a>, channels: Option<usize>) -> Self {
        let size_classes = ctx.params.classes.size.iter().map(|c| (c.name.clone(), 0)).collect();
        Self {
            ctx,
            values: BTreeMap::new(),
            size_classes,
            dab_classes: (ctx.stain.is_some() && channels.is_some_and(|c| c >= 3)).then_some([0; 4]),
            count: 0,
        }
    }

    /// Adds a nucleus and its report row ([`columns`]).
    pub fn add(&mut self, n: &Nucleus, row: &[(String, Cell)]) {
        self.count += 1;
        for (col, cell) in row {
            if let (true, Some(v)) = (summarised(col), cell.as_f64())
                && v.is_finite()
            {
                self.values.entry(col.clone()).or_default().push(v);
            }
        }
        if let Some(c) = &n.size_class {
            *self.size_classes.entry(c.clone()).or_insert(0) += 1;
        }
        if let (Some(counts), Some(s)) = (&mut self.dab_classes, n.stain) {
            counts[usize::from(s.class.score())] += 1;
        }
    }

    /// The summary of the nuclei added, for an image `name` of `size` pixels covering
    /// `area_mm2` (what the density is per: the image, or a slide's tissue).
    pub fn finish(self, name: &str, size: (usize, usize), area_mm2: f64, dropped: Dropped) -> ImageSummary {
        self.finish_with_values(name, size, area_mm2, dropped).0
    }

    /// [`Self::finish`], and every summarised value by column (what a run pools over images).
    pub fn finish_with_values(
        self,
        name: &str,
        (width, height): (usize, usize),
        area_mm2: f64,
        dropped: Dropped,
    ) -> (ImageSummary, BTreeMap<String, Vec<f64>>) {
        let p = self.ctx.params;
        let features = self
            .values
            .iter()
            .filter_map(|(k, v)| Stats::of(v).map(|s| (k.clone(), s)))
            .collect();
        let (positive_percent, h_score) = match self.dab_classes.and_then(scores) {
            Some((pp, h)) => (Some(pp), Some(h)),
            None => (None, None),
        };
        let mut summary = ImageSummary {
            image: name.to_owned(),
            width,
            height,
            count: self.count,
            area_mm2,
            density_per_mm2: if area_mm2 > 0.0 {
                self.count as f64 / area_mm2
            } else {
                0.0
            },
            dropped,
            features,
            size_classes: self.size_classes,
            dab_classes: self.dab_classes,
            positive_percent,
            h_score,
            class: None,
            tags: Vec::new(),
        };
        summary.class = p
            .classes
            .image
            .iter()
            .find(|c| {
                c.when
                    .as_ref()
                    .is_none_or(|w| summary.score(w.score).is_some_and(|v| w.holds(v)))
            })
            .map(|c| c.name.clone());
        if let Some(c) = &summary.class {
            summary.tags.push(c.clone());
        }
        if summary.count == 0 {
            summary.tags.push("empty".into());
        }
        if summary.positive_percent == Some(0.0) {
            summary.tags.push("ihc-negative".into());
        }
        (summary, self.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;

    proptest! {
        /// Without filters every labelled pixel is measured once: the areas add up to the
        /// foreground, and each object's size class is the one its area falls in.
        #[test]
        fn areas_sum_to_the_foreground(cells in proptest::collection::vec(0u32..5, 12 * 10)) {
            let p = params("classes:\n  size:\n    - { name: s, max_area_um2: 1 }\n    - { name: l }\n");
            let m = measure_image("p", cells.clone(), 12, None, &Context::new(&p, p.pixel_size_um.unwrap_or(1.0)));
            let foreground = cells.iter().filter(|&&l| l != 0).count() as u64;
            prop_assert_eq!(m.nuclei.iter().map(|n| n.shape.area).sum::<u64>(), foreground);
            prop_assert_eq!(m.summary.count, m.nuclei.len());
            prop_assert_eq!(m.labels, cells);
            for n in &m.nuclei {
                let want = if n.shape.area as f64 * 0.25 <= 1.0 { "s" } else { "l" };
                prop_assert_eq!(n.size_class.as_deref(), Some(want));
            }
        }
    }

    fn params(extra: &str) -> CellParams {
        CellParams::from_yaml(
            &format!("description: t\npixel_size_um: 0.5\n{extra}"),
            Path::new("t.yaml"),
        )
        .expect("valid")
    }

    /// A disc of radius `r` centred at (`cy`, `cx`) with `label`.
    fn disc(labels: &mut [u32], width: usize, cy: f64, cx: f64, r: f64, label: u32) {
        for (i, l) in labels.iter_mut().enumerate() {
            let (y, x) = ((i / width) as f64, (i % width) as f64);
            if (y - cy).powi(2) + (x - cx).powi(2) <= r * r {
                *l = label;
            }
        }
    }

    #[test]
    fn filters_drop_small_large_and_border_objects() {
        let w = 40;
        let mut labels = vec![0u32; w * w];
        disc(&mut labels, w, 10.0, 10.0, 5.0, 1); // ~81 px = 20 µm²
        disc(&mut labels, w, 30.0, 30.0, 1.0, 2); // 5 px
        disc(&mut labels, w, 0.0, 30.0, 4.0, 3); // on the border
        let p = params("filters: { min_area_um2: 3, exclude_border: true }\n");
        let m = measure_image(
            "img",
            labels,
            w,
            None,
            &Context::new(&p, p.pixel_size_um.unwrap_or(1.0)),
        );
        assert_eq!(m.nuclei.len(), 1);
        assert_eq!(m.summary.dropped.too_small, 1);
        assert_eq!(m.summary.dropped.border, 1);
        assert!(m.labels.iter().all(|&l| l == 0 || l == 1));
        assert!(m.segmentation.iter().all(|&l| l != 2) && m.segmentation.contains(&3));
        let area = m.summary.features["AreaShape_Area_um2"].mean;
        assert!((area - 0.25 * m.nuclei[0].shape.area as f64).abs() < 1e-9);
        // 1 nucleus in 40×40 px of 0.5 µm = 400 µm² = 0.0004 mm².
        assert!((m.summary.density_per_mm2 - 2500.0).abs() < 1e-6);
    }

    #[test]
    fn ihc_scores_and_image_class() {
        use cellops_formats::params::StainVectors;
        let w = 30;
        let mut labels = vec![0u32; w * w];
        disc(&mut labels, w, 8.0, 8.0, 4.0, 1);
        disc(&mut labels, w, 20.0, 20.0, 4.0, 2);
        let m = crate::stain::StainMatrix::new(&StainVectors::default()).expect("matrix");
        // Nucleus 1 brown (DAB OD 0.7), nucleus 2 blue (haematoxylin OD 0.5), background white.
        let colour = |v: [f64; 3], od: f64| v.map(|c| (255.0 * 10f64.powf(-od * c)).round() as u8);
        let brown = colour(m.vectors[1], 0.7);
        let blue = colour(m.vectors[0], 0.5);
        let mut rgb = Vec::with_capacity(w * w * 3);
        for &l in &labels {
            rgb.extend_from_slice(&match l {
                1 => brown,
                2 => blue,
                _ => [255, 255, 255],
            });
        }
        let image = Raster::from_u8(w as u32, w as u32, 3, rgb);
        let p = params(
            "stain:\n  dab_od_thresholds: { weak: 0.2, moderate: 0.4, strong: 0.6 }\nclasses:\n  image:\n    - { name: high, when: { score: positive_percent, min: 40 } }\n    - { name: low }\n",
        );
        let r = measure_image(
            "img",
            labels,
            w,
            Some(&image),
            &Context::new(&p, p.pixel_size_um.unwrap_or(1.0)),
        );
        assert_eq!(r.nuclei[0].stain.expect("stain").class, DabClass::Strong);
        assert_eq!(r.nuclei[1].stain.expect("stain").class, DabClass::Negative);
        assert_eq!(r.summary.positive_percent, Some(50.0));
        assert_eq!(r.summary.h_score, Some(150.0));
        assert_eq!(r.summary.class.as_deref(), Some("high"));
        let cols = columns(
            "img",
            &r.nuclei[0],
            &Context::new(&p, p.pixel_size_um.unwrap_or(1.0)),
            Some(3),
        );
        assert!(
            cols.iter()
                .any(|(k, v)| k == "Classify_DAB" && *v == Cell::Text("3+".into()))
        );
        assert!(cols.iter().any(|(k, _)| k == "Intensity_MeanIntensity_Blue"));
    }

    #[test]
    fn image_of_another_size_is_not_used_for_intensities() {
        let labels = vec![1u32; 4];
        let p = params("");
        let image = Raster::from_u8(3, 1, 1, vec![1, 2, 3]);
        let m = measure_image(
            "img",
            labels,
            2,
            Some(&image),
            &Context::new(&p, p.pixel_size_um.unwrap_or(1.0)),
        );
        assert!(m.nuclei[0].intensity.is_none());
    }
}
