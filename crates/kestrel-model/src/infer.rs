//! The network's forward pass on the CPU for detection, without the training framework's
//! per-operation overheads: batch norm folded into the convolutions, activations kept
//! channels-last (NHWC) from layer to layer, the 3×3 stride-1 convolutions by Winograd's
//! F(2×2, 3×3) and the others as an im2col over bands of output rows, each followed by matrix
//! products (the `gemm` crate, which burn's CPU backend uses too), with the bias, the residual
//! and the ReLU applied in one pass over the output. One tile's rows are split between
//! threads, a batch of chips between threads in stacks of a few; a chip scored at its centre
//! cell alone computes each layer only where that cell depends on it. The weights come from a
//! trained [`Network`]; the outputs are laid out as burn's (`[batch, channels, rows, cols]`),
//! so a caller can use either. Training, and any device other than the CPU, stay with burn.

use crate::network::{ConvBn, Network, Residual};
use burn::nn::conv::Conv2d;
use burn::nn::BatchNorm;

/// A convolution with its batch norm folded in: `y = W·x + bias`.
#[derive(Clone, Debug)]
struct Conv {
    /// Kernel size (1 or 3); padding is `kernel / 2`.
    kernel: usize,
    stride: usize,
    cin: usize,
    cout: usize,
    /// `[kernel·kernel·cin, cout]`, row-major; row index `(ky·kernel + kx)·cin + ci`.
    weight: Vec<f32>,
    bias: Vec<f32>,
    /// For a 3×3 stride-1 convolution, its weights in the Winograd domain (see
    /// [`Conv::winograd_weights`]): `[16, cin, cout]`.
    winograd: Option<Vec<f32>>,
}

/// A residual block: `relu(second(relu(first(x))) + skip(x))`.
#[derive(Clone, Debug)]
struct Block {
    first: Conv,
    second: Conv,
    skip: Option<Conv>,
}

/// A rectangle of a layer's grid of cells: first row and column, and size.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Window {
    top: usize,
    left: usize,
    rows: usize,
    cols: usize,
}

impl Window {
    /// The whole of a grid of `(rows, cols)` cells.
    fn whole((rows, cols): (usize, usize)) -> Self {
        Window { top: 0, left: 0, rows, cols }
    }

    /// The smallest window holding both.
    fn hull(self, other: Window) -> Self {
        let (top, left) = (self.top.min(other.top), self.left.min(other.left));
        let bottom = (self.top + self.rows).max(other.top + other.rows);
        let right = (self.left + self.cols).max(other.left + other.cols);
        Window { top, left, rows: bottom - top, cols: right - left }
    }
}

/// Activations of a stack of images, channels-last (`[images, rows, cols, channels]`), on a
/// window of their layer's grid: the whole grid, or the part of it that the cells wanted at
/// the end depend on. Stacking the chips of a batch lets one matrix product serve several of
/// them: a 52² chip's deeper layers have a few dozen cells, too few to fill one.
struct Nhwc {
    images: usize,
    /// Where `data` lies in the layer's grid.
    window: Window,
    /// The layer's whole grid, `(rows, cols)`; beyond it lies the convolutions' zero padding.
    grid: (usize, usize),
    channels: usize,
    data: Vec<f32>,
}

impl Nhwc {
    /// `n` neighbouring pixels' channels of one image, from grid cell (row, col) rightwards;
    /// they must lie in the window.
    fn pixels(&self, image: usize, row: usize, col: usize, n: usize) -> &[f32] {
        let w = self.window;
        debug_assert!(row >= w.top && row < w.top + w.rows && col >= w.left && col + n <= w.left + w.cols, "the window holds what is read");
        let at = ((image * w.rows + row - w.top) * w.cols + col - w.left) * self.channels;
        &self.data[at..at + n * self.channels]
    }

    /// Whether grid cell (row, col), padding coordinates allowed, lies in the window.
    fn holds(&self, row: isize, col: isize) -> bool {
        let w = self.window;
        row >= w.top as isize && col >= w.left as isize && (row as usize) < w.top + w.rows && (col as usize) < w.left + w.cols
    }
}

/// A convolution's last steps on one output pixel's product `out`: bias, the residual (the
/// same pixel of a block's skip path) and the ReLU.
fn finish(out: &mut [f32], bias: &[f32], residual: Option<&[f32]>, relu: bool) {
    out.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
    if let Some(r) = residual {
        out.iter_mut().zip(r).for_each(|(v, r)| *v += r);
    }
    if relu {
        out.iter_mut().for_each(|v| *v = v.max(0.0));
    }
}

/// The heads' outputs of a batch, each `[batch, channels, rows, cols]` as burn lays them out.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadOutputs {
    pub batch: usize,
    pub rows: usize,
    pub cols: usize,
    /// Logits over background (index 0) and the classes.
    pub class_logits: Vec<f32>,
    /// (sin, cos) of the heading: θ for directed classes, 2θ for axis classes.
    pub heading: Vec<f32>,
    /// ln(length_m), ln(width_m).
    pub size: Vec<f32>,
    /// The object's offset from the chip's centre in output cells (right, down); empty
    /// when the network has no offset head.
    pub offset: Vec<f32>,
}

impl HeadOutputs {
    /// Channels of the class head (background included).
    pub fn class_channels(&self) -> usize {
        self.class_logits.len() / (self.batch * self.rows * self.cols).max(1)
    }

    /// Objectness at output cell `cell` (row · cols + col) of image `b`: 1 − the background's
    /// softmax probability.
    pub fn objectness(&self, b: usize, cell: usize) -> f32 {
        1.0 - self.class_probability(b, cell, 0)
    }

    /// The softmax probability of class channel `c` (0: background) at `cell` of image `b`.
    fn class_probability(&self, b: usize, cell: usize, c: usize) -> f32 {
        let (k, plane) = (self.class_channels(), self.rows * self.cols);
        let logit = |c: usize| self.class_logits[(b * k + c) * plane + cell];
        let top = (0..k).map(logit).fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = (0..k).map(|c| (logit(c) - top).exp()).sum();
        (logit(c) - top).exp() / sum
    }

    /// The heading head's (sin, cos) at `cell` of image `b`.
    pub fn heading_at(&self, b: usize, cell: usize) -> (f32, f32) {
        let plane = self.rows * self.cols;
        (self.heading[2 * b * plane + cell], self.heading[(2 * b + 1) * plane + cell])
    }

