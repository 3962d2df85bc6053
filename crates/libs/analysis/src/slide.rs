//! A slide, or a region of it, measured tile by tile: each tile is read with an overlap around
//! it (only the slide's tiles it touches are decoded, so memory follows the tile), analysed as
//! an image, and keeps the nuclei whose centre lies in its core. The cores partition the region,
//! so a nucleus cut by a seam is counted once — by the tile that sees it whole, as long as the
//! overlap is wider than the largest nucleus and both tiles segment it alike. Coordinates are the
//! slide's level-0 pixels. Each nucleus goes to a sink as it is found (a slide holds hundreds of
//! thousands; their rows are not kept here).
//!
//! Limits of this first version: each tile is normalised (and an adaptive threshold chosen) on
//! its own, so a seam nucleus can segment differently in its two tiles and a tile of background
//! only is stretched to full range; the equality with an untiled pass is tested with a fixed
//! threshold. One normalisation for the whole slide, from a reduced level, is the next step, as
//! are `nuclear_channel` on multi-channel slides (refused for now) and pyramids in SubIFDs.

use std::io::{Read, Seek};

use cellops_dataset::slide::{Rect, Slide, SlideError};
use cellops_measure::objects::{Cell, Context, Nucleus, columns};

use rayon::prelude::*;

use crate::{Analysed, AnalysisError, Analyzer, Image, Input, Segmenter};

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

/// What hears each nucleus of a slide as it is found: the nucleus (level-0 coordinates,
/// numbered in tile order) and its report row, as `objects.csv` has it.
pub type Sink<'a> = dyn FnMut(Nucleus, Vec<(String, Cell)>) -> Result<(), AnalysisError> + 'a;

