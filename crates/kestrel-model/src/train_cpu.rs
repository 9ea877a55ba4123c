//! The network's training step on the CPU, without the training framework: burn's CPU backend
//! trains the network at about a third of the speed PyTorch reaches with the same architecture
//! on the same two cores (408 against 1,304 chips a second, 2026-12-06), in many small
//! operations and copies around the matrix products. Here each layer's forward pass keeps what
//! its backward pass needs, activations stay channels-last (NHWC), every convolution is an
//! im2col followed by one matrix product (`gemm`, as burn's own), a group of images at a time
//! so that the columns stay in the cache, its backward pass two more (weights: columnsᵀ·dy;
//! input: dy·Wᵀ folded back by col2im), and batch norm, ReLU and the residual sums are parallel
//! passes over the activations. The heads are read at the chip's
//! centre cell, as [`crate::train`]'s loss reads them. Adam and the running statistics follow
//! burn's (`AdamConfig::new()`, `BatchNorm` momentum and epsilon), so a network trained here is
//! the same kind of [`Network`] and goes on to the weight average, validation, checkpoints and
//! the package unchanged. The GPU keeps burn's autodiff.

use crate::infer::{conv_weights, values};
use crate::network::{Network, NetworkConfig, Residual, STRIDE};
use burn::module::{Module, Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::BatchNorm;
use burn::tensor::{Device, Tensor, TensorData};
use kestrel_samples::dataset::Example;
use kestrel_samples::HeadingMode;
use rayon::prelude::*;

/// A convolution's place in the parameter vector: weights `[kernel·kernel·cin, cout]`, row
/// index `(ky·kernel + kx)·cin + ci` (as the inference pass lays them out), no bias.
#[derive(Clone, Copy, Debug)]
struct ConvSlot {
    kernel: usize,
    stride: usize,
    cin: usize,
    cout: usize,
    at: usize,
}

impl ConvSlot {
    fn len(&self) -> usize {
        self.kernel * self.kernel * self.cin * self.cout
    }
}

/// A batch norm's place: γ at `at`, β at `at + channels` in the parameters; the running mean
/// at `stats`, the running variance at `stats + channels` in the statistics.
#[derive(Clone, Copy, Debug)]
struct BnSlot {
    channels: usize,
    at: usize,
    stats: usize,
}

#[derive(Clone, Copy, Debug)]
struct BlockSlots {
    first: ConvSlot,
    first_bn: BnSlot,
    second: ConvSlot,
    second_bn: BnSlot,
    skip: Option<ConvSlot>,
}

/// The 1×1 heads side by side: weights `[cin, outputs]` at `at`, biases at `bias`; `outputs`
/// per head in the order class, heading, size, offset.
#[derive(Clone, Debug)]
struct HeadSlots {
    cin: usize,
    outputs: Vec<usize>,
    at: usize,
    bias: usize,
}

impl HeadSlots {
    fn total(&self) -> usize {
        self.outputs.iter().sum()
    }
}

/// Where every parameter lies in the flat vectors.
#[derive(Clone, Debug)]
struct Layout {
    stem: ConvSlot,
    stem_bn: BnSlot,
    blocks: [BlockSlots; 4],
    heads: HeadSlots,
    params: usize,
    stats: usize,
}

impl Layout {
    fn new(config: &NetworkConfig) -> Self {
        let (mut params, mut stats) = (0, 0);
        let mut conv = |kernel, stride, cin, cout| {
            let s = ConvSlot { kernel, stride, cin, cout, at: params };
            params += s.len();
            s
        };
        let [w0, w1, w2] = config.widths;
        let stem = conv(3, 2, config.in_channels, w0);
        let mut block_convs = |cin: usize, cout: usize, stride: usize| {
            let first = conv(3, stride, cin, cout);
            let second = conv(3, 1, cout, cout);
            let skip = (cin != cout || stride != 1).then(|| conv(1, stride, cin, cout));
            (first, second, skip)
        };
        let convs = [block_convs(w0, w1, 2), block_convs(w1, w1, 1), block_convs(w1, w2, 2), block_convs(w2, w2, 1)];
        let mut bn = |channels| {
            let s = BnSlot { channels, at: params, stats };
            params += 2 * channels;
            stats += 2 * channels;
            s
        };
        let stem_bn = bn(w0);
        let blocks = convs.map(|(first, second, skip)| BlockSlots {
            first,
            first_bn: bn(first.cout),
            second,
            second_bn: bn(second.cout),
            skip,
        });
        let mut outputs = vec![config.classes + 1, 2, 2];
        if config.offset_head {
            outputs.push(2);
        }
        let total: usize = outputs.iter().sum();
        let heads = HeadSlots { cin: w2, outputs, at: params, bias: params + w2 * total };
        params += w2 * total + total;
        Layout { stem, stem_bn, blocks, heads, params, stats }
    }
}

/// A convolution's weights into its slot, in the inference pass's layout.
fn read_conv(conv: &Conv2d, slot: ConvSlot, params: &mut [f32]) {
    let (_, _, _, _, weight) = conv_weights(conv, &vec![1.0; slot.cout]);
    params[slot.at..slot.at + slot.len()].copy_from_slice(&weight);
}

fn write_conv(conv: &mut Conv2d, slot: ConvSlot, params: &[f32], device: &Device) {
    let (k, cin, cout) = (slot.kernel, slot.cin, slot.cout);
    let mut w = vec![0f32; slot.len()];
    for co in 0..cout {
        for ci in 0..cin {
            for ky in 0..k {
                for kx in 0..k {
                    w[((co * cin + ci) * k + ky) * k + kx] = params[slot.at + ((ky * k + kx) * cin + ci) * cout + co];
                }
            }
        }
    }
    conv.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [cout, cin, k, k]), device));
}

fn read_bn(bn: &BatchNorm, slot: BnSlot, params: &mut [f32], stats: &mut [f32]) {
    let c = slot.channels;
    params[slot.at..slot.at + c].copy_from_slice(&values(bn.gamma.val()));
    params[slot.at + c..slot.at + 2 * c].copy_from_slice(&values(bn.beta.val()));
    stats[slot.stats..slot.stats + c].copy_from_slice(&values(bn.running_mean.value_sync()));
    stats[slot.stats + c..slot.stats + 2 * c].copy_from_slice(&values(bn.running_var.value_sync()));
}

