//! The network learns vehicles from synthetic scenes and recognizes them on a scene it never
//! saw, with their heading.

use kestrel_model::train::{train, TrainOptions};
use kestrel_samples::chips::{build_chips, ChipOptions};
use kestrel_samples::dataset::TrainingSet;
use kestrel_samples::synthetic::{Scene, SceneSpec, TruthBoxes};
use kestrel_samples::{HeadingMode, Project};
use std::path::Path;

fn project_of(dir: &Path, name: &str, seeds: &[u64]) -> Project {
    let mut project = Project::create(dir.join(name)).unwrap();
    let class = project.add_class("vehicle", HeadingMode::Directed).unwrap();
    for &seed in seeds {
        let scene = Scene::generate(&SceneSpec {
            seed,
            vehicles: 45,
            width_px: 640,
            height_px: 640,
            ..Default::default()
        });
        scene
            .add_to_project(
                &mut project,
                &dir.join(format!("{name}_{seed}.tif")),
                class.id,
                TruthBoxes::Oriented,
            )
            .unwrap();
    }
    project
}

/// Training and validation sets from synthetic scenes of the given seeds, two automatic
/// negatives per positive; validation is cut with the training contract, as detection would.
fn training_and_validation(dir: &Path, train_seeds: &[u64], val_seeds: &[u64]) -> (TrainingSet, TrainingSet) {
    let opts = ChipOptions { auto_negative_ratio: 2.0, ..Default::default() };
    let train_chips = build_chips(&project_of(dir, "train", train_seeds), "vehicle", &opts, |_, _| {}).unwrap();
    let mut val_chips = build_chips(&project_of(dir, "val", val_seeds), "vehicle", &opts, |_, _| {}).unwrap();
    val_chips.contract = train_chips.contract.clone();
    (TrainingSet::new(train_chips), TrainingSet::new(val_chips))
}

#[test]
fn vehicles_are_learned_and_recognized_on_an_unseen_scene() {
    let dir = tempfile::tempdir().unwrap();
    let (train_set, val_set) = training_and_validation(dir.path(), &[31, 32, 33], &[34]);
    let options = TrainOptions {
        epochs: 10,
        batch_size: 32,
        ..Default::default()
    };
    let (network, _, history) = train(&train_set, &val_set, &options, None, |_| {}).unwrap();
    for m in &history {
        eprintln!(
            "epoch {}: loss {:.3} / {:.3}, P {:.3} R {:.3} F1 {:.3}, heading {:.1}°, {:.0} img/s",
            m.epoch,
            m.train_loss,
            m.val_loss,
            m.precision,
            m.recall,
            m.f1,
            m.heading_error_deg,
            m.train_images_per_s
        );
    }
    let best = history.iter().map(|m| m.f1).fold(0.0, f64::max);
    assert!(best >= 0.9, "best validation F1 {best:.3}");
    // The weights returned are those of the kept epoch, scored as then.
    let kept = kestrel_model::train::kept_epoch(&history).unwrap();
    let again = kestrel_model::train::evaluate(&network, &val_set, &options).unwrap();
    assert!(
        (again.val_loss - kept.val_loss).abs() < 1e-4 * kept.val_loss.max(1.0) && (again.f1 - kept.f1).abs() < 0.005,
        "the returned network scores loss {:.5} F1 {:.4}; the kept epoch {} scored {:.5} {:.4}",
        again.val_loss,
        again.f1,
        kept.epoch,
        kept.val_loss,
        kept.f1
    );
}

