//! The native kernels against burn's generic implementation, forward and gradients, on shapes
//! chosen to catch edge cases (batch 1, one channel, odd and tiny planes, more images than threads).

use burn::tensor::{Device, Tensor, TensorData};
use cellops_kernels::{Activation, KernelPath, with_path};

/// Deterministic values in [-1, 1).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The flex device, with autodiff when `train`.
fn flex(train: bool) -> Device {
    if train {
        Device::flex().autodiff()
    } else {
        Device::flex()
    }
}

fn tensor(shape: [usize; 4], seed: u64, device: &Device) -> Tensor<4> {
    let len = shape.iter().product();
    Tensor::from_data(TensorData::new(values(len, seed), shape), device)
}

/// The output, input gradient and weight gradient of `op` under `path`, for a loss that weighs
/// every output element differently (so that every gradient element is exercised).
fn run(
    path: KernelPath,
    x_shape: [usize; 4],
    w_shape: [usize; 4],
    op: fn(Tensor<4>, Tensor<4>) -> Tensor<4>,
) -> [Vec<f32>; 3] {
    with_path(path, || {
        let device = Device::flex().autodiff();
        let x = tensor(x_shape, 1, &device).require_grad();
        let w = tensor(w_shape, 2, &device).require_grad();
        let y = op(x.clone(), w.clone());
        let weights = tensor(y.dims(), 3, &device);
        let grads = (y.clone() * weights).sum().backward();
        let read = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().expect("f32");
        let dx = x.grad(&grads).expect("input gradient");
        let dw = w.grad(&grads).expect("weight gradient");
        [read(y.inner()), read(dx), read(dw)]
    })
}

fn assert_close(native: &[f32], burn: &[f32], what: &str) {
    assert_eq!(native.len(), burn.len(), "{what}: length");
    let scale = burn.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in native.iter().zip(burn).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * scale,
            "{what}[{i}]: native {a} vs burn {b} (scale {scale})"
        );
    }
}

fn compare(x_shape: [usize; 4], w_shape: [usize; 4], op: fn(Tensor<4>, Tensor<4>) -> Tensor<4>) {
    let native = run(KernelPath::Native, x_shape, w_shape, op);
    let burn = run(KernelPath::Burn, x_shape, w_shape, op);
    for (i, what) in ["output", "input gradient", "weight gradient"].iter().enumerate() {
        assert_close(
            &native[i],
            &burn[i],
            &format!("{what} for x {x_shape:?}, w {w_shape:?}"),
        );
    }
}

const SHAPES: [[usize; 4]; 6] = [
    [1, 1, 1, 1],
    [1, 1, 5, 3],
    [2, 3, 7, 9],
    [1, 4, 16, 2],
    [5, 2, 3, 11],
    [3, 8, 12, 12],
];

#[test]
fn conv3x3_matches_burn() {
    for (i, x) in SHAPES.into_iter().enumerate() {
        let c_out = [1, 2, 4, 3, 1, 16][i];
        compare(x, [c_out, x[1], 3, 3], cellops_kernels::conv3x3);
    }
}

#[test]
fn up2x2_matches_burn() {
    for (i, x) in SHAPES.into_iter().enumerate() {
        let c_out = [1, 3, 2, 1, 4, 4][i];
        compare(x, [x[1], c_out, 2, 2], cellops_kernels::up2x2);
    }
}

#[test]
fn native_path_is_taken_on_flex_only_when_selected() {
    let x = Tensor::<4>::zeros([1, 1, 2, 2], &Device::flex());
    assert!(with_path(KernelPath::Native, || cellops_kernels::applies(&x)));
    assert!(!with_path(KernelPath::Burn, || cellops_kernels::applies(&x)));
    let tracked = Tensor::<4>::zeros([1, 1, 2, 2], &Device::flex().autodiff()).require_grad();
    assert!(with_path(KernelPath::Native, || cellops_kernels::applies(&tracked)));
}

#[test]
fn inference_without_autodiff_matches_burn() {
    let device = Device::flex();
    let x = tensor([2, 3, 9, 10], 4, &device);
    let w = tensor([5, 3, 3, 3], 5, &device);
    let out = |path| {
        with_path(path, || {
            cellops_kernels::conv3x3(x.clone(), w.clone())
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32")
        })
    };
    assert_close(&out(KernelPath::Native), &out(KernelPath::Burn), "inference output");
}

#[test]
fn gradients_are_bit_for_bit_reproducible_on_a_fixed_pool() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
    for x in [[1, 3, 17, 5], [4, 3, 9, 9]] {
        let runs: Vec<_> = (0..3)
            .map(|_| pool.install(|| run(KernelPath::Native, x, [6, 3, 3, 3], cellops_kernels::conv3x3)))
            .collect();
        assert!(runs.iter().all(|r| r == &runs[0]), "conv3x3 for {x:?}");
        let up: Vec<_> = (0..3)
            .map(|_| pool.install(|| run(KernelPath::Native, x, [3, 5, 2, 2], cellops_kernels::up2x2)))
            .collect();
        assert!(up.iter().all(|r| r == &up[0]), "up2x2 for {x:?}");
    }
}

