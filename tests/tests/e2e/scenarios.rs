//! The scenario suite (tests/scenarios/*): each clip replayed with the real model must raise
//! exactly the hand-annotated incidents (kind, zone, open and close times within tolerance,
//! status and evidence signals) and no other; every event must validate against the JSON
//! Schema of docs/schema/incident-v1.json.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use gridwatch_e2e::scenario::{self, Outcome};
use gridwatch_e2e::schema_errors;

fn check(name: &str) -> Outcome {
    let s = scenario::load(name);
    let out = tempfile::tempdir().unwrap();
    let outcome = scenario::run(&s, out.path());
    for event in &outcome.events {
        let errors = schema_errors(event);
        assert!(
            errors.is_empty(),
            "{name}: event violates the schema: {errors:?}\n{event}"
        );
    }
    assert!(
        outcome.problems.is_empty(),
        "{name}:\n  {}\nraised: {:#?}",
        outcome.problems.join("\n  "),
        outcome.observed
    );
    outcome
}

#[test]
fn parking_positive() {
    let o = check("parking_positive");
    // Opened, at least one periodic update while the car stands, closed.
    let states: Vec<&str> = o
        .events
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.first(), Some(&"opened"));
    assert_eq!(states.last(), Some(&"closed"));
    assert!(states.contains(&"updated"));
    let closed = o.events.last().unwrap();
    assert_eq!(closed["close_reason"], "left");
    assert!(closed["description"].as_str().unwrap().contains("已驶离"));
    assert_eq!(closed["category"]["minor"]["name"], "机动车乱停放");
    let seqs: Vec<u64> = o
        .events
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "seq counts up"
    );
}

