//! The one place this crate calls `unsafe` code: a bounds-checked, safe front for the gemm crate's
//! raw-pointer matrix multiply (the one burn's flex backend uses too).

// The gemm crate's only entry point takes raw pointers and strides; every call below is preceded by
// checks that each matrix view lies inside its slice, so the rest of the crate stays safe.
#![allow(
    unsafe_code,
    reason = "gemm::gemm takes raw pointers; views are bounds-checked first"
)]

/// A read-only strided matrix view into a slice: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows × cols` matrix whose rows are `rs` elements apart.
    pub(crate) fn rows(data: &'a [f32], rows: usize, cols: usize, rs: usize) -> Self {
        Self::strided(data, rows, cols, rs, 1)
    }

    /// Any strided view.
    pub(crate) fn strided(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        assert!(fits(data.len(), rows, cols, rs, cs), "matrix view out of bounds");
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// The transposed view (no copy).
    pub(crate) fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

/// A writable strided matrix view into a slice.
#[derive(Debug)]
pub(crate) struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatMut<'a> {
    /// A row-major `rows × cols` matrix whose rows are `rs` elements apart.
    pub(crate) fn rows(data: &'a mut [f32], rows: usize, cols: usize, rs: usize) -> Self {
        Self::strided(data, rows, cols, rs, 1)
    }

    /// A column-major `rows × cols` matrix whose columns are `cs` elements apart.
    pub(crate) fn cols(data: &'a mut [f32], rows: usize, cols: usize, cs: usize) -> Self {
        Self::strided(data, rows, cols, 1, cs)
    }

    /// Any strided view.
    fn strided(data: &'a mut [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        assert!(fits(data.len(), rows, cols, rs, cs), "matrix view out of bounds");
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }
}

/// Whether a `rows × cols` view with strides `rs`, `cs` lies inside `len` elements.
fn fits(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    let last = (rows - 1).checked_mul(rs).zip((cols - 1).checked_mul(cs));
    matches!(last, Some((a, b)) if a.checked_add(b).is_some_and(|end| end < len))
}

/// Whether the product may split its work over rayon's threads. The split is over output blocks,
/// never over the summed dimension, so the result does not depend on the thread count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// On the calling thread (the caller already runs in parallel).
    One,
    /// On all of rayon's threads.
    All,
}

/// Whether the product overwrites the destination or adds to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    /// `dst = lhs × rhs`.
    Overwrite,
    /// `dst += lhs × rhs`.
    Accumulate,
}

/// `dst (=|+=) lhs × rhs`.
///
/// # Panics
/// When the shapes do not agree (the views themselves were bounds-checked when made).
pub(crate) fn matmul(dst: MatMut<'_>, lhs: MatRef<'_>, rhs: MatRef<'_>, write: Write, threads: Threads) {
    assert_eq!((dst.rows, dst.cols), (lhs.rows, rhs.cols), "gemm: output shape");
    assert_eq!(lhs.cols, rhs.rows, "gemm: inner dimension");
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if write == Write::Overwrite {
            for i in 0..m {
                for j in 0..n {
                    dst.data[i * dst.rs + j * dst.cs] = 0.0;
                }
            }
        }
        return;
    }
    let parallelism = match threads {
        Threads::One => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(0),
    };
    let s = |v: usize| v as isize;
    // SAFETY: `MatRef::strided` and `MatMut::strided` checked that every element `(i, j)` of each
    // view, at `i * rs + j * cs` with `i < rows` and `j < cols`, lies inside its slice, and the shapes
    // were checked above: gemm reads only `lhs[0..m, 0..k]` and `rhs[0..k, 0..n]` and reads/writes
    // only `dst[0..m, 0..n]`. `dst` is borrowed mutably, so it aliases neither input. Strides fit in
    // `isize` because the offsets they produce are below the slices' lengths.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            s(dst.cs),
            s(dst.rs),
            write == Write::Accumulate,
            lhs.data.as_ptr(),
            s(lhs.cs),
            s(lhs.rs),
            rhs.data.as_ptr(),
            s(rhs.cs),
            s(rhs.rs),
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplies_with_strides_and_accumulates() {
        // [[1, 2], [3, 4]] × [[5, 6], [7, 8]]ᵀ (the right operand given row-major, viewed transposed)
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        let mut out = [1.0; 4];
        let lhs = MatRef::rows(&a, 2, 2, 2);
        let rhs = MatRef::rows(&b, 2, 2, 2).t();
        matmul(
            MatMut::rows(&mut out, 2, 2, 2),
            lhs,
            rhs,
            Write::Accumulate,
            Threads::One,
        );
        assert_eq!(out, [18.0, 24.0, 40.0, 54.0]);
        matmul(
            MatMut::rows(&mut out, 2, 2, 2),
            lhs,
            rhs,
            Write::Overwrite,
            Threads::All,
        );
        assert_eq!(out, [17.0, 23.0, 39.0, 53.0]);
        // The same product written column-major: element (i, j) at j * 2 + i.
        matmul(
            MatMut::cols(&mut out, 2, 2, 2),
            lhs,
            rhs,
            Write::Overwrite,
            Threads::One,
        );
        assert_eq!(out, [17.0, 39.0, 23.0, 53.0]);
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn refuses_a_view_past_the_slice() {
        let a = [0.0; 5];
        let _ = MatRef::rows(&a, 2, 3, 3);
    }
}
