//! Every API endpoint, through the router as the browser reaches it: what it answers, and
//! that bad requests (malformed JSON, unknown ids, NaN geometry, paths outside the image
//! roots, stale versions) get a 4xx with a message, never a 500.

use super::{router, AppState, ServeArgs, Shared};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

struct Fixture {
    state: Shared,
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
}

fn fixture(token: Option<&str>) -> Fixture {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = std::fs::canonicalize(tmp.path()).expect("canonical temp dir").join("project");
    super::demo::build(&dir, &dir).expect("demo project");
    let state = AppState::open(&ServeArgs {
        project: Some(dir.clone()),
        addr: "127.0.0.1:0".parse().expect("address"),
        token: token.map(str::to_string),
        image_roots: vec![dir.clone()],
        web_dir: None,
    })
    .expect("server state");
    Fixture { state, _dir: tmp, dir }
}

async fn call(state: &Shared, method: &str, uri: &str, body: Option<&str>) -> (StatusCode, Value, Vec<u8>) {
    call_with(state, method, uri, body, None).await
}

async fn call_with(state: &Shared, method: &str, uri: &str, body: Option<&str>, bearer: Option<&str>) -> (StatusCode, Value, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))).expect("request");
    let resp = router(state.clone()).oneshot(req).await.expect("router answers");
    let status = resp.status();
    let bytes = tokio::time::timeout(std::time::Duration::from_secs(300), axum::body::to_bytes(resp.into_body(), 1 << 30))
        .await
        .expect("body within 5 minutes")
        .expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json, bytes.to_vec())
}

/// A 4xx whose JSON names the problem.
fn assert_client_error(status: StatusCode, body: &Value, expected: StatusCode, mentions: &str) {
    assert_eq!(status, expected, "{body}");
    let msg = body["error"].as_str().unwrap_or_else(|| panic!("no error message in {body}"));
    assert!(msg.to_lowercase().contains(&mentions.to_lowercase()), "{msg:?} should mention {mentions:?}");
}

