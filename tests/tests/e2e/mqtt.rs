//! Delivery to the grid platform over MQTT, against a real mosquitto started by the tests:
//! every event arrives, in order per camera, schema-valid, through broker outages, agent
//! crashes, TLS and authentication problems; the status topic and its Last Will; commands.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gridwatch_e2e::broker::{Broker, BrokerOptions, Message, Subscriber, make_ca, make_ca_for};
use gridwatch_e2e::scenario;
use gridwatch_e2e::*;
use serde_json::Value;

const PREFIX: &str = "gridwatch/v1/scenario";

/// The scenario's config with `[storage]` in `dir` and the given `[mqtt]` table.
fn config_with(dir: &Path, scenario_name: &str, mqtt: &str) -> PathBuf {
    // Evidence off: its `updated` events would renumber the lifecycle events, and these
    // tests compare ids with a plain replay's (evidence_web.rs covers evidence delivery).
    scenario::config_whole_picture_in(
        dir,
        scenario_name,
        &format!("[evidence]\nenabled = false\n\n{mqtt}"),
    )
}

fn mqtt_table(port: u16, extra: &str) -> String {
    format!(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nbox_id = \"box-{port}\"\nheartbeat_every = \"1s\"\nreconnect_min = \"200ms\"\nreconnect_max = \"1s\"\n{extra}\n"
    )
}

fn replay_cmd(config: &Path, scenario_name: &str, dir: &Path, drain: &str) -> Command {
    let s = scenario::load(scenario_name);
    let clip = scenario::clip(&s);
    let mut cmd = replay_command(
        config,
        &clip,
        &dir.join("out.jsonl"),
        &["--start-time", &s.start_time, "--drain-timeout", drain],
    );
    cmd.env("GRIDWATCH_LOG", "info");
    cmd
}

/// The event ids a scenario produces (replays are deterministic: same ids every time), seen
/// as `config_with` shows it the picture.
fn expected_events(scenario_name: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario::load(scenario_name);
    scenario::run_with(&s, dir.path(), scenario::WHOLE_PICTURE).events
}

fn incident_messages(sub: &Subscriber) -> Vec<Value> {
    sub.on_topic("/incident")
        .iter()
        .map(Message::json)
        .collect()
}

