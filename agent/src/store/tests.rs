use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::config::Config;
use crate::frame::BBox;
use crate::incidents::{IncidentLog, Verdict};
use crate::rules::{CloseReason, Kind, ObjectRef, RuleEvent, Signal, Transition};

const TOPIC: &str = "gridwatch/v1/site/cam/incident";

fn config() -> Config {
    Config::parse(
        "[site]\nid = \"site\"\ngrid_code = \"1\"\n[[cameras]]\nid = \"cam\"\nurl = \"x\"\n",
        Path::new("c.toml"),
    )
    .unwrap()
}

fn log() -> IncidentLog {
    let c = config();
    IncidentLog::new(&c, &c.cameras[0], &[])
}

fn change(key: u64, transition: Transition, at_s: i64) -> RuleEvent {
    RuleEvent {
        kind: Kind::CameraOffline,
        zone: None,
        key: (0, key),
        transition,
        at_us: 1_764_000_000_000_000 + at_s * 1_000_000,
        started_at_us: 1_764_000_000_000_000,
        ended_at_us: None,
        objects: vec![ObjectRef {
            track_id: 1,
            label: Arc::from("car"),
            score: 0.5,
            bbox: BBox::default(),
        }],
        count: 0,
        peak_count: 0,
        confidence: 1.0,
        confirmed: true,
        signals: vec![Signal::NoFrames],
        best_at_us: 1_764_000_000_000_000,
    }
}

fn open_store(dir: &Path, limits: OutboxLimits) -> Store {
    Store::open(dir, limits).unwrap()
}

#[test]
fn migrations_apply_once_and_are_versioned() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), OutboxLimits::default());
    assert_eq!(store.schema_version().unwrap(), 5);
    drop(store);
    let store = open_store(dir.path(), OutboxLimits::default());
    assert_eq!(store.schema_version().unwrap(), 5);
    let journal: String = store
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    let sync: i64 = store
        .conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2, "FULL");
}

#[test]
fn newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), OutboxLimits::default());
    store
        .conn
        .execute("INSERT INTO schema_version (version) VALUES (99)", [])
        .unwrap();
    drop(store);
    let err = Store::open(dir.path(), OutboxLimits::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[test]
fn events_survive_reopen_in_order_and_are_deleted_on_ack() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log();
    let mut store = open_store(dir.path(), OutboxLimits::default());
    let mut events: Vec<_> = [
        change(0, Transition::Open, 0),
        change(0, Transition::Update, 60),
        change(0, Transition::Close(CloseReason::Recovered), 90),
    ]
    .iter()
    .map(|c| log.record(c))
    .collect();
    for e in &mut events {
        store.record(e, Some(TOPIC)).unwrap();
    }
    drop(store);
    let mut store = open_store(dir.path(), OutboxLimits::default());
    let rows = store.outbox_after(0, 10).unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
    let expected: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, expected, "all three, in order");
    assert_eq!(store.outbox_stats().unwrap().events, 3);
    store.outbox_delete(&[rows[0].id, rows[1].id]).unwrap();
    let rest = store.outbox_after(0, 10).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(store.outbox_stats().unwrap().events, 1);
    // Recording the same event twice (a replay after a crash) does not duplicate it.
    store.record(&mut events[2].clone(), Some(TOPIC)).unwrap();
    assert_eq!(store.outbox_after(0, 10).unwrap().len(), 1);
    let incident = store.incident(&events[0].incident_id).unwrap().unwrap();
    assert_eq!(incident["state"], "closed");
    assert_eq!(store.events_of(&events[0].incident_id).unwrap().len(), 3);
}

#[test]
fn without_mqtt_events_are_stored_but_not_queued() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open_store(dir.path(), OutboxLimits::default());
    let mut e = log().record(&change(0, Transition::Open, 0));
    store.record(&mut e, None).unwrap();
    assert!(store.outbox_after(0, 10).unwrap().is_empty());
    assert!(store.incident(&e.incident_id).unwrap().is_some());
}

