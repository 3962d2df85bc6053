//! From a network's probability maps or a binary mask to separated nuclei (instance labels).
//!
//! Three ways to separate touching nuclei ([`Method`]):
//!
//! - [`Method::Boundary`] ([`separate`]): seeds are the foreground pixels that are not boundary
//!   (`foreground > threshold` and, with a boundary channel, `boundary ≤ threshold`), labelled by
//!   8-connectivity; seeds smaller than `min_seed_area` are dropped. Each seed then grows through the
//!   foreground in breadth-first order (4-connectivity), so a boundary pixel goes to the seed it is
//!   nearest to along the foreground — a marker-controlled flood. Foreground that no seed reaches
//!   becomes objects of its own. Without a boundary channel this is plain connected-component
//!   labelling of the foreground.
//! - [`Method::DistanceWatershed`]: the classical split of a binary mask alone (for `--masks` input
//!   and models without a boundary channel): the exact Euclidean distance transform of the mask
//!   ([`crate::distance`]) peaks at the centres of the nuclei; markers at those peaks
//!   ([`Markers`]) flood the negated distance map within the mask ([`crate::watershed`]), so
//!   touching nuclei part along the neck between them. Foreground no marker reaches becomes objects
//!   of its own. A model with a distance channel ([`Guide::Distance`]) replaces the distance
//!   transform by its own prediction, which knows where two touching nuclei part even when the
//!   thresholded mask has no neck there.
//! - [`Method::None`]: connected components of the mask.
//!
//! Before separating, holes can be filled ([`Holes`]); after it, objects smaller than
//! [`InstanceConfig::min_area_px`] are merged into a neighbour or removed. [`split_mask`] applies an
//! [`InstanceConfig`] to a binary mask, [`segment`] to probability maps.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use cellops_dataset::ops::label::{Connectivity, connected_components};
use cellops_formats::params::{MarkerRule, PostProcessing, Segmentation, SeparationMethod};
use serde::{Deserialize, Serialize};

use crate::distance::{Outside, distance_transform};
use crate::watershed::{WatershedError, for_neighbours, h_maxima, offsets, peak_local_max, watershed};

/// How probability maps become objects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Separation {
    /// Foreground (and boundary) probability threshold.
    pub threshold: f32,
    /// Seeds with fewer pixels than this are dropped (their pixels join a neighbour).
    pub min_seed_area: usize,
}

impl Default for Separation {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            min_seed_area: 4,
        }
    }
}

/// Instance labels (0 background, 1..=N objects, numbered in raster order of their seeds) from a
/// foreground probability map and an optional boundary probability map, both `width`-wide.
///
/// ```
/// use cellops_measure::instances::{Separation, separate};
/// // Two blobs touching in the middle column, which the boundary channel marks.
/// let fg = [1.0f32; 7];
/// let boundary = [0.0f32, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
/// let sep = Separation { threshold: 0.5, min_seed_area: 1 };
/// let labels = separate(&fg, Some(&boundary), 7, sep);
/// assert_eq!(labels, vec![1, 1, 1, 1, 2, 2, 2]);
/// ```
pub fn separate(foreground: &[f32], boundary: Option<&[f32]>, width: usize, sep: Separation) -> Vec<u32> {
    let mask: Vec<bool> = foreground.iter().map(|&p| p > sep.threshold).collect();
    let seeds: Vec<bool> = match boundary {
        Some(b) => mask.iter().zip(b).map(|(&m, &bp)| m && bp <= sep.threshold).collect(),
        None => mask.clone(),
    };
    seeded_flood(
        &mask,
        &seeds,
        width,
        sep.min_seed_area,
        Connectivity::Eight,
        Connectivity::Four,
    )
}

/// Labels the `seeds` (components by `seed_conn`, those under `min_seed_area` dropped, renumbered
/// in raster order), grows them through `mask` breadth-first by `flood_conn`, and makes the
/// foreground they do not reach objects of its own.
fn seeded_flood(
    mask: &[bool],
    seeds: &[bool],
    width: usize,
    min_seed_area: usize,
    seed_conn: Connectivity,
    flood_conn: Connectivity,
) -> Vec<u32> {
    let n = mask.len();
    let (seed_labels, count) = connected_components(seeds, width, seed_conn);
    // Drop small seeds, renumber the rest 1..=K in raster order.
    let mut area = vec![0usize; count + 1];
    for &l in &seed_labels {
        area[l as usize] += 1;
    }
    let mut renumber = vec![0u32; count + 1];
    let mut next = 0u32;
    let mut labels = vec![0u32; n];
    for (i, &l) in seed_labels.iter().enumerate() {
        if l == 0 || area[l as usize] < min_seed_area {
            continue;
        }
        if renumber[l as usize] == 0 {
            next += 1;
            renumber[l as usize] = next;
        }
        labels[i] = renumber[l as usize];
    }
    flood(&mut labels, mask, width, flood_conn);
    label_unreached(&mut labels, mask, width, next, seed_conn);
    labels
}

