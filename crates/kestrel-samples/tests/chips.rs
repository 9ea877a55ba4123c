//! `build_chips` on a project made from a synthetic scene: positives are turned to the
//! canonical heading, automatic negatives keep away from objects, and the files are written.

use kestrel_samples::chips::{build_chips, write_chip_set, ChipOptions};
use kestrel_samples::normalize::HeadingSource;
use kestrel_samples::synthetic::{Scene, SceneSpec, TruthBoxes};
use kestrel_samples::{HeadingMode, Polarity, Project};

#[test]
fn synthetic_vehicles_become_upright_chips() {
    let dir = tempfile::tempdir().unwrap();
    let scene = Scene::generate(&SceneSpec {
        seed: 11,
        vehicles: 25,
        ..Default::default()
    });
    let mut project = Project::create(dir.path().join("project")).unwrap();
    let class = project.add_class("vehicle", HeadingMode::Axis).unwrap();
    scene
        .add_to_project(
            &mut project,
            &dir.path().join("scene.tif"),
            class.id,
            TruthBoxes::AxisAligned,
        )
        .unwrap();
    let truth: Vec<_> = scene
        .truth
        .iter()
        .filter(|t| t.class == "vehicle")
        .collect();
    let set = build_chips(
        &project,
        "vehicle",
        &ChipOptions {
            auto_negative_ratio: 1.0,
            ..Default::default()
        },
        |_, _| {},
    )
    .unwrap();
    assert!((set.contract.target_gsd_m - 0.15).abs() < 1e-9);
    assert!(
        (set.contract.object_length_m - 4.5).abs() < 0.4,
        "median vehicle length {}",
        set.contract.object_length_m
    );
    let positives: Vec<_> = set
        .chips
        .iter()
        .filter(|c| c.polarity == Polarity::Positive)
        .collect();
    assert_eq!(positives.len(), truth.len());
    let mut within = 0;
    for (c, t) in positives.iter().zip(&truth) {
        assert!(matches!(c.heading, HeadingSource::Estimated { .. }));
        if HeadingMode::Axis.difference_deg(c.heading_deg, t.shape.heading_deg().unwrap()) < 10.0 {
            within += 1;
        }
    }
    assert!(
        within * 10 >= positives.len() * 9,
        "{within} of {} turned within 10°",
        positives.len()
    );
    let negatives: Vec<_> = set
        .chips
        .iter()
        .filter(|c| c.polarity == Polarity::Negative)
        .collect();
    assert!(
        negatives.len() >= truth.len() * 8 / 10,
        "{} automatic negatives",
        negatives.len()
    );
    for n in &negatives {
        let nearest = truth.iter().map(|t| {
            let (x, y) = t.shape.centre();
            (x - n.centre_px[0]).hypot(y - n.centre_px[1])
        });
        assert!(
            nearest.fold(f64::INFINITY, f64::min) * 0.15 >= set.contract.object_length_m * 0.99
        );
    }
    let out = std::env::var("KESTREL_KEEP_CHIPS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("chips"));
    write_chip_set(&set, &out).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["chips"].as_array().unwrap().len(), set.chips.len());
    let sheet = image::open(out.join("contact_sheet.png")).unwrap();
    assert!(sheet.width() > 100 && sheet.height() > 100);
}

