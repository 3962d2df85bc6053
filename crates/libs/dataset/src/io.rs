//! Reading and writing image and mask files.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageFormat, ImageReader};

use cellops_formats::params::Channel;

use crate::meta::{self, FileMeta, TiffFacts};
use crate::raster::{Raster, Samples};

/// The file extensions of the formats CellOps reads, in the order a lookup by name tries them.
pub const EXTENSIONS: [&str; 6] = ["png", "tif", "tiff", "jpg", "jpeg", "bmp"];

/// File formats CellOps reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// PNG (8 or 16 bit).
    Png,
    /// TIFF (8 or 16 bit, first page).
    Tiff,
    /// BMP.
    Bmp,
    /// JPEG: lossy, so accepted for images and never for masks.
    Jpeg,
}

impl Format {
    /// The format's usual name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Png => "PNG",
            Format::Tiff => "TIFF",
            Format::Bmp => "BMP",
            Format::Jpeg => "JPEG",
        }
    }

    /// The format a file name's extension names, if it is one CellOps reads.
    ///
    /// ```
    /// use cellops_dataset::io::Format;
    /// assert_eq!(Format::from_path("a/b.TIF".as_ref()), Some(Format::Tiff));
    /// assert_eq!(Format::from_path("notes.txt".as_ref()), None);
    /// ```
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "png" => Format::Png,
            "tif" | "tiff" => Format::Tiff,
            "bmp" => Format::Bmp,
            "jpg" | "jpeg" => Format::Jpeg,
            _ => return None,
        })
    }

    fn from_image(f: ImageFormat) -> Option<Self> {
        Some(match f {
            ImageFormat::Png => Format::Png,
            ImageFormat::Tiff => Format::Tiff,
            ImageFormat::Bmp => Format::Bmp,
            ImageFormat::Jpeg => Format::Jpeg,
            _ => return None,
        })
    }
}

/// Why a file could not be decoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The content is not PNG, TIFF, BMP or JPEG (whatever the extension says).
    #[error("not a supported image (PNG, TIFF, BMP or JPEG)")]
    UnknownFormat,
    /// The image is larger than the configured pixel limit (a decompression-bomb guard).
    #[error("{width}x{height} = {pixels} pixels is over the limit of {limit} (raise max_pixels if this is intended)")]
    TooLarge {
        /// Width the header claims.
        width: u32,
        /// Height the header claims.
        height: u32,
        /// Their product.
        pixels: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The decoder failed: a truncated or corrupt file.
    #[error("corrupt or truncated {} file: {message}", format.name())]
    Corrupt {
        /// The format the content was recognised as.
        format: Format,
        /// The decoder's message.
        message: String,
    },
    /// The pixel type is one CellOps does not handle (floating point samples).
    #[error("unsupported pixel type {0} (use 8- or 16-bit integer samples)")]
    PixelType(String),
    /// The image has no pixels.
    #[error("the image is empty (0 pixels)")]
    Empty,
    /// The image has several channels in separate planes and none was chosen.
    #[error("the image has {count} channels{}; choose the nuclear one with `nuclear_channel` (a name or an index from 0)", names_of(.names))]
    ChannelNeeded {
        /// How many.
        count: usize,
        /// Their names, where the file gives them.
        names: Vec<String>,
    },
    /// The chosen channel is not in the image.
    #[error("{wanted} is not in the image: it has {count} channels{}", names_of(.names))]
    NoSuchChannel {
        /// The channel asked for.
        wanted: String,
        /// How many the image has.
        count: usize,
        /// Their names, where the file gives them.
        names: Vec<String>,
    },
}

/// ` (a, b, c)` for named channels (short excerpts), nothing for unnamed ones.
fn names_of(names: &[String]) -> String {
    if names.iter().all(String::is_empty) {
        return String::new();
    }
    let shown: Vec<String> = names
        .iter()
        .take(16)
        .map(|n| cellops_formats::error::excerpt(n).to_string())
        .collect();
    format!(" ({})", shown.join(", "))
}

/// A decoded file and the format its content had.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The pixels.
    pub raster: Raster,
    /// The detected format (from the content, not the extension).
    pub format: Format,
}

