//! COCO object detection JSON: `images` (id, file_name, width, height), `categories` (id,
//! name) and `annotations` (image_id, category_id, bbox `[x, y, width, height]` in pixels
//! from the top-left corner). One file holds many images: only the frame's are read.

use super::{LabelIssue, Reader};
use crate::Polarity;
use serde_json::Value;

pub(crate) fn read(text: &str, r: &mut Reader) -> Result<(), LabelIssue> {
    let root: Value =
        serde_json::from_str(text).map_err(|e| r.error(e.line(), format!("invalid JSON: {e}")))?;
    let array = |key: &str| root.get(key).and_then(Value::as_array);
    let images =
        array("images").ok_or_else(|| r.error(1, "not a COCO file: no \"images\" array"))?;
    let annotations = array("annotations")
        .ok_or_else(|| r.error(1, "not a COCO file: no \"annotations\" array"))?;
    let image = frame_image(images, r)?;
    let image_id = image
        .get("id")
        .filter(|v| v.is_number() || v.is_string())
        .ok_or_else(|| r.error(0, "the image has no \"id\""))?;
    let size = |k: &str| {
        image
            .get(k)
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0)
    };
    r.declare_size(size("width"), size("height"), 0)?;

    // Category names by id; without categories, ids are kept as text (as YOLO does).
    let categories: Option<Vec<(&Value, String)>> = array("categories").map(|cs| {
        cs.iter()
            .filter_map(|c| Some((c.get("id")?, c.get("name")?.as_str()?.trim().to_string())))
            .collect()
    });
    let lines = super::json_array_element_lines(text, "annotations");
    for (i, a) in annotations.iter().enumerate() {
        let line = super::element_line(&lines, i, annotations.len());
        if a.get("image_id").is_some_and(|id| same_id(id, image_id)) {
            match parse_annotation(a, categories.as_deref()) {
                Ok((class_name, [x, y, w, h])) => r.push(
                    line,
                    &class_name,
                    super::axis_box_from_edges(x, y, x + w, y + h),
                    Polarity::Positive,
                    None,
                ),
                Err(problem) => r.issue(line, problem),
            }
        } else if !a.is_object() {
            r.issue(line, "annotation is not a JSON object");
        }
    }
    Ok(())
}

/// The `images` entry of the frame's image: the one whose file name matches, else the only
/// one there is.
fn frame_image<'v>(images: &'v [Value], r: &Reader) -> Result<&'v Value, LabelIssue> {
    let name_of = |img: &Value| {
        img.get("file_name")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if r.frame.file_name.is_some() {
        if let Some(img) = images
            .iter()
            .find(|img| name_of(img).is_some_and(|n| r.is_frame_image(&n)))
        {
            return Ok(img);
        }
    }
    match images {
        [only] => Ok(only),
        [] => Err(r.error(0, "the COCO file lists no images")),
        _ => Err(r.error(
            0,
            match r.frame.file_name {
                Some(name) => format!("none of the {} images is \"{name}\"", images.len()),
                None => format!(
                    "the file lists {} images: the image's file name is needed to choose",
                    images.len()
                ),
            },
        )),
    }
}

/// Ids compare as JSON values, with numbers compared by value (`1` and `1.0` are one id).
fn same_id(a: &Value, b: &Value) -> bool {
    a == b || matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

fn parse_annotation(
    a: &Value,
    categories: Option<&[(&Value, String)]>,
) -> Result<(String, [f64; 4]), String> {
    let bbox = match a
        .get("bbox")
        .and_then(Value::as_array)
        .map(|b| b.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
    {
        Some(Some(b)) if b.len() == 4 && b.iter().all(|v| v.is_finite()) => {
            [b[0], b[1], b[2], b[3]]
        }
        _ => {
            return Err(format!(
                "bbox {} is not [x, y, width, height]",
                a.get("bbox").unwrap_or(&Value::Null)
            ))
        }
    };
    let category = a
        .get("category_id")
        .filter(|v| v.is_number() || v.is_string())
        .ok_or("annotation has no category_id")?;
    let class_name = match categories {
        Some(cs) => cs
            .iter()
            .find(|(id, _)| same_id(id, category))
            .map(|(_, name)| name.clone())
            .ok_or_else(|| format!("category_id {category} is not among the categories"))?,
        None => category
            .as_str()
            .map_or_else(|| category.to_string(), str::to_string),
    };
    Ok((class_name, bbox))
}
