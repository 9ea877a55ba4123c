//! Throughput of the network on this machine, for `kestrel bench network`: training steps
//! (forward, loss, backward, Adam) and inference on batches of chips, and a dense pass over a
//! large tile (through the pass detection runs, and through burn's for comparison).
//! `bench/network_pytorch.py` measures the same architecture in PyTorch.

use crate::network::NetworkConfig;
use crate::train::{loss_for_bench, Batch};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Distribution, Int, Tensor};
use serde::Serialize;
use std::time::Instant;

#[derive(Clone, Debug, Serialize)]
pub struct NetworkBench {
    pub chip_px: usize,
    pub batch: usize,
    pub parameters: usize,
    pub train_images_per_s: f64,
    pub infer_images_per_s: f64,
    /// Chips scored at their centre cell alone, as detection scores its candidates' views.
    pub infer_centre_images_per_s: f64,
    pub tile_px: usize,
    pub tile_seconds: f64,
    pub tile_mpx_per_s: f64,
    /// The dense tile's multiply–accumulates counted as a direct convolution computes them, per
    /// second (on the CPU the 3×3 stride-1 layers run by Winograd, with fewer).
    pub tile_gflop_per_s: f64,
    /// The same tile through burn's forward pass (what the fused pass replaces on the CPU).
    pub tile_framework_seconds: f64,
    /// Training steps through burn's autodiff (what the CPU training pass replaces on the CPU;
    /// on a GPU the same as `train_images_per_s`).
    pub train_framework_images_per_s: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median of `steps` timed repetitions after two warm-up ones.
pub fn measure(
    config: &NetworkConfig,
    chip_px: usize,
    batch: usize,
    tile_px: usize,
    steps: usize,
) -> NetworkBench {
    let device = crate::device::current();
    let ad = device.clone().autodiff();
    let c = config.in_channels;
    let mut model = config.init(&ad);
    let parameters = model.num_params();
    let mut optim = AdamConfig::new().init();
    let mut train_s = Vec::new();
    for i in 0..steps + 2 {
        let batch_t = Batch {
            x: Tensor::random(
                [batch, c, chip_px, chip_px],
                Distribution::Uniform(0.0, 1.0),
                &ad,
            ),
            y: Tensor::<1, Int>::from_data(
                burn::tensor::TensorData::new(
                    (0..batch as i64).map(|k| k % 2).collect::<Vec<_>>(),
                    [batch],
                ),
                &ad,
            ),
            heading: Tensor::random([batch, 2], Distribution::Uniform(-1.0, 1.0), &ad),
            size: Tensor::random([batch, 2], Distribution::Uniform(0.0, 2.0), &ad),
            positive: Tensor::ones([batch, 1], &ad),
            sized: Tensor::ones([batch, 1], &ad),
            offset: Tensor::random([batch, 2], Distribution::Uniform(-0.5, 0.5), &ad),
        };
        let t = Instant::now();
        let l = loss_for_bench(&model, batch_t, &ad);
        let grads = GradientsParams::from_grads(l.backward(), &model);
        model = optim.step(1e-3, model, grads);
        // Wait for the step to finish: a GPU backend queues work and returns at once, so
        // read back a value that depends on the whole backward pass and the update (the
        // stem's weights).
        let _: f32 = model.stem.conv.weight.val().sum().into_scalar();
        if i >= 2 {
            train_s.push(t.elapsed().as_secs_f64());
        }
    }
    let net = model.valid();
    let framework_train = median(train_s.clone());
    // Training as `kestrel train` runs it on the CPU: Kestrel's own pass.
    if crate::device::is_cpu(&device) {
        let mut trainer = crate::train_cpu::CpuTrainer::new(&net, config);
        let pixels = c * chip_px * chip_px;
        train_s.clear();
        for i in 0..steps + 2 {
            let batch_c = crate::train_cpu::CpuBatch {
                x: (0..batch * pixels).map(|k| ((k as u64 + i as u64).wrapping_mul(2_654_435_761) % 1000) as f32 / 1000.0).collect(),
                images: batch,
                bands: c,
                size_px: chip_px,
                class: (0..batch).map(|k| k % 2).collect(),
                heading: (0..2 * batch).map(|k| ((k * 37) % 200) as f32 / 100.0 - 1.0).collect(),
                size: (0..2 * batch).map(|k| ((k * 53) % 200) as f32 / 100.0).collect(),
                positive: vec![1.0; batch],
                sized: vec![1.0; batch],
                offset: (0..2 * batch).map(|k| ((k * 29) % 100) as f32 / 100.0 - 0.5).collect(),
            };
            let t = Instant::now();
            trainer.step(&batch_c, [1.0, 1.0], 1e-3);
            if i >= 2 {
                train_s.push(t.elapsed().as_secs_f64());
            }
        }
    }
    // Inference as detection runs it (the fused pass on the CPU).
    let inference = crate::infer::Inference::new(&net);
    let random = |n: usize| (0..n).map(|i| ((i as u64).wrapping_mul(2_654_435_761) % 1000) as f32 / 1000.0).collect::<Vec<f32>>();
    // Median seconds of `steps` passes over a batch of chips, after two warm-up ones.
    let chips = |pass: &dyn Fn(&[f32])| -> f64 {
        let x = random(batch * c * chip_px * chip_px);
        let mut seconds = Vec::new();
        for i in 0..steps + 2 {
            let t = Instant::now();
            pass(&x);
            if i >= 2 {
                seconds.push(t.elapsed().as_secs_f64());
            }
        }
        median(seconds)
    };
    let infer = chips(&|x| drop(inference.forward(x, batch, c, chip_px, chip_px)));
    let centre = chips(&|x| drop(inference.forward_centre(x, batch, c, chip_px, chip_px)));
    let mut tile_s = Vec::new();
    let mut framework_s = Vec::new();
    for i in 0..(steps / 2).max(1) + 1 {
        let x = random(c * tile_px * tile_px);
        let t = Instant::now();
        let _ = inference.forward(&x, 1, c, tile_px, tile_px);
        let fused = t.elapsed().as_secs_f64();
        // The same tile through burn's own forward pass, for comparison.
        let t = Instant::now();
        let out = net.forward(Tensor::from_data(burn::tensor::TensorData::new(x, [1, c, tile_px, tile_px]), &device));
        let _ = out.class_logits.into_data();
        let _ = out.heading.into_data();
        let _ = out.size.into_data();
        if i >= 1 {
            tile_s.push(fused);
            framework_s.push(t.elapsed().as_secs_f64());
        }
    }
    let (train, tile, framework) = (median(train_s), median(tile_s), median(framework_s));
    let cells = (tile_px / crate::network::STRIDE).pow(2) as f64;
    NetworkBench {
        chip_px,
        batch,
        parameters,
        train_images_per_s: batch as f64 / train,
        infer_images_per_s: batch as f64 / infer,
        infer_centre_images_per_s: batch as f64 / centre,
        tile_px,
        tile_seconds: tile,
        tile_mpx_per_s: (tile_px * tile_px) as f64 / 1e6 / tile,
        tile_gflop_per_s: 2.0 * config.macs_per_output_cell() as f64 * cells / 1e9 / tile,
        tile_framework_seconds: framework,
        train_framework_images_per_s: batch as f64 / framework_train,
    }
}
