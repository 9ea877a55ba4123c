//! Long work — training a class, detecting over an image — as jobs: queued, run one at a
//! time on a worker thread (both use every core), their progress kept here and pushed to
//! the page as server-sent events; cancellable between batches or tiles.

use super::error::{ApiResult, Json, Path};
use super::{ApiError, Shared};
use crate::train_cmd::{TrainArgs, TrainReport};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use kestrel_detect::detect::{detect_raster, DetectOptions};
use kestrel_model::train::{TrainEvent, TrainOptions};
use kestrel_samples::normalize::colour::ColourStats;
use kestrel_samples::store::NewDetection;
use kestrel_samples::Shape;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    fn finished(self) -> bool {
        matches!(self, JobState::Done | JobState::Failed | JobState::Cancelled)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Job {
    pub id: u64,
    pub kind: &'static str,
    pub state: JobState,
    /// 0–1.
    pub progress: f64,
    pub message: String,
    /// Training: each finished epoch's validation metrics.
    pub epochs: Vec<Value>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub created_unix_s: u64,
    pub finished_unix_s: Option<u64>,
    #[serde(skip)]
    cancel: Arc<AtomicBool>,
}

/// What a job is asked to do.
enum Work {
    Train(TrainSettings),
    Detect { model_id: String, image_id: i64, bbox: Option<[f64; 4]> },
}

pub struct Jobs {
    list: Mutex<Vec<Job>>,
    /// The id of every job that changed.
    changed: tokio::sync::broadcast::Sender<u64>,
    queue: Mutex<Option<std::sync::mpsc::Sender<(u64, Work)>>>,
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Jobs {
    pub fn new() -> Self {
        Jobs { list: Mutex::new(Vec::new()), changed: tokio::sync::broadcast::channel(256).0, queue: Mutex::new(None) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, id: u64) -> Option<Job> {
        self.lock().iter().find(|j| j.id == id).cloned()
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Job)) {
        if let Some(j) = self.lock().iter_mut().find(|j| j.id == id) {
            f(j);
        }
        let _ = self.changed.send(id);
    }

    fn submit(&self, kind: &'static str, work: Work) -> ApiResult<Job> {
        let job = {
            let mut list = self.lock();
            let id = list.iter().map(|j| j.id).max().unwrap_or(0) + 1;
            let job = Job { id, kind, state: JobState::Queued, progress: 0.0, message: "queued".into(), epochs: Vec::new(), result: None, error: None, created_unix_s: now_s(), finished_unix_s: None, cancel: Arc::new(AtomicBool::new(false)) };
            list.push(job.clone());
            job
        };
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue
            .as_ref()
            .and_then(|q| q.send((job.id, work)).ok())
            .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the job worker has stopped"))?;
        Ok(job)
    }
}

/// Starts the thread that runs jobs in order.
pub fn start_worker(state: &Shared) {
    let (tx, rx) = std::sync::mpsc::channel::<(u64, Work)>();
    *state.jobs.queue.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    // The worker holds the state weakly, so that dropping the server (in tests) ends it.
    let weak = Arc::downgrade(state);
    std::thread::spawn(move || {
        while let Ok((id, work)) = rx.recv() {
            let Some(state) = weak.upgrade() else { break };
            let cancel = state.jobs.get(id).map(|j| j.cancel.clone()).unwrap_or_default();
            if cancel.load(Ordering::Relaxed) {
                state.jobs.update(id, |j| {
                    j.state = JobState::Cancelled;
                    j.finished_unix_s = Some(now_s());
                });
                continue;
            }
            state.jobs.update(id, |j| {
                j.state = JobState::Running;
                j.message = "starting".into();
            });
            let outcome = match work {
                Work::Train(settings) => run_train(&state, id, settings, cancel.clone()),
                Work::Detect { model_id, image_id, bbox } => run_detect(&state, id, &model_id, image_id, bbox, cancel.clone()),
            };
            state.jobs.update(id, |j| {
                j.finished_unix_s = Some(now_s());
                match outcome {
                    Ok(result) => {
                        j.state = JobState::Done;
                        j.progress = 1.0;
                        j.message = "done".into();
                        j.result = Some(result);
                    }
                    Err(_) if cancel.load(Ordering::Relaxed) => {
                        j.state = JobState::Cancelled;
                        j.message = "cancelled".into();
                    }
                    Err(e) => {
                        j.state = JobState::Failed;
                        j.message = "failed".into();
                        j.error = Some(format!("{e:#}"));
                    }
                }
            });
        }
    });
}

fn models_dir(state: &Shared) -> std::path::PathBuf {
    state.project_dir.join("models")
}

/// A training job's settings, checked when it was asked for.
struct TrainSettings {
    class_id: i64,
    epochs: usize,
    /// Source bands, 0-based (None: the first three).
    bands: Option<Vec<usize>>,
    colour: kestrel_samples::normalize::ColourMethod,
    mine_rounds: usize,
    /// The network's GSD (None: the positives' median).
    gsd_m: Option<f64>,
    widths: [usize; 3],
    /// Networks to train as one ensemble package (1: a single network).
    members: usize,
}

fn run_train(state: &Shared, id: u64, settings: TrainSettings, cancel: Arc<AtomicBool>) -> anyhow::Result<Value> {
    let TrainSettings { class_id, epochs, bands, colour, mine_rounds, gsd_m, widths, members } = settings;
    let (class, validate_on) = {
        let db = state.db();
        let class = db.class(class_id)?;
        // Validation on the last image, as `kestrel train` does without --validate-on.
        let validate_on = db.images()?.last().map(|i| i.uri.clone());
        (class, validate_on)
    };
    let model_id = format!("{}-{}", class.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"), now_s());
    let dir = models_dir(state);
    std::fs::create_dir_all(&dir)?;
    let output = dir.join(format!("{model_id}.kestrel"));
    let args = TrainArgs {
        project: &state.project_dir,
        class: &class.name,
        output: &output,
        validate_on: validate_on.as_deref(),
        options: TrainOptions { epochs, widths, cancel: Some(cancel), ..Default::default() },
        negatives: 2.0,
        json: false,
        resume: false,
        colour,
        mine_rounds,
        mine_per_image: 20,
        bands,
        target_gsd_m: gsd_m,
        members,
    };
    // Stages share the bar: chips 0–10 %, training 10–95 %, the threshold the rest; an
    // ensemble's members share it in turn.
    let mut span = (0.0, 0.1);
    let mut member = (0usize, 1usize);
    let overall = |member: (usize, usize), p: f64| (member.0 as f64 + p) / member.1 as f64;
    let mut steps = 0usize;
    let mut last_update = std::time::Instant::now();
    let outcome = crate::train_cmd::run_with(args, &mut |r| match r {
        TrainReport::Stage(name, n) => {
            span = if name.starts_with("normalizing") { (0.0, 0.1) } else if name.starts_with("training") { (0.1, 0.85) } else { (0.95, 0.05) };
            steps = n;
            state.jobs.update(id, |j| {
                j.message = name;
                j.progress = overall(member, span.0);
            });
        }
        TrainReport::Step(d) => {
            if last_update.elapsed().as_millis() > 200 {
                last_update = std::time::Instant::now();
                state.jobs.update(id, |j| j.progress = overall(member, span.0 + span.1 * d as f64 / steps.max(1) as f64));
            }
        }
        TrainReport::Note(line) => state.jobs.update(id, |j| j.message = line),
        // The chart follows the member being trained.
        TrainReport::Member(i, n) => {
            member = (i, n);
            state.jobs.update(id, |j| j.epochs.clear());
        }
        TrainReport::Train(event) => match event {
            TrainEvent::Batch { epoch, batch, batches, loss } => {
                if last_update.elapsed().as_millis() > 200 {
                    last_update = std::time::Instant::now();
                    let done = (epoch * batches + batch) as f64 / (epochs * batches).max(1) as f64;
                    state.jobs.update(id, |j| {
                        j.progress = overall(member, span.0 + span.1 * done.min(1.0));
                        j.message = format!("epoch {}/{epochs}, batch {batch}/{batches}, loss {loss:.3}", epoch + 1);
                    });
                }
            }
            TrainEvent::Epoch(m) => state.jobs.update(id, |j| {
                j.epochs.push(json!({"epoch": m.epoch, "train_loss": m.train_loss, "val_loss": m.val_loss, "precision": m.precision, "recall": m.recall, "f1": m.f1, "heading_error_deg": m.heading_error_deg}));
                j.message = format!("epoch {}/{epochs}: F1 {:.3}", m.epoch, m.f1);
            }),
        },
    })?;
    Ok(json!({
        "model_id": model_id,
        "f1": outcome.best.f1, "precision": outcome.best.precision, "recall": outcome.best.recall,
        "default_threshold": outcome.default_threshold,
        "members": outcome.members,
    }))
}

fn run_detect(state: &Shared, id: u64, model_id: &str, image_id: i64, bbox: Option<[f64; 4]>, cancel: Arc<AtomicBool>) -> anyhow::Result<Value> {
    let path = model_path(state, model_id).map_err(|e| anyhow::anyhow!(e.message))?;
    // An ensemble package detects with all its members.
    let ensemble = kestrel_model::package::load_ensemble(&[&path], &kestrel_model::device::current())?;
    let meta = &ensemble.meta;
    let record = state.db().image(image_id)?;
    let gsd_m = record.gsd_m.ok_or_else(|| anyhow::anyhow!("{}: its ground sample distance is unknown; add the image again with gsd_m", record.uri))?;
    let src = kestrel_geo::open_raster(&record.uri)?;
    state.jobs.update(id, |j| j.message = "sampling the image's colours".into());
    let stats = ColourStats::from_raster(src.as_ref())?;
    let default = ensemble.default_threshold;
    // Kept down to a lower score than the default, so that the page's slider can show more.
    let threshold = default.min(0.3);
    let started = std::time::Instant::now();
    let (detections, _) = detect_raster(src.as_ref(), gsd_m, &stats, &ensemble.networks, meta, &DetectOptions { threshold, area_px: bbox, cancel: Some(cancel), ..Default::default() }, |p| {
        let rate = p.megapixels_done / started.elapsed().as_secs_f64().max(1e-9);
        state.jobs.update(id, |j| {
            j.progress = p.tiles_done as f64 / p.tiles.max(1) as f64;
            j.message = format!("tile {}/{}, {rate:.1} Mpx/s", p.tiles_done, p.tiles);
        });
    })?;
    let class_name = meta.classes.first().cloned().unwrap_or_else(|| "object".into());
    let mut db = state.db();
    let class_id = match db.class_by_name(&class_name)? {
        Some(c) => c.id,
        None => db.add_class(&class_name, meta.contract.heading_mode)?.id,
    };
    let news: Vec<NewDetection> = detections
        .iter()
        .map(|d| NewDetection {
            class_id,
            shape: Shape::OrientedBox { cx: d.bbox.cx, cy: d.bbox.cy, length: d.bbox.length, width: d.bbox.width, heading_deg: d.bbox.heading_deg },
            score: f64::from(d.score),
            match_score: d.match_score.map(f64::from),
        })
        .collect();
    db.replace_pending_detections(image_id, model_id, &news)?;
    Ok(json!({"image_id": image_id, "model_id": model_id, "detections": news.len(), "threshold": default}))
}

/// The package file of a model id (its file stem in `models/`).
fn model_path(state: &Shared, model_id: &str) -> ApiResult<std::path::PathBuf> {
    if model_id.is_empty() || !model_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) || model_id.starts_with('.') {
        return Err(ApiError::bad_request(format!("{model_id:?} is not a model id")));
    }
    let path = models_dir(state).join(format!("{model_id}.kestrel"));
    if !path.is_file() {
        return Err(ApiError::not_found(format!("model {model_id} does not exist")));
    }
    Ok(path)
}

/// A model's summary: an ensemble package's is its first member's, with the members' count,
/// their mean threshold as the default and, for one model, each member's summary.
fn model_summary(id: &str, metas: &[kestrel_model::package::PackageMeta], with_metrics: bool) -> Value {
    let meta = &metas[0];
    let best = kestrel_model::train::kept_epoch(&meta.metrics);
    let mut v = json!({
        "id": id,
        "class": meta.classes.first(),
        "created_unix_s": meta.created_unix_s,
        "f1": best.map(|m| m.f1), "precision": best.map(|m| m.precision), "recall": best.map(|m| m.recall),
        "default_threshold": kestrel_model::package::ensemble_default_threshold(metas),
        "members": metas.len(),
        "positives": meta.training.positives, "negatives": meta.training.negatives,
        "epochs": meta.metrics.len(),
        "gsd_m": meta.contract.target_gsd_m,
        "widths": meta.network.widths,
        "heading_mode": meta.contract.heading_mode,
        // What the model reads, 1-based as the GUI and the CLI name bands.
        "bands": meta.contract.bands.iter().map(|b| b + 1).collect::<Vec<_>>(),
        "height_bands": meta.contract.bands.iter().filter(|&&b| meta.contract.colour.is_height_band(b)).map(|b| b + 1).collect::<Vec<_>>(),
    });
    if with_metrics {
        v["metrics"] = json!(meta.metrics);
        v["detection"] = json!(meta.detection);
        if metas.len() > 1 {
            v["member_models"] = metas.iter().map(|m| model_summary(id, std::slice::from_ref(m), true)).collect();
        }
    }
    v
}

pub async fn models(State(state): State<Shared>) -> ApiResult<Json<Vec<Value>>> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(models_dir(&state)) {
        for e in entries.flatten() {
            let path = e.path();
            let Some(id) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".kestrel")) else { continue };
            // A package being written (or broken) is left out of the list, not an error.
            if let Ok(metas) = kestrel_model::package::read_metas(&path) {
                out.push(model_summary(id, &metas, false));
            }
        }
    }
    out.sort_by_key(|m| std::cmp::Reverse(m["created_unix_s"].as_u64()));
    Ok(Json(out))
}

