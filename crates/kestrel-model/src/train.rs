//! The training loop: augmented chips from a `TrainingSet`, cross-entropy on the centre
//! cell's class logits plus heading, size and centre-offset regression for positives
//! (cut up to a few pixels off-centre, so the offset head learns where the object lies), Adam; validation
//! metrics after every epoch (loss, precision, recall, F1, heading error), early stopping
//! on validation F1, and the weights of the last epoch near the best F1 kept (see [`kept_epoch`]).

use crate::ema::WeightAverage;
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
    /// Stop after this many epochs without one that [`kept_epoch`] would keep.
    pub patience: usize,
    /// Threads that cut chips.
    pub threads: usize,
    /// Decay of the weight average that is validated and kept (0 = the raw weights).
    #[serde(default = "default_average_decay")]
    pub average_decay: f32,
    /// Scale augmentation: chips cut at the contract's GSD times a factor in [1 − s, 1 + s].
    #[serde(default = "default_jitter")]
    pub scale_jitter: f64,
    /// Colour augmentation: per-band gain in [1 − c, 1 + c] and offset in ±c/2.
    #[serde(default = "default_jitter_f32")]
    pub colour_jitter: f32,
    /// Channels of the network's stem and two stages (its capacity; the cost of every
    /// layer grows with the product of the widths it joins).
    #[serde(default = "default_widths")]
    pub widths: [usize; 3],
    /// Share of positives turned into decoy negatives (the object's rectangle filled flat
    /// with its mean colour; see [`Augment::decoy`]).
    #[serde(default)]
    pub decoys: f64,
    /// Share of chips whose colour bands are shuffled (see [`Augment::band_shuffle`]).
    #[serde(default)]
    pub band_shuffle: f64,
    /// Share of positives shown as negatives at a size the class does not have (see
    /// [`Augment::wrong_size`]); `None`: Kestrel's choice by the positives' sizes (see
    /// [`TrainingSet::auto_wrong_size_share`]).
    #[serde(default)]
    pub size_negatives: Option<f64>,
    /// Set by another thread to stop training between batches (a GUI's cancel button).
    #[serde(skip)]
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Weights to start from instead of a fresh initialization (a mining round continues
    /// from the previous round's network); a resumed run starts from its checkpoint instead.
    #[serde(skip)]
    pub initial: Option<Network>,
}

// ±10 %: ±20 % helped the held-out cars street (AP50 0.728 → 0.774, and turned copies of
// it scored like the untouched one) but cost the NEON trees most of their F1 (0.29 → 0.15).
fn default_jitter() -> f64 {
    0.1
}

fn default_jitter_f32() -> f32 {
    0.1
}

fn default_widths() -> [usize; 3] {
    [16, 32, 64]
}

fn default_average_decay() -> f32 {
    0.99
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
            average_decay: default_average_decay(),
            scale_jitter: default_jitter(),
            colour_jitter: default_jitter_f32(),
            widths: default_widths(),
            decoys: 0.0,
            band_shuffle: 0.0,
            size_negatives: None,
            cancel: None,
            initial: None,
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
    /// Median relative error of the predicted object length on validation positives.
    #[serde(default)]
    pub length_error: f64,
    pub seconds: f64,
    pub train_images_per_s: f64,
}

/// How far below the best validation F1 an epoch may score and still be kept (see
/// [`kept_epoch`]).
pub const KEEP_F1_TOLERANCE: f64 = 0.01;

/// The epoch whose weights training keeps and waits on: the last one whose validation F1 lies
/// within [`KEEP_F1_TOLERANCE`] of the best. On a validation area like the training one F1
/// saturates at 0.98–0.99 from a third of the run on, and the strictly best F1 picked among
/// those by noise — twice a half-trained epoch (10 or 11 of 20), and those runs scored the
/// unseen cars street lowest of their day (though runs that kept a late epoch spread widely
/// too); later weights are the better trained (cosine-decayed, averaged). The validation loss
/// is no better guide: on the NEON trees, whose validation site differs, it is lowest after
/// the first epoch (F1 0) and rises while F1 climbs. An epoch with a non-finite loss or F1 (a diverged run) is never kept.
pub fn kept_epoch(history: &[EpochMetrics]) -> Option<&EpochMetrics> {
    let finite = || history.iter().filter(|m| m.f1.is_finite() && m.val_loss.is_finite());
    let best = finite().map(|m| m.f1).fold(f64::NEG_INFINITY, f64::max);
    finite().filter(|m| m.f1 >= best - KEEP_F1_TOLERANCE).last()
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
    #[error("training was cancelled")]
    Cancelled,
}