/// Gives the pixels of `mask` still unlabelled labels of their own (their connected components,
/// numbered from `after + 1`).
fn label_unreached(labels: &mut [u32], mask: &[bool], width: usize, after: u32, conn: Connectivity) {
    let rest: Vec<bool> = mask.iter().zip(labels.iter()).map(|(&m, &l)| m && l == 0).collect();
    if rest.iter().any(|&r| r) {
        let (extra, _) = connected_components(&rest, width, conn);
        for (l, e) in labels.iter_mut().zip(extra) {
            if e != 0 {
                *l = after + e;
            }
        }
    }
}

/// Grows the labels through `mask` in breadth-first order.
fn flood(labels: &mut [u32], mask: &[bool], width: usize, conn: Connectivity) {
    let n = labels.len();
    let height = n.checked_div(width).unwrap_or(0);
    let offs = offsets(conn);
    let mut queue: VecDeque<usize> = (0..n).filter(|&i| labels[i] != 0).collect();
    while let Some(i) = queue.pop_front() {
        let l = labels[i];
        for_neighbours(i, width, height, offs, |j| {
            if mask[j] && labels[j] == 0 {
                labels[j] = l;
                queue.push_back(j);
            }
        });
    }
}

/// How touching objects are separated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "kind")]
pub enum Method {
    /// Seeds where the boundary channel is below the threshold, flooded through the foreground
    /// ([`separate`]); with no boundary channel (and always in [`split_mask`]), connected components.
    Boundary {
        /// Seeds with fewer pixels than this are dropped (their pixels join a neighbour).
        min_seed_area_px: usize,
    },
    /// Distance transform of the mask, markers at its peaks, watershed of the negated distances.
    DistanceWatershed(WatershedConfig),
    /// Connected components of the mask, nothing split.
    None,
}

impl Default for Method {
    fn default() -> Self {
        Method::DistanceWatershed(WatershedConfig::default())
    }
}

/// Where the markers of [`Method::DistanceWatershed`] come from (all on the distance map, in pixels).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "rule")]
pub enum Markers {
    /// Regional maxima of the distance map whose dynamic is at least `h_px`
    /// ([`crate::watershed::h_maxima`]): a peak becomes an object only if one has to descend at
    /// least `h_px` from it before reaching a higher peak, so the small bumps of a distance map along
    /// a ragged outline or an elongated nucleus do not split it. Every connected part of the mask
    /// keeps its highest peak.
    HMaxima {
        /// Minimum dynamic, pixels.
        h_px: f64,
    },
    /// Local maxima at least `min_distance_px` apart, like scikit-image's
    /// `peak_local_max(distance, min_distance=min_distance_px, labels=parts, exclude_border=False)`
    /// ([`crate::watershed::peak_local_max`]).
    PeakLocalMax {
        /// Minimum distance between peaks (Chebyshev), and half the size of the square window in
        /// which a peak must be the maximum, pixels.
        min_distance_px: usize,
    },
}

/// The default, `HMaxima { h_px: 0.75 }`, separated the DSB 2018 nuclei best when tuned on its
/// train split (each true mask's foreground split and scored against its instances, F1 at IoU 0.5;
/// `bench/watershed_reference.py`): h-maxima at 0.75 px reached 0.951, at 0.5/1/2 px 0.941/0.948/
/// 0.931, while `PeakLocalMax` peaked at 0.919 (`min_distance_px` 7–10): a fixed minimum distance
/// both over-splits large elongated nuclei and merges small touching ones, whereas the dynamic of a
/// distance-map peak measures how deep the neck is, whatever the size.
impl Default for Markers {
    fn default() -> Self {
        Markers::HMaxima { h_px: 0.75 }
    }
}

/// Parameters of [`Method::DistanceWatershed`].
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct WatershedConfig {
    /// Where the markers come from.
    pub markers: Markers,
    /// What lies beyond the image border for the distance transform.
    pub outside: Outside,
    /// With a boundary channel ([`Guide::Boundary`]): foreground pixels whose boundary
    /// probability is above this are left out of the distance transform, so a boundary the
    /// network draws between two touching nuclei cuts the distance map even where the mask has
    /// no neck; the flood then gives those pixels back to the nearest nucleus. `None` (or 1)
    /// ignores the channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boundary_cut: Option<f32>,
}

/// What happens to holes in the mask (background enclosed by an object, i.e. background components
/// that do not touch the image border; connected by the connectivity complementary to
/// [`InstanceConfig::connectivity`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "mode")]
pub enum Holes {
    /// Holes stay background, in the objects' labels and hence in their measured area; a hole makes a
    /// ring of small distances inside a nucleus, which can split it.
    #[default]
    Keep,
    /// Holes smaller than `area_px` pixels are filled before separating and belong to the object
    /// around them in the result (larger holes stay background).
    FillSmallerThan {
        /// Holes with fewer pixels than this are filled.
        area_px: usize,
    },
}

