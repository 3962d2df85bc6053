//! The U-Net (Ronneberger et al., 2015) with the knobs nuclei segmentation needs: depth, width,
//! normalisation, dropout and the upsampling path. Any input size works: the input is padded
//! (reflect) to a multiple of `2^depth` and the output cropped back.

use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::interpolate::{Interpolate2d, Interpolate2dConfig, InterpolateMode};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, GroupNorm, GroupNormConfig, Identity, PaddingConfig2d,
};
use burn::prelude::*;
use burn::tensor::ops::PadMode;

/// Normalisation after each convolution.
#[derive(Config, Debug, PartialEq, Eq)]
pub enum Norm {
    /// Batch normalisation (the classic choice; needs batches of a few images).
    Batch,
    /// Group normalisation (8 groups, or fewer for narrow layers): stable with batch size 1.
    Group,
    /// None.
    None,
}

/// How the decoder doubles the resolution.
#[derive(Config, Debug, PartialEq, Eq)]
pub enum Upsample {
    /// A learned 2x2 transposed convolution (the original U-Net).
    Transposed,
    /// Bilinear interpolation followed by a 3x3 convolution (no checkerboard artefacts).
    Bilinear,
}

/// The network's architecture.
#[derive(Config, Debug)]
pub struct UNetConfig {
    /// Input channels: 1 (grey) or 3 (RGB).
    #[config(default = 1)]
    pub in_channels: usize,
    /// Output channels (logits): 1 = foreground; 2 = foreground and boundary (used by `evaluate`
    /// to split touching nuclei).
    #[config(default = 2)]
    pub out_channels: usize,
    /// Number of down-sampling steps.
    #[config(default = 3)]
    pub depth: usize,
    /// Channels of the first level; each level below doubles them.
    #[config(default = 16)]
    pub base_channels: usize,
    /// Normalisation.
    #[config(default = "Norm::Batch")]
    pub norm: Norm,
    /// Dropout probability in the bottleneck (0 disables it).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Upsampling path.
    #[config(default = "Upsample::Transposed")]
    pub upsample: Upsample,
}

/// A normalisation layer of either kind.
#[derive(Module, Debug)]
pub enum NormLayer {
    /// Batch normalisation.
    Batch(BatchNorm),
    /// Group normalisation.
    Group(GroupNorm),
    /// Nothing.
    Identity(Identity),
}

impl NormLayer {
    fn new(norm: &Norm, channels: usize, device: &Device) -> Self {
        match norm {
            Norm::Batch => NormLayer::Batch(BatchNormConfig::new(channels).init(device)),
            Norm::Group => {
                let groups = (1..=8).rev().find(|g| channels.is_multiple_of(*g)).unwrap_or(1);
                NormLayer::Group(GroupNormConfig::new(groups, channels).init(device))
            }
            Norm::None => NormLayer::Identity(Identity::new()),
        }
    }

    /// Normalisation then ReLU, `[N, C, H, W]` → `[N, C, H, W]` (fused in the native CPU kernel
    /// for batch norm).
    fn forward_relu(&self, x: Tensor<4>) -> Tensor<4> {
        let relu = burn::tensor::activation::relu;
        match self {
            NormLayer::Batch(n) => cellops_kernels::batch_norm(x, n, cellops_kernels::Activation::Relu),
            NormLayer::Group(n) => relu(n.forward(x)),
            NormLayer::Identity(_) => relu(x),
        }
    }
}

/// Two 3x3 convolutions, each followed by normalisation and ReLU.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv1: Conv2d,
    norm1: NormLayer,
    conv2: Conv2d,
    norm2: NormLayer,
}

impl ConvBlock {
    fn new(channels_in: usize, channels_out: usize, norm: &Norm, device: &Device) -> Self {
        let conv = |c_in| {
            Conv2dConfig::new([c_in, channels_out], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .with_bias(*norm == Norm::None)
                .init(device)
        };
        Self {
            conv1: conv(channels_in),
            norm1: NormLayer::new(norm, channels_out, device),
            conv2: conv(channels_out),
            norm2: NormLayer::new(norm, channels_out, device),
        }
    }

    /// `[N, C_in, H, W]` → `[N, C_out, H, W]`.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.norm1.forward_relu(conv3x3(&self.conv1, x));
        self.norm2.forward_relu(conv3x3(&self.conv2, x))
    }
}

/// A 3×3 "same" convolution, `[N, C_in, H, W]` → `[N, C_out, H, W]`: the native CPU kernel where
/// it applies (`cellops_kernels::applies`), burn's module otherwise.
fn conv3x3(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if !cellops_kernels::applies(&x) {
        return conv.forward(x);
    }
    let y = cellops_kernels::conv3x3(x, conv.weight.val());
    match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, -1, 1, 1]),
        None => y,
    }
}