/// The image files (by extension) directly in `dir`, sorted.
pub fn image_files(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if Format::from_path(&path).is_some() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Detects the format of encoded bytes from their content.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    image::guess_format(bytes).ok().and_then(Format::from_image)
}

/// An image file's width and height, from its header alone (`None` when it cannot be read).
pub fn dimensions(path: &Path) -> Option<(u32, u32)> {
    ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()
}

/// Decodes an image's bytes with what its file says about itself ([`meta`]), keeping only
/// `channel` when one is chosen: a plane of a multi-channel TIFF (OME-TIFF, ImageJ hyperstack,
/// multi-page), or a sample of a colour image. An image with channels in several planes needs
/// one chosen; a colour image without a choice stays in colour.
pub fn decode_image(
    bytes: &[u8],
    max_pixels: u64,
    channel: Option<&Channel>,
) -> Result<(Decoded, FileMeta), DecodeError> {
    let format = sniff(bytes).ok_or(DecodeError::UnknownFormat)?;
    let info = if format == Format::Tiff {
        meta::of_tiff(&tiff_facts(bytes).map_err(|message| DecodeError::Corrupt { format, message })?)
    } else {
        FileMeta::default()
    };
    let Some(channel) = channel else {
        if info.paged() {
            return Err(DecodeError::ChannelNeeded {
                count: info.planes.len(),
                names: info.channels.clone(),
            });
        }
        return Ok((decode(bytes, max_pixels)?, info));
    };
    let decoded = if info.paged() {
        let plane = info.planes[pick(channel, &info, info.planes.len())?];
        let raster = tiff_page(bytes, plane.page, max_pixels)?;
        let raster = match plane.sample {
            Some(s) => sample_of(&raster, s).ok_or_else(|| missing(channel, &info, usize::from(raster.channels)))?,
            None => raster,
        };
        Decoded { raster, format }
    } else {
        let d = decode(bytes, max_pixels)?;
        let samples = usize::from(d.raster.channels);
        let at = pick(channel, &info, samples)?;
        let raster = if samples > 1 {
            sample_of(&d.raster, at).ok_or_else(|| missing(channel, &info, samples))?
        } else {
            d.raster
        };
        Decoded { raster, format }
    };
    Ok((decoded, info))
}

/// The index of `channel` among `count` (by name, the file's names).
fn pick(channel: &Channel, info: &FileMeta, count: usize) -> Result<usize, DecodeError> {
    let at = match channel {
        Channel::Index(i) => Some(*i),
        Channel::Name(n) => info.channels.iter().position(|c| c == n),
    };
    at.filter(|&i| i < count).ok_or_else(|| missing(channel, info, count))
}

/// The error for `channel` not among `count`.
fn missing(channel: &Channel, info: &FileMeta, count: usize) -> DecodeError {
    DecodeError::NoSuchChannel {
        wanted: channel.to_string(),
        count,
        names: info.channels.clone(),
    }
}

/// Sample `s` of every pixel, as a grey raster (none when pixels have fewer samples).
fn sample_of(r: &Raster, s: usize) -> Option<Raster> {
    let n = usize::from(r.channels).max(1);
    if s >= n {
        return None;
    }
    Some(match &r.samples {
        Samples::U8(v) => Raster::from_u8(r.width, r.height, 1, v.iter().skip(s).step_by(n).copied().collect()),
        Samples::U16(v) => Raster::from_u16(r.width, r.height, 1, v.iter().skip(s).step_by(n).copied().collect()),
    })
}

/// The TIFF facts the metadata is read from (first page's tags, the number of pages).
fn tiff_facts(bytes: &[u8]) -> Result<TiffFacts, String> {
    let mut d = tiff::decoder::Decoder::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let mut facts = page_facts(&mut d);
    // Counting pages reads each directory, never the pixels; a broken chain, or the first
    // reduced-resolution page (a pyramid level or a thumbnail), ends the count.
    while d.more_images() && facts.pages < MAX_PAGES {
        if d.next_image().is_err() {
            break;
        }
        let subfile = d
            .find_tag_unsigned::<u32>(tiff::tags::Tag::NewSubfileType)
            .ok()
            .flatten();
        if subfile.is_some_and(|t| t & 1 == 1) {
            break;
        }
        facts.pages += 1;
    }
    Ok(facts)
}

