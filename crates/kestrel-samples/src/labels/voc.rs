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
    let root = parse_xml(text).map_err(|(line, problem)| r.error(line, format!("malformed XML: {problem}")))?;
    if root.name != "annotation" {
        return Err(r.error(root.line, format!("not a Pascal VOC file: the root element is <{}>, not <annotation>", root.name)));
    }
    if let Some(name) = root.child("filename").map(|e| e.text.trim()).filter(|n| !n.is_empty()) {
        if !r.is_frame_image(name) {
            let line = root.child("filename").map_or(0, |e| e.line);
            return Err(r.error(line, format!("labels are for image \"{name}\", not \"{}\"", r.frame.file_name.unwrap_or_default())));
        }
    }
    if let Some(size) = root.child("size") {
        // A declared size of 0 (some exporters write it) says nothing.
        let dim = |tag: &str| size.child(tag).and_then(|e| e.text.trim().parse::<f64>().ok()).filter(|v| *v >= 0.0 && v.fract() == 0.0);
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
    let name = object.child("name").map(|e| e.text.trim()).filter(|n| !n.is_empty()).ok_or("object has no <name>")?;
    let values = |parent: &Element, tags: &[&str]| -> Result<Vec<f64>, String> {
        tags.iter()
            .map(|tag| {
                let e = parent.child(tag).ok_or_else(|| format!("<{}> has no <{tag}>", parent.name))?;
                super::number(&e.text, &format!("<{tag}>"))
            })
            .collect()
    };
    if let Some(rb) = object.child("robndbox") {
        let v = values(rb, &["cx", "cy", "w", "h", "angle"])?;
        return Ok((name, oriented_from_robndbox(v[0], v[1], v[2], v[3], v[4]), Some(HeadingMode::Axis)));
    }
    let bb = object.child("bndbox").ok_or("object has neither <bndbox> nor <robndbox>")?;
    let v = values(bb, &["xmin", "ymin", "xmax", "ymax"])?;
    Ok((name, super::axis_box_from_edges(v[0], v[1], v[2], v[3]), None))
}

