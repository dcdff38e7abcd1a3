//! Property tests over hostile input: command payloads, config files and the event
//! serialisation round trip. `scripts/fuzz.sh` runs them with many more cases for a bounded
//! time; failures proptest finds are saved under `proptest-regressions/` and replayed by
//! every later run, so each becomes a regression test.

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

use crate::config::Config;
use crate::frame::BBox;
use crate::incidents::{IncidentEvent, IncidentLog};
use crate::publish::commands;
use crate::rules::{CloseReason, Kind, ObjectRef, RuleEvent, Signal, Transition};

const VALID_CONFIG: &str = include_str!("../config.example.toml");

proptest! {
    #[test]
    fn command_parser_never_panics_and_errors_are_one_line(
        name in prop::sample::select(vec!["ping", "review", "reboot", "", "review/extra"]),
        payload in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        if let Err(e) = commands::parse(name, &payload).map_err(|e| e.to_string()) {
            prop_assert!(!e.contains('\n'), "{e}");
            prop_assert!(!e.is_empty());
        }
    }

    #[test]
    fn command_parser_on_json_like_payloads(
        incident in "[0-9a-f-]{0,70}",
        verdict in prop::sample::select(vec!["confirmed", "dismissed", "maybe", ""]),
        reviewer in "\\PC{0,80}",
        note in "\\PC{0,50}",
        extra in prop::option::of("[a-z]{1,8}"),
    ) {
        let mut value = serde_json::json!({
            "incident_id": incident, "verdict": verdict, "reviewer": reviewer, "note": note,
        });
        if let Some(key) = &extra {
            value[key.as_str()] = serde_json::json!(1);
        }
        let text = value.to_string();
        match commands::parse("review", text.as_bytes()) {
            Ok(commands::Command::Review(r)) => {
                prop_assert!(!r.incident_id.trim().is_empty());
                prop_assert!(!r.reviewer.trim().is_empty());
                prop_assert!(matches!(verdict, "confirmed" | "dismissed"));
            }
            Ok(other) => prop_assert!(false, "not a review: {other:?}"),
            Err(e) => prop_assert!(!e.to_string().contains('\n')),
        }
    }

    #[test]
    fn config_loader_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
        if let Err(e) = Config::parse(&text, Path::new("fuzz.toml")) {
            let e = e.to_string();
            prop_assert!(e.starts_with("fuzz.toml"), "{e}");
            prop_assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn config_loader_on_damaged_real_configs(
        cut in 0usize..VALID_CONFIG.len(),
        insert in "[\\[\\]=\"#a-z0-9 .\\n{},-]{0,12}",
    ) {
        let cut = VALID_CONFIG.floor_char_boundary(cut);
        let text = format!("{}{insert}{}", &VALID_CONFIG[..cut], &VALID_CONFIG[cut..]);
        if let Err(e) = Config::parse(&text, Path::new("damaged.toml")) {
            let e = e.to_string();
            prop_assert!(e.starts_with("damaged.toml"), "{e}");
            prop_assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn events_survive_a_serialisation_round_trip(
        kind in prop::sample::select(vec![Kind::IllegalParking, Kind::FlyWireCharging, Kind::Crowding, Kind::CameraOffline, Kind::TwoWheelerInElevator, Kind::Intrusion, Kind::WrongWayEntry]),
        transition in prop::sample::select(vec![Transition::Open, Transition::Update, Transition::Close(CloseReason::Left), Transition::Close(CloseReason::Cleared)]),
        started in 0i64..4_000_000_000_000_000,
        duration in 0i64..100_000_000_000,
        count in 0u32..1000,
        confidence in 0f32..=1.0,
        label in "\\PC{1,20}",
        corners in prop::array::uniform4(0f32..=1.0),
        confirmed in any::<bool>(),
    ) {
        let config = Config::parse(
            "[site]\nid = \"s\"\nname = \"桃源\"\ngrid_code = \"1\"\n[[cameras]]\nid = \"c\"\nurl = \"x\"\n[[cameras.zones]]\nid = \"z\"\nname = \"消防通道\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]\narea_m2 = 10.0\n",
            Path::new("c.toml"),
        ).unwrap();
        let zones = vec![crate::zones::Zone::from_config(&config.cameras[0].zones[0], &crate::model::ModelManifest::resolve("yolox_nano", Path::new(".")).unwrap()).unwrap()];
        let mut log = IncidentLog::new(&config, &config.cameras[0], &zones);
        let change = RuleEvent {
            kind,
            zone: (kind != Kind::CameraOffline).then_some(0),
            key: (0, 1),
            transition,
            at_us: started + duration,
            started_at_us: started,
            ended_at_us: None,
            objects: vec![ObjectRef { track_id: 7, label: Arc::from(label.as_str()), score: confidence, bbox: BBox::from(corners) }],
            count,
            peak_count: count,
            confidence,
            confirmed,
            signals: vec![Signal::PersonCount],
            best_at_us: started,
        };
        let event = log.record(&change);
        let text = serde_json::to_string(&event).unwrap();
        let back: IncidentEvent = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, &event);
        prop_assert_eq!(serde_json::to_string(&back).unwrap(), text);
    }
}
