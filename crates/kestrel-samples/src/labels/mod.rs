//! Label files (YOLO, Pascal VOC, DeepForest CSV, DOTA, GeoJSON, COCO): read into samples, write back.
//!
//! Every reader turns one label file for one image into [`LabelRecord`]s in image pixels
//! (x right, y down, see [`crate::sample`]). Readers are forgiving per object and strict per
//! file: a bad line or object (non-numeric field, wrong field count, empty or inverted box,
//! box outside the image, unknown class id) becomes a [`LabelIssue`] naming the file and the
//! 1-based line, and the rest of the file still loads; a file that cannot be read, is empty,
//! or whose whole structure is broken (invalid JSON, no VOC `<annotation>`) is an error.
//!
//! [`write_geojson_labels`] writes records as GeoJSON that GIS tools can open and that
//! [`read_labels`] reads back exactly: each feature carries Kestrel's own pixel geometry in a
//! `shape` property besides its polygon.

mod coco;
mod csv;
mod dota;
mod geojson;
mod voc;
mod yolo;

use crate::{HeadingMode, Polarity, Shape};
use kestrel_geo::Georef;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// The image a label file describes: its size in pixels, its georeferencing (for GeoJSON in
/// map coordinates) and its file name (to pick its own rows out of multi-image files).
///
/// A `width` or `height` of 0 means "unknown": readers then take the size the label file
/// declares (VOC `<size>`, COCO `images[]`) or, when it declares none, skip the
/// inside-the-image check. YOLO needs the size to turn normalised values into pixels.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImageFrame<'a> {
    pub width: u32,
    pub height: u32,
    pub georef: Option<&'a Georef>,
    pub file_name: Option<&'a str>,
}

/// One object read from a label file, in image pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelRecord {
    pub class_name: String,
    pub shape: Shape,
    pub polarity: Polarity,
    /// `None` when the file says nothing about headings (axis-aligned boxes).
    pub heading_mode: Option<HeadingMode>,
    /// 1-based line of the object in the file (0 when it cannot be told).
    pub line: usize,
}

/// A problem with a label file: a skipped line or object, or (as the error of
/// [`read_labels`]) the whole file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelIssue {
    pub file: String,
    /// 1-based line; 0 when the problem is not tied to a line.
    pub line: usize,
    pub problem: String,
}

impl fmt::Display for LabelIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.problem)
    }
}

impl std::error::Error for LabelIssue {}

/// The label formats Kestrel reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelFormat {
    /// `class cx cy w h`, normalised to [0, 1], one object per line.
    Yolo,
    /// Pascal VOC XML (also roLabelImg's `<robndbox>`).
    Voc,
    /// DeepForest CSV: `image_path,xmin,ymin,xmax,ymax,label` with a header line.
    Csv,
    /// DOTA: `x1 y1 x2 y2 x3 y3 x4 y4 class difficult`.
    Dota,
    /// GeoJSON polygons and points, in a CRS or in pixels.
    GeoJson,
    /// COCO object detection JSON (`images`, `categories`, `annotations`).
    Coco,
}

impl LabelFormat {
    pub fn name(self) -> &'static str {
        match self {
            LabelFormat::Yolo => "yolo",
            LabelFormat::Voc => "voc",
            LabelFormat::Csv => "csv",
            LabelFormat::Dota => "dota",
            LabelFormat::GeoJson => "geojson",
            LabelFormat::Coco => "coco",
        }
    }
}

impl fmt::Display for LabelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LabelFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "yolo" => Ok(LabelFormat::Yolo),
            "voc" | "pascal-voc" | "pascal_voc" => Ok(LabelFormat::Voc),
            "csv" | "deepforest" => Ok(LabelFormat::Csv),
            "dota" => Ok(LabelFormat::Dota),
            "geojson" => Ok(LabelFormat::GeoJson),
            "coco" => Ok(LabelFormat::Coco),
            other => Err(format!(
                "unknown label format \"{other}\" (expected yolo, voc, csv, dota, geojson or coco)"
            )),
        }
    }
}

