//! GeoJSON writing and summarizing.

use super::{closed_ccw_ring, Feature, LayerInfo, VectorInfo};
use crate::crs::{Crs, CrsTransform};
use crate::error::{GeoError, Result};
use std::path::Path;

#[derive(Clone, Debug, Default)]
pub struct GeoJsonOptions {
    /// Keep coordinates in the source CRS (declared with a `crs` member, as GDAL reads it)
    /// instead of RFC 7946 longitude/latitude.
    pub keep_source_crs: bool,
}

/// Writes `features`, whose coordinates are in `crs` (`None`: pixel coordinates, x right,
/// y down, which the file then declares in a `coordinate_space` member).
pub fn write_geojson(
    path: impl AsRef<Path>,
    features: &[Feature],
    crs: Option<&Crs>,
    options: &GeoJsonOptions,
) -> Result<()> {
    let path = path.as_ref();
    let to_ll = match crs {
        Some(c) if !options.keep_source_crs => Some(CrsTransform::new(c, &Crs::wgs84())?),
        _ => None,
    };
    let mut out = Vec::with_capacity(features.len());
    for f in features {
        let mut ring = closed_ccw_ring(&f.ring);
        if let Some(t) = &to_ll {
            t.apply_all(&mut ring)?;
        }
        let coords: Vec<geojson::Position> =
            ring.into_iter().map(geojson::Position::from).collect();
        out.push(geojson::Feature {
            bbox: None,
            geometry: Some(geojson::Geometry::new(geojson::GeometryValue::Polygon {
                coordinates: vec![coords],
            })),
            id: None,
            properties: Some(f.properties.clone()),
            foreign_members: None,
        });
    }
    let mut fc = geojson::FeatureCollection::new(out);
    let mut members = serde_json::Map::new();
    match crs {
        Some(c) if options.keep_source_crs => {
            let name = match c.epsg {
                Some(code) => format!("urn:ogc:def:crs:EPSG::{code}"),
                None => c.to_wkt().unwrap_or_else(|| c.name.clone()),
            };
            members.insert(
                "crs".into(),
                serde_json::json!({"type": "name", "properties": {"name": name}}),
            );
        }
        Some(_) => {}
        None => {
            members.insert("coordinate_space".into(), "pixel (x right, y down)".into());
        }
    }
    if !members.is_empty() {
        fc.foreign_members = Some(members);
    }
    let text = serde_json::to_string(&fc).map_err(|e| GeoError::write(path, e))?;
    std::fs::write(path, text).map_err(|e| GeoError::io(path, e))
}

/// Feature count, geometry types, CRS and bounds of a GeoJSON file.
pub fn describe_geojson(path: impl AsRef<Path>) -> Result<VectorInfo> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| GeoError::io(path, e))?;
    let gj: geojson::GeoJson = text.parse().map_err(|e| GeoError::Unsupported {
        path: path.display().to_string(),
        problem: format!("invalid GeoJSON: {e}"),
    })?;
    let features: Vec<geojson::Feature> = match gj {
        geojson::GeoJson::FeatureCollection(fc) => {
            let crs = fc
                .foreign_members
                .as_ref()
                .and_then(|m| m.get("crs"))
                .and_then(|c| c.pointer("/properties/name"))
                .and_then(|n| n.as_str())
                .map(|n| n.replace("urn:ogc:def:crs:", "").replace("::", ":"));
            return Ok(summary(path, fc.features, crs));
        }
        geojson::GeoJson::Feature(f) => vec![f],
        geojson::GeoJson::Geometry(g) => vec![geojson::Feature::from(g)],
    };
    Ok(summary(path, features, None))
}

fn summary(path: &Path, features: Vec<geojson::Feature>, crs: Option<String>) -> VectorInfo {
    let mut types: Vec<String> = Vec::new();
    let mut b = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    fn visit(v: &serde_json::Value, b: &mut [f64; 4]) {
        match v {
            serde_json::Value::Array(a) if a.len() >= 2 && a.iter().all(|x| x.is_number()) => {
                let (x, y) = (
                    a[0].as_f64().unwrap_or(f64::NAN),
                    a[1].as_f64().unwrap_or(f64::NAN),
                );
                b[0] = b[0].min(x);
                b[1] = b[1].min(y);
                b[2] = b[2].max(x);
                b[3] = b[3].max(y);
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| visit(x, b)),
            _ => {}
        }
    }
    for f in &features {
        if let Some(g) = &f.geometry {
            let t = g.value.type_name().to_string();
            if !types.contains(&t) {
                types.push(t);
            }
            if let Ok(v) = serde_json::to_value(&g.value) {
                if let Some(c) = v.get("coordinates") {
                    visit(c, &mut b);
                }
            }
        }
    }
    VectorInfo {
        path: path.display().to_string(),
        format: "GeoJSON",
        layers: vec![LayerInfo {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            features: features.len() as u64,
            geometry_types: types,
            crs: crs.or_else(|| Some("EPSG:4326".into())),
            bounds: b[0].is_finite().then_some(b),
        }],
    }
}