/// The current page's tags the metadata is read from (as one page).
pub(crate) fn page_facts<R: std::io::Read + std::io::Seek>(d: &mut tiff::decoder::Decoder<R>) -> TiffFacts {
    use tiff::tags::Tag;
    let mut tag = |t: Tag| d.find_tag(t).ok().flatten();
    let description = tag(Tag::ImageDescription).and_then(|v| v.into_string().ok());
    let x_resolution = tag(Tag::XResolution).and_then(|v| {
        use tiff::decoder::ifd::Value;
        match v {
            Value::Rational(n, d) if d > 0 => Some(f64::from(n) / f64::from(d)),
            Value::Float(x) => Some(f64::from(x)),
            Value::Double(x) => Some(x),
            _ => None,
        }
    });
    let resolution_unit = d.find_tag_unsigned::<u16>(Tag::ResolutionUnit).ok().flatten();
    let samples = d
        .find_tag_unsigned::<usize>(Tag::SamplesPerPixel)
        .ok()
        .flatten()
        .unwrap_or(1);
    TiffFacts {
        description,
        x_resolution,
        resolution_unit,
        pages: 1,
        samples,
    }
}

/// Pages counted at most (a loop of directories in a hostile file ends here).
const MAX_PAGES: usize = 4096;

/// Decodes page `page` of a TIFF under the pixel limit: 8- or 16-bit integer samples.
fn tiff_page(bytes: &[u8], page: usize, max_pixels: u64) -> Result<Raster, DecodeError> {
    use tiff::decoder::DecodingResult;
    let corrupt = |e: tiff::TiffError| DecodeError::Corrupt {
        format: Format::Tiff,
        message: e.to_string(),
    };
    let mut d = tiff::decoder::Decoder::new(Cursor::new(bytes)).map_err(corrupt)?;
    d.seek_to_image(page).map_err(corrupt)?;
    let (width, height) = d.dimensions().map_err(corrupt)?;
    let pixels = within_limit(width, height, max_pixels)?;
    let colour = d.colortype().map_err(corrupt)?;
    let samples = u8::try_from(colour.num_samples()).unwrap_or(u8::MAX);
    let fits = |len: usize| len == pixels as usize * usize::from(samples);
    match d.read_image().map_err(corrupt)? {
        DecodingResult::U8(v) if fits(v.len()) => Ok(Raster::from_u8(width, height, samples, v)),
        DecodingResult::U16(v) if fits(v.len()) => Ok(Raster::from_u16(width, height, samples, v)),
        _ => Err(DecodeError::PixelType(format!("{colour:?}"))),
    }
}

/// The pixels of a `width` × `height` image its header claims, refused over `max_pixels` (the
/// decompression-bomb guard) or when there are none.
fn within_limit(width: u32, height: u32, max_pixels: u64) -> Result<u64, DecodeError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(DecodeError::TooLarge {
            width,
            height,
            pixels,
            limit: max_pixels,
        });
    }
    if pixels == 0 {
        return Err(DecodeError::Empty);
    }
    Ok(pixels)
}

/// Decodes PNG, TIFF, BMP or JPEG bytes, refusing images over `max_pixels` before decoding them.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<Decoded, DecodeError> {
    let format = sniff(bytes).ok_or(DecodeError::UnknownFormat)?;
    let reader = || ImageReader::with_format(Cursor::new(bytes), image_format(format));
    let corrupt = |e: image::ImageError| DecodeError::Corrupt {
        format,
        message: e.to_string(),
    };
    let (width, height) = reader().into_dimensions().map_err(corrupt)?;
    let pixels = within_limit(width, height, max_pixels)?;
    let mut r = reader();
    let mut limits = image::Limits::default();
    // Headroom for 4 channels of 16 bits plus decoder buffers.
    limits.max_alloc = Some(pixels.saturating_mul(16).max(64 << 20));
    r.limits(limits);
    let img = r.decode().map_err(corrupt)?;
    Ok(Decoded {
        raster: from_dynamic(img)?,
        format,
    })
}

