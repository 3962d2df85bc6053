//! A slide at low resolution — what the calibration samples, what the tissue mask is found on,
//! what the report shows under the nuclei's density — and the tissue mask itself.

use std::io::{Read, Seek};

use cellops_dataset::ops::{colour, normalize, polarity};
use cellops_dataset::slide::{Rect, Slide, SlideError};
use cellops_dataset::{Raster, Samples};
use cellops_formats::params::ThresholdMethod;
use cellops_formats::preprocessing::{ColourMode, Polarity};
use cellops_measure::threshold::threshold;

/// A region of a slide at low resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    /// The pixels, as stored (8 or 16 bits, the slide's channels).
    pub raster: Raster,
    /// The region it shows, in level-0 pixels.
    pub region: Rect,
    /// Level-0 pixels per overview pixel.
    pub downsample: f64,
}

impl Overview {
    /// The level-0 rectangle under overview pixel `(x, y)`, clipped to the region.
    pub fn cell(&self, x: u32, y: u32) -> Rect {
        let at = |v: u32, origin: u32, end: u32| {
            (f64::from(origin) + f64::from(v) * self.downsample)
                .round()
                .min(f64::from(end)) as u32
        };
        let (x_end, y_end) = (self.region.x + self.region.w, self.region.y + self.region.h);
        let (x0, y0) = (at(x, self.region.x, x_end), at(y, self.region.y, y_end));
        let (x1, y1) = (at(x + 1, self.region.x, x_end), at(y + 1, self.region.y, y_end));
        Rect {
            x: x0,
            y: y0,
            w: x1 - x0,
            h: y1 - y0,
        }
    }

    /// The overview pixel over level-0 point `(x, y)`, clamped to the overview.
    pub fn pixel(&self, x: f64, y: f64) -> (u32, u32) {
        let at = |v: f64, origin: u32, size: u32| {
            (((v - f64::from(origin)) / self.downsample).floor().max(0.0) as u32).min(size.saturating_sub(1))
        };
        (
            at(x, self.region.x, self.raster.width),
            at(y, self.region.y, self.raster.height),
        )
    }
}

/// Rows of a level read at once while an overview is made (times the stride).
const BAND_ROWS: u32 = 64;

/// `region` (level-0 pixels) of `slide` at most `max_side` pixels on its longer side: read from
/// the smallest level that still holds that many, every k-th pixel of it (nearest sampling keeps
/// the distribution of values that the calibration reads), a band of rows at a time so that
/// memory follows the overview, not the level.
pub fn overview<R: Read + Seek>(
    slide: &mut Slide<R>,
    region: Rect,
    max_side: u32,
    max_pixels: u64,
) -> Result<Overview, SlideError> {
    let longer = f64::from(region.w.max(region.h));
    let level = (0..slide.levels.len())
        .rev()
        .find(|&i| longer / slide.levels[i].downsample >= f64::from(max_side))
        .unwrap_or(0);
    let l = slide.levels[level];
    let scale = |v: u32, size: u32| ((f64::from(v) / l.downsample).floor() as u32).min(size - 1);
    let (lx, ly) = (scale(region.x, l.width), scale(region.y, l.height));
    let lw = ((f64::from(region.w) / l.downsample).ceil() as u32).clamp(1, l.width - lx);
    let lh = ((f64::from(region.h) / l.downsample).ceil() as u32).clamp(1, l.height - ly);
    let k = lw.max(lh).div_ceil(max_side.max(1)).max(1);
    let (ow, oh) = (lw.div_ceil(k), lh.div_ceil(k));
    let mut rows: Vec<Raster> = Vec::new();
    let mut y = 0;
    while y < lh {
        let h = (BAND_ROWS * k).min(lh - y);
        let band = slide.read_region(
            level,
            Rect {
                x: lx,
                y: ly + y,
                w: lw,
                h,
            },
            max_pixels,
        )?;
        rows.push(every(&band, k));
        y += h;
    }
    let channels = rows.first().map_or(1, |r| r.channels);
    let samples = match rows.first().map(|r| &r.samples) {
        Some(Samples::U16(_)) => Samples::U16(rows.iter().flat_map(u16s).collect()),
        _ => Samples::U8(rows.iter().flat_map(u8s).collect()),
    };
    Ok(Overview {
        raster: Raster {
            width: ow,
            height: oh,
            channels,
            samples,
        },
        region,
        downsample: l.downsample * f64::from(k),
    })
}

fn u8s(r: &Raster) -> Vec<u8> {
    match &r.samples {
        Samples::U8(v) => v.clone(),
        Samples::U16(v) => v.iter().map(|&s| (s >> 8) as u8).collect(),
    }
}

fn u16s(r: &Raster) -> Vec<u16> {
    match &r.samples {
        Samples::U16(v) => v.clone(),
        Samples::U8(v) => v.iter().map(|&s| u16::from(s) << 8).collect(),
    }
}

