//! Nuclei as polygons: every label's pixels traced along the pixel edges into rings, for GeoJSON
//! (QuPath) and any tool that wants outlines rather than masks.
//!
//! Coordinates are pixel corners in the image's grid (`x` right, `y` down): pixel `(x, y)` is
//! the square `[x, x+1] × [y, y+1]`. Each 4-connected part of a label is one polygon: its outer
//! ring, then one ring per hole. Rings are closed (the first point repeated), keep only the
//! corners, and follow GeoJSON's right-hand rule for the coordinates as numbers: outer rings have
//! positive signed area (shoelace over `x, y`), holes negative. Where two pixels of one part meet
//! only at a corner the part is joined there, so a ring never crosses or touches itself; two
//! parts (or a hole and the outer ring) may share a corner point, which GeoJSON allows. A
//! polygon's area (outer minus holes) is its pixel count exactly.
//!
//! ```
//! use cellops_measure::contour::polygons;
//! // An L of three pixels, label 7, in a 2×2 image.
//! let p = polygons(&[7, 0, 7, 7], 2);
//! assert_eq!(p[&7][0].exterior, vec![[0, 0], [1, 0], [1, 1], [2, 1], [2, 2], [0, 2], [0, 0]]);
//! assert_eq!(p[&7][0].area(), 3);
//! ```

use std::collections::{BTreeMap, HashMap};

/// A closed ring of pixel corners (the first point repeated at the end).
pub type Ring = Vec<[u32; 2]>;

/// One 4-connected part of a label: its outer ring and its holes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polygon {
    /// The outer ring (positive signed area).
    pub exterior: Ring,
    /// The holes (negative signed area).
    pub holes: Vec<Ring>,
}

impl Polygon {
    /// The area in pixels: the outer ring's minus the holes'.
    pub fn area(&self) -> i64 {
        signed_area2(&self.exterior) / 2 + self.holes.iter().map(|h| signed_area2(h) / 2).sum::<i64>()
    }
}

/// Twice the signed area of a closed ring (shoelace over `x, y`).
pub fn signed_area2(ring: &[[u32; 2]]) -> i64 {
    ring.windows(2)
        .map(|w| i64::from(w[0][0]) * i64::from(w[1][1]) - i64::from(w[1][0]) * i64::from(w[0][1]))
        .sum()
}

/// A step along a pixel edge, in image directions (`y` down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heading {
    Up,
    Right,
    Down,
    Left,
}

impl Heading {
    /// The heading after a right turn as seen on the image (clockwise on screen).
    fn right(self) -> Self {
        match self {
            Heading::Up => Heading::Right,
            Heading::Right => Heading::Down,
            Heading::Down => Heading::Left,
            Heading::Left => Heading::Up,
        }
    }
}

/// A directed pixel edge with its part on the left (as seen on the image).
#[derive(Debug, Clone, Copy)]
struct Edge {
    from: [u32; 2],
    to: [u32; 2],
    heading: Heading,
}

/// Every label's polygons (one per 4-connected part, in the order their first pixel appears),
/// by label; 0 is background.
pub fn polygons(labels: &[u32], width: usize) -> BTreeMap<u32, Vec<Polygon>> {
    let (parts, label_of) = parts(labels, width);
    let mut edges: Vec<Vec<Edge>> = vec![Vec::new(); label_of.len()];
    let height = labels.len().checked_div(width).unwrap_or(0);
    let at = |x: i64, y: i64| -> u32 {
        if x < 0 || y < 0 || x >= width as i64 || y >= height as i64 {
            0
        } else {
            labels[y as usize * width + x as usize]
        }
    };
    for (i, &l) in labels.iter().enumerate() {
        if l == 0 {
            continue;
        }
        let (x, y) = ((i % width) as u32, (i / width) as u32);
        let (xi, yi) = (i64::from(x), i64::from(y));
        let list = &mut edges[parts[i] as usize];
        if at(xi, yi - 1) != l {
            list.push(edge([x + 1, y], [x, y], Heading::Left));
        }
        if at(xi - 1, yi) != l {
            list.push(edge([x, y], [x, y + 1], Heading::Down));
        }
        if at(xi, yi + 1) != l {
            list.push(edge([x, y + 1], [x + 1, y + 1], Heading::Right));
        }
        if at(xi + 1, yi) != l {
            list.push(edge([x + 1, y + 1], [x + 1, y], Heading::Up));
        }
    }
    let mut out: BTreeMap<u32, Vec<Polygon>> = BTreeMap::new();
    for (part, list) in edges.iter().enumerate() {
        out.entry(label_of[part]).or_default().push(polygon(list));
    }
    out
}

