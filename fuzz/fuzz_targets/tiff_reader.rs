//! Arbitrary bytes through the TIFF reader: open, describe, read every level's window.
#![no_main]

use kestrel_geo::raster::GeoTiffSource;
use kestrel_geo::{PixelWindow, RasterSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
