//! Batch normalisation with an optional ReLU fused in, on NCHW `f32` slices: channel statistics,
//! the forward pass with batch or running statistics, and the training backward pass in two passes
//! over the data (burn's generic path runs a chain of reshapes, transposes and reductions).
//!
//! Sums run per plane over [`LANES`] independent `f32` accumulators within blocks of [`BLOCK`]
//! elements (so the compiler vectorises them), in `f64` across blocks, and are added over images in
//! index order, so results do not depend on the thread count.

use rayon::prelude::*;

use crate::layout::Planes;

/// Elements summed in `f32` before the running sum (in `f64`) takes them.
const BLOCK: usize = 256;

/// Independent `f32` accumulators within a block: element `j` of a block goes to lane `j % LANES`,
/// and the lanes are added in order. A single running `f32` sum is one dependent addition per
/// element, which the compiler may not reorder; 16 lanes fill the vector units (the statistics and
/// backward sums took 12 % of a training step before: docs/benchmarks.md).
const LANES: usize = 16;

/// What follows the normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Nothing.
    Identity,
    /// `max(0, ·)`.
    Relu,
}

impl Activation {
    fn apply(self, v: f32) -> f32 {
        match self {
            Activation::Identity => v,
            Activation::Relu => v.max(0.0),
        }
    }

    /// The derivative's factor at pre-activation `z` (ReLU's at 0 is 0, as burn's).
    fn passes(self, z: f32) -> bool {
        match self {
            Activation::Identity => true,
            Activation::Relu => z > 0.0,
        }
    }
}

/// Per-channel sums of `f(plane)` over a batch, planes in parallel, images added in order.
fn channel_sums<const K: usize>(p: Planes, f: impl Fn(usize, usize) -> [f64; K] + Sync) -> Vec<[f64; K]> {
    let planes: Vec<[f64; K]> = (0..p.n * p.c).into_par_iter().map(|i| f(i / p.c, i % p.c)).collect();
    let mut sums = vec![[0.0; K]; p.c];
    for (i, s) in planes.iter().enumerate() {
        for k in 0..K {
            sums[i % p.c][k] += s[k];
        }
    }
    sums
}

/// One plane of a batch.
fn plane(data: &[f32], p: Planes, n: usize, c: usize) -> &[f32] {
    &data[(n * p.c + c) * p.area()..][..p.area()]
}

/// `Σ f(v)` over one block in [`LANES`] accumulators, added in lane order.
fn lane_sum(block: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let mut chunks = block.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l += f(v);
        }
    }
    for (l, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *l += f(v);
    }
    lanes.iter().sum()
}

/// `Σ f(v)`, in [`lane_sum`]s of [`BLOCK`] elements and `f64` across them.
fn blocked_sum(values: &[f32], f: impl Fn(f32) -> f32 + Copy) -> f64 {
    values.chunks(BLOCK).map(|b| f64::from(lane_sum(b, f))).sum()
}

/// `(Σ g, Σ g·x̂)` over one block of `x` and `grad` in [`LANES`] accumulators each, where
/// `g = grad` where the activation passed (`z = x·scale + shift`) and 0 elsewhere, and
/// `x̂ = (x − mean)·inv_std`.
fn lane_sums_backward(xs: &[f32], gs: &[f32], c: &Channel, act: Activation) -> (f32, f32) {
    let (mut sum, mut dot) = ([0.0f32; LANES], [0.0f32; LANES]);
    let mut add = |lane: usize, v: f32, g: f32| {
        let g = if act.passes(v * c.scale + c.shift) { g } else { 0.0 };
        sum[lane] += g;
        dot[lane] += g * ((v - c.mean) * c.inv_std);
    };
    let (xc, gc) = (xs.chunks_exact(LANES), gs.chunks_exact(LANES));
    let (xr, gr) = (xc.remainder(), gc.remainder());
    for (x16, g16) in xc.zip(gc) {
        for lane in 0..LANES {
            add(lane, x16[lane], g16[lane]);
        }
    }
    for (lane, (&v, &g)) in xr.iter().zip(gr).enumerate() {
        add(lane, v, g);
    }
    (sum.iter().sum(), dot.iter().sum())
}

/// Per-channel mean and biased variance of `x` (`[n, c, h, w]`): (mean, variance).
pub fn channel_stats(x: &[f32], p: Planes) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), p.len(), "batch norm: input length");
    let count = (p.n * p.area()).max(1) as f64;
    let sums = channel_sums(p, |n, c| [blocked_sum(plane(x, p, n, c), |v| v)]);
    let mean: Vec<f64> = sums.iter().map(|s| s[0] / count).collect();
    let squares = channel_sums(p, |n, c| {
        let m = mean[c] as f32;
        [blocked_sum(plane(x, p, n, c), |v| (v - m) * (v - m))]
    });
    let var = squares.iter().map(|s| (s[0] / count) as f32).collect();
    (mean.iter().map(|&m| m as f32).collect(), var)
}

/// The normalisation's per-channel statistics and parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Affine {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Variance per channel.
    pub var: Vec<f32>,
    /// Scale γ per channel.
    pub gamma: Vec<f32>,
    /// Shift β per channel.
    pub beta: Vec<f32>,
    /// Added to the variance.
    pub epsilon: f32,
}

