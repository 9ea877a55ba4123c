//! Images: registering them (only from the image roots), describing them as the map needs
//! (projection, extent, tile grid), their band statistics, and rendered tiles read from the
//! raster's overviews window by window, never the whole raster.

use super::error::{ApiResult, Json, Path, Query};
use super::{ApiError, Shared};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kestrel_geo::{PixelWindow, RasterSource};
use kestrel_samples::normalize::colour::ColourStats;
use kestrel_samples::store::ImageRecord;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Tile edge in screen pixels.
pub const TILE_PX: u32 = 256;

/// An opened raster and its colour statistics, kept while the server runs.
pub struct OpenRaster {
    pub source: Box<dyn RasterSource>,
    pub stats: ColourStats,
}

#[derive(Default)]
pub struct RasterCache(Mutex<HashMap<i64, Arc<OpenRaster>>>);

impl RasterCache {
    /// The image's raster, opened on first use (outside the lock: opening a remote COG
    /// or sampling statistics takes a moment).
    pub fn get(&self, record: &ImageRecord) -> ApiResult<Arc<OpenRaster>> {
        self.get_path(record.id, &record.uri)
    }

    pub fn forget(&self, key: i64) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    }

    /// The raster at `uri`, cached under `key`.
    pub fn get_path(&self, key: i64, uri: &str) -> ApiResult<Arc<OpenRaster>> {
        if let Some(r) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(r.clone());
        }
        let source = kestrel_geo::open_raster(uri)?;
        let stats = ColourStats::from_raster(source.as_ref())?;
        let r = Arc::new(OpenRaster { source, stats });
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(key, r.clone());
        Ok(r)
    }
}

/// Zoom levels of the tile pyramid: the coarsest shows the whole image in one tile.
fn tile_levels(width: u32, height: u32) -> u32 {
    let mut levels = 1;
    while (width.max(height) as f64) / f64::from(1u32 << (levels - 1)) > f64::from(TILE_PX) {
        levels += 1;
    }
    levels
}

/// The image's pixel → map affine transform, as the page converts with it.
pub fn pixel_to_map(r: &ImageRecord) -> [f64; 6] {
    match r.geotransform {
        Some(t) => t,
        None => {
            let s = r.gsd_m.unwrap_or(1.0);
            [0.0, s, 0.0, 0.0, 0.0, -s]
        }
    }
}

/// What the page needs to show an image on a map.
pub fn view(r: &ImageRecord, samples: usize, cloud: Option<String>, layers: Value) -> Value {
    let t = pixel_to_map(r);
    let map = |x: f64, y: f64| (t[0] + x * t[1] + y * t[2], t[3] + x * t[4] + y * t[5]);
    let corners = [map(0.0, 0.0), map(f64::from(r.width), 0.0), map(0.0, f64::from(r.height)), map(f64::from(r.width), f64::from(r.height))];
    let min_x = corners.iter().map(|c| c.0).fold(f64::INFINITY, f64::min);
    let max_x = corners.iter().map(|c| c.0).fold(f64::NEG_INFINITY, f64::max);
    let min_y = corners.iter().map(|c| c.1).fold(f64::INFINITY, f64::min);
    let max_y = corners.iter().map(|c| c.1).fold(f64::NEG_INFINITY, f64::max);
    let geographic = r.crs.as_deref().and_then(|c| kestrel_geo::Crs::parse(c).ok()).is_some_and(|c| c.is_geographic());
    let (projection, units) = match (&r.geotransform, r.epsg) {
        (Some(_), Some(code)) => (format!("EPSG:{code}"), if geographic { "degrees" } else { "m" }),
        (Some(_), None) => (format!("kestrel:image-{}", r.id), if geographic { "degrees" } else { "m" }),
        (None, _) => ("kestrel:pixels".to_string(), if r.gsd_m.is_some() { "m" } else { "pixels" }),
    };
    let levels = tile_levels(r.width, r.height);
    let native = t[1].hypot(t[4]);
    let resolutions: Vec<f64> = (0..levels).map(|z| native * f64::from(1u32 << (levels - 1 - z))).collect();
    let name = r.uri.rsplit(['/', '\\']).next().unwrap_or(&r.uri).to_string();
    json!({
        "id": r.id, "uri": r.uri, "name": name, "width": r.width, "height": r.height,
        "bands": r.bands, "data_type": r.data_type, "crs": r.crs, "epsg": r.epsg, "gsd_m": r.gsd_m,
        "georeferenced": r.geotransform.is_some(), "projection": projection, "map_units": units,
        "pixel_to_map": t, "extent": [min_x, min_y, max_x, max_y],
        "tiles": {"size": TILE_PX, "origin": [t[0], t[3]], "resolutions": resolutions},
        "samples": samples,
        "cloud": cloud,
        "layers": layers,
    })
}

