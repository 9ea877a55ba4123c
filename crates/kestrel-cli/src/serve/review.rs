//! Review: detections listed strongest first; accepting one makes it a positive sample,
//! rejecting it a hard negative, in one transaction with its new status; and the project's
//! samples and detections exported as GeoJSON or GeoPackage.

use super::error::{ApiResult, Json, Path, Query};
use super::{ApiError, Shared};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kestrel_geo::vector::{write_geojson, write_geopackage, GeoJsonOptions};
use kestrel_samples::store::{DetectionFilter, DetectionRecord, ReviewStatus};
use kestrel_samples::StoreError;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize, Default)]
pub struct DetectionQuery {
    image_id: Option<i64>,
    status: Option<ReviewStatus>,
    min_score: Option<f64>,
    #[allow(dead_code)]
    token: Option<String>,
}

pub async fn list(State(state): State<Shared>, Query(q): Query<DetectionQuery>) -> ApiResult<Json<Vec<DetectionRecord>>> {
    Ok(Json(state.db().detections(&DetectionFilter { image_id: q.image_id, status: q.status, min_score: q.min_score })?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionBody {
    version: i64,
}

fn conflict_with_current(state: &Shared, id: i64, e: StoreError) -> ApiError {
    let conflict = matches!(e, StoreError::Conflict { .. });
    let mut err = ApiError::from(e);
    if matches!(err.status, StatusCode::BAD_REQUEST) && err.message.contains("already") {
        err.status = StatusCode::CONFLICT;
    }
    if conflict || err.status == StatusCode::CONFLICT {
        err.current = state.db().detection(id).ok().and_then(|d| serde_json::to_value(d).ok());
    }
    err
}

async fn review(state: Shared, id: i64, version: i64, accept: bool) -> ApiResult<Json<Value>> {
    let result = state.db().review_detection(id, version, accept);
    let (detection, sample) = result.map_err(|e| conflict_with_current(&state, id, e))?;
    Ok(Json(json!({"detection": detection, "sample": sample})))
}

pub async fn accept(State(state): State<Shared>, Path(id): Path<i64>, Json(body): Json<VersionBody>) -> ApiResult<Json<Value>> {
    review(state, id, body.version, true).await
}

pub async fn reject(State(state): State<Shared>, Path(id): Path<i64>, Json(body): Json<VersionBody>) -> ApiResult<Json<Value>> {
    review(state, id, body.version, false).await
}

pub async fn reset(State(state): State<Shared>, Path(id): Path<i64>, Json(body): Json<VersionBody>) -> ApiResult<Json<Value>> {
    let result = state.db().reset_detection(id, body.version);
    let detection = result.map_err(|e| conflict_with_current(&state, id, e))?;
    Ok(Json(json!({"detection": detection})))
}

#[derive(Deserialize, Default)]
pub struct ExportQuery {
    image_id: Option<i64>,
    #[allow(dead_code)]
    token: Option<String>,
}

/// `samples.geojson|gpkg` or `detections.geojson|gpkg`, written to a temporary file (the
/// writers are the CLI's) and sent as a download.
pub async fn export(State(state): State<Shared>, Path(file): Path<String>, Query(q): Query<ExportQuery>) -> ApiResult<Response> {
    let (what, ext) = file.rsplit_once('.').ok_or_else(|| ApiError::not_found(format!("{file}: export samples.geojson, samples.gpkg, detections.geojson or detections.gpkg")))?;
    if !matches!(what, "samples" | "detections") || !matches!(ext, "geojson" | "gpkg") {
        return Err(ApiError::not_found(format!("{file}: export samples.geojson, samples.gpkg, detections.geojson or detections.gpkg")));
    }
    let (what, ext) = (what.to_string(), ext.to_string());
    let name = file.clone();
    let bytes = tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
        let tmp = tempfile_dir()?;
        let path = tmp.join(&name);
        let db = kestrel_samples::Project::open(&state.project_dir)?;
        if what == "samples" {
            kestrel_samples::export::export_samples_of(&db, &path, None, q.image_id)?;
        } else {
            write_detections(&db, &path, q.image_id, ext == "gpkg")?;
        }
        let bytes = std::fs::read(&path).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the export: {e}")));
        let _ = std::fs::remove_dir_all(&tmp);
        bytes
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let mime = if file.ends_with(".gpkg") { "application/geopackage+sqlite3" } else { "application/geo+json" };
    Ok(([(header::CONTENT_TYPE, mime.to_string()), (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file}\""))], bytes).into_response())
}

/// A fresh private folder under the system's temporary directory.
fn tempfile_dir() -> ApiResult<std::path::PathBuf> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!("kestrel-export-{}-{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    std::fs::create_dir_all(&dir).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

/// Detections with the same properties `kestrel detect` writes, plus their review status.
fn write_detections(db: &kestrel_samples::Project, path: &std::path::Path, image_id: Option<i64>, gpkg: bool) -> ApiResult<()> {
    let detections = db.detections(&DetectionFilter { image_id, ..Default::default() })?;
    let images = db.images()?;
    let classes = db.classes()?;
    let mut crs = None;
    let mut features = Vec::new();
    for d in &detections {
        let Some(image) = images.iter().find(|i| i.id == d.image_id) else { continue };
        let georef = image.georef()?;
        if let Some(c) = georef.as_ref().and_then(|g| g.crs.clone()) {
            match &crs {
                None => crs = Some(c),
                Some(first) if first.proj4 != c.proj4 => return Err(ApiError::bad_request("the detections lie on images in different CRSs; export one image at a time (?image_id=)")),
                _ => {}
            }
        }
        let kestrel_samples::Shape::OrientedBox { cx, cy, length, width, heading_deg } = d.shape else { continue };
        let gsd = image.gsd_m.unwrap_or(1.0);
        let class = classes.iter().find(|c| c.id == d.class_id);
        let detection = kestrel_detect::detect::Detection {
            class: class.map(|c| c.name.clone()).unwrap_or_default(),
            bbox: kestrel_detect::geometry::OrientedBox { cx, cy, length, width, heading_deg },
            length_m: length * gsd,
            width_m: width * gsd,
            score: d.score as f32,
            match_score: d.match_score.map(|m| m as f32),
        };
        let mode = class.map_or(kestrel_samples::HeadingMode::Directed, |c| c.heading_mode);
        // The same feature `kestrel detect` writes, plus what review made of it.
        let mut f = crate::detect_cmd::feature(&detection, &image.uri, georef.as_ref(), mode);
        f.properties.insert("status".into(), json!(d.status));
        f.properties.insert("model".into(), json!(d.model_id));
        features.push(f);
    }
    let written = if gpkg { write_geopackage(path, "detections", &features, crs.as_ref()) } else { write_geojson(path, &features, crs.as_ref(), &GeoJsonOptions::default()) };
    written.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("writing the export: {e}")))
}
