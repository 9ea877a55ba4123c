//! `kestrel train`: chips of a class split by image into training and validation, the
//! network trained with a progress bar (or JSON lines), and the model package written.

use anyhow::{bail, Context, Result};
use kestrel_detect::mine::{mine_hard_negatives, MineOptions};
use kestrel_model::package::{save_package, PackageMeta, TrainingSummary, PACKAGE_VERSION};
use kestrel_model::train::{train, TrainEvent, TrainOptions};
use kestrel_samples::chips::{build_chips, ChipOptions};
use kestrel_samples::dataset::TrainingSet;
use kestrel_samples::store::SampleFilter;
use kestrel_samples::{Polarity, Project};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// A mined hard negative as the checkpoint folder records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct MinedRecord {
    /// The round whose training it joined (1 = the first after mining).
    round: usize,
    image_uri: String,
    centre_px: [f64; 2],
    heading_deg: f64,
    score: f32,
}

/// Automatic negatives per positive in the validation set.
pub const VALIDATION_NEGATIVES: f64 = 2.0;

pub struct TrainArgs<'a> {
    pub project: &'a Path,
    pub class: &'a str,
    pub output: &'a Path,
    pub validate_on: Option<&'a str>,
    pub options: TrainOptions,
    pub negatives: f64,
    pub json: bool,
    pub resume: bool,
    pub colour: kestrel_samples::normalize::ColourMethod,
    /// Hard-negative mining rounds after the first training.
    pub mine_rounds: usize,
    /// At most this many mined negatives per image and round.
    pub mine_per_image: usize,
    /// Source bands (0-based) the network reads; default the first three.
    pub bands: Option<Vec<usize>>,
    /// Ground sample distance (m) the network works at; default the positives' median.
    pub target_gsd_m: Option<f64>,
    /// Networks to train, each with its own seed (`options.seed`, +1, …), written as one
    /// ensemble package when more than one.
    pub members: usize,
}

/// What a training run reports as it goes: the CLI turns it into progress bars, the GUI's
/// job into progress and a live chart.
pub enum TrainReport<'e> {
    /// A new stage begins ("normalizing samples", "training", …) with this many steps.
    Stage(String, usize),
    /// Steps done in the current stage.
    Step(usize),
    /// The network's own event (batch loss, epoch metrics).
    Train(&'e TrainEvent),
    /// A line for the user.
    Note(String),
    /// Member `.0` (0-based) of an ensemble of `.1` begins; the stages that follow are its.
    Member(usize, usize),
}

/// What a finished run produced.
pub struct TrainOutcome {
    pub output: std::path::PathBuf,
    /// The kept epoch's validation metrics (an ensemble's first member's).
    pub best: kestrel_model::train::EpochMetrics,
    /// Detection on the validation images at the chosen threshold (an ensemble's first
    /// member's).
    pub detection: Option<kestrel_model::package::DetectionCalibration>,
    /// The model's default threshold (an ensemble's: the mean of its members').
    pub default_threshold: Option<f32>,
    /// Networks in the package.
    pub members: usize,
}

