//! The robustness evaluation: the test image turned, rescaled and re-coloured, its truth
//! transformed alike, so that the effect of normalization and rotational matching is measured.
//! Each transformed image is made in memory from the whole test image (test images are
//! frames, not mosaics).

use crate::eval::TruthBox;
use crate::geometry::OrientedBox;
use kestrel_geo::raster::{DataType, MemoryRaster, Samples};
use kestrel_geo::{PixelWindow, RasterSource};

/// One way of changing a test image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Transform {
    /// Turned clockwise by this many degrees about its centre (the canvas grows to hold it).
    Rotate(f64),
    /// Resampled by this factor (the GSD divides by it).
    Scale(f64),
    /// Each band `v ↦ max · (v / max)^γ`.
    Gamma(f64),
    /// Per-band gains (clamped to the type's range).
    WhiteBalance([f64; 3]),
    /// 8-bit values spread over 16 bits (`v · 257`).
    SixteenBit,
}

impl Transform {
    /// The set: rotations 0–345° by 15°, scales 0.5–2×, gamma 0.5–2, a white
    /// balance, u8 → u16.
    pub fn standard_set() -> Vec<Transform> {
        let mut v: Vec<Transform> = (0..24).map(|k| Transform::Rotate(f64::from(k) * 15.0)).collect();
        v.extend([0.5, 0.75, 1.5, 2.0].map(Transform::Scale));
        v.extend([0.5, 0.75, 1.5, 2.0].map(Transform::Gamma));
        v.push(Transform::WhiteBalance([1.25, 1.0, 0.8]));
        v.push(Transform::SixteenBit);
        v
    }

    /// A box found in the transformed image, in the original image's pixels (the inverse
    /// of the transform; `width`×`height` is the original's size).
    ///
    /// Robustness scores detections mapped back onto the original truth rather than truth
    /// moved onto the transformed image: for axis-aligned truth (YOLO boxes, heading unknown)
    /// a turned box is no longer the object's bounding box, and scoring it against a tight
    /// oriented detection would measure the labels' geometry, not the detector.
    pub fn map_back(&self, width: u32, height: u32, b: &OrientedBox) -> OrientedBox {
        match *self {
            Transform::Rotate(deg) => {
                let (w, h) = (f64::from(width), f64::from(height));
                let (s, c) = deg.to_radians().sin_cos();
                let (nw, nh) = ((w * c.abs() + h * s.abs() - 1e-9).ceil(), (w * s.abs() + h * c.abs() - 1e-9).ceil());
                let (dx, dy) = (b.cx - nw / 2.0, b.cy - nh / 2.0);
                OrientedBox { cx: dx * c + dy * s + w / 2.0, cy: -dx * s + dy * c + h / 2.0, heading_deg: (b.heading_deg - deg).rem_euclid(360.0), ..*b }
            }
            Transform::Scale(f) => OrientedBox { cx: b.cx / f, cy: b.cy / f, length: b.length / f, width: b.width / f, heading_deg: b.heading_deg },
            Transform::Gamma(_) | Transform::WhiteBalance(_) | Transform::SixteenBit => *b,
        }
    }

    pub fn label(&self) -> String {
        match self {
            Transform::Rotate(a) => format!("rotate {a:.0}°"),
            Transform::Scale(s) => format!("scale {s}×"),
            Transform::Gamma(g) => format!("gamma {g}"),
            Transform::WhiteBalance(w) => format!("white balance {:?}", w),
            Transform::SixteenBit => "u8 → u16".into(),
        }
    }
}

