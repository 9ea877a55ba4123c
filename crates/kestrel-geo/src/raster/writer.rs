//! Writes tiled, compressed Cloud-Optimized GeoTIFFs tile by tile: height models and score
//! maps are produced in strips and never held whole in memory by the writer (its tile store
//! is a temporary file until `finish` lays out the COG).

use crate::error::{GeoError, Result};
use crate::georef::Georef;
use geotiff_writer::{
    CogBuilder, CogTileWriter, Compression, GeoTiffBuilder, NumericSample, Predictor, Resampling,
};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// How to lay out the COG.
#[derive(Clone, Debug)]
pub struct CogWriterOptions {
    /// Tile edge in pixels (multiple of 16).
    pub tile_size: u32,
    /// Value written where there is no data, also declared in the file.
    pub nodata: Option<f64>,
    /// Overview decimation factors, e.g. `[2, 4, 8]`; empty for none.
    pub overview_levels: Vec<u32>,
}

impl Default for CogWriterOptions {
    fn default() -> Self {
        CogWriterOptions {
            tile_size: 256,
            nodata: None,
            overview_levels: vec![2, 4, 8],
        }
    }
}

/// A COG being written tile by tile. Tiles are `tile_size`² blocks at multiples of
/// `tile_size` (edge tiles cropped to the raster), pixel-interleaved.
pub struct CogWriter<T: NumericSample> {
    inner: CogTileWriter<T, BufWriter<File>>,
    path: PathBuf,
    bands: usize,
    pub tile_size: u32,
}

impl<T: NumericSample> CogWriter<T> {
    pub fn create(
        path: impl AsRef<Path>,
        width: u32,
        height: u32,
        bands: u32,
        georef: Option<&Georef>,
        options: &CogWriterOptions,
    ) -> Result<Self> {
        let path = path.as_ref();
        let mut builder = GeoTiffBuilder::new(width, height)
            .bands(bands)
            .tile_size(options.tile_size, options.tile_size)
            .compression(Compression::Deflate)
            .predictor(if T::SAMPLE_FORMAT == 3 {
                Predictor::FloatingPoint
            } else {
                Predictor::Horizontal
            });
        if let Some(nd) = options.nodata {
            builder = builder.nodata(&format_nodata(nd));
        }
        if let Some(g) = georef {
            let t = g.transform.0;
            builder = builder.transform(geotiff_writer::GeoTransform {
                origin_x: t[0],
                pixel_width: t[1],
                skew_x: t[2],
                origin_y: t[3],
                skew_y: t[4],
                pixel_height: t[5],
            });
            match g
                .crs
                .as_ref()
                .map(|c| (c.epsg.and_then(|e| u16::try_from(e).ok()), c))
            {
                Some((Some(code), crs)) if crs.is_geographic() => {
                    builder = builder.geographic_epsg(code)
                }
                Some((Some(code), _)) => builder = builder.projected_epsg(code),
                Some((None, crs)) => write_aux_xml_srs(path, crs)?,
                None => {}
            }
        }
        let mut cog = CogBuilder::new(builder).resampling(Resampling::Average);
        let max_level = width.max(height).div_ceil(options.tile_size).max(1);
        let levels: Vec<u32> = options
            .overview_levels
            .iter()
            .copied()
            .filter(|&l| l <= max_level.next_power_of_two())
            .collect();
        cog = if levels.is_empty() {
            cog.no_overviews()
        } else {
            cog.overview_levels(levels)
        };
        let inner = cog
            .tile_writer_file::<T, _>(path)
            .map_err(|e| GeoError::write(path, e))?;
        Ok(CogWriter {
            inner,
            path: path.to_path_buf(),
            bands: bands as usize,
            tile_size: options.tile_size,
        })
    }

    /// Writes the tile whose top-left pixel is (`col_off`, `row_off`); `data` holds
    /// `rows`×`cols`×bands samples.
    pub fn write_tile(
        &mut self,
        col_off: u32,
        row_off: u32,
        cols: usize,
        rows: usize,
        data: &[T],
    ) -> Result<()> {
        let arr = ndarray::ArrayView3::from_shape((rows, cols, self.bands), data)
            .map_err(|e| GeoError::write(&self.path, format!("tile shape: {e}")))?;
        self.inner
            .write_tile_3d(col_off as usize, row_off as usize, &arr)
            .map_err(|e| GeoError::write(&self.path, e))
    }

    /// Builds overviews and writes the final COG layout.
    pub fn finish(self) -> Result<()> {
        let mut sink = self
            .inner
            .finish()
            .map_err(|e| GeoError::write(&self.path, e))?;
        sink.flush().map_err(|e| GeoError::io(&self.path, e))
    }
}

fn format_nodata(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A CRS without an EPSG code cannot be written as GeoKeys by this writer; GDAL and QGIS
/// read it from the PAM side-car instead.
fn write_aux_xml_srs(path: &Path, crs: &crate::crs::Crs) -> Result<()> {
    let Some(wkt) = crs.to_wkt() else {
        return Ok(());
    };
    let aux = PathBuf::from(format!("{}.aux.xml", path.display()));
    let escaped = wkt
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    std::fs::write(
        &aux,
        format!("<PAMDataset>\n  <SRS>{escaped}</SRS>\n</PAMDataset>\n"),
    )
    .map_err(|e| GeoError::io(&aux, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CRS that has no EPSG code (Autzen's ESRI Lambert in feet) leaves in the PAM
    /// side-car and comes back on reading: GSD in metres and label reprojection need it.
    #[test]
    fn a_crs_without_epsg_code_survives_writing_and_reading() {
        let wkt = r#"PROJCS["NAD_1983_HARN_Lambert_Conformal_Conic",GEOGCS["GCS_North_American_1983_HARN",DATUM["NAD83_High_Accuracy_Regional_Network",SPHEROID["GRS_1980",6378137,298.257222101]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Lambert_Conformal_Conic_2SP"],PARAMETER["standard_parallel_1",43],PARAMETER["standard_parallel_2",45.5],PARAMETER["latitude_of_origin",41.75],PARAMETER["central_meridian",-120.5],PARAMETER["false_easting",1312335.958005249],PARAMETER["false_northing",0],UNIT["foot",0.3048]]"#;
        let crs = crate::Crs::parse(wkt).expect("WKT");
        assert!(crs.epsg.is_none(), "the test needs a CRS without EPSG code");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("feet.tif");
        let georef = crate::Georef { transform: crate::GeoTransform::north_up(636_000.0, 849_500.0, 1.0, 1.0), crs: Some(crs) };
        let opts = CogWriterOptions { tile_size: 256, nodata: None, overview_levels: vec![] };
        let mut w = CogWriter::<u8>::create(&path, 16, 16, 1, Some(&georef), &opts).expect("writer");
        w.write_tile(0, 0, 16, 16, &[7u8; 256]).expect("tile");
        w.finish().expect("finish");
        let back = crate::open_raster(&path).expect("read back");
        let g = back.info().georef.clone().expect("georeferenced");
        let c = g.crs.clone().expect("the CRS came back from the side-car");
        assert!((c.linear_unit_m().expect("unit") - 0.3048).abs() < 1e-12);
        let (gsd_x, _) = g.gsd_xy_m(44.0).expect("GSD");
        assert!((gsd_x - 0.3048).abs() < 1e-9, "1 ft pixels are 0.3048 m, got {gsd_x}");
    }
}
