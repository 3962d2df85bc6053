//! Intensity measurements of labelled objects, per channel: mean, standard deviation (population,
//! as NumPy's `std`), minimum, maximum, integrated (sum) and median (the mean of the two middle
//! values for an even count, as NumPy's `median`). Mean, std, min and max are scikit-image's
//! `intensity_mean`, `intensity_std`, `intensity_min`, `intensity_max`; integrated and median are
//! CellProfiler's `IntegratedIntensity` and `MedianIntensity`.

use serde::Serialize;

use crate::shape::Slots;

/// One object's intensities, one value per channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntensityProps {
    /// The object's label.
    pub label: u64,
    /// Mean.
    pub mean: Vec<f64>,
    /// Population standard deviation.
    pub std: Vec<f64>,
    /// Minimum.
    pub min: Vec<f64>,
    /// Maximum.
    pub max: Vec<f64>,
    /// Sum.
    pub integrated: Vec<f64>,
    /// Median.
    pub median: Vec<f64>,
}

/// Measures the intensities of every object of `labels` in an interleaved image of `channels`
/// channels (`samples.len() == labels.len() * channels`), sorted by label.
///
/// ```
/// use cellops_measure::intensity::intensities;
/// let labels = [1u8, 1, 0, 1];
/// let grey = [10u8, 20, 99, 60];
/// let p = &intensities(&labels, &grey, 1)[0];
/// assert_eq!((p.mean[0], p.min[0], p.max[0], p.integrated[0], p.median[0]), (30.0, 10.0, 60.0, 90.0, 20.0));
/// ```
pub fn intensities<L: Copy + Into<u64>, S: Copy + Into<f64>>(
    labels: &[L],
    samples: &[S],
    channels: usize,
) -> Vec<IntensityProps> {
    assert_eq!(
        samples.len(),
        labels.len() * channels,
        "samples must be labels × channels"
    );
    // Counting sort of the samples by object, in raster order within each object (so that sums
    // run in the same order as a per-object scan): first count, then place.
    let mut slots = Slots::new(labels.len());
    let mut objects: Vec<(u64, usize)> = Vec::new();
    for &l in labels {
        let l: u64 = l.into();
        if l == 0 {
            continue;
        }
        let (s, new) = slots.slot(l, objects.len() as u32);
        if new {
            objects.push((l, 0));
        }
        objects[s as usize].1 += 1;
    }
    // Object k's values: `values[start[k] * channels..]`, channel by channel, `count` each.
    let mut start = Vec::with_capacity(objects.len());
    let mut total = 0;
    for &(_, count) in &objects {
        start.push(total);
        total += count;
    }
    let mut values = vec![0f64; total * channels];
    let mut filled = vec![0usize; objects.len()];
    for (i, &l) in labels.iter().enumerate() {
        let l: u64 = l.into();
        if l == 0 {
            continue;
        }
        let s = slots.slot(l, u32::MAX).0 as usize;
        let (count, k) = (objects[s].1, filled[s]);
        let base = start[s] * channels + k;
        for (c, &v) in samples[i * channels..(i + 1) * channels].iter().enumerate() {
            values[base + c * count] = v.into();
        }
        filled[s] = k + 1;
    }
    let mut out: Vec<IntensityProps> = objects
        .iter()
        .zip(&start)
        .map(|(&(label, count), &first)| {
            let mut p = IntensityProps {
                label,
                mean: Vec::with_capacity(channels),
                std: Vec::with_capacity(channels),
                min: Vec::with_capacity(channels),
                max: Vec::with_capacity(channels),
                integrated: Vec::with_capacity(channels),
                median: Vec::with_capacity(channels),
            };
            let mine = &mut values[first * channels..(first + count) * channels];
            for v in mine.chunks_exact_mut(count) {
                let n = count as f64;
                let sum: f64 = v.iter().sum();
                let mean = sum / n;
                let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
                // Extremes in the total order of `f64::total_cmp` (what sorting would give).
                let (min, max) = v.iter().fold((v[0], v[0]), |(lo, hi), &x| {
                    (
                        if x.total_cmp(&lo).is_lt() { x } else { lo },
                        if x.total_cmp(&hi).is_gt() { x } else { hi },
                    )
                });
                let mid = count / 2;
                let (left, &mut upper, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
                let median = if count % 2 == 1 {
                    upper
                } else {
                    // The largest of the lower half (non-empty: count is even and at least 2).
                    let lower = left
                        .iter()
                        .copied()
                        .fold(left[0], |hi, x| if x.total_cmp(&hi).is_gt() { x } else { hi });
                    (lower + upper) / 2.0
                };
                p.mean.push(mean);
                p.std.push(var.sqrt());
                p.min.push(min);
                p.max.push(max);
                p.integrated.push(sum);
                p.median.push(median);
            }
            p
        })
        .collect();
    out.sort_unstable_by_key(|p| p.label);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_measured_separately() {
        // Two pixels of object 7 in an RGB image.
        let labels = [7u16, 0, 7];
        let rgb = [1u8, 2, 3, 50, 50, 50, 3, 4, 5];
        let p = &intensities(&labels, &rgb, 3)[0];
        assert_eq!(p.label, 7);
        assert_eq!(p.mean, vec![2.0, 3.0, 4.0]);
        assert_eq!(p.std, vec![1.0, 1.0, 1.0]);
        assert_eq!(p.median, vec![2.0, 3.0, 4.0]);
        assert_eq!(p.integrated, vec![4.0, 6.0, 8.0]);
    }
}
