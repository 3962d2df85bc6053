//! What an image file says about itself beyond its pixels: the physical size of a pixel, and the
//! channels (names, and where each one's plane is), from the OME-XML of an OME-TIFF, the
//! description ImageJ writes, or TIFF resolution tags given in centimetres.
//!
//! Resolution tags in inches are ignored: 72, 96 or 300 dots per inch are what writers put there
//! when they know nothing, and read as a pixel size they would be hundreds of micrometres.

use xml::reader::{EventReader, XmlEvent};

/// Where a pixel size was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SizeSource {
    /// OME-XML `Pixels PhysicalSizeX`.
    OmeXml,
    /// ImageJ's description (`unit=`) with the TIFF X resolution.
    ImageJ,
    /// TIFF X resolution with the resolution unit in centimetres.
    TiffResolution,
}

impl SizeSource {
    /// How reports name it.
    pub fn as_str(self) -> &'static str {
        match self {
            SizeSource::OmeXml => "OME-XML",
            SizeSource::ImageJ => "ImageJ metadata",
            SizeSource::TiffResolution => "TIFF resolution",
        }
    }
}

/// Where channel `c`'s pixels are: which page (IFD) of the file, and which sample of its pixels
/// when a page holds several channels interleaved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plane {
    /// The page, from 0.
    pub page: usize,
    /// The sample within a pixel, for interleaved channels.
    pub sample: Option<usize>,
}

/// What a file says about itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileMeta {
    /// The side of a pixel in micrometres, and where it was found.
    pub pixel_size: Option<(f64, SizeSource)>,
    /// The channels' names (empty strings where unnamed); empty when the file describes none.
    pub channels: Vec<String>,
    /// Each channel's plane (at the first z and time point), in channel order.
    pub planes: Vec<Plane>,
}

impl FileMeta {
    /// Whether the channels lie in separate pages (several planes to choose from), as opposed to
    /// a single page — grey, or colour samples read together.
    pub fn paged(&self) -> bool {
        self.planes.len() > 1 && self.planes.iter().any(|p| p.page > 0)
    }
}

/// The TIFF facts the metadata is read from.
#[derive(Debug, Clone, Default)]
pub struct TiffFacts {
    /// The first page's ImageDescription.
    pub description: Option<String>,
    /// The first page's X resolution (pixels per resolution unit).
    pub x_resolution: Option<f64>,
    /// The resolution unit: 1 none, 2 inch, 3 centimetre.
    pub resolution_unit: Option<u16>,
    /// How many pages the file has.
    pub pages: usize,
    /// Samples per pixel of the first page.
    pub samples: usize,
}

/// The metadata of a TIFF from its facts: OME-XML first, then ImageJ's, then plain pages.
pub fn of_tiff(t: &TiffFacts) -> FileMeta {
    let description = t.description.as_deref().unwrap_or_default();
    let xml = description.trim_start().starts_with("<?xml") || description.contains("<OME");
    if let Some(m) = xml.then(|| ome(description, t)).flatten() {
        return m;
    }
    if description.starts_with("ImageJ=") {
        return imagej(description, t);
    }
    let pixel_size = match (t.x_resolution, t.resolution_unit) {
        (Some(x), Some(3)) => size_of(1e4, x).map(|um| (um, SizeSource::TiffResolution)),
        _ => None,
    };
    FileMeta {
        pixel_size,
        channels: Vec::new(),
        planes: pages_or_samples(t.pages, t.samples, 1),
    }
}

/// One plane per page, or (one page) one per sample.
fn pages_or_samples(pages: usize, samples: usize, stride: usize) -> Vec<Plane> {
    if pages > 1 {
        (0..pages.div_ceil(stride.max(1)))
            .map(|c| Plane {
                page: c * stride.max(1),
                sample: None,
            })
            .collect()
    } else {
        (0..samples.max(1))
            .map(|s| Plane {
                page: 0,
                sample: (samples > 1).then_some(s),
            })
            .collect()
    }
}

/// `per_unit / resolution` when both are finite and positive and so is the result.
fn size_of(per_unit: f64, resolution: f64) -> Option<f64> {
    let um = per_unit / resolution;
    (resolution.is_finite() && resolution > 0.0 && um.is_finite() && um > 0.0).then_some(um)
}

/// Channels a file may describe at most (more is a damaged or hostile header).
pub const MAX_CHANNELS: usize = 4096;

/// ImageJ's description: `channels=` (pages in C, Z, T order, C fastest) and `unit=` with the X
/// resolution in pixels per unit.
fn imagej(description: &str, t: &TiffFacts) -> FileMeta {
    let value = |key: &str| {
        description
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .map(str::trim)
    };
    let channels = value("channels")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .min(MAX_CHANNELS);
    let pixel_size = value("unit")
        .and_then(micrometres_per)
        .zip(t.x_resolution)
        .and_then(|(per_unit, x)| size_of(per_unit, x))
        .map(|um| (um, SizeSource::ImageJ));
    let planes = if channels > 1 && t.pages >= channels {
        (0..channels).map(|c| Plane { page: c, sample: None }).collect()
    } else {
        pages_or_samples(1, t.samples, 1)
    };
    FileMeta {
        pixel_size,
        channels: Vec::new(),
        planes,
    }
}

