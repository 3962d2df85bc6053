//! A slide, or a region of it, measured tile by tile: each tile is read with an overlap around
//! it (only the slide's tiles it touches are decoded, so memory follows the tile), analysed as
//! an image, and keeps the nuclei whose centre lies in its core. The cores partition the region,
//! so a nucleus cut by a seam is counted once — by the tile that sees it whole, as long as the
//! overlap is wider than the largest nucleus. Coordinates are the slide's level-0 pixels. Each
//! nucleus goes to a sink as it is found (a slide holds hundreds of thousands; their rows are
//! not kept here).
//!
//! [`plan`] looks at the slide once at low resolution ([`overview`]): it finds the tissue (the
//! whole tissue is measured unless a region is given; tiles without tissue are skipped) and
//! fixes the [`Calibration`] every tile is analysed under — grey levels, polarity, threshold
//! from the tissue, and the model's rescaling factor from the slide's pixel size — so that
//! tiles agree with each other and with one untiled pass of the region.
//!
//! Not read yet: `nuclear_channel` on multi-channel slides (refused) and pyramids in SubIFDs.

pub mod overview;

use std::io::{Read, Seek};

use cellops_dataset::slide::{Rect, Slide, SlideError};
use cellops_measure::contour::{Polygon, polygons};
use cellops_measure::objects::{Cell, Context, Nucleus, columns};

use rayon::prelude::*;

use crate::calibration::{Calibration, Factor, FactorFrom};
use crate::{Analysed, AnalysisError, Analyzer, Image, Input, PixelSize, Segmenter};
use overview::{Overview, Tissue};

/// How a region is cut into tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    /// The side of a tile's core, in level-0 pixels.
    pub tile: u32,
    /// The margin read around each core (wider than the largest nucleus).
    pub overlap: u32,
}

impl Default for Tiling {
    fn default() -> Self {
        Self {
            tile: 1024,
            overlap: 96,
        }
    }
}

/// One tile: the rectangle read (its core and the overlap around it, inside the region) and the
/// core whose nuclei it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    /// What is read and analysed.
    pub read: Rect,
    /// What it owns.
    pub core: Rect,
}

/// The tiles of `region`, row by row: their cores partition it.
///
/// ```
/// use cellops_analysis::slide::{Tiling, tiles};
/// use cellops_dataset::slide::Rect;
/// let t = tiles(Rect { x: 10, y: 0, w: 250, h: 100 }, Tiling { tile: 100, overlap: 8 });
/// assert_eq!(t.len(), 3);
/// assert_eq!(t[1].core, Rect { x: 110, y: 0, w: 100, h: 100 });
/// assert_eq!(t[1].read, Rect { x: 102, y: 0, w: 116, h: 100 });
/// assert_eq!(t[2].core.w, 50);
/// ```
pub fn tiles(region: Rect, t: Tiling) -> Vec<Tile> {
    // In u64: a region near the end of u32's range must not wrap.
    let side = u64::from(t.tile.max(1));
    let overlap = u64::from(t.overlap);
    let (x0, y0) = (u64::from(region.x), u64::from(region.y));
    let (x_end, y_end) = (x0 + u64::from(region.w), y0 + u64::from(region.h));
    let rect = |x: u64, y: u64, x1: u64, y1: u64| Rect {
        x: x as u32,
        y: y as u32,
        w: (x1 - x) as u32,
        h: (y1 - y) as u32,
    };
    let mut out = Vec::new();
    for y in (y0..y_end).step_by(side as usize) {
        for x in (x0..x_end).step_by(side as usize) {
            let (cx1, cy1) = ((x + side).min(x_end), (y + side).min(y_end));
            let core = rect(x, y, cx1, cy1);
            let (rx, ry) = (x.saturating_sub(overlap).max(x0), y.saturating_sub(overlap).max(y0));
            let read = rect(rx, ry, (cx1 + overlap).min(x_end), (cy1 + overlap).min(y_end));
            out.push(Tile { read, core });
        }
    }
    out
}

/// What of a slide is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// Every tile of this level-0 rectangle.
    Region(Rect),
    /// The tiles over the tissue the overview shows.
    Tissue,
}

/// The longer side of the overview that [`plan`] finds the tissue and the calibration on.
pub const OVERVIEW_SIDE: u32 = 2048;

