//! Whole-slide images as pyramidal TIFFs, read in pure Rust: level 0 and its reduced levels
//! (tiled or stripped pages that shrink, as generic pyramidal TIFF, Aperio SVS and OME-TIFF
//! store them), and a region of any level decoded from only the tiles it touches — memory follows
//! the region, never the slide. [`write_pyramid`] writes such a file (uncompressed tiles), for
//! tests and benchmarks that need a slide of a known content.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use tiff::decoder::{ChunkType, Decoder, DecodingResult};

use crate::meta::{self, FileMeta};
use crate::raster::{Raster, Samples};

/// A rectangle of pixels: origin and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl Rect {
    /// The part of `self` inside `other` (none when they do not meet).
    ///
    /// ```
    /// use cellops_dataset::slide::Rect;
    /// let a = Rect { x: 0, y: 0, w: 10, h: 10 };
    /// assert_eq!(a.intersect(&Rect { x: 5, y: 8, w: 10, h: 10 }), Some(Rect { x: 5, y: 8, w: 5, h: 2 }));
    /// assert_eq!(a.intersect(&Rect { x: 10, y: 0, w: 1, h: 1 }), None);
    /// ```
    pub fn intersect(&self, other: &Rect) -> Option<Rect> {
        let (x0, y0) = (self.x.max(other.x), self.y.max(other.y));
        let x1 = (u64::from(self.x) + u64::from(self.w)).min(u64::from(other.x) + u64::from(other.w));
        let y1 = (u64::from(self.y) + u64::from(self.h)).min(u64::from(other.y) + u64::from(other.h));
        (x1 > u64::from(x0) && y1 > u64::from(y0)).then(|| Rect {
            x: x0,
            y: y0,
            w: (x1 - u64::from(x0)) as u32,
            h: (y1 - u64::from(y0)) as u32,
        })
    }

    /// Pixels in it.
    pub fn area(&self) -> u64 {
        u64::from(self.w) * u64::from(self.h)
    }
}

