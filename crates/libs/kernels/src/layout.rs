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
    for (i, row) in m.chunks_exact(cols.max(1)).enumerate().take(rows) {
        for (j, &v) in row.iter().enumerate() {
            t[j * rows + i] = v;
        }
    }
    t
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
}