/// How a slide will be measured: the tiles, and what [`plan`] fixed for all of them.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The level-0 rectangle the tiles cover (the tissue's bounds, or the region given).
    pub region: Rect,
    /// The tiles to analyse (those over tissue, for [`Area::Tissue`]).
    pub tiles: Vec<Tile>,
    /// The slide (or the region) at low resolution.
    pub overview: Overview,
    /// The tissue the overview shows.
    pub tissue: Tissue,
    /// What every tile is analysed under.
    pub calibration: Calibration,
    /// The slide's pixel size, and where it came from.
    pub pixel_size: PixelSize,
    /// The area the nuclei's density is per, in level-0 pixels: the tissue's, or the region's.
    pub area_px: f64,
}

/// Plans the measurement of `area` of `slide` (named `name` in errors) in tiles of `tiling`:
/// the overview, the tissue, the calibration (and, for a model trained at a nucleus scale
/// without `nucleus_diameter_um`, the one size estimate of the slide, on its most central tile
/// of tissue). Reads at most `max_pixels` at a time.
pub fn plan<R: Read + Seek>(
    analyzer: &Analyzer,
    slide: &mut Slide<R>,
    name: &str,
    (area, tiling): (Area, Tiling),
    max_pixels: u64,
) -> Result<Plan, AnalysisError> {
    if let Some(c) = analyzer.channel() {
        return Err(AnalysisError::Decode {
            path: name.into(),
            message: format!("nuclear_channel ({c}) is not supported on slides yet: slides are read as stored"),
        });
    }
    let pixel_size = PixelSize::of_meta(analyzer.params(), name.as_ref(), &slide.meta)?;
    let (w, h) = slide.size();
    let whole = Rect { x: 0, y: 0, w, h };
    let asked = match area {
        Area::Region(r) => check_region(r, (w, h), name)?,
        Area::Tissue => whole,
    };
    let overview = overview::overview(slide, asked, OVERVIEW_SIDE, max_pixels)?;
    let tissue = Tissue::find(&overview, pixel_size.um);
    let (region, area_px) = match area {
        Area::Region(r) => (r, r.area() as f64),
        // A nucleus at the tissue's edge lies whole inside: the bounds grow by the overlap.
        Area::Tissue => (
            tissue
                .bounds(&overview)
                .map_or(whole, |b| grow(b, tiling.overlap, (w, h))),
            tissue.area_px(&overview),
        ),
    };
    // A tile whose core misses the tissue can own a nucleus the tissue's edge cuts: what
    // counts is the tissue under what the tile reads.
    let tiles: Vec<Tile> = tiles(region, tiling)
        .into_iter()
        .filter(|t| matches!(area, Area::Region(_)) || tissue.covers(&overview, t.read))
        .collect();
    let factor = model_factor(analyzer, slide, (&tiles, &overview), pixel_size.um, max_pixels)?;
    let model = match analyzer.segmenter() {
        Segmenter::Model { predictor, .. } => Some(predictor.preprocessing()),
        _ => None,
    };
    let calibration = Calibration::of(analyzer.params(), model, &tissue.sample(&overview), factor).map_err(|e| {
        AnalysisError::Decode {
            path: name.into(),
            message: e.to_string(),
        }
    })?;
    Ok(Plan {
        region,
        tiles,
        overview,
        tissue,
        calibration,
        pixel_size,
        area_px,
    })
}

/// `r` grown by `margin` on every side, inside a slide of `size`.
fn grow(r: Rect, margin: u32, (w, h): (u32, u32)) -> Rect {
    let (x0, y0) = (r.x.saturating_sub(margin), r.y.saturating_sub(margin));
    let x1 = (u64::from(r.x) + u64::from(r.w) + u64::from(margin)).min(u64::from(w)) as u32;
    let y1 = (u64::from(r.y) + u64::from(r.h) + u64::from(margin)).min(u64::from(h)) as u32;
    Rect {
        x: x0,
        y: y0,
        w: x1 - x0,
        h: y1 - y0,
    }
}

