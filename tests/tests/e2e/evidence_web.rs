//! Evidence (clips, snapshots, retention), the HTTP API and the review page: with real
//! FFmpeg remuxing, real ffprobe checks, a real HTTP server and real headless Chromium.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gridwatch_e2e::broker::{Broker, BrokerOptions, Subscriber};
use gridwatch_e2e::scenario;
use gridwatch_e2e::*;
use serde_json::Value;

fn replay_store(config: &Path, scenario_name: &str, dir: &Path, start: Option<&str>) -> Run {
    let s = scenario::load(scenario_name);
    let clip = scenario::clip(&s);
    let start = start.unwrap_or(&s.start_time).to_string();
    run_ok(&mut replay_command(
        config,
        &clip,
        &dir.join("out.jsonl"),
        &["--store", "--start-time", &start],
    ))
}

fn db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("data/gridwatch.db")).unwrap()
}

fn events(dir: &Path) -> Vec<Value> {
    let db = db(dir);
    let mut stmt = db
        .prepare("SELECT payload FROM events ORDER BY incident_id, seq")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|p| serde_json::from_str(&p.unwrap()).unwrap())
        .collect()
}

fn ffprobe(args: &[&str], file: &Path) -> String {
    let r = run_ok(
        Command::new("ffprobe")
            .args(["-v", "error"])
            .args(args)
            .arg(file),
    );
    r.stdout()
}

/// Keyframe times (s) of a video.
fn keyframes(file: &Path) -> Vec<f64> {
    ffprobe(
        &[
            "-select_streams",
            "v",
            "-skip_frame",
            "nokey",
            "-show_entries",
            "frame=pts_time",
            "-of",
            "csv=p=0",
        ],
        file,
    )
    .lines()
    .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
    .collect()
}

#[test]
fn a_parking_incident_gets_a_playable_clip_and_an_annotated_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let config = scenario::config_in(dir.path(), "parking_positive", "");
    replay_store(&config, "parking_positive", dir.path(), None);

    let events = events(dir.path());
    let opened = events
        .iter()
        .find(|e| e["state"] == "opened")
        .expect("an incident");
    let opened_at = 183.0; // seconds into the clip, see the scenario's ground truth
    assert_eq!(opened["event_at"], "2026-11-24T10:03:03.000+08:00");
    // Evidence arrives in `updated` events: the snapshot first, then the clip.
    let kinds_in = |e: &Value| -> Vec<String> {
        e["evidence"]["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["kind"].as_str().unwrap().to_string())
            .collect()
    };
    let first_with_files = events.iter().find(|e| !kinds_in(e).is_empty()).unwrap();
    assert_eq!(kinds_in(first_with_files), ["snapshot", "thumbnail"]);
    let with_clip = events
        .iter()
        .find(|e| kinds_in(e).contains(&"clip".to_string()))
        .expect("clip event");
    assert!(with_clip["seq"].as_u64() > first_with_files["seq"].as_u64());
    for e in &events {
        assert!(schema_errors(e).is_empty(), "{:?}", schema_errors(e));
    }
    let file = |kind: &str| {
        let f = with_clip["evidence"]["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["kind"] == kind)
            .unwrap()
            .clone();
        let path = dir.path().join("data").join(f["path"].as_str().unwrap());
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            f["bytes"].as_u64().unwrap()
        );
        assert_eq!(
            gridwatch::assets::sha256_file(&path).unwrap(),
            f["sha256"].as_str().unwrap()
        );
        assert!(
            f["path"]
                .as_str()
                .unwrap()
                .starts_with("evidence/2026/11/24/"),
            "{f}"
        );
        path
    };

    // The clip: pre-roll 10 s from the keyframe at or before it, post-roll 20 s, remuxed.
    let clip = file("clip");
    let source = scenario::clip(&scenario::load("parking_positive"));
    let start = keyframes(&source)
        .into_iter()
        .filter(|k| *k <= opened_at - 10.0)
        .fold(0.0, f64::max);
    let expected = opened_at + 20.0 - start;
    let duration: f64 = ffprobe(
        &["-show_entries", "format=duration", "-of", "csv=p=0"],
        &clip,
    )
    .trim()
    .parse()
    .unwrap();
    assert!(
        (duration - expected).abs() <= 1.0,
        "clip lasts {duration} s, expected {expected} s"
    );
    let first_frame = ffprobe(
        &[
            "-select_streams",
            "v",
            "-show_entries",
            "frame=key_frame,pts_time",
            "-read_intervals",
            "%+#1",
            "-of",
            "csv=p=0",
        ],
        &clip,
    );
    assert!(
        first_frame.starts_with("1,"),
        "starts with a keyframe at 0: {first_frame}"
    );
    let start_pts: f64 = first_frame
        .trim()
        .split(',')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        start_pts.abs() < 0.1,
        "timestamps start near 0: {start_pts}"
    );
    let decoded = run(Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&clip)
        .args(["-f", "null", "-"]));
    assert!(
        decoded.output.status.success() && decoded.stderr().trim().is_empty(),
        "plays cleanly: {}",
        decoded.stderr()
    );
    // +faststart: the index (moov) comes before the media data (mdat).
    let bytes = std::fs::read(&clip).unwrap();
    let at = |tag: &[u8]| bytes.windows(4).position(|w| w == tag).unwrap();
    assert!(at(b"moov") < at(b"mdat"), "faststart");

    // The snapshot: the car's box drawn in red where the car is, the zone in yellow.
    let snapshot = image::open(file("snapshot")).unwrap().to_rgb8();
    assert_eq!(snapshot.dimensions(), (480, 270));
    let object = &opened["objects"][0]["box_norm"];
    let (_x1, y1, x2, y2) = (
        object[0].as_f64().unwrap() * 480.0,
        object[1].as_f64().unwrap() * 270.0,
        object[2].as_f64().unwrap() * 480.0,
        object[3].as_f64().unwrap() * 270.0,
    );
    let reddish = (y1 as u32 + 10..y2 as u32 - 5)
        .filter(|&y| {
            let p = snapshot.get_pixel((x2 as u32).min(479), y);
            p[0] > 180 && p[1] < 120 && p[2] < 120
        })
        .count();
    assert!(
        reddish as f64 > 0.6 * (y2 - y1 - 15.0),
        "red box edge at x={x2}: {reddish} red pixels"
    );
    let thumb = image::open(file("thumbnail")).unwrap();
    assert_eq!(thumb.width(), 320);
}

