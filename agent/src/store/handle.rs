//! The one way into the store for the rest of the agent.
//!
//! [`Handle`] owns the database connection behind a lock that no caller sees: each method
//! takes the lock for one piece of database work and gives it back before returning, so no
//! writer can hold it across I/O that is not the database (deleting evidence files, an MQTT
//! round trip, an HTTP POST). Multi-step flows that must be atomic (an event and its
//! evidence rows, a review and its dismissal memory) are single methods here.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::FixedOffset;
use serde_json::Value;

use super::suppress::Suppressions;
use super::{
    ActionBodies, CrossingCount, CrossingDayCount, DueAction, IncidentFact, IncidentFilter,
    IncidentRow, OutboxLimits, OutboxRow, OutboxStats, ReviewRequest, StatsSource, Store,
    StoreError, StoredEvidence,
};
use crate::incidents::{EvidenceFile, IncidentEvent, Verdict};

/// A shared, cheaply cloned handle on the box's store.
#[derive(Clone)]
pub struct Handle {
    store: Arc<Mutex<Store>>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// Opens (creating if needed) the database in `data_dir` and applies migrations.
    pub fn open(data_dir: &Path, limits: OutboxLimits) -> Result<Handle, StoreError> {
        let store = Store::open(data_dir, limits)?;
        let path = Arc::new(store.path().to_path_buf());
        Ok(Handle {
            store: Arc::new(Mutex::new(store)),
            path,
        })
    }

    /// The database file (for read-only connections such as [`super::StatsReader`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store, locked for one method's work. A panic elsewhere while the lock was held
    /// left no half-written state behind (SQLite rolls back an unfinished transaction), so a
    /// poisoned lock is taken over rather than making the store unusable for good.
    pub(super) fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether another thread holds the store now (tests check who holds it across I/O).
    #[cfg(test)]
    pub fn is_locked(&self) -> bool {
        matches!(
            self.store.try_lock(),
            Err(std::sync::TryLockError::WouldBlock)
        )
    }

    /// Has every stored event queue the actions it triggers (see [`Store`]'s `record`).
    pub fn set_action_bodies(&self, bodies: ActionBodies) {
        self.lock().set_action_bodies(bodies);
    }

    /// Stores an event and, with `topic`, queues it in the outbox (renumbered after reviews).
    pub fn record(&self, event: &mut IncidentEvent, topic: Option<&str>) -> Result<(), StoreError> {
        self.lock().record(event, topic)
    }

    /// Adds evidence files (or the error that kept them from being written) to an incident:
    /// the derived `updated` event and the evidence rows in one transaction.
    pub fn attach_evidence(
        &self,
        incident_id: &str,
        files: &[EvidenceFile],
        error: Option<&str>,
        at_us: i64,
        offset: FixedOffset,
        topic: Option<&str>,
    ) -> Result<Value, StoreError> {
        self.lock()
            .attach_evidence(incident_id, files, error, at_us, offset, topic)
    }

    /// A station's verdict, the one path for the HTTP API and the MQTT command: looks up
    /// the incident (its camera names the topic of the `reviewed` event, `topic_of`),
    /// stores the verdict and the derived event, and for a dismissal remembers the incident
    /// in `memory` (its row in the same lock, so a second review cannot interleave).
    pub fn review(
        &self,
        request: &ReviewRequest<'_>,
        offset: FixedOffset,
        topic_of: impl FnOnce(&str) -> Option<String>,
        memory: Option<&Suppressions>,
    ) -> Result<Value, StoreError> {
        let mut store = self.lock();
        let camera = match store.incident(request.incident_id)? {
            Some(incident) => incident["camera"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            None => return Err(StoreError::UnknownIncident(request.incident_id.into())),
        };
        let topic = topic_of(&camera);
        let reviewed = store.review(request, offset, topic.as_deref())?;
        if request.verdict == Verdict::Dismissed
            && let Some(memory) = memory
            && let Some(incident) = store.incident(request.incident_id)?
        {
            let mut dismissed = memory.dismissal(&incident, request.at_us);
            dismissed.id = store.insert_suppression(&dismissed, request.at_us)?;
            memory.remember(dismissed);
        }
        Ok(reviewed)
    }

    /// The incident's latest event.
    pub fn incident(&self, incident_id: &str) -> Result<Option<Value>, StoreError> {
        self.lock().incident(incident_id)
    }

    /// Every event of an incident, in `seq` order.
    pub fn events_of(&self, incident_id: &str) -> Result<Vec<Value>, StoreError> {
        self.lock().events_of(incident_id)
    }

    /// One page of incidents and the total that match.
    pub fn list_incidents(
        &self,
        filter: &IncidentFilter<'_>,
    ) -> Result<(u64, Vec<IncidentRow>), StoreError> {
        self.lock().list_incidents(filter)
    }

    /// One incident: its latest event, review and evidence still on disk.
    pub fn incident_row(&self, incident_id: &str) -> Result<Option<IncidentRow>, StoreError> {
        self.lock().incident_row(incident_id)
    }

    /// Incidents per state, for `/metrics`.
    pub fn incident_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.lock().incident_counts()
    }

