//! GeoJSON: Polygon, MultiPolygon and Point features in map coordinates (RFC 7946
//! longitude/latitude, or the CRS a top-level `crs` member names, as GDAL writes it), or in
//! pixels when the FeatureCollection says `"coordinate_space": "pixel …"`.
//!
//! Map coordinates are transformed to the frame's CRS and then to pixels through its
//! georeferencing. Polygons become their minimum-area bounding rectangle, an oriented box
//! whose heading is only an axis; points become points, with a heading from `heading_deg`.
//! Kestrel's own files ([`super::write_geojson_labels`]) carry the exact pixel shape in a
//! `shape` property, which is used instead whenever it still agrees with the geometry.

use super::{LabelIssue, Reader};
use crate::{HeadingMode, Polarity, Shape};
use kestrel_geo::{Crs, CrsTransform, GeoTransform};
use serde_json::{Map, Value};

/// Property names that may hold the class, in order of preference.
const CLASS_PROPERTIES: [&str; 4] = ["class", "label", "name", "category"];
const DEFAULT_CLASS: &str = "object";

/// How far (pixels) a `shape` property's bounds may lie from its feature's geometry before
/// the geometry is taken to have been edited since Kestrel wrote it. Points are written as
/// 1-pixel squares, half a pixel from the point.
const SHAPE_AGREEMENT_PX: f64 = 1.0;

/// How file coordinates become pixels.
enum Placement {
    Pixels,
    Map {
        to_frame_crs: Option<CrsTransform>,
        transform: GeoTransform,
    },
}

impl Placement {
    fn to_pixel(&self, x: f64, y: f64) -> Result<(f64, f64), String> {
        match self {
            Placement::Pixels => Ok((x, y)),
            Placement::Map {
                to_frame_crs,
                transform,
            } => {
                let (mx, my) = match to_frame_crs {
                    Some(t) => t.apply(x, y).map_err(|e| {
                        format!("cannot transform ({x}, {y}) to the image's CRS: {e}")
                    })?,
                    None => (x, y),
                };
                transform
                    .map_to_pixel(mx, my)
                    .ok_or_else(|| "the image's geotransform cannot be inverted".to_string())
            }
        }
    }
}

pub(crate) fn read(text: &str, r: &mut Reader) -> Result<(), LabelIssue> {
    let root: Value =
        serde_json::from_str(text).map_err(|e| r.error(e.line(), format!("invalid JSON: {e}")))?;
    let top = root
        .as_object()
        .ok_or_else(|| r.error(1, "not GeoJSON: the top level is not an object"))?;
    // The features and the lines they start on.
    let (features, lines): (Vec<&Value>, Vec<usize>) = match top.get("type").and_then(Value::as_str)
    {
        Some("FeatureCollection") => {
            let features = top
                .get("features")
                .and_then(Value::as_array)
                .ok_or_else(|| r.error(1, "FeatureCollection has no \"features\" array"))?;
            let lines = super::json_array_element_lines(text, "features");
            let lines = (0..features.len())
                .map(|i| super::element_line(&lines, i, features.len()))
                .collect();
            (features.iter().collect(), lines)
        }
        Some("Feature") => (
            vec![&root],
            vec![text.find('{').map_or(0, |o| super::line_of_offset(text, o))],
        ),
        other => {
            return Err(r.error(
                1,
                format!(
                    "not a GeoJSON FeatureCollection or Feature (type {})",
                    other.map_or("missing".into(), |t| format!("\"{t}\""))
                ),
            ))
        }
    };
    let placement = placement(top, r)?;
    for (feature, line) in features.into_iter().zip(lines) {
        if let Err(problem) = read_feature(feature, line, &placement, r) {
            r.issue(line, problem);
        }
    }
    Ok(())
}

