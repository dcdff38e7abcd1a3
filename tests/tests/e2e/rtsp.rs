//! Live cameras over RTSP, against a real RTSP server (GStreamer) on loopback: detection and
//! incidents over RTSP/TCP, a camera that drops and comes back (without leaking threads or
//! file descriptors), broken cameras that do not disturb good ones, SIGTERM and SIGHUP.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gridwatch_e2e::broker::{Broker, BrokerOptions, Message, Subscriber};
use gridwatch_e2e::rtsp::{RtspServer, porch_clip, porch_hevc_clip, porch_main_clip, rtsp_clip};
use gridwatch_e2e::*;
use serde_json::Value;

const PREFIX: &str = "gridwatch/v1/live";

/// `gridwatch run` with its log in a file; killed if still running when dropped.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(config: &Path) -> Daemon {
        let log = config.with_extension("log");
        let child = gridwatch()
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("GRIDWATCH_LOG", "info")
            .stderr(std::fs::File::create(&log).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Daemon { child, log }
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status();
    }
    fn count(&self, what: &str) -> usize {
        std::fs::read_dir(format!("/proc/{}/{what}", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &Path, broker_port: Option<u16>, cameras: &str) -> PathBuf {
    let mqtt = broker_port
        .map(|p| format!("[mqtt]\nhost = \"127.0.0.1\"\nport = {p}\nbox_id = \"box\"\nheartbeat_every = \"1s\"\nreconnect_min = \"200ms\"\nreconnect_max = \"1s\"\n"))
        .unwrap_or_default();
    let text = format!(
        "[site]\nid = \"live\"\ngrid_code = \"440305001001\"\n\n[storage]\ndata_dir = \"data\"\n\n[incidents]\nupdate_every = \"5s\"\n\n[evidence]\nenabled = false\n\n{mqtt}\n{cameras}"
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A porch camera: a charging-forbidden zone around the bicycle, 15 s dwell. Offline after
/// 8 s, as opening probes 5 s of this stream (its GOP is 5 s long).
fn porch_camera(id: &str, url: &str) -> String {
    format!(
        "[[cameras]]\nid = \"{id}\"\nurl = \"{url}\"\ndetect_fps = 2\noffline_after = \"8s\"\nio_timeout = \"3s\"\n\n[[cameras.zones]]\nid = \"porch\"\npolygon = [[0.2, 0.55], [0.85, 0.55], [0.85, 0.95], [0.2, 0.95]]\n\n[cameras.zones.fly_wire_charging]\ndwell = \"15s\"\n\n"
    )
}

/// The porch camera reading `server`'s "main" and "sub" mounts, its zone's smallest objects
/// `min_object_height` of the picture high.
fn porch_camera_with_sub_stream(server: &RtspServer, min_object_height: f32) -> String {
    porch_camera("porch", &server.url("main"))
        .replacen(
            "\ndetect_fps",
            &format!("\ndetect_url = \"{}\"\ndetect_fps", server.url("sub")),
            1,
        )
        .replacen(
            "\n\n[cameras.zones.fly",
            &format!("\nmin_object_height = {min_object_height}\n\n[cameras.zones.fly"),
            1,
        )
}

fn incidents(sub: &Subscriber) -> Vec<Value> {
    sub.on_topic("/incident")
        .iter()
        .map(Message::json)
        .collect()
}

fn opened(sub: &Subscriber, camera: &str, kind: &str) -> usize {
    incidents(sub)
        .iter()
        .filter(|e| e["camera"]["id"] == camera && e["kind"] == kind && e["state"] == "opened")
        .count()
}

#[test]
fn four_cameras_two_broken_the_good_ones_detect_and_raise_incidents_over_rtsp() {
    let porch = porch_clip();
    let open = RtspServer::start(&[("porch", &porch)], None);
    let locked = RtspServer::start(&[("porch", &porch)], Some(("admin", "right-secret")));
    let broker = Broker::start(BrokerOptions::default());
    let sub = Subscriber::start(broker.port, &format!("{PREFIX}/#"), None);
    let dir = tempfile::tempdir().unwrap();
    let wrong_credentials = format!("rtsp://admin:wrong-secret@127.0.0.1:{}/porch", locked.port);
    let cameras = [
        porch_camera("good1", &open.url("porch")),
        porch_camera(
            "good2",
            &format!("rtsp://admin:right-secret@127.0.0.1:{}/porch", locked.port),
        ),
        porch_camera("nourl", &open.url("no-such-stream")),
        porch_camera("badauth", &wrong_credentials),
    ]
    .concat();
    let daemon = Daemon::start(&config(dir.path(), Some(broker.port), &cameras));

    sub.wait_for(
        Duration::from_secs(90),
        "both good cameras' incidents",
        |_| {
            opened(&sub, "good1", "fly_wire_charging") == 1
                && opened(&sub, "good2", "fly_wire_charging") == 1
        },
    );
    sub.wait_for(
        Duration::from_secs(30),
        "the broken cameras reported offline",
        |_| {
            opened(&sub, "nourl", "camera_offline") == 1
                && opened(&sub, "badauth", "camera_offline") == 1
        },
    );
    // The last five 1-second heartbeats: one beat alone reads 1.0 fps when a frame of the
    // 2 fps detect rate lands just past its second (seen when another test's cameras share
    // the 2 cores), so the rate is their mean.
    let beats: Vec<Value> = sub
        .on_topic("/heartbeat")
        .iter()
        .rev()
        .take(5)
        .map(Message::json)
        .collect();
    let fps = |id: &str| {
        let rates: Vec<f64> = beats
            .iter()
            .map(|beat| {
                beat["cameras"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["id"] == id)
                    .unwrap()["fps_out"]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        rates.iter().sum::<f64>() / rates.len() as f64
    };
    assert!(
        fps("good1") > 1.0 && fps("good2") > 1.0,
        "good cameras run at their detect rate beside the broken ones: {beats:?}"
    );
    assert_eq!(fps("nourl"), 0.0);
    assert_eq!(
        opened(&sub, "good1", "camera_offline") + opened(&sub, "good2", "camera_offline"),
        0
    );
    let log = daemon.log();
    assert!(
        log.contains("camera=badauth") && log.contains("rtsp://***@127.0.0.1"),
        "errors name the camera, URL redacted"
    );
    assert!(
        !log.contains("wrong-secret") && !log.contains("right-secret"),
        "credentials never logged"
    );
    for message in sub.on_topic("") {
        let payload = String::from_utf8_lossy(&message.payload);
        assert!(
            !payload.contains("secret"),
            "credentials never published: {} {payload}",
            message.topic
        );
    }
}

#[test]
fn a_camera_that_drops_goes_offline_and_back_five_times_without_leaks() {
    let car = rtsp_clip(&media("car-detection.mp4"), 20, &[]);
    let mut server = RtspServer::start(&[("cam", &car)], None);
    let broker = Broker::start(BrokerOptions::default());
    let sub = Subscriber::start(broker.port, &format!("{PREFIX}/#"), None);
    let dir = tempfile::tempdir().unwrap();
    let camera = format!(
        "[[cameras]]\nid = \"cam\"\nurl = \"{}\"\ndetect_fps = 2\noffline_after = \"3s\"\nio_timeout = \"2s\"\n",
        server.url("cam")
    );
    let daemon = Daemon::start(&config(dir.path(), Some(broker.port), &camera));
    let frames = |sub: &Subscriber| -> f64 {
        sub.on_topic("/heartbeat").last().map_or(0.0, |m| {
            m.json()["cameras"][0]["fps_in"].as_f64().unwrap_or(0.0)
        })
    };
    sub.wait_for(Duration::from_secs(30), "frames", |_| frames(&sub) > 5.0);
    let mut counts = Vec::new();
    for cycle in 1..=5 {
        let killed = Instant::now();
        server.kill();
        sub.wait_for(Duration::from_secs(20), "camera_offline", |_| {
            incidents(&sub)
                .iter()
                .filter(|e| e["kind"] == "camera_offline" && e["state"] == "opened")
                .count()
                == cycle
        });
        let reported = killed.elapsed();
        assert!(
            reported < Duration::from_secs(3 + 6),
            "cycle {cycle}: offline reported after {reported:?}"
        );
        server.resume();
        sub.wait_for(Duration::from_secs(40), "back online", |_| {
            incidents(&sub)
                .iter()
                .filter(|e| e["kind"] == "camera_offline" && e["state"] == "closed")
                .count()
                == cycle
        });
        sub.wait_for(Duration::from_secs(20), "detection resumed", |_| {
            frames(&sub) > 5.0
        });
        counts.push((daemon.count("task"), daemon.count("fd")));
    }
    let closed = incidents(&sub)
        .into_iter()
        .filter(|e| e["state"] == "closed")
        .collect::<Vec<_>>();
    assert!(closed.iter().all(|e| e["close_reason"] == "recovered"));
    let (threads0, fds0) = counts[0];
    let (threads, fds) = *counts.last().unwrap();
    assert!(
        threads <= threads0 + 2 && fds <= fds0 + 3,
        "no leak over 5 cycles: {counts:?}"
    );
}

#[test]
fn sigterm_exits_cleanly_and_nothing_leaves_the_outbox_unsent() {
    let porch = porch_clip();
    let server = RtspServer::start(&[("porch", &porch)], None);
    // The broker is down: events pile up in the outbox.
    let mut broker = Broker::start(BrokerOptions::default());
    let port = broker.port;
    broker.pause();
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        Some(port),
        &porch_camera("porch", &server.url("porch")),
    );
    let mut daemon = Daemon::start(&config);
    let db = dir.path().join("data/gridwatch.db");
    let depth = || -> i64 {
        rusqlite::Connection::open(&db)
            // Incident events: a run that spans the site's midnight also queues the daily
            // statistics summary, which the incident subscriber below never sees.
            .and_then(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM outbox WHERE state != 'summary'",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while depth() < 1 {
        assert!(
            Instant::now() < deadline,
            "no event reached the outbox:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let asked = Instant::now();
    daemon.signal("TERM");
    let status = daemon
        .wait_exit(Duration::from_secs(15))
        .expect("exits after SIGTERM");
    assert!(status.success());
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "within 10 s: {:?}",
        asked.elapsed()
    );
    let kept = depth();
    assert!(kept >= 1, "the undelivered events are kept");

    // Next start, broker up: they go out.
    broker.resume();
    let sub = Subscriber::start(port, &format!("{PREFIX}/+/incident"), None);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("url = ", "enabled = false\nurl = ");
    std::fs::write(&config, text).unwrap();
    let mut again = Daemon::start(&config);
    sub.wait_for(Duration::from_secs(20), "the kept events", |m| {
        m.len() as i64 >= kept
    });
    again.signal("TERM");
    again.wait_exit(Duration::from_secs(15)).expect("exits");
    assert_eq!(depth(), 0);
}

#[test]
fn sighup_applies_a_new_camera_list_and_the_untouched_camera_keeps_its_incident() {
    let porch = porch_clip();
    let server = RtspServer::start(&[("porch", &porch)], None);
    let broker = Broker::start(BrokerOptions::default());
    let sub = Subscriber::start(broker.port, &format!("{PREFIX}/#"), None);
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        Some(broker.port),
        &porch_camera("a", &server.url("porch")),
    );
    let daemon = Daemon::start(&config);
    sub.wait_for(Duration::from_secs(90), "camera a's incident", |_| {
        opened(&sub, "a", "fly_wire_charging") == 1
    });
    let incident_a = incidents(&sub)
        .into_iter()
        .find(|e| e["camera"]["id"] == "a" && e["kind"] == "fly_wire_charging")
        .unwrap()["incident_id"]
        .clone();

    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&porch_camera("b", &server.url("porch")));
    std::fs::write(&config, text).unwrap();
    daemon.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !daemon.log().contains("config reloaded") {
        assert!(Instant::now() < deadline, "no reload:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        daemon.log().contains("kept=a") && daemon.log().contains("started=b"),
        "{}",
        daemon.log()
    );
    sub.wait_for(Duration::from_secs(90), "camera b's incident", |_| {
        opened(&sub, "b", "fly_wire_charging") == 1
    });
    // Camera a was not restarted: its incident went on (updates, same id), never reopened.
    let a_events: Vec<Value> = incidents(&sub)
        .into_iter()
        .filter(|e| e["camera"]["id"] == "a")
        .collect();
    assert_eq!(opened(&sub, "a", "fly_wire_charging"), 1, "{a_events:?}");
    assert!(
        a_events
            .iter()
            .any(|e| e["state"] == "updated" && e["incident_id"] == incident_a),
        "{a_events:?}\n{}",
        daemon.log()
    );

    // An invalid config is refused and the running one kept.
    std::fs::write(&config, "[site\nbroken").unwrap();
    daemon.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !daemon.log().contains("config reload refused") {
        assert!(Instant::now() < deadline, "{}", daemon.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn with_a_sub_stream_detection_reads_it_and_evidence_comes_from_the_main_stream() {
    let server = RtspServer::start(
        &[("main", &porch_main_clip()), ("sub", &porch_clip())],
        None,
    );
    let broker = Broker::start(BrokerOptions::default());
    let sub = Subscriber::start(broker.port, &format!("{PREFIX}/#"), None);
    let dir = tempfile::tempdir().unwrap();
    // The bicycle stands near the camera (half the picture high): the sub-stream has the
    // pixels for it, so detection stays there.
    let camera = porch_camera_with_sub_stream(&server, 0.3);
    let config = config(dir.path(), Some(broker.port), &camera)
        .to_string_lossy()
        .to_string();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[evidence]\nenabled = false",
        "[evidence]\npre_roll = \"2s\"\npost_roll = \"3s\"",
    );
    std::fs::write(&config, text).unwrap();
    let daemon = Daemon::start(Path::new(&config));
    let with_clip = |sub: &Subscriber| {
        incidents(sub).into_iter().find(|e| {
            e["kind"] == "fly_wire_charging"
                && e["evidence"]["files"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|f| f["kind"] == "clip"))
        })
    };
    sub.wait_for(Duration::from_secs(120), "the incident's clip", |_| {
        with_clip(&sub).is_some()
    });
    let event = with_clip(&sub).unwrap();
    let path = |kind: &str| {
        let files = event["evidence"]["files"].as_array().unwrap();
        let file = files.iter().find(|f| f["kind"] == kind).unwrap();
        dir.path().join("data").join(file["path"].as_str().unwrap())
    };
    let snapshot = image::open(path("snapshot")).unwrap();
    assert_eq!(
        (snapshot.width(), snapshot.height()),
        (1280, 960),
        "snapshot from the main stream"
    );
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(path("clip"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout).trim(),
        "1280,960",
        "clip from the main stream"
    );
    let log = daemon.log();
    assert!(
        log.contains("main stream open for clips") && log.contains("width=1280"),
        "{log}"
    );
    assert!(
        log.contains("stream open camera=porch codec=h264 decoder=h264 (software) width=768"),
        "detection reads the sub-stream: {log}"
    );
}

#[test]
fn a_sub_stream_short_of_pixels_for_the_zone_moves_detection_to_the_main_stream() {
    let server = RtspServer::start(
        &[("main", &porch_main_clip()), ("sub", &porch_clip())],
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    // Objects down to 6 % of the picture: 35 px on the 768x576 sub-stream even at native
    // resolution, 58 px on the 1280x960 main stream.
    let camera = porch_camera_with_sub_stream(&server, 0.06);
    let daemon = Daemon::start(&config(dir.path(), None, &camera));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let detecting_on_main = |log: &str| {
        log.contains("stream open camera=porch codec=h264 decoder=h264 (software) width=1280 height=960 stream=\"main\"")
    };
    while !detecting_on_main(&daemon.log()) {
        assert!(std::time::Instant::now() < deadline, "{}", daemon.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = daemon.log();
    assert!(
        log.contains("detecting on the main stream, not the sub-stream: on 768x576 zone porch's smallest objects are 35 px at the model even at native resolution (needs 48)"),
        "{log}"
    );
    assert!(log.contains("main stream open for clips"), "{log}");
}

#[test]
fn h265_over_udp_and_h264_over_tcp_both_detect_with_two_inference_workers() {
    let server = RtspServer::start(
        &[("h264", &porch_clip()), ("h265", &porch_hevc_clip())],
        None,
    );
    let broker = Broker::start(BrokerOptions::default());
    let sub = Subscriber::start(broker.port, &format!("{PREFIX}/#"), None);
    let dir = tempfile::tempdir().unwrap();
    let udp = porch_camera("hevc_udp", &server.url("h265")).replacen(
        "\ndetect_fps",
        "\nrtsp_transport = \"udp\"\ndetect_fps",
        1,
    );
    // Two inference workers: each camera has its own.
    let cameras = [
        "[detector]\nworkers = 2\n\n".to_string(),
        porch_camera("avc_tcp", &server.url("h264")),
        udp,
    ]
    .concat();
    let daemon = Daemon::start(&config(dir.path(), Some(broker.port), &cameras));
    sub.wait_for(Duration::from_secs(90), "both cameras' incidents", |_| {
        opened(&sub, "avc_tcp", "fly_wire_charging") == 1
            && opened(&sub, "hevc_udp", "fly_wire_charging") == 1
    });
    let log = daemon.log();
    assert!(
        log.contains("stream open camera=hevc_udp codec=hevc decoder=hevc (software)"),
        "{log}"
    );
    assert!(
        log.contains("stream open camera=avc_tcp codec=h264"),
        "{log}"
    );
    assert_eq!(opened(&sub, "hevc_udp", "camera_offline"), 0);
}

/// The most incidents open at once for one camera and kind, replaying the events in the
/// order the platform received them (what the platform's own bookkeeping would show).
fn most_open_at_once(events: &[Value], camera: &str, kind: &str) -> usize {
    let mut open = std::collections::BTreeSet::new();
    let mut most = 0;
    for e in events
        .iter()
        .filter(|e| e["camera"]["id"] == camera && e["kind"] == kind)
    {
        let id = e["incident_id"].as_str().unwrap().to_string();
        match e["state"].as_str().unwrap() {
            "closed" => {
                open.remove(&id);
            }
            "reviewed" => {}
            _ => {
                open.insert(id);
            }
        }
        most = most.max(open.len());
    }
    most
}

fn closed_with(sub: &Subscriber, camera: &str, reason: &str) -> Vec<Value> {
    incidents(sub)
        .into_iter()
        .filter(|e| e["camera"]["id"] == camera && e["close_reason"] == reason)
        .collect()
}

/// Found by probing: after SIGTERM and a restart, or a SIGHUP that changed the camera, the
/// incidents open before were never closed and new ones opened for the same bicycle (2 -> 4
/// -> 6 open on the platform after two restarts on a static scene).
#[test]
fn restarts_and_reloads_close_what_was_open_and_one_stay_is_never_two_open_incidents() {
    let porch = porch_clip();
    let server = RtspServer::start(&[("porch", &porch)], None);
    let broker = Broker::start(BrokerOptions::default());
    let sub = Subscriber::start(broker.port, &format!("{PREFIX}/+/incident"), None);
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        Some(broker.port),
        &porch_camera("a", &server.url("porch")),
    );
    let kind = "fly_wire_charging";
    let mut daemon = Daemon::start(&config);
    sub.wait_for(Duration::from_secs(90), "the first incident", |_| {
        opened(&sub, "a", kind) == 1
    });
    let first = incidents(&sub)
        .into_iter()
        .find(|e| e["state"] == "opened")
        .unwrap()["incident_id"]
        .clone();

    // SIGTERM with the incident open, then start again.
    daemon.signal("TERM");
    assert!(
        daemon
            .wait_exit(Duration::from_secs(15))
            .is_some_and(|s| s.success())
    );
    let daemon = Daemon::start(&config);
    sub.wait_for(Duration::from_secs(30), "the first incident closed", |_| {
        !closed_with(&sub, "a", "restarted").is_empty()
    });
    let restarted = closed_with(&sub, "a", "restarted");
    assert_eq!(restarted.len(), 1, "{restarted:?}");
    assert_eq!(restarted[0]["incident_id"], first);
    assert!(
        schema_errors(&restarted[0]).is_empty(),
        "{:?}",
        schema_errors(&restarted[0])
    );
    // The bicycle is still there: a new incident after its dwell, not before the old closed.
    sub.wait_for(Duration::from_secs(90), "the second incident", |_| {
        opened(&sub, "a", kind) == 2
    });

    // A reload that changes the camera closes its incident the same way.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("detect_fps = 2", "detect_fps = 3");
    std::fs::write(&config, text).unwrap();
    daemon.signal("HUP");
    sub.wait_for(Duration::from_secs(30), "closed by the reload", |_| {
        !closed_with(&sub, "a", "reconfigured").is_empty()
    });
    sub.wait_for(Duration::from_secs(90), "the third incident", |_| {
        opened(&sub, "a", kind) == 3
    });
    let all = incidents(&sub);
    assert_eq!(
        most_open_at_once(&all, "a", kind),
        1,
        "never two open incidents for one stay: {all:#?}\n{}",
        daemon.log()
    );
    let reconfigured = closed_with(&sub, "a", "reconfigured");
    assert_eq!(reconfigured.len(), 1);
    assert_ne!(reconfigured[0]["incident_id"], first);
    let open_in_store: i64 = rusqlite::Connection::open(dir.path().join("data/gridwatch.db"))
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM incidents WHERE state != 'closed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(open_in_store, 1, "only the current stay is open");
}

/// GET `path` from the daemon's web server with the token; (status, content type, body).
fn web_get(port: u16, path: &str, token: Option<&str>) -> (u16, String, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        request = request.header("Authorization", format!("Bearer {t}"));
    }
    let mut response = request.call().unwrap();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response
        .body_mut()
        .with_config()
        .limit(32 << 20)
        .read_to_vec()
        .unwrap();
    (response.status().as_u16(), kind, body)
}

#[test]
fn the_cameras_api_shows_a_camera_offline_online_and_its_latest_picture() {
    let car = rtsp_clip(&media("car-detection.mp4"), 20, &[]);
    let mut server = RtspServer::start(&[("cam", &car)], None);
    // The camera is down when the daemon starts: no frame yet.
    server.kill();
    let dir = tempfile::tempdir().unwrap();
    let token = "cameras-token-0123456789";
    std::fs::write(dir.path().join("web.token"), format!("{token}\n")).unwrap();
    let port = gridwatch_e2e::broker::free_port();
    let cameras = format!(
        "[web]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\n\n[[cameras]]\nid = \"cam\"\nname = \"北门\"\nurl = \"{}\"\ndetect_fps = 2\noffline_after = \"3s\"\nio_timeout = \"2s\"\n\n[[cameras.zones]]\nid = \"lane\"\npolygon = [[0.1, 0.5], [0.9, 0.5], [0.9, 0.95], [0.1, 0.95]]\nobjects = [\"vehicle\"]\nmin_object_height = 0.3\n\n[cameras.zones.illegal_parking]\ndwell = \"60s\"\n",
        dir.path().join("web.token").display(),
        server.url("cam")
    );
    let daemon = Daemon::start(&config(dir.path(), None, &cameras));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "no web server:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let camera = || {
        let (status, _, body) = web_get(port, "/api/cameras/cam", Some(token));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice::<Value>(&body).unwrap()
    };
    let wait_state = |state: &str| {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let c = camera();
            if c["state"] == state {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "never {state}: {c}\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let down = wait_state("offline");
    assert!(
        down["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{down}"
    );
    let (status, kind, body) = web_get(port, "/api/cameras/cam/latest.jpg", Some(token));
    let reply: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, kind.as_str()),
        (503, "application/json"),
        "{reply}"
    );
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("camera cam is offline since"),
        "{reply}"
    );

    server.resume();
    let up = wait_state("online");
    assert_eq!(up["name"], "北门");
    assert_eq!(up["decoder"], "h264 (software)");
    assert_eq!(up["hardware_decoding"], false);
    assert_eq!(up["decoder_why"], "the camera sets no hwaccel");
    assert_eq!(up["detection_stream"], "main");
    let (width, height) = (
        up["main"]["width"].as_u64().unwrap() as u32,
        up["main"]["height"].as_u64().unwrap() as u32,
    );
    assert!(width >= 320 && height >= 180, "{up}");
    assert_eq!(up["zones"][0]["id"], "lane");
    assert_eq!(
        up["zones"][0]["rules"],
        serde_json::json!(["illegal_parking"])
    );
    assert!(!up["regions"].as_array().unwrap().is_empty(), "{up}");
    // Rates are measured between looks a second or more apart.
    std::thread::sleep(Duration::from_millis(1200));
    let listed = {
        let (status, _, body) = web_get(port, "/api/cameras", Some(token));
        assert_eq!(status, 200);
        serde_json::from_slice::<Value>(&body).unwrap()
    };
    assert!(
        listed["cameras"][0]["fps_in"].as_f64().unwrap() > 1.0,
        "{listed}"
    );
    assert!(
        listed["cameras"][0]["last_frame_at"].is_string(),
        "{listed}"
    );

    let (status, kind, body) = web_get(port, "/api/cameras/cam/latest.jpg", Some(token));
    assert_eq!((status, kind.as_str()), (200, "image/jpeg"));
    let picture = image::load_from_memory(&body).unwrap().to_rgb8();
    assert_eq!(picture.dimensions(), (width, height));
    let (status, _, body) = web_get(port, "/api/cameras/cam/latest.jpg?layout=true", Some(token));
    assert_eq!(status, 200);
    let drawn = image::load_from_memory(&body).unwrap().to_rgb8();
    // The zone's top edge (y = 0.5 of the picture) is drawn in yellow.
    let p = drawn.get_pixel(width / 2, height / 2).0;
    assert!(
        p[0] > 180 && p[1] > 160 && p[2] < 110,
        "zone outline at the centre: {p:?}"
    );

    // Hostile or wrong requests: a clear 4xx, never a picture.
    assert_eq!(web_get(port, "/api/cameras/cam/latest.jpg", None).0, 401);
    assert_eq!(web_get(port, "/api/cameras/nope", Some(token)).0, 404);
    assert_eq!(
        web_get(port, "/api/cameras/nope/latest.jpg", Some(token)).0,
        404
    );
    assert_eq!(web_get(port, "/api/cameras/a%20b", Some(token)).0, 400);
    assert_eq!(
        web_get(
            port,
            "/api/cameras/cam/latest.jpg?layout=maybe",
            Some(token)
        )
        .0,
        400
    );

    // Down again and back: offline with a clear status, then pictures again.
    server.kill();
    wait_state("offline");
    assert_eq!(
        web_get(port, "/api/cameras/cam/latest.jpg", Some(token)).0,
        503
    );
    server.resume();
    wait_state("online");
    let deadline = Instant::now() + Duration::from_secs(20);
    while web_get(port, "/api/cameras/cam/latest.jpg", Some(token)).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "no picture after the camera returned"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
