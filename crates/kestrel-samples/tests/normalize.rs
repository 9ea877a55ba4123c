//! Normalization measured on synthetic scenes with known objects: heading estimation from
//! pixels, object size across ground sample distances, and chip invariance to radiometry.

use kestrel_geo::open_raster;
use kestrel_geo::PixelWindow;
use kestrel_samples::normalize::colour::ColourStats;
use kestrel_samples::normalize::orientation::{estimate_orientation, AspectPrior};
use kestrel_samples::normalize::window::NormalizedWindow;
use kestrel_samples::normalize::{
    analyse_sample, chip_radius_px, resample_chip, Chip, Contract, HeadingSource,
};
use kestrel_samples::synthetic::{Scene, SceneSpec};
use kestrel_samples::{HeadingMode, Shape};

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn heading_estimated_from_axis_aligned_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let mut errors = Vec::new();
    let mut low_confidence = 0;
    let mut no_estimate = 0;
    for seed in 1..=6 {
        let scene = Scene::generate(&SceneSpec {
            seed,
            vehicles: 25,
            ..Default::default()
        });
        let path = dir.path().join(format!("scene{seed}.tif"));
        scene.write_geotiff(&path).unwrap();
        let src = open_raster(&path).unwrap();
        let stats = ColourStats::from_raster(src.as_ref()).unwrap();
        let boxes: Vec<(f64, f64)> = scene
            .truth
            .iter()
            .filter(|t| t.class == "vehicle")
            .map(|t| {
                let b = t.shape.bounds();
                (b[2] - b[0], b[3] - b[1])
            })
            .collect();
        let prior = AspectPrior::from_boxes(boxes.iter().copied());
        for t in scene.truth.iter().filter(|t| t.class == "vehicle") {
            let b = t.shape.bounds();
            let axis_box = Shape::AxisBox {
                cx: (b[0] + b[2]) / 2.0,
                cy: (b[1] + b[3]) / 2.0,
                w: b[2] - b[0],
                h: b[3] - b[1],
            };
            let g =
                analyse_sample(src.as_ref(), &stats, &[0, 1, 2], &axis_box, 30.0, prior).unwrap();
            let HeadingSource::Estimated { confidence } = g.heading else {
                no_estimate += 1;
                eprintln!("no estimate for {t:?}");
                continue;
            };
            if confidence < 0.3 {
                low_confidence += 1;
            }
            let err =
                HeadingMode::Axis.difference_deg(g.heading_deg, t.shape.heading_deg().unwrap());
            if err > 10.0 {
                eprintln!("large error {err:.1}° (confidence {confidence:.2}) for {:?} colour {:?} at {:?}", t.shape.heading_deg(), t.colour, t.shape.centre());
            }
            errors.push(err);
        }
    }
    let n = errors.len();
    let median = percentile(&mut errors, 0.5);
    let p95 = percentile(&mut errors, 0.95);
    eprintln!("heading from axis boxes: {n} vehicles, median error {median:.2}°, p95 {p95:.2}°, {low_confidence} with confidence < 0.3");
    assert!(
        n >= 120 && no_estimate * 50 < n,
        "{no_estimate} of {n} without an estimate"
    );
    assert!(median < 3.0, "median heading error {median:.2}°");
    assert!(p95 < 10.0, "95th percentile heading error {p95:.2}°");
}

/// Chips of every vehicle, turned to canonical heading with the true heading.
fn vehicle_chips(scene: &Scene, path: &std::path::Path, contract: &Contract) -> Vec<Chip> {
    scene.write_geotiff(path).unwrap();
    let src = open_raster(path).unwrap();
    let stats = ColourStats::from_raster(src.as_ref()).unwrap();
    let gsd = scene.spec.gsd_m;
    scene
        .truth
        .iter()
        .filter(|t| t.class == "vehicle")
        .map(|t| {
            let (cx, cy) = t.shape.centre();
            let r = chip_radius_px(contract, gsd);
            let win =
                NormalizedWindow::around(scene.spec.width_px, scene.spec.height_px, cx, cy, r)
                    .unwrap();
            let nw =
                NormalizedWindow::read_for(src.as_ref(), win, &[0, 1, 2], &stats, &contract.colour)
                    .unwrap();
            resample_chip(&nw, cx, cy, t.shape.heading_deg().unwrap(), gsd, contract)
        })
        .collect()
}

/// Mean absolute difference of two sets of chips, sample by sample.
fn mean_abs_difference(a: &[Chip], b: &[Chip]) -> f64 {
    let (mut sum, mut n) = (0f64, 0usize);
    for (ca, cb) in a.iter().zip(b) {
        for (x, y) in ca.data.iter().zip(&cb.data) {
            sum += f64::from((x - y).abs());
            n += 1;
        }
    }
    sum / n as f64
}

fn contract() -> Contract {
    Contract::derive(
        &[4.5],
        &[1.85],
        &[0.15],
        vec![0, 1, 2],
        HeadingMode::Directed,
        None,
        "quantile".parse().unwrap(),
    )
    .unwrap()
}