/// Works out how the file's coordinates map to the frame's pixels.
fn placement(top: &Map<String, Value>, r: &Reader) -> Result<Placement, LabelIssue> {
    let pixel_space = top
        .get("coordinate_space")
        .and_then(Value::as_str)
        .is_some_and(|s| s.trim().to_ascii_lowercase().starts_with("pixel"));
    if pixel_space {
        return Ok(Placement::Pixels);
    }
    let georef = r.frame.georef.ok_or_else(|| {
        r.error(
            0,
            "coordinates are map coordinates, but the image has no georeferencing",
        )
    })?;
    if georef.transform.map_to_pixel(0.0, 0.0).is_none() {
        return Err(r.error(0, "the image's geotransform cannot be inverted"));
    }
    let declared = match top.get("crs") {
        Some(member) if !member.is_null() => Some(crs_member(member).map_err(|p| r.error(0, p))?),
        _ => None,
    };
    let to_frame_crs = match (&declared, &georef.crs) {
        (Some(file_crs), Some(image_crs)) if same_crs(file_crs, image_crs) => None,
        (Some(file_crs), Some(image_crs)) => {
            Some(CrsTransform::new(file_crs, image_crs).map_err(|e| r.error(0, e.to_string()))?)
        }
        // RFC 7946: no `crs` member means longitude/latitude.
        (None, Some(image_crs)) => Some(
            CrsTransform::new(&Crs::wgs84(), image_crs).map_err(|e| r.error(0, e.to_string()))?,
        ),
        // The image's CRS is unknown: a declared CRS is taken to be the image's own (nothing
        // else can be done with it); longitude/latitude cannot be placed.
        (Some(_), None) => None,
        (None, None) => {
            return Err(r.error(
                0,
                "coordinates are longitude/latitude, but the image's CRS is unknown",
            ))
        }
    };
    Ok(Placement::Map {
        to_frame_crs,
        transform: georef.transform,
    })
}

/// The CRS a (pre-RFC 7946) `crs` member names: `{"type": "name", "properties": {"name":
/// "urn:ogc:def:crs:EPSG::32616"}}`, also with `EPSG:32616`, OGC CRS84 or an opengis.net URL.
fn crs_member(member: &Value) -> Result<Crs, String> {
    let name = member
        .pointer("/properties/name")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("unsupported \"crs\" member {member}: expected {{\"type\": \"name\", \"properties\": {{\"name\": …}}}}"))?;
    let n = name.trim();
    if n.ends_with("CRS84") || n.ends_with("CRS:84") {
        return Ok(Crs::wgs84());
    }
    // urn:ogc:def:crs:EPSG::32616, urn:ogc:def:crs:EPSG:6.3:32616,
    // http://www.opengis.net/def/crs/EPSG/0/32616: the code is the last part.
    let lower = n.to_ascii_lowercase();
    if lower.contains("epsg") && (lower.starts_with("urn:") || lower.starts_with("http")) {
        let code = n.rsplit([':', '/']).next().unwrap_or("");
        if let Ok(code) = code.parse::<u32>() {
            return Crs::from_epsg(code).map_err(|e| e.to_string());
        }
    }
    Crs::parse(n).map_err(|e| format!("unsupported CRS \"{n}\": {e}"))
}

fn same_crs(a: &Crs, b: &Crs) -> bool {
    match (a.epsg, b.epsg) {
        (Some(x), Some(y)) => x == y,
        _ => a.proj4.trim() == b.proj4.trim(),
    }
}

