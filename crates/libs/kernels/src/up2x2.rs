//! 2×2 transposed convolution with stride 2 (the U-Net's learned upsampling), no bias: forward and
//! both gradients on NCHW `f32` slices.
//!
//! Each output pixel `(2i + a, 2j + b)` of channel `o` depends on input pixel `(i, j)` alone, so the
//! operation is one matrix product per image, `t[(o, a, b), px] = weightᵀ[(o, a, b), c] × x[c, px]`,
//! followed by interleaving `t`'s four planes per channel into the doubled output. The backward
//! pass de-interleaves the output gradient once and runs both products on it.

use rayon::prelude::*;

use crate::gemm::{MatMut, MatRef, Threads, Write, matmul};
use crate::layout::{Planes, Spread, transpose};
use crate::scratch;

/// Output pixels per input pixel.
const TAPS: usize = 4;

/// `out` (`[c_out, 2h, 2w]`) from `t` (`[c_out·4, h·w]`).
fn interleave(t: &[f32], p: Planes, c_out: usize, out: &mut [f32]) {
    let (h, w) = (p.h, p.w);
    for o in 0..c_out {
        let plane = &mut out[o * 4 * h * w..][..4 * h * w];
        for tap in 0..TAPS {
            let (a, b) = (tap / 2, tap % 2);
            let src = &t[(o * TAPS + tap) * h * w..][..h * w];
            for i in 0..h {
                let row = &mut plane[(2 * i + a) * 2 * w..][..2 * w];
                for (j, v) in src[i * w..][..w].iter().enumerate() {
                    row[2 * j + b] = *v;
                }
            }
        }
    }
}

/// The inverse of [`interleave`]: `t` (`[c_out·4, h·w]`) from `g` (`[c_out, 2h, 2w]`).
fn deinterleave(g: &[f32], p: Planes, c_out: usize, t: &mut [f32]) {
    let (h, w) = (p.h, p.w);
    for o in 0..c_out {
        let plane = &g[o * 4 * h * w..][..4 * h * w];
        for tap in 0..TAPS {
            let (a, b) = (tap / 2, tap % 2);
            let dst = &mut t[(o * TAPS + tap) * h * w..][..h * w];
            for i in 0..h {
                let row = &plane[(2 * i + a) * 2 * w..][..2 * w];
                for (j, v) in dst[i * w..][..w].iter_mut().enumerate() {
                    *v = row[2 * j + b];
                }
            }
        }
    }
}

/// Forward: `x` `[n, c, h, w]`, `weight` `[c, c_out, 2, 2]` → `[n, c_out, 2h, 2w]`.
///
/// # Panics
/// When the slices do not have the lengths the shapes give.
pub fn forward(x: &[f32], p: Planes, weight: &[f32], c_out: usize) -> Vec<f32> {
    assert_eq!(x.len(), p.len(), "up2x2: input length");
    assert_eq!(weight.len(), p.c * c_out * TAPS, "up2x2: weight length");
    let (k, px) = (c_out * TAPS, p.area());
    let out_image = k * px;
    let mut out = vec![0.0; p.n * out_image];
    if out.is_empty() {
        return out;
    }
    let image = |xi: &[f32], o: &mut [f32], threads: Threads| {
        let mut t = scratch::take(k * px);
        matmul(
            MatMut::rows(&mut t, k, px, px),
            MatRef::rows(weight, p.c, k, k).t(),
            MatRef::rows(xi, p.c, px, px),
            Write::Overwrite,
            threads,
        );
        interleave(&t, p, c_out, o);
        scratch::give(t);
    };
    let xs = p.image_len().max(1);
    match Spread::of(p.n) {
        Spread::Images => out
            .par_chunks_mut(out_image)
            .zip(x.par_chunks(xs))
            .for_each(|(o, xi)| image(xi, o, Threads::One)),
        Spread::Products => out
            .chunks_mut(out_image)
            .zip(x.chunks(xs))
            .for_each(|(o, xi)| image(xi, o, Threads::All)),
    }
    out
}

/// Both gradients: `x` `[n, c, h, w]` (the forward input), `weight` `[c, c_out, 2, 2]`, `grad`
/// `[n, c_out, 2h, 2w]` → (input gradient `[n, c, h, w]`, weight gradient `[c, c_out, 2, 2]`).
/// The weight gradient is summed per image, then over images in order.
pub fn backward(x: &[f32], p: Planes, weight: &[f32], grad: &[f32], c_out: usize) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), p.len(), "up2x2: input length");
    assert_eq!(grad.len(), p.n * c_out * TAPS * p.area(), "up2x2: gradient length");
    let (k, px) = (c_out * TAPS, p.area());
    let mut dx = vec![0.0; p.len()];
    if dx.is_empty() || k == 0 {
        return (dx, vec![0.0; p.c * k]);
    }
    let image = |i: usize, dxi: &mut [f32], threads: Threads| {
        let mut t = scratch::take(k * px);
        deinterleave(&grad[i * k * px..][..k * px], p, c_out, &mut t);
        let tm = MatRef::rows(&t, k, px, px);
        matmul(
            MatMut::rows(dxi, p.c, px, px),
            MatRef::rows(weight, p.c, k, k),
            tm,
            Write::Overwrite,
            threads,
        );
        // Transposed (`[k, c]`), as conv3x3's weight gradient and for its reason: gemm's 16-row
        // side along the channels, the gradient's columns read in place.
        let mut dw = vec![0.0; p.c * k];
        let xi = MatRef::rows(&x[i * p.image_len()..][..p.image_len()], p.c, px, px);
        matmul(
            MatMut::cols(&mut dw, p.c, k, p.c),
            xi,
            tm.t(),
            Write::Overwrite,
            threads,
        );
        scratch::give(t);
        dw
    };
    let partials: Vec<Vec<f32>> = match Spread::of(p.n) {
        Spread::Images => dx
            .par_chunks_mut(p.image_len())
            .enumerate()
            .map(|(i, d)| image(i, d, Threads::One))
            .collect(),
        Spread::Products => dx
            .chunks_mut(p.image_len())
            .enumerate()
            .map(|(i, d)| image(i, d, Threads::All))
            .collect(),
    };
    (dx, transpose(&crate::reduce::sum_in_order(partials), k, p.c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pixel_spreads_its_kernel_over_a_2x2_block() {
        let p = Planes { n: 1, c: 1, h: 1, w: 1 };
        let weight = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(forward(&[2.0], p, &weight, 1), [2.0, 4.0, 6.0, 8.0]);
        let (dx, dw) = backward(&[2.0], p, &weight, &[1.0, 0.0, 0.0, 1.0], 1);
        assert_eq!(dx, [5.0]);
        assert_eq!(dw, [2.0, 0.0, 0.0, 2.0]);
    }
}
