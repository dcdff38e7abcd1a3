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
        let child = gridwatch()
            .arg("run")
            .arg("--no-cameras")
            .arg("--config")
            .arg(config)
            .env("GW_WEB_PASSWORD", "station-pass")
            .stderr(Stdio::null())
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

fn post(url: &str, token: Option<&str>, body: &Value) -> Reply {
    let mut request = agent().post(url).header("Content-Type", "application/json");
    if let Some(t) = token {
        request = request.header("Authorization", &format!("Bearer {t}"));
    }
    let mut response = request.send(body.to_string()).unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.body_mut().read_to_vec().unwrap(),
    }
}

const TOKEN: &str = "test-token-0123456789";

#[test]
fn the_api_needs_a_token_filters_serves_ranges_and_takes_reviews() {
    let dir = tempfile::tempdir().unwrap();
    let web = web_table(dir.path());
    let config = scenario::config_in(dir.path(), "charging_night", &web);
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
    let config = scenario::config_in(dir.path(), "charging_night", &web);
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
    let config = scenario::config_in(
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
    let r = run(Command::new("node")
        .arg(repo_root().join("tests/browser/review.mjs"))
        .arg(format!("{}/", server.base))
        .arg("station-pass")
        .arg(&screenshot)
        .current_dir(repo_root().join("tests/browser")));
    assert!(
        r.output.status.success(),
        "browser run failed:\n{}\n{}",
        r.stdout(),
        r.stderr()
    );
    let video: Value = serde_json::from_str(r.stdout().trim().lines().last().unwrap()).unwrap();
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