#[test]
fn training_examples_are_deterministic_and_their_heading_labels_follow_the_rotation() {
    use kestrel_geo::PixelWindow;
    use kestrel_samples::dataset::{Augment, TrainingSet};
    use kestrel_samples::normalize::orientation::estimate_orientation;
    use kestrel_samples::normalize::window::NormalizedWindow;
    let dir = tempfile::tempdir().unwrap();
    let scene = Scene::generate(&SceneSpec {
        seed: 12,
        vehicles: 16,
        ..Default::default()
    });
    let mut project = Project::create(dir.path().join("project")).unwrap();
    let class = project.add_class("vehicle", HeadingMode::Directed).unwrap();
    // Oriented boxes with their true heading: chips are exactly canonical.
    scene
        .add_to_project(
            &mut project,
            &dir.path().join("scene.tif"),
            class.id,
            TruthBoxes::Oriented,
        )
        .unwrap();
    let set = build_chips(&project, "vehicle", &ChipOptions::default(), |_, _| {}).unwrap();
    let ts = TrainingSet::new(set);
    let order = ts.epoch_order(5, 0);
    assert_eq!(order, ts.epoch_order(5, 0));
    assert_ne!(order, ts.epoch_order(5, 1));
    let aug = Augment::default();
    let one = ts.batch(&order, &aug, 5, 0, 1).unwrap();
    let two = ts.batch(&order, &aug, 5, 0, 2).unwrap();
    for (a, b) in one.iter().zip(&two) {
        assert_eq!(a.chip, b.chip);
        assert_eq!(a.heading_deg, b.heading_deg);
    }
    // The heading label says where the vehicle now points: measure its axis in the chip. The
    // pixel estimate is a heuristic (a neighbour, the chip's edge or a scaled crop can pull it
    // by 15–30°), so over the epoch's hundreds of examples the test asks for most to agree
    // and the median to be close; labels that did not follow the rotation would spread
    // uniformly over 0–90° (a sixth within 15°, median 45°).
    let mut checked = 0;
    let mut diffs = Vec::new();
    for ex in one.iter().filter(|e| e.positive) {
        let s = ex.chip.size;
        let nw = NormalizedWindow {
            window: PixelWindow::new(0, 0, s as u32, s as u32),
            planes: (0..3)
                .map(|b| ex.chip.data[b * s * s..(b + 1) * s * s].to_vec())
                .collect(),
            valid: None,
        };
        let c = s as f64 / 2.0;
        let half = 0.4 * s as f64;
        if let Some(e) = estimate_orientation(&nw, [c - half, c - half, c + half, c + half]) {
            if e.confidence > 0.5 {
                checked += 1;
                diffs.push(HeadingMode::Axis.difference_deg(e.axis_deg, ex.heading_deg));
            }
        }
    }
    assert!(checked >= 5, "only {checked} chips checked");
    diffs.sort_by(f64::total_cmp);
    let agree = diffs.iter().filter(|&&d| d < 15.0).count();
    assert!(agree as f64 >= 0.7 * checked as f64, "only {agree} of {checked} labels agree with the vehicle's axis in the chip");
    assert!(diffs[diffs.len() / 2] < 10.0, "median disagreement {:.1}°", diffs[diffs.len() / 2]);
}

/// The training set of one synthetic scene of `vehicles` directed vehicles (default chip
/// options), and the folder that holds its project.
fn vehicle_training_set(seed: u64, vehicles: usize) -> (kestrel_samples::dataset::TrainingSet, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let scene = Scene::generate(&SceneSpec { seed, vehicles, ..Default::default() });
    let mut project = Project::create(dir.path().join("project")).unwrap();
    let class = project.add_class("vehicle", HeadingMode::Directed).unwrap();
    scene.add_to_project(&mut project, &dir.path().join("scene.tif"), class.id, TruthBoxes::Oriented).unwrap();
    let ts = kestrel_samples::dataset::TrainingSet::new(build_chips(&project, "vehicle", &ChipOptions::default(), |_, _| {}).unwrap());
    (ts, dir)
}

