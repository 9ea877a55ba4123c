//! The training loop: augmented chips from a `TrainingSet`, cross-entropy on the centre
//! cell's class logits plus heading and size regression for positives, Adam; validation
//! metrics after every epoch (loss, precision, recall, F1, heading error), early stopping
//! on validation F1, and the best weights kept.

use crate::network::{centre_cell, Network, NetworkConfig};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use kestrel_samples::dataset::{Augment, Example, TrainingSet};
use kestrel_samples::HeadingMode;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub seed: u64,
    /// Stop after this many epochs without a better validation F1.
    pub patience: usize,
    /// Threads that cut chips.
    pub threads: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 12,
            batch_size: 64,
            learning_rate: 2e-3,
            seed: 1,
            patience: 4,
            threads: 2,
        }
    }
}

/// Validation metrics of one epoch.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Median absolute heading error on validation positives, degrees (mod 180 or 360).
    pub heading_error_deg: f64,
    pub seconds: f64,
    pub train_images_per_s: f64,
}

/// Progress events, also what the CLI prints as JSON lines.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TrainEvent {
    Batch {
        epoch: usize,
        batch: usize,
        batches: usize,
        loss: f64,
    },
    Epoch(EpochMetrics),
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("checkpoint {path}: {problem}")]
    Checkpoint { path: String, problem: String },
    #[error(transparent)]
    Chips(#[from] kestrel_samples::chips::ChipError),
    #[error("the training set has no {0}: a detector needs both positives and negatives")]
    Missing(&'static str),
}

/// Tensors of a batch: chips `[b, c, s, s]`, class targets `[b]` (0 background, 1 the
/// class), heading targets `[b, 2]`, and a positive mask `[b, 1]`.
fn to_tensors(
    examples: &[Example],
    mode: HeadingMode,
    device: &Device,
) -> (Tensor<4>, Tensor<1, Int>, Tensor<2>, Tensor<2>) {
    let b = examples.len();
    let (c, s) = (examples[0].chip.bands, examples[0].chip.size);
    let mut x = Vec::with_capacity(b * c * s * s);
    let mut y = Vec::with_capacity(b);
    let mut h = Vec::with_capacity(b * 2);
    let mut m = Vec::with_capacity(b);
    let k = match mode {
        HeadingMode::Directed => 1.0,
        HeadingMode::Axis => 2.0,
    };
    for e in examples {
        x.extend_from_slice(&e.chip.data);
        y.push(i64::from(e.positive));
        let t = (e.heading_deg * k).to_radians();
        h.push(t.sin() as f32);
        h.push(t.cos() as f32);
        m.push(if e.positive { 1.0f32 } else { 0.0 });
    }
    (
        Tensor::from_data(TensorData::new(x, [b, c, s, s]), device),
        Tensor::from_data(TensorData::new(y, [b]), device),
        Tensor::from_data(TensorData::new(h, [b, 2]), device),
        Tensor::from_data(TensorData::new(m, [b, 1]), device),
    )
}

fn loss(
    model: &Network,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    h: Tensor<2>,
    m: Tensor<2>,
    device: &Device,
) -> (Tensor<1>, Tensor<2>, Tensor<2>) {
    let out = model.forward(x);
    let logits = centre_cell(out.class_logits);
    let heading = centre_cell(out.heading);
    let ce = CrossEntropyLossConfig::new()
        .init(device)
        .forward(logits.clone(), y);
    let positives = m.clone().sum().clamp_min(1.0);
    let heading_loss = ((heading.clone() - h) * m).powi_scalar(2).sum() / positives;
    (ce + heading_loss * 0.5, logits, heading)
}

/// What a checkpoint folder records besides the weights and the optimizer state.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CheckpointState {
    epochs_done: usize,
    history: Vec<EpochMetrics>,
    best_f1: Option<f64>,
    since_best: usize,
    options: TrainOptions,
}

/// Where checkpoints go and whether to continue from them.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    pub dir: std::path::PathBuf,
    /// Continue from the last completed epoch found in `dir`.
    pub resume: bool,
}

fn ckpt_err(path: &std::path::Path, problem: impl ToString) -> TrainError {
    TrainError::Checkpoint {
        path: path.display().to_string(),
        problem: problem.to_string(),
    }
}

