//! Oriented boxes in image pixels and their overlap: the rotated IoU that non-maximum
//! suppression and evaluation use. Boxes are convex quadrilaterals, so their intersection is
//! one Sutherland–Hodgman clip of one by the other.

/// An oriented box in image pixels: centre, length along the heading, width across it, and
/// heading in degrees clockwise from up (image row 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OrientedBox {
    pub cx: f64,
    pub cy: f64,
    pub length: f64,
    pub width: f64,
    pub heading_deg: f64,
}

impl OrientedBox {
    /// Corners front-left, front-right, back-right, back-left (clockwise on screen).
    pub fn corners(&self) -> [(f64, f64); 4] {
        let t = self.heading_deg.to_radians();
        let (fx, fy) = (t.sin() * self.length / 2.0, -t.cos() * self.length / 2.0);
        let (rx, ry) = (t.cos() * self.width / 2.0, t.sin() * self.width / 2.0);
        let (x, y) = (self.cx, self.cy);
        [(x + fx - rx, y + fy - ry), (x + fx + rx, y + fy + ry), (x - fx + rx, y - fy + ry), (x - fx - rx, y - fy - ry)]
    }

    pub fn area(&self) -> f64 {
        self.length * self.width
    }

    /// The axis-aligned bounds `[x0, y0, x1, y1]`.
    pub fn bounds(&self) -> [f64; 4] {
        let c = self.corners();
        let xs = c.map(|p| p.0);
        let ys = c.map(|p| p.1);
        [xs.iter().copied().fold(f64::INFINITY, f64::min), ys.iter().copied().fold(f64::INFINITY, f64::min), xs.iter().copied().fold(f64::NEG_INFINITY, f64::max), ys.iter().copied().fold(f64::NEG_INFINITY, f64::max)]
    }
}

/// Twice the signed area of a polygon (positive when counter-clockwise in x-right, y-up axes).
fn signed_area2(p: &[(f64, f64)]) -> f64 {
    (0..p.len()).map(|i| {
        let (a, b) = (p[i], p[(i + 1) % p.len()]);
        a.0 * b.1 - b.0 * a.1
    }).sum()
}

/// Area of the intersection of two convex polygons.
pub fn convex_intersection_area(subject: &[(f64, f64)], clip: &[(f64, f64)]) -> f64 {
    // Orient the clip polygon so that "inside" is to the left of each edge.
    let mut clip = clip.to_vec();
    if signed_area2(&clip) < 0.0 {
        clip.reverse();
    }
    let mut out = subject.to_vec();
    for i in 0..clip.len() {
        if out.is_empty() {
            return 0.0;
        }
        let (a, b) = (clip[i], clip[(i + 1) % clip.len()]);
        let side = |p: (f64, f64)| (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0);
        let input = std::mem::take(&mut out);
        for j in 0..input.len() {
            let (p, q) = (input[j], input[(j + 1) % input.len()]);
            let (sp, sq) = (side(p), side(q));
            if sp >= 0.0 {
                out.push(p);
            }
            if (sp >= 0.0) != (sq >= 0.0) {
                let t = sp / (sp - sq);
                out.push((p.0 + t * (q.0 - p.0), p.1 + t * (q.1 - p.1)));
            }
        }
    }
    if out.len() < 3 {
        return 0.0;
    }
    signed_area2(&out).abs() / 2.0
}

/// Intersection over union of two oriented boxes.
pub fn rotated_iou(a: &OrientedBox, b: &OrientedBox) -> f64 {
    // Boxes farther apart than their half-diagonals cannot overlap.
    let reach = (a.length.hypot(a.width) + b.length.hypot(b.width)) / 2.0;
    if (a.cx - b.cx).hypot(a.cy - b.cy) > reach {
        return 0.0;
    }
    let inter = convex_intersection_area(&a.corners(), &b.corners());
    let union = a.area() + b.area() - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Intersection over union of two axis-aligned boxes `[x0, y0, x1, y1]`.
pub fn axis_iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(cx: f64, cy: f64, l: f64, w: f64, h: f64) -> OrientedBox {
        OrientedBox { cx, cy, length: l, width: w, heading_deg: h }
    }

    #[test]
    fn iou_of_known_configurations() {
        let a = b(0.0, 0.0, 4.0, 2.0, 0.0);
        assert!((rotated_iou(&a, &a) - 1.0).abs() < 1e-12);
        // The same box turned by 180° is the same region.
        assert!((rotated_iou(&a, &b(0.0, 0.0, 4.0, 2.0, 180.0)) - 1.0).abs() < 1e-9);
        // Shifted by half its length along the heading: overlap 2×2 of 8 + 8 − 4.
        assert!((rotated_iou(&a, &b(0.0, -2.0, 4.0, 2.0, 0.0)) - 4.0 / 12.0).abs() < 1e-9);
        // Crossed at 90°: a 2×2 square in common.
        assert!((rotated_iou(&a, &b(0.0, 0.0, 4.0, 2.0, 90.0)) - 4.0 / 12.0).abs() < 1e-9);
        // A square turned 45° in itself: the octagon of area 2(√2 − 1)·s²... for s = 2: 8(√2 − 1).
        let s = b(0.0, 0.0, 2.0, 2.0, 0.0);
        let inter = 8.0 * (2f64.sqrt() - 1.0);
        assert!((rotated_iou(&s, &b(0.0, 0.0, 2.0, 2.0, 45.0)) - inter / (8.0 - inter)).abs() < 1e-9);
        assert_eq!(rotated_iou(&a, &b(10.0, 0.0, 4.0, 2.0, 30.0)), 0.0);
    }

    #[test]
    fn corners_follow_the_heading_clockwise_from_up() {
        // Heading 90° (east): the front is +x.
        let c = b(10.0, 10.0, 4.0, 2.0, 90.0).corners();
        let front_x = (c[0].0 + c[1].0) / 2.0;
        assert!((front_x - 12.0).abs() < 1e-9, "{c:?}");
        assert_eq!(b(0.0, 0.0, 4.0, 2.0, 0.0).bounds(), [-1.0, -2.0, 1.0, 2.0]);
        assert!((axis_iou([0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0]) - 1.0 / 3.0).abs() < 1e-12);
    }
}
