//! Fusion: imagery and a height layer on one grid (`kestrel stack`), a model trained on the
//! four channels with the height kept in metres, and detection on a fused scene it never saw,
//! whose detections report the objects' height.

use kestrel_geo::raster::{CogWriter, CogWriterOptions};
use kestrel_samples::store::NewSample;
use kestrel_samples::synthetic::{Scene, SceneSpec};
use kestrel_samples::{HeadingMode, Origin, Polarity, Project};
use std::path::Path;
use std::process::Command;

fn kestrel(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kestrel")).args(args).output().expect("kestrel runs");
    assert!(out.status.success(), "kestrel {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The scene's height above ground on its grid: vehicles 1.5 m, buildings 6 m.
fn write_heights(scene: &Scene, path: &Path) {
    let (w, h) = (scene.spec.width_px, scene.spec.height_px);
    let mut z = vec![0f32; (w * h) as usize];
    for t in &scene.truth {
        let height = if t.class == "vehicle" { 1.5 } else { 6.0 };
        let [x0, y0, x1, y1] = t.shape.bounds();
        for r in (y0.floor().max(0.0) as u32)..(y1.ceil().min(f64::from(h)) as u32) {
            for c in (x0.floor().max(0.0) as u32)..(x1.ceil().min(f64::from(w)) as u32) {
                if t.shape.contains(f64::from(c) + 0.5, f64::from(r) + 0.5) {
                    z[(r * w + c) as usize] = height;
                }
            }
        }
    }
    let mut writer = CogWriter::<f32>::create(path, w, h, 1, Some(&scene.georef), &CogWriterOptions { tile_size: 256, nodata: None, overview_levels: vec![] }).expect("writer");
    for row in (0..h).step_by(256) {
        for col in (0..w).step_by(256) {
            let (cols, rows) = ((w - col).min(256) as usize, (h - row).min(256) as usize);
            let tile: Vec<f32> = (0..rows).flat_map(|r| z[(row as usize + r) * w as usize + col as usize..][..cols].to_vec()).collect();
            writer.write_tile(col, row, cols, rows, &tile).expect("tile");
        }
    }
    writer.finish().expect("finish");
}

#[test]
fn rgb_and_height_fused_train_and_detect() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = |name: &str| dir.path().join(name).to_str().expect("UTF-8").to_string();
    let mut project = Project::create(p("project")).expect("project");
    let class = project.add_class("vehicle", HeadingMode::Directed).expect("class");
    let mut test_scene = None;
    for (i, seed) in [21u64, 22, 24, 23].into_iter().enumerate() {
        let scene = Scene::generate(&SceneSpec { seed, vehicles: 40, buildings: 4, width_px: 600, height_px: 600, ..Default::default() });
        scene.write_geotiff(p(&format!("rgb{i}.tif"))).expect("rgb");
        write_heights(&scene, Path::new(&p(&format!("z{i}.tif"))));
        let out = kestrel(&["stack", &p(&format!("rgb{i}.tif")), &p(&format!("z{i}.tif")), "-o", &p(&format!("fused{i}.tif"))]);
        assert!(out.contains("4 bands"), "{out}");
        if i == 3 {
            test_scene = Some(scene);
            break;
        }
        let info = kestrel_geo::open_raster(p(&format!("fused{i}.tif"))).expect("fused").info().clone();
        let image = project.add_image(&p(&format!("fused{i}.tif")), &info, None).expect("image");
        let samples: Vec<NewSample> = scene.truth.iter().filter(|t| t.class == "vehicle").map(|t| NewSample { image_id: image.id, class_id: class.id, polarity: Polarity::Positive, shape: t.shape, heading_mode: None, origin: Origin::Imported }).collect();
        project.add_samples(&samples).expect("samples");
    }
    drop(project);
    let model = p("fused.kestrel");
    kestrel(&["train", "--project", &p("project"), "--class", "vehicle", "-o", &model, "--validate-on", "fused2", "--bands", "1,2,3,4", "--height-bands", "4", "--epochs", "10", "--batch", "32"]);
    let detections = p("found.geojson");
    kestrel(&["detect", "--model", &model, &p("fused3.tif"), "-o", &detections]);
    let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&detections).expect("read")).expect("GeoJSON");
    let found: Vec<[f64; 2]> = d["features"].as_array().expect("features").iter().map(|f| {
        let ring = f["properties"]["pixel_polygon"].as_array().expect("pixel polygon");
        let c = |k: usize| ring.iter().map(|p| p[k].as_f64().unwrap_or(0.0)).sum::<f64>() / ring.len() as f64;
        [c(0), c(1)]
    }).collect();
    let truth: Vec<(f64, f64)> = test_scene.expect("scene").truth.iter().filter(|t| t.class == "vehicle").map(|t| t.shape.centre()).collect();
    let near = |f: &[f64; 2]| truth.iter().any(|&(x, y)| (f[0] - x).hypot(f[1] - y) < 10.0);
    let hit = truth.iter().filter(|&&(x, y)| found.iter().any(|f| (f[0] - x).hypot(f[1] - y) < 10.0)).count();
    let recall = hit as f64 / truth.len() as f64;
    let precision = found.iter().filter(|f| near(f)).count() as f64 / found.len().max(1) as f64;
    // Measured: recall 0.68, precision 0.60 at the model's default threshold (the RGB bands
    // alone, same scenes and settings: recall 0.20, precision 0.80). Whole-image detection on
    // these scenes is the detector's known weakness; what this test holds is that four
    // channels train and detect, and that the height channel carries the objects.
    assert!(recall > 0.5 && precision > 0.5, "recall {recall:.2}, precision {precision:.2} on the unseen fused scene");
    let heights: Vec<f64> = d["features"]
        .as_array()
        .expect("features")
        .iter()
        .zip(&found)
        .filter(|(_, f)| near(f))
        .filter_map(|(f, _)| f["properties"]["height_max_m"].as_f64())
        .collect();
    let vehicle_high = heights.iter().filter(|&&h| (h - 1.5).abs() < 0.01).count();
    assert!(vehicle_high as f64 > 0.8 * heights.len() as f64 && !heights.is_empty(), "heights of the detected vehicles {heights:?}");
}