#[test]
fn over_the_bound_oldest_updates_go_first_and_never_opened_or_closed() {
    let dir = tempfile::tempdir().unwrap();
    let limits = OutboxLimits {
        max_events: 4,
        max_bytes: u64::MAX,
    };
    let mut store = open_store(dir.path(), limits);
    let mut log = log();
    let mut sequence = vec![change(0, Transition::Open, 0)];
    for i in 1..=5 {
        sequence.push(change(0, Transition::Update, i * 60));
    }
    sequence.push(change(0, Transition::Close(CloseReason::Recovered), 400));
    sequence.push(change(1, Transition::Open, 500));
    sequence.push(change(1, Transition::Close(CloseReason::Recovered), 600));
    for c in &sequence {
        store.record(&mut log.record(c), Some(TOPIC)).unwrap();
    }
    let states: Vec<String> = store
        .outbox_after(0, 100)
        .unwrap()
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.payload).unwrap();
            v["state"].as_str().unwrap().to_string()
        })
        .collect();
    // 9 events, bound 4: all five updates dropped, and still over the bound with only
    // opened/closed left, which are kept.
    assert_eq!(states, ["opened", "closed", "opened", "closed"]);
    let stats = store.outbox_stats().unwrap();
    assert_eq!(stats.dropped_total, 5);
    drop(store);
    let store = open_store(dir.path(), limits);
    assert_eq!(
        store.outbox_stats().unwrap().dropped_total,
        5,
        "persistent counter"
    );
}

#[test]
fn byte_bound_drops_updates_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = log();
    let mut open = log.record(&change(0, Transition::Open, 0));
    let one_event = serde_json::to_string(&open).unwrap().len() as u64;
    let limits = OutboxLimits {
        max_events: 1000,
        max_bytes: one_event * 3,
    };
    let mut store = open_store(dir.path(), limits);
    store.record(&mut open, Some(TOPIC)).unwrap();
    for i in 1..=5 {
        store
            .record(
                &mut log.record(&change(0, Transition::Update, i * 60)),
                Some(TOPIC),
            )
            .unwrap();
    }
    let stats = store.outbox_stats().unwrap();
    assert!(stats.bytes <= one_event * 3 + 64, "{stats:?}");
    assert!(stats.dropped_total >= 3);
}

#[test]
fn review_adds_a_reviewed_event_to_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open_store(dir.path(), OutboxLimits::default());
    let mut log = log();
    let mut opened = log.record(&change(0, Transition::Open, 0));
    store.record(&mut opened, Some(TOPIC)).unwrap();
    let offset = FixedOffset::east_opt(8 * 3600).unwrap();
    let request = ReviewRequest {
        incident_id: &opened.incident_id,
        verdict: Verdict::Dismissed,
        reviewer: "王网格员",
        note: "有停车证",
        at_us: 1_764_000_100_000_000,
    };
    let reviewed = store.review(&request, offset, Some(TOPIC)).unwrap();
    assert_eq!(reviewed["state"], "reviewed");
    assert_eq!(reviewed["seq"], 1);
    assert_eq!(reviewed["review"]["verdict"], "dismissed");
    assert_eq!(reviewed["review"]["reviewer"], "王网格员");
    assert_ne!(reviewed["event_id"], opened.event_id.as_str());
    let rows = store.outbox_after(0, 10).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].event_id, reviewed["event_id"].as_str().unwrap());
    let unknown = ReviewRequest {
        incident_id: "nope",
        verdict: Verdict::Confirmed,
        reviewer: "x",
        note: "",
        at_us: 0,
    };
    let err = store.review(&unknown, offset, Some(TOPIC)).unwrap_err();
    assert!(matches!(err, StoreError::UnknownIncident(_)));
    // A later lifecycle event is renumbered after the review.
    let mut update = log.record(&change(0, Transition::Update, 120));
    assert_eq!(
        update.seq, 1,
        "the incident log does not know about reviews"
    );
    store.record(&mut update, Some(TOPIC)).unwrap();
    assert_eq!(update.seq, 2);
    let seqs: Vec<u64> = store
        .events_of(&opened.incident_id)
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [0, 1, 2]);
}