#[test]
fn a_package_round_trips_and_bad_packages_are_clear_errors() {
    use kestrel_model::network::NetworkConfig;
    use kestrel_model::package::{
        load_package, read_meta, save_package, PackageMeta, TrainingSummary, PACKAGE_VERSION,
    };
    use kestrel_samples::normalize::Contract;
    let dir = tempfile::tempdir().unwrap();
    let device = burn::tensor::Device::default();
    let config = NetworkConfig::new(3, 1);
    let network = config.init(&device);
    let meta = PackageMeta {
        package_version: PACKAGE_VERSION,
        kestrel_version: "test".into(),
        classes: vec!["vehicle".into()],
        contract: Contract::derive(
            &[4.5],
            &[1.8],
            &[0.15],
            vec![0, 1, 2],
            HeadingMode::Axis,
            None,
            "quantile".parse().unwrap(),
        )
        .unwrap(),
        network: config,
        training: TrainingSummary {
            positives: 1,
            negatives: 1,
            train_images: vec![],
            validation_images: vec![],
            options: Default::default(),
        },
        metrics: vec![],
        created_unix_s: 0,
        radiometry: None,
        detection: None,
    };
    let path = dir.path().join("m.kestrel");
    save_package(&path, &meta, &network).unwrap();
    let (back, _) = load_package(&path, &device).unwrap();
    assert_eq!(back.contract, meta.contract);
    assert_eq!(
        read_meta(&path).unwrap().classes,
        vec!["vehicle".to_string()]
    );
    // A package written before the offset head: its network record has no such field and
    // no such weights; it loads as a network without the head.
    let old_style = |bytes: &[u8]| -> Vec<u8> {
        let len = u64::from_le_bytes(bytes[12..20].try_into().unwrap()) as usize;
        let mut json: serde_json::Value = serde_json::from_slice(&bytes[20..20 + len]).unwrap();
        json["network"].as_object_mut().unwrap().remove("offset_head").expect("new packages record the head");
        let json = serde_json::to_vec(&json).unwrap();
        let mut out = bytes[..12].to_vec();
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&bytes[20 + len..]);
        out
    };
    std::fs::write(&path, old_style(&std::fs::read(&path).unwrap())).unwrap();
    let (back, net) = load_package(&path, &device).unwrap();
    assert!(!back.network.offset_head);
    assert!(!kestrel_model::infer::Inference::new(&net).has_offset());
    // A network with the head keeps it through a package.
    let with_head = NetworkConfig::new(3, 1).with_offset_head(true);
    save_package(&path, &PackageMeta { network: with_head.clone(), ..meta.clone() }, &with_head.init(&device)).unwrap();
    let (back, net) = load_package(&path, &device).unwrap();
    assert!(back.network.offset_head && kestrel_model::infer::Inference::new(&net).has_offset());
    save_package(&path, &meta, &network).unwrap();
    // Wrong version, truncated weights, not a package at all.
    let mut bytes = std::fs::read(&path).unwrap();
    let good = bytes.clone();
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let e = load_package(&path, &device).err().unwrap().to_string();
    assert!(e.contains("m.kestrel") && e.contains("99"), "{e}");
    std::fs::write(&path, &good[..good.len() - 100]).unwrap();
    let e = load_package(&path, &device).err().unwrap().to_string();
    assert!(e.contains("corrupt"), "{e}");
    std::fs::write(&path, b"not a model at all, definitely").unwrap();
    assert!(load_package(&path, &device)
        .err()
        .unwrap()
        .to_string()
        .contains("not a Kestrel model package"));
}