fn ids(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until every expected event id has arrived on an incident topic.
fn wait_for_every_event(sub: &Subscriber, expected: &[Value], timeout: Duration) {
    sub.wait_for(timeout, "every event", |m| {
        ids(&m
            .iter()
            .filter(|m| m.topic.ends_with("/incident"))
            .map(Message::json)
            .collect::<Vec<_>>())
        .len()
            >= expected.len()
    });
}

/// Every expected id arrived; per camera, the first arrival of each event is in order.
fn assert_complete_and_ordered(received: &[Value], expected: &[Value]) {
    let got = ids(received);
    let want = ids(expected);
    let missing: Vec<_> = want.difference(&got).collect();
    assert!(missing.is_empty(), "missing events: {missing:?}");
    let mut first_seen = BTreeSet::new();
    let mut by_camera: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in received {
        if first_seen.insert(e["event_id"].as_str().unwrap().to_string()) {
            by_camera
                .entry(e["camera"]["id"].as_str().unwrap().to_string())
                .or_default()
                .push(e);
        }
    }
    for (camera, events) in by_camera {
        let times: Vec<&str> = events
            .iter()
            .map(|e| e["event_at"].as_str().unwrap())
            .collect();
        let mut sorted = times.clone();
        sorted.sort();
        assert_eq!(times, sorted, "camera {camera}: events out of order");
    }
    for e in received {
        let errors = schema_errors(e);
        assert!(errors.is_empty(), "schema: {errors:?}");
    }
}

/// Kills the child if the test fails before it ends it: no stray agents after a failure.
struct Reaper(Option<Child>);

impl Reaper {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }
    fn take(mut self) -> Child {
        self.0.take().unwrap()
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(cmd: &mut Command) -> Reaper {
    Reaper(Some(cmd.spawn().expect("spawn gridwatch")))
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stderr_of(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Rows in the agent's outbox; 0 while the database is still being created.
fn outbox_depth(dir: &Path) -> i64 {
    rusqlite::Connection::open(dir.join("data/gridwatch.db"))
        .and_then(|db| db.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0)))
        .unwrap_or(0)
}

#[test]
fn every_event_arrives_in_order_and_matches_the_schema() {
    let broker = Broker::start(BrokerOptions::default());
    let sub = Subscriber::start(broker.port, &format!("{PREFIX}/#"), None);
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), "charging_night", &mqtt_table(broker.port, ""));
    run_ok(&mut replay_cmd(
        &config,
        "charging_night",
        dir.path(),
        "30s",
    ));
    let expected = expected_events("charging_night");
    assert!(expected.len() >= 3, "the scenario raises events");
    wait_for_every_event(&sub, &expected, Duration::from_secs(20));
    assert_complete_and_ordered(&incident_messages(&sub), &expected);
    for m in sub.on_topic("/incident") {
        assert_eq!(m.topic, format!("{PREFIX}/porch/incident"));
    }
    let status = sub.on_topic("/status");
    assert_eq!(status.first().unwrap().json()["state"], "online");
    assert_eq!(
        status.last().unwrap().json()["state"],
        "offline",
        "clean shutdown announces offline"
    );
    let beat = sub
        .on_topic("/heartbeat")
        .first()
        .cloned()
        .expect("a heartbeat")
        .json();
    assert!(
        beat["outbox"]["depth"].is_u64() && beat["disk_free_bytes"].as_u64().unwrap() > 0,
        "{beat}"
    );
    // Replay's heartbeats carry its camera's frame rates, as the daemon's do.
    let beats: Vec<Value> = sub
        .on_topic("/heartbeat")
        .iter()
        .map(Message::json)
        .collect();
    assert!(
        beats.iter().any(|b| b["cameras"][0]["id"] == "porch"
            && b["cameras"][0]["fps_in"].as_f64().unwrap_or(0.0) > 0.0
            && b["cameras"][0]["fps_out"].as_f64().unwrap_or(0.0) > 0.0),
        "{beats:?}"
    );
    assert_eq!(outbox_depth(dir.path()), 0, "delivered rows are deleted");
}

#[test]
fn mqtt_5_delivers_too() {
    let broker = Broker::start(BrokerOptions::default());
    let sub = Subscriber::start(broker.port, &format!("{PREFIX}/+/incident"), None);
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        "camera_offline",
        &mqtt_table(broker.port, "protocol = \"5\""),
    );
    run_ok(&mut replay_cmd(
        &config,
        "camera_offline",
        dir.path(),
        "30s",
    ));
    let expected = expected_events("camera_offline");
    sub.wait_for(Duration::from_secs(20), "both events", |m| m.len() >= 2);
    assert_complete_and_ordered(&incident_messages(&sub), &expected);
}

#[test]
fn a_30_second_broker_outage_loses_nothing() {
    let mut broker = Broker::start(BrokerOptions::default());
    let sub = Subscriber::start(broker.port, &format!("{PREFIX}/+/incident"), None);
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), "parking_positive", &mqtt_table(broker.port, ""));
    let mut replay =
        spawn(replay_cmd(&config, "parking_positive", dir.path(), "120s").stderr(Stdio::piped()));
    // Mid-replay: the car has been reported, its updates and its departure are still ahead.
    sub.wait_for(Duration::from_secs(400), "the opened event", |m| {
        !m.is_empty()
    });
    broker.pause();
    std::thread::sleep(Duration::from_secs(30));
    broker.resume();
    let status = wait_exit(replay.child(), Duration::from_secs(400));
    assert!(
        status.success(),
        "replay failed: {}",
        stderr_of(replay.take())
    );
    let expected = expected_events("parking_positive");
    sub.wait_for(Duration::from_secs(30), "every event", |m| {
        ids(&m.iter().map(Message::json).collect::<Vec<_>>()).len() >= expected.len()
    });
    assert_complete_and_ordered(&incident_messages(&sub), &expected);
    assert_eq!(outbox_depth(dir.path()), 0);
}

