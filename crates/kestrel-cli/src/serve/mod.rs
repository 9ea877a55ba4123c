//! `kestrel serve`: the labelling and review GUI. An axum server holds one project (its
//! SQLite store), answers the JSON API the web app (`web/`, bundled into the binary) calls,
//! renders image tiles, and runs training and detection as jobs whose progress streams to
//! the page.

mod demo;
mod error;
mod images;
mod jobs;
mod review;
mod samples;
#[cfg(test)]
mod tests;
mod web;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
pub use error::ApiError;
use kestrel_samples::Project;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How the server was asked to run.
pub struct ServeArgs {
    /// The project folder; `None` opens (creating it on first run) the demo project.
    pub project: Option<PathBuf>,
    pub addr: SocketAddr,
    /// Required on every API call when set; mandatory when `addr` is not a loopback address.
    pub token: Option<String>,
    /// Folders whose images may be added through the API; default: the project folder and
    /// the current directory.
    pub image_roots: Vec<PathBuf>,
    /// Serve the web app from this folder instead of the copy bundled into the binary.
    pub web_dir: Option<PathBuf>,
}

/// What every handler shares.
pub struct AppState {
    pub project_dir: PathBuf,
    pub project: Mutex<Project>,
    pub demo: bool,
    /// Canonical folders images may come from.
    pub roots: Vec<PathBuf>,
    pub token: Option<String>,
    pub web_dir: Option<PathBuf>,
    pub rasters: images::RasterCache,
    /// Height layers derived from the images' point clouds, by image id.
    pub layers: images::RasterCache,
    pub chips: Mutex<HashMap<i64, Arc<samples::ClassChips>>>,
    pub jobs: jobs::Jobs,
}

pub type Shared = Arc<AppState>;

impl AppState {
    /// Opens the project (or creates the demo) and starts the job worker.
    pub fn open(args: &ServeArgs) -> anyhow::Result<Shared> {
        let (dir, demo) = match &args.project {
            Some(p) => (p.clone(), false),
            None => (demo::ensure_demo()?, true),
        };
        let project = if demo { Project::open(&dir)? } else { Project::create(&dir)? };
        let dir = std::fs::canonicalize(&dir)?;
        let mut roots = args.image_roots.clone();
        if roots.is_empty() {
            roots.push(dir.clone());
            roots.push(std::env::current_dir()?);
        }
        let roots = roots
            .iter()
            .map(|r| std::fs::canonicalize(r).map_err(|e| anyhow::anyhow!("image root {}: {e}", r.display())))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let state = Arc::new(AppState {
            project_dir: dir,
            project: Mutex::new(project),
            demo,
            roots,
            token: args.token.clone().filter(|t| !t.is_empty()),
            web_dir: args.web_dir.clone(),
            rasters: Default::default(),
            layers: Default::default(),
            chips: Mutex::new(HashMap::new()),
            jobs: jobs::Jobs::new(),
        });
        jobs::start_worker(&state);
        Ok(state)
    }

    /// The project, locked. Handlers hold it only for one store call.
    pub fn db(&self) -> std::sync::MutexGuard<'_, Project> {
        // A handler that panicked while holding the lock cannot have left a half-done
        // transaction behind (SQLite rolls it back), so the store is still sound.
        self.project.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `path` (canonical) lies under one of the image roots.
    pub fn in_roots(&self, path: &Path) -> bool {
        self.roots.iter().any(|r| path.starts_with(r))
    }
}

/// The API and the web app.
pub fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/project", get(images::project))
        .route("/images", get(images::list).post(images::add))
        .route("/images/{id}", get(images::one))
        .route("/images/{id}/stats", get(images::stats))
        .route("/images/{id}/cloud", post(images::attach_cloud))
        .route("/images/{id}/points", get(images::points))
        .route("/images/{id}/layers/{name}/tiles/{z}/{x}/{y}", get(images::layer_tile))
        .route("/images/{id}/tiles/{z}/{x}/{y}", get(images::tile))
        .route("/classes", get(samples::classes).post(samples::add_class))
        .route("/classes/{id}", axum::routing::patch(samples::patch_class))
        .route("/samples", get(samples::list).post(samples::create))
        .route("/samples/{id}", get(samples::one).put(samples::update).delete(samples::delete))
        .route("/samples/{id}/restore", post(samples::restore))
        .route("/samples/{id}/chip.png", get(samples::chip))
        .route("/models", get(jobs::models))
        .route("/models/{id}", get(jobs::model))
        .route("/jobs", get(jobs::list))
        .route("/jobs/train", post(jobs::train))
        .route("/jobs/detect", post(jobs::detect))
        .route("/jobs/{id}", get(jobs::one))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/jobs/{id}/events", get(jobs::events))
        .route("/detections", get(review::list))
        .route("/detections/{id}/accept", post(review::accept))
        .route("/detections/{id}/reject", post(review::reject))
        .route("/detections/{id}/reset", post(review::reset))
        .route("/export/{file}", get(review::export))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::not_found("no such API endpoint") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .nest("/api", api)
        .fallback(web::serve)
        .with_state(state)
}

/// The API's OpenAPI description.
async fn openapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], include_str!("openapi.json")).into_response()
}

/// Checks the token (header `Authorization: Bearer …` or query `token=…`) when one is set.
async fn require_token(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let Some(expected) = &state.token else {
        return next.run(req).await;
    };
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let query = req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_string())
    });
    let given = header.or(query).unwrap_or_default();
    // Compared in constant time, so that the reply time says nothing about the token.
    let same = given.len() == expected.len() && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if same {
        next.run(req).await
    } else {
        ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "this server needs its token: send `Authorization: Bearer TOKEN` or `?token=TOKEN`").into_response()
    }
}

/// A server reachable from other machines must have a token.
fn check_exposure(addr: SocketAddr, token: Option<&str>) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() && token.is_none_or(str::is_empty) {
        anyhow::bail!("serving on {addr} exposes the project to the network: give a token with --token or KESTREL_TOKEN (or bind 127.0.0.1)");
    }
    Ok(())
}

/// Runs the server until Ctrl-C.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    check_exposure(args.addr, args.token.as_deref())?;
    let state = AppState::open(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.addr))?;
        let addr = listener.local_addr()?;
        let project = state.project_dir.display().to_string();
        let what = if state.demo { "the demo project" } else { "project" };
        let query = state.token.as_ref().map(|t| format!("?token={t}")).unwrap_or_default();
        if !web::bundled() && state.web_dir.is_none() {
            eprintln!("note: this build has no web app bundled; build it with `npm --prefix web ci && npm --prefix web run build` and rebuild kestrel");
        }
        eprintln!("Kestrel: {what} {project}\nopen http://{addr}/{query}   (Ctrl-C stops)");
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    })
}
