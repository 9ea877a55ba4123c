//! `kestrel import`, `export` and `chips` on the shared real data: every label format the
//! data holds, idempotent re-import, lossless export → import, broken labels refused with
//! their lines and nothing stored lost, and chips written.

mod common;
use common::shared;

use kestrel_samples::store::SampleFilter;
use kestrel_samples::Project;
use std::path::Path;
use std::process::Command;

fn kestrel(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(args)
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(!e.contains("panicked"), "{e}");
    (out.status.success(), o, e)
}

fn count(project: &Path) -> usize {
    Project::open(project)
        .unwrap()
        .samples(&SampleFilter::default())
        .unwrap()
        .len()
}

#[test]
fn cars_import_is_idempotent_and_broken_labels_change_nothing() {
    let Some(d) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cars");
    let (ps, img, txt) = (
        p.to_str().unwrap(),
        d.join("cars/MOS155.png"),
        d.join("cars/MOS155.txt"),
    );
    let args = [
        "import",
        "--project",
        ps,
        "--image",
        img.to_str().unwrap(),
        txt.to_str().unwrap(),
        "--gsd",
        "0.13",
        "--class-names",
        "car,truck,bus,minibus,cyclist",
        "--only",
        "car",
    ];
    let (ok, out, err) = kestrel(&args);
    assert!(ok, "{err}");
    let lines = std::fs::read_to_string(&txt)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("0 "))
        .count();
    assert_eq!(count(&p), lines, "{out}");
    let (ok, out, _) = kestrel(&args);
    assert!(ok && out.contains("already present"), "{out}");
    assert_eq!(count(&p), lines, "re-import adds nothing");
    // Without a GSD, an image with no georeferencing is refused.
    let (ok, _, err) = kestrel(&[
        "import",
        "--project",
        ps,
        "--image",
        img.to_str().unwrap(),
        txt.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("--gsd"), "{err}");
    // A broken label file: every bad line reported, nothing stored, what was there kept.
    let bad = dir.path().join("MOS156.txt");
    std::fs::write(
        &bad,
        "0 0.5 0.5 0.01 0.02\n0 0.5 nan 0.01\n9 0.5 0.5 0.01 0.02\n0 1.7 0.5 0.01 0.02\n",
    )
    .unwrap();
    let img2 = d.join("cars/MOS156.png");
    let (ok, _, err) = kestrel(&[
        "import",
        "--project",
        ps,
        "--image",
        img2.to_str().unwrap(),
        bad.to_str().unwrap(),
        "--gsd",
        "0.13",
        "--class-names",
        "car,truck,bus,minibus,cyclist",
    ]);
    assert!(!ok, "a broken file must fail");
    for line in [2, 3, 4] {
        assert!(
            err.contains(&format!("MOS156.txt:{line}")),
            "line {line} not reported: {err}"
        );
    }
    assert_eq!(count(&p), lines, "nothing lost, nothing half-imported");
}

#[test]
fn voc_csv_and_geojson_import_and_export_round_trip() {
    let Some(d) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let tif = d.join("trees/OSBS_029.tif");
    for (name, labels) in [("voc", "trees/OSBS_029.xml"), ("csv", "trees/OSBS_029.csv")] {
        let p = dir.path().join(name);
        let (ok, _, err) = kestrel(&[
            "import",
            "--project",
            p.to_str().unwrap(),
            "--image",
            tif.to_str().unwrap(),
            d.join(labels).to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
        assert_eq!(count(&p), 61, "{name}");
    }
    let b = dir.path().join("buildings");
    let (ok, _, err) = kestrel(&[
        "import",
        "--project",
        b.to_str().unwrap(),
        "--image",
        d.join("buildings/sample_geotiff.tif").to_str().unwrap(),
        d.join("buildings/geotiff_labels.geojson").to_str().unwrap(),
        "--class",
        "building",
    ]);
    assert!(ok, "{err}");
    assert_eq!(count(&b), 43);

    // Export → import into a fresh project gives back the same samples.
    let voc = dir.path().join("voc");
    let gj = dir.path().join("trees.geojson");
    let gpkg = dir.path().join("trees.gpkg");
    assert!(
        kestrel(&[
            "export",
            "--project",
            voc.to_str().unwrap(),
            "-o",
            gj.to_str().unwrap()
        ])
        .0
    );
    assert!(
        kestrel(&[
            "export",
            "--project",
            voc.to_str().unwrap(),
            "-o",
            gpkg.to_str().unwrap()
        ])
        .0
    );
    let again = dir.path().join("again");
    let (ok, _, err) = kestrel(&[
        "import",
        "--project",
        again.to_str().unwrap(),
        "--image",
        tif.to_str().unwrap(),
        gj.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let original = Project::open(&voc)
        .unwrap()
        .samples(&SampleFilter::default())
        .unwrap();
    let back = Project::open(&again)
        .unwrap()
        .samples(&SampleFilter::default())
        .unwrap();
    assert_eq!(original.len(), back.len());
    for (a, b) in original.iter().zip(&back) {
        assert_eq!(a.shape, b.shape);
        assert_eq!(a.polarity, b.polarity);
    }
    if Command::new("ogrinfo").arg("--version").output().is_ok() {
        let out = Command::new("ogrinfo")
            .args(["-al", "-so"])
            .arg(&gpkg)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Feature Count: 61") && text.contains("UTM zone 17N"),
            "{text}"
        );
    }
}

#[test]
fn chips_of_the_cars_are_written() {
    let Some(d) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cars");
    for frame in ["MOS160", "MOS161"] {
        let (ok, _, err) = kestrel(&[
            "import",
            "--project",
            p.to_str().unwrap(),
            "--image",
            d.join(format!("cars/{frame}.png")).to_str().unwrap(),
            d.join(format!("cars/{frame}.txt")).to_str().unwrap(),
            "--gsd",
            "0.13",
            "--class-names",
            "car,truck,bus,minibus,cyclist",
            "--only",
            "car",
        ]);
        assert!(ok, "{err}");
    }
    let out = dir.path().join("chips");
    let (ok, text, err) = kestrel(&[
        "chips",
        "--project",
        p.to_str().unwrap(),
        "--class",
        "car",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(text.contains("0.130 m"), "{text}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let chips = manifest["chips"].as_array().unwrap();
    let positives: Vec<_> = chips
        .iter()
        .filter(|c| c["polarity"] == "positive")
        .collect();
    assert_eq!(positives.len(), count(&p));
    // The street runs along x: most cars' axes are estimated near 90°.
    let along = positives
        .iter()
        .filter(|c| {
            let h = c["heading_deg"].as_f64().unwrap();
            let d = (h - 90.0).rem_euclid(180.0);
            d.min(180.0 - d) < 10.0
        })
        .count();
    assert!(
        along * 10 >= positives.len() * 7,
        "{along} of {} along the street",
        positives.len()
    );
    assert!(out.join("contact_sheet.png").exists());
    let (ok, _, err) = kestrel(&[
        "chips",
        "--project",
        p.to_str().unwrap(),
        "--class",
        "bus",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("bus"), "{err}");
}
