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

impl ColourStats {
    /// The value at percentile `p` (0–100) of band `band`.
    pub fn percentile(&self, band: usize, p: f64) -> f32 {
        let q = &self.bands[band];
        q[((p / 100.0) * QUANTILES as f64).round().clamp(0.0, QUANTILES as f64) as usize]
    }

    /// Where band `band`'s median lies between its 2nd and 98th percentiles, 0–1: the
    /// histogram's shape, which gain and offset keep and gamma or lighting change.
    pub fn median_position(&self, band: usize) -> f64 {
        let (lo, mid, hi) = (self.percentile(band, 2.0), self.percentile(band, 50.0), self.percentile(band, 98.0));
        if hi > lo {
            f64::from((mid - lo) / (hi - lo))
        } else {
            0.5
        }
    }
}

/// The radiometry a model was trained on, per input band (the contract's order): the median
/// over the training images of each band's median position and 98th percentile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Radiometry {
    pub median_position: Vec<f64>,
    pub p98: Vec<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

impl Radiometry {
    /// From the statistics of the training images; `bands` are the contract's source bands.
    pub fn from_images<'a>(stats: impl IntoIterator<Item = &'a ColourStats>, bands: &[usize]) -> Option<Radiometry> {
        let stats: Vec<&ColourStats> = stats.into_iter().filter(|s| bands.iter().all(|&b| b < s.bands.len())).collect();
        if stats.is_empty() {
            return None;
        }
        Some(Radiometry {
            median_position: bands.iter().map(|&b| median(stats.iter().map(|s| s.median_position(b)).collect())).collect(),
            p98: bands.iter().map(|&b| median(stats.iter().map(|s| f64::from(s.percentile(b, 98.0))).collect())).collect(),
        })
    }

    /// How an image's radiometry departs from the training's, in words (empty: it does not).
    /// The histogram's shape is what normalization cannot undo; the value range is reported
    /// because it usually means another sensor or bit depth.
    pub fn departures(&self, image: &ColourStats, bands: &[usize]) -> Vec<String> {
        let mut out = Vec::new();
        for (i, &b) in bands.iter().enumerate() {
            if b >= image.bands.len() || i >= self.median_position.len() {
                continue;
            }
            let (img, train) = (image.median_position(b), self.median_position[i]);
            if (img - train).abs() > 0.15 {
                out.push(format!("band {}: its median lies at {:.0} % of the 2–98 % range, {:.0} % in training (gamma, haze or lighting differ)", b + 1, img * 100.0, train * 100.0));
            }
            let (img98, train98) = (f64::from(image.percentile(b, 98.0)), self.p98[i]);
            if train98 > 0.0 && img98 > 0.0 && !(0.25..=4.0).contains(&(img98 / train98)) {
                out.push(format!("band {}: values reach {img98:.0} (98th percentile), {train98:.0} in training (another bit depth or sensor; normalization maps both)", b + 1));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn departures_name_a_gamma_change_and_a_bit_depth_change() {
        let base: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
        let u8 = ColourStats::from_values(vec![base.iter().map(|v| (v * 255.0).round()).collect()]);
        let train = Radiometry::from_images([&u8, &u8], &[0]).unwrap();
        assert!(train.departures(&u8, &[0]).is_empty());
        let dark = ColourStats::from_values(vec![base.iter().map(|v| (v.powf(2.0) * 255.0).round()).collect()]);
        let d = train.departures(&dark, &[0]);
        assert!(d.len() == 1 && d[0].contains("band 1") && d[0].contains("gamma"), "{d:?}");
        let u16 = ColourStats::from_values(vec![base.iter().map(|v| (v * 65535.0).round()).collect()]);
        let d = train.departures(&u16, &[0]);
        assert!(d.len() == 1 && d[0].contains("bit depth"), "{d:?}");
    }

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