/// A batch as tensors.
pub(crate) struct Batch {
    /// Chips `[b, c, s, s]`.
    pub(crate) x: Tensor<4>,
    /// Class targets `[b]`: 0 background, 1 the class.
    pub(crate) y: Tensor<1, Int>,
    /// Heading targets `[b, 2]`: (sin, cos) of θ or 2θ.
    pub(crate) heading: Tensor<2>,
    /// ln(length_m), ln(width_m) targets `[b, 2]`.
    pub(crate) size: Tensor<2>,
    /// 1 for positives (the regression targets count), `[b, 1]`.
    pub(crate) positive: Tensor<2>,
    /// 1 for positives with a known size, `[b, 1]`.
    pub(crate) sized: Tensor<2>,
    /// The object's offset from the chip's centre in output cells, `[b, 2]`.
    pub(crate) offset: Tensor<2>,
}

pub(crate) fn to_tensors(examples: &[Example], mode: HeadingMode, device: &Device) -> Batch {
    // The targets as the CPU training pass reads them, so that both paths learn the same.
    let t = crate::train_cpu::CpuBatch::new(examples, mode);
    let (b, c, s) = (t.images, t.bands, t.size_px);
    let y: Vec<i64> = t.class.iter().map(|&k| k as i64).collect();
    Batch {
        x: Tensor::from_data(TensorData::new(t.x, [b, c, s, s]), device),
        y: Tensor::from_data(TensorData::new(y, [b]), device),
        heading: Tensor::from_data(TensorData::new(t.heading, [b, 2]), device),
        size: Tensor::from_data(TensorData::new(t.size, [b, 2]), device),
        positive: Tensor::from_data(TensorData::new(t.positive, [b, 1]), device),
        sized: Tensor::from_data(TensorData::new(t.sized, [b, 1]), device),
        offset: Tensor::from_data(TensorData::new(t.offset, [b, 2]), device),
    }
}

/// What the heads predict at the centre cell, `[b, channels]`.
pub(crate) struct CentreOutputs {
    logits: Tensor<2>,
    heading: Tensor<2>,
    size: Tensor<2>,
}

/// Class-balanced cross-entropy plus squared errors of heading (sin, cos) and log size on
/// the positives. `class_weights` are (background, class).
pub(crate) fn loss(
    model: &Network,
    batch: Batch,
    class_weights: [f32; 2],
    device: &Device,
) -> (Tensor<1>, CentreOutputs) {
    let out = model.forward(batch.x);
    let logits = centre_cell(out.class_logits);
    let heading = centre_cell(out.heading);
    let size = centre_cell(out.size);
    let offset = out.offset.map(centre_cell);
    let ce = CrossEntropyLossConfig::new()
        .with_weights(Some(class_weights.to_vec()))
        .init(device)
        .forward(logits.clone(), batch.y);
    let positives = batch.positive.clone().sum().clamp_min(1.0);
    let heading_loss = ((heading.clone() - batch.heading) * batch.positive.clone())
        .powi_scalar(2)
        .sum()
        / positives.clone();
    let sized = batch.sized.clone().sum().clamp_min(1.0);
    let size_loss = ((size.clone() - batch.size) * batch.sized)
        .powi_scalar(2)
        .sum()
        / sized;
    let offset_loss = offset.map(|o| ((o - batch.offset) * batch.positive.clone()).powi_scalar(2).sum() / positives.clone());
    let regression = heading_loss * 0.5 + size_loss * 0.5;
    (
        ce + match offset_loss {
            Some(o) => regression + o,
            None => regression,
        },
        CentreOutputs {
            logits,
            heading,
            size,
        },
    )
}

/// The training loss, unweighted, for the benchmark.
pub(crate) fn loss_for_bench(model: &Network, batch: Batch, device: &Device) -> Tensor<1> {
    loss(model, batch, [1.0, 1.0], device).0
}

