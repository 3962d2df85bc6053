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

use std::collections::HashMap;

use serde::Serialize;

use cellops_dataset::ops::label::{Connectivity, connected_components};

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
    /// TEMP (replaced by the measure-speed branch).
    pub min_feret_diameter: f64,
    /// TEMP.
    pub form_factor: f64,
    /// TEMP.
    pub compactness: f64,
}

#[derive(Default)]
struct Acc {
    area: u64,
    bbox: [usize; 4],
    sum: [f64; 2],
    pixels: Vec<(usize, usize)>,
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
    let mut objects: HashMap<u64, Acc> = HashMap::new();
    for (i, &l) in labels.iter().enumerate() {
        let l: u64 = l.into();
        if l == 0 {
            continue;
        }
        let (r, c) = (i / width, i % width);
        let a = objects.entry(l).or_insert_with(|| Acc {
            bbox: [r, c, r + 1, c + 1],
            ..Acc::default()
        });
        a.area += 1;
        a.bbox = [
            a.bbox[0].min(r),
            a.bbox[1].min(c),
            a.bbox[2].max(r + 1),
            a.bbox[3].max(c + 1),
        ];
        a.sum[0] += r as f64;
        a.sum[1] += c as f64;
        a.pixels.push((r, c));
    }
    let mut out: Vec<RegionProps> = objects.into_iter().map(|(label, a)| measure(label, &a)).collect();
    out.sort_by_key(|p| p.label);
    out
}

fn measure(label: u64, a: &Acc) -> RegionProps {
    let n = a.area as f64;
    let centroid = [a.sum[0] / n, a.sum[1] / n];
    // Central moments from exact integer sums: n·μ20 = nΣr² − (Σr)², and so on, so that symmetric
    // objects have exactly equal moments (the orientation formula branches on that).
    let (mut srr, mut scc, mut src, mut sr, mut sc) = (0i128, 0i128, 0i128, 0i128, 0i128);
    for &(r, c) in &a.pixels {
        let (r, c) = (r as i128, c as i128);
        srr += r * r;
        scc += c * c;
        src += r * c;
        sr += r;
        sc += c;
    }
    let k = i128::from(a.area as i64);
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
    let [r0, c0, r1, c1] = a.bbox;
    let (h, w) = (r1 - r0, c1 - c0);
    // The object alone in its bounding box, padded by one pixel of background.
    let (ph, pw) = (h + 2, w + 2);
    let mut image = vec![false; ph * pw];
    for &(r, c) in &a.pixels {
        image[(r - r0 + 1) * pw + (c - c0 + 1)] = true;
    }
    RegionProps {
        label,
        area: a.area,
        bbox: a.bbox,
        centroid,
        major_axis_length: 4.0 * l1.sqrt(),
        minor_axis_length: 4.0 * l2.sqrt(),
        orientation,
        eccentricity,
        equivalent_diameter: (4.0 * n / std::f64::consts::PI).sqrt(),
        extent: n / (h * w) as f64,
        perimeter: perimeter(&image, pw),
        euler_number: euler_number(&image, pw),
        convex_area: 0,
        solidity: 0.0,
        max_feret_diameter: 0.0,
        min_feret_diameter: 0.0,
        form_factor: 0.0,
        compactness: 0.0,
    }
    .with_convex(&image, pw)
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

impl RegionProps {
    /// Fills the convex measurements from the padded object image.
    fn with_convex(mut self, image: &[bool], width: usize) -> Self {
        let height = image.len() / width;
        // Coordinates doubled so that edge midpoints are integers: pixel (r, c) is (2r, 2c).
        let mut points = Vec::new();
        for (i, _) in image.iter().enumerate().filter(|(_, v)| **v) {
            let (r, c) = ((i / width) as i64, (i % width) as i64);
            points.extend([
                (2 * r - 1, 2 * c),
                (2 * r + 1, 2 * c),
                (2 * r, 2 * c - 1),
                (2 * r, 2 * c + 1),
            ]);
        }
        let poly = hull(points);
        let convex: Vec<bool> = (0..image.len())
            .map(|i| inside_or_on(&poly, (2 * (i / width) as i64, 2 * (i % width) as i64)))
            .collect();
        self.convex_area = convex.iter().filter(|v| **v).count() as u64;
        self.solidity = self.area as f64 / self.convex_area.max(1) as f64;
        // Contour points at level 0.5: midpoints between 4-adjacent pixels of differing value (the
        // padding keeps the contour inside the image). Doubled coordinates again.
        let mut contour = Vec::new();
        for r in 0..height {
            for c in 0..width {
                let v = convex[r * width + c];
                if c + 1 < width && convex[r * width + c + 1] != v {
                    contour.push((2 * r as i64, 2 * c as i64 + 1));
                }
                if r + 1 < height && convex[(r + 1) * width + c] != v {
                    contour.push((2 * r as i64 + 1, 2 * c as i64));
                }
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
        self
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

/// Objects (8-connected) minus holes (4-connected background components that do not touch the
/// padded edge) of a padded binary image.
fn euler_number(image: &[bool], width: usize) -> i64 {
    let (_, objects) = connected_components(image, width, Connectivity::Eight);
    let background: Vec<bool> = image.iter().map(|&v| !v).collect();
    // The padding joins all outside background into one component: the rest are holes.
    let (_, background_parts) = connected_components(&background, width, Connectivity::Four);
    objects as i64 - (background_parts as i64 - 1)
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
        let form_factor = 4.0 * pi * p.area as f64 / p.perimeter.powi(2);
        assert!((form_factor - 1.0).abs() < 0.1, "form factor {form_factor}");
        assert_eq!(p.euler_number, 1);
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
