//! Raster sources: read any window of a georeferenced raster, at full resolution or from an
//! overview, without reading the whole file; and write tiled GeoTIFF/COG tile by tile.
//!
//! Which windows to read is the caller's business (tiling lives in detection); this module
//! only reads the window it is asked for.

mod buffer;
mod geotiff;
mod image_file;
mod memory;
#[cfg(feature = "remote")]
mod remote;
mod writer;

pub use buffer::{DataType, RasterBuffer, Samples};
pub use geotiff::GeoTiffSource;
pub use image_file::ImageFileSource;
pub use memory::MemoryRaster;
pub use writer::{CogWriter, CogWriterOptions};

/// True for URIs (`http(s)://`, `s3://`) that name a remote raster.
pub fn is_remote(uri: &str) -> bool {
    ["http://", "https://", "s3://"]
        .iter()
        .any(|p| uri.starts_with(p))
}

use crate::error::{GeoError, Result};
use crate::georef::Georef;
use serde::Serialize;
use std::path::Path;

/// A rectangle of pixels: `cols`×`rows` starting at (`col_off`, `row_off`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PixelWindow {
    pub col_off: u32,
    pub row_off: u32,
    pub cols: u32,
    pub rows: u32,
}

impl PixelWindow {
    pub fn new(col_off: u32, row_off: u32, cols: u32, rows: u32) -> Self {
        PixelWindow {
            col_off,
            row_off,
            cols,
            rows,
        }
    }

    /// The whole of a `width`×`height` grid.
    pub fn full(width: u32, height: u32) -> Self {
        PixelWindow::new(0, 0, width, height)
    }

    fn fits(&self, width: u32, height: u32) -> bool {
        self.cols > 0
            && self.rows > 0
            && u64::from(self.col_off) + u64::from(self.cols) <= u64::from(width)
            && u64::from(self.row_off) + u64::from(self.rows) <= u64::from(height)
    }
}

impl std::fmt::Display for PixelWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}x{}+{}+{}",
            self.cols, self.rows, self.col_off, self.row_off
        )
    }
}

/// One resolution level of a raster: level 0 is full resolution, then overviews.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Level {
    pub width: u32,
    pub height: u32,
}

/// What a raster is, as `kestrel info` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct RasterInfo {
    /// File path or URL.
    pub path: String,
    /// "GeoTIFF", "PNG", "JPEG".
    pub format: &'static str,
    pub width: u32,
    pub height: u32,
    pub bands: u16,
    pub data_type: DataType,
    /// Georeferencing, when the file (or its world file) carries one.
    pub georef: Option<Georef>,
    pub nodata: Option<f64>,
    /// Level 0 (full resolution) followed by the overviews, largest first.
    pub levels: Vec<Level>,
    /// Storage layout details ("tiled 512x512, deflate, predictor 2, chunky, BigTIFF").
    pub layout: String,
}

impl RasterInfo {
    /// Ground sample distance in metres along x and y, when the georeferencing tells it.
    pub fn gsd_xy_m(&self) -> Option<(f64, f64)> {
        let georef = self.georef.as_ref()?;
        let centre_lat = self
            .extent_lonlat()
            .map(|e| (e[1] + e[3]) / 2.0)
            .unwrap_or(0.0);
        georef.gsd_xy_m(centre_lat)
    }

    /// Extent `[min_lon, min_lat, max_lon, max_lat]`, when the CRS is known.
    pub fn extent_lonlat(&self) -> Option<[f64; 4]> {
        self.georef
            .as_ref()?
            .extent_lonlat(self.width, self.height)
            .ok()
    }

    /// The summary `kestrel info --json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        let crs = self.georef.as_ref().and_then(|g| g.crs.as_ref());
        serde_json::json!({
            "kind": "raster",
            "path": self.path,
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "bands": self.bands,
            "data_type": self.data_type.name(),
            "gdal_data_type": self.data_type.gdal_name(),
            "nodata": self.nodata,
            "georeferenced": self.georef.is_some(),
            "geotransform": self.georef.as_ref().map(|g| g.transform.0),
            "epsg": crs.and_then(|c| c.epsg),
            "crs": crs.map(|c| c.label()),
            "crs_name": crs.map(|c| c.name.clone()),
            "gsd_m": self.gsd_xy_m().map(|(x, y)| (x * y).sqrt()),
            "gsd_xy_m": self.gsd_xy_m().map(|(x, y)| [x, y]),
            "extent_lonlat": self.extent_lonlat(),
            "overviews": self.levels.iter().skip(1).map(|l| [l.width, l.height]).collect::<Vec<_>>(),
            "layout": self.layout,
        })
    }

    /// Size of the given level, or an error naming the file.
    pub fn level(&self, level: usize) -> Result<Level> {
        self.levels.get(level).copied().ok_or_else(|| {
            GeoError::raster(
                &self.path,
                format!(
                    "no overview level {level} (it has {} levels)",
                    self.levels.len()
                ),
            )
        })
    }
}

/// A raster that can be read window by window. Implementations hold only metadata and a
/// bounded block cache, never the whole raster (PNG/JPEG, which cannot be read by window,
/// are the documented exception).
pub trait RasterSource: Send + Sync {
    fn info(&self) -> &RasterInfo;

    /// Reads `window` of resolution `level` (0 = full resolution; 1.. = overviews) as
    /// pixel-interleaved samples of the raster's own data type.
    fn read_window(&self, level: usize, window: PixelWindow) -> Result<RasterBuffer>;
}

/// Checks a window against a level's size, with an error that names the file.
pub(crate) fn check_window(info: &RasterInfo, level: usize, window: PixelWindow) -> Result<()> {
    let l = info.level(level)?;
    if window.fits(l.width, l.height) {
        Ok(())
    } else {
        Err(GeoError::Window {
            path: info.path.clone(),
            window: window.to_string(),
            width: l.width,
            height: l.height,
        })
    }
}

/// Opens a raster by its content (TIFF magic, PNG, JPEG), not by its extension alone; or a
/// remote COG by URI (`http(s)://…`, `s3://bucket/key`).
pub fn open_raster(path: impl AsRef<Path>) -> Result<Box<dyn RasterSource>> {
    let path = path.as_ref();
    if let Some(uri) = path.to_str().filter(|s| is_remote(s)) {
        #[cfg(feature = "remote")]
        return Ok(Box::new(remote::open_remote(uri)?));
        #[cfg(not(feature = "remote"))]
        return Err(GeoError::Unsupported {
            path: uri.to_string(),
            problem: "this build has no remote access (cargo feature `remote`)".into(),
        });
    }
    let mut magic = [0u8; 4];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| GeoError::io(path, e))?;
        let n = f.read(&mut magic).map_err(|e| GeoError::io(path, e))?;
        if n < 4 {
            return Err(GeoError::raster(path, "file is too short to be an image"));
        }
    }
    match magic {
        [b'I', b'I', 42, 0] | [b'M', b'M', 0, 42] | [b'I', b'I', 43, 0] | [b'M', b'M', 0, 43] => {
            Ok(Box::new(GeoTiffSource::open(path)?))
        }
        [0x89, b'P', b'N', b'G'] | [0xFF, 0xD8, 0xFF, _] => {
            Ok(Box::new(ImageFileSource::open(path)?))
        }
        _ => Err(GeoError::Unsupported {
            path: path.display().to_string(),
            problem: format!(
                "unrecognised magic bytes {:02x} {:02x} {:02x} {:02x} (expected TIFF, PNG or JPEG)",
                magic[0], magic[1], magic[2], magic[3]
            ),
        }),
    }
}