/// Cross-entropy weights that give positives and negatives equal total weight.
fn balance(set: &TrainingSet) -> [f32; 2] {
    let positives = (0..set.len())
        .filter(|&i| set.is_positive(i))
        .count()
        .max(1) as f32;
    let negatives = (set.len() as f32 - positives).max(1.0);
    let total = positives + negatives;
    [total / (2.0 * negatives), total / (2.0 * positives)]
}

/// What a checkpoint folder records besides the weights and the optimizer state.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CheckpointState {
    epochs_done: usize,
    history: Vec<EpochMetrics>,
    /// The epoch (1-based) of the kept weights (`best-{epoch}.bpk`), by [`kept_epoch`].
    #[serde(default)]
    kept_epoch: Option<usize>,
    /// What checkpoints of earlier rules recorded instead (the strictly best F1, the lowest
    /// loss): such a run cannot be resumed, its kept weights follow another rule.
    #[serde(default, skip_serializing)]
    best_f1: Option<f64>,
    #[serde(default, skip_serializing)]
    best_val_loss: Option<f64>,
    since_best: usize,
    options: TrainOptions,
    /// Updates folded into the weight average so far.
    #[serde(default)]
    average_steps: u64,
    /// Chips in the training and validation sets: a resumed run must see the same data.
    #[serde(default)]
    set_sizes: [usize; 2],
    /// The chips' ground sample distance (m per pixel): the network's scale.
    #[serde(default)]
    gsd_m: Option<f64>,
    /// Adam steps of the CPU training pass, whose moments are saved as `moment1-{epoch}.bpk`
    /// and `moment2-{epoch}.bpk` (burn's optimizer, on a GPU, saves `optimizer-{epoch}.bpk`).
    #[serde(default)]
    cpu_adam_steps: Option<u64>,
}

/// Where the optimizer's state lives: burn's Adam (a GPU) or the CPU training pass's.
enum Optim {
    Burn(burn::optim::ModuleOptimizer),
    Cpu(crate::train_cpu::CpuTrainer),
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
    average: &Network,
    best: Option<&Network>,
    optim: &Optim,
    state: &CheckpointState,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| ckpt_err(dir, e))?;
    let epoch = state.epochs_done;
    model
        .clone()
        .save_file(dir.join(format!("model-{epoch}.bpk")))
        .map_err(|e| ckpt_err(dir, e))?;
    average
        .clone()
        .save_file(dir.join(format!("average-{epoch}.bpk")))
        .map_err(|e| ckpt_err(dir, e))?;
    if let Some(b) = best {
        b.clone()
            .save_file(dir.join(format!("best-{epoch}.bpk")))
            .map_err(|e| ckpt_err(dir, e))?;
    }
    match optim {
        Optim::Burn(optim) => optim.save(dir.join(format!("optimizer-{epoch}.bpk"))).map_err(|e| ckpt_err(dir, e))?,
        Optim::Cpu(trainer) => {
            let (moment_1, moment_2, _) = trainer.moments(&crate::device::current());
            moment_1.save_file(dir.join(format!("moment1-{epoch}.bpk"))).map_err(|e| ckpt_err(dir, e))?;
            moment_2.save_file(dir.join(format!("moment2-{epoch}.bpk"))).map_err(|e| ckpt_err(dir, e))?;
        }
    }
    let tmp = dir.join("state.json.partial");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(state).map_err(|e| ckpt_err(dir, e))?,
    )
    .map_err(|e| ckpt_err(&tmp, e))?;
    std::fs::rename(&tmp, dir.join("state.json")).map_err(|e| ckpt_err(dir, e))?;
    // The previous epoch's files are no longer referenced.
    if epoch > 0 {
        for name in ["model", "average", "best", "optimizer", "moment1", "moment2"] {
            let _ = std::fs::remove_file(dir.join(format!("{name}-{}.bpk", epoch - 1)));
        }
    }
    Ok(())
}

/// The architecture [`train`] gives a network for `set` (its bands) with `options` (widths).
pub fn network_config(set: &TrainingSet, options: &TrainOptions) -> NetworkConfig {
    NetworkConfig::new(set.contract.bands.len(), 1).with_offset_head(true).with_widths(options.widths)
}

