//! Normalization: every positive brought to one ground sample distance (scale), one
//! radiometric range (colour) and one canonical heading (rotation). The `Contract` records
//! the choices; training writes it into the model package and detection replays it exactly.

pub mod colour;
pub mod orientation;
pub mod window;

use crate::sample::{HeadingMode, Shape};
use colour::ColourStats;
use orientation::{estimate_orientation, fit_outline_in_box, AspectPrior, OrientationEstimate};
use serde::{Deserialize, Serialize};
use window::NormalizedWindow;

/// Version of the contract's meaning; bump when any step changes.
pub const CONTRACT_VERSION: u32 = 1;

/// How colour is normalized.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum ColourMethod {
    /// Per-image, per-band quantile mapping to [0, 1] (see `colour`): invariant to any
    /// monotonic change of a band (bit depth, gain, white balance, gamma).
    Quantile { quantiles: usize },
    /// Per-image, per-band linear stretch of the 2nd–98th percentiles to [0, 1]: invariant to
    /// bit depth, gain and white balance but not gamma; keeps the histogram's shape, which
    /// transferred better between the two streets of the cars data (see the training notes).
    Stretch,
    /// Some source bands are heights in metres (an nDSM rasterized from a point cloud): they
    /// are scaled by a fixed [`HEIGHT_SCALE_M`], never by the image's own statistics, so that a
    /// 20 m tree means the same in every image; the other bands get `colour`.
    WithHeights {
        colour: Box<ColourMethod>,
        /// Source bands (0-based) holding heights in metres.
        height_bands: Vec<usize>,
    },
}

/// Heights in metres are divided by this (a 20 m tree or building becomes 1, like a bright
/// colour); nodata and negative heights become 0.
pub const HEIGHT_SCALE_M: f32 = 20.0;

impl ColourMethod {
    /// `self` for the bands that are not heights, with `height_bands` (0-based source bands)
    /// kept in metres.
    pub fn with_heights(self, height_bands: Vec<usize>) -> ColourMethod {
        if height_bands.is_empty() {
            return self;
        }
        let colour = match self {
            ColourMethod::WithHeights { colour, .. } => colour,
            other => Box::new(other),
        };
        ColourMethod::WithHeights { colour, height_bands }
    }

    /// Whether source band `band` (0-based) holds heights in metres.
    pub fn is_height_band(&self, band: usize) -> bool {
        matches!(self, ColourMethod::WithHeights { height_bands, .. } if height_bands.contains(&band))
    }
}

impl std::str::FromStr for ColourMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "quantile" => Ok(ColourMethod::Quantile {
                quantiles: colour::QUANTILES,
            }),
            "stretch" => Ok(ColourMethod::Stretch),
            other => Err(format!(
                "unknown colour method '{other}': expected quantile or stretch"
            )),
        }
    }
}

/// The normalization contract of a class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contract {
    pub version: u32,
    /// Chips are resampled to this ground sample distance.
    pub target_gsd_m: f64,
    /// Chip edge in pixels at `target_gsd_m`.
    pub chip_size_px: u32,
    /// Source bands (0-based) in the order the network sees them.
    pub bands: Vec<usize>,
    pub colour: ColourMethod,
    pub heading_mode: HeadingMode,
    /// Every positive is turned so that its heading points here (0 = up).
    pub canonical_heading_deg: f64,
    /// Median object size of the class's positives.
    pub object_length_m: f64,
    pub object_width_m: f64,
}

/// Context around the object in a chip: the chip's edge is this many object lengths.
pub const CHIP_CONTEXT: f64 = 1.5;

impl Contract {
    /// Derives the contract from the positives' sizes (metres) and GSDs: the median GSD
    /// (unless `target_gsd_m` is given) and a chip that holds the median object with context.
    pub fn derive(
        lengths_m: &[f64],
        widths_m: &[f64],
        gsds_m: &[f64],
        bands: Vec<usize>,
        heading_mode: HeadingMode,
        target_gsd_m: Option<f64>,
        colour: ColourMethod,
    ) -> Option<Contract> {
        let median = |v: &[f64]| {
            let mut v: Vec<f64> = v
                .iter()
                .copied()
                .filter(|x| x.is_finite() && *x > 0.0)
                .collect();
            v.sort_by(f64::total_cmp);
            (!v.is_empty()).then(|| v[v.len() / 2])
        };
        let gsd = target_gsd_m.or_else(|| median(gsds_m))?;
        let length = median(lengths_m)?;
        let width = median(widths_m).unwrap_or(length);
        let chip = ((CHIP_CONTEXT * length / gsd / 4.0).ceil() as u32 * 4).max(16);
        Some(Contract {
            version: CONTRACT_VERSION,
            target_gsd_m: gsd,
            chip_size_px: chip,
            bands,
            colour,
            heading_mode,
            canonical_heading_deg: 0.0,
            object_length_m: length,
            object_width_m: width,
        })
    }
}

