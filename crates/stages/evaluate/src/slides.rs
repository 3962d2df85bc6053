//! `evaluate --slide`: whole-slide images measured tile by tile (`cellops_analysis::slide`), their
//! nuclei streamed to `objects.csv`, `objects.json` and, on request, `geojson/<slide>.geojson` in
//! level-0 pixels as they are found — never all in memory — and per slide a record in
//! `summary.json` (its region, tissue, tiles, calibration) and `overlays/<slide>.png`: the
//! slide at low resolution under the nuclei's density as a heat map, which the HTML report shows.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use cellops_actions::Runner;
use cellops_actions::progress::Progress;
use cellops_analysis::slide::{self, Area, Found, Outlines, Plan, Tiling};
use cellops_analysis::{AnalysisError, Analyzer};
use cellops_dataset::slide::{Rect, Slide};
use cellops_dataset::{Raster, io};
use cellops_measure::objects::{Context, Dropped, ImageSummary, Summariser};
use cellops_measure::table::Stream;

use crate::report::{ImageRecord, SlideRecord};
use crate::shard::Measured;
use crate::{Args, StageError};

mod heatmap;

/// What the slides of a run gave: a record per slide (rows already written) and every summarised
/// value by column, pooled over the slides.
pub(crate) struct Slides {
    pub results: Vec<Measured>,
    pub values: BTreeMap<String, Vec<f64>>,
}

/// `--region x,y,w,h` (level-0 pixels).
pub fn parse_region(s: &str) -> Result<Rect, String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let numbers: Result<Vec<u32>, _> = parts.iter().map(|p| p.parse::<u32>()).collect();
    match numbers.as_deref() {
        Ok([x, y, w, h]) if *w > 0 && *h > 0 => Ok(Rect {
            x: *x,
            y: *y,
            w: *w,
            h: *h,
        }),
        _ => Err("a region is x,y,w,h in level-0 pixels: four whole numbers, w and h above 0".into()),
    }
}

/// The open files every slide's nuclei stream to.
struct Streams {
    table: Stream<BufWriter<File>, BufWriter<File>>,
    dir: PathBuf,
}

fn create(dir: &Path, rel: &str) -> Result<BufWriter<File>, StageError> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| write_error(parent, &e))?;
    }
    let file = File::create(&path).map_err(|e| write_error(&path, &e))?;
    Ok(BufWriter::with_capacity(1 << 20, file))
}

