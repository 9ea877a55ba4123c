//! Arbitrary bytes through the TIFF reader: open, describe, read every level's window.
#![no_main]

use kestrel_geo::raster::GeoTiffSource;
use kestrel_geo::{PixelWindow, RasterSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Decoder panics are caught by the reader and turned into errors, but libfuzzer-sys's
    // panic hook would abort first: silence the hook. A panic that escapes the reader still
    // aborts the run, through libfuzzer-sys's own catch around this body.
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let Ok(src) = GeoTiffSource::from_bytes("fuzz.tif", data.to_vec()) else { return };
    let info = src.info().clone();
    for (level, l) in info.levels.iter().enumerate() {
        // Bounded windows keep a huge declared size from exhausting memory.
        let w = PixelWindow::new(0, 0, l.width.min(64), l.height.min(64));
        if w.cols > 0 && w.rows > 0 {
            let _ = src.read_window(level, w);
        }
    }
    let _ = info.to_json();
});