/// A normalized chip: `bands` planes of `size`×`size` values in [0, 1] (planar, row-major).
#[derive(Clone, Debug, PartialEq)]
pub struct Chip {
    pub size: usize,
    pub bands: usize,
    pub data: Vec<f32>,
}

/// Where the heading used to rotate a sample came from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum HeadingSource {
    /// Drawn or imported with the sample.
    Given,
    /// Estimated from the pixels (axis only, mod 180°).
    Estimated { confidence: f64 },
    /// Nothing to go on (a point without heading on a featureless background).
    None,
}

/// Geometry of one sample after the pixel analysis: what the chip is cut from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleGeometry {
    pub cx: f64,
    pub cy: f64,
    pub heading_deg: f64,
    pub heading: HeadingSource,
    /// Object size in image pixels along and across the heading (estimated for axis boxes).
    pub length_px: f64,
    pub width_px: f64,
}

/// Reads the neighbourhood of a sample and resolves its heading and size: given ones are
/// kept; axis boxes and bare points get the estimated axis. For axis boxes, `aspect` (the
/// class's elongation range) keeps the estimate consistent with the box's own shape.
pub fn analyse_sample(
    src: &dyn kestrel_geo::RasterSource,
    stats: &ColourStats,
    bands: &[usize],
    shape: &Shape,
    default_size_px: f64,
    aspect: Option<AspectPrior>,
) -> kestrel_geo::Result<SampleGeometry> {
    let (cx, cy) = shape.centre();
    let info = src.info();
    match *shape {
        Shape::OrientedBox {
            length,
            width,
            heading_deg,
            ..
        } => Ok(SampleGeometry {
            cx,
            cy,
            heading_deg,
            heading: HeadingSource::Given,
            length_px: length,
            width_px: width,
        }),
        Shape::Point {
            heading_deg: Some(hd),
            ..
        } => Ok(SampleGeometry {
            cx,
            cy,
            heading_deg: hd,
            heading: HeadingSource::Given,
            length_px: default_size_px,
            width_px: default_size_px / 2.0,
        }),
        Shape::AxisBox { w, h, .. } => {
            let bbox = shape.bounds();
            let radius = 0.5 * w.max(h) * 1.5 + 2.0;
            let nw = NormalizedWindow::around(info.width, info.height, cx, cy, radius)
                .map(|win| NormalizedWindow::read_stretched(src, win, bands, stats))
                .transpose()?;
            let est = nw.as_ref().and_then(|nw| axis_in_box(nw, bbox, aspect));
            Ok(match est {
                Some(e) => {
                    let (length_px, width_px) = size_from_box(w, h, e);
                    SampleGeometry {
                        cx,
                        cy,
                        heading_deg: e.axis_deg,
                        heading: HeadingSource::Estimated {
                            confidence: e.confidence,
                        },
                        length_px,
                        width_px,
                    }
                }
                None => SampleGeometry {
                    cx,
                    cy,
                    heading_deg: 0.0,
                    heading: HeadingSource::None,
                    length_px: w.max(h),
                    width_px: w.min(h),
                },
            })
        }
        Shape::Point {
            heading_deg: None, ..
        } => {
            let half = default_size_px / 2.0;
            let bbox = [cx - half, cy - half, cx + half, cy + half];
            let est = NormalizedWindow::around(info.width, info.height, cx, cy, half * 1.5 + 2.0)
                .map(|win| NormalizedWindow::read_stretched(src, win, bands, stats))
                .transpose()?
                .and_then(|nw| estimate_orientation(&nw, bbox));
            Ok(match est {
                Some(e) => SampleGeometry {
                    cx,
                    cy,
                    heading_deg: e.axis_deg,
                    heading: HeadingSource::Estimated {
                        confidence: e.confidence,
                    },
                    length_px: e.length_px,
                    width_px: e.width_px,
                },
                None => SampleGeometry {
                    cx,
                    cy,
                    heading_deg: 0.0,
                    heading: HeadingSource::None,
                    length_px: default_size_px,
                    width_px: default_size_px / 2.0,
                },
            })
        }
    }
}