/// How a mask (or probability maps) becomes instance labels; embeddable in a configuration file
/// (every field has a default).
///
/// ```
/// use cellops_measure::instances::{InstanceConfig, Method};
/// let c = InstanceConfig { method: Method::None, ..InstanceConfig::default() };
/// assert_eq!(c.min_area_px, InstanceConfig::default().min_area_px);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct InstanceConfig {
    /// How touching objects are separated.
    pub method: Method,
    /// Probability above which a pixel is foreground (and at or below which it is not boundary);
    /// used by [`segment`] only.
    pub probability_threshold: f32,
    /// What happens to holes, before separating.
    pub holes: Holes,
    /// Objects (after separating) with fewer pixels than this are merged into the neighbour they
    /// share the longest border with, or removed if they touch none; smallest first. 0 or 1 keeps
    /// everything.
    pub min_area_px: usize,
    /// Which pixels are neighbours: for components, markers' plateaus and the flood.
    pub connectivity: Connectivity,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        Self {
            method: Method::default(),
            probability_threshold: 0.5,
            holes: Holes::default(),
            min_area_px: 0,
            connectivity: Connectivity::Eight,
        }
    }
}

/// Instance labels from a binary mask (`true` on the foreground, rows of `width`): holes handled,
/// objects separated, small objects merged, then numbered 1..=N in raster order of their first
/// pixel. Returns the labels and N. [`Method::Boundary`] has no boundary channel here and gives
/// connected components.
///
/// ```
/// use cellops_measure::instances::{InstanceConfig, split_mask};
/// let mask = [true, true, false, true];
/// let (labels, n) = split_mask(&mask, 4, &InstanceConfig::default()).unwrap();
/// assert_eq!((labels, n), (vec![1, 1, 0, 2], 2));
/// ```
pub fn split_mask(mask: &[bool], width: usize, config: &InstanceConfig) -> Result<(Vec<u32>, usize), WatershedError> {
    let height = rows(mask.len(), width)?;
    let conn = config.connectivity;
    let mask = fill_holes(mask, width, height, config.holes, conn);
    let labels = match config.method {
        Method::None | Method::Boundary { .. } => connected_components(&mask, width, conn).0,
        Method::DistanceWatershed(ws) => distance_watershed(&mask, width, &ws, conn)?,
    };
    Ok(finish(labels, width, height, config.min_area_px, conn))
}

/// A model's second output channel, which guides the separation of touching nuclei.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Guide<'a> {
    /// Boundary probabilities (`0..=1`): [`Method::Boundary`] seeds where they are low.
    Boundary(&'a [f32]),
    /// A predicted distance map: each pixel's distance to the outside of its nucleus is
    /// `map · px_per_unit` pixels. [`Method::DistanceWatershed`] takes its markers from it and
    /// floods it, instead of the distance transform of the thresholded foreground.
    Distance {
        /// The channel's values.
        map: &'a [f32],
        /// Pixels per unit of `map`.
        px_per_unit: f64,
    },
}

impl Guide<'_> {
    /// The channel's name and length.
    fn describe(&self) -> (&'static str, usize) {
        match self {
            Guide::Boundary(b) => ("boundary", b.len()),
            Guide::Distance { map, .. } => ("distance", map.len()),
        }
    }
}

impl InstanceConfig {
    /// The settings that a parameter file's `segmentation` asks for under `values` (from
    /// [`Segmentation::resolve`]); `has_boundary` says whether a boundary channel is available
    /// (`boundary` falls back to the watershed without).
    #[must_use]
    pub fn from_params(segmentation: &Segmentation, values: &PostProcessing, has_boundary: bool) -> Self {
        let sep = &segmentation.separation;
        let watershed = Method::DistanceWatershed(WatershedConfig {
            markers: match sep.markers {
                MarkerRule::HMaxima => Markers::HMaxima { h_px: values.h_px },
                MarkerRule::PeakLocalMax => Markers::PeakLocalMax {
                    min_distance_px: sep.min_distance_px,
                },
            },
            boundary_cut: (values.boundary_cut < 1.0).then_some(values.boundary_cut as f32),
            ..WatershedConfig::default()
        });
        let boundary = Method::Boundary {
            min_seed_area_px: sep.min_seed_area_px,
        };
        let method = match (sep.method, has_boundary) {
            (SeparationMethod::None, _) => Method::None,
            (SeparationMethod::Watershed, _) | (SeparationMethod::Boundary, false) => watershed,
            (SeparationMethod::Boundary, true) => boundary,
        };
        // Holes "up to" the area are filled; `FillSmallerThan` fills holes below its count.
        let hole_px = values.fill_holes_px.floor() as usize;
        InstanceConfig {
            method,
            probability_threshold: values.probability_threshold as f32,
            holes: if hole_px == 0 {
                Holes::Keep
            } else {
                Holes::FillSmallerThan { area_px: hole_px + 1 }
            },
            min_area_px: values.min_area_px.round() as usize,
            connectivity: segmentation.connectivity,
        }
    }
}

