//! GeoTIFF and Cloud-Optimized GeoTIFF, read by window through the pure-Rust
//! `geotiff-reader` (strips and tiles, every common compression, BigTIFF, overviews).

use super::{
    check_window, DataType, Level, PixelWindow, RasterBuffer, RasterInfo, RasterSource, Samples,
};
use crate::crs::Crs;
use crate::error::{GeoError, Result};
use crate::georef::{GeoTransform, Georef};
use geotiff_reader::GeoTiffFile;
use std::path::Path;
use tiff_reader::{Ifd, TiffFile};

/// A GeoTIFF (or plain TIFF) opened for windowed reading. Holds the IFDs and a bounded
/// block cache, never the pixels of the whole file.
pub struct GeoTiffSource {
    handle: Handle,
    info: RasterInfo,
}

enum Handle {
    Geo(GeoTiffFile),
    #[cfg(feature = "remote")]
    Remote(geotiff_reader::cog::HttpGeoTiffFile),
    /// A TIFF without GeoTIFF tags: `geotiff-reader` refuses those, so the plain reader is
    /// used, with overviews found as reduced-resolution IFDs.
    Plain {
        tiff: TiffFile,
        overview_ifds: Vec<usize>,
    },
}

/// The two ways a handle is read: through its GeoTIFF view, or as a plain TIFF.
enum View<'a> {
    Geo(&'a GeoTiffFile),
    Plain(&'a TiffFile, &'a [usize]),
}

impl Handle {
    fn view(&self) -> View<'_> {
        match self {
            Handle::Geo(f) => View::Geo(f),
            #[cfg(feature = "remote")]
            Handle::Remote(f) => View::Geo(f.inner()),
            Handle::Plain {
                tiff,
                overview_ifds,
            } => View::Plain(tiff, overview_ifds),
        }
    }

    /// The GeoTIFF view, when the file has GeoTIFF tags.
    fn geo(&self) -> Option<&GeoTiffFile> {
        match self.view() {
            View::Geo(f) => Some(f),
            View::Plain(..) => None,
        }
    }

    fn tiff(&self) -> &TiffFile {
        match self.view() {
            View::Geo(f) => f.tiff(),
            View::Plain(tiff, _) => tiff,
        }
    }

    /// The IFD of resolution `level` (0 full, then overviews).
    fn ifd(&self, level: usize) -> std::result::Result<&Ifd, String> {
        match self.view() {
            View::Geo(f) if level == 0 => {
                f.tiff().ifd(f.base_ifd_index()).map_err(|e| e.to_string())
            }
            View::Geo(f) => f.overview_ifd(level - 1).map_err(|e| e.to_string()),
            View::Plain(tiff, overviews) => {
                let index = if level == 0 {
                    0
                } else {
                    *overviews.get(level - 1).ok_or("no such overview")?
                };
                tiff.ifd(index).map_err(|e| e.to_string())
            }
        }
    }

    fn level_count(&self) -> usize {
        match self.view() {
            View::Geo(f) => 1 + f.overview_count(),
            View::Plain(_, overviews) => 1 + overviews.len(),
        }
    }
}

impl GeoTiffSource {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let handle = Self::handle(path, GeoTiffFile::open(path), || TiffFile::open(path))?;
        let mut info = describe(&handle, &path.display().to_string())?;
        match &mut info.georef {
            None => info.georef = super::image_file::sidecar_georef(path)?,
            // A CRS without an EPSG code travels in GDAL's PAM side-car (what our writer
            // and GDAL write for it) or a `.prj`; one that cannot be read leaves the CRS
            // unknown, as it was before side-cars were read.
            Some(g) if g.crs.is_none() => g.crs = super::image_file::sidecar_crs(path).ok().flatten(),
            Some(_) => {}
        }
        Ok(GeoTiffSource { handle, info })
    }

    /// A TIFF held in memory (fuzzing, downloaded bytes); `name` is used in errors.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Self> {
        let handle = Self::handle(
            Path::new(name),
            GeoTiffFile::from_bytes(bytes.clone()),
            || TiffFile::from_bytes(bytes),
        )?;
        let info = describe(&handle, name)?;
        Ok(GeoTiffSource { handle, info })
    }

    /// A COG read by HTTP range requests from `url` (`http(s)://`, or an S3 URL already
    /// presigned); `name` is what errors call it.
    #[cfg(feature = "remote")]
    pub(crate) fn open_http(name: &str, url: &str) -> Result<Self> {
        let f = geotiff_reader::cog::HttpGeoTiffFile::open(url).map_err(|e| match e {
            geotiff_reader::Error::NotGeoTiff => {
                GeoError::raster(name, "remote TIFFs must carry GeoTIFF tags (a COG)")
            }
            other => GeoError::raster(name, other),
        })?;
        let handle = Handle::Remote(f);
        let info = describe(&handle, name)?;
        Ok(GeoTiffSource { handle, info })
    }

    fn handle(
        path: &Path,
        geo: std::result::Result<GeoTiffFile, geotiff_reader::Error>,
        plain: impl FnOnce() -> std::result::Result<TiffFile, tiff_reader::TiffError>,
    ) -> Result<Handle> {
        Ok(match geo {
            Ok(f) => Handle::Geo(f),
            Err(geotiff_reader::Error::NotGeoTiff) => {
                let tiff = plain().map_err(|e| GeoError::raster(path, e))?;
                let base = tiff.ifd(0).map_err(|e| GeoError::raster(path, e))?;
                let (w, h) = (base.width(), base.height());
                let overview_ifds = (1..tiff.ifd_count())
                    .filter(|&i| {
                        tiff.ifd(i).is_ok_and(|ifd| {
                            let reduced = ifd
                                .tag(254)
                                .and_then(|t| t.value.as_u64())
                                .is_some_and(|v| v & 1 == 1);
                            reduced && ifd.width() < w && ifd.height() < h
                        })
                    })
                    .collect();
                Handle::Plain {
                    tiff,
                    overview_ifds,
                }
            }
            Err(e) => return Err(GeoError::raster(path, e)),
        })
    }
}