/// What a label file yields: the records that were read and the lines that were skipped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSet {
    pub records: Vec<LabelRecord>,
    pub issues: Vec<LabelIssue>,
}

/// How much of a file [`detect_format`] looks at: enough for the top of any JSON file,
/// without reading a large COCO file whole.
const PEEK_BYTES: u64 = 1 << 20;

/// Tells a label file's format from its extension and a peek at its content; `None` when
/// neither says.
///
/// `.xml` is VOC and `.csv` DeepForest CSV. A `.txt` is YOLO when its first object line holds
/// five numbers and DOTA when it holds eight numbers and a class name (or starts with DOTA's
/// `imagesource:`/`gsd:` header). A `.json`/`.geojson` is COCO when it has `images` and
/// `annotations` members and GeoJSON when it holds a `FeatureCollection` or `Feature`.
pub fn detect_format(path: &Path) -> Option<LabelFormat> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "xml" => Some(LabelFormat::Voc),
        "csv" => Some(LabelFormat::Csv),
        "txt" => {
            let head = peek(path)?;
            for line in head.lines().map(str::trim).filter(|l| !l.is_empty()) {
                if dota::is_header_line(line) {
                    return Some(LabelFormat::Dota);
                }
                let fields: Vec<&str> = line.split_whitespace().collect();
                let numeric = |f: &&str| f.parse::<f64>().is_ok();
                if fields.len() == 5 && fields.iter().all(numeric) {
                    return Some(LabelFormat::Yolo);
                }
                if fields.len() >= 9 && fields[..8].iter().all(numeric) && !numeric(&fields[8]) {
                    return Some(LabelFormat::Dota);
                }
                // The first object line decides: anything else is neither.
                return None;
            }
            None
        }
        "json" | "geojson" => {
            let head = peek(path)?;
            let has = |key: &str| head.contains(&format!("\"{key}\""));
            if has("images") && has("annotations") && !has("FeatureCollection") {
                Some(LabelFormat::Coco)
            } else if has("FeatureCollection") || has("Feature") || ext == "geojson" {
                Some(LabelFormat::GeoJson)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The first [`PEEK_BYTES`] of a file as text (a multi-byte character cut at the end is
/// dropped).
fn peek(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(PEEK_BYTES)
        .read_to_end(&mut buf)
        .ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Reads the labels of one image from `path`.
///
/// `class_names` maps YOLO class ids to names (ids are kept as text when it is empty); the
/// other formats name their classes themselves.
pub fn read_labels(
    path: &Path,
    format: LabelFormat,
    frame: &ImageFrame,
    class_names: &[String],
) -> Result<LabelSet, LabelIssue> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| LabelIssue {
        file: file.clone(),
        line: 0,
        problem: format!("cannot read: {e}"),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| LabelIssue {
        file: file.clone(),
        line: line_of_offset_bytes(e.as_bytes(), e.utf8_error().valid_up_to()),
        problem: "not UTF-8 text".into(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if text.trim().is_empty() {
        return Err(LabelIssue {
            file,
            line: 0,
            problem: format!("empty {format} label file"),
        });
    }
    let mut reader = Reader::new(file, frame, class_names);
    match format {
        LabelFormat::Yolo => yolo::read(text, &mut reader)?,
        LabelFormat::Voc => voc::read(text, &mut reader)?,
        LabelFormat::Csv => csv::read(text, &mut reader)?,
        LabelFormat::Dota => dota::read(text, &mut reader)?,
        LabelFormat::GeoJson => geojson::read(text, &mut reader)?,
        LabelFormat::Coco => coco::read(text, &mut reader)?,
    }
    Ok(reader.set)
}

/// Writes `records` as a GeoJSON FeatureCollection, one polygon feature per record.
///
/// With a georeferenced frame whose CRS is known, polygons are in that CRS (declared with a
/// `crs` member, as GDAL reads it, so that no precision is lost to reprojection); otherwise
/// they are in pixels and the file says so in `coordinate_space`. Points become 1-pixel
/// squares around the point. Each feature's properties are `class`, `polarity`,
/// `heading_mode` (when known), `heading_deg` (when the shape has one) and `shape`: the exact
/// pixel geometry, which [`read_labels`] uses in place of the polygon on re-import.
pub fn write_geojson_labels(
    path: &Path,
    records: &[LabelRecord],
    frame: &ImageFrame,
) -> Result<(), kestrel_geo::GeoError> {
    use kestrel_geo::vector::{write_geojson, GeoJsonOptions};
    // Map coordinates only when they can be declared: a transform without a CRS would be
    // read back as pixels.
    let georef = frame.georef.filter(|g| g.crs.is_some());
    let features: Vec<_> = records
        .iter()
        .map(|r| shape_feature(&r.shape, &r.class_name, r.polarity, r.heading_mode, georef))
        .collect();
    write_geojson(
        path,
        &features,
        georef.and_then(|g| g.crs.as_ref()),
        &GeoJsonOptions {
            keep_source_crs: true,
        },
    )
}

/// The vector feature of a sample: its outline (in map coordinates through `georef`, else
/// pixels) with class, polarity, heading mode and heading, and Kestrel's exact pixel
/// geometry in `shape`, from which a re-import restores the sample without loss. Points get
/// a one-pixel square, since a ring needs an area.
pub fn shape_feature(
    shape: &Shape,
    class: &str,
    polarity: Polarity,
    heading_mode: Option<HeadingMode>,
    georef: Option<&Georef>,
) -> kestrel_geo::vector::Feature {
    let mut ring = match *shape {
        Shape::Point { x, y, .. } => vec![
            (x - 0.5, y - 0.5),
            (x + 0.5, y - 0.5),
            (x + 0.5, y + 0.5),
            (x - 0.5, y + 0.5),
        ],
        _ => shape.polygon(),
    };
    if let Some(g) = georef {
        for p in &mut ring {
            *p = g.transform.pixel_to_map(p.0, p.1);
        }
    }
    let mut properties = serde_json::Map::new();
    properties.insert("class".into(), class.into());
    properties.insert(
        "polarity".into(),
        serde_json::to_value(polarity).unwrap_or_default(),
    );
    if let Some(mode) = heading_mode {
        properties.insert(
            "heading_mode".into(),
            serde_json::to_value(mode).unwrap_or_default(),
        );
    }
    if let Some(h) = shape.heading_deg() {
        properties.insert("heading_deg".into(), h.into());
    }
    properties.insert(
        "shape".into(),
        serde_json::to_value(shape).unwrap_or_default(),
    );
    kestrel_geo::vector::Feature { ring, properties }
}

/// How far (pixels) a box may reach past the image edge before it is reported: labelling
/// tools round edges outwards and VOC counts pixels from 1.
const EDGE_TOLERANCE_PX: f64 = 1.0;

/// Collects the records and issues of one file, and checks each record as it comes.
pub(crate) struct Reader<'a> {
    pub file: String,
    pub frame: &'a ImageFrame<'a>,
    pub class_names: &'a [String],
    /// Image size used for checks (0 = unknown): the frame's, or what the file declares.
    pub width: u32,
    pub height: u32,
    pub set: LabelSet,
}

impl<'a> Reader<'a> {
    fn new(file: String, frame: &'a ImageFrame<'a>, class_names: &'a [String]) -> Self {
        Reader {
            file,
            frame,
            class_names,
            width: frame.width,
            height: frame.height,
            set: LabelSet::default(),
        }
    }

    /// An error about the whole file.
    pub fn error(&self, line: usize, problem: impl Into<String>) -> LabelIssue {
        LabelIssue {
            file: self.file.clone(),
            line,
            problem: problem.into(),
        }
    }

    /// Records a skipped line or object.
    pub fn issue(&mut self, line: usize, problem: impl Into<String>) {
        let issue = self.error(line, problem);
        self.set.issues.push(issue);
    }

    /// Takes the image size a file declares. When the frame gives a size too, the two must
    /// agree: labels drawn on another resolution would land in the wrong place.
    pub fn declare_size(&mut self, width: u32, height: u32, line: usize) -> Result<(), LabelIssue> {
        if width == 0 || height == 0 {
            return Ok(());
        }
        if self.width == 0 || self.height == 0 {
            self.width = width;
            self.height = height;
            return Ok(());
        }
        if (width, height) != (self.width, self.height) {
            return Err(self.error(
                line,
                format!(
                    "labels are for a {width}x{height} image, but the image is {}x{}",
                    self.width, self.height
                ),
            ));
        }
        Ok(())
    }

    /// Whether the file's own image name (as written in it) names the frame's image; true
    /// when either is unknown. Directories are ignored on both sides.
    pub fn is_frame_image(&self, name_in_file: &str) -> bool {
        match self.frame.file_name {
            Some(frame_name) => basename(name_in_file) == basename(frame_name),
            None => true,
        }
    }

    /// Checks a shape and keeps it as a record, or reports why not.
    pub fn push(
        &mut self,
        line: usize,
        class_name: &str,
        shape: Shape,
        polarity: Polarity,
        heading_mode: Option<HeadingMode>,
    ) {
        let bounds = shape.bounds();
        self.push_with_extent(line, class_name, shape, polarity, heading_mode, bounds)
    }

    /// As [`Reader::push`], but checks `extent` against the image instead of the shape's own
    /// bounds: for shapes fitted to a source geometry (a rectangle fitted to a polygon may
    /// poke past the polygon's corners, and so past the image edge, where the polygon did not).
    pub fn push_with_extent(
        &mut self,
        line: usize,
        class_name: &str,
        shape: Shape,
        polarity: Polarity,
        heading_mode: Option<HeadingMode>,
        extent: [f64; 4],
    ) {
        match self.check(&shape, extent) {
            Ok(()) => self.set.records.push(LabelRecord {
                class_name: class_name.to_string(),
                shape,
                polarity,
                heading_mode,
                line,
            }),
            Err(problem) => self.issue(line, problem),
        }
    }

    fn check(&self, shape: &Shape, extent: [f64; 4]) -> Result<(), String> {
        let finite = match *shape {
            Shape::AxisBox { cx, cy, w, h } => [cx, cy, w, h].iter().all(|v| v.is_finite()),
            Shape::OrientedBox {
                cx,
                cy,
                length,
                width,
                heading_deg,
            } => [cx, cy, length, width, heading_deg]
                .iter()
                .all(|v| v.is_finite()),
            Shape::Point { x, y, heading_deg } => {
                x.is_finite() && y.is_finite() && heading_deg.is_none_or(f64::is_finite)
            }
        };
        if !finite || !extent.iter().all(|v| v.is_finite()) {
            return Err("coordinates are not finite numbers".into());
        }
        match *shape {
            Shape::AxisBox { w, h, .. } if w <= 0.0 || h <= 0.0 => {
                return Err(format!("box has zero or negative size ({w} x {h} px)"))
            }
            Shape::OrientedBox { length, width, .. } if length <= 0.0 || width <= 0.0 => {
                return Err(format!(
                    "box has zero or negative size ({length} x {width} px)"
                ))
            }
            _ => {}
        }
        if self.width > 0 && self.height > 0 {
            let t = EDGE_TOLERANCE_PX;
            let [x0, y0, x1, y1] = extent;
            if x0 < -t || y0 < -t || x1 > self.width as f64 + t || y1 > self.height as f64 + t {
                return Err(format!(
                    "[{x0:.1}, {y0:.1}, {x1:.1}, {y1:.1}] lies outside the {}x{} image",
                    self.width, self.height
                ));
            }
        }
        Ok(())
    }
}

/// The last component of a path written with `/` or `\` separators.
pub(crate) fn basename(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path).trim()
}

/// Parses a number field, naming it in the problem when it is not one.
pub(crate) fn number(field: &str, what: &str) -> Result<f64, String> {
    let v: f64 = field
        .trim()
        .parse()
        .map_err(|_| format!("{what} \"{}\" is not a number", field.trim()))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!(
            "{what} \"{}\" is not a finite number",
            field.trim()
        ))
    }
}

/// An axis-aligned box from its edges.
pub(crate) fn axis_box_from_edges(xmin: f64, ymin: f64, xmax: f64, ymax: f64) -> Shape {
    Shape::AxisBox {
        cx: (xmin + xmax) / 2.0,
        cy: (ymin + ymax) / 2.0,
        w: xmax - xmin,
        h: ymax - ymin,
    }
}

/// 1-based line of a byte offset.
pub(crate) fn line_of_offset(text: &str, offset: usize) -> usize {
    line_of_offset_bytes(text.as_bytes(), offset)
}

fn line_of_offset_bytes(bytes: &[u8], offset: usize) -> usize {
    1 + bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// 1-based lines where the elements of the array under top-level member `key` start, e.g.
/// each feature of a GeoJSON FeatureCollection. `serde_json` keeps no positions, so this
/// scans the text itself (strings and nesting only: it runs on text that already parsed).
pub(crate) fn json_array_element_lines(text: &str, key: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let (mut depth, mut line) = (0usize, 1usize);
    let (mut in_string, mut escaped) = (false, false);
    let mut string_start = 0;
    // The last string closed directly inside the top-level object, and the member whose
    // value is being read.
    let mut last_string: Option<&str> = None;
    let mut member: Option<&str> = None;
    // Depth inside the wanted array, and whether the next value starts an element.
    let mut array_depth: Option<usize> = None;
    let mut expect_element = false;
    for (i, c) in text.char_indices() {
        if c == '\n' {
            line += 1;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
                if depth == 1 {
                    last_string = Some(&text[string_start..i]);
                }
            }
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        if array_depth == Some(depth) && expect_element && c != ']' && c != ',' {
            lines.push(line);
            expect_element = false;
        }
        match c {
            '"' => {
                in_string = true;
                string_start = i + 1;
            }
            ':' if depth == 1 => member = last_string.take(),
            ',' if depth == 1 => member = None,
            ',' if array_depth == Some(depth) => expect_element = true,
            '{' | '[' => {
                if c == '[' && depth == 1 && member == Some(key) && array_depth.is_none() {
                    array_depth = Some(2);
                    expect_element = true;
                }
                depth += 1;
            }
            '}' | ']' => {
                if array_depth == Some(depth) && c == ']' {
                    return lines;
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
    }
    lines
}

/// The line of element `index` from [`json_array_element_lines`], or 0 when the scan did
/// not find as many elements as the parser did.
pub(crate) fn element_line(lines: &[usize], index: usize, count: usize) -> usize {
    if lines.len() == count {
        lines[index]
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_lines_of_array_elements() {
        let text = "{\n \"type\": \"x\",\n \"features\": [\n  {\"a\": [1, 2]},\n  {\"b\": \"]\"}\n ,\n 3]\n}";
        assert_eq!(json_array_element_lines(text, "features"), vec![4, 5, 7]);
        assert_eq!(
            json_array_element_lines(text, "missing"),
            Vec::<usize>::new()
        );
        // A member of a nested object with the same name is not the top-level one.
        let nested = "{\"x\": {\"features\": [1]},\n\"features\": [\n2]}";
        assert_eq!(json_array_element_lines(nested, "features"), vec![3]);
    }

    #[test]
    fn formats_parse_by_name() {
        for f in [
            LabelFormat::Yolo,
            LabelFormat::Voc,
            LabelFormat::Csv,
            LabelFormat::Dota,
            LabelFormat::GeoJson,
            LabelFormat::Coco,
        ] {
            assert_eq!(f.name().parse::<LabelFormat>().unwrap(), f);
        }
        assert!("shapefile".parse::<LabelFormat>().is_err());
    }

    #[test]
    fn basenames_ignore_directories() {
        assert_eq!(basename("a/b/c.tif"), "c.tif");
        assert_eq!(basename("C:\\x\\c.tif"), "c.tif");
        assert_eq!(basename("c.tif"), "c.tif");
    }
}