/// Instance labels from probability maps (foreground, and optionally a [`Guide`], both rows of
/// `width`): the foreground is `foreground > probability_threshold`; with a boundary guide,
/// [`Method::Boundary`] then seeds where `boundary ≤ probability_threshold` and floods by
/// `connectivity`; with a distance guide, [`Method::DistanceWatershed`] finds its markers on, and
/// floods, the predicted distances; otherwise the methods work as in [`split_mask`]. Returns the
/// labels (1..=N, raster order) and N.
///
/// ```
/// use cellops_measure::instances::{Guide, InstanceConfig, Method, segment};
/// let fg = [0.9f32; 7];
/// let boundary = [0.0f32, 0.0, 0.0, 0.9, 0.0, 0.0, 0.0];
/// let config = InstanceConfig { method: Method::Boundary { min_seed_area_px: 1 }, ..Default::default() };
/// let (labels, n) = segment(&fg, Some(Guide::Boundary(&boundary)), 7, &config).unwrap();
/// assert_eq!((labels, n), (vec![1, 1, 1, 1, 2, 2, 2], 2));
/// ```
pub fn segment(
    foreground: &[f32],
    guide: Option<Guide<'_>>,
    width: usize,
    config: &InstanceConfig,
) -> Result<(Vec<u32>, usize), WatershedError> {
    let height = rows(foreground.len(), width)?;
    if let Some((what, len)) = guide.map(|g| g.describe())
        && len != foreground.len()
    {
        return Err(WatershedError::SizeMismatch {
            what,
            len,
            expected: foreground.len(),
        });
    }
    let t = config.probability_threshold;
    let mask: Vec<bool> = foreground.iter().map(|&p| p > t).collect();
    let conn = config.connectivity;
    let labels = match (config.method, guide) {
        (Method::Boundary { min_seed_area_px }, Some(Guide::Boundary(b))) => {
            let mask = fill_holes(&mask, width, height, config.holes, conn);
            let seeds: Vec<bool> = mask.iter().zip(b).map(|(&m, &bp)| m && bp <= t).collect();
            seeded_flood(&mask, &seeds, width, min_seed_area_px, conn, conn)
        }
        (Method::DistanceWatershed(ws), Some(Guide::Distance { map, px_per_unit })) => {
            let mask = fill_holes(&mask, width, height, config.holes, conn);
            let dist: Vec<f64> = map
                .iter()
                .zip(mask.iter())
                .map(|(&d, &m)| if m { f64::from(d) * px_per_unit } else { 0.0 })
                .collect();
            watershed_on(&dist, &mask, width, &ws, conn)?
        }
        (Method::DistanceWatershed(ws), Some(Guide::Boundary(b))) if ws.boundary_cut.is_some_and(|c| c < 1.0) => {
            let mask = fill_holes(&mask, width, height, config.holes, conn);
            let cut = ws.boundary_cut.unwrap_or(1.0);
            let interior: Vec<bool> = mask.iter().zip(b).map(|(&m, &bp)| m && bp <= cut).collect();
            let dist = distance_transform(&interior, width, ws.outside);
            watershed_on(&dist, &mask, width, &ws, conn)?
        }
        _ => return split_mask(&mask, width, config),
    };
    Ok(finish(labels, width, height, config.min_area_px, conn))
}

fn rows(len: usize, width: usize) -> Result<usize, WatershedError> {
    match len.checked_div(width) {
        Some(h) if h * width == len => Ok(h),
        None if len == 0 => Ok(0),
        _ => Err(WatershedError::NotRectangular { len, width }),
    }
}

/// The mask with the holes [`Holes`] asks for filled.
fn fill_holes(mask: &[bool], width: usize, height: usize, holes: Holes, conn: Connectivity) -> Cow<'_, [bool]> {
    let Holes::FillSmallerThan { area_px } = holes else {
        return Cow::Borrowed(mask);
    };
    let background: Vec<bool> = mask.iter().map(|&m| !m).collect();
    let complement = match conn {
        Connectivity::Four => Connectivity::Eight,
        Connectivity::Eight => Connectivity::Four,
    };
    let (parts, count) = connected_components(&background, width, complement);
    let mut area = vec![0usize; count + 1];
    let mut on_border = vec![false; count + 1];
    for (i, &p) in parts.iter().enumerate() {
        area[p as usize] += 1;
        let (y, x) = (i / width, i % width);
        if y == 0 || x == 0 || y + 1 == height || x + 1 == width {
            on_border[p as usize] = true;
        }
    }
    let filled = mask
        .iter()
        .zip(&parts)
        .map(|(&m, &p)| m || (!on_border[p as usize] && area[p as usize] < area_px))
        .collect();
    Cow::Owned(filled)
}

/// Distance transform, markers, watershed of the negated distances within the mask; unreached
/// foreground becomes objects of its own.
fn distance_watershed(
    mask: &[bool],
    width: usize,
    ws: &WatershedConfig,
    conn: Connectivity,
) -> Result<Vec<u32>, WatershedError> {
    let dist = distance_transform(mask, width, ws.outside);
    watershed_on(&dist, mask, width, ws, conn)
}