/// Every `k`-th pixel of every `k`-th row of `r`, from the first.
fn every(r: &Raster, k: u32) -> Raster {
    let (w, h, c) = (r.width as usize, r.height as usize, usize::from(r.channels));
    let k = k as usize;
    let (ow, oh) = (w.div_ceil(k), h.div_ceil(k));
    let index = move |i: usize| {
        let (oy, rest) = (i / (ow * c), i % (ow * c));
        let (ox, ch) = (rest / c, rest % c);
        (oy * k * w + ox * k) * c + ch
    };
    let samples = match &r.samples {
        Samples::U8(v) => Samples::U8((0..ow * oh * c).map(|i| v[index(i)]).collect()),
        Samples::U16(v) => Samples::U16((0..ow * oh * c).map(|i| v[index(i)]).collect()),
    };
    Raster {
        width: ow as u32,
        height: oh as u32,
        channels: r.channels,
        samples,
    }
}

/// Where an overview shows tissue.
#[derive(Debug, Clone, PartialEq)]
pub struct Tissue {
    /// One flag per overview pixel, row-major.
    pub mask: Vec<bool>,
}

/// Tissue is found, as simple tissue detectors find it, by smoothing the overview over about
/// this many micrometres and thresholding it (Otsu): nuclei close together become tissue.
pub const TISSUE_SMOOTHING_UM: f64 = 25.0;

/// Two classes closer than this (8-bit grey levels, or saturation) are one: all tissue.
const MIN_CONTRAST: f64 = 8.0;

impl Tissue {
    /// The tissue of `ov` (pixels of `pixel_size_um` at level 0): of a colour slide, what is
    /// more saturated than the glass; of a grey one, what stands out from the background (dark
    /// on bright, or bright on dark, as the polarity finds it) — after smoothing over
    /// [`TISSUE_SMOOTHING_UM`]. An overview without two distinct classes is all tissue.
    pub fn find(ov: &Overview, pixel_size_um: f64) -> Self {
        let (w, h) = (ov.raster.width as usize, ov.raster.height as usize);
        let (plane, bright_is_tissue) = signal(&ov.raster);
        let radius = (TISSUE_SMOOTHING_UM / (pixel_size_um * ov.downsample) / 2.0).round() as usize;
        let smooth = blur(&blur(&plane, w, h, radius), w, h, radius);
        let t = threshold(&smooth, ThresholdMethod::Otsu, 0.0);
        let (above, below): (Vec<f64>, Vec<f64>) = smooth.iter().map(|&v| f64::from(v)).partition(|&v| v > t);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        if above.is_empty() || below.is_empty() || mean(&above) - mean(&below) < MIN_CONTRAST {
            return Self {
                mask: vec![true; w * h],
            };
        }
        let mask = smooth.iter().map(|&v| (f64::from(v) > t) == bright_is_tissue).collect();
        Self { mask }
    }

    /// Whether any tissue lies under level-0 rectangle `r` of `ov`'s region.
    pub fn covers(&self, ov: &Overview, r: Rect) -> bool {
        let (x0, y0) = ov.pixel(f64::from(r.x), f64::from(r.y));
        let (x1, y1) = ov.pixel(f64::from(r.x + r.w) - 1.0, f64::from(r.y + r.h) - 1.0);
        let w = ov.raster.width;
        (y0..=y1).any(|y| (x0..=x1).any(|x| self.mask[(y * w + x) as usize]))
    }

    /// The level-0 area of the tissue, in pixels.
    pub fn area_px(&self, ov: &Overview) -> f64 {
        let w = ov.raster.width;
        (0..self.mask.len() as u32)
            .filter(|&i| self.mask[i as usize])
            .map(|i| ov.cell(i % w, i / w).area() as f64)
            .sum()
    }

    /// The level-0 rectangle around the tissue, `None` without tissue.
    pub fn bounds(&self, ov: &Overview) -> Option<Rect> {
        let w = ov.raster.width;
        let cells = (0..self.mask.len() as u32)
            .filter(|&i| self.mask[i as usize])
            .map(|i| ov.cell(i % w, i / w));
        let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
        for c in cells {
            (x0, y0) = (x0.min(c.x), y0.min(c.y));
            (x1, y1) = (x1.max(c.x + c.w), y1.max(c.y + c.h));
        }
        (x1 > x0 && y1 > y0).then_some(Rect {
            x: x0,
            y: y0,
            w: x1 - x0,
            h: y1 - y0,
        })
    }

    /// The pixels of `ov` under the tissue, as one row (what the calibration samples); all of
    /// them when there is no tissue.
    pub fn sample(&self, ov: &Overview) -> Raster {
        let c = usize::from(ov.raster.channels);
        let none = !self.mask.iter().any(|&m| m);
        let keep = |i: usize| none || self.mask[i / c];
        let samples = match &ov.raster.samples {
            Samples::U8(v) => Samples::U8(
                v.iter()
                    .enumerate()
                    .filter(|(i, _)| keep(*i))
                    .map(|(_, &s)| s)
                    .collect(),
            ),
            Samples::U16(v) => Samples::U16(
                v.iter()
                    .enumerate()
                    .filter(|(i, _)| keep(*i))
                    .map(|(_, &s)| s)
                    .collect(),
            ),
        };
        let n = match &samples {
            Samples::U8(v) => v.len(),
            Samples::U16(v) => v.len(),
        } / c.max(1);
        Raster {
            width: n as u32,
            height: u32::from(n > 0),
            channels: ov.raster.channels,
            samples,
        }
    }
}