#[test]
fn a_killed_agent_loses_nothing_after_restart() {
    let mut broker = Broker::start(BrokerOptions::default());
    let sub = Subscriber::start(broker.port, &format!("{PREFIX}/+/incident"), None);
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), "charging_night", &mqtt_table(broker.port, ""));
    // Broker down: events pile up in the outbox; kill the agent hard once some are there.
    broker.pause();
    let mut replay =
        spawn(replay_cmd(&config, "charging_night", dir.path(), "120s").stderr(Stdio::null()));
    // The two events come 120 s and 180 s into the 300 s clip: about 10 s of replay on an idle
    // 2-core machine, several times that when the other tests of this binary replay beside it.
    // The deadline only stops a hung run; what is asserted is what the outbox holds.
    let deadline = Instant::now() + Duration::from_secs(600);
    while !(dir.path().join("data/gridwatch.db").exists() && outbox_depth(dir.path()) >= 2) {
        assert!(
            replay.child().try_wait().unwrap().is_none(),
            "the replay ended before two events reached the outbox"
        );
        assert!(Instant::now() < deadline, "no events reached the outbox");
        std::thread::sleep(Duration::from_millis(100));
    }
    replay.child().kill().unwrap();
    replay.child().wait().unwrap();
    let committed = outbox_depth(dir.path());
    broker.resume();

    // The daemon on the same data directory delivers what the killed run committed.
    let run_config = dir.path().join("run.toml");
    std::fs::write(
        &run_config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("url = ", "enabled = false\nurl = "),
    )
    .unwrap();
    let mut daemon = spawn(gridwatch().arg("run").arg("--config").arg(&run_config));
    sub.wait_for(Duration::from_secs(30), "the committed events", |m| {
        m.len() as i64 >= committed
    });
    terminate(daemon.child());
    assert!(wait_exit(daemon.child(), Duration::from_secs(15)).success());
    assert_eq!(outbox_depth(dir.path()), 0);

    // Running the interrupted replay again completes the set; duplicates are harmless.
    run_ok(&mut replay_cmd(
        &config,
        "charging_night",
        dir.path(),
        "30s",
    ));
    let expected = expected_events("charging_night");
    sub.wait_for(Duration::from_secs(20), "every event", |m| {
        ids(&m.iter().map(Message::json).collect::<Vec<_>>()).len() >= expected.len()
    });
    assert_complete_and_ordered(&incident_messages(&sub), &expected);
}

#[test]
fn tls_with_the_right_ca_connects_and_the_wrong_ca_is_refused_clearly() {
    let certs = tempfile::tempdir().unwrap();
    let good = make_ca(certs.path(), "good");
    let other = make_ca(certs.path(), "other");
    let broker = Broker::start(BrokerOptions {
        tls: Some(good),
        ..Default::default()
    });
    let tls_port = broker.tls_port.unwrap();
    let sub = Subscriber::start(broker.port, &format!("{PREFIX}/+/incident"), None);

    let dir = tempfile::tempdir().unwrap();
    let tls = format!(
        "[mqtt.tls]\nca_file = \"{}\"\n",
        certs.path().join("good-ca.pem").display()
    );
    let config = config_with(dir.path(), "camera_offline", &mqtt_table(tls_port, &tls));
    run_ok(&mut replay_cmd(
        &config,
        "camera_offline",
        dir.path(),
        "30s",
    ));
    sub.wait_for(Duration::from_secs(20), "events over TLS", |m| m.len() >= 2);

    let dir = tempfile::tempdir().unwrap();
    let tls = format!("[mqtt.tls]\nca_file = \"{}\"\n", other.ca.display());
    let config = config_with(dir.path(), "camera_offline", &mqtt_table(tls_port, &tls));
    let r = run_ok(&mut replay_cmd(&config, "camera_offline", dir.path(), "3s"));
    let stderr = r.stderr();
    let failures: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("MQTT connect failed"))
        .collect();
    assert_eq!(failures.len(), 1, "logged once, not per retry:\n{stderr}");
    assert!(
        failures[0].contains("UnknownIssuer") && failures[0].contains("mqtt.tls.ca_file"),
        "{}",
        failures[0]
    );
    assert!(stderr.contains("stay in the outbox"), "{stderr}");
    assert_eq!(outbox_depth(dir.path()), 2, "kept for later");
}

