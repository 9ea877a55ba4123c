//! `kestrel serve` as a user runs it: the demo project made on first run, and labels that
//! survive the server being killed (SIGKILL) right after the reply.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

/// One HTTP/1.1 request; returns the status and the body.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).expect("timeout");
    let body = body.unwrap_or("");
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).expect("send");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    // Chunked replies: join the chunks.
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut body = String::new();
        let mut rest = rest;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            body.push_str(&tail[..n]);
            rest = &tail[n..].trim_start_matches("\r\n");
        }
        body
    } else {
        rest.to_string()
    };
    (status, body)
}

fn start(args: &[&str], home: &Path, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .arg("serve")
        .args(args)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .env("KESTREL_HOME", home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kestrel serve starts");
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(120), "kestrel serve did not listen within 2 minutes");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

#[test]
fn demo_project_on_first_run_and_labels_survive_kill_9() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let home = tmp.path().join("home");
    let port = free_port();
    let mut server = start(&[], &home, port);
    let (status, images) = http(port, "GET", "/api/images", None);
    assert_eq!(status, 200, "{images}");
    let images: serde_json::Value = serde_json::from_str(&images).expect("JSON");
    assert_eq!(images.as_array().map(Vec::len), Some(2), "the demo has two scenes");
    assert!(home.join("demo/harbour-road.tif").is_file());
    let (_, project) = http(port, "GET", "/api/project", None);
    assert!(project.contains("\"demo\":true"), "{project}");

    // Draw, edit, and kill the server the moment the replies are in.
    let drawn = r#"{"image_id": 1, "class_id": 1, "polarity": "negative", "shape": {"kind": "point", "x": 100.5, "y": 200.25, "heading_deg": null}}"#;
    let (status, created) = http(port, "POST", "/api/samples", Some(drawn));
    assert_eq!(status, 201, "{created}");
    let created: serde_json::Value = serde_json::from_str(&created).expect("JSON");
    let id = created["id"].as_i64().expect("id");
    let edit = format!(r#"{{"version": 1, "class_id": 1, "polarity": "negative", "shape": {{"kind": "point", "x": 101.5, "y": 201.25, "heading_deg": 30}}}}"#);
    let (status, body) = http(port, "PUT", &format!("/api/samples/{id}"), Some(&edit));
    assert_eq!(status, 200, "{body}");
    server.kill().expect("SIGKILL");
    server.wait().expect("reaped");

    let port = free_port();
    let mut server = start(&[], &home, port);
    let (status, body) = http(port, "GET", &format!("/api/samples/{id}"), None);
    assert_eq!(status, 200, "{body}");
    let s: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!((s["shape"]["x"].as_f64(), s["shape"]["heading_deg"].as_f64(), s["version"].as_i64()), (Some(101.5), Some(30.0), Some(2)));
    let (_, all) = http(port, "GET", "/api/samples", None);
    let all: serde_json::Value = serde_json::from_str(&all).expect("JSON");
    assert_eq!(all.as_array().map(Vec::len), Some(8 + 36 + 1), "the demo's samples and the drawn one, nothing more or less");
    server.kill().expect("SIGKILL");
    server.wait().expect("reaped");
}

#[test]
fn exposing_the_server_needs_a_token() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(["serve", "--project"])
        .arg(tmp.path().join("p"))
        .args(["--addr", "0.0.0.0:0"])
        .env_remove("KESTREL_TOKEN")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--token"), "{err}");
}