fn write_error(path: &Path, e: &dyn std::fmt::Display) -> StageError {
    StageError::Write {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Measures every slide of `args` into `out` (a staging folder), streaming the tables.
pub(crate) fn evaluate(args: &Args, analyzer: &Analyzer, runner: &Runner, out: &Path) -> Result<Slides, StageError> {
    names(&args.slides)?;
    let mut streams = Streams {
        table: Stream::new(create(out, "objects.csv")?, create(out, "objects.json")?),
        dir: out.to_owned(),
    };
    let mut slides = Slides {
        results: Vec::new(),
        values: BTreeMap::new(),
    };
    let mut channels = None;
    for path in &args.slides {
        let (measured, values) = one(path, args, analyzer, runner, &mut streams, &mut channels)?;
        for (k, v) in values {
            // Moved, not copied, where no slide before had the column: one copy in memory.
            match slides.values.entry(k) {
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(v);
                }
                std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().extend(v),
            }
        }
        slides.results.push(measured);
    }
    let objects = out.join("objects.csv");
    streams.table.finish().map_err(|e| write_error(&objects, &e))?;
    Ok(slides)
}

/// The slides' names (file stems), refused when two are the same or when a relative path leads
/// out of the working folder.
fn names(slides: &[PathBuf]) -> Result<Vec<String>, StageError> {
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for p in slides {
        // A slide named by a relative path (as a workflow's glob names it) stays in the checkout.
        cellops_formats::links::check_relative(p).map_err(|e| StageError::Usage(e.to_string()))?;
        let name = name(p);
        if let Some(other) = seen.insert(name.clone(), p) {
            return Err(StageError::Usage(format!(
                "slides {} and {} have one name ({name}): their rows and files would mix; rename one",
                other.display(),
                p.display()
            )));
        }
        out.push(name);
    }
    Ok(out)
}

fn name(p: &Path) -> String {
    p.file_stem()
        .map_or_else(|| "slide".into(), |s| s.to_string_lossy().into_owned())
}

/// Measures one slide: plans it, streams its nuclei, writes its overview; `channels` is the
/// first slide's (the tables' columns depend on it).
fn one(
    path: &Path,
    args: &Args,
    analyzer: &Analyzer,
    runner: &Runner,
    streams: &mut Streams,
    channels: &mut Option<u8>,
) -> Result<(Measured, BTreeMap<String, Vec<f64>>), StageError> {
    let name = name(path);
    let mut slide = Slide::open(path).map_err(AnalysisError::from)?;
    let area = args.region.map_or(Area::Tissue, Area::Region);
    let tiling = Tiling {
        tile: args.slide_tile,
        overlap: args.slide_overlap,
    };
    let plan = slide::plan(
        analyzer,
        &mut slide,
        &path.display().to_string(),
        (area, tiling),
        args.max_pixels,
    )?;
    let c = plan.overview.raster.channels;
    if let Some(first) = channels.replace(c).filter(|&f| f != c) {
        return Err(StageError::Usage(format!(
            "{} has {c} channel(s) but the slides before it {first}: objects.csv would need other columns; evaluate them in separate runs",
            path.display()
        )));
    }
    let (w, h) = slide.size();
    runner.info(&describe(&name, (w, h), &plan))?;
    let streamed = stream(path, (&name, args), analyzer, runner, streams, (&mut slide, &plan))?;
    let overlay = format!("overlays/{name}.png");
    let png = io::encode_png(&streamed.heat).map_err(|e| write_error(&streams.dir.join(&overlay), &e))?;
    crate::write_file(&streams.dir, &overlay, &png)?;
    let Streamed {
        summary,
        values,
        geojson: geojson_rel,
        tiles,
        peak,
        ..
    } = streamed;
    let record = ImageRecord {
        summary,
        overlay: Some(overlay),
        labels: None,
        geojson: geojson_rel,
        metrics: None,
        classical: None,
        scale: plan.calibration.factor.map(|f| f.value),
        pixel_size_um: plan.pixel_size.um,
        pixel_size_from: plan.pixel_size.source().to_owned(),
        image_pixel_size_um: plan.pixel_size.image_says,
        slide: Some(SlideRecord::of(path, (w, h), &plan, (args, tiles), peak)),
    };
    Ok((
        Measured {
            record,
            rows: Vec::new(),
            scores: None,
            classical: None,
        },
        values,
    ))
}

/// What streaming a slide's nuclei gave.
struct Streamed {
    summary: ImageSummary,
    values: BTreeMap<String, Vec<f64>>,
    /// The GeoJSON written, relative to the output folder.
    geojson: Option<String>,
    tiles: usize,
    /// The overview under the density, and the most nuclei per mm² of a cell.
    heat: Raster,
    peak: f64,
}

/// Measures the tiles of `plan`, each nucleus pooled into the slide's summary and density and
/// written to the tables (and the GeoJSON, when asked for) as it is found.
fn stream<R: std::io::Read + std::io::Seek>(
    path: &Path,
    (name, args): (&str, &Args),
    analyzer: &Analyzer,
    runner: &Runner,
    streams: &mut Streams,
    (slide, plan): (&mut Slide<R>, &Plan),
) -> Result<Streamed, StageError> {
    let wanted = crate::outputs(args, analyzer);
    let geojson_rel = wanted.geojson.then(|| format!("geojson/{name}.geojson"));
    let mut geojson = geojson_rel
        .as_deref()
        .map(|rel| create(&streams.dir, rel))
        .transpose()?;
    let outlines = if geojson.is_some() {
        Outlines::Trace
    } else {
        Outlines::Skip
    };
    let ctx = Context::new(analyzer.params(), plan.pixel_size.um);
    let mut pooled = Summariser::new(&ctx, Some(usize::from(plan.overview.raster.channels)));
    let mut density = heatmap::Density::new(&plan.overview);
    let mut failed: Option<StageError> = None;
    let objects = streams.dir.join("objects.csv");
    let geojson_at = streams.dir.join(geojson_rel.as_deref().unwrap_or_default());
    let size_classes: Vec<String> = analyzer.params().classes.size.iter().map(|c| c.name.clone()).collect();
    let mut first_feature = true;
    let mut sink = |f: Found| -> Result<(), AnalysisError> {
        pooled.add(&f.nucleus, &f.row);
        density.add(f.nucleus.shape.centroid[1], f.nucleus.shape.centroid[0]);
        let mut written = streams.table.push(&f.row).map_err(|e| write_error(&objects, &e));
        if let (Some(g), Ok(())) = (geojson.as_mut(), &written) {
            let feature = cellops_analysis::geojson::feature(&f.nucleus, &f.row, &f.outline, &size_classes);
            written = geojson_feature(g, &feature, &mut first_feature).map_err(|e| write_error(&geojson_at, &e));
        }
        written.map_err(|e| {
            let message = e.to_string();
            failed = Some(e);
            AnalysisError::Decode {
                path: path.to_owned(),
                message,
            }
        })
    };
    let progress = Progress::new(runner, plan.tiles.len() as u64, &format!("tiles of {name}"));
    let mut log = Log::new(runner, name);
    let measured = slide::measure(
        analyzer,
        slide,
        name,
        (plan, outlines),
        args.max_pixels,
        (&mut sink, &mut |done, total| {
            progress.inc();
            log.tick(done, total);
        }),
    );
    progress.finish();
    if let Some(e) = failed {
        return Err(e);
    }
    let measured = measured?;
    if let (Some(g), Some(rel)) = (geojson.as_mut(), &geojson_rel) {
        let at = streams.dir.join(rel);
        end_geojson(g, first_feature).map_err(|e| write_error(&at, &e))?;
    }
    let (heat, peak) = density.draw(plan.pixel_size.um);
    let um2 = plan.pixel_size.um * plan.pixel_size.um;
    let r = plan.region;
    let (summary, values) = pooled.finish_with_values(
        name,
        (r.w as usize, r.h as usize),
        plan.area_px * um2 * 1e-6,
        Dropped::default(),
    );
    Ok(Streamed {
        summary,
        values,
        geojson: geojson_rel,
        tiles: measured.tiles,
        heat,
        peak,
    })
}

/// The line that says what a slide's plan found.
fn describe(name: &str, (w, h): (u32, u32), plan: &Plan) -> String {
    let r = plan.region;
    let um2 = plan.pixel_size.um * plan.pixel_size.um;
    let factor = plan
        .calibration
        .factor
        .map(|f| format!("; the model sees it at ×{:.3} ({})", f.value, f.from.describe()))
        .unwrap_or_default();
    format!(
        "slide {name}: {w}×{h} px at {} µm ({}), {} tiles over {},{} {}×{} ({:.2} mm² measured){factor}",
        plan.pixel_size.um,
        plan.pixel_size.source(),
        plan.tiles.len(),
        r.x,
        r.y,
        r.w,
        r.h,
        plan.area_px * um2 * 1e-6,
    )
}

/// Writes one feature of a FeatureCollection streamed to `g` (its head before the first).
fn geojson_feature(g: &mut impl Write, feature: &serde_json::Value, first: &mut bool) -> std::io::Result<()> {
    if *first {
        g.write_all(b"{\"type\":\"FeatureCollection\",\"features\":[\n")?;
        *first = false;
    } else {
        g.write_all(b",\n")?;
    }
    serde_json::to_writer(&mut *g, feature)?;
    Ok(())
}

/// Ends a streamed FeatureCollection (`empty`: no feature was written).
fn end_geojson(g: &mut impl Write, empty: bool) -> std::io::Result<()> {
    if empty {
        g.write_all(b"{\"type\":\"FeatureCollection\",\"features\":[\n")?;
    }
    g.write_all(b"\n]}\n")?;
    g.flush()
}

/// Progress lines in an Actions log, where no bar is drawn: one each tenth of a slide's tiles,
/// with the time left at the pace so far.
struct Log<'a> {
    runner: &'a Runner,
    name: &'a str,
    started: Instant,
    next: usize,
}

