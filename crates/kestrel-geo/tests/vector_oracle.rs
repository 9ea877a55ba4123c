//! GeoJSON and GeoPackage written by Kestrel open in GDAL/OGR with the right CRS, feature
//! count, attributes and coordinates.

mod common;

use common::{gdal_available, run};
use kestrel_geo::vector::{
    describe_geojson, describe_geopackage, write_geojson, write_geopackage, Feature, GeoJsonOptions,
};
use kestrel_geo::Crs;
use std::process::Command;

fn boxes() -> Vec<Feature> {
    (0..3)
        .map(|i| {
            let (x, y) = (404_200.0 + 10.0 * i as f64, 3_285_100.0);
            let mut properties = serde_json::Map::new();
            properties.insert("class".into(), "car".into());
            properties.insert("score".into(), serde_json::json!(0.5 + 0.1 * i as f64));
            properties.insert("heading_deg".into(), serde_json::json!(30 * i));
            Feature {
                // Clockwise on purpose: writers must orient exterior rings counter-clockwise.
                ring: vec![(x, y), (x + 4.0, y), (x + 4.0, y - 2.0), (x, y - 2.0)],
                properties,
            }
        })
        .collect()
}

#[test]
fn geopackage_opens_in_gdal_with_crs_and_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("det.gpkg");
    let crs = Crs::from_epsg(32617).unwrap();
    write_geopackage(&path, "detections", &boxes(), Some(&crs)).unwrap();
    let info = describe_geopackage(&path).unwrap();
    assert_eq!(info.layers[0].features, 3);
    assert_eq!(info.layers[0].crs.as_deref(), Some("EPSG:32617"));
    if !gdal_available() {
        return;
    }
    let out = run(Command::new("ogrinfo").args(["-al", "-so"]).arg(&path));
    assert!(out.contains("Feature Count: 3"), "{out}");
    assert!(out.contains("Geometry: Polygon"), "{out}");
    assert!(out.contains("UTM zone 17N"), "{out}");
    assert!(
        out.contains("score: Real")
            && out.contains("heading_deg: Integer")
            && out.contains("class: String"),
        "{out}"
    );
    let validator = "/usr/share/doc/python3-gdal/examples/validate_gpkg.py";
    if std::path::Path::new(validator).exists() {
        run(Command::new("/usr/bin/python3").arg(validator).arg(&path));
    }
    let full = run(Command::new("ogrinfo").args(["-al", "-q"]).arg(&path));
    assert!(full.contains("POLYGON ((404200 3285100,404200 3285098,404204 3285098,404204 3285100,404200 3285100))"), "{full}");
}

#[test]
fn geojson_is_lonlat_by_default_and_can_keep_the_source_crs() {
    let dir = tempfile::tempdir().unwrap();
    let crs = Crs::from_epsg(32617).unwrap();
    let ll = dir.path().join("ll.geojson");
    write_geojson(&ll, &boxes(), Some(&crs), &GeoJsonOptions::default()).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ll).unwrap()).unwrap();
    let first = &v["features"][0]["geometry"]["coordinates"][0][0];
    let (lon, lat) = (first[0].as_f64().unwrap(), first[1].as_f64().unwrap());
    assert!(
        (lon + 81.99).abs() < 0.01 && (lat - 29.69).abs() < 0.01,
        "{lon} {lat}"
    );
    assert!(v.get("crs").is_none(), "RFC 7946 output has no crs member");

    let utm = dir.path().join("utm.geojson");
    write_geojson(
        &utm,
        &boxes(),
        Some(&crs),
        &GeoJsonOptions {
            keep_source_crs: true,
        },
    )
    .unwrap();
    assert_eq!(
        describe_geojson(&utm).unwrap().layers[0].crs.as_deref(),
        Some("EPSG:32617")
    );

    let px = dir.path().join("px.geojson");
    write_geojson(&px, &boxes(), None, &GeoJsonOptions::default()).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&px).unwrap()).unwrap();
    assert_eq!(v["coordinate_space"], "pixel (x right, y down)");

    if !gdal_available() {
        return;
    }
    let out = run(Command::new("ogrinfo").args(["-al", "-so"]).arg(&ll));
    assert!(
        out.contains("Feature Count: 3") && out.contains("WGS 84"),
        "{out}"
    );
    let out = run(Command::new("ogrinfo").args(["-al", "-so"]).arg(&utm));
    assert!(out.contains("UTM zone 17N"), "{out}");
}