/// Markers on the distance map `dist` (by `ws.markers`), watershed of the negated distances
/// within `mask`; unreached foreground becomes objects of its own.
fn watershed_on(
    dist: &[f64],
    mask: &[bool],
    width: usize,
    ws: &WatershedConfig,
    conn: Connectivity,
) -> Result<Vec<u32>, WatershedError> {
    let markers = match ws.markers {
        Markers::HMaxima { h_px } => h_maxima(dist, mask, width, h_px, conn)?,
        Markers::PeakLocalMax { min_distance_px } => peak_local_max(dist, mask, width, min_distance_px, conn)?,
    };
    let count = markers.iter().copied().max().unwrap_or(0);
    let negated: Vec<f64> = dist.iter().map(|d| -d).collect();
    let mut labels = watershed(&negated, &markers, width, Some(mask), conn)?;
    label_unreached(&mut labels, mask, width, count, conn);
    Ok(labels)
}

/// Merges or removes objects under `min_area` (smallest first; into the neighbour with the longest
/// shared border, ties to the lower label; removed if isolated), then renumbers 1..=N in raster
/// order.
fn finish(mut labels: Vec<u32>, width: usize, height: usize, min_area: usize, conn: Connectivity) -> (Vec<u32>, usize) {
    let count = renumber(&mut labels);
    if min_area > 1 && count > 0 {
        let mut area = vec![0usize; count + 1];
        for &l in &labels {
            area[l as usize] += 1;
        }
        // Shared border (neighbouring pixel pairs) between objects.
        let mut adjacent: Vec<BTreeMap<u32, usize>> = vec![BTreeMap::new(); count + 1];
        let offs = offsets(conn);
        for (i, &a) in labels.iter().enumerate() {
            if a == 0 {
                continue;
            }
            for_neighbours(i, width, height, offs, |j| {
                let b = labels[j];
                if j > i && b != 0 && b != a {
                    *adjacent[a as usize].entry(b).or_default() += 1;
                    *adjacent[b as usize].entry(a).or_default() += 1;
                }
            });
        }
        // What each label finally becomes (0: removed); merged labels point to their target.
        let mut target: Vec<u32> = (0..=count as u32).collect();
        let mut heap: BinaryHeap<Reverse<(usize, u32)>> =
            (1..=count as u32).map(|l| Reverse((area[l as usize], l))).collect();
        while let Some(Reverse((a, l))) = heap.pop() {
            let li = l as usize;
            if a >= min_area || target[li] != l || area[li] != a {
                if a >= min_area {
                    break;
                }
                continue;
            }
            let neighbours = std::mem::take(&mut adjacent[li]);
            let best = neighbours
                .iter()
                .max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0)))
                .map(|(&b, _)| b);
            match best {
                None => target[li] = 0,
                Some(t) => {
                    let ti = t as usize;
                    target[li] = t;
                    area[ti] += a;
                    adjacent[ti].remove(&l);
                    for (&b, &c) in &neighbours {
                        if b == t {
                            continue;
                        }
                        let bi = b as usize;
                        adjacent[bi].remove(&l);
                        *adjacent[bi].entry(t).or_default() += c;
                        *adjacent[ti].entry(b).or_default() += c;
                    }
                    heap.push(Reverse((area[ti], t)));
                }
            }
        }
        // Resolve chains of merges.
        for l in 1..=count {
            let mut t = target[l];
            while t != 0 && target[t as usize] != t {
                t = target[t as usize];
            }
            target[l] = t;
        }
        for v in labels.iter_mut() {
            *v = target[*v as usize];
        }
    }
    let n = renumber(&mut labels);
    (labels, n)
}