/// The axis of the object in a tight axis-aligned box: the mean of two independent estimates,
/// the region's weighted moments and the outline fitted to the edges near that axis (within
/// 12°). Each fails in its own way (moments on low contrast and shadows, outlines on
/// interior edges); measured on synthetic scenes their mean halves the 95th-percentile error
/// of either. Without an aspect prior, the moments alone.
pub fn axis_in_box(
    nw: &NormalizedWindow,
    bbox: [f64; 4],
    aspect: Option<AspectPrior>,
) -> Option<OrientationEstimate> {
    let moments = estimate_orientation(nw, bbox);
    let Some(prior) = aspect else { return moments };
    let outline =
        fit_outline_in_box(nw, bbox, prior, moments.map(|m| (m.axis_deg, 12.0))).map(|o| o.0);
    let (w, h) = (bbox[2] - bbox[0], bbox[3] - bbox[1]);
    match (moments, outline) {
        (Some(m), Some(o)) => {
            let diff = (o - m.axis_deg + 90.0).rem_euclid(180.0) - 90.0;
            Some(OrientationEstimate {
                axis_deg: (m.axis_deg + diff / 2.0).rem_euclid(180.0),
                ..m
            })
        }
        (Some(m), None) => Some(m),
        (None, Some(o)) => Some(OrientationEstimate {
            axis_deg: o,
            confidence: 0.0,
            length_px: w.max(h),
            width_px: w.min(h),
        }),
        (None, None) => None,
    }
}

/// Object length and width from an axis-aligned box `w`×`h` around an object whose axis is
/// known: x-extent = L|sin θ| + W|cos θ|, y-extent = L|cos θ| + W|sin θ|. Near 45° the system
/// is singular; there the moments' own estimate, scaled to the box, is used.
fn size_from_box(w: f64, h: f64, e: OrientationEstimate) -> (f64, f64) {
    let t = e.axis_deg.to_radians();
    let (s, c) = (t.sin().abs(), t.cos().abs());
    let det = s * s - c * c; // [[s, c], [c, s]] · [L, W] = [w, h]
    if det.abs() > 0.3 {
        let l = (s * w - c * h) / det;
        let wd = (s * h - c * w) / det;
        if l > 0.0 && wd > 0.0 && l >= wd {
            return (l, wd);
        }
    }
    let diag = w.hypot(h);
    let est = e.length_px.hypot(e.width_px).max(1e-9);
    (e.length_px * diag / est, e.width_px * diag / est)
}

/// Resamples a chip centred on (cx, cy) (image pixels), turned so that `heading_deg` points
/// up, at the contract's GSD.
pub fn resample_chip(
    win: &NormalizedWindow,
    cx: f64,
    cy: f64,
    heading_deg: f64,
    image_gsd_m: f64,
    contract: &Contract,
) -> Chip {
    resample_square(
        win,
        cx,
        cy,
        heading_deg,
        image_gsd_m / contract.target_gsd_m,
        contract.chip_size_px as usize,
    )
}

/// Resamples a `size`×`size` square centred on (cx, cy) (image pixels), turned so that
/// `heading_deg` points up, with `zoom` chip pixels per image pixel. When the chip is coarser than the image, each chip
/// pixel averages a grid of bilinear samples over its footprint (anti-aliasing).
pub fn resample_square(
    win: &NormalizedWindow,
    cx: f64,
    cy: f64,
    heading_deg: f64,
    zoom: f64,
    size: usize,
) -> Chip {
    let bands = win.planes.len();
    let mut data = vec![0f32; bands * size * size];
    resample_square_into(win, cx, cy, heading_deg, zoom, size, &mut data);
    Chip { size, bands, data }
}

