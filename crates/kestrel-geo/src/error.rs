//! The one error type of the geospatial layer: every variant names the file (or URL) and
//! what is wrong with it, so a user can act on the message without a backtrace.

use std::path::Path;

/// Errors raised while reading, writing or reprojecting geospatial data.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a readable raster: {problem}")]
    Raster { path: String, problem: String },
    #[error("{path}: not a readable point cloud: {problem}")]
    PointCloud { path: String, problem: String },
    #[error("{path}: unsupported format: {problem}")]
    Unsupported { path: String, problem: String },
    #[error("coordinate reference system: {0}")]
    Crs(String),
    #[error("{path}: window {window} lies outside the {width}x{height} raster")]
    Window {
        path: String,
        window: String,
        width: u32,
        height: u32,
    },
    #[error("{path}: cannot write: {problem}")]
    Write { path: String, problem: String },
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl GeoError {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        GeoError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
    pub fn raster(path: impl AsRef<Path>, problem: impl ToString) -> Self {
        GeoError::Raster {
            path: path.as_ref().display().to_string(),
            problem: problem.to_string(),
        }
    }
    pub fn point_cloud(path: impl AsRef<Path>, problem: impl ToString) -> Self {
        GeoError::PointCloud {
            path: path.as_ref().display().to_string(),
            problem: problem.to_string(),
        }
    }
    pub fn write(path: impl AsRef<Path>, problem: impl ToString) -> Self {
        GeoError::Write {
            path: path.as_ref().display().to_string(),
            problem: problem.to_string(),
        }
    }
}

pub type Result<T, E = GeoError> = std::result::Result<T, E>;