/// Renumbers labels 1..=N in raster order of their first pixel (0 stays background), e.g. after
/// resampling dropped some; returns N.
///
/// ```
/// let mut labels = [0u32, 7, 7, 3, 0, 9];
/// assert_eq!(cellops_measure::instances::renumber(&mut labels), 3);
/// assert_eq!(labels, [0, 1, 1, 2, 0, 3]);
/// ```
pub fn renumber(labels: &mut [u32]) -> usize {
    let mut map: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    for l in labels.iter_mut() {
        if *l == 0 {
            continue;
        }
        let next = map.len() as u32 + 1;
        *l = *map.entry(*l).or_insert(next);
    }
    map.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellops_formats::params::CellParams;

    fn segmentation(yaml: &str) -> Segmentation {
        let text = format!("description: x\npixel_size_um: 0.5\nsegmentation: {yaml}\n");
        CellParams::from_yaml(&text, std::path::Path::new("p.yaml"))
            .expect("parses")
            .segmentation
    }

    #[test]
    fn a_parameter_files_segmentation_becomes_instance_settings() {
        let s = segmentation("{ connectivity: 4, separation: { method: watershed, min_distance_px: 5 } }");
        let c = InstanceConfig::from_params(&s, &s.resolve(Some(0.5), None, 1.0).values, true);
        assert_eq!(c.method, Method::DistanceWatershed(WatershedConfig::default()));
        assert_eq!(c.connectivity, Connectivity::Four);
        let s = segmentation("{ fill_holes_max_area_um2: 1, separation: { method: boundary } }");
        let values = s.resolve(Some(0.5), None, 1.0).values;
        let c = InstanceConfig::from_params(&s, &values, true);
        assert_eq!(c.method, Method::Boundary { min_seed_area_px: 4 });
        assert_eq!(
            c.holes,
            Holes::FillSmallerThan { area_px: 5 },
            "holes of up to 4 px (1 µm²) are filled"
        );
        assert_eq!(
            InstanceConfig::from_params(&s, &values, false).method,
            Method::DistanceWatershed(WatershedConfig::default()),
            "no boundary channel: the watershed"
        );
    }

    #[test]
    fn bundle_sizes_and_the_boundary_cut_reach_the_instance_settings() {
        let tuned = PostProcessing {
            probability_threshold: 0.4,
            h_px: 2.0,
            min_area_px: 16.0,
            fill_holes_px: 8.0,
            boundary_cut: 0.5,
        };
        let s = segmentation("{ probability_threshold: 0.6 }");
        let a = s.resolve(Some(0.5), Some(&tuned), 0.5);
        let c = InstanceConfig::from_params(&s, &a.values, false);
        assert_eq!((c.min_area_px, c.holes), (64, Holes::FillSmallerThan { area_px: 33 }));
        let Method::DistanceWatershed(ws) = c.method else {
            panic!("{:?}", c.method)
        };
        assert_eq!(ws.boundary_cut, Some(0.5));
        let off = segmentation("{ separation: { boundary_cut: 1 } }");
        let a = off.resolve(Some(0.5), Some(&tuned), 0.5);
        let Method::DistanceWatershed(ws) = InstanceConfig::from_params(&off, &a.values, true).method else {
            panic!("watershed")
        };
        assert_eq!(ws.boundary_cut, None, "1 leaves the channel out");
    }
    use proptest::prelude::*;

    #[test]
    fn without_a_boundary_it_labels_components() {
        let fg = [0.9f32, 0.9, 0.1, 0.9, 0.1, 0.1];
        let labels = separate(&fg, None, 3, Separation::default());
        // 0.9 at (0,0), (1,0), (0,1): one 8-connected object; min_seed_area 4 drops the seed, and
        // the unreached foreground becomes an object anyway.
        assert_eq!(labels, vec![1, 1, 0, 1, 0, 0]);
    }

    fn discs(width: usize, height: usize, discs: &[(f64, f64, f64)]) -> Vec<bool> {
        (0..width * height)
            .map(|i| {
                let (y, x) = ((i / width) as f64, (i % width) as f64);
                discs
                    .iter()
                    .any(|&(cy, cx, r)| (y - cy).powi(2) + (x - cx).powi(2) <= r * r)
            })
            .collect()
    }

    #[test]
    fn two_overlapping_discs_split_in_two() {
        let mask = discs(40, 30, &[(15.0, 12.0, 9.0), (15.0, 26.0, 9.0)]);
        for markers in [
            Markers::HMaxima { h_px: 2.0 },
            Markers::PeakLocalMax { min_distance_px: 5 },
        ] {
            let config = InstanceConfig {
                method: Method::DistanceWatershed(WatershedConfig {
                    markers,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let (labels, n) = split_mask(&mask, 40, &config).expect("valid input");
            assert_eq!(n, 2, "{markers:?}");
            assert_eq!(labels[15 * 40 + 12], 1);
            assert_eq!(labels[15 * 40 + 26], 2);
            // The cut runs down the neck, in the middle column.
            assert!(labels[15 * 40 + 18] == 1 && labels[15 * 40 + 20] == 2);
        }
        // Connected components keep them together.
        let config = InstanceConfig {
            method: Method::None,
            ..Default::default()
        };
        assert_eq!(split_mask(&mask, 40, &config).expect("valid input").1, 1);
    }

    /// Two 10 × 10 squares side by side make a 20 × 10 rectangle with no neck: the distance
    /// watershed alone keeps it whole, a boundary channel on the two contact columns cuts it there.
    #[test]
    fn a_boundary_channel_cuts_touching_squares_where_the_mask_has_no_neck() {
        let (w, h) = (24usize, 12usize);
        let inside = |i: usize| (1..11).contains(&(i / w)) && (2..22).contains(&(i % w));
        let fg: Vec<f32> = (0..w * h).map(|i| if inside(i) { 0.9 } else { 0.0 }).collect();
        let boundary: Vec<f32> = (0..w * h)
            .map(|i| {
                if inside(i) && (11..13).contains(&(i % w)) {
                    0.9
                } else {
                    0.0
                }
            })
            .collect();
        let with_cut = |boundary_cut| InstanceConfig {
            method: Method::DistanceWatershed(WatershedConfig {
                boundary_cut,
                ..Default::default()
            }),
            ..Default::default()
        };
        let run = |cut| segment(&fg, Some(Guide::Boundary(&boundary)), w, &with_cut(cut)).expect("valid input");
        assert_eq!(run(None).1, 1);
        assert_eq!(run(Some(1.0)).1, 1);
        let (labels, n) = run(Some(0.5));
        assert_eq!(n, 2);
        for y in 1..11 {
            let row = &labels[y * w..(y + 1) * w];
            assert!(row[2..12].iter().all(|&l| l == 1), "row {y}: {row:?}");
            assert!(row[12..22].iter().all(|&l| l == 2), "row {y}: {row:?}");
        }
    }

    #[test]
    fn a_single_disc_stays_one() {
        let mask = discs(31, 31, &[(15.0, 15.0, 12.0)]);
        let (labels, n) = split_mask(&mask, 31, &InstanceConfig::default()).expect("valid input");
        assert_eq!(n, 1);
        assert!(labels.iter().zip(&mask).all(|(&l, &m)| (l == 1) == m));
    }

    #[test]
    fn a_ring_stays_one_and_its_hole_is_kept_or_filled() {
        let w = 31;
        let outer = discs(w, w, &[(15.0, 15.0, 13.0)]);
        let inner = discs(w, w, &[(15.0, 15.0, 4.0)]);
        let mask: Vec<bool> = outer.iter().zip(&inner).map(|(&o, &i)| o && !i).collect();
        // The ring's ridge (a circle of radius 8.5) undulates with the pixel grid: at the default
        // h = 0.75 px its bumps are deep enough to cut it into 4; h = 1 px keeps it whole.
        let with_h = |h_px| InstanceConfig {
            method: Method::DistanceWatershed(WatershedConfig {
                markers: Markers::HMaxima { h_px },
                ..Default::default()
            }),
            ..Default::default()
        };
        let (labels, n) = split_mask(&mask, w, &with_h(1.0)).expect("valid input");
        assert_eq!(n, 1);
        assert_eq!(labels[15 * w + 15], 0);
        assert_eq!(
            split_mask(&mask, w, &InstanceConfig::default()).expect("valid input").1,
            4
        );
        let hole = inner.iter().filter(|&&i| i).count();
        let fill = |area_px| InstanceConfig {
            holes: Holes::FillSmallerThan { area_px },
            ..Default::default()
        };
        let (labels, n) = split_mask(&mask, w, &fill(hole + 1)).expect("valid input");
        assert_eq!((n, labels[15 * w + 15]), (1, 1));
        let (labels, _) = split_mask(&mask, w, &fill(hole)).expect("valid input");
        assert_eq!(labels[15 * w + 15], 0);
    }

    #[test]
    fn small_objects_merge_into_the_longest_border_or_go() {
        // Object 2 (1 px) touches 1 along one pixel pair and 3 along two (8-connectivity); 4 is alone.
        #[rustfmt::skip]
        let labels = vec![
            1, 1, 2, 3, 0, 4,
            1, 1, 3, 3, 0, 0,
        ];
        let (out, n) = finish(labels, 6, 2, 2, Connectivity::Four);
        assert_eq!(n, 2);
        assert_eq!(out, vec![1, 1, 2, 2, 0, 0, 1, 1, 2, 2, 0, 0]);
    }

    #[test]
    fn mismatched_sizes_are_errors() {
        assert!(split_mask(&[true; 5], 2, &InstanceConfig::default()).is_err());
        assert!(
            segment(
                &[0.9; 4],
                Some(Guide::Boundary(&[0.1; 3])),
                2,
                &InstanceConfig::default()
            )
            .is_err()
        );
        assert_eq!(split_mask(&[], 0, &InstanceConfig::default()), Ok((vec![], 0)));
    }

    /// A bar of foreground with no neck: the mask's own distance transform has one ridge, but a
    /// predicted distance map with two peaks splits it where the prediction dips.
    #[test]
    fn a_distance_guide_splits_where_the_mask_alone_cannot() {
        let (w, h) = (12usize, 6usize);
        // Rows 1..=4 are foreground, rows 0 and 5 background.
        let fg: Vec<f32> = (0..w * h)
            .map(|i| if (1..=4).contains(&(i / w)) { 0.9 } else { 0.0 })
            .collect();
        let map: Vec<f32> = (0..w * h)
            .map(|i| {
                let x = (i % w) as f32;
                // Two cones peaking at columns 2.5 and 8.5, meeting low at the middle.
                1.0 + 4.0 - (x - 2.5).abs().min((x - 8.5).abs())
            })
            .collect();
        let config = InstanceConfig {
            method: Method::DistanceWatershed(WatershedConfig::default()),
            min_area_px: 0,
            ..InstanceConfig::default()
        };
        let (_, alone) = segment(&fg, None, w, &config).expect("segments");
        assert_eq!(alone, 1);
        let guide = Guide::Distance {
            map: &map,
            px_per_unit: 0.5,
        };
        let (labels, n) = segment(&fg, Some(guide), w, &config).expect("segments");
        assert_eq!(n, 2);
        let row = &labels[w..2 * w];
        assert!(
            row[..6].iter().all(|&l| l == 1) && row[6..].iter().all(|&l| l == 2),
            "{row:?}"
        );
        let short = Guide::Distance {
            map: &map[1..],
            px_per_unit: 1.0,
        };
        assert!(
            segment(&fg, Some(short), w, &config).is_err(),
            "a map of the wrong size is an error"
        );
    }

    #[test]
    fn configuration_reads_from_yaml_with_defaults_and_rejects_unknown_fields() {
        let yaml = "method:\n  kind: distance_watershed\n  markers:\n    rule: peak_local_max\n    min_distance_px: 4\nholes:\n  mode: fill_smaller_than\n  area_px: 30\nconnectivity: 4\n";
        let c: InstanceConfig = serde_norway::from_str(yaml).expect("valid yaml");
        assert_eq!(
            c.method,
            Method::DistanceWatershed(WatershedConfig {
                markers: Markers::PeakLocalMax { min_distance_px: 4 },
                outside: Outside::Foreground,
                boundary_cut: None,
            })
        );
        assert_eq!(c.holes, Holes::FillSmallerThan { area_px: 30 });
        assert_eq!(c.connectivity, Connectivity::Four);
        assert_eq!(c.min_area_px, InstanceConfig::default().min_area_px);
        let back: InstanceConfig =
            serde_norway::from_str(&serde_norway::to_string(&c).expect("serialises")).expect("reads back");
        assert_eq!(back, c);
        let d: InstanceConfig = serde_norway::from_str("{}").expect("empty is default");
        assert_eq!(d, InstanceConfig::default());
        assert!(serde_norway::from_str::<InstanceConfig>("min_area: 3\n").is_err());
        // (serde cannot reject extra fields next to the tag of a unit variant such as `kind: none`.)
        assert!(serde_norway::from_str::<InstanceConfig>("method:\n  kind: distance_watershed\n  h: 1\n").is_err());
    }

    fn config_strategy() -> impl Strategy<Value = InstanceConfig> {
        (
            0usize..3,
            0.0f64..3.0,
            1usize..4,
            any::<bool>(),
            any::<bool>(),
            0usize..4,
        )
            .prop_map(|(m, h_px, min_distance_px, four, bg, min_area_px)| InstanceConfig {
                method: match m {
                    0 => Method::None,
                    1 => Method::DistanceWatershed(WatershedConfig {
                        markers: Markers::HMaxima { h_px },
                        outside: if bg { Outside::Background } else { Outside::Foreground },
                        boundary_cut: None,
                    }),
                    _ => Method::DistanceWatershed(WatershedConfig {
                        markers: Markers::PeakLocalMax { min_distance_px },
                        outside: if bg { Outside::Background } else { Outside::Foreground },
                        boundary_cut: None,
                    }),
                },
                connectivity: if four { Connectivity::Four } else { Connectivity::Eight },
                min_area_px,
                ..Default::default()
            })
    }

    proptest! {
        #[test]
        fn split_mask_labels_the_mask_consecutively_within_components(
            mask in proptest::collection::vec(proptest::bool::weighted(0.7), 120),
            config in config_strategy(),
        ) {
            let (labels, n) = split_mask(&mask, 12, &config).expect("valid input");
            let (parts, _) = connected_components(&mask, 12, config.connectivity);
            // No label outside the mask; with no minimum area, every mask pixel labelled.
            for (&l, &m) in labels.iter().zip(&mask) {
                prop_assert!(m || l == 0);
                if config.min_area_px <= 1 {
                    prop_assert!(!m || l != 0);
                }
            }
            // Labels 1..=n, numbered in raster order of first appearance, each at least min_area.
            let mut seen = 0u32;
            let mut area = vec![0usize; n + 1];
            let mut part_of = vec![0u32; n + 1];
            for (&l, &p) in labels.iter().zip(&parts) {
                if l == 0 {
                    continue;
                }
                prop_assert!(l <= seen + 1);
                seen = seen.max(l);
                area[l as usize] += 1;
                // An object never spans two connected parts of the mask.
                prop_assert!(part_of[l as usize] == 0 || part_of[l as usize] == p);
                part_of[l as usize] = p;
            }
            prop_assert_eq!(seen as usize, n);
            prop_assert!(area[1..].iter().all(|&a| a >= config.min_area_px));
            // Deterministic.
            prop_assert_eq!(split_mask(&mask, 12, &config).expect("valid input"), (labels, n));
        }

        #[test]
        fn a_higher_h_never_gives_more_objects(
            mask in proptest::collection::vec(proptest::bool::weighted(0.8), 144),
            h1 in 0.0f64..3.0,
            h2 in 0.0f64..3.0,
        ) {
            let at = |h_px| {
                let config = InstanceConfig {
                    method: Method::DistanceWatershed(WatershedConfig {
                        markers: Markers::HMaxima { h_px },
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                split_mask(&mask, 12, &config).expect("valid input").1
            };
            let (lo, hi) = if h1 <= h2 { (h1, h2) } else { (h2, h1) };
            prop_assert!(at(hi) <= at(lo));
        }

        #[test]
        fn labels_cover_exactly_the_foreground(
            fg in proptest::collection::vec(0.0f32..1.0, 48),
            b in proptest::collection::vec(0.0f32..1.0, 48),
        ) {
            let labels = separate(&fg, Some(&b), 8, Separation::default());
            for (l, p) in labels.iter().zip(&fg) {
                prop_assert_eq!(*l != 0, *p > 0.5);
            }
        }
    }
}