/// The height layer (nDSM) of an image with a point cloud: rasterized on the image's own grid
/// from the cloud on first use and kept in the project's `layers/` folder. `None` without a
/// cloud.
pub fn ensure_height_layer(state: &Shared, image: &ImageRecord) -> ApiResult<Option<Arc<OpenRaster>>> {
    let Some(cloud) = state.db().image_cloud(image.id)? else { return Ok(None) };
    let dir = state.project_dir.join("layers");
    let path = dir.join(format!("{}-ndsm.tif", image.id));
    if !path.is_file() {
        let t = pixel_to_map(image);
        let mut pc = kestrel_geo::pointcloud::PointCloud::open(&cloud)?;
        let unit_m = pc.crs()?.and_then(|c| c.linear_unit_m()).unwrap_or(1.0);
        let (w, h) = (f64::from(image.width), f64::from(image.height));
        let area = [t[0], t[3] + h * t[5], t[0] + w * t[1], t[3]];
        let grid = kestrel_geo::pointcloud::rasterize(&mut pc, &kestrel_geo::pointcloud::RasterizeOptions { cell_m: t[1].abs() * unit_m, kind: kestrel_geo::pointcloud::HeightKind::Ndsm, fill_dsm_holes: true, area: Some(area) }, |_| {})?;
        std::fs::create_dir_all(&dir).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{}: {e}", dir.display())))?;
        // Written beside and renamed, so a half-written layer is never read.
        let partial = dir.join(format!(".{}-ndsm.tif.partial", image.id));
        grid.write_cog(&partial)?;
        std::fs::rename(&partial, &path).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{}: {e}", path.display())))?;
    }
    let uri = path.to_str().ok_or_else(|| ApiError::bad_request("the project path is not UTF-8"))?;
    state.layers.get_path(image.id, uri).map(Some)
}

/// The image's layers as the page lists them.
async fn layers_of(state: &Shared, image: &ImageRecord) -> ApiResult<Value> {
    let (state, image) = (state.clone(), image.clone());
    let layer = tokio::task::spawn_blocking(move || ensure_height_layer(&state, &image)).await.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(match layer {
        None => json!([]),
        Some(l) => json!([{"name": "ndsm", "title": "Height above ground (nDSM)", "unit": "m", "max": height_max(&l)}]),
    })
}

/// The top of the height ramp: the 99th percentile of the heights, at least 1 m.
fn height_max(layer: &OpenRaster) -> f64 {
    (f64::from(layer.stats.percentile(0, 99.0)) * 10.0).ceil().max(10.0) / 10.0
}

fn sample_counts(state: &Shared) -> ApiResult<HashMap<i64, usize>> {
    let db = state.db();
    let mut counts = HashMap::new();
    for s in db.samples(&Default::default())? {
        *counts.entry(s.image_id).or_insert(0) += 1;
    }
    Ok(counts)
}

pub async fn project(State(state): State<Shared>) -> ApiResult<Json<Value>> {
    let name = state.project_dir.file_name().and_then(|n| n.to_str()).unwrap_or("project").to_string();
    Ok(Json(json!({
        "name": name,
        "dir": state.project_dir,
        "demo": state.demo,
        "image_roots": state.roots,
        "token_required": state.token.is_some(),
    })))
}

