//! Hard-negative mining finds what the network calls an object where nothing is labelled,
//! at the right place, and leaves labelled objects alone.

use kestrel_detect::mine::{mine_hard_negatives, MineOptions};
use kestrel_model::train::{train, TrainOptions};
use kestrel_samples::chips::{build_chips, ChipOptions};
use kestrel_samples::dataset::TrainingSet;
use kestrel_samples::store::SampleFilter;
use kestrel_samples::synthetic::{Scene, SceneSpec, TruthBoxes};
use kestrel_samples::{HeadingMode, Project};
use std::collections::HashMap;

fn scene(seed: u64) -> Scene {
    Scene::generate(&SceneSpec {
        seed,
        vehicles: 45,
        width_px: 640,
        height_px: 640,
        ..Default::default()
    })
}

#[test]
fn mining_finds_unlabelled_vehicles_and_spares_labelled_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut project = Project::create(dir.path().join("p")).unwrap();
    let class = project.add_class("vehicle", HeadingMode::Directed).unwrap();
    for seed in [41, 42, 43] {
        scene(seed)
            .add_to_project(
                &mut project,
                &dir.path().join(format!("s{seed}.tif")),
                class.id,
                TruthBoxes::Oriented,
            )
            .unwrap();
    }
    let opts = ChipOptions {
        auto_negative_ratio: 2.0,
        ..Default::default()
    };
    let train_set = TrainingSet::new(build_chips(&project, "vehicle", &opts, |_, _| {}).unwrap());
    let mut val_project = Project::create(dir.path().join("v")).unwrap();
    let vclass = val_project
        .add_class("vehicle", HeadingMode::Directed)
        .unwrap();
    let held = scene(44);
    let image = held
        .add_to_project(
            &mut val_project,
            &dir.path().join("s44.tif"),
            vclass.id,
            TruthBoxes::Oriented,
        )
        .unwrap();
    let val_set = TrainingSet::new(
        build_chips(
            &val_project,
            "vehicle",
            &ChipOptions {
                contract: Some(train_set.contract.clone()),
                ..opts.clone()
            },
            |_, _| {},
        )
        .unwrap(),
    );
    let (network, _, history) = train(
        &train_set,
        &val_set,
        &TrainOptions {
            epochs: 12,
            batch_size: 32,
            ..Default::default()
        },
        None,
        |_| {},
    )
    .unwrap();
    assert!(
        history.iter().any(|m| m.f1 > 0.85),
        "the network did not learn: {history:?}"
    );

    // Forget the labels of every other vehicle of the held-out scene: to the labels they are
    // now background, so a good network's detections there are "false positives".
    let samples = val_project
        .samples(&SampleFilter {
            image_id: Some(image.id),
            ..Default::default()
        })
        .unwrap();
    let mut forgotten = Vec::new();
    for s in samples.iter().step_by(2) {
        forgotten.push(s.shape.centre());
        val_project.delete_sample(s.id, s.version).unwrap();
    }
    let kept: Vec<(f64, f64)> = val_project
        .samples(&SampleFilter::default())
        .unwrap()
        .iter()
        .map(|s| s.shape.centre())
        .collect();
    let set = TrainingSet::new(
        build_chips(
            &val_project,
            "vehicle",
            &ChipOptions {
                contract: Some(train_set.contract.clone()),
                ..opts
            },
            |_, _| {},
        )
        .unwrap(),
    );
    let mined = mine_hard_negatives(
        &network,
        &set,
        &HashMap::new(),
        &MineOptions {
            max_per_image: 100,
            ..Default::default()
        },
    )
    .unwrap();
    let near = |p: [f64; 2], q: (f64, f64), r: f64| (p[0] - q.0).hypot(p[1] - q.1) < r;
    // Found: within half the object's length, the distance under which mining itself treats
    // a detection as the labelled object (peaks lie on an 8-pixel grid, refined).
    let tol_px = 0.5 * train_set.contract.object_length_m / 0.15;
    let hits = forgotten
        .iter()
        .filter(|&&f| mined.iter().any(|m| near(m.centre_px, f, tol_px)))
        .count();
    eprintln!(
        "{} mined; {hits} of {} unlabelled vehicles found",
        mined.len(),
        forgotten.len()
    );
    assert!(
        hits as f64 >= 0.8 * forgotten.len() as f64,
        "only {hits} of {} unlabelled vehicles mined",
        forgotten.len()
    );
    // Nothing on a labelled vehicle.
    let half_length_px = 0.5 * train_set.contract.object_length_m / 0.15;
    assert!(mined
        .iter()
        .all(|m| kept.iter().all(|&k| !near(m.centre_px, k, half_length_px))));
    // The strongest mined negatives are those vehicles.
    let strongest = &mined[..forgotten.len().min(mined.len()) / 2];
    let on_vehicles = strongest
        .iter()
        .filter(|m| forgotten.iter().any(|&f| near(m.centre_px, f, tol_px)))
        .count();
    assert!(
        on_vehicles * 10 >= strongest.len() * 7,
        "{on_vehicles} of the {} strongest mined negatives lie on vehicles",
        strongest.len()
    );
}