/// Writes the state after an epoch: weights, best weights, optimizer, then the state file
/// last (renamed into place), so that a kill at any moment leaves the previous epoch's
/// checkpoint whole.
fn save_checkpoint(
    dir: &std::path::Path,
    model: &Network,
    best: Option<&Network>,
    optim: &burn::optim::ModuleOptimizer,
    state: &CheckpointState,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| ckpt_err(dir, e))?;
    let epoch = state.epochs_done;
    model
        .clone()
        .save_file(dir.join(format!("model-{epoch}.bpk")))
        .map_err(|e| ckpt_err(dir, e))?;
    if let Some(b) = best {
        b.clone()
            .save_file(dir.join(format!("best-{epoch}.bpk")))
            .map_err(|e| ckpt_err(dir, e))?;
    }
    optim
        .save(dir.join(format!("optimizer-{epoch}.bpk")))
        .map_err(|e| ckpt_err(dir, e))?;
    let tmp = dir.join("state.json.partial");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(state).map_err(|e| ckpt_err(dir, e))?,
    )
    .map_err(|e| ckpt_err(&tmp, e))?;
    std::fs::rename(&tmp, dir.join("state.json")).map_err(|e| ckpt_err(dir, e))?;
    // The previous epoch's files are no longer referenced.
    if epoch > 0 {
        for name in ["model", "best", "optimizer"] {
            let _ = std::fs::remove_file(dir.join(format!("{name}-{}.bpk", epoch - 1)));
        }
    }
    Ok(())
}

/// Trains a network on `train`, validating on `val`; returns the best network (by validation
/// F1) and every epoch's metrics. `events` gets progress as it happens. With `checkpoints`,
/// the state is saved after every epoch and, when resuming, training continues after the
/// last completed epoch.
pub fn train(
    train: &TrainingSet,
    val: &TrainingSet,
    options: &TrainOptions,
    checkpoints: Option<&Checkpoints>,
    mut events: impl FnMut(&TrainEvent),
) -> Result<(Network, NetworkConfig, Vec<EpochMetrics>), TrainError> {
    for (set, _name) in [(train, "train"), (val, "validation")] {
        if !(0..set.len()).any(|i| set.is_positive(i)) {
            return Err(TrainError::Missing("positives"));
        }
        if !(0..set.len()).any(|i| !set.is_positive(i)) {
            return Err(TrainError::Missing("negatives"));
        }
    }
    Device::default().seed(options.seed);
    let device = Device::default().autodiff();
    let config = NetworkConfig::new(train.contract.bands.len(), 1);
    let mut model = config.init(&device);
    let mut optim = AdamConfig::new().init();
    let mode = train.contract.heading_mode;
    let augment = Augment::default();
    let mut history = Vec::new();
    let mut best: Option<(f64, Network)> = None;
    let mut since_best = 0;
    let mut first_epoch = 0;
    if let Some(c) = checkpoints.filter(|c| c.resume) {
        let state_path = c.dir.join("state.json");
        let text = std::fs::read(&state_path)
            .map_err(|e| ckpt_err(&state_path, format!("cannot resume: {e}")))?;
        let state: CheckpointState = serde_json::from_slice(&text)
            .map_err(|e| ckpt_err(&state_path, format!("corrupt: {e}")))?;
        let e = state.epochs_done;
        model = config
            .init(&device)
            .try_load_file(c.dir.join(format!("model-{e}.bpk")))
            .map_err(|err| ckpt_err(&c.dir, format!("model weights: {err}")))?;
        optim = optim
            .load(c.dir.join(format!("optimizer-{e}.bpk")))
            .map_err(|err| ckpt_err(&c.dir, format!("optimizer state: {err}")))?;
        if let Some(f1) = state.best_f1 {
            let b = config
                .init(&Device::default())
                .try_load_file(c.dir.join(format!("best-{e}.bpk")))
                .map_err(|err| ckpt_err(&c.dir, format!("best weights: {err}")))?;
            best = Some((f1, b));
        }
        history = state.history;
        since_best = state.since_best;
        first_epoch = e;
    }
    for epoch in first_epoch..options.epochs {
        if since_best >= options.patience {
            break;
        }
        let start = std::time::Instant::now();
        let order = train.epoch_order(options.seed, epoch as u64);
        let batches = order.len().div_ceil(options.batch_size);
        let mut total = 0.0;
        // Cosine decay of the learning rate over the run.
        let lr = options.learning_rate
            * 0.5
            * (1.0 + (std::f64::consts::PI * epoch as f64 / options.epochs as f64).cos());
        for (bi, idx) in order.chunks(options.batch_size).enumerate() {
            let examples =
                train.batch(idx, &augment, options.seed, epoch as u64, options.threads)?;
            let (x, y, h, m) = to_tensors(&examples, mode, &device);
            let (l, _, _) = loss(&model, x, y, h, m, &device);
            let value = f64::from(l.clone().into_scalar::<f32>());
            total += value * idx.len() as f64;
            let grads = GradientsParams::from_grads(l.backward(), &model);
            model = optim.step(lr, model, grads);
            events(&TrainEvent::Batch {
                epoch,
                batch: bi + 1,
                batches,
                loss: value,
            });
        }
        let train_s = start.elapsed().as_secs_f64();
        let mut metrics = evaluate(&model.valid(), val, options)?;
        metrics.epoch = epoch + 1;
        metrics.train_loss = total / order.len() as f64;
        metrics.seconds = start.elapsed().as_secs_f64();
        metrics.train_images_per_s = order.len() as f64 / train_s;
        events(&TrainEvent::Epoch(metrics.clone()));
        let better = best.as_ref().is_none_or(|(f1, _)| metrics.f1 > *f1);
        history.push(metrics.clone());
        if better {
            best = Some((metrics.f1, model.valid()));
            since_best = 0;
        } else {
            since_best += 1;
        }
        if let Some(c) = checkpoints {
            let state = CheckpointState {
                epochs_done: epoch + 1,
                history: history.clone(),
                best_f1: best.as_ref().map(|b| b.0),
                since_best,
                options: options.clone(),
            };
            save_checkpoint(&c.dir, &model, best.as_ref().map(|b| &b.1), &optim, &state)?;
        }
    }
    let (_, model) = best.ok_or(TrainError::Missing("epochs"))?;
    Ok((model, config, history))
}

