//! Connected-component labelling and label bookkeeping.

pub use cellops_formats::Connectivity;

/// The runs (maximal horizontal stretches of foreground) of every row, in raster order.
struct Runs {
    /// `(start, end)` columns, `end` exclusive.
    spans: Vec<(u32, u32)>,
    /// Row `r`'s runs are `spans[row_start[r]..row_start[r + 1]]`.
    row_start: Vec<usize>,
}

/// The index of the first non-zero byte of `row` at or after `from` (`row.len()` if none). Skips
/// eight bytes at a time through background.
fn next_set(row: &[u8], mut from: usize) -> usize {
    while from + 8 <= row.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&row[from..from + 8]);
        let w = u64::from_le_bytes(word);
        if w != 0 {
            return from + (w.trailing_zeros() / 8) as usize;
        }
        from += 8;
    }
    row[from..].iter().position(|&b| b != 0).map_or(row.len(), |p| from + p)
}

/// The index of the first zero byte of `row` at or after `from` (`row.len()` if none), for rows of
/// 0/1 bytes. Skips eight bytes at a time through foreground.
fn next_clear(row: &[u8], mut from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    while from + 8 <= row.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&row[from..from + 8]);
        // Bytes are 0 or 1: flipping bit 0 marks the zeros.
        let w = u64::from_le_bytes(word) ^ ONES;
        if w != 0 {
            return from + (w.trailing_zeros() / 8) as usize;
        }
        from += 8;
    }
    row[from..].iter().position(|&b| b == 0).map_or(row.len(), |p| from + p)
}

fn runs(foreground: &[bool], width: usize) -> Runs {
    let bytes: &[u8] = bytemuck::cast_slice(foreground);
    let height = foreground.len() / width;
    let mut spans = Vec::new();
    let mut row_start = Vec::with_capacity(height + 1);
    for row in bytes.chunks_exact(width) {
        row_start.push(spans.len());
        let mut x = next_set(row, 0);
        while x < width {
            let end = next_clear(row, x);
            spans.push((x as u32, end as u32));
            x = if end < width { next_set(row, end) } else { width };
        }
    }
    row_start.push(spans.len());
    Runs { spans, row_start }
}

/// Links the runs into components: `parent[i] <= i` for every run, and the runs whose parent is
/// themselves are the first run (in raster order) of each component.
fn link(runs: &Runs, conn: Connectivity) -> Vec<u32> {
    // Overlap of a run [s, e) with a run [ps, pe) of the row above: columns touch edge to edge for
    // 4-connectivity (ps < e and pe > s), or also corner to corner for 8 (ps <= e and pe >= s).
    let reach = u32::from(conn == Connectivity::Eight);
    let mut parent: Vec<u32> = (0..runs.spans.len() as u32).collect();
    for r in 1..runs.row_start.len().saturating_sub(1) {
        let (above, here) = (
            runs.row_start[r - 1]..runs.row_start[r],
            runs.row_start[r]..runs.row_start[r + 1],
        );
        let mut j = above.start;
        for i in here {
            let (s, e) = runs.spans[i];
            while j < above.end && runs.spans[j].1 + reach <= s {
                j += 1;
            }
            let mut k = j;
            let mut root = i as u32;
            while k < above.end && runs.spans[k].0 < e + reach {
                let other = find(&mut parent, k as u32);
                if root == i as u32 {
                    root = other;
                } else if other != root {
                    // Keep the smaller index as the root: it is the component's first run.
                    let (lo, hi) = if other < root { (other, root) } else { (root, other) };
                    parent[hi as usize] = lo;
                    root = lo;
                }
                k += 1;
            }
            parent[i] = root;
        }
    }
    parent
}

fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        let grandparent = parent[parent[i as usize] as usize];
        parent[i as usize] = grandparent;
        i = grandparent;
    }
    i
}

/// Final labels per run, 1..=N in raster order of each component's first run (roots precede the
/// rest of their component, so one forward pass resolves every run).
fn resolve(parent: &mut [u32]) -> usize {
    let mut count = 0u32;
    for i in 0..parent.len() {
        let p = parent[i] as usize;
        if p == i {
            count += 1;
            parent[i] = count;
        } else {
            // `p < i`: already resolved to its final label.
            parent[i] = parent[p];
        }
    }
    count as usize
}

