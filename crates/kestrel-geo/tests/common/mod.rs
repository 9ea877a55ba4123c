//! Helpers shared by the integration tests: external oracles (GDAL, laspy) and the shared
//! real data, each skipped with a message when absent — unless `KESTREL_REQUIRE_ORACLES`
//! is set (as CI sets it), in which case their absence fails the test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn required() -> bool {
    std::env::var_os("KESTREL_REQUIRE_ORACLES").is_some()
}

/// Reports a missing prerequisite: a skip locally, a failure where oracles are required.
pub fn skip(what: &str) {
    if required() {
        panic!("KESTREL_REQUIRE_ORACLES is set but {what}");
    }
    eprintln!("SKIPPED: {what}");
}

pub fn gdal_available() -> bool {
    let ok = Command::new("gdalinfo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip("GDAL's command-line tools (Debian gdal-bin) are not installed");
    }
    ok
}

/// `../shared/data` beside the repository, when present.
pub fn shared_data() -> Option<PathBuf> {
    // The package folder as cargo names it when running the test (the compiled-in one can be
    // another clone's, when a shared target folder holds a binary built there).
    let dir = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string())).join("../../../shared/data");
    if dir.is_dir() {
        Some(dir.canonicalize().expect("canonical path"))
    } else {
        skip("../shared/data is absent");
        None
    }
}

/// Runs a command and returns its stdout, panicking with its stderr on failure.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn gdalinfo_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&run(Command::new("gdalinfo").arg("-json").arg(path)))
        .expect("gdalinfo JSON")
}

/// A Python interpreter that can import laspy (with the lazrs backend) and numpy:
/// `KESTREL_PYTHON`, else `python3`.
pub fn laspy_python() -> Option<String> {
    let py = std::env::var("KESTREL_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import laspy, lazrs, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(py)
    } else {
        skip(&format!("{py} cannot import laspy, lazrs and numpy"));
        None
    }
}