fn image_format(f: Format) -> ImageFormat {
    match f {
        Format::Png => ImageFormat::Png,
        Format::Tiff => ImageFormat::Tiff,
        Format::Bmp => ImageFormat::Bmp,
        Format::Jpeg => ImageFormat::Jpeg,
    }
}

fn from_dynamic(img: DynamicImage) -> Result<Raster, DecodeError> {
    let (w, h) = (img.width(), img.height());
    Ok(match img {
        DynamicImage::ImageLuma8(b) => Raster::from_u8(w, h, 1, b.into_raw()),
        DynamicImage::ImageLumaA8(b) => Raster::from_u8(w, h, 2, b.into_raw()),
        DynamicImage::ImageRgb8(b) => Raster::from_u8(w, h, 3, b.into_raw()),
        DynamicImage::ImageRgba8(b) => Raster::from_u8(w, h, 4, b.into_raw()),
        DynamicImage::ImageLuma16(b) => Raster::from_u16(w, h, 1, b.into_raw()),
        DynamicImage::ImageLumaA16(b) => Raster::from_u16(w, h, 2, b.into_raw()),
        DynamicImage::ImageRgb16(b) => Raster::from_u16(w, h, 3, b.into_raw()),
        DynamicImage::ImageRgba16(b) => Raster::from_u16(w, h, 4, b.into_raw()),
        other => return Err(DecodeError::PixelType(format!("{:?}", other.color()))),
    })
}

/// How a label image is stored: a 16-bit grey PNG when every label fits in 16 bits, else a
/// 32-bit grey TIFF — files napari and Fiji open as label images, each label unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelFile {
    /// 16-bit grey PNG.
    Png16,
    /// 32-bit unsigned grey TIFF.
    Tiff32,
}

impl LabelFile {
    /// The file extension (`png` or `tif`).
    pub fn extension(self) -> &'static str {
        match self {
            LabelFile::Png16 => "png",
            LabelFile::Tiff32 => "tif",
        }
    }
}

/// Encodes instance labels (row-major, `width` × `height`, 0 for background) without changing
/// any label: as a 16-bit PNG when the largest is at most 65535, else as a 32-bit TIFF.
///
/// ```
/// use cellops_dataset::io::{LabelFile, encode_labels};
/// assert_eq!(encode_labels(&[0, 7, 65_535, 1], 2, 2).unwrap().1, LabelFile::Png16);
/// assert_eq!(encode_labels(&[0, 70_000], 2, 1).unwrap().1, LabelFile::Tiff32);
/// ```
pub fn encode_labels(labels: &[u32], width: u32, height: u32) -> Result<(Vec<u8>, LabelFile), String> {
    if labels.len() != width as usize * height as usize {
        return Err(format!("{} labels for a {width}×{height} image", labels.len()));
    }
    if labels.iter().all(|&l| l <= u32::from(u16::MAX)) {
        let raster = Raster {
            width,
            height,
            channels: 1,
            samples: Samples::U16(labels.iter().map(|&l| l as u16).collect()),
        };
        return encode_png(&raster)
            .map(|b| (b, LabelFile::Png16))
            .map_err(|e| e.to_string());
    }
    let mut out = Cursor::new(Vec::new());
    tiff::encoder::TiffEncoder::new(&mut out)
        .and_then(|mut t| t.write_image::<tiff::encoder::colortype::Gray32>(width, height, labels))
        .map_err(|e| e.to_string())?;
    Ok((out.into_inner(), LabelFile::Tiff32))
}

