//! 3×3 convolution, stride 1, zero padding 1, no bias: forward, input gradient and weight gradient
//! on NCHW `f32` slices.
//!
//! Each image is lowered to columns a band of rows at a time, so that matrix products do the work.
//! Instead of im2col's nine copies of every pixel, a band is copied three times, shifted by one
//! column each way, with a row of halo above and below ([`shifted_rows`]); kernel row `ky`'s
//! columns are then a strided view into those copies, and the band takes one product per kernel
//! row: `out[c_out, px] = Σ_ky weight_ky[c_out, 3·c_in] × col_ky[3·c_in, px]` forward, and
//! `Σ grad[c_out, px] × col_ky[3·c_in, px]ᵀ` per kernel row for the weight gradient (the long pixel
//! dimension is the one summed, per image, and the per-image sums are added in image order). The
//! input gradient is the forward pass of the output gradient with the kernel flipped and its
//! channels swapped.

use rayon::prelude::*;

use crate::gemm::{MatMut, MatRef, Threads, Write, matmul};
use crate::layout::{Planes, Spread, transpose_into};
use crate::scratch;

/// Taps of the kernel.
const TAPS: usize = 9;

/// Pixels per band (whole rows, at least one). gemm reads a band's columns in place, rows a band
/// (plus its two halo rows) apart, when `c_out` is small; bands of a few hundred pixels keep those
/// reads within the TLB's reach (docs/benchmarks.md: with im2col, 512 px against whole images took
/// the three passes from 220/232/218 ms to 134/132/168 ms on one thread).
const BAND_PIXELS: usize = 512;

/// Rows per band for images of width `w`: about [`BAND_PIXELS`], at least one row.
fn band_rows(p: Planes) -> usize {
    (BAND_PIXELS / p.w.max(1)).clamp(1, p.h.max(1))
}

/// Writes rows `r0 − 1..r1 + 1` of one image `x` (`[c, h, w]`) three times, shifted by one column
/// each way: block `ci·3 + kx` of `shifted` (`rows + 2` rows of `w`) holds row `r0 − 1 + rr` of
/// channel `ci` at offset `kx − 1` (0 outside the image). The product for kernel row `ky` then reads
/// its columns in place: row `ci·3 + kx` of that matrix is block `ci·3 + kx` from its row `ky` on,
/// so each input pixel is copied about 3 times instead of im2col's 9.
fn shifted_rows(x: &[f32], p: Planes, r0: usize, r1: usize, shifted: &mut [f32]) {
    let (h, w) = (p.h, p.w);
    let block = (r1 - r0 + 2) * w;
    for ci in 0..p.c {
        let plane = &x[ci * h * w..][..h * w];
        for kx in 0..3 {
            let rows = &mut shifted[(ci * 3 + kx) * block..][..block];
            for (rr, dst) in rows.chunks_exact_mut(w).enumerate() {
                let Some(sr) = (r0 + rr).checked_sub(1).filter(|&sr| sr < h) else {
                    dst.fill(0.0);
                    continue;
                };
                shift_row(&plane[sr * w..][..w], kx, dst);
            }
        }
    }
}

/// The columns of kernel row `ky` for a band of `px` pixels: `[c·3, px]`, rows `block` apart.
fn row_columns(shifted: &[f32], c: usize, ky: usize, w: usize, px: usize) -> MatRef<'_> {
    let block = px + 2 * w;
    MatRef::rows(&shifted[ky * w..], c * 3, px, block)
}

/// `[c_out, c, 3, 3]` → per kernel row `ky`, `[c_out, c·3]` (columns `ci·3 + kx`), rows one after another.
fn split_rows(weight: &[f32], c_out: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0.0; weight.len()];
    for o in 0..c_out {
        for i in 0..c {
            for tap in 0..TAPS {
                let (ky, kx) = (tap / 3, tap % 3);
                out[(ky * c_out + o) * c * 3 + i * 3 + kx] = weight[(o * c + i) * TAPS + tap];
            }
        }
    }
    out
}

/// `dst[j] = src[j + kx − 1]`, 0 where that falls outside the row.
fn shift_row(src: &[f32], kx: usize, dst: &mut [f32]) {
    let w = src.len();
    match kx {
        0 => {
            dst[0] = 0.0;
            dst[1..].copy_from_slice(&src[..w - 1]);
        }
        1 => dst.copy_from_slice(src),
        _ => {
            dst[..w - 1].copy_from_slice(&src[1..]);
            dst[w - 1] = 0.0;
        }
    }
}