/// `r` when it lies inside a slide of `size`.
fn check_region(r: Rect, (w, h): (u32, u32), name: &str) -> Result<Rect, AnalysisError> {
    let inside = u64::from(r.x) + u64::from(r.w) <= u64::from(w) && u64::from(r.y) + u64::from(r.h) <= u64::from(h);
    if r.area() == 0 || !inside {
        return Err(AnalysisError::Decode {
            path: name.into(),
            message: format!(
                "region {},{} {}×{} is not inside the slide ({w}×{h})",
                r.x, r.y, r.w, r.h
            ),
        });
    }
    Ok(r)
}

/// A slide's rescaling factor is a whole number of these steps: tile origins and sizes are
/// multiples of 32 pixels (as the defaults are), so every tile then starts on a whole model pixel
/// and is rescaled in phase with its neighbours and with an untiled pass (a step is at most a
/// 1.6 % change of scale at the factors models see).
const FACTOR_STEPS: f64 = 32.0;

/// The model's rescaling factor for the whole slide, when its bundle was trained at a nucleus
/// scale: from `nucleus_diameter_um` and the pixel size `um`, else the model's own estimate on
/// the tile nearest the middle of the tiles; in [`FACTOR_STEPS`].
fn model_factor<R: Read + Seek>(
    analyzer: &Analyzer,
    slide: &mut Slide<R>,
    (tiles, overview): (&[Tile], &Overview),
    um: f64,
    max_pixels: u64,
) -> Result<Option<Factor>, AnalysisError> {
    let Segmenter::Model { predictor, bundle } = analyzer.segmenter() else {
        return Ok(None);
    };
    let Some(target) = predictor.preprocessing().scale.map(|s| s.diameter_px) else {
        return Ok(None);
    };
    let limit = |f: f64| {
        let max = cellops_dataset::ops::scale::MAX_FACTOR;
        (f.clamp(1.0 / max, max) * FACTOR_STEPS).round() / FACTOR_STEPS
    };
    if let Some(d) = analyzer.params().nucleus_diameter_um {
        return Ok(Some(Factor {
            value: limit(target * um / d),
            from: FactorFrom::NucleusDiameter,
        }));
    }
    let r = overview.region;
    let (mx, my) = (
        f64::from(r.x) + f64::from(r.w) / 2.0,
        f64::from(r.y) + f64::from(r.h) / 2.0,
    );
    let distance = |t: &Tile| {
        let (cx, cy) = (
            f64::from(t.core.x) + f64::from(t.core.w) / 2.0,
            f64::from(t.core.y) + f64::from(t.core.h) / 2.0,
        );
        (cx - mx).powi(2) + (cy - my).powi(2)
    };
    let Some(middle) = tiles.iter().min_by(|a, b| distance(a).total_cmp(&distance(b))) else {
        return Ok(None);
    };
    let raster = slide.read_region(0, middle.read, max_pixels)?;
    let estimate = predictor
        .estimate_scale(&raster, target)
        .map_err(|source| AnalysisError::Model {
            path: bundle.clone(),
            source,
        })?;
    Ok(Some(Factor {
        value: limit(estimate.factor),
        from: FactorFrom::Estimate {
            x: middle.read.x,
            y: middle.read.y,
        },
    }))
}

/// A measured region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    /// The region measured.
    pub region: Rect,
    /// How many nuclei went to the sink.
    pub nuclei: usize,
    /// How many tiles were analysed.
    pub tiles: usize,
}

/// Whether the nuclei's outlines are traced for the sink (for GeoJSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outlines {
    /// No outlines.
    Skip,
    /// Each nucleus' polygons, in level-0 pixels.
    Trace,
}

/// A nucleus of a slide, as the sink hears it.
#[derive(Debug, Clone)]
pub struct Found {
    /// The nucleus, in level-0 coordinates, numbered in tile order.
    pub nucleus: Nucleus,
    /// Its report row, as `objects.csv` has it.
    pub row: Vec<(String, Cell)>,
    /// Its outline (level-0 pixels), with [`Outlines::Trace`]; empty otherwise.
    pub outline: Vec<Polygon>,
}

/// What hears each nucleus of a slide as it is found.
pub type Sink<'a> = dyn FnMut(Found) -> Result<(), AnalysisError> + 'a;