/// Measures `region` of level 0 of `slide` (named `name` in rows and errors) tile by tile;
/// each nucleus goes to `sink`, and `progress` hears `(tiles done, tiles)`. A tile (with its
/// overlap) over `max_pixels` is refused. Tiles are read one after another and, unless a model
/// (which uses every core itself) segments them, analysed a batch at a time on every core:
/// memory holds one batch of tiles.
pub fn measure<R: Read + Seek>(
    analyzer: &Analyzer,
    slide: &mut Slide<R>,
    name: &str,
    (region, tiling): (Rect, Tiling),
    max_pixels: u64,
    (sink, progress): (&mut Sink<'_>, &mut dyn FnMut(usize, usize)),
) -> Result<Measured, AnalysisError> {
    let (w, h) = slide.size();
    let inside = u64::from(region.x) + u64::from(region.w) <= u64::from(w)
        && u64::from(region.y) + u64::from(region.h) <= u64::from(h);
    if region.area() == 0 || !inside {
        return Err(AnalysisError::Decode {
            path: name.into(),
            message: format!(
                "region {},{} {}×{} is not inside the slide ({w}×{h})",
                region.x, region.y, region.w, region.h
            ),
        });
    }
    if let Some(c) = analyzer.channel() {
        return Err(AnalysisError::Decode {
            path: name.into(),
            message: format!("nuclear_channel ({c}) is not supported on slides yet: slides are read as stored"),
        });
    }
    let plan = tiles(region, tiling);
    let parallel = !matches!(analyzer.segmenter(), Segmenter::Model { .. });
    let batch = if parallel {
        rayon::current_num_threads().max(1) * 2
    } else {
        1
    };
    let mut out = Measured {
        region,
        nuclei: 0,
        tiles: plan.len(),
    };
    let mut done = 0;
    for chunk in plan.chunks(batch) {
        let inputs = chunk
            .iter()
            .map(|t| read(slide, name, t.read, max_pixels))
            .collect::<Result<Vec<Input>, AnalysisError>>()?;
        let analysed: Vec<Result<Analysed, AnalysisError>> = if parallel {
            inputs.par_iter().map(|i| analyzer.analyse(i)).collect()
        } else {
            inputs.iter().map(|i| analyzer.analyse(i)).collect()
        };
        for ((tile, input), a) in chunk.iter().zip(&inputs).zip(analysed) {
            let channels = usize::from(input.image.raster.channels);
            out.nuclei = keep(out.nuclei, (analyzer, name), tile, channels, a?, sink)?;
            done += 1;
            progress(done, plan.len());
        }
    }
    Ok(out)
}

/// A tile's pixels as an input named `name`, with the slide's metadata (its pixel size).
fn read<R: Read + Seek>(slide: &mut Slide<R>, name: &str, rect: Rect, max_pixels: u64) -> Result<Input, AnalysisError> {
    let raster = slide.read_region(0, rect, max_pixels).map_err(slide_error)?;
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
    (analyzer, name): (&Analyzer, &str),
    tile: &Tile,
    channels: usize,
    analysed: Analysed,
    sink: &mut Sink<'_>,
) -> Result<usize, AnalysisError> {
    let ctx = Context::new(analyzer.params(), analysed.pixel_size.um);
    let (dx, dy) = (tile.read.x as usize, tile.read.y as usize);
    let c = tile.core;
    for mut n in analysed.measurement.nuclei {
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
        sink(n, row)?;
    }
    Ok(before)
}

fn slide_error(e: SlideError) -> AnalysisError {
    let (path, message) = match e {
        SlideError::Io { path, source } => (path, source.to_string()),
        SlideError::Format { path, message } | SlideError::Region { path, message } => (path, message),
    };
    AnalysisError::Decode { path, message }
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

    fn analyzer() -> Analyzer {
        let text = "description: seams\nsegmentation:\n  method: threshold\n  threshold: { method: fixed, value: 128 }\n  separation: { method: none }\nfilters: { min_area_um2: 1, exclude_border: false }\n";
        let params = CellParams::from_yaml(text, Path::new("seams.yaml")).expect("params");
        Analyzer::new(params, Segmenter::Threshold)
    }

    /// Each nucleus' centre and area, sorted.
    fn found(got: &[(Nucleus, Vec<(String, Cell)>)]) -> Vec<(i64, i64, u64)> {
        let mut v: Vec<(i64, i64, u64)> = got
            .iter()
            .map(|(n, _)| {
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

    #[test]
    fn nuclei_cut_by_seams_are_counted_once_and_equal_an_untiled_pass() {
        let (w, h) = (300, 220);
        let mut s = Slide::from_reader(Path::new("s.tif"), std::io::Cursor::new(slide(w, h))).expect("open");
        let a = analyzer();
        let whole = Rect { x: 0, y: 0, w, h };
        let mut run = |region: Rect, tiling: Tiling, seen: &mut Vec<(usize, usize)>| {
            let mut got: Vec<(Nucleus, Vec<(String, Cell)>)> = Vec::new();
            let mut sink = |n, row| {
                got.push((n, row));
                Ok(())
            };
            let m = measure(
                &a,
                &mut s,
                "s",
                (region, tiling),
                1 << 20,
                (&mut sink, &mut |d, n| seen.push((d, n))),
            )
            .expect("measure");
            assert_eq!(m.nuclei, got.len());
            (m, got)
        };
        let mut seen = Vec::new();
        let (tiled, rows) = run(whole, Tiling { tile: 64, overlap: 16 }, &mut seen);
        assert_eq!(tiled.tiles, 20);
        assert_eq!(seen.last(), Some(&(20, 20)));
        assert_eq!(tiled.nuclei, discs(w, h).len(), "each disc once");
        let (untiled, whole_rows) = run(whole, Tiling { tile: 512, overlap: 0 }, &mut Vec::new());
        assert_eq!(untiled.tiles, 1);
        assert_eq!(found(&rows), found(&whole_rows), "the same nuclei, the same places");
        // Rows in level-0 coordinates, numbered once.
        let column = |row: &[(String, Cell)], name: &str| row.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(column(&rows[4].1, "ObjectNumber"), Some(Cell::Int(5)));
        // The pixel size came from the slide (resolution tags in centimetres).
        let area = rows[0].0.shape.area as f64;
        assert_eq!(column(&rows[0].1, "AreaShape_Area_um2"), Some(Cell::Float(area * 0.25)));
        // A region: only its nuclei, in slide coordinates.
        let region = Rect {
            x: 64,
            y: 32,
            w: 130,
            h: 100,
        };
        let (_, part) = run(region, Tiling { tile: 64, overlap: 16 }, &mut Vec::new());
        assert!(!part.is_empty());
        assert!(part.iter().all(|(n, _)| {
            let (x, y) = (n.shape.centroid[1], n.shape.centroid[0]);
            (64.0..194.0).contains(&x) && (32.0..132.0).contains(&y)
        }));
    }
}