/// Applies `t` to the whole of `src` (ground sample distance `gsd_m`) and to its `truth`;
/// returns the new image, its GSD and its truth.
pub fn apply(src: &dyn RasterSource, gsd_m: f64, truth: &[TruthBox], t: Transform) -> kestrel_geo::Result<(MemoryRaster, f64, Vec<TruthBox>)> {
    let info = src.info().clone();
    let (w, h, bands) = (info.width as usize, info.height as usize, info.bands as usize);
    let buf = src.read_window(0, PixelWindow::full(info.width, info.height))?;
    let values = buf.samples.to_f32();
    let max = match info.data_type {
        DataType::Byte => 255.0,
        DataType::UInt16 => 65535.0,
        _ => values.iter().copied().fold(0.0f32, f32::max).max(1e-6),
    };
    let name = format!("{} ({})", info.path, t.label());
    let keep_type = |v: Vec<f32>| match info.data_type {
        DataType::Byte => Samples::U8(v.into_iter().map(|x| x.round().clamp(0.0, 255.0) as u8).collect()),
        DataType::UInt16 => Samples::U16(v.into_iter().map(|x| x.round().clamp(0.0, 65535.0) as u16).collect()),
        _ => Samples::F32(v),
    };
    // Bilinear sample of band b at continuous pixel coordinates (x, y); 0 outside.
    let sample = |b: usize, x: f64, y: f64| -> f32 {
        let (fx, fy) = (x - 0.5, y - 0.5);
        if fx < -0.5 || fy < -0.5 || fx > w as f64 - 0.5 || fy > h as f64 - 0.5 {
            return 0.0;
        }
        let (fx, fy) = (fx.clamp(0.0, (w - 1) as f64), fy.clamp(0.0, (h - 1) as f64));
        let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
        let (ax, ay) = ((fx - x0 as f64) as f32, (fy - y0 as f64) as f32);
        let at = |x: usize, y: usize| values[(y * w + x) * bands + b];
        (at(x0, y0) * (1.0 - ax) + at(x1, y0) * ax) * (1.0 - ay) + (at(x0, y1) * (1.0 - ax) + at(x1, y1) * ax) * ay
    };
    Ok(match t {
        Transform::Rotate(deg) => {
            let (s, c) = deg.to_radians().sin_cos();
            // Clockwise on screen with y down: (x, y) ↦ (x cos − y sin, x sin + y cos).
            // (Less a hair, so that sin 90° = 6e-17 does not add a column.)
            let (nw, nh) = ((w as f64 * c.abs() + h as f64 * s.abs() - 1e-9).ceil() as usize, (w as f64 * s.abs() + h as f64 * c.abs() - 1e-9).ceil() as usize);
            let (cx, cy, ncx, ncy) = (w as f64 / 2.0, h as f64 / 2.0, nw as f64 / 2.0, nh as f64 / 2.0);
            let mut out = vec![0f32; nw * nh * bands];
            for y in 0..nh {
                for x in 0..nw {
                    let (dx, dy) = (x as f64 + 0.5 - ncx, y as f64 + 0.5 - ncy);
                    // The inverse turn.
                    let (sx, sy) = (dx * c + dy * s + cx, -dx * s + dy * c + cy);
                    for b in 0..bands {
                        out[(y * nw + x) * bands + b] = sample(b, sx, sy);
                    }
                }
            }
            let turned = truth
                .iter()
                .map(|t| {
                    let (dx, dy) = (t.bbox.cx - cx, t.bbox.cy - cy);
                    let mut n = t.clone();
                    n.bbox.cx = dx * c - dy * s + ncx;
                    n.bbox.cy = dx * s + dy * c + ncy;
                    n.bbox.heading_deg = t.bbox.heading_deg + deg;
                    // An axis-aligned box turned is an oriented box of unknown direction.
                    if t.axis_aligned && deg.rem_euclid(90.0) != 0.0 {
                        n.axis_aligned = false;
                        n.heading = None;
                    }
                    n
                })
                .collect();
            // The fill around the turned image is nodata, as a real turned raster's would be:
            // counted as pixels, it would shift the colour statistics normalization uses.
            (MemoryRaster::new(&name, nw as u32, nh as u32, bands as u16, keep_type(out), None).with_nodata(0.0), gsd_m, turned)
        }
        Transform::Scale(f) => {
            let (nw, nh) = (((w as f64) * f).round().max(1.0) as usize, ((h as f64) * f).round().max(1.0) as usize);
            // Downscaling averages a grid of bilinear taps per output pixel (no aliasing).
            let taps = (1.0 / f).ceil().clamp(1.0, 4.0) as usize;
            let mut out = vec![0f32; nw * nh * bands];
            for y in 0..nh {
                for x in 0..nw {
                    for b in 0..bands {
                        let mut acc = 0.0;
                        for ty in 0..taps {
                            for tx in 0..taps {
                                let sx = (x as f64 + (tx as f64 + 0.5) / taps as f64) / f;
                                let sy = (y as f64 + (ty as f64 + 0.5) / taps as f64) / f;
                                acc += sample(b, sx, sy);
                            }
                        }
                        out[(y * nw + x) * bands + b] = acc / (taps * taps) as f32;
                    }
                }
            }
            let scaled = truth
                .iter()
                .map(|t| {
                    let mut n = t.clone();
                    n.bbox.cx *= f;
                    n.bbox.cy *= f;
                    n.bbox.length *= f;
                    n.bbox.width *= f;
                    n
                })
                .collect();
            (MemoryRaster::new(&name, nw as u32, nh as u32, bands as u16, keep_type(out), None), gsd_m / f, scaled)
        }
        Transform::Gamma(g) => {
            let out = values.iter().map(|&v| max * (v / max).max(0.0).powf(g as f32)).collect();
            (MemoryRaster::new(&name, w as u32, h as u32, bands as u16, keep_type(out), None), gsd_m, truth.to_vec())
        }
        Transform::WhiteBalance(gains) => {
            let out = values.iter().enumerate().map(|(i, &v)| (v * gains[(i % bands).min(2)] as f32).min(max)).collect();
            (MemoryRaster::new(&name, w as u32, h as u32, bands as u16, keep_type(out), None), gsd_m, truth.to_vec())
        }
        Transform::SixteenBit => {
            let out = Samples::U16(values.iter().map(|&v| (v.round().clamp(0.0, 255.0) * 257.0) as u16).collect());
            (MemoryRaster::new(&name, w as u32, h as u32, bands as u16, out, None), gsd_m, truth.to_vec())
        }
    })
}

