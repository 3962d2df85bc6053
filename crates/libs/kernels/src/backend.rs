//! The kernels as a burn backend extension: forward passes on the flex backend and, on
//! `Autodiff<Flex>`, backward steps that call the native gradients.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension};
use burn::tensor::TensorData;

use crate::batch_norm::{self, Activation, Affine};
use crate::layout::Planes;
use crate::{conv3x3, pool2x2, up2x2};

/// The statistics a batch normalisation uses and what follows it: an ordinary (non-tensor)
/// argument of [`NativeOps::batch_norm`].
#[derive(Debug, Clone, PartialEq)]
pub struct NormStats {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Variance per channel.
    pub var: Vec<f32>,
    /// Added to the variance.
    pub epsilon: f32,
    /// What follows the normalisation.
    pub activation: Activation,
}

/// The operations the native kernels provide.
#[backend_extension(Flex, Autodiff)]
pub trait NativeOps: Backend {
    /// `x` `[n, c, h, w]`, `weight` `[c_out, c, 3, 3]` → `[n, c_out, h, w]` (stride 1, zero
    /// padding 1, no bias).
    fn conv3x3(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `x` `[n, c, h, w]`, `weight` `[c, c_out, 2, 2]` → `[n, c_out, 2h, 2w]` (transposed, stride
    /// 2, no bias).
    fn up2x2(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
    /// 2×2 max pooling with stride 2: `x` `[n, c, h, w]` → `[n, c, h/2, w/2]`.
    fn max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Per-channel mean and biased variance of `x` `[n, c, h, w]` → `[2, c]`; never differentiated.
    fn channel_stats(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `activation((x − mean)/√(var + ε)·γ + β)` for `x` `[n, c, h, w]`, `gamma`, `beta` `[c]`.
    /// Differentiated (on autodiff) as training-mode batch norm: `stats` must be `x`'s own.
    fn batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: NormStats,
    ) -> FloatTensor<Self>;
}

/// A flex tensor's `f32` elements in row-major order, and its shape.
fn values(t: &FlexTensor) -> (FlexTensor, Vec<usize>) {
    let t = t.to_contiguous();
    let shape = t.layout().shape().to_vec();
    (t, shape)
}

/// The elements of a contiguous `f32` tensor.
fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("native kernels run on contiguous f32 tensors")
}

/// A flex tensor from elements and a shape.
fn tensor(data: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

/// The `[n, c, h, w]` of a 4-D shape.
fn planes(shape: &[usize]) -> Planes {
    Planes {
        n: shape[0],
        c: shape[1],
        h: shape[2],
        w: shape[3],
    }
}

/// Native 3×3 convolution of flex tensors.
fn conv3x3_flex(x: &FlexTensor, weight: &FlexTensor) -> FlexTensor {
    let ((x, xs), (w, ws)) = (values(x), values(weight));
    let p = planes(&xs);
    tensor(conv3x3::forward(slice(&x), p, slice(&w), ws[0]), [p.n, ws[0], p.h, p.w])
}

/// Native 2×2 transposed convolution of flex tensors.
fn up2x2_flex(x: &FlexTensor, weight: &FlexTensor) -> FlexTensor {
    let ((x, xs), (w, ws)) = (values(x), values(weight));
    let p = planes(&xs);
    tensor(
        up2x2::forward(slice(&x), p, slice(&w), ws[1]),
        [p.n, ws[1], 2 * p.h, 2 * p.w],
    )
}

/// Native 2×2 max pooling of a flex tensor.
fn max_pool2x2_flex(x: &FlexTensor) -> FlexTensor {
    let (x, xs) = values(x);
    let q = pool2x2::output(planes(&xs));
    tensor(pool2x2::forward(slice(&x), planes(&xs)), [q.n, q.c, q.h, q.w])
}

/// A flex tensor's elements as a vector.
fn vector(t: &FlexTensor) -> Vec<f32> {
    slice(&values(t).0).to_vec()
}

/// Channel statistics of a flex tensor, as a `[2, c]` tensor.
fn channel_stats_flex(x: &FlexTensor) -> FlexTensor {
    let (x, xs) = values(x);
    let p = planes(&xs);
    let (mut mean, var) = batch_norm::channel_stats(slice(&x), p);
    mean.extend(var);
    FlexTensor::from_data(TensorData::new(mean, [2, p.c]))
}

/// The affine map of a batch normalisation from its parameters and statistics.
fn affine(gamma: &FlexTensor, beta: &FlexTensor, stats: &NormStats) -> Affine {
    Affine {
        mean: stats.mean.clone(),
        var: stats.var.clone(),
        gamma: vector(gamma),
        beta: vector(beta),
        epsilon: stats.epsilon,
    }
}

/// Native batch norm (+ activation) of flex tensors.
fn batch_norm_flex(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor, stats: &NormStats) -> FlexTensor {
    let (x, xs) = values(x);
    let p = planes(&xs);
    let out = batch_norm::forward(slice(&x), p, &affine(gamma, beta, stats), stats.activation);
    tensor(out, [p.n, p.c, p.h, p.w])
}

impl NativeOps for Flex {
    fn max_pool2x2(x: FlexTensor) -> FlexTensor {
        max_pool2x2_flex(&x)
    }

    fn channel_stats(x: FlexTensor) -> FlexTensor {
        channel_stats_flex(&x)
    }

    fn batch_norm(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, stats: NormStats) -> FlexTensor {
        batch_norm_flex(&x, &gamma, &beta, &stats)
    }

    fn conv3x3(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        conv3x3_flex(&x, &weight)
    }

    fn up2x2(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        up2x2_flex(&x, &weight)
    }
}

/// The backward step of [`NativeOps::conv3x3`]; its state is the checkpointed input and weight.
#[derive(Debug)]
struct Conv3x3Step;

impl Backward<Flex, 2> for Conv3x3Step {
    type State = (NodeId, NodeId);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let grad = values(&grads.consume::<Flex>(&ops.node)).0;
        let (x, w) = (
            values(&checkpointer.retrieve_node_output::<FlexTensor>(ops.state.0)),
            values(&checkpointer.retrieve_node_output::<FlexTensor>(ops.state.1)),
        );
        let (p, c_out) = (planes(&x.1), w.1[0]);
        if let Some(node) = node_x {
            let dx = conv3x3::input_grad(slice(&grad), p, slice(&w.0), c_out);
            grads.register::<Flex>(node.id, tensor(dx, [p.n, p.c, p.h, p.w]));
        }
        if let Some(node) = node_w {
            let dw = conv3x3::weight_grad(slice(&x.0), p, slice(&grad), c_out);
            grads.register::<Flex>(node.id, tensor(dw, [c_out, p.c, 3, 3]));
        }
    }
}

/// The backward step of [`NativeOps::up2x2`]; its state is the checkpointed input and weight.
#[derive(Debug)]
struct Up2x2Step;

impl Backward<Flex, 2> for Up2x2Step {
    type State = (NodeId, NodeId);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let grad = values(&grads.consume::<Flex>(&ops.node)).0;
        let (x, w) = (
            values(&checkpointer.retrieve_node_output::<FlexTensor>(ops.state.0)),
            values(&checkpointer.retrieve_node_output::<FlexTensor>(ops.state.1)),
        );
        let (p, c_out) = (planes(&x.1), w.1[1]);
        let (dx, dw) = up2x2::backward(slice(&x.0), p, slice(&w.0), slice(&grad), c_out);
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, tensor(dx, [p.n, p.c, p.h, p.w]));
        }
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, tensor(dw, [p.c, c_out, 2, 2]));
        }
    }
}