    /// The size head's (ln length_m, ln width_m) at `cell` of image `b`.
    pub fn size_at(&self, b: usize, cell: usize) -> (f32, f32) {
        let plane = self.rows * self.cols;
        (self.size[2 * b * plane + cell], self.size[(2 * b + 1) * plane + cell])
    }

    /// The offset head's (right, down) at `cell` of image `b`, in output cells; `None` for a
    /// network without the head.
    pub fn offset_at(&self, b: usize, cell: usize) -> Option<(f32, f32)> {
        let plane = self.rows * self.cols;
        (!self.offset.is_empty()).then(|| (self.offset[2 * b * plane + cell], self.offset[(2 * b + 1) * plane + cell]))
    }

    /// Each image's centre cell (row `rows / 2`, column `cols / 2`) alone, as 1×1 outputs.
    pub fn centre(&self) -> HeadOutputs {
        let plane = self.rows * self.cols;
        if plane == 0 {
            return self.clone();
        }
        let cell = (self.rows / 2) * self.cols + self.cols / 2;
        let pick = |v: &Vec<f32>| -> Vec<f32> { v.iter().skip(cell).step_by(plane).copied().collect() };
        HeadOutputs { batch: self.batch, rows: 1, cols: 1, class_logits: pick(&self.class_logits), heading: pick(&self.heading), size: pick(&self.size), offset: pick(&self.offset) }
    }

    /// The mean of several networks' outputs on the same input (an ensemble's reading): per
    /// cell, the class probabilities averaged (stored as their logarithms, so that
    /// [`objectness`](Self::objectness) reads the mean objectness), and the heading's
    /// (sin, cos), the ln sizes and the offsets averaged. Offsets are kept only when every
    /// network has the head. `None` when the outputs' shapes differ or there are none.
    pub fn mean(parts: &[HeadOutputs]) -> Option<HeadOutputs> {
        let first = parts.first()?;
        let k = first.class_channels();
        if parts.iter().any(|p| [p.batch, p.rows, p.cols, p.class_channels()] != [first.batch, first.rows, first.cols, k]) {
            return None;
        }
        if parts.len() == 1 {
            return Some(first.clone());
        }
        let n = parts.len() as f32;
        let plane = first.rows * first.cols;
        let mut class_logits = vec![0f32; first.class_logits.len()];
        for part in parts {
            for b in 0..first.batch {
                for cell in 0..plane {
                    for c in 0..k {
                        class_logits[(b * k + c) * plane + cell] += part.class_probability(b, cell, c) / n;
                    }
                }
            }
        }
        // ln of a mean probability; a probability that underflowed stays a very low logit.
        class_logits.iter_mut().for_each(|p| *p = p.max(1e-30).ln());
        let average = |field: fn(&HeadOutputs) -> &Vec<f32>| -> Vec<f32> {
            let mut out = vec![0f32; field(first).len()];
            for part in parts {
                out.iter_mut().zip(field(part)).for_each(|(o, v)| *o += v / n);
            }
            out
        };
        let offset = if parts.iter().all(|p| !p.offset.is_empty()) { average(|p| &p.offset) } else { Vec::new() };
        Some(HeadOutputs { batch: first.batch, rows: first.rows, cols: first.cols, class_logits, heading: average(|p| &p.heading), size: average(|p| &p.size), offset })
    }
}

/// A trained network prepared for CPU inference.
#[derive(Clone, Debug)]
pub struct CpuNetwork {
    in_channels: usize,
    stem: Conv,
    blocks: Vec<Block>,
    /// The heads as one 1×1 convolution: class logits, then heading (2), size (2) and, when
    /// the network has it, offset (2).
    heads: Conv,
    class_channels: usize,
    threads: usize,
}

pub(crate) fn values<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    // A parameter of a trained network is always readable as f32 on its device.
    t.into_data().convert::<f32>().try_to_vec::<f32>().expect("a tensor converted to f32 reads as f32")
}

/// A convolution's weights as `[k·k·cin, cout]` rows, scaled per output channel by `scale`.
pub(crate) fn conv_weights(conv: &Conv2d, scale: &[f32]) -> (usize, usize, usize, usize, Vec<f32>) {
    let w = conv.weight.val();
    let [cout, cin, kh, kw] = w.dims();
    debug_assert_eq!(kh, kw);
    let src = values(w);
    let mut weight = vec![0f32; kh * kw * cin * cout];
    for co in 0..cout {
        for ci in 0..cin {
            for ky in 0..kh {
                for kx in 0..kw {
                    let k = (ky * kw + kx) * cin + ci;
                    weight[k * cout + co] = src[((co * cin + ci) * kh + ky) * kw + kx] * scale[co];
                }
            }
        }
    }
    (kh, cin, cout, conv.stride[0], weight)
}

/// Folds the batch norm that follows a bias-free convolution into it.
fn fold(conv: &Conv2d, bn: &BatchNorm) -> Conv {
    let gamma = values(bn.gamma.val());
    let beta = values(bn.beta.val());
    let mean = values(bn.running_mean.value());
    let var = values(bn.running_var.value());
    let scale: Vec<f32> = gamma.iter().zip(&var).map(|(g, v)| g / (v + bn.epsilon as f32).sqrt()).collect();
    let (kernel, cin, cout, stride, weight) = conv_weights(conv, &scale);
    let conv_bias = conv.bias.as_ref().map(|b| values(b.val())).unwrap_or_else(|| vec![0.0; cout]);
    let bias = (0..cout).map(|c| beta[c] + (conv_bias[c] - mean[c]) * scale[c]).collect();
    Conv::new(kernel, stride, cin, cout, weight, bias)
}

fn plain(conv: &Conv2d) -> Conv {
    let cout = conv.weight.val().dims()[0];
    let (kernel, cin, cout, stride, weight) = conv_weights(conv, &vec![1.0; cout]);
    let bias = conv.bias.as_ref().map(|b| values(b.val())).unwrap_or_else(|| vec![0.0; cout]);
    Conv::new(kernel, stride, cin, cout, weight, bias)
}

impl ConvBn {
    fn folded(&self) -> Conv {
        fold(&self.conv, &self.bn)
    }
}

impl Residual {
    fn folded(&self) -> Block {
        Block { first: self.first.folded(), second: fold(&self.second, &self.second_bn), skip: self.skip.as_ref().map(plain) }
    }
}