/// Labels the connected components of the pixels where `foreground` is true, numbering them 1, 2, …
/// in raster order of their first pixel. Returns the labels (as `u32`) and the number of objects.
///
/// Run-based two-pass labelling: each row is cut into runs of foreground (skipping eight pixels at a
/// time through uniform stretches), runs that touch a run of the row above are joined in a
/// union-find over runs (the smaller index is kept as the root, so the root is the component's first
/// run), one forward pass numbers the roots, and the runs are painted. Work is proportional to
/// the pixels read plus the number of runs, not the number of foreground pixels.
///
/// ```
/// use cellops_dataset::ops::label::{connected_components, Connectivity};
/// let fg = [true, false, true,
///           false, true, false];
/// assert_eq!(connected_components(&fg, 3, Connectivity::Eight).1, 1);
/// assert_eq!(connected_components(&fg, 3, Connectivity::Four).1, 3);
/// ```
pub fn connected_components(foreground: &[bool], width: usize, conn: Connectivity) -> (Vec<u32>, usize) {
    let mut labels = vec![0u32; foreground.len()];
    if width == 0 {
        return (labels, 0);
    }
    let runs = runs(foreground, width);
    let mut parent = link(&runs, conn);
    let count = resolve(&mut parent);
    for (r, row) in labels.chunks_exact_mut(width).enumerate() {
        let here = runs.row_start[r]..runs.row_start[r + 1];
        for (&(s, e), &l) in runs.spans[here.clone()].iter().zip(&parent[here]) {
            row[s as usize..e as usize].fill(l);
        }
    }
    (labels, count)
}

/// Area, bounding box and centroid of one connected component (OpenCV's
/// `connectedComponentsWithStats` figures).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ComponentStats {
    /// Pixels.
    pub area: u64,
    /// `[min_row, min_col, max_row, max_col]`, max exclusive.
    pub bbox: [usize; 4],
    /// `[row, col]`: the mean of the pixel coordinates.
    pub centroid: [f64; 2],
}

/// [`connected_components`] plus each component's [`ComponentStats`] (index `k` is label `k + 1`),
/// computed from the runs rather than the pixels.
///
/// ```
/// use cellops_dataset::ops::label::{connected_components_with_stats, Connectivity};
/// let fg = [true, true, false,
///           false, false, true];
/// let (_, stats) = connected_components_with_stats(&fg, 3, Connectivity::Four);
/// assert_eq!((stats[0].area, stats[0].bbox, stats[0].centroid), (2, [0, 0, 1, 2], [0.0, 0.5]));
/// assert_eq!(stats[1].bbox, [1, 2, 2, 3]);
/// ```
pub fn connected_components_with_stats(
    foreground: &[bool],
    width: usize,
    conn: Connectivity,
) -> (Vec<u32>, Vec<ComponentStats>) {
    let mut labels = vec![0u32; foreground.len()];
    if width == 0 {
        return (labels, Vec::new());
    }
    let runs = runs(foreground, width);
    let mut parent = link(&runs, conn);
    let count = resolve(&mut parent);
    // Exact integer sums: area, Σrow, Σcol.
    let mut sums = vec![(0u64, 0u64, 0u64); count];
    let mut stats = vec![
        ComponentStats {
            area: 0,
            bbox: [usize::MAX, usize::MAX, 0, 0],
            centroid: [0.0; 2],
        };
        count
    ];
    for (r, row) in labels.chunks_exact_mut(width).enumerate() {
        let here = runs.row_start[r]..runs.row_start[r + 1];
        for (&(s, e), &l) in runs.spans[here.clone()].iter().zip(&parent[here]) {
            row[s as usize..e as usize].fill(l);
            let k = l as usize - 1;
            let (s, e) = (u64::from(s), u64::from(e));
            let len = e - s;
            let sum = &mut sums[k];
            sum.0 += len;
            sum.1 += r as u64 * len;
            // Σ_{c=s}^{e-1} c = (e(e-1) - s(s-1)) / 2.
            sum.2 += (e * (e - 1) - s * s.saturating_sub(1)) / 2;
            let b = &mut stats[k].bbox;
            *b = [b[0].min(r), b[1].min(s as usize), b[2].max(r + 1), b[3].max(e as usize)];
        }
    }
    for (st, &(area, sr, sc)) in stats.iter_mut().zip(&sums) {
        st.area = area;
        st.centroid = [sr as f64 / area as f64, sc as f64 / area as f64];
    }
    (labels, stats)
}