pub async fn list(State(state): State<Shared>) -> ApiResult<Json<Vec<Value>>> {
    let counts = sample_counts(&state)?;
    let images = state.db().images()?;
    let mut out = Vec::with_capacity(images.len());
    for r in &images {
        let cloud = state.db().image_cloud(r.id)?;
        out.push(view(r, counts.get(&r.id).copied().unwrap_or(0), cloud, layers_of(&state, r).await?));
    }
    Ok(Json(out))
}

pub async fn one(State(state): State<Shared>, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    let counts = sample_counts(&state)?;
    let (r, cloud) = {
        let db = state.db();
        (db.image(id)?, db.image_cloud(id)?)
    };
    let layers = layers_of(&state, &r).await?;
    Ok(Json(view(&r, counts.get(&id).copied().unwrap_or(0), cloud, layers)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddImage {
    path: Option<String>,
    url: Option<String>,
    gsd_m: Option<f64>,
}

pub async fn add(State(state): State<Shared>, Json(body): Json<AddImage>) -> ApiResult<Response> {
    let uri = match (&body.path, &body.url) {
        (Some(p), None) => path_in_roots(&state, p)?,
        (None, Some(u)) => {
            if !(u.starts_with("http://") || u.starts_with("https://") || u.starts_with("s3://")) {
                return Err(ApiError::bad_request(format!("{u}: a URL must start with http://, https:// or s3://")));
            }
            u.clone()
        }
        _ => return Err(ApiError::bad_request("give exactly one of \"path\" or \"url\"")),
    };
    if let Some(g) = body.gsd_m {
        if !(g.is_finite() && g > 0.0) {
            return Err(ApiError::bad_request(format!("gsd_m {g} is not a positive number of metres")));
        }
    }
    let opened = {
        let uri = uri.clone();
        tokio::task::spawn_blocking(move || kestrel_geo::open_raster(&uri).map(|s| s.info().clone())).await.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    };
    let info = opened?;
    if info.width == 0 || info.height == 0 {
        return Err(ApiError::unprocessable(format!("{uri}: the image is empty")));
    }
    let record = state.db().add_image(&uri, &info, body.gsd_m)?;
    let cloud = state.db().image_cloud(record.id)?;
    Ok((StatusCode::CREATED, Json(view(&record, 0, cloud, json!([])))).into_response())
}

/// A path (absolute, or relative to the server's directory) that must exist and lie under an
/// image root; returned canonical.
pub fn path_in_roots(state: &Shared, p: &str) -> ApiResult<String> {
    let path = std::path::Path::new(p);
    let path = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?.join(path) };
    let canonical = std::fs::canonicalize(&path).map_err(|_| ApiError::not_found(format!("{}: no such file", path.display())))?;
    if !state.in_roots(&canonical) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{}: outside the image roots ({}); start the server with --image-root to allow another folder", canonical.display(), state.roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")),
        ));
    }
    if !canonical.is_file() {
        return Err(ApiError::bad_request(format!("{}: not a file", canonical.display())));
    }
    Ok(canonical.to_str().ok_or_else(|| ApiError::bad_request(format!("{}: not UTF-8", canonical.display())))?.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachCloud {
    path: String,
}

/// Attaches a point cloud of the same place (same CRS) to an image.
pub async fn attach_cloud(State(state): State<Shared>, Path(id): Path<i64>, Json(body): Json<AttachCloud>) -> ApiResult<Response> {
    let image = state.db().image(id)?;
    let uri = path_in_roots(&state, &body.path)?;
    let checked = {
        let uri = uri.clone();
        tokio::task::spawn_blocking(move || -> ApiResult<u64> {
            let pc = kestrel_geo::pointcloud::PointCloud::open(&uri)?;
            let cloud_crs = pc.crs()?;
            let image_crs = image.crs.as_deref().map(kestrel_geo::Crs::parse).transpose()?;
            if let (Some(a), Some(b)) = (&cloud_crs, &image_crs) {
                if a.proj4 != b.proj4 {
                    return Err(ApiError::unprocessable(format!("{uri} is in {} but image {} in {}: reproject one first", a.label(), image.id, b.label())));
                }
            }
            Ok(pc.point_count())
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??
    };
    state.db().attach_cloud(id, &uri)?;
    // A layer made from an earlier cloud is stale.
    let _ = std::fs::remove_file(state.project_dir.join("layers").join(format!("{id}-ndsm.tif")));
    state.layers.forget(id);
    Ok((StatusCode::CREATED, Json(json!({"image_id": id, "cloud": uri, "points": checked}))).into_response())
}

#[derive(Deserialize, Default)]
pub struct PointsQuery {
    bbox: Option<String>,
    max: Option<usize>,
    #[allow(dead_code)]
    token: Option<String>,
}

/// The image's point cloud inside `bbox` (image pixels), thinned uniformly (reservoir
/// sampling, seeded: the same request gives the same points) to at most `max`, as pixel x,
/// y and z in metres, with colours (the points' own, else by height).
pub async fn points(State(state): State<Shared>, Path(id): Path<i64>, Query(q): Query<PointsQuery>) -> ApiResult<Json<Value>> {
    let (image, cloud) = {
        let db = state.db();
        (db.image(id)?, db.image_cloud(id)?)
    };
    let cloud = cloud.ok_or_else(|| ApiError::not_found(format!("image {id} has no point cloud; attach one with POST /api/images/{id}/cloud")))?;
    let bbox = match numbers(&q.bbox, "bbox")? {
        None => [0.0, 0.0, f64::from(image.width), f64::from(image.height)],
        Some(b) if b.len() == 4 && b[2] > b[0] && b[3] > b[1] => [b[0], b[1], b[2], b[3]],
        Some(_) => return Err(ApiError::bad_request("bbox: give x0,y0,x1,y1 in pixels with x1 > x0 and y1 > y0")),
    };
    let max = q.max.unwrap_or(50_000);
    if !(1..=200_000).contains(&max) {
        return Err(ApiError::bad_request(format!("max {max}: give 1–200000")));
    }
    let t = pixel_to_map(&image);
    let det = t[1] * t[5] - t[2] * t[4];
    if det == 0.0 {
        return Err(ApiError::unprocessable(format!("image {id}: its geotransform cannot be inverted")));
    }
    let unit_m = image.crs.as_deref().and_then(|c| kestrel_geo::Crs::parse(c).ok()).and_then(|c| c.linear_unit_m()).unwrap_or(1.0);
    let out = tokio::task::spawn_blocking(move || -> ApiResult<Value> {
        let mut pc = kestrel_geo::pointcloud::PointCloud::open(&cloud)?;
        let mut kept: Vec<[f64; 3]> = Vec::new();
        let mut colours: Vec<[u8; 3]> = Vec::new();
        let mut total = 0u64;
        let mut state_rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state_rng ^= state_rng << 13;
            state_rng ^= state_rng >> 7;
            state_rng ^= state_rng << 17;
            state_rng
        };
        let mut has_rgb = false;
        pc.for_each_chunk(
            |c| {
                for i in 0..c.len() {
                    let (dx, dy) = (c.x[i] - t[0], c.y[i] - t[3]);
                    let px = (dx * t[5] - dy * t[2]) / det;
                    let py = (dy * t[1] - dx * t[4]) / det;
                    if px < bbox[0] || py < bbox[1] || px >= bbox[2] || py >= bbox[3] {
                        continue;
                    }
                    total += 1;
                    let rgb = c.rgb.get(i).map(|&[r, g, b]| {
                        let s = if r.max(g).max(b) > 255 { 257 } else { 1 };
                        [(r / s) as u8, (g / s) as u8, (b / s) as u8]
                    });
                    has_rgb |= rgb.is_some();
                    let p = [px, py, c.z[i] * unit_m];
                    let slot = if kept.len() < max { Some(kept.len()) } else { Some((next() % total) as usize).filter(|&k| k < max) };
                    if let Some(k) = slot {
                        if k == kept.len() {
                            kept.push(p);
                            colours.push(rgb.unwrap_or([0, 0, 0]));
                        } else {
                            kept[k] = p;
                            colours[k] = rgb.unwrap_or([0, 0, 0]);
                        }
                    }
                }
                Ok(())
            },
            |_| {},
        )?;
        let z_min = kept.iter().map(|p| p[2]).fold(f64::INFINITY, f64::min);
        let z_max = kept.iter().map(|p| p[2]).fold(f64::NEG_INFINITY, f64::max);
        if !has_rgb {
            // Colour by height: blue low, yellow high.
            for (c, p) in colours.iter_mut().zip(&kept) {
                let f = ((p[2] - z_min) / (z_max - z_min).max(1e-9)).clamp(0.0, 1.0);
                *c = [(40.0 + 215.0 * f) as u8, (80.0 + 150.0 * f) as u8, (200.0 * (1.0 - f)) as u8];
            }
        }
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        Ok(json!({
            "cloud": cloud,
            "count": kept.len(),
            "total": total,
            "positions": kept.iter().flat_map(|p| [round(p[0]), round(p[1]), round(p[2])]).collect::<Vec<_>>(),
            "colors": colours.iter().flatten().copied().collect::<Vec<u8>>(),
            "z_min": if kept.is_empty() { None } else { Some(z_min) },
            "z_max": if kept.is_empty() { None } else { Some(z_max) },
            "gsd_m": image.gsd_m,
        }))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(out))
}

pub async fn stats(State(state): State<Shared>, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    let record = state.db().image(id)?;
    let raster = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || state.rasters.get(&record)).await.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??
    };
    let s = &raster.stats;
    let bands: Vec<Value> = (0..s.bands.len())
        .map(|b| {
            let q = &s.bands[b];
            // The mean of the sampled distribution, estimated from its evenly spaced quantiles
            // (the statistics keep quantiles, not the pixels).
            let mean = q.iter().map(|&v| f64::from(v)).sum::<f64>() / q.len().max(1) as f64;
            json!({"band": b + 1, "min": q.first(), "max": q.last(), "p2": s.percentile(b, 2.0), "p98": s.percentile(b, 98.0), "mean": mean})
        })
        .collect();
    Ok(Json(json!({"bands": bands, "data_type": raster.source.info().data_type.name()})))
}

#[derive(Deserialize, Default)]
pub struct TileQuery {
    bands: Option<String>,
    min: Option<String>,
    max: Option<String>,
    #[allow(dead_code)]
    token: Option<String>,
}

fn numbers(text: &Option<String>, what: &str) -> ApiResult<Option<Vec<f64>>> {
    let Some(t) = text else { return Ok(None) };
    t.split(',')
        .map(|v| v.trim().parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| ApiError::bad_request(format!("{what}: {v:?} is not a number"))))
        .collect::<ApiResult<Vec<_>>>()
        .map(Some)
}

