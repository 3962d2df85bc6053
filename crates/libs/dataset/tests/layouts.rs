//! Every supported layout, built end to end from fixtures the tests write themselves.

use std::path::Path;

use cellops_dataset::config::{EqualizeMethod, Tile};
use cellops_dataset::io::encode_png;
use cellops_dataset::layout::LayoutKind;
use cellops_dataset::prepare::Quiet;
use cellops_dataset::synthetic::{Style, SynthConfig, generate_one};
use cellops_dataset::{BuildConfig, Labels, Outcome, Raster, build};

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

fn png(path: &Path, r: &Raster) {
    write(path, &encode_png(r).expect("encode"));
}

fn sample(i: usize) -> (Raster, Labels) {
    generate_one(
        &SynthConfig {
            count: 1,
            seed: 3,
            size: [64, 48],
            style: Style::Fluorescence,
        },
        i,
    )
}

fn labels_raster(l: &Labels) -> Raster {
    Raster::from_u16(l.width, l.height, 1, l.data.clone())
}

fn build_ok(data: &Path, out: &Path, cfg: &BuildConfig) -> cellops_dataset::BuildReport {
    let r = build(data, out, cfg, &Quiet).expect("build runs");
    assert_eq!(r.outcome, Outcome::Written, "{:?}", r.problems);
    r
}

#[cfg(unix)]
#[test]
fn links_inside_the_dataset_are_read_and_links_out_of_it_are_refused() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let (img, labels) = sample(0);
    png(&data.join("store/a.png"), &img);
    png(&data.join("masks/a_mask.png"), &labels_raster(&labels));
    std::fs::create_dir_all(data.join("original")).expect("dir");
    // Assembled from links inside the dataset: built as usual.
    symlink(data.join("store/a.png"), data.join("original/a.png")).expect("link");
    let r = build_ok(&data, &tmp.path().join("out"), &BuildConfig::default());
    assert_eq!(r.counts.images, 1);
    // A link out of the dataset: refused by name, nothing written.
    png(&tmp.path().join("elsewhere.png"), &img);
    png(&data.join("masks/b_mask.png"), &labels_raster(&labels));
    symlink(tmp.path().join("elsewhere.png"), data.join("original/b.png")).expect("link");
    let out = tmp.path().join("out2");
    let err = build(&data, &out, &BuildConfig::default(), &Quiet).expect_err("a link out");
    let msg = err.to_string();
    assert!(
        msg.contains("original/b.png") && msg.contains("resolves outside"),
        "{msg}"
    );
    assert!(!out.exists(), "nothing written");
    // A whole folder of the layout that is a link out of the dataset: its files are refused.
    std::fs::remove_file(data.join("original/b.png")).expect("unlink");
    std::fs::remove_file(data.join("masks/b_mask.png")).expect("rm");
    let masks = tmp.path().join("masks-elsewhere");
    std::fs::rename(data.join("masks"), &masks).expect("move");
    symlink(&masks, data.join("masks")).expect("link");
    let err = build(&data, &out, &BuildConfig::default(), &Quiet).expect_err("a linked folder");
    assert!(err.to_string().contains("reached through a symbolic link"), "{err}");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn dsb2018_per_object_masks_are_combined() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("stage1_train");
    let mut total = 0;
    for i in 0..3 {
        let (img, labels) = sample(i);
        let id = format!("abc{i}");
        png(&data.join(&id).join("images").join(format!("{id}.png")), &img);
        let n = labels.count_objects();
        total += n;
        for k in 1..=n as u16 {
            let obj: Vec<u8> = labels.data.iter().map(|&l| if l == k { 255 } else { 0 }).collect();
            png(
                &data.join(&id).join("masks").join(format!("m{k:03}.png")),
                &Raster::from_u8(64, 48, 1, obj),
            );
        }
    }
    let r = build_ok(&data, &tmp.path().join("out"), &BuildConfig::default());
    assert_eq!(r.layout, LayoutKind::Dsb2018);
    assert_eq!((r.counts.images, r.counts.objects), (3, total));
}