/// The bands of rows of an image.
fn bands(p: Planes) -> impl Iterator<Item = (usize, usize)> {
    let rows = band_rows(p);
    (0..p.h).step_by(rows).map(move |r0| (r0, (r0 + rows).min(p.h)))
}

/// One image: `out` (`[c_out, h, w]`) = conv(`x` (`[c, h, w]`), `rows_w` (the weight by kernel
/// row, [`split_rows`])): per band, three products (one per kernel row, `k = c·3`) accumulated.
///
/// (Writing each band pixel-major and scattering it into the planes, as the weight gradient does,
/// made this pass 5–13 % slower: docs/benchmarks.md.)
fn forward_image(x: &[f32], p: Planes, rows_w: &[f32], c_out: usize, out: &mut [f32], threads: Threads) {
    let k = p.c * 3;
    let mut shifted = scratch::take(k * (band_rows(p) + 2) * p.w);
    for (r0, r1) in bands(p) {
        let px = (r1 - r0) * p.w;
        shifted_rows(x, p, r0, r1, &mut shifted);
        for ky in 0..3 {
            matmul(
                MatMut::rows(&mut out[r0 * p.w..], c_out, px, p.area()),
                MatRef::rows(&rows_w[ky * c_out * k..], c_out, k, k),
                row_columns(&shifted, p.c, ky, p.w, px),
                if ky == 0 { Write::Overwrite } else { Write::Accumulate },
                threads,
            );
        }
    }
    scratch::give(shifted);
}

/// Forward: `x` `[n, c, h, w]`, `weight` `[c_out, c, 3, 3]` → `[n, c_out, h, w]`.
///
/// # Panics
/// When the slices do not have the lengths the shapes give.
pub fn forward(x: &[f32], p: Planes, weight: &[f32], c_out: usize) -> Vec<f32> {
    assert_eq!(x.len(), p.len(), "conv3x3: input length");
    assert_eq!(weight.len(), c_out * p.c * TAPS, "conv3x3: weight length");
    let q = p.with_channels(c_out);
    let mut out = vec![0.0; q.len()];
    if q.is_empty() {
        return out;
    }
    let rows_w = split_rows(weight, c_out, p.c);
    match Spread::of(p.n) {
        Spread::Images => out
            .par_chunks_mut(q.image_len())
            .zip(x.par_chunks(p.image_len().max(1)))
            .for_each(|(o, xi)| forward_image(xi, p, &rows_w, c_out, o, Threads::One)),
        Spread::Products => out
            .chunks_mut(q.image_len())
            .zip(x.chunks(p.image_len().max(1)))
            .for_each(|(o, xi)| forward_image(xi, p, &rows_w, c_out, o, Threads::All)),
    }
    out
}

/// Input gradient: `grad` `[n, c_out, h, w]` (of the output), `weight` `[c_out, c, 3, 3]` →
/// `[n, c, h, w]`, where `p` is the input's shape.
pub fn input_grad(grad: &[f32], p: Planes, weight: &[f32], c_out: usize) -> Vec<f32> {
    forward(grad, p.with_channels(c_out), &flip(weight, c_out, p.c), p.c)
}

/// `[c_out, c, 3, 3]` → `[c, c_out, 3, 3]` with each kernel rotated by 180°.
fn flip(weight: &[f32], c_out: usize, c: usize) -> Vec<f32> {
    let mut flipped = vec![0.0; weight.len()];
    for o in 0..c_out {
        for i in 0..c {
            for tap in 0..TAPS {
                flipped[(i * c_out + o) * TAPS + (TAPS - 1 - tap)] = weight[(o * c + i) * TAPS + tap];
            }
        }
    }
    flipped
}

