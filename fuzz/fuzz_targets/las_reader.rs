//! Arbitrary bytes through the LAS/LAZ reader: open, read the CRS, stream the points.
#![no_main]

use kestrel_geo::pointcloud::PointCloud;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Decoder panics are caught by the reader and turned into errors, but libfuzzer-sys's
    // panic hook would abort first: silence the hook. A panic that escapes the reader still
    // aborts the run, through libfuzzer-sys's own catch around this body.
    static HOOK: std::sync::Once = std::sync::Once::new();
    if std::env::var_os("KESTREL_FUZZ_LOUD").is_none() { HOOK.call_once(|| std::panic::set_hook(Box::new(|_| {}))); }
    let Ok(mut pc) = PointCloud::from_bytes("fuzz.laz", data.to_vec()) else { return };
    let _ = pc.crs();
    // A header may declare billions of points; the reader must stop at the data's end.
    if pc.point_count() <= 1 << 20 {
        let _ = pc.summarize(|_| {});
    }
});