/// Loss, precision/recall/F1 at score 0.5 and heading error on `set`, without augmentation.
pub fn evaluate(
    model: &Network,
    set: &TrainingSet,
    options: &TrainOptions,
) -> Result<EpochMetrics, TrainError> {
    let device = Device::default();
    let model = model.clone().to_device(&device);
    let mode = set.contract.heading_mode;
    let (mut tp, mut fp, mut fneg) = (0usize, 0usize, 0usize);
    let mut total = 0.0;
    let mut heading_errors = Vec::new();
    let indices: Vec<usize> = (0..set.len()).collect();
    for idx in indices.chunks(options.batch_size) {
        let examples = set.batch(idx, &Augment::none(), options.seed, 0, options.threads)?;
        let (x, y, h, m) = to_tensors(&examples, mode, &device);
        let (l, logits, heading) = loss(&model, x, y, h, m, &device);
        total += f64::from(l.into_scalar::<f32>()) * idx.len() as f64;
        let probs: Vec<f32> = burn::tensor::activation::softmax(logits, 1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        let hv: Vec<f32> = heading.into_data().try_to_vec::<f32>().unwrap_or_default();
        for (i, e) in examples.iter().enumerate() {
            let predicted = probs[i * 2 + 1] >= 0.5;
            match (predicted, e.positive) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fneg += 1,
                _ => {}
            }
            if e.positive {
                let k = if mode == HeadingMode::Axis { 2.0 } else { 1.0 };
                let est = f64::from(hv[i * 2])
                    .atan2(f64::from(hv[i * 2 + 1]))
                    .to_degrees()
                    / k;
                heading_errors.push(mode.difference_deg(est, e.heading_deg));
            }
        }
    }
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    let recall = tp as f64 / (tp + fneg).max(1) as f64;
    heading_errors.sort_by(f64::total_cmp);
    Ok(EpochMetrics {
        val_loss: total / set.len().max(1) as f64,
        precision,
        recall,
        f1: if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        },
        heading_error_deg: heading_errors
            .get(heading_errors.len() / 2)
            .copied()
            .unwrap_or(f64::NAN),
        ..Default::default()
    })
}
