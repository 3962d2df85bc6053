//! Golden files for the image operations: a fixed synthetic input, each operation's output compared
//! byte for byte with `tests/golden/*.png`. Regenerate after an intended change with
//! `CELLOPS_BLESS=1 cargo test -p cellops-dataset --test golden` and review the new images.

use std::path::{Path, PathBuf};

use cellops_dataset::io::{decode, encode_png};
use cellops_dataset::ops::colour::{ColourMode, apply_luma, luma_plane, to_working};
use cellops_dataset::ops::equalize::{Clahe, clahe, equalize};
use cellops_dataset::ops::normalize::percentile;
use cellops_dataset::ops::resize::{Filter, resize_image};
use cellops_dataset::synthetic::{Style, SynthConfig, generate_one};
use cellops_dataset::{Raster, Samples};

fn golden(name: &str, got: &Raster) {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    let bytes = encode_png(got).expect("encode");
    if std::env::var("CELLOPS_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &bytes).expect("write golden");
        return;
    }
    let want = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (CELLOPS_BLESS=1 creates it)", path.display()));
    let want = decode(&want, u64::MAX).expect("golden decodes").raster;
    assert_eq!(
        (want.width, want.height, want.channels),
        (got.width, got.height, got.channels),
        "{name}: shape"
    );
    if want != *got {
        let (Samples::U8(a), Samples::U8(b)) = (&want.samples, &got.samples) else {
            panic!("{name}: sample types differ");
        };
        let diff = a.iter().zip(b).filter(|(x, y)| x != y).count();
        let max = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0);
        panic!("{name} differs from its golden file in {diff} samples (max {max}); CELLOPS_BLESS=1 if intended");
    }
}

fn input(style: Style) -> Raster {
    let cfg = SynthConfig {
        count: 1,
        seed: 2024,
        size: [80, 60],
        style,
    };
    generate_one(&cfg, 0).0
}

fn u8_plane(r: &Raster) -> Vec<u8> {
    match &r.samples {
        Samples::U8(v) => v.clone(),
        Samples::U16(_) => panic!("8-bit expected"),
    }
}

#[test]
fn grey_equalize_and_clahe() {
    let img = input(Style::Fluorescence);
    let mut eq = u8_plane(&img);
    equalize(&mut eq);
    golden("fluo_equalize.png", &Raster::from_u8(80, 60, 1, eq));
    let mut c = u8_plane(&img);
    clahe(
        &mut c,
        80,
        Clahe {
            clip_limit: 2.0,
            tiles_x: 3,
            tiles_y: 3,
        },
    );
    golden("fluo_clahe_3x3.png", &Raster::from_u8(80, 60, 1, c));
}

#[test]
fn colour_clahe_on_luminance() {
    let img = to_working(&input(Style::He), ColourMode::Keep);
    let mut rgb = u8_plane(&img);
    let y = luma_plane(&rgb);
    let mut y2 = y.clone();
    clahe(&mut y2, 80, Clahe::default());
    apply_luma(&mut rgb, &y, &y2);
    golden("he_clahe_luma.png", &Raster::from_u8(80, 60, 3, rgb));
}

#[test]
fn resize_and_normalize() {
    let img = input(Style::Ihc);
    golden(
        "ihc_area_40x30.png",
        &resize_image(&img, 40, 30, Filter::Area).expect("resize"),
    );
    golden("ihc_percentile.png", &percentile(&img, 2.0, 98.0));
}