/// A 2×2 stride-2 transposed convolution, `[N, C_in, H, W]` → `[N, C_out, 2H, 2W]`: the native CPU
/// kernel where it applies, burn's module otherwise.
fn up2x2(up: &ConvTranspose2d, x: Tensor<4>) -> Tensor<4> {
    if !cellops_kernels::applies(&x) {
        return up.forward(x);
    }
    let y = cellops_kernels::up2x2(x, up.weight.val());
    match &up.bias {
        Some(bias) => y + bias.val().reshape([1, -1, 1, 1]),
        None => y,
    }
}

/// The 1×1 output convolution (with its bias), `[N, C_in, H, W]` → `[N, C_out, H, W]`: on the CPU
/// kernels' path one matrix product per image, `weight [C_out, C_in] × x [C_in, H·W]` (burn's
/// `conv2d` runs a 1×1 kernel through its general 3-D convolution, layout copies included), burn's
/// module otherwise.
fn head1x1(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if !cellops_kernels::applies(&x) {
        return conv.forward(x);
    }
    let [n, c, h, w] = x.dims();
    let weight = conv.weight.val();
    let c_out = weight.dims()[0];
    let y = weight
        .reshape([1, c_out, c])
        .matmul(x.reshape([n, c, h * w]))
        .reshape([n, c_out, h, w]);
    match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, -1, 1, 1]),
        None => y,
    }
}

/// 2×2 max pooling with stride 2 (how `UNetConfig::init` makes `pool`), `[N, C, H, W]` →
/// `[N, C, H/2, W/2]`: the native CPU kernel where it applies, burn's module otherwise.
fn max_pool2x2(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    if cellops_kernels::applies(&x) {
        cellops_kernels::max_pool2x2(x)
    } else {
        pool.forward(x)
    }
}

/// Bilinear x2 upsampling followed by a 3x3 convolution.
#[derive(Module, Debug)]
pub struct BilinearUp {
    interpolate: Interpolate2d,
    conv: Conv2d,
}

/// One decoder upsampling step.
#[derive(Module, Debug)]
pub enum Up {
    /// 2x2 transposed convolution, stride 2.
    Transposed(ConvTranspose2d),
    /// Bilinear x2, then a 3x3 convolution.
    Bilinear(BilinearUp),
}

impl Up {
    fn new(kind: &Upsample, channels_in: usize, channels_out: usize, device: &Device) -> Self {
        match kind {
            Upsample::Transposed => Up::Transposed(
                ConvTranspose2dConfig::new([channels_in, channels_out], [2, 2])
                    .with_stride([2, 2])
                    .init(device),
            ),
            Upsample::Bilinear => Up::Bilinear(BilinearUp {
                interpolate: Interpolate2dConfig::new()
                    .with_scale_factor(Some([2.0, 2.0]))
                    .with_mode(InterpolateMode::Linear)
                    .init(),
                conv: Conv2dConfig::new([channels_in, channels_out], [3, 3])
                    .with_padding(PaddingConfig2d::Same)
                    .init(device),
            }),
        }
    }

    /// `[N, C_in, H, W]` → `[N, C_out, 2H, 2W]`.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Up::Transposed(t) => up2x2(t, x),
            Up::Bilinear(b) => conv3x3(&b.conv, b.interpolate.forward(x)),
        }
    }
}

/// The U-Net.
#[derive(Module, Debug)]
pub struct UNet {
    encoders: Vec<ConvBlock>,
    pool: MaxPool2d,
    bottleneck: ConvBlock,
    dropout: Dropout,
    ups: Vec<Up>,
    decoders: Vec<ConvBlock>,
    head: Conv2d,
    depth: usize,
}

impl UNetConfig {
    /// The width of [`UNet::style`]: every level's channels and the bottleneck's.
    pub fn style_width(&self) -> usize {
        (0..=self.depth).map(|l| self.base_channels << l).sum()
    }

    /// Builds the network on `device` with freshly initialised weights.
    pub fn init(&self, device: &Device) -> UNet {
        let width = |level: usize| self.base_channels << level;
        let encoders = (0..self.depth)
            .map(|l| {
                let c_in = if l == 0 { self.in_channels } else { width(l - 1) };
                ConvBlock::new(c_in, width(l), &self.norm, device)
            })
            .collect();
        let bottleneck = ConvBlock::new(
            width(self.depth.saturating_sub(1)),
            width(self.depth),
            &self.norm,
            device,
        );
        let ups = (0..self.depth)
            .rev()
            .map(|l| Up::new(&self.upsample, width(l + 1), width(l), device))
            .collect();
        let decoders = (0..self.depth)
            .rev()
            .map(|l| ConvBlock::new(2 * width(l), width(l), &self.norm, device))
            .collect();
        let head = Conv2dConfig::new([width(0), self.out_channels], [1, 1]).init(device);
        UNet {
            encoders,
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            bottleneck,
            dropout: DropoutConfig::new(self.dropout).init(),
            ups,
            decoders,
            head,
            depth: self.depth,
        }
    }
}