/// GDAL's nodata tag: the value as ASCII text.
const GDAL_NODATA_TAG: u16 = 42113;

fn describe(handle: &Handle, path: &str) -> Result<RasterInfo> {
    let tiff = handle.tiff();
    let base = handle.ifd(0).map_err(|e| GeoError::raster(path, e))?;
    let layout = base
        .decoded_raster_layout()
        .map_err(|e| GeoError::raster(path, e))?;
    let data_type =
        DataType::from_tiff(layout.sample_format, layout.bits_per_sample).ok_or_else(|| {
            GeoError::raster(
                path,
                format!(
                    "unsupported sample type: format {} with {} bits",
                    layout.sample_format, layout.bits_per_sample
                ),
            )
        })?;
    let mut levels = Vec::new();
    for level in 0..handle.level_count() {
        let ifd = handle.ifd(level).map_err(|e| GeoError::raster(path, e))?;
        levels.push(Level {
            width: ifd.width(),
            height: ifd.height(),
        });
    }
    let file = handle.geo();
    let georef = match file.and_then(|f| f.transform().map(|t| (f, t))) {
        Some((file, t)) => {
            let crs = match file.epsg() {
                Some(code) => Some(
                    Crs::from_epsg(code)
                        .map_err(|e| GeoError::raster(path, format!("georeferenced in {e}")))?,
                ),
                None => None,
            };
            Some(Georef {
                transform: GeoTransform([
                    t.origin_x,
                    t.pixel_width,
                    t.skew_x,
                    t.origin_y,
                    t.skew_y,
                    t.pixel_height,
                ]),
                crs,
            })
        }
        None => None,
    };
    // GDAL writes its nodata tag into plain TIFFs too (a raster without georeferencing):
    // read it from the first IFD when the GeoTIFF reader did not.
    let plain_nodata = match base.tag(GDAL_NODATA_TAG).map(|t| &t.value) {
        Some(tiff_reader::TagValue::Ascii(text)) => Some(text.as_str()),
        _ => None,
    };
    let nodata = file
        .and_then(|f| f.nodata())
        .or(plain_nodata)
        .and_then(|s| s.trim().trim_end_matches('\0').parse::<f64>().ok());
    let mut desc = Vec::new();
    if base.is_tiled() {
        desc.push(format!(
            "tiled {}x{}",
            base.tile_width().unwrap_or(0),
            base.tile_height().unwrap_or(0)
        ));
    } else {
        desc.push(format!("striped, {} rows per strip", base.rows_per_strip()));
    }
    desc.push(compression_name(base.compression()).to_string());
    if base.predictor() > 1 {
        desc.push(format!("predictor {}", base.predictor()));
    }
    desc.push(
        if base.planar_configuration() == 2 {
            "planar"
        } else {
            "chunky"
        }
        .to_string(),
    );
    if tiff.is_bigtiff() {
        desc.push("BigTIFF".into());
    }
    Ok(RasterInfo {
        path: path.to_string(),
        format: "GeoTIFF",
        width: base.width(),
        height: base.height(),
        bands: layout.samples_per_pixel as u16,
        data_type,
        georef,
        nodata,
        levels,
        layout: desc.join(", "),
    })
}

fn compression_name(code: u16) -> &'static str {
    match code {
        1 => "uncompressed",
        5 => "LZW",
        6 | 7 => "JPEG",
        8 | 32946 => "deflate",
        32773 => "PackBits",
        34887 => "LERC",
        50000 => "ZSTD",
        50001 => "WebP",
        _ => "other compression",
    }
}

impl RasterSource for GeoTiffSource {
    fn info(&self) -> &RasterInfo {
        &self.info
    }

    fn read_window(&self, level: usize, window: PixelWindow) -> Result<RasterBuffer> {
        check_window(&self.info, level, window)?;
        let tiff = self.handle.tiff();
        let ifd = self
            .handle
            .ifd(level)
            .map_err(|e| GeoError::raster(&self.info.path, e))?;
        let bytes = tiff
            .read_decoded_window_bytes_from_ifd(
                ifd,
                window.row_off as usize,
                window.col_off as usize,
                window.rows as usize,
                window.cols as usize,
            )
            .map_err(|e| GeoError::raster(&self.info.path, format!("window {window}: {e}")))?;
        let bands = self.info.bands as usize;
        let expected =
            window.cols as usize * window.rows as usize * bands * self.info.data_type.size_bytes();
        if bytes.len() != expected {
            return Err(GeoError::raster(
                &self.info.path,
                format!(
                    "window {window} decoded to {} bytes, expected {expected}",
                    bytes.len()
                ),
            ));
        }
        Ok(RasterBuffer {
            width: window.cols as usize,
            height: window.rows as usize,
            bands,
            samples: Samples::from_ne_bytes(self.info.data_type, &bytes),
        })
    }
}
