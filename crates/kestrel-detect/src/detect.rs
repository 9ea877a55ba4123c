//! Detection over a whole raster, tile by tile: each tile is read (only the blocks it needs),
//! colour-normalized with the image's statistics, resampled to the model's GSD, scored densely
//! by the network; the peaks of the objectness map in the tile's core become candidates,
//! whose heading is refined by rotational pattern matching; oriented non-maximum suppression
//! over the whole image removes duplicates. A reader thread prepares the next tile while the
//! network scores the current one. Memory holds one or two tiles and the detections.

use crate::geometry::{rotated_iou, OrientedBox};
use crate::scan::{peaks, score_tile};
use kestrel_geo::{PixelWindow, RasterSource};
use kestrel_model::network::{Network, STRIDE};
use kestrel_model::package::PackageMeta;
use kestrel_model::pattern::Pattern;
use kestrel_samples::normalize::colour::ColourStats;
use kestrel_samples::normalize::window::NormalizedWindow;
use kestrel_samples::normalize::{resample_square, Chip};
use kestrel_samples::HeadingMode;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    Geo(#[from] kestrel_geo::GeoError),
    #[error("{path}: {problem}")]
    Input { path: String, problem: String },
}

#[derive(Clone, Debug)]
pub struct DetectOptions {
    /// Objectness at or above which a peak becomes a detection.
    pub threshold: f32,
    /// Tile edge in network pixels.
    pub tile_px: usize,
    /// Detections overlapping a stronger one by more than this rotated IoU are dropped.
    pub nms_iou: f64,
    /// Area of interest in image pixels `[x0, y0, x1, y1]`.
    pub area_px: Option<[f64; 4]>,
    /// Refine headings by rotational pattern matching (when the model has a pattern).
    pub refine_heading: bool,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions { threshold: 0.5, tile_px: 512, nms_iou: 0.3, area_px: None, refine_heading: true }
    }
}

/// One detected object.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    pub class: String,
    /// The oriented box in image pixels (heading clockwise from image up).
    pub bbox: OrientedBox,
    pub length_m: f64,
    pub width_m: f64,
    /// The network's objectness.
    pub score: f32,
    /// Correlation with the class's rotational pattern at the best angle, when matched.
    pub match_score: Option<f32>,
}

/// Where the time went.
#[derive(Clone, Debug, Default)]
pub struct Timing {
    /// Reading and decoding tiles (reader thread).
    pub decode: Duration,
    /// Colour normalization and resampling (reader thread).
    pub normalize: Duration,
    pub network: Duration,
    /// Peaks, pattern matching, suppression.
    pub post: Duration,
    pub wall: Duration,
    /// Megapixels of the source image covered.
    pub megapixels: f64,
}

/// Progress after each tile.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub tiles_done: usize,
    pub tiles: usize,
    pub megapixels_done: f64,
}

/// A tile ready for the network.
struct PreparedTile {
    /// Network-pixel position of the tile's top-left corner and its core.
    left: f64,
    top: f64,
    core: [f64; 4],
    window: NormalizedWindow,
    chip: Chip,
    megapixels: f64,
    decode: Duration,
    normalize: Duration,
}

/// The tiles of an image: cores of `core` network pixels covering `area` (network pixels).
fn tile_grid(area: [f64; 4], core: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut ty = area[1];
    while ty < area[3] {
        let mut tx = area[0];
        while tx < area[2] {
            out.push((tx, ty));
            tx += core;
        }
        ty += core;
    }
    out
}

