//! From a network's probability maps to separated nuclei (instance labels).
//!
//! Seeds are the foreground pixels that are not boundary (`foreground > threshold` and, with a
//! boundary channel, `boundary ≤ threshold`), labelled by 8-connectivity; seeds smaller than
//! `min_seed_area` are dropped. Each seed then grows through the foreground in breadth-first order
//! (4-connectivity), so a boundary pixel goes to the seed it is nearest to along the foreground — a
//! marker-controlled flood. Foreground that no seed reaches becomes objects of its own. Without a
//! boundary channel this is plain connected-component labelling of the foreground.

use std::collections::VecDeque;

use cellops_dataset::ops::label::{Connectivity, connected_components};

/// How probability maps become objects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Separation {
    /// Foreground (and boundary) probability threshold.
    pub threshold: f32,
    /// Seeds with fewer pixels than this are dropped (their pixels join a neighbour).
    pub min_seed_area: usize,
}

impl Default for Separation {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            min_seed_area: 4,
        }
    }
}

/// Instance labels (0 background, 1..=N objects, numbered in raster order of their seeds) from a
/// foreground probability map and an optional boundary probability map, both `width`-wide.
///
/// ```
/// use cellops_measure::instances::{Separation, separate};
/// // Two blobs touching in the middle column, which the boundary channel marks.
/// let fg = [1.0f32; 7];
/// let boundary = [0.0f32, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
/// let sep = Separation { threshold: 0.5, min_seed_area: 1 };
/// let labels = separate(&fg, Some(&boundary), 7, sep);
/// assert_eq!(labels, vec![1, 1, 1, 1, 2, 2, 2]);
/// ```
pub fn separate(foreground: &[f32], boundary: Option<&[f32]>, width: usize, sep: Separation) -> Vec<u32> {
    let n = foreground.len();
    let mask: Vec<bool> = foreground.iter().map(|&p| p > sep.threshold).collect();
    let seeds: Vec<bool> = match boundary {
        Some(b) => mask.iter().zip(b).map(|(&m, &bp)| m && bp <= sep.threshold).collect(),
        None => mask.clone(),
    };
    let (seed_labels, count) = connected_components(&seeds, width, Connectivity::Eight);
    // Drop small seeds, renumber the rest 1..=K in raster order.
    let mut area = vec![0usize; count + 1];
    for &l in &seed_labels {
        area[l as usize] += 1;
    }
    let mut renumber = vec![0u32; count + 1];
    let mut next = 0u32;
    let mut labels = vec![0u32; n];
    for (i, &l) in seed_labels.iter().enumerate() {
        if l == 0 || area[l as usize] < sep.min_seed_area {
            continue;
        }
        if renumber[l as usize] == 0 {
            next += 1;
            renumber[l as usize] = next;
        }
        labels[i] = renumber[l as usize];
    }
    flood(&mut labels, &mask, width);
    // Foreground no seed reached: objects of its own.
    let rest: Vec<bool> = mask.iter().zip(&labels).map(|(&m, &l)| m && l == 0).collect();
    if rest.iter().any(|&r| r) {
        let (extra, _) = connected_components(&rest, width, Connectivity::Eight);
        for (l, e) in labels.iter_mut().zip(extra) {
            if e != 0 {
                *l = next + e;
            }
        }
    }
    labels
}

/// Grows the labels through `mask` in breadth-first order (4-connectivity).
fn flood(labels: &mut [u32], mask: &[bool], width: usize) {
    let n = labels.len();
    let height = n.checked_div(width).unwrap_or(0);
    let mut queue: VecDeque<usize> = (0..n).filter(|&i| labels[i] != 0).collect();
    while let Some(i) = queue.pop_front() {
        let (x, y) = (i % width, i / width);
        let l = labels[i];
        let mut visit = |j: usize| {
            if mask[j] && labels[j] == 0 {
                labels[j] = l;
                queue.push_back(j);
            }
        };
        if x > 0 {
            visit(i - 1);
        }
        if x + 1 < width {
            visit(i + 1);
        }
        if y > 0 {
            visit(i - width);
        }
        if y + 1 < height {
            visit(i + width);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn without_a_boundary_it_labels_components() {
        let fg = [0.9f32, 0.9, 0.1, 0.9, 0.1, 0.1];
        let labels = separate(&fg, None, 3, Separation::default());
        // 0.9 at (0,0), (1,0), (0,1): one 8-connected object; min_seed_area 4 drops the seed, and
        // the unreached foreground becomes an object anyway.
        assert_eq!(labels, vec![1, 1, 0, 1, 0, 0]);
    }

    proptest! {
        #[test]
        fn labels_cover_exactly_the_foreground(
            fg in proptest::collection::vec(0.0f32..1.0, 48),
            b in proptest::collection::vec(0.0f32..1.0, 48),
        ) {
            let labels = separate(&fg, Some(&b), 8, Separation::default());
            for (l, p) in labels.iter().zip(&fg) {
                prop_assert_eq!(*l != 0, *p > 0.5);
            }
        }
    }
}
