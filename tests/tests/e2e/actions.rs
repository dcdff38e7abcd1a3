//! Actions (`[[actions]]`): HTTP POSTs on incidents, against a real HTTP server started by
//! the test on loopback (tests/webhook/server.py), with the real daemon on the elevator
//! scenario's clip as a file camera.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gridwatch_e2e::broker::free_port;
use gridwatch_e2e::scenario;
use gridwatch_e2e::*;
use serde_json::Value;

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn receiver(port: u16, out: &Path) -> Killed {
    let child = Command::new("python3")
        .arg(repo_root().join("tests/webhook/server.py"))
        .arg(port.to_string())
        .arg(out)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Listening once a connection is accepted.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the webhook receiver did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Killed(child)
}

fn daemon(config: &Path, log: &Path) -> Killed {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Killed(
        gridwatch()
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("GRIDWATCH_LOG", "info")
            .stderr(log)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The elevator scenario as a live file camera, with `actions` (TOML).
fn config(dir: &Path, actions: &str) -> PathBuf {
    let clip = scenario::clip(&scenario::load("elevator_two_wheeler"));
    let path = scenario::config_whole_picture_in(
        dir,
        "elevator_two_wheeler",
        &format!("[evidence]\nenabled = false\n\n{actions}"),
    );
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("replaced-by-the-scenario-clip", &clip.to_string_lossy());
    std::fs::write(&path, text).unwrap();
    path
}

fn received(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn eventually(limit: Duration, what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !probe() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The (event_id, body) of every stored event the relay action is for.
fn stored_events(dir: &Path) -> Vec<(String, Value)> {
    let db = rusqlite::Connection::open(dir.join("data/gridwatch.db")).unwrap();
    let mut statement = db
        .prepare("SELECT event_id, payload FROM events WHERE state IN ('opened', 'closed') ORDER BY rowid")
        .unwrap();
    statement
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|r| {
            let (id, payload) = r.unwrap();
            (id, serde_json::from_str(&payload).unwrap())
        })
        .filter(|(_, e): &(String, Value)| e["kind"] == "two_wheeler_in_elevator")
        .collect()
}

#[test]
fn the_relay_gets_each_incident_at_once_and_nothing_is_lost_while_it_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let web_port = free_port();
    let token = dir.path().join("web.token");
    std::fs::write(&token, "test-token-0123456789\n").unwrap();
    let out = dir.path().join("received.jsonl");
    let config = config(
        dir.path(),
        &format!(
            "[web]\nlisten = \"127.0.0.1:{web_port}\"\ntoken_file = \"{}\"\n\n[[actions]]\nid = \"lift-relay\"\nurl = \"http://127.0.0.1:{port}/hold-doors\"\nkinds = [\"two_wheeler_in_elevator\"]\non = [\"opened\", \"closed\"]\ntimeout = \"1s\"\nretry_max = \"2s\"\nmax_attempts = 200\n",
            token.display()
        ),
    );
    let log = dir.path().join("daemon.log");

    // Up: the elevator's relay hears of the bike as the incident opens.
    let server = receiver(port, &out);
    let mut agent = daemon(&config, &log);
    eventually(Duration::from_secs(60), "the opened event POSTed", || {
        !received(&out).is_empty()
    });
    let first = &received(&out)[0];
    assert_eq!(first["path"], "/hold-doors");
    assert!(
        first["content_type"]
            .as_str()
            .unwrap()
            .starts_with("application/json")
    );
    let event: Value = serde_json::from_str(first["body"].as_str().unwrap()).unwrap();
    assert_eq!(event["kind"], "two_wheeler_in_elevator");
    assert_eq!(event["state"], "opened");
    assert!(schema_errors(&event).is_empty(), "{event}");
    let opened_at = chrono::DateTime::parse_from_rfc3339(event["event_at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis() as f64
        / 1000.0;
    let latency = first["received_at"].as_f64().unwrap() - opened_at;
    // Woken by the store write, not a poll: well within the seconds an elevator waits.
    println!("action latency: {latency:.3} s");
    assert!(
        latency < 2.0,
        "POSTed {latency:.2} s after the incident opened"
    );

    // Down for a minute: the relay box is off; the clip loops, the bike comes and goes.
    drop(server);
    let down_at = Instant::now();
    let before = stored_events(dir.path()).len();
    eventually(Duration::from_secs(90), "two more events stored", || {
        stored_events(dir.path()).len() >= before + 2
    });
    // Meanwhile the agent is killed (a power cut) and started again.
    let _ = agent.0.kill();
    let _ = agent.0.wait();
    agent = daemon(&config, &log);
    std::thread::sleep(Duration::from_secs(60).saturating_sub(down_at.elapsed()));

    // Back: every stored event's action arrives, exactly as stored, none twice.
    let _server = receiver(port, &out);
    eventually(Duration::from_secs(60), "every stored event POSTed", || {
        let posted: Vec<String> = received(&out)
            .iter()
            .map(|r| {
                let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
                body["event_id"].as_str().unwrap().to_string()
            })
            .collect();
        stored_events(dir.path())
            .iter()
            .all(|(id, _)| posted.contains(id))
    });
    // Nothing left waiting, as /metrics says too.
    let metrics = ureq::get(&format!("http://127.0.0.1:{web_port}/metrics"))
        .header("Authorization", "Bearer test-token-0123456789")
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("gridwatch_actions_waiting 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gridwatch_actions_given_up 0\n"),
        "{metrics}"
    );
    drop(agent);
    let stored = stored_events(dir.path());
    let posted: Vec<Value> = received(&out)
        .iter()
        .map(|r| serde_json::from_str(r["body"].as_str().unwrap()).unwrap())
        .collect();
    for (id, event) in &stored {
        let copies: Vec<&Value> = posted
            .iter()
            .filter(|p| p["event_id"] == id.as_str())
            .collect();
        assert_eq!(copies.len(), 1, "event {id} POSTed {} times", copies.len());
        assert_eq!(copies[0], event, "POSTed exactly as stored");
    }
    assert!(stored.len() >= before + 2);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("action not delivered, retrying with backoff"),
        "{logged}"
    );
}

#[test]
fn an_action_nobody_answers_is_given_up_after_its_attempts_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on this port.
    let port = free_port();
    let config = config(
        dir.path(),
        &format!(
            "[[actions]]\nid = \"gone\"\nurl = \"http://127.0.0.1:{port}/x\"\nmax_attempts = 2\nretry_max = \"1s\"\ntimeout = \"1s\"\n"
        ),
    );
    let log = dir.path().join("daemon.log");
    let _agent = daemon(&config, &log);
    eventually(Duration::from_secs(60), "the action given up", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("action given up")
    });
    let db = rusqlite::Connection::open(dir.path().join("data/gridwatch.db")).unwrap();
    let (attempts, given_up, error): (u32, Option<i64>, String) = db
        .query_row(
            "SELECT attempts, given_up_at_us, last_error FROM action_outbox ORDER BY id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(attempts, 2, "not retried beyond max_attempts");
    assert!(given_up.is_some());
    assert!(!error.is_empty());
    // And not tried again afterwards.
    std::thread::sleep(Duration::from_secs(3));
    let later: u32 = db
        .query_row(
            "SELECT attempts FROM action_outbox ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(later, 2);
}