/// Micrometres in one of a length unit, as OME-XML and ImageJ write them.
///
/// ```
/// use cellops_dataset::meta::micrometres_per;
/// assert_eq!(micrometres_per("µm"), Some(1.0));
/// assert_eq!(micrometres_per("micron"), Some(1.0));
/// assert_eq!(micrometres_per("nm"), Some(0.001));
/// assert_eq!(micrometres_per("pixel"), None);
/// ```
pub fn micrometres_per(unit: &str) -> Option<f64> {
    Some(match unit.trim() {
        "µm" | "μm" | "um" | "micron" | "microns" | "\\u00B5m" => 1.0,
        "nm" => 1e-3,
        "Å" | "angstrom" => 1e-4,
        "mm" => 1e3,
        "cm" => 1e4,
        "m" => 1e6,
        _ => return None,
    })
}

/// The first image of an OME-XML document: its pixel size, channel names and planes.
fn ome(xml: &str, t: &TiffFacts) -> Option<FileMeta> {
    let mut pixels: Option<Vec<(String, String)>> = None;
    let mut channels: Vec<(Option<String>, usize)> = Vec::new();
    let mut tiff_data: Vec<Vec<(String, String)>> = Vec::new();
    let mut depth_in_first_image = None::<usize>;
    let mut depth = 0usize;
    for event in EventReader::from_str(xml) {
        match event.ok()? {
            XmlEvent::StartElement { name, attributes, .. } => {
                depth += 1;
                let attrs = || -> Vec<(String, String)> {
                    attributes
                        .iter()
                        .map(|a| (a.name.local_name.clone(), a.value.clone()))
                        .collect()
                };
                match name.local_name.as_str() {
                    "Image" if depth_in_first_image.is_none() && pixels.is_none() => {
                        depth_in_first_image = Some(depth);
                    }
                    "Pixels" if depth_in_first_image.is_some() && pixels.is_none() => pixels = Some(attrs()),
                    "Channel" if depth_in_first_image.is_some() => {
                        let a = attrs();
                        let get = |k: &str| a.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                        let spp = get("SamplesPerPixel").and_then(|v| v.parse().ok()).unwrap_or(1);
                        channels.push((get("Name"), spp));
                    }
                    "TiffData" if depth_in_first_image.is_some() => tiff_data.push(attrs()),
                    _ => {}
                }
            }
            XmlEvent::EndElement { name } => {
                if name.local_name == "Image" && depth_in_first_image == Some(depth) {
                    break;
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
    }
    let pixels = pixels?;
    let get = |k: &str| pixels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let size = |k: &str| {
        get(k)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1)
            .clamp(1, MAX_CHANNELS)
    };
    let sizes = Sizes {
        c: size("SizeC"),
        z: size("SizeZ"),
        t: size("SizeT"),
    };
    let size_c = sizes.c;
    let order = get("DimensionOrder").unwrap_or("XYCZT");
    let pixel_size = get("PhysicalSizeX")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|v| Some(v * micrometres_per(get("PhysicalSizeXUnit").unwrap_or("µm"))?))
        .filter(|um| um.is_finite() && *um > 0.0)
        .map(|um| (um, SizeSource::OmeXml));
    let interleaved = channels.first().is_some_and(|(_, spp)| *spp > 1 && *spp == size_c);
    let planes: Vec<Plane> = (0..size_c)
        .map(|c| {
            if interleaved {
                return Plane {
                    page: 0,
                    sample: Some(c),
                };
            }
            let p = plane_index(order, (c, 0, 0), sizes);
            Plane {
                page: page_of(&tiff_data, order, p, sizes),
                sample: None,
            }
        })
        .collect();
    let names = channels.into_iter().map(|(n, _)| n.unwrap_or_default()).collect();
    let planes = if planes.iter().all(|p| p.page < t.pages.max(1)) {
        planes
    } else {
        pages_or_samples(t.pages, t.samples, 1)
    };
    Some(FileMeta {
        pixel_size,
        channels: names,
        planes,
    })
}

/// Sizes of the channel, z and time dimensions.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Channels.
    pub c: usize,
    /// Z planes.
    pub z: usize,
    /// Time points.
    pub t: usize,
}

/// The linear plane index of `(c, z, t)` in `order` (`XYCZT`, `XYZCT`, …: the first of C, Z
/// and T after XY varies fastest).
///
/// ```
/// # use cellops_dataset::meta::{Sizes, plane_index};
/// let sizes = Sizes { c: 3, z: 5, t: 2 };
/// assert_eq!(plane_index("XYCZT", (2, 0, 0), sizes), 2);
/// assert_eq!(plane_index("XYZCT", (2, 0, 0), sizes), 10);
/// assert_eq!(plane_index("XYTCZ", (1, 0, 1), sizes), 3);
/// ```
pub fn plane_index(order: &str, (c, z, t): (usize, usize, usize), sizes: Sizes) -> usize {
    let (mut index, mut stride) = (0usize, 1usize);
    for d in order.chars().skip(2).take(3) {
        let (at, size) = match d {
            'C' => (c, sizes.c),
            'Z' => (z, sizes.z),
            _ => (t, sizes.t),
        };
        // Sizes are capped, but a hostile header is not to overflow: saturate.
        index = index.saturating_add(at.saturating_mul(stride));
        stride = stride.saturating_mul(size.max(1));
    }
    index
}

