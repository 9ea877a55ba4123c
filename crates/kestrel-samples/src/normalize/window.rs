//! A colour-normalized window of a raster: the working form from which chips are resampled
//! and orientations estimated.

use super::colour::ColourStats;
use kestrel_geo::{PixelWindow, RasterSource};

/// Band planes in [0, 1] for a window of the full-resolution image.
pub struct NormalizedWindow {
    /// The window's position in the image.
    pub window: PixelWindow,
    pub planes: Vec<Vec<f32>>,
    /// Which pixels hold data (row-major over the window), when the source has nodata
    /// pixels in it; `None`: all do.
    pub valid: Option<Vec<bool>>,
}

/// The normalized value a nodata pixel's colour bands take when the window holds no data
/// at all: the middle of the normalized range, a featureless surface. Where the window
/// holds some data, nodata pixels take the value of the nearest pixel that holds data
/// instead ([`fill_from_nearest_data`]).
pub const NODATA_FILL: f32 = 0.5;

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
        let buf = src.read_window(0, window)?;
        let mut out = Self::from_buffer(&buf, window, bands, |b, v| Self::map(method, stats, nodata, b, v));
        let Some(nodata) = nodata else { return Ok(out) };
        // A pixel is nodata when every band read is nodata (as the colour statistics count
        // it): one black band of a coloured pixel is data.
        let valid: Vec<bool> = (0..buf.width * buf.height)
            .map(|p| {
                !bands.iter().all(|&b| {
                    let v = buf.samples.get_f64(p * buf.bands + b) as f32;
                    v == nodata || !v.is_finite()
                })
            })
            .collect();
        if valid.iter().all(|&v| v) {
            return Ok(out);
        }
        // Only colour bands are filled from their neighbours (an nDSM alone needs no search).
        let nearest = if bands.iter().any(|&b| !method.is_height_band(b)) { nearest_data(&valid, buf.width, buf.height) } else { None };
        for (plane, &b) in out.planes.iter_mut().zip(bands) {
            if method.is_height_band(b) {
                // No height is ground level.
                plane.iter_mut().zip(&valid).filter(|(_, &ok)| !ok).for_each(|(v, _)| *v = 0.0);
            } else {
                fill_from_nearest_data(plane, &valid, nearest.as_deref());
            }
        }
        out.valid = Some(valid);
        Ok(out)
    }

    /// Whether the pixel under image position (x, y) holds data: false outside the window
    /// (the window is clipped to the image) and on nodata.
    pub fn has_data_at(&self, x: f64, y: f64) -> bool {
        let (col, row) = ((x - self.window.col_off as f64).floor(), (y - self.window.row_off as f64).floor());
        if col < 0.0 || row < 0.0 || col >= self.width() as f64 || row >= self.height() as f64 {
            return false;
        }
        self.valid.as_ref().is_none_or(|v| v[row as usize * self.width() + col as usize])
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
        Ok(Self::from_buffer(&src.read_window(0, window)?, window, bands, map))
    }

    fn from_buffer(buf: &kestrel_geo::raster::RasterBuffer, window: PixelWindow, bands: &[usize], map: impl Fn(usize, f32) -> f32) -> Self {
        let n = buf.width * buf.height;
        let planes = bands
            .iter()
            .map(|&b| {
                (0..n)
                    .map(|p| map(b, buf.samples.get_f64(p * buf.bands + b) as f32))
                    .collect()
            })
            .collect();
        NormalizedWindow { window, planes, valid: None }
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

/// For each pixel of a `width`×`height` grid, the index of the nearest pixel for which
/// `valid` holds (Euclidean distance, propagated over 8-neighbours in one pass forward and
/// one back: in rare configurations a pixel farther by less than one is chosen); `None`
/// when no pixel is valid.
fn nearest_data(valid: &[bool], width: usize, height: usize) -> Option<Vec<u32>> {
    const NONE: u32 = u32::MAX;
    if !valid.iter().any(|&v| v) {
        return None;
    }
    let mut nearest: Vec<u32> = valid.iter().enumerate().map(|(i, &v)| if v { i as u32 } else { NONE }).collect();
    let dist2 = |p: usize, q: u32| -> u64 {
        let (px, py, qx, qy) = ((p % width) as i64, (p / width) as i64, (q as usize % width) as i64, (q as usize / width) as i64);
        ((px - qx).pow(2) + (py - qy).pow(2)) as u64
    };
    let relax = |nearest: &mut [u32], p: usize, neighbours: &[(i64, i64)]| {
        let (x, y) = ((p % width) as i64, (p / width) as i64);
        let mut best = nearest[p];
        let mut best_d = if best == NONE { u64::MAX } else { dist2(p, best) };
        for &(dx, dy) in neighbours {
            let (nx, ny) = (x + dx, y + dy);
            if nx < 0 || ny < 0 || nx >= width as i64 || ny >= height as i64 {
                continue;
            }
            let q = nearest[(ny as usize) * width + nx as usize];
            if q == NONE {
                continue;
            }
            let d = dist2(p, q);
            if d < best_d {
                (best, best_d) = (q, d);
            }
        }
        nearest[p] = best;
    };
    for p in 0..width * height {
        relax(&mut nearest, p, &[(-1, 0), (-1, -1), (0, -1), (1, -1)]);
    }
    for p in (0..width * height).rev() {
        relax(&mut nearest, p, &[(1, 0), (1, 1), (0, 1), (-1, 1)]);
    }
    Some(nearest)
}

/// Gives each nodata pixel of `plane` the value of its nearest pixel with data (`nearest`,
/// from [`nearest_data`]), or [`NODATA_FILL`] where the window has none. Why not a constant:
/// a collar of nodata around a turned or reprojected raster then meets the image in a hard
/// straight edge, which the network reads as the side of an object. With the middle grey,
/// on the cars street turned by 60°, a tenth of the detections at the model's threshold
/// were false ones along that edge; training chips never show it, since beyond an image's
/// edge they repeat the edge, which is what the nearest pixel with data gives along a
/// straight frame.
fn fill_from_nearest_data(plane: &mut [f32], valid: &[bool], nearest: Option<&[u32]>) {
    for p in 0..plane.len() {
        if !valid[p] {
            plane[p] = nearest.map_or(NODATA_FILL, |n| plane[n[p] as usize]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::ColourMethod;
    use kestrel_geo::raster::{MemoryRaster, Samples};

    /// Nodata pixels (every band nodata) take the value of the nearest pixel with data and
    /// say they hold no data; a pixel black in one band only is data; a window of nodata
    /// only reads as the neutral fill.
    #[test]
    fn nodata_reads_as_its_nearest_data_and_is_marked() {
        // 4×1 RGB: nodata, (0, 100, 200), two greys.
        let v = vec![0u8, 0, 0, 0, 100, 200, 50, 50, 50, 150, 150, 150];
        let src = MemoryRaster::new("n.tif", 4, 1, 3, Samples::U8(v), None).with_nodata(0.0);
        let stats = ColourStats::from_raster(&src).unwrap();
        let w = NormalizedWindow::read_for(&src, PixelWindow::new(0, 0, 4, 1), &[0, 1, 2], &stats, &ColourMethod::Stretch).unwrap();
        assert!(w.planes.iter().all(|p| p[0] == p[1]), "{:?}", w.planes);
        assert_eq!((0..4).map(|x| w.has_data_at(x as f64 + 0.5, 0.5)).collect::<Vec<_>>(), [false, true, true, true]);
        assert!(!w.has_data_at(4.5, 0.5) && !w.has_data_at(1.5, -0.5), "beyond the window there is no data");
        let only_nodata = NormalizedWindow::read_for(&src, PixelWindow::new(0, 0, 1, 1), &[0, 1, 2], &stats, &ColourMethod::Stretch).unwrap();
        assert!(only_nodata.planes.iter().all(|p| p[0] == NODATA_FILL), "{:?}", only_nodata.planes);
        // Without nodata, every pixel is data and keeps its normalized value.
        let plain = MemoryRaster::new("p.tif", 4, 1, 3, Samples::U8(vec![0, 0, 0, 0, 100, 200, 50, 50, 50, 150, 150, 150]), None);
        let w = NormalizedWindow::read_for(&plain, PixelWindow::new(0, 0, 4, 1), &[0, 1, 2], &stats, &ColourMethod::Stretch).unwrap();
        assert!(w.valid.is_none() && w.has_data_at(0.5, 0.5) && w.planes[0][0] != NODATA_FILL);
    }

    /// A turned frame's collar (nodata beyond a slanted edge, and a hole) is filled from the
    /// nearest pixel with data, as a brute-force search finds it (up to ties).
    #[test]
    fn a_collar_is_filled_from_the_nearest_data() {
        let (w, h) = (23usize, 17usize);
        // Data inside a slanted band and outside a round hole; each data pixel distinct.
        let valid: Vec<bool> = (0..w * h)
            .map(|p| {
                let (x, y) = ((p % w) as f64, (p / w) as f64);
                (y - 0.6 * x).abs() < 6.0 && (x - 12.0).hypot(y - 8.0) > 2.5
            })
            .collect();
        let mut plane: Vec<f32> = (0..w * h).map(|p| if valid[p] { p as f32 } else { -1.0 }).collect();
        let nearest = nearest_data(&valid, w, h);
        fill_from_nearest_data(&mut plane, &valid, nearest.as_deref());
        let d2 = |p: usize, q: usize| ((p % w) as i64 - (q % w) as i64).pow(2) + ((p / w) as i64 - (q / w) as i64).pow(2);
        for p in (0..w * h).filter(|&p| !valid[p]) {
            let best = (0..w * h).filter(|&q| valid[q]).map(|q| d2(p, q)).min().unwrap();
            let got = plane[p] as usize;
            assert!(valid[got], "pixel {p} took a nodata value");
            // Within a pixel of the nearest: the propagation may pick a near-tie.
            let (dg, db) = ((d2(p, got) as f64).sqrt(), (best as f64).sqrt());
            assert!(dg <= db + 1.0, "pixel ({}, {}) filled from {:.2} px away, the nearest data is {:.2} px away", p % w, p / w, dg, db);
        }
        assert!(nearest_data(&[false; 6], 3, 2).is_none());
    }
}