/// Networks of one class and contract combine into one ensemble package that loads as its
/// members (an ensemble inside another counts as its members); other classes or contracts,
/// too few networks and broken member lists are clear errors, and no partial file is left.
#[test]
fn ensemble_packages_hold_their_members() {
    use kestrel_model::network::NetworkConfig;
    use kestrel_model::package::{load_ensemble, load_members, load_package, read_meta, read_metas, save_ensemble, save_package, DetectionCalibration, PackageMeta, TrainingSummary, PACKAGE_VERSION};
    use kestrel_samples::normalize::Contract;
    let dir = tempfile::tempdir().unwrap();
    let device = burn::tensor::Device::default();
    let config = NetworkConfig::new(3, 1).with_offset_head(true);
    let contract = |gsd_m: f64| Contract::derive(&[4.5], &[1.8], &[gsd_m], vec![0, 1, 2], HeadingMode::Directed, None, "stretch".parse().unwrap()).unwrap();
    let meta = |threshold: f32, gsd_m: f64| PackageMeta {
        package_version: PACKAGE_VERSION,
        kestrel_version: "test".into(),
        classes: vec!["car".into()],
        contract: contract(gsd_m),
        network: config.clone(),
        training: TrainingSummary { positives: 1, negatives: 1, train_images: vec![], validation_images: vec![], options: Default::default() },
        metrics: vec![],
        created_unix_s: 0,
        radiometry: None,
        detection: Some(DetectionCalibration { threshold, precision: 0.9, recall: 0.9, f1: 0.9, objects: 10, images: 1 }),
    };
    let (a, b, c, coarse) = (dir.path().join("a.kestrel"), dir.path().join("b.kestrel"), dir.path().join("c.kestrel"), dir.path().join("coarse.kestrel"));
    for (path, threshold, gsd_m) in [(&a, 0.6, 0.15), (&b, 0.8, 0.15), (&c, 0.7, 0.15), (&coarse, 0.7, 0.3)] {
        save_package(path, &meta(threshold, gsd_m), &config.init(&device)).unwrap();
    }
    let ab = dir.path().join("ab.kestrel");
    let metas = save_ensemble(&ab, &[&a, &b]).unwrap();
    assert_eq!(metas.len(), 2);
    assert_eq!(read_metas(&ab).unwrap().iter().map(|m| m.default_threshold()).collect::<Vec<_>>(), vec![0.6, 0.8]);
    assert_eq!(read_meta(&ab).unwrap().classes, vec!["car".to_string()]);
    assert_eq!(load_members(&ab, &device).unwrap().len(), 2);
    let loaded = load_ensemble(&[&ab], &device).unwrap();
    assert_eq!(loaded.networks.len(), 2);
    assert!((loaded.default_threshold - 0.7).abs() < 1e-6, "{}", loaded.default_threshold);
    // The members' weights are theirs: the ensemble reads as its members read, one by one.
    let x: Vec<f32> = (0..2 * 3 * 52 * 52).map(|i| ((i * 37) % 101) as f32 / 101.0).collect();
    let alone = kestrel_model::infer::Ensemble::new([&load_package(&a, &device).unwrap().1, &load_package(&b, &device).unwrap().1]).forward_centre(&x, 2, 3, 52, 52);
    let packed = kestrel_model::infer::Ensemble::new(&loaded.networks).forward_centre(&x, 2, 3, 52, 52);
    assert_eq!(alone, packed);
    // An ensemble with another network is three members; detect and eval take either.
    let abc = dir.path().join("abc.kestrel");
    assert_eq!(save_ensemble(&abc, &[&ab, &c]).unwrap().len(), 3);
    assert_eq!(load_ensemble(&[&abc], &device).unwrap().networks.len(), 3);
    assert_eq!(load_ensemble(&[&ab, &c], &device).unwrap().networks.len(), 3);
    // Loading an ensemble as one network is refused, naming the file.
    let e = load_package(&ab, &device).err().unwrap().to_string();
    assert!(e.contains("ab.kestrel") && e.contains("ensemble of 2"), "{e}");
    // Another contract, too few networks: refused, nothing written.
    let bad = dir.path().join("bad.kestrel");
    let e = save_ensemble(&bad, &[&a, &coarse]).err().unwrap().to_string();
    assert!(e.contains("coarse.kestrel") && e.contains("contract"), "{e}");
    let e = save_ensemble(&bad, &[&a]).err().unwrap().to_string();
    assert!(e.contains("two or more"), "{e}");
    assert!(!bad.exists() && !dir.path().join("bad.kestrel.partial").exists());
    // A member list cut short is a corrupt package, named.
    let bytes = std::fs::read(&ab).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() - 10]).unwrap();
    let e = read_metas(&bad).err().unwrap().to_string();
    assert!(e.contains("bad.kestrel") && e.contains("member 2 of 2"), "{e}");
}

