//! Dismissal memory: when station staff dismiss an incident (a car that has a parking
//! permit), new incidents of the same kind in the same zone for an object at the same place
//! are suppressed for a while, so the station is not asked about it every day. Suppressions
//! are stored (they survive restarts), expire, and are listed by the API with their hits.
//!
//! The rows are the store's; [`Suppressions`] is their in-memory index for the analytics of
//! every camera, filled from the store at start ([`super::Handle::load_suppressions`]) and
//! by each dismissal ([`super::Handle::review`]).

use std::sync::{OnceLock, RwLock};

use serde::Serialize;
use serde_json::Value;

use super::Handle;
use crate::frame::BBox;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Suppression {
    pub id: i64,
    /// The dismissed incident it comes from.
    pub incident_id: String,
    pub camera_id: String,
    pub zone_id: Option<String>,
    pub kind: String,
    /// Where the dismissed object stood (normalised); None for zone-level kinds (crowding).
    pub box_norm: Option<BBox>,
    pub until_us: i64,
    /// New incidents it has suppressed.
    pub hits: u64,
}

/// The active suppressions, shared by the analytics of every camera and the review paths.
#[derive(Debug)]
pub struct Suppressions {
    list: RwLock<Vec<Suppression>>,
    iou: f32,
    memory_us: i64,
    /// Where hits are counted, so they survive restarts.
    store: OnceLock<Handle>,
}

impl Suppressions {
    /// The memory holding `active` (the store's rows not yet expired).
    pub fn new(active: Vec<Suppression>, iou: f32, memory_us: i64) -> Suppressions {
        Suppressions {
            list: RwLock::new(active),
            iou,
            memory_us,
            store: OnceLock::new(),
        }
    }

    /// Counts hits in `store` from now on.
    pub(super) fn persist_hits(&self, store: Handle) {
        let _ = self.store.set(store);
    }

    /// The row a dismissal of `incident` (its latest event) adds, not stored yet (id 0).
    pub(super) fn dismissal(&self, incident: &Value, now_us: i64) -> Suppression {
        let box_norm = incident["objects"][0]["box_norm"]
            .as_array()
            .filter(|a| a.len() == 4)
            .map(|a| {
                BBox::from(std::array::from_fn::<f32, 4, _>(|i| {
                    a[i].as_f64().unwrap_or(0.0) as f32
                }))
            });
        let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
        Suppression {
            id: 0,
            incident_id: text(&incident["incident_id"]),
            camera_id: text(&incident["camera"]["id"]),
            zone_id: incident["zone"]["id"].as_str().map(String::from),
            kind: text(&incident["kind"]),
            box_norm,
            until_us: now_us + self.memory_us,
            hits: 0,
        }
    }

    /// Adds a stored row to the memory.
    pub(super) fn remember(&self, stored: Suppression) {
        if let Ok(mut list) = self.list.write() {
            list.push(stored);
        }
    }

    /// Does an incident about to open match a dismissed one? Counts the hit.
    pub fn matches(
        &self,
        camera: &str,
        zone: Option<&str>,
        kind: &str,
        bbox: Option<&BBox>,
        at_us: i64,
    ) -> Option<Suppression> {
        let mut list = self.list.write().ok()?;
        let found = list.iter_mut().find(|s| {
            s.camera_id == camera
                && s.zone_id.as_deref() == zone
                && s.kind == kind
                && at_us < s.until_us
                && match (&s.box_norm, bbox) {
                    (Some(a), Some(b)) => a.iou(b) >= self.iou,
                    (None, _) => true,
                    (Some(_), None) => false,
                }
        })?;
        found.hits += 1;
        let hit = found.clone();
        drop(list);
        if let Some(store) = self.store.get()
            && let Err(e) = store.count_suppression_hit(hit.id)
        {
            tracing::warn!("cannot count the suppression's hit: {e}");
        }
        Some(hit)
    }

    pub fn active(&self, now_us: i64) -> Vec<Suppression> {
        self.list
            .read()
            .map(|l| l.iter().filter(|s| s.until_us > now_us).cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_same_place_kind_and_zone_until_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Handle::open(dir.path(), Default::default()).unwrap();
        let memory = store.load_suppressions(0.5, 1_000_000, 0).unwrap();
        let event = serde_json::json!({
            "incident_id": "i1", "camera": {"id": "cam"}, "zone": {"id": "lane"},
            "kind": "illegal_parking", "objects": [{"box_norm": [0.1, 0.1, 0.3, 0.3]}],
        });
        let mut dismissed = memory.dismissal(&event, 0);
        dismissed.id = store.lock().insert_suppression(&dismissed, 0).unwrap();
        memory.remember(dismissed);
        let same = BBox {
            x1: 0.11,
            y1: 0.1,
            x2: 0.31,
            y2: 0.3,
        };
        let elsewhere = BBox {
            x1: 0.6,
            y1: 0.6,
            x2: 0.8,
            y2: 0.8,
        };
        assert!(
            memory
                .matches("cam", Some("lane"), "illegal_parking", Some(&same), 10)
                .is_some()
        );
        assert!(
            memory
                .matches("cam", Some("lane"), "illegal_parking", Some(&elsewhere), 10)
                .is_none()
        );
        assert!(
            memory
                .matches("cam", Some("other"), "illegal_parking", Some(&same), 10)
                .is_none()
        );
        assert!(
            memory
                .matches("cam", Some("lane"), "fly_wire_charging", Some(&same), 10)
                .is_none()
        );
        assert!(
            memory
                .matches(
                    "cam",
                    Some("lane"),
                    "illegal_parking",
                    Some(&same),
                    2_000_000
                )
                .is_none(),
            "expired"
        );
        assert_eq!(memory.active(10)[0].hits, 1);
        // Survives a restart, with its hit.
        let again = store.load_suppressions(0.5, 1_000_000, 10).unwrap();
        assert_eq!(again.active(10).len(), 1);
        assert_eq!(again.active(10)[0].hits, 1);
        assert!(again.active(2_000_000).is_empty());
    }
}
