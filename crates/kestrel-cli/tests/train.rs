//! `kestrel train` as a user runs it: killed mid-epoch and resumed, with a mining round,
//! ending in a model package that `kestrel info` describes.

use kestrel_samples::synthetic::{Scene, SceneSpec, TruthBoxes};
use kestrel_samples::{HeadingMode, Project};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

fn synthetic_project(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("vehicles");
    let mut project = Project::create(&p).unwrap();
    let class = project.add_class("vehicle", HeadingMode::Directed).unwrap();
    for seed in [61, 62, 63, 64] {
        let scene = Scene::generate(&SceneSpec {
            seed,
            vehicles: 40,
            width_px: 560,
            height_px: 560,
            ..Default::default()
        });
        scene
            .add_to_project(
                &mut project,
                &dir.join(format!("scene_{seed}.tif")),
                class.id,
                TruthBoxes::Oriented,
            )
            .unwrap();
    }
    p
}

/// The epoch events of a `--json` run's standard output.
fn epoch_events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "epoch")
        .collect()
}

#[test]
fn a_run_killed_mid_epoch_resumes_mines_and_writes_its_package() {
    let dir = tempfile::tempdir().unwrap();
    let project = synthetic_project(dir.path());
    let model = dir.path().join("vehicle.kestrel");
    let args = |extra: &[&str]| {
        let mut v: Vec<String> = [
            "train",
            "--project",
            project.to_str().unwrap(),
            "--class",
            "vehicle",
            "-o",
            model.to_str().unwrap(),
            "--validate-on",
            "scene_64",
            "--epochs",
            "8",
            "--batch",
            "32",
            "--mine-rounds",
            "1",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    // Kill the run as soon as the second epoch of the mining round has begun: the first
    // epoch's checkpoint is complete, the second is half done.
    let mut child = Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(args(&[]))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut killed_at = None;
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["event"] == "batch" && v["epoch"] == 1 && v["batch"] == 2 {
            child.kill().unwrap();
            killed_at = Some(v["epoch"].as_u64().unwrap());
            break;
        }
    }
    let _ = child.wait();
    assert_eq!(killed_at, Some(1), "the run was killed in its second epoch");
    assert!(!model.exists(), "a killed run leaves no package");

    let out = Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(args(&["--resume"]))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    let epochs: Vec<u64> = epoch_events(&stdout).iter().map(|v| v["epoch"].as_u64().unwrap()).collect();
    // Round 1 (half the epochs, 4) resumes after its first epoch; round 2 continues from
    // round 1's network for half of its 8.
    assert_eq!(epochs, vec![2, 3, 4, 1, 2, 3, 4], "{stderr}");
    let reported: usize = stderr
        .split("mined ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no mining report: {stderr}"));
    let mined: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("vehicle.kestrel.checkpoints/mined.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(mined.as_array().map(Vec::len), Some(reported), "{mined}");
    let info = Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(["info", model.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(info.status.success());
    let meta: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(meta["classes"][0], "vehicle");
    let (positives, negatives) = (
        meta["training"]["positives"].as_u64().unwrap(),
        meta["training"]["negatives"].as_u64().unwrap(),
    );
    assert_eq!(
        negatives,
        2 * positives + reported as u64,
        "automatic plus mined negatives"
    );
    // The default threshold was chosen by detecting on the validation image.
    let det = &meta["detection"];
    assert!(det["threshold"].as_f64().is_some_and(|t| t > 0.0 && t <= 1.0) && det["objects"].as_u64() == Some(40), "{det}");
    let best = meta["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["f1"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(best > 0.8, "best F1 {best}");

    // Killed after mining, before round 2's first checkpoint: resuming starts round 2 from
    // the weights round 1 kept.
    std::fs::remove_dir_all(dir.path().join("vehicle.kestrel.checkpoints/round-1")).unwrap();
    std::fs::remove_file(&model).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kestrel")).args(args(&["--resume"])).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let epochs: Vec<u64> = epoch_events(&stdout).iter().map(|v| v["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, vec![1, 2, 3, 4], "{stderr}");
    let f1: Vec<f64> = epoch_events(&stdout).iter().map(|v| v["f1"].as_f64().unwrap()).collect();
    // Continued, not started afresh: the first epoch already scores as a trained network.
    assert!(f1[0] > 0.8, "F1 {f1:?}");
    assert!(model.exists());
}

/// `--members 2` trains two networks with seeds 1 and 2, keeps each in `OUTPUT.members/` and
/// writes them as one ensemble package; `--resume` keeps the members already trained.
#[test]
fn members_train_with_their_own_seeds_into_one_ensemble_package() {
    let dir = tempfile::tempdir().unwrap();
    let project = synthetic_project(dir.path());
    let model = dir.path().join("pair.kestrel");
    let run = |extra: &[&str]| {
        let mut args = vec!["train", "--project", project.to_str().unwrap(), "--class", "vehicle", "-o", model.to_str().unwrap(), "--validate-on", "scene_64", "--epochs", "2", "--batch", "32", "--members", "2"];
        args.extend_from_slice(extra);
        let out = Command::new(env!("CARGO_BIN_EXE_kestrel")).args(&args).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(out.status.success(), "{stderr}");
        (stdout, stderr)
    };
    let (stdout, stderr) = run(&[]);
    assert!(stdout.contains("an ensemble of 2 networks"), "{stdout}");
    assert!(stderr.contains("member 1 of 2 (seed 1)") && stderr.contains("member 2 of 2 (seed 2)"), "{stderr}");
    let members = dir.path().join("pair.kestrel.members");
    let (one, two) = (members.join("seed-1.kestrel"), members.join("seed-2.kestrel"));
    assert!(one.is_file() && two.is_file());
    let info = Command::new(env!("CARGO_BIN_EXE_kestrel")).args(["info", model.to_str().unwrap(), "--json"]).output().unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let metas = info["members"].as_array().expect("an ensemble lists its members");
    let seeds: Vec<u64> = metas.iter().map(|m| m["training"]["options"]["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds, vec![1, 2]);
    let mean = metas.iter().map(|m| m["detection"]["threshold"].as_f64().unwrap()).sum::<f64>() / 2.0;
    assert!((info["default_threshold"].as_f64().unwrap() - mean).abs() < 1e-6, "{info}");
    // Resumed after the second member's package was lost: only that member trains again.
    std::fs::remove_file(&two).unwrap();
    let (_, stderr) = run(&["--resume"]);
    assert!(stderr.contains("member 1 of 2 (seed 1): trained already") && stderr.contains("member 2 of 2 (seed 2) →"), "{stderr}");
    assert!(two.is_file() && model.is_file());
}

#[test]
fn sample_sets_a_detector_cannot_learn_from_are_clear_errors() {
    use kestrel_samples::store::NewSample;
    use kestrel_samples::{Origin, Polarity, Shape};
    let dir = tempfile::tempdir().unwrap();
    let project = synthetic_project(dir.path());
    {
        let mut p = Project::open(&project).unwrap();
        p.add_class("ship", HeadingMode::Axis).unwrap();
        let only_neg = p.add_class("crane", HeadingMode::Axis).unwrap();
        let image = p.images().unwrap()[0].id;
        p.add_samples(&[NewSample { image_id: image, class_id: only_neg.id, polarity: Polarity::Negative, shape: Shape::Point { x: 50.0, y: 50.0, heading_deg: None }, heading_mode: None, origin: Origin::Drawn }]).unwrap();
    }
    let before = Project::open(&project).unwrap().samples(&Default::default()).unwrap().len();
    let run = |class: &str, extra: &[&str]| {
        let model = dir.path().join(format!("{class}.kestrel"));
        let mut args = vec!["train", "--project", project.to_str().unwrap(), "--class", class, "-o", model.to_str().unwrap(), "--validate-on", "scene_64", "--epochs", "1"];
        args.extend_from_slice(extra);
        let out = Command::new(env!("CARGO_BIN_EXE_kestrel")).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success() && !stderr.contains("panicked"), "{stderr}");
        assert!(!model.exists());
        stderr
    };
    let e = run("ship", &[]);
    assert!(e.contains("ship") && e.contains("positive"), "empty class: {e}");
    let e = run("crane", &[]);
    assert!(e.contains("crane") && e.contains("positive"), "only negatives: {e}");
    let e = run("vehicle", &["--negatives", "0"]);
    assert!(e.contains("negatives"), "only positives: {e}");
    let e = run("submarine", &[]);
    assert!(e.contains("submarine"), "unknown class: {e}");
    // Bands: the synthetic scenes have three.
    for (extra, words) in [(&["--bands", "1,2,4"][..], "band 4 does not exist"), (&["--bands", "1,1,2"], "band 1 is named twice"), (&["--bands", "1,2", "--height-bands", "3"], "height band 3 is not one of the bands")] {
        let e = run("vehicle", extra);
        assert!(e.contains(words), "{extra:?}: {e}");
    }
    assert_eq!(Project::open(&project).unwrap().samples(&Default::default()).unwrap().len(), before, "nothing stored is lost");
}
