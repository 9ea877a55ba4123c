//! DeepForest CSV: a header line naming the columns `image_path, xmin, ymin, xmax, ymax,
//! label` (in any order, other columns ignored), then one box per row in pixel edges. One
//! file may hold the boxes of many images: only the frame's image rows are read.

use super::{LabelIssue, Reader};
use crate::Polarity;

const COLUMNS: [&str; 6] = ["image_path", "xmin", "ymin", "xmax", "ymax", "label"];

pub(crate) fn read(text: &str, r: &mut Reader) -> Result<(), LabelIssue> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (header_index, header) = lines.next().ok_or_else(|| r.error(0, "no header line"))?;
    let header = split_row(header).map_err(|p| r.error(header_index + 1, p))?;
    // Column positions by name.
    let mut col = [0usize; 6];
    for (k, name) in COLUMNS.iter().enumerate() {
        col[k] = header
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
            .ok_or_else(|| r.error(header_index + 1, format!("header has no \"{name}\" column (expected {})", COLUMNS.join(","))))?;
    }
    for (i, line) in lines {
        let line_no = i + 1;
        let row = match split_row(line) {
            Ok(row) => row,
            Err(problem) => {
                r.issue(line_no, problem);
                continue;
            }
        };
        if row.len() != header.len() {
            r.issue(line_no, format!("expected {} fields, found {}", header.len(), row.len()));
            continue;
        }
        if !r.is_frame_image(&row[col[0]]) {
            continue;
        }
        let edges = (1..5).map(|k| super::number(&row[col[k]], COLUMNS[k])).collect::<Result<Vec<f64>, String>>();
        let edges = match edges {
            Ok(e) => e,
            Err(problem) => {
                r.issue(line_no, problem);
                continue;
            }
        };
        let label = row[col[5]].trim();
        if label.is_empty() {
            r.issue(line_no, "empty label");
            continue;
        }
        let shape = super::axis_box_from_edges(edges[0], edges[1], edges[2], edges[3]);
        r.push(line_no, label, shape, Polarity::Positive, None);
    }
    Ok(())
}

/// Splits one CSV row on commas, honouring double-quoted fields (`""` is a quote inside
/// one). Rows spanning several lines are not supported: no box file has them.
fn split_row(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' if quoted => quoted = false,
            '"' if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::split_row;

    #[test]
    fn splits_quoted_fields() {
        assert_eq!(split_row("a,\"b,c\",\"d\"\"e\",").unwrap(), vec!["a", "b,c", "d\"e", ""]);
        assert!(split_row("a,\"b").is_err());
    }
}