pub async fn tile(State(state): State<Shared>, Path((id, z, x, y)): Path<(i64, u32, u32, String)>, Query(q): Query<TileQuery>) -> ApiResult<Response> {
    let y: u32 = y.strip_suffix(".png").unwrap_or(&y).parse().map_err(|_| ApiError::bad_request(format!("tile row {y:?} is not a number")))?;
    let record = state.db().image(id)?;
    let levels = tile_levels(record.width, record.height);
    if z >= levels {
        return Err(ApiError::not_found(format!("image {id} has tile levels 0–{}", levels - 1)));
    }
    let bands: Vec<usize> = match numbers(&q.bands, "bands")? {
        Some(b) => b.iter().map(|&v| v as usize).collect(),
        None => (1..=usize::from(record.bands).min(3)).collect(),
    };
    if !(bands.len() == 1 || bands.len() == 3) || bands.iter().any(|&b| b == 0 || b > usize::from(record.bands)) {
        return Err(ApiError::bad_request(format!("bands: give one or three of 1–{}", record.bands)));
    }
    let (mins, maxs) = (numbers(&q.min, "min")?, numbers(&q.max, "max")?);
    for (v, what) in [(&mins, "min"), (&maxs, "max")] {
        if v.as_ref().is_some_and(|v| v.len() != bands.len()) {
            return Err(ApiError::bad_request(format!("{what}: give one value per displayed band ({})", bands.len())));
        }
    }
    let png = tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
        let raster = state.rasters.get(&record)?;
        let stretch: Vec<(f64, f64)> = bands
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                let lo = mins.as_ref().map_or(f64::from(raster.stats.percentile(b - 1, 2.0)), |m| m[i]);
                let hi = maxs.as_ref().map_or(f64::from(raster.stats.percentile(b - 1, 98.0)), |m| m[i]);
                (lo, if hi > lo { hi } else { lo + 1.0 })
            })
            .collect();
        render_tile(raster.source.as_ref(), levels, z, x, y, &bands, &stretch)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "no-cache")], png).into_response())
}

