//! `gridwatch models` and `gridwatch media`: finding, downloading and verifying the files
//! the repository never holds. Downloads go to a real HTTP server on loopback (Python's
//! http.server) serving local files, since nothing here may reach the internet.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gridwatch_e2e::*;

struct HttpServer {
    child: Child,
    port: u16,
}

impl HttpServer {
    fn serve(dir: &Path) -> HttpServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(python())
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start http.server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "http.server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpServer { child, port }
    }
    fn url(&self, file: &str) -> String {
        format!("http://127.0.0.1:{}/{file}", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The built-in manifest renamed so no local copy exists, pointed at `url`.
fn manifest_for(dir: &Path, url: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo_root().join("models/yolox_nano.toml")).unwrap();
    let text = text
        .replace("file = \"yolox_nano.onnx\"", "file = \"fetched_nano.onnx\"")
        .replace(
            "url = \"https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_nano.onnx\"",
            &format!("url = \"{url}\""),
        );
    let path = dir.join("fetched.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn models_fetch_downloads_verifies_and_then_finds_the_file() {
    let served = tempfile::tempdir().unwrap();
    std::fs::copy(model_path(), served.path().join("fetched_nano.onnx")).unwrap();
    let server = HttpServer::serve(served.path());
    let work = tempfile::tempdir().unwrap();
    let manifest = manifest_for(work.path(), &server.url("fetched_nano.onnx"));
    let cache = work.path().join("cache");

    let first = run_ok(
        gridwatch()
            .args(["models", "fetch"])
            .arg(&manifest)
            .env("GRIDWATCH_CACHE_DIR", &cache),
    );
    assert!(
        first.stdout().contains("downloaded and verified"),
        "{}",
        first.stdout()
    );
    let stored = cache.join("models/fetched_nano.onnx");
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        std::fs::read(model_path()).unwrap(),
        "the downloaded bytes are the model"
    );

    // Second time: found in the cache and verified, no download (the server is gone).
    drop(server);
    let second = run_ok(
        gridwatch()
            .args(["models", "fetch"])
            .arg(&manifest)
            .env("GRIDWATCH_CACHE_DIR", &cache),
    );
    assert!(
        second.stdout().contains("verified at"),
        "{}",
        second.stdout()
    );

    // And the detector uses it.
    let detect = run_ok(
        gridwatch()
            .arg("detect")
            .arg(media("dog.jpg"))
            .arg("--model")
            .arg(&manifest)
            .env("GRIDWATCH_CACHE_DIR", &cache),
    );
    assert!(detect.stdout().contains("\"dog\""));
}

#[test]
fn a_tampered_download_is_rejected_and_not_kept() {
    let served = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(model_path()).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(served.path().join("fetched_nano.onnx"), &bytes).unwrap();
    let server = HttpServer::serve(served.path());
    let work = tempfile::tempdir().unwrap();
    let manifest = manifest_for(work.path(), &server.url("fetched_nano.onnx"));
    let cache = work.path().join("cache");
    let r = run(gridwatch()
        .args(["models", "fetch"])
        .arg(&manifest)
        .env("GRIDWATCH_CACHE_DIR", &cache));
    let line = r.error_line();
    assert_eq!(r.code(), 3, "{line}");
    assert!(line.contains("sha256 mismatch"), "{line}");
    let left: Vec<_> = std::fs::read_dir(cache.join("models"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "nothing kept after a bad download: {left:?}"
    );
}

#[test]
fn an_unreachable_download_is_one_clear_line() {
    let work = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let manifest = manifest_for(work.path(), &format!("http://127.0.0.1:{port}/none.onnx"));
    let r = run(gridwatch()
        .args(["models", "fetch"])
        .arg(&manifest)
        .env("GRIDWATCH_CACHE_DIR", work.path()));
    let line = r.error_line();
    assert_eq!(r.code(), 3);
    assert!(line.contains("download of http://127.0.0.1"), "{line}");
}

#[test]
fn models_verify_and_list_report_the_shared_model() {
    let r = run_ok(gridwatch().args(["models", "verify"]));
    assert!(r.stdout().contains("sha256 ok"), "{}", r.stdout());
    let r = run_ok(gridwatch().args(["models", "list"]));
    assert!(r.stdout().contains("yolox_nano"));
    assert!(r.stdout().contains("present at"), "{}", r.stdout());
}

#[test]
fn media_path_finds_verified_sample_files() {
    let r = run_ok(
        gridwatch()
            .args(["media", "path", "dog.jpg"])
            .env("GRIDWATCH_MEDIA_DIR", media_dir()),
    );
    assert_eq!(Path::new(r.stdout().trim()), media_dir().join("dog.jpg"));
    let r = run(gridwatch().args(["media", "path", "nope.mp4"]));
    assert_eq!(r.code(), 2);
    assert!(r.error_line().contains("known: car-detection.mp4"));

    // A sample file with the right name but wrong bytes is refused.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dog.jpg"), b"not the dog").unwrap();
    let r = run(gridwatch()
        .args(["media", "path", "dog.jpg"])
        .env("GRIDWATCH_MEDIA_DIR", dir.path()));
    assert!(r.error_line().contains("sha256 mismatch"));
}