    /// The cameras that have incidents not closed yet.
    pub fn cameras_with_open_incidents(&self) -> Result<Vec<String>, StoreError> {
        self.lock().cameras_with_open_incidents()
    }

    /// Closes a camera's open incidents (a restart or a reload), each with its `closed`
    /// event.
    pub fn close_open_incidents(
        &self,
        camera: &str,
        reason: crate::rules::CloseReason,
        at_us: i64,
        offset: FixedOffset,
        topic: Option<&str>,
    ) -> Result<Vec<Value>, StoreError> {
        self.lock()
            .close_open_incidents(camera, reason, at_us, offset, topic)
    }

    // --- evidence files ---

    /// Evidence files still on disk, oldest first (retention plans from this list and
    /// deletes files without the lock).
    pub fn live_evidence(&self) -> Result<Vec<StoredEvidence>, StoreError> {
        self.lock().live_evidence()
    }

    /// Marks the rows of files that were deleted, in one transaction.
    pub fn mark_evidence_deleted(&self, ids: &[i64], at_us: i64) -> Result<(), StoreError> {
        self.lock().mark_evidence_deleted(ids, at_us)
    }

    /// The file of one kind of an incident's evidence, if it is still on disk.
    pub fn evidence_path(
        &self,
        incident_id: &str,
        kind: &str,
    ) -> Result<Option<String>, StoreError> {
        self.lock().evidence_path(incident_id, kind)
    }

    // --- the MQTT outbox ---

    pub fn outbox_after(&self, after: i64, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.lock().outbox_after(after, limit)
    }

    /// Deletes rows the broker has acknowledged.
    pub fn outbox_delete(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.lock().outbox_delete(ids)
    }

    pub fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        self.lock().outbox_stats()
    }

    // --- the action outbox ---

    pub fn due_actions(&self, now_us: i64, limit: usize) -> Result<Vec<DueAction>, StoreError> {
        self.lock().due_actions(now_us, limit)
    }

    /// (waiting, given up) action deliveries.
    pub fn action_backlog(&self) -> Result<(u64, u64), StoreError> {
        self.lock().action_backlog()
    }

    pub fn action_delivered(&self, id: i64) -> Result<(), StoreError> {
        self.lock().action_delivered(id)
    }

    pub fn action_retry(
        &self,
        id: i64,
        attempts: u32,
        next_at_us: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.lock().action_retry(id, attempts, next_at_us, error)
    }

    pub fn action_given_up(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.lock().action_given_up(id, error)
    }

    // --- line crossings ---

    pub fn record_crossing(
        &self,
        camera_id: &str,
        crossing: &crate::rules::line::Crossing,
    ) -> Result<(), StoreError> {
        self.lock().record_crossing(camera_id, crossing)
    }

    pub fn crossing_counts(
        &self,
        from_us: i64,
        to_us: i64,
    ) -> Result<Vec<CrossingCount>, StoreError> {
        self.lock().crossing_counts(from_us, to_us)
    }

    // --- dismissal memory ---

    /// The dismissal memory as the store holds it now, counting its hits here from now on.
    pub fn load_suppressions(
        &self,
        iou: f32,
        memory_us: i64,
        now_us: i64,
    ) -> Result<Arc<Suppressions>, StoreError> {
        let active = self.lock().active_suppressions(now_us)?;
        let memory = Arc::new(Suppressions::new(active, iou, memory_us));
        memory.persist_hits(self.clone());
        Ok(memory)
    }

    pub(super) fn count_suppression_hit(&self, id: i64) -> Result<(), StoreError> {
        self.lock().count_suppression_hit(id)
    }

    // --- daily summaries ---

    /// The last local day whose summary was queued, if any.
    pub fn last_summarised_day(&self) -> Result<Option<i64>, StoreError> {
        self.lock().last_summarised_day()
    }

    /// Whether anything the statistics count happened before `at_us`.
    pub fn has_records_before(&self, at_us: i64) -> Result<bool, StoreError> {
        self.lock().has_records_before(at_us)
    }

    pub fn skip_summaries_until(&self, day: i64) -> Result<(), StoreError> {
        self.lock().skip_summaries_until(day)
    }

    /// Queues a day's summary with the day it covers, in one transaction; false when the
    /// day was already summarised (so a summary computed outside the lock is sent once).
    pub fn queue_daily_summary(
        &self,
        day: i64,
        topic: &str,
        payload: &str,
        now_us: i64,
    ) -> Result<bool, StoreError> {
        self.lock().queue_daily_summary(day, topic, payload, now_us)
    }
}

impl StatsSource for Handle {
    fn incident_facts(&self, from_us: i64, to_us: i64) -> Result<Vec<IncidentFact>, StoreError> {
        self.lock().incident_facts(from_us, to_us)
    }

    fn crossing_day_counts(
        &self,
        from_us: i64,
        to_us: i64,
        offset_s: i64,
    ) -> Result<Vec<CrossingDayCount>, StoreError> {
        self.lock().crossing_day_counts(from_us, to_us, offset_s)
    }
}
