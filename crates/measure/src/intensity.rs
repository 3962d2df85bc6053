//! Intensity measurements of labelled objects, per channel: mean, standard deviation (population,
//! as NumPy's `std`), minimum, maximum, integrated (sum) and median (the mean of the two middle
//! values for an even count, as NumPy's `median`). Mean, std, min and max are scikit-image's
//! `intensity_mean`, `intensity_std`, `intensity_min`, `intensity_max`; integrated and median are
//! CellProfiler's `IntegratedIntensity` and `MedianIntensity`.

use std::collections::HashMap;

use serde::Serialize;

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
    let mut values: HashMap<u64, Vec<Vec<f64>>> = HashMap::new();
    for (i, &l) in labels.iter().enumerate() {
        let l: u64 = l.into();
        if l == 0 {
            continue;
        }
        let v = values.entry(l).or_insert_with(|| vec![Vec::new(); channels]);
        for (c, list) in v.iter_mut().enumerate() {
            list.push(samples[i * channels + c].into());
        }
    }
    let mut out: Vec<IntensityProps> = values
        .into_iter()
        .map(|(label, per_channel)| {
            let mut p = IntensityProps {
                label,
                mean: Vec::new(),
                std: Vec::new(),
                min: Vec::new(),
                max: Vec::new(),
                integrated: Vec::new(),
                median: Vec::new(),
            };
            for mut v in per_channel {
                let n = v.len() as f64;
                let sum: f64 = v.iter().sum();
                let mean = sum / n;
                let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
                v.sort_by(f64::total_cmp);
                let mid = v.len() / 2;
                let median = if v.len() % 2 == 1 {
                    v[mid]
                } else {
                    (v[mid - 1] + v[mid]) / 2.0
                };
                p.mean.push(mean);
                p.std.push(var.sqrt());
                p.min.push(v[0]);
                p.max.push(v[v.len() - 1]);
                p.integrated.push(sum);
                p.median.push(median);
            }
            p
        })
        .collect();
    out.sort_by_key(|p| p.label);
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
