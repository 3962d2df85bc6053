//! Shape measurements of labelled objects, defined as scikit-image's `regionprops` defines them
//! (2-D, unit pixel spacing), so that figures agree with it (checked by
//! `bench/regionprops_reference.py` on real masks).
//!
//! - `area`: pixels. `bbox`: `[min_row, min_col, max_row, max_col]`, max exclusive.
//! - `centroid`: `[row, col]`, the mean of the pixel coordinates.
//! - Axes and orientation from the central second moments μ20 (rows), μ02 (columns), μ11: the inertia
//!   tensor `[[μ02, −μ11], [−μ11, μ20]] / area`, eigenvalues λ1 ≥ λ2 (clipped at 0):
//!   `major_axis_length = 4√λ1`, `minor_axis_length = 4√λ2`, `eccentricity = √(1 − λ2/λ1)`,
//!   `orientation = ½·atan2(−2b, c − a)` for the tensor `[[a, b], [b, c]]` (±π/4 when `a = c`): the
//!   angle between the row axis and the major axis, in (−π/2, π/2].
//! - `equivalent_diameter = √(4·area/π)`; `extent = area / bbox area`.
//! - `perimeter`: scikit-image's estimator with 4-connectivity: border pixels (object pixels with a
//!   4-neighbour outside the object) are classified by their 8-neighbourhood of border pixels and
//!   weighted 1 (straight runs), √2 (diagonal runs) or (1 + √2)/2 (corners).
//! - `euler_number`: objects minus holes, objects 8-connected and holes 4-connected.
//! - `convex_area`: pixels whose centres lie inside or on the convex hull of the midpoints of the
//!   object's pixel edges (scikit-image's `convex_hull_image`, computed here in exact integer
//!   arithmetic); `solidity = area / convex_area`.
//! - `max_feret_diameter`: the largest distance between the contour points (marching squares at
//!   level 0.5, i.e. midpoints between 4-adjacent inside/outside pixels) of that convex image.
//!
//! Added after CellProfiler's `MeasureObjectSizeShape` (not part of scikit-image's `regionprops`):
//!
//! - `form_factor = 4π·area / perimeter²` with the perimeter above (CellProfiler's `FormFactor`,
//!   which also takes scikit-image's perimeter); 0 when the perimeter is 0 (a single pixel). About 1
//!   for a disc (the 4-connectivity estimator slightly under- or overshoots on small discs).
//! - `compactness = 2π·(var_row + var_col) / area`, with `var_row`, `var_col` the population
//!   variances of the pixel coordinates, i.e. the mean squared distance of the pixels from the
//!   centroid divided by the area, scaled by 2π so that a filled disc gives 1 (mean squared
//!   distance R²/2 over area πR²; the pixel grid adds 1/6 to the mean squared distance, so a
//!   digital disc of radius R gives about 1 + 1/(3R²)). Larger for elongated objects and objects
//!   with holes; 0 for a single pixel. This is the second-moment definition of CellProfiler's
//!   help text up to 3.x ("mean squared distance of the object's pixels from the centroid
//!   divided by the area"). CellProfiler 4 computes its `Compactness` column as
//!   `perimeter² / max(4π·area, 1)` instead (the reciprocal of the form factor for objects of
//!   area ≥ 1/(4π)); that figure is `1 / form_factor` here.
//! - `min_feret_diameter`: the smallest caliper width (distance between two parallel supporting
//!   lines) of the same convex contour points that give `max_feret_diameter`, exact by rotating
//!   calipers over their hull (the minimum width of a convex polygon is reached with one caliper
//!   flush with an edge; widths are compared as exact integer ratios in doubled coordinates).
//!   CellProfiler (`centrosome.cpmorphology.feret_diameter`) measures both Feret diameters on the
//!   convex hull of the pixel *centres*; we keep one polygon for both diameters (the one that
//!   matches scikit-image's `feret_diameter_max`), so that `min ≤ max` always compares like with
//!   like and one-pixel-thin objects get width 1, not 0. The contour runs half a pixel outside the
//!   pixel centres, so for axis-aligned extents our width is about one pixel more than
//!   CellProfiler's: an axis-aligned `h × w` rectangle (`h ≤ w`, `h ≥ 2` or `w ≥ 2`) has min Feret
//!   exactly `h` here and `h − 1` in CellProfiler; a single pixel has `√2/2` (its contour is a
//!   diamond through the four edge midpoints).