/// `gridwatch run --no-cameras` serving the review page and API; killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(config: &Path) -> Server {
        Server::start_with(config, false, None)
    }

    /// The daemon with its web server; with `cameras` its cameras run too, and with `log`
    /// its log goes there.
    fn start_with(config: &Path, cameras: bool, log: Option<&Path>) -> Server {
        let mut command = gridwatch();
        command.arg("run");
        if !cameras {
            command.arg("--no-cameras");
        }
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        };
        let child = command
            .arg("--config")
            .arg(config)
            .env("GW_WEB_PASSWORD", "station-pass")
            .env("GRIDWATCH_LOG", "info")
            .stderr(stderr)
            .spawn()
            .unwrap();
        let text = std::fs::read_to_string(config).unwrap();
        let port = text
            .split("127.0.0.1:")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err() {
            assert!(Instant::now() < deadline, "web server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Server { child, base }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn web_table(dir: &Path) -> String {
    let token = dir.join("web.token");
    std::fs::write(&token, "test-token-0123456789\n").unwrap();
    format!(
        "[web]\nlisten = \"127.0.0.1:{}\"\ntoken_file = \"{}\"\npassword_env = \"GW_WEB_PASSWORD\"\n",
        broker::free_port(),
        token.display()
    )
}

use gridwatch_e2e::broker;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

struct Reply {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

fn get(url: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Reply {
    let mut request = agent().get(url);
    if let Some(t) = token {
        request = request.header("Authorization", &format!("Bearer {t}"));
    }
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let mut response = request.call().unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .unwrap(),
    }
}

/// Sends a JSON `body` with the token, if any.
fn with_body(
    request: ureq::RequestBuilder<ureq::typestate::WithBody>,
    token: Option<&str>,
    body: String,
) -> Reply {
    let mut request = request.header("Content-Type", "application/json");
    if let Some(t) = token {
        request = request.header("Authorization", &format!("Bearer {t}"));
    }
    let mut response = request.send(body).unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.body_mut().read_to_vec().unwrap(),
    }
}

fn post(url: &str, token: Option<&str>, body: &Value) -> Reply {
    with_body(agent().post(url), token, body.to_string())
}

const TOKEN: &str = "test-token-0123456789";

#[test]
fn the_api_needs_a_token_filters_serves_ranges_and_takes_reviews() {
    let dir = tempfile::tempdir().unwrap();
    let web = web_table(dir.path());
    let config = scenario::config_whole_picture_in(dir.path(), "charging_night", &web);
    replay_store(&config, "charging_night", dir.path(), None);
    let server = Server::start(&config);
    let base = &server.base;

    // Health needs no token; everything else does.
    assert_eq!(
        get(&format!("{base}/healthz"), None, &[]).json()["status"],
        "ok"
    );
    assert_eq!(get(&format!("{base}/api/incidents"), None, &[]).status, 401);
    assert_eq!(
        get(&format!("{base}/api/incidents"), Some("wrong"), &[]).status,
        401
    );
    assert_eq!(get(&format!("{base}/metrics"), None, &[]).status, 401);
    assert!(
        get(&format!("{base}/"), None, &[])
            .body
            .starts_with(b"<!doctype html>")
    );

    let all = get(&format!("{base}/api/incidents"), Some(TOKEN), &[]).json();
    assert_eq!(all["total"], 2, "{all}");
    let parking = get(
        &format!("{base}/api/incidents?kind=illegal_parking"),
        Some(TOKEN),
        &[],
    )
    .json();
    assert_eq!(parking["total"], 1);
    let id = parking["items"][0]["incident_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(parking["items"][0]["zone"]["id"], "fire-lane");
    assert_eq!(
        get(
            &format!("{base}/api/incidents?zone=porch"),
            Some(TOKEN),
            &[]
        )
        .json()["total"],
        1
    );
    assert_eq!(
        get(
            &format!("{base}/api/incidents?camera=nope"),
            Some(TOKEN),
            &[]
        )
        .json()["total"],
        0
    );
    assert_eq!(
        get(
            &format!("{base}/api/incidents?state=open&review=pending"),
            Some(TOKEN),
            &[]
        )
        .json()["total"],
        2
    );
    assert_eq!(
        get(
            &format!("{base}/api/incidents?from=2026-11-24T23:02:30%2B08:00"),
            Some(TOKEN),
            &[]
        )
        .json()["total"],
        1
    );
    assert_eq!(
        get(
            &format!("{base}/api/incidents?to=2026-11-24T23:02:30%2B08:00"),
            Some(TOKEN),
            &[]
        )
        .json()["total"],
        1
    );
    let page = get(
        &format!("{base}/api/incidents?limit=1&offset=1"),
        Some(TOKEN),
        &[],
    )
    .json();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        get(
            &format!("{base}/api/incidents?review=maybe"),
            Some(TOKEN),
            &[]
        )
        .status,
        400
    );
    assert_eq!(
        get(
            &format!("{base}/api/incidents?from=yesterday"),
            Some(TOKEN),
            &[]
        )
        .status,
        400
    );

    let detail = get(&format!("{base}/api/incidents/{id}"), Some(TOKEN), &[]).json();
    assert_eq!(detail["incident"]["kind"], "illegal_parking");
    assert!(
        detail["events"].as_array().unwrap().len() >= 3,
        "opened + evidence updates"
    );
    assert_eq!(
        get(
            &format!("{base}/api/incidents/01a20b48-0000-7000-8000-000000000000"),
            Some(TOKEN),
            &[]
        )
        .status,
        404
    );

    // Files: Range for seeking, right types, and nothing outside the evidence directory.
    let whole = get(
        &format!("{base}/api/incidents/{id}/clip.mp4"),
        Some(TOKEN),
        &[],
    );
    assert_eq!(whole.status, 200);
    assert_eq!(whole.headers["content-type"], "video/mp4");
    let part = get(
        &format!("{base}/api/incidents/{id}/clip.mp4"),
        Some(TOKEN),
        &[("Range", "bytes=100-199")],
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.body, whole.body[100..200]);
    assert!(
        part.headers["content-range"]
            .to_str()
            .unwrap()
            .starts_with("bytes 100-199/")
    );
    assert_eq!(
        get(
            &format!("{base}/api/incidents/{id}/snapshot.jpg"),
            Some(TOKEN),
            &[]
        )
        .headers["content-type"],
        "image/jpeg"
    );
    for attack in [
        format!("{base}/api/incidents/..%2F..%2F..%2Fetc%2Fpasswd/clip.mp4"),
        format!("{base}/api/incidents/{id}/..%2F..%2Fgridwatch.db"),
        format!("{base}/api/incidents/{id}/../../gridwatch.db"),
        format!("{base}/api/incidents/%2e%2e/clip.mp4"),
        format!("{base}/api/incidents/{id}/passwd"),
    ] {
        let r = get(&attack, Some(TOKEN), &[]);
        assert!(matches!(r.status, 400 | 404), "{attack}: {}", r.status);
        assert!(
            !String::from_utf8_lossy(&r.body).contains("root:"),
            "{attack}"
        );
    }

    // A review through the API: stored, a `reviewed` event, and the dismissal remembered.
    assert_eq!(
        post(
            &format!("{base}/api/incidents/{id}/review"),
            None,
            &serde_json::json!({"verdict": "dismissed", "reviewer": "x"})
        )
        .status,
        401
    );
    assert_eq!(
        post(
            &format!("{base}/api/incidents/{id}/review"),
            Some(TOKEN),
            &serde_json::json!({"verdict": "maybe", "reviewer": "x"})
        )
        .status,
        422
    );
    let reviewed = post(
        &format!("{base}/api/incidents/{id}/review"),
        Some(TOKEN),
        &serde_json::json!({"verdict": "dismissed", "reviewer": "王网格员", "note": "有停车证"}),
    );
    assert_eq!(
        reviewed.status,
        200,
        "{}",
        String::from_utf8_lossy(&reviewed.body)
    );
    assert_eq!(reviewed.json()["state"], "reviewed");
    assert!(schema_errors(&reviewed.json()).is_empty());
    assert_eq!(
        get(
            &format!("{base}/api/incidents?review=dismissed"),
            Some(TOKEN),
            &[]
        )
        .json()["total"],
        1
    );
    let suppressions = get(&format!("{base}/api/suppressions"), Some(TOKEN), &[]).json();
    assert_eq!(suppressions["items"][0]["incident_id"], id.as_str());

    // Login sets a cookie that works like the token.
    let login = post(
        &format!("{base}/api/login"),
        None,
        &serde_json::json!({"password": "station-pass"}),
    );
    assert_eq!(login.status, 200);
    let cookie = login.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        get(
            &format!("{base}/api/incidents"),
            None,
            &[("Cookie", &cookie)]
        )
        .status,
        200
    );
    assert_eq!(
        post(
            &format!("{base}/api/login"),
            None,
            &serde_json::json!({"password": "guess"})
        )
        .status,
        401
    );

    let metrics =
        String::from_utf8(get(&format!("{base}/metrics"), Some(TOKEN), &[]).body).unwrap();
    assert!(
        metrics.contains("gridwatch_incidents_total{kind=\"illegal_parking\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("gridwatch_evidence_bytes "));
    assert!(metrics.contains("gridwatch_inference_latency_seconds_bucket{le=\"+Inf\"}"));
}

#[test]
fn a_dismissed_car_is_not_reported_again() {
    let dir = tempfile::tempdir().unwrap();
    let web = web_table(dir.path());
    let config = scenario::config_whole_picture_in(dir.path(), "charging_night", &web);
    replay_store(&config, "charging_night", dir.path(), None);
    let id = {
        let server = Server::start(&config);
        let parking = get(
            &format!("{}/api/incidents?kind=illegal_parking", server.base),
            Some(TOKEN),
            &[],
        )
        .json();
        let id = parking["items"][0]["incident_id"]
            .as_str()
            .unwrap()
            .to_string();
        let r = post(
            &format!("{}/api/incidents/{id}/review", server.base),
            Some(TOKEN),
            &serde_json::json!({"verdict": "dismissed", "reviewer": "王网格员", "note": "业主车辆"}),
        );
        assert_eq!(r.status, 200);
        id
    };
    // The next night, the same truck at the same place: suppressed. The bicycle is not.
    let r = replay_store(
        &config,
        "charging_night",
        dir.path(),
        Some("2026-11-25T23:00:00+08:00"),
    );
    let out = read_jsonl(&dir.path().join("out.jsonl"));
    let kinds: Vec<&str> = out
        .iter()
        .filter(|r| r["type"] == "incident" && r["state"] == "opened")
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["fly_wire_charging"], "{}", r.stderr());
    let server = Server::start(&config);
    let s = get(
        &format!("{}/api/suppressions", server.base),
        Some(TOKEN),
        &[],
    )
    .json();
    assert_eq!(s["items"][0]["incident_id"], id.as_str());
    assert_eq!(
        s["items"][0]["hits"], 1,
        "the suppression is visible with its hit"
    );
}

#[test]
fn retention_keeps_evidence_within_a_tiny_quota_and_incidents_stay() {
    let dir = tempfile::tempdir().unwrap();
    let config = scenario::config_whole_picture_in(
        dir.path(),
        "charging_night",
        "[evidence]\nquota_bytes = 60000\n",
    );
    replay_store(&config, "charging_night", dir.path(), None);
    let db = db(dir.path());
    let live: i64 = db
        .query_row(
            "SELECT COALESCE(SUM(bytes), 0) FROM evidence WHERE deleted_at_us IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let deleted: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM evidence WHERE deleted_at_us IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(live <= 60_000, "live evidence {live} bytes over the quota");
    assert!(deleted >= 2, "the clips had to go: {deleted}");
    let mut stmt = db
        .prepare("SELECT path FROM evidence WHERE deleted_at_us IS NOT NULL")
        .unwrap();
    for path in stmt.query_map([], |r| r.get::<_, String>(0)).unwrap() {
        assert!(
            !dir.path().join("data").join(path.unwrap()).exists(),
            "deleted file still on disk"
        );
    }
    let incidents: i64 = db
        .query_row("SELECT COUNT(*) FROM incidents", [], |r| r.get(0))
        .unwrap();
    assert_eq!(incidents, 2, "retention removes files, never incidents");
}

#[test]
fn a_full_disk_never_fails_an_incident() {
    // Evidence cannot be written (the evidence directory is taken by a file, as a full or
    // read-only filesystem would refuse it): the incident is still stored and its events
    // say why there is no evidence.
    let dir = tempfile::tempdir().unwrap();
    let config = scenario::config_in(dir.path(), "parking_positive", "");
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/evidence"), b"not a directory").unwrap();
    let r = replay_store(&config, "parking_positive", dir.path(), None);
    assert!(r.stderr().contains("evidence not stored"), "{}", r.stderr());
    let events = events(dir.path());
    assert!(events.iter().any(|e| e["state"] == "opened"));
    assert!(
        events.iter().any(|e| e["state"] == "closed"),
        "the incident ran its course"
    );
    let noted = events
        .iter()
        .filter_map(|e| e["evidence"]["error"].as_str())
        .next()
        .expect("an evidence error");
    assert!(noted.contains("cannot create"), "{noted}");
}

#[test]
fn the_review_page_works_in_headless_chromium() {
    let broker = Broker::start(BrokerOptions::default());
    let sub = Subscriber::start(broker.port, "gridwatch/v1/scenario/+/incident", None);
    let dir = tempfile::tempdir().unwrap();
    let mqtt = format!(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nbox_id = \"box\"\n",
        broker.port
    );
    let web = web_table(dir.path());
    let config = scenario::config_in(dir.path(), "parking_positive", &format!("{mqtt}\n{web}"));
    replay_store(&config, "parking_positive", dir.path(), None);
    let server = Server::start(&config);

    let artifacts = repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("review-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let server_url = format!("{}/", server.base);
    let shot = screenshot.to_string_lossy();
    let video = browser_script("review.mjs", &[&server_url, "station-pass", &shot]);
    assert!(
        video["readyState"].as_u64().unwrap() >= 2 && video["currentTime"].as_f64().unwrap() > 0.0,
        "{video}"
    );
    let shot = image::open(&screenshot).expect("a screenshot was taken");
    assert!(shot.width() >= 1000);

    // The 误报 click went to the store and out over MQTT as a `reviewed` event.
    sub.wait_for(Duration::from_secs(20), "the reviewed event", |m| {
        m.iter().any(|m| m.json()["state"] == "reviewed")
    });
    let reviewed = sub
        .messages
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.json())
        .find(|e| e["state"] == "reviewed")
        .unwrap();
    assert_eq!(reviewed["review"]["verdict"], "dismissed");
    assert_eq!(reviewed["review"]["reviewer"], "王网格员");
    assert!(schema_errors(&reviewed).is_empty());
}

/// One HTTP/1.1 request sent from the loopback address `source` (127.0.0.2 is another
/// client to the server on 127.0.0.1, as a second station PC would be): (status, the
/// response's head, body).
fn request_from(
    source: [u8; 4],
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use std::io::{Read as _, Write as _};
    use std::os::fd::FromRawFd as _;
    // SAFETY: a plain socket, bound and connected with valid sockaddr_in values; the fd is
    // handed to TcpStream, which owns and closes it.
    let mut stream = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket");
        let address = |ip: [u8; 4], port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(ip),
            },
            sin_zero: [0; 8],
        };
        let size = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let local = address(source, 0);
        assert_eq!(
            libc::bind(fd, (&raw const local).cast(), size),
            0,
            "bind {source:?}"
        );
        let remote = address([127, 0, 0, 1], port);
        assert_eq!(
            libc::connect(fd, (&raw const remote).cast(), size),
            0,
            "connect"
        );
        std::net::TcpStream::from_raw_fd(fd)
    };
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// The session cookie a response sets (`name=value`).
fn session_cookie(head: &str) -> Option<String> {
    head.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().split(';').next().unwrap_or("").to_string())
}