/// Measures the tiles of `plan` (made by [`plan`] for this slide) of level 0 of `slide` (named
/// `name` in rows and errors); each nucleus goes to `sink`, and `progress` hears `(tiles done,
/// tiles)`. A tile (with its overlap) over `max_pixels` is refused. Tiles are read one after
/// another and, unless a model (which uses every core itself) segments them, analysed a batch at
/// a time on every core: memory holds one batch of tiles.
pub fn measure<R: Read + Seek>(
    analyzer: &Analyzer,
    slide: &mut Slide<R>,
    name: &str,
    (plan, outlines): (&Plan, Outlines),
    max_pixels: u64,
    (sink, progress): (&mut Sink<'_>, &mut dyn FnMut(usize, usize)),
) -> Result<Measured, AnalysisError> {
    let parallel = !matches!(analyzer.segmenter(), Segmenter::Model { .. });
    let batch = if parallel {
        rayon::current_num_threads().max(1) * 2
    } else {
        1
    };
    let mut out = Measured {
        region: plan.region,
        nuclei: 0,
        tiles: plan.tiles.len(),
    };
    let calibration = Some(&plan.calibration);
    let mut done = 0;
    for chunk in plan.tiles.chunks(batch) {
        let inputs = chunk
            .iter()
            .map(|t| read(slide, name, t.read, max_pixels))
            .collect::<Result<Vec<Input>, AnalysisError>>()?;
        let analysed: Vec<Result<Analysed, AnalysisError>> = if parallel {
            inputs
                .par_iter()
                .map(|i| analyzer.analyse_with(i, calibration))
                .collect()
        } else {
            inputs.iter().map(|i| analyzer.analyse_with(i, calibration)).collect()
        };
        for ((tile, input), a) in chunk.iter().zip(&inputs).zip(analysed) {
            let channels = usize::from(input.image.raster.channels);
            out.nuclei = keep(out.nuclei, (analyzer, name, outlines), tile, channels, a?, sink)?;
            done += 1;
            progress(done, plan.tiles.len());
        }
    }
    Ok(out)
}

/// A tile's pixels as an input named `name`, with the slide's metadata (its pixel size).
fn read<R: Read + Seek>(slide: &mut Slide<R>, name: &str, rect: Rect, max_pixels: u64) -> Result<Input, AnalysisError> {
    let raster = slide.read_region(0, rect, max_pixels)?;
    Ok(Input {
        id: name.to_owned(),
        image: Image {
            path: name.into(),
            raster,
            meta: slide.meta.clone(),
        },
        mask: None,
        truth: None,
    })
}

/// Sends the nuclei of a tile's analysis whose centre lies in its core to `sink`, in level-0
/// coordinates and numbered on from the `before` sent earlier; returns how many are sent now.
fn keep(
    mut before: usize,
    (analyzer, name, outlines): (&Analyzer, &str, Outlines),
    tile: &Tile,
    channels: usize,
    analysed: Analysed,
    sink: &mut Sink<'_>,
) -> Result<usize, AnalysisError> {
    let ctx = Context::new(analyzer.params(), analysed.pixel_size.um);
    let (dx, dy) = (tile.read.x as usize, tile.read.y as usize);
    let c = tile.core;
    let m = analysed.measurement;
    let mut traced = match outlines {
        Outlines::Trace => polygons(&m.labels, tile.read.w as usize),
        Outlines::Skip => Default::default(),
    };
    for mut n in m.nuclei {
        let label = n.shape.label as u32;
        n.shape.centroid[0] += dy as f64;
        n.shape.centroid[1] += dx as f64;
        let (cy, cx) = (n.shape.centroid[0], n.shape.centroid[1]);
        let owned = (f64::from(c.x)..f64::from(c.x + c.w)).contains(&cx)
            && (f64::from(c.y)..f64::from(c.y + c.h)).contains(&cy);
        if !owned {
            continue;
        }
        let b = n.shape.bbox;
        n.shape.bbox = [b[0] + dy, b[1] + dx, b[2] + dy, b[3] + dx];
        before += 1;
        n.shape.label = before as u64;
        let row = columns(name, &n, &ctx, Some(channels));
        let mut outline = traced.remove(&label).unwrap_or_default();
        let shift = |ring: &mut Vec<[u32; 2]>| ring.iter_mut().for_each(|p| *p = [p[0] + dx as u32, p[1] + dy as u32]);
        for p in &mut outline {
            shift(&mut p.exterior);
            p.holes.iter_mut().for_each(shift);
        }
        sink(Found {
            nucleus: n,
            row,
            outline,
        })?;
    }
    Ok(before)
}

impl From<SlideError> for AnalysisError {
    fn from(e: SlideError) -> Self {
        let (path, message) = match e {
            SlideError::Io { path, source } => (path, source.to_string()),
            SlideError::Format { path, message } | SlideError::Region { path, message } => (path, message),
        };
        AnalysisError::Decode { path, message }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use cellops_dataset::slide::write_pyramid;
    use cellops_formats::params::CellParams;

    use super::*;

    /// Discs of radius 5 (grey 200 on 20) on a 12-pixel-spaced lattice's every other point,
    /// shifted so that rows and columns of them straddle every seam of 64-pixel tiles.
    fn discs(w: u32, h: u32) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        for y in (9..i64::from(h) - 9).step_by(23) {
            for x in (9..i64::from(w) - 9).step_by(23) {
                out.push((x, y));
            }
        }
        out
    }

    fn slide(w: u32, h: u32) -> Vec<u8> {
        let centres = discs(w, h);
        let mut bytes = std::io::Cursor::new(Vec::new());
        write_pyramid(&mut bytes, (w, h, 1), 64, 0.5, |level, r| {
            let step = 1i64 << level;
            let mut v = Vec::with_capacity(r.area() as usize);
            for y in r.y..r.y + r.h {
                for x in r.x..r.x + r.w {
                    let (gx, gy) = (i64::from(x) * step, i64::from(y) * step);
                    let inside = centres.iter().any(|(cx, cy)| (gx - cx).pow(2) + (gy - cy).pow(2) <= 25);
                    v.push(if inside { 200 } else { 20 });
                }
            }
            v
        })
        .expect("slide");
        bytes.into_inner()
    }

    fn analyzer(threshold: &str) -> Analyzer {
        let text = format!(
            "description: seams\nsegmentation:\n  method: threshold\n  threshold: {threshold}\n  separation: {{ method: none }}\nfilters: {{ min_area_um2: 1, exclude_border: false }}\n"
        );
        let params = CellParams::from_yaml(&text, Path::new("seams.yaml")).expect("params");
        Analyzer::new(params, Segmenter::Threshold)
    }

    /// Each nucleus' centre and area, sorted.
    fn found(got: &[Found]) -> Vec<(i64, i64, u64)> {
        let mut v: Vec<(i64, i64, u64)> = got
            .iter()
            .map(|f| {
                let n = &f.nucleus;
                (
                    (n.shape.centroid[1] * 100.0).round() as i64,
                    (n.shape.centroid[0] * 100.0).round() as i64,
                    n.shape.area,
                )
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// Plans `area` in `tiling` and measures it: the nuclei found, what was measured, the
    /// progress heard.
    fn run(
        a: &Analyzer,
        s: &mut Slide<std::io::Cursor<Vec<u8>>>,
        (area, tiling): (Area, Tiling),
    ) -> (Plan, Measured, Vec<Found>, Vec<(usize, usize)>) {
        let plan = plan(a, s, "s", (area, tiling), 1 << 20).expect("plan");
        let (mut got, mut seen) = (Vec::new(), Vec::new());
        let mut sink = |f| {
            got.push(f);
            Ok(())
        };
        let m = measure(
            a,
            s,
            "s",
            (&plan, Outlines::Trace),
            1 << 20,
            (&mut sink, &mut |d, n| seen.push((d, n))),
        )
        .expect("measure");
        assert_eq!(m.nuclei, got.len());
        (plan, m, got, seen)
    }

    fn open(w: u32, h: u32) -> Slide<std::io::Cursor<Vec<u8>>> {
        Slide::from_reader(Path::new("s.tif"), std::io::Cursor::new(slide(w, h))).expect("open")
    }

    #[test]
    fn nuclei_cut_by_seams_are_counted_once_and_equal_an_untiled_pass() {
        let (w, h) = (300, 220);
        let mut s = open(w, h);
        // Otsu's threshold, once for the slide: tiles agree with one pass.
        let a = analyzer("{ method: otsu }");
        let whole = Rect { x: 0, y: 0, w, h };
        let (_, tiled, rows, seen) = run(&a, &mut s, (Area::Region(whole), Tiling { tile: 64, overlap: 16 }));
        assert_eq!(tiled.tiles, 20);
        assert_eq!(seen.last(), Some(&(20, 20)));
        assert_eq!(tiled.nuclei, discs(w, h).len(), "each disc once");
        let (_, untiled, whole_rows, _) = run(&a, &mut s, (Area::Region(whole), Tiling { tile: 512, overlap: 0 }));
        assert_eq!(untiled.tiles, 1);
        assert_eq!(found(&rows), found(&whole_rows), "the same nuclei, the same places");
        // Rows in level-0 coordinates, numbered once.
        let column = |row: &[(String, Cell)], name: &str| row.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(column(&rows[4].row, "ObjectNumber"), Some(Cell::Int(5)));
        // The pixel size came from the slide (resolution tags in centimetres).
        let area = rows[0].nucleus.shape.area as f64;
        assert_eq!(
            column(&rows[0].row, "AreaShape_Area_um2"),
            Some(Cell::Float(area * 0.25))
        );
        // Outlines in level-0 pixels, as large as the nuclei.
        for f in &rows {
            let [y0, x0, y1, x1] = f.nucleus.shape.bbox;
            let ring = &f.outline[0].exterior;
            assert!(
                ring.iter()
                    .all(|&[x, y]| (x0..=x1).contains(&(x as usize)) && (y0..=y1).contains(&(y as usize)))
            );
            let traced: i64 = f.outline.iter().map(|p| p.area()).sum();
            assert_eq!(traced, f.nucleus.shape.area as i64);
        }
        // A region: only its nuclei, in slide coordinates.
        let region = Rect {
            x: 64,
            y: 32,
            w: 130,
            h: 100,
        };
        let (_, _, part, _) = run(&a, &mut s, (Area::Region(region), Tiling { tile: 64, overlap: 16 }));
        assert!(!part.is_empty());
        assert!(part.iter().all(|f| {
            let (x, y) = (f.nucleus.shape.centroid[1], f.nucleus.shape.centroid[0]);
            (64.0..194.0).contains(&x) && (32.0..132.0).contains(&y)
        }));
        // Outside the slide: refused by name.
        let outside = Rect {
            x: 250,
            y: 0,
            w: 100,
            h: 10,
        };
        let e = plan(&a, &mut s, "s", (Area::Region(outside), Tiling::default()), 1 << 20).expect_err("outside");
        assert!(e.to_string().contains("not inside the slide (300×220)"), "{e}");
    }

    #[test]
    fn the_tissue_is_measured_and_empty_tiles_are_skipped() {
        // Nuclei only in the left third of a wide slide: its tissue.
        let (w, h) = (600, 128);
        let centres: Vec<(i64, i64)> = discs(200, h);
        let mut bytes = std::io::Cursor::new(Vec::new());
        write_pyramid(&mut bytes, (w, h, 1), 64, 0.5, |level, r| {
            let step = 1i64 << level;
            (r.y..r.y + r.h)
                .flat_map(|y| (r.x..r.x + r.w).map(move |x| (i64::from(x) * step, i64::from(y) * step)))
                .map(|(gx, gy)| {
                    let inside = centres.iter().any(|(cx, cy)| (gx - cx).pow(2) + (gy - cy).pow(2) <= 25);
                    if inside { 200 } else { 20 }
                })
                .collect()
        })
        .expect("slide");
        let mut s = Slide::from_reader(Path::new("t.tif"), std::io::Cursor::new(bytes.into_inner())).expect("open");
        let a = analyzer("{ method: otsu }");
        let (plan, m, got, _) = run(&a, &mut s, (Area::Tissue, Tiling { tile: 64, overlap: 16 }));
        assert_eq!(m.nuclei, centres.len(), "every nucleus of the tissue");
        assert!(plan.region.x + plan.region.w < 300, "{:?}", plan.region);
        assert!(m.tiles < 10 * 2, "{} tiles: the glass is skipped", m.tiles);
        assert!(plan.area_px > 0.0 && plan.area_px < f64::from(300 * h));
        assert_eq!(found(&got).len(), centres.len());
    }
}
