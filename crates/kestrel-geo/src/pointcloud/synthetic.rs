//! Synthetic point clouds with known content, for tests and benchmarks: ground with gentle
//! relief and box-shaped buildings of known height, points spread uniformly.

use crate::error::{GeoError, Result};
use las::point::Classification;
use std::path::Path;

/// A building footprint `[min_x, min_y, max_x, max_y]` (metres from the origin) and roof
/// height above ground.
pub const BUILDINGS: [([f64; 4], f64); 3] = [
    ([50.0, 50.0, 80.0, 70.0], 9.0),
    ([150.0, 120.0, 170.0, 170.0], 15.0),
    ([300.0, 300.0, 360.0, 330.0], 6.0),
];

/// Ground elevation (m) at (x, y) metres from the origin.
pub fn ground_z(x: f64, y: f64) -> f64 {
    100.0 + 0.02 * x + 3.0 * (y / 60.0).sin()
}

/// Writes `points` points over a `side_m`×`side_m` square at (500 000, 4 000 000) to `path`
/// (LAZ when the extension is `.laz`), LAS 1.4 point format 6, centimetre precision.
pub fn write_synthetic_cloud(
    path: impl AsRef<Path>,
    points: u64,
    side_m: f64,
    seed: u64,
) -> Result<()> {
    let path = path.as_ref();
    let err = |e: las::Error| GeoError::write(path, e);
    let mut builder = las::Builder::from((1, 4));
    builder.point_format = las::point::Format::new(6).map_err(err)?;
    let t = |offset| las::Transform {
        scale: 0.01,
        offset,
    };
    builder.transforms = las::Vector {
        x: t(500_000.0),
        y: t(4_000_000.0),
        z: t(0.0),
    };
    let header = builder.into_header().map_err(err)?;
    let mut writer = las::Writer::from_path(path, header).map_err(err)?;
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut unit = move || {
        // xorshift64*: fast and good enough to scatter points.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    };
    for _ in 0..points {
        let (x, y) = (unit() * side_m, unit() * side_m);
        let g = ground_z(x, y);
        let roof = BUILDINGS
            .iter()
            .find(|(b, _)| x >= b[0] && x < b[2] && y >= b[1] && y < b[3])
            .map(|(_, h)| *h);
        let (z, class) = match roof {
            Some(h) => (g + h, Classification::Building),
            None => (g + 0.05 * unit(), Classification::Ground),
        };
        writer
            .write_point(las::Point {
                x: 500_000.0 + x,
                y: 4_000_000.0 + y,
                z,
                intensity: (unit() * 1000.0) as u16,
                return_number: 1,
                number_of_returns: 1,
                classification: class,
                gps_time: Some(0.0),
                ..Default::default()
            })
            .map_err(err)?;
    }
    writer.close().map_err(err)
}
