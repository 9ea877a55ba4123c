//! Trees from LiDAR height alone, end to end through the CLI on the real MixedConifer plot:
//! truth derived from the cloud's `treeID` segmentation, nDSM rasters of three parts of the
//! plot, train on the west half (north trains, south validates), detect on the east half,
//! score tree positions within 2 m, and read each detection's height range.

mod common;

use std::process::Command;

fn kestrel(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kestrel")).args(args).output().expect("kestrel runs");
    assert!(out.status.success(), "kestrel {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn trees_from_ndsm_trained_on_one_half_found_on_the_other() {
    let Some(shared) = common::shared() else { return };
    let cloud = shared.join("lidar/MixedConifer.laz");
    let cloud = cloud.to_str().expect("UTF-8 path");
    let dir = tempfile::tempdir().expect("temp dir");
    let p = |name: &str| dir.path().join(name).to_str().expect("UTF-8").to_string();
    let parts = [("nw", "481260,3812966,481305,3813011"), ("sw", "481260,3812921,481305,3812966"), ("east", "481305,3812921,481350,3813011")];
    for (name, bbox) in parts {
        kestrel(&["dsm", cloud, "--kind", "ndsm", "--cell", "0.25", "--bbox", bbox, "-o", &p(&format!("{name}.tif"))]);
        let out = kestrel(&["objects", cloud, "--dimension", "treeID", "--bbox", bbox, "-o", &p(&format!("{name}.geojson"))]);
        assert!(out.contains("objects of 'treeID'"), "{out}");
    }
    let project = p("project");
    for name in ["nw", "sw"] {
        kestrel(&["import", "--project", &project, "--image", &p(&format!("{name}.tif")), &p(&format!("{name}.geojson")), "--class", "tree", "--skip-invalid"]);
    }
    let model = p("tree.kestrel");
    kestrel(&["train", "--project", &project, "--class", "tree", "-o", &model, "--validate-on", "sw", "--height-bands", "1", "--epochs", "8", "--patience", "8"]);
    let info = kestrel(&["info", &model]);
    assert!(info.contains("with_heights") && info.contains("height_bands"), "the package records its height band: {info}");
    let detections = p("east-detections.geojson");
    kestrel(&["detect", "--model", &model, &p("east.tif"), "--threshold", "0.05", "-o", &detections]);
    let report: serde_json::Value = serde_json::from_str(&kestrel(&["eval", "--truth", &p("east.geojson"), "--pred", &detections, "--model", &model, "--radius", "2", "--json"])).expect("JSON report");
    let f1 = report["at_best"]["f1"].as_f64().expect("F1");
    // Measured 0.57–0.59 (precision 0.8, recall 0.45); a network that learned nothing
    // scores near 0.
    assert!(f1 > 0.35, "F1 {f1} of tree positions within 2 m");
    // Each detection carries the height range of the nDSM inside its box.
    let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&detections).expect("detections")).expect("GeoJSON");
    let top = d["features"].as_array().expect("features").iter().filter(|f| f["properties"]["score"].as_f64() > Some(0.9)).filter_map(|f| f["properties"]["height_max_m"].as_f64()).collect::<Vec<_>>();
    assert!(!top.is_empty(), "confident detections report their height");
    assert!(top.iter().all(|&h| (2.0..=40.0).contains(&h)), "tree heights {top:?}");
}