/// The backward step of [`NativeOps::max_pool2x2`]; its state is the input's shape and the tap
/// that won each window.
#[derive(Debug)]
struct MaxPoolStep;

impl Backward<Flex, 1> for MaxPoolStep {
    type State = (Planes, Vec<u8>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = values(&grads.consume::<Flex>(&ops.node)).0;
        let (p, taps) = ops.state;
        if let Some(node) = node_x {
            let dx = pool2x2::backward(slice(&grad), p, &taps);
            grads.register::<Flex>(node.id, tensor(dx, [p.n, p.c, p.h, p.w]));
        }
    }
}

/// The backward step of [`NativeOps::batch_norm`] in training mode; its state is the checkpointed
/// input, γ and β, and the batch statistics.
#[derive(Debug)]
struct BatchNormStep;

impl Backward<Flex, 3> for BatchNormStep {
    type State = (NodeId, NodeId, NodeId, NormStats);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = values(&grads.consume::<Flex>(&ops.node)).0;
        let (x_id, gamma_id, beta_id, stats) = ops.state;
        let (x, xs) = values(&checkpointer.retrieve_node_output::<FlexTensor>(x_id));
        let gamma = checkpointer.retrieve_node_output::<FlexTensor>(gamma_id);
        let beta = checkpointer.retrieve_node_output::<FlexTensor>(beta_id);
        let p = planes(&xs);
        let a = affine(&gamma, &beta, &stats);
        let (dx, dgamma, dbeta) = batch_norm::backward(slice(&x), p, &a, stats.activation, slice(&grad));
        let vector = |v: Vec<f32>| FlexTensor::from_data(TensorData::new(v, [p.c]));
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, tensor(dx, [p.n, p.c, p.h, p.w]));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, vector(dgamma));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, vector(dbeta));
        }
    }
}

impl<C: CheckpointStrategy> NativeOps for Autodiff<Flex, C> {
    fn max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match MaxPoolStep.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (input, shape) = values(x.primitive());
                let p = planes(&shape);
                let q = pool2x2::output(p);
                let (out, taps) = pool2x2::forward_with_taps(slice(&input), p);
                prep.finish((p, taps), tensor(out, [q.n, q.c, q.h, q.w]))
            }
            OpsKind::UnTracked(prep) => prep.finish(max_pool2x2_flex(x.primitive())),
        }
    }

    fn channel_stats(x: FloatTensor<Self>) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(channel_stats_flex(x.primitive()))
    }

    fn batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: NormStats,
    ) -> FloatTensor<Self> {
        let out = batch_norm_flex(x.primitive(), gamma.primitive(), beta.primitive(), &stats);
        match BatchNormStep
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (
                    prep.checkpoint(&x),
                    prep.checkpoint(&gamma),
                    prep.checkpoint(&beta),
                    stats,
                );
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn conv3x3(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        match Conv3x3Step
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&weight));
                prep.finish(state, conv3x3_flex(x.primitive(), weight.primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(conv3x3_flex(x.primitive(), weight.primitive())),
        }
    }

    fn up2x2(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        match Up2x2Step
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&weight));
                prep.finish(state, up2x2_flex(x.primitive(), weight.primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(up2x2_flex(x.primitive(), weight.primitive())),
        }
    }
}