impl<'a> Log<'a> {
    fn new(runner: &'a Runner, name: &'a str) -> Self {
        Self {
            runner,
            name,
            started: Instant::now(),
            next: 1,
        }
    }

    fn tick(&mut self, done: usize, total: usize) {
        if !self.runner.in_actions() || done * 10 < self.next * total || done == total {
            return;
        }
        self.next = done * 10 / total.max(1) + 1;
        let spent = self.started.elapsed().as_secs_f64();
        let left = spent / done as f64 * (total - done) as f64;
        // A log line that cannot be written is no reason to stop measuring.
        let _ = self.runner.info(&format!(
            "{}: {done}/{total} tiles, {spent:.0} s, about {left:.0} s left",
            self.name
        ));
    }
}

impl SlideRecord {
    /// The record of a slide `path` of level-0 `size` measured under `plan`.
    fn of(path: &Path, size: (u32, u32), plan: &Plan, (args, tiles): (&Args, usize), peak: f64) -> Self {
        let r = plan.region;
        let um2 = plan.pixel_size.um * plan.pixel_size.um;
        let c = &plan.calibration;
        SlideRecord {
            file: path.display().to_string(),
            size: [size.0, size.1],
            region: [r.x, r.y, r.w, r.h],
            area: if args.region.is_some() { "region" } else { "tissue" }.into(),
            area_mm2: plan.area_px * um2 * 1e-6,
            tiles,
            tile: args.slide_tile,
            overlap: args.slide_overlap,
            grey_levels: c.classical.levels.map(|(lo, hi)| [lo, hi]),
            threshold: c.threshold,
            scale_from: c.factor.map(|f| f.from.describe()),
            peak_density_per_mm2: peak,
        }
    }
}