/// A positive cut off-centre shows the object where its `offset_px` says, whatever the
/// example's turn, scale and mirroring: the shifted chip matches the centred one moved by
/// that offset (the offset head's target must follow the picture, or it teaches nonsense).
#[test]
fn shifted_positives_show_the_object_at_their_offset() {
    use kestrel_samples::dataset::Augment;
    let (ts, _dir) = vehicle_training_set(21, 12);
    let centred = Augment { colour: 0.0, shade: 0.0, shift_px: 0.0, ..Augment::default() };
    let shifted = Augment { shift_px: 6.0, ..centred.clone() };
    let mut checked = 0;
    for i in (0..ts.len()).filter(|&i| ts.is_positive(i)) {
        let a = ts.example(i, &centred, 3, 0).unwrap();
        let b = ts.example(i, &shifted, 3, 0).unwrap();
        assert_eq!(a.offset_px, [0.0, 0.0]);
        assert!(b.offset_px.iter().all(|v| v.abs() <= 6.0) && b.offset_px != [0.0, 0.0]);
        assert_eq!(a.heading_deg, b.heading_deg, "the shift draws no other augmentation");
        // The whole-pixel move that best aligns the two chips.
        let s = a.chip.size as i64;
        let at = |c: &kestrel_samples::normalize::Chip, x: i64, y: i64| -> f32 { (0..3).map(|band| c.data[(band * s as usize + y as usize) * s as usize + x as usize]).sum() };
        let mut best = (f32::INFINITY, 0i64, 0i64);
        for dy in -8i64..=8 {
            for dx in -8i64..=8 {
                let mut err = 0f32;
                for y in 10..s - 10 {
                    for x in 10..s - 10 {
                        err += (at(&b.chip, x, y) - at(&a.chip, x - dx, y - dy)).powi(2);
                    }
                }
                if err < best.0 {
                    best = (err, dx, dy);
                }
            }
        }
        let (dx, dy) = (best.1 as f64, best.2 as f64);
        assert!((dx - b.offset_px[0]).abs() <= 1.0 && (dy - b.offset_px[1]).abs() <= 1.0, "chip {i}: the picture moved by ({dx}, {dy}) px, the target says {:?}", b.offset_px);
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} positives");
}

/// A decoy is the positive's own chip with the object's rectangle filled flat with its mean
/// colour (when the object has inner structure to lose): a negative, with the outline, colour and surroundings of the object but none of its
/// inner structure; everything outside the rectangle is the untouched chip.
#[test]
fn decoys_flatten_the_object_and_keep_its_surroundings() {
    use kestrel_samples::dataset::Augment;
    let (ts, _dir) = vehicle_training_set(23, 30);
    let plain = Augment { colour: 0.0, shade: 0.0, ..Augment::default() };
    let decoy = Augment { decoy: 1.0, ..plain.clone() };
    let mut checked = 0;
    for i in (0..ts.len()).filter(|&i| ts.is_positive(i)) {
        let a = ts.example(i, &plain, 5, 0).unwrap();
        let b = ts.example(i, &decoy, 5, 0).unwrap();
        if b.positive {
            // Too flat inside to become a decoy (kestrel_samples::dataset::DECOY_MIN_STRUCTURE):
            // left as it was.
            assert!(a.chip.data == b.chip.data && a.offset_px == b.offset_px, "chip {i}: a positive left alone was changed");
            continue;
        }
        assert!(a.positive, "a decoy is made from a positive");
        assert!(b.size_m.is_none() && b.offset_px == [0.0, 0.0]);
        let s = a.chip.size;
        let changed: Vec<usize> = (0..s * s).filter(|&p| (0..3).any(|band| a.chip.data[band * s * s + p] != b.chip.data[band * s * s + p])).collect();
        let [l, w] = a.size_m.unwrap();
        let area_px = l * w / (ts.contract.target_gsd_m * ts.contract.target_gsd_m);
        assert!(
            changed.len() as f64 > 0.5 * area_px && (changed.len() as f64) < 1.2 * area_px,
            "chip {i}: {} pixels changed for an object of {area_px:.0}",
            changed.len()
        );
        // The object sits where the positive's offset says: the changed pixels' centroid.
        let (mx, my) = changed.iter().fold((0.0, 0.0), |(x, y), &p| (x + (p % s) as f64 + 0.5, y + (p / s) as f64 + 0.5));
        let (mx, my) = (mx / changed.len() as f64, my / changed.len() as f64);
        let centre = [s as f64 / 2.0 + a.offset_px[0], s as f64 / 2.0 + a.offset_px[1]];
        assert!((mx - centre[0]).hypot(my - centre[1]) < 1.5, "chip {i}: flattened around ({mx:.1}, {my:.1}), object at {centre:?}");
        // Flat inside, and its long axis along the positive's heading label: the changed
        // pixels spread more along the heading than across it.
        for band in 0..3 {
            let v0 = b.chip.data[band * s * s + changed[0]];
            assert!(changed.iter().all(|&p| b.chip.data[band * s * s + p] == v0));
        }
        let h = (ts.contract.canonical_heading_deg + a.heading_deg).to_radians();
        let (along, across) = changed.iter().fold((0.0, 0.0), |(al, ac), &p| {
            let (dx, dy) = ((p % s) as f64 + 0.5 - mx, (p / s) as f64 + 0.5 - my);
            (al + (dx * h.sin() - dy * h.cos()).powi(2), ac + (dx * h.cos() + dy * h.sin()).powi(2))
        });
        assert!(along > 2.0 * across, "chip {i}: the flat rectangle lies across the object");
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} positives");
}