#[test]
fn an_interrupted_run_resumes_from_its_checkpoint() {
    use kestrel_model::train::Checkpoints;
    let dir = tempfile::tempdir().unwrap();
    let (mut train_set, val_set) = training_and_validation(dir.path(), &[41, 42], &[43]);
    let full = TrainOptions {
        epochs: 6,
        batch_size: 32,
        patience: 10,
        ..Default::default()
    };
    let (_, _, straight) = train(&train_set, &val_set, &full, None, |_| {}).unwrap();

    // The same run, stopped after 3 epochs (as a kill after the third checkpoint would), then resumed.
    let ck = Checkpoints {
        dir: dir.path().join("ckpt"),
        resume: false,
    };
    let (_, _, first) = train(
        &train_set,
        &val_set,
        &TrainOptions {
            epochs: 3,
            ..full.clone()
        },
        Some(&ck),
        |_| {},
    )
    .unwrap();
    assert_eq!(first.len(), 3);
    let resumed_ck = Checkpoints {
        resume: true,
        ..ck.clone()
    };
    let mut seen = Vec::new();
    let (_, _, resumed) = train(&train_set, &val_set, &full, Some(&resumed_ck), |e| {
        if let kestrel_model::train::TrainEvent::Epoch(m) = e {
            seen.push(m.epoch);
        }
    })
    .unwrap();
    assert_eq!(seen, vec![4, 5, 6], "only the remaining epochs run");
    assert_eq!(resumed.len(), 6);
    assert_eq!(
        resumed[..3].iter().map(|m| m.f1).collect::<Vec<_>>(),
        first.iter().map(|m| m.f1).collect::<Vec<_>>()
    );
    let (a, b) = (straight.last().unwrap().f1, resumed.last().unwrap().f1);
    eprintln!("F1 after 6 epochs: uninterrupted {a:.3}, resumed {b:.3}");
    assert!(
        (a - b).abs() < 0.1,
        "uninterrupted {a:.3} vs resumed {b:.3}"
    );

    // Other settings or other data than the checkpoint's are refused, naming the difference.
    let err = train(
        &train_set,
        &val_set,
        &TrainOptions {
            seed: 9,
            ..full.clone()
        },
        Some(&resumed_ck),
        |_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("seed 1") && err.contains("seed 9"), "{err}");
    // Other widths (whose weights would not load) or augmentation, named.
    let err = train(&train_set, &val_set, &TrainOptions { widths: [8, 16, 32], ..full.clone() }, Some(&resumed_ck), |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("widths [16, 32, 64]") && err.contains("widths [8, 16, 32]"), "{err}");
    let err = train(&train_set, &val_set, &TrainOptions { decoys: 0.2, ..full.clone() }, Some(&resumed_ck), |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("decoys 0.2"), "{err}");
    let err = train(&val_set, &val_set, &full, Some(&resumed_ck), |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("samples changed"), "{err}");
    // Chips at another GSD (another --gsd) would teach the network another scale.
    let gsd_m = train_set.contract.target_gsd_m;
    train_set.contract.target_gsd_m = 2.0 * gsd_m;
    let err = train(&train_set, &val_set, &full, Some(&resumed_ck), |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("resume with the same --gsd"), "{err}");
    train_set.contract.target_gsd_m = gsd_m;

    // The CPU's training pass saves its own optimizer state (Adam's moments and steps); a
    // checkpoint without it (burn's, written on a GPU or by an earlier Kestrel) is refused
    // on the CPU with what to do, not continued with a fresh optimizer.
    let state_path = ck.dir.join("state.json");
    let saved = std::fs::read(&state_path).unwrap();
    let mut state: serde_json::Value = serde_json::from_slice(&saved).unwrap();
    assert!(state.as_object_mut().unwrap().remove("cpu_adam_steps").is_some_and(|s| s.as_u64() > Some(0)), "the state counts Adam's steps");
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    let err = train(&train_set, &val_set, &full, Some(&resumed_ck), |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--device gpu") && err.contains("without --resume"), "{err}");
    std::fs::write(&state_path, saved).unwrap();

    // A checkpoint of a Kestrel that kept the strictly best F1 cannot go on under this rule.
    let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(ck.dir.join("state.json")).unwrap()).unwrap();
    let fields = state.as_object_mut().unwrap();
    assert!(fields.remove("kept_epoch").is_some_and(|k| k.is_u64()), "the state names its kept epoch");
    fields.insert("best_f1".into(), serde_json::json!(0.9));
    std::fs::write(ck.dir.join("state.json"), serde_json::to_vec(&state).unwrap()).unwrap();
    let err = train(&train_set, &val_set, &full, Some(&resumed_ck), |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("another rule") && err.contains("without --resume"), "{err}");

    // A corrupt checkpoint is a clear error.
    std::fs::write(ck.dir.join("state.json"), b"{ not json").unwrap();
    let err = train(&train_set, &val_set, &full, Some(&resumed_ck), |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("checkpoint") && err.contains("state.json"),
        "{err}"
    );
}