/// [`resample_square`] into `data` (`bands · size · size` values, band-major), for callers
/// that cut many chips into one batch.
///
/// # Panics
/// When `data` does not hold `bands · size · size` values.
pub fn resample_square_into(
    win: &NormalizedWindow,
    cx: f64,
    cy: f64,
    heading_deg: f64,
    zoom: f64,
    size: usize,
    data: &mut [f32],
) {
    let bands = win.planes.len();
    assert_eq!(data.len(), bands * size * size, "a chip's buffer of the wrong size");
    if heading_deg == 0.0 {
        // A detection tile: the same samples, done as two one-dimensional passes.
        resample_upright_into(win, cx, cy, zoom, size, data);
        return;
    }
    let scale = 1.0 / zoom; // image pixels per chip pixel
    let t = heading_deg.to_radians();
    let (fx, fy) = (t.sin(), -t.cos()); // front, in image pixel axes
    let (rx, ry) = (t.cos(), t.sin()); // object's right
    let taps = scale.ceil().clamp(1.0, 4.0) as usize;
    if turned_inside_into(win, cx, cy, (fx, fy), (rx, ry), scale, taps, size, data) {
        return;
    }
    let mut acc = vec![0f32; bands];
    for v in 0..size {
        for u in 0..size {
            acc.fill(0.0);
            for sv in 0..taps {
                for su in 0..taps {
                    // Offset from the chip centre in chip pixels, then in image pixels.
                    let du =
                        (u as f64 + (su as f64 + 0.5) / taps as f64 - size as f64 / 2.0) * scale;
                    let dv =
                        (v as f64 + (sv as f64 + 0.5) / taps as f64 - size as f64 / 2.0) * scale;
                    // Chip right = object's right; chip down = object's back.
                    win.accumulate(cx + du * rx - dv * fx, cy + du * ry - dv * fy, &mut acc);
                }
            }
            for b in 0..bands {
                data[(b * size + v) * size + u] = acc[b] / (taps * taps) as f32;
            }
        }
    }
}

/// [`resample_square_into`]'s turned square when every sample lies inside the window, away
/// from its last row and column (most chips of a detection tile): the same samples and
/// weights without the clamping at the window's edges, the sample positions stepped along
/// the chip's rows, written straight into `data`. Returns false, leaving `data` alone, when
/// some sample needs the edge repeated.
#[allow(clippy::too_many_arguments)]
fn turned_inside_into(win: &NormalizedWindow, cx: f64, cy: f64, (fx, fy): (f64, f64), (rx, ry): (f64, f64), scale: f64, taps: usize, size: usize, data: &mut [f32]) -> bool {
    let (w, h) = (win.width(), win.height());
    let n = taps as f64;
    let half = size as f64 / 2.0;
    // A sample's position in the window's pixels (pixel centres at whole numbers), from its
    // offset (du, dv) from the chip's centre in image pixels: chip right = object's right,
    // chip down = object's back.
    let (ox, oy) = (cx - f64::from(win.window.col_off) - 0.5, cy - f64::from(win.window.row_off) - 0.5);
    let at = |du: f64, dv: f64| (ox + du * rx - dv * fx, oy + du * ry - dv * fy);
    // The samples' positions are affine in (du, dv): the extreme ones lie at the corners.
    let (low, high) = ((0.5 / n - half) * scale, (size as f64 - 0.5 / n - half) * scale);
    let inside = [(low, low), (low, high), (high, low), (high, high)].iter().all(|&(du, dv)| {
        let (x, y) = at(du, dv);
        x >= 0.0 && y >= 0.0 && x < (w - 1) as f64 && y < (h - 1) as f64
    });
    if !inside {
        return false;
    }
    let plane_len = size * size;
    let samples = (taps * taps) as f32;
    data.fill(0.0);
    for v in 0..size {
        for sv in 0..taps {
            let dv = (v as f64 + (sv as f64 + 0.5) / n - half) * scale;
            for su in 0..taps {
                let du0 = ((su as f64 + 0.5) / n - half) * scale;
                for u in 0..size {
                    let (x, y) = at(du0 + u as f64 * scale, dv);
                    // Non-negative: truncation is floor; below the last row and column.
                    let (x0, y0) = (x as usize, y as usize);
                    let (tx, ty) = ((x - x0 as f64) as f32, (y - y0 as f64) as f32);
                    let (a, b, c, d) = ((1.0 - tx) * (1.0 - ty), tx * (1.0 - ty), (1.0 - tx) * ty, tx * ty);
                    let i = y0 * w + x0;
                    let out = v * size + u;
                    for (plane, chip) in win.planes.iter().zip(data.chunks_exact_mut(plane_len)) {
                        let (top, bottom) = (&plane[i..i + 2], &plane[i + w..i + w + 2]);
                        chip[out] += top[0] * a + top[1] * b + bottom[0] * c + bottom[1] * d;
                    }
                }
            }
        }
    }
    if taps > 1 {
        data.iter_mut().for_each(|v| *v /= samples);
    }
    true
}

