//! 2×2 max pooling with stride 2, forward and backward on NCHW `f32` slices, as burn's `MaxPool2d`
//! without padding computes it: a last odd row or column is dropped, the first of equal values
//! wins, and a NaN wins over any number.
//!
//! burn 0.22's flex backend runs 2-D pooling as 3-D pooling with 64-bit indices; here the forward
//! pass keeps which of its four taps won for every output (one byte), and the backward pass writes
//! each output's gradient to that tap.

use rayon::prelude::*;

use crate::layout::Planes;

/// The output's shape: `[n, c, h/2, w/2]`.
pub fn output(p: Planes) -> Planes {
    Planes {
        h: p.h / 2,
        w: p.w / 2,
        ..p
    }
}

/// The winning value and tap (0..4: row-major in the window) of one window.
fn window(top: &[f32], bottom: &[f32], j: usize) -> (f32, u8) {
    let taps = [top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]];
    let mut best = (taps[0], 0u8);
    for (t, &v) in (1u8..).zip(&taps[1..]) {
        if v > best.0 || v.is_nan() {
            best = (v, t);
        }
    }
    best
}

/// One plane: `out` (`[h/2, w/2]`) and the winning taps.
fn pool_plane(x: &[f32], p: Planes, out: &mut [f32], taps: &mut [u8]) {
    let q = output(p);
    for i in 0..q.h {
        let top = &x[2 * i * p.w..][..p.w];
        let bottom = &x[(2 * i + 1) * p.w..][..p.w];
        for j in 0..q.w {
            (out[i * q.w + j], taps[i * q.w + j]) = window(top, bottom, j);
        }
    }
}

/// Forward: `x` `[n, c, h, w]` → `[n, c, h/2, w/2]` (the taps, a byte per output, dropped).
///
/// # Panics
/// When `x`'s length is not the shape's.
pub fn forward(x: &[f32], p: Planes) -> Vec<f32> {
    forward_with_taps(x, p).0
}

/// Forward, with the winning tap of every output for [`backward`].
pub fn forward_with_taps(x: &[f32], p: Planes) -> (Vec<f32>, Vec<u8>) {
    assert_eq!(x.len(), p.len(), "max pool: input length");
    let q = output(p);
    let (mut out, mut taps) = (vec![0.0; q.len()], vec![0u8; q.len()]);
    if q.is_empty() {
        return (out, taps);
    }
    out.par_chunks_mut(q.area())
        .zip(taps.par_chunks_mut(q.area()))
        .zip(x.par_chunks(p.area()))
        .for_each(|((o, t), xi)| pool_plane(xi, p, o, t));
    (out, taps)
}

/// Input gradient: `grad` `[n, c, h/2, w/2]` and the forward pass's `taps` → `[n, c, h, w]`, where
/// `p` is the input's shape; inputs that won no window get 0.
///
/// # Panics
/// When the lengths are not the shapes'.
pub fn backward(grad: &[f32], p: Planes, taps: &[u8]) -> Vec<f32> {
    let q = output(p);
    assert_eq!(
        (grad.len(), taps.len()),
        (q.len(), q.len()),
        "max pool: gradient length"
    );
    let mut dx = vec![0.0; p.len()];
    if q.is_empty() {
        return dx;
    }
    dx.par_chunks_mut(p.area())
        .zip(grad.par_chunks(q.area()).zip(taps.par_chunks(q.area())))
        .for_each(|(d, (g, t))| {
            for i in 0..q.h {
                for j in 0..q.w {
                    let tap = usize::from(t[i * q.w + j]);
                    let (a, b) = (tap / 2, tap % 2);
                    d[(2 * i + a) * p.w + 2 * j + b] = g[i * q.w + j];
                }
            }
        });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_first_largest_and_routes_the_gradient_back() {
        // One 2×5 plane: windows [1 4 | 2 3], [4 4 | 0 0]; the last column is dropped.
        let p = Planes { n: 1, c: 1, h: 2, w: 5 };
        let x = [1.0, 4.0, 4.0, 4.0, 9.0, 2.0, 3.0, 0.0, 0.0, 9.0];
        let (out, taps) = forward_with_taps(&x, p);
        assert_eq!(
            (out.as_slice(), taps.as_slice()),
            ([4.0, 4.0].as_slice(), [1, 0].as_slice())
        );
        assert_eq!(forward(&x, p), out);
        let dx = backward(&[10.0, 20.0], p, &taps);
        assert_eq!(dx, [0.0, 10.0, 20.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn a_nan_wins_its_window() {
        let p = Planes { n: 1, c: 1, h: 2, w: 2 };
        let (out, taps) = forward_with_taps(&[1.0, 5.0, f32::NAN, 2.0], p);
        assert!(out[0].is_nan());
        assert_eq!(taps, [2]);
    }
}
