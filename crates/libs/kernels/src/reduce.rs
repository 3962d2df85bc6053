//! Reductions whose order is fixed, so that results do not depend on how work was scheduled.

use rayon::prelude::*;

/// Elements per parallel task of a reduction.
const CHUNK: usize = 4096;

/// The element-wise sum of `parts` (all the same length), added in index order: element `j` is
/// `((parts[0][j] + parts[1][j]) + parts[2][j]) + …` whatever the thread count.
///
/// # Panics
/// When the parts differ in length.
pub(crate) fn sum_in_order(mut parts: Vec<Vec<f32>>) -> Vec<f32> {
    if parts.is_empty() {
        return Vec::new();
    }
    let mut total = parts.remove(0);
    assert!(
        parts.iter().all(|p| p.len() == total.len()),
        "partial sums differ in length"
    );
    total.par_chunks_mut(CHUNK).enumerate().for_each(|(c, out)| {
        for part in &parts {
            for (o, v) in out.iter_mut().zip(&part[c * CHUNK..]) {
                *o += v;
            }
        }
    });
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_parts_element_wise() {
        assert_eq!(
            sum_in_order(vec![vec![1.0, 2.0], vec![10.0, 20.0], vec![100.0, 200.0]]),
            [111.0, 222.0]
        );
        assert!(sum_in_order(Vec::new()).is_empty());
    }
}
