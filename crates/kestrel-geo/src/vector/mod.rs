//! Vector output: polygon features with attributes, written as GeoJSON (RFC 7946 lon/lat,
//! or kept in the source CRS) and as GeoPackage (opens in GDAL ≥ 3.6 and QGIS).

mod geojson_file;
mod gpkg;

pub use geojson_file::{write_geojson, GeoJsonOptions};
pub use gpkg::write_geopackage;

use serde::Serialize;

/// A polygon feature: one closed exterior ring in map (or pixel) coordinates, and its
/// attributes.
#[derive(Clone, Debug, Serialize)]
pub struct Feature {
    /// Exterior ring; the first point is repeated at the end by the writers if needed.
    pub ring: Vec<(f64, f64)>,
    pub properties: serde_json::Map<String, serde_json::Value>,
}

/// Closes a ring (first point repeated last) and orients it counter-clockwise, as RFC 7946
/// asks of exterior rings.
pub(crate) fn closed_ccw_ring(ring: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut r = ring.to_vec();
    if r.first() != r.last() {
        if let Some(&p) = r.first() {
            r.push(p);
        }
    }
    let twice_area: f64 = r
        .windows(2)
        .map(|w| w[0].0 * w[1].1 - w[1].0 * w[0].1)
        .sum();
    if twice_area < 0.0 {
        r.reverse();
    }
    r
}

/// Summary of a vector file for `kestrel info`.
#[derive(Clone, Debug, Serialize)]
pub struct VectorInfo {
    pub path: String,
    pub format: &'static str,
    pub layers: Vec<LayerInfo>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerInfo {
    pub name: String,
    pub features: u64,
    pub geometry_types: Vec<String>,
    /// "EPSG:4326" for RFC 7946 GeoJSON, or what the file declares.
    pub crs: Option<String>,
    /// `[min_x, min_y, max_x, max_y]`
    pub bounds: Option<[f64; 4]>,
}

pub use geojson_file::describe_geojson;
pub use gpkg::describe_geopackage;
