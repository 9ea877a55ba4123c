//! Kestrel's geospatial data layer: georeferencing and CRSs, windowed raster reading and
//! streamed COG writing, LAS/LAZ point clouds and their rasterization into height models,
//! and vector output (GeoJSON, GeoPackage).
//!
//! It knows nothing of samples, models or detections: those crates build on it.

pub mod crs;
pub mod error;
pub mod georef;
pub mod raster;

pub use crs::{Crs, CrsTransform};
pub use error::{GeoError, Result};
pub use georef::{GeoTransform, Georef};
pub use raster::{open_raster, PixelWindow, RasterBuffer, RasterInfo, RasterSource};