/// Reads one feature into a record, or says why it cannot be one.
fn read_feature(
    feature: &Value,
    line: usize,
    placement: &Placement,
    r: &mut Reader,
) -> Result<(), String> {
    let feature = feature.as_object().ok_or("feature is not a JSON object")?;
    if feature.get("type").and_then(Value::as_str) != Some("Feature") {
        return Err("not a Feature (its \"type\" is not \"Feature\")".into());
    }
    let empty = Map::new();
    let props = feature
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let class_name = class_name(props);
    let polarity = match props.get("polarity") {
        None | Some(Value::Null) => Polarity::Positive,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("positive") => Polarity::Positive,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("negative") => Polarity::Negative,
        Some(other) => {
            return Err(format!(
                "polarity {other} is neither \"positive\" nor \"negative\""
            ))
        }
    };
    // "none": the object has no heading (a tree, a building footprint's bounds): its polygon
    // stands for an axis-aligned box, not for an orientation.
    let no_heading = matches!(props.get("heading_mode"), Some(Value::String(s)) if s.eq_ignore_ascii_case("none"));
    let heading_mode = match props.get("heading_mode") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("none") => None,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("axis") => Some(HeadingMode::Axis),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("directed") => Some(HeadingMode::Directed),
        Some(other) => {
            return Err(format!(
                "heading_mode {other} is not \"axis\", \"directed\" or \"none\""
            ))
        }
    };
    let geometry = feature
        .get("geometry")
        .filter(|g| !g.is_null())
        .ok_or("feature has no geometry")?;
    let kind = geometry
        .get("type")
        .and_then(Value::as_str)
        .ok_or("geometry has no type")?;
    let coords = geometry
        .get("coordinates")
        .ok_or("geometry has no coordinates")?;
    // The geometry's points in pixels (for polygons, the exterior rings: holes do not change
    // the bounding rectangle).
    let points: Vec<(f64, f64)> = match kind {
        "Point" => vec![position(coords)?],
        "Polygon" => exterior(coords)?,
        "MultiPolygon" => {
            let polygons = coords
                .as_array()
                .ok_or("MultiPolygon coordinates are not an array")?;
            let mut all = Vec::new();
            for p in polygons {
                all.extend(exterior(p)?);
            }
            all
        }
        other => {
            return Err(format!(
                "unsupported geometry type {other} (expected Polygon, MultiPolygon or Point)"
            ))
        }
    };
    if points.is_empty() {
        return Err("geometry has no coordinates".into());
    }
    let pixels = points
        .iter()
        .map(|&(x, y)| placement.to_pixel(x, y))
        .collect::<Result<Vec<_>, String>>()?;
    let extent = bounds(&pixels);

    // Kestrel's own exact shape, as long as the geometry has not been moved since.
    if let Some(shape) = props.get("shape").and_then(kestrel_shape) {
        let b = shape.bounds();
        if b.iter()
            .zip(&extent)
            .all(|(a, e)| (a - e).abs() <= SHAPE_AGREEMENT_PX)
        {
            // The shape was checked when it was first drawn or imported, and a rectangle
            // fitted to an object cut by the image edge may reach well past it (its source
            // polygon did not): only its centre must lie on the image.
            let (cx, cy) = shape.centre();
            r.push_with_extent(
                line,
                &class_name,
                shape,
                polarity,
                heading_mode,
                [cx, cy, cx, cy],
            );
            return Ok(());
        }
    }
    if kind == "Point" {
        let heading_deg = match props.get("heading_deg") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .ok_or_else(|| format!("heading_deg {v} is not a number"))?,
            ),
        };
        let (x, y) = pixels[0];
        r.push(
            line,
            &class_name,
            Shape::Point { x, y, heading_deg },
            polarity,
            heading_mode,
        );
    } else if no_heading {
        let [x0, y0, x1, y1] = extent;
        if !(x1 > x0 && y1 > y0) {
            return Err("polygon has zero area".into());
        }
        let shape = Shape::AxisBox { cx: (x0 + x1) / 2.0, cy: (y0 + y1) / 2.0, w: x1 - x0, h: y1 - y0 };
        r.push_with_extent(line, &class_name, shape, polarity, None, extent);
    } else {
        let shape = min_area_rectangle(&pixels).ok_or("polygon has zero area")?;
        // The rectangle fitted to a polygon at the image edge may poke past the edge where
        // the polygon did not: check the polygon itself.
        r.push_with_extent(
            line,
            &class_name,
            shape,
            polarity,
            Some(HeadingMode::Axis),
            extent,
        );
    }
    Ok(())
}

