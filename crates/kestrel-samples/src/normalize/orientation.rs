//! Orientation of an object from its pixels, for samples drawn without a heading (axis-aligned
//! boxes, points). The object is told from its surroundings by colour: the background is the
//! median colour of a ring just outside the box, each pixel inside weighs by how far its colour
//! lies from it, and the weighted second moments give the object's axis (the principal axis),
//! its length and width (a uniform rectangle of length L has variance L²/12 along it), and a
//! confidence from how elongated the weight distribution is.

use super::window::NormalizedWindow;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrientationEstimate {
    /// Axis of the object, degrees clockwise from up, in [0, 180).
    pub axis_deg: f64,
    /// 0 (round or no contrast) … 1 (a line): (λ1 − λ2) / (λ1 + λ2).
    pub confidence: f64,
    /// Extent along and across the axis, pixels.
    pub length_px: f64,
    pub width_px: f64,
}

/// Estimates the orientation of the object inside the axis-aligned box
/// `[min_x, min_y, max_x, max_y]` (image pixels) from a normalized window that covers the box
/// and a margin around it.
pub fn estimate_orientation(win: &NormalizedWindow, bbox: [f64; 4]) -> Option<OrientationEstimate> {
    let (bw, bh) = (bbox[2] - bbox[0], bbox[3] - bbox[1]);
    if !(bw > 0.0 && bh > 0.0) {
        return None;
    }
    let margin = (0.25 * bw.max(bh)).max(2.0);
    let bands = win.planes.len();
    let (wx, wy) = (win.window.col_off as f64, win.window.row_off as f64);
    let (w, h) = (win.width(), win.height());
    let inside = |x: f64, y: f64, grow: f64| {
        x >= bbox[0] - grow && x < bbox[2] + grow && y >= bbox[1] - grow && y < bbox[3] + grow
    };

    // Background: per-band median over the ring between the box and box + margin.
    let ring: Vec<usize> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let (px, py) = (wx + x as f64 + 0.5, wy + y as f64 + 0.5);
            inside(px, py, margin) && !inside(px, py, 0.0)
        })
        .map(|(x, y)| y * w + x)
        .collect();
    if ring.len() < 8 {
        return None;
    }
    let bg: Vec<f32> = win
        .planes
        .iter()
        .map(|plane| {
            let mut v: Vec<f32> = ring.iter().map(|&i| plane[i]).collect();
            v.sort_by(f32::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    // Colour distance of pixel `i` from the background.
    let dist = |i: usize| {
        (0..bands)
            .map(|b| (win.planes[b][i] - bg[b]).powi(2))
            .sum::<f32>()
            .sqrt()
    };
    // Noise level of the background: median colour distance of ring pixels from it.
    let mut ring_d: Vec<f32> = ring.iter().map(|&i| dist(i)).collect();
    ring_d.sort_by(f32::total_cmp);
    let noise = ring_d[ring_d.len() / 2];

    let (mut sw, mut sx, mut sy) = (0f64, 0f64, 0f64);
    let mut pts = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let (px, py) = (wx + x as f64 + 0.5, wy + y as f64 + 0.5);
            if !inside(px, py, 0.0) {
                continue;
            }
            let wgt = f64::from((dist(y * w + x) - 1.5 * noise).max(0.0));
            if wgt > 0.0 {
                sw += wgt;
                sx += wgt * px;
                sy += wgt * py;
                pts.push((px, py, wgt));
            }
        }
    }
    if sw <= 0.0 {
        return None;
    }
    let (mx, my) = (sx / sw, sy / sw);
    let (mut cxx, mut cyy, mut cxy) = (0f64, 0f64, 0f64);
    for &(px, py, wgt) in &pts {
        cxx += wgt * (px - mx) * (px - mx);
        cyy += wgt * (py - my) * (py - my);
        cxy += wgt * (px - mx) * (py - my);
    }
    cxx /= sw;
    cyy /= sw;
    cxy /= sw;
    let tr = cxx + cyy;
    let det_term = ((cxx - cyy) * (cxx - cyy) / 4.0 + cxy * cxy).sqrt();
    let (l1, l2) = (tr / 2.0 + det_term, (tr / 2.0 - det_term).max(0.0));
    // Principal direction angle from the +x axis (y down), then as a heading from up.
    let phi = 0.5 * (2.0 * cxy).atan2(cxx - cyy);
    let (dx, dy) = (phi.cos(), phi.sin());
    let axis_deg = dx.atan2(-dy).to_degrees().rem_euclid(180.0);
    Some(OrientationEstimate {
        axis_deg,
        confidence: if tr > 0.0 { (l1 - l2) / (l1 + l2) } else { 0.0 },
        length_px: (12.0 * l1).sqrt(),
        width_px: (12.0 * l2).sqrt(),
    })
}

