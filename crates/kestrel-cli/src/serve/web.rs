//! The web app: bundled into the binary at build time (see build.rs), or read from
//! `--web-dir` while developing it. Unknown paths get `index.html` (the app routes itself).

use super::Shared;
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

mod assets {
    include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
}

/// Whether this build carries the web app.
pub fn bundled() -> bool {
    !assets::ASSETS.is_empty()
}

fn mime(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "woff2" => "font/woff2",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

const NOT_BUILT: &str = "<!doctype html><title>Kestrel</title><h1>Kestrel</h1><p>This build has no web app. Build it with <code>npm --prefix web ci &amp;&amp; npm --prefix web run build</code>, then rebuild Kestrel (or run <code>kestrel serve --web-dir web/dist</code>). The API answers under <a href=\"/api/openapi.json\">/api/</a>.</p>";

pub async fn serve(State(state): State<Shared>, uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    if let Some(dir) = &state.web_dir {
        // Only plain relative names: no way out of the folder.
        let safe = !path.split('/').any(|c| c == ".." || c.is_empty() || c.starts_with('.'));
        let file = if safe && dir.join(path).is_file() { dir.join(path) } else { dir.join("index.html") };
        let name = file.to_string_lossy().to_string();
        return match tokio::fs::read(&file).await {
            Ok(bytes) => ([(header::CONTENT_TYPE, mime(&name))], bytes).into_response(),
            Err(e) => (StatusCode::NOT_FOUND, format!("{}: {e}", file.display())).into_response(),
        };
    }
    let found = assets::ASSETS.iter().find(|(p, _)| *p == path).or_else(|| assets::ASSETS.iter().find(|(p, _)| *p == "index.html"));
    match found {
        Some((p, bytes)) => ([(header::CONTENT_TYPE, mime(p))], *bytes).into_response(),
        None => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], NOT_BUILT).into_response(),
    }
}
