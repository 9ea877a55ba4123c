//! `kestrel info --json` on the shared real data reports what the acceptance names.

mod common;
use common::shared;

use std::path::Path;
use std::process::Command;

fn info(path: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(["info", "--json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn geotiff_info() {
    let Some(d) = shared() else { return };
    let v = info(&d.join("trees/OSBS_029.tif"));
    assert_eq!(
        (
            v["width"].as_u64(),
            v["height"].as_u64(),
            v["bands"].as_u64()
        ),
        (Some(400), Some(400), Some(3))
    );
    assert_eq!(v["data_type"], "u8");
    assert_eq!(v["epsg"], 32617);
    assert!((v["gsd_m"].as_f64().unwrap() - 0.1).abs() < 1e-9);
    let ext = v["extent_lonlat"].as_array().unwrap();
    assert!(
        (ext[0].as_f64().unwrap() + 81.99).abs() < 0.01
            && (ext[1].as_f64().unwrap() - 29.69).abs() < 0.01
    );
}

#[test]
fn laz_info() {
    let Some(d) = shared() else { return };
    let v = info(&d.join("lidar/ign_lidarhd_tile.laz"));
    assert_eq!(v["points"], 697_721);
    assert_eq!(v["epsg"], 2154);
    let classes = v["class_counts"].as_object().unwrap();
    assert_eq!(
        classes.values().map(|n| n.as_u64().unwrap()).sum::<u64>(),
        697_721
    );
    for c in ["2", "6"] {
        assert!(classes.contains_key(c), "class {c} missing: {classes:?}");
    }
}

#[test]
fn world_file_and_unreferenced_images() {
    let Some(d) = shared() else { return };
    let v = info(&d.join("lidar/autzen.jpg"));
    assert_eq!(v["georeferenced"], true);
    assert_eq!(v["geotransform"][1], 1.0);
    let out = Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(["info", "--json", "--gsd", "0.13"])
        .arg(d.join("cars/MOS155.png"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["georeferenced"], false);
    assert_eq!(v["gsd_m"], 0.13);
    assert_eq!(v["gsd_source"], "--gsd");
}

#[test]
fn vector_info() {
    let Some(d) = shared() else { return };
    let v = info(&d.join("buildings/geotiff_labels.geojson"));
    assert_eq!(v["layers"][0]["features"], 43);
}