impl CpuNetwork {
    /// The network's inference-time computation (batch norm with its running statistics).
    pub fn new(network: &Network) -> Self {
        let stem = network.stem.folded();
        let blocks = [&network.stage1, &network.stage1b, &network.stage2, &network.stage2b].map(Residual::folded).to_vec();
        let mut parts = vec![plain(&network.head_class), plain(&network.head_heading), plain(&network.head_size)];
        parts.extend(network.head_offset.as_ref().map(plain));
        let class_channels = parts[0].cout;
        let cin = parts[0].cin;
        let cout: usize = parts.iter().map(|p| p.cout).sum();
        let mut weight = vec![0f32; cin * cout];
        let mut bias = Vec::with_capacity(cout);
        let mut at = 0;
        for p in &parts {
            for k in 0..cin {
                weight[k * cout + at..k * cout + at + p.cout].copy_from_slice(&p.weight[k * p.cout..(k + 1) * p.cout]);
            }
            bias.extend_from_slice(&p.bias);
            at += p.cout;
        }
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        CpuNetwork { in_channels: stem.cin, stem, blocks, heads: Conv::new(1, 1, cin, cout, weight, bias), class_channels, threads }
    }

    /// At most this many threads (default: the machine's cores): over the images of a batch,
    /// over rows within each image.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Forward pass over a batch laid out `[batch, channels, rows, cols]` (burn's layout).
    ///
    /// # Panics
    /// When `input` does not hold `batch·channels·rows·cols` values or the channels are not
    /// the network's: a caller's bug, not bad data.
    pub fn forward(&self, input: &[f32], batch: usize, channels: usize, rows: usize, cols: usize) -> HeadOutputs {
        self.run(input, batch, channels, rows, cols, false)
    }

    /// The heads at each image's centre output cell alone (row `rows / 2`, column `cols / 2`
    /// of the output grid, as [`forward`](Self::forward) lays it out), as a batch of 1×1
    /// outputs. Each layer is computed only where that cell depends on it: on a 52² chip the
    /// last stage's three convolutions shrink from 7×7 cells to 5×5, 3×3 and 1, a third of the
    /// multiply–accumulates, for the same values. Scoring chips of candidates reads nothing
    /// else.
    ///
    /// # Panics
    /// As [`forward`](Self::forward).
    pub fn forward_centre(&self, input: &[f32], batch: usize, channels: usize, rows: usize, cols: usize) -> HeadOutputs {
        self.run(input, batch, channels, rows, cols, true)
    }

    /// The windows of the stem's output and of each block's first convolution and output
    /// that the heads' window depends on (all of each grid, or the cone under the centre
    /// cell), and the heads' window.
    fn plan(&self, rows: usize, cols: usize, centre: bool) -> (Window, Vec<(Window, Window)>, Window) {
        // Grids forward: each block's input, first convolution's output and output.
        let mut grid = self.stem.out_shape(rows, cols);
        let mut grids = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let first = block.first.out_shape(grid.0, grid.1);
            let out = block.second.out_shape(first.0, first.1);
            grids.push((grid, first));
            grid = out;
        }
        let heads = if centre && grid.0 > 0 && grid.1 > 0 { Window { top: grid.0 / 2, left: grid.1 / 2, rows: 1, cols: 1 } } else { Window::whole(grid) };
        // Windows backward: what each output window reads of its input.
        let mut want = heads; // the 1×1 heads read their input's same cells
        let mut windows = vec![(want, want); self.blocks.len()];
        for (i, block) in self.blocks.iter().enumerate().rev() {
            let (input_grid, first_grid) = grids[i];
            let first = block.second.input_window(want, first_grid);
            let skip = block.skip.as_ref().map_or(want, |s| s.input_window(want, input_grid));
            windows[i] = (first, want);
            want = block.first.input_window(first, input_grid).hull(skip);
        }
        (want, windows, heads)
    }

    fn run(&self, input: &[f32], batch: usize, channels: usize, rows: usize, cols: usize, centre: bool) -> HeadOutputs {
        assert_eq!(channels, self.in_channels, "the network reads {} channels", self.in_channels);
        assert_eq!(input.len(), batch * channels * rows * cols, "input of the wrong size");
        let (stem_window, block_windows, heads_window) = self.plan(rows, cols, centre);
        // Threads over groups of images, each group a stack; one image's rows are split
        // between the threads instead.
        let per_group = if batch > 1 { 1 } else { self.threads };
        let run = |b0: usize, images: usize| -> Nhwc {
            let plane = rows * cols;
            let mut data = vec![0f32; images * plane * channels];
            for (i, stacked) in data.chunks_exact_mut(plane * channels).enumerate() {
                let image = &input[(b0 + i) * channels * plane..(b0 + i + 1) * channels * plane];
                for c in 0..channels {
                    for (p, &v) in image[c * plane..(c + 1) * plane].iter().enumerate() {
                        stacked[p * channels + c] = v;
                    }
                }
            }
            let mut x = Nhwc { images, window: Window::whole((rows, cols)), grid: (rows, cols), channels, data };
            x = self.stem.apply(&x, stem_window, true, None, per_group);
            for (block, &(first, out)) in self.blocks.iter().zip(&block_windows) {
                let y = block.first.apply(&x, first, true, None, per_group);
                let skip = block.skip.as_ref().map(|s| s.apply(&x, out, false, None, per_group));
                x = block.second.apply(&y, out, true, Some(skip.as_ref().unwrap_or(&x)), per_group);
            }
            self.heads.apply(&x, heads_window, false, None, per_group)
        };
        // Each thread's images in stacks of a few: enough cells for the deeper layers' matrix
        // products, few enough that a stack's activations stay in cache from layer to layer.
        let stack = (STACK_PIXELS / (rows * cols).max(1)).max(1);
        let groups = self.threads.min(batch).max(1);
        let per = batch.div_ceil(groups).max(1);
        let starts: Vec<(usize, usize)> = (0..batch).step_by(per).map(|b0| (b0, per.min(batch - b0))).collect();
        let run_all = |(b0, n): (usize, usize)| -> Vec<Nhwc> { (b0..b0 + n).step_by(stack).map(|b| run(b, stack.min(b0 + n - b))).collect() };
        let outputs: Vec<Nhwc> = if starts.len() > 1 {
            std::thread::scope(|s| {
                let handles: Vec<_> = starts.iter().map(|&g| s.spawn(move || run_all(g))).collect();
                handles.into_iter().flat_map(|h| h.join().expect("a network thread panicked")).collect()
            })
        } else {
            starts.into_iter().flat_map(run_all).collect()
        };
        let (out_rows, out_cols) = (heads_window.rows, heads_window.cols);
        let plane = out_rows * out_cols;
        let k = self.class_channels;
        let mut class_logits = vec![0f32; batch * k * plane];
        let mut heading = vec![0f32; batch * 2 * plane];
        let mut size = vec![0f32; batch * 2 * plane];
        let has_offset = self.heads.cout > k + 4;
        let mut offset = vec![0f32; if has_offset { batch * 2 * plane } else { 0 }];
        let cells = outputs.iter().flat_map(|o| o.data.chunks_exact((plane * o.channels).max(1)));
        for (b, o) in cells.enumerate() {
            let channels = self.heads.cout;
            for p in 0..plane {
                let cell = &o[p * channels..(p + 1) * channels];
                for c in 0..k {
                    class_logits[(b * k + c) * plane + p] = cell[c];
                }
                for c in 0..2 {
                    heading[(b * 2 + c) * plane + p] = cell[k + c];
                    size[(b * 2 + c) * plane + p] = cell[k + 2 + c];
                    if has_offset {
                        offset[(b * 2 + c) * plane + p] = cell[k + 4 + c];
                    }
                }
            }
        }
        HeadOutputs { batch, rows: out_rows, cols: out_cols, class_logits, heading, size, offset }
    }
}

