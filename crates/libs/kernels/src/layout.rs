//! Shapes of the NCHW tensors the kernels read and write.

/// A batch of multi-channel planes, stored `[n, c, h, w]` row-major (burn's layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planes {
    /// Images in the batch.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
}

impl Planes {
    /// Pixels in one plane.
    pub fn area(&self) -> usize {
        self.h * self.w
    }

    /// Elements in one image (all its channels).
    pub fn image_len(&self) -> usize {
        self.c * self.area()
    }

    /// Elements in the batch.
    pub fn len(&self) -> usize {
        self.n * self.image_len()
    }

    /// Whether the batch has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same batch with `c` channels.
    pub fn with_channels(self, c: usize) -> Self {
        Self { c, ..self }
    }
}

/// How a batch's images are spread over threads: one image per task when there are at least as
/// many images as threads (each product on one thread), else one image at a time with each product
/// split over all threads. Fixed for a given batch and thread count, so results are reproducible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spread {
    /// Images in parallel.
    Images,
    /// Products in parallel.
    Products,
}

impl Spread {
    /// The spread for a batch of `n` images on rayon's current pool.
    pub(crate) fn of(n: usize) -> Self {
        if n >= rayon::current_num_threads() {
            Spread::Images
        } else {
            Spread::Products
        }
    }
}

/// A row-major `[rows, cols]` matrix as `[cols, rows]`.
pub(crate) fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    transpose_into(m, (rows, cols, cols), &mut t);
    t
}

/// Rows and columns of one tile of [`transpose_into`]: 8 rows' 8 values are read as rows and
/// written as 8 runs of 8, which the compiler turns into vector shuffles.
const TILE: usize = 8;

/// `out[j·rows + i] = m[i·stride + j]` for `i < rows`, `j < cols`: a row-major matrix whose rows
/// are `stride` apart (e.g. a band of `rows` planes) written column by column, a [`TILE`] ×
/// [`TILE`] tile at a time (element by element, the conv3x3 weight gradient's transpose took twice
/// as long: docs/benchmarks.md).
pub(crate) fn transpose_into(m: &[f32], (rows, cols, stride): (usize, usize, usize), out: &mut [f32]) {
    let (full_rows, full_cols) = (rows - rows % TILE, cols - cols % TILE);
    for i0 in (0..full_rows).step_by(TILE) {
        for j0 in (0..full_cols).step_by(TILE) {
            let mut tile = [[0.0f32; TILE]; TILE];
            for (r, row) in tile.iter_mut().enumerate() {
                row.copy_from_slice(&m[(i0 + r) * stride + j0..][..TILE]);
            }
            for j in 0..TILE {
                let dst = &mut out[(j0 + j) * rows + i0..][..TILE];
                for (r, d) in dst.iter_mut().enumerate() {
                    *d = tile[r][j];
                }
            }
        }
    }
    // The rows below the last full tile, then the columns right of it.
    let tails = (full_rows..rows).flat_map(|i| (0..cols).map(move |j| (i, j)));
    for (i, j) in tails.chain((0..full_rows).flat_map(|i| (full_cols..cols).map(move |j| (i, j)))) {
        out[j * rows + i] = m[i * stride + j];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_moves_every_element() {
        let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 3 × 2
        assert_eq!(transpose(&m, 3, 2), [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        assert_eq!(transpose(&transpose(&m, 3, 2), 2, 3), m);
    }

    #[test]
    fn transpose_into_reads_strided_rows_in_tiles_and_tails() {
        // Two planes of 3 pixels, 4 apart (the fourth is outside the band).
        let band = [1.0, 2.0, 3.0, -1.0, 4.0, 5.0, 6.0];
        let mut out = [0.0; 6];
        transpose_into(&band, (2, 3, 4), &mut out);
        assert_eq!(out, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        // Full tiles and both tails: 11 rows of 13, 20 apart.
        let m: Vec<f32> = (0..11 * 20).map(|v| v as f32).collect();
        let mut out = vec![0.0; 11 * 13];
        transpose_into(&m, (11, 13, 20), &mut out);
        for (i, j) in (0..11).flat_map(|i| (0..13).map(move |j| (i, j))) {
            assert_eq!(out[j * 11 + i], m[i * 20 + j], "row {i}, column {j}");
        }
    }
}
