//! Samples out of a project as vector files (GeoJSON, GeoPackage) that open in QGIS and
//! re-import into Kestrel without loss.

use crate::labels::shape_feature;
use crate::store::{Project, SampleFilter, StoreError};
use std::path::Path;

/// Writes the project's samples (of one class, or all) to `output` (`.geojson` or `.gpkg`),
/// in the images' common CRS or, for unreferenced images, in pixels. Returns how many.
pub fn export_samples(
    project: &Project,
    output: &Path,
    class: Option<&str>,
) -> Result<usize, StoreError> {
    export_samples_of(project, output, class, None)
}

/// [`export_samples`] limited to one image when `image_id` is given.
pub fn export_samples_of(
    project: &Project,
    output: &Path,
    class: Option<&str>,
    image_id: Option<i64>,
) -> Result<usize, StoreError> {
    let class_id = match class {
        Some(name) => Some(
            project
                .class_by_name(name)?
                .ok_or_else(|| StoreError::NotFound {
                    what: "class",
                    id: name.to_string(),
                })?
                .id,
        ),
        None => None,
    };
    let samples = project.samples(&SampleFilter {
        class_id,
        image_id,
        ..Default::default()
    })?;
    let images = project.images()?;
    let classes = project.classes()?;
    // One CRS for the file: the images' common one, or pixels when none is georeferenced.
    let crs_texts: std::collections::BTreeSet<Option<String>> = images
        .iter()
        .filter(|i| samples.iter().any(|s| s.image_id == i.id))
        .map(|i| i.crs.clone())
        .collect();
    if crs_texts.len() > 1 {
        return Err(StoreError::Invalid { what: "export", problem: format!("the samples lie on images in different CRSs ({crs_texts:?}); export one class at a time") });
    }
    let crs = match crs_texts.into_iter().next().flatten() {
        Some(c) => Some(kestrel_geo::Crs::parse(&c)?),
        None => None,
    };
    let mut features = Vec::with_capacity(samples.len());
    for s in &samples {
        let image =
            images
                .iter()
                .find(|i| i.id == s.image_id)
                .ok_or_else(|| StoreError::NotFound {
                    what: "image",
                    id: s.image_id.to_string(),
                })?;
        let georef = image.georef()?;
        let class = classes
            .iter()
            .find(|c| c.id == s.class_id)
            .map(|c| c.name.as_str())
            .unwrap_or_default();
        let mut f = shape_feature(
            &s.shape,
            class,
            s.polarity,
            Some(s.heading_mode),
            georef.as_ref(),
        );
        f.properties.insert("sample_id".into(), s.id.into());
        f.properties.insert(
            "origin".into(),
            serde_json::to_value(s.origin).unwrap_or_default(),
        );
        f.properties
            .insert("image".into(), image.uri.clone().into());
        features.push(f);
    }
    let ext = output
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "gpkg" => {
            kestrel_geo::vector::write_geopackage(output, "samples", &features, crs.as_ref())?
        }
        "geojson" | "json" => kestrel_geo::vector::write_geojson(
            output,
            &features,
            crs.as_ref(),
            &Default::default(),
        )?,
        _ => {
            return Err(StoreError::Invalid {
                what: "export file",
                problem: format!(
                    "{}: the name must end in .geojson or .gpkg",
                    output.display()
                ),
            })
        }
    }
    Ok(features.len())
}