use std::collections::HashMap;

use serde::Serialize;

/// The measurements of one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionProps {
    /// The object's label.
    pub label: u64,
    /// Pixels.
    pub area: u64,
    /// `[min_row, min_col, max_row, max_col]`, max exclusive.
    pub bbox: [usize; 4],
    /// `[row, col]`.
    pub centroid: [f64; 2],
    /// Length of the major axis of the ellipse with the same second moments.
    pub major_axis_length: f64,
    /// Length of its minor axis.
    pub minor_axis_length: f64,
    /// Angle between the row axis and the major axis, radians.
    pub orientation: f64,
    /// Eccentricity of that ellipse (0 for a circle).
    pub eccentricity: f64,
    /// Diameter of the circle of the same area.
    pub equivalent_diameter: f64,
    /// Area over bounding-box area.
    pub extent: f64,
    /// Perimeter (scikit-image's 4-connectivity estimator).
    pub perimeter: f64,
    /// Objects minus holes.
    pub euler_number: i64,
    /// Pixels of the convex hull image (pixel centres inside or on the hull of the pixels' edge
    /// midpoints).
    pub convex_area: u64,
    /// Area over convex area.
    pub solidity: f64,
    /// Largest distance between points of the convex hull image's contour (marching squares at 0.5).
    pub max_feret_diameter: f64,
    /// Smallest caliper width of the same contour points.
    pub min_feret_diameter: f64,
    /// `4π·area / perimeter²` (0 when the perimeter is 0).
    pub form_factor: f64,
    /// `2π·(var_row + var_col) / area`: mean squared distance from the centroid over the area,
    /// 1 for a filled disc.
    pub compactness: f64,
}

/// Dense slots for label values, in order of first appearance: a table indexed by the label for
/// labels below a bound proportional to the image size (the usual case; the table grows as larger
/// labels appear), a hash map for the rest.
pub(crate) struct Slots {
    /// `dense[label]` is the slot, `u32::MAX` if the label has not been seen.
    dense: Vec<u32>,
    /// Labels from `limit` up.
    sparse: HashMap<u64, u32>,
    limit: u64,
}

impl Slots {
    /// Slots for the labels of an image of `pixels` pixels.
    pub(crate) fn new(pixels: usize) -> Self {
        Slots {
            dense: Vec::new(),
            sparse: HashMap::new(),
            limit: 2 * pixels as u64 + 65_536,
        }
    }

    /// The slot of label `l`, a new one (`next`) if it has none yet; whether it was new.
    #[inline]
    pub(crate) fn slot(&mut self, l: u64, next: u32) -> (u32, bool) {
        if l < self.limit {
            let i = l as usize;
            if i >= self.dense.len() {
                let len = (i + 1).max(2 * self.dense.len()).min(self.limit as usize);
                self.dense.resize(len, u32::MAX);
            }
            let s = &mut self.dense[i];
            if *s == u32::MAX {
                *s = next;
                (next, true)
            } else {
                (*s, false)
            }
        } else {
            let s = *self.sparse.entry(l).or_insert(next);
            (s, s == next)
        }
    }
}

/// One object found by [`objects`].
struct Object {
    label: u64,
    area: u64,
    /// `[min_row, min_col, max_row, max_col]`, max exclusive.
    bbox: [usize; 4],
}

/// Every object's label, area and bounding box, in one pass over the image.
fn objects<L: Copy + Into<u64>>(labels: &[L], width: usize) -> Vec<Object> {
    let mut slots = Slots::new(labels.len());
    let mut objects: Vec<Object> = Vec::new();
    for (r, row) in labels.chunks_exact(width).enumerate() {
        for (c, &l) in row.iter().enumerate() {
            let l: u64 = l.into();
            if l == 0 {
                continue;
            }
            let (s, new) = slots.slot(l, objects.len() as u32);
            if new {
                objects.push(Object {
                    label: l,
                    area: 0,
                    bbox: [r, c, r + 1, c + 1],
                });
            }
            let o = &mut objects[s as usize];
            o.area += 1;
            // Rows only grow in raster order.
            o.bbox[1] = o.bbox[1].min(c);
            o.bbox[2] = r + 1;
            o.bbox[3] = o.bbox[3].max(c + 1);
        }
    }
    objects.sort_unstable_by_key(|o| o.label);
    objects
}