#[derive(Deserialize, Default)]
pub struct LayerTileQuery {
    max: Option<f64>,
    #[allow(dead_code)]
    token: Option<String>,
}

/// A tile of an image's height layer, coloured by a ramp from 0 to `max` metres; ground
/// (under 0.3 m) and cells without data are transparent.
pub async fn layer_tile(State(state): State<Shared>, Path((id, name, z, x, y)): Path<(i64, String, u32, u32, String)>, Query(q): Query<LayerTileQuery>) -> ApiResult<Response> {
    let y: u32 = y.strip_suffix(".png").unwrap_or(&y).parse().map_err(|_| ApiError::bad_request(format!("tile row {y:?} is not a number")))?;
    if name != "ndsm" {
        return Err(ApiError::not_found(format!("image {id} has no layer {name:?} (layers: ndsm, when a point cloud is attached)")));
    }
    if let Some(m) = q.max {
        if !(m.is_finite() && m > 0.0) {
            return Err(ApiError::bad_request(format!("max {m}: give a positive height in metres")));
        }
    }
    let record = state.db().image(id)?;
    let levels = tile_levels(record.width, record.height);
    if z >= levels {
        return Err(ApiError::not_found(format!("image {id} has tile levels 0–{}", levels - 1)));
    }
    let png = tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
        let layer = ensure_height_layer(&state, &record)?.ok_or_else(|| ApiError::not_found(format!("image {id} has no point cloud, so no height layer")))?;
        let max = q.max.unwrap_or_else(|| height_max(&layer));
        render_ramp_tile(layer.source.as_ref(), levels, z, x, y, max)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "no-cache")], png).into_response())
}