/// Why a slide cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SlideError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The slide.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a TIFF this reader takes, or is damaged.
    #[error("{path}: {message}")]
    Format {
        /// The slide.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A region outside the level, or over the pixel limit.
    #[error("{path}: {message}")]
    Region {
        /// The slide.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One level of the pyramid: a page of the file and its size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    /// The page (IFD), from 0.
    pub page: usize,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Level-0 pixels per pixel of this level (1 for level 0).
    pub downsample: f64,
}

/// An open slide.
pub struct Slide<R: Read + Seek> {
    path: PathBuf,
    decoder: Decoder<R>,
    /// The pyramid, level 0 first.
    pub levels: Vec<Level>,
    /// What the file says about itself (the pixel size at level 0).
    pub meta: FileMeta,
    at: usize,
}

/// Pages looked at for levels at most.
const MAX_PAGES: usize = 64;

impl Slide<std::io::BufReader<std::fs::File>> {
    /// Opens a slide file.
    pub fn open(path: &Path) -> Result<Self, SlideError> {
        let file = std::fs::File::open(path).map_err(|source| SlideError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_reader(path, std::io::BufReader::new(file))
    }
}

impl<R: Read + Seek> Slide<R> {
    /// Reads the pyramid's structure from `reader` (`path` names it in errors): no pixels yet.
    pub fn from_reader(path: &Path, reader: R) -> Result<Self, SlideError> {
        let format = |e: tiff::TiffError| SlideError::Format {
            path: path.to_owned(),
            message: format!("not a TIFF slide this reader takes: {e}"),
        };
        let mut decoder = Decoder::new(reader).map_err(format)?;
        let facts = crate::io::page_facts(&mut decoder);
        let (w0, h0) = decoder.dimensions().map_err(format)?;
        let mut levels = vec![Level {
            page: 0,
            width: w0,
            height: h0,
            downsample: 1.0,
        }];
        let mut page = 0;
        while decoder.more_images() && page + 1 < MAX_PAGES {
            if decoder.next_image().is_err() {
                break;
            }
            page += 1;
            let Ok((w, h)) = decoder.dimensions() else { continue };
            let last = levels[levels.len() - 1];
            // A reduced level: smaller, the same shape, tiled (thumbnails, labels and macro
            // images of SVS files are stripped or another shape).
            let shape = (f64::from(w) / f64::from(h)) / (f64::from(w0) / f64::from(h0));
            if w < last.width
                && h < last.height
                && (0.95..1.05).contains(&shape)
                && decoder.get_chunk_type() == ChunkType::Tile
            {
                levels.push(Level {
                    page,
                    width: w,
                    height: h,
                    downsample: f64::from(w0) / f64::from(w),
                });
            }
        }
        decoder.seek_to_image(0).map_err(format)?;
        Ok(Self {
            path: path.to_owned(),
            decoder,
            levels,
            meta: meta::of_tiff(&facts),
            at: 0,
        })
    }

    /// Level 0's size.
    pub fn size(&self) -> (u32, u32) {
        (self.levels[0].width, self.levels[0].height)
    }

    /// Decodes `rect` of `level` (8- or 16-bit samples, as stored), refusing regions of more than
    /// `max_pixels`; only the tiles (or strips) it touches are read.
    pub fn read_region(&mut self, level: usize, rect: Rect, max_pixels: u64) -> Result<Raster, SlideError> {
        let path = self.path.clone();
        let region = |message: String| SlideError::Region {
            path: path.clone(),
            message,
        };
        let l = *self
            .levels
            .get(level)
            .ok_or_else(|| region(format!("no level {level}: the slide has {}", self.levels.len())))?;
        let whole = Rect {
            x: 0,
            y: 0,
            w: l.width,
            h: l.height,
        };
        if rect.area() == 0 || whole.intersect(&rect) != Some(rect) {
            return Err(region(format!(
                "region {},{} {}×{} is not inside level {level} ({}×{})",
                rect.x, rect.y, rect.w, rect.h, l.width, l.height
            )));
        }
        if rect.area() > max_pixels {
            return Err(region(format!(
                "region {}×{} = {} pixels is over the limit of {max_pixels}",
                rect.w,
                rect.h,
                rect.area()
            )));
        }
        self.goto(l.page)?;
        let (tw, th) = self.decoder.chunk_dimensions();
        let (tw, th) = (tw.max(1), th.max(1));
        let (cols, rows) = (l.width.div_ceil(tw), l.height.div_ceil(th));
        let mut out: Option<Raster> = None;
        for cy in rect.y / th..(rect.y + rect.h).div_ceil(th).min(rows) {
            for cx in rect.x / tw..(rect.x + rect.w).div_ceil(tw).min(cols) {
                let chunk = Rect {
                    x: cx * tw,
                    y: cy * th,
                    w: tw.min(l.width - cx * tw),
                    h: th.min(l.height - cy * th),
                };
                let data = self.chunk(cy * cols + cx)?;
                let target = out.get_or_insert_with(|| blank(&data, rect));
                paste(target, rect, &data, chunk, tw).map_err(region)?;
            }
        }
        out.ok_or_else(|| region("no tile covers the region".into()))
    }

    /// Makes `page` the decoder's current page.
    fn goto(&mut self, page: usize) -> Result<(), SlideError> {
        if self.at != page {
            self.decoder.seek_to_image(page).map_err(|e| SlideError::Format {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
            self.at = page;
        }
        Ok(())
    }

    /// Decodes one tile or strip of the current page.
    fn chunk(&mut self, index: u32) -> Result<Chunk, SlideError> {
        let failed = |message: String| SlideError::Format {
            path: self.path.clone(),
            message,
        };
        let samples = self
            .decoder
            .colortype()
            .map_err(|e| failed(e.to_string()))?
            .num_samples();
        let samples = u8::try_from(samples).map_err(|_| failed(format!("{samples} samples per pixel")))?;
        match self
            .decoder
            .read_chunk(index)
            .map_err(|e| failed(format!("tile {index}: {e}")))?
        {
            DecodingResult::U8(v) => Ok(Chunk {
                samples: Samples::U8(v),
                channels: samples,
            }),
            DecodingResult::U16(v) => Ok(Chunk {
                samples: Samples::U16(v),
                channels: samples,
            }),
            _ => Err(failed("samples other than 8- or 16-bit integers".into())),
        }
    }
}

/// A decoded tile: its samples, row-major, `channels` per pixel.
struct Chunk {
    samples: Samples,
    channels: u8,
}

/// An empty raster of `rect`'s size with `like`'s sample type.
fn blank(like: &Chunk, rect: Rect) -> Raster {
    let n = rect.area() as usize * usize::from(like.channels);
    match like.samples {
        Samples::U8(_) => Raster::from_u8(rect.w, rect.h, like.channels, vec![0; n]),
        Samples::U16(_) => Raster::from_u16(rect.w, rect.h, like.channels, vec![0; n]),
    }
}

/// Copies the part of `chunk` (at `at` in the level, rows `tile_w` or `at.w` wide) inside
/// `rect` into `out` (which holds `rect`).
fn paste(out: &mut Raster, rect: Rect, chunk: &Chunk, at: Rect, tile_w: u32) -> Result<(), String> {
    let c = usize::from(chunk.channels);
    if out.channels != chunk.channels {
        return Err("tiles with different numbers of samples".into());
    }
    let len = match &chunk.samples {
        Samples::U8(v) => v.len(),
        Samples::U16(v) => v.len(),
    };
    // Edge tiles come cropped to the data, or padded to the full tile width.
    let stride = if len == at.area() as usize * c { at.w } else { tile_w };
    if len < (stride as usize * (at.h as usize - 1) + at.w as usize) * c {
        return Err(format!(
            "a tile holds {len} samples, fewer than its {}×{} pixels",
            at.w, at.h
        ));
    }
    let Some(inside) = at.intersect(&rect) else {
        return Ok(());
    };
    for row in 0..inside.h {
        let (sy, dy) = ((inside.y - at.y + row) as usize, (inside.y - rect.y + row) as usize);
        let s0 = (sy * stride as usize + (inside.x - at.x) as usize) * c;
        let d0 = (dy * rect.w as usize + (inside.x - rect.x) as usize) * c;
        let n = inside.w as usize * c;
        match (&mut out.samples, &chunk.samples) {
            (Samples::U8(d), Samples::U8(s)) => d[d0..d0 + n].copy_from_slice(&s[s0..s0 + n]),
            (Samples::U16(d), Samples::U16(s)) => d[d0..d0 + n].copy_from_slice(&s[s0..s0 + n]),
            _ => return Err("tiles with different sample types".into()),
        }
    }
    Ok(())
}

/// Writes a pyramidal tiled TIFF (little-endian, uncompressed, 8-bit, one page per level, each
/// half the one before until it fits one tile): `pixels(level, rect)` gives each tile's samples
/// (`channels` per pixel, row-major) so that no level is ever whole in memory; the pixel size
/// goes into the resolution tags in centimetres. Returns the levels written.
pub fn write_pyramid<W: Write + Seek>(
    out: &mut W,
    (width, height, channels): (u32, u32, u8),
    tile: u32,
    pixel_size_um: f64,
    mut pixels: impl FnMut(usize, Rect) -> Vec<u8>,
) -> std::io::Result<Vec<(u32, u32)>> {
    let sizes_ok = (16..=4096).contains(&tile) && tile.is_multiple_of(16) && width > 0 && height > 0;
    // The resolution tags hold pixels per centimetre × 1000 in a u32.
    let pixel_ok = pixel_size_um.is_finite() && pixel_size_um >= 0.01;
    if !sizes_ok || !(1..=4).contains(&channels) || !pixel_ok {
        return Err(std::io::Error::other(format!(
            "a {width}×{height} pyramid of {tile}-pixel tiles, {channels} samples, pixel {pixel_size_um} µm: tiles are 16 to 4096 pixels (a multiple of 16), 1 to 4 samples, pixels at least 0.01 µm"
        )));
    }
    let mut sizes = vec![(width, height)];
    while let Some(&(w, h)) = sizes.last().filter(|(w, h)| *w > tile || *h > tile) {
        sizes.push((w.div_ceil(2), h.div_ceil(2)));
    }
    out.write_all(b"II*\0")?;
    let first_ifd_at = out.stream_position()?;
    out.write_all(&0u32.to_le_bytes())?;
    let mut link_at = first_ifd_at;
    for (level, &(w, h)) in sizes.iter().enumerate() {
        let (cols, rows) = (w.div_ceil(tile), h.div_ceil(tile));
        let mut offsets = Vec::with_capacity((cols * rows) as usize);
        for ty in 0..rows {
            for tx in 0..cols {
                let rect = Rect {
                    x: tx * tile,
                    y: ty * tile,
                    w: tile.min(w - tx * tile),
                    h: tile.min(h - ty * tile),
                };
                let data = pixels(level, rect);
                let row = rect.w as usize * usize::from(channels);
                if data.len() != row * rect.h as usize {
                    return Err(std::io::Error::other(format!(
                        "{} samples for a {}×{} tile of {channels}",
                        data.len(),
                        rect.w,
                        rect.h
                    )));
                }
                // Every tile is stored whole, padded to the tile's size.
                let mut padded = vec![0u8; (tile * tile) as usize * usize::from(channels)];
                for r in 0..rect.h as usize {
                    let d = r * tile as usize * usize::from(channels);
                    padded[d..d + row].copy_from_slice(&data[r * row..(r + 1) * row]);
                }
                offsets.push(u32_at(out)?);
                out.write_all(&padded)?;
            }
        }
        let ifd = Ifd {
            level,
            size: (w, h),
            channels,
            tile,
            offsets,
            pixels_per_cm: 1e4 / (pixel_size_um * (f64::from(width) / f64::from(w))),
        };
        let at = ifd.write(out)?;
        out.seek(std::io::SeekFrom::Start(link_at))?;
        out.write_all(&at.to_le_bytes())?;
        out.seek(std::io::SeekFrom::End(0))?;
        link_at = u64::from(at) + 2 + 12 * u64::from(Ifd::ENTRIES + 1);
    }
    Ok(sizes)
}

/// The writer's position, which classic TIFF offsets must fit.
fn u32_at<W: Seek>(out: &mut W) -> std::io::Result<u32> {
    u32::try_from(out.stream_position()?)
        .map_err(|_| std::io::Error::other("the slide is over 4 GiB: classic TIFF offsets cannot reach"))
}

/// One level's directory.
struct Ifd {
    level: usize,
    size: (u32, u32),
    channels: u8,
    tile: u32,
    offsets: Vec<u32>,
    pixels_per_cm: f64,
}

impl Ifd {
    const ENTRIES: u16 = 14;

    /// Writes its out-of-line values, then the directory; returns where the directory starts.
    fn write<W: Write + Seek>(&self, out: &mut W) -> std::io::Result<u32> {
        let n = self.offsets.len() as u32;
        let bits_at = u32_at(out)?;
        for _ in 0..self.channels {
            out.write_all(&8u16.to_le_bytes())?;
        }
        let res_at = u32_at(out)?;
        out.write_all(&((self.pixels_per_cm * 1000.0).round() as u32).to_le_bytes())?;
        out.write_all(&1000u32.to_le_bytes())?;
        let offsets_at = u32_at(out)?;
        for o in &self.offsets {
            out.write_all(&o.to_le_bytes())?;
        }
        let counts_at = u32_at(out)?;
        let bytes = self.tile * self.tile * u32::from(self.channels);
        for _ in 0..n {
            out.write_all(&bytes.to_le_bytes())?;
        }
        let at = u32_at(out)?;
        let (short, long, rational) = (3u16, 4u16, 5u16);
        let photometric = if self.channels >= 3 { 2 } else { 1 };
        // Up to two SHORTs fit in the entry itself.
        let bits = match self.channels {
            1 => 8,
            2 => 0x0008_0008,
            _ => bits_at,
        };
        let entries: [(u16, u16, u32, u32); Self::ENTRIES as usize] = [
            (254, long, 1, u32::from(self.level > 0)), // NewSubfileType: reduced resolution
            (256, long, 1, self.size.0),
            (257, long, 1, self.size.1),
            (258, short, u32::from(self.channels), bits),
            (259, short, 1, 1), // no compression
            (262, short, 1, photometric),
            (277, short, 1, u32::from(self.channels)),
            (282, rational, 1, res_at),
            (283, rational, 1, res_at),
            (284, short, 1, 1), // chunky
            (296, short, 1, 3), // centimetres
            (322, long, 1, self.tile),
            (323, long, 1, self.tile),
            (324, long, n, if n == 1 { self.offsets[0] } else { offsets_at }),
        ];
        out.write_all(&(Self::ENTRIES + 1).to_le_bytes())?;
        for (tag, kind, count, value) in entries {
            out.write_all(&tag.to_le_bytes())?;
            out.write_all(&kind.to_le_bytes())?;
            out.write_all(&count.to_le_bytes())?;
            out.write_all(&value.to_le_bytes())?;
        }
        // TileByteCounts, then the link to the next directory (none yet).
        out.write_all(&325u16.to_le_bytes())?;
        out.write_all(&long.to_le_bytes())?;
        out.write_all(&n.to_le_bytes())?;
        out.write_all(&(if n == 1 { bytes } else { counts_at }).to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A level's pixel at (x, y): a pattern that differs in every pixel, channel and level.
    fn value(level: usize, x: u32, y: u32, c: u32) -> u8 {
        ((x * 7 + y * 13 + c * 71 + level as u32 * 101) % 251) as u8
    }

    fn pyramid(w: u32, h: u32, channels: u8, tile: u32) -> (Vec<u8>, Vec<(u32, u32)>) {
        let mut out = std::io::Cursor::new(Vec::new());
        let sizes = write_pyramid(&mut out, (w, h, channels), tile, 0.25, |level, r| {
            let mut v = Vec::new();
            for y in r.y..r.y + r.h {
                for x in r.x..r.x + r.w {
                    for c in 0..u32::from(channels) {
                        v.push(value(level, x, y, c));
                    }
                }
            }
            v
        })
        .expect("write");
        (out.into_inner(), sizes)
    }

    #[test]
    fn regions_of_every_level_read_back_exactly() {
        let (bytes, sizes) = pyramid(300, 200, 3, 64);
        assert_eq!(
            sizes,
            vec![(300, 200), (150, 100), (75, 50), (38, 25)],
            "halved until one tile"
        );
        let mut s = Slide::from_reader(Path::new("s.tif"), std::io::Cursor::new(bytes)).expect("open");
        assert_eq!(s.levels.iter().map(|l| (l.width, l.height)).collect::<Vec<_>>(), sizes);
        assert_eq!(s.levels[2].downsample, 4.0);
        let (um, _) = s.meta.pixel_size.expect("a pixel size");
        assert!((um - 0.25).abs() < 1e-6, "{um}");
        for (level, rect) in [
            (
                0,
                Rect {
                    x: 0,
                    y: 0,
                    w: 300,
                    h: 200,
                },
            ),
            (
                0,
                Rect {
                    x: 60,
                    y: 62,
                    w: 70,
                    h: 5,
                },
            ),
            (
                0,
                Rect {
                    x: 299,
                    y: 199,
                    w: 1,
                    h: 1,
                },
            ),
            (
                1,
                Rect {
                    x: 100,
                    y: 30,
                    w: 50,
                    h: 70,
                },
            ),
            (
                2,
                Rect {
                    x: 0,
                    y: 0,
                    w: 75,
                    h: 50,
                },
            ),
            (
                3,
                Rect {
                    x: 37,
                    y: 0,
                    w: 1,
                    h: 25,
                },
            ),
        ] {
            let r = s.read_region(level, rect, 1 << 20).expect("region");
            let Samples::U8(v) = &r.samples else { panic!("8-bit") };
            let mut want = Vec::new();
            for y in rect.y..rect.y + rect.h {
                for x in rect.x..rect.x + rect.w {
                    for c in 0..3 {
                        want.push(value(level, x, y, c));
                    }
                }
            }
            assert!(*v == want, "level {level} {rect:?}");
        }
    }

    #[test]
    fn regions_outside_or_over_the_limit_are_refused() {
        let (bytes, _) = pyramid(100, 80, 1, 32);
        let mut s = Slide::from_reader(Path::new("s.tif"), std::io::Cursor::new(bytes)).expect("open");
        let err = s
            .read_region(
                0,
                Rect {
                    x: 90,
                    y: 0,
                    w: 20,
                    h: 5,
                },
                1 << 20,
            )
            .expect_err("outside");
        assert!(err.to_string().contains("is not inside level 0 (100×80)"), "{err}");
        let err = s
            .read_region(
                0,
                Rect {
                    x: 0,
                    y: 0,
                    w: 100,
                    h: 80,
                },
                1000,
            )
            .expect_err("limit");
        assert!(err.to_string().contains("over the limit"), "{err}");
        assert!(s.read_region(5, Rect { x: 0, y: 0, w: 1, h: 1 }, 10).is_err());
        let grey = s
            .read_region(
                0,
                Rect {
                    x: 31,
                    y: 31,
                    w: 2,
                    h: 2,
                },
                10,
            )
            .expect("grey");
        assert_eq!(grey.channels, 1);
        assert!(Slide::from_reader(Path::new("x"), std::io::Cursor::new(b"not a tiff".to_vec())).is_err());
    }
}

/// A synthetic H&E-like section, for tests and benchmarks: pink tissue in an ellipse on white
/// glass, purple nuclei of radius 4 to 7 pixels on a jittered lattice (one per `spacing`-pixel
/// cell, placed by a fixed-definition hash), 8-bit RGB. Every pixel is a function of its level-0
/// position, so a pyramid of any size is written tile by tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// Level 0's width and height.
    pub size: (u32, u32),
    /// The lattice's spacing (at least 16: nuclei never touch).
    pub spacing: u32,
}

impl Section {
    /// A fixed-definition hash of a position (SplitMix64's finaliser).
    fn hash(i: u64, j: u64) -> u64 {
        crate::synthetic::Rng::mix(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ j.wrapping_add(0xBF58_476D_1CE4_E5B9))
    }

    /// The nucleus of lattice cell `(i, j)`: its centre and radius.
    fn nucleus(&self, i: u32, j: u32) -> (i64, i64, i64) {
        let h = Self::hash(u64::from(i), u64::from(j));
        let jitter = |s: u64| (s % 5) as i64 - 2;
        let half = i64::from(self.spacing / 2);
        let cx = i64::from(i * self.spacing) + half + jitter(h);
        let cy = i64::from(j * self.spacing) + half + jitter(h >> 8);
        (cx, cy, 4 + ((h >> 16) % 4) as i64)
    }

    /// Whether level-0 point `(x, y)` is tissue.
    pub fn tissue(&self, x: i64, y: i64) -> bool {
        let (w, h) = (f64::from(self.size.0), f64::from(self.size.1));
        let (dx, dy) = ((x as f64 - w / 2.0) / (0.45 * w), (y as f64 - h / 2.0) / (0.40 * h));
        dx * dx + dy * dy <= 1.0
    }

    /// The colour of level-0 pixel `(x, y)`.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let (cx, cy, r) = self.nucleus(x / self.spacing, y / self.spacing);
        let (px, py) = (i64::from(x), i64::from(y));
        let noise = (Self::hash(u64::from(x), u64::from(y)) % 9) as u8;
        if self.tissue(cx, cy) && (px - cx).pow(2) + (py - cy).pow(2) <= r * r {
            [92 + noise, 58 + noise, 140 + noise]
        } else if self.tissue(px, py) {
            [222 + noise, 160 + noise, 196 + noise]
        } else {
            [236 + noise, 236 + noise, 238 + noise]
        }
    }

    /// The nuclei drawn: centre and radius of each whose centre is tissue and whose disc lies
    /// inside the section.
    pub fn nuclei(&self) -> Vec<(i64, i64, i64)> {
        let (w, h) = (i64::from(self.size.0), i64::from(self.size.1));
        (0..self.size.1 / self.spacing)
            .flat_map(|j| (0..self.size.0 / self.spacing).map(move |i| (i, j)))
            .map(|(i, j)| self.nucleus(i, j))
            .filter(|&(x, y, r)| self.tissue(x, y) && x - r >= 0 && y - r >= 0 && x + r < w && y + r < h)
            .collect()
    }

    /// Writes the section as a pyramid of `tile`-pixel tiles ([`write_pyramid`]), pixels of
    /// `pixel_size_um`; a reduced level's pixel is the level-0 pixel at its corner.
    pub fn write<W: Write + Seek>(
        &self,
        out: &mut W,
        tile: u32,
        pixel_size_um: f64,
    ) -> std::io::Result<Vec<(u32, u32)>> {
        write_pyramid(out, (self.size.0, self.size.1, 3), tile, pixel_size_um, |level, r| {
            let step = 1u32 << level;
            let mut v = Vec::with_capacity(r.area() as usize * 3);
            for y in r.y..r.y + r.h {
                for x in r.x..r.x + r.w {
                    v.extend(self.pixel(x * step, y * step));
                }
            }
            v
        })
    }
}