/// Perimeter weights by the code `Σ` of the 3×3 kernel `[[10, 2, 10], [2, 1, 2], [10, 2, 10]]` over
/// border pixels (scikit-image's table).
fn perimeter_weight(code: u8) -> f64 {
    match code {
        5 | 7 | 15 | 17 | 25 | 27 => 1.0,
        21 | 33 => std::f64::consts::SQRT_2,
        13 | 23 => (1.0 + std::f64::consts::SQRT_2) / 2.0,
        _ => 0.0,
    }
}

/// Measures every object of a label image (`width` wide; 0 is background), sorted by label.
///
/// ```
/// use cellops_measure::shape::regionprops;
/// // A 2×3 rectangle: area 6, centroid (0.5, 1), wider than tall.
/// let labels = [1u8, 1, 1, 1, 1, 1];
/// let p = &regionprops(&labels, 3)[0];
/// assert_eq!((p.area, p.bbox, p.centroid), (6, [0, 0, 2, 3], [0.5, 1.0]));
/// assert!(p.major_axis_length > p.minor_axis_length);
/// assert_eq!(p.euler_number, 1);
/// ```
pub fn regionprops<L: Copy + Into<u64>>(labels: &[L], width: usize) -> Vec<RegionProps> {
    if width == 0 {
        return Vec::new();
    }
    objects(labels, width)
        .iter()
        .map(|o| measure(labels, width, o))
        .collect()
}

/// Measures one object from its bounding-box window of the label image.
fn measure<L: Copy + Into<u64>>(labels: &[L], width: usize, o: &Object) -> RegionProps {
    let [r0, c0, r1, c1] = o.bbox;
    let (h, w) = (r1 - r0, c1 - c0);
    // The object alone in its bounding box, padded by one pixel of background; per padded row, the
    // first and last object column (`None` for rows without object pixels).
    let (ph, pw) = (h + 2, w + 2);
    let mut image = vec![false; ph * pw];
    let mut extremes: Vec<Option<(usize, usize)>> = vec![None; ph];
    // Exact integer sums in window coordinates (central moments do not depend on the origin).
    let (mut sr, mut sc, mut srr, mut scc, mut src) = (0u64, 0u64, 0u128, 0u128, 0u128);
    for r in 0..h {
        let row = &labels[(r0 + r) * width + c0..(r0 + r) * width + c1];
        let out = &mut image[(r + 1) * pw + 1..(r + 1) * pw + 1 + w];
        let (mut n, mut rsum_c, mut rsum_cc) = (0u64, 0u64, 0u64);
        let mut first = usize::MAX;
        let mut last = 0;
        for (c, (&l, px)) in row.iter().zip(out.iter_mut()).enumerate() {
            if l.into() == o.label {
                *px = true;
                n += 1;
                rsum_c += c as u64;
                rsum_cc += (c * c) as u64;
                first = first.min(c);
                last = c;
            }
        }
        if n > 0 {
            extremes[r + 1] = Some((first + 1, last + 1));
            let r = r as u64;
            sr += n * r;
            sc += rsum_c;
            srr += u128::from(n * r * r);
            scc += u128::from(rsum_cc);
            src += u128::from(r * rsum_c);
        }
    }
    let n = o.area as f64;
    let k = i128::from(o.area as i64);
    let (sr_g, sc_g) = (sr + o.area * r0 as u64, sc + o.area * c0 as u64);
    let centroid = [sr_g as f64 / n, sc_g as f64 / n];
    let (sr, sc) = (i128::from(sr as i64), i128::from(sc as i64));
    let (srr, scc, src) = (srr as i128, scc as i128, src as i128);
    // n·μ20 = nΣr² − (Σr)², and so on, exact, so that symmetric objects have exactly equal moments
    // (the orientation formula branches on that).
    let (n_mu20, n_mu02, n_mu11) = (k * srr - sr * sr, k * scc - sc * sc, k * src - sr * sc);
    let (mu20, mu02, mu11) = (n_mu20 as f64 / n, n_mu02 as f64 / n, n_mu11 as f64 / n);
    let (ta, tb, tc) = (mu02 / n, -mu11 / n, mu20 / n);
    // Eigenvalues of [[ta, tb], [tb, tc]].
    let mean = (ta + tc) / 2.0;
    let spread = (((ta - tc) / 2.0).powi(2) + tb * tb).sqrt();
    let (l1, l2) = ((mean + spread).max(0.0), (mean - spread).max(0.0));
    let orientation = if n_mu02 == n_mu20 {
        if tb < 0.0 {
            -std::f64::consts::FRAC_PI_4
        } else {
            std::f64::consts::FRAC_PI_4
        }
    } else {
        0.5 * (-2.0 * tb).atan2(tc - ta)
    };
    let eccentricity = if l1 == 0.0 { 0.0 } else { (1.0 - l2 / l1).sqrt() };
    let perimeter = perimeter(&image, pw);
    let pi = std::f64::consts::PI;
    let mut props = RegionProps {
        label: o.label,
        area: o.area,
        bbox: o.bbox,
        centroid,
        major_axis_length: 4.0 * l1.sqrt(),
        minor_axis_length: 4.0 * l2.sqrt(),
        orientation,
        eccentricity,
        equivalent_diameter: (4.0 * n / pi).sqrt(),
        extent: n / (h * w) as f64,
        perimeter,
        euler_number: euler_number(&image, pw),
        convex_area: 0,
        solidity: 0.0,
        max_feret_diameter: 0.0,
        min_feret_diameter: 0.0,
        form_factor: if perimeter > 0.0 {
            4.0 * pi * n / (perimeter * perimeter)
        } else {
            0.0
        },
        // 2π·(μ20/n + μ02/n)/n with n·μ exact.
        compactness: 2.0 * pi * ((n_mu20 + n_mu02) as f64 / (n * n)) / n,
    };
    props.set_convex(&extremes, pw);
    props
}