#[test]
fn elevator_two_wheeler() {
    let o = check("elevator_two_wheeler");
    let opened = &o.events[0];
    assert_eq!(opened["state"], "opened");
    assert_eq!(opened["category"]["sub"]["name"], "电动自行车进电梯");
    assert!(
        opened["description"]
            .as_str()
            .unwrap()
            .contains("电动自行车进入电梯"),
        "{opened}"
    );
    assert_eq!(o.events.last().unwrap()["close_reason"], "left");
    // The bicycle that fills the car, not a fragment of it.
    let b: Vec<f64> = opened["objects"][0]["box_norm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!((b[2] - b[0]) * (b[3] - b[1]) > 0.5, "{opened}");
}

/// The same elevator picture with the bicycle painted over: the dog and the car roof are
/// in the zone's picture, and none is a two-wheeler.
#[test]
fn elevator_empty() {
    check("elevator_empty");
}

/// Without `membership = "overlap"` the elevator zone goes by the box's bottom-centre, as on
/// a ground camera: the bicycle's foot point lies on the door sill below the floor zone, so
/// nothing is raised. This is why an elevator camera needs the overlap mode.
#[test]
fn elevator_two_wheeler_needs_overlap_membership() {
    let s = scenario::load("elevator_two_wheeler");
    let out = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(s.dir.join("config.toml")).unwrap();
    assert!(text.contains("membership = \"overlap\"\n"));
    let config = out.path().join("bottom-centre.toml");
    std::fs::write(&config, text.replace("membership = \"overlap\"\n", "")).unwrap();
    let o = scenario::run_on(&s, out.path(), &config, &gridwatch_e2e::gridwatch_bin());
    assert!(o.observed.is_empty(), "{:#?}", o.observed);
}

#[test]
fn line_cyclist() {
    let o = check("line_cyclist");
    let labels: Vec<&str> = o
        .crossings
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert!(
        labels.iter().all(|l| ["bicycle", "motorcycle"].contains(l)),
        "{labels:?}"
    );
    assert!(
        o.events[0]["description"]
            .as_str()
            .unwrap()
            .contains("违规通行")
    );
}

/// People counted in and out of a lobby: three in from the entrance under the camera, three
/// out through the doorway at the right, each once, at a low bitrate.
#[test]
fn line_lobby_door() {
    let o = check("line_lobby_door");
    assert!(o.events.is_empty(), "counting only: no incident");
    assert!(
        o.crossings.iter().all(|c| c["label"] == "person"),
        "{:?}",
        o.crossings
    );
    // One person at a time: each goes in before going out.
    let directions: Vec<&str> = o
        .crossings
        .iter()
        .map(|c| c["direction"].as_str().unwrap())
        .collect();
    assert_eq!(directions, ["in", "out", "in", "out", "in", "out"]);
}

#[test]
fn parking_drive_through() {
    check("parking_drive_through");
}

#[test]
fn parking_top_down() {
    check("parking_top_down");
}

#[test]
fn charging_night() {
    let o = check("charging_night");
    let charging = o
        .events
        .iter()
        .find(|e| e["kind"] == "fly_wire_charging")
        .unwrap();
    assert!(
        charging["description"]
            .as_str()
            .unwrap()
            .contains("疑似电动自行车飞线充电")
    );
    assert!(
        charging["confidence"].as_f64().unwrap() <= 0.5,
        "suspected: at most half"
    );
}

#[test]
fn charging_noon() {
    check("charging_noon");
}

#[test]
fn cyclist_passing() {
    check("cyclist_passing");
}

#[test]
fn crowding() {
    let o = check("crowding");
    let closed = o.events.iter().find(|e| e["state"] == "closed").unwrap();
    let peak = closed["peak_count"].as_u64().unwrap();
    assert!(
        (4..=5).contains(&peak),
        "four copies of one person: peak {peak}"
    );
    assert!(
        closed["density_per_m2"].as_f64().is_some(),
        "zone has an area"
    );
}

#[test]
fn camera_offline() {
    let o = check("camera_offline");
    assert_eq!(o.events.len(), 2);
    assert_eq!(o.events[1]["close_reason"], "recovered");
    assert_eq!(o.events[0]["zone"], serde_json::Value::Null);
}

#[test]
fn parking_passers_by() {
    check("parking_passers_by");
}

#[test]
fn parking_partly_hidden() {
    // Half the car is hidden for three minutes: the stay is still one incident, with the
    // whole car's box (the place it stands), opened after the dwell from when it stopped.
    let o = check("parking_partly_hidden");
    let opened = o.events.iter().find(|e| e["state"] == "opened").unwrap();
    let b = opened["objects"][0]["box_norm"].as_array().unwrap();
    let width = b[2].as_f64().unwrap() - b[0].as_f64().unwrap();
    assert!(width > 0.15, "the whole car, not the visible half: {b:?}");
}

#[test]
fn parking_night_ir() {
    check("parking_night_ir");
}

#[test]
fn every_scenario_directory_has_a_test() {
    let names = scenario::all_names();
    let source = include_str!("scenarios.rs");
    for name in &names {
        assert!(
            source.contains(&format!("check(\"{name}\")")),
            "no test runs scenario {name}"
        );
    }
    assert!(names.len() >= 8);
}

#[test]
fn replay_is_deterministic_with_incidents() {
    let s = scenario::load("camera_offline");
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ra = scenario::run(&s, a.path());
    let rb = scenario::run(&s, b.path());
    assert_eq!(
        ra.events, rb.events,
        "same input, same events (ids included)"
    );
}

#[test]
fn the_examples_in_docs_events_md_validate_against_the_schema() {
    let doc = std::fs::read_to_string(gridwatch_e2e::repo_root().join("docs/events.md")).unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for block in doc.split("```json").skip(1) {
        let json = block.split("```").next().unwrap();
        let event: serde_json::Value = serde_json::from_str(json).expect("example is JSON");
        let errors = schema_errors(&event);
        assert!(
            errors.is_empty(),
            "example violates the schema: {errors:?}\n{json}"
        );
        kinds.insert(event["kind"].as_str().unwrap().to_string());
    }
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../../docs/schema/incident-v1.json")).unwrap();
    let every_kind: std::collections::BTreeSet<String> = schema["properties"]["kind"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, every_kind, "an example per kind");
}

#[test]
fn the_schema_rejects_what_it_must() {
    let doc = std::fs::read_to_string(gridwatch_e2e::repo_root().join("docs/events.md")).unwrap();
    let json = doc
        .split("```json")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let good: serde_json::Value = serde_json::from_str(json).unwrap();
    assert!(schema_errors(&good).is_empty());
    let mut bad = good.clone();
    bad["state"] = "closed".into(); // closed without closed_at
    assert!(!schema_errors(&bad).is_empty());
    let mut bad = good.clone();
    bad["extra"] = 1.into();
    assert!(!schema_errors(&bad).is_empty());
    let mut bad = good;
    bad["confidence"] = 1.5.into();
    assert!(!schema_errors(&bad).is_empty());
}

#[test]
fn motion_gating_gives_the_same_incidents_with_fewer_inferences() {
    // Known limit: the elevator clip shows the bicycle, perfectly still, from its first
    // frame; gated, the detector sees it in that one frame only, and a track needs several
    // detections to be confirmed, so the incident waits for the next motion. A bike wheeled
    // in moves; the scenario's still start does not.
    let names: Vec<String> = scenario::all_names()
        .into_iter()
        .filter(|name| name != "elevator_two_wheeler")
        .collect();
    // Two replays at a time: this test replays the whole suite again, and as the last long
    // test of the run it would otherwise leave a core idle for minutes. A failure in either
    // thread fails the test when the scope ends.
    let next = AtomicUsize::new(0);
    let saved = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while let Some(name) = names.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let s = scenario::load(name);
                    let out = tempfile::tempdir().unwrap();
                    let gated = scenario::run_with(&s, out.path(), "motion = { enabled = true }");
                    assert!(
                        gated.problems.is_empty(),
                        "{name} with motion gating:\n  {}\nraised: {:#?}",
                        gated.problems.join("\n  "),
                        gated.observed
                    );
                    saved.fetch_add(
                        gated.summary["frames_gated"].as_u64().unwrap(),
                        Ordering::SeqCst,
                    );
                }
            });
        }
    });
    let saved = saved.into_inner();
    assert!(
        saved > 1000,
        "the static scenes skip most inferences: {saved}"
    );
}

