//! Pascal VOC XML: an `<annotation>` with the image's `<filename>` and `<size>`, and one
//! `<object>` per box with its `<name>` and `<bndbox>` (xmin, ymin, xmax, ymax in pixels),
//! or roLabelImg's `<robndbox>` (cx, cy, w, h, angle in radians) for oriented boxes.
//!
//! VOC itself counts pixels from 1, inclusive; DeepForest's files count edges from 0. The
//! values are taken as pixel edges as written: the difference is within the 1-pixel edge
//! tolerance and within any annotator's precision.
//!
//! The format is flat, so a small XML reader (elements, text, comments, CDATA, entities;
//! attributes ignored) does instead of an XML crate.

use super::{LabelIssue, Reader};
use crate::{HeadingMode, Polarity, Shape};

pub(crate) fn read(text: &str, r: &mut Reader) -> Result<(), LabelIssue> {
    let root = parse_xml(text)
        .map_err(|(line, problem)| r.error(line, format!("malformed XML: {problem}")))?;
    if root.name != "annotation" {
        return Err(r.error(
            root.line,
            format!(
                "not a Pascal VOC file: the root element is <{}>, not <annotation>",
                root.name
            ),
        ));
    }
    if let Some(name) = root
        .child("filename")
        .map(|e| e.text.trim())
        .filter(|n| !n.is_empty())
    {
        if !r.is_frame_image(name) {
            let line = root.child("filename").map_or(0, |e| e.line);
            return Err(r.error(
                line,
                format!(
                    "labels are for image \"{name}\", not \"{}\"",
                    r.frame.file_name.unwrap_or_default()
                ),
            ));
        }
    }
    if let Some(size) = root.child("size") {
        // A declared size of 0 (some exporters write it) says nothing.
        let dim = |tag: &str| {
            size.child(tag)
                .and_then(|e| e.text.trim().parse::<f64>().ok())
                .filter(|v| *v >= 0.0 && v.fract() == 0.0)
        };
        if let (Some(w), Some(h)) = (dim("width"), dim("height")) {
            r.declare_size(w as u32, h as u32, size.line)?;
        }
    }
    for object in root.children.iter().filter(|e| e.name == "object") {
        match parse_object(object) {
            Ok((name, shape, mode)) => r.push(object.line, name, shape, Polarity::Positive, mode),
            Err(problem) => r.issue(object.line, problem),
        }
    }
    Ok(())
}

/// Class name, shape and heading mode of one `<object>`.
fn parse_object(object: &Element) -> Result<(&str, Shape, Option<HeadingMode>), String> {
    let name = object
        .child("name")
        .map(|e| e.text.trim())
        .filter(|n| !n.is_empty())
        .ok_or("object has no <name>")?;
    let values = |parent: &Element, tags: &[&str]| -> Result<Vec<f64>, String> {
        tags.iter()
            .map(|tag| {
                let e = parent
                    .child(tag)
                    .ok_or_else(|| format!("<{}> has no <{tag}>", parent.name))?;
                super::number(&e.text, &format!("<{tag}>"))
            })
            .collect()
    };
    if let Some(rb) = object.child("robndbox") {
        let v = values(rb, &["cx", "cy", "w", "h", "angle"])?;
        return Ok((
            name,
            oriented_from_robndbox(v[0], v[1], v[2], v[3], v[4]),
            Some(HeadingMode::Axis),
        ));
    }
    let bb = object
        .child("bndbox")
        .ok_or("object has neither <bndbox> nor <robndbox>")?;
    let v = values(bb, &["xmin", "ymin", "xmax", "ymax"])?;
    Ok((
        name,
        super::axis_box_from_edges(v[0], v[1], v[2], v[3]),
        None,
    ))
}