/// `kestrel train` on a terminal: progress bars (or JSON lines) and a closing line.
pub fn run(a: TrainArgs) -> Result<()> {
    let json = a.json;
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut batches = 1;
    let outcome = run_with(a, &mut |r| match r {
        TrainReport::Stage(name, steps) => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            let b = crate::progress::count_bar(&name);
            b.set_length(steps as u64);
            bar = Some(b);
        }
        TrainReport::Step(done) => {
            if let Some(b) = &bar {
                b.set_position(done as u64);
            }
        }
        TrainReport::Note(line) => match &bar {
            Some(b) if !b.is_hidden() => b.println(line),
            _ => eprintln!("{line}"),
        },
        // Its note says which member begins.
        TrainReport::Member(..) => {}
        TrainReport::Train(event) => {
            if json {
                println!("{}", serde_json::to_string(event).unwrap_or_default());
            }
            let Some(b) = &bar else { return };
            match event {
                TrainEvent::Batch { epoch, batch, batches: n, loss } => {
                    batches = *n;
                    b.set_position((epoch * batches + batch) as u64);
                    b.set_message(format!("epoch {} loss {loss:.3}", epoch + 1));
                }
                TrainEvent::Epoch(m) => {
                    let line = format!(
                        "epoch {:>2}: train loss {:.3}, val loss {:.3}, precision {:.3}, recall {:.3}, F1 {:.3}, heading error {:.1}°, length error {:.0} %, {:.0} img/s",
                        m.epoch, m.train_loss, m.val_loss, m.precision, m.recall, m.f1, m.heading_error_deg, m.length_error * 100.0, m.train_images_per_s
                    );
                    // The bar prints only to a terminal; the epoch summary must reach logs too.
                    if b.is_hidden() {
                        eprintln!("{line}");
                    } else {
                        b.println(line);
                    }
                }
            }
        }
    });
    if let Some(b) = bar.take() {
        b.finish_and_clear();
    }
    let outcome = outcome?;
    if outcome.members > 1 {
        println!(
            "{}: an ensemble of {} networks, default threshold {:.3} (the mean of theirs)",
            outcome.output.display(),
            outcome.members,
            outcome.default_threshold.unwrap_or(0.5)
        );
        return Ok(());
    }
    if let Some(d) = &outcome.detection {
        eprintln!(
            "detection on the validation images: F1 {:.3} (precision {:.3}, recall {:.3}) at threshold {:.2}, the model's default",
            d.f1, d.precision, d.recall, d.threshold
        );
    }
    println!(
        "{}: kept epoch {} (the last within {} of the best validation F1): validation F1 {:.3} (precision {:.3}, recall {:.3})",
        outcome.output.display(),
        outcome.best.epoch,
        kestrel_model::train::KEEP_F1_TOLERANCE,
        outcome.best.f1,
        outcome.best.precision,
        outcome.best.recall,
    );
    Ok(())
}

/// Trains `a.class` of the project and writes the package, reporting through `report`.
/// Checks the bands a training reads (0-based; `None`: the first three) and its height bands
/// (0-based) against the fewest bands among the project's images: each band exists, none is
/// named twice, heights are among the bands read. Messages name bands 1-based, as users do.
pub fn check_bands(bands: Option<&[usize]>, height_bands: &[usize], image_bands: usize) -> std::result::Result<(), String> {
    let read: Vec<usize> = bands.map_or_else(|| (0..3.min(image_bands)).collect(), <[usize]>::to_vec);
    if read.is_empty() {
        return Err("no band to read".into());
    }
    if let Some(b) = read.iter().find(|&&b| b >= image_bands) {
        return Err(format!("band {} does not exist: the project's images have {image_bands}", b + 1));
    }
    if let Some(i) = (1..read.len()).find(|&i| read[..i].contains(&read[i])) {
        return Err(format!("band {} is named twice", read[i] + 1));
    }
    if let Some(b) = height_bands.iter().find(|b| !read.contains(b)) {
        return Err(format!("height band {} is not one of the bands the network reads ({})", b + 1, read.iter().map(|b| (b + 1).to_string()).collect::<Vec<_>>().join(",")));
    }
    Ok(())
}