/// Found by probing: 100 wrong passwords in 1.3 s went unslowed; the session cookie was the
/// API token itself; logout left the cookie working.
#[test]
fn wrong_passwords_are_braked_per_address_and_sessions_end_at_logout() {
    let dir = tempfile::tempdir().unwrap();
    let web = web_table(dir.path());
    let config = scenario::config_in(dir.path(), "camera_offline", &web);
    let server = Server::start(&config);
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    let login = |source: [u8; 4], password: &str| {
        request_from(
            source,
            port,
            "POST",
            "/api/login",
            &[],
            &serde_json::json!({ "password": password }).to_string(),
        )
    };
    let guesser = [127, 0, 0, 1];
    let mut statuses = Vec::new();
    for i in 0..50 {
        statuses.push(login(guesser, &format!("guess-{i}")).0);
    }
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        (5..=8).contains(&unauthorized),
        "a few guesses are looked at, then the address waits: {statuses:?}"
    );
    assert_eq!(unauthorized + throttled, 50, "{statuses:?}");
    // While it waits, even the right password from that address is not looked at...
    let (status, head, _) = login(guesser, "station-pass");
    assert_eq!(status, 429);
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    // ...but staff at another PC log in at once.
    let (status, head, body) = login([127, 0, 0, 2], "station-pass");
    assert_eq!(status, 200, "{head}\n{body}");
    let cookie = session_cookie(&head).expect("a session cookie");
    assert!(
        !cookie.contains("test-token-0123456789"),
        "the cookie is a session id, not the API token: {cookie}"
    );
    let list = |cookie: &str| {
        request_from(
            [127, 0, 0, 2],
            port,
            "GET",
            "/api/incidents",
            &[("Cookie", cookie)],
            "",
        )
        .0
    };
    assert_eq!(list(&cookie), 200);
    assert_eq!(
        list("gridwatch_session=test-token-0123456789"),
        401,
        "the token is no cookie"
    );
    let (status, _, _) = request_from(
        [127, 0, 0, 2],
        port,
        "POST",
        "/api/logout",
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(list(&cookie), 401, "logout ends the session on the server");

    let metrics =
        String::from_utf8(get(&format!("{}/metrics", server.base), Some(TOKEN), &[]).body).unwrap();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert_eq!(value("gridwatch_login_failures_total"), unauthorized as u64);
    assert_eq!(
        value("gridwatch_logins_throttled_total"),
        throttled as u64 + 1
    );
}

