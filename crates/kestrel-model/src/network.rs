//! Kestrel's network: a compact residual CNN, fully convolutional so that detection can run
//! it densely over a whole tile. Normalized chips are small (a few dozen pixels) and alike in
//! scale and pose, so a few channels suffice: a stride-2 stem, then two residual stages that
//! each halve the resolution (total stride 8), and 1×1 heads per output cell — objectness
//! over classes (background included), heading as (sin, cos) of θ or 2θ, log object
//! length/width in metres, and (in models trained since it was added) the object centre's
//! offset from the chip's centre. Training reads the heads at the chip's centre cell;
//! detection reads every cell.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// Architecture of the network: what the model package records.
#[derive(Config, Debug, PartialEq)]
pub struct NetworkConfig {
    /// Input channels (bands, later height channels).
    pub in_channels: usize,
    /// Object classes, background excluded.
    pub classes: usize,
    /// Channels of the stem and of the two stages.
    #[config(default = "[16, 32, 64]")]
    pub widths: [usize; 3],
    /// Whether the network has the offset head (packages written before it have not).
    #[config(default = false)]
    pub offset_head: bool,
}

/// Output stride of the network: one output cell per this many input pixels.
pub const STRIDE: usize = 8;

#[derive(Module, Debug)]
pub struct ConvBn {
    pub(crate) conv: Conv2d,
    pub(crate) bn: BatchNorm,
}

impl ConvBn {
    fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        ConvBn {
            conv: Conv2dConfig::new([cin, cout], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(cout).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.bn.forward(self.conv.forward(x)))
    }
}

/// A basic residual block (two 3×3 convolutions), with a strided 1×1 projection on the
/// skip path when the shape changes.
#[derive(Module, Debug)]
pub struct Residual {
    pub(crate) first: ConvBn,
    pub(crate) second: Conv2d,
    pub(crate) second_bn: BatchNorm,
    pub(crate) skip: Option<Conv2d>,
}

impl Residual {
    fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        Residual {
            first: ConvBn::new(cin, cout, stride, device),
            second: Conv2dConfig::new([cout, cout], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            second_bn: BatchNormConfig::new(cout).init(device),
            skip: (cin != cout || stride != 1).then(|| {
                Conv2dConfig::new([cin, cout], [1, 1])
                    .with_stride([stride, stride])
                    .with_bias(false)
                    .init(device)
            }),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self
            .second_bn
            .forward(self.second.forward(self.first.forward(x.clone())));
        let s = match &self.skip {
            Some(p) => p.forward(x),
            None => x,
        };
        relu(y + s)
    }
}

/// The three heads' outputs, each `[batch, channels, rows, cols]`.
pub struct Outputs {
    /// Logits over background (index 0) and the classes.
    pub class_logits: Tensor<4>,
    /// (sin, cos) of the heading (θ for directed classes, 2θ for axis classes).
    pub heading: Tensor<4>,
    /// ln(length_m), ln(width_m).
    pub size: Tensor<4>,
    /// Where the object's centre lies from the chip's centre, in output cells (STRIDE
    /// network pixels), along the chip's right and down; when the network has the head.
    pub offset: Option<Tensor<4>>,
}

#[derive(Module, Debug)]
pub struct Network {
    pub(crate) stem: ConvBn,
    pub(crate) stage1: Residual,
    pub(crate) stage1b: Residual,
    pub(crate) stage2: Residual,
    pub(crate) stage2b: Residual,
    pub(crate) head_class: Conv2d,
    pub(crate) head_heading: Conv2d,
    pub(crate) head_size: Conv2d,
    pub(crate) head_offset: Option<Conv2d>,
}

/// Channel counts a network may have per stage: the CLI and the HTTP API accept these.
pub const WIDTH_RANGE: std::ops::RangeInclusive<usize> = 1..=512;

/// `widths` as the three channel counts of stem and stages, when there are three and each
/// lies in [`WIDTH_RANGE`].
pub fn checked_widths(widths: &[usize]) -> Option<[usize; 3]> {
    match *widths {
        [a, b, c] if [a, b, c].iter().all(|w| WIDTH_RANGE.contains(w)) => Some([a, b, c]),
        _ => None,
    }
}

impl NetworkConfig {
    pub fn init(&self, device: &Device) -> Network {
        let [w0, w1, w2] = self.widths;
        let head = |cout: usize| Conv2dConfig::new([w2, cout], [1, 1]).init(device);
        Network {
            stem: ConvBn::new(self.in_channels, w0, 2, device),
            stage1: Residual::new(w0, w1, 2, device),
            stage1b: Residual::new(w1, w1, 1, device),
            stage2: Residual::new(w1, w2, 2, device),
            stage2b: Residual::new(w2, w2, 1, device),
            head_class: head(self.classes + 1),
            head_heading: head(2),
            head_size: head(2),
            head_offset: self.offset_head.then(|| head(2)),
        }
    }

    /// Multiply–accumulates per output cell: the network's cost is this times
    /// 2 FLOP/MAC per cell, and there is one cell per STRIDE² input pixels.
    pub fn macs_per_output_cell(&self) -> u64 {
        let [w0, w1, w2] = self.widths.map(|w| w as u64);
        let c = self.in_channels as u64;
        let k = 9u64;
        // Stem at stride 2 (16 stem cells per output cell), stage 1 at stride 4 (4 cells),
        // stage 2 at stride 8 (1 cell).
        let stem = 16 * c * w0 * k;
        let stage1 = 4 * (w0 * w1 * k + w1 * w1 * k + w0 * w1 + 2 * w1 * w1 * k);
        let stage2 = w1 * w2 * k + w2 * w2 * k + w1 * w2 + 2 * w2 * w2 * k;
        let heads = w2 * (self.classes as u64 + 1 + 4 + if self.offset_head { 2 } else { 0 });
        stem + stage1 + stage2 + heads
    }
}

impl Network {
    pub fn forward(&self, x: Tensor<4>) -> Outputs {
        let f = self.stem.forward(x);
        let f = self.stage1b.forward(self.stage1.forward(f));
        let f = self.stage2b.forward(self.stage2.forward(f));
        Outputs {
            class_logits: self.head_class.forward(f.clone()),
            heading: self.head_heading.forward(f.clone()),
            offset: self.head_offset.as_ref().map(|h| h.forward(f.clone())),
            size: self.head_size.forward(f),
        }
    }
}

/// The value of every head at the centre cell of the output, `[batch, channels]`.
pub fn centre_cell(t: Tensor<4>) -> Tensor<2> {
    let [b, c, h, w] = t.dims();
    t.narrow(2, h / 2, 1).narrow(3, w / 2, 1).reshape([b, c])
}