/// The range of length/width ratios a class's objects have, used to check an estimated axis
/// against the tight axis-aligned box drawn around the object.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AspectPrior {
    pub min: f64,
    pub max: f64,
}

impl AspectPrior {
    /// From the axis-aligned boxes of a class: the most elongated boxes are the objects lying
    /// along an image axis, so the 95th percentile of box elongation is about the objects'
    /// own; smaller objects of the class may be up to 1.5× less elongated.
    pub fn from_boxes(sizes: impl IntoIterator<Item = (f64, f64)>) -> Option<AspectPrior> {
        let mut r: Vec<f64> = sizes
            .into_iter()
            .filter(|(w, h)| *w > 0.0 && *h > 0.0)
            .map(|(w, h)| w.max(h) / w.min(h))
            .collect();
        if r.len() < 3 {
            return None;
        }
        r.sort_by(f64::total_cmp);
        let max = r[((r.len() - 1) as f64 * 0.95).round() as usize].max(1.05);
        Some(AspectPrior {
            min: (max / 1.5).max(1.0),
            max,
        })
    }
}

/// Width/height of the tight axis-aligned box around a rectangle of elongation `rho` whose
/// long axis is `theta_deg` (0–90) from up.
fn box_aspect(theta_deg: f64, rho: f64) -> f64 {
    let t = theta_deg.to_radians();
    let (s, c) = (t.sin(), t.cos());
    (s + c / rho) / (c + s / rho)
}