/// roLabelImg's rotated box: `w` along the box's x axis, turned by `angle` radians clockwise
/// on screen (its corners are `(cx, cy) + R(angle)·(±w/2, ±h/2)` with y down). roLabelImg
/// marks no front, so the heading follows the longer side and is only an axis.
fn oriented_from_robndbox(cx: f64, cy: f64, w: f64, h: f64, angle_rad: f64) -> Shape {
    // The w side points along (cos a, sin a) in pixels, i.e. heading 90° + a clockwise from up.
    let w_heading = 90.0 + angle_rad.to_degrees();
    let (length, width, heading) = if w >= h { (w, h, w_heading) } else { (h, w, w_heading - 90.0) };
    Shape::OrientedBox { cx, cy, length, width, heading_deg: HeadingMode::Axis.wrap(heading) }
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

/// Parses an XML document into its root element, or says where and why it is malformed.
pub(crate) fn parse_xml(text: &str) -> Result<Element, (usize, String)> {
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut pos = 0;
    let mut line = 1;
    let newlines = |s: &str| s.bytes().filter(|&b| b == b'\n').count();
    // Hands a finished element to its parent, or makes it the root.
    fn attach(stack: &mut [Element], root: &mut Option<Element>, element: Element) -> Result<(), (usize, String)> {
        match stack.last_mut() {
            Some(parent) => parent.children.push(element),
            None if root.is_some() => return Err((element.line, format!("second root element <{}>", element.name))),
            None => *root = Some(element),
        }
        Ok(())
    }
    while pos < text.len() {
        // Text up to the next tag.
        let next = text[pos..].find('<').map_or(text.len(), |o| pos + o);
        let chunk = &text[pos..next];
        if !chunk.trim().is_empty() {
            match stack.last_mut() {
                Some(top) => top.text.push_str(&decode_entities(chunk)),
                None => return Err((line, "text outside the root element".into())),
            }
        }
        line += newlines(chunk);
        pos = next;
        if pos >= text.len() {
            break;
        }
        let rest = &text[pos..];
        let find = |pat: &str, what: &str| rest.find(pat).map(|o| o + pat.len()).ok_or_else(|| (line, format!("unterminated {what}")));
        let consumed = if rest.starts_with("<?") {
            find("?>", "processing instruction")?
        } else if rest.starts_with("<!--") {
            find("-->", "comment")?
        } else if rest.starts_with("<![CDATA[") {
            let end = find("]]>", "CDATA section")?;
            match stack.last_mut() {
                Some(top) => top.text.push_str(&rest[9..end - 3]),
                None => return Err((line, "CDATA outside the root element".into())),
            }
            end
        } else if rest.starts_with("<!") {
            // DOCTYPE (internal subsets are not supported).
            find(">", "declaration")?
        } else if let Some(close) = rest.strip_prefix("</") {
            let end = close.find('>').ok_or_else(|| (line, "unterminated end tag".into()))?;
            let name = close[..end].trim();
            let open = stack.pop().ok_or_else(|| (line, format!("</{name}> closes no element")))?;
            if open.name != name {
                return Err((line, format!("</{name}> closes <{}> opened at line {}", open.name, open.line)));
            }
            attach(&mut stack, &mut root, open)?;
            2 + end + 1
        } else {
            let end = tag_end(rest).ok_or_else(|| (line, "unterminated start tag".into()))?;
            let body = &rest[1..end];
            let self_closing = body.ends_with('/');
            let name = body.trim_end_matches('/').split_whitespace().next().unwrap_or("");
            if name.is_empty() || body.starts_with(char::is_whitespace) {
                return Err((line, "tag without a name".into()));
            }
            let element = Element { name: name.to_string(), line, children: Vec::new(), text: String::new() };
            if self_closing {
                attach(&mut stack, &mut root, element)?;
            } else {
                stack.push(element);
            }
            end + 1
        };
        line += newlines(&rest[..consumed]);
        pos += consumed;
    }
    if let Some(open) = stack.last() {
        return Err((open.line, format!("<{}> is never closed", open.name)));
    }
    root.ok_or((1, "no root element".into()))
}

/// Byte index of the `>` that ends a start tag, skipping quoted attribute values.
fn tag_end(tag: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in tag.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '>') => return Some(i),
            (None, '<') if i > 0 => return None,
            _ => {}
        }
    }
    None
}

/// Replaces the predefined entities and character references; unknown ones stay as written.
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';').filter(|&i| i <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| entity.strip_prefix('#').map(|d| d.parse::<u32>()))
                .and_then(|v| v.ok())
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
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
        let Shape::OrientedBox { length, width, heading_deg, .. } = oriented_from_robndbox(10.0, 10.0, 8.0, 2.0, 0.0) else { panic!() };
        assert_eq!((length, width), (8.0, 2.0));
        assert!((heading_deg - 90.0).abs() < 1e-9);
        // Turned 30° clockwise: the w axis points to heading 120°; corners agree.
        let s = oriented_from_robndbox(10.0, 10.0, 8.0, 2.0, 30f64.to_radians());
        let a = 30f64.to_radians();
        let corner = (10.0 + 4.0 * a.cos() - 1.0 * -a.sin(), 10.0 + 4.0 * a.sin() + 1.0 * -a.cos());
        assert!(s.polygon().iter().any(|p| (p.0 - corner.0).hypot(p.1 - corner.1) < 1e-9), "{:?} {corner:?}", s.polygon());
        // Tall box: long side is h, along the box's y axis.
        let Shape::OrientedBox { length, heading_deg, .. } = oriented_from_robndbox(10.0, 10.0, 2.0, 8.0, 0.0) else { panic!() };
        assert_eq!(length, 8.0);
        assert!(heading_deg.abs() < 1e-9);
    }
}