/// The weights a finished (or interrupted) run in checkpoint folder `dir` keeps: its kept
/// epoch's, as [`train`] would return them.
pub fn kept_weights(dir: &std::path::Path, config: &NetworkConfig) -> Result<Network, TrainError> {
    let state_path = dir.join("state.json");
    let text = std::fs::read(&state_path).map_err(|e| ckpt_err(&state_path, e))?;
    let state: CheckpointState = serde_json::from_slice(&text).map_err(|e| ckpt_err(&state_path, format!("corrupt: {e}")))?;
    if state.kept_epoch.is_none() {
        return Err(ckpt_err(dir, "has no kept weights yet"));
    }
    config
        .init(&crate::device::current())
        .try_load_file(dir.join(format!("best-{}.bpk", state.epochs_done)))
        .map_err(|err| ckpt_err(dir, format!("kept weights: {err}")))
}

/// Trains a network on `train`, validating on `val`; returns the best network (by validation
/// F1: [`kept_epoch`]) and every epoch's metrics. `events` gets progress as it happens. With `checkpoints`,
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
    crate::device::current().seed(options.seed);
    let device = crate::device::current().autodiff();
    let config = network_config(train, options);
    let mut model = match &options.initial {
        Some(network) => network.clone().to_device(&crate::device::current()).train(),
        None => config.init(&device),
    };
    // On the CPU the training pass is Kestrel's own (see crate::train_cpu), on a GPU burn's.
    let on_cpu = crate::device::is_cpu(&crate::device::current());
    let mut optim = if on_cpu {
        Optim::Cpu(crate::train_cpu::CpuTrainer::new(&model, &config))
    } else {
        Optim::Burn(AdamConfig::new().init())
    };
    let mode = train.contract.heading_mode;
    let augment = Augment {
        scale: options.scale_jitter,
        colour: options.colour_jitter,
        decoy: options.decoys,
        band_shuffle: options.band_shuffle,
        wrong_size: options.size_negatives.unwrap_or_else(|| train.auto_wrong_size_share()),
        ..Augment::default()
    };
    let mut history = Vec::new();
    let mut best: Option<Network> = None;
    let mut since_best = 0;
    let mut first_epoch = 0;
    let class_weights = balance(train);
    // The average spans about one epoch at most: a small set takes few steps per epoch, and
    // an average over more than the run would lag behind it.
    let steps_per_epoch = train.epoch_len().div_ceil(options.batch_size.max(1)).max(1);
    let decay = options.average_decay.min(1.0 - 1.0 / steps_per_epoch as f32).max(0.0);
    let mut average = WeightAverage::new(model.valid(), decay);
    if let Some(c) = checkpoints.filter(|c| c.resume) {
        let state_path = c.dir.join("state.json");
        let text = std::fs::read(&state_path)
            .map_err(|e| ckpt_err(&state_path, format!("cannot resume: {e}")))?;
        let state: CheckpointState = serde_json::from_slice(&text)
            .map_err(|e| ckpt_err(&state_path, format!("corrupt: {e}")))?;
        // Resuming with other data or other settings would silently mix two runs.
        if state.set_sizes != [0, 0] && state.set_sizes != [train.len(), val.len()] {
            return Err(ckpt_err(&state_path, format!(
                "was written for {} training and {} validation chips, but the sets now hold {} and {}: the samples changed since; start afresh without --resume",
                state.set_sizes[0], state.set_sizes[1], train.len(), val.len()
            )));
        }
        let (o, n) = (&state.options, options);
        if o.batch_size != n.batch_size
            || o.learning_rate != n.learning_rate
            || o.seed != n.seed
            || o.average_decay != n.average_decay
        {
            return Err(ckpt_err(&state_path, format!(
                "was written with batch {}, learning rate {}, seed {}, average decay {}; this run asks for batch {}, learning rate {}, seed {}, average decay {}: resume with the same settings",
                o.batch_size, o.learning_rate, o.seed, o.average_decay, n.batch_size, n.learning_rate, n.seed, n.average_decay
            )));
        }
        // Other widths would not even load; other augmentation would mix two recipes.
        let recipe = |o: &TrainOptions| {
            format!(
                "widths {:?}, scale jitter {}, colour jitter {}, decoys {}, band shuffle {}, size negatives {:?}",
                o.widths, o.scale_jitter, o.colour_jitter, o.decoys, o.band_shuffle, o.size_negatives
            )
        };
        if recipe(o) != recipe(n) {
            return Err(ckpt_err(&state_path, format!(
                "was written with {}; this run asks for {}: resume with the same settings",
                recipe(o),
                recipe(n)
            )));
        }
        if state.gsd_m.is_some_and(|g| (g - train.contract.target_gsd_m).abs() > 1e-9) {
            return Err(ckpt_err(&state_path, format!(
                "was written for a network at {} m per pixel, but this run's chips are at {} m: resume with the same --gsd",
                state.gsd_m.unwrap_or_default(),
                train.contract.target_gsd_m
            )));
        }
        let e = state.epochs_done;
        model = config
            .init(&device)
            .try_load_file(c.dir.join(format!("model-{e}.bpk")))
            .map_err(|err| ckpt_err(&c.dir, format!("model weights: {err}")))?;
        optim = match (optim, state.cpu_adam_steps) {
            (Optim::Burn(o), None) => Optim::Burn(
                o.load(c.dir.join(format!("optimizer-{e}.bpk")))
                    .map_err(|err| ckpt_err(&c.dir, format!("optimizer state: {err}")))?,
            ),
            (Optim::Cpu(_), Some(steps)) => {
                let load = |name: &str| {
                    config
                        .init(&crate::device::current())
                        .try_load_file(c.dir.join(format!("{name}-{e}.bpk")))
                        .map_err(|err| ckpt_err(&c.dir, format!("optimizer state ({name}): {err}")))
                };
                Optim::Cpu(crate::train_cpu::CpuTrainer::new(&model, &config).with_moments(&load("moment1")?, &load("moment2")?, steps))
            }
            (Optim::Cpu(_), None) => {
                return Err(ckpt_err(&c.dir, "was written by training on a GPU (or by a Kestrel before 2026-12-06), whose optimizer state the CPU's training pass does not read: continue it there (--device gpu), or train afresh without --resume"));
            }
            (Optim::Burn(_), Some(_)) => {
                return Err(ckpt_err(&c.dir, "was written by training on the CPU, whose optimizer state burn's GPU training does not read: continue it on the CPU (--device cpu), or train afresh without --resume"));
            }
        };
        let kept_now = kept_epoch(&state.history).map(|m| m.epoch);
        if (state.kept_epoch.is_none() && (state.best_f1.is_some() || state.best_val_loss.is_some()))
            || (state.kept_epoch.is_some() && state.kept_epoch != kept_now)
        {
            return Err(ckpt_err(
                &c.dir,
                "written by a Kestrel that chose the epoch to keep by another rule, so the run cannot be continued: train afresh (without --resume)",
            ));
        }
        if state.kept_epoch.is_some() {
            let b = config
                .init(&crate::device::current())
                .try_load_file(c.dir.join(format!("best-{e}.bpk")))
                .map_err(|err| ckpt_err(&c.dir, format!("best weights: {err}")))?;
            best = Some(b);
        }
        let averaged = config
            .init(&crate::device::current())
            .try_load_file(c.dir.join(format!("average-{e}.bpk")))
            .map_err(|err| ckpt_err(&c.dir, format!("averaged weights: {err}")))?;
        average = WeightAverage::resumed(averaged, decay, state.average_steps);
        history = state.history;
        since_best = state.since_best;
        first_epoch = e;
    }
    if let Optim::Cpu(trainer) = &mut optim {
        trainer.start_average(&average.model, average.steps(), decay);
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
            if options.cancel.as_ref().is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
                return Err(TrainError::Cancelled);
            }
            let examples =
                train.batch(idx, &augment, options.seed, epoch as u64, options.threads)?;
            let value = match &mut optim {
                // The step folds the weights into its own copy of the average.
                Optim::Cpu(trainer) => trainer.step(&crate::train_cpu::CpuBatch::new(&examples, mode), class_weights, lr),
                Optim::Burn(burn_optim) => {
                    let (l, _) = loss(&model, to_tensors(&examples, mode, &device), class_weights, &device);
                    let value = f64::from(l.clone().into_scalar::<f32>());
                    let grads = GradientsParams::from_grads(l.backward(), &model);
                    model = burn_optim.step(lr, model, grads);
                    average.update(&model.valid());
                    value
                }
            };
            total += value * idx.len() as f64;
            events(&TrainEvent::Batch {
                epoch,
                batch: bi + 1,
                batches,
                loss: value,
            });
        }
        let train_s = start.elapsed().as_secs_f64();
        if let Optim::Cpu(trainer) = &optim {
            // The weights as trained and their average, for validation and the checkpoint.
            let device = crate::device::current();
            model = trainer.network(&device).train();
            if let Some((averaged, steps)) = trainer.average(&device) {
                average = WeightAverage::resumed(averaged, decay, steps);
            }
        }
        let scored = if options.average_decay > 0.0 {
            average.model.valid()
        } else {
            model.valid()
        };
        let mut metrics = evaluate(&scored, val, options)?;
        metrics.epoch = epoch + 1;
        metrics.train_loss = total / order.len() as f64;
        metrics.seconds = start.elapsed().as_secs_f64();
        metrics.train_images_per_s = order.len() as f64 / train_s;
        events(&TrainEvent::Epoch(metrics.clone()));
        history.push(metrics.clone());
        // The rule that the reports apply to the history, so that they name these weights.
        let better = kept_epoch(&history).is_some_and(|m| m.epoch == metrics.epoch);
        if better {
            best = Some(scored);
            since_best = 0;
        } else {
            since_best += 1;
        }
        if let Some(c) = checkpoints {
            let state = CheckpointState {
                epochs_done: epoch + 1,
                history: history.clone(),
                kept_epoch: best.as_ref().and(kept_epoch(&history)).map(|m| m.epoch),
                best_f1: None,
                best_val_loss: None,
                since_best,
                options: options.clone(),
                average_steps: average.steps(),
                set_sizes: [train.len(), val.len()],
                gsd_m: Some(train.contract.target_gsd_m),
                cpu_adam_steps: match &optim {
                    Optim::Cpu(trainer) => Some(trainer.steps()),
                    Optim::Burn(_) => None,
                },
            };
            save_checkpoint(
                &c.dir,
                &model,
                &average.model,
                best.as_ref(),
                &optim,
                &state,
            )?;
        }
    }
    let model = best.ok_or(TrainError::Missing("epochs"))?;
    Ok((model, config, history))
}

