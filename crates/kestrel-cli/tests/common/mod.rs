//! Shared by the CLI tests: where the real data is.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `../shared/data` beside the repository; skipped with a message when absent, a failure
/// when `KESTREL_REQUIRE_ORACLES` is set (as CI sets it).
pub fn shared() -> Option<PathBuf> {
    // The package folder as cargo names it when running the test (the compiled-in one can be
    // another clone's, when a shared target folder holds a binary built there).
    let d = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string())).join("../../../shared/data");
    if d.is_dir() {
        Some(d)
    } else {
        assert!(
            std::env::var_os("KESTREL_REQUIRE_ORACLES").is_none(),
            "../shared/data is required"
        );
        eprintln!("SKIPPED: ../shared/data is absent");
        None
    }
}
