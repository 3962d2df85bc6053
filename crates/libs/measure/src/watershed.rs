//! Marker-controlled watershed and the markers for splitting touching objects on a distance map.
//!
//! [`watershed`] floods an image from labelled markers in the order of a priority queue, as
//! `skimage.segmentation.watershed` does: the queue holds pixels by value, lowest first, and among
//! equal values by the order they were pushed (markers first, in raster order, then each pixel when a
//! neighbour reached it). A pixel takes the label of the neighbour that reached it first, and it is
//! labelled when it is pushed, so every pixel is claimed exactly once; plateaus are shared out in
//! breadth-first order, deterministically.
//!
//! Markers for splitting a binary mask come from its distance map (peaks are the centres of the
//! objects): [`h_maxima`] keeps the regional maxima whose dynamic (how far one must descend from the
//! peak before reaching a higher one) is at least `h`, so the small bumps of a distance map along a
//! ridge or a ragged outline do not become objects; [`peak_local_max`] keeps the pixels that are the
//! maximum of their object within a square window and at least `min_distance` (Chebyshev) apart, as
//! `skimage.feature.peak_local_max(..., min_distance, labels=...)` does.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

use cellops_dataset::ops::label::Connectivity;

/// Why a watershed cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatershedError {
    /// The image length is not a whole number of rows of the given width.
    #[error("{len} pixels do not make rows of {width}")]
    NotRectangular {
        /// Pixels in the image.
        len: usize,
        /// The row width given.
        width: usize,
    },
    /// An input does not have as many pixels as the image.
    #[error("the {what} has {len} pixels but the image {expected}")]
    SizeMismatch {
        /// Which input ("markers" or "mask").
        what: &'static str,
        /// Its length.
        len: usize,
        /// The image's length.
        expected: usize,
    },
}

/// Neighbour offsets `(dy, dx)` in raster order.
pub(crate) fn offsets(connectivity: Connectivity) -> &'static [(isize, isize)] {
    match connectivity {
        Connectivity::Four => &[(-1, 0), (0, -1), (0, 1), (1, 0)],
        Connectivity::Eight => &[(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)],
    }
}

/// Calls `f` with the index of every neighbour of pixel `i` inside the `width × height` image.
#[inline]
pub(crate) fn for_neighbours(i: usize, width: usize, height: usize, offs: &[(isize, isize)], mut f: impl FnMut(usize)) {
    let (y, x) = ((i / width) as isize, (i % width) as isize);
    for &(dy, dx) in offs {
        let (ny, nx) = (y + dy, x + dx);
        if ny >= 0 && nx >= 0 && (ny as usize) < height && (nx as usize) < width {
            f(ny as usize * width + nx as usize);
        }
    }
}

fn check(len: usize, width: usize) -> Result<usize, WatershedError> {
    match len.checked_div(width) {
        Some(h) if h * width == len => Ok(h),
        None if len == 0 => Ok(0),
        _ => Err(WatershedError::NotRectangular { len, width }),
    }
}

/// An error unless a `what` of `len` values matches the image's `expected`.
fn same_size(what: &'static str, len: usize, expected: usize) -> Result<(), WatershedError> {
    if len == expected {
        Ok(())
    } else {
        Err(WatershedError::SizeMismatch { what, len, expected })
    }
}