/// Detects the model's class in `src`, whose ground sample distance is `gsd_m`.
pub fn detect_raster(src: &dyn RasterSource, gsd_m: f64, stats: &ColourStats, network: &Network, meta: &PackageMeta, options: &DetectOptions, mut progress: impl FnMut(Progress)) -> Result<(Vec<Detection>, Timing), DetectError> {
    let info = src.info().clone();
    let contract = &meta.contract;
    let path = info.path.clone();
    if let Some(&b) = contract.bands.iter().find(|&&b| b >= info.bands as usize) {
        return Err(DetectError::Input { path, problem: format!("the model reads band {} but the image has {} band(s)", b + 1, info.bands) });
    }
    if info.width == 0 || info.height == 0 {
        return Err(DetectError::Input { path, problem: "the image is empty".into() });
    }
    let started = Instant::now();
    let zoom = gsd_m / contract.target_gsd_m; // network pixels per image pixel
    let margin = contract.chip_size_px as usize;
    let tile = options.tile_px.max(2 * margin + 4 * STRIDE);
    let core = (tile - 2 * margin) as f64;
    let full = [0.0, 0.0, f64::from(info.width), f64::from(info.height)];
    let area_px = options.area_px.map_or(full, |a| [a[0].max(0.0), a[1].max(0.0), a[2].min(full[2]), a[3].min(full[3])]);
    if area_px[2] <= area_px[0] || area_px[3] <= area_px[1] {
        return Err(DetectError::Input { path, problem: format!("the area of interest {:?} (pixels) lies outside the image", options.area_px.unwrap_or(full)) });
    }
    let area = area_px.map(|v| v * zoom);
    let grid = tile_grid(area, core);
    let tiles = grid.len();
    let mut timing = Timing::default();
    let mut candidates: Vec<Detection> = Vec::new();
    let pattern = meta.pattern.as_ref().filter(|_| options.refine_heading);
    let class = meta.classes.first().cloned().unwrap_or_default();
    let result: Result<(), DetectError> = std::thread::scope(|scope| {
        let (tx_tiles, rx_tiles) = std::sync::mpsc::sync_channel::<Result<PreparedTile, DetectError>>(2);
        let grid = &grid;
        scope.spawn(move || {
            for &(cx0, cy0) in grid {
                let prepared = (|| {
                    let (left, top) = (cx0 - margin as f64, cy0 - margin as f64);
                    // The tile's square in image pixels, plus a pixel for interpolation.
                    let x0 = (left / zoom - 1.0).floor().max(0.0);
                    let y0 = (top / zoom - 1.0).floor().max(0.0);
                    let x1 = ((left + tile as f64) / zoom + 1.0).ceil().min(f64::from(info.width));
                    let y1 = ((top + tile as f64) / zoom + 1.0).ceil().min(f64::from(info.height));
                    let win = PixelWindow::new(x0 as u32, y0 as u32, (x1 - x0).max(1.0) as u32, (y1 - y0).max(1.0) as u32);
                    let t = Instant::now();
                    let window = NormalizedWindow::read_for(src, win, &contract.bands, stats, &contract.colour)?;
                    let decode = t.elapsed();
                    let t = Instant::now();
                    let centre = ((left + tile as f64 / 2.0) / zoom, (top + tile as f64 / 2.0) / zoom);
                    let chip = resample_square(&window, centre.0, centre.1, 0.0, zoom, tile);
                    let core_box = [cx0, cy0, (cx0 + core).min(area[2]), (cy0 + core).min(area[3])];
                    let megapixels = (core_box[2] - core_box[0]) * (core_box[3] - core_box[1]) / zoom / zoom / 1e6;
                    Ok(PreparedTile { left, top, core: core_box, window, chip, megapixels, decode, normalize: t.elapsed() })
                })();
                let failed = prepared.is_err();
                if tx_tiles.send(prepared).is_err() || failed {
                    break;
                }
            }
        });
        for (i, prepared) in rx_tiles.iter().enumerate() {
            let p = prepared?;
            timing.decode += p.decode;
            timing.normalize += p.normalize;
            let t = Instant::now();
            let grid = score_tile(network, contract, &p.chip);
            timing.network += t.elapsed();
            let t = Instant::now();
            for peak in peaks(&grid, options.threshold) {
                let u = p.left + grid.origin_px + (peak.col as f64 + peak.offset[0]) * STRIDE as f64;
                let v = p.top + grid.origin_px + (peak.row as f64 + peak.offset[1]) * STRIDE as f64;
                if u < p.core[0] || u >= p.core[2] || v < p.core[1] || v >= p.core[3] {
                    continue;
                }
                let cell = peak.row * grid.cols + peak.col;
                let (x, y) = (u / zoom, v / zoom);
                let [length_m, width_m] = grid.size_m[cell];
                let mut heading = grid.heading_deg[cell];
                let mut match_score = None;
                if let Some(pat) = pattern {
                    let (h, s) = refine_heading(&p.window, x, y, heading, zoom, contract.heading_mode, contract.canonical_heading_deg, pat);
                    heading = h;
                    match_score = s;
                }
                candidates.push(Detection {
                    class: class.clone(),
                    bbox: OrientedBox { cx: x, cy: y, length: length_m / gsd_m, width: width_m / gsd_m, heading_deg: contract.heading_mode.wrap(heading) },
                    length_m,
                    width_m,
                    score: peak.score,
                    match_score,
                });
            }
            timing.post += t.elapsed();
            timing.megapixels += p.megapixels;
            progress(Progress { tiles_done: i + 1, tiles, megapixels_done: timing.megapixels });
        }
        Ok(())
    });
    result?;
    let t = Instant::now();
    let detections = suppress(candidates, options.nms_iou);
    timing.post += t.elapsed();
    timing.wall = started.elapsed();
    Ok((detections, timing))
}

