//! Connected-component labelling and label bookkeeping.

/// Which neighbours join pixels into one object (`four` / `eight` in configuration files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Connectivity {
    /// Edge neighbours only (4-connectivity).
    Four,
    /// Edge and corner neighbours (8-connectivity; scikit-image's default for 2-D `label`).
    #[default]
    Eight,
}

fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        parent[i as usize] = parent[parent[i as usize] as usize];
        i = parent[i as usize];
    }
    i
}

fn union(parent: &mut [u32], a: u32, b: u32) -> u32 {
    let (ra, rb) = (find(parent, a), find(parent, b));
    let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
    parent[hi as usize] = lo;
    lo
}

/// Labels the connected components of the pixels where `foreground` is true, numbering them 1, 2, …
/// in raster order of their first pixel. Returns the labels (as `u32`) and the number of objects.
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
    let height = foreground.len() / width;
    let mut parent: Vec<u32> = vec![0];
    for y in 0..height {
        for x in 0..width {
            let i = y * width + x;
            if !foreground[i] {
                continue;
            }
            let mut neighbours = [0u32; 4];
            let mut n = 0;
            if x > 0 && labels[i - 1] != 0 {
                neighbours[n] = labels[i - 1];
                n += 1;
            }
            if y > 0 {
                let up = i - width;
                if labels[up] != 0 {
                    neighbours[n] = labels[up];
                    n += 1;
                }
                if conn == Connectivity::Eight {
                    if x > 0 && labels[up - 1] != 0 {
                        neighbours[n] = labels[up - 1];
                        n += 1;
                    }
                    if x + 1 < width && labels[up + 1] != 0 {
                        neighbours[n] = labels[up + 1];
                        n += 1;
                    }
                }
            }
            labels[i] = if n == 0 {
                let l = parent.len() as u32;
                parent.push(l);
                l
            } else {
                let mut root = neighbours[0];
                for &nb in &neighbours[1..n] {
                    root = union(&mut parent, root, nb);
                }
                find(&mut parent, root)
            };
        }
    }
    // Final numbering in order of first appearance.
    let mut final_id = vec![0u32; parent.len()];
    let mut count = 0u32;
    for l in labels.iter_mut() {
        if *l == 0 {
            continue;
        }
        let root = find(&mut parent, *l) as usize;
        if final_id[root] == 0 {
            count += 1;
            final_id[root] = count;
        }
        *l = final_id[root];
    }
    (labels, count as usize)
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

    proptest! {
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
