//! The incident event, schema v1: what goes to the grid platform (MQTT payload) and into
//! `replay`'s JSON Lines. docs/events.md explains every field; docs/schema/incident-v1.json
//! is its JSON Schema, checked against real output by the tests.

use serde::{Deserialize, Serialize};

use crate::config::{Category, Location};
use crate::rules::{CloseReason, Kind, ObjectRef, Signal};

pub const SCHEMA: &str = "gridwatch.incident.v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventState {
    Opened,
    Updated,
    Closed,
    /// Station staff confirmed or dismissed the incident (`review` says how).
    Reviewed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Confirmed,
    Dismissed,
}

/// The station's verdict on an incident.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Review {
    pub verdict: Verdict,
    pub reviewer: String,
    pub note: String,
    pub reviewed_at: String,
}

/// How sure gridwatch is: `suspected` when the evidence is circumstantial (a two-wheeler
/// standing in a corridor at night, with no cable seen), `confirmed` when the model saw the
/// offence itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Suspected,
    Confirmed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SiteRef {
    pub id: String,
    pub name: String,
    /// 网格编码.
    pub grid_code: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CameraRef {
    pub id: String,
    pub name: String,
    pub location: Option<Location>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ZoneRef {
    pub id: String,
    pub name: String,
    pub area_m2: Option<f32>,
}

/// A stored evidence file (snapshot, thumbnail, clip); filled in by the evidence stage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvidenceFile {
    pub kind: String,
    pub path: String,
    pub url: Option<String>,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Evidence {
    pub signals: Vec<Signal>,
    pub files: Vec<EvidenceFile>,
    /// Why evidence could not be stored (a full disk, say); the incident stands regardless.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IncidentEvent {
    pub schema: String,
    pub event_id: String,
    pub incident_id: String,
    /// 0 for `opened`, then one more per event of the same incident.
    pub seq: u32,
    pub state: EventState,
    pub kind: Kind,
    pub status: Status,
    pub site: SiteRef,
    pub camera: CameraRef,
    pub zone: Option<ZoneRef>,
    /// 大类 / 中类 / 小类 of the platform.
    pub category: Category,
    /// zh-CN, generated from the facts.
    pub description: String,
    /// When the situation began (the car stopped, the crowd formed, the camera went silent).
    pub started_at: String,
    /// When gridwatch raised the incident.
    pub opened_at: String,
    /// When this event happened.
    pub event_at: String,
    pub closed_at: Option<String>,
    /// The best moment for a snapshot (highest confidence, peak count).
    pub best_frame_at: String,
    pub duration_s: f64,
    pub count: u32,
    pub peak_count: u32,
    pub density_per_m2: Option<f32>,
    pub confidence: f32,
    pub objects: Vec<ObjectRef>,
    pub evidence: Evidence,
    pub close_reason: Option<CloseReason>,
    /// Set on `reviewed` events.
    pub review: Option<Review>,
}
