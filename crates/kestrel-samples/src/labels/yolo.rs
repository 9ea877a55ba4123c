//! YOLO: one object per line, `class cx cy w h`, the box centre and size normalised by the
//! image width and height.

use super::{LabelIssue, Reader};
use crate::{Polarity, Shape};

pub(crate) fn read(text: &str, r: &mut Reader) -> Result<(), LabelIssue> {
    if r.width == 0 || r.height == 0 {
        return Err(r.error(
            0,
            "YOLO labels are normalised: the image size must be known",
        ));
    }
    let (width, height) = (r.width as f64, r.height as f64);
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match parse_line(line, r.class_names) {
            Ok((class_name, [cx, cy, w, h])) => {
                let shape = Shape::AxisBox {
                    cx: cx * width,
                    cy: cy * height,
                    w: w * width,
                    h: h * height,
                };
                r.push(line_no, &class_name, shape, Polarity::Positive, None);
            }
            Err(problem) => r.issue(line_no, problem),
        }
    }
    Ok(())
}

/// The class name and the four normalised numbers of one line.
fn parse_line(line: &str, class_names: &[String]) -> Result<(String, [f64; 4]), String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected 5 fields (class cx cy w h), found {}",
            fields.len()
        ));
    }
    let id = class_id(fields[0])?;
    let class_name = if class_names.is_empty() {
        id.to_string()
    } else {
        class_names.get(id).cloned().ok_or_else(|| {
            format!(
                "class id {id} is not one of the {} class names",
                class_names.len()
            )
        })?
    };
    let names = ["cx", "cy", "w", "h"];
    let mut v = [0.0; 4];
    for k in 0..4 {
        v[k] = super::number(fields[k + 1], names[k])?;
    }
    Ok((class_name, v))
}

/// A class id: a non-negative integer, also accepted as a float with no fraction ("2.0"),
/// which some exporters write.
fn class_id(field: &str) -> Result<usize, String> {
    if let Ok(id) = field.parse::<usize>() {
        return Ok(id);
    }
    match field.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.fract() == 0.0 && v < u32::MAX as f64 => Ok(v as usize),
        _ => Err(format!(
            "class id \"{field}\" is not a non-negative integer"
        )),
    }
}
