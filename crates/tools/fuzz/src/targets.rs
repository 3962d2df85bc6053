//! The parsers fuzzed, each with the real inputs its mutations start from.

use std::path::Path;

use cellops_dataset::{Raster, io};
use cellops_formats::build::BuildConfig;
use cellops_formats::dataset::Manifest;
use cellops_formats::monitor::MonitorConfig;
use cellops_formats::params::{CellParams, Channel};
use cellops_formats::release::LogLine;
use cellops_formats::serve::ServeConfig;

/// A parser under test.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its name (`--target`).
    pub name: &'static str,
    /// What it reads.
    pub what: &'static str,
    /// The inputs mutations start from.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Parses an input; whether it was accepted. Must not panic or hang, whatever the input.
    pub parse: fn(&[u8]) -> bool,
}

/// The largest image the image target decodes (the decompression-bomb guard's limit).
pub const MAX_PIXELS: u64 = 1 << 20;

/// Every target.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "cell-params",
            what: "cell-parameter YAML (pull requests change it)",
            seeds: || {
                [
                    include_str!("../../../../cell-params/fluorescence-dapi.yaml"),
                    include_str!("../../../../cell-params/he-breast.yaml"),
                    include_str!("../../../../cell-params/ihc-er.yaml"),
                    include_str!("../../../../cell-params/ihc-ki67.yaml"),
                ]
                .map(|s| s.as_bytes().to_vec())
                .to_vec()
            },
            parse: |b| CellParams::from_yaml(&text(b), Path::new("fuzz.yaml")).is_ok(),
        },
        Target {
            name: "build-config",
            what: "build configuration YAML",
            seeds: || vec![include_bytes!("../../../../examples/build.yaml").to_vec()],
            parse: |b| BuildConfig::from_yaml(&text(b), Path::new("build.yaml")).is_ok(),
        },
        Target {
            name: "training-config",
            what: "training configuration YAML",
            seeds: || vec![include_bytes!("../../../../examples/train-unet.yaml").to_vec()],
            parse: |b| cellops_train_unet::parse_config(Path::new("train.yaml"), &text(b)).is_ok(),
        },
        Target {
            name: "monitor-config",
            what: "monitor.yaml",
            seeds: || vec![include_bytes!("../../../../monitor.yaml").to_vec()],
            parse: |b| MonitorConfig::parse(Path::new("monitor.yaml"), &text(b)).is_ok(),
        },
        Target {
            name: "serve-config",
            what: "serve.json (a release's service settings)",
            seeds: || vec![include_bytes!("../../../../serve.json").to_vec()],
            parse: |b| ServeConfig::parse(Path::new("serve.json"), &text(b)).is_ok(),
        },
        Target {
            name: "manifest",
            what: "a prepared dataset's manifest.json",
            seeds: manifest_seeds,
            parse: |b| serde_json::from_slice::<Manifest>(b).is_ok(),
        },
        Target {
            name: "bundle",
            what: "a model bundle's bundle.json",
            seeds: || vec![include_bytes!("../../../../models/nuclei/bundle.json").to_vec()],
            parse: |b| cellops_unet::bundle::parse_meta(&text(b)).is_ok(),
        },
        Target {
            name: "deployments",
            what: "deployments.jsonl (the registry's audit log), line by line",
            seeds: || DEPLOYMENTS.iter().map(|l| l.as_bytes().to_vec()).collect(),
            parse: |b| {
                // Every line is parsed, also after one that fails.
                let parsed: Vec<bool> = text(b)
                    .lines()
                    .map(|l| serde_json::from_str::<LogLine>(l).is_ok())
                    .collect();
                parsed.iter().all(|&ok| ok)
            },
        },
        Target {
            name: "image",
            what: "image files (PNG, TIFF) through the decode path and its pixel limit",
            seeds: image_seeds,
            parse: |b| io::decode(b, MAX_PIXELS).is_ok(),
        },
        Target {
            name: "image-channels",
            what: "multi-channel TIFFs (OME-XML, ImageJ, pages) through the channel choice and the pixel limit",
            seeds: channel_seeds,
            parse: |b| {
                let dapi = Channel::Name("DAPI".into());
                let chosen = io::decode_image(b, MAX_PIXELS, Some(&dapi)).is_ok();
                io::decode_image(b, MAX_PIXELS, None).is_ok() || chosen
            },
        },
        Target {
            name: "infer",
            what: "the service's Open Inference Protocol infer request body",
            seeds: || vec![INFER.as_bytes().to_vec()],
            parse: |b| cellops_serve::app::parse_infer(b).is_ok(),
        },
    ]
}

/// Bytes as the parsers of text files see them.
fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const DEPLOYMENTS: &[&str] = &[
    r#"{"event":"deploy","release":"20261207T120000Z-abcdef01-0123456","previous":null,"time":"2026-12-07T12:00:00Z","actor":"octocat","git_sha":"0123456789abcdef0123456789abcdef01234567","run":"1","files":3,"files_sent":3,"bytes_sent":1200}"#,
    r#"{"event":"promote","alias":"staging","release":"20261207T120000Z-abcdef01-0123456","from":null,"time":"2026-12-07T12:01:00Z","actor":"octocat","run":null,"reason":null,"prev":"00"}"#,
    r#"{"event":"rollback","release":null,"from":"20261207T120000Z-abcdef01-0123456","time":"2026-12-07T12:02:00Z","reason":"requested","actor":null,"run":null}"#,
    r#"{"event":"unchanged","release":"20261207T120000Z-abcdef01-0123456","time":"2026-12-07T12:03:00Z","actor":"octocat","git_sha":null,"run":null}"#,
    r#"{"event":"unalias","alias":"staging","from":"20261207T120000Z-abcdef01-0123456","time":"2026-12-07T12:04:00Z","actor":null,"run":null,"reason":"another host failed (ssh://a)"}"#,
];