#[test]
fn incidents_left_open_by_a_previous_run_are_closed_once_as_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let offset = FixedOffset::east_opt(8 * 3600).unwrap();
    let mut log = log();
    {
        let mut store = open_store(dir.path(), OutboxLimits::default());
        let mut first = log.record(&change(0, Transition::Open, 0));
        store.record(&mut first, Some(TOPIC)).unwrap();
        let mut second = log.record(&change(1, Transition::Open, 5));
        store.record(&mut second, Some(TOPIC)).unwrap();
        let mut done = log.record(&change(1, Transition::Close(CloseReason::Recovered), 9));
        store.record(&mut done, Some(TOPIC)).unwrap();
    }
    // The next run: one incident is still open in the store.
    let mut store = open_store(dir.path(), OutboxLimits::default());
    let open = |store: &Store| {
        store
            .list_incidents(&IncidentFilter {
                state: Some("open"),
                limit: 10,
                ..Default::default()
            })
            .unwrap()
            .0
    };
    assert_eq!(open(&store), 1);
    let at = 1_764_000_600_000_000;
    let closed = store
        .close_open_incidents("cam", CloseReason::Restarted, at, offset, Some(TOPIC))
        .unwrap();
    assert_eq!(closed.len(), 1);
    let event = &closed[0];
    assert_eq!(event["state"], "closed");
    assert_eq!(event["close_reason"], "restarted");
    assert_eq!(event["seq"], 1);
    assert!(event["closed_at"].as_str().unwrap().ends_with("+08:00"));
    assert!(event["description"].as_str().unwrap().contains("重启"));
    assert_eq!(open(&store), 0);
    // Published like any other event, after the opened one.
    let rows = store.outbox_after(0, 10).unwrap();
    assert_eq!(
        rows.last().unwrap().event_id,
        event["event_id"].as_str().unwrap()
    );
    // A second start finds nothing left to close.
    let again = store
        .close_open_incidents("cam", CloseReason::Restarted, at + 1, offset, None)
        .unwrap();
    assert!(again.is_empty());
    // The schema accepts the new close reason.
    let schema: Value =
        serde_json::from_str(include_str!("../../../docs/schema/incident-v1.json")).unwrap();
    let reasons = &schema["properties"]["close_reason"]["enum"];
    assert!(reasons.as_array().unwrap().contains(&"restarted".into()));
}

#[test]
fn a_reconfigured_camera_closes_only_its_own_incidents() {
    let dir = tempfile::tempdir().unwrap();
    let offset = FixedOffset::east_opt(8 * 3600).unwrap();
    let mut store = open_store(dir.path(), OutboxLimits::default());
    let mut log = log();
    let mut ours = log.record(&change(0, Transition::Open, 0));
    store.record(&mut ours, None).unwrap();
    let closed = store
        .close_open_incidents("other", CloseReason::Reconfigured, 1, offset, None)
        .unwrap();
    assert!(closed.is_empty(), "another camera's reload leaves it open");
    let closed = store
        .close_open_incidents("cam", CloseReason::Reconfigured, 1, offset, None)
        .unwrap();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0]["close_reason"], "reconfigured");
}

#[test]
fn an_evidence_error_carries_over_to_later_events_like_files_do() {
    let dir = tempfile::tempdir().unwrap();
    let offset = FixedOffset::east_opt(8 * 3600).unwrap();
    let mut store = open_store(dir.path(), OutboxLimits::default());
    let mut log = log();
    let mut opened = log.record(&change(0, Transition::Open, 0));
    store.record(&mut opened, None).unwrap();
    store
        .attach_evidence(
            &opened.incident_id,
            &[],
            Some("not enough free space"),
            1,
            offset,
            None,
        )
        .unwrap();
    let mut update = log.record(&change(0, Transition::Update, 60));
    store.record(&mut update, None).unwrap();
    assert_eq!(
        update.evidence.error.as_deref(),
        Some("not enough free space")
    );
    let last = store.incident(&opened.incident_id).unwrap().unwrap();
    assert_eq!(last["evidence"]["error"], "not enough free space");
}

