//! Fusion: imagery and a height layer on one grid (`kestrel stack`), a model trained on the
//! four channels with the height kept in metres, and detection on a fused scene it never saw,
//! whose detections report the objects' height. Then the same on real data: the Autzen
//! orthophoto and its LiDAR.

mod common;

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

/// Autzen (Oregon, 1 ft pixels, a CRS in feet without EPSG code): the photo and the nDSM of its
/// point cloud on the photo's grid, stacked over three areas of the riverbank beside the
/// bridge (whose deck the nDSM shows as a tall object); trees are the tops of the canopy
/// height (`kestrel objects --tree-tops`); train on the west, validate on the middle, detect on
/// the east and score tree positions within 3 m (about a crown's radius here).
#[test]
fn autzen_photo_and_lidar_fused_find_trees() {
    let Some(shared) = common::shared() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let p = |name: &str| dir.path().join(name).to_str().expect("UTF-8").to_string();
    // The photo's CRS comes as a loose WKT file: give it the `.prj` name readers look for.
    let lidar = shared.join("lidar");
    for (from, to) in [("autzen.jpg", "autzen.jpg"), ("autzen.wld", "autzen.wld"), ("autzen-srs.wkt", "autzen.prj")] {
        std::fs::copy(lidar.join(from), dir.path().join(to)).expect("copy the photo");
    }
    let cloud = lidar.join("autzen_trim.laz");
    let cloud = cloud.to_str().expect("UTF-8");
    kestrel(&["dsm", cloud, "--like", &p("autzen.jpg"), "--kind", "ndsm", "--fill", "-o", &p("ndsm.tif")]);
    let parts = [("west", "636002,848978,636431,849497"), ("mid", "636561,848978,636851,849497"), ("east", "636851,848978,637179,849497")];
    for (name, bbox) in parts {
        let out = kestrel(&["stack", &p("autzen.jpg"), &p("ndsm.tif"), "--bbox", bbox, "-o", &p(&format!("{name}.tif"))]);
        assert!(out.contains("4 bands"), "{out}");
        kestrel(&["objects", cloud, "--tree-tops", "--radius", "3", "--min-height", "4", "--cell", "1", "--bbox", bbox, "-o", &p(&format!("{name}.geojson"))]);
    }
    // The stacked area keeps the photo's grid (origin snapped to whole pixels) and its CRS.
    let west = kestrel_geo::open_raster(p("west.tif")).expect("west").info().clone();
    let g = west.georef.expect("georeferenced");
    assert_eq!((west.width, west.height, west.bands), (430, 520, 4));
    assert!((g.transform.0[0] - 636_001.427_865_912_2).abs() < 1e-6 && (g.transform.0[3] - 849_497.643_085_152_1).abs() < 1e-6, "{:?}", g.transform);
    assert!(g.crs.is_some_and(|c| (c.linear_unit_m().unwrap_or(0.0) - 0.3048).abs() < 1e-9), "the CRS in feet survives stacking");
    let project = p("project");
    for name in ["west", "mid"] {
        kestrel(&["import", "--project", &project, "--image", &p(&format!("{name}.tif")), &p(&format!("{name}.geojson")), "--class", "tree", "--skip-invalid"]);
    }
    let model = p("tree.kestrel");
    kestrel(&["train", "--project", &project, "--class", "tree", "-o", &model, "--validate-on", "mid", "--bands", "1,2,3,4", "--height-bands", "4", "--epochs", "10", "--patience", "10"]);
    let detections = p("east-found.geojson");
    kestrel(&["detect", "--model", &model, &p("east.tif"), "--threshold", "0.05", "-o", &detections]);
    let report: serde_json::Value = serde_json::from_str(&kestrel(&["eval", "--truth", &p("east.geojson"), "--pred", &detections, "--model", &model, "--radius", "3", "--json"])).expect("JSON report");
    let f1 = report["at_best"]["f1"].as_f64().expect("F1");
    // Measured: F1 0.67 (precision 0.86, recall 0.55), AP 0.51; the photo's bands alone with
    // the same samples and settings: F1 0.50, AP 0.31. A network that learned nothing scores
    // near 0.
    assert!(f1 > 0.35, "F1 {f1} of tree positions within 3 m on the fused east area");
    assert!(report["heading_error_median_deg"].is_null(), "tree tops have no heading to score: {report}");
}
