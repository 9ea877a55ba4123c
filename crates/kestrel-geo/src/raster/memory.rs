//! A raster held in memory (chunky, one level): for generated and transformed images, such
//! as the robustness evaluation's rotated, rescaled and re-coloured copies of a test image.

use super::{check_window, DataType, Level, PixelWindow, RasterBuffer, RasterInfo, RasterSource, Samples};
use crate::error::Result;
use crate::georef::Georef;

pub struct MemoryRaster {
    info: RasterInfo,
    /// Chunky samples: `(row · width + col) · bands + band`.
    samples: Samples,
}

impl MemoryRaster {
    /// `samples` must hold `width · height · bands` values, chunky.
    /// The same raster with `nodata` marking pixels that carry no data (e.g. the fill
    /// around a turned image).
    pub fn with_nodata(mut self, nodata: f64) -> Self {
        self.info.nodata = Some(nodata);
        self
    }

    pub fn new(name: &str, width: u32, height: u32, bands: u16, samples: Samples, georef: Option<Georef>) -> Self {
        assert_eq!(samples.len(), width as usize * height as usize * bands as usize, "sample count of {name}");
        let info = RasterInfo {
            path: name.to_string(),
            format: "memory",
            width,
            height,
            bands,
            data_type: samples.data_type(),
            georef,
            nodata: None,
            levels: vec![Level { width, height }],
            layout: "in memory, chunky".into(),
        };
        MemoryRaster { info, samples }
    }

    pub fn data_type(&self) -> DataType {
        self.info.data_type
    }
}

impl RasterSource for MemoryRaster {
    fn info(&self) -> &RasterInfo {
        &self.info
    }

    fn read_window(&self, level: usize, window: PixelWindow) -> Result<RasterBuffer> {
        check_window(&self.info, level, window)?;
        let (w, b) = (self.info.width as usize, self.info.bands as usize);
        let (c0, r0, cols, rows) = (window.col_off as usize, window.row_off as usize, window.cols as usize, window.rows as usize);
        macro_rules! cut {
            ($v:expr, $variant:ident) => {{
                let mut out = Vec::with_capacity(cols * rows * b);
                for r in r0..r0 + rows {
                    out.extend_from_slice(&$v[((r * w) + c0) * b..((r * w) + c0 + cols) * b]);
                }
                Samples::$variant(out)
            }};
        }
        let samples = match &self.samples {
            Samples::U8(v) => cut!(v, U8),
            Samples::I8(v) => cut!(v, I8),
            Samples::U16(v) => cut!(v, U16),
            Samples::I16(v) => cut!(v, I16),
            Samples::U32(v) => cut!(v, U32),
            Samples::I32(v) => cut!(v, I32),
            Samples::F32(v) => cut!(v, F32),
            Samples::F64(v) => cut!(v, F64),
        };
        Ok(RasterBuffer { width: cols, height: rows, bands: b, samples })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_cut_from_the_chunky_samples() {
        // 3×2, two bands: value = 10·row + col, band 1 negated.
        let v: Vec<f32> = (0..2).flat_map(|r| (0..3).flat_map(move |c| [(10 * r + c) as f32, -((10 * r + c) as f32)])).collect();
        let m = MemoryRaster::new("m", 3, 2, 2, Samples::F32(v), None);
        let w = m.read_window(0, PixelWindow::new(1, 1, 2, 1)).unwrap();
        assert_eq!((w.get(0, 0, 0), w.get(1, 0, 0), w.get(1, 0, 1)), (11.0, 12.0, -12.0));
        assert!(m.read_window(0, PixelWindow::new(2, 0, 2, 1)).is_err());
    }
}
