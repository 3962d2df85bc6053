//! Reading back the GeoJSON a stage wrote.

/// The area of a GeoJSON polygon's rings (the shoelace formula; holes, wound the other way,
/// count negative), each ring checked closed.
pub fn polygon_area(rings: &[serde_json::Value]) -> f64 {
    rings
        .iter()
        .map(|ring| {
            let pts: Vec<(f64, f64)> = ring
                .as_array()
                .expect("ring")
                .iter()
                .map(|p| (p[0].as_f64().expect("x"), p[1].as_f64().expect("y")))
                .collect();
            assert_eq!(pts.first(), pts.last(), "a closed ring");
            pts.windows(2).map(|w| w[0].0 * w[1].1 - w[1].0 * w[0].1).sum::<f64>() / 2.0
        })
        .sum()
}