/// The page holding linear plane `p`: as the OME `TiffData` elements map planes to pages
/// (`IFD`, `FirstC`/`FirstZ`/`FirstT`, `PlaneCount`), or page `p` when none are given.
fn page_of(tiff_data: &[Vec<(String, String)>], order: &str, p: usize, sizes: Sizes) -> usize {
    for td in tiff_data {
        let get = |k: &str| {
            td.iter()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.parse::<usize>().ok())
        };
        let first = (
            get("FirstC").unwrap_or(0),
            get("FirstZ").unwrap_or(0),
            get("FirstT").unwrap_or(0),
        );
        let first = plane_index(order, first, sizes);
        // Without a count: every plane from its first when it names no IFD, else one (as the
        // OME schema says).
        let count = get("PlaneCount").unwrap_or(if get("IFD").is_none() { usize::MAX } else { 1 });
        if p >= first && p - first < count {
            return get("IFD").unwrap_or(0).saturating_add(p - first);
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(description: &str, pages: usize) -> TiffFacts {
        TiffFacts {
            description: Some(description.into()),
            pages,
            samples: 1,
            ..TiffFacts::default()
        }
    }

    #[test]
    fn ome_xml_names_channels_and_gives_the_pixel_size() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0"><Pixels DimensionOrder="XYZCT" SizeC="2" SizeZ="3" SizeT="1" PhysicalSizeX="325" PhysicalSizeXUnit="nm" Type="uint16"><Channel ID="Channel:0:0" Name="GFP" SamplesPerPixel="1"/><Channel ID="Channel:0:1" Name="DAPI" SamplesPerPixel="1"/><TiffData/></Pixels></Image><Image ID="Image:1"><Pixels SizeC="1" PhysicalSizeX="9"><Channel Name="other"/></Pixels></Image></OME>"#;
        let m = of_tiff(&facts(xml, 6));
        assert_eq!(m.pixel_size, Some((0.325, SizeSource::OmeXml)));
        assert_eq!(m.channels, vec!["GFP", "DAPI"], "the first image's only");
        // Z before C: channel 1 starts after channel 0's three z planes.
        assert_eq!(m.planes.iter().map(|p| p.page).collect::<Vec<_>>(), vec![0, 3]);
        assert!(m.paged());
    }

    #[test]
    fn tiff_data_maps_planes_to_pages_and_interleaved_channels_are_samples() {
        let xml = r#"<OME><Image><Pixels DimensionOrder="XYCZT" SizeC="2" PhysicalSizeX="0.5"><Channel Name="a"/><Channel Name="b"/><TiffData IFD="4" FirstC="0" PlaneCount="1"/><TiffData IFD="2" FirstC="1" PlaneCount="1"/></Pixels></Image></OME>"#;
        let m = of_tiff(&facts(xml, 6));
        assert_eq!(m.planes.iter().map(|p| p.page).collect::<Vec<_>>(), vec![4, 2]);
        let rgb = r#"<OME><Image><Pixels SizeC="3"><Channel Name="RGB" SamplesPerPixel="3"/></Pixels></Image></OME>"#;
        let m = of_tiff(&TiffFacts {
            samples: 3,
            ..facts(rgb, 1)
        });
        assert_eq!(
            m.planes[2],
            Plane {
                page: 0,
                sample: Some(2)
            }
        );
        assert!(!m.paged() && m.pixel_size.is_none());
    }

    #[test]
    fn imagej_and_plain_tiffs() {
        let ij = TiffFacts {
            x_resolution: Some(4.0),
            ..facts(
                "ImageJ=1.54f\nimages=6\nchannels=3\nslices=2\nhyperstack=true\nunit=micron\n",
                6,
            )
        };
        let m = of_tiff(&ij);
        assert_eq!(m.pixel_size, Some((0.25, SizeSource::ImageJ)));
        assert_eq!(m.planes.iter().map(|p| p.page).collect::<Vec<_>>(), vec![0, 1, 2]);
        // Centimetres are trusted, inches are not (72 dpi is every writer's default).
        let cm = TiffFacts {
            x_resolution: Some(20_000.0),
            resolution_unit: Some(3),
            ..TiffFacts::default()
        };
        assert_eq!(of_tiff(&cm).pixel_size, Some((0.5, SizeSource::TiffResolution)));
        let inch = TiffFacts {
            x_resolution: Some(72.0),
            resolution_unit: Some(2),
            ..TiffFacts::default()
        };
        assert_eq!(of_tiff(&inch).pixel_size, None);
        // Plain pages are channels; a broken OME-XML falls back to them.
        let m = of_tiff(&facts("<OME><Image><Pixels", 3));
        assert_eq!(m.planes.len(), 3);
        assert!(m.channels.is_empty());
    }
}
