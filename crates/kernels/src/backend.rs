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

use crate::layout::Planes;
use crate::{conv3x3, up2x2};

/// The operations the native kernels provide.
#[backend_extension(Flex, Autodiff)]
pub trait NativeOps: Backend {
    /// `x` `[n, c, h, w]`, `weight` `[c_out, c, 3, 3]` → `[n, c_out, h, w]` (stride 1, zero
    /// padding 1, no bias).
    fn conv3x3(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `x` `[n, c, h, w]`, `weight` `[c, c_out, 2, 2]` → `[n, c_out, 2h, 2w]` (transposed, stride
    /// 2, no bias).
    fn up2x2(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
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

impl NativeOps for Flex {
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

impl<C: CheckpointStrategy> NativeOps for Autodiff<Flex, C> {
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