/// A height ramp (dark blue → teal → green → yellow → red) at `f` in [0, 1].
fn ramp(f: f64) -> [u8; 3] {
    const STOPS: [[f64; 3]; 5] = [[48.0, 18.0, 120.0], [33.0, 145.0, 140.0], [94.0, 201.0, 98.0], [253.0, 231.0, 37.0], [220.0, 50.0, 32.0]];
    let x = f.clamp(0.0, 1.0) * 4.0;
    let i = (x.floor() as usize).min(3);
    let t = x - i as f64;
    [0, 1, 2].map(|k| (STOPS[i][k] + (STOPS[i + 1][k] - STOPS[i][k]) * t) as u8)
}

fn render_ramp_tile(src: &dyn RasterSource, levels: u32, z: u32, tx: u32, ty: u32, max: f64) -> ApiResult<Vec<u8>> {
    let grey = render_rgba(src, levels, z, tx, ty, &[1], &[(0.0, max)])?;
    let ground = (0.3 / max * 255.0).ceil() as u8;
    let out = image::RgbaImage::from_fn(grey.width(), grey.height(), |i, j| {
        let p = grey.get_pixel(i, j);
        if p[3] == 0 || p[0] < ground {
            image::Rgba([0, 0, 0, 0])
        } else {
            let [r, g, b] = ramp(f64::from(p[0]) / 255.0);
            image::Rgba([r, g, b, 255])
        }
    });
    encode_png(&image::DynamicImage::ImageRgba8(out))
}

/// Renders tile (z, x, y): reads the covered window from the coarsest overview that still
/// has the detail, samples it nearest-neighbour, stretches each band to 0–255, and encodes a
/// PNG; pixels outside the image (and nodata) are transparent.
fn render_tile(src: &dyn RasterSource, levels: u32, z: u32, tx: u32, ty: u32, bands: &[usize], stretch: &[(f64, f64)]) -> ApiResult<Vec<u8>> {
    encode_png(&image::DynamicImage::ImageRgba8(render_rgba(src, levels, z, tx, ty, bands, stretch)?))
}

