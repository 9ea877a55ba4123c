//! Point clouds against independent oracles: laspy + numpy for the points and the DSM,
//! GDAL for the height-model GeoTIFF Kestrel writes.

mod common;

use common::{gdal_available, gdalinfo_json, laspy_python, run, shared_data};
use kestrel_geo::pointcloud::{rasterize, HeightKind, PointCloud, RasterizeOptions};
use kestrel_geo::{open_raster, PixelWindow};
use std::path::Path;
use std::process::Command;

#[test]
fn ign_tile_summary_reports_points_crs_and_classes() {
    let Some(data) = shared_data() else { return };
    let mut pc = PointCloud::open(data.join("lidar/ign_lidarhd_tile.laz")).unwrap();
    let info = pc.summarize(|_| {}).unwrap();
    assert_eq!(info.points, 697_721);
    assert_eq!(info.crs.as_ref().and_then(|c| c.epsg), Some(2154));
    assert_eq!(info.point_format, 8);
    assert_eq!(info.class_counts.values().sum::<u64>(), 697_721);
    assert!(
        info.class_counts[&2] > 600_000,
        "mostly ground: {:?}",
        info.class_counts
    );
    assert!(info.class_counts.contains_key(&6), "has buildings");
}

#[test]
fn extra_dimensions_are_listed() {
    let Some(data) = shared_data() else { return };
    let mut pc = PointCloud::open(data.join("lidar/MixedConifer.laz")).unwrap();
    let info = pc.summarize(|_| {}).unwrap();
    assert_eq!(info.points, 37_657);
    assert!(
        info.extra_dims.iter().any(|d| d == "treeID"),
        "{:?}",
        info.extra_dims
    );
}

