//! `kestrel train`: chips of a class split by image into training and validation, the
//! network trained with a progress bar (or JSON lines), and the model package written.

use anyhow::{bail, Context, Result};
use kestrel_model::package::{save_package, PackageMeta, TrainingSummary, PACKAGE_VERSION};
use kestrel_model::train::{train, TrainEvent, TrainOptions};
use kestrel_samples::chips::{build_chips, ChipOptions};
use kestrel_samples::dataset::TrainingSet;
use kestrel_samples::{Polarity, Project};
use std::path::Path;

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
}

pub fn run(a: TrainArgs) -> Result<()> {
    let project = Project::open(a.project)?;
    let images = project.images()?;
    if images.len() < 2 {
        bail!(
            "training needs at least two images, one of them for validation (the project has {})",
            images.len()
        );
    }
    // Validation by image, never by overlapping frames: images whose path contains the
    // pattern, or else the last fifth of the images.
    let (val, train_imgs): (Vec<_>, Vec<_>) = match a.validate_on {
        Some(pattern) => images.iter().partition(|i| i.uri.contains(pattern)),
        None => {
            let cut = images.len() - (images.len() / 5).max(1);
            eprintln!("warning: no --validate-on given; validating on the last {} image(s). Consecutive frames of one flight line overlap: choose a separate area with --validate-on", images.len() - cut);
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
    let bar = crate::progress::count_bar("normalizing samples");
    let chips = ChipOptions {
        auto_negative_ratio: a.negatives,
        images: Some(train_ids),
        colour: a.colour.clone(),
        ..Default::default()
    };
    let train_chips = build_chips(&project, a.class, &chips, |d, t| {
        bar.set_length(t as u64);
        bar.set_position(d as u64);
    })?;
    let val_chips = build_chips(
        &project,
        a.class,
        &ChipOptions {
            images: Some(val_ids),
            contract: Some(train_chips.contract.clone()),
            ..chips.clone()
        },
        |_, _| {},
    )?;
    bar.finish_and_clear();
    let positives = train_chips
        .chips
        .iter()
        .filter(|c| c.polarity == Polarity::Positive)
        .count();
    let negatives = train_chips.chips.len() - positives;
    let contract = train_chips.contract.clone();
    let train_set = TrainingSet::new(train_chips);
    let val_set = TrainingSet::new(val_chips);
    eprintln!(
        "training '{}' on {} chips ({positives} positive) from {} image(s), validating on {} chips from {} image(s); {}×{} px at {:.3} m",
        a.class,
        train_set.len(),
        train_imgs.len(),
        val_set.len(),
        val.len(),
        contract.chip_size_px,
        contract.chip_size_px,
        contract.target_gsd_m
    );
    let batches = train_set.len().div_ceil(a.options.batch_size);
    let bar = crate::progress::count_bar("training");
    bar.set_length((batches * a.options.epochs) as u64);
    let json = a.json;
    // Checkpoints beside the package: `car.kestrel` → `car.kestrel.checkpoints/`.
    let checkpoints = kestrel_model::train::Checkpoints {
        dir: std::path::PathBuf::from(format!("{}.checkpoints", a.output.display())),
        resume: a.resume,
    };
    if a.resume {
        eprintln!("resuming from {}", checkpoints.dir.display());
    }
    let (network, config, history) = train(
        &train_set,
        &val_set,
        &a.options,
        Some(&checkpoints),
        |e| {
            if json {
                println!("{}", serde_json::to_string(e).unwrap_or_default());
            }
            match e {
                TrainEvent::Batch {
                    epoch, batch, loss, ..
                } => {
                    bar.set_position((epoch * batches + batch) as u64);
                    bar.set_message(format!("epoch {} loss {loss:.3}", epoch + 1));
                }
                TrainEvent::Epoch(m) => {
                    let line = format!(
                    "epoch {:>2}: train loss {:.3}, val loss {:.3}, precision {:.3}, recall {:.3}, F1 {:.3}, heading error {:.1}°, {:.0} img/s",
                    m.epoch, m.train_loss, m.val_loss, m.precision, m.recall, m.f1, m.heading_error_deg, m.train_images_per_s
                );
                    // The bar prints only to a terminal; the epoch summary must reach logs too.
                    if bar.is_hidden() {
                        eprintln!("{line}");
                    } else {
                        bar.println(line);
                    }
                }
            }
        },
    )?;
    bar.finish_and_clear();
    let meta = PackageMeta {
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
        created_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    save_package(a.output, &meta, &network)
        .with_context(|| format!("writing {}", a.output.display()))?;
    let best = history
        .iter()
        .max_by(|x, y| x.f1.total_cmp(&y.f1))
        .context("no epoch ran")?;
    println!(
        "{}: best validation F1 {:.3} (precision {:.3}, recall {:.3}) at epoch {}",
        a.output.display(),
        best.f1,
        best.precision,
        best.recall,
        best.epoch
    );
    Ok(())
}