/// How the turns fared against the untouched image: the measure of rotational
/// invariance, every turn's AP50 within [`TURN_TOLERANCE_POINTS`] of the untouched image's.
#[derive(Clone, Debug, PartialEq)]
pub struct TurnSummary {
    /// Turns other than 0°.
    pub turns: usize,
    /// Of those, how many lie within the tolerance (unrounded AP50).
    pub within: usize,
    /// The turn that lost most (or gained least), degrees, and its AP50 change in points.
    pub worst: Option<(f64, f64)>,
    /// The turns' mean AP50.
    pub mean_ap50: f64,
}

/// AP50 points a turn may lose or gain and still count as unchanged.
pub const TURN_TOLERANCE_POINTS: f64 = 3.0;

/// Sums up the turns among `results` (each transform with its AP50) against `untouched_ap50`.
pub fn summarize_turns(results: &[(Transform, f64)], untouched_ap50: f64) -> TurnSummary {
    let turns: Vec<(f64, f64)> = results
        .iter()
        .filter_map(|&(t, ap50)| match t {
            Transform::Rotate(deg) if deg.rem_euclid(360.0) != 0.0 => Some((deg, ap50)),
            _ => None,
        })
        .collect();
    let points = |ap50: f64| (ap50 - untouched_ap50) * 100.0;
    let n = turns.len();
    TurnSummary {
        turns: n,
        within: turns.iter().filter(|(_, ap50)| points(*ap50).abs() <= TURN_TOLERANCE_POINTS).count(),
        worst: turns.iter().min_by(|a, b| a.1.total_cmp(&b.1)).map(|&(deg, ap50)| (deg, points(ap50))),
        mean_ap50: if n == 0 { untouched_ap50 } else { turns.iter().map(|(_, ap50)| ap50).sum::<f64>() / n as f64 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turned_image_carries_its_truth_along() {
        // A bright 3×3 block at (7.5, 2.5) in a 10×5 grey image.
        let mut v = vec![10u8; 50];
        for y in 1..4 {
            for x in 6..9 {
                v[y * 10 + x] = 200;
            }
        }
        let src = MemoryRaster::new("t", 10, 5, 1, Samples::U8(v), None);
        let truth = vec![TruthBox { image: "t".into(), bbox: OrientedBox { cx: 7.5, cy: 2.5, length: 3.0, width: 3.0, heading_deg: 0.0 }, axis_aligned: false, heading: None }];
        let (img, gsd, t) = apply(&src, 0.1, &truth, Transform::Rotate(90.0)).unwrap();
        assert_eq!((img.info().width, img.info().height, gsd), (5, 10, 0.1));
        // 90° clockwise: (x, y) from the centre (2.5, 0) becomes (0, 2.5) → (2.5, 7.5).
        assert!((t[0].bbox.cx - 2.5).abs() < 1e-9 && (t[0].bbox.cy - 7.5).abs() < 1e-9, "{:?}", t[0].bbox);
        let px = img.read_window(0, PixelWindow::new(2, 7, 1, 1)).unwrap().get(0, 0, 0);
        assert_eq!(px, 200.0, "the block moved with its truth");
        let (img, gsd, t) = apply(&src, 0.1, &truth, Transform::Scale(2.0)).unwrap();
        assert_eq!((img.info().width, gsd), (20, 0.05));
        assert_eq!((t[0].bbox.cx, t[0].bbox.length), (15.0, 6.0));
        let (img, _, _) = apply(&src, 0.1, &truth, Transform::SixteenBit).unwrap();
        assert_eq!(img.read_window(0, PixelWindow::new(7, 2, 1, 1)).unwrap().get(0, 0, 0), 200.0 * 257.0);
        let (img, _, _) = apply(&src, 0.1, &truth, Transform::Gamma(2.0)).unwrap();
        assert_eq!(img.read_window(0, PixelWindow::new(0, 0, 1, 1)).unwrap().get(0, 0, 0), (255.0f32 * (10.0f32 / 255.0).powi(2)).round() as f64);
    }

    #[test]
    fn map_back_undoes_every_transform() {
        let src = MemoryRaster::new("t", 37, 23, 1, Samples::U8(vec![0; 37 * 23]), None);
        let b = OrientedBox { cx: 11.0, cy: 6.5, length: 8.0, width: 3.0, heading_deg: 20.0 };
        let truth = vec![TruthBox { image: "t".into(), bbox: b, axis_aligned: false, heading: None }];
        for t in Transform::standard_set() {
            let (_, _, moved) = apply(&src, 0.1, &truth, t).unwrap();
            let back = t.map_back(37, 23, &moved[0].bbox);
            let d = (back.heading_deg - b.heading_deg).rem_euclid(360.0);
            assert!((back.cx - b.cx).abs() < 1e-6 && (back.cy - b.cy).abs() < 1e-6 && (back.length - b.length).abs() < 1e-9 && d.min(360.0 - d) < 1e-6, "{}: {back:?}", t.label());
        }
    }

    #[test]
    fn turns_are_summed_up_against_the_untouched_image() {
        let results = [
            (Transform::Rotate(0.0), 0.90),
            (Transform::Rotate(15.0), 0.871),
            (Transform::Rotate(30.0), 0.8695),
            (Transform::Rotate(90.0), 0.935),
            (Transform::Scale(0.5), 0.5),
        ];
        let s = summarize_turns(&results, 0.90);
        assert_eq!((s.turns, s.within), (3, 1), "{s:?}");
        let (deg, points) = s.worst.unwrap();
        assert_eq!(deg, 30.0);
        assert!((points + 3.05).abs() < 1e-9, "{points}");
        assert!((s.mean_ap50 - (0.871 + 0.8695 + 0.935) / 3.0).abs() < 1e-12);
        assert_eq!(summarize_turns(&results[4..], 0.9).worst, None);
    }
}