/// An `f64` ordered by `total_cmp`, for the priority queue.
#[derive(Debug, Clone, Copy)]
struct Key(f64);

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0) == Ordering::Equal
    }
}
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Floods `image` (rows of `width`) from the non-zero `markers`, lowest values first, and returns a
/// label for every pixel reached: the label of the marker whose flood got there first. Pixels outside
/// `mask` (where it is `false`) are neither labelled nor crossed, and markers there are ignored;
/// pixels the flood cannot reach keep 0. Ties are broken by push order (see the module docs), so the
/// result is deterministic.
///
/// ```
/// use cellops_dataset::ops::label::Connectivity;
/// use cellops_measure::watershed::watershed;
/// // A flat row with a marker at each end: shared out in the middle.
/// let image = [0.0; 6];
/// let markers = [1, 0, 0, 0, 0, 2];
/// let labels = watershed(&image, &markers, 6, None, Connectivity::Four).unwrap();
/// assert_eq!(labels, vec![1, 1, 1, 2, 2, 2]);
/// ```
pub fn watershed(
    image: &[f64],
    markers: &[u32],
    width: usize,
    mask: Option<&[bool]>,
    connectivity: Connectivity,
) -> Result<Vec<u32>, WatershedError> {
    let n = image.len();
    let height = check(n, width)?;
    same_size("markers", markers.len(), n)?;
    if let Some(m) = mask {
        same_size("mask", m.len(), n)?;
    }
    let inside = |i: usize| mask.is_none_or(|m| m[i]);
    let offs = offsets(connectivity);
    let mut labels = vec![0u32; n];
    let mut heap: BinaryHeap<Reverse<(Key, u64, usize)>> = BinaryHeap::new();
    let mut age = 0u64;
    for (i, &m) in markers.iter().enumerate() {
        if m != 0 && inside(i) {
            labels[i] = m;
            heap.push(Reverse((Key(image[i]), age, i)));
            age += 1;
        }
    }
    while let Some(Reverse((_, _, i))) = heap.pop() {
        let l = labels[i];
        for_neighbours(i, width, height, offs, |j| {
            if labels[j] == 0 && inside(j) {
                labels[j] = l;
                heap.push(Reverse((Key(image[j]), age, j)));
                age += 1;
            }
        });
    }
    Ok(labels)
}

/// Numbers the given seed pixels' plateaus (the connected pixels of exactly the seed's value within
/// `mask`) 1, 2, … in the order of the seeds.
fn plateau_markers(
    values: &[f64],
    mask: &[bool],
    width: usize,
    height: usize,
    seeds: &[usize],
    offs: &[(isize, isize)],
) -> Vec<u32> {
    let mut markers = vec![0u32; values.len()];
    let mut queue = VecDeque::new();
    let mut next = 0u32;
    for &s in seeds {
        if markers[s] != 0 {
            continue;
        }
        next += 1;
        let v = values[s];
        markers[s] = next;
        queue.push_back(s);
        while let Some(i) = queue.pop_front() {
            for_neighbours(i, width, height, offs, |j| {
                if mask[j] && markers[j] == 0 && values[j] == v {
                    markers[j] = next;
                    queue.push_back(j);
                }
            });
        }
    }
    markers
}

/// Markers at the regional maxima of `values` (within `mask`) whose dynamic is at least `h`: the
/// pixels of each such maximum's plateau get one label, numbered 1, 2, … in raster order of the
/// plateaus' first pixels. The dynamic of a maximum is its height above the highest level at which
/// it joins a region holding a higher maximum (for equal heights, the one met earlier in raster
/// order counts as higher); the highest maximum of each connected part of the mask has infinite
/// dynamic and always gets a marker, so every part of the mask has at least one. Same-height
/// maxima and regions are connected by `connectivity`. Computed with a union–find over the pixels
/// in decreasing order of value (a max-tree), O(n log n). `h` ≤ 0 keeps every regional maximum.
///
/// ```
/// use cellops_dataset::ops::label::Connectivity;
/// use cellops_measure::watershed::h_maxima;
/// let values = [1.0, 3.0, 2.5, 2.8, 1.0];
/// let mask = [true; 5];
/// // The peak 2.8 descends only 0.3 before reaching the higher 3.0.
/// assert_eq!(h_maxima(&values, &mask, 5, 0.2, Connectivity::Four).unwrap(), vec![0, 1, 0, 2, 0]);
/// assert_eq!(h_maxima(&values, &mask, 5, 0.5, Connectivity::Four).unwrap(), vec![0, 1, 0, 0, 0]);
/// ```
pub fn h_maxima(
    values: &[f64],
    mask: &[bool],
    width: usize,
    h: f64,
    connectivity: Connectivity,
) -> Result<Vec<u32>, WatershedError> {
    let n = values.len();
    let height = check(n, width)?;
    same_size("mask", mask.len(), n)?;
    let offs = offsets(connectivity);
    let mut order: Vec<usize> = (0..n).filter(|&i| mask[i]).collect();
    // Decreasing value, raster order among equals (sort is stable).
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    const UNSEEN: usize = usize::MAX;
    let mut parent = vec![UNSEEN; n];
    // Per root: the pixel where its highest maximum was first met (its peak value is values[seed]).
    let mut seed = vec![0usize; n];
    // Per seed pixel: the dynamic of the maximum it started (NaN: not a maximum's seed).
    let mut dynamic = vec![f64::NAN; n];
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for &p in &order {
        parent[p] = p;
        seed[p] = p;
        dynamic[p] = f64::INFINITY;
        let level = values[p];
        for_neighbours(p, width, height, offs, |q| {
            if parent[q] == UNSEEN {
                return;
            }
            let (a, b) = (find(&mut parent, q), find(&mut parent, p));
            if a == b {
                return;
            }
            let (sa, sb) = (seed[a], seed[b]);
            // The higher maximum survives; equal heights: the seed met first (earlier in `order`).
            let a_wins = match values[sa].total_cmp(&values[sb]) {
                Ordering::Greater => true,
                Ordering::Less => false,
                Ordering::Equal => sa < sb,
            };
            let (winner, loser) = if a_wins { (a, b) } else { (b, a) };
            dynamic[seed[loser]] = values[seed[loser]] - level;
            parent[loser] = winner;
        });
    }
    let seeds: Vec<usize> = (0..n)
        .filter(|&i| mask[i] && dynamic[i] > 0.0 && dynamic[i] >= h)
        .collect();
    Ok(plateau_markers(values, mask, width, height, &seeds, offs))
}