#[test]
fn a_wrong_password_is_reported_and_events_go_out_once_it_is_fixed() {
    let broker = Broker::start(BrokerOptions {
        user: Some(("agent".into(), "right-secret".into())),
        ..Default::default()
    });
    let sub = Subscriber::start(
        broker.port,
        &format!("{PREFIX}/+/incident"),
        Some(("agent", "right-secret")),
    );
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("mqtt.pass");
    std::fs::write(&password_file, "wrong-secret\n").unwrap();
    let extra = format!(
        "username = \"agent\"\npassword_file = \"{}\"",
        password_file.display()
    );
    let config = config_with(
        dir.path(),
        "camera_offline",
        &mqtt_table(broker.port, &extra),
    );
    let mut replay =
        spawn(replay_cmd(&config, "camera_offline", dir.path(), "60s").stderr(Stdio::piped()));
    // Let it fail for a while: the events must wait in the outbox.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(dir.path().join("data/gridwatch.db").exists() && outbox_depth(dir.path()) == 2) {
        assert!(Instant::now() < deadline, "events never reached the outbox");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(sub.messages.lock().unwrap().is_empty());
    std::fs::write(&password_file, "right-secret\n").unwrap();
    assert!(wait_exit(replay.child(), Duration::from_secs(60)).success());
    let stderr = stderr_of(replay.take());
    let refused: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("broker refused the connection"))
        .collect();
    assert_eq!(refused.len(), 1, "one line, not one per retry:\n{stderr}");
    assert!(refused[0].contains("password"), "{}", refused[0]);
    assert!(
        !stderr.contains("wrong-secret"),
        "the password is never logged"
    );
    sub.wait_for(Duration::from_secs(10), "both events", |m| m.len() >= 2);
    assert_eq!(outbox_depth(dir.path()), 0);
}

#[test]
fn killing_the_agent_sets_status_offline_through_the_last_will() {
    let broker = Broker::start(BrokerOptions::default());
    let sub = Subscriber::start(broker.port, &format!("{PREFIX}/status"), None);
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), "camera_offline", &mqtt_table(broker.port, ""));
    let config_text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("url = ", "enabled = false\nurl = ");
    std::fs::write(&config, config_text).unwrap();
    let mut daemon = spawn(gridwatch().arg("run").arg("--config").arg(&config));
    sub.wait_for(Duration::from_secs(20), "online", |m| {
        m.iter().any(|m| m.json()["state"] == "online")
    });
    daemon.child().kill().unwrap();
    daemon.child().wait().unwrap();
    sub.wait_for(Duration::from_secs(20), "offline", |m| {
        m.last().is_some_and(|m| m.json()["state"] == "offline")
    });
    let last = sub.messages.lock().unwrap().last().cloned().unwrap().json();
    assert_eq!(
        last["reason"], "connection lost",
        "the will, not a clean goodbye"
    );
    // A late subscriber sees the retained offline status.
    let late = Subscriber::start(broker.port, &format!("{PREFIX}/status"), None);
    late.wait_for(Duration::from_secs(10), "retained status", |m| {
        !m.is_empty()
    });
    assert!(late.messages.lock().unwrap()[0].retained);
}

