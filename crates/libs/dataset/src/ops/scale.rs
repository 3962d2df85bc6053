//! Nucleus scale: the median nucleus diameter of a label image, and the isotropic factor that
//! brings it to a target, so that a model sees nuclei of one size whatever the magnification
//! (as Cellpose's `diameter`).

/// Rescaling factors are kept within `1/MAX_FACTOR ..= MAX_FACTOR` (DSB2018's nuclei, 8–60 px
/// wide, need 0.33–2.5 for 20 px).
pub const MAX_FACTOR: f64 = 4.0;

/// The median equivalent diameter (`sqrt(4·area/π)`, pixels) of the objects of a label image
/// (0 is background), or `None` without objects.
///
/// ```
/// use cellops_dataset::ops::scale::median_diameter;
/// // Objects of 4, 9 and 100 pixels: the median object has 9 pixels.
/// let mut labels = vec![0u32; 200];
/// labels[..4].fill(1);
/// labels[10..19].fill(2);
/// labels[100..200].fill(3);
/// let d = median_diameter(&labels).unwrap();
/// assert!((d - (4.0 * 9.0 / std::f64::consts::PI).sqrt()).abs() < 1e-12);
/// assert_eq!(median_diameter(&[0u32; 4]), None);
/// ```
pub fn median_diameter<L: Copy + Into<u64>>(labels: &[L]) -> Option<f64> {
    median_diameter_above(labels, 0.0)
}

/// [`median_diameter`] of the objects at least `min_diameter` wide: specks of noise in a
/// segmentation should not make its nuclei look small.
///
/// ```
/// use cellops_dataset::ops::scale::median_diameter_above;
/// // Three one-pixel specks and one 100-pixel object.
/// let mut labels = vec![0u32; 200];
/// labels[..3].copy_from_slice(&[1, 0, 2]);
/// labels[5] = 3;
/// labels[100..200].fill(4);
/// let d = median_diameter_above(&labels, 2.0).unwrap();
/// assert!((d - (400.0 / std::f64::consts::PI).sqrt()).abs() < 1e-12);
/// ```
pub fn median_diameter_above<L: Copy + Into<u64>>(labels: &[L], min_diameter: f64) -> Option<f64> {
    let mut areas: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    for &l in labels {
        let l = l.into();
        if l != 0 {
            *areas.entry(l).or_default() += 1;
        }
    }
    let min_area = std::f64::consts::PI * min_diameter * min_diameter / 4.0;
    let mut areas: Vec<u64> = areas.into_values().filter(|&a| a as f64 >= min_area).collect();
    if areas.is_empty() {
        return None;
    }
    areas.sort_unstable();
    let n = areas.len();
    let median = if n % 2 == 1 {
        areas[n / 2] as f64
    } else {
        (areas[n / 2 - 1] + areas[n / 2]) as f64 / 2.0
    };
    Some((4.0 * median / std::f64::consts::PI).sqrt())
}

/// The factor that takes nuclei of `measured` diameter to `target`, within
/// `1/MAX_FACTOR ..= MAX_FACTOR`.
///
/// ```
/// use cellops_dataset::ops::scale::factor;
/// assert_eq!(factor(24.0, 48.0), 0.5);
/// assert_eq!(factor(24.0, 0.5), 4.0);
/// ```
pub fn factor(target: f64, measured: f64) -> f64 {
    if !(measured > 0.0 && target > 0.0) {
        return 1.0;
    }
    (target / measured).clamp(1.0 / MAX_FACTOR, MAX_FACTOR)
}

/// The size of a `width` x `height` image scaled by `factor` (at least 1 pixel each way).
///
/// ```
/// assert_eq!(cellops_dataset::ops::scale::scaled_size(520, 696, 0.5), (260, 348));
/// ```
pub fn scaled_size(width: u32, height: u32, factor: f64) -> (u32, u32) {
    let s = |v: u32| ((f64::from(v) * factor).round() as u32).max(1);
    (s(width), s(height))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn scaling_a_disc_scales_its_diameter(r in 3.0f64..20.0, k in 0.5f64..2.0) {
            let disc = |radius: f64| {
                let side = (2.0 * radius + 4.0) as usize;
                let c = side as f64 / 2.0;
                (0..side * side)
                    .map(|i| {
                        let (x, y) = ((i % side) as f64 + 0.5, (i / side) as f64 + 0.5);
                        u32::from((x - c).powi(2) + (y - c).powi(2) <= radius * radius)
                    })
                    .collect::<Vec<u32>>()
            };
            let d1 = median_diameter(&disc(r)).expect("a disc");
            let d2 = median_diameter(&disc(r * k)).expect("a disc");
            // Pixelation costs about a pixel of diameter.
            prop_assert!((d2 - d1 * k).abs() < 1.5, "{d1} {d2}");
            prop_assert!((factor(d2, d1) - (d2 / d1)).abs() < 1e-12);
        }
    }
}
