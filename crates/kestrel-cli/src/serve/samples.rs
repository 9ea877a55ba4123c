//! Classes and samples: every edit is one store call, committed before the reply, and
//! guarded by the sample's version so that two tabs never silently overwrite each other.

use super::error::{ApiResult, Json, Path, Query};
use super::{ApiError, Shared};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kestrel_samples::chips::{build_chips, chip_to_rgb8, ChipOptions};
use kestrel_samples::store::{NewSample, SampleFilter};
use kestrel_samples::{HeadingMode, Origin, Polarity, Sample, Shape, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

pub async fn classes(State(state): State<Shared>) -> ApiResult<Json<Vec<Value>>> {
    let db = state.db();
    let counts: HashMap<i64, (usize, usize)> = db.sample_counts()?.into_iter().map(|(c, p, n)| (c, (p, n))).collect();
    let classes = db.classes()?;
    Ok(Json(
        classes
            .iter()
            .map(|c| {
                let (p, n) = counts.get(&c.id).copied().unwrap_or_default();
                json!({"id": c.id, "name": c.name, "heading_mode": c.heading_mode, "color": c.color, "samples": {"positive": p, "negative": n}})
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClass {
    name: String,
    heading_mode: HeadingMode,
    color: Option<String>,
}

pub async fn add_class(State(state): State<Shared>, Json(body): Json<NewClass>) -> ApiResult<Response> {
    let mut db = state.db();
    if db.class_by_name(body.name.trim())?.is_some() {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("a class named {:?} exists", body.name.trim())));
    }
    let mut class = db.add_class(&body.name, body.heading_mode)?;
    if let Some(color) = &body.color {
        class = db.set_class_color(class.id, color)?;
    }
    Ok((StatusCode::CREATED, Json(json!({"id": class.id, "name": class.name, "heading_mode": class.heading_mode, "color": class.color, "samples": {"positive": 0, "negative": 0}}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchClass {
    color: String,
}

pub async fn patch_class(State(state): State<Shared>, Path(id): Path<i64>, Json(body): Json<PatchClass>) -> ApiResult<Json<Value>> {
    let class = state.db().set_class_color(id, &body.color)?;
    Ok(Json(json!({"id": class.id, "name": class.name, "heading_mode": class.heading_mode, "color": class.color})))
}

#[derive(Deserialize, Default)]
pub struct SampleQuery {
    image_id: Option<i64>,
    class_id: Option<i64>,
    polarity: Option<Polarity>,
    #[allow(dead_code)]
    token: Option<String>,
}

pub async fn list(State(state): State<Shared>, Query(q): Query<SampleQuery>) -> ApiResult<Json<Vec<Sample>>> {
    Ok(Json(state.db().samples(&SampleFilter { image_id: q.image_id, class_id: q.class_id, polarity: q.polarity })?))
}

pub async fn one(State(state): State<Shared>, Path(id): Path<i64>) -> ApiResult<Json<Sample>> {
    Ok(Json(state.db().sample(id)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSampleBody {
    image_id: i64,
    class_id: i64,
    polarity: Polarity,
    shape: Shape,
    heading_mode: Option<HeadingMode>,
}

/// A sample's centre must lie on its image.
fn check_on_image(state: &Shared, image_id: i64, shape: &Shape) -> ApiResult<()> {
    let image = state.db().image(image_id)?;
    let (x, y) = shape.centre();
    if !(x.is_finite() && y.is_finite()) || x < 0.0 || y < 0.0 || x > f64::from(image.width) || y > f64::from(image.height) {
        return Err(ApiError::bad_request(format!("the sample's centre ({x}, {y}) lies outside image {image_id} ({}×{} px)", image.width, image.height)));
    }
    Ok(())
}

pub async fn create(State(state): State<Shared>, Json(body): Json<NewSampleBody>) -> ApiResult<Response> {
    check_on_image(&state, body.image_id, &body.shape)?;
    let mut db = state.db();
    db.class(body.class_id)?;
    let ids = db.add_samples(&[NewSample { image_id: body.image_id, class_id: body.class_id, polarity: body.polarity, shape: body.shape, heading_mode: body.heading_mode, origin: Origin::Drawn }])?;
    let sample = db.sample(ids[0])?;
    Ok((StatusCode::CREATED, Json(sample)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    version: i64,
    class_id: i64,
    polarity: Polarity,
    shape: Shape,
    heading_mode: Option<HeadingMode>,
}

/// A conflict answers with the sample as it now is (or says it is gone).
fn with_current(state: &Shared, id: i64, e: StoreError) -> ApiError {
    let conflict = matches!(e, StoreError::Conflict { .. });
    let mut err = ApiError::from(e);
    if conflict {
        err.current = state.db().sample(id).ok().and_then(|s| serde_json::to_value(s).ok());
    }
    err
}

pub async fn update(State(state): State<Shared>, Path(id): Path<i64>, Json(body): Json<UpdateBody>) -> ApiResult<Json<Sample>> {
    let existing = state.db().sample(id)?;
    check_on_image(&state, existing.image_id, &body.shape)?;
    let mode = body.heading_mode.unwrap_or(existing.heading_mode);
    let result = state.db().update_sample(id, body.version, body.class_id, body.polarity, body.shape, mode);
    result.map(Json).map_err(|e| with_current(&state, id, e))
}

#[derive(Deserialize)]
pub struct VersionQuery {
    version: Option<i64>,
    #[allow(dead_code)]
    token: Option<String>,
}

pub async fn delete(State(state): State<Shared>, Path(id): Path<i64>, Query(q): Query<VersionQuery>) -> ApiResult<StatusCode> {
    let version = q.version.ok_or_else(|| ApiError::bad_request("give the version you are deleting: DELETE /api/samples/{id}?version=N"))?;
    let result = state.db().delete_sample(id, version);
    result.map(|_| StatusCode::NO_CONTENT).map_err(|e| with_current(&state, id, e))
}

/// A deleted sample as it was (undo of a delete): stored again, under a new id.
#[derive(Deserialize)]
pub struct RestoreBody {
    image_id: i64,
    class_id: i64,
    polarity: Polarity,
    shape: Shape,
    heading_mode: Option<HeadingMode>,
    origin: Option<Origin>,
}

pub async fn restore(State(state): State<Shared>, Path(id): Path<i64>, Json(body): Json<RestoreBody>) -> ApiResult<Response> {
    if state.db().sample(id).is_ok() {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("sample {id} exists; only a deleted sample can be restored")));
    }
    check_on_image(&state, body.image_id, &body.shape)?;
    let mut db = state.db();
    let ids = db.add_samples(&[NewSample { image_id: body.image_id, class_id: body.class_id, polarity: body.polarity, shape: body.shape, heading_mode: body.heading_mode, origin: body.origin.unwrap_or(Origin::Drawn) }])?;
    let sample = db.sample(ids[0])?;
    Ok((StatusCode::CREATED, Json(sample)).into_response())
}

/// The normalized chips of one class's samples, as PNG, valid while its samples are
/// unchanged (`key` hashes their ids and versions).
pub struct ClassChips {
    key: u64,
    png: HashMap<i64, Vec<u8>>,
}

pub async fn chip(State(state): State<Shared>, Path(id): Path<i64>) -> ApiResult<Response> {
    let sample = state.db().sample(id)?;
    let png = tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
        let (class, key) = {
            let db = state.db();
            let class = db.class(sample.class_id)?;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for s in db.samples(&SampleFilter { class_id: Some(class.id), ..Default::default() })? {
                (s.id, s.version).hash(&mut h);
            }
            (class, h.finish())
        };
        let cached = state.chips.lock().unwrap_or_else(|p| p.into_inner()).get(&class.id).filter(|c| c.key == key).cloned();
        let chips = match cached {
            Some(c) => c,
            None => {
                // The class's own contract (GSD from its positives' sizes, canonical heading,
                // colour), exactly as training cuts chips, without automatic negatives.
                let set = {
                    // Its own connection: cutting chips must not hold up other requests.
                    let db = kestrel_samples::Project::open(&state.project_dir)?;
                    build_chips(&db, &class.name, &ChipOptions { auto_negative_ratio: 0.0, ..Default::default() }, |_, _| {})
                }
                .map_err(|e| ApiError::unprocessable(format!("class {}: {e}", class.name)))?;
                let mut png = HashMap::new();
                for c in &set.chips {
                    if let Some(sid) = c.sample_id {
                        png.insert(sid, super::images::encode_png(&image::DynamicImage::ImageRgb8(chip_to_rgb8(&c.chip)))?);
                    }
                }
                let c = Arc::new(ClassChips { key, png });
                state.chips.lock().unwrap_or_else(|p| p.into_inner()).insert(class.id, c.clone());
                c
            }
        };
        chips.png.get(&id).cloned().ok_or_else(|| ApiError::not_found(format!("sample {id} has no normalized chip (its class needs a positive with a known size on an image with a known GSD)")))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}