/// roLabelImg's rotated box: `w` along the box's x axis, turned by `angle` radians clockwise
/// on screen (its corners are `(cx, cy) + R(angle)·(±w/2, ±h/2)` with y down). roLabelImg
/// marks no front, so the heading follows the longer side and is only an axis.
fn oriented_from_robndbox(cx: f64, cy: f64, w: f64, h: f64, angle_rad: f64) -> Shape {
    // The w side points along (cos a, sin a) in pixels, i.e. heading 90° + a clockwise from up.
    let w_heading = 90.0 + angle_rad.to_degrees();
    let (length, width, heading) = if w >= h {
        (w, h, w_heading)
    } else {
        (h, w, w_heading - 90.0)
    };
    Shape::OrientedBox {
        cx,
        cy,
        length,
        width,
        heading_deg: HeadingMode::Axis.wrap(heading),
    }
}

/// An XML element: its name, the line of its start tag, its child elements and its text
/// (entities decoded, child text not included).
#[derive(Debug)]
pub(crate) struct Element {
    pub name: String,
    pub line: usize,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|e| e.name == name)
    }
}

/// Parses an XML document (with `roxmltree`) into its root element, or says on which line
/// and why it is malformed.
pub(crate) fn parse_xml(text: &str) -> Result<Element, (usize, String)> {
    let doc =
        roxmltree::Document::parse(text).map_err(|e| (e.pos().row as usize, e.to_string()))?;
    fn convert(doc: &roxmltree::Document, node: roxmltree::Node) -> Element {
        let own_text: String = node
            .children()
            .filter(|c| c.is_text())
            .filter_map(|c| c.text())
            .collect();
        Element {
            name: node.tag_name().name().to_string(),
            line: doc.text_pos_at(node.range().start).row as usize,
            children: node
                .children()
                .filter(|c| c.is_element())
                .map(|c| convert(doc, c))
                .collect(),
            text: own_text,
        }
    }
    Ok(convert(&doc, doc.root_element()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_elements_with_lines() {
        let xml = "<?xml version=\"1.0\"?>\n<!-- c -->\n<a x=\"1>2\">\n <b>t &amp; u</b>\n <c/><d><![CDATA[<raw>]]></d>\n</a>\n";
        let root = parse_xml(xml).unwrap();
        assert_eq!(root.name, "a");
        assert_eq!(root.line, 3);
        assert_eq!(root.child("b").unwrap().text, "t & u");
        assert_eq!(root.child("b").unwrap().line, 4);
        assert!(root.child("c").is_some());
        assert_eq!(root.child("d").unwrap().text, "<raw>");
    }

    #[test]
    fn reports_malformed_xml_with_a_line() {
        assert_eq!(parse_xml("<a>\n<b>\n</a>").unwrap_err().0, 3);
        assert_eq!(parse_xml("<a>\n<b></b>").unwrap_err().0, 1);
        assert!(parse_xml("<a></a><b></b>").is_err());
        assert!(parse_xml("just text").is_err());
        assert!(parse_xml("<a><b</a>").is_err());
    }

    #[test]
    fn robndbox_heading_follows_the_long_side() {
        // Zero angle, wide box: long side along x, heading 90°.
        let Shape::OrientedBox {
            length,
            width,
            heading_deg,
            ..
        } = oriented_from_robndbox(10.0, 10.0, 8.0, 2.0, 0.0)
        else {
            panic!()
        };
        assert_eq!((length, width), (8.0, 2.0));
        assert!((heading_deg - 90.0).abs() < 1e-9);
        // Turned 30° clockwise: the w axis points to heading 120°; corners agree.
        let s = oriented_from_robndbox(10.0, 10.0, 8.0, 2.0, 30f64.to_radians());
        let a = 30f64.to_radians();
        let corner = (
            10.0 + 4.0 * a.cos() - 1.0 * -a.sin(),
            10.0 + 4.0 * a.sin() + 1.0 * -a.cos(),
        );
        assert!(
            s.polygon()
                .iter()
                .any(|p| (p.0 - corner.0).hypot(p.1 - corner.1) < 1e-9),
            "{:?} {corner:?}",
            s.polygon()
        );
        // Tall box: long side is h, along the box's y axis.
        let Shape::OrientedBox {
            length,
            heading_deg,
            ..
        } = oriented_from_robndbox(10.0, 10.0, 2.0, 8.0, 0.0)
        else {
            panic!()
        };
        assert_eq!(length, 8.0);
        assert!(heading_deg.abs() < 1e-9);
    }
}