impl Affine {
    fn inv_std(&self, c: usize) -> f32 {
        1.0 / (self.var[c] + self.epsilon).sqrt()
    }

    /// Channel `c`'s constants.
    fn channel(&self, c: usize) -> Channel {
        let (scale, shift) = self.scale_shift(c);
        Channel {
            scale,
            shift,
            mean: self.mean[c],
            inv_std: self.inv_std(c),
        }
    }

    /// `z = x̂·γ + β` as one multiply-add per element: (scale, shift).
    fn scale_shift(&self, c: usize) -> (f32, f32) {
        let scale = self.inv_std(c) * self.gamma[c];
        (scale, self.beta[c] - self.mean[c] * scale)
    }
}

/// One channel's constants in the backward pass.
#[derive(Debug, Clone, Copy)]
struct Channel {
    /// `z = x·scale + shift`.
    scale: f32,
    /// See `scale`.
    shift: f32,
    /// The batch mean.
    mean: f32,
    /// `1/√(var + ε)`.
    inv_std: f32,
}

/// Forward: `act((x − mean)/√(var + ε)·γ + β)` for `x` `[n, c, h, w]`.
pub fn forward(x: &[f32], p: Planes, a: &Affine, act: Activation) -> Vec<f32> {
    assert_eq!(x.len(), p.len(), "batch norm: input length");
    let mut out = vec![0.0; p.len()];
    out.par_chunks_mut(p.area().max(1))
        .zip(x.par_chunks(p.area().max(1)))
        .enumerate()
        .for_each(|(i, (o, xi))| {
            let (scale, shift) = a.scale_shift(i % p.c.max(1));
            for (o, &v) in o.iter_mut().zip(xi) {
                *o = act.apply(v * scale + shift);
            }
        });
    out
}

/// Gradients of the training forward pass (batch statistics `a.mean`, `a.var` of `x` itself):
/// (input gradient, γ gradient, β gradient).
pub fn backward(x: &[f32], p: Planes, a: &Affine, act: Activation, grad: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!((x.len(), grad.len()), (p.len(), p.len()), "batch norm: lengths");
    // dz = grad where the activation passed (z = x·scale + shift); x̂ = (x − mean)·inv_std.
    let sums = channel_sums(p, |n, c| {
        let ch = a.channel(c);
        let (mut sum, mut dot) = (0.0f64, 0.0f64);
        for (xs, gs) in plane(x, p, n, c).chunks(BLOCK).zip(plane(grad, p, n, c).chunks(BLOCK)) {
            let (s, d) = lane_sums_backward(xs, gs, &ch, act);
            sum += f64::from(s);
            dot += f64::from(d);
        }
        [sum, dot]
    });
    let count = (p.n * p.area()).max(1) as f32;
    let dbeta: Vec<f32> = sums.iter().map(|s| s[0] as f32).collect();
    let dgamma: Vec<f32> = sums.iter().map(|s| s[1] as f32).collect();
    let mut dx = vec![0.0; p.len()];
    dx.par_chunks_mut(p.area().max(1)).enumerate().for_each(|(i, out)| {
        let (n, c) = (i / p.c, i % p.c);
        let (scale, shift) = a.scale_shift(c);
        let (mean, inv_std) = (a.mean[c], a.inv_std(c));
        let k = a.gamma[c] * inv_std;
        let (mb, mg) = (dbeta[c] / count, dgamma[c] / count);
        for ((o, &v), &g) in out.iter_mut().zip(plane(x, p, n, c)).zip(plane(grad, p, n, c)) {
            let g = if act.passes(v * scale + shift) { g } else { 0.0 };
            *o = k * (g - mb - (v - mean) * inv_std * mg);
        }
    });
    (dx, dgamma, dbeta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_each_channel_and_clamps_with_relu() {
        // 1 image, 2 channels of 2 pixels.
        let p = Planes { n: 1, c: 2, h: 1, w: 2 };
        let x = [1.0, 3.0, 10.0, 12.0];
        let (mean, var) = channel_stats(&x, p);
        assert_eq!((mean.clone(), var.clone()), (vec![2.0, 11.0], vec![1.0, 1.0]));
        let a = Affine {
            mean,
            var,
            gamma: vec![1.0, 1.0],
            beta: vec![0.0, 0.5],
            epsilon: 0.0,
        };
        assert_eq!(forward(&x, p, &a, Activation::Relu), [0.0, 1.0, 0.0, 1.5]);
        assert_eq!(forward(&x, p, &a, Activation::Identity)[0], -1.0);
    }

    #[test]
    fn statistics_hold_for_a_large_offset_and_a_ragged_length() {
        // 1,001 values 1000 ± 1 (the last +1): mean 1000 + 1/1001, variance 1 − (1/1001)².
        let n = 1001;
        let x: Vec<f32> = (0..n).map(|i| if i % 2 == 0 { 1001.0 } else { 999.0 }).collect();
        let (mean, var) = channel_stats(&x, Planes { n: 1, c: 1, h: 1, w: n });
        let m = 1000.0 + 1.0 / n as f64;
        assert!((f64::from(mean[0]) - m).abs() < 1e-4, "mean {}", mean[0]);
        assert!(
            (f64::from(var[0]) - (1.0 - (1.0 / n as f64).powi(2))).abs() < 1e-4,
            "variance {}",
            var[0]
        );
    }
}