/// A small real filesystem at `dir/data`, or `None` (with the reason printed) where this
/// machine can mount neither a tmpfs nor a loop image.
fn small_data_fs(dir: &Path, mib: u32) -> Option<SmallFs> {
    match SmallFs::mount(&dir.join("data"), mib) {
        Ok(fs) => {
            eprintln!("data directory on a {mib} MiB {}", fs.kind);
            Some(fs)
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// The scenarios the probe replayed into one box: six incidents, with evidence.
const SIX_INCIDENTS: [&str; 5] = [
    "charging_night",
    "crowding",
    "parking_positive",
    "charging_noon",
    "camera_offline",
];

/// Replays `SIX_INCIDENTS` into the store on `data`, with `storage` keys and `evidence`
/// settings; returns (incident id, its last state) of every incident the replays reported.
fn replay_into(dir: &Path, data: &Path, storage: &str, evidence: &str) -> Vec<(String, String)> {
    let mut reported = Vec::new();
    for name in SIX_INCIDENTS {
        let scenario_dir = dir.join(name);
        std::fs::create_dir_all(&scenario_dir).unwrap();
        let config = scenario::config_whole_picture_in(&scenario_dir, name, evidence);
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "data_dir = \"data\"\n",
            &format!("data_dir = \"{}\"\n{storage}\n", data.display()),
        );
        std::fs::write(&config, text).unwrap();
        let r = replay_store(&config, name, &scenario_dir, None);
        assert!(!r.stderr().contains("panicked"), "{}", r.stderr());
        let mut last: Vec<(String, String)> = Vec::new();
        for line in read_jsonl(&scenario_dir.join("out.jsonl")) {
            if line["type"] != "incident" {
                continue;
            }
            let id = line["incident_id"].as_str().unwrap().to_string();
            let state = line["state"].as_str().unwrap().to_string();
            match last.iter_mut().find(|(i, _)| *i == id) {
                Some(entry) => entry.1 = state,
                None => last.push((id, state)),
            }
        }
        reported.extend(last);
    }
    reported
}

/// Nothing lost: every reported incident is stored with its last state, and has either
/// evidence files that exist as recorded or an evidence error; no file on disk is unknown
/// to the store, half-written or empty.
fn assert_nothing_lost(data: &Path, reported: &[(String, String)]) {
    let db = rusqlite::Connection::open(data.join("gridwatch.db")).unwrap();
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    assert_eq!(reported.len(), 6, "the probe's six incidents: {reported:?}");
    for (id, state) in reported {
        let last: Option<String> = db
            .query_row(
                "SELECT last_event FROM incidents WHERE incident_id = ?1",
                [id],
                |r| r.get(0),
            )
            .ok();
        let last: Value =
            serde_json::from_str(&last.unwrap_or_else(|| panic!("incident {id} was lost")))
                .unwrap();
        let stored_state: String = db
            .query_row(
                "SELECT state FROM incidents WHERE incident_id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap();
        if state == "closed" {
            assert_eq!(stored_state, "closed", "incident {id} closed in the replay");
        }
        let files = last["evidence"]["files"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let error = last["evidence"]["error"].as_str();
        assert!(
            !files.is_empty() || error.is_some(),
            "incident {id} has neither evidence nor an evidence error: {last}"
        );
        if let Some(error) = error {
            assert!(!error.contains('\n'), "{error}");
        }
    }
    let live: std::collections::HashSet<std::path::PathBuf> = {
        let mut stmt = db
            .prepare("SELECT path, bytes FROM evidence WHERE deleted_at_us IS NULL")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .unwrap()
            .map(|row| {
                let (path, bytes) = row.unwrap();
                let path = data.join(path);
                assert_eq!(
                    std::fs::metadata(&path).map(|m| m.len()).ok(),
                    Some(bytes as u64),
                    "a live evidence row's file: {}",
                    path.display()
                );
                path
            })
            .collect()
    };
    let mut stack = vec![data.join("evidence")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            assert!(
                live.contains(&path),
                "a file no row knows: {}",
                path.display()
            );
            assert!(
                entry.metadata().unwrap().len() > 0,
                "an empty file: {}",
                path.display()
            );
        }
    }
}

/// Found by probing: with the data directory on an 8 MiB filesystem, evidence filled it and
/// the database could no longer write: 2 of 6 incidents lost, 2 stuck `opened`, no
/// `evidence.error`, partial and empty files left with no rows.
#[test]
fn evidence_on_an_8_mib_filesystem_never_starves_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = small_data_fs(dir.path(), 8) else {
        return;
    };
    let reported = replay_into(dir.path(), &fs.path, "reserve_bytes = 2097152", "");
    assert_nothing_lost(&fs.path, &reported);
    let db = rusqlite::Connection::open(fs.path.join("gridwatch.db")).unwrap();
    let errors: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM incidents WHERE json_extract(last_event, '$.evidence.error') LIKE '%not enough free space%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(errors >= 1, "some evidence did not fit, and says so");
}

/// Found by probing: another program filling the disk (a 3 MiB filler, `quota_percent =
/// 100`) lost 4 of 6 incidents: retention looked only at its own quota, never at free space.
#[test]
fn another_program_filling_the_disk_costs_evidence_not_incidents() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = small_data_fs(dir.path(), 8) else {
        return;
    };
    let filler = fs.path.join("nvr-recording.bin");
    std::fs::write(&filler, vec![0u8; 3 << 20]).unwrap();
    let reported = replay_into(
        dir.path(),
        &fs.path,
        "reserve_bytes = 2097152",
        "[evidence]\nquota_percent = 100.0\n",
    );
    assert_nothing_lost(&fs.path, &reported);
    assert!(filler.exists(), "other programs' files are not touched");
}

fn http_status(url: &str) -> u16 {
    agent().get(url).call().map_or(0, |r| r.status().as_u16())
}

/// Found by probing: when the database itself could not write (`database or disk is
/// full`), incidents were dropped with an error line each. Now they wait in memory, in
/// order, the episode is logged once and shown by /healthz, /metrics and the heartbeat, and
/// every event is stored and delivered once the disk has room again.
#[test]
fn when_the_database_cannot_write_events_wait_in_memory_and_none_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = small_data_fs(dir.path(), 8) else {
        return;
    };
    let broker = Broker::start(BrokerOptions::default());
    let sub = Subscriber::start(broker.port, "gridwatch/v1/full/#", None);
    let porch = gridwatch_e2e::rtsp::porch_clip();
    let text = format!(
        "[site]\nid = \"full\"\ngrid_code = \"440305001001\"\n\n[storage]\ndata_dir = \"{data}\"\nreserve_bytes = 0\n\n[incidents]\nupdate_every = \"2s\"\n\n[evidence]\nenabled = false\n\n[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nheartbeat_every = \"1s\"\nreconnect_min = \"200ms\"\nreconnect_max = \"1s\"\n\n{web}\n[[cameras]]\nid = \"porch\"\nurl = \"{url}\"\ndetect_fps = 2\n\n[[cameras.zones]]\nid = \"porch\"\npolygon = [[0.2, 0.55], [0.85, 0.55], [0.85, 0.95], [0.2, 0.95]]\n\n[cameras.zones.fly_wire_charging]\ndwell = \"3s\"\n",
        data = fs.path.display(),
        port = broker.port,
        web = web_table(dir.path()),
        url = porch.display(),
    );
    let config = dir.path().join("config.toml");
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("daemon.log");
    let server = Server::start_with(&config, true, Some(&log));
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let db_path = fs.path.join("gridwatch.db");
    let stored = || -> Vec<(String, u32, String)> {
        let Ok(db) = rusqlite::Connection::open(&db_path) else {
            return Vec::new();
        };
        let Ok(mut stmt) =
            db.prepare("SELECT incident_id, seq, event_id FROM events ORDER BY incident_id, seq")
        else {
            return Vec::new();
        };
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map(|rows| rows.flatten().collect())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while stored().is_empty() {
        assert!(Instant::now() < deadline, "no incident:\n{}", log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    let health = format!("{}/healthz", server.base);
    assert_eq!(http_status(&health), 200);

    // Another program takes every last byte.
    let filler = fs.fill("filler.bin");
    assert_eq!(fs.free(), 0);
    let before = stored().len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_status(&health) != 503 {
        assert!(Instant::now() < deadline, "never degraded:\n{}", log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    // A few more updates come and wait too.
    std::thread::sleep(Duration::from_secs(5));
    let report: Value = serde_json::from_slice(
        &agent()
            .get(&health)
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(report["status"], "degraded", "{report}");
    assert!(
        report["store"]["held_events"].as_u64().unwrap() >= 2,
        "{report}"
    );
    assert!(
        report["store"]["error"].as_str().unwrap().contains("full"),
        "{report}"
    );
    let metrics =
        String::from_utf8(get(&format!("{}/metrics", server.base), Some(TOKEN), &[]).body).unwrap();
    assert!(metrics.contains("gridwatch_store_ok 0"), "{metrics}");
    // The porch zone is one detection region of the 768x576 picture, counted per inference.
    let region_inferences = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "gridwatch_region_inferences_total{camera=\"porch\",region=\"r0\",stream=\"main\",pixels=\"",
            )
        })
        .and_then(|rest| rest.split_once("\"} "))
        .unwrap_or_else(|| panic!("region counter in {metrics}"));
    assert!(region_inferences.1.parse::<u64>().unwrap() > 0, "{metrics}");
    assert_eq!(stored().len(), before, "nothing could be written meanwhile");
    sub.wait_for(Duration::from_secs(10), "a heartbeat saying so", |m| {
        m.iter()
            .any(|m| m.topic.ends_with("/heartbeat") && m.json()["store"]["ok"] == false)
    });
    sub.wait_for(Duration::from_secs(10), "the status saying so", |m| {
        m.iter()
            .any(|m| m.topic.ends_with("/status") && m.json()["store"]["ok"] == false)
    });

    // Room again: everything held is stored, in order, and delivered.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_status(&health) != 200 {
        assert!(
            Instant::now() < deadline,
            "never recovered:\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let events = stored();
    assert!(
        events.len() >= before + 2,
        "the held events were stored: {events:?}"
    );
    let mut expected_seq = std::collections::HashMap::new();
    for (incident, seq, _) in &events {
        let next = expected_seq.entry(incident.clone()).or_insert(0u32);
        assert_eq!(*seq, *next, "no gap in {incident}'s events: {events:?}");
        *next += 1;
    }
    let text = log_text();
    assert_eq!(
        text.matches("cannot store incident events").count(),
        1,
        "logged once per episode:\n{text}"
    );
    assert!(text.contains("takes writes again"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    let want: std::collections::BTreeSet<String> =
        events.iter().map(|(_, _, id)| id.clone()).collect();
    sub.wait_for(
        Duration::from_secs(20),
        "every stored event delivered",
        |m| {
            let got: std::collections::BTreeSet<String> = m
                .iter()
                .filter(|m| m.topic.ends_with("/incident"))
                .map(|m| {
                    m.json()["event_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect();
            want.is_subset(&got)
        },
    );
}

#[test]
fn a_reviewer_account_reviews_under_its_name_and_is_refused_cameras() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("reviewer.password"), "reviewer-pass\n").unwrap();
    std::fs::write(
        dir.path().join("reviewer.token"),
        "reviewer-token-0123456789\n",
    )
    .unwrap();
    let web = format!(
        "{}\n[[web.reviewers]]\nname = \"王芳\"\npassword_file = \"{}\"\ntoken_file = \"{}\"\n",
        web_table(dir.path()),
        dir.path().join("reviewer.password").display(),
        dir.path().join("reviewer.token").display()
    );
    let config = scenario::config_whole_picture_in(dir.path(), "charging_night", &web);
    replay_store(&config, "charging_night", dir.path(), None);
    let server = Server::start(&config);
    let reviewer = Some("reviewer-token-0123456789");
    let account = get(&format!("{}/api/account", server.base), reviewer, &[]).json();
    assert_eq!(
        account,
        serde_json::json!({"name": "王芳", "role": "reviewer"})
    );
    let list = get(&format!("{}/api/incidents", server.base), reviewer, &[]);
    assert_eq!(list.status, 200);
    for path in [
        "/api/cameras",
        "/api/cameras/porch",
        "/api/cameras/porch/latest.jpg",
    ] {
        let r = get(&format!("{}{path}", server.base), reviewer, &[]);
        assert_eq!(r.status, 403, "{path}");
        assert!(
            r.json()["error"].as_str().unwrap().contains("王芳"),
            "{path}"
        );
    }
    // The installer's token opens them.
    let cameras = get(&format!("{}/api/cameras", server.base), Some(TOKEN), &[]);
    assert_eq!(cameras.status, 200);
    // A review by the reviewer's account is recorded under its name, whatever the body says.
    let id = list.json()["items"][0]["incident_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post(
        &format!("{}/api/incidents/{id}/review", server.base),
        reviewer,
        &serde_json::json!({"verdict": "confirmed", "reviewer": "someone else"}),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["review"]["reviewer"], "王芳");
    // Its password logs the page in as the reviewer: a session that is refused cameras too.
    let login = agent()
        .post(format!("{}/api/login", server.base))
        .header("Content-Type", "application/json")
        .send(r#"{"password": "reviewer-pass"}"#)
        .unwrap();
    assert_eq!(login.status().as_u16(), 200);
    let cookie = login
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let r = get(
        &format!("{}/api/cameras", server.base),
        None,
        &[("Cookie", &cookie)],
    );
    assert_eq!(r.status, 403);
    let r = get(
        &format!("{}/api/account", server.base),
        None,
        &[("Cookie", &cookie)],
    );
    assert_eq!(r.json()["role"], "reviewer");
    drop(server);

    // A reviewer whose password is the installer's cannot be told apart: refused at start.
    std::fs::write(dir.path().join("reviewer.password"), "station-pass\n").unwrap();
    let refused = run(gridwatch()
        .args(["run", "--no-cameras", "--config"])
        .arg(&config)
        .env("GW_WEB_PASSWORD", "station-pass"));
    assert_ne!(refused.code(), 0);
    assert!(
        refused.error_line().contains("web.reviewers `王芳`"),
        "{}",
        refused.stderr()
    );
}

fn put(url: &str, token: Option<&str>, body: &str) -> Reply {
    with_body(agent().put(url), token, body.to_string())
}

/// Waits up to 90 s for an illegal-parking incident in `zone` on the server's API.
fn wait_for_parking_incident(server: &Server, zone: &str) {
    eventually(Duration::from_secs(90), "an incident in the zone", || {
        let url = format!("{}/api/incidents?kind=illegal_parking", server.base);
        let list = get(&url, Some(TOKEN), &[]).json();
        list["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i["zone"]["id"] == zone))
    });
}

/// Polls `probe` every 300 ms until it holds, for at most `limit`.
fn eventually(limit: Duration, what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !probe() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn zones_saved_through_the_api_keep_the_file_s_comments_and_raise_incidents_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clip = scenario::clip(&scenario::load("parking_positive"));
    let text = format!(
        "# 锦绣花园 — installed 2026-12-01, do not remove this line\n[site]\nid = \"edit\"\ngrid_code = \"440305001001\"\n\n[storage]\ndata_dir = \"data\"\n\n[evidence]\nenabled = false\n\n{}\n[[cameras]]\nid = \"lot\"\nname = \"地面停车场\"\n# the sample parking lot, looped\nurl = \"{}\"\ndetect_fps = 2\n",
        web_table(dir.path()),
        clip.display()
    );
    let config = dir.path().join("config.toml");
    std::fs::write(&config, &text).unwrap();
    let log = dir.path().join("daemon.log");
    let server = Server::start_with(&config, true, Some(&log));
    let camera = || {
        get(
            &format!("{}/api/cameras/lot", server.base),
            Some(TOKEN),
            &[],
        )
        .json()
    };
    eventually(Duration::from_secs(30), "the camera online", || {
        camera()["state"] == "online"
    });
    let zones_url = format!("{}/api/cameras/lot/zones", server.base);

    // Refused saves say why and leave the file as it was.
    let two_points = r#"{"zones": [{"id": "aisle", "polygon": [[0.0, 0.2], [0.4, 0.2]]}]}"#;
    let r = put(&zones_url, Some(TOKEN), two_points);
    assert_eq!(r.status, 422, "{:?}", r.json());
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("zones[0].polygon"),
        "{:?}",
        r.json()
    );
    let dragons = r#"{"zones": [{"id": "aisle", "polygon": [[0, 0], [1, 0], [1, 1]], "objects": ["dragons"]}]}"#;
    let r = put(&zones_url, Some(TOKEN), dragons);
    assert_eq!(r.status, 422, "{:?}", r.json());
    assert!(r.json()["error"].as_str().unwrap().contains("dragons"));
    for (body, status) in [
        (
            r#"{"zones": [{"id": "a\u0007", "polygon": [[0, 0], [1, 0], [1, 1]]}]}"#,
            400,
        ),
        (
            r#"{"zones": [{"id": "a", "polygon": [[0, 0], [1, 0], [1, 1]], "url": "x"}]}"#,
            422,
        ),
        (r#"{"zonez": []}"#, 400),
        ("not json", 400),
    ] {
        assert_eq!(put(&zones_url, Some(TOKEN), body).status, status, "{body}");
    }
    let r = put(
        &format!("{}/api/cameras/nope/zones", server.base),
        Some(TOKEN),
        r#"{"zones": []}"#,
    );
    assert_eq!(r.status, 404);
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        text,
        "refused saves change nothing"
    );

    // A parking zone over the aisle where the sample car stands, with a short dwell.
    let zone = r#"{"zones": [{"id": "aisle", "name": "消防通道", "polygon": [[0.0, 0.2], [0.4, 0.2], [0.4, 0.55], [0.0, 0.55]], "objects": ["vehicle"], "min_object_height": 0.2, "illegal_parking": {"dwell": "5s", "grace": "5s"}}]}"#;
    let r = put(&zones_url, Some(TOKEN), zone);
    assert_eq!(r.status, 200, "{:?}", r.json());
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(saved.starts_with("# 锦绣花园 — installed 2026-12-01, do not remove this line\n"));
    assert!(
        saved.contains("# the sample parking lot, looped\n") && saved.contains("id = \"aisle\""),
        "{saved}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("config.toml.bak")).unwrap(),
        text
    );
    run_ok(gridwatch().arg("check").arg("--config").arg(&config));
    // Applied by the reload path: the running camera has the zone, and the car standing
    // in it becomes an incident.
    eventually(Duration::from_secs(30), "the zone applied", || {
        camera()["zones"][0]["id"] == "aisle"
    });
    wait_for_parking_incident(&server, "aisle");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("zones saved from the console"), "{logged}");
    // The same process all along: applied by the reload, not a restart.
    assert!(logged.contains("config reloaded"), "{logged}");
    assert_eq!(logged.matches("gridwatch running").count(), 1, "{logged}");

    // A second zone over the same stretch, saved ahead of the first: the first is unchanged,
    // so its incident stays open (same id, no `reconfigured` close) while the new zone
    // counts its own dwell and raises its own incident; the stream is not reopened.
    let parking_in = |zone: &str| -> Vec<Value> {
        let url = format!("{}/api/incidents?kind=illegal_parking", server.base);
        get(&url, Some(TOKEN), &[]).json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["zone"]["id"] == zone)
            .cloned()
            .collect()
    };
    let before = parking_in("aisle");
    assert_eq!(before.len(), 1, "{before:?}");
    let first = before[0]["incident_id"].as_str().unwrap().to_string();
    let opens_before = logged.matches("stream open").count();
    let aisle = &zone[r#"{"zones": ["#.len()..zone.len() - 2];
    let both = format!(
        r#"{{"zones": [{{"id": "aisle2", "polygon": [[0.0, 0.2], [0.4, 0.2], [0.4, 0.55], [0.0, 0.55]], "objects": ["vehicle"], "illegal_parking": {{"dwell": "3s"}}}}, {aisle}]}}"#
    );
    let r = put(&zones_url, Some(TOKEN), &both);
    assert_eq!(r.status, 200, "{:?}", r.json());
    wait_for_parking_incident(&server, "aisle2");
    let after = parking_in("aisle");
    assert_eq!(after.len(), 1, "one incident for one stay: {after:?}");
    assert_eq!(after[0]["incident_id"], first.as_str());
    assert_ne!(after[0]["state"], "closed", "{after:?}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("zones_applied=lot"), "{logged}");
    assert_eq!(
        logged.matches("stream open").count(),
        opens_before,
        "{logged}"
    );

    // Concurrent saves: each is whole, the file stays valid.
    let threads: Vec<_> = (0..4)
        .map(|k| {
            let url = zones_url.clone();
            std::thread::spawn(move || {
                let body = format!(
                    r#"{{"zones": [{{"id": "z{k}", "polygon": [[0, 0], [1, 0], [1, 1]]}}]}}"#
                );
                put(&url, Some(TOKEN), &body).status
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    run_ok(gridwatch().arg("check").arg("--config").arg(&config));
    let last = std::fs::read_to_string(&config).unwrap();
    assert_eq!(last.matches("[[cameras.zones]]").count(), 1, "{last}");
}

/// Runs tests/browser/`script` with `args` in headless Chromium; the JSON line it printed
/// last. Fails the test, with the script's output, when the script fails.
fn browser_script(script: &str, args: &[&str]) -> Value {
    let r = run(Command::new("node")
        .arg(repo_root().join("tests/browser").join(script))
        .args(args)
        .current_dir(repo_root().join("tests/browser")));
    assert!(
        r.output.status.success(),
        "browser script {script} {args:?} failed:\n{}\n{}",
        r.stdout(),
        r.stderr()
    );
    serde_json::from_str(r.stdout().trim().lines().last().unwrap()).unwrap()
}

/// Runs one step of tests/browser/cameras.mjs against `server`; the JSON line it printed.
fn console_step(server: &Server, password: &str, step: &str) -> Value {
    let artifacts = repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let server_url = format!("{}/", server.base);
    let artifacts = artifacts.to_string_lossy();
    browser_script("cameras.mjs", &[&server_url, password, step, &artifacts])
}

#[test]
fn an_installer_draws_a_zone_on_the_picture_in_chromium_and_it_raises_an_incident() {
    let dir = tempfile::tempdir().unwrap();
    let clip = scenario::clip(&scenario::load("parking_positive"));
    std::fs::write(dir.path().join("reviewer.password"), "reviewer-pass\n").unwrap();
    let text = format!(
        "# 锦绣花园 — installed 2026-12-01\n[site]\nid = \"console\"\ngrid_code = \"440305001001\"\n\n[storage]\ndata_dir = \"data\"\n\n[evidence]\nenabled = false\n\n{}\n[[web.reviewers]]\nname = \"王芳\"\npassword_file = \"{}\"\n\n[[cameras]]\nid = \"lot\"\nname = \"地面停车场\"\n# the sample parking lot, looped\nurl = \"{}\"\ndetect_fps = 2\n",
        web_table(dir.path()),
        dir.path().join("reviewer.password").display(),
        clip.display()
    );
    let config = dir.path().join("config.toml");
    std::fs::write(&config, &text).unwrap();
    let server = Server::start_with(&config, true, Some(&dir.path().join("daemon.log")));

    // The cameras view: online, its decoder, its picture.
    let view = console_step(&server, "station-pass", "view");
    let card = view["card"].as_str().unwrap();
    assert!(
        card.contains("在线") && card.contains("h264 (software)") && card.contains("软件"),
        "{card}"
    );
    assert_eq!(view["picture"], serde_json::json!([480, 270]), "{view}");
    assert!(image::open(repo_root().join("target/test-artifacts/cameras-view.png")).is_ok());

    // Two corners: the check's error beside the polygon, the file untouched.
    let invalid = console_step(&server, "station-pass", "invalid");
    assert!(
        invalid["polygonError"]
            .as_str()
            .unwrap()
            .contains("polygon"),
        "{invalid}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);

    // A parking zone drawn with the mouse, one corner dragged, rule and dwell set: saved into
    // the file with its comments, `check` passes, applied without a restart, an incident.
    console_step(&server, "station-pass", "valid");
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(
        saved.starts_with("# 锦绣花园 — installed 2026-12-01\n")
            && saved.contains("# the sample parking lot, looped"),
        "{saved}"
    );
    let parsed: toml::Table = toml::from_str(&saved).unwrap();
    let zone = &parsed["cameras"][0]["zones"][0];
    assert_eq!(zone["name"].as_str(), Some("消防通道"));
    assert_eq!(zone["illegal_parking"]["dwell"].as_str(), Some("5s"));
    let corners = zone["polygon"].as_array().unwrap();
    assert_eq!(corners.len(), 4);
    let dragged = corners[2].as_array().unwrap();
    assert!(
        (dragged[0].as_float().unwrap() - 0.4).abs() < 0.02
            && (dragged[1].as_float().unwrap() - 0.55).abs() < 0.02,
        "{dragged:?}"
    );
    run_ok(gridwatch().arg("check").arg("--config").arg(&config));
    wait_for_parking_incident(&server, "zone1");
    assert!(image::open(repo_root().join("target/test-artifacts/zone-editor.png")).is_ok());

    // A reviewer cannot open the editor.
    let reviewer = console_step(&server, "reviewer-pass", "reviewer");
    assert!(
        reviewer["forbidden"].as_str().unwrap().contains("审核员"),
        "{reviewer}"
    );
    assert_eq!(reviewer["editor"], false);
}

/// Yesterday in site time (+08:00, the default), as YYYY-MM-DD.
fn site_yesterday() -> String {
    let china = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    (chrono::Utc::now().with_timezone(&china).date_naive() - chrono::Days::new(1))
        .format("%Y-%m-%d")
        .to_string()
}

/// The statistics are the scenarios' own events counted: three scenarios (a crowd, a parked
/// car, a cyclist through a one-way gate each way) replayed into one store as if yesterday;
/// then the API, its CSV, the daily summary published retained at the daemon's start, and
/// the review page's chart and table in real Chromium all say what the events say.
#[test]
fn statistics_count_what_the_scenarios_raised_in_api_csv_mqtt_and_page() {
    // "Yesterday" must stay yesterday for the whole test: not started in the last minutes
    // before the site's midnight.
    let china = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let now = chrono::Utc::now().with_timezone(&china);
    let to_midnight = 86_400 - i64::from(chrono::Timelike::num_seconds_from_midnight(&now));
    if to_midnight < 300 {
        std::thread::sleep(Duration::from_secs(to_midnight as u64 + 2));
    }
    let broker = Broker::start(BrokerOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let day = site_yesterday();
    let mqtt = format!(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nbox_id = \"box-7\"\n",
        broker.port
    );
    let web = web_table(dir.path());
    let mut events = Vec::new();
    let mut crossings = Vec::new();
    let mut server_config = None;
    // The crowd is detected in one pass of its picture, whatever its scenario's plan: the
    // statistics need its incident, not its cost.
    for (name, hour, camera_keys) in [
        ("crowding", "09", scenario::WHOLE_PICTURE),
        ("parking_positive", "13", ""),
        ("line_cyclist", "17", ""),
    ] {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let config = scenario::config_with_camera_keys_in(
            &sub,
            name,
            &format!("{mqtt}\n{web}"),
            camera_keys,
        );
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "data_dir = \"data\"",
            &format!("data_dir = \"{}\"", data.display()),
        );
        std::fs::write(&config, text).unwrap();
        let start = format!("{day}T{hour}:00:00+08:00");
        replay_store(&config, name, &sub, Some(&start));
        for record in read_jsonl(&sub.join("out.jsonl")) {
            match record["type"].as_str() {
                Some("incident") => events.push(record),
                Some("crossing") => crossings.push(record),
                _ => {}
            }
        }
        server_config.get_or_insert(config);
    }
    // What the events say: incidents opened per kind, the crowd's peak, crossings each way.
    let mut opened: std::collections::BTreeMap<String, u64> = Default::default();
    for e in events.iter().filter(|e| e["state"] == "opened") {
        *opened
            .entry(e["kind"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let total: u64 = opened.values().sum();
    assert!(
        opened.contains_key("crowding")
            && opened.contains_key("illegal_parking")
            && opened.contains_key("wrong_way_entry"),
        "{opened:?}"
    );
    let peak = events
        .iter()
        .filter(|e| e["kind"] == "crowding")
        .map(|e| e["peak_count"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(peak >= 3, "the crowd counted at least min_count persons");
    let crossed = |direction: &str| {
        crossings
            .iter()
            .filter(|c| c["direction"] == direction)
            .count() as u64
    };
    assert_eq!((crossed("in"), crossed("out")), (1, 1));

    let summaries = Subscriber::start(broker.port, "gridwatch/v1/scenario/stats/daily", None);
    let server = Server::start(server_config.as_ref().unwrap());
    let api = |query: &str| {
        get(
            &format!("{}/api/stats?{query}", server.base),
            Some(TOKEN),
            &[],
        )
    };

    // The daily summary: yesterday, queued at start (the box was not running at midnight).
    summaries.wait_for(Duration::from_secs(30), "the daily summary", |m| {
        !m.is_empty()
    });
    let summary = summaries.on_topic("stats/daily")[0].json();
    assert_eq!(summary["schema"], "gridwatch.daily-summary/v1");
    let errors = summary_schema_errors(&summary);
    assert!(errors.is_empty(), "{errors:?}\n{summary}");
    // The example in docs/mqtt.md is valid too.
    let doc = std::fs::read_to_string(repo_root().join("docs/mqtt.md")).unwrap();
    let example = doc
        .split("```json")
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("gridwatch.daily-summary/v1"))
        .expect("docs/mqtt.md shows a daily summary");
    let example: Value = serde_json::from_str(example).unwrap();
    assert_eq!(summary_schema_errors(&example), Vec::<String>::new());
    let mut broken = summary.clone();
    broken["totals"]["opened"] = (-1).into();
    assert!(
        !summary_schema_errors(&broken).is_empty(),
        "the schema can fail"
    );
    assert_eq!(summary["day"], day.as_str());
    assert_eq!(summary["site"], "scenario");
    assert_eq!(summary["box_id"], "box-7");
    assert_eq!(summary["totals"]["opened"], total);
    assert_eq!(summary["totals"]["pending"], total);
    assert_eq!(summary["totals"]["peak_persons"], peak);
    assert_eq!(summary["totals"]["crossings_in"], 1);
    assert_eq!(summary["totals"]["crossings_out"], 1);
    let gate: Vec<&Value> = summary["crossings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["camera"] == "gate" && c["line"] == "side-gate")
        .collect();
    assert_eq!(gate.len(), 2, "{summary}");
    // Retained: a subscriber that comes later gets it from the broker.
    let later = Subscriber::start(broker.port, "gridwatch/v1/scenario/stats/daily", None);
    later.wait_for(Duration::from_secs(10), "the retained summary", |m| {
        !m.is_empty()
    });
    let retained = &later.on_topic("stats/daily")[0];
    assert!(retained.retained);
    assert_eq!(retained.json()["day"], day.as_str());

    // Reviews: the parked car confirmed, the crowd dismissed.
    let list = get(
        &format!("{}/api/incidents?limit=100", server.base),
        Some(TOKEN),
        &[],
    )
    .json();
    let id_of = |kind: &str| {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["kind"] == kind)
            .map(|i| i["incident_id"].as_str().unwrap().to_string())
            .unwrap()
    };
    for (kind, verdict) in [("illegal_parking", "confirmed"), ("crowding", "dismissed")] {
        let url = format!("{}/api/incidents/{}/review", server.base, id_of(kind));
        let body = serde_json::json!({ "verdict": verdict, "reviewer": "统计员" });
        assert_eq!(post(&url, Some(TOKEN), &body).status, 200);
    }

    let by_kind = api(&format!("from={day}&to={day}&group=kind"));
    assert_eq!(by_kind.status, 200);
    let by_kind = by_kind.json();
    assert_eq!(by_kind["group"], serde_json::json!(["kind"]));
    let rows = by_kind["incidents"].as_array().unwrap();
    let counted: std::collections::BTreeMap<String, u64> = rows
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_string(),
                r["opened"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counted, opened, "opened per kind, as the events say");
    let row = |kind: &str| rows.iter().find(|r| r["kind"] == kind).unwrap();
    assert_eq!(row("illegal_parking")["confirmed"], 1);
    assert_eq!(row("crowding")["dismissed"], 1);
    assert_eq!(row("crowding")["peak_persons"], peak);
    assert!(row("illegal_parking")["peak_persons"].is_null());
    // Reviewed now, opened yesterday: the time to review is at least the hours between.
    assert!(row("illegal_parking")["median_review_s"].as_f64().unwrap() > 3600.0);
    assert!(row("wrong_way_entry")["median_review_s"].is_null());
    assert_eq!(by_kind["totals"]["opened"], total);
    assert_eq!(by_kind["totals"]["pending"], total - 2);

    // By day: everything on yesterday; today has nothing.
    let by_day = api(&format!("from={day}&group=day")).json();
    assert_eq!(by_day["incidents"].as_array().unwrap().len(), 1, "{by_day}");
    assert_eq!(by_day["incidents"][0]["day"], day.as_str());
    assert_eq!(by_day["days"].as_array().unwrap().len(), 2);
    let by_line = api(&format!("from={day}&to={day}&group=camera,zone")).json();
    let lines: Vec<(String, String, String, u64)> = by_line["crossings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["line"].as_str().unwrap().into(),
                c["direction"].as_str().unwrap().into(),
                c["class"].as_str().unwrap().into(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let classes: Vec<String> = crossings
        .iter()
        .map(|c| c["label"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|(line, _, class, count)| line == "side-gate"
                && classes.contains(class)
                && *count == 1)
    );

    // CSV: parses, one row per camera, zone and kind, the same sums.
    let csv_reply = get(
        &format!(
            "{}/api/stats.csv?from={day}&to={day}&group=camera,zone,kind",
            server.base
        ),
        Some(TOKEN),
        &[],
    );
    assert_eq!(csv_reply.status, 200);
    assert!(
        csv_reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        csv_reply.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let text = String::from_utf8(csv_reply.body).unwrap();
    let mut reader = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(&header[..5], ["site", "camera", "zone", "kind", "opened"]);
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let csv_total: u64 = records.iter().map(|r| r[4].parse::<u64>().unwrap()).sum();
    assert_eq!(csv_total, total);
    let crossings_csv = get(
        &format!(
            "{}/api/stats.csv?from={day}&to={day}&group=day,zone&table=crossings",
            server.base
        ),
        Some(TOKEN),
        &[],
    );
    let text = String::from_utf8(crossings_csv.body).unwrap();
    let mut reader = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        ["site", "day", "line", "direction", "class", "count"]
    );
    assert_eq!(reader.records().count(), 2);

    // Bad requests: one clear line each, nothing computed.
    for (query, says) in [
        ("group=site", "unknown group `site`"),
        ("from=2026-13-01", "bad date"),
        ("from=2026-12-07&to=2026-12-01", "after"),
        ("from=2020-01-01&to=2026-01-01", "at most 366 days"),
        ("colour=red", "unknown field"),
    ] {
        let reply = api(query);
        assert_eq!(reply.status, 400, "{query}");
        let text = String::from_utf8_lossy(&reply.body).to_string();
        assert!(text.contains(says), "{query}: {text}");
    }
    assert_eq!(
        get(&format!("{}/api/stats", server.base), None, &[]).status,
        401
    );
    assert_eq!(
        get(
            &format!("{}/api/stats.csv?table=people", server.base),
            Some(TOKEN),
            &[]
        )
        .status,
        400
    );
    // The chart library is the box's own, served without a login like the page.
    let library = get(&format!("{}/assets/uplot.min.js", server.base), None, &[]);
    assert_eq!(library.status, 200);
    assert!(String::from_utf8_lossy(&library.body).contains("uPlot"));

    // The page: chart and table in real Chromium.
    let artifacts = repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("stats-page.png");
    let shown = browser_script(
        "stats.mjs",
        &[
            &format!("{}/", server.base),
            "station-pass",
            &day,
            &day,
            &screenshot.to_string_lossy(),
        ],
    );
    assert_eq!(shown["errors"], serde_json::json!([]), "{shown}");
    assert!(shown["canvas"]["width"].as_u64().unwrap() > 300, "{shown}");
    let legend: Vec<&str> = shown["legend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        legend.contains(&"合计") && legend.contains(&"人员聚集"),
        "{legend:?}"
    );
    assert_eq!(shown["cards"]["上报事件"], total.to_string());
    assert_eq!(shown["cards"]["聚集人数峰值"], peak.to_string());
    let table_rows = shown["rows"].as_array().unwrap();
    assert_eq!(
        table_rows.len(),
        records.len(),
        "a row per camera, zone and kind: {shown}"
    );
    assert!(
        table_rows
            .iter()
            .any(|r| r.as_array().unwrap().iter().any(|c| c == "违章停车")),
        "{shown}"
    );
    assert_eq!(shown["crossings"].as_array().unwrap().len(), 2, "{shown}");
    assert!(image::open(&screenshot).unwrap().width() >= 1000);
}