/// The axis (0–90° from up) at which an object of elongation `rho` has a box of aspect `a`.
fn axis_for_box_aspect(a: f64, rho: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 90.0);
    if a <= box_aspect(lo, rho) {
        return lo;
    }
    if a >= box_aspect(hi, rho) {
        return hi;
    }
    for _ in 0..50 {
        let mid = (lo + hi) / 2.0;
        if box_aspect(mid, rho) < a {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// Brings an estimated axis into agreement with the box: the axes consistent with a `w`×`h`
/// tight box for some elongation in the prior form two mirrored intervals (the two
/// diagonals); the estimate is kept when it lies inside one, else moved to the nearest end.
/// With no estimate (`None`) the middle of the first interval is returned.
pub fn constrain_to_box(axis_deg: Option<f64>, w: f64, h: f64, prior: AspectPrior) -> f64 {
    let a = w / h;
    let t1 = axis_for_box_aspect(a, prior.min);
    let t2 = axis_for_box_aspect(a, prior.max);
    let (lo, hi) = (t1.min(t2), t1.max(t2));
    let Some(est) = axis_deg else {
        return (lo + hi) / 2.0;
    };
    let est = est.rem_euclid(180.0);
    // Candidate intervals: [lo, hi] and its mirror [180 - hi, 180 - lo].
    let mut best = (f64::INFINITY, est);
    for (a0, a1) in [(lo, hi), (180.0 - hi, 180.0 - lo)] {
        let inside = (a0..=a1).contains(&est);
        let cand = if inside {
            est
        } else {
            // Nearest end, measured mod 180.
            let d0 = crate::HeadingMode::Axis.difference_deg(est, a0);
            let d1 = crate::HeadingMode::Axis.difference_deg(est, a1);
            if d0 <= d1 {
                a0
            } else {
                a1
            }
        };
        let d = crate::HeadingMode::Axis.difference_deg(est, cand);
        if d < best.0 {
            best = (d, cand);
        }
    }
    best.1.rem_euclid(180.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_aspect_inverts() {
        for rho in [1.5, 2.4, 4.0] {
            for theta in [0.0, 10.0, 30.0, 45.0, 60.0, 89.0] {
                let a = box_aspect(theta, rho);
                assert!((axis_for_box_aspect(a, rho) - theta).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn an_estimate_far_from_what_the_box_allows_is_corrected() {
        let prior = AspectPrior { min: 2.0, max: 2.8 };
        // A 2.4:1 object lying at 30° from up: its box is w×h with w/h = box_aspect(30, 2.4).
        let a = box_aspect(30.0, 2.4);
        let fixed = constrain_to_box(Some(100.0), a, 1.0, prior);
        assert!(
            (fixed - 30.0).abs() < 5.0 || (fixed - 150.0).abs() < 5.0,
            "{fixed}"
        );
        // A consistent estimate is left alone.
        assert_eq!(constrain_to_box(Some(149.0), a, 1.0, prior), 149.0);
    }
}

/// Fits the object's outline to the image edges inside its tight axis-aligned box. A
/// rectangle of axis θ and elongation ρ that fits a w×h box touches all four sides, which
/// fixes its size; the right (θ, ρ) puts all four of its sides on strong colour edges. Each
/// candidate is scored by the mean gradient across its perimeter (the gradient component
/// normal to each side); the object's interior (windscreens, roof) and its shadow's outer
/// outline do not lie on the perimeter, so they do not pull the axis. Returns the axis
/// (degrees from up, [0, 180)) and the best score. With `near = Some((axis, tolerance))`
/// only axes within `tolerance` degrees of `axis` are tried.
pub fn fit_outline_in_box(
    win: &NormalizedWindow,
    bbox: [f64; 4],
    prior: AspectPrior,
    near: Option<(f64, f64)>,
) -> Option<(f64, f64)> {
    let (bw, bh) = (bbox[2] - bbox[0], bbox[3] - bbox[1]);
    if !(bw > 2.0 && bh > 2.0) {
        return None;
    }
    let (w, h) = (win.width(), win.height());
    if w < 3 || h < 3 {
        return None;
    }
    // Sobel gradients per pixel, summed over bands with a common sign so that bands whose
    // edges have opposite polarity (red car on green grass) add up instead of cancelling.
    let mut grad = vec![(0f32, 0f32); w * h];
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let (mut gx, mut gy) = (0f32, 0f32);
            for p in &win.planes {
                let at = |dx: isize, dy: isize| {
                    p[(y as isize + dy) as usize * w + (x as isize + dx) as usize]
                };
                let sx = (at(1, -1) + 2.0 * at(1, 0) + at(1, 1))
                    - (at(-1, -1) + 2.0 * at(-1, 0) + at(-1, 1));
                let sy = (at(-1, 1) + 2.0 * at(0, 1) + at(1, 1))
                    - (at(-1, -1) + 2.0 * at(0, -1) + at(1, -1));
                if gx * sx + gy * sy < 0.0 {
                    gx -= sx;
                    gy -= sy;
                } else {
                    gx += sx;
                    gy += sy;
                }
            }
            grad[y * w + x] = (gx, gy);
        }
    }
    let (ox, oy) = (win.window.col_off as f64, win.window.row_off as f64);
    let sample = |x: f64, y: f64| -> (f32, f32) {
        let (ix, iy) = ((x - ox - 0.5).round(), (y - oy - 0.5).round());
        if ix < 0.0 || iy < 0.0 || ix >= w as f64 || iy >= h as f64 {
            return (0.0, 0.0);
        }
        grad[iy as usize * w + ix as usize]
    };
    let (cx, cy) = ((bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0);
    let score = |theta: f64, rho: f64| -> Option<f64> {
        let t = theta.to_radians();
        let (s, c) = (t.sin(), t.cos());
        let length = bh / (c.abs() + s.abs() / rho);
        let width = length / rho;
        if (length * s.abs() + width * c.abs() - bw).abs() > 0.1 * bw.max(bh) {
            return None;
        }
        let (f, r) = ((s, -c), (c, s)); // front and right unit vectors
        let (mut total, mut n) = (0f64, 0usize);
        // Each side: distance from the centre, outward normal, half-length, direction along it.
        let sides = [
            (length / 2.0, f, width / 2.0, r),
            (length / 2.0, (-f.0, -f.1), width / 2.0, r),
            (width / 2.0, r, length / 2.0, f),
            (width / 2.0, (-r.0, -r.1), length / 2.0, f),
        ];
        for (off, nrm, half, dir) in sides {
            // The middle 80 % of each side: rounded corners do not lie on the rectangle.
            let steps = (2.0 * half).ceil().max(2.0) as usize;
            for i in 0..steps {
                let a = -half * 0.8 + 1.6 * half * (i as f64 + 0.5) / steps as f64;
                let (gx, gy) = sample(cx + nrm.0 * off + dir.0 * a, cy + nrm.1 * off + dir.1 * a);
                total += (f64::from(gx) * nrm.0 + f64::from(gy) * nrm.1).abs();
                n += 1;
            }
        }
        (n > 0).then(|| total / n as f64)
    };
    let rhos: Vec<f64> = (0..8)
        .map(|i| prior.min + (prior.max - prior.min) * i as f64 / 7.0)
        .collect();
    let allowed = |theta: f64| {
        near.is_none_or(|(axis, tol)| crate::HeadingMode::Axis.difference_deg(theta, axis) <= tol)
    };
    let consider = |best: &mut Option<(f64, f64)>, theta: f64| {
        if !allowed(theta) {
            return;
        }
        for &rho in &rhos {
            if let Some(sc) = score(theta, rho) {
                if best.is_none_or(|(_, b)| sc > b) {
                    *best = Some((theta, sc));
                }
            }
        }
    };
    let mut best: Option<(f64, f64)> = None;
    for i in 0..360 {
        consider(&mut best, i as f64 * 0.5);
    }
    let (coarse, _) = best?;
    for i in -4..=4 {
        consider(&mut best, (coarse + i as f64 * 0.125).rem_euclid(180.0));
    }
    best.map(|(t, s)| (t.rem_euclid(180.0), s))
}