/// The 8-bit plane the tissue is thresholded on, and whether tissue is its bright side: a
/// colour image's saturation (max − min), else the grey image stretched over its range.
fn signal(r: &Raster) -> (Vec<u8>, bool) {
    let c = usize::from(r.channels);
    let eight = u8s(r);
    if c >= 3 {
        let sat = eight
            .chunks_exact(c)
            .map(|p| {
                let rgb = &p[..3];
                rgb.iter().max().copied().unwrap_or(0) - rgb.iter().min().copied().unwrap_or(0)
            })
            .collect();
        return (sat, true);
    }
    let grey = colour::to_working(r, ColourMode::Grey);
    let stretched = normalize::percentile(&grey, 0.0, 100.0);
    let bright_background = polarity::inverts(&stretched, Polarity::Auto);
    let Samples::U8(plane) = stretched.samples else {
        return (Vec::new(), true);
    };
    (plane, !bright_background)
}

/// A box blur of `radius` (a square of side 2r + 1, clipped at the edges), rows then columns.
fn blur(plane: &[u8], w: usize, h: usize, radius: usize) -> Vec<u8> {
    if radius == 0 || plane.is_empty() {
        return plane.to_vec();
    }
    let line = |get: &dyn Fn(usize) -> u32, n: usize, out: &mut dyn FnMut(usize, u8)| {
        let mut prefix = vec![0u32; n + 1];
        for i in 0..n {
            prefix[i + 1] = prefix[i] + get(i);
        }
        for i in 0..n {
            let (a, b) = (i.saturating_sub(radius), (i + radius + 1).min(n));
            out(i, ((prefix[b] - prefix[a]) as f64 / (b - a) as f64).round() as u8);
        }
    };
    let mut rows = vec![0u8; plane.len()];
    for y in 0..h {
        line(&|x| u32::from(plane[y * w + x]), w, &mut |x, v| rows[y * w + x] = v);
    }
    let mut out = vec![0u8; plane.len()];
    for x in 0..w {
        line(&|y| u32::from(rows[y * w + x]), h, &mut |y, v| out[y * w + x] = v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov(raster: Raster) -> Overview {
        Overview {
            region: Rect {
                x: 100,
                y: 0,
                w: raster.width * 4,
                h: raster.height * 4,
            },
            raster,
            downsample: 4.0,
        }
    }

    #[test]
    fn tissue_is_the_saturated_part_of_a_colour_slide_and_whole_when_uniform() {
        // 20×10: glass (white) on the left half, pink tissue on the right.
        let (w, h) = (20u32, 10u32);
        let data: Vec<u8> = (0..w * h)
            .flat_map(|i| if i % w < 10 { [240, 240, 240] } else { [220, 150, 200] })
            .collect();
        let o = ov(Raster::from_u8(w, h, 3, data));
        let t = Tissue::find(&o, 1.0);
        assert!(!t.mask[0] && t.mask[19]);
        assert!(!t.covers(
            &o,
            Rect {
                x: 100,
                y: 0,
                w: 30,
                h: 40
            }
        ));
        assert!(
            t.covers(
                &o,
                Rect {
                    x: 100,
                    y: 0,
                    w: 44,
                    h: 4
                }
            ),
            "reaches column 10"
        );
        let b = t.bounds(&o).expect("tissue");
        assert_eq!((b.x + b.w, b.y, b.h), (180, 0, 40));
        assert!((b.x as i64 - 140).abs() <= 8, "{b:?}");
        assert_eq!(t.area_px(&o), f64::from(b.w * b.h));
        assert_eq!(t.sample(&o).width as usize, t.mask.iter().filter(|&&m| m).count());
        let flat = ov(Raster::from_u8(w, h, 1, vec![90; (w * h) as usize]));
        assert!(Tissue::find(&flat, 1.0).mask.iter().all(|&m| m));
    }

    #[test]
    fn an_overview_pixel_maps_to_its_cell_and_back() {
        let o = ov(Raster::from_u8(5, 5, 1, vec![0; 25]));
        assert_eq!(
            o.cell(1, 2),
            Rect {
                x: 104,
                y: 8,
                w: 4,
                h: 4
            }
        );
        assert_eq!(o.pixel(105.0, 9.5), (1, 2));
        assert_eq!(o.pixel(10_000.0, -3.0), (4, 0));
        let r = Raster::from_u8(5, 3, 1, (0..15).collect());
        assert_eq!(every(&r, 2).samples, Samples::U8(vec![0, 2, 4, 10, 12, 14]));
    }
}
