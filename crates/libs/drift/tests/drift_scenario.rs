//! The drift scenario on images: a reference of synthetic fluorescence images, then windows of new
//! images from the same source (no alert), brightened (alert on brightness), blurred (alert on
//! focus), H&E-looking (alert), and a window too small to judge ("not enough data").

use cellops_dataset::Raster;
use cellops_dataset::ops::features::{ImageFeatures, image_features};
use cellops_dataset::synthetic::Style;
use cellops_drift::thresholds::{Calibration, Statistic, Verdict, calibrate, judge};
use cellops_test_support::images::{box_blur, brighten};

const SIZE: u32 = 64;
const WINDOW: usize = 40;

fn images(style: Style, seed: u64, count: usize) -> Vec<Raster> {
    cellops_test_support::images::synthetic(style, seed, count, SIZE)
}

/// Each feature's values over `images`.
fn columns(images: &[Raster]) -> Vec<Vec<f64>> {
    let rows: Vec<[Option<f64>; 14]> = images.iter().map(|i| image_features(i).values()).collect();
    (0..ImageFeatures::NAMES.len())
        .map(|k| rows.iter().filter_map(|r| r[k]).collect())
        .collect()
}

/// The features a window alerts on (KS, levels calibrated on the reference for this window size);
/// features the reference does not define (colour ones, for grey images) cannot be judged.
fn alerts(reference: &[Vec<f64>], window: &[Raster]) -> Vec<&'static str> {
    let window = columns(window);
    let cal = Calibration {
        window: window[0].len(),
        chunks: 200,
        seed: 5,
    };
    ImageFeatures::NAMES
        .iter()
        .zip(reference.iter().zip(&window))
        .filter(|(_, (r, w))| !r.is_empty() && !w.is_empty())
        .filter(|(_, (r, w))| {
            let levels = calibrate(Statistic::KolmogorovSmirnov, r, &cal).expect("levels");
            judge(Statistic::KolmogorovSmirnov, r, w, levels, 30)
                .expect("judged")
                .verdict
                == Verdict::Alert
        })
        .map(|(name, _)| *name)
        .collect()
}

#[test]
fn drifted_windows_alert_on_the_features_that_moved() {
    let reference = columns(&images(Style::Fluorescence, 1, 160));
    let fresh = images(Style::Fluorescence, 2, WINDOW);
    assert_eq!(
        alerts(&reference, &fresh),
        Vec::<&str>::new(),
        "new images from the same source"
    );

    let bright: Vec<Raster> = fresh.iter().map(brighten).collect();
    let moved = alerts(&reference, &bright);
    for name in ["mean", "p99"] {
        assert!(moved.contains(&name), "brightened: {moved:?}");
    }
    let blurred: Vec<Raster> = fresh.iter().map(box_blur).collect();
    assert!(alerts(&reference, &blurred).contains(&"focus"), "blurred");
    let stained = images(Style::He, 3, WINDOW);
    assert!(!alerts(&reference, &stained).is_empty(), "H&E-looking images");

    // Five images: not enough to say anything, whatever they look like.
    let few = columns(&bright[..5]);
    let levels = Statistic::KolmogorovSmirnov.default_levels(160, 5);
    let verdict = judge(Statistic::KolmogorovSmirnov, &reference[0], &few[0], levels, 30)
        .expect("judged")
        .verdict;
    assert_eq!(verdict, Verdict::NotEnoughData { have: 5, need: 30 });
}
