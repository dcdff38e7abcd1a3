//! Dismissal memory: when station staff dismiss an incident (a car that has a parking
//! permit), new incidents of the same kind in the same zone for an object at the same place
//! are suppressed for a while, so the station is not asked about it every day. Suppressions
//! are stored (they survive restarts), expire, and are listed by the API with their hits.

use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use serde_json::Value;

use crate::frame::BBox;
use crate::store::{Store, StoreError};

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
    store: std::sync::OnceLock<Arc<Mutex<Store>>>,
}

impl Suppressions {
    pub fn load(
        store: &Store,
        iou: f32,
        memory_us: i64,
        now_us: i64,
    ) -> Result<Suppressions, StoreError> {
        Ok(Suppressions {
            list: RwLock::new(store.active_suppressions(now_us)?),
            iou,
            memory_us,
            store: std::sync::OnceLock::new(),
        })
    }

    /// Counts hits in `store` from now on.
    pub fn persist_hits(&self, store: Arc<Mutex<Store>>) {
        let _ = self.store.set(store);
    }

    /// Remembers a dismissed incident (its latest event).
    pub fn add_dismissed(
        &self,
        store: &mut Store,
        event: &Value,
        now_us: i64,
    ) -> Result<(), StoreError> {
        let box_norm = event["objects"][0]["box_norm"]
            .as_array()
            .filter(|a| a.len() == 4)
            .map(|a| {
                BBox::from(std::array::from_fn::<f32, 4, _>(|i| {
                    a[i].as_f64().unwrap_or(0.0) as f32
                }))
            });
        let mut s = Suppression {
            id: 0,
            incident_id: event["incident_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            camera_id: event["camera"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            zone_id: event["zone"]["id"].as_str().map(String::from),
            kind: event["kind"].as_str().unwrap_or_default().to_string(),
            box_norm,
            until_us: now_us + self.memory_us,
            hits: 0,
        };
        s.id = store.insert_suppression(&s, now_us)?;
        if let Ok(mut list) = self.list.write() {
            list.push(s);
        }
        Ok(())
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
            && let Ok(mut store) = store.lock()
        {
            let _ = store.count_suppression_hit(hit.id);
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

/// Stores a verdict (the `reviewed` event goes to the outbox when `topic` is given) and, for
/// a dismissal, remembers the incident so look-alikes are suppressed. Used by the HTTP API
/// and the MQTT `review` command alike.
pub fn apply_review(
    store: &mut Store,
    memory: Option<&Suppressions>,
    request: &crate::store::ReviewRequest<'_>,
    offset: chrono::FixedOffset,
    topic: Option<&str>,
) -> Result<Value, StoreError> {
    let reviewed = store.review(request, offset, topic)?;
    if request.verdict == crate::incidents::Verdict::Dismissed
        && let Some(memory) = memory
        && let Some(incident) = store.incident(request.incident_id)?
    {
        memory.add_dismissed(store, &incident, request.at_us)?;
    }
    Ok(reviewed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_same_place_kind_and_zone_until_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), Default::default()).unwrap();
        let memory = Suppressions::load(&store, 0.5, 1_000_000, 0).unwrap();
        let event = serde_json::json!({
            "incident_id": "i1", "camera": {"id": "cam"}, "zone": {"id": "lane"},
            "kind": "illegal_parking", "objects": [{"box_norm": [0.1, 0.1, 0.3, 0.3]}],
        });
        memory.add_dismissed(&mut store, &event, 0).unwrap();
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
        // Survives a restart.
        let again = Suppressions::load(&store, 0.5, 1_000_000, 10).unwrap();
        assert_eq!(again.active(10).len(), 1);
        assert!(again.active(2_000_000).is_empty());
    }
}