#[test]
fn the_handle_tells_whether_its_store_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let handle = Handle::open(dir.path(), OutboxLimits::default()).unwrap();
    assert!(!handle.is_locked());
    let held = handle.lock();
    assert!(handle.is_locked());
    drop(held);
    assert!(!handle.is_locked());
}

#[test]
fn evidence_rows_and_their_updated_event_are_written_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let offset = FixedOffset::east_opt(8 * 3600).unwrap();
    let mut store = open_store(dir.path(), OutboxLimits::default());
    let mut opened = log().record(&change(0, Transition::Open, 0));
    store.record(&mut opened, Some(TOPIC)).unwrap();
    let files =
        [("snapshot", "a/snapshot.jpg"), ("clip", "a/clip.mp4")].map(|(kind, path)| EvidenceFile {
            kind: kind.into(),
            path: path.into(),
            url: None,
            bytes: 10,
            sha256: String::new(),
        });
    // The second row's write fails (a crash or a full disk between the rows): the event
    // that announces both must not be left behind pointing at rows that do not exist.
    store
        .conn
        .execute_batch(
            "CREATE TEMP TRIGGER fail_the_clip BEFORE INSERT ON evidence WHEN NEW.kind = 'clip'
             BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END;",
        )
        .unwrap();
    let failed = store.attach_evidence(&opened.incident_id, &files, None, 1, offset, Some(TOPIC));
    assert!(failed.is_err());
    assert!(
        store.live_evidence().unwrap().is_empty(),
        "no row of the two"
    );
    assert_eq!(
        store.events_of(&opened.incident_id).unwrap().len(),
        1,
        "no updated event"
    );
    assert_eq!(
        store.outbox_after(0, 10).unwrap().len(),
        1,
        "nothing queued"
    );
    let last = store.incident(&opened.incident_id).unwrap().unwrap();
    assert_eq!(last["state"], "opened");

    // Once the disk takes writes again, the same call stores both rows and the event.
    store
        .conn
        .execute_batch("DROP TRIGGER fail_the_clip;")
        .unwrap();
    let updated = store
        .attach_evidence(&opened.incident_id, &files, None, 1, offset, Some(TOPIC))
        .unwrap();
    assert_eq!(updated["evidence"]["files"].as_array().unwrap().len(), 2);
    assert_eq!(store.live_evidence().unwrap().len(), 2);
    assert_eq!(store.events_of(&opened.incident_id).unwrap().len(), 2);
    assert_eq!(store.outbox_after(0, 10).unwrap().len(), 2);
}

#[test]
fn crossings_are_counted_per_line_direction_and_class() {
    use crate::rules::line::{Crossed, Crossing};
    let dir = tempfile::tempdir().unwrap();
    let mut store = open_store(dir.path(), OutboxLimits::default());
    let crossing = |direction, label: &str, at_us| Crossing {
        line: std::sync::Arc::from("gate"),
        direction,
        track_id: 7,
        label: std::sync::Arc::from(label),
        at_us,
    };
    for c in [
        crossing(Crossed::In, "person", 10),
        crossing(Crossed::In, "person", 20),
        crossing(Crossed::Out, "person", 30),
        crossing(Crossed::In, "car", 40),
        crossing(Crossed::In, "car", 100),
    ] {
        store.record_crossing("door", &c).unwrap();
    }
    let counts: Vec<(String, String, u64)> = store
        .crossing_counts(0, 100)
        .unwrap()
        .into_iter()
        .map(|c| (c.direction, c.label, c.count))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("in".into(), "car".into(), 1),
            ("in".into(), "person".into(), 2),
            ("out".into(), "person".into(), 1),
        ]
    );
}

