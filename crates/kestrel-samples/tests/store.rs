//! The project store keeps what it committed: across reopening, under concurrent editors
//! (version conflicts are detected), and when the writing process is killed with SIGKILL.

use kestrel_geo::raster::{DataType, Level, RasterInfo};
use kestrel_geo::{Crs, GeoTransform, Georef};
use kestrel_samples::store::{NewSample, SampleFilter};
use kestrel_samples::{HeadingMode, Origin, Polarity, Project, Shape, StoreError};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn raster_info(georef: bool) -> RasterInfo {
    RasterInfo {
        path: "scene.tif".into(),
        format: "GeoTIFF",
        width: 1000,
        height: 800,
        bands: 3,
        data_type: DataType::Byte,
        georef: georef.then(|| Georef {
            transform: GeoTransform::north_up(500_000.0, 4_000_000.0, 0.25, 0.25),
            crs: Some(Crs::from_epsg(32633).unwrap()),
        }),
        nodata: None,
        levels: vec![Level {
            width: 1000,
            height: 800,
        }],
        layout: String::new(),
    }
}

fn car(image_id: i64, class_id: i64, x: f64) -> NewSample {
    NewSample {
        image_id,
        class_id,
        polarity: Polarity::Positive,
        shape: Shape::OrientedBox {
            cx: x,
            cy: 100.0,
            length: 18.0,
            width: 8.0,
            heading_deg: 30.0,
        },
        heading_mode: None,
        origin: Origin::Drawn,
    }
}

#[test]
fn samples_survive_reopening_with_map_coordinates() {
    let dir = tempfile::tempdir().unwrap();
    let (img, class) = {
        let mut p = Project::create(dir.path()).unwrap();
        let img = p
            .add_image("/data/scene.tif", &raster_info(true), None)
            .unwrap();
        assert_eq!(img.gsd_m, Some(0.25));
        assert_eq!(img.epsg, Some(32633));
        let class = p.add_class("car", HeadingMode::Directed).unwrap();
        p.add_samples(&[car(img.id, class.id, 100.0), car(img.id, class.id, 200.0)])
            .unwrap();
        (img, class)
    };
    let p = Project::open(dir.path()).unwrap();
    let all = p.samples(&SampleFilter::default()).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        all[0].heading_mode,
        HeadingMode::Directed,
        "inherits the class's mode"
    );
    assert_eq!(
        p.image(img.id)
            .unwrap()
            .georef()
            .unwrap()
            .unwrap()
            .transform
            .0[1],
        0.25
    );
    let ring = p.sample_map_polygon(all[0].id).unwrap().unwrap();
    let (mx, my) = ring
        .iter()
        .fold((0.0, 0.0), |a, p| (a.0 + p.0 / 4.0, a.1 + p.1 / 4.0));
    assert!(
        (mx - (500_000.0 + 25.0)).abs() < 1e-6 && (my - (4_000_000.0 - 25.0)).abs() < 1e-6,
        "{mx} {my}"
    );
    assert_eq!(p.class_by_name("car").unwrap().unwrap(), class);
    assert_eq!(
        p.samples(&SampleFilter {
            polarity: Some(Polarity::Negative),
            ..Default::default()
        })
        .unwrap()
        .len(),
        0
    );
}

#[test]
fn images_without_georeferencing_need_a_user_gsd_and_keep_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Project::create(dir.path()).unwrap();
    let img = p
        .add_image("/data/frame.png", &raster_info(false), Some(0.13))
        .unwrap();
    assert_eq!(
        (img.gsd_m, img.gsd_source.as_str(), img.crs.clone()),
        (Some(0.13), "user", None)
    );
    assert!(matches!(
        p.add_image("/data/other.png", &raster_info(false), Some(-1.0)),
        Err(StoreError::Invalid { .. })
    ));
}

#[test]
fn a_stale_edit_is_refused_not_silently_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Project::create(dir.path()).unwrap();
    let img = a
        .add_image("/data/scene.tif", &raster_info(true), None)
        .unwrap();
    let class = a.add_class("car", HeadingMode::Directed).unwrap();
    let id = a.add_samples(&[car(img.id, class.id, 100.0)]).unwrap()[0];
    let mut b = Project::open(dir.path()).unwrap();
    let seen_by_a = a.sample(id).unwrap();
    let seen_by_b = b.sample(id).unwrap();
    let moved = Shape::OrientedBox {
        cx: 150.0,
        cy: 100.0,
        length: 18.0,
        width: 8.0,
        heading_deg: 30.0,
    };
    let after_a = a
        .update_sample(
            id,
            seen_by_a.version,
            class.id,
            Polarity::Positive,
            moved,
            HeadingMode::Directed,
        )
        .unwrap();
    assert_eq!(after_a.version, seen_by_a.version + 1);
    let err = b
        .update_sample(
            id,
            seen_by_b.version,
            class.id,
            Polarity::Negative,
            seen_by_b.shape,
            HeadingMode::Directed,
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert!(b.delete_sample(id, seen_by_b.version).is_err());
    assert_eq!(b.sample(id).unwrap().shape, moved, "A's edit stands");
}

#[test]
fn invalid_geometry_is_refused_and_nothing_of_the_batch_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Project::create(dir.path()).unwrap();
    let img = p
        .add_image("/data/scene.tif", &raster_info(true), None)
        .unwrap();
    let class = p.add_class("car", HeadingMode::Axis).unwrap();
    let mut bad = car(img.id, class.id, 10.0);
    bad.shape = Shape::AxisBox {
        cx: 1.0,
        cy: 1.0,
        w: f64::NAN,
        h: 2.0,
    };
    assert!(p.add_samples(&[car(img.id, class.id, 5.0), bad]).is_err());
    assert_eq!(p.samples(&SampleFilter::default()).unwrap().len(), 0);
}

/// Child side of the SIGKILL test (not a test of its own): inserts samples one transaction
/// at a time and reports each committed count on stdout, until killed.
#[test]
#[ignore = "the writer process of kill_9_loses_no_committed_sample"]
fn child_writer() {
    let dir =
        std::env::var("KESTREL_CHILD_PROJECT").expect("run by kill_9_loses_no_committed_sample");
    let mut p = Project::open(&dir).unwrap();
    let img = p.images().unwrap()[0].id;
    let class = p.classes().unwrap()[0].id;
    for i in 0.. {
        p.add_samples(&[car(img, class, f64::from(i % 900) + 10.0)])
            .unwrap();
        println!("committed {}", i + 1);
    }
}

#[test]
fn kill_9_loses_no_committed_sample() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut p = Project::create(dir.path()).unwrap();
        p.add_image("/data/scene.tif", &raster_info(true), None)
            .unwrap();
        p.add_class("car", HeadingMode::Directed).unwrap();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KESTREL_CHILD_PROJECT", dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut last = 0u64;
    let reader = BufReader::new(child.stdout.take().unwrap());
    for line in reader.lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("committed ") {
            last = n.trim().parse().unwrap();
            if last >= 300 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let p = Project::open(dir.path()).unwrap();
    let stored = p.samples(&SampleFilter::default()).unwrap().len() as u64;
    assert!(
        stored >= last,
        "{last} samples were reported committed, only {stored} survived"
    );
    let conn = rusqlite::Connection::open(dir.path().join("kestrel.sqlite")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