/// Cross product of `(b − a) × (c − a)`.
fn cross(a: (i64, i64), b: (i64, i64), c: (i64, i64)) -> i64 {
    (b.0 - a.0) * (c.1 - a.1) - (b.1 - a.1) * (c.0 - a.0)
}

/// Convex hull (Andrew's monotone chain), counter-clockwise, without collinear points.
fn hull(mut points: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    points.sort_unstable();
    points.dedup();
    if points.len() < 3 {
        return points;
    }
    let mut lower: Vec<(i64, i64)> = Vec::new();
    for &p in &points {
        while lower.len() >= 2 && cross(lower[lower.len() - 2], lower[lower.len() - 1], p) <= 0 {
            lower.pop();
        }
        lower.push(p);
    }
    let mut upper: Vec<(i64, i64)> = Vec::new();
    for &p in points.iter().rev() {
        while upper.len() >= 2 && cross(upper[upper.len() - 2], upper[upper.len() - 1], p) <= 0 {
            upper.pop();
        }
        upper.push(p);
    }
    lower.pop();
    upper.pop();
    lower.extend(upper);
    lower
}

/// Whether `p` is inside or on the convex polygon `poly` (counter-clockwise; a segment or point
/// when it has fewer than 3 vertices).
fn inside_or_on(poly: &[(i64, i64)], p: (i64, i64)) -> bool {
    match poly.len() {
        0 => false,
        1 => poly[0] == p,
        2 => {
            let (a, b) = (poly[0], poly[1]);
            cross(a, b, p) == 0
                && (a.0.min(b.0)..=a.0.max(b.0)).contains(&p.0)
                && (a.1.min(b.1)..=a.1.max(b.1)).contains(&p.1)
        }
        n => (0..n).all(|i| cross(poly[i], poly[(i + 1) % n], p) >= 0),
    }
}