/// [`render_tile`]'s pixels, before encoding.
fn render_rgba(src: &dyn RasterSource, levels: u32, z: u32, tx: u32, ty: u32, bands: &[usize], stretch: &[(f64, f64)]) -> ApiResult<image::RgbaImage> {
    let info = src.info();
    let f = f64::from(1u32 << (levels - 1 - z)); // full-resolution pixels per tile pixel
    let (x0, y0) = (f64::from(tx) * f64::from(TILE_PX) * f, f64::from(ty) * f64::from(TILE_PX) * f);
    let mut rgba = image::RgbaImage::new(TILE_PX, TILE_PX);
    let (w, h) = (f64::from(info.width), f64::from(info.height));
    if x0 < w && y0 < h {
        // The coarsest level whose pixels are no larger than a tile pixel.
        let level = (0..info.levels.len())
            .rev()
            .find(|&l| w / f64::from(info.levels[l].width) <= f * 1.01)
            .unwrap_or(0);
        let lv = info.levels[level];
        let d = w / f64::from(lv.width);
        let x1 = (x0 + f64::from(TILE_PX) * f).min(w);
        let y1 = (y0 + f64::from(TILE_PX) * f).min(h);
        let c0 = ((x0 / d).floor() as u32).min(lv.width - 1);
        let r0 = ((y0 / d).floor() as u32).min(lv.height - 1);
        let c1 = ((x1 / d).ceil() as u32).clamp(c0 + 1, lv.width);
        let r1 = ((y1 / d).ceil() as u32).clamp(r0 + 1, lv.height);
        let nb = usize::from(info.bands);
        let nodata = info.nodata;
        let out_w = ((x1 - x0) / f).ceil() as u32;
        let out_h = ((y1 - y0) / f).ceil() as u32;
        let mut paint = |i: u32, j: u32, buf: &kestrel_geo::RasterBuffer, col: usize, row: usize| {
            let base = (row * buf.width + col) * nb;
            if nodata.is_some_and(|nd| (0..nb).all(|b| buf.samples.get_f64(base + b) == nd)) {
                return;
            }
            // One or three displayed bands, stretched to 0–255 (no allocation per pixel).
            let level = |k: usize| {
                let (lo, hi) = stretch[k];
                ((buf.samples.get_f64(base + bands[k] - 1) - lo) / (hi - lo) * 255.0).clamp(0.0, 255.0) as u8
            };
            let px = if bands.len() == 3 { [level(0), level(1), level(2), 255] } else { let g = level(0); [g, g, g, 255] };
            rgba.put_pixel(i, j, image::Rgba(px));
        };
        let area = u64::from(c1 - c0) * u64::from(r1 - r0);
        if area <= 4 << 20 {
            let buf = src.read_window(level, PixelWindow::new(c0, r0, c1 - c0, r1 - r0))?;
            for j in 0..out_h.min(TILE_PX) {
                let row = (((y0 + (f64::from(j) + 0.5) * f) / d) as u32).clamp(r0, r1 - 1) - r0;
                for i in 0..out_w.min(TILE_PX) {
                    let col = (((x0 + (f64::from(i) + 0.5) * f) / d) as u32).clamp(c0, c1 - 1) - c0;
                    paint(i, j, &buf, col as usize, row as usize);
                }
            }
        } else {
            // No overview this coarse: one row of the level per tile row keeps the read
            // bounded however large the raster.
            for j in 0..out_h.min(TILE_PX) {
                let row = (((y0 + (f64::from(j) + 0.5) * f) / d) as u32).clamp(r0, r1 - 1);
                let buf = src.read_window(level, PixelWindow::new(c0, row, c1 - c0, 1))?;
                for i in 0..out_w.min(TILE_PX) {
                    let col = (((x0 + (f64::from(i) + 0.5) * f) / d) as u32).clamp(c0, c1 - 1) - c0;
                    paint(i, j, &buf, col as usize, 0);
                }
            }
        }
    }
    Ok(rgba)
}

/// PNG bytes, compressed for speed: tiles are made on demand.
pub fn encode_png(img: &image::DynamicImage) -> ApiResult<Vec<u8>> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let mut out = Vec::new();
    img.write_with_encoder(PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Sub))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding a PNG: {e}")))?;
    Ok(out)
}