pub async fn model(State(state): State<Shared>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let path = model_path(&state, &id)?;
    let metas = kestrel_model::package::read_metas(&path).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    Ok(Json(model_summary(&id, &metas, true)))
}

pub async fn list(State(state): State<Shared>) -> Json<Vec<Job>> {
    let mut jobs = state.jobs.lock().clone();
    jobs.reverse();
    Json(jobs)
}

pub async fn one(State(state): State<Shared>, Path(id): Path<u64>) -> ApiResult<Json<Job>> {
    state.jobs.get(id).map(Json).ok_or_else(|| ApiError::not_found(format!("job {id} does not exist")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainBody {
    class_id: i64,
    epochs: Option<usize>,
    /// Bands the network reads, 1-based, in order (default: the first three).
    bands: Option<Vec<usize>>,
    /// Bands (1-based, among `bands`) holding heights in metres, kept in metres.
    height_bands: Option<Vec<usize>>,
    /// "quantile" (default) or "stretch".
    colour: Option<String>,
    /// Hard-negative mining rounds (default 0).
    mine_rounds: Option<usize>,
    /// Ground sample distance (m) the network works at (default: the positives' median).
    gsd_m: Option<f64>,
    /// Channels of the network's stem and two stages (default [16, 32, 64]).
    widths: Option<[usize; 3]>,
    /// Networks trained with seeds 1, 2, … into one ensemble package (default 1; 1–4).
    members: Option<usize>,
}

pub async fn train(State(state): State<Shared>, Json(body): Json<TrainBody>) -> ApiResult<Response> {
    let class = state.db().class(body.class_id)?;
    let epochs = body.epochs.unwrap_or(12);
    if !(1..=500).contains(&epochs) {
        return Err(ApiError::bad_request(format!("epochs {epochs}: give 1–500")));
    }
    let positives = state.db().samples(&kestrel_samples::store::SampleFilter { class_id: Some(class.id), polarity: Some(kestrel_samples::Polarity::Positive), ..Default::default() })?.len();
    if positives == 0 {
        return Err(ApiError::bad_request(format!("class {} has no positive samples to learn from", class.name)));
    }
    let image_bands = state.db().images()?.iter().map(|i| usize::from(i.bands)).min().unwrap_or(0);
    let one_based = |list: &[usize], what: &str| -> ApiResult<Vec<usize>> {
        if list.contains(&0) {
            return Err(ApiError::bad_request(format!("{what} {list:?}: bands count from 1 (1-based)")));
        }
        Ok(list.iter().map(|b| b - 1).collect())
    };
    let bands = body.bands.as_deref().map(|l| one_based(l, "bands")).transpose()?;
    let height_bands = one_based(body.height_bands.as_deref().unwrap_or_default(), "height_bands")?;
    crate::train_cmd::check_bands(bands.as_deref(), &height_bands, image_bands).map_err(ApiError::bad_request)?;
    let colour = body.colour.as_deref().unwrap_or("quantile").parse::<kestrel_samples::normalize::ColourMethod>().map_err(ApiError::bad_request)?;
    let mine_rounds = body.mine_rounds.unwrap_or(0);
    if mine_rounds > 5 {
        return Err(ApiError::bad_request(format!("mine_rounds {mine_rounds}: give 0–5")));
    }
    if let Some(g) = body.gsd_m.filter(|g| !(g.is_finite() && *g > 0.0)) {
        return Err(ApiError::bad_request(format!("gsd_m {g}: give a ground sample distance in metres above 0")));
    }
    let widths = match body.widths {
        None => TrainOptions::default().widths,
        Some(w) => kestrel_model::network::checked_widths(&w).ok_or_else(|| ApiError::bad_request(format!("widths {w:?}: give three channel counts from 1 to 512")))?,
    };
    let members = body.members.unwrap_or(1);
    if !(1..=4).contains(&members) {
        return Err(ApiError::bad_request(format!("members {members}: give 1–4")));
    }
    let settings = TrainSettings { class_id: class.id, epochs, bands, colour: colour.with_heights(height_bands), mine_rounds, gsd_m: body.gsd_m, widths, members };
    let job = state.jobs.submit("train", Work::Train(settings))?;
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectBody {
    model_id: String,
    image_id: i64,
    bbox: Option<[f64; 4]>,
}

pub async fn detect(State(state): State<Shared>, Json(body): Json<DetectBody>) -> ApiResult<Response> {
    model_path(&state, &body.model_id)?;
    let image = state.db().image(body.image_id)?;
    if let Some(b) = body.bbox {
        if b.iter().any(|v| !v.is_finite()) || b[2] <= b[0] || b[3] <= b[1] {
            return Err(ApiError::bad_request(format!("bbox {b:?}: give [x0, y0, x1, y1] in pixels with x1 > x0 and y1 > y0")));
        }
        if b[2] <= 0.0 || b[3] <= 0.0 || b[0] >= f64::from(image.width) || b[1] >= f64::from(image.height) {
            return Err(ApiError::bad_request(format!("bbox {b:?} lies outside image {} ({}×{} px)", image.id, image.width, image.height)));
        }
    }
    let job = state.jobs.submit("detect", Work::Detect { model_id: body.model_id, image_id: image.id, bbox: body.bbox })?;
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

pub async fn cancel(State(state): State<Shared>, Path(id): Path<u64>) -> ApiResult<Json<Job>> {
    let job = state.jobs.get(id).ok_or_else(|| ApiError::not_found(format!("job {id} does not exist")))?;
    if !job.state.finished() {
        job.cancel.store(true, Ordering::Relaxed);
        state.jobs.update(id, |j| j.message = "cancelling".into());
    }
    state.jobs.get(id).map(Json).ok_or_else(|| ApiError::not_found(format!("job {id} does not exist")))
}

/// The job as server-sent events: its state now, then on every change, until it ends.
pub async fn events(State(state): State<Shared>, Path(id): Path<u64>) -> ApiResult<impl IntoResponse> {
    if state.jobs.get(id).is_none() {
        return Err(ApiError::not_found(format!("job {id} does not exist")));
    }
    let rx = state.jobs.changed.subscribe();
    let stream = futures_util::stream::unfold((state, rx, false, false), move |(state, mut rx, started, ended)| async move {
        if ended {
            return None;
        }
        if started {
            loop {
                match rx.recv().await {
                    Ok(changed) if changed != id => continue,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
        let job = state.jobs.get(id)?;
        let finished = job.state.finished();
        let event = Event::default().json_data(&job).unwrap_or_default();
        Some((Ok::<_, std::convert::Infallible>(event), (state, rx, true, finished)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
