//! DOTA: one object per line, `x1 y1 x2 y2 x3 y3 x4 y4 class difficult`, the four corners of
//! an oriented box in pixels, in order around it. Files may start with `imagesource:` and
//! `gsd:` header lines.

use super::{LabelIssue, Reader};
use crate::{HeadingMode, Polarity, Shape};

/// DOTA's header lines (`imagesource:GoogleEarth`, `gsd:0.146`).
pub(crate) fn is_header_line(line: &str) -> bool {
    let l = line.trim_start().to_ascii_lowercase();
    l.starts_with("imagesource:") || l.starts_with("gsd:")
}

pub(crate) fn read(text: &str, r: &mut Reader) -> Result<(), LabelIssue> {
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || is_header_line(line) {
            continue;
        }
        match parse_line(line) {
            Ok((class_name, quad)) => {
                // Zero-area quads (collinear corners) fit no box.
                if quad_area(&quad) <= 0.0 {
                    r.issue(line_no, "quadrilateral has zero area");
                    continue;
                }
                // The corner order makes a front, but DOTA's annotators used it by convention
                // rather than by looking at the object: only the axis is trusted.
                let shape = Shape::oriented_box_from_quad(quad);
                r.push(
                    line_no,
                    &class_name,
                    shape,
                    Polarity::Positive,
                    Some(HeadingMode::Axis),
                );
            }
            Err(problem) => r.issue(line_no, problem),
        }
    }
    Ok(())
}

fn parse_line(line: &str) -> Result<(String, [(f64, f64); 4]), String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // `difficult` is optional in some exports.
    if fields.len() != 9 && fields.len() != 10 {
        return Err(format!(
            "expected 10 fields (x1 y1 x2 y2 x3 y3 x4 y4 class difficult), found {}",
            fields.len()
        ));
    }
    let mut quad = [(0.0, 0.0); 4];
    for (k, corner) in quad.iter_mut().enumerate() {
        corner.0 = super::number(fields[2 * k], &format!("x{}", k + 1))?;
        corner.1 = super::number(fields[2 * k + 1], &format!("y{}", k + 1))?;
    }
    Ok((fields[8].to_string(), quad))
}

/// Absolute area of a quadrilateral (shoelace).
fn quad_area(q: &[(f64, f64); 4]) -> f64 {
    let twice: f64 = (0..4)
        .map(|i| {
            let (a, b) = (q[i], q[(i + 1) % 4]);
            a.0 * b.1 - b.0 * a.1
        })
        .sum();
    twice.abs() / 2.0
}