const INFER: &str =
    r#"{"id":"1","inputs":[{"name":"image","shape":[1,1,2,3],"datatype":"FP32","data":[0.0,0.5,1.0,0.25,0.75,0.1]}]}"#;

/// The manifest of a tiny synthetic dataset built for the purpose (the format changes with the
/// code, so it is made, not committed).
fn manifest_seeds() -> Vec<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("cellops-fuzz-manifest-{}", std::process::id()));
    let (raw, out) = (dir.join("raw"), dir.join("out"));
    let cfg = cellops_dataset::synthetic::SynthConfig {
        count: 3,
        seed: 1,
        size: [32, 32],
        style: cellops_dataset::synthetic::Style::Fluorescence,
    };
    let built = cellops_dataset::synthetic::write_dataset(&cfg, &raw).is_ok()
        && cellops_dataset::build(
            &raw,
            &out,
            &cellops_dataset::BuildConfig::default(),
            &cellops_dataset::prepare::Quiet,
        )
        .is_ok();
    let manifest = built
        .then(|| std::fs::read(out.join(cellops_formats::dataset::MANIFEST)).ok())
        .flatten();
    let _ = std::fs::remove_dir_all(&dir);
    manifest.into_iter().collect()
}

/// Small PNGs (8-bit grey, 16-bit grey, RGB) and a hand-made 8-bit TIFF.
fn image_seeds() -> Vec<Vec<u8>> {
    let grey = Raster::from_u8(3, 2, 1, vec![0, 50, 100, 150, 200, 250]);
    let deep = Raster::from_u16(2, 2, 1, vec![0, 1000, 30000, 65535]);
    let rgb = Raster::from_u8(2, 1, 3, vec![255, 0, 0, 0, 255, 0]);
    let mut out: Vec<Vec<u8>> = [grey, deep, rgb]
        .iter()
        .filter_map(|r| io::encode_png(r).ok())
        .collect();
    out.push(tiny_tiff());
    out
}

/// Two-page TIFFs of 3×2 grey planes: with OME-XML naming the channels (`GFP`, `DAPI`) and
/// giving a pixel size, and with ImageJ's description.
fn channel_seeds() -> Vec<Vec<u8>> {
    let ome = r#"<?xml version="1.0"?><OME><Image ID="Image:0"><Pixels DimensionOrder="XYCZT" SizeC="2" SizeZ="1" SizeT="1" PhysicalSizeX="0.5" PhysicalSizeXUnit="µm"><Channel Name="GFP"/><Channel Name="DAPI"/><TiffData IFD="0" PlaneCount="2"/></Pixels></Image></OME>"#;
    let imagej = "ImageJ=1.54f\nimages=2\nchannels=2\nhyperstack=true\nunit=micron\n";
    [ome, imagej]
        .into_iter()
        .filter_map(|description| {
            let mut out = std::io::Cursor::new(Vec::new());
            let mut t = tiff::encoder::TiffEncoder::new(&mut out).ok()?;
            for (i, plane) in [[0u8, 40, 80, 120, 160, 200], [200, 160, 120, 80, 40, 0]]
                .iter()
                .enumerate()
            {
                let mut page = t.new_image::<tiff::encoder::colortype::Gray8>(3, 2).ok()?;
                if i == 0 {
                    page.encoder()
                        .write_tag(tiff::tags::Tag::ImageDescription, description)
                        .ok()?;
                }
                page.write_data(plane).ok()?;
            }
            Some(out.into_inner())
        })
        .collect()
}

/// A 2×2 8-bit grey baseline TIFF, little-endian, one strip.
fn tiny_tiff() -> Vec<u8> {
    // Header (8 bytes), then the IFD at 8: count, 8 entries of 12 bytes, next-IFD 0; pixels after.
    let entries: [(u16, u16, u32, u32); 8] = [
        (256, 3, 1, 2),   // ImageWidth
        (257, 3, 1, 2),   // ImageLength
        (258, 3, 1, 8),   // BitsPerSample
        (259, 3, 1, 1),   // Compression: none
        (262, 3, 1, 1),   // Photometric: black is zero
        (273, 4, 1, 110), // StripOffsets
        (278, 3, 1, 2),   // RowsPerStrip
        (279, 4, 1, 4),   // StripByteCounts
    ];
    let mut t = b"II*\0".to_vec();
    t.extend_from_slice(&8u32.to_le_bytes());
    t.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, kind, count, value) in entries {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&kind.to_le_bytes());
        t.extend_from_slice(&count.to_le_bytes());
        t.extend_from_slice(&value.to_le_bytes());
    }
    t.extend_from_slice(&0u32.to_le_bytes());
    t.resize(110, 0);
    t.extend_from_slice(&[0, 85, 170, 255]);
    t
}