fn write_bn(bn: &mut BatchNorm, slot: BnSlot, params: &[f32], stats: &[f32], device: &Device) {
    let c = slot.channels;
    let t = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [c]), device);
    bn.gamma = Param::from_tensor(t(&params[slot.at..slot.at + c]));
    bn.beta = Param::from_tensor(t(&params[slot.at + c..slot.at + 2 * c]));
    bn.running_mean = RunningState::new(t(&stats[slot.stats..slot.stats + c]));
    bn.running_var = RunningState::new(t(&stats[slot.stats + c..slot.stats + 2 * c]));
}

/// Activations of a batch, channels-last: `[images, rows, cols, channels]`.
#[derive(Clone, Debug)]
struct Act {
    images: usize,
    rows: usize,
    cols: usize,
    channels: usize,
    data: Vec<f32>,
}

impl Act {
    fn pixels(&self) -> usize {
        self.images * self.rows * self.cols
    }
}

fn out_len(len: usize, kernel: usize, stride: usize) -> usize {
    (len + 2 * (kernel / 2) - kernel) / stride + 1
}

/// Writes the im2col of images `first .. first + images` of `x` for a `kernel`² convolution at
/// `stride`, padding `kernel / 2`, into `cols` (`[their out pixels, kernel·kernel·channels]`;
/// every value is written, the padding's as zeros, so that `cols` can be a reused buffer).
fn im2col(x: &Act, first: usize, images: usize, kernel: usize, stride: usize, cols: &mut [f32]) {
    let (ho, wo) = (out_len(x.rows, kernel, stride), out_len(x.cols, kernel, stride));
    let (c, pad) = (x.channels, (kernel / 2) as isize);
    let width = kernel * kernel * c;
    for (b, image) in cols.chunks_exact_mut(ho * wo * width).take(images).enumerate() {
        let src = &x.data[(first + b) * x.rows * x.cols * c..(first + b + 1) * x.rows * x.cols * c];
        for oy in 0..ho {
            for ox in 0..wo {
                let row = &mut image[(oy * wo + ox) * width..(oy * wo + ox + 1) * width];
                for ky in 0..kernel {
                    let iy = (oy * stride) as isize + ky as isize - pad;
                    if iy < 0 || iy >= x.rows as isize {
                        row[ky * kernel * c..(ky + 1) * kernel * c].fill(0.0);
                        continue;
                    }
                    for kx in 0..kernel {
                        let ix = (ox * stride) as isize + kx as isize - pad;
                        let to = &mut row[(ky * kernel + kx) * c..(ky * kernel + kx + 1) * c];
                        if ix < 0 || ix >= x.cols as isize {
                            to.fill(0.0);
                            continue;
                        }
                        let at = (iy as usize * x.cols + ix as usize) * c;
                        to.copy_from_slice(&src[at..at + c]);
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`] for the images whose gradient `dx` holds: each column entry's
/// gradient added onto the input pixel it was copied from.
fn col2im(dcols: &[f32], shape: &Act, kernel: usize, stride: usize, dx: &mut [f32]) {
    let (ho, wo) = (out_len(shape.rows, kernel, stride), out_len(shape.cols, kernel, stride));
    let (c, pad) = (shape.channels, (kernel / 2) as isize);
    let width = kernel * kernel * c;
    let plane = shape.rows * shape.cols * c;
    for (image, src) in dx.chunks_exact_mut(plane).zip(dcols.chunks_exact(ho * wo * width)) {
        for oy in 0..ho {
            for ox in 0..wo {
                let row = &src[(oy * wo + ox) * width..(oy * wo + ox + 1) * width];
                for ky in 0..kernel {
                    let iy = (oy * stride) as isize + ky as isize - pad;
                    if iy < 0 || iy >= shape.rows as isize {
                        continue;
                    }
                    for kx in 0..kernel {
                        let ix = (ox * stride) as isize + kx as isize - pad;
                        if ix < 0 || ix >= shape.cols as isize {
                            continue;
                        }
                        let at = (iy as usize * shape.cols + ix as usize) * c;
                        image[at..at + c].iter_mut().zip(&row[(ky * kernel + kx) * c..(ky * kernel + kx + 1) * c]).for_each(|(d, g)| *d += g);
                    }
                }
            }
        }
    }
}

thread_local! {
    /// Each thread's im2col buffer, kept between layers and steps: fresh buffers of a MiB cost
    /// page faults and zero-filling on every task.
    static COLUMNS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's column buffer, `len` values long (their contents undefined: the
/// caller writes before it reads). `f` must not start parallel work, which could run another
/// task wanting the buffer on this thread.
fn with_columns<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    COLUMNS.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        if buffer.len() < len {
            buffer.resize(len, 0.0);
        }
        f(&mut buffer[..len])
    })
}

/// Images per task of a convolution: about 256 Ki values of im2col columns (1 MiB), so that
/// a task's columns stay in the cache between being cut and multiplied.
fn group_images(x: &Act, slot: ConvSlot) -> usize {
    let rows = out_len(x.rows, slot.kernel, slot.stride) * out_len(x.cols, slot.kernel, slot.stride);
    (262_144 / (rows * slot.kernel * slot.kernel * slot.cin).max(1)).clamp(1, x.images.max(1))
}

/// `dst[m×n] = lhs[m×k] · rhs[k×n]` on one thread, row-major; with `accumulate`, added to `dst`.
#[allow(clippy::too_many_arguments)]
fn gemm_into(m: usize, n: usize, k: usize, dst: &mut [f32], accumulate: bool, lhs: &[f32], lhs_strides: (usize, usize), rhs: &[f32], rhs_strides: (usize, usize)) {
    assert!(dst.len() >= m * n, "the product fits its destination");
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let ((lrs, lcs), (rrs, rcs)) = (lhs_strides, rhs_strides);
    assert!((m - 1) * lrs + (k - 1) * lcs < lhs.len(), "the left operand holds what is read");
    assert!((k - 1) * rrs + (n - 1) * rcs < rhs.len(), "the right operand holds what is read");
    // SAFETY: the asserts keep every read inside `lhs` and `rhs` and every write inside `dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lcs as isize,
            lrs as isize,
            rhs.as_ptr(),
            rcs as isize,
            rrs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

fn conv_forward(x: &Act, slot: ConvSlot, params: &[f32]) -> Act {
    let (ho, wo) = (out_len(x.rows, slot.kernel, slot.stride), out_len(x.cols, slot.kernel, slot.stride));
    let width = slot.kernel * slot.kernel * slot.cin;
    let group = group_images(x, slot);
    let weights = &params[slot.at..slot.at + slot.len()];
    let mut y = vec![0f32; x.images * ho * wo * slot.cout];
    y.par_chunks_mut(group * ho * wo * slot.cout).enumerate().for_each(|(task, out)| {
        let images = out.len() / (ho * wo * slot.cout);
        with_columns(images * ho * wo * width, |cols| {
            im2col(x, task * group, images, slot.kernel, slot.stride, cols);
            gemm_into(images * ho * wo, slot.cout, width, out, false, cols, (width, 1), weights, (slot.cout, 1));
        });
    });
    Act { images: x.images, rows: ho, cols: wo, channels: slot.cout, data: y }
}

/// From the gradient of the output of a convolution of `x`: writes the weight gradient into
/// `grads` and returns the input's gradient (when asked for). The im2col of `x` is cut again
/// here, a group of images at a time, rather than kept from the forward pass: a batch's
/// columns are tens of MiB, a group's stay in the cache.
fn conv_backward(dy: &[f32], slot: ConvSlot, x: &Act, params: &[f32], grads: &mut [f32], input_grad: bool) -> Option<Vec<f32>> {
    let (ho, wo) = (out_len(x.rows, slot.kernel, slot.stride), out_len(x.cols, slot.kernel, slot.stride));
    let (width, cout) = (slot.kernel * slot.kernel * slot.cin, slot.cout);
    let group = group_images(x, slot);
    let weights = &params[slot.at..slot.at + slot.len()];
    let plane = x.rows * x.cols * x.channels;
    // One task's share: its images' weight gradient (columnsᵀ·dy) and, when asked, their
    // input gradient (dy·Wᵀ folded back by col2im).
    let task = |t: usize, dx: Option<&mut [f32]>| -> Vec<f32> {
        let images = group.min(x.images - t * group);
        let rows = images * ho * wo;
        let dy = &dy[t * group * ho * wo * cout..][..rows * cout];
        let mut dw = vec![0f32; width * cout];
        with_columns(rows * width, |cols| {
            im2col(x, t * group, images, slot.kernel, slot.stride, cols);
            gemm_into(width, cout, rows, &mut dw, false, cols, (1, width), dy, (cout, 1));
            if let Some(dx) = dx {
                // dy·Wᵀ: Wᵀ's element (co, kk) is W[kk·cout + co]; the columns' buffer is reused.
                gemm_into(rows, width, cout, cols, false, dy, (cout, 1), weights, (1, cout));
                col2im(cols, x, slot.kernel, slot.stride, dx);
            }
        });
        dw
    };
    let tasks = x.images.div_ceil(group);
    let (partials, dx): (Vec<Vec<f32>>, Option<Vec<f32>>) = if input_grad {
        let mut dx = vec![0f32; x.images * plane];
        let partials = dx.par_chunks_mut(group * plane).enumerate().map(|(t, d)| task(t, Some(d))).collect();
        (partials, Some(dx))
    } else {
        ((0..tasks).into_par_iter().map(|t| task(t, None)).collect(), None)
    };
    // Summed in the tasks' order, whichever thread ran them, so that a run repeats bit for bit.
    let dw = &mut grads[slot.at..slot.at + slot.len()];
    dw.fill(0.0);
    for p in &partials {
        dw.iter_mut().zip(p).for_each(|(d, v)| *d += v);
    }
    dx
}

/// What batch norm's backward pass needs: the normalized input and 1/σ per channel.
struct BnCache {
    normalized: Vec<f32>,
    inv_std: Vec<f32>,
}

/// Parts a pass over a batch's pixels is split into: fixed, not the thread count, so that
/// per-part sums add up in the same order on any machine and a run repeats bit for bit.
const PARTS: usize = 16;

/// Pixels (of `channels` values) per part of a pass over `values` values.
fn part_len(values: usize, channels: usize) -> usize {
    (values / channels).div_ceil(PARTS).max(1) * channels
}

/// Per-channel sums of `f(pixel, channel)` over the pixels of `data` (`channels` values each),
/// the parts summed in parallel and added in order.
fn channel_sums(data: &[f32], channels: usize, f: impl Fn(&[f32], &mut [f64]) + Sync) -> Vec<f64> {
    let parts: Vec<Vec<f64>> = data
        .par_chunks(part_len(data.len(), channels))
        .map(|part| {
            let mut sums = vec![0f64; channels];
            for px in part.chunks_exact(channels) {
                f(px, &mut sums);
            }
            sums
        })
        .collect();
    let mut total = vec![0f64; channels];
    for p in &parts {
        total.iter_mut().zip(p).for_each(|(t, v)| *t += v);
    }
    total
}

/// Batch norm with the batch's statistics (updating the running ones as burn does), in place.
fn bn_forward(x: &mut Act, slot: BnSlot, params: &[f32], stats: &mut [f32], epsilon: f64, momentum: f64) -> BnCache {
    let c = slot.channels;
    let n = x.pixels() as f64;
    let sum = channel_sums(&x.data, c, |px, s| s.iter_mut().zip(px).for_each(|(s, v)| *s += f64::from(*v)));
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let mean32: Vec<f32> = mean.iter().map(|m| *m as f32).collect();
    let sq = channel_sums(&x.data, c, |px, s| {
        s.iter_mut().zip(px).zip(&mean32).for_each(|((s, v), m)| {
            let d = f64::from(v - m);
            *s += d * d;
        })
    });
    // Biased (population) variance, as burn's batch_norm_train returns and its running
    // statistics take.
    let var: Vec<f64> = sq.iter().map(|s| s / n).collect();
    let inv_std: Vec<f32> = var.iter().map(|v| (1.0 / (v + epsilon).sqrt()) as f32).collect();
    let (gamma, beta) = (&params[slot.at..slot.at + c], &params[slot.at + c..slot.at + 2 * c]);
    let mut normalized = vec![0f32; x.data.len()];
    let part = part_len(x.data.len(), c);
    x.data.par_chunks_mut(part).zip(normalized.par_chunks_mut(part)).for_each(|(xs, ns)| {
        for (px, nx) in xs.chunks_exact_mut(c).zip(ns.chunks_exact_mut(c)) {
            for i in 0..c {
                let h = (px[i] - mean32[i]) * inv_std[i];
                nx[i] = h;
                px[i] = gamma[i] * h + beta[i];
            }
        }
    });
    let (rm, rv) = stats[slot.stats..slot.stats + 2 * c].split_at_mut(c);
    for i in 0..c {
        rm[i] = (f64::from(rm[i]) * (1.0 - momentum) + mean[i] * momentum) as f32;
        rv[i] = (f64::from(rv[i]) * (1.0 - momentum) + var[i] * momentum) as f32;
    }
    BnCache { normalized, inv_std }
}

/// From the output's gradient (in place) to the input's; γ's and β's into `grads`.
fn bn_backward(dy: &mut [f32], slot: BnSlot, cache: &BnCache, params: &[f32], grads: &mut [f32]) {
    let c = slot.channels;
    let n = (dy.len() / c) as f64;
    let part = part_len(dy.len(), c);
    // Σ dy and Σ dy·x̂ per channel, side by side.
    let parts: Vec<Vec<f64>> = dy
        .par_chunks(part)
        .zip(cache.normalized.par_chunks(part))
        .map(|(gs, hs)| {
            let mut sums = vec![0f64; 2 * c];
            for (g, h) in gs.chunks_exact(c).zip(hs.chunks_exact(c)) {
                for i in 0..c {
                    sums[i] += f64::from(g[i]);
                    sums[c + i] += f64::from(g[i] * h[i]);
                }
            }
            sums
        })
        .collect();
    let mut sums = vec![0f64; 2 * c];
    for p in &parts {
        sums.iter_mut().zip(p).for_each(|(t, v)| *t += v);
    }
    let (sum_dy, sum_dy_h) = sums.split_at(c);
    let gamma = &params[slot.at..slot.at + c];
    for i in 0..c {
        grads[slot.at + i] = sum_dy_h[i] as f32;
        grads[slot.at + c + i] = sum_dy[i] as f32;
    }
    let scale: Vec<f32> = (0..c).map(|i| gamma[i] * cache.inv_std[i]).collect();
    let mean_dy: Vec<f32> = sum_dy.iter().map(|s| (s / n) as f32).collect();
    let mean_dy_h: Vec<f32> = sum_dy_h.iter().map(|s| (s / n) as f32).collect();
    dy.par_chunks_mut(part).zip(cache.normalized.par_chunks(part)).for_each(|(gs, hs)| {
        for (g, h) in gs.chunks_exact_mut(c).zip(hs.chunks_exact(c)) {
            for i in 0..c {
                g[i] = scale[i] * (g[i] - mean_dy[i] - h[i] * mean_dy_h[i]);
            }
        }
    });
}

/// Values per part of an element-wise pass.
const ELEMENTWISE_PART: usize = 65_536;

fn relu(x: &mut [f32]) {
    x.par_chunks_mut(ELEMENTWISE_PART).for_each(|p| p.iter_mut().for_each(|v| *v = v.max(0.0)));
}

/// `x += y`, element-wise.
fn add_into(x: &mut [f32], y: &[f32]) {
    x.par_chunks_mut(ELEMENTWISE_PART).zip(y.par_chunks(ELEMENTWISE_PART)).for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, b)| *a += b));
}

/// The gradient through a ReLU whose output was `y`, in place.
fn relu_backward(dy: &mut [f32], y: &[f32]) {
    dy.par_chunks_mut(ELEMENTWISE_PART).zip(y.par_chunks(ELEMENTWISE_PART)).for_each(|(g, y)| {
        g.iter_mut().zip(y).for_each(|(g, v)| {
            if *v <= 0.0 {
                *g = 0.0;
            }
        })
    });
}

/// What a block's forward pass keeps (its input is the previous layer's output).
struct BlockCache {
    first_bn: BnCache,
    /// The first convolution's output after batch norm and ReLU.
    hidden: Act,
    second_bn: BnCache,
    /// The block's output (after the ReLU).
    output: Act,
}

/// What a forward pass keeps for its backward pass.
struct Cache {
    /// The chips, channels-last.
    input: Act,
    stem_bn: BnCache,
    stem_out: Act,
    blocks: Vec<BlockCache>,
    /// The last block's output at the centre cell, `[images, channels]`.
    centre: Vec<f32>,
    /// The last block's output shape.
    features: Act,
}

/// A batch's inputs and targets as the loss of [`crate::train`] takes them.
pub struct CpuBatch {
    /// Chips `[b, c, s, s]`, as burn lays them out.
    pub x: Vec<f32>,
    pub images: usize,
    pub bands: usize,
    pub size_px: usize,
    /// 0 background, 1 the class.
    pub class: Vec<usize>,
    /// (sin, cos) of θ or 2θ, `[b, 2]`.
    pub heading: Vec<f32>,
    /// ln(length_m), ln(width_m), `[b, 2]`.
    pub size: Vec<f32>,
    pub positive: Vec<f32>,
    pub sized: Vec<f32>,
    /// Offset from the chip's centre in output cells, `[b, 2]`.
    pub offset: Vec<f32>,
}

impl CpuBatch {
    /// The chips and targets of `examples` (also what burn's tensors are made of).
    pub fn new(examples: &[Example], mode: HeadingMode) -> Self {
        let b = examples.len();
        let (bands, size_px) = examples.first().map_or((0, 0), |e| (e.chip.bands, e.chip.size));
        let k = match mode {
            HeadingMode::Directed => 1.0,
            HeadingMode::Axis => 2.0,
        };
        let mut batch = CpuBatch {
            x: Vec::with_capacity(b * bands * size_px * size_px),
            images: b,
            bands,
            size_px,
            class: Vec::with_capacity(b),
            heading: Vec::with_capacity(2 * b),
            size: Vec::with_capacity(2 * b),
            positive: Vec::with_capacity(b),
            sized: Vec::with_capacity(b),
            offset: Vec::with_capacity(2 * b),
        };
        for e in examples {
            batch.x.extend_from_slice(&e.chip.data);
            batch.class.push(usize::from(e.positive));
            let t = (e.heading_deg * k).to_radians();
            batch.heading.extend([t.sin() as f32, t.cos() as f32]);
            batch.positive.push(if e.positive { 1.0 } else { 0.0 });
            let [l, w] = e.size_m.unwrap_or([1.0, 1.0]);
            batch.size.extend([l.max(1e-3).ln() as f32, w.max(1e-3).ln() as f32]);
            batch.sized.push(if e.size_m.is_some() { 1.0 } else { 0.0 });
            batch.offset.extend(e.offset_px.map(|v| (v / STRIDE as f64) as f32));
        }
        batch
    }

    /// The chips channels-last.
    fn nhwc(&self) -> Act {
        let (c, s) = (self.bands, self.size_px);
        let mut data = vec![0f32; self.x.len()];
        for b in 0..self.images {
            for ch in 0..c {
                for p in 0..s * s {
                    data[(b * s * s + p) * c + ch] = self.x[(b * c + ch) * s * s + p];
                }
            }
        }
        Act { images: self.images, rows: s, cols: s, channels: c, data }
    }
}

/// Adam's constants, burn's defaults (`AdamConfig::new()`).
const BETA_1: f64 = 0.9;
const BETA_2: f64 = 0.999;
const ADAM_EPSILON: f64 = 1e-5;

/// A network being trained on the CPU: its parameters, running statistics and Adam's moments
/// as flat vectors.
pub struct CpuTrainer {
    config: NetworkConfig,
    /// A network of this shape whose parameters [`CpuTrainer::network`] replaces (cheaper
    /// than initializing one afresh at every step).
    template: Network,
    layout: Layout,
    params: Vec<f32>,
    stats: Vec<f32>,
    moment_1: Vec<f32>,
    moment_2: Vec<f32>,
    /// Adam steps taken.
    steps: u64,
    epsilon: f64,
    momentum: f64,
    /// The weight average (see [`crate::ema`]), kept here in the flat layout so that a step
    /// does not build a network to fold into it.
    average: Option<Average>,
}

/// An exponential moving average of the parameters and running statistics, as
/// [`crate::ema::WeightAverage`] computes it.
struct Average {
    params: Vec<f32>,
    stats: Vec<f32>,
    steps: u64,
    max_decay: f32,
}

impl CpuTrainer {
    /// Training starts from `network`'s weights and statistics, with Adam's moments at zero.
    pub fn new(network: &Network, config: &NetworkConfig) -> Self {
        let layout = Layout::new(config);
        let mut params = vec![0f32; layout.params];
        let mut stats = vec![0f32; layout.stats];
        read_conv(&network.stem.conv, layout.stem, &mut params);
        read_bn(&network.stem.bn, layout.stem_bn, &mut params, &mut stats);
        for (block, slots) in blocks(network).into_iter().zip(&layout.blocks) {
            read_conv(&block.first.conv, slots.first, &mut params);
            read_bn(&block.first.bn, slots.first_bn, &mut params, &mut stats);
            read_conv(&block.second, slots.second, &mut params);
            read_bn(&block.second_bn, slots.second_bn, &mut params, &mut stats);
            if let (Some(conv), Some(slot)) = (&block.skip, slots.skip) {
                read_conv(conv, slot, &mut params);
            }
        }
        let h = &layout.heads;
        let total = h.total();
        let mut first = 0;
        for (conv, outputs) in heads(network).into_iter().zip(&h.outputs) {
            let w = values(conv.weight.val());
            let b = conv.bias.as_ref().map(|b| values(b.val())).unwrap_or_else(|| vec![0.0; *outputs]);
            for o in 0..*outputs {
                for ci in 0..h.cin {
                    params[h.at + ci * total + first + o] = w[o * h.cin + ci];
                }
                params[h.bias + first + o] = b[o];
            }
            first += outputs;
        }
        CpuTrainer {
            config: config.clone(),
            template: network.valid(),
            moment_1: vec![0.0; params.len()],
            moment_2: vec![0.0; params.len()],
            params,
            layout,
            stats,
            steps: 0,
            epsilon: network.stem.bn.epsilon,
            momentum: network.stem.bn.momentum,
            average: None,
        }
    }

    /// Every step from now on folds the weights into an average that starts as `from`, after
    /// `steps` updates, with decay up to `max_decay` ([`crate::ema::WeightAverage`]'s rule).
    pub fn start_average(&mut self, from: &Network, steps: u64, max_decay: f32) {
        let start = CpuTrainer::new(from, &self.config);
        self.average = Some(Average { params: start.params, stats: start.stats, steps, max_decay });
    }

    /// The weight average as a network, and the updates folded into it.
    pub fn average(&self, device: &Device) -> Option<(Network, u64)> {
        self.average.as_ref().map(|a| (self.build(&a.params, &a.stats, device), a.steps))
    }

    /// Continues a run: Adam's moments as the networks [`CpuTrainer::moments`] wrote, after
    /// `steps` steps.
    pub fn with_moments(mut self, moment_1: &Network, moment_2: &Network, steps: u64) -> Self {
        self.moment_1 = CpuTrainer::new(moment_1, &self.config).params;
        self.moment_2 = CpuTrainer::new(moment_2, &self.config).params;
        self.steps = steps;
        self
    }

    /// Adam's moments as networks of the same shape (so that they save and load as any
    /// network's record does), and the steps taken.
    pub fn moments(&self, device: &Device) -> (Network, Network, u64) {
        (self.build(&self.moment_1, &self.stats, device), self.build(&self.moment_2, &self.stats, device), self.steps)
    }

    /// Adam steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The network as trained so far.
    pub fn network(&self, device: &Device) -> Network {
        self.build(&self.params, &self.stats, device)
    }

    fn build(&self, params: &[f32], stats: &[f32], device: &Device) -> Network {
        let l = &self.layout;
        let mut net = self.template.clone().to_device(device);
        write_conv(&mut net.stem.conv, l.stem, params, device);
        write_bn(&mut net.stem.bn, l.stem_bn, params, stats, device);
        for (block, slots) in blocks_mut(&mut net).into_iter().zip(&l.blocks) {
            write_conv(&mut block.first.conv, slots.first, params, device);
            write_bn(&mut block.first.bn, slots.first_bn, params, stats, device);
            write_conv(&mut block.second, slots.second, params, device);
            write_bn(&mut block.second_bn, slots.second_bn, params, stats, device);
            if let (Some(conv), Some(slot)) = (&mut block.skip, slots.skip) {
                write_conv(conv, slot, params, device);
            }
        }
        let h = &l.heads;
        let total = h.total();
        let mut first = 0;
        for (conv, outputs) in heads_mut(&mut net).into_iter().zip(&h.outputs) {
            let mut w = vec![0f32; outputs * h.cin];
            for o in 0..*outputs {
                for ci in 0..h.cin {
                    w[o * h.cin + ci] = params[h.at + ci * total + first + o];
                }
            }
            conv.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [*outputs, h.cin, 1, 1]), device));
            let b = params[h.bias + first..h.bias + first + outputs].to_vec();
            conv.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(b, [*outputs]), device)));
            first += outputs;
        }
        net
    }

    fn forward(&mut self, input: Act) -> (Vec<f32>, Cache) {
        let l = self.layout.clone();
        let mut stem_out = conv_forward(&input, l.stem, &self.params);
        let stem_bn = bn_forward(&mut stem_out, l.stem_bn, &self.params, &mut self.stats, self.epsilon, self.momentum);
        relu(&mut stem_out.data);
        let mut caches: Vec<BlockCache> = Vec::with_capacity(4);
        for slots in &l.blocks {
            let x = caches.last().map_or(&stem_out, |c| &c.output);
            let mut h = conv_forward(x, slots.first, &self.params);
            let first_bn = bn_forward(&mut h, slots.first_bn, &self.params, &mut self.stats, self.epsilon, self.momentum);
            relu(&mut h.data);
            let mut y = conv_forward(&h, slots.second, &self.params);
            let second_bn = bn_forward(&mut y, slots.second_bn, &self.params, &mut self.stats, self.epsilon, self.momentum);
            match slots.skip {
                Some(slot) => {
                    let s = conv_forward(x, slot, &self.params);
                    add_into(&mut y.data, &s.data);
                }
                None => add_into(&mut y.data, &x.data),
            }
            relu(&mut y.data);
            caches.push(BlockCache { first_bn, hidden: h, second_bn, output: y });
        }
        let x = caches.last().map_or(&stem_out, |c| &c.output);
        // The heads at the centre cell, as `network::centre_cell` reads them.
        let h = &l.heads;
        let total = h.total();
        let (cy, cx) = (x.rows / 2, x.cols / 2);
        let mut centre = vec![0f32; x.images * h.cin];
        for b in 0..x.images {
            let at = ((b * x.rows + cy) * x.cols + cx) * h.cin;
            centre[b * h.cin..(b + 1) * h.cin].copy_from_slice(&x.data[at..at + h.cin]);
        }
        let mut out = vec![0f32; x.images * total];
        gemm_into(x.images, total, h.cin, &mut out, false, &centre, (h.cin, 1), &self.params[h.at..h.at + h.cin * total], (total, 1));
        for row in out.chunks_exact_mut(total) {
            row.iter_mut().zip(&self.params[h.bias..h.bias + total]).for_each(|(v, b)| *v += b);
        }
        let features = Act { data: Vec::new(), ..*x };
        (out, Cache { input, stem_bn, stem_out, blocks: caches, centre, features })
    }

    /// The loss of [`crate::train`] and its gradient with respect to the heads' outputs.
    fn loss(&self, out: &[f32], batch: &CpuBatch, class_weights: [f32; 2]) -> (f64, Vec<f32>) {
        let h = &self.layout.heads;
        let total = h.total();
        let k = h.outputs[0];
        let n = batch.images;
        let mut grad = vec![0f32; out.len()];
        let weight = |y: usize| f64::from(class_weights.get(y).copied().unwrap_or(1.0));
        let weight_sum: f64 = batch.class.iter().map(|&y| weight(y)).sum();
        let mut ce = 0.0;
        for b in 0..n {
            let logits = &out[b * total..b * total + k];
            let top = logits.iter().fold(f32::NEG_INFINITY, |a, v| a.max(*v));
            let sum: f64 = logits.iter().map(|v| f64::from(v - top).exp()).sum();
            let y = batch.class[b];
            let w = weight(y);
            ce -= w * (f64::from(logits[y] - top) - sum.ln());
            for c in 0..k {
                let p = f64::from(logits[c] - top).exp() / sum;
                grad[b * total + c] = (w / weight_sum * (p - if c == y { 1.0 } else { 0.0 })) as f32;
            }
        }
        let mut loss = ce / weight_sum;
        let positives = batch.positive.iter().map(|v| f64::from(*v)).sum::<f64>().max(1.0);
        let sized = batch.sized.iter().map(|v| f64::from(*v)).sum::<f64>().max(1.0);
        // Squared errors on the positives: ½ heading, ½ size, and the offset in full.
        let mut regression = |first: usize, target: &[f32], mask: &[f32], scale: f64, count: f64| {
            for b in 0..n {
                for j in 0..2 {
                    let d = f64::from(out[b * total + first + j] - target[b * 2 + j]) * f64::from(mask[b]);
                    loss += scale * d * d / count;
                    grad[b * total + first + j] = (scale * 2.0 * d * f64::from(mask[b]) / count) as f32;
                }
            }
        };
        regression(k, &batch.heading, &batch.positive, 0.5, positives);
        regression(k + 2, &batch.size, &batch.sized, 0.5, sized);
        if h.outputs.len() > 3 {
            regression(k + 4, &batch.offset, &batch.positive, 1.0, positives);
        }
        (loss, grad)
    }

    fn backward(&self, dout: &[f32], cache: &Cache, grads: &mut [f32]) {
        let l = &self.layout;
        let h = &l.heads;
        let total = h.total();
        let f = &cache.features;
        gemm_into(h.cin, total, f.images, &mut grads[h.at..h.at + h.cin * total], false, &cache.centre, (1, h.cin), dout, (total, 1));
        for row in dout.chunks_exact(total) {
            grads[h.bias..h.bias + total].iter_mut().zip(row).for_each(|(g, d)| *g += d);
        }
        let mut dcentre = vec![0f32; f.images * h.cin];
        gemm_into(f.images, h.cin, total, &mut dcentre, false, dout, (total, 1), &self.params[h.at..h.at + h.cin * total], (1, total));
        let mut dx = vec![0f32; f.pixels() * h.cin];
        let (cy, cx) = (f.rows / 2, f.cols / 2);
        for b in 0..f.images {
            let at = ((b * f.rows + cy) * f.cols + cx) * h.cin;
            dx[at..at + h.cin].copy_from_slice(&dcentre[b * h.cin..(b + 1) * h.cin]);
        }
        for (i, (slots, c)) in l.blocks.iter().zip(&cache.blocks).enumerate().rev() {
            let x = if i == 0 { &cache.stem_out } else { &cache.blocks[i - 1].output };
            relu_backward(&mut dx, &c.output.data);
            // dx is now the gradient of the sum (second branch + skip).
            let skip_grad = match slots.skip {
                Some(slot) => conv_backward(&dx, slot, x, &self.params, grads, true),
                None => Some(dx.clone()),
            };
            let mut dy = dx;
            bn_backward(&mut dy, slots.second_bn, &c.second_bn, &self.params, grads);
            let mut dh = conv_backward(&dy, slots.second, &c.hidden, &self.params, grads, true).expect("asked for");
            relu_backward(&mut dh, &c.hidden.data);
            bn_backward(&mut dh, slots.first_bn, &c.first_bn, &self.params, grads);
            let mut d_in = conv_backward(&dh, slots.first, x, &self.params, grads, true).expect("asked for");
            if let Some(s) = skip_grad {
                add_into(&mut d_in, &s);
            }
            dx = d_in;
        }
        relu_backward(&mut dx, &cache.stem_out.data);
        bn_backward(&mut dx, l.stem_bn, &cache.stem_bn, &self.params, grads);
        conv_backward(&dx, l.stem, &cache.input, &self.params, grads, false);
    }

    /// The loss on `batch` and the gradient of every parameter (as the flat vector lays them
    /// out); like a training forward pass, it moves the running statistics.
    fn loss_and_gradients(&mut self, batch: &CpuBatch, class_weights: [f32; 2]) -> (f64, Vec<f32>) {
        let (out, cache) = self.forward(batch.nhwc());
        let (loss, dout) = self.loss(&out, batch, class_weights);
        let mut grads = vec![0f32; self.params.len()];
        self.backward(&dout, &cache, &mut grads);
        (loss, grads)
    }

    /// One training step: forward, loss, backward and Adam at `learning_rate`. Returns the loss.
    pub fn step(&mut self, batch: &CpuBatch, class_weights: [f32; 2], learning_rate: f64) -> f64 {
        let (loss, grads) = self.loss_and_gradients(batch, class_weights);
        self.steps += 1;
        let t = self.steps as i32;
        let correction_2 = (1.0 - BETA_2.powi(t)).sqrt();
        let factor = (learning_rate * correction_2 / (1.0 - BETA_1.powi(t))) as f32;
        let epsilon = (ADAM_EPSILON * correction_2) as f32;
        let (b1, b2) = (BETA_1 as f32, BETA_2 as f32);
        self.params
            .par_chunks_mut(4096)
            .zip(self.moment_1.par_chunks_mut(4096))
            .zip(self.moment_2.par_chunks_mut(4096))
            .zip(grads.par_chunks(4096))
            .for_each(|(((p, m1), m2), g)| {
                for i in 0..p.len() {
                    m1[i] = b1 * m1[i] + (1.0 - b1) * g[i];
                    m2[i] = b2 * m2[i] + (1.0 - b2) * g[i] * g[i];
                    p[i] -= factor * m1[i] / (m2[i].sqrt() + epsilon);
                }
            });
        if let Some(a) = &mut self.average {
            a.steps += 1;
            let decay = crate::ema::decay_at(a.steps, a.max_decay);
            // The same f32 arithmetic as the burn module mapper's, so either path averages alike.
            for (avg, new) in [(&mut a.params, &self.params), (&mut a.stats, &self.stats)] {
                avg.par_chunks_mut(4096).zip(new.par_chunks(4096)).for_each(|(avg, new)| {
                    avg.iter_mut().zip(new).for_each(|(v, n)| *v = *v * decay + n * (1.0 - decay));
                });
            }
        }
        loss
    }
}