/// The smallest width of the convex polygon `poly` (counter-clockwise, no collinear vertices), in
/// its own units, by rotating calipers: for each edge the farthest vertex, found by a pointer that
/// only moves forward. 0 for fewer than 3 vertices.
fn min_width(poly: &[(i64, i64)]) -> f64 {
    let m = poly.len();
    if m < 3 {
        return 0.0;
    }
    // Best as the exact ratio height² = cross² / |edge|², compared by cross-multiplying.
    let mut best: Option<(i128, i128)> = None;
    let mut j = 1;
    for i in 0..m {
        let (a, b) = (poly[i], poly[(i + 1) % m]);
        while cross(a, b, poly[(j + 1) % m]) > cross(a, b, poly[j]) {
            j = (j + 1) % m;
        }
        let c = i128::from(cross(a, b, poly[j]));
        let l2 = i128::from((b.0 - a.0).pow(2) + (b.1 - a.1).pow(2));
        if best.is_none_or(|(bc, bl)| c * c * bl < bc * bc * l2) {
            best = Some((c, l2));
        }
    }
    best.map_or(0.0, |(c, l2)| c as f64 / (l2 as f64).sqrt())
}

impl RegionProps {
    /// Fills the convex measurements from the first and last object column of each row of the
    /// padded object image (`width` wide).
    fn set_convex(&mut self, extremes: &[Option<(usize, usize)>], width: usize) {
        // Coordinates doubled so that edge midpoints are integers: pixel (r, c) is (2r, 2c). Of the
        // edge midpoints of a row's pixels only the row's first and last pixel's can be hull
        // vertices (the others lie between them on the same lines).
        let mut points = Vec::with_capacity(6 * extremes.len());
        for (r, e) in extremes.iter().enumerate() {
            if let Some((a, b)) = *e {
                let (r, a, b) = (r as i64, a as i64, b as i64);
                points.extend([
                    (2 * r - 1, 2 * a),
                    (2 * r - 1, 2 * b),
                    (2 * r + 1, 2 * a),
                    (2 * r + 1, 2 * b),
                    (2 * r, 2 * a - 1),
                    (2 * r, 2 * b + 1),
                ]);
            }
        }
        let poly = hull(points);
        let (lo, hi) = poly
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
        // Each row of the convex image is one run of columns (`None`: empty). It contains the row's
        // object pixels (pixel centres are midpoints of their edge midpoints), so it is found by
        // walking outwards from them; rows without object pixels are scanned whole.
        let inside = |r: usize, c: usize| inside_or_on(&poly, (2 * r as i64, 2 * c as i64));
        let intervals: Vec<Option<(usize, usize)>> = extremes
            .iter()
            .enumerate()
            .map(|(r, e)| {
                if !(lo..=hi).contains(&(2 * r as i64)) {
                    return None;
                }
                match *e {
                    Some((a, b)) => {
                        let (mut a, mut b) = (a, b);
                        while a > 0 && inside(r, a - 1) {
                            a -= 1;
                        }
                        while b + 1 < width && inside(r, b + 1) {
                            b += 1;
                        }
                        Some((a, b))
                    }
                    None => {
                        let a = (0..width).find(|&c| inside(r, c))?;
                        let b = (a..width).rev().find(|&c| inside(r, c))?;
                        Some((a, b))
                    }
                }
            })
            .collect();
        self.convex_area = intervals.iter().flatten().map(|(a, b)| (b - a + 1) as u64).sum();
        self.solidity = self.area as f64 / self.convex_area.max(1) as f64;
        // Contour points at level 0.5: midpoints between 4-adjacent pixels of differing value (the
        // padding keeps the contour inside the image). Doubled coordinates again; on each line only
        // the outermost points matter for the hull.
        let mut contour = Vec::with_capacity(4 * intervals.len());
        for (r, run) in intervals.iter().enumerate() {
            let r2 = 2 * r as i64;
            if let Some((a, b)) = *run {
                contour.extend([(r2, 2 * a as i64 - 1), (r2, 2 * b as i64 + 1)]);
            }
            // Between rows r and r + 1: the columns inside exactly one of the two runs.
            let next = intervals.get(r + 1).copied().flatten();
            let span = match (*run, next) {
                (None, None) => None,
                (Some(x), None) | (None, Some(x)) => Some(x),
                (Some((a1, b1)), Some((a2, b2))) => {
                    if b1 < a2 || b2 < a1 {
                        Some((a1.min(a2), b1.max(b2)))
                    } else {
                        let first = if a1 != a2 {
                            Some(a1.min(a2))
                        } else if b1 != b2 {
                            Some(b1.min(b2) + 1)
                        } else {
                            None
                        };
                        let last = if b1 != b2 {
                            Some(b1.max(b2))
                        } else {
                            first.map(|_| a1.max(a2) - 1)
                        };
                        first.zip(last)
                    }
                }
            };
            if let Some((a, b)) = span {
                contour.extend([(r2 + 1, 2 * a as i64), (r2 + 1, 2 * b as i64)]);
            }
        }
        let h = hull(contour);
        let mut best = 0i64;
        for (i, a) in h.iter().enumerate() {
            for b in &h[i + 1..] {
                best = best.max((a.0 - b.0).pow(2) + (a.1 - b.1).pow(2));
            }
        }
        self.max_feret_diameter = (best as f64).sqrt() / 2.0;
        self.min_feret_diameter = min_width(&h) / 2.0;
    }
}

