//! What a sample is: an object (or a counter-example) of a class, drawn on an image.
//!
//! Geometry is kept in image pixels (x right, y down, origin at the top-left corner of the
//! top-left pixel). Headings are degrees clockwise from image "up" (grid north for north-up
//! rasters): a car pointing right has heading 90°.

use serde::{Deserialize, Serialize};

/// Whether a sample shows the class (positive) or something that is not it (negative).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Polarity {
    Positive,
    Negative,
}

/// How a heading is to be read: `Directed` when the front is known (0–360°), `Axis` when only
/// the object's axis is (0–180°: a heading and its opposite are the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadingMode {
    Directed,
    Axis,
}

impl HeadingMode {
    /// The period of headings in this mode, in degrees.
    pub fn period_deg(self) -> f64 {
        match self {
            HeadingMode::Directed => 360.0,
            HeadingMode::Axis => 180.0,
        }
    }

    /// `heading_deg` wrapped into [0, period).
    pub fn wrap(self, heading_deg: f64) -> f64 {
        heading_deg.rem_euclid(self.period_deg())
    }

    /// Smallest absolute difference between two headings, in [0, period/2].
    pub fn difference_deg(self, a: f64, b: f64) -> f64 {
        let p = self.period_deg();
        let d = (a - b).rem_euclid(p);
        d.min(p - d)
    }
}

/// Where a sample came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Drawn,
    Imported,
    /// A negative chip sampled automatically away from every positive.
    AutoNegative,
    AcceptedDetection,
    RejectedDetection,
}

/// Sample geometry in image pixels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Shape {
    /// An axis-aligned box whose object heading is unknown (YOLO, VOC, CSV, COCO boxes).
    AxisBox { cx: f64, cy: f64, w: f64, h: f64 },
    /// An oriented box: `length` along the heading, `width` across it.
    OrientedBox {
        cx: f64,
        cy: f64,
        length: f64,
        width: f64,
        heading_deg: f64,
    },
    /// A point, with a heading when one is known.
    Point {
        x: f64,
        y: f64,
        heading_deg: Option<f64>,
    },
}

impl Shape {
    pub fn centre(&self) -> (f64, f64) {
        match *self {
            Shape::AxisBox { cx, cy, .. } | Shape::OrientedBox { cx, cy, .. } => (cx, cy),
            Shape::Point { x, y, .. } => (x, y),
        }
    }

    /// Whether pixel position (x, y) lies inside the box (edges included); a point contains
    /// nothing.
    pub fn contains(&self, x: f64, y: f64) -> bool {
        match *self {
            Shape::AxisBox { cx, cy, w, h } => (x - cx).abs() <= w / 2.0 && (y - cy).abs() <= h / 2.0,
            Shape::OrientedBox { cx, cy, length, width, heading_deg } => {
                // Along the heading (0 points up, y down) and across it.
                let (fx, fy) = (heading_deg.to_radians().sin(), -heading_deg.to_radians().cos());
                let (dx, dy) = (x - cx, y - cy);
                (dx * fx + dy * fy).abs() <= length / 2.0 && (-dx * fy + dy * fx).abs() <= width / 2.0
            }
            Shape::Point { .. } => false,
        }
    }

    /// The heading the geometry itself carries, if any.
    pub fn heading_deg(&self) -> Option<f64> {
        match *self {
            Shape::AxisBox { .. } => None,
            Shape::OrientedBox { heading_deg, .. } => Some(heading_deg),
            Shape::Point { heading_deg, .. } => heading_deg,
        }
    }

    /// Corners (or a single point) in pixel coordinates, clockwise on screen from the
    /// front-left corner for oriented boxes.
    pub fn polygon(&self) -> Vec<(f64, f64)> {
        match *self {
            Shape::AxisBox { cx, cy, w, h } => vec![
                (cx - w / 2.0, cy - h / 2.0),
                (cx + w / 2.0, cy - h / 2.0),
                (cx + w / 2.0, cy + h / 2.0),
                (cx - w / 2.0, cy + h / 2.0),
            ],
            Shape::OrientedBox {
                cx,
                cy,
                length,
                width,
                heading_deg,
            } => {
                // Unit vectors along the heading (front) and to the object's right, in
                // pixel axes (y down): heading 0 points up, i.e. (0, -1).
                let t = heading_deg.to_radians();
                let (fx, fy) = (t.sin(), -t.cos());
                let (rx, ry) = (t.cos(), t.sin());
                let (hl, hw) = (length / 2.0, width / 2.0);
                [(1.0, -1.0), (1.0, 1.0), (-1.0, 1.0), (-1.0, -1.0)]
                    .iter()
                    .map(|&(a, b)| {
                        (
                            cx + a * hl * fx + b * hw * rx,
                            cy + a * hl * fy + b * hw * ry,
                        )
                    })
                    .collect()
            }
            Shape::Point { x, y, .. } => vec![(x, y)],
        }
    }