#[test]
fn nnunet_raw_pairs_cases_and_ignores_extra_channels() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("Dataset001_Nuclei");
    for i in 0..2 {
        let (img, labels) = sample(i);
        png(&data.join("imagesTr").join(format!("case{i}_0000.png")), &img);
        png(&data.join("imagesTr").join(format!("case{i}_0001.png")), &img);
        let binary: Vec<u8> = labels.data.iter().map(|&l| u8::from(l != 0)).collect();
        png(
            &data.join("labelsTr").join(format!("case{i}.png")),
            &Raster::from_u8(64, 48, 1, binary),
        );
    }
    let r = build_ok(&data, &tmp.path().join("out"), &BuildConfig::default());
    assert_eq!(r.layout, LayoutKind::Nnunet);
    assert_eq!(r.counts.images, 2);
    assert_eq!(r.warnings(), 2, "channel 0001 is reported as ignored: {:?}", r.problems);
    assert!(
        r.counts.objects >= 2,
        "binary labels are split into connected components"
    );
}

#[test]
fn cellpose_with_split_folders_and_16_bit_tiff() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("cp");
    for (i, split) in ["train", "train", "test"].iter().enumerate() {
        let (img, labels) = sample(i);
        // 16-bit TIFF image
        let Raster {
            samples: cellops_dataset::Samples::U8(px),
            ..
        } = img
        else {
            panic!("8-bit")
        };
        let wide: Vec<u16> = px.iter().map(|&v| u16::from(v) * 257).collect();
        let buf = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(64, 48, wide).expect("buffer");
        let mut tiff = Vec::new();
        image::DynamicImage::ImageLuma16(buf)
            .write_to(&mut std::io::Cursor::new(&mut tiff), image::ImageFormat::Tiff)
            .expect("tiff");
        write(&data.join(split).join(format!("img{i}.tif")), &tiff);
        png(
            &data.join(split).join(format!("img{i}_masks.png")),
            &labels_raster(&labels),
        );
        write(&data.join(split).join(format!("img{i}_seg.npy")), b"\x93NUMPY");
    }
    let out = tmp.path().join("out");
    let cfg = BuildConfig {
        equalize: cellops_dataset::config::Equalize {
            method: EqualizeMethod::Clahe,
            ..Default::default()
        },
        tile: Some(Tile { size: 32, overlap: 0 }),
        // Samples kept as they are (the default normalisation makes 8-bit images).
        normalize: cellops_dataset::config::Normalize {
            method: cellops_dataset::config::NormalizeMethod::None,
            ..Default::default()
        },
        ..BuildConfig::default()
    };
    let r = build_ok(&data, &out, &cfg);
    assert_eq!(r.layout, LayoutKind::Cellpose);
    assert_eq!(
        (r.counts.train, r.counts.val, r.counts.test),
        (2, 0, 1),
        "folders fix the split"
    );
    assert_eq!(r.counts.outputs, 3 * 4, "64x48 in 32px tiles: 2 x 2 each");
    let tile = image::open(out.join("train/original/img0_x32_y16.png")).expect("tile");
    assert_eq!(
        (tile.width(), tile.height(), tile.color()),
        (32, 32, image::ColorType::L16)
    );
    // The manifest records what Monitor watches in each source image, at full scale: the 16-bit
    // sources have the features of the 8-bit pictures they were made from.
    let manifest: cellops_formats::dataset::Manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).expect("manifest")).expect("json");
    for item in &manifest.items {
        let i: usize = item.id.trim_start_matches("img").parse().expect("index");
        let recorded = item.features.expect("features recorded").values();
        let expected = cellops_dataset::ops::features::image_features(&sample(i).0).values();
        for (k, (a, b)) in recorded.iter().zip(expected).enumerate() {
            assert_eq!(a.is_some(), b.is_some(), "{}: feature {k}", item.id);
            let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
            assert!((a - b).abs() < 1e-9, "{}: feature {k}: {a} vs {b}", item.id);
        }
    }
}