/// Winograd's F(2×2, 3×3): a 3×3 stride-1 convolution computed on 4×4 input tiles for 2×2
/// output tiles, with 16 multiplies per tile and channel pair instead of 36. Input tiles are
/// turned by `Bᵀ d B`, weights by `G g Gᵀ`, their products summed over input channels (16
/// matrix products, one per point of the 4×4 tile) and turned back by `Aᵀ m A`:
///   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1], G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],
///   Aᵀ = [1 1 1 0; 0 1 −1 −1].
/// In `Bᵀ d B` the first two outputs of a row never read its last input and the last two
/// never its first, so a tile that hangs over the window computes its inner outputs exactly.
const WINOGRAD_POINTS: usize = 16;

/// Below this many output rows or columns the direct product does less work (a tile of 2×2
/// costs 16 products where one output cell costs 9).
const WINOGRAD_MIN_SIDE: usize = 4;

/// `out = a − b`, element by element (a loop the compiler turns into vector instructions).
fn difference(out: &mut [f32], a: &[f32], b: &[f32]) {
    out.iter_mut().zip(a).zip(b).for_each(|((o, a), b)| *o = a - b);
}

/// `out = a + b`, element by element.
fn sum(out: &mut [f32], a: &[f32], b: &[f32]) {
    out.iter_mut().zip(a).zip(b).for_each(|((o, a), b)| *o = a + b);
}

/// `out = a + b + c`, element by element.
fn sum3(out: &mut [f32], a: &[f32], b: &[f32], c: &[f32]) {
    out.iter_mut().zip(a).zip(b).zip(c).for_each(|(((o, a), b), c)| *o = a + b + c);
}

/// `out = a − b − c`, element by element.
fn difference3(out: &mut [f32], a: &[f32], b: &[f32], c: &[f32]) {
    out.iter_mut().zip(a).zip(b).zip(c).for_each(|(((o, a), b), c)| *o = a - b - c);
}

/// 16 rows of `c` values as slices.
fn rows16(data: &[f32], c: usize) -> [&[f32]; WINOGRAD_POINTS] {
    std::array::from_fn(|i| &data[i * c..(i + 1) * c])
}

/// `Bᵀ d B` of a 4×4 patch (`patch`: 16 rows of `c` channels, row-major over the tile) into
/// `turned` (16 rows of `c`), all channels at once; `rows` holds 16 rows of `c` for `Bᵀ d`.
fn winograd_input(patch: &[f32], turned: &mut [f32], rows: &mut [f32], c: usize) {
    let d = rows16(patch, c);
    {
        // Bᵀ d: for each column j, rows (d0 − d2, d1 + d2, d2 − d1, d1 − d3).
        let mut t = rows.chunks_exact_mut(c);
        let mut next = || t.next().expect("16 rows");
        let (t0, t1, t2, t3): ([&mut [f32]; 4], [&mut [f32]; 4], [&mut [f32]; 4], [&mut [f32]; 4]) = (std::array::from_fn(|_| next()), std::array::from_fn(|_| next()), std::array::from_fn(|_| next()), std::array::from_fn(|_| next()));
        for j in 0..4 {
            difference(t0[j], d[j], d[8 + j]);
            sum(t1[j], d[4 + j], d[8 + j]);
            difference(t2[j], d[8 + j], d[4 + j]);
            difference(t3[j], d[4 + j], d[12 + j]);
        }
    }
    // (Bᵀ d) B: the same along each row.
    let t = rows16(rows, c);
    for (i, out) in turned.chunks_exact_mut(4 * c).enumerate() {
        let (o0, rest) = out.split_at_mut(c);
        let (o1, rest) = rest.split_at_mut(c);
        let (o2, o3) = rest.split_at_mut(c);
        let (r0, r1, r2, r3) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
        difference(o0, r0, r2);
        sum(o1, r1, r2);
        difference(o2, r2, r1);
        difference(o3, r1, r3);
    }
}

/// `Aᵀ m A` of one tile's products (`products`: 16 rows of `c` channels) into `y`: the 2×2
/// outputs, 4 rows of `c` (row-major over the tile), then 8 rows of `c` for `Aᵀ m`.
fn winograd_output(products: &[f32], c: usize, y: &mut [f32]) {
    let m = rows16(products, c);
    let (out, s) = y[..12 * c].split_at_mut(4 * c);
    // Aᵀ m: rows (m0 + m1 + m2, m1 − m2 − m3) for each column j.
    for (j, pair) in s.chunks_exact_mut(2 * c).enumerate() {
        let (s0, s1) = pair.split_at_mut(c);
        sum3(s0, m[j], m[4 + j], m[8 + j]);
        difference3(s1, m[4 + j], m[8 + j], m[12 + j]);
    }
    // (Aᵀ m) A: columns the same way; S(a, j) is row a of column j.
    let s: [&[f32]; 8] = std::array::from_fn(|i| &s[i * c..(i + 1) * c]);
    let (y0, rest) = out.split_at_mut(c);
    let (y1, rest) = rest.split_at_mut(c);
    let (y2, y3) = rest.split_at_mut(c);
    sum3(y0, s[0], s[2], s[4]);
    difference3(y1, s[2], s[4], s[6]);
    sum3(y2, s[1], s[3], s[5]);
    difference3(y3, s[3], s[5], s[7]);
}