    /// Axis-aligned bounds `[min_x, min_y, max_x, max_y]` in pixels.
    pub fn bounds(&self) -> [f64; 4] {
        let mut b = [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ];
        for (x, y) in self.polygon() {
            b[0] = b[0].min(x);
            b[1] = b[1].min(y);
            b[2] = b[2].max(x);
            b[3] = b[3].max(y);
        }
        b
    }

    /// An oriented box from four corners in order around the box (DOTA quadrilaterals,
    /// polygons). The heading follows the longer side, from the first corner's side: the
    /// first edge (p0→p1) is taken as the front edge when the box is longer across it.
    pub fn oriented_box_from_quad(q: [(f64, f64); 4]) -> Shape {
        let cx = q.iter().map(|p| p.0).sum::<f64>() / 4.0;
        let cy = q.iter().map(|p| p.1).sum::<f64>() / 4.0;
        let len = |a: (f64, f64), b: (f64, f64)| (a.0 - b.0).hypot(a.1 - b.1);
        let e01 = (len(q[0], q[1]) + len(q[2], q[3])) / 2.0;
        let e12 = (len(q[1], q[2]) + len(q[3], q[0])) / 2.0;
        // Direction along the long axis, as a pixel vector.
        let (dx, dy, length, width) = if e12 >= e01 {
            // Long sides are p1→p2 and p0→p3: the object points from edge p2p3 to edge p0p1.
            let mid_front = ((q[0].0 + q[1].0) / 2.0, (q[0].1 + q[1].1) / 2.0);
            (mid_front.0 - cx, mid_front.1 - cy, e12, e01)
        } else {
            let mid_front = ((q[1].0 + q[2].0) / 2.0, (q[1].1 + q[2].1) / 2.0);
            (mid_front.0 - cx, mid_front.1 - cy, e01, e12)
        };
        // Heading clockwise from up: atan2(dx, -dy).
        let heading_deg = dx.atan2(-dy).to_degrees().rem_euclid(360.0);
        Shape::OrientedBox {
            cx,
            cy,
            length,
            width,
            heading_deg,
        }
    }
}

/// A stored sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub id: i64,
    pub image_id: i64,
    pub class_id: i64,
    pub polarity: Polarity,
    pub shape: Shape,
    pub heading_mode: HeadingMode,
    pub origin: Origin,
    /// Incremented by every update: lets two editors detect that they overwrote each other.
    pub version: i64,
    /// RFC 3339 UTC timestamps.
    pub created_at: String,
    pub updated_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oriented_box_corners_follow_the_heading() {
        // Heading 90°: pointing right; length along x.
        let s = Shape::OrientedBox {
            cx: 10.0,
            cy: 20.0,
            length: 4.0,
            width: 2.0,
            heading_deg: 90.0,
        };
        let b = s.bounds();
        assert!((b[0] - 8.0).abs() < 1e-9 && (b[2] - 12.0).abs() < 1e-9);
        assert!((b[1] - 19.0).abs() < 1e-9 && (b[3] - 21.0).abs() < 1e-9);
    }

    #[test]
    fn quad_round_trips_to_the_same_box() {
        for heading in [0.0, 30.0, 90.0, 135.0, 200.0, 359.0] {
            let s = Shape::OrientedBox {
                cx: 50.0,
                cy: 40.0,
                length: 12.0,
                width: 5.0,
                heading_deg: heading,
            };
            let p = s.polygon();
            let back = Shape::oriented_box_from_quad([p[0], p[1], p[2], p[3]]);
            let Shape::OrientedBox {
                cx,
                cy,
                length,
                width,
                heading_deg,
            } = back
            else {
                panic!()
            };
            assert!((cx - 50.0).abs() < 1e-9 && (cy - 40.0).abs() < 1e-9);
            assert!((length - 12.0).abs() < 1e-9 && (width - 5.0).abs() < 1e-9);
            assert!(
                HeadingMode::Directed.difference_deg(heading_deg, heading) < 1e-9,
                "{heading} -> {heading_deg}"
            );
        }
    }

    #[test]
    fn axis_headings_wrap_at_180() {
        assert!(HeadingMode::Axis.difference_deg(10.0, 190.0) < 1e-12);
        assert!((HeadingMode::Axis.difference_deg(5.0, 175.0) - 10.0).abs() < 1e-12);
        assert!((HeadingMode::Directed.difference_deg(5.0, 175.0) - 170.0).abs() < 1e-12);
    }
}
