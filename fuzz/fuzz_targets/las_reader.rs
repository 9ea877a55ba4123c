//! Arbitrary bytes through the LAS/LAZ reader: open, read the CRS, stream the points.
#![no_main]

use kestrel_geo::pointcloud::PointCloud;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut pc) = PointCloud::from_bytes("fuzz.laz", data.to_vec()) else { return };
    let _ = pc.crs();
    // A header may declare billions of points; the reader must stop at the data's end.
    if pc.point_count() <= 1 << 20 {
        let _ = pc.summarize(|_| {});
    }
});
