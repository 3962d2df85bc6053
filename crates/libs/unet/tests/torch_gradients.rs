//! One training step of a small U-Net against PyTorch: the loss, every parameter's gradient and the
//! batch-norm running statistics after the forward pass reproduce the fixture written by
//! `bench/unet_grad_fixture.py` (PyTorch, same architecture and loss), on the native CPU kernels and
//! on burn's generic path.
//!
//! Tolerance: each gradient tensor agrees to `1e-5 · max(1e-2, max |torch gradient|)` element-wise,
//! the loss to `1e-5` relative, running statistics to `1e-5` absolute (the running variance converted
//! from PyTorch's unbiased update to burn's biased one: [`Entry::burn_after`]). Measured when the
//! fixture was made: gradients within 1.7e-6 on both paths; changing one weight of the model by 1 %
//! moves gradients by up to 8e-5, which `a_wrong_weight_is_caught` checks is seen.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use cellops_kernels::{KernelPath, with_path};
use cellops_unet::training::LossConfig;
use cellops_unet::{Norm, UNet, UNetConfig};
use serde::Deserialize;

const FIXTURE: &str = include_str!("data/torch_unet_step.json");

#[derive(Deserialize)]
struct Fixture {
    config: Config,
    input: Vec<f32>,
    target: Vec<f32>,
    loss: f32,
    tensors: Vec<Entry>,
}

#[derive(Deserialize)]
struct Config {
    in_channels: usize,
    out_channels: usize,
    depth: usize,
    base: usize,
    batch: usize,
    size: usize,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    shape: Vec<usize>,
    value: Vec<f32>,
    /// The gradient (trainable parameters).
    grad: Option<Vec<f32>>,
    /// The value after the forward pass (batch-norm running statistics).
    after: Option<Vec<f32>>,
    /// How many values per channel the batch norm averaged (batch × height × width).
    count: Option<usize>,
}

/// burn's batch-norm momentum (PyTorch's default too).
const MOMENTUM: f32 = 0.1;

impl Entry {
    /// The running statistic as burn updates it. PyTorch updates the running variance with the
    /// unbiased batch variance `var·n/(n − 1)`, burn (and so our kernel) with the biased `var`:
    /// `burn = (1 − m)·before + (torch − (1 − m)·before)·(n − 1)/n`. Means agree as they are.
    fn burn_after(&self) -> Option<Vec<f32>> {
        let after = self.after.as_ref()?;
        if !self.name.ends_with("running_var") {
            return Some(after.clone());
        }
        let n = self.count? as f32;
        let kept = |b: f32| (1.0 - MOMENTUM) * b;
        Some(
            self.value
                .iter()
                .zip(after)
                .map(|(&b, &t)| kept(b) + (t - kept(b)) * (n - 1.0) / n)
                .collect(),
        )
    }
}

fn fixture() -> Fixture {
    serde_json::from_str(FIXTURE).expect("fixture parses")
}

/// Replaces every tensor of a module, in visit order, with the fixture's values (shapes checked).
struct Load<'a> {
    entries: &'a [Entry],
    next: usize,
}

impl ModuleMapper for Load<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let entry = &self.entries[self.next];
        self.next += 1;
        param.map(|t| {
            assert_eq!(t.dims().to_vec(), entry.shape, "shape of {}", entry.name);
            let grad = t.is_require_grad();
            Tensor::from_data(TensorData::new(entry.value.clone(), t.dims()), &t.device()).set_require_grad(grad)
        })
    }
}

/// Every tensor of a module in visit order: its values or, with `grads`, its gradient where it has one.
struct Collect<'a> {
    grads: Option<&'a GradientsParams>,
    out: Vec<Option<Vec<f32>>>,
}

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let read = |t: Tensor<D>| t.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32");
        self.out.push(match self.grads {
            Some(grads) => grads.get::<D>(param.id).map(read),
            None => Some(read(param.val())),
        });
    }
}

/// [`Collect`] over `module`.
fn collect(module: &impl Module, grads: Option<&GradientsParams>) -> Vec<Option<Vec<f32>>> {
    let mut c = Collect { grads, out: Vec::new() };
    module.visit(&mut c);
    c.out
}

