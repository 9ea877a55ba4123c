//! Radiometric normalization by per-band quantile mapping: each band value becomes its
//! quantile in the image's own distribution, in [0, 1]. Any monotonic change of a band —
//! bit depth (u8 vs u16 vs float), gain and offset (white balance, exposure), gamma — leaves
//! the quantiles unchanged, so images of different sensors and lighting become comparable.
//!
//! The statistics come from a sample of the raster (a coarse overview, or a few windows),
//! never from the whole raster in memory.

use kestrel_geo::{PixelWindow, RasterSource};
use serde::{Deserialize, Serialize};

/// Number of quantile intervals stored per band.
pub const QUANTILES: usize = 256;

/// The per-band quantile tables of one image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColourStats {
    /// `bands[b]` holds `QUANTILES + 1` ascending values: the 0th … 100th percentiles.
    pub bands: Vec<Vec<f32>>,
    /// How many pixels the statistics were computed from.
    pub pixels_sampled: u64,
}

/// Most pixels read to compute statistics.
const MAX_SAMPLE_PIXELS: u64 = 1 << 20;

impl ColourStats {
    /// Samples the raster: the coarsest level that still has at least 256×256 pixels, read
    /// in up to 16 windows of at most 256×256 spread over it.
    pub fn from_raster(src: &dyn RasterSource) -> kestrel_geo::Result<Self> {
        let info = src.info();
        let level = (0..info.levels.len())
            .rev()
            .find(|&l| info.levels[l].width >= 256 && info.levels[l].height >= 256)
            .unwrap_or(0);
        let l = info.levels[level];
        let bands = info.bands as usize;
        let nodata = info.nodata;
        let mut values: Vec<Vec<f32>> = vec![Vec::new(); bands];
        let (ww, wh) = (l.width.min(256), l.height.min(256));
        let grid = 4u32;
        let mut seen = std::collections::HashSet::new();
        for gy in 0..grid {
            for gx in 0..grid {
                let col = (l.width - ww) * gx / (grid - 1).max(1);
                let row = (l.height - wh) * gy / (grid - 1).max(1);
                if !seen.insert((col, row)) {
                    continue;
                }
                let buf = src.read_window(level, PixelWindow::new(col, row, ww, wh))?;
                let pixels = buf.width * buf.height;
                let step =
                    ((pixels as u64 * seen.len() as u64) / MAX_SAMPLE_PIXELS).max(1) as usize;
                for p in (0..pixels).step_by(step) {
                    let px: Vec<f64> = (0..bands)
                        .map(|b| buf.samples.get_f64(p * bands + b))
                        .collect();
                    if nodata.is_some_and(|nd| px.iter().all(|&v| v == nd)) {
                        continue;
                    }
                    for (b, v) in px.into_iter().enumerate() {
                        values[b].push(v as f32);
                    }
                }
            }
        }
        Ok(Self::from_values(values))
    }

    /// Statistics from per-band sample values.
    pub fn from_values(mut values: Vec<Vec<f32>>) -> Self {
        let pixels_sampled = values.first().map(|v| v.len() as u64).unwrap_or(0);
        let bands = values
            .iter_mut()
            .map(|v| {
                v.retain(|x| x.is_finite());
                v.sort_by(f32::total_cmp);
                if v.is_empty() {
                    return vec![0.0; QUANTILES + 1];
                }
                (0..=QUANTILES)
                    .map(|q| v[(q * (v.len() - 1)) / QUANTILES])
                    .collect()
            })
            .collect();
        ColourStats {
            bands,
            pixels_sampled,
        }
    }

    /// The quantile of `value` in band `band`, in [0, 1]. A value shared by a run of equal
    /// quantiles (common in 8-bit data) maps to the middle of the run, so that ties do not
    /// all fall on one end.
    pub fn normalize(&self, band: usize, value: f32) -> f32 {
        let q = &self.bands[band];
        let n = q.len() - 1;
        let lo = q.partition_point(|&x| x < value); // first >= value
        let hi = q.partition_point(|&x| x <= value); // first > value
        let pos = if lo < hi {
            // value equals q[lo..hi]
            (lo + hi - 1) as f32 / 2.0
        } else if lo == 0 {
            0.0
        } else if lo > n {
            n as f32
        } else {
            let (a, b) = (q[lo - 1], q[lo]);
            (lo - 1) as f32 + (value - a) / (b - a)
        };
        pos / n as f32
    }
}

impl ColourStats {
    /// A linear stretch of band `band` from its 2nd to its 98th percentile onto [0, 1]
    /// (not clamped). Unlike the quantile mapping it keeps the shape of the histogram: the
    /// geometric analysis (orientation) uses it, because quantile mapping magnifies the
    /// small variations of whatever dominates the image (grass, asphalt).
    pub fn stretch(&self, band: usize, value: f32) -> f32 {
        let q = &self.bands[band];
        let (lo, hi) = (q[QUANTILES * 2 / 100], q[QUANTILES * 98 / 100]);
        if hi > lo {
            (value - lo) / (hi - lo)
        } else {
            0.5
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_changes_leave_normalized_values_unchanged() {
        let base: Vec<f32> = (0..5000)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
            .collect();
        let a = ColourStats::from_values(vec![base.iter().map(|v| (v * 255.0).round()).collect()]);
        let b = ColourStats::from_values(vec![base
            .iter()
            .map(|v| (v.powf(0.5) * 65535.0).round())
            .collect()]);
        for &v in &[0.1f32, 0.37, 0.5, 0.9] {
            let na = a.normalize(0, (v * 255.0).round());
            let nb = b.normalize(0, (v.powf(0.5) * 65535.0).round());
            assert!((na - nb).abs() < 0.01, "{v}: {na} vs {nb}");
            assert!(
                (na - v).abs() < 0.01,
                "uniform data maps to itself: {v} -> {na}"
            );
        }
        assert_eq!(a.normalize(0, -5.0), 0.0);
        assert_eq!(a.normalize(0, 1e9), 1.0);
    }
}