/// The camera_offline scenario replayed into a box's store in `dir`, delivered through the
/// broker on `port`: its config and the incident's id.
fn replayed_incident(sub: &Subscriber, dir: &Path, port: u16) -> (PathBuf, String) {
    let config = config_with(dir, "camera_offline", &mqtt_table(port, ""));
    run_ok(&mut replay_cmd(&config, "camera_offline", dir, "30s"));
    sub.wait_for(Duration::from_secs(20), "the incident", |m| {
        m.iter().filter(|m| m.topic.ends_with("/incident")).count() >= 2
    });
    let incident_id = incident_messages(sub)[0]["incident_id"]
        .as_str()
        .unwrap()
        .to_string();
    (config, incident_id)
}

#[test]
fn commands_review_an_incident_and_reject_bad_payloads_harmlessly() {
    let broker = Broker::start(BrokerOptions::default());
    let sub = Subscriber::start(broker.port, &format!("{PREFIX}/#"), None);
    let dir = tempfile::tempdir().unwrap();
    let (config, incident_id) = replayed_incident(&sub, dir.path(), broker.port);

    let config_text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("url = ", "enabled = false\nurl = ");
    std::fs::write(&config, config_text).unwrap();
    let mut daemon = spawn(
        gridwatch()
            .arg("run")
            .arg("--config")
            .arg(&config)
            .stderr(Stdio::piped()),
    );
    sub.wait_for(Duration::from_secs(20), "online", |m| {
        m.iter()
            .filter(|m| m.topic.ends_with("/status"))
            .any(|m| m.json()["state"] == "online")
    });
    let results = |sub: &Subscriber| {
        sub.on_topic("/cmd/result")
            .iter()
            .map(Message::json)
            .collect::<Vec<_>>()
    };

    sub.publish(
        &format!("{PREFIX}/cmd/review"),
        serde_json::json!({"id": "r1", "incident_id": incident_id, "verdict": "dismissed", "reviewer": "王网格员", "note": "摄像头维护"}).to_string(),
    );
    sub.wait_for(Duration::from_secs(20), "the reviewed event", |m| {
        m.iter()
            .filter(|m| m.topic.ends_with("/incident"))
            .any(|m| m.json()["state"] == "reviewed")
    });
    let reviewed = incident_messages(&sub)
        .into_iter()
        .find(|e| e["state"] == "reviewed")
        .unwrap();
    assert_eq!(reviewed["incident_id"], incident_id.as_str());
    assert_eq!(reviewed["review"]["verdict"], "dismissed");
    assert_eq!(reviewed["seq"], 2);
    assert!(
        schema_errors(&reviewed).is_empty(),
        "{:?}",
        schema_errors(&reviewed)
    );
    sub.wait_for(Duration::from_secs(10), "the review result", |_| {
        results(&sub).iter().any(|r| r["id"] == "r1")
    });
    let ok = results(&sub).into_iter().find(|r| r["id"] == "r1").unwrap();
    assert_eq!(ok["ok"], true);
    assert_eq!(ok["event_id"], reviewed["event_id"]);

    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        ("review", b"{not json".to_vec(), "key must be a string"),
        (
            "review",
            br#"{"incident_id":"0000","verdict":"confirmed","reviewer":"x"}"#.to_vec(),
            "no incident",
        ),
        (
            "review",
            br#"{"incident_id":7,"verdict":"confirmed","reviewer":"x"}"#.to_vec(),
            "invalid type",
        ),
        ("review", vec![b'x'; 1_000_000], "over the"),
        ("shutdown", b"{}".to_vec(), "unknown command"),
    ];
    for (command, payload, _) in &bad {
        sub.publish(&format!("{PREFIX}/cmd/{command}"), payload.clone());
    }
    sub.wait_for(Duration::from_secs(20), "every rejection", |_| {
        results(&sub).iter().filter(|r| r["ok"] == false).count() >= bad.len()
    });
    let rejections: Vec<String> = results(&sub)
        .iter()
        .filter(|r| r["ok"] == false)
        .map(|r| r["error"].as_str().unwrap().to_string())
        .collect();
    for (_, _, reason) in &bad {
        assert!(
            rejections.iter().any(|r| r.contains(reason)),
            "no rejection mentions `{reason}`: {rejections:?}"
        );
    }
    // Still alive and answering.
    sub.publish(&format!("{PREFIX}/cmd/ping"), r#"{"id":"after"}"#);
    sub.wait_for(Duration::from_secs(10), "pong", |_| {
        results(&sub)
            .iter()
            .any(|r| r["id"] == "after" && r["ok"] == true)
    });
    assert!(
        daemon.child().try_wait().unwrap().is_none(),
        "the daemon survived"
    );
    terminate(daemon.child());
    assert!(wait_exit(daemon.child(), Duration::from_secs(15)).success());
    let stderr = stderr_of(daemon.take());
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The daemon with the config's cameras disabled (store, publisher, commands only), its
/// log in `log`.
fn daemon_without_cameras(config: &Path, log: &Path) -> Reaper {
    let text = std::fs::read_to_string(config).unwrap();
    if !text.contains("enabled = false\nurl = ") {
        std::fs::write(config, text.replace("url = ", "enabled = false\nurl = ")).unwrap();
    }
    spawn(
        gridwatch()
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("GRIDWATCH_LOG", "info")
            .stderr(std::fs::File::create(log).unwrap()),
    )
}

fn online_count(sub: &Subscriber) -> usize {
    sub.on_topic("/status")
        .iter()
        .filter(|m| m.json()["state"] == "online")
        .count()
}

fn stop(mut daemon: Reaper) {
    terminate(daemon.child());
    assert!(wait_exit(daemon.child(), Duration::from_secs(15)).success());
}

fn command_results(sub: &Subscriber) -> Vec<Value> {
    sub.on_topic("/cmd/result")
        .iter()
        .map(Message::json)
        .collect()
}

/// Found by probing: under MQTT 3.1.1 one command over the client's packet limit broke the
/// connection, the broker redelivered it to the persistent session at every reconnect, and
/// the outbox never drained (708 duplicates in 30 s), even across restarts.
#[test]
fn a_1_mib_command_in_a_persistent_3_1_1_session_is_answered_once_and_delivery_goes_on() {
    let broker = Broker::start(BrokerOptions::default());
    let sub = Subscriber::start(broker.port, &format!("{PREFIX}/#"), None);
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), "camera_offline", &mqtt_table(broker.port, ""));
    // The box's persistent session exists at the broker, with its command subscription.
    let log = dir.path().join("daemon.log");
    let daemon = daemon_without_cameras(&config, &log);
    sub.wait_for(Duration::from_secs(20), "online", |_| {
        online_count(&sub) >= 1
    });
    stop(daemon);
    // While the box is away, a 1 MiB command is queued in its session...
    let poison = vec![b'x'; 1 << 20];
    sub.publish(&format!("{PREFIX}/cmd/ping"), poison);
    std::thread::sleep(Duration::from_millis(500));
    // ...and it comes back with incidents to deliver.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("enabled = false\nurl = ", "url = ");
    std::fs::write(&config, text).unwrap();
    let r = run_ok(&mut replay_cmd(
        &config,
        "camera_offline",
        dir.path(),
        "30s",
    ));
    let stderr = r.stderr();
    let expected = expected_events("camera_offline");
    wait_for_every_event(&sub, &expected, Duration::from_secs(20));
    assert_complete_and_ordered(&incident_messages(&sub), &expected);
    assert_eq!(outbox_depth(dir.path()), 0, "the outbox drained:\n{stderr}");
    assert!(
        !stderr.contains("connection lost") && !stderr.contains("payload size limit"),
        "the connection held:\n{stderr}"
    );
    sub.wait_for(Duration::from_secs(10), "the answer", |_| {
        !command_results(&sub).is_empty()
    });
    // Duplicates would show as more than one copy of an event id.
    let incident_ids: Vec<String> = incident_messages(&sub)
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        incident_ids.len(),
        ids(&incident_messages(&sub)).len(),
        "no duplicates"
    );

    // A restart: the poisoned command is not redelivered (it was acknowledged), and a ping
    // is answered.
    let log = dir.path().join("daemon2.log");
    let daemon = daemon_without_cameras(&config, &log);
    sub.wait_for(Duration::from_secs(20), "online again", |_| {
        online_count(&sub) >= 3
    });
    sub.publish(&format!("{PREFIX}/cmd/ping"), r#"{"id":"after"}"#);
    sub.wait_for(Duration::from_secs(10), "pong", |_| {
        command_results(&sub).iter().any(|r| r["id"] == "after")
    });
    stop(daemon);
    let answers = command_results(&sub);
    let oversized: Vec<&Value> = answers
        .iter()
        .filter(|r| r["error"].as_str().is_some_and(|e| e.contains("over the")))
        .collect();
    assert_eq!(oversized.len(), 1, "answered once: {answers:?}");
    assert_eq!(oversized[0]["ok"], false);
    assert_eq!(oversized[0]["command"], "ping");
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(log.matches("MQTT connected").count(), 1, "{log}");
}