async fn wait_job(state: &Shared, id: u64) -> Value {
    for _ in 0..600 {
        let (_, job, _) = call(state, "GET", &format!("/api/jobs/{id}"), None).await;
        if matches!(job["state"].as_str(), Some("done" | "failed" | "cancelled")) {
            return job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("job {id} did not finish in 5 minutes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_tiles_and_roots() {
    let f = fixture(None);
    let s = &f.state;
    let (st, project, _) = call(s, "GET", "/api/project", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(project["demo"], false);
    let (st, images, _) = call(s, "GET", "/api/images", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(images.as_array().map(Vec::len), Some(2));
    let (st, one, _) = call(s, "GET", "/api/images/1", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(one["projection"], "EPSG:32633");
    assert_eq!(one["tiles"]["resolutions"], json!([0.6, 0.3, 0.15]));
    assert_eq!(one["samples"], 8);
    let (st, b, _) = call(s, "GET", "/api/images/99", None).await;
    assert_client_error(st, &b, StatusCode::NOT_FOUND, "image 99");
    let (st, b, _) = call(s, "GET", "/api/images/abc", None).await;
    assert_client_error(st, &b, StatusCode::BAD_REQUEST, "path");

    // Stats and tiles.
    let (st, stats, _) = call(s, "GET", "/api/images/1/stats", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(stats["bands"].as_array().map(Vec::len), Some(3));
    let (st, _, png) = call(s, "GET", "/api/images/1/tiles/0/0/0.png", None).await;
    assert_eq!(st, StatusCode::OK);
    let tile = image::load_from_memory(&png).expect("a PNG").to_rgba8();
    assert_eq!(tile.dimensions(), (256, 256));
    // Level 0 shows the 1024 px image in one tile of 256: all of it opaque.
    assert!(tile.pixels().all(|p| p[3] == 255));
    let (st, _, png) = call(s, "GET", "/api/images/1/tiles/2/3/3.png?bands=2&min=0&max=255", None).await;
    assert_eq!(st, StatusCode::OK);
    let grey = image::load_from_memory(&png).expect("a PNG").to_rgba8();
    assert!(grey.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    // Beyond the image: transparent.
    let (st, _, png) = call(s, "GET", "/api/images/1/tiles/2/9/9.png", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(image::load_from_memory(&png).expect("a PNG").to_rgba8().pixels().all(|p| p[3] == 0));
    for (uri, status, mention) in [
        ("/api/images/1/tiles/7/0/0.png", StatusCode::NOT_FOUND, "tile levels"),
        ("/api/images/1/tiles/0/0/0.png?bands=4", StatusCode::BAD_REQUEST, "bands"),
        ("/api/images/1/tiles/0/0/0.png?bands=1,2,3&min=a,b,c", StatusCode::BAD_REQUEST, "min"),
        ("/api/images/1/tiles/0/0/0.png?bands=1,2,3&max=1", StatusCode::BAD_REQUEST, "max"),
        ("/api/images/1/tiles/0/0/x.png", StatusCode::BAD_REQUEST, "tile row"),
        ("/api/images/9/tiles/0/0/0.png", StatusCode::NOT_FOUND, "image 9"),
    ] {
        let (st, b, _) = call(s, "GET", uri, None).await;
        assert_client_error(st, &b, status, mention);
    }

    // Adding images: inside the roots, outside, missing, corrupt, malformed.
    let extra = f.dir.join("extra.tif");
    kestrel_samples::synthetic::Scene::generate(&kestrel_samples::synthetic::SceneSpec { width_px: 300, height_px: 200, ..Default::default() }).write_geotiff(&extra).expect("scene");
    let (st, added, _) = call(s, "POST", "/api/images", Some(&json!({"path": extra}).to_string())).await;
    assert_eq!(st, StatusCode::CREATED, "{added}");
    assert_eq!(added["width"], 300);
    let outside = f._dir.path().join("outside.tif");
    std::fs::copy(&extra, &outside).expect("copy");
    let (st, b, _) = call(s, "POST", "/api/images", Some(&json!({"path": outside}).to_string())).await;
    assert_client_error(st, &b, StatusCode::FORBIDDEN, "outside the image roots");
    let (st, b, _) = call(s, "POST", "/api/images", Some(&json!({"path": f.dir.join("../project/../../etc/passwd")}).to_string())).await;
    assert!(st == StatusCode::FORBIDDEN || st == StatusCode::NOT_FOUND, "{st} {b}");
    let (st, b, _) = call(s, "POST", "/api/images", Some(r#"{"path": "/etc/passwd"}"#)).await;
    assert_client_error(st, &b, StatusCode::FORBIDDEN, "outside the image roots");
    let (st, b, _) = call(s, "POST", "/api/images", Some(&json!({"path": f.dir.join("nope.tif")}).to_string())).await;
    assert_client_error(st, &b, StatusCode::NOT_FOUND, "no such file");
    let corrupt = f.dir.join("corrupt.tif");
    let mut bytes = std::fs::read(&extra).expect("read");
    bytes.truncate(300);
    std::fs::write(&corrupt, bytes).expect("write");
    let (st, b, _) = call(s, "POST", "/api/images", Some(&json!({"path": corrupt}).to_string())).await;
    assert_client_error(st, &b, StatusCode::UNPROCESSABLE_ENTITY, "corrupt.tif");
    let (st, b, _) = call(s, "POST", "/api/images", Some(r#"{"path": "#)).await;
    assert_client_error(st, &b, StatusCode::BAD_REQUEST, "malformed");
    let (st, b, _) = call(s, "POST", "/api/images", Some(r#"{"path": "a.tif", "url": "https://x/a.tif"}"#)).await;
    assert_client_error(st, &b, StatusCode::BAD_REQUEST, "exactly one");
    let (st, b, _) = call(s, "POST", "/api/images", Some(r#"{"url": "ftp://x/a.tif"}"#)).await;
    assert_client_error(st, &b, StatusCode::BAD_REQUEST, "url");
    let (st, b, _) = call(s, "POST", "/api/images", Some(&json!({"path": extra, "gsd_m": -1}).to_string())).await;
    assert_client_error(st, &b, StatusCode::BAD_REQUEST, "gsd_m");

    // The demo's first image carries a point cloud: points inside a box, thinned, with height.
    let (st, pts, _) = call(s, "GET", "/api/images/1/points?bbox=500,500,700,700&max=2000", None).await;
    assert_eq!(st, StatusCode::OK, "{pts}");
    assert_eq!(pts["count"], 2000);
    assert!(pts["total"].as_u64() > Some(2000));
    let pos = pts["positions"].as_array().expect("positions");
    assert_eq!((pos.len(), pts["colors"].as_array().map(Vec::len)), (6000, Some(6000)));
    assert!(pos.chunks(3).all(|p| (500.0..700.0).contains(&p[0].as_f64().unwrap_or(-1.0)) && (500.0..700.0).contains(&p[1].as_f64().unwrap_or(-1.0))));
    assert!(pts["z_max"].as_f64() > Some(1.4), "vehicles or buildings stand above the ground: {}", pts["z_max"]);
    for (uri, status, mention) in [
        ("/api/images/2/points", StatusCode::NOT_FOUND, "no point cloud"),
        ("/api/images/1/points?bbox=5,5,1", StatusCode::BAD_REQUEST, "bbox"),
        ("/api/images/1/points?max=0", StatusCode::BAD_REQUEST, "max"),
        ("/api/images/9/points", StatusCode::NOT_FOUND, "image 9"),
    ] {
        let (st, b, _) = call(s, "GET", uri, None).await;
        assert_client_error(st, &b, status, mention);
    }
    // Its height layer (nDSM from the cloud, on the image's grid): listed, and tiles coloured
    // where vehicles and buildings stand, transparent on the ground.
    assert_eq!(one["layers"][0]["name"], "ndsm", "{one}");
    assert_eq!(one["layers"][0]["max"], 6.0);
    let (st, _, png) = call(s, "GET", "/api/images/1/layers/ndsm/tiles/0/0/0.png", None).await;
    assert_eq!(st, StatusCode::OK);
    let tile = image::load_from_memory(&png).expect("a PNG").to_rgba8();
    let opaque = tile.pixels().filter(|p| p[3] == 255).count();
    assert!(opaque > 200 && opaque < 256 * 256 / 4, "{opaque} pixels stand above the ground");
    for (uri, status, mention) in [
        ("/api/images/2/layers/ndsm/tiles/0/0/0.png", StatusCode::NOT_FOUND, "no point cloud"),
        ("/api/images/1/layers/dtm/tiles/0/0/0.png", StatusCode::NOT_FOUND, "no layer"),
        ("/api/images/1/layers/ndsm/tiles/0/0/0.png?max=-1", StatusCode::BAD_REQUEST, "max"),
        ("/api/images/1/layers/ndsm/tiles/9/0/0.png", StatusCode::NOT_FOUND, "tile levels"),
    ] {
        let (st, b, _) = call(s, "GET", uri, None).await;
        assert_client_error(st, &b, status, mention);
    }
    let cloud = f.dir.join("harbour-road.las");
    let (st, att, _) = call(s, "POST", "/api/images/2/cloud", Some(&json!({"path": cloud}).to_string())).await;
    assert_eq!(st, StatusCode::CREATED, "{att}");
    let (_, two, _) = call(s, "GET", "/api/images/2", None).await;
    assert!(two["cloud"].as_str().is_some_and(|c| c.ends_with("harbour-road.las")));
    let (st, b, _) = call(s, "POST", "/api/images/2/cloud", Some(r#"{"path": "/etc/passwd"}"#)).await;
    assert_client_error(st, &b, StatusCode::FORBIDDEN, "outside the image roots");
    let (st, b, _) = call(s, "POST", "/api/images/2/cloud", Some(&json!({"path": extra}).to_string())).await;
    assert_client_error(st, &b, StatusCode::UNPROCESSABLE_ENTITY, "extra.tif");

    // Unknown endpoints answer JSON too; the web app (or the note that it is not built) at /.
    let (st, b, _) = call(s, "GET", "/api/nothing", None).await;
    assert_client_error(st, &b, StatusCode::NOT_FOUND, "no such API endpoint");
    let (st, _, html) = call(s, "GET", "/", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(String::from_utf8_lossy(&html).contains("Kestrel"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classes_and_samples_with_versions() {
    let f = fixture(None);
    let s = &f.state;
    let (st, classes, _) = call(s, "GET", "/api/classes", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(classes[0]["name"], "vehicle");
    let (st, ship, _) = call(s, "POST", "/api/classes", Some(r##"{"name": "ship", "heading_mode": "directed", "color": "#112233"}"##)).await;
    assert_eq!(st, StatusCode::CREATED, "{ship}");
    assert_eq!(ship["color"], "#112233");
    let (st, b, _) = call(s, "POST", "/api/classes", Some(r#"{"name": "ship", "heading_mode": "axis"}"#)).await;
    assert_client_error(st, &b, StatusCode::CONFLICT, "exists");
    let (st, b, _) = call(s, "POST", "/api/classes", Some(r#"{"name": "boat", "heading_mode": "sideways"}"#)).await;
    assert_client_error(st, &b, StatusCode::BAD_REQUEST, "heading_mode");
    let (st, b, _) = call(s, "POST", "/api/classes", Some(r#"{"name": " ", "heading_mode": "axis"}"#)).await;
    assert_client_error(st, &b, StatusCode::BAD_REQUEST, "class name");
    let (st, c, _) = call(s, "PATCH", "/api/classes/2", Some(r##"{"color": "#abcdef"}"##)).await;
    assert_eq!((st, c["color"].as_str()), (StatusCode::OK, Some("#abcdef")));
    let (st, b, _) = call(s, "PATCH", "/api/classes/2", Some(r#"{"color": "red"}"#)).await;
    assert_client_error(st, &b, StatusCode::BAD_REQUEST, "colour");
    let (st, b, _) = call(s, "PATCH", "/api/classes/77", Some(r##"{"color": "#abcdef"}"##)).await;
    assert_client_error(st, &b, StatusCode::NOT_FOUND, "class 77");

    let new = |cx: f64| json!({"image_id": 1, "class_id": 1, "polarity": "positive", "shape": {"kind": "oriented_box", "cx": cx, "cy": 300.0, "length": 30.0, "width": 14.0, "heading_deg": 45.0}}).to_string();
    let (st, a, _) = call(s, "POST", "/api/samples", Some(&new(200.0))).await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    assert_eq!((a["origin"].as_str(), a["version"].as_i64()), (Some("drawn"), Some(1)));
    let id = a["id"].as_i64().expect("id");
    // Bad geometry: NaN is not JSON, a negative length, a centre off the image; unknown ids.
    let nan = r#"{"image_id": 1, "class_id": 1, "polarity": "positive", "shape": {"kind": "oriented_box", "cx": NaN, "cy": 3, "length": 30, "width": 14, "heading_deg": 0}}"#;
    let (st, b, _) = call(s, "POST", "/api/samples", Some(nan)).await;
    assert_client_error(st, &b, StatusCode::BAD_REQUEST, "malformed");
    let (st, b, _) = call(s, "POST", "/api/samples", Some(&new(200.0).replace("30.0", "-30.0"))).await;
    assert_client_error(st, &b, StatusCode::BAD_REQUEST, "sample geometry");
    let (st, b, _) = call(s, "POST", "/api/samples", Some(&new(5000.0))).await;
    assert_client_error(st, &b, StatusCode::BAD_REQUEST, "outside image");
    let (st, b, _) = call(s, "POST", "/api/samples", Some(&new(200.0).replace("\"class_id\":1", "\"class_id\":42"))).await;
    assert_client_error(st, &b, StatusCode::NOT_FOUND, "class 42");
    let (st, b, _) = call(s, "POST", "/api/samples", Some(&new(200.0).replace("\"image_id\":1", "\"image_id\":42"))).await;
    assert_client_error(st, &b, StatusCode::NOT_FOUND, "image 42");
    let (st, b, _) = call(s, "POST", "/api/samples", Some(r#"{"image_id": 1}"#)).await;
    assert_client_error(st, &b, StatusCode::BAD_REQUEST, "missing field");

    let (st, list, _) = call(s, "GET", "/api/samples?image_id=1&polarity=positive", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(9));
    let (st, b, _) = call(s, "GET", "/api/samples?polarity=maybe", None).await;
    assert_client_error(st, &b, StatusCode::BAD_REQUEST, "query");
    let (st, one, _) = call(s, "GET", &format!("/api/samples/{id}"), None).await;
    assert_eq!((st, one["id"].as_i64()), (StatusCode::OK, Some(id)));

    // Two tabs: the first update wins, the second (stale version) gets 409 and the current.
    let update = |v: i64, h: f64| json!({"version": v, "class_id": 1, "polarity": "positive", "shape": {"kind": "oriented_box", "cx": 200.0, "cy": 300.0, "length": 30.0, "width": 14.0, "heading_deg": h}}).to_string();
    let (st, u, _) = call(s, "PUT", &format!("/api/samples/{id}"), Some(&update(1, 90.0))).await;
    assert_eq!((st, u["version"].as_i64()), (StatusCode::OK, Some(2)));
    let (st, b, _) = call(s, "PUT", &format!("/api/samples/{id}"), Some(&update(1, 10.0))).await;
    assert_client_error(st, &b, StatusCode::CONFLICT, "changed by someone else");
    assert_eq!(b["current"]["shape"]["heading_deg"], 90.0);
    let (st, b, _) = call(s, "PUT", "/api/samples/999", Some(&update(1, 10.0))).await;
    assert_client_error(st, &b, StatusCode::NOT_FOUND, "sample 999");
    let (st, b, _) = call(s, "DELETE", &format!("/api/samples/{id}"), None).await;
    assert_client_error(st, &b, StatusCode::BAD_REQUEST, "version");
    let (st, b, _) = call(s, "DELETE", &format!("/api/samples/{id}?version=1"), None).await;
    assert_client_error(st, &b, StatusCode::CONFLICT, "changed by someone else");
    let (st, _, _) = call(s, "DELETE", &format!("/api/samples/{id}?version=2"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, b, _) = call(s, "GET", &format!("/api/samples/{id}"), None).await;
    assert_client_error(st, &b, StatusCode::NOT_FOUND, "sample");
    // Undo of the delete: restored under a new id, origin kept.
    let (st, r, _) = call(s, "POST", &format!("/api/samples/{id}/restore"), Some(&u.to_string())).await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!((r["shape"]["heading_deg"].as_f64(), r["origin"].as_str()), (Some(90.0), Some("drawn")));
    let (st, b, _) = call(s, "POST", &format!("/api/samples/{}/restore", r["id"]), Some(&u.to_string())).await;
    assert_client_error(st, &b, StatusCode::CONFLICT, "exists");

    // The normalized chip of a positive.
    let (st, _, png) = call(s, "GET", "/api/samples/1/chip.png", None).await;
    assert_eq!(st, StatusCode::OK);
    let chip = image::load_from_memory(&png).expect("a PNG");
    assert!(chip.width() >= 16 && chip.width() == chip.height(), "{}×{}", chip.width(), chip.height());
    let (st, b, _) = call(s, "GET", "/api/samples/999/chip.png", None).await;
    assert_client_error(st, &b, StatusCode::NOT_FOUND, "sample 999");

    // Committed at once: another server on the same folder (a restart) sees it all.
    drop(f.state);
    let again = AppState::open(&ServeArgs { project: Some(f.dir.clone()), addr: "127.0.0.1:0".parse().expect("address"), token: None, image_roots: vec![], web_dir: None }).expect("reopen");
    let (_, list, _) = call(&again, "GET", "/api/samples?image_id=1", None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(9));
    assert!(list.as_array().expect("list").iter().any(|x| x["shape"]["heading_deg"] == 90.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_detect_review_export() {
    let f = fixture(None);
    let s = &f.state;
    let (st, b, _) = call(s, "POST", "/api/jobs/train", Some(r#"{"class_id": 9}"#)).await;
    assert_client_error(st, &b, StatusCode::NOT_FOUND, "class 9");
    let (st, b, _) = call(s, "POST", "/api/jobs/train", Some(r#"{"class_id": 1, "epochs": 0}"#)).await;
    assert_client_error(st, &b, StatusCode::BAD_REQUEST, "epochs");
    let (st, b, _) = call(s, "POST", "/api/jobs/train", Some(r#"{"class": 1}"#)).await;
    assert_client_error(st, &b, StatusCode::BAD_REQUEST, "malformed");
    // Training options: bands the images have, height bands among them, a known colour method.
    for (body, words) in [
        (r#"{"class_id": 1, "bands": [1, 2, 3, 4]}"#, "band 4 does not exist"),
        (r#"{"class_id": 1, "bands": [0, 1]}"#, "1-based"),
        (r#"{"class_id": 1, "bands": [1, 1, 2]}"#, "band 1 is named twice"),
        (r#"{"class_id": 1, "bands": [1, 2], "height_bands": [3]}"#, "height band 3"),
        (r#"{"class_id": 1, "colour": "sepia"}"#, "sepia"),
        (r#"{"class_id": 1, "mine_rounds": 9}"#, "mine_rounds"),
        (r#"{"class_id": 1, "gsd_m": -0.1}"#, "gsd_m"),
        (r#"{"class_id": 1, "widths": [16, 0, 64]}"#, "widths"),
        (r#"{"class_id": 1, "widths": [16, 32]}"#, "malformed"),
        (r#"{"class_id": 1, "members": 9}"#, "members 9"),
    ] {
        let (st, b, _) = call(s, "POST", "/api/jobs/train", Some(body)).await;
        assert_client_error(st, &b, StatusCode::BAD_REQUEST, words);
    }

    // Cancelled while queued or running: ends as cancelled, writes no model.
    let (st, job, _) = call(s, "POST", "/api/jobs/train", Some(r#"{"class_id": 1, "epochs": 50}"#)).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{job}");
    let (st, _, _) = call(s, "POST", &format!("/api/jobs/{}/cancel", job["id"]), None).await;
    assert_eq!(st, StatusCode::OK);
    let cancelled = wait_job(s, job["id"].as_u64().expect("id")).await;
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");

    let (st, job, _) = call(s, "POST", "/api/jobs/train", Some(r#"{"class_id": 1, "epochs": 6, "bands": [3, 2, 1], "colour": "stretch", "widths": [16, 24, 48]}"#)).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    // The event stream: snapshots until the job ends, then the stream closes.
    let (st, _, sse) = call(s, "GET", &format!("/api/jobs/{}/events", job["id"]), None).await;
    assert_eq!(st, StatusCode::OK);
    let events: Vec<Value> = String::from_utf8_lossy(&sse).lines().filter_map(|l| l.strip_prefix("data: ")).filter_map(|d| serde_json::from_str(d).ok()).collect();
    assert!(events.len() >= 3, "{} events", events.len());
    let last = events.last().expect("an event");
    assert_eq!(last["state"], "done", "{last}");
    assert!(last["epochs"].as_array().is_some_and(|e| !e.is_empty()));
    let model_id = last["result"]["model_id"].as_str().expect("model id").to_string();
    let (_, models, _) = call(s, "GET", "/api/models", None).await;
    let model = models.as_array().and_then(|m| m.iter().find(|m| m["id"] == model_id.as_str())).expect("the model is listed");
    assert_eq!((model["bands"].clone(), model["height_bands"].clone(), model["widths"].clone()), (json!([3, 2, 1]), json!([]), json!([16, 24, 48])), "the job's bands and widths reach the model: {model}");
    let (st, jobs, _) = call(s, "GET", "/api/jobs", None).await;
    assert_eq!((st, jobs.as_array().map(Vec::len)), (StatusCode::OK, Some(2)));
    let (st, b, _) = call(s, "GET", "/api/jobs/99", None).await;
    assert_client_error(st, &b, StatusCode::NOT_FOUND, "job 99");
    let (st, b, _) = call(s, "GET", "/api/jobs/99/events", None).await;
    assert_client_error(st, &b, StatusCode::NOT_FOUND, "job 99");
    let (st, b, _) = call(s, "POST", "/api/jobs/99/cancel", None).await;
    assert_client_error(st, &b, StatusCode::NOT_FOUND, "job 99");

    let (st, models, _) = call(s, "GET", "/api/models", None).await;
    assert_eq!((st, models[0]["id"].as_str()), (StatusCode::OK, Some(model_id.as_str())));
    let (st, m, _) = call(s, "GET", &format!("/api/models/{model_id}"), None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(m["metrics"].as_array().is_some_and(|e| !e.is_empty()));
    let (st, b, _) = call(s, "GET", "/api/models/..%2Fsecret", None).await;
    assert_client_error(st, &b, StatusCode::BAD_REQUEST, "not a model id");
    let (st, b, _) = call(s, "GET", "/api/models/nothing", None).await;
    assert_client_error(st, &b, StatusCode::NOT_FOUND, "model nothing");

    // An ensemble package in the models folder (here the model and a copy of it, as
    // `kestrel ensemble` writes it) is listed with its members and detects like its member.
    let models_dir = f.dir.join("models");
    let single = models_dir.join(format!("{model_id}.kestrel"));
    let copy = f.dir.join("copy.kestrel");
    std::fs::copy(&single, &copy).unwrap();
    kestrel_model::package::save_ensemble(&models_dir.join("pair.kestrel"), &[&single, &copy]).unwrap();
    let (st, pair, _) = call(s, "GET", "/api/models/pair", None).await;
    assert_eq!((st, pair["members"].as_u64(), pair["member_models"].as_array().map(Vec::len)), (StatusCode::OK, Some(2), Some(2)), "{pair}");
    assert_eq!(pair["default_threshold"], m["default_threshold"], "the mean of two equal thresholds");
    let (_, models, _) = call(s, "GET", "/api/models", None).await;
    let members: Vec<(String, u64)> = models.as_array().unwrap().iter().map(|m| (m["id"].as_str().unwrap().to_string(), m["members"].as_u64().unwrap())).collect();
    assert!(members.contains(&("pair".into(), 2)) && members.contains(&(model_id.clone(), 1)), "{members:?}");

    let detect = |body: Value| body.to_string();
    for (body, status, mention) in [
        (json!({"model_id": "nothing", "image_id": 1}), StatusCode::NOT_FOUND, "model nothing"),
        (json!({"model_id": model_id, "image_id": 7}), StatusCode::NOT_FOUND, "image 7"),
        (json!({"model_id": model_id, "image_id": 1, "bbox": [10, 10, 5, 50]}), StatusCode::BAD_REQUEST, "bbox"),
        (json!({"model_id": model_id, "image_id": 1, "bbox": [5000, 5000, 6000, 6000]}), StatusCode::BAD_REQUEST, "outside image"),
    ] {
        let (st, b, _) = call(s, "POST", "/api/jobs/detect", Some(&detect(body))).await;
        assert_client_error(st, &b, status, mention);
    }
    let (st, job, _) = call(s, "POST", "/api/jobs/detect", Some(&detect(json!({"model_id": "pair", "image_id": 1})))).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let paired = wait_job(s, job["id"].as_u64().expect("id")).await;
    assert_eq!(paired["state"], "done", "{paired}");
    let (st, job, _) = call(s, "POST", "/api/jobs/detect", Some(&detect(json!({"model_id": model_id, "image_id": 1})))).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let done = wait_job(s, job["id"].as_u64().expect("id")).await;
    assert_eq!(done["state"], "done", "{done}");
    let (st, dets, _) = call(s, "GET", "/api/detections?image_id=1&status=pending", None).await;
    assert_eq!(st, StatusCode::OK);
    let dets = dets.as_array().expect("list").clone();
    assert_eq!(paired["result"]["detections"], done["result"]["detections"], "a model paired with itself finds what it finds alone");
    assert!(dets.len() >= 2, "{} detections", dets.len());
    assert!(dets.windows(2).all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64()), "strongest first");
    let (st, b, _) = call(s, "GET", "/api/detections?status=maybe", None).await;
    assert_client_error(st, &b, StatusCode::BAD_REQUEST, "query");

    // Review: accept → positive, reject → hard negative, reset → pending again, sample gone.
    let (a, r) = (&dets[0], &dets[1]);
    let (st, acc, _) = call(s, "POST", &format!("/api/detections/{}/accept", a["id"]), Some(&json!({"version": a["version"]}).to_string())).await;
    assert_eq!(st, StatusCode::OK, "{acc}");
    assert_eq!((acc["detection"]["status"].as_str(), acc["sample"]["polarity"].as_str(), acc["sample"]["origin"].as_str()), (Some("accepted"), Some("positive"), Some("accepted_detection")));
    let (st, b, _) = call(s, "POST", &format!("/api/detections/{}/reject", a["id"]), Some(&json!({"version": a["version"]}).to_string())).await;
    assert_client_error(st, &b, StatusCode::CONFLICT, "changed by someone else");
    let (st, b, _) = call(s, "POST", &format!("/api/detections/{}/reject", a["id"]), Some(&json!({"version": acc["detection"]["version"]}).to_string())).await;
    assert_client_error(st, &b, StatusCode::CONFLICT, "already accepted");
    let (st, rej, _) = call(s, "POST", &format!("/api/detections/{}/reject", r["id"]), Some(&json!({"version": r["version"]}).to_string())).await;
    assert_eq!(st, StatusCode::OK, "{rej}");
    assert_eq!((rej["sample"]["polarity"].as_str(), rej["sample"]["origin"].as_str()), (Some("negative"), Some("rejected_detection")));
    let (st, reset, _) = call(s, "POST", &format!("/api/detections/{}/reset", r["id"]), Some(&json!({"version": rej["detection"]["version"]}).to_string())).await;
    assert_eq!((st, reset["detection"]["status"].as_str()), (StatusCode::OK, Some("pending")));
    let (st, _, _) = call(s, "GET", &format!("/api/samples/{}", rej["sample"]["id"]), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, b, _) = call(s, "POST", "/api/detections/999/accept", Some(r#"{"version": 1}"#)).await;
    assert_client_error(st, &b, StatusCode::NOT_FOUND, "detection 999");
    let (st, b, _) = call(s, "POST", &format!("/api/detections/{}/accept", r["id"]), Some("{")).await;
    assert_client_error(st, &b, StatusCode::BAD_REQUEST, "malformed");

    // Exports open as GeoJSON and GeoPackage.
    let (st, gj, _) = call(s, "GET", "/api/export/samples.geojson", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(gj["type"], "FeatureCollection");
    assert!(gj["features"].as_array().is_some_and(|f| f.len() > 40));
    let (st, dj, _) = call(s, "GET", "/api/export/detections.geojson?image_id=1", None).await;
    assert_eq!(st, StatusCode::OK);
    let statuses: Vec<&str> = dj["features"].as_array().expect("features").iter().filter_map(|f| f["properties"]["status"].as_str()).collect();
    assert!(statuses.contains(&"accepted"), "{statuses:?}");
    for name in ["samples.gpkg", "detections.gpkg"] {
        let (st, _, bytes) = call(s, "GET", &format!("/api/export/{name}"), None).await;
        assert_eq!(st, StatusCode::OK);
        assert!(bytes.starts_with(b"SQLite format 3\0"), "{name} is not a GeoPackage");
    }
    let (st, b, _) = call(s, "GET", "/api/export/passwords.txt", None).await;
    assert_client_error(st, &b, StatusCode::NOT_FOUND, "export");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_checked_on_every_api_call() {
    let f = fixture(Some("s3cret"));
    let s = &f.state;
    for uri in ["/api/project", "/api/images", "/api/images/1/tiles/0/0/0.png", "/api/samples", "/api/jobs", "/api/openapi.json"] {
        let (st, b, _) = call(s, "GET", uri, None).await;
        assert_client_error(st, &b, StatusCode::UNAUTHORIZED, "token");
        let (st, b, _) = call_with(s, "GET", uri, None, Some("wrong")).await;
        assert_client_error(st, &b, StatusCode::UNAUTHORIZED, "token");
        let (st, _, _) = call_with(s, "GET", uri, None, Some("s3cret")).await;
        assert_eq!(st, StatusCode::OK, "{uri}");
    }
    let (st, _, _) = call(s, "GET", "/api/images?token=s3cret", None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, b, _) = call(s, "POST", "/api/samples", Some("{}")).await;
    assert_client_error(st, &b, StatusCode::UNAUTHORIZED, "token");
    // Exposing the server needs a token; loopback does not.
    assert!(super::check_exposure("0.0.0.0:8080".parse().expect("address"), None).is_err());
    assert!(super::check_exposure("0.0.0.0:8080".parse().expect("address"), Some("")).is_err());
    assert!(super::check_exposure("0.0.0.0:8080".parse().expect("address"), Some("t")).is_ok());
    assert!(super::check_exposure("127.0.0.1:8080".parse().expect("address"), None).is_ok());
}

/// Every operation the OpenAPI description lists is routed (not the fallback, not 405).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_what_is_served() {
    let f = fixture(None);
    let (st, spec, _) = call(&f.state, "GET", "/api/openapi.json", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(spec["openapi"], "3.1.0");
    let paths = spec["paths"].as_object().expect("paths");
    assert!(paths.len() >= 20, "{} paths", paths.len());
    for (path, ops) in paths {
        for method in ops.as_object().expect("operations").keys() {
            let uri = format!("/api{}", path.replace("{id}", "999").replace("{z}", "0").replace("{x}", "0").replace("{y}", "0.png").replace("{file}", "nothing.csv"));
            let body = matches!(method.as_str(), "post" | "put" | "patch").then_some("{}");
            let (st, b, _) = call(&f.state, &method.to_uppercase(), &uri, body).await;
            assert_ne!(st, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
            assert_ne!(b["error"].as_str(), Some("no such API endpoint"), "{method} {uri} is in the description but not routed");
            assert!(st.as_u16() < 500, "{method} {uri}: {st} {b}");
        }
    }
}
