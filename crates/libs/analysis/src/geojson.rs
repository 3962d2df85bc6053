//! The nuclei of an image as GeoJSON that QuPath imports as detections (File › Import objects,
//! or drop the file on the image): a FeatureCollection with one feature per nucleus — a Polygon
//! (a MultiPolygon when the nucleus has parts that meet only at a corner) traced along the pixel
//! edges in the image's pixel coordinates, holes as interior rings ([`cellops_measure::contour`]) —
//! and as properties `objectType: "detection"`, the `classification` (DAB class, else size
//! class) with the overlay's colour, and every numeric column of `objects.csv` under
//! `measurements`, with the same names (`ObjectNumber` is the nucleus' label).

use cellops_measure::contour::{Polygon, polygons};
use cellops_measure::objects::{Cell, ImageMeasurement, Nucleus};
use serde_json::{Map, Value, json};

use crate::overlay;

/// The QuPath class of a nucleus: its DAB class (`negative`, `1+`, `2+`, `3+`), else its size
/// class; `None` when the parameter file defines neither.
fn class_name(n: &Nucleus) -> Option<String> {
    n.stain
        .map(|s| s.class.as_str().to_owned())
        .or_else(|| n.size_class.clone())
}

/// A geometry of one nucleus' parts.
fn geometry(parts: &[Polygon]) -> Value {
    let rings = |p: &Polygon| -> Vec<Vec<[u32; 2]>> { std::iter::once(&p.exterior).chain(&p.holes).cloned().collect() };
    match parts {
        [one] => json!({ "type": "Polygon", "coordinates": rings(one) }),
        many => json!({ "type": "MultiPolygon", "coordinates": many.iter().map(rings).collect::<Vec<_>>() }),
    }
}

/// The numeric columns of a nucleus' row (finite values only: JSON has no NaN).
fn measurements(row: &[(String, Cell)]) -> Map<String, Value> {
    row.iter()
        .filter_map(|(name, cell)| match cell {
            Cell::Int(i) => Some((name.clone(), json!(i))),
            Cell::Float(f) if f.is_finite() => Some((name.clone(), json!(f))),
            _ => None,
        })
        .collect()
}

/// The FeatureCollection of `m`'s nuclei (an image `width` pixels wide), classes coloured as in
/// the overlays (`size_classes`: the parameter file's size class names, in order).
pub fn feature_collection(m: &ImageMeasurement, width: usize, size_classes: &[String]) -> Value {
    let outlines = polygons(&m.labels, width);
    let features: Vec<Value> = m
        .nuclei
        .iter()
        .zip(&m.rows)
        .filter_map(|(n, row)| Some(feature(n, row, outlines.get(&(n.shape.label as u32))?, size_classes)))
        .collect();
    json!({ "type": "FeatureCollection", "features": features })
}

/// One nucleus as a detection: its outline `parts`, its class and its report `row`.
pub fn feature(n: &Nucleus, row: &[(String, Cell)], parts: &[Polygon], size_classes: &[String]) -> Value {
    let mut properties = Map::new();
    properties.insert("objectType".into(), json!("detection"));
    if let Some(name) = class_name(n) {
        properties.insert(
            "classification".into(),
            json!({ "name": name, "color": overlay::colour_of(n, size_classes) }),
        );
    }
    properties.insert("measurements".into(), Value::Object(measurements(row)));
    json!({ "type": "Feature", "geometry": geometry(parts), "properties": properties })
}
