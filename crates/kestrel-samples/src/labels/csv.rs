//! DeepForest CSV: a header line naming the columns `image_path, xmin, ymin, xmax, ymax,
//! label` (in any order, other columns ignored), then one box per row in pixel edges. One
//! file may hold the boxes of many images: only the frame's image rows are read.

use super::{LabelIssue, Reader};
use crate::Polarity;

const COLUMNS: [&str; 6] = ["image_path", "xmin", "ymin", "xmax", "ymax", "label"];

pub(crate) fn read(text: &str, r: &mut Reader) -> Result<(), LabelIssue> {
    let mut csv = ::csv::ReaderBuilder::new()
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(text.as_bytes());
    let header = csv
        .headers()
        .map_err(|e| r.error(1, e.to_string()))?
        .clone();
    if header.iter().all(str::is_empty) {
        return Err(r.error(0, "no header line"));
    }
    // Column positions by name.
    let mut col = [0usize; 6];
    for (k, name) in COLUMNS.iter().enumerate() {
        col[k] = header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                r.error(
                    1,
                    format!(
                        "header has no \"{name}\" column (expected {})",
                        COLUMNS.join(",")
                    ),
                )
            })?;
    }
    for record in csv.records() {
        let row = match record {
            Ok(row) => row,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                r.issue(line, e.to_string());
                continue;
            }
        };
        let line_no = row.position().map_or(0, |p| p.line() as usize);
        if row.iter().all(str::is_empty) {
            continue;
        }
        if row.len() != header.len() {
            r.issue(
                line_no,
                format!("expected {} fields, found {}", header.len(), row.len()),
            );
            continue;
        }
        if !r.is_frame_image(&row[col[0]]) {
            continue;
        }
        let edges = (1..5)
            .map(|k| super::number(&row[col[k]], COLUMNS[k]))
            .collect::<Result<Vec<f64>, String>>();
        let edges = match edges {
            Ok(e) => e,
            Err(problem) => {
                r.issue(line_no, problem);
                continue;
            }
        };
        let label = &row[col[5]];
        if label.is_empty() {
            r.issue(line_no, "empty label");
            continue;
        }
        let shape = super::axis_box_from_edges(edges[0], edges[1], edges[2], edges[3]);
        r.push(line_no, label, shape, Polarity::Positive, None);
    }
    Ok(())
}
