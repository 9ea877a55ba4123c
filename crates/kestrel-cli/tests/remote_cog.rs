//! Remote COGs: the same windows read over HTTP range requests and from `s3://` (presigned,
//! against a local `moto_server` on 127.0.0.1) equal those read from the local file.

use kestrel_geo::raster::{CogWriter, CogWriterOptions};
use kestrel_geo::{open_raster, Crs, GeoTransform, Georef, PixelWindow};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn venv_bin(name: &str) -> Option<PathBuf> {
    let python = std::env::var("KESTREL_PYTHON").ok()?;
    let bin = Path::new(&python).parent()?.join(name);
    bin.exists().then_some(bin)
}

fn start_moto() -> Option<Moto> {
    let Some(server) = venv_bin("moto_server") else {
        if std::env::var_os("KESTREL_REQUIRE_ORACLES").is_some() {
            panic!("moto_server is required (pip install 'moto[server]' beside KESTREL_PYTHON)");
        }
        eprintln!("SKIPPED: no moto_server beside KESTREL_PYTHON");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let moto = Moto { child, port };
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "moto_server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(moto)
}

fn write_cog(path: &Path) {
    let georef = Georef {
        transform: GeoTransform::north_up(690_000.0, 5_330_000.0, 0.2, 0.2),
        crs: Some(Crs::from_epsg(32632).unwrap()),
    };
    let (w, h) = (1000u32, 800u32);
    let opts = CogWriterOptions {
        tile_size: 256,
        nodata: None,
        overview_levels: vec![2, 4],
    };
    let mut writer = CogWriter::<u16>::create(path, w, h, 2, Some(&georef), &opts).unwrap();
    for row in (0..h).step_by(256) {
        for col in (0..w).step_by(256) {
            let (cols, rows) = ((w - col).min(256) as usize, (h - row).min(256) as usize);
            let data: Vec<u16> = (0..cols * rows * 2)
                .map(|i| {
                    let (x, y, b) = (
                        col as usize + (i / 2) % cols,
                        row as usize + i / 2 / cols,
                        i % 2,
                    );
                    ((x * 7 + y * 13 + b * 1000) % 4096) as u16
                })
                .collect();
            writer.write_tile(col, row, cols, rows, &data).unwrap();
        }
    }
    writer.finish().unwrap();
}

#[test]
fn remote_windows_equal_local_windows_over_http_and_s3() {
    let Some(moto) = start_moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("scene.tif");
    write_cog(&local);
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let python = std::env::var("KESTREL_PYTHON").unwrap();
    let upload = format!(
        "import boto3\ns3=boto3.client('s3',endpoint_url={endpoint:?},aws_access_key_id='test',aws_secret_access_key='test',region_name='us-east-1')\ns3.create_bucket(Bucket='kestrel')\ns3.upload_file({:?},'kestrel','data/scene.tif',ExtraArgs={{'ACL':'public-read'}})",
        local.display().to_string()
    );
    let out = Command::new(&python)
        .args(["-c", &upload])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "upload: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let here = open_raster(&local).unwrap();
    let there = open_raster(format!("{endpoint}/kestrel/data/scene.tif")).unwrap();
    assert_eq!(here.info().levels.len(), 3);
    assert_eq!(there.info().levels.len(), 3);
    assert_eq!(
        there.info().georef.as_ref().unwrap().transform,
        here.info().georef.as_ref().unwrap().transform
    );
    for (level, l) in here.info().levels.iter().enumerate() {
        for win in [
            PixelWindow::new(0, 0, l.width.min(100), l.height.min(90)),
            PixelWindow::new(l.width / 3, l.height / 4, l.width / 2, l.height / 2),
            PixelWindow::new(l.width - 37, l.height - 41, 37, 41),
        ] {
            assert_eq!(
                there.read_window(level, win).unwrap(),
                here.read_window(level, win).unwrap(),
                "level {level} window {win}"
            );
        }
    }

    // Through the CLI with credentials: the URL is presigned (SigV4) by object_store.
    let out = Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(["info", "--json", "s3://kestrel/data/scene.tif"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["epsg"], 32632);
    assert_eq!(v["width"], 1000);
    assert_eq!(v["bands"], 2);
    assert_eq!(v["overviews"], serde_json::json!([[500, 400], [250, 200]]));

    // A missing object is a clear error naming the URI.
    let out = Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(["info", "s3://kestrel/data/nothing.tif"])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env_remove("AWS_ACCESS_KEY_ID")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("s3://kestrel/data/nothing.tif")
            && stderr.contains("404"),
        "{stderr}"
    );
}