#[test]
fn dsm_agrees_with_laspy_and_opens_in_gdal_with_its_crs() {
    let Some(data) = shared_data() else { return };
    let Some(python) = laspy_python() else { return };
    let cloud = data.join("lidar/ign_lidarhd_tile.laz");
    let dir = tempfile::tempdir().unwrap();
    let cell = 1.0;
    let oracle_raw = dir.path().join("oracle.raw");
    let script = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string())).join("tests/oracles/dsm_laspy.py");
    let out = run(Command::new(&python)
        .arg(&script)
        .arg(&cloud)
        .arg(cell.to_string())
        .arg(&oracle_raw));
    let meta: serde_json::Value = serde_json::from_str(out.trim()).unwrap();

    let mut pc = PointCloud::open(&cloud).unwrap();
    let summary = pc.summarize(|_| {}).unwrap();
    for (class, n) in meta["classes"].as_object().unwrap() {
        assert_eq!(
            summary.class_counts[&class.parse::<u8>().unwrap()],
            n.as_u64().unwrap(),
            "class {class} count vs laspy"
        );
    }
    let mut pc = PointCloud::open(&cloud).unwrap();
    let grid = rasterize(
        &mut pc,
        &RasterizeOptions {
            cell_m: cell,
            kind: HeightKind::Dsm,
            fill_dsm_holes: false,
            area: None,
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(u64::from(grid.width), meta["width"].as_u64().unwrap());
    assert_eq!(u64::from(grid.height), meta["height"].as_u64().unwrap());
    let oracle: Vec<f64> = std::fs::read(&oracle_raw)
        .unwrap()
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let mut compared = 0;
    for (i, (&ours, &theirs)) in grid.values.iter().zip(&oracle).enumerate() {
        assert_eq!(
            ours.is_nan(),
            theirs.is_nan(),
            "cell {i}: coverage differs (ours {ours}, laspy {theirs})"
        );
        if !theirs.is_nan() {
            assert!(
                (f64::from(ours) - theirs).abs() < 1e-3,
                "cell {i}: ours {ours} laspy {theirs}"
            );
            compared += 1;
        }
    }
    assert!(compared > 50_000, "only {compared} cells compared");

    // Written as a COG, it opens in GDAL with EPSG:2154 and the same values.
    let tif = dir.path().join("dsm.tif");
    grid.write_cog(&tif).unwrap();
    let back = open_raster(&tif).unwrap();
    let win = back
        .read_window(0, PixelWindow::full(grid.width, grid.height))
        .unwrap();
    for (i, &v) in grid.values.iter().enumerate() {
        let stored = win.samples.get_f64(i) as f32;
        assert!(
            if v.is_nan() {
                stored == -9999.0
            } else {
                stored == v
            },
            "cell {i}: {v} stored as {stored}"
        );
    }
    if gdal_available() {
        let g = gdalinfo_json(&tif);
        assert_eq!(
            g.pointer("/stac/proj:epsg").and_then(|v| v.as_u64()),
            Some(2154)
        );
        assert_eq!(g["size"][0].as_u64(), Some(u64::from(grid.width)));
        assert_eq!(g["bands"][0]["noDataValue"].as_f64(), Some(-9999.0));
        let gt = g["geoTransform"].as_array().unwrap();
        assert_eq!(gt[1].as_f64(), Some(cell));
        let validator = "/usr/share/doc/python3-gdal/examples/validate_cloud_optimized_geotiff.py";
        if Path::new(validator).exists() {
            run(Command::new("/usr/bin/python3").arg(validator).arg(&tif));
        }
    }
}

#[test]
fn ndsm_of_buildings_stands_above_ground_and_dtm_has_no_holes() {
    let Some(data) = shared_data() else { return };
    let cloud = data.join("lidar/ign_lidarhd_tile.laz");
    let opts = |kind| RasterizeOptions {
        cell_m: 1.0,
        kind,
        fill_dsm_holes: false,
        area: None,
    };
    let dtm = rasterize(
        &mut PointCloud::open(&cloud).unwrap(),
        &opts(HeightKind::Dtm),
        |_| {},
    )
    .unwrap();
    assert!(
        dtm.values.iter().all(|v| v.is_finite()),
        "DTM holes are filled"
    );
    let ndsm = rasterize(
        &mut PointCloud::open(&cloud).unwrap(),
        &opts(HeightKind::Ndsm),
        |_| {},
    )
    .unwrap();
    let mask = rasterize(
        &mut PointCloud::open(&cloud).unwrap(),
        &opts(HeightKind::ClassMask(6)),
        |_| {},
    )
    .unwrap();
    let (mut on, mut n_on, mut off, mut n_off) = (0f64, 0, 0f64, 0);
    for (h, m) in ndsm.values.iter().zip(&mask.values) {
        assert!(*h >= 0.0);
        if *m == 1.0 {
            on += f64::from(*h);
            n_on += 1;
        } else {
            off += f64::from(*h);
            n_off += 1;
        }
    }
    let (mean_on, mean_off) = (on / n_on as f64, off / n_off as f64);
    assert!(
        n_on > 50 && mean_on > 2.5,
        "buildings should stand metres above ground: {mean_on} over {n_on} cells"
    );
    assert!(mean_off < 1.0, "open ground should be near 0 m: {mean_off}");
}

#[test]
fn feet_based_cloud_is_rasterized_in_metres() {
    let Some(data) = shared_data() else { return };
    let mut pc = PointCloud::open(data.join("lidar/autzen_trim.laz")).unwrap();
    let crs = pc.crs().unwrap().expect("autzen_trim declares its CRS");
    let unit = crs.linear_unit_m().unwrap();
    assert!(
        (unit - 0.3048).abs() < 1e-4,
        "autzen is in feet, got {unit} m per unit ({})",
        crs.proj4
    );
    let grid = rasterize(
        &mut pc,
        &RasterizeOptions {
            cell_m: 3.048,
            kind: HeightKind::Dsm,
            fill_dsm_holes: false,
            area: None,
        },
        |_| {},
    )
    .unwrap();
    assert!(
        (grid.georef.transform.0[1] - 10.0).abs() < 1e-6,
        "3.048 m is 10 ft"
    );
    // A CRS with no EPSG code travels as WKT, which GDAL reads.
    if gdal_available() {
        let dir = tempfile::tempdir().unwrap();
        let tif = dir.path().join("autzen_dsm.tif");
        grid.write_cog(&tif).unwrap();
        let g = gdalinfo_json(&tif);
        let wkt = g
            .pointer("/coordinateSystem/wkt")
            .and_then(|w| w.as_str())
            .unwrap_or("");
        assert!(
            wkt.contains("Lambert Conformal Conic") || wkt.contains("Lambert_Conformal_Conic"),
            "{wkt}"
        );
        assert!(wkt.contains("foot"), "{wkt}");
    }
}

/// The trees lidR's `treeID` segments, against laspy: the same ids, point counts and tops.
#[test]
fn segmented_trees_agree_with_laspy() {
    let Some(data) = shared_data() else { return };
    let Some(python) = laspy_python() else { return };
    let cloud = data.join("lidar/MixedConifer.laz");
    let script = "import json, sys, laspy, numpy as np\n\
f = laspy.read(sys.argv[1]); t = np.asarray(f.treeID); z = np.asarray(f.z)\n\
ok = np.isfinite(t) & (t < 1e300)\n\
out = {str(int(i)): [int((t == i).sum()), float(z[t == i].max())] for i in np.unique(t[ok])}\n\
print(json.dumps(out))";
    let oracle: serde_json::Value = serde_json::from_str(run(Command::new(&python).args(["-c", script]).arg(&cloud)).trim()).unwrap();
    let oracle = oracle.as_object().unwrap();
    let mut pc = PointCloud::open(&cloud).unwrap();
    let trees = kestrel_geo::pointcloud::objects_by_dimension(&mut pc, "treeID", None, |_| {}).unwrap();
    assert_eq!(trees.len(), oracle.len(), "one object per tree id");
    for t in &trees {
        let o = &oracle[&(t.id as i64).to_string()];
        assert_eq!(t.points as u64, o[0].as_u64().unwrap(), "points of tree {}", t.id);
        assert!((t.top[2] - o[1].as_f64().unwrap()).abs() < 1e-6, "top of tree {}", t.id);
        assert!(t.min[0] <= t.top[0] && t.top[0] <= t.max[0] && t.min[1] <= t.top[1] && t.top[1] <= t.max[1]);
    }
    // An area keeps the trees whose top lies in it; a missing dimension is a clear error.
    let mut pc = PointCloud::open(&cloud).unwrap();
    let west = kestrel_geo::pointcloud::objects_by_dimension(&mut pc, "treeID", Some([481260.0, 3812921.0, 481305.0, 3813011.0]), |_| {}).unwrap();
    assert!(!west.is_empty() && west.len() < trees.len() && west.iter().all(|t| t.top[0] < 481305.0));
    let mut pc = PointCloud::open(&cloud).unwrap();
    let err = kestrel_geo::pointcloud::objects_by_dimension(&mut pc, "crownID", None, |_| {}).unwrap_err().to_string();
    assert!(err.contains("crownID") && err.contains("treeID"), "{err}");
}

/// A part of the cloud rasterized on its own lines up with the whole cloud's grid, and layers
/// stack into one file GDAL reads as bands.
#[test]
fn an_area_and_stacked_layers() {
    let Some(data) = shared_data() else { return };
    let cloud = data.join("lidar/MixedConifer.laz");
    let opts = |kind, area| RasterizeOptions { cell_m: 0.5, kind, fill_dsm_holes: false, area };
    let whole = rasterize(&mut PointCloud::open(&cloud).unwrap(), &opts(HeightKind::Ndsm, None), |_| {}).unwrap();
    let area = [481280.0, 3812940.0, 481300.0, 3812960.0];
    let part = rasterize(&mut PointCloud::open(&cloud).unwrap(), &opts(HeightKind::Ndsm, Some(area)), |_| {}).unwrap();
    assert_eq!((part.width, part.height), (40, 40));
    let (ox, oy) = (whole.georef.transform.0[0], whole.georef.transform.0[3]);
    let (col, row) = (((area[0] - ox) / 0.5).round() as u32, ((oy - area[3]) / 0.5).round() as u32);
    // Heights above ground agree where the DTM interpolation does not reach the edges.
    let mut same = 0;
    for r in 5..35 {
        for c in 5..35 {
            let (a, b) = (part.get(c, r), whole.get(col + c, row + r));
            if (a - b).abs() < 0.5 {
                same += 1;
            }
        }
    }
    assert!(same > 30 * 30 * 9 / 10, "{same} of 900 cells agree");
    let intensity = rasterize(&mut PointCloud::open(&cloud).unwrap(), &opts(HeightKind::Intensity, Some(area)), |_| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stack.tif");
    kestrel_geo::pointcloud::write_layers(&out, &[part, intensity]).unwrap();
    let src = open_raster(&out).unwrap();
    assert_eq!((src.info().bands, src.info().width), (2, 40));
    let outside = rasterize(&mut PointCloud::open(&cloud).unwrap(), &opts(HeightKind::Ndsm, Some([0.0, 0.0, 10.0, 10.0])), |_| {});
    assert!(outside.unwrap_err().to_string().contains("outside"));
}

/// Co-registration: the Autzen cloud's colours, rasterized on the orthophoto's own grid,
/// line up with the photo — the correlation of the two peaks within a pixel of no shift.
#[test]
fn autzen_cloud_lands_on_its_photo_within_a_pixel() {
    let Some(data) = shared_data() else { return };
    let photo = open_raster(data.join("lidar/autzen.jpg")).unwrap();
    let t = photo.info().georef.as_ref().unwrap().transform.0;
    let mut pc = PointCloud::open(data.join("lidar/autzen_trim.laz")).unwrap();
    let unit_m = pc.crs().unwrap().and_then(|c| c.linear_unit_m()).unwrap_or(1.0);
    let b = pc.header().bounds();
    // The photo's pixels under the cloud, a margin inside its bounds.
    let c0 = ((b.min.x - t[0]) / t[1]).ceil() as u32 + 8;
    let c1 = (((b.max.x - t[0]) / t[1]).floor() as u32 - 8).min(photo.info().width);
    let r0 = ((b.max.y - t[3]) / t[5]).ceil() as u32 + 8;
    let r1 = (((b.min.y - t[3]) / t[5]).floor() as u32 - 8).min(photo.info().height);
    let area = [t[0] + f64::from(c0) * t[1], t[3] + f64::from(r1) * t[5], t[0] + f64::from(c1) * t[1], t[3] + f64::from(r0) * t[5]];
    let layer = rasterize(&mut pc, &RasterizeOptions { cell_m: t[1] * unit_m, kind: HeightKind::Luminance, fill_dsm_holes: false, area: Some(area) }, |_| {}).unwrap();
    let (w, h) = (c1 - c0, r1 - r0);
    assert_eq!((layer.width, layer.height), (w, h), "the layer is on the photo's grid");
    let buf = photo.read_window(0, PixelWindow::new(c0, r0, w, h)).unwrap();
    let lum = |c: u32, r: u32| (0..3).map(|k| buf.samples.get_f64((r as usize * w as usize + c as usize) * 3 + k)).sum::<f64>() / 3.0;
    // Normalized cross-correlation over the cells that hold points, at shifts of ±3 px.
    let ncc = |sx: i32, sy: i32| {
        let mut pairs = Vec::new();
        for r in 4..h - 4 {
            for c in 4..w - 4 {
                let v = f64::from(layer.get(c, r));
                if v.is_finite() {
                    pairs.push((v, lum((c as i32 + sx) as u32, (r as i32 + sy) as u32)));
                }
            }
        }
        let n = pairs.len() as f64;
        let (ma, mb) = (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n);
        let cov: f64 = pairs.iter().map(|p| (p.0 - ma) * (p.1 - mb)).sum();
        let va: f64 = pairs.iter().map(|p| (p.0 - ma).powi(2)).sum();
        let vb: f64 = pairs.iter().map(|p| (p.1 - mb).powi(2)).sum();
        cov / (va * vb).sqrt()
    };
    let mut best = (0, 0, f64::MIN);
    for sy in -3..=3 {
        for sx in -3..=3 {
            let v = ncc(sx, sy);
            if v > best.2 {
                best = (sx, sy, v);
            }
        }
    }
    eprintln!("best shift ({}, {}) px, correlation {:.3}; at (0, 0) {:.3}", best.0, best.1, best.2, ncc(0, 0));
    assert!(best.0.abs() <= 1 && best.1.abs() <= 1, "the cloud lands {} px, {} px off the photo", best.0, best.1);
    assert!(best.2 > 0.5, "correlation {:.3}: the layers do not show the same scene", best.2);
}

/// Building footprints from a classified cloud: the IGN tile's 590 class-6 points form two
/// connected groups at 0.5 m, and every one of those points lies in a footprint.
#[test]
fn building_footprints_from_class_6() {
    let Some(data) = shared_data() else { return };
    let cloud = data.join("lidar/ign_lidarhd_tile.laz");
    let found = kestrel_geo::pointcloud::objects_by_class(&mut PointCloud::open(&cloud).unwrap(), 6, 0.5, None, 4, |_| {}).unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    let mut inside = 0;
    let mut total = 0;
    PointCloud::open(&cloud)
        .unwrap()
        .for_each_chunk(
            |c| {
                for i in 0..c.len() {
                    if c.class[i] == 6 {
                        total += 1;
                        if found.iter().any(|o| c.x[i] >= o.min[0] && c.x[i] <= o.max[0] && c.y[i] >= o.min[1] && c.y[i] <= o.max[1]) {
                            inside += 1;
                        }
                    }
                }
                Ok(())
            },
            |_| {},
        )
        .unwrap();
    assert_eq!(total, 590);
    assert!(inside >= 585, "{inside} of {total} building points lie in a footprint (specks under 4 cells are dropped)");
}