/// [`resample_square_into`] for an upright square (heading 0): the mean of the same
/// `taps × taps` bilinear samples per chip pixel, with the edge repeated alike, but as a pass
/// along the rows and one along the columns, since bilinear weights and the regular grid of
/// taps both separate. At a coarser GSD than the image (`zoom` < 1) the turned path's work per
/// chip pixel grows with taps² and this one's with taps: it is what scans whole rasters.
fn resample_upright_into(win: &NormalizedWindow, cx: f64, cy: f64, zoom: f64, size: usize, data: &mut [f32]) {
    let scale = 1.0 / zoom;
    let taps = scale.ceil().clamp(1.0, 4.0) as usize;
    // Per chip column (row): the source columns (rows) it reads and their weights, the
    // weights already divided by the taps along that axis.
    let kernel = |centre: f64, origin: u32, len: usize| -> Vec<[(usize, f32); 2]> {
        let mut k = Vec::with_capacity(size * taps);
        for i in 0..size {
            for t in 0..taps {
                let d = (i as f64 + (t as f64 + 0.5) / taps as f64 - size as f64 / 2.0) * scale;
                let f = (centre + d - f64::from(origin) - 0.5).clamp(0.0, (len - 1) as f64);
                let i0 = f as usize;
                let w1 = (f - i0 as f64) as f32;
                k.push([(i0, (1.0 - w1) / taps as f32), ((i0 + 1).min(len - 1), w1 / taps as f32)]);
            }
        }
        k
    };
    let (w, h) = (win.width(), win.height());
    let cols = kernel(cx, win.window.col_off, w);
    let rows = kernel(cy, win.window.row_off, h);
    // The source rows the columns pass needs, and that pass's result per row.
    let first = rows.iter().map(|r| r[0].0).min().unwrap_or(0);
    let last = rows.iter().map(|r| r[1].0).max().unwrap_or(0);
    let mut across = vec![0f32; (last - first + 1) * size];
    for (b, plane) in win.planes.iter().enumerate() {
        for (j, out) in (first..=last).zip(across.chunks_mut(size)) {
            let row = &plane[j * w..(j + 1) * w];
            for (o, k) in out.iter_mut().zip(cols.chunks(taps)) {
                *o = k.iter().map(|[(i0, w0), (i1, w1)]| row[*i0] * w0 + row[*i1] * w1).sum();
            }
        }
        let chip = &mut data[b * size * size..(b + 1) * size * size];
        for (out, k) in chip.chunks_mut(size).zip(rows.chunks(taps)) {
            out.fill(0.0);
            for [(j0, w0), (j1, w1)] in k {
                let (r0, r1) = (&across[(j0 - first) * size..][..size], &across[(j1 - first) * size..][..size]);
                for ((o, a), c) in out.iter_mut().zip(r0).zip(r1) {
                    *o += a * w0 + c * w1;
                }
            }
        }
    }
}

/// A move of (`right`, `down`) image pixels along the axes of a chip cut turned by
/// `heading_deg` (as [`resample_square_into`] lays them out), in image pixel axes: what places
/// an object off a chip's centre in training and moves a candidate by the offset head in
/// detection.
pub fn chip_move_to_image(right: f64, down: f64, heading_deg: f64) -> (f64, f64) {
    let (s, c) = heading_deg.to_radians().sin_cos();
    (right * c - down * s, right * s + down * c)
}