/// The class from the first of [`CLASS_PROPERTIES`] that holds a non-empty string (or a
/// number), else [`DEFAULT_CLASS`].
fn class_name(props: &Map<String, Value>) -> String {
    CLASS_PROPERTIES
        .iter()
        .filter_map(|k| match props.get(*k) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
        .next()
        .unwrap_or_else(|| DEFAULT_CLASS.to_string())
}

/// A `shape` property written by Kestrel: the serialized [`Shape`], as an object or as a
/// JSON string (tools that flatten properties turn objects into strings). Anything else
/// (another tool's `shape` attribute) is not one.
fn kestrel_shape(v: &Value) -> Option<Shape> {
    match v {
        Value::Object(_) => serde_json::from_value(v.clone()).ok(),
        Value::String(s) => serde_json::from_str(s).ok(),
        _ => None,
    }
}

fn position(v: &Value) -> Result<(f64, f64), String> {
    match v.as_array().map(|a| a.as_slice()) {
        Some([x, y, ..]) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) if x.is_finite() && y.is_finite() => Ok((x, y)),
            _ => Err(format!("position {v} is not numbers")),
        },
        _ => Err(format!("position {v} is not [x, y]")),
    }
}

/// The exterior ring of a Polygon's coordinates.
fn exterior(polygon: &Value) -> Result<Vec<(f64, f64)>, String> {
    let ring = polygon
        .as_array()
        .and_then(|rings| rings.first())
        .and_then(Value::as_array)
        .ok_or("Polygon has no exterior ring")?;
    ring.iter().map(position).collect()
}

fn bounds(points: &[(f64, f64)]) -> [f64; 4] {
    points.iter().fold(
        [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ],
        |b, &(x, y)| [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)],
    )
}

/// Convex hull (Andrew's monotone chain), counter-clockwise in x-right/y-up terms, without
/// repeated or collinear points.
fn convex_hull(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut p = points.to_vec();
    p.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    p.dedup();
    if p.len() < 3 {
        return p;
    }
    let cross = |o: (f64, f64), a: (f64, f64), b: (f64, f64)| {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    let mut hull: Vec<(f64, f64)> = Vec::with_capacity(2 * p.len());
    // Lower hull, then upper hull; each pass pops points that do not turn left.
    for pass in [p.clone(), p.iter().rev().copied().collect()] {
        let start = hull.len();
        for q in pass {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], q) <= 0.0
            {
                hull.pop();
            }
            hull.push(q);
        }
        // The last point of each pass is the first of the next.
        hull.pop();
    }
    hull
}