/// scikit-image's `perimeter(image, neighborhood=4)` of a padded binary image.
fn perimeter(image: &[bool], width: usize) -> f64 {
    let height = image.len() / width;
    let at = |r: usize, c: usize| image[r * width + c];
    // Border: object pixels with a 4-neighbour outside (the padding makes every neighbour exist
    // for object pixels).
    let border: Vec<bool> = (0..image.len())
        .map(|i| {
            let (r, c) = (i / width, i % width);
            image[i] && (!at(r - 1, c) || !at(r + 1, c) || !at(r, c - 1) || !at(r, c + 1))
        })
        .collect();
    let b = |r: usize, c: usize| u8::from(border[r * width + c]);
    let mut total = 0.0;
    for r in 1..height - 1 {
        for c in 1..width - 1 {
            if !border[r * width + c] {
                continue;
            }
            let code = 1
                + 2 * (b(r - 1, c) + b(r + 1, c) + b(r, c - 1) + b(r, c + 1))
                + 10 * (b(r - 1, c - 1) + b(r - 1, c + 1) + b(r + 1, c - 1) + b(r + 1, c + 1));
            total += perimeter_weight(code);
        }
    }
    total
}

/// Objects (8-connected) minus holes (4-connected background components enclosed by the object)
/// of a padded binary image, by Gray's bit-quad counts: `(Q1 − Q3 − 2·QD) / 4` over all 2×2
/// windows, with Q1 and Q3 the windows holding one and three object pixels and QD those holding two
/// diagonal ones.
fn euler_number(image: &[bool], width: usize) -> i64 {
    let (mut q1, mut q3, mut qd) = (0i64, 0i64, 0i64);
    for (top, bottom) in image.chunks_exact(width).zip(image.chunks_exact(width).skip(1)) {
        for c in 0..width - 1 {
            let (a, b, d, e) = (top[c], top[c + 1], bottom[c], bottom[c + 1]);
            match u8::from(a) + u8::from(b) + u8::from(d) + u8::from(e) {
                1 => q1 += 1,
                3 => q3 += 1,
                2 if a == e => qd += 1,
                _ => {}
            }
        }
    }
    (q1 - q3 - 2 * qd) / 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disc(radius: f64, size: usize) -> Vec<u8> {
        let c = (size as f64 - 1.0) / 2.0;
        (0..size * size)
            .map(|i| {
                let (r, col) = ((i / size) as f64, (i % size) as f64);
                u8::from((r - c).powi(2) + (col - c).powi(2) <= radius * radius)
            })
            .collect()
    }

    #[test]
    fn a_disc_is_round() {
        let p = &regionprops(&disc(20.0, 45), 45)[0];
        let pi = std::f64::consts::PI;
        assert!(
            (p.area as f64 - pi * 400.0).abs() / (pi * 400.0) < 0.01,
            "area {}",
            p.area
        );
        assert!(p.eccentricity < 0.05, "eccentricity {}", p.eccentricity);
        assert!((p.major_axis_length - 40.0).abs() < 1.0);
        assert!((p.form_factor - 1.0).abs() < 0.1, "form factor {}", p.form_factor);
        assert_eq!(p.form_factor, 4.0 * pi * p.area as f64 / p.perimeter.powi(2));
        // 1 + 1/(3R²) for the pixel grid, give or take the digitisation of the edge.
        assert!((p.compactness - 1.0).abs() < 0.01, "compactness {}", p.compactness);
        assert!(p.min_feret_diameter <= p.max_feret_diameter);
        assert!(
            (p.min_feret_diameter - 41.0).abs() < 1.0,
            "min Feret {}",
            p.min_feret_diameter
        );
        assert_eq!(p.euler_number, 1);
    }

    #[test]
    fn rectangle_feret_diameters_and_compactness() {
        // 4 rows × 7 columns: the contour runs through the edge midpoints, so the widths are the
        // sides themselves; the longest chord joins (0, -0.5) and (3, 6.5) (or mirror images).
        let p = &regionprops(&[1u8; 28], 7)[0];
        assert_eq!(p.min_feret_diameter, 4.0);
        assert_eq!(p.max_feret_diameter, 58f64.sqrt());
        // var_row = (4² − 1)/12, var_col = (7² − 1)/12.
        let expected = 2.0 * std::f64::consts::PI * ((15.0 + 48.0) / 12.0) / 28.0;
        assert!((p.compactness - expected).abs() < 1e-12, "{}", p.compactness);
        // A one-pixel-thin bar is 1 wide; a single pixel's contour is a diamond.
        assert_eq!(regionprops(&[1u8; 9], 9)[0].min_feret_diameter, 1.0);
        let dot = &regionprops(&[1u8], 1)[0];
        assert!((dot.min_feret_diameter - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-15);
        assert_eq!(
            (dot.form_factor, dot.compactness, dot.max_feret_diameter),
            (0.0, 0.0, 1.0)
        );
    }

    #[test]
    fn a_diagonal_bar_is_thin() {
        // A 1-pixel diagonal line of 10 pixels: the contour polygon's width across the line is that
        // of the diamond of one pixel, √2/2, however long the line.
        let size = 10;
        let labels: Vec<u8> = (0..size * size).map(|i| u8::from(i / size == i % size)).collect();
        let p = &regionprops(&labels, size)[0];
        assert!(
            (p.min_feret_diameter - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-12,
            "{}",
            p.min_feret_diameter
        );
    }

    /// Brute-force minimum width: for every edge, the farthest vertex.
    fn min_width_brute(poly: &[(i64, i64)]) -> f64 {
        let m = poly.len();
        (0..m)
            .map(|i| {
                let (a, b) = (poly[i], poly[(i + 1) % m]);
                let far = poly.iter().map(|&p| cross(a, b, p)).max().unwrap_or(0);
                far as f64 / (((b.0 - a.0).pow(2) + (b.1 - a.1).pow(2)) as f64).sqrt()
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// The reference measurements of the previous implementation for what the fast paths replaced:
    /// the hull of all edge midpoints of all pixels, the convex image by testing every pixel, and
    /// objects minus holes by flood fill.
    fn slow_convex_area_and_euler(labels: &[u8], width: usize, label: u8) -> (u64, i64) {
        use cellops_dataset::ops::label::{Connectivity, connected_components};
        let height = labels.len() / width;
        let (pw, ph) = (width + 2, height + 2);
        let mut image = vec![false; pw * ph];
        let mut points = Vec::new();
        for (i, &l) in labels.iter().enumerate() {
            if l == label {
                let (r, c) = (i / width + 1, i % width + 1);
                image[r * pw + c] = true;
                let (r, c) = (r as i64, c as i64);
                points.extend([
                    (2 * r - 1, 2 * c),
                    (2 * r + 1, 2 * c),
                    (2 * r, 2 * c - 1),
                    (2 * r, 2 * c + 1),
                ]);
            }
        }
        let poly = hull(points);
        let convex = (0..image.len())
            .filter(|&i| inside_or_on(&poly, (2 * (i / pw) as i64, 2 * (i % pw) as i64)))
            .count() as u64;
        let (_, objects) = connected_components(&image, pw, Connectivity::Eight);
        let background: Vec<bool> = image.iter().map(|&v| !v).collect();
        let (_, parts) = connected_components(&background, pw, Connectivity::Four);
        (convex, objects as i64 - (parts as i64 - 1))
    }

    proptest::proptest! {
        #[test]
        fn feret_and_shape_invariants(
            bits in proptest::collection::vec(proptest::prelude::any::<bool>(), 1..300),
            w in 1usize..20,
        ) {
            let w = w.min(bits.len());
            let labels: Vec<u8> = bits[..bits.len() / w * w].iter().map(|&b| u8::from(b)).collect();
            let props = regionprops(&labels, w);
            proptest::prop_assert_eq!(props.len(), usize::from(labels.contains(&1)));
            for p in &props {
                let [r0, c0, r1, c1] = p.bbox;
                let short = (r1 - r0).min(c1 - c0) as f64;
                proptest::prop_assert!(p.min_feret_diameter > 0.0);
                proptest::prop_assert!(p.min_feret_diameter <= p.max_feret_diameter + 1e-12);
                // The contour spans exactly the bounding box along each axis.
                proptest::prop_assert!(p.min_feret_diameter <= short + 1e-12, "{} > {}", p.min_feret_diameter, short);
                proptest::prop_assert!(p.compactness >= 0.0 && p.form_factor >= 0.0);
                let (convex, euler) = slow_convex_area_and_euler(&labels, w, 1);
                proptest::prop_assert_eq!((p.convex_area, p.euler_number), (convex, euler));
                // The transposed object has the same widths.
                let h = labels.len() / w;
                let t: Vec<u8> = (0..labels.len()).map(|i| labels[(i % h) * w + i / h]).collect();
                let q = &regionprops(&t, h)[0];
                proptest::prop_assert!((q.min_feret_diameter - p.min_feret_diameter).abs() < 1e-12);
                proptest::prop_assert!((q.max_feret_diameter - p.max_feret_diameter).abs() < 1e-12);
            }
        }

        #[test]
        fn rotating_calipers_match_brute_force(
            pts in proptest::collection::vec((-50i64..50, -50i64..50), 3..40),
        ) {
            let poly = hull(pts);
            if poly.len() >= 3 {
                let (fast, slow) = (min_width(&poly), min_width_brute(&poly));
                proptest::prop_assert!((fast - slow).abs() < 1e-9, "{} vs {}", fast, slow);
            }
        }
    }

    #[test]
    fn a_tilted_bar_has_its_orientation() {
        // A diagonal bar from top-left to bottom-right: the major axis runs at -45° from the rows.
        let size = 20;
        let labels: Vec<u8> = (0..size * size)
            .map(|i| u8::from(((i / size) as i64 - (i % size) as i64).abs() <= 1))
            .collect();
        let p = &regionprops(&labels, size)[0];
        assert!(
            (p.orientation.abs() - std::f64::consts::FRAC_PI_4).abs() < 1e-9,
            "{}",
            p.orientation
        );
        assert!(p.eccentricity > 0.95);
    }

    #[test]
    fn a_ring_has_euler_number_zero_and_labels_are_separate() {
        #[rustfmt::skip]
        let labels = [
            1u8, 1, 1, 0, 2,
            1,   0, 1, 0, 2,
            1,   1, 1, 0, 0,
        ];
        let props = regionprops(&labels, 5);
        assert_eq!(props.len(), 2);
        assert_eq!((props[0].label, props[0].area, props[0].euler_number), (1, 8, 0));
        assert_eq!((props[1].label, props[1].area, props[1].euler_number), (2, 2, 1));
        assert_eq!(props[1].bbox, [0, 4, 2, 5]);
        assert!((props[0].extent - 8.0 / 9.0).abs() < 1e-12);
    }

    #[test]
    fn an_l_shape_is_not_solid_and_a_square_is() {
        #[rustfmt::skip]
        let l_shape = [
            1u8, 0, 0, 0,
            1,   0, 0, 0,
            1,   0, 0, 0,
            1,   1, 1, 1,
        ];
        let p = &regionprops(&l_shape, 4)[0];
        assert_eq!(p.area, 7);
        // The hull of the edge midpoints covers the lower-left triangle of pixel centres.
        assert_eq!(p.convex_area, 10);
        assert!((p.solidity - 0.7).abs() < 1e-12);
        // scikit-image: area_convex 10, solidity 0.7, feret_diameter_max 5 (contour points at
        // (-0.5, 0) and (3.5, 3) of the hull image).
        assert_eq!(p.max_feret_diameter, 5.0);
        let square = [1u8; 9];
        let q = &regionprops(&square, 3)[0];
        assert_eq!((q.convex_area, q.solidity), (9, 1.0));
    }
}
