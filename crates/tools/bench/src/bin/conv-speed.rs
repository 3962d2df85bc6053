//! Times the native 3×3 convolution's three passes on the U-Net's layer shapes (depth 3, base 16,
//! batch 8, 128² inputs) and prints GFLOP/s per pass: where docs/benchmarks.md's per-kernel figures
//! come from. `cargo build --release -p cellops -p cellops-bench && target/release/conv-speed [threads]`
//! (built with the same features as the release binaries, so no second build of burn).

use std::time::Instant;

use cellops_kernels::conv3x3;
use cellops_kernels::layout::Planes;

/// (input channels, output channels, side) of each 3×3 convolution.
const LAYERS: [(usize, usize, usize); 14] = [
    (1, 16, 128),
    (16, 16, 128),
    (16, 32, 64),
    (32, 32, 64),
    (32, 64, 32),
    (64, 64, 32),
    (64, 128, 16),
    (128, 128, 16),
    (128, 64, 32),
    (64, 64, 32),
    (64, 32, 64),
    (32, 32, 64),
    (32, 16, 128),
    (16, 16, 128),
];

fn main() {
    let threads = std::env::args().nth(1).and_then(|t| t.parse().ok()).unwrap_or(1);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("pool");
    let mut totals = [0.0f64; 3];
    for (c, c_out, side) in LAYERS {
        let p = Planes {
            n: 8,
            c,
            h: side,
            w: side,
        };
        let x: Vec<f32> = (0..p.len()).map(|i| (i % 97) as f32 / 97.0).collect();
        let w: Vec<f32> = (0..c_out * c * 9).map(|i| (i % 13) as f32 / 13.0).collect();
        let g: Vec<f32> = (0..p.n * c_out * p.area()).map(|i| (i % 31) as f32 / 31.0).collect();
        let flops = 2.0 * (p.n * p.area() * 9 * c * c_out) as f64;
        let time = |f: &dyn Fn()| {
            f();
            let t0 = Instant::now();
            for _ in 0..3 {
                f();
            }
            t0.elapsed().as_secs_f64() / 3.0
        };
        let t = [
            time(&|| drop(conv3x3::forward(&x, p, &w, c_out))),
            time(&|| drop(conv3x3::input_grad(&g, p, &w, c_out))),
            time(&|| drop(conv3x3::weight_grad(&x, p, &g, c_out))),
        ];
        for (total, t) in totals.iter_mut().zip(t) {
            *total += t;
        }
        #[allow(clippy::print_stdout, reason = "a benchmark's report")]
        {
            println!(
                "{c:>4} → {c_out:<4} {side:>4}²  forward {:>6.1}  input grad {:>6.1}  weight grad {:>6.1} GFLOP/s",
                flops / t[0] / 1e9,
                flops / t[1] / 1e9,
                flops / t[2] / 1e9
            );
        }
    }
    #[allow(clippy::print_stdout, reason = "a benchmark's report")]
    {
        println!(
            "total ms: forward {:.1}, input grad {:.1}, weight grad {:.1}",
            totals[0] * 1e3,
            totals[1] * 1e3,
            totals[2] * 1e3
        );
    }
}