#[test]
fn keyframe_only_decoding_decodes_keyframes_and_still_finds_the_bicycle() {
    let s = scenario::load("charging_night");
    let out = tempfile::tempdir().unwrap();
    let full = scenario::run(&s, out.path());
    let keyframes = scenario::run_with(&s, out.path(), "decode = \"keyframes\"");
    let decoded = keyframes.summary["frames_decoded"].as_u64().unwrap();
    // 300 s at 5 fps with a GOP of 50 frames: 30 keyframes.
    assert!((29..=32).contains(&decoded), "decoded {decoded} frames");
    assert_eq!(full.summary["frames_decoded"], 1500);
    let kinds: Vec<&str> = keyframes.observed.iter().map(|o| o.kind.as_str()).collect();
    assert!(kinds.contains(&"fly_wire_charging"), "{kinds:?}");
}

#[test]
fn keyframes_of_an_h265_1080p_stream_still_see_the_small_far_bicycle() {
    // The slow rule's cheap path at full detail: keyframes only (one every 10 s) of the
    // 1080p H.265 stream, the porch seen through its detection region.
    let s = scenario::load("charging_night_1080p_h265");
    let out = tempfile::tempdir().unwrap();
    let keyframes = scenario::run_with(&s, out.path(), "decode = \"keyframes\"");
    let decoded = keyframes.summary["frames_decoded"].as_u64().unwrap();
    assert!((29..=32).contains(&decoded), "decoded {decoded} frames");
    let charging: Vec<_> = keyframes
        .observed
        .iter()
        .filter(|o| o.kind == "fly_wire_charging")
        .collect();
    // Opened at the first keyframe after the 120 s dwell: within one GOP of the truth.
    assert_eq!(charging.len(), 1, "{:#?}", keyframes.observed);
    assert!(
        (120.0..=131.0).contains(&charging[0].opened_at),
        "{:#?}",
        charging
    );
}

