//! Incident events for other modules' unit tests (the store's, delivery's, evidence's).

use std::path::Path;

use super::{IncidentEvent, IncidentLog};
use crate::config::Config;
use crate::rules::{Kind, RuleEvent, Transition};

/// The `opened` event of a camera-offline incident on camera `cam` of site `s`.
pub(crate) fn opened() -> IncidentEvent {
    let config = Config::parse(
        "[site]\nid = \"s\"\ngrid_code = \"1\"\n[[cameras]]\nid = \"cam\"\nurl = \"x\"\n",
        Path::new("c.toml"),
    )
    .expect("a valid test config");
    let mut log = IncidentLog::new(&config, &config.cameras[0], &[]);
    log.record(&RuleEvent {
        kind: Kind::CameraOffline,
        zone: None,
        key: (0, 0),
        transition: Transition::Open,
        at_us: 1_764_000_000_000_000,
        started_at_us: 1_764_000_000_000_000,
        ended_at_us: None,
        objects: Vec::new(),
        count: 0,
        peak_count: 0,
        confidence: 1.0,
        confirmed: true,
        signals: Vec::new(),
        best_at_us: 1_764_000_000_000_000,
    })
}
