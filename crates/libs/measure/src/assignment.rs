//! Optimal one-to-one assignment (the Hungarian method with potentials, O(n²·m)).

/// Picks at most one column per row and one row per column so that the summed `score` of the picked
/// pairs is as large as possible, with every row assigned when there are no more rows than columns
/// (and every column otherwise). `score` is row-major, `rows × cols`. Returns `(row, col)` pairs,
/// sorted by row.
///
/// ```
/// use cellops_measure::assignment::maximise;
/// // Greedy would take (0, 0) = 0.9 and then (1, 1) = 0.1; the optimum is 0.8 + 0.8.
/// let score = [0.9, 0.8, 0.8, 0.1];
/// assert_eq!(maximise(&score, 2, 2), vec![(0, 1), (1, 0)]);
/// ```
pub fn maximise(score: &[f64], rows: usize, cols: usize) -> Vec<(usize, usize)> {
    assert_eq!(score.len(), rows * cols, "score must be rows × cols");
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    // The method assigns every row of an n × m cost matrix with n ≤ m: transpose if needed, and
    // minimise the negated score.
    let transposed = rows > cols;
    let (n, m) = if transposed { (cols, rows) } else { (rows, cols) };
    let cost = |i: usize, j: usize| -> f64 {
        // 1-based indices inside the method.
        let (r, c) = if transposed { (j - 1, i - 1) } else { (i - 1, j - 1) };
        -score[r * cols + c]
    };
    let mut u = vec![0f64; n + 1];
    let mut v = vec![0f64; m + 1];
    // p[j]: the row assigned to column j (0 = none); way[j]: the previous column on the path.
    let mut p = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0usize;
        let mut minv = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=m {
                if !used[j] {
                    let cur = cost(i0, j) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut pairs: Vec<(usize, usize)> = (1..=m)
        .filter(|&j| p[j] != 0)
        .map(|j| {
            let (i, j) = (p[j] - 1, j - 1);
            if transposed { (j, i) } else { (i, j) }
        })
        .collect();
    pairs.sort_unstable();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The best total over all one-to-one assignments, by brute force (small sizes only).
    fn brute(score: &[f64], rows: usize, cols: usize) -> f64 {
        fn go(score: &[f64], rows: usize, cols: usize, r: usize, used: &mut Vec<bool>) -> f64 {
            if r == rows {
                return 0.0;
            }
            // Leaving a row unassigned is allowed when rows > cols.
            let mut best = if rows > cols {
                go(score, rows, cols, r + 1, used)
            } else {
                f64::NEG_INFINITY
            };
            for c in 0..cols {
                if !used[c] {
                    used[c] = true;
                    best = best.max(score[r * cols + c] + go(score, rows, cols, r + 1, used));
                    used[c] = false;
                }
            }
            best
        }
        go(score, rows, cols, 0, &mut vec![false; cols])
    }

    proptest! {
        #[test]
        fn matches_brute_force(rows in 0usize..5, cols in 0usize..5, seed in proptest::collection::vec(0u8..=100, 25)) {
            let score: Vec<f64> = seed[..rows * cols].iter().map(|&v| f64::from(v) / 100.0).collect();
            let pairs = maximise(&score, rows, cols);
            prop_assert_eq!(pairs.len(), rows.min(cols));
            let mut seen_r = std::collections::HashSet::new();
            let mut seen_c = std::collections::HashSet::new();
            for &(r, c) in &pairs {
                prop_assert!(seen_r.insert(r) && seen_c.insert(c), "one to one");
            }
            let total: f64 = pairs.iter().map(|&(r, c)| score[r * cols + c]).sum();
            if rows * cols > 0 {
                prop_assert!((total - brute(&score, rows, cols)).abs() < 1e-9);
            }
        }
    }
}
