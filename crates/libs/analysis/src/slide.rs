//! A slide, or a region of it, measured tile by tile: each tile is read with an overlap around
//! it (only the slide's tiles it touches are decoded, so memory follows the tile), analysed as
//! an image, and keeps the nuclei whose centre lies in its core. The cores partition the region,
//! so a nucleus cut by a seam is counted once — by the tile that sees it whole, as long as the
//! overlap is wider than the largest nucleus. Coordinates are the slide's level-0 pixels.

use std::io::{Read, Seek};

use cellops_dataset::slide::{Rect, Slide, SlideError};
use cellops_measure::objects::{Cell, Context, Nucleus, columns};

use crate::{AnalysisError, Analyzer, Image, Input};

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
    let side = t.tile.max(1);
    let (x_end, y_end) = (region.x + region.w, region.y + region.h);
    let mut out = Vec::new();
    for y in (region.y..y_end).step_by(side as usize) {
        for x in (region.x..x_end).step_by(side as usize) {
            let core = Rect {
                x,
                y,
                w: side.min(x_end - x),
                h: side.min(y_end - y),
            };
            let (rx, ry) = (
                x.saturating_sub(t.overlap).max(region.x),
                y.saturating_sub(t.overlap).max(region.y),
            );
            let read = Rect {
                x: rx,
                y: ry,
                w: (core.x + core.w + t.overlap).min(x_end) - rx,
                h: (core.y + core.h + t.overlap).min(y_end) - ry,
            };
            out.push(Tile { read, core });
        }
    }
    out
}

/// A measured region: its nuclei (level-0 coordinates, numbered in tile order) and their report
/// rows.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The region measured.
    pub region: Rect,
    /// The nuclei.
    pub nuclei: Vec<Nucleus>,
    /// One report row per nucleus, as `objects.csv` has them.
    pub rows: Vec<Vec<(String, Cell)>>,
    /// How many tiles were analysed.
    pub tiles: usize,
}

/// Measures `region` of level 0 of `slide` (named `name` in rows and errors) tile by tile;
/// `progress` hears `(tiles done, tiles)`. A tile (with its overlap) over `max_pixels` is
/// refused.
pub fn measure<R: Read + Seek>(
    analyzer: &Analyzer,
    slide: &mut Slide<R>,
    name: &str,
    (region, tiling): (Rect, Tiling),
    max_pixels: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Measured, AnalysisError> {
    let plan = tiles(region, tiling);
    let mut out = Measured {
        region,
        nuclei: Vec::new(),
        rows: Vec::new(),
        tiles: plan.len(),
    };
    for (i, tile) in plan.iter().enumerate() {
        let raster = slide.read_region(0, tile.read, max_pixels).map_err(slide_error)?;
        let channels = usize::from(raster.channels);
        let input = Input {
            id: name.to_owned(),
            image: Image {
                path: name.into(),
                raster,
                meta: slide.meta.clone(),
            },
            mask: None,
            truth: None,
        };
        let analysed = analyzer.analyse(&input)?;
        let ctx = Context::new(analyzer.params(), analysed.pixel_size.um);
        for mut n in analysed.measurement.nuclei {
            let (dx, dy) = (tile.read.x as usize, tile.read.y as usize);
            n.shape.centroid[0] += dy as f64;
            n.shape.centroid[1] += dx as f64;
            let (cy, cx) = (n.shape.centroid[0], n.shape.centroid[1]);
            let c = tile.core;
            let owned =
                cx >= f64::from(c.x) && cx < f64::from(c.x + c.w) && cy >= f64::from(c.y) && cy < f64::from(c.y + c.h);
            if !owned {
                continue;
            }
            n.shape.bbox = [
                n.shape.bbox[0] + dy,
                n.shape.bbox[1] + dx,
                n.shape.bbox[2] + dy,
                n.shape.bbox[3] + dx,
            ];
            n.shape.label = out.nuclei.len() as u64 + 1;
            out.rows.push(columns(name, &n, &ctx, Some(channels)));
            out.nuclei.push(n);
        }
        progress(i + 1, plan.len());
    }
    Ok(out)
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
    use crate::Segmenter;

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
    fn found(nuclei: &[Nucleus]) -> Vec<(i64, i64, u64)> {
        let mut v: Vec<(i64, i64, u64)> = nuclei
            .iter()
            .map(|n| {
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
        let mut seen = Vec::new();
        let tiled = measure(
            &a,
            &mut s,
            "s",
            (whole, Tiling { tile: 64, overlap: 16 }),
            1 << 20,
            &mut |d, n| seen.push((d, n)),
        )
        .expect("tiled");
        assert_eq!(tiled.tiles, 20);
        assert_eq!(seen.last(), Some(&(20, 20)));
        assert_eq!(tiled.nuclei.len(), discs(w, h).len(), "each disc once");
        let untiled = measure(
            &a,
            &mut s,
            "s",
            (whole, Tiling { tile: 512, overlap: 0 }),
            1 << 20,
            &mut |_, _| {},
        )
        .expect("untiled");
        assert_eq!(untiled.tiles, 1);
        assert_eq!(
            found(&tiled.nuclei),
            found(&untiled.nuclei),
            "the same nuclei, the same places"
        );
        // Rows in level-0 coordinates, numbered once.
        let number = |row: &Vec<(String, Cell)>| row.iter().find(|(k, _)| k == "ObjectNumber").map(|(_, v)| v.clone());
        assert_eq!(number(&tiled.rows[4]), Some(Cell::Int(5)));
        // The pixel size came from the slide (resolution tags in centimetres).
        let um2 = tiled.rows[0]
            .iter()
            .find(|(k, _)| k == "AreaShape_Area_um2")
            .map(|(_, v)| v.clone());
        let area = tiled.nuclei[0].shape.area as f64;
        assert_eq!(um2, Some(Cell::Float(area * 0.25)));
        // A region: only its nuclei, in slide coordinates.
        let region = Rect {
            x: 64,
            y: 32,
            w: 130,
            h: 100,
        };
        let part = measure(
            &a,
            &mut s,
            "s",
            (region, Tiling { tile: 64, overlap: 16 }),
            1 << 20,
            &mut |_, _| {},
        )
        .expect("region");
        assert!(part.nuclei.iter().all(|n| {
            let (x, y) = (n.shape.centroid[1], n.shape.centroid[0]);
            (64.0..194.0).contains(&x) && (32.0..132.0).contains(&y)
        }));
        assert!(!part.nuclei.is_empty());
    }
}