/// Radius (image pixels) of the window a chip needs.
pub fn chip_radius_px(contract: &Contract, image_gsd_m: f64) -> f64 {
    contract.chip_size_px as f64 * contract.target_gsd_m / image_gsd_m
        * std::f64::consts::FRAC_1_SQRT_2
        + 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_geo::PixelWindow;

    /// The upright path is the turned one's arithmetic regrouped: the same chip (to float
    /// rounding) at finer, equal and coarser GSDs, off-centre, and with the edge repeated.
    #[test]
    fn upright_squares_match_the_general_resampling() {
        let (w, h) = (97usize, 83usize);
        let planes: Vec<Vec<f32>> = (0..3)
            .map(|b| (0..w * h).map(|i| (((i % w) * 7 + (i / w) * 13 + b * 5) % 31) as f32 / 31.0).collect())
            .collect();
        let win = NormalizedWindow { window: PixelWindow::new(40, 60, w as u32, h as u32), planes, valid: None };
        for (zoom, cx, cy) in [(1.0, 88.5, 101.5), (1.0, 90.3, 99.8), (0.72, 85.0, 100.0), (0.3, 88.0, 102.0), (1.7, 75.2, 70.1), (0.5, 45.0, 65.0)] {
            let size = 48;
            let mut upright = vec![0f32; 3 * size * size];
            resample_upright_into(&win, cx, cy, zoom, size, &mut upright);
            // A turn of 1e-9° moves no sample measurably, but takes the general path.
            let mut turned = vec![0f32; 3 * size * size];
            resample_square_into(&win, cx, cy, 1e-9, zoom, size, &mut turned);
            let worst = upright.iter().zip(&turned).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5, "zoom {zoom} at ({cx}, {cy}): differs by {worst}");
        }
    }

    /// Turned chips that lie inside the window take the path without edge clamping; it
    /// samples what the general bilinear sampling samples, and leaves chips reaching the edge
    /// to it.
    #[test]
    fn turned_squares_inside_the_window_match_the_general_sampling() {
        let (w, h) = (120usize, 110usize);
        let planes: Vec<Vec<f32>> = (0..3)
            .map(|b| (0..w * h).map(|i| ((((i % w) * 7 + (i / w) * 13 + b * 5) % 31) as f32 / 31.0).powi(2)).collect())
            .collect();
        let win = NormalizedWindow { window: PixelWindow::new(40, 60, w as u32, h as u32), planes, valid: None };
        let size = 24;
        for (zoom, heading_deg) in [(1.0f64, 30.0f64), (1.0, 187.5), (0.72, 290.0), (0.45, 45.0), (1.6, 101.0)] {
            let (cx, cy) = (100.3, 115.8);
            let scale = 1.0 / zoom;
            let taps = scale.ceil().clamp(1.0, 4.0) as usize;
            let t = f64::to_radians(heading_deg);
            let (fx, fy, rx, ry) = (t.sin(), -t.cos(), t.cos(), t.sin());
            let mut fast = vec![0f32; 3 * size * size];
            assert!(turned_inside_into(&win, cx, cy, (fx, fy), (rx, ry), scale, taps, size, &mut fast), "zoom {zoom}: the chip lies inside");
            let mut through = vec![0f32; 3 * size * size];
            resample_square_into(&win, cx, cy, heading_deg, zoom, size, &mut through);
            assert_eq!(fast, through, "resample_square_into takes the path");
            // The general sampling, written out: each chip pixel the mean of taps² bilinear
            // samples on its footprint.
            let mut worst = 0f32;
            for v in 0..size {
                for u in 0..size {
                    let mut acc = [0f32; 3];
                    for sv in 0..taps {
                        for su in 0..taps {
                            let du = (u as f64 + (su as f64 + 0.5) / taps as f64 - size as f64 / 2.0) * scale;
                            let dv = (v as f64 + (sv as f64 + 0.5) / taps as f64 - size as f64 / 2.0) * scale;
                            win.accumulate(cx + du * rx - dv * fx, cy + du * ry - dv * fy, &mut acc);
                        }
                    }
                    for (b, a) in acc.iter().enumerate() {
                        worst = worst.max((fast[(b * size + v) * size + u] - a / (taps * taps) as f32).abs());
                    }
                }
            }
            assert!(worst < 1e-5, "zoom {zoom}, heading {heading_deg}°: differs by {worst}");
        }
        // A chip over the window's edge needs the edge repeated: the fast path declines it.
        let mut chip = vec![0f32; 3 * size * size];
        let (t, scale) = (30f64.to_radians(), 1.0);
        assert!(!turned_inside_into(&win, 45.0, 65.0, (t.sin(), -t.cos()), (t.cos(), t.sin()), scale, 1, size, &mut chip));
        assert!(turned_inside_into(&win, 100.0, 115.0, (t.sin(), -t.cos()), (t.cos(), t.sin()), scale, 1, size, &mut chip));
    }
}