/// Output, input gradient, γ and β gradients and the running statistics after one step of batch
/// norm + `activation` under `path`; `train` puts the layer on an autodiff device.
fn run_batch_norm(path: KernelPath, x_shape: [usize; 4], activation: Activation, train: bool) -> Vec<Vec<f32>> {
    use burn::module::Param;
    use burn::nn::BatchNormConfig;
    let read = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().expect("f32");
    let read4 = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().expect("f32");
    with_path(path, || {
        let device = flex(train);
        let c = x_shape[1];
        let mut bn = BatchNormConfig::new(c).init(&device);
        bn.gamma = Param::from_tensor(Tensor::from_floats(values(c, 7).as_slice(), &device).add_scalar(1.5));
        bn.beta = Param::from_tensor(Tensor::from_floats(values(c, 8).as_slice(), &device));
        bn.running_mean = burn::module::RunningState::new(Tensor::from_floats(values(c, 9).as_slice(), &device));
        bn.running_var = burn::module::RunningState::new(Tensor::from_floats(values(c, 10).as_slice(), &device).abs());
        let x = tensor(x_shape, 11, &device).mul_scalar(3.0).add_scalar(0.5);
        let x = if train { x.require_grad() } else { x };
        let y = cellops_kernels::batch_norm(x.clone(), &bn, activation);
        let mut out = vec![read4(y.clone().inner())];
        if train {
            let grads = (y.clone() * tensor(y.dims(), 12, &device)).sum().backward();
            out.push(read4(x.grad(&grads).expect("dx")));
            out.push(read(bn.gamma.val().grad(&grads).expect("dgamma")));
            out.push(read(bn.beta.val().grad(&grads).expect("dbeta")));
        }
        out.push(read(bn.running_mean.value()));
        out.push(read(bn.running_var.value()));
        out
    })
}

#[test]
fn batch_norm_is_bit_for_bit_reproducible_on_a_fixed_pool() {
    // Sums in lanes and blocks, planes in parallel: the order must not depend on scheduling.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
    for x in [[3, 5, 33, 17], [1, 2, 64, 9]] {
        let runs: Vec<_> = (0..3)
            .map(|_| pool.install(|| run_batch_norm(KernelPath::Native, x, Activation::Relu, true)))
            .collect();
        assert!(runs.iter().all(|r| r == &runs[0]), "batch norm for {x:?}");
    }
}

#[test]
fn batch_norm_matches_burn() {
    for x in [[1, 1, 1, 3], [2, 3, 5, 7], [4, 16, 8, 8], [1, 2, 9, 1]] {
        for activation in [Activation::Relu, Activation::Identity] {
            for train in [true, false] {
                let native = run_batch_norm(KernelPath::Native, x, activation, train);
                let burn = run_batch_norm(KernelPath::Burn, x, activation, train);
                for (i, (a, b)) in native.iter().zip(&burn).enumerate() {
                    assert_close(
                        a,
                        b,
                        &format!("batch norm part {i} for {x:?}, {activation:?}, train {train}"),
                    );
                }
            }
        }
    }
}

/// Output and input gradient of 2×2 max pooling under `path`, on an autodiff device or not;
/// `ties` rounds the input to a few levels so that windows hold equal values.
fn run_max_pool(path: KernelPath, x_shape: [usize; 4], ties: bool, train: bool) -> Vec<Vec<f32>> {
    let read = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().expect("f32");
    with_path(path, || {
        let device = flex(train);
        let x = tensor(x_shape, 13, &device);
        let x = if ties { x.mul_scalar(2.0).round() } else { x };
        let x = if train { x.require_grad() } else { x };
        let y = cellops_kernels::max_pool2x2(x.clone());
        let mut out = vec![read(y.clone().inner())];
        if train {
            let grads = (y.clone() * tensor(y.dims(), 14, &device)).sum().backward();
            out.push(read(x.grad(&grads).expect("dx")));
        }
        out
    })
}

#[test]
fn max_pool_matches_burn_ties_included() {
    // Odd sizes drop their last row or column; rounded inputs make ties, which both paths give to
    // the window's first tap.
    for x in [[1, 1, 2, 2], [1, 1, 5, 3], [2, 3, 7, 9], [5, 2, 4, 11], [3, 8, 12, 12]] {
        for (ties, train) in [(false, true), (true, true), (false, false)] {
            let native = run_max_pool(KernelPath::Native, x, ties, train);
            let burn = run_max_pool(KernelPath::Burn, x, ties, train);
            assert_eq!(native, burn, "max pool for {x:?}, ties {ties}, train {train}");
        }
    }
}

#[test]
fn on_pool_runs_on_a_worker_with_the_callers_path() {
    for path in [KernelPath::Burn, KernelPath::Native] {
        let (on_worker, inside) = with_path(path, || {
            cellops_kernels::on_pool(|| (rayon::current_thread_index().is_some(), cellops_kernels::path()))
        });
        assert!(on_worker);
        assert_eq!(inside, path);
    }
}