fn edge(from: [u32; 2], to: [u32; 2], heading: Heading) -> Edge {
    Edge { from, to, heading }
}

/// The 4-connected parts of every label: each pixel's part (`u32::MAX` for background) and each
/// part's label.
fn parts(labels: &[u32], width: usize) -> (Vec<u32>, Vec<u32>) {
    let mut parent: Vec<usize> = (0..labels.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for i in 0..labels.len() {
        let l = labels[i];
        if l == 0 {
            continue;
        }
        for j in [i.checked_sub(1).filter(|_| i % width != 0), i.checked_sub(width)]
            .into_iter()
            .flatten()
        {
            if labels[j] == l {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    let mut part_of_root: HashMap<usize, u32> = HashMap::new();
    let mut label_of = Vec::new();
    let mut parts = vec![u32::MAX; labels.len()];
    for i in 0..labels.len() {
        if labels[i] == 0 {
            continue;
        }
        let r = root(&mut parent, i);
        let next = label_of.len() as u32;
        let p = *part_of_root.entry(r).or_insert_with(|| {
            label_of.push(labels[i]);
            next
        });
        parts[i] = p;
    }
    (parts, label_of)
}

/// One part's edges linked into rings, sorted into the outer ring and the holes.
fn polygon(edges: &[Edge]) -> Polygon {
    let mut starting: HashMap<[u32; 2], Vec<usize>> = HashMap::with_capacity(edges.len());
    for (i, e) in edges.iter().enumerate() {
        starting.entry(e.from).or_default().push(i);
    }
    let mut used = vec![false; edges.len()];
    let mut rings: Vec<Ring> = Vec::new();
    for first in 0..edges.len() {
        if used[first] {
            continue;
        }
        rings.push(ring(edges, &starting, &mut used, first));
    }
    // Traced with the part on the left as seen on the image, the outer ring has negative signed
    // area and holes positive: reversed, they follow the right-hand rule.
    for r in &mut rings {
        r.reverse();
    }
    let outer = rings
        .iter()
        .enumerate()
        .max_by_key(|(_, r)| signed_area2(r))
        .map_or(0, |(i, _)| i);
    let exterior = rings.swap_remove(outer);
    Polygon { exterior, holes: rings }
}

/// Follows edges from `first` until the ring closes; where two edges leave a corner (two pixels
/// of the part meet there diagonally) it turns right, joining them. Keeps only the corners.
fn ring(edges: &[Edge], starting: &HashMap<[u32; 2], Vec<usize>>, used: &mut [bool], first: usize) -> Ring {
    let mut order = vec![first];
    used[first] = true;
    let mut current = first;
    loop {
        let e = edges[current];
        let free: Vec<usize> = starting
            .get(&e.to)
            .map(|out| out.iter().copied().filter(|&o| !used[o] || o == first).collect())
            .unwrap_or_default();
        let next = match free.as_slice() {
            [one] => Some(*one),
            many => many
                .iter()
                .copied()
                .find(|&o| edges[o].heading == e.heading.right())
                .or_else(|| many.first().copied()),
        };
        match next {
            Some(n) if n != first => {
                used[n] = true;
                order.push(n);
                current = n;
            }
            _ => break,
        }
    }
    let n = order.len();
    let mut points: Ring = (0..n)
        .filter(|&i| edges[order[i]].heading != edges[order[(i + 1) % n]].heading)
        .map(|i| edges[order[i]].to)
        .collect();
    points.push(points[0]);
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every unit step of a ring's outline, as lattice points (the closing point left out).
    fn lattice(ring: &[[u32; 2]]) -> Vec<[u32; 2]> {
        let mut out = Vec::new();
        for w in ring.windows(2) {
            let (a, b) = (w[0], w[1]);
            assert!(a[0] == b[0] || a[1] == b[1], "axis-parallel: {a:?} {b:?}");
            let steps = a[0].abs_diff(b[0]) + a[1].abs_diff(b[1]);
            for k in 0..steps {
                let t = |p: u32, q: u32| match q.cmp(&p) {
                    std::cmp::Ordering::Greater => p + k,
                    std::cmp::Ordering::Less => p - k,
                    std::cmp::Ordering::Equal => p,
                };
                out.push([t(a[0], b[0]), t(a[1], b[1])]);
            }
        }
        out
    }

    #[test]
    fn a_square_with_a_hole_and_a_diagonal_pair() {
        // A 3×3 ring of label 1 around a hole, and label 2 as two pixels meeting at a corner.
        #[rustfmt::skip]
        let labels = [
            1, 1, 1, 0, 0,
            1, 0, 1, 2, 0,
            1, 1, 1, 0, 2,
        ];
        let p = polygons(&labels, 5);
        assert_eq!(p[&1].len(), 1);
        assert_eq!(p[&1][0].holes.len(), 1);
        assert_eq!(p[&1][0].area(), 8);
        assert_eq!(p[&1][0].holes[0], vec![[2, 1], [1, 1], [1, 2], [2, 2], [2, 1]]);
        // Two parts: two squares that share a corner.
        assert_eq!(p[&2].len(), 2);
        assert!(p[&2].iter().all(|q| q.area() == 1 && q.holes.is_empty()));
    }

    #[test]
    fn a_hole_that_meets_the_outside_at_a_corner_stays_a_hole() {
        #[rustfmt::skip]
        let labels = [
            0, 1, 1,
            1, 0, 1,
            1, 1, 1,
        ];
        let p = &polygons(&labels, 3)[&1];
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].holes.len(), 1);
        assert_eq!(p[0].area(), 7);
        let outline = lattice(&p[0].exterior);
        let mut unique = outline.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), outline.len(), "the outer ring does not touch itself");
    }

    proptest! {
        /// Random label images: every ring is a simple closed lattice path, outer rings are
        /// positive and holes negative, and areas equal pixel counts.
        #[test]
        fn rings_are_simple_and_areas_exact(w in 1usize..9, h in 1usize..9, seed in any::<u64>()) {
            let mut s = seed | 1;
            let labels: Vec<u32> = (0..w * h)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s % 4) as u32
                })
                .collect();
            let polys = polygons(&labels, w);
            for (label, parts) in &polys {
                let pixels = labels.iter().filter(|&&l| l == *label).count() as i64;
                prop_assert_eq!(parts.iter().map(Polygon::area).sum::<i64>(), pixels);
                for p in parts {
                    prop_assert!(signed_area2(&p.exterior) > 0);
                    for ring in std::iter::once(&p.exterior).chain(&p.holes) {
                        prop_assert_eq!(ring.first(), ring.last());
                        let outline = lattice(ring);
                        let mut unique = outline.clone();
                        unique.sort_unstable();
                        unique.dedup();
                        prop_assert_eq!(unique.len(), outline.len(), "a ring touches itself: {:?}", ring);
                    }
                    for hole in &p.holes {
                        prop_assert!(signed_area2(hole) < 0);
                    }
                }
            }
            prop_assert!(!polys.contains_key(&0));
        }
    }
}