/// `dst = lhs · rhs` for row-major matrices, on this thread: `lhs` is m×k with its rows
/// `lhs_stride` apart, `rhs` k×n, `dst` m×n with its rows `dst_stride` apart.
#[allow(clippy::too_many_arguments)]
fn matmul(m: usize, n: usize, k: usize, dst: &mut [f32], dst_stride: usize, lhs: &[f32], lhs_stride: usize, rhs: &[f32]) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst_stride >= n && lhs_stride >= k && dst.len() >= (m - 1) * dst_stride + n && lhs.len() >= (m - 1) * lhs_stride + k && rhs.len() >= k * n, "matrices smaller than their dimensions");
    // SAFETY: the lengths just checked hold every element the product reads or writes
    // (row r of dst at r·dst_stride .. + n, of lhs at r·lhs_stride .. + k; rhs k rows of n),
    // and `dst` is borrowed mutably and alone.
    unsafe {
        gemm::gemm(m, n, k, dst.as_mut_ptr(), 1, dst_stride as isize, false, lhs.as_ptr(), 1, lhs_stride as isize, rhs.as_ptr(), 1, n as isize, 0.0f32, 1.0f32, false, false, false, gemm::Parallelism::None);
    }
}

/// Input pixels per stack of images (see [`Nhwc`]): 6 chips of 52².
const STACK_PIXELS: usize = 16_384;

/// A part of a layer's output for one thread's turn: rows `r0..r0 + rows` of the window in
/// images `img0..img0 + images` (some rows of one image, or whole images).
#[derive(Clone, Copy, Debug)]
struct Band {
    img0: usize,
    images: usize,
    r0: usize,
    rows: usize,
}

/// Winograd tiles turned and multiplied at once: their turned inputs and products within a
/// few hundred KiB.
fn winograd_chunk(cin: usize, cout: usize) -> usize {
    (32_768 / (WINOGRAD_POINTS * (cin + cout) / 4).max(1)).clamp(8, 256)
}

impl Conv {
    fn new(kernel: usize, stride: usize, cin: usize, cout: usize, weight: Vec<f32>, bias: Vec<f32>) -> Self {
        let winograd = (kernel == 3 && stride == 1).then(|| Self::winograd_weights(cin, cout, &weight));
        Conv { kernel, stride, cin, cout, weight, bias, winograd }
    }