fn blocks(n: &Network) -> [&Residual; 4] {
    [&n.stage1, &n.stage1b, &n.stage2, &n.stage2b]
}

fn blocks_mut(n: &mut Network) -> [&mut Residual; 4] {
    [&mut n.stage1, &mut n.stage1b, &mut n.stage2, &mut n.stage2b]
}

fn heads(n: &Network) -> Vec<&Conv2d> {
    let mut v = vec![&n.head_class, &n.head_heading, &n.head_size];
    v.extend(n.head_offset.as_ref());
    v
}

fn heads_mut(n: &mut Network) -> Vec<&mut Conv2d> {
    let mut v = vec![&mut n.head_class, &mut n.head_heading, &mut n.head_size];
    v.extend(n.head_offset.as_mut());
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{loss as burn_loss, to_tensors};
    use burn::module::{Module, ModuleMapper};
    use burn::optim::{AdamConfig, GradientsParams};
    use kestrel_samples::normalize::Chip;

    /// A small batch of chips with every kind of target: positives with and without a size,
    /// negatives, headings all round, offsets.
    fn examples(images: usize, bands: usize, size: usize) -> Vec<Example> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        (0..images)
            .map(|i| Example {
                chip: Chip { size, bands, data: (0..bands * size * size).map(|_| next() * 2.0 - 1.0).collect() },
                positive: i % 3 != 0,
                heading_deg: f64::from(next()) * 360.0,
                size_m: (i % 4 != 1).then(|| [4.0 + f64::from(next()), 1.8 + f64::from(next()) * 0.3]),
                offset_px: [f64::from(next()) * 6.0 - 3.0, f64::from(next()) * 6.0 - 3.0],
                source: i,
            })
            .collect()
    }

    /// Every parameter (and running statistic) replaced by its gradient in `grads` (zero where
    /// there is none), so that the gradients read back in the flat layout.
    struct ToGradient<'a>(&'a burn::tensor::Gradients);

    impl ModuleMapper for ToGradient<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let t = param.val();
            let g = t.grad(self.0).unwrap_or_else(|| t.inner().zeros_like());
            Param::from_tensor(g)
        }
    }

    fn assert_close(what: &str, ours: &[f32], theirs: &[f32], relative: f32) {
        assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
        let scale = theirs.iter().fold(0f32, |a, v| a.max(v.abs()));
        for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
            assert!((a - b).abs() <= relative * scale + 1e-6, "{what}[{i}]: {a} here, {b} by burn (largest {scale})");
        }
    }

    fn config() -> NetworkConfig {
        NetworkConfig::new(3, 1).with_offset_head(true).with_widths([4, 8, 8])
    }

    #[test]
    fn loss_gradients_and_statistics_match_burns_autodiff() {
        for (mode, size) in [(HeadingMode::Directed, 24), (HeadingMode::Axis, 26)] {
            let device = crate::device::current();
            device.seed(7);
            let ad = device.clone().autodiff();
            let config = config();
            let model = config.init(&ad);
            let mut trainer = CpuTrainer::new(&model, &config);
            let ex = examples(7, 3, size);
            let weights = [0.8, 1.4];
            let (loss, grads) = burn_loss(&model, to_tensors(&ex, mode, &ad), weights, &ad);
            let burn_value = f64::from(loss.clone().into_scalar::<f32>());
            let burn_grads = model.clone().map(&mut ToGradient(&loss.backward()));
            let _ = grads;
            let (value, ours) = trainer.loss_and_gradients(&CpuBatch::new(&ex, mode), weights);
            assert!((value - burn_value).abs() <= 1e-4 * burn_value.abs().max(1.0), "loss {value} here, {burn_value} by burn");
            let theirs = CpuTrainer::new(&burn_grads, &config).params;
            let l = &trainer.layout;
            let mut slots: Vec<(String, usize, usize)> = vec![("stem".into(), l.stem.at, l.stem.len())];
            for (i, b) in l.blocks.iter().enumerate() {
                slots.push((format!("block {i} first"), b.first.at, b.first.len()));
                slots.push((format!("block {i} second"), b.second.at, b.second.len()));
                if let Some(s) = b.skip {
                    slots.push((format!("block {i} skip"), s.at, s.len()));
                }
                slots.push((format!("block {i} batch norms"), b.first_bn.at, 2 * b.first_bn.channels));
                slots.push((format!("block {i} second batch norm"), b.second_bn.at, 2 * b.second_bn.channels));
            }
            slots.push(("stem batch norm".into(), l.stem_bn.at, 2 * l.stem_bn.channels));
            slots.push(("heads".into(), l.heads.at, l.heads.cin * l.heads.total()));
            slots.push(("head biases".into(), l.heads.bias, l.heads.total()));
            let covered: usize = slots.iter().map(|s| s.2).sum();
            assert_eq!(covered, l.params, "every parameter is compared");
            for (name, at, len) in slots {
                assert_close(&format!("{mode:?} {name}"), &ours[at..at + len], &theirs[at..at + len], 2e-3);
            }
            // burn's forward pass moved its running statistics as this one did.
            let after = CpuTrainer::new(&model, &config);
            assert_close("running statistics", &trainer.stats, &after.stats, 1e-4);
        }
    }

    #[test]
    fn a_step_moves_the_weights_as_burns_adam_does() {
        let device = crate::device::current();
        device.seed(11);
        let ad = device.clone().autodiff();
        let config = config();
        let mut model = config.init(&ad);
        let mut trainer = CpuTrainer::new(&model, &config);
        let mut optim = AdamConfig::new().init();
        let learning_rate = 1e-3;
        for round in 0..3 {
            let ex = examples(6 + round, 3, 24);
            let (loss, _) = burn_loss(&model, to_tensors(&ex, HeadingMode::Directed, &ad), [1.0, 1.0], &ad);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(learning_rate, model, grads);
            trainer.step(&CpuBatch::new(&ex, HeadingMode::Directed), [1.0, 1.0], learning_rate);
        }
        let theirs = CpuTrainer::new(&model, &config).params;
        // Adam's first steps move each weight by about the learning rate whatever its gradient,
        // so a gradient near zero may move it either way: compare on average.
        let mean_diff = trainer.params.iter().zip(&theirs).map(|(a, b)| f64::from((a - b).abs())).sum::<f64>() / theirs.len() as f64;
        assert!(mean_diff < 0.02 * learning_rate, "weights differ from burn's by {mean_diff} on average after 3 steps");
        let moved = trainer.params.iter().zip(&CpuTrainer::new(&config.init(&ad), &config).params).any(|(a, b)| a != b);
        assert!(moved, "the steps moved the weights");
    }

    #[test]
    fn the_average_is_the_weight_averages() {
        let device = crate::device::current();
        let config = config();
        let start = config.init(&device);
        let mut trainer = CpuTrainer::new(&start, &config);
        let mut reference = crate::ema::WeightAverage::new(start.clone(), 0.9);
        trainer.start_average(&reference.model, 0, 0.9);
        for round in 0..3 {
            trainer.step(&CpuBatch::new(&examples(4 + round, 3, 24), HeadingMode::Directed), [1.0, 1.0], 1e-2);
            reference.update(&trainer.network(&device));
        }
        let (averaged, steps) = trainer.average(&device).expect("started");
        assert_eq!(steps, reference.steps());
        let (ours, theirs) = (CpuTrainer::new(&averaged, &config), CpuTrainer::new(&reference.model, &config));
        assert_eq!(ours.params, theirs.params);
        assert_eq!(ours.stats, theirs.stats);
        assert_ne!(ours.params, trainer.params, "the average lags behind the weights");
    }

    #[test]
    fn the_network_carries_the_trained_weights_back() {
        let device = crate::device::current();
        let config = config();
        let mut trainer = CpuTrainer::new(&config.init(&device), &config);
        trainer.step(&CpuBatch::new(&examples(5, 3, 24), HeadingMode::Axis), [1.0, 2.0], 1e-2);
        let back = CpuTrainer::new(&trainer.network(&device), &config);
        assert_eq!(back.params, trainer.params);
        assert_eq!(back.stats, trainer.stats);
        let (m1, m2, steps) = trainer.moments(&device);
        let resumed = CpuTrainer::new(&trainer.network(&device), &config).with_moments(&m1, &m2, steps);
        assert_eq!((resumed.moment_1.clone(), resumed.moment_2.clone(), resumed.steps), (trainer.moment_1.clone(), trainer.moment_2.clone(), 1));
        // The same step from the same state gives the same weights: a run repeats.
        let batch = CpuBatch::new(&examples(5, 3, 24), HeadingMode::Axis);
        let (mut a, mut b) = (resumed, trainer);
        a.step(&batch, [1.0, 2.0], 1e-2);
        b.step(&batch, [1.0, 2.0], 1e-2);
        assert_eq!(a.params, b.params);
    }
}