/// Object length (metres) measured by moments in a canonical chip.
fn length_in_chip(chip: &Chip, contract: &Contract) -> f64 {
    let s = chip.size;
    let nw = NormalizedWindow {
        window: PixelWindow::new(0, 0, s as u32, s as u32),
        planes: (0..chip.bands)
            .map(|b| chip.data[b * s * s..(b + 1) * s * s].to_vec())
            .collect(),
        valid: None,
    };
    let half_l = 0.6 * contract.object_length_m / contract.target_gsd_m;
    let half_w = 0.75 * contract.object_width_m / contract.target_gsd_m;
    let c = s as f64 / 2.0;
    let e = estimate_orientation(&nw, [c - half_w, c - half_l, c + half_w, c + half_l]).unwrap();
    e.length_px * contract.target_gsd_m
}

#[test]
fn object_size_is_the_same_across_gsds() {
    let dir = tempfile::tempdir().unwrap();
    let contract = contract();
    let base_gsd: f64 = 0.15;
    let mut per_gsd = Vec::new();
    for factor in [0.5, 1.0, 2.0] {
        let gsd = base_gsd * factor;
        // The same ground (77 m square) at each GSD: positions and sizes are drawn in metres.
        let side = (512.0 * base_gsd / gsd).round() as u32;
        let scene = Scene::generate(&SceneSpec {
            seed: 3,
            vehicles: 20,
            gsd_m: gsd,
            width_px: side,
            height_px: side,
            ..Default::default()
        });
        let chips = vehicle_chips(
            &scene,
            &dir.path().join(format!("g{factor}.tif")),
            &contract,
        );
        let lengths: Vec<f64> = chips.iter().map(|c| length_in_chip(c, &contract)).collect();
        per_gsd.push((
            factor,
            lengths,
            scene
                .truth
                .iter()
                .filter(|t| t.class == "vehicle")
                .map(|t| t.length_m)
                .collect::<Vec<_>>(),
        ));
    }
    let reference = &per_gsd[1];
    for (factor, lengths, truth) in &per_gsd {
        assert_eq!(truth, &reference.2, "the same vehicles at every GSD");
        let mut rel: Vec<f64> = lengths
            .iter()
            .zip(&reference.1)
            .map(|(a, b)| (a - b).abs() / b)
            .collect();
        let med = percentile(&mut rel, 0.5);
        eprintln!(
            "GSD ×{factor}: median relative length difference to ×1 {:.2}%",
            med * 100.0
        );
        assert!(
            med < 0.05,
            "GSD ×{factor}: normalized length differs by {:.1}%",
            med * 100.0
        );
    }
}

#[test]
fn chips_are_alike_under_gamma_white_balance_and_bit_depth() {
    let dir = tempfile::tempdir().unwrap();
    let contract = contract();
    let base = SceneSpec {
        seed: 5,
        vehicles: 20,
        ..Default::default()
    };
    let reference = vehicle_chips(
        &Scene::generate(&base),
        &dir.path().join("ref.tif"),
        &contract,
    );
    let variants: [(&str, SceneSpec); 5] = [
        (
            "gamma 0.5",
            SceneSpec {
                gamma: 0.5,
                ..base.clone()
            },
        ),
        (
            "gamma 2",
            SceneSpec {
                gamma: 2.0,
                ..base.clone()
            },
        ),
        (
            "white balance",
            SceneSpec {
                white_balance: [1.25, 1.0, 0.75],
                ..base.clone()
            },
        ),
        (
            "u16",
            SceneSpec {
                sixteen_bit: true,
                ..base.clone()
            },
        ),
        (
            "u16 gamma 2 + wb",
            SceneSpec {
                sixteen_bit: true,
                gamma: 2.0,
                white_balance: [0.8, 1.0, 1.2],
                ..base.clone()
            },
        ),
    ];
    for (name, spec) in variants {
        let chips = vehicle_chips(
            &Scene::generate(&spec),
            &dir.path().join(format!("{name}.tif")),
            &contract,
        );
        let mad = mean_abs_difference(&chips, &reference);
        eprintln!("{name}: mean |difference| of normalized chips {mad:.4} (values in [0, 1])");
        assert!(mad < 0.03, "{name}: chips differ by {mad:.4}");
    }
}

#[test]
fn stretched_chips_are_alike_under_white_balance_and_bit_depth() {
    let dir = tempfile::tempdir().unwrap();
    let mut contract = contract();
    contract.colour = "stretch".parse().unwrap();
    let base = SceneSpec {
        seed: 5,
        vehicles: 20,
        ..Default::default()
    };
    let reference = vehicle_chips(
        &Scene::generate(&base),
        &dir.path().join("ref.tif"),
        &contract,
    );
    for (name, spec) in [
        (
            "white balance",
            SceneSpec {
                white_balance: [1.25, 1.0, 0.75],
                ..base.clone()
            },
        ),
        (
            "u16",
            SceneSpec {
                sixteen_bit: true,
                ..base.clone()
            },
        ),
    ] {
        let chips = vehicle_chips(
            &Scene::generate(&spec),
            &dir.path().join(format!("{name}.tif")),
            &contract,
        );
        let mad = mean_abs_difference(&chips, &reference);
        eprintln!("stretch, {name}: mean |difference| {mad:.4}");
        assert!(mad < 0.03, "{name}: {mad:.4}");
    }
}
