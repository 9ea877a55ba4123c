//! Plain PNG and JPEG images, georeferenced by a world file (`.wld`, `.pgw`, `.jgw`, …) and
//! an optional `.prj`, or not at all (then map coordinates are pixels, x right, y down).
//!
//! These formats cannot be read by window, so the image is decoded once when opened: use
//! GeoTIFF/COG for rasters larger than memory.

use super::{
    check_window, DataType, Level, PixelWindow, RasterBuffer, RasterInfo, RasterSource, Samples,
};
use crate::crs::Crs;
use crate::error::{GeoError, Result};
use crate::georef::{parse_world_file, Georef};
use std::path::Path;

/// A decoded PNG or JPEG image.
pub struct ImageFileSource {
    samples: Samples,
    info: RasterInfo,
}

impl ImageFileSource {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let reader = image::ImageReader::open(path)
            .map_err(|e| GeoError::io(path, e))?
            .with_guessed_format()
            .map_err(|e| GeoError::io(path, e))?;
        let format = match reader.format() {
            Some(image::ImageFormat::Png) => "PNG",
            Some(image::ImageFormat::Jpeg) => "JPEG",
            other => {
                return Err(GeoError::Unsupported {
                    path: path.display().to_string(),
                    problem: format!("image format {other:?}"),
                })
            }
        };
        let img = reader.decode().map_err(|e| GeoError::raster(path, e))?;
        let (width, height) = (img.width(), img.height());
        use image::DynamicImage as D;
        let (bands, samples) = match img {
            D::ImageLuma8(b) => (1, Samples::U8(b.into_raw())),
            D::ImageLumaA8(b) => (2, Samples::U8(b.into_raw())),
            D::ImageRgb8(b) => (3, Samples::U8(b.into_raw())),
            D::ImageRgba8(b) => (4, Samples::U8(b.into_raw())),
            D::ImageLuma16(b) => (1, Samples::U16(b.into_raw())),
            D::ImageLumaA16(b) => (2, Samples::U16(b.into_raw())),
            D::ImageRgb16(b) => (3, Samples::U16(b.into_raw())),
            D::ImageRgba16(b) => (4, Samples::U16(b.into_raw())),
            D::ImageRgb32F(b) => (3, Samples::F32(b.into_raw())),
            D::ImageRgba32F(b) => (4, Samples::F32(b.into_raw())),
            other => (3, Samples::U8(other.to_rgb8().into_raw())),
        };
        let data_type = samples.data_type();
        let info = RasterInfo {
            path: path.display().to_string(),
            format,
            width,
            height,
            bands,
            data_type,
            georef: sidecar_georef(path)?,
            nodata: None,
            levels: vec![Level { width, height }],
            layout: "decoded whole (no windowed access in this format)".into(),
        };
        Ok(ImageFileSource { samples, info })
    }
}

/// Georeferencing from sidecar files beside `path`: a world file (`.wld`, or the three-letter
/// `.pgw`/`.jgw`/`.tfw` form, or the `.pngw`/`.jpgw`/`.tifw` form) and a `.prj` holding WKT.
pub(crate) fn sidecar_georef(path: &Path) -> Result<Option<Georef>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut candidates = vec!["wld".to_string(), format!("{ext}w")];
    if ext.len() >= 2 {
        candidates.push(format!("{}{}w", &ext[..1], &ext[ext.len() - 1..]));
    }
    for cand in candidates {
        for c in [cand.clone(), cand.to_ascii_uppercase()] {
            let wf = path.with_extension(&c);
            if let Ok(text) = std::fs::read_to_string(&wf) {
                let transform = parse_world_file(&text)
                    .ok_or_else(|| GeoError::raster(&wf, "world file does not hold six numbers"))?;
                return Ok(Some(Georef { transform, crs: sidecar_crs(path)? }));
            }
        }
    }
    Ok(None)
}

/// The CRS from side-car files beside `path`: GDAL's PAM file (`path.aux.xml`, its `<SRS>`
/// element) or a `.prj` holding WKT.
pub(crate) fn sidecar_crs(path: &Path) -> Result<Option<Crs>> {
    let aux = std::path::PathBuf::from(format!("{}.aux.xml", path.display()));
    if let Ok(xml) = std::fs::read_to_string(&aux) {
        if let Some(start) = xml.find("<SRS") {
            let body = &xml[start..];
            let open_end = body.find('>').ok_or_else(|| GeoError::raster(&aux, "unterminated <SRS> element"))?;
            let close = body.find("</SRS>").ok_or_else(|| GeoError::raster(&aux, "<SRS> without </SRS>"))?;
            if close > open_end {
                let wkt = body[open_end + 1..close].replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&");
                return Ok(Some(Crs::parse(wkt.trim()).map_err(|e| GeoError::raster(&aux, e))?));
            }
        }
    }
    let prj = path.with_extension("prj");
    match std::fs::read_to_string(&prj) {
        Ok(wkt) => Ok(Some(Crs::parse(&wkt).map_err(|e| GeoError::raster(&prj, e))?)),
        Err(_) => Ok(None),
    }
}

impl RasterSource for ImageFileSource {
    fn info(&self) -> &RasterInfo {
        &self.info
    }

    fn read_window(&self, level: usize, window: PixelWindow) -> Result<RasterBuffer> {
        check_window(&self.info, level, window)?;
        let bands = self.info.bands as usize;
        let width = self.info.width as usize;
        let row_len = window.cols as usize * bands;
        macro_rules! crop {
            ($v:expr, $variant:ident) => {{
                let mut out = Vec::with_capacity(row_len * window.rows as usize);
                for r in 0..window.rows as usize {
                    let start =
                        ((window.row_off as usize + r) * width + window.col_off as usize) * bands;
                    out.extend_from_slice(&$v[start..start + row_len]);
                }
                Samples::$variant(out)
            }};
        }
        let samples = match &self.samples {
            Samples::U8(v) => crop!(v, U8),
            Samples::U16(v) => crop!(v, U16),
            Samples::F32(v) => crop!(v, F32),
            other => unreachable!("image decoder produced {:?}", other.data_type()),
        };
        debug_assert!(matches!(
            self.info.data_type,
            DataType::Byte | DataType::UInt16 | DataType::Float32
        ));
        Ok(RasterBuffer {
            width: window.cols as usize,
            height: window.rows as usize,
            bands,
            samples,
        })
    }
}
