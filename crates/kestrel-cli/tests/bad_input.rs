//! Bad input gets a clear error naming the file and the problem, a non-zero exit status,
//! and never a panic.

mod common;
use common::shared;

use std::path::Path;
use std::process::Command;

fn kestrel(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(args)
        .output()
        .expect("run kestrel");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "kestrel {args:?} panicked: {stderr}"
    );
    (out.status.code().unwrap_or(-1), stderr)
}

/// Output into a pipe whose reader has gone (`kestrel info ... | head -0`) ends the process
/// without a panic.
#[test]
#[cfg(unix)]
fn a_closed_output_pipe_is_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let tif = valid_tiff(dir.path());
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(["info", "--json"])
        .arg(&tif)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run kestrel");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Ended by SIGPIPE, as `cat` or `ls` would be, rather than exiting with an error.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}: {stderr}", out.status);
}

fn assert_clear_error(args: &[&str], file: &Path, problem: &str) {
    let (code, stderr) = kestrel(args);
    assert_ne!(code, 0, "kestrel {args:?} should fail");
    assert!(
        stderr.contains(&file.display().to_string()),
        "error should name {}: {stderr}",
        file.display()
    );
    assert!(
        stderr.to_lowercase().contains(&problem.to_lowercase()),
        "error should say '{problem}': {stderr}"
    );
}

/// A small valid GeoTIFF written with Kestrel's own COG writer.
fn valid_tiff(dir: &Path) -> std::path::PathBuf {
    use kestrel_geo::raster::{CogWriter, CogWriterOptions};
    let path = dir.join("ok.tif");
    let georef = kestrel_geo::Georef {
        transform: kestrel_geo::GeoTransform::north_up(500_000.0, 4_000_000.0, 0.5, 0.5),
        crs: Some(kestrel_geo::Crs::from_epsg(32633).unwrap()),
    };
    let mut w = CogWriter::<u8>::create(
        &path,
        300,
        200,
        1,
        Some(&georef),
        &CogWriterOptions::default(),
    )
    .unwrap();
    for row in (0..200).step_by(256) {
        for col in (0..300u32).step_by(256) {
            let (cols, rows) = ((300 - col).min(256) as usize, (200 - row).min(256) as usize);
            let data: Vec<u8> = (0..cols * rows).map(|i| (i % 251) as u8).collect();
            w.write_tile(col, row, cols, rows, &data).unwrap();
        }
    }
    w.finish().unwrap();
    path
}

#[test]
fn missing_file() {
    let p = Path::new("/nonexistent/kestrel/image.tif");
    assert_clear_error(&["info", p.to_str().unwrap()], p, "No such file");
}

#[test]
fn wrong_magic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("fake.tif");
    std::fs::write(&p, b"GIF89a this is not a tiff at all").unwrap();
    assert_clear_error(&["info", p.to_str().unwrap()], &p, "not a raster");
}

#[test]
fn truncated_tiff() {
    let dir = tempfile::tempdir().unwrap();
    let good = valid_tiff(dir.path());
    let bytes = std::fs::read(&good).unwrap();
    let (code, _) = kestrel(&["info", good.to_str().unwrap()]);
    assert_eq!(code, 0, "the untruncated file is valid");
    for keep in [6, 64, bytes.len() / 2] {
        let p = dir.path().join(format!("cut{keep}.tif"));
        std::fs::write(&p, &bytes[..keep]).unwrap();
        let (code, stderr) = kestrel(&["info", p.to_str().unwrap()]);
        // Cutting off only pixel data leaves the header readable: then `info` may succeed,
        // but reading the missing pixels must fail cleanly.
        if code == 0 {
            let src = kestrel_geo::open_raster(&p).unwrap();
            let err = src
                .read_window(0, kestrel_geo::PixelWindow::full(300, 200))
                .unwrap_err();
            assert!(err.to_string().contains(&p.display().to_string()), "{err}");
        } else {
            assert!(stderr.contains(&p.display().to_string()), "{stderr}");
        }
    }
}