/// Encodes an image as PNG (deterministic: the same pixels always give the same bytes).
pub fn encode_png(raster: &Raster) -> Result<Vec<u8>, image::ImageError> {
    use image::ExtendedColorType as C;
    let color = match (raster.channels, &raster.samples) {
        (1, Samples::U8(_)) => C::L8,
        (2, Samples::U8(_)) => C::La8,
        (3, Samples::U8(_)) => C::Rgb8,
        (4, Samples::U8(_)) => C::Rgba8,
        (1, Samples::U16(_)) => C::L16,
        (2, Samples::U16(_)) => C::La16,
        (3, Samples::U16(_)) => C::Rgb16,
        _ => C::Rgba16,
    };
    let bytes: &[u8] = match &raster.samples {
        Samples::U8(v) => v,
        // The encoder takes 16-bit samples in native byte order: a view, not a copy.
        Samples::U16(v) => bytemuck::cast_slice(v),
    };
    let mut out = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Adaptive,
    );
    image::ImageEncoder::write_image(encoder, bytes, raster.width, raster.height, color)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain TIFF of three 2×1 grey pages: 1s, 2s and 3s (16-bit).
    fn three_pages() -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut t = tiff::encoder::TiffEncoder::new(&mut out).expect("tiff");
        for v in 1..=3u16 {
            t.write_image::<tiff::encoder::colortype::Gray16>(2, 1, &[v, v])
                .expect("page");
        }
        out.into_inner()
    }

    #[test]
    fn pages_are_channels_to_choose_and_colour_samples_can_be_chosen() {
        let bytes = three_pages();
        let err = decode_image(&bytes, 100, None).expect_err("three planes, none chosen");
        assert_eq!(
            err,
            DecodeError::ChannelNeeded {
                count: 3,
                names: Vec::new()
            }
        );
        let (d, meta) = decode_image(&bytes, 100, Some(&Channel::Index(2))).expect("page 2");
        assert_eq!((d.raster.samples, meta.planes.len()), (Samples::U16(vec![3, 3]), 3));
        let err = decode_image(&bytes, 100, Some(&Channel::Index(3))).expect_err("no page 3");
        assert!(matches!(err, DecodeError::NoSuchChannel { count: 3, .. }), "{err}");
        // The pixel limit holds for the chosen page too.
        let err = decode_image(&bytes, 1, Some(&Channel::Index(0))).expect_err("over the limit");
        assert!(matches!(err, DecodeError::TooLarge { .. }), "{err}");
        // A colour PNG: its blue sample by index; names it has none.
        let rgb = encode_png(&Raster::from_u8(1, 1, 3, vec![10, 20, 30])).expect("png");
        let (d, _) = decode_image(&rgb, 100, Some(&Channel::Index(2))).expect("blue");
        assert_eq!(d.raster.samples, Samples::U8(vec![30]));
        let (d, _) = decode_image(&rgb, 100, None).expect("colour");
        assert_eq!(d.raster.channels, 3, "no choice: colour stays colour");
        let named = Channel::Name("DAPI".into());
        assert!(matches!(
            decode_image(&rgb, 100, Some(&named)),
            Err(DecodeError::NoSuchChannel { .. })
        ));
    }

    #[test]
    fn reduced_resolution_pages_are_not_channels() {
        // A pyramid: level 0 and its halvings (NewSubfileType 1) are one image, not planes.
        let mut out = Cursor::new(Vec::new());
        crate::slide::write_pyramid(&mut out, (40, 40, 1), 16, 0.5, |_, r| vec![7; r.area() as usize])
            .expect("pyramid");
        let (d, meta) = decode_image(out.get_ref(), 10_000, None).expect("one image");
        assert_eq!((d.raster.width, meta.planes.len()), (40, 1));
        assert_eq!(meta.pixel_size.map(|(um, _)| (um * 1000.0).round()), Some(500.0));
    }

    #[test]
    fn label_images_keep_every_label() {
        let small: Vec<u32> = vec![0, 1, 65_535, 300, 2, 0];
        let (png, kind) = encode_labels(&small, 3, 2).expect("png");
        assert_eq!(kind, LabelFile::Png16);
        let back = decode(&png, u64::MAX).expect("decode").raster;
        assert_eq!(back.samples, Samples::U16(small.iter().map(|&l| l as u16).collect()));
        let large: Vec<u32> = vec![0, 65_536, 4_000_000_000, 7];
        let (tif, kind) = encode_labels(&large, 2, 2).expect("tiff");
        assert_eq!(kind, LabelFile::Tiff32);
        let mut d = tiff::decoder::Decoder::new(Cursor::new(tif)).expect("tiff");
        assert_eq!(d.colortype().expect("colour"), tiff::ColorType::Gray(32));
        match d.read_image().expect("read") {
            tiff::decoder::DecodingResult::U32(v) => assert_eq!(v, large),
            _ => panic!("not 32-bit"),
        }
        assert!(encode_labels(&[1, 2, 3], 2, 2).is_err(), "too few labels for the size");
    }
}
