//! Label import and export: the real label files in `../shared/data` (YOLO cars, VOC and CSV
//! tree crowns, GeoJSON building footprints in UTM), small fixtures for DOTA, COCO and the
//! error paths, and the lossless round trip through Kestrel's own GeoJSON.
//!
//! Tests on real data skip with "SKIPPED:" when the data is absent, and fail instead when
//! `KESTREL_REQUIRE_ORACLES` is set.

use kestrel_samples::labels::{
    detect_format, read_labels, write_geojson_labels, ImageFrame, LabelFormat, LabelRecord,
    LabelSet,
};
use kestrel_samples::{HeadingMode, Polarity, Shape};
use std::path::{Path, PathBuf};

fn data_dir(test: &str) -> Option<PathBuf> {
    let dir = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string())).join("../../../shared/data");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var_os("KESTREL_REQUIRE_ORACLES").is_some() {
        panic!(
            "{test}: {} is absent and KESTREL_REQUIRE_ORACLES is set",
            dir.display()
        );
    }
    eprintln!("SKIPPED: {test}: real data not found at {}", dir.display());
    None
}

fn fixture(name: &str) -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string()))
        .join("tests/fixtures/labels")
        .join(name)
}

fn frame(width: u32, height: u32, file_name: Option<&str>) -> ImageFrame<'_> {
    ImageFrame {
        width,
        height,
        georef: None,
        file_name,
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn issue_lines(set: &LabelSet) -> Vec<usize> {
    set.issues.iter().map(|i| i.line).collect()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// Same variant and every field within `tol`.
fn shapes_equal(a: &Shape, b: &Shape, tol: f64) -> bool {
    match (*a, *b) {
        (
            Shape::AxisBox { cx, cy, w, h },
            Shape::AxisBox {
                cx: cx2,
                cy: cy2,
                w: w2,
                h: h2,
            },
        ) => close(cx, cx2, tol) && close(cy, cy2, tol) && close(w, w2, tol) && close(h, h2, tol),
        (
            Shape::OrientedBox {
                cx,
                cy,
                length,
                width,
                heading_deg,
            },
            Shape::OrientedBox {
                cx: cx2,
                cy: cy2,
                length: l2,
                width: w2,
                heading_deg: h2,
            },
        ) => {
            close(cx, cx2, tol)
                && close(cy, cy2, tol)
                && close(length, l2, tol)
                && close(width, w2, tol)
                && close(heading_deg, h2, tol)
        }
        (
            Shape::Point { x, y, heading_deg },
            Shape::Point {
                x: x2,
                y: y2,
                heading_deg: h2,
            },
        ) => {
            close(x, x2, tol)
                && close(y, y2, tol)
                && match (heading_deg, h2) {
                    (Some(p), Some(q)) => close(p, q, tol),
                    (None, None) => true,
                    _ => false,
                }
        }
        _ => false,
    }
}

/// Writes `records` with `write_geojson_labels`, reads them back, and checks that nothing
/// changed but the line numbers.
fn assert_round_trip(what: &str, records: &[LabelRecord], frame: &ImageFrame) {
    assert!(!records.is_empty(), "{what}: nothing to round-trip");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.geojson");
    write_geojson_labels(&path, records, frame).unwrap();
    assert_eq!(detect_format(&path), Some(LabelFormat::GeoJson));
    let back = read_labels(&path, LabelFormat::GeoJson, frame, &[]).unwrap();
    assert!(back.issues.is_empty(), "{what}: {:?}", back.issues);
    assert_eq!(back.records.len(), records.len(), "{what}");
    for (a, b) in records.iter().zip(&back.records) {
        assert_eq!(a.class_name, b.class_name, "{what}");
        assert_eq!(a.polarity, b.polarity, "{what}");
        assert_eq!(a.heading_mode, b.heading_mode, "{what}");
        assert!(
            shapes_equal(&a.shape, &b.shape, 1e-9),
            "{what}: {:?} came back as {:?}",
            a.shape,
            b.shape
        );
    }
}

const CAR_CLASSES: [&str; 5] = ["car", "truck", "bus", "minibus", "cyclist"];

#[test]
fn yolo_cars_read_every_line() {
    let Some(data) = data_dir("yolo_cars_read_every_line") else {
        return;
    };
    let path = data.join("cars/MOS155.txt");
    assert_eq!(detect_format(&path), Some(LabelFormat::Yolo));
    let lines = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    let frame = frame(1764, 430, Some("MOS155.png"));
    let set = read_labels(&path, LabelFormat::Yolo, &frame, &names(&CAR_CLASSES)).unwrap();
    assert!(set.issues.is_empty(), "{:?}", set.issues);
    assert_eq!(set.records.len(), lines);
    // The first line, `0 0.0208… 0.637… 0.0193… 0.0449…`, in pixels.
    let first = &set.records[0];
    assert_eq!(first.class_name, "car");
    assert_eq!(first.line, 1);
    assert_eq!(first.heading_mode, None);
    let Shape::AxisBox { cx, cy, w, h } = first.shape else {
        panic!("{:?}", first.shape)
    };
    assert!(
        close(cx, 0.020833333333333332 * 1764.0, 1e-9)
            && close(cy, 0.6370441860465116 * 430.0, 1e-9)
    );
    assert!(
        close(w, 0.019259523809523806 * 1764.0, 1e-9)
            && close(h, 0.04493581395348837 * 430.0, 1e-9)
    );
    assert!(set
        .records
        .iter()
        .all(|r| CAR_CLASSES.contains(&r.class_name.as_str())));
    // Without names, ids are the classes.
    let by_id = read_labels(&path, LabelFormat::Yolo, &frame, &[]).unwrap();
    assert_eq!(by_id.records[0].class_name, "0");
    assert_round_trip("YOLO", &set.records, &frame);
}

#[test]
fn yolo_bad_lines_are_reported_and_skipped() {
    let path = fixture("yolo_bad.txt");
    let set = read_labels(
        &path,
        LabelFormat::Yolo,
        &frame(100, 100, None),
        &names(&CAR_CLASSES),
    )
    .unwrap();
    assert_eq!(set.records.len(), 2);
    assert_eq!(
        set.records.iter().map(|r| r.line).collect::<Vec<_>>(),
        vec![1, 7]
    );
    // Unknown class id 7, a word for a number, four fields, a box past the right edge.
    assert_eq!(issue_lines(&set), vec![2, 3, 5, 6], "{:?}", set.issues);
    let text = set.issues[0].to_string();
    assert!(
        text.starts_with(&format!("{}:2: ", path.display())) && text.contains("class id 7"),
        "{text}"
    );
    // YOLO needs the image size.
    assert!(read_labels(&path, LabelFormat::Yolo, &frame(0, 0, None), &[]).is_err());
}

#[test]
fn voc_tree_crowns() {
    let Some(data) = data_dir("voc_tree_crowns") else {
        return;
    };
    let cases = [
        ("trees/OSBS_029.xml", "OSBS_029.tif", 400, 400, 61),
        ("trees/SOAP_061.xml", "SOAP_061.png", 400, 400, 37),
        (
            "trees/2019_YELL_2_541000_4977000_image_crop.xml",
            "2019_YELL_2_541000_4977000_image_crop.png",
            1249,
            1035,
            279,
        ),
    ];
    for (file, image, w, h, count) in cases {
        let path = data.join(file);
        assert_eq!(detect_format(&path), Some(LabelFormat::Voc));
        let frame = frame(w, h, Some(image));
        let set = read_labels(&path, LabelFormat::Voc, &frame, &[]).unwrap();
        assert!(set.issues.is_empty(), "{file}: {:?}", set.issues);
        assert_eq!(set.records.len(), count, "{file}");
        assert!(set
            .records
            .iter()
            .all(|r| matches!(r.shape, Shape::AxisBox { .. }) && r.heading_mode.is_none()));
        // The size may come from the file itself.
        let no_size = read_labels(&path, LabelFormat::Voc, &ImageFrame::default(), &[]).unwrap();
        assert_eq!(no_size.records, set.records, "{file}");
        assert_round_trip(file, &set.records, &frame);
    }
    // The first OSBS crown: xmin 203, ymin 67, xmax 227, ymax 90, at line 10.
    let set = read_labels(
        &data.join(cases[0].0),
        LabelFormat::Voc,
        &frame(400, 400, None),
        &[],
    )
    .unwrap();
    assert_eq!(set.records[0].line, 10);
    assert_eq!(
        set.records[0].shape,
        Shape::AxisBox {
            cx: 215.0,
            cy: 78.5,
            w: 24.0,
            h: 23.0
        }
    );
    assert!(set.records.iter().all(|r| r.class_name == "Tree"));
    // SOAP: 28 dead, 9 alive.
    let soap = read_labels(
        &data.join(cases[1].0),
        LabelFormat::Voc,
        &frame(400, 400, None),
        &[],
    )
    .unwrap();
    assert_eq!(
        soap.records
            .iter()
            .filter(|r| r.class_name == "Dead")
            .count(),
        28
    );
    assert_eq!(
        soap.records
            .iter()
            .filter(|r| r.class_name == "Alive")
            .count(),
        9
    );
    // Labels of another image, or of another size, are refused.
    let other = read_labels(
        &data.join(cases[0].0),
        LabelFormat::Voc,
        &frame(400, 400, Some("SOAP_061.png")),
        &[],
    )
    .unwrap_err();
    assert!(other.to_string().contains("OSBS_029.tif"), "{other}");
    assert!(read_labels(
        &data.join(cases[0].0),
        LabelFormat::Voc,
        &frame(800, 800, None),
        &[]
    )
    .is_err());
}

#[test]
fn voc_georeferenced_round_trip() {
    let Some(data) = data_dir("voc_georeferenced_round_trip") else {
        return;
    };
    let raster = kestrel_geo::open_raster(data.join("trees/OSBS_029.tif")).unwrap();
    let georef = raster
        .info()
        .georef
        .clone()
        .expect("OSBS_029.tif is georeferenced");
    assert_eq!(georef.crs.as_ref().and_then(|c| c.epsg), Some(32617));
    let frame = ImageFrame {
        width: 400,
        height: 400,
        georef: Some(&georef),
        file_name: Some("OSBS_029.tif"),
    };
    let set = read_labels(
        &data.join("trees/OSBS_029.xml"),
        LabelFormat::Voc,
        &frame,
        &[],
    )
    .unwrap();
    assert_round_trip("VOC in EPSG:32617", &set.records, &frame);
    // The written polygons are in UTM metres, on the image.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("crowns.geojson");
    write_geojson_labels(&out, &set.records, &frame).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(
        json.pointer("/crs/properties/name")
            .and_then(|v| v.as_str()),
        Some("urn:ogc:def:crs:EPSG::32617")
    );
    let ring = json
        .pointer("/features/0/geometry/coordinates/0")
        .unwrap()
        .as_array()
        .unwrap();
    let (x, y) = (ring[0][0].as_f64().unwrap(), ring[0][1].as_f64().unwrap());
    let (col, row) = georef.transform.map_to_pixel(x, y).unwrap();
    assert!(
        (-1.0..=401.0).contains(&col) && (-1.0..=401.0).contains(&row),
        "{x} {y} -> {col} {row}"
    );
    assert_eq!(
        json.pointer("/features/0/properties/class")
            .and_then(|v| v.as_str()),
        Some("Tree")
    );
}

#[test]
fn voc_rotated_boxes_and_bad_objects() {
    let path = fixture("rotated_voc.xml");
    let set = read_labels(
        &path,
        LabelFormat::Voc,
        &frame(500, 400, Some("harbour.png")),
        &[],
    )
    .unwrap();
    assert_eq!(set.records.len(), 2, "{:?}", set.issues);
    // A crane without <xmax> and a pier past the right edge, at their <object> lines.
    assert_eq!(issue_lines(&set), vec![33, 41], "{:?}", set.issues);
    assert!(set.issues[0].problem.contains("xmax"), "{}", set.issues[0]);
    let ship = &set.records[0];
    assert_eq!(
        (ship.class_name.as_str(), ship.line, ship.heading_mode),
        ("ship", 11, Some(HeadingMode::Axis))
    );
    // 80 x 20 box turned 30° clockwise: its long side points to heading 120°.
    let Shape::OrientedBox {
        cx,
        cy,
        length,
        width,
        heading_deg,
    } = ship.shape
    else {
        panic!("{:?}", ship.shape)
    };
    assert!(close(cx, 200.5, 1e-12) && close(cy, 150.25, 1e-12) && length == 80.0 && width == 20.0);
    assert!(close(heading_deg, 120.0, 1e-9), "{heading_deg}");
    assert_eq!(set.records[1].class_name, "buoy & chain");
    assert_eq!(
        set.records[1].shape,
        Shape::AxisBox {
            cx: 20.0,
            cy: 32.0,
            w: 20.0,
            h: 24.0
        }
    );
    assert_round_trip("VOC robndbox", &set.records, &frame(500, 400, None));
}

#[test]
fn deepforest_csv_matches_the_voc_boxes() {
    let Some(data) = data_dir("deepforest_csv_matches_the_voc_boxes") else {
        return;
    };
    let path = data.join("trees/OSBS_029.csv");
    assert_eq!(detect_format(&path), Some(LabelFormat::Csv));
    let frame = frame(400, 400, Some("OSBS_029.tif"));
    let csv = read_labels(&path, LabelFormat::Csv, &frame, &[]).unwrap();
    assert!(csv.issues.is_empty(), "{:?}", csv.issues);
    assert_eq!(csv.records.len(), 61);
    assert_eq!(csv.records[0].line, 2);
    let voc = read_labels(
        &data.join("trees/OSBS_029.xml"),
        LabelFormat::Voc,
        &frame,
        &[],
    )
    .unwrap();
    assert_eq!(voc.records.len(), 61);
    for (c, v) in csv.records.iter().zip(&voc.records) {
        assert_eq!(c.class_name, v.class_name);
        assert!(
            shapes_equal(&c.shape, &v.shape, 1.0),
            "line {}: {:?} vs {:?}",
            c.line,
            c.shape,
            v.shape
        );
    }
    // Another image's rows are not this image's.
    let none = read_labels(
        &path,
        LabelFormat::Csv,
        &self::frame(400, 400, Some("SOAP_061.png")),
        &[],
    )
    .unwrap();
    assert!(none.records.is_empty() && none.issues.is_empty());
    assert_round_trip("CSV", &csv.records, &frame);
}

#[test]
fn csv_rows_of_other_images_and_bad_rows() {
    let path = fixture("deepforest_multi.csv");
    let set = read_labels(
        &path,
        LabelFormat::Csv,
        &frame(100, 100, Some("a.tif")),
        &[],
    )
    .unwrap();
    // An inverted box and a row with five fields.
    assert_eq!(issue_lines(&set), vec![4, 5], "{:?}", set.issues);
    assert_eq!(set.records.len(), 2);
    assert_eq!(set.records[1].class_name, "Dead, standing");
    assert_eq!(
        set.records[1].shape,
        Shape::AxisBox {
            cx: 60.0,
            cy: 70.0,
            w: 20.0,
            h: 20.0
        }
    );
    let b = read_labels(
        &path,
        LabelFormat::Csv,
        &frame(100, 100, Some("b.tif")),
        &[],
    )
    .unwrap();
    assert_eq!(b.records.len(), 1);
}

#[test]
fn geojson_buildings_in_utm() {
    let Some(data) = data_dir("geojson_buildings_in_utm") else {
        return;
    };
    let raster = kestrel_geo::open_raster(data.join("buildings/sample_geotiff.tif")).unwrap();
    let info = raster.info();
    assert_eq!((info.width, info.height), (900, 900));
    let georef = info
        .georef
        .clone()
        .expect("sample_geotiff.tif is georeferenced");
    let frame = ImageFrame {
        width: 900,
        height: 900,
        georef: Some(&georef),
        file_name: Some("sample_geotiff.tif"),
    };
    let path = data.join("buildings/geotiff_labels.geojson");
    assert_eq!(detect_format(&path), Some(LabelFormat::GeoJson));
    let set = read_labels(&path, LabelFormat::GeoJson, &frame, &[]).unwrap();
    assert!(set.issues.is_empty(), "{:?}", set.issues);
    assert_eq!(set.records.len(), 43);

    // Each rectangle holds its footprint and lies on the image; it is no larger than the
    // footprint's axis-aligned box (it is the minimum-area one).
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let features = json["features"].as_array().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    for (r, f) in set.records.iter().zip(features) {
        assert_eq!(r.heading_mode, Some(HeadingMode::Axis));
        assert_eq!(r.polarity, Polarity::Positive);
        assert!(
            text.lines()
                .nth(r.line - 1)
                .unwrap()
                .contains("\"Feature\""),
            "line {}",
            r.line
        );
        let Shape::OrientedBox {
            cx,
            cy,
            length,
            width,
            heading_deg,
        } = r.shape
        else {
            panic!("{:?}", r.shape)
        };
        assert!(
            (0.0..900.0).contains(&cx) && (0.0..900.0).contains(&cy),
            "{:?}",
            r.shape
        );
        assert!(length >= width && width > 0.0 && (0.0..180.0).contains(&heading_deg));
        let t = heading_deg.to_radians();
        let (ax, ay) = (t.sin(), -t.cos());
        let mut bb = [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ];
        for p in f["geometry"]["coordinates"][0].as_array().unwrap() {
            let (col, row) = georef
                .transform
                .map_to_pixel(p[0].as_f64().unwrap(), p[1].as_f64().unwrap())
                .unwrap();
            assert!(
                (-1.0..=901.0).contains(&col) && (-1.0..=901.0).contains(&row),
                "vertex {col} {row} off the image"
            );
            let (dx, dy) = (col - cx, row - cy);
            let along = dx * ax + dy * ay;
            let across = dx * -ay + dy * ax;
            assert!(
                along.abs() <= length / 2.0 + 1e-6 && across.abs() <= width / 2.0 + 1e-6,
                "vertex outside its rectangle"
            );
            bb = [
                bb[0].min(col),
                bb[1].min(row),
                bb[2].max(col),
                bb[3].max(row),
            ];
        }
        assert!(length * width <= (bb[2] - bb[0]) * (bb[3] - bb[1]) + 1e-6);
    }
    assert_round_trip("GeoJSON in EPSG:32616", &set.records, &frame);

    // The same rectangles as RFC 7946 longitude/latitude (no `crs` member, no `shape`
    // property): transformed back to UTM and pixels, they fit the same boxes.
    let dir = tempfile::tempdir().unwrap();
    let lonlat = dir.path().join("lonlat.geojson");
    let features: Vec<kestrel_geo::vector::Feature> = set
        .records
        .iter()
        .map(|r| kestrel_geo::vector::Feature {
            ring: r
                .shape
                .polygon()
                .iter()
                .map(|&(c, r)| georef.transform.pixel_to_map(c, r))
                .collect(),
            properties: serde_json::Map::new(),
        })
        .collect();
    kestrel_geo::vector::write_geojson(
        &lonlat,
        &features,
        georef.crs.as_ref(),
        &Default::default(),
    )
    .unwrap();
    assert!(!std::fs::read_to_string(&lonlat)
        .unwrap()
        .contains("\"crs\""));
    let back = read_labels(&lonlat, LabelFormat::GeoJson, &frame, &[]).unwrap();
    // Rectangles fitted to buildings cut by the image edge reach past it; as polygons of
    // their own they are off the image.
    let on_image: Vec<&LabelRecord> = set
        .records
        .iter()
        .filter(|r| {
            let b = r.shape.bounds();
            b[0] >= -1.0 && b[1] >= -1.0 && b[2] <= 901.0 && b[3] <= 901.0
        })
        .collect();
    assert!(on_image.len() >= 39, "{}", on_image.len());
    assert_eq!(back.records.len(), on_image.len(), "{:?}", back.issues);
    assert_eq!(back.issues.len(), 43 - on_image.len());
    for (a, b) in on_image.into_iter().zip(&back.records) {
        let (
            Shape::OrientedBox {
                cx,
                cy,
                length,
                width,
                heading_deg,
            },
            Shape::OrientedBox {
                cx: cx2,
                cy: cy2,
                length: l2,
                width: w2,
                heading_deg: h2,
            },
        ) = (a.shape, b.shape)
        else {
            panic!("{:?} {:?}", a.shape, b.shape)
        };
        assert!(
            close(cx, cx2, 1e-4)
                && close(cy, cy2, 1e-4)
                && close(length, l2, 1e-4)
                && close(width, w2, 1e-4),
            "{:?} {:?}",
            a.shape,
            b.shape
        );
        // Square footprints have no long side: their heading may turn by 90°.
        assert!(
            HeadingMode::Axis.difference_deg(heading_deg, h2) < 1e-3
                || (length - width).abs() < 1e-3,
            "{:?} {:?}",
            a.shape,
            b.shape
        );
        assert_eq!(b.class_name, "object");
    }
    // Without georeferencing, map coordinates cannot be placed.
    let err = read_labels(
        &path,
        LabelFormat::GeoJson,
        &self::frame(900, 900, None),
        &[],
    )
    .unwrap_err();
    assert!(err.to_string().contains("geotiff_labels.geojson"), "{err}");
}

#[test]
fn geojson_in_pixels_points_and_bad_features() {
    let path = fixture("pixel_features.geojson");
    let frame = frame(100, 100, None);
    let set = read_labels(&path, LabelFormat::GeoJson, &frame, &[]).unwrap();
    // A LineString and an unknown polarity.
    assert_eq!(issue_lines(&set), vec![9, 11], "{:?}", set.issues);
    assert_eq!(set.records.len(), 3);
    let p = &set.records[0];
    assert_eq!(
        (p.class_name.as_str(), p.polarity, p.heading_mode, p.line),
        (
            "vehicle",
            Polarity::Negative,
            Some(HeadingMode::Directed),
            5
        )
    );
    assert_eq!(
        p.shape,
        Shape::Point {
            x: 40.0,
            y: 30.0,
            heading_deg: Some(45.0)
        }
    );
    let roof = &set.records[1];
    assert_eq!(
        (roof.class_name.as_str(), roof.heading_mode),
        ("roof", Some(HeadingMode::Axis))
    );
    assert!(
        shapes_equal(
            &roof.shape,
            &Shape::OrientedBox {
                cx: 20.0,
                cy: 15.0,
                length: 20.0,
                width: 10.0,
                heading_deg: 90.0
            },
            1e-9
        ),
        "{:?}",
        roof.shape
    );
    // A MultiPolygon is one object: the rectangle around both parts.
    let pond = &set.records[2];
    assert!(
        shapes_equal(
            &pond.shape,
            &Shape::OrientedBox {
                cx: 75.0,
                cy: 65.0,
                length: 30.0,
                width: 10.0,
                heading_deg: 90.0
            },
            1e-9
        ),
        "{:?}",
        pond.shape
    );
    assert_round_trip("GeoJSON in pixels", &set.records, &frame);
}

#[test]
fn edited_geometry_wins_over_a_stale_shape_property() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edited.geojson");
    let frame = frame(100, 100, None);
    let record = LabelRecord {
        class_name: "car".into(),
        shape: Shape::OrientedBox {
            cx: 20.0,
            cy: 20.0,
            length: 10.0,
            width: 4.0,
            heading_deg: 30.0,
        },
        polarity: Polarity::Positive,
        heading_mode: Some(HeadingMode::Directed),
        line: 1,
    };
    write_geojson_labels(&path, &[record], &frame).unwrap();
    // Someone moves the polygon 10 pixels right in a GIS: the shape property is now stale.
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for p in json["features"][0]["geometry"]["coordinates"][0]
        .as_array_mut()
        .unwrap()
    {
        p[0] = (p[0].as_f64().unwrap() + 10.0).into();
    }
    std::fs::write(&path, json.to_string()).unwrap();
    let set = read_labels(&path, LabelFormat::GeoJson, &frame, &[]).unwrap();
    let Shape::OrientedBox {
        cx,
        cy,
        length,
        width,
        heading_deg,
    } = set.records[0].shape
    else {
        panic!()
    };
    assert!(
        close(cx, 30.0, 1e-9)
            && close(cy, 20.0, 1e-9)
            && close(length, 10.0, 1e-9)
            && close(width, 4.0, 1e-9)
    );
    assert!(HeadingMode::Axis.difference_deg(heading_deg, 30.0) < 1e-9);
    assert_eq!(set.records[0].heading_mode, Some(HeadingMode::Axis));
}

#[test]
fn dota_quads_and_a_bad_line() {
    let path = fixture("dota_sample.txt");
    assert_eq!(detect_format(&path), Some(LabelFormat::Dota));
    let frame = frame(200, 200, None);
    let set = read_labels(&path, LabelFormat::Dota, &frame, &[]).unwrap();
    // "abc" for a number on line 5, a ship past the right edge on line 6.
    assert_eq!(issue_lines(&set), vec![5, 6], "{:?}", set.issues);
    assert!(set.issues[0].problem.contains("abc"), "{}", set.issues[0]);
    let classes: Vec<&str> = set.records.iter().map(|r| r.class_name.as_str()).collect();
    assert_eq!(classes, ["small-vehicle", "large-vehicle", "storage-tank"]);
    assert_eq!(
        set.records.iter().map(|r| r.line).collect::<Vec<_>>(),
        vec![3, 4, 7]
    );
    assert!(set
        .records
        .iter()
        .all(|r| r.heading_mode == Some(HeadingMode::Axis)));
    let Shape::OrientedBox {
        cx,
        cy,
        length,
        width,
        ..
    } = set.records[0].shape
    else {
        panic!()
    };
    assert_eq!((cx, cy, length, width), (30.0, 20.0, 40.0, 20.0));
    // The tilted one: corners (100,100) (140,120) (130,140) (90,120).
    let Shape::OrientedBox {
        cx,
        cy,
        length,
        width,
        heading_deg,
    } = set.records[1].shape
    else {
        panic!()
    };
    assert!(close(cx, 115.0, 1e-9) && close(cy, 120.0, 1e-9));
    assert!(close(length, 2000f64.sqrt(), 1e-9) && close(width, 500f64.sqrt(), 1e-9));
    // The long side, (100,100)→(140,120), points to atan2(dx, -dy) = 116.57° clockwise from up.
    assert!(
        HeadingMode::Axis.difference_deg(heading_deg, 40f64.atan2(-20.0).to_degrees()) < 1e-9,
        "{heading_deg}"
    );
    assert_round_trip("DOTA", &set.records, &frame);
}

#[test]
fn coco_boxes_of_one_image() {
    let path = fixture("coco_sample.json");
    assert_eq!(detect_format(&path), Some(LabelFormat::Coco));
    let a = read_labels(
        &path,
        LabelFormat::Coco,
        &frame(300, 200, Some("scene_a.png")),
        &[],
    )
    .unwrap();
    // A three-number bbox on line 14, an unknown category on line 16.
    assert_eq!(issue_lines(&a), vec![14, 16], "{:?}", a.issues);
    assert_eq!(a.records.len(), 3);
    assert_eq!(
        a.records.iter().map(|r| r.line).collect::<Vec<_>>(),
        vec![12, 13, 17]
    );
    assert_eq!(a.records[0].class_name, "car");
    assert_eq!(
        a.records[0].shape,
        Shape::AxisBox {
            cx: 25.0,
            cy: 27.5,
            w: 30.0,
            h: 15.0
        }
    );
    assert_eq!(a.records[1].class_name, "boat");
    // The second image, named with a directory in the file.
    let b = read_labels(
        &path,
        LabelFormat::Coco,
        &frame(0, 0, Some("scene_b.png")),
        &[],
    )
    .unwrap();
    assert_eq!(b.records.len(), 1);
    assert!(b.issues.is_empty());
    // Two images and no name to choose by, or a name that is not there.
    assert!(read_labels(&path, LabelFormat::Coco, &frame(300, 200, None), &[]).is_err());
    assert!(read_labels(
        &path,
        LabelFormat::Coco,
        &frame(300, 200, Some("scene_c.png")),
        &[]
    )
    .is_err());
    assert_round_trip("COCO", &a.records, &frame(300, 200, None));
}

#[test]
fn broken_files_are_errors_naming_the_file() {
    let cases = [
        ("truncated.xml", LabelFormat::Voc),
        ("not_voc.xml", LabelFormat::Voc),
        ("malformed.json", LabelFormat::GeoJson),
        ("malformed.json", LabelFormat::Coco),
        ("empty.txt", LabelFormat::Yolo),
        ("empty.txt", LabelFormat::Dota),
        ("empty.txt", LabelFormat::Csv),
        ("blank.geojson", LabelFormat::GeoJson),
        ("does_not_exist.txt", LabelFormat::Yolo),
    ];
    for (name, format) in cases {
        let err = read_labels(&fixture(name), format, &frame(100, 100, None), &[]).unwrap_err();
        assert!(err.to_string().contains(name), "{name} ({format}): {err}");
    }
    // Where the structure breaks.
    let err = read_labels(
        &fixture("truncated.xml"),
        LabelFormat::Voc,
        &frame(100, 100, None),
        &[],
    )
    .unwrap_err();
    assert!(err.problem.contains("never closed"), "{err}");
    let err = read_labels(
        &fixture("malformed.json"),
        LabelFormat::GeoJson,
        &frame(100, 100, None),
        &[],
    )
    .unwrap_err();
    assert_eq!(err.line, 5, "{err}");
    // Whole-structure errors of the JSON formats: a GeoJSON that is COCO, and the reverse.
    assert!(read_labels(
        &fixture("coco_sample.json"),
        LabelFormat::GeoJson,
        &frame(300, 200, None),
        &[]
    )
    .is_err());
    assert!(read_labels(
        &fixture("pixel_features.geojson"),
        LabelFormat::Coco,
        &frame(100, 100, None),
        &[]
    )
    .is_err());
}

#[test]
fn formats_are_detected() {
    assert_eq!(
        detect_format(&fixture("yolo_bad.txt")),
        Some(LabelFormat::Yolo)
    );
    assert_eq!(
        detect_format(&fixture("rotated_voc.xml")),
        Some(LabelFormat::Voc)
    );
    assert_eq!(
        detect_format(&fixture("deepforest_multi.csv")),
        Some(LabelFormat::Csv)
    );
    assert_eq!(
        detect_format(&fixture("pixel_features.geojson")),
        Some(LabelFormat::GeoJson)
    );
    assert_eq!(detect_format(&fixture("empty.txt")), None);
    assert_eq!(detect_format(Path::new("labels.shp")), None);
    assert_eq!("COCO".parse::<LabelFormat>(), Ok(LabelFormat::Coco));
}

#[test]
fn points_round_trip_through_their_square() {
    let frame = frame(50, 50, None);
    let records = vec![
        LabelRecord {
            class_name: "tree".into(),
            shape: Shape::Point {
                x: 10.25,
                y: 0.0,
                heading_deg: None,
            },
            polarity: Polarity::Positive,
            heading_mode: None,
            line: 1,
        },
        LabelRecord {
            class_name: "car".into(),
            shape: Shape::Point {
                x: 33.3,
                y: 12.7,
                heading_deg: Some(271.5),
            },
            polarity: Polarity::Negative,
            heading_mode: Some(HeadingMode::Directed),
            line: 2,
        },
    ];
    assert_round_trip("points", &records, &frame);
}

/// `heading_mode: "none"` (what `kestrel objects` writes for tree tops and footprints): the
/// polygon is an extent, read as an axis-aligned box without heading, so that evaluation does
/// not report a heading error nobody labelled; without it the same polygon is an oriented box.
#[test]
fn geojson_polygons_without_heading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tops.geojson");
    let feature = |mode: &str| {
        format!(r#"{{"type":"Feature","geometry":{{"type":"Polygon","coordinates":[[[10,20],[40,20],[40,30],[10,30],[10,20]]]}},"properties":{{"class":"tree"{mode}}}}}"#)
    };
    std::fs::write(&path, format!(r#"{{"type":"FeatureCollection","coordinate_space":"pixels","features":[{},{},{}]}}"#, feature(r#","heading_mode":"none""#), feature(""), feature(r#","heading_mode":"sideways""#))).unwrap();
    let set = read_labels(&path, LabelFormat::GeoJson, &frame(100, 100, None), &[]).unwrap();
    assert_eq!(set.records.len(), 2, "{:?}", set.records);
    assert_eq!(set.records[0].shape, Shape::AxisBox { cx: 25.0, cy: 25.0, w: 30.0, h: 10.0 });
    assert_eq!(set.records[0].heading_mode, None);
    assert!(matches!(set.records[1].shape, Shape::OrientedBox { .. }), "{:?}", set.records[1]);
    assert_eq!(set.issues.len(), 1);
    assert!(set.issues[0].problem.contains("sideways"), "{}", set.issues[0].problem);
}