#[test]
fn corrupt_tiff_header() {
    let dir = tempfile::tempdir().unwrap();
    let good = valid_tiff(dir.path());
    let mut bytes = std::fs::read(&good).unwrap();
    // Point the first IFD far past the end of the file.
    bytes[4..8].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    let p = dir.path().join("bad_ifd.tif");
    std::fs::write(&p, &bytes).unwrap();
    assert_clear_error(&["info", p.to_str().unwrap()], &p, "not a readable raster");
}

#[test]
fn laz_with_a_corrupt_chunk() {
    let Some(data) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(data.join("lidar/ign_lidarhd_tile.laz")).unwrap();
    // Scramble compressed point data in the middle of the file (inside some chunk).
    let mid = bytes.len() / 2;
    for (i, b) in bytes[mid..mid + 4096].iter_mut().enumerate() {
        *b = (i * 131 % 256) as u8;
    }
    let p = dir.path().join("corrupt.laz");
    std::fs::write(&p, &bytes).unwrap();
    let (code, stderr) = kestrel(&["info", p.to_str().unwrap()]);
    // A scrambled arithmetic-coded chunk may decode to garbage without any detectable error;
    // what must never happen is a panic (checked in `kestrel`) or a silent wrong count.
    if code != 0 {
        assert!(stderr.contains(&p.display().to_string()), "{stderr}");
    }
    let cut = dir.path().join("cut.laz");
    std::fs::write(&cut, &bytes[..mid]).unwrap();
    assert_clear_error(&["info", cut.to_str().unwrap()], &cut, "point cloud");
}

#[test]
fn las_with_wrong_signature() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.laz");
    std::fs::write(&p, vec![0u8; 400]).unwrap();
    assert_clear_error(&["info", p.to_str().unwrap()], &p, "LASF");
}

#[test]
fn unknown_crs_in_a_world_file_projection() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("img.png");
    // A 1×1 grey PNG.
    let img = image_bytes();
    std::fs::write(&png, img).unwrap();
    std::fs::write(dir.path().join("img.pgw"), "1\n0\n0\n-1\n100\n200\n").unwrap();
    std::fs::write(
        dir.path().join("img.prj"),
        "PROJCS[\"nonsense\",PROJECTION[\"No_Such_Projection\"]]",
    )
    .unwrap();
    let prj = dir.path().join("img.prj");
    assert_clear_error(&["info", png.to_str().unwrap()], &prj, "CRS");
}

#[test]
fn dsm_with_a_bad_cell_size() {
    let Some(data) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.tif");
    let (code, stderr) = kestrel(&[
        "dsm",
        data.join("lidar/sample_c.las").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--cell",
        "0",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("cell size must be positive"), "{stderr}");
}

/// A valid 1×1 8-bit greyscale PNG.
fn image_bytes() -> Vec<u8> {
    vec![
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x3A,
        0x7E, 0x9B, 0x55, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x60,
        0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0x48, 0xAF, 0xA4, 0x71, 0x00, 0x00, 0x00, 0x00, 0x49,
        0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ]
}

#[test]
fn training_options_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("p");
    let model = dir.path().join("m.kestrel");
    let base = ["train", "--project", project.to_str().unwrap(), "--class", "car", "-o", model.to_str().unwrap()];
    for (extra, problem) in [
        (["--gsd", "0"], "--gsd takes a ground sample distance"),
        (["--gsd", "inf"], "--gsd takes a ground sample distance"),
        (["--widths", "16,32"], "--widths takes three channel counts"),
        (["--widths", "16,0,64"], "--widths takes three channel counts"),
        (["--decoys", "1.5"], "--decoys, --band-shuffle and --size-negatives take a share"),
        (["--band-shuffle=-0.1", "--seed=1"], "--decoys, --band-shuffle and --size-negatives take a share"),
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra).collect();
        let (code, stderr) = kestrel(&args);
        assert_ne!(code, 0, "kestrel {args:?} should fail");
        assert!(stderr.contains(problem), "kestrel {args:?}: error should say '{problem}': {stderr}");
    }
    assert!(!project.exists(), "a refused run must not create the project");
}
