//! A colour-normalized window of a raster: the working form from which chips are resampled
//! and orientations estimated.

use super::colour::ColourStats;
use kestrel_geo::{PixelWindow, RasterSource};

/// Band planes in [0, 1] for a window of the full-resolution image.
pub struct NormalizedWindow {
    /// The window's position in the image.
    pub window: PixelWindow,
    pub planes: Vec<Vec<f32>>,
}

impl NormalizedWindow {
    /// Reads `window` (clipped to the image) and normalizes `bands` (0-based) with `stats`'
    /// quantile mapping: the radiometry of chips.
    pub fn read(
        src: &dyn RasterSource,
        window: PixelWindow,
        bands: &[usize],
        stats: &ColourStats,
    ) -> kestrel_geo::Result<Self> {
        Self::read_with(src, window, bands, |b, v| stats.normalize(b, v))
    }

    /// Reads `window` with the contract's colour method: the radiometry of chips.
    pub fn read_for(
        src: &dyn RasterSource,
        window: PixelWindow,
        bands: &[usize],
        stats: &ColourStats,
        method: &super::ColourMethod,
    ) -> kestrel_geo::Result<Self> {
        let nodata = src.info().nodata.map(|n| n as f32);
        Self::read_with(src, window, bands, |b, v| Self::map(method, stats, nodata, b, v))
    }

    /// One value of source band `b` as `method` normalizes it.
    fn map(method: &super::ColourMethod, stats: &ColourStats, nodata: Option<f32>, b: usize, v: f32) -> f32 {
        match method {
            super::ColourMethod::Quantile { .. } => stats.normalize(b, v),
            super::ColourMethod::Stretch => stats.stretch(b, v).clamp(-0.5, 1.5),
            super::ColourMethod::WithHeights { colour, height_bands } => {
                if height_bands.contains(&b) {
                    if Some(v) == nodata || !v.is_finite() {
                        0.0
                    } else {
                        v.max(0.0) / super::HEIGHT_SCALE_M
                    }
                } else {
                    Self::map(colour, stats, nodata, b, v)
                }
            }
        }
    }

    /// Reads `window` with a linear 2–98 % stretch: the radiometry of geometric analysis.
    pub fn read_stretched(
        src: &dyn RasterSource,
        window: PixelWindow,
        bands: &[usize],
        stats: &ColourStats,
    ) -> kestrel_geo::Result<Self> {
        Self::read_with(src, window, bands, |b, v| stats.stretch(b, v))
    }

    fn read_with(
        src: &dyn RasterSource,
        window: PixelWindow,
        bands: &[usize],
        map: impl Fn(usize, f32) -> f32,
    ) -> kestrel_geo::Result<Self> {
        let buf = src.read_window(0, window)?;
        let n = buf.width * buf.height;
        let planes = bands
            .iter()
            .map(|&b| {
                (0..n)
                    .map(|p| map(b, buf.samples.get_f64(p * buf.bands + b) as f32))
                    .collect()
            })
            .collect();
        Ok(NormalizedWindow { window, planes })
    }

    /// The window around a centre (image pixels) with the given radius, clipped to the image.
    pub fn around(
        width: u32,
        height: u32,
        cx: f64,
        cy: f64,
        radius_px: f64,
    ) -> Option<PixelWindow> {
        let x0 = (cx - radius_px).floor().max(0.0) as u32;
        let y0 = (cy - radius_px).floor().max(0.0) as u32;
        let x1 = ((cx + radius_px).ceil() as u32).min(width);
        let y1 = ((cy + radius_px).ceil() as u32).min(height);
        (x1 > x0 && y1 > y0).then(|| PixelWindow::new(x0, y0, x1 - x0, y1 - y0))
    }

    pub fn width(&self) -> usize {
        self.window.cols as usize
    }

    pub fn height(&self) -> usize {
        self.window.rows as usize
    }

    /// Bilinear sample of every plane at image pixel coordinates (x, y) (pixel centres at
    /// +0.5; outside the window the edge is repeated), added onto `acc` (one value per plane):
    /// the position and weights are worked out once for all bands.
    pub fn accumulate(&self, x: f64, y: f64, acc: &mut [f32]) {
        let (w, h) = (self.width(), self.height());
        let fx = (x - self.window.col_off as f64 - 0.5).clamp(0.0, (w - 1) as f64);
        let fy = (y - self.window.row_off as f64 - 0.5).clamp(0.0, (h - 1) as f64);
        let (x0, y0) = (fx as usize, fy as usize); // non-negative: truncation is floor
        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
        let (tx, ty) = ((fx - x0 as f64) as f32, (fy - y0 as f64) as f32);
        let (a, b, c, d) = ((1.0 - tx) * (1.0 - ty), tx * (1.0 - ty), (1.0 - tx) * ty, tx * ty);
        let (i00, i01, i10, i11) = (y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1);
        for (p, out) in self.planes.iter().zip(acc.iter_mut()) {
            *out += p[i00] * a + p[i01] * b + p[i10] * c + p[i11] * d;
        }
    }
}