    /// `G g Gᵀ` for each input and output channel pair: `[16, cin, cout]`, point ξ = 4i + j.
    fn winograd_weights(cin: usize, cout: usize, weight: &[f32]) -> Vec<f32> {
        const G: [[f32; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];
        let mut u = vec![0f32; WINOGRAD_POINTS * cin * cout];
        for ci in 0..cin {
            for co in 0..cout {
                let g = |ky: usize, kx: usize| weight[((ky * 3 + kx) * cin + ci) * cout + co];
                // G g: 4×3.
                let mut gg = [[0f32; 3]; 4];
                for (i, row) in gg.iter_mut().enumerate() {
                    for (kx, v) in row.iter_mut().enumerate() {
                        *v = (0..3).map(|ky| G[i][ky] * g(ky, kx)).sum();
                    }
                }
                for i in 0..4 {
                    for j in 0..4 {
                        u[((i * 4 + j) * cin + ci) * cout + co] = (0..3).map(|kx| gg[i][kx] * G[j][kx]).sum();
                    }
                }
            }
        }
        u
    }

    fn out_shape(&self, rows: usize, cols: usize) -> (usize, usize) {
        if rows == 0 || cols == 0 {
            return (0, 0);
        }
        let pad = self.kernel / 2;
        ((rows + 2 * pad - self.kernel) / self.stride + 1, (cols + 2 * pad - self.kernel) / self.stride + 1)
    }

    /// The window of its input (a grid of `grid` cells) that the `out` window of this
    /// convolution's output reads; the padding beyond the grid is left out.
    fn input_window(&self, out: Window, grid: (usize, usize)) -> Window {
        let pad = self.kernel / 2;
        let span = |first: usize, n: usize, size: usize| -> (usize, usize) {
            if n == 0 || size == 0 {
                return (0, 0);
            }
            let low = (first * self.stride).saturating_sub(pad);
            let high = ((first + n - 1) * self.stride + self.kernel - 1 - pad).min(size - 1);
            (low, high + 1 - low)
        };
        let (top, rows) = span(out.top, out.rows, grid.0);
        let (left, cols) = span(out.left, out.cols, grid.1);
        Window { top, left, rows, cols }
    }

    /// `relu?(W·x + bias + residual)` on the `out` window of the output grid, over bands of
    /// output rows on up to `threads` threads. `x` must hold the window of the input that
    /// `out` reads ([`input_window`](Self::input_window)), and `residual` the `out` window.
    fn apply(&self, x: &Nhwc, out: Window, relu: bool, residual: Option<&Nhwc>, threads: usize) -> Nhwc {
        debug_assert_eq!(x.channels, self.cin);
        let grid = self.out_shape(x.grid.0, x.grid.1);
        let (images, rows, cols) = (x.images, out.rows, out.cols);
        let per_image = rows * cols * self.cout;
        let mut data = vec![0f32; images * per_image];
        if per_image == 0 || images == 0 {
            return Nhwc { images, window: out, grid, channels: self.cout, data };
        }
        let k = self.kernel * self.kernel * self.cin;
        let winograd = self.winograd.as_deref().filter(|_| rows >= WINOGRAD_MIN_SIDE && cols >= WINOGRAD_MIN_SIDE);
        // Output pixels per band: an im2col within a few hundred KiB (in cache), or enough
        // Winograd tiles to fill a chunk of them.
        let target = match winograd {
            Some(_) => 4 * winograd_chunk(self.cin, self.cout),
            None => 65_536 / k.max(1),
        };
        let bands: Vec<(Band, &mut [f32])> = if images == 1 {
            // Bands of rows (of whole 2×2 tiles for Winograd).
            let mut band_rows = (target / cols).clamp(1, rows);
            if winograd.is_some() {
                band_rows = (band_rows + 1) & !1;
            }
            data.chunks_mut(band_rows * cols * self.cout).enumerate().map(|(i, d)| (Band { img0: 0, images: 1, r0: i * band_rows, rows: d.len() / (cols * self.cout) }, d)).collect()
        } else {
            // Bands of whole images.
            let per_band = (target / (rows * cols)).max(1);
            data.chunks_mut(per_band * per_image).enumerate().map(|(i, d)| (Band { img0: i * per_band, images: d.len() / per_image, r0: 0, rows }, d)).collect()
        };
        let work = |list: Vec<(Band, &mut [f32])>| {
            let mut col = Vec::new();
            for (band, dst) in list {
                match winograd {
                    Some(u) => self.winograd_band(u, x, out, band, dst, residual, relu, &mut col),
                    None => self.band(x, out, band, dst, residual, relu, &mut col),
                }
            }
        };
        let threads = threads.min(bands.len()).max(1);
        // A band of work per thread only pays for itself on large layers.
        if threads == 1 || images * rows * cols * k * self.cout < 1 << 20 {
            work(bands);
        } else {
            let mut lists: Vec<Vec<(Band, &mut [f32])>> = (0..threads).map(|_| Vec::new()).collect();
            for (i, b) in bands.into_iter().enumerate() {
                lists[i % threads].push(b);
            }
            std::thread::scope(|s| {
                for list in lists {
                    s.spawn(move || work(list));
                }
            });
        }
        Nhwc { images, window: out, grid, channels: self.cout, data }
    }

    /// [`band`](Self::band) by Winograd's F(2×2, 3×3) (see [`WINOGRAD_POINTS`]), `band.r0`
    /// even: the band's 2×2 output tiles (of all its images) in chunks, each chunk's 4×4 input
    /// tiles turned, 16 matrix products with `u` (the weights turned), and the products turned
    /// back into outputs.
    #[allow(clippy::too_many_arguments)]
    fn winograd_band(&self, u: &[f32], x: &Nhwc, out: Window, band: Band, dst: &mut [f32], residual: Option<&Nhwc>, relu: bool, scratch: &mut Vec<f32>) {
        let (cin, cout, cols) = (self.cin, self.cout, out.cols);
        let (band_rows, r0) = (band.rows, band.r0);
        let (tile_rows, tile_cols) = (band_rows.div_ceil(2), cols.div_ceil(2));
        let per_image = tile_rows * tile_cols;
        let tiles = band.images * per_image;
        let chunk = winograd_chunk(cin, cout).min(tiles);
        // Every part is written before it is read: grown, never cleared.
        let need = WINOGRAD_POINTS * chunk * (cin + cout) + 2 * WINOGRAD_POINTS * cin + 12 * cout;
        if scratch.len() < need {
            scratch.resize(need, 0.0);
        }
        let (v, rest) = scratch.split_at_mut(WINOGRAD_POINTS * chunk * cin);
        let (m, rest) = rest.split_at_mut(WINOGRAD_POINTS * chunk * cout);
        let (patch, rest) = rest.split_at_mut(WINOGRAD_POINTS * cin);
        let (rows, outputs) = rest.split_at_mut(WINOGRAD_POINTS * cin);
        // A tile's image (within the band), row and column.
        let place = |t: usize| (t / per_image, (t % per_image) / tile_cols, t % tile_cols);
        // Per tile, its 16 turned inputs (`v`, 16 rows of cin) and products (`m`, 16 rows of
        // cout) lie together; the products for point ξ read every tile's row ξ.
        for first in (0..tiles).step_by(chunk) {
            let n = chunk.min(tiles - first);
            for (t, turned) in v.chunks_exact_mut(WINOGRAD_POINTS * cin).take(n).enumerate() {
                let (image, tr, tc) = place(first + t);
                let (y0, x0) = ((out.top + r0 + 2 * tr) as isize - 1, (out.left + 2 * tc) as isize - 1);
                // The 4×4 input patch: zero beyond the grid, and beyond the window where only
                // outputs outside the band would read it.
                for (i, dst) in patch.chunks_exact_mut(cin).enumerate() {
                    let (gy, gx) = (y0 + (i / 4) as isize, x0 + (i % 4) as isize);
                    if x.holds(gy, gx) {
                        dst.copy_from_slice(x.pixels(band.img0 + image, gy as usize, gx as usize, 1));
                    } else {
                        dst.fill(0.0);
                    }
                }
                winograd_input(patch, turned, rows, cin);
            }
            for xi in 0..WINOGRAD_POINTS {
                matmul(n, cout, cin, &mut m[xi * cout..], WINOGRAD_POINTS * cout, &v[xi * cin..], WINOGRAD_POINTS * cin, &u[xi * cin * cout..(xi + 1) * cin * cout]);
            }
            // Aᵀ m A per tile, then bias, residual and ReLU.
            for (t, products) in m.chunks_exact(WINOGRAD_POINTS * cout).take(n).enumerate() {
                let (image, tr, tc) = place(first + t);
                winograd_output(products, cout, outputs);
                let y = &outputs[..4 * cout];
                for a in 0..2 {
                    let row = 2 * tr + a;
                    for b in 0..2 {
                        let col = 2 * tc + b;
                        if row >= band_rows || col >= cols {
                            continue;
                        }
                        let p = (image * band_rows + row) * cols + col;
                        let d = &mut dst[p * cout..(p + 1) * cout];
                        d.copy_from_slice(&y[(a * 2 + b) * cout..(a * 2 + b + 1) * cout]);
                        let skip = residual.map(|r| r.pixels(band.img0 + image, out.top + r0 + row, out.left + col, 1));
                        finish(d, &self.bias, skip, relu);
                    }
                }
            }
        }
    }

    /// One band of the `out` window (some rows of one image, or whole images); `dst` holds
    /// exactly its pixels.
    #[allow(clippy::too_many_arguments)]
    fn band(&self, x: &Nhwc, out: Window, band: Band, dst: &mut [f32], residual: Option<&Nhwc>, relu: bool, col: &mut Vec<f32>) {
        let (cols, r0) = (out.cols, band.r0);
        let plane = band.rows * cols;
        let pixels = dst.len() / self.cout;
        let k = self.kernel * self.kernel * self.cin;
        let xw = x.window;
        // A band pixel's image and its row and column in the grid.
        let place = |p: usize| (band.img0 + p / plane, out.top + r0 + (p % plane) / cols, out.left + p % cols);
        // The matrix product's left side: the input itself for a 1×1, stride-1 convolution
        // over the same window, else the receptive fields, one row per output pixel.
        let lhs: &[f32] = if self.kernel == 1 && self.stride == 1 && xw == out {
            // Images follow each other: a band of whole images is contiguous too.
            let first = (band.img0 * out.rows + r0) * cols * self.cin;
            &x.data[first..first + pixels * self.cin]
        } else {
            // Every value is written below (the padding as zeros): grown, never cleared.
            if col.len() < pixels * k {
                col.resize(pixels * k, 0.0);
            }
            let col = &mut col[..pixels * k];
            let pad = (self.kernel / 2) as isize;
            let span = self.kernel * self.cin;
            for p in 0..pixels {
                let (image, oy, ox) = place(p);
                let row = &mut col[p * k..(p + 1) * k];
                for ky in 0..self.kernel {
                    let iy = (oy * self.stride) as isize + ky as isize - pad;
                    if iy < 0 || iy >= x.grid.0 as isize {
                        row[ky * span..(ky + 1) * span].fill(0.0); // zero padding
                        continue;
                    }
                    let iy = iy as usize;
                    // The row's taps are neighbouring pixels, contiguous channels-last: one
                    // copy when none falls in the padding.
                    let ix0 = (ox * self.stride) as isize - pad;
                    if ix0 >= 0 && ix0 as usize + self.kernel <= x.grid.1 {
                        row[ky * span..(ky + 1) * span].copy_from_slice(x.pixels(image, iy, ix0 as usize, self.kernel));
                        continue;
                    }
                    for kx in 0..self.kernel {
                        let ix = (ox * self.stride) as isize + kx as isize - pad;
                        let to = (ky * self.kernel + kx) * self.cin;
                        if ix < 0 || ix >= x.grid.1 as isize {
                            row[to..to + self.cin].fill(0.0);
                            continue;
                        }
                        row[to..to + self.cin].copy_from_slice(x.pixels(image, iy, ix as usize, 1));
                    }
                }
            }
            col
        };
        matmul(pixels, self.cout, k, dst, self.cout, lhs, k, &self.weight);
        // Bias, residual and ReLU in one pass over the product.
        for (p, d) in dst.chunks_exact_mut(self.cout).enumerate() {
            let skip = residual.map(|r| {
                let (image, oy, ox) = place(p);
                r.pixels(image, oy, ox, 1)
            });
            finish(d, &self.bias, skip, relu);
        }
    }
}

/// The forward pass detection runs: [`CpuNetwork`] on the CPU, burn's on any other device.
pub enum Inference<'a> {
    Cpu(CpuNetwork),
    Device(&'a Network),
}

impl<'a> Inference<'a> {
    /// For the selected device ([`crate::device::current`]).
    pub fn new(network: &'a Network) -> Self {
        if crate::device::is_cpu(&crate::device::current()) {
            Inference::Cpu(CpuNetwork::new(network))
        } else {
            Inference::Device(network)
        }
    }