struct Step {
    loss: f32,
    tensors: Vec<(Vec<f32>, Option<Vec<f32>>)>,
}

/// Loads the fixture's weights into our U-Net, runs forward, loss and backward on `path`.
fn step(f: &Fixture, path: KernelPath) -> Step {
    with_path(path, || {
        let c = &f.config;
        let device = Device::flex().autodiff();
        let config = UNetConfig::new()
            .with_in_channels(c.in_channels)
            .with_out_channels(c.out_channels)
            .with_depth(c.depth)
            .with_base_channels(c.base)
            .with_norm(Norm::Batch);
        let mut load = Load {
            entries: &f.tensors,
            next: 0,
        };
        let model: UNet = config.init(&device).map(&mut load);
        assert_eq!(
            load.next,
            f.tensors.len(),
            "every fixture tensor has a place in the model"
        );
        let shape = |channels| [c.batch, channels, c.size, c.size];
        let x = Tensor::<4>::from_data(TensorData::new(f.input.clone(), shape(c.in_channels)), &device);
        let y = Tensor::<4>::from_data(TensorData::new(f.target.clone(), shape(c.out_channels)), &device);
        let loss = LossConfig::new().loss(model.forward(x), y, cellops_unet::data::Boundary::Contact);
        let value: f32 = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        // Batch norm's running statistics are updated per thread and merged when the model
        // changes mode: read values from the inference copy, gradients from the training model.
        let values = collect(&model.valid(), None).into_iter().map(|v| v.expect("a value"));
        Step {
            loss: value,
            tensors: values.zip(collect(&model, Some(&grads))).collect(),
        }
    })
}

/// The largest element-wise difference between `ours` and `torch`, relative to `floor.max(max |torch|)`.
fn relative_error(ours: &[f32], torch: &[f32], floor: f32) -> f32 {
    assert_eq!(ours.len(), torch.len(), "length");
    let scale = torch.iter().fold(floor, |m, v| m.max(v.abs()));
    ours.iter().zip(torch).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max) / scale
}

fn check(f: &Fixture, s: &Step, what: &str) {
    assert!(
        (s.loss - f.loss).abs() <= 1e-5 * f.loss.abs(),
        "{what}: loss {} vs torch {}",
        s.loss,
        f.loss
    );
    assert_eq!(s.tensors.len(), f.tensors.len(), "{what}: tensor count");
    for (entry, (value, grad)) in f.tensors.iter().zip(&s.tensors) {
        match (&entry.grad, grad, entry.burn_after()) {
            (Some(torch), Some(ours), None) => {
                let e = relative_error(ours, torch, 1e-2);
                assert!(
                    e <= 1e-5,
                    "{what}: gradient of {} off by {e:.2e} (relative)",
                    entry.name
                );
            }
            (None, None, Some(torch)) => {
                let e = relative_error(value, &torch, 1.0);
                assert!(e <= 1e-5, "{what}: running statistic {} off by {e:.2e}", entry.name);
            }
            _ => panic!(
                "{what}: {} is a parameter in one model and a buffer in the other",
                entry.name
            ),
        }
    }
}

#[test]
fn native_kernels_reproduce_torch_gradients() {
    let f = fixture();
    check(&f, &step(&f, KernelPath::Native), "native kernels");
}

#[test]
fn burn_generic_path_reproduces_torch_gradients() {
    let f = fixture();
    check(&f, &step(&f, KernelPath::Burn), "burn's generic path");
}

/// The comparison is sharp enough to see one changed weight: perturbing a single weight of the
/// bottleneck's second convolution by 1 % of its value moves some gradient past the tolerance.
#[test]
fn a_wrong_weight_is_caught() {
    let mut f = fixture();
    let reference = fixture();
    let deepest = f
        .tensors
        .iter_mut()
        .filter(|e| e.grad.is_some() && e.shape.len() == 4)
        .nth(5)
        .expect("a conv");
    deepest.value[0] *= 1.01;
    let s = step(&f, KernelPath::Native);
    let result = std::panic::catch_unwind(|| check(&reference, &s, "perturbed"));
    assert!(result.is_err(), "a perturbed weight went unnoticed");
}