/// One image's weight gradient by kernel row, transposed (`[3, c·3, c_out]`: row `ky`, column
/// `ci·3 + kx`), added to `acc`.
///
/// gemm's micro-kernel is 16 rows by 6 columns and runs down the output's columns. Written this way
/// its 16 rows lie along `c_out` (16, 32, 64 and 128 channels fill them exactly) rather than its 6
/// columns (which 16 and 32 channels leave 11 % idle), and the band's columns are read in place
/// where gemm would otherwise gather them into packed blocks (the pass went from 195 to 147 ms).
/// The band's gradient is transposed once, pixel-major ([`transpose_into`]), so that the three
/// products read it column-major instead of each gathering it from `c_out` planes into gemm's
/// packed panels (docs/benchmarks.md).
fn weight_grad_image(x: &[f32], p: Planes, grad: &[f32], c_out: usize, acc: &mut [f32], threads: Threads) {
    let k = p.c * 3;
    let rows = band_rows(p);
    let mut shifted = scratch::take(k * (rows + 2) * p.w);
    let mut grad_t = scratch::take(c_out * rows * p.w);
    for (r0, r1) in bands(p) {
        let px = (r1 - r0) * p.w;
        shifted_rows(x, p, r0, r1, &mut shifted);
        transpose_into(&grad[r0 * p.w..], (c_out, px, p.area()), &mut grad_t);
        for (ky, acc_row) in acc.chunks_exact_mut(k * c_out).enumerate() {
            matmul(
                MatMut::cols(acc_row, c_out, k, c_out),
                MatRef::strided(&grad_t, c_out, px, 1, c_out),
                row_columns(&shifted, p.c, ky, p.w, px).t(),
                Write::Accumulate,
                threads,
            );
        }
    }
    scratch::give(grad_t);
    scratch::give(shifted);
}

/// `[3, c·3, c_out]` (kernel row, `ci·3 + kx`, output channel) → `[c_out, c, 3, 3]`.
fn join_rows(acc: &[f32], c_out: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0.0; acc.len()];
    for ky in 0..3 {
        for i in 0..c {
            for kx in 0..3 {
                for o in 0..c_out {
                    out[(o * c + i) * TAPS + ky * 3 + kx] = acc[((ky * c + i) * 3 + kx) * c_out + o];
                }
            }
        }
    }
    out
}

/// Weight gradient: `x` `[n, c, h, w]` (the forward input), `grad` `[n, c_out, h, w]` →
/// `[c_out, c, 3, 3]`. Summed per image, then over images in order.
pub fn weight_grad(x: &[f32], p: Planes, grad: &[f32], c_out: usize) -> Vec<f32> {
    assert_eq!(x.len(), p.len(), "conv3x3: input length");
    assert_eq!(grad.len(), p.with_channels(c_out).len(), "conv3x3: gradient length");
    let len = c_out * p.c * TAPS;
    let g_len = c_out * p.area();
    if p.is_empty() || len == 0 {
        return vec![0.0; len];
    }
    let per_image = |i: usize, threads: Threads| {
        let mut acc = vec![0.0; len];
        let xi = &x[i * p.image_len()..][..p.image_len()];
        weight_grad_image(xi, p, &grad[i * g_len..][..g_len], c_out, &mut acc, threads);
        acc
    };
    let partials: Vec<Vec<f32>> = match Spread::of(p.n) {
        Spread::Images => (0..p.n).into_par_iter().map(|i| per_image(i, Threads::One)).collect(),
        Spread::Products => (0..p.n).map(|i| per_image(i, Threads::All)).collect(),
    };
    join_rows(&crate::reduce::sum_in_order(partials), c_out, p.c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_kernel_copies_and_shift_kernel_shifts() {
        // 1 image, 1 channel, 2×3.
        let p = Planes { n: 1, c: 1, h: 2, w: 3 };
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut centre = [0.0; 9];
        centre[4] = 1.0;
        assert_eq!(forward(&x, p, &centre, 1), x);
        // tap (1, 2): out(r, c) = x(r, c + 1)
        let mut right = [0.0; 9];
        right[5] = 1.0;
        assert_eq!(forward(&x, p, &right, 1), [2.0, 3.0, 0.0, 5.0, 6.0, 0.0]);
    }

    #[test]
    fn flip_swaps_channels_and_rotates() {
        let weight: Vec<f32> = (0..18).map(|v| v as f32).collect(); // [c_out 1, c 2, 3, 3]
        let f = flip(&weight, 1, 2);
        assert_eq!(f[0], 8.0);
        assert_eq!(f[8], 0.0);
        assert_eq!(f[9], 17.0);
    }
}