#[test]
fn a_hardware_decoder_the_box_lacks_falls_back_to_software_with_the_same_incidents() {
    // This machine has no GPU, VA-API device or V4L2 decoder: the configured hwaccel
    // cannot open, the camera decodes in software and says so, and nothing else changes.
    let s = scenario::load("parking_drive_through");
    let out = tempfile::tempdir().unwrap();
    for name in ["vaapi", "v4l2m2m"] {
        let outcome = scenario::run_with(&s, out.path(), &format!("hwaccel = \"{name}\""));
        assert!(
            outcome.problems.is_empty(),
            "{name}: {:?}",
            outcome.problems
        );
        assert!(
            outcome.log.contains("hardware decoding unavailable")
                && outcome.log.contains("decoding in software"),
            "{name}: {}",
            outcome.log
        );
        assert_eq!(outcome.summary["decoder"], "h264 (software)");
    }
}

#[test]
fn parking_far_1080p() {
    check("parking_far_1080p");
    // The same clip letterboxed whole: the car is ~19 px high at the model, never a track.
    full_picture_misses("parking_far_1080p");
}

#[test]
fn keyframes_of_the_far_parking_h265_stream_still_open_the_incident_in_time() {
    // Illegal parking is a slow rule: a keyframe every 6.25 s of the 1080p H.265 main stream,
    // seen through the aisle's region, opens and closes it within a GOP or two of the truth.
    let s = scenario::load("parking_far_1080p");
    let out = tempfile::tempdir().unwrap();
    let keyframes = scenario::run_with(&s, out.path(), "decode = \"keyframes\"");
    assert!(
        keyframes.problems.is_empty(),
        "{:?}\n{:#?}",
        keyframes.problems,
        keyframes.observed
    );
    let decoded = keyframes.summary["frames_decoded"].as_u64().unwrap();
    assert!(
        decoded < 300,
        "keyframes only: decoded {decoded} of 2320 frames"
    );
}

#[test]
fn charging_night_1080p_h265() {
    check("charging_night_1080p_h265");
    full_picture_misses("charging_night_1080p_h265");
}

#[test]
fn crowding_small_1080p() {
    let o = check("crowding_small_1080p");
    let closed = o.events.iter().find(|e| e["state"] == "closed").unwrap();
    let peak = closed["peak_count"].as_u64().unwrap();
    assert!(
        (4..=5).contains(&peak),
        "four copies of one person: peak {peak}"
    );
    // Letterboxed whole, a person is ~20 px high: no crowd at all.
    full_picture_misses("crowding_small_1080p");
}

#[test]
fn parking_swaying() {
    let o = check("parking_swaying");
    // The sway reaches the tracker: the parked car's detected centre wanders by more than
    // a tenth of its width, yet it stays one stay and one incident.
    let centres: Vec<(f64, f64)> = o
        .detections
        .iter()
        .filter(|r| (10.0..240.0).contains(&r["pts"].as_f64().unwrap()))
        .flat_map(|r| r["detections"].as_array().unwrap().clone())
        .filter(|d| d["label"] == "car" && d["box_norm"][0].as_f64().unwrap() < 0.3)
        .map(|d| {
            let b: Vec<f64> = d["box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0)
        })
        .collect();
    assert!(centres.len() > 300, "the car is seen: {}", centres.len());
    let spread = |f: fn(&(f64, f64)) -> f64| {
        let values = centres.iter().map(f);
        values.clone().fold(f64::MIN, f64::max) - values.fold(f64::MAX, f64::min)
    };
    assert!(
        spread(|c| c.0) >= 8.0 && spread(|c| c.1) >= 8.0,
        "sway x {} y {}",
        spread(|c| c.0),
        spread(|c| c.1)
    );
}

/// With `regions = "full"` (one pass of the whole picture, as before detection regions) the
/// scenario's small objects are not seen: no incident at all. Proves the scenario needs
/// the regions it tests.
fn full_picture_misses(name: &str) {
    let s = scenario::load(name);
    let out = tempfile::tempdir().unwrap();
    let outcome = scenario::run_with(&s, out.path(), scenario::WHOLE_PICTURE);
    assert!(
        outcome.observed.is_empty(),
        "{name} with regions = \"full\": {:#?}",
        outcome.observed
    );
}