/// The minimum-area rectangle enclosing `points`, as an oriented box whose heading follows
/// its longer side (wrapped to [0°, 180°): a polygon has no front). `None` when the points
/// enclose no area.
///
/// This is the rotating-calipers result: the minimal rectangle has a side on an edge of the
/// convex hull, so each hull edge's direction is tried. Trying each against every hull
/// point is O(h²) rather than O(h), which for label polygons (tens of points) is nothing.
pub(crate) fn min_area_rectangle(points: &[(f64, f64)]) -> Option<Shape> {
    let hull = convex_hull(points);
    if hull.len() < 3 {
        return None;
    }
    // Work relative to the first hull point: map coordinates turned into pixels are large
    // numbers, and differences keep the precision.
    let o = hull[0];
    let hull: Vec<(f64, f64)> = hull.iter().map(|p| (p.0 - o.0, p.1 - o.1)).collect();
    let mut best: Option<(f64, [f64; 6])> = None;
    for i in 0..hull.len() {
        let (a, b) = (hull[i], hull[(i + 1) % hull.len()]);
        let len = (b.0 - a.0).hypot(b.1 - a.1);
        if len == 0.0 {
            continue;
        }
        let u = ((b.0 - a.0) / len, (b.1 - a.1) / len);
        let v = (-u.1, u.0);
        let (mut s0, mut s1, mut t0, mut t1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for p in &hull {
            let s = p.0 * u.0 + p.1 * u.1;
            let t = p.0 * v.0 + p.1 * v.1;
            s0 = s0.min(s);
            s1 = s1.max(s);
            t0 = t0.min(t);
            t1 = t1.max(t);
        }
        let area = (s1 - s0) * (t1 - t0);
        if best.is_none_or(|(a, _)| area < a) {
            best = Some((area, [u.0, u.1, s0, s1, t0, t1]));
        }
    }
    let (area, [ux, uy, s0, s1, t0, t1]) = best?;
    if area <= 0.0 {
        return None;
    }
    let (vx, vy) = (-uy, ux);
    let (sm, tm) = ((s0 + s1) / 2.0, (t0 + t1) / 2.0);
    let cx = o.0 + sm * ux + tm * vx;
    let cy = o.1 + sm * uy + tm * vy;
    let (along_u, along_v) = (s1 - s0, t1 - t0);
    let (length, width, (dx, dy)) = if along_u >= along_v {
        (along_u, along_v, (ux, uy))
    } else {
        (along_v, along_u, (vx, vy))
    };
    // Clockwise from image up (0, -1), in pixels with y down.
    let heading_deg = HeadingMode::Axis.wrap(dx.atan2(-dy).to_degrees());
    Some(Shape::OrientedBox {
        cx,
        cy,
        length,
        width,
        heading_deg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_a_rotated_rectangle_exactly() {
        for heading in [0.0, 17.0, 45.0, 90.0, 133.0, 179.0] {
            let s = Shape::OrientedBox {
                cx: 120.0,
                cy: 80.0,
                length: 30.0,
                width: 12.0,
                heading_deg: heading,
            };
            // Corners plus points on the edges and inside: the hull drops them.
            let mut pts = s.polygon();
            pts.push((120.0, 80.0));
            pts.push(((pts[0].0 + pts[1].0) / 2.0, (pts[0].1 + pts[1].1) / 2.0));
            let Some(Shape::OrientedBox {
                cx,
                cy,
                length,
                width,
                heading_deg,
            }) = min_area_rectangle(&pts)
            else {
                panic!()
            };
            assert!(
                (cx - 120.0).abs() < 1e-9 && (cy - 80.0).abs() < 1e-9,
                "{heading}: {cx} {cy}"
            );
            assert!((length - 30.0).abs() < 1e-9 && (width - 12.0).abs() < 1e-9);
            assert!(
                HeadingMode::Axis.difference_deg(heading_deg, heading) < 1e-9,
                "{heading} -> {heading_deg}"
            );
            assert!((0.0..180.0).contains(&heading_deg));
        }
    }

    #[test]
    fn degenerate_polygons_have_no_rectangle() {
        assert!(min_area_rectangle(&[(0.0, 0.0), (1.0, 1.0), (2.0, 2.0), (0.0, 0.0)]).is_none());
        assert!(min_area_rectangle(&[(3.0, 3.0)]).is_none());
    }

    #[test]
    fn crs_members_name_epsg_codes() {
        let member = |n: &str| serde_json::json!({"type": "name", "properties": {"name": n}});
        assert_eq!(
            crs_member(&member("urn:ogc:def:crs:EPSG::32616"))
                .unwrap()
                .epsg,
            Some(32616)
        );
        assert_eq!(
            crs_member(&member("urn:ogc:def:crs:EPSG:6.3:2154"))
                .unwrap()
                .epsg,
            Some(2154)
        );
        assert_eq!(
            crs_member(&member("urn:ogc:def:crs:OGC:1.3:CRS84"))
                .unwrap()
                .epsg,
            Some(4326)
        );
        assert_eq!(crs_member(&member("EPSG:3857")).unwrap().epsg, Some(3857));
        assert_eq!(
            crs_member(&member("http://www.opengis.net/def/crs/EPSG/0/32617"))
                .unwrap()
                .epsg,
            Some(32617)
        );
        assert!(crs_member(&serde_json::json!({"type": "link"})).is_err());
    }
}