/// Markers at the local maxima of `values` like `skimage.feature.peak_local_max(values,
/// min_distance=d, labels=objects, exclude_border=False)` with `objects` the connected parts of
/// `mask`: a pixel is a candidate if its value is positive and no pixel of the same part within the
/// `(2d + 1)²` square around it is higher; candidates are taken highest first (raster order among
/// equals) and each one accepted removes the remaining candidates closer than `d` to it (Chebyshev
/// distance). Accepted peaks are labelled 1, 2, … in that order (one pixel each). `d` = 0 is taken
/// as 1. A part whose values are all equal gets no peak (as in scikit-image).
///
/// ```
/// use cellops_dataset::ops::label::Connectivity;
/// use cellops_measure::watershed::peak_local_max;
/// let values = [1.0, 3.0, 2.5, 2.8, 1.0];
/// let mask = [true; 5];
/// assert_eq!(peak_local_max(&values, &mask, 5, 1, Connectivity::Four).unwrap(), vec![0, 1, 0, 2, 0]);
/// assert_eq!(peak_local_max(&values, &mask, 5, 2, Connectivity::Four).unwrap(), vec![0, 1, 0, 0, 0]);
/// ```
pub fn peak_local_max(
    values: &[f64],
    mask: &[bool],
    width: usize,
    min_distance: usize,
    connectivity: Connectivity,
) -> Result<Vec<u32>, WatershedError> {
    let n = values.len();
    let height = check(n, width)?;
    same_size("mask", mask.len(), n)?;
    let d = min_distance.max(1);
    let (parts, count) = cellops_dataset::ops::label::connected_components(mask, width, connectivity);
    // Parts whose values are all equal have no peak.
    let mut lo = vec![f64::INFINITY; count + 1];
    let mut hi = vec![f64::NEG_INFINITY; count + 1];
    for (&p, &v) in parts.iter().zip(values) {
        lo[p as usize] = lo[p as usize].min(v);
        hi[p as usize] = hi[p as usize].max(v);
    }
    let mut candidates: Vec<usize> = Vec::new();
    for i in 0..n {
        let part = parts[i];
        if part == 0 || values[i] <= 0.0 || lo[part as usize] == hi[part as usize] {
            continue;
        }
        let (y, x) = (i / width, i % width);
        let v = values[i];
        let higher = (y.saturating_sub(d)..(y + d + 1).min(height)).any(|yy| {
            (x.saturating_sub(d)..(x + d + 1).min(width)).any(|xx| {
                let j = yy * width + xx;
                parts[j] == part && values[j] > v
            })
        });
        if !higher {
            candidates.push(i);
        }
    }
    candidates.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let mut markers = vec![0u32; n];
    let mut rejected = vec![false; candidates.len()];
    let mut next = 0u32;
    for k in 0..candidates.len() {
        if rejected[k] {
            continue;
        }
        let c = candidates[k];
        next += 1;
        markers[c] = next;
        let (cy, cx) = (c / width, c % width);
        for (r, &o) in rejected.iter_mut().zip(&candidates).skip(k + 1) {
            if (o / width).abs_diff(cy).max((o % width).abs_diff(cx)) < d {
                *r = true;
            }
        }
    }
    Ok(markers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn floods_lowest_first() {
        // A basin at each end, a ridge at index 3: each basin keeps its side.
        let image = [0.0, 1.0, 2.0, 9.0, 1.0, 0.0, 5.0];
        let markers = [1, 0, 0, 0, 0, 2, 0];
        let labels = watershed(&image, &markers, 7, None, Connectivity::Four).expect("valid input");
        // The ridge (9.0) goes to the first flood to reach it: 2 pops its 1.0 (index 4) before 1
        // pops its 2.0 (index 2).
        assert_eq!(labels, vec![1, 1, 1, 2, 2, 2, 2]);
    }

    #[test]
    fn mask_stops_the_flood() {
        let image = [0.0; 5];
        let markers = [1, 0, 0, 0, 2];
        let mask = [true, true, false, true, true];
        let labels = watershed(&image, &markers, 5, Some(&mask), Connectivity::Four).expect("valid input");
        assert_eq!(labels, vec![1, 1, 0, 2, 2]);
    }

    #[test]
    fn plateau_ties_are_deterministic() {
        // A 4×4 flat square, markers in opposite corners: the raster-first marker wins the
        // anti-diagonal ties it reaches first.
        let image = [0.0; 16];
        let mut markers = [0u32; 16];
        markers[0] = 1;
        markers[15] = 2;
        let a = watershed(&image, &markers, 4, None, Connectivity::Four).expect("valid input");
        let b = watershed(&image, &markers, 4, None, Connectivity::Four).expect("valid input");
        assert_eq!(a, b);
        #[rustfmt::skip]
        let expected = vec![
            1, 1, 1, 1,
            1, 1, 1, 2,
            1, 1, 2, 2,
            1, 2, 2, 2,
        ];
        assert_eq!(a, expected);
    }

    #[test]
    fn mismatched_inputs_are_errors() {
        assert_eq!(
            watershed(&[0.0; 6], &[0; 6], 4, None, Connectivity::Four),
            Err(WatershedError::NotRectangular { len: 6, width: 4 })
        );
        assert!(matches!(
            watershed(&[0.0; 6], &[0; 5], 3, None, Connectivity::Four),
            Err(WatershedError::SizeMismatch { what: "markers", .. })
        ));
    }

    #[test]
    fn a_plateau_maximum_is_one_marker() {
        let values = [0.0, 2.0, 2.0, 2.0, 0.0, 1.0, 0.0];
        let mask = [true; 7];
        let m = h_maxima(&values, &mask, 7, 0.5, Connectivity::Four).expect("valid input");
        assert_eq!(m, vec![0, 1, 1, 1, 0, 2, 0]);
        // Separate parts of the mask each keep their highest maximum, however low.
        let mask = [true, true, true, true, false, true, true];
        let m = h_maxima(&values, &mask, 7, 5.0, Connectivity::Four).expect("valid input");
        assert_eq!(m, vec![0, 1, 1, 1, 0, 2, 0]);
    }

    proptest! {
        #[test]
        fn the_flood_covers_what_markers_can_reach(
            image in proptest::collection::vec(0.0f64..4.0, 48),
            seeds in proptest::collection::vec(0u32..4, 48),
            mask in proptest::collection::vec(proptest::bool::weighted(0.8), 48),
        ) {
            let markers: Vec<u32> = seeds.iter().map(|&s| if s == 3 { 1 } else { 0 }).collect();
            let labels = watershed(&image, &markers, 8, Some(&mask), Connectivity::Eight).expect("valid input");
            let reach = cellops_dataset::ops::label::connected_components(&mask, 8, Connectivity::Eight).0;
            for i in 0..48 {
                let reachable = (0..48).any(|j| markers[j] != 0 && mask[j] && reach[j] == reach[i]);
                prop_assert_eq!(labels[i] != 0, mask[i] && reachable);
            }
        }

        #[test]
        fn h_maxima_markers_sit_on_maxima(values in proptest::collection::vec(0u8..5, 42), h in 0.0f64..3.0) {
            let values: Vec<f64> = values.into_iter().map(f64::from).collect();
            let mask = vec![true; 42];
            let m = h_maxima(&values, &mask, 7, h, Connectivity::Eight).expect("valid input");
            prop_assert!(m.iter().any(|&l| l != 0));
            for i in 0..42 {
                if m[i] != 0 {
                    for_neighbours(i, 7, 6, offsets(Connectivity::Eight), |j| {
                        assert!(values[j] <= values[i]);
                    });
                }
            }
        }
    }
}
