//! The GUI end to end in a real browser: `kestrel serve` on the demo project, driven by
//! `web/tests/e2e.mjs` (Playwright's `playwright-core` with Debian's `chromium`, headless):
//! draw positives and negatives with the mouse, rotate one, train, detect, accept and reject,
//! reload, and find it all persisted. Screenshots of every step land in
//! `$KESTREL_SCREENSHOTS` (default `web/screenshots`).
//!
//! Needs `node`, `chromium`, `npm --prefix web ci` and a binary built after
//! `npm --prefix web run build` (the web app is bundled at build time). Without them the test
//! is skipped with a message — or fails, when `KESTREL_REQUIRE_ORACLES` is set (as CI does).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn skip_or_fail(why: &str) {
    if std::env::var_os("KESTREL_REQUIRE_ORACLES").is_some() {
        panic!("browser test cannot run: {why}");
    }
    eprintln!("SKIPPED: browser test: {why}");
}

fn get(port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn gui_end_to_end_in_chromium() {
    let repo = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string())).join("../..");
    let web = repo.join("web");
    let chromium = std::env::var_os("CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if Command::new("node").arg("--version").output().is_err() {
        return skip_or_fail("no `node` on PATH (Debian: apt install nodejs npm)");
    }
    if !chromium.exists() {
        return skip_or_fail(&format!("no browser at {} (Debian: apt install chromium)", chromium.display()));
    }
    if !web.join("node_modules/playwright-core").is_dir() {
        return skip_or_fail("web/node_modules is missing: run `npm --prefix web ci`");
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .env("KESTREL_HOME", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("kestrel serve starts");
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(120), "kestrel serve did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    if get(port, "/").contains("This build has no web app") {
        let _ = server.kill();
        return skip_or_fail("this kestrel binary was built without the web app: run `npm --prefix web run build`, then rebuild");
    }
    let shots = std::env::var_os("KESTREL_SCREENSHOTS").map(PathBuf::from).unwrap_or_else(|| web.join("screenshots"));
    let status = Command::new("node")
        .arg(web.join("tests/e2e.mjs"))
        .env("KESTREL_URL", format!("http://127.0.0.1:{port}"))
        .env("KESTREL_SCREENSHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .env("KESTREL_DEMO_UNLABELLED", tmp.path().join("demo/unlabelled-vehicles.json"))
        .status()
        .expect("node runs");
    let _ = server.kill();
    let _ = server.wait();
    assert!(status.success(), "the browser test failed (its log is above; screenshots in {})", shots.display());
}
