//! Kestrel's geospatial data layer: georeferencing and CRSs, windowed raster reading and
//! streamed COG writing, LAS/LAZ point clouds and their rasterization into height models,
//! and vector output (GeoJSON, GeoPackage).
//!
//! It knows nothing of samples, models or detections: those crates build on it.

pub mod crs;
pub mod error;
pub mod georef;
pub mod pointcloud;
pub mod raster;
pub mod vector;

pub use crs::{Crs, CrsTransform};
pub use error::{GeoError, Result};
pub use georef::{GeoTransform, Georef};
pub use raster::{open_raster, PixelWindow, RasterBuffer, RasterInfo, RasterSource};

/// What kind of geospatial file a path holds, told by its first bytes (and, for GeoJSON,
/// its extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Raster,
    PointCloud,
    GeoJson,
    GeoPackage,
}

/// Tells a file's kind without parsing it, with an error that names the file.
pub fn sniff(path: impl AsRef<std::path::Path>) -> Result<FileKind> {
    use std::io::Read;
    let path = path.as_ref();
    let mut head = [0u8; 16];
    let mut f = std::fs::File::open(path).map_err(|e| GeoError::io(path, e))?;
    let n = f.read(&mut head).map_err(|e| GeoError::io(path, e))?;
    let head = &head[..n];
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if head.starts_with(b"LASF") {
        Ok(FileKind::PointCloud)
    } else if head.starts_with(b"SQLite format 3") {
        Ok(FileKind::GeoPackage)
    } else if head.starts_with(b"II")
        || head.starts_with(b"MM")
        || head.starts_with(&[0x89, b'P'])
        || head.starts_with(&[0xFF, 0xD8])
    {
        Ok(FileKind::Raster)
    } else if matches!(ext.as_str(), "geojson" | "json") {
        Ok(FileKind::GeoJson)
    } else if matches!(ext.as_str(), "las" | "laz") {
        Err(GeoError::point_cloud(
            path,
            "missing the LASF file signature",
        ))
    } else {
        Err(GeoError::Unsupported {
            path: path.display().to_string(),
            problem: "not a raster (GeoTIFF, PNG, JPEG), point cloud (LAS, LAZ) or vector file (GeoJSON, GeoPackage)".into(),
        })
    }
}