    /// Whether the network has the offset head.
    pub fn has_offset(&self) -> bool {
        match self {
            Inference::Cpu(net) => net.heads.cout > net.class_channels + 4,
            Inference::Device(net) => net.head_offset.is_some(),
        }
    }

    /// Forward pass over `input`, laid out `[batch, channels, rows, cols]`.
    pub fn forward(&self, input: &[f32], batch: usize, channels: usize, rows: usize, cols: usize) -> HeadOutputs {
        match self {
            Inference::Cpu(net) => net.forward(input, batch, channels, rows, cols),
            Inference::Device(net) => device_forward(net, input, batch, channels, rows, cols),
        }
    }

    /// The heads at each image's centre output cell alone (see [`CpuNetwork::forward_centre`]);
    /// on another device, the whole pass's centre cells.
    pub fn forward_centre(&self, input: &[f32], batch: usize, channels: usize, rows: usize, cols: usize) -> HeadOutputs {
        match self {
            Inference::Cpu(net) => net.forward_centre(input, batch, channels, rows, cols),
            Inference::Device(net) => device_forward(net, input, batch, channels, rows, cols).centre(),
        }
    }
}

/// burn's forward pass on its device, read back as [`HeadOutputs`].
fn device_forward(net: &Network, input: &[f32], batch: usize, channels: usize, rows: usize, cols: usize) -> HeadOutputs {
    let device = crate::device::current();
    let x = burn::tensor::Tensor::<4>::from_data(burn::tensor::TensorData::new(input.to_vec(), [batch, channels, rows, cols]), &device);
    let out = net.forward(x);
    let [_, _, out_rows, out_cols] = out.class_logits.dims();
    HeadOutputs { batch, rows: out_rows, cols: out_cols, class_logits: values(out.class_logits), heading: values(out.heading), size: values(out.size), offset: out.offset.map(values).unwrap_or_default() }
}

/// Several networks trained for one class under one normalization contract, judging the
/// same chips together: each chip's outputs are the mean of the members' (see
/// [`HeadOutputs::mean`]). Networks trained from different seeds err on different things the
/// training images never showed (the red roofs of an unseen street), so their mean varies
/// less from one training run to the next than any one of them. It costs a forward pass per
/// member.
pub struct Ensemble<'a> {
    members: Vec<Inference<'a>>,
}

impl<'a> Ensemble<'a> {
    /// For the selected device; `networks` must not be empty.
    pub fn new(networks: impl IntoIterator<Item = &'a Network>) -> Self {
        let members: Vec<Inference<'a>> = networks.into_iter().map(Inference::new).collect();
        assert!(!members.is_empty(), "an ensemble needs a network");
        Ensemble { members }
    }