/// Renumbers labels to 1..=N in raster order of first appearance, keeping 0 as background; returns N.
///
/// ```
/// let mut m = vec![0u16, 40, 40, 7, 0, 7];
/// assert_eq!(cellops_dataset::ops::label::relabel_sequential(&mut m), 2);
/// assert_eq!(m, vec![0, 1, 1, 2, 0, 2]);
/// ```
pub fn relabel_sequential(labels: &mut [u16]) -> usize {
    let mut map = vec![0u16; 65536];
    let mut next = 0u16;
    for l in labels.iter_mut() {
        if *l == 0 {
            continue;
        }
        let m = &mut map[*l as usize];
        if *m == 0 {
            next += 1;
            *m = next;
        }
        *l = *m;
    }
    next as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn u_shape_merges() {
        #[rustfmt::skip]
        let fg = [
            true, false, true,
            true, false, true,
            true, true,  true,
        ];
        let (l, n) = connected_components(&fg, 3, Connectivity::Four);
        assert_eq!(n, 1);
        assert!(l.iter().zip(&fg).all(|(&l, &f)| (l == 1) == f));
    }

    /// Reference: breadth-first flood fill from each unlabelled foreground pixel in raster order.
    fn flood_fill(fg: &[bool], width: usize, conn: Connectivity) -> (Vec<u32>, usize) {
        let height = fg.len() / width;
        let mut labels = vec![0u32; fg.len()];
        let mut n = 0;
        for start in 0..fg.len() {
            if !fg[start] || labels[start] != 0 {
                continue;
            }
            n += 1;
            labels[start] = n;
            let mut queue = std::collections::VecDeque::from([start]);
            while let Some(i) = queue.pop_front() {
                let (r, c) = ((i / width) as i64, (i % width) as i64);
                for (dr, dc) in [
                    (-1i64, -1i64),
                    (-1, 0),
                    (-1, 1),
                    (0, -1),
                    (0, 1),
                    (1, -1),
                    (1, 0),
                    (1, 1),
                ] {
                    if conn == Connectivity::Four && dr != 0 && dc != 0 {
                        continue;
                    }
                    let (nr, nc) = (r + dr, c + dc);
                    if nr < 0 || nc < 0 || nr >= height as i64 || nc >= width as i64 {
                        continue;
                    }
                    let j = nr as usize * width + nc as usize;
                    if fg[j] && labels[j] == 0 {
                        labels[j] = n;
                        queue.push_back(j);
                    }
                }
            }
        }
        (labels, n as usize)
    }

    #[test]
    fn stats_are_exact() {
        #[rustfmt::skip]
        let fg = [
            false, true,  true,  false, false, false, false, false, false, true,
            true,  true,  false, false, true,  true,  true,  true,  true,  true,
        ];
        let (labels, stats) = connected_components_with_stats(&fg, 10, Connectivity::Eight);
        assert_eq!(labels, connected_components(&fg, 10, Connectivity::Eight).0);
        assert_eq!(stats.len(), 2);
        assert_eq!((stats[0].area, stats[0].bbox), (4, [0, 0, 2, 3]));
        assert_eq!(stats[0].centroid, [0.5, 1.0]);
        assert_eq!((stats[1].area, stats[1].bbox), (7, [0, 4, 2, 10]));
        assert_eq!(stats[1].centroid, [6.0 / 7.0, 48.0 / 7.0]);
    }

    proptest! {
        #[test]
        fn same_as_flood_fill(
            bits in proptest::collection::vec(prop_oneof![3 => Just(true), 2 => Just(false)], 1..600),
            w in 1usize..40,
        ) {
            let w = w.min(bits.len());
            let bits = &bits[..bits.len() / w * w];
            for conn in [Connectivity::Four, Connectivity::Eight] {
                let expected = flood_fill(bits, w, conn);
                prop_assert_eq!(&connected_components(bits, w, conn), &expected);
                let (labels, stats) = connected_components_with_stats(bits, w, conn);
                prop_assert_eq!(&labels, &expected.0);
                prop_assert_eq!(stats.len(), expected.1);
                for (k, st) in stats.iter().enumerate() {
                    let pixels: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] as usize == k + 1).collect();
                    let rows = pixels.iter().map(|i| i / w);
                    let cols = pixels.iter().map(|i| i % w);
                    prop_assert_eq!(st.area, pixels.len() as u64);
                    prop_assert_eq!(st.bbox, [
                        rows.clone().min().unwrap_or(0), cols.clone().min().unwrap_or(0),
                        rows.clone().max().unwrap_or(0) + 1, cols.clone().max().unwrap_or(0) + 1,
                    ]);
                    let n = pixels.len() as f64;
                    prop_assert_eq!(st.centroid, [
                        rows.sum::<usize>() as f64 / n, cols.sum::<usize>() as f64 / n,
                    ]);
                }
            }
        }

        #[test]
        fn components_partition_foreground(bits in proptest::collection::vec(any::<bool>(), 1..200), w in 1usize..20) {
            let w = w.min(bits.len());
            let bits = &bits[..bits.len() / w * w];
            let (labels, n) = connected_components(bits, w, Connectivity::Eight);
            for (l, b) in labels.iter().zip(bits) {
                prop_assert_eq!(*l != 0, *b);
                prop_assert!(*l as usize <= n);
            }
            // Every label 1..=n is used.
            for k in 1..=n as u32 {
                prop_assert!(labels.contains(&k));
            }
        }
    }
}