#[test]
fn a_daily_summary_is_queued_retained_once_per_day_with_its_day() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open_store(dir.path(), OutboxLimits::default());
    assert_eq!(store.last_summarised_day().unwrap(), None);
    let topic = "gridwatch/v1/site/stats/daily";
    assert!(
        store
            .queue_daily_summary(20_000, topic, "{\"day\":1}", 5)
            .unwrap()
    );
    // The same day again, or an earlier one, queues nothing (a restart, a clock set back).
    assert!(
        !store
            .queue_daily_summary(20_000, topic, "{\"day\":1}", 6)
            .unwrap()
    );
    assert!(
        !store
            .queue_daily_summary(19_999, topic, "{\"day\":0}", 6)
            .unwrap()
    );
    assert!(
        store
            .queue_daily_summary(20_001, topic, "{\"day\":2}", 7)
            .unwrap()
    );
    assert_eq!(store.last_summarised_day().unwrap(), Some(20_001));
    let rows = store.outbox_after(0, 10).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.retain && r.topic == topic));
    assert_eq!(rows[1].payload, b"{\"day\":2}");
    assert_eq!(store.outbox_stats().unwrap().events, 2);
    // Survives a restart, and incident events stay unretained.
    drop(store);
    let store = open_store(dir.path(), OutboxLimits::default());
    assert_eq!(store.last_summarised_day().unwrap(), Some(20_001));
    assert_eq!(store.outbox_stats().unwrap().events, 2);
}

#[test]
fn crossings_count_per_local_day() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open_store(dir.path(), OutboxLimits::default());
    let crossing = |at_us: i64, direction| crate::rules::line::Crossing {
        line: Arc::from("door"),
        direction,
        track_id: 1,
        label: Arc::from("person"),
        at_us,
    };
    // 2026-12-06T15:59:59Z is the 6th at 23:59:59 in +08:00; one second later, the 7th.
    let before_midnight = 1_796_572_799_000_000;
    use crate::rules::line::Crossed;
    store
        .record_crossing("cam", &crossing(before_midnight, Crossed::In))
        .unwrap();
    store
        .record_crossing("cam", &crossing(before_midnight + 1_000_000, Crossed::In))
        .unwrap();
    store
        .record_crossing("cam", &crossing(before_midnight + 2_000_000, Crossed::Out))
        .unwrap();
    let counts = store.crossing_day_counts(0, i64::MAX, 8 * 3600).unwrap();
    let days: Vec<(i64, &str, u64)> = counts
        .iter()
        .map(|c| (c.day, c.direction.as_str(), c.count))
        .collect();
    let sixth = before_midnight.div_euclid(86_400_000_000);
    assert_eq!(
        days,
        [
            (sixth, "in", 1),
            (sixth + 1, "in", 1),
            (sixth + 1, "out", 1)
        ]
    );
    // In UTC all three are on the 6th.
    let utc = store.crossing_day_counts(0, i64::MAX, 0).unwrap();
    assert!(utc.iter().all(|c| c.day == sixth));
}

/// The web's statistics read on their own connection: a writer in the middle of a
/// transaction (the inference workers recording, retention marking rows) does not hold them
/// up, and they see what is committed.
#[test]
fn statistics_read_while_the_store_is_writing() {
    use crate::store::{StatsReader, StatsSource};
    let dir = tempfile::tempdir().unwrap();
    let mut store = open_store(dir.path(), OutboxLimits::default());
    let crossing = |at_us| crate::rules::line::Crossing {
        line: Arc::from("door"),
        direction: crate::rules::line::Crossed::Out,
        track_id: 1,
        label: Arc::from("person"),
        at_us,
    };
    store.record_crossing("cam", &crossing(1_000_000)).unwrap();
    store.conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    store.record_crossing("cam", &crossing(2_000_000)).unwrap();
    let reader = StatsReader::open(store.path()).unwrap();
    let started = std::time::Instant::now();
    let counts = reader.crossing_day_counts(0, i64::MAX, 0).unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "did not wait"
    );
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[0].count, 1, "only the committed crossing");
    assert!(reader.incident_facts(0, i64::MAX).unwrap().is_empty());
    store.conn.execute_batch("COMMIT").unwrap();
    assert_eq!(
        reader.crossing_day_counts(0, i64::MAX, 0).unwrap()[0].count,
        2
    );
}