    /// The first member, alone (for work one network's reading serves, like proposing).
    pub fn first(&self) -> &Inference<'a> {
        &self.members[0]
    }

    /// Whether every member has the offset head.
    pub fn has_offset(&self) -> bool {
        self.members.iter().all(Inference::has_offset)
    }

    /// The members' mean outputs at each image's centre cell alone, as 1×1 outputs (see
    /// [`Inference::forward_centre`]; one member's own outputs, untouched, when there is
    /// one). Dense maps are one member's: [`first`](Self::first).
    pub fn forward_centre(&self, input: &[f32], batch: usize, channels: usize, rows: usize, cols: usize) -> HeadOutputs {
        if let [only] = self.members.as_slice() {
            return only.forward_centre(input, batch, channels, rows, cols);
        }
        let parts: Vec<HeadOutputs> = self.members.iter().map(|m| m.forward_centre(input, batch, channels, rows, cols)).collect();
        HeadOutputs::mean(&parts).expect("every member reads one cell per image")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::NetworkConfig;
    use burn::tensor::{Distribution, Tensor, TensorData};

    /// The fused pass computes what burn computes, for a network whose batch norms have
    /// non-trivial statistics (as after training), on a batch and on a large single tile.
    #[test]
    fn matches_the_framework_forward_pass() {
        let device = crate::device::current();
        let mut net = NetworkConfig::new(4, 2).with_offset_head(true).init(&device);
        // Give every batch norm running statistics and affine parameters away from identity.
        let perturb = |bn: &mut BatchNorm, seed: f32| {
            let n = bn.gamma.val().dims()[0];
            let v = |f: &dyn Fn(usize) -> f32| Tensor::<1>::from_data(TensorData::new((0..n).map(f).collect::<Vec<_>>(), [n]), &device);
            bn.gamma = burn::module::Param::from_tensor(v(&|i| 0.5 + ((i as f32 * 0.37 + seed).sin()).abs()));
            bn.beta = burn::module::Param::from_tensor(v(&|i| 0.1 * (i as f32 * 0.91 + seed).cos()));
            bn.running_mean = burn::module::RunningState::new(v(&|i| 0.2 * (i as f32 * 1.3 + seed).sin()));
            bn.running_var = burn::module::RunningState::new(v(&|i| 0.5 + 0.4 * (i as f32 * 0.7 + seed).cos().abs()));
        };
        perturb(&mut net.stem.bn, 0.1);
        for (i, block) in [&mut net.stage1, &mut net.stage1b, &mut net.stage2, &mut net.stage2b].into_iter().enumerate() {
            perturb(&mut block.first.bn, 1.0 + i as f32);
            perturb(&mut block.second_bn, 2.5 + i as f32);
        }
        let cpu = CpuNetwork::new(&net).with_threads(2);
        let single = CpuNetwork::new(&net).with_threads(1);
        for (batch, rows, cols) in [(3usize, 52usize, 52usize), (1, 200, 200), (2, 37, 53), (1, 1, 1), (5, 9, 30)] {
            let x: Tensor<4> = Tensor::random([batch, 4, rows, cols], Distribution::Uniform(0.0, 1.0), &device);
            let data = x.to_data().try_to_vec::<f32>().expect("f32");
            let want = net.forward(x);
            let got = cpu.forward(&data, batch, 4, rows, cols);
            assert_eq!(got, single.forward(&data, batch, 4, rows, cols), "threads change nothing");
            let side = format!("{rows}×{cols}");
            // The centre cell alone, computed only where it depends on each layer, reads what
            // the whole pass reads there.
            let centre = cpu.forward_centre(&data, batch, 4, rows, cols);
            let whole = got.centre();
            assert_eq!([centre.batch, centre.rows, centre.cols], [batch, 1, 1]);
            for (name, a, b) in [("class", &centre.class_logits, &whole.class_logits), ("heading", &centre.heading, &whole.heading), ("size", &centre.size, &whole.size), ("offset", &centre.offset, &whole.offset)] {
                assert_eq!(a.len(), b.len(), "{name} head's centre cells, {side}");
                let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0f32, f32::max);
                assert!(worst < 1e-5, "{name} head's centre cells, batch {batch} of {side}: relative difference {worst}");
            }
            assert_eq!([got.batch, got.class_channels(), got.rows, got.cols], want.class_logits.dims());
            for (name, a, b) in [("class", got.class_logits, want.class_logits), ("heading", got.heading, want.heading), ("size", got.size, want.size), ("offset", got.offset, want.offset.expect("the network has the offset head"))] {
                let b = b.to_data().try_to_vec::<f32>().expect("f32");
                let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0f32, f32::max);
                assert!(worst < 1e-4, "{name} head, batch {batch} of {side}: relative difference {worst}");
            }
        }
    }

    /// An ensemble reads the mean objectness of its members, and the mean of their other
    /// heads; outputs of different shapes do not combine.
    #[test]
    fn an_ensemble_reads_its_members_mean() {
        // One image, 1×2 cells, background and one class.
        let out = |logits: [f32; 4], heading: [f32; 4], size: [f32; 4], offset: Vec<f32>| HeadOutputs { batch: 1, rows: 1, cols: 2, class_logits: logits.to_vec(), heading: heading.to_vec(), size: size.to_vec(), offset };
        let a = out([0.0, 2.0, 1.0, -3.0], [0.0, 1.0, 1.0, 0.0], [1.5, 1.0, 0.7, 0.5], vec![0.2, -0.4, 0.0, 0.6]);
        let b = out([4.0, -1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 1.0], [1.3, 1.2, 0.9, 0.7], vec![0.0, 0.2, 0.4, -0.2]);
        let mean = HeadOutputs::mean(&[a.clone(), b.clone()]).expect("same shapes");
        for cell in 0..2 {
            let want = (a.objectness(0, cell) + b.objectness(0, cell)) / 2.0;
            assert!((mean.objectness(0, cell) - want).abs() < 1e-6, "cell {cell}: {} against {want}", mean.objectness(0, cell));
        }
        assert_eq!(mean.heading, vec![0.5, 0.5, 0.5, 0.5]);
        assert!(mean.size.iter().zip([1.4, 1.1, 0.8, 0.6]).all(|(g, w)| (g - w).abs() < 1e-6), "{:?}", mean.size);
        assert!(mean.offset.iter().zip([0.1, -0.1, 0.2, 0.2]).all(|(g, w)| (g - w).abs() < 1e-6), "{:?}", mean.offset);
        // A member without the offset head: the mean has none.
        let plain = HeadOutputs { offset: Vec::new(), ..b.clone() };
        assert!(HeadOutputs::mean(&[a.clone(), plain]).expect("same shapes").offset.is_empty());
        // One member is itself.
        assert_eq!(HeadOutputs::mean(std::slice::from_ref(&a)), Some(a.clone()));
        // Another grid of cells, or no outputs at all, make no mean.
        let other = HeadOutputs { rows: 2, cols: 1, ..b };
        assert_eq!(HeadOutputs::mean(&[a, other]), None);
        assert_eq!(HeadOutputs::mean(&[]), None);
    }
}