/// A wrong-size negative is the positive cut at a GSD that shows it 0.55–0.7× or 1.45–1.8×
/// as long: a negative whose picture is the positive's scaled about the chip's centre.
#[test]
fn wrong_size_negatives_show_the_object_shrunk_or_grown() {
    use kestrel_samples::dataset::Augment;
    let (ts, _dir) = vehicle_training_set(29, 20);
    // Canonical, centred, untouched chips: only the size changes.
    let plain = Augment { rotate_deg: 0.0, flip: false, scale: 0.0, colour: 0.0, shade: 0.0, shift_px: 0.0, blur_px: 0.0, ..Augment::default() };
    let wrong = Augment { wrong_size: 1.0, ..plain.clone() };
    let (mut shrunk, mut grown) = (0, 0);
    for i in (0..ts.len()).filter(|&i| ts.is_positive(i)) {
        let a = ts.example(i, &plain, 5, 0).unwrap();
        let b = ts.example(i, &wrong, 5, 0).unwrap();
        assert!(a.positive && !b.positive && b.size_m.is_none() && b.offset_px == [0.0, 0.0], "chip {i}");
        let s = a.chip.size;
        let c = s as f64 / 2.0;
        // Bilinear sample of band 0 of `a` at (x, y), None outside it.
        let at = |x: f64, y: f64| -> Option<f32> {
            let (fx, fy) = (x - 0.5, y - 0.5);
            if fx < 0.0 || fy < 0.0 || fx > (s - 1) as f64 || fy > (s - 1) as f64 {
                return None;
            }
            let (x0, y0) = (fx as usize, fy as usize);
            let (x1, y1) = ((x0 + 1).min(s - 1), (y0 + 1).min(s - 1));
            let (tx, ty) = ((fx - x0 as f64) as f32, (fy - y0 as f64) as f32);
            let v = |x: usize, y: usize| a.chip.data[y * s + x];
            Some((v(x0, y0) * (1.0 - tx) + v(x1, y0) * tx) * (1.0 - ty) + (v(x0, y1) * (1.0 - tx) + v(x1, y1) * tx) * ty)
        };
        // The factor k for which b(x) = a(c + (x − c) / k) fits best.
        let misfit = |k: f64| {
            let (mut sum, mut n) = (0.0, 0);
            for y in 0..s {
                for x in 0..s {
                    let (u, v) = (c + (x as f64 + 0.5 - c) / k, c + (y as f64 + 0.5 - c) / k);
                    if let Some(va) = at(u, v) {
                        sum += f64::from((va - b.chip.data[y * s + x]).abs());
                        n += 1;
                    }
                }
            }
            sum / n.max(1) as f64
        };
        let k = (50..=200).map(|k| f64::from(k) / 100.0).min_by(|&p, &q| misfit(p).total_cmp(&misfit(q))).unwrap();
        assert!((0.53..=0.72).contains(&k) || (1.42..=1.83).contains(&k), "chip {i}: shown at {k}× its size");
        if k < 1.0 { shrunk += 1 } else { grown += 1 }
    }
    assert!(shrunk >= 3 && grown >= 3, "{shrunk} shrunk and {grown} grown: both kinds are made");
}