/// Found by probing: answers to invalid commands dropped the request id; `[]` was a valid
/// ping; a retained review was applied again at every restart.
#[test]
fn command_answers_keep_their_id_non_objects_are_refused_and_retained_commands_ignored() {
    let broker = Broker::start(BrokerOptions::default());
    let sub = Subscriber::start(broker.port, &format!("{PREFIX}/#"), None);
    let dir = tempfile::tempdir().unwrap();
    let (config, incident_id) = replayed_incident(&sub, dir.path(), broker.port);
    // A retained review waits at the broker before the daemon subscribes.
    sub.publish_retained(
        &format!("{PREFIX}/cmd/review"),
        serde_json::json!({"id": "retained-1", "incident_id": incident_id, "verdict": "confirmed", "reviewer": "王网格员"}).to_string(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let log = dir.path().join("daemon.log");
    let daemon = daemon_without_cameras(&config, &log);
    sub.wait_for(Duration::from_secs(20), "online", |_| {
        online_count(&sub) >= 1
    });

    let review = |extra: &str| {
        format!(
            r#"{{"id":"r3","incident_id":"{incident_id}","verdict":"confirmed","reviewer":"x"{extra}}}"#
        )
    };
    let invalid: Vec<(&str, String)> = vec![
        (
            "review",
            review(r#","verdict":"maybe""#).replacen(r#""verdict":"confirmed","#, "", 1),
        ),
        ("review", review(r#","admin":true"#)),
        (
            "review",
            review("").replace(r#""reviewer":"x""#, r#""reviewer":"""#),
        ),
        (
            "review",
            review("").replace(
                &format!(r#""incident_id":"{incident_id}""#),
                r#""incident_id":7"#,
            ),
        ),
        (
            "review",
            review("").replace(&incident_id, "0191aaaa-0000-7000-8000-000000000000"),
        ),
        ("ping", r#"{"id":"r3","extra":1}"#.to_string()),
        ("reboot", r#"{"id":"r3"}"#.to_string()),
    ];
    for (command, payload) in &invalid {
        sub.publish(&format!("{PREFIX}/cmd/{command}"), payload.clone());
    }
    for not_an_object in ["[]", "[\"r3\"]", "\"r3\"", "null"] {
        sub.publish(&format!("{PREFIX}/cmd/ping"), not_an_object);
    }
    let total = invalid.len() + 4;
    sub.wait_for(Duration::from_secs(20), "every answer", |_| {
        command_results(&sub)
            .iter()
            .filter(|a| a["id"] != "retained-1")
            .count()
            >= total
    });
    let answers: Vec<Value> = command_results(&sub)
        .into_iter()
        .filter(|a| a["id"] != "retained-1")
        .collect();
    assert!(answers.iter().all(|a| a["ok"] == false), "{answers:#?}");
    let with_id = answers.iter().filter(|a| a["id"] == "r3").count();
    assert_eq!(
        with_id,
        invalid.len(),
        "every invalid command keeps its id: {answers:#?}"
    );
    let refused_arrays = answers
        .iter()
        .filter(|a| {
            a["error"]
                .as_str()
                .is_some_and(|e| e.contains("JSON object"))
        })
        .count();
    assert_eq!(refused_arrays, 4, "{answers:#?}");

    // Sent while the box's persistent session existed, the review was queued for it and
    // applied once. At every later start the broker replays its retained copy: ignored.
    stop(daemon);
    let log = dir.path().join("daemon2.log");
    let daemon = daemon_without_cameras(&config, &log);
    sub.wait_for(Duration::from_secs(20), "online again", |_| {
        online_count(&sub) >= 3
    });
    sub.publish(&format!("{PREFIX}/cmd/ping"), r#"{"id":"last"}"#);
    sub.wait_for(Duration::from_secs(10), "pong", |_| {
        command_results(&sub).iter().any(|r| r["id"] == "last")
    });
    stop(daemon);
    let reviewed = incident_messages(&sub)
        .iter()
        .filter(|e| e["state"] == "reviewed")
        .count();
    assert_eq!(reviewed, 1, "applied once, not at every restart");
    let retained_answers = command_results(&sub)
        .iter()
        .filter(|r| r["id"] == "retained-1")
        .count();
    assert_eq!(retained_answers, 1);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("ignored a retained command"), "{log}");
    let reviews: i64 = rusqlite::Connection::open(dir.path().join("data/gridwatch.db"))
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM events WHERE state = 'reviewed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(reviews, 1);
}

/// Found by probing: `mqtt.tls.server_name` was parsed and never used.
#[test]
fn tls_server_name_is_the_name_verified_in_the_broker_certificate() {
    let certs = tempfile::tempdir().unwrap();
    // A broker reached at 127.0.0.1 whose certificate names only broker.test.
    let tls = make_ca_for(certs.path(), "named", "DNS:broker.test");
    let ca = tls.ca.clone();
    let broker = Broker::start(BrokerOptions {
        tls: Some(tls),
        ..Default::default()
    });
    let tls_port = broker.tls_port.unwrap();
    let sub = Subscriber::start(broker.port, &format!("{PREFIX}/+/incident"), None);
    let attempt = |server_name: Option<&str>| {
        let dir = tempfile::tempdir().unwrap();
        let name = server_name
            .map(|n| format!("server_name = \"{n}\"\n"))
            .unwrap_or_default();
        let tls = format!("[mqtt.tls]\nca_file = \"{}\"\n{name}", ca.display());
        let config = config_with(dir.path(), "camera_offline", &mqtt_table(tls_port, &tls));
        let r = run_ok(&mut replay_cmd(&config, "camera_offline", dir.path(), "4s"));
        (outbox_depth(dir.path()), r.stderr())
    };
    let (left, stderr) = attempt(Some("broker.test"));
    assert_eq!(left, 0, "delivered with the certificate's name:\n{stderr}");
    sub.wait_for(Duration::from_secs(20), "events over TLS", |m| m.len() >= 2);
    for wrong in [Some("evil.test"), None] {
        let (left, stderr) = attempt(wrong);
        assert_eq!(left, 2, "refused with {wrong:?}:\n{stderr}");
        let failures: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("MQTT connect failed"))
            .collect();
        assert_eq!(
            failures.len(),
            1,
            "one line per distinct failure:\n{stderr}"
        );
        assert!(
            failures[0].contains("not valid for name"),
            "{}",
            failures[0]
        );
    }
    assert_eq!(
        sub.messages.lock().unwrap().len(),
        2,
        "only the right name delivered"
    );
}