#[test]
fn paper_layout_with_split_folders() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("paper");
    for (i, split) in ["train", "val", "test", "train"].iter().enumerate() {
        let (img, labels) = sample(i);
        png(&data.join(split).join("original").join(format!("n{i}.png")), &img);
        png(
            &data.join(split).join("masks").join(format!("n{i}_mask.png")),
            &labels_raster(&labels),
        );
    }
    let r = build_ok(&data, &tmp.path().join("out"), &BuildConfig::default());
    assert_eq!((r.counts.train, r.counts.val, r.counts.test), (2, 1, 1));
}

#[test]
fn jpeg_and_bmp_images_are_read() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("paper");
    for (i, format, ext) in [
        (0, image::ImageFormat::Jpeg, "jpg"),
        (1, image::ImageFormat::Bmp, "bmp"),
    ] {
        let (img, labels) = sample(i);
        let cellops_dataset::Samples::U8(px) = img.samples else {
            panic!("8-bit")
        };
        let buf = image::GrayImage::from_raw(img.width, img.height, px).expect("buffer");
        let mut bytes = Vec::new();
        image::DynamicImage::ImageLuma8(buf)
            .write_to(&mut std::io::Cursor::new(&mut bytes), format)
            .expect("encode");
        write(&data.join("original").join(format!("n{i}.{ext}")), &bytes);
        png(
            &data.join("masks").join(format!("n{i}_mask.png")),
            &labels_raster(&labels),
        );
    }
    let r = build_ok(&data, &tmp.path().join("out"), &BuildConfig::default());
    assert_eq!(r.counts.images, 2);
}

#[test]
fn unrecognised_folder_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    write(&data.join("readme.txt"), b"hi");
    let err = build(&data, &tmp.path().join("out"), &BuildConfig::default(), &Quiet).expect_err("no layout");
    assert!(err.to_string().contains("cannot recognise the layout"), "{err}");
}

#[test]
fn nucleus_scale_rescales_each_image_to_the_target_and_keeps_every_object() {
    use cellops_dataset::config::NucleusScale;
    use cellops_dataset::manifest::Manifest;
    use cellops_dataset::ops::scale::median_diameter;
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("paper");
    let mut sources = Vec::new();
    for i in 0..4 {
        let (img, labels) = sample(i);
        png(&data.join("original").join(format!("n{i}.png")), &img);
        png(
            &data.join("masks").join(format!("n{i}_mask.png")),
            &labels_raster(&labels),
        );
        sources.push(labels);
    }
    let target = 8.0;
    let cfg = BuildConfig {
        scale: Some(NucleusScale { diameter_px: target }),
        ..BuildConfig::default()
    };
    let out = tmp.path().join("out");
    build_ok(&data, &out, &cfg);
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).expect("manifest")).expect("json");
    for item in &manifest.items {
        let k: usize = item.id.trim_start_matches('n').parse().expect("index");
        let source = &sources[k];
        let o = &item.outputs[0];
        let measured = median_diameter(&source.data).expect("objects");
        let factor = o.scale.expect("scale recorded");
        assert!((o.nucleus_diameter_px.expect("diameter recorded") - measured).abs() < 1e-9);
        assert!(
            (factor - target / measured).abs() < 1e-9,
            "{factor} for nuclei {measured} px wide"
        );
        // Isotropic: both sides scale by the factor; every object survives the nearest-neighbour
        // resampling of its labels.
        assert_eq!(o.size[0], (f64::from(source.width) * factor).round() as u32);
        assert_eq!(o.size[1], (f64::from(source.height) * factor).round() as u32);
        assert_eq!(o.objects, source.count_objects(), "{}", item.id);
        let mask = cellops_dataset::io::decode(&std::fs::read(out.join(&o.mask)).expect("mask"), u64::MAX)
            .expect("decode")
            .raster;
        let cellops_dataset::Samples::U16(labels) = mask.samples else {
            panic!("16-bit labels")
        };
        let scaled = median_diameter(&labels).expect("objects");
        assert!((scaled - target).abs() < 0.15 * target, "{}: {scaled}", item.id);
    }
}