impl UNet {
    /// Logits for each output channel.
    ///
    /// `[N, C_in, H, W]` → `[N, C_out, H, W]`, for any `H` and `W`: the input is reflect-padded to a
    /// multiple of `2^depth` (edge-padded where it is too small to reflect) and the output cropped.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let (padded, ph, pw) = self.pad(x);
        let (mut skips, bottom) = self.encode(padded);
        let mut x = self.dropout.forward(bottom);
        for (up, dec) in self.ups.iter().zip(&self.decoders) {
            let skip = skips.pop().expect("one skip per level");
            x = dec.forward(Tensor::cat(vec![up.forward(x), skip], 1));
        }
        let out = head1x1(&self.head, x);
        if ph == 0 && pw == 0 {
            out
        } else {
            let [n, c, _, _] = out.dims();
            out.slice([0..n, 0..c, 0..h, 0..w])
        }
    }

    /// The image's *style*: the mean over space of every encoder level's output and of the
    /// bottleneck's, concatenated (as Cellpose's size model reads its network's style vector).
    ///
    /// `[N, C_in, H, W]` → `[N, S]`, `S` = [`UNetConfig::style_width`].
    pub fn style(&self, x: Tensor<4>) -> Tensor<2> {
        let (padded, _, _) = self.pad(x);
        let (skips, bottom) = self.encode(padded);
        let pooled: Vec<Tensor<2>> = skips
            .into_iter()
            .chain(std::iter::once(bottom))
            .map(|t| {
                let [n, c, _, _] = t.dims();
                t.flatten::<3>(2, 3).mean_dim(2).reshape([n, c])
            })
            .collect();
        Tensor::cat(pooled, 1)
    }

    /// The input reflect-padded to a multiple of `2^depth` (edge-padded where it is too small to
    /// reflect), and the padding added to its height and width.
    fn pad(&self, x: Tensor<4>) -> (Tensor<4>, usize, usize) {
        let [_, _, h, w] = x.dims();
        let m = 1usize << self.depth;
        let (ph, pw) = ((m - h % m) % m, (m - w % m) % m);
        let padded = if ph == 0 && pw == 0 {
            x
        } else if ph < h && pw < w {
            x.pad([(0, ph), (0, pw)], PadMode::Reflect)
        } else {
            x.pad([(0, ph), (0, pw)], PadMode::Edge)
        };
        (padded, ph, pw)
    }

    /// The encoder levels' outputs (the skips, finest first) and the bottleneck's output.
    fn encode(&self, padded: Tensor<4>) -> (Vec<Tensor<4>>, Tensor<4>) {
        let mut skips = Vec::with_capacity(self.depth);
        let mut x = padded;
        for enc in &self.encoders {
            let y = enc.forward(x);
            x = max_pool2x2(&self.pool, y.clone());
            skips.push(y);
        }
        (skips, self.bottleneck.forward(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_size_in_same_size_out() {
        let _rng = crate::flex_rng_lock();
        let device = Device::flex();
        for (upsample, norm) in [(Upsample::Transposed, Norm::Batch), (Upsample::Bilinear, Norm::Group)] {
            let model = UNetConfig::new()
                .with_depth(2)
                .with_base_channels(4)
                .with_upsample(upsample)
                .with_norm(norm)
                .init(&device);
            for (h, w) in [(16, 16), (17, 23), (5, 3), (1, 1)] {
                let x = Tensor::<4>::ones([2, 1, h, w], &device);
                assert_eq!(model.forward(x).dims(), [2, 2, h, w], "{h}x{w}");
            }
        }
    }

    #[test]
    fn style_has_every_level() {
        let _rng = crate::flex_rng_lock();
        let device = Device::flex();
        let config = UNetConfig::new().with_depth(2).with_base_channels(4);
        let model = config.init(&device);
        assert_eq!(config.style_width(), 4 + 8 + 16);
        let x = Tensor::<4>::ones([3, 1, 20, 13], &device);
        assert_eq!(model.style(x).dims(), [3, 28]);
    }

    #[test]
    fn three_channel_input() {
        let _rng = crate::flex_rng_lock();
        let device = Device::flex();
        let model = UNetConfig::new()
            .with_in_channels(3)
            .with_out_channels(1)
            .with_depth(3)
            .with_base_channels(4)
            .init(&device);
        let x = Tensor::<4>::zeros([1, 3, 40, 33], &device);
        assert_eq!(model.forward(x).dims(), [1, 1, 40, 33]);
    }
}