/// Loss, precision/recall/F1 at score 0.5 and heading error on `set`, without augmentation.
pub fn evaluate(
    model: &Network,
    set: &TrainingSet,
    options: &TrainOptions,
) -> Result<EpochMetrics, TrainError> {
    let device = crate::device::current();
    let model = model.clone().to_device(&device);
    let mode = set.contract.heading_mode;
    let (mut tp, mut fp, mut fneg) = (0usize, 0usize, 0usize);
    let mut total = 0.0;
    let mut heading_errors = Vec::new();
    let mut length_errors = Vec::new();
    let class_weights = balance(set);
    let indices: Vec<usize> = (0..set.len()).collect();
    for idx in indices.chunks(options.batch_size) {
        let examples = set.batch(idx, &Augment::none(), options.seed, 0, options.threads)?;
        let (l, out) = loss(
            &model,
            to_tensors(&examples, mode, &device),
            class_weights,
            &device,
        );
        total += f64::from(l.into_scalar::<f32>()) * idx.len() as f64;
        let probs: Vec<f32> = burn::tensor::activation::softmax(out.logits, 1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        let hv: Vec<f32> = out
            .heading
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        let sv: Vec<f32> = out.size.into_data().try_to_vec::<f32>().unwrap_or_default();
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
                if let Some([l, _]) = e.size_m {
                    length_errors.push((f64::from(sv[i * 2]).exp() / l - 1.0).abs());
                }
            }
        }
    }
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    let recall = tp as f64 / (tp + fneg).max(1) as f64;
    heading_errors.sort_by(f64::total_cmp);
    length_errors.sort_by(f64::total_cmp);
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
        length_error: length_errors
            .get(length_errors.len() / 2)
            .copied()
            .unwrap_or(f64::NAN),
        ..Default::default()
    })
}