/// Turns the candidate at (x, y) to the canonical pose at angles around `heading_deg` (and,
/// for directed classes, around its reverse) and correlates each view with the pattern;
/// returns the best heading (refined by a parabola through its neighbours) and its score.
#[allow(clippy::too_many_arguments)]
pub fn refine_heading(window: &NormalizedWindow, x: f64, y: f64, heading_deg: f64, zoom: f64, mode: HeadingMode, canonical_deg: f64, pattern: &Pattern) -> (f64, Option<f32>) {
    const STEP_DEG: f64 = 5.0;
    const STEPS: i32 = 4;
    let starts: &[f64] = match mode {
        HeadingMode::Directed => &[0.0, 180.0],
        HeadingMode::Axis => &[0.0],
    };
    let mut best: Option<(f64, f32, f32, f32)> = None; // (angle, score, score before, score after)
    for &start in starts {
        let scores: Vec<(f64, Option<f32>)> = (-STEPS - 1..=STEPS + 1)
            .map(|k| {
                let a = heading_deg + start + f64::from(k) * STEP_DEG;
                let chip = resample_square(window, x, y, a - canonical_deg, zoom, pattern.size);
                (a, pattern.correlate(&chip))
            })
            .collect();
        for i in 1..scores.len() - 1 {
            if let (Some(s), Some(before), Some(after)) = (scores[i].1, scores[i - 1].1, scores[i + 1].1) {
                if best.is_none_or(|b| s > b.1) {
                    best = Some((scores[i].0, s, before, after));
                }
            }
        }
    }
    match best {
        Some((a, s, before, after)) => {
            let d = f64::from(before) - 2.0 * f64::from(s) + f64::from(after);
            let shift = if d < 0.0 { (0.5 * (f64::from(before) - f64::from(after)) / d).clamp(-0.5, 0.5) } else { 0.0 };
            (mode.wrap(a + shift * STEP_DEG), Some(s))
        }
        None => (heading_deg, None),
    }
}

/// Oriented non-maximum suppression: strongest first, dropping any detection that overlaps a
/// kept one by more than `iou`. A grid of cells one object wide keeps it near-linear.
pub fn suppress(mut detections: Vec<Detection>, iou: f64) -> Vec<Detection> {
    detections.sort_by(|a, b| b.score.total_cmp(&a.score));
    let cell = detections.iter().map(|d| d.bbox.length.max(d.bbox.width)).fold(1.0, f64::max);
    let key = |d: &Detection| ((d.bbox.cx / cell).floor() as i64, (d.bbox.cy / cell).floor() as i64);
    let mut buckets: std::collections::HashMap<(i64, i64), Vec<usize>> = std::collections::HashMap::new();
    let mut kept: Vec<Detection> = Vec::new();
    for d in detections {
        let (kx, ky) = key(&d);
        let clash = (-1..=1).any(|dx| (-1..=1).any(|dy| buckets.get(&(kx + dx, ky + dy)).is_some_and(|ids| ids.iter().any(|&i| rotated_iou(&kept[i].bbox, &d.bbox) > iou))));
        if !clash {
            buckets.entry((kx, ky)).or_default().push(kept.len());
            kept.push(d);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f64, score: f32) -> Detection {
        Detection { class: "car".into(), bbox: OrientedBox { cx: x, cy: 0.0, length: 10.0, width: 4.0, heading_deg: 0.0 }, length_m: 1.0, width_m: 1.0, score, match_score: None }
    }

    #[test]
    fn suppression_keeps_the_strongest_of_overlapping_boxes() {
        let kept = suppress(vec![det(0.0, 0.6), det(0.5, 0.9), det(20.0, 0.7), det(3.9, 0.8)], 0.3);
        let xs: Vec<f64> = kept.iter().map(|d| d.bbox.cx).collect();
        // 0.5 suppresses 0.0 (IoU 0.78); 3.9 overlaps 0.5 by IoU 0.06/... (width 4 → IoU 0.026) and stays.
        assert_eq!(xs, vec![0.5, 3.9, 20.0]);
    }

    #[test]
    fn the_grid_covers_the_area_once() {
        let g = tile_grid([0.0, 0.0, 250.0, 100.0], 100.0);
        assert_eq!(g, vec![(0.0, 0.0), (100.0, 0.0), (200.0, 0.0)]);
    }
}
