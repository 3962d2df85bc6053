//! The nuclei's density over a slide, drawn over its overview as a heat map.

use cellops_analysis::slide::overview::Overview;
use cellops_dataset::{Raster, Samples};

/// The side of a heat map cell, in micrometres: about a 20× field's width over ten.
pub const CELL_UM: f64 = 50.0;

/// How much of a cell's colour covers the overview.
const ALPHA: f64 = 0.6;

/// Nuclei counted per overview pixel.
pub(crate) struct Density<'a> {
    overview: &'a Overview,
    counts: Vec<u32>,
}

impl<'a> Density<'a> {
    pub fn new(overview: &'a Overview) -> Self {
        let n = overview.raster.width as usize * overview.raster.height as usize;
        Self {
            overview,
            counts: vec![0; n],
        }
    }

    /// Counts a nucleus centred at level-0 `(x, y)`.
    pub fn add(&mut self, x: f64, y: f64) {
        let (px, py) = self.overview.pixel(x, y);
        self.counts[(py * self.overview.raster.width + px) as usize] += 1;
    }

    /// The overview (8-bit RGB) under the density of cells of about [`CELL_UM`] (pixels of
    /// `pixel_size_um` at level 0), coloured from dark purple (few) to yellow (the most), and
    /// the most nuclei per mm² a cell has.
    pub fn draw(&self, pixel_size_um: f64) -> (Raster, f64) {
        let ov = self.overview;
        let (w, h) = (ov.raster.width as usize, ov.raster.height as usize);
        let side = ((CELL_UM / (pixel_size_um * ov.downsample)).round() as usize).max(1);
        let (cw, ch) = (w.div_ceil(side), h.div_ceil(side));
        let mut cells = vec![0u32; cw * ch];
        for (i, &n) in self.counts.iter().enumerate() {
            cells[(i / w / side) * cw + (i % w) / side] += n;
        }
        let peak = cells.iter().copied().max().unwrap_or(0);
        let mut rgb = base(&ov.raster);
        for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
            let n = cells[(i / w / side) * cw + (i % w) / side];
            if n == 0 {
                continue;
            }
            let colour = ramp(f64::from(n) / f64::from(peak.max(1)));
            for (p, c) in px.iter_mut().zip(colour) {
                *p = (f64::from(*p) * (1.0 - ALPHA) + f64::from(c) * ALPHA).round() as u8;
            }
        }
        let cell_mm2 = (side as f64 * ov.downsample * pixel_size_um * 1e-3).powi(2);
        (Raster::from_u8(w as u32, h as u32, 3, rgb), f64::from(peak) / cell_mm2)
    }
}

/// The overview as 8-bit RGB samples.
fn base(r: &Raster) -> Vec<u8> {
    let c = usize::from(r.channels).max(1);
    let eight: Vec<u8> = match &r.samples {
        Samples::U8(v) => v.clone(),
        Samples::U16(v) => v.iter().map(|&s| (s >> 8) as u8).collect(),
    };
    eight
        .chunks_exact(c)
        .flat_map(|p| if c >= 3 { [p[0], p[1], p[2]] } else { [p[0]; 3] })
        .collect()
}

/// A colour from dark purple (0) through red to yellow (1).
fn ramp(t: f64) -> [u8; 3] {
    const STOPS: [[f64; 3]; 4] = [
        [60.0, 15.0, 110.0],
        [190.0, 40.0, 90.0],
        [250.0, 130.0, 30.0],
        [252.0, 240.0, 90.0],
    ];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    let mix = |k: usize| (STOPS[i][k] + (STOPS[i + 1][k] - STOPS[i][k]) * f).round() as u8;
    [mix(0), mix(1), mix(2)]
}

#[cfg(test)]
mod tests {
    use cellops_dataset::slide::Rect;

    use super::*;

    #[test]
    fn cells_with_more_nuclei_are_brighter_and_empty_ones_keep_the_slide() {
        let ov = Overview {
            raster: Raster::from_u8(4, 2, 1, vec![100; 8]),
            region: Rect {
                x: 0,
                y: 0,
                w: 400,
                h: 200,
            },
            downsample: 100.0,
        };
        let mut d = Density::new(&ov);
        d.add(50.0, 50.0);
        for _ in 0..3 {
            d.add(350.0, 150.0);
        }
        // Pixels of 0.5 µm: a 50 µm cell is one overview pixel (100 level-0 pixels).
        let (img, peak) = d.draw(0.5);
        let Samples::U8(px) = img.samples else { unreachable!() };
        assert_eq!(&px[3..6], &[100, 100, 100], "no nuclei: the slide as it is");
        let (few, most) = (&px[0..3], &px[21..24]);
        assert!(most.iter().map(|&v| u32::from(v)).sum::<u32>() > few.iter().map(|&v| u32::from(v)).sum::<u32>());
        assert!((peak - 3.0 / 0.0025).abs() < 1e-6, "{peak}");
        assert_eq!(ramp(0.0), [60, 15, 110]);
        assert_eq!(ramp(1.0), [252, 240, 90]);
    }
}