pub fn run_with(a: TrainArgs, report: &mut dyn FnMut(TrainReport)) -> Result<TrainOutcome> {
    if a.members <= 1 {
        return train_one(a, report);
    }
    // Each member in its own package beside the ensemble (`car.kestrel.members/seed-1.kestrel`,
    // with its checkpoints beside it), so that `--resume` keeps the members already trained
    // and each can be used alone.
    let dir = std::path::PathBuf::from(format!("{}.members", a.output.display()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut paths = Vec::with_capacity(a.members);
    for i in 0..a.members {
        let seed = a.options.seed.wrapping_add(i as u64);
        let path = dir.join(format!("seed-{seed}.kestrel"));
        // A member's package is written whole at its run's end: there, it is trained.
        if a.resume && path.is_file() {
            report(TrainReport::Note(format!("member {} of {} (seed {seed}): trained already, {}", i + 1, a.members, path.display())));
        } else {
            report(TrainReport::Member(i, a.members));
            report(TrainReport::Note(format!("member {} of {} (seed {seed}) → {}", i + 1, a.members, path.display())));
            let member = TrainArgs {
                output: &path,
                options: TrainOptions { seed, ..a.options.clone() },
                colour: a.colour.clone(),
                bands: a.bands.clone(),
                members: 1,
                ..a
            };
            let outcome = train_one(member, report)?;
            report(TrainReport::Note(format!(
                "member {} of {}: validation F1 {:.3}{}",
                i + 1,
                a.members,
                outcome.best.f1,
                outcome.detection.as_ref().map_or(String::new(), |d| format!(", detection F1 {:.3} at threshold {:.2}", d.f1, d.threshold))
            )));
        }
        paths.push(path);
    }
    let metas = kestrel_model::package::save_ensemble(a.output, &paths).with_context(|| format!("writing {}", a.output.display()))?;
    let first = &metas[0];
    let best = kestrel_model::train::kept_epoch(&first.metrics).context("the first member ran no epoch")?.clone();
    Ok(TrainOutcome { output: a.output.to_path_buf(), best, detection: first.detection.clone(), default_threshold: kestrel_model::package::ensemble_default_threshold(&metas), members: metas.len() })
}

fn train_one(a: TrainArgs, report: &mut dyn FnMut(TrainReport)) -> Result<TrainOutcome> {
    let project = Project::open(a.project)?;
    let images = project.images()?;
    if images.len() < 2 {
        bail!(
            "training needs at least two images, one of them for validation (the project has {})",
            images.len()
        );
    }
    let height_bands = match &a.colour {
        kestrel_samples::normalize::ColourMethod::WithHeights { height_bands, .. } => height_bands.clone(),
        _ => Vec::new(),
    };
    let image_bands = images.iter().map(|i| usize::from(i.bands)).min().unwrap_or(0);
    check_bands(a.bands.as_deref(), &height_bands, image_bands).map_err(|problem| anyhow::anyhow!("{}: {problem}", a.project.display()))?;
    // Validation by image, never by overlapping frames: images whose path contains the
    // pattern, or else the last fifth of the images.
    let (val, train_imgs): (Vec<_>, Vec<_>) = match a.validate_on {
        Some(patterns) => images.iter().partition(|i| is_validation(&i.uri, patterns)),
        None => {
            let cut = images.len() - (images.len() / 5).max(1);
            report(TrainReport::Note(format!("warning: no --validate-on given; validating on the last {} image(s). Consecutive frames of one flight line overlap: choose a separate area with --validate-on", images.len() - cut)));
            let (t, v) = images.split_at(cut);
            (v.iter().collect(), t.iter().collect())
        }
    };
    if val.is_empty() || train_imgs.is_empty() {
        bail!(
            "--validate-on leaves {} training and {} validation images; both must be non-empty",
            train_imgs.len(),
            val.len()
        );
    }
    let train_ids: Vec<i64> = train_imgs.iter().map(|i| i.id).collect();
    let val_ids: Vec<i64> = val.iter().map(|i| i.id).collect();
    report(TrainReport::Stage("normalizing samples".into(), 0));
    let chips = ChipOptions {
        bands: a.bands.clone(),
        auto_negative_ratio: a.negatives,
        images: Some(train_ids),
        colour: a.colour.clone(),
        target_gsd_m: a.target_gsd_m,
        ..Default::default()
    };
    let mut last_total = 0;
    let train_chips = build_chips(&project, a.class, &chips, |d, t| {
        if t != last_total {
            last_total = t;
            report(TrainReport::Stage("normalizing samples".into(), t));
        }
        report(TrainReport::Step(d));
    })?;
    // Chip-level precision depends on how many negatives there are: validation always has
    // VALIDATION_NEGATIVES automatic negatives per positive (plus the explicit ones), whatever
    // the training ratio, so that runs compare.
    let val_chips = build_chips(
        &project,
        a.class,
        &ChipOptions {
            images: Some(val_ids),
            contract: Some(train_chips.contract.clone()),
            auto_negative_ratio: VALIDATION_NEGATIVES,
            ..chips.clone()
        },
        |_, _| {},
    )?;
    let positives = train_chips
        .chips
        .iter()
        .filter(|c| c.polarity == Polarity::Positive)
        .count();
    let negatives = train_chips.chips.len() - positives;
    let contract = train_chips.contract.clone();
    let train_set = TrainingSet::new(train_chips);
    let val_set = TrainingSet::new(val_chips);
    let radiometry = train_set.radiometry();
    report(TrainReport::Note(format!(
        "training '{}' on {} chips ({positives} positive) from {} image(s), validating on {} chips from {} image(s); {}×{} px at {:.3} m",
        a.class,
        train_set.len(),
        train_imgs.len(),
        val_set.len(),
        val.len(),
        contract.chip_size_px,
        contract.chip_size_px,
        contract.target_gsd_m
    )));
    if a.options.size_negatives.is_none() {
        let share = train_set.auto_wrong_size_share();
        report(TrainReport::Note(if share > 0.0 {
            format!("size negatives: {share} of the positives also shown at a wrong size, as negatives (the class is of one size; --size-negatives 0 turns this off)")
        } else {
            "size negatives: none (the positives' lengths vary too much to call a size wrong)".into()
        }));
    }
    // Checkpoints beside the package: `car.kestrel` → `car.kestrel.checkpoints/`, one
    // folder per round, and the negatives mined so far in `mined.json`.
    let ckpt_root = std::path::PathBuf::from(format!("{}.checkpoints", a.output.display()));
    let mined_path = ckpt_root.join("mined.json");
    let mut train_set = train_set;
    let mut mined: Vec<MinedRecord> = Vec::new();
    if a.resume {
        report(TrainReport::Note(format!("resuming from {}", ckpt_root.display())));
        if mined_path.exists() {
            let text = std::fs::read(&mined_path)
                .with_context(|| format!("reading {}", mined_path.display()))?;
            mined = serde_json::from_slice(&text).with_context(|| {
                format!("{}: corrupt list of mined negatives", mined_path.display())
            })?;
        }
    } else if mined_path.exists() {
        std::fs::remove_file(&mined_path)
            .with_context(|| format!("removing the old {}", mined_path.display()))?;
    }
    for m in &mined {
        train_set.add_negative(&m.image_uri, m.centre_px[0], m.centre_px[1], m.heading_deg)?;
    }
    // Samples of every class, so that mining does not call a labelled truck a false car.
    let mut labelled: HashMap<String, Vec<[f64; 2]>> = HashMap::new();
    let uris: HashMap<i64, String> = images.iter().map(|i| (i.id, i.uri.clone())).collect();
    for s in project.samples(&SampleFilter::default())? {
        if let Some(uri) = uris.get(&s.image_id) {
            let (x, y) = s.shape.centre();
            labelled.entry(uri.clone()).or_default().push([x, y]);
        }
    }
    let first_round = mined.iter().map(|m| m.round).max().unwrap_or(0);
    let mut result: Option<(kestrel_model::network::Network, kestrel_model::network::NetworkConfig, Vec<kestrel_model::train::EpochMetrics>)> = None;
    for round in first_round..=a.mine_rounds {
        let batches = train_set.len().div_ceil(a.options.batch_size);
        let dir = ckpt_root.join(format!("round-{round}"));
        // A run killed between mining and the next round's first epoch has no checkpoint of
        // that round yet: the round starts afresh.
        let checkpoints = kestrel_model::train::Checkpoints {
            resume: a.resume && round == first_round && dir.join("state.json").exists(),
            dir,
        };
        // A round that only feeds mining needs a network that finds the look-alikes, not the
        // best one: half the epochs. A round after mining continues from the previous round's
        // network for half the epochs of its own (it has learnt the class already; the mined
        // negatives are what is new): cars recipe, 2026-12-06, ~40 % of the training time
        // for F1 as good (README).
        let mut epochs = if round < a.mine_rounds { a.options.epochs.div_ceil(2) } else { a.options.epochs };
        let mut initial = None;
        if round > 0 {
            epochs = epochs.div_ceil(2);
            initial = Some(match &result {
                Some((network, _, _)) => network.clone(),
                // Resumed after the previous round ended: its checkpoint keeps its weights.
                None => kestrel_model::train::kept_weights(
                    &ckpt_root.join(format!("round-{}", round - 1)),
                    &kestrel_model::train::network_config(&train_set, &a.options),
                )?,
            });
        }
        let options = TrainOptions { epochs, initial, ..a.options.clone() };
        let stage = if round == 0 { "training".to_string() } else { format!("training, round {}", round + 1) };
        report(TrainReport::Stage(stage, batches * options.epochs));
        let (network, config, history) = train(
            &train_set,
            &val_set,
            &options,
            Some(&checkpoints),
            |e| report(TrainReport::Train(e)),
        )?;
        if round < a.mine_rounds {
            let found =
                mine_hard_negatives(&network, &train_set, &labelled, &MineOptions { max_per_image: a.mine_per_image, ..MineOptions::default() })?;
            report(TrainReport::Note(format!(
                "round {}: mined {} hard negatives from {} training image(s); training on",
                round + 1,
                found.len(),
                train_imgs.len()
            )));
            for f in &found {
                train_set.add_negative(
                    &f.image_uri,
                    f.centre_px[0],
                    f.centre_px[1],
                    f.heading_deg,
                )?;
                mined.push(MinedRecord {
                    round: round + 1,
                    image_uri: f.image_uri.clone(),
                    centre_px: f.centre_px,
                    heading_deg: f.heading_deg,
                    score: f.score,
                });
            }
            // Written before the next round starts, so that a resumed run rebuilds its set.
            std::fs::create_dir_all(&ckpt_root)
                .with_context(|| format!("creating {}", ckpt_root.display()))?;
            let tmp = ckpt_root.join("mined.json.partial");
            std::fs::write(&tmp, serde_json::to_vec_pretty(&mined)?)
                .with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &mined_path)
                .with_context(|| format!("writing {}", mined_path.display()))?;
        }
        result = Some((network, config, history));
    }
    let (network, config, history) = result.context("no training round ran")?;
    let negatives = negatives + mined.len();
    let mut meta = PackageMeta {
        package_version: PACKAGE_VERSION,
        kestrel_version: env!("CARGO_PKG_VERSION").to_string(),
        classes: vec![a.class.to_string()],
        contract,
        network: config,
        training: TrainingSummary {
            positives,
            negatives,
            train_images: train_imgs.iter().map(|i| i.uri.clone()).collect(),
            validation_images: val.iter().map(|i| i.uri.clone()).collect(),
            options: a.options.clone(),
        },
        metrics: history.clone(),
        radiometry,
        detection: None,
        created_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    report(TrainReport::Stage(format!("choosing the detection threshold on the {} validation image(s)", val.len()), 0));
    meta.detection = kestrel_detect::calibrate::calibrate_threshold(&network, &meta, &val_set)?;
    save_package(a.output, &meta, &network)
        .with_context(|| format!("writing {}", a.output.display()))?;
    let best = kestrel_model::train::kept_epoch(&history).context("no epoch ran")?.clone();
    Ok(TrainOutcome { output: a.output.to_path_buf(), best, default_threshold: Some(meta.default_threshold()), detection: meta.detection, members: 1 })
}

/// Whether the image at `uri` is a validation image under `--validate-on PATTERNS`: its path
/// contains one of the comma-separated texts (empty ones ignored).
fn is_validation(uri: &str, patterns: &str) -> bool {
    patterns.split(',').any(|p| !p.is_empty() && uri.contains(p))
}

#[cfg(test)]
mod tests {
    use super::is_validation;

    #[test]
    fn validation_images_match_any_of_several_patterns() {
        let frames = ["/data/MOS175.png", "/data/MOS176.png", "/data/MOS179.png", "/data/MOS17.png"];
        let picked = |patterns: &str| frames.iter().filter(|u| is_validation(u, patterns)).count();
        assert_eq!(picked("MOS176,MOS179"), 2);
        assert_eq!(picked("/MOS17"), 4);
        assert_eq!(picked("MOS176,,"), 1);
        assert_eq!(picked(""), 0);
    }
}
