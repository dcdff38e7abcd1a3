//! Store stage: one SQLite database per box (`<data_dir>/gridwatch.db`) holding incidents,
//! every event, reviews and the MQTT outbox.
//!
//! The outbox is the only path to MQTT: an event is committed (WAL, `synchronous=FULL`, so a
//! power cut after the commit cannot lose it) before the publisher sees it, and its row is
//! deleted only after the broker's PUBACK. The outbox is bounded by count and bytes; over
//! the bound, the oldest `updated` events are dropped first (they are superseded by later
//! ones) and `opened`, `closed` and `reviewed` events are never dropped. Drops are counted
//! in a persistent counter the heartbeat reports.
//!
//! Migrations are numbered `.sql` files in `migrations/`, applied in order at open and
//! recorded in the `schema_version` table.

use std::path::{Path, PathBuf};

use chrono::FixedOffset;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::incidents::{EvidenceFile, IncidentEvent, Review, Verdict, event_id};
use crate::time::format_time;

const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("migrations/001_initial.sql")),
    (2, include_str!("migrations/002_evidence.sql")),
    (3, include_str!("migrations/003_crossings.sql")),
    (4, include_str!("migrations/004_actions.sql")),
    (5, include_str!("migrations/005_stats.sql")),
];

/// The bodies of the actions an event triggers, built from the event as stored: (action id,
/// body). See [`Store::set_action_bodies`].
pub type ActionBodies =
    std::sync::Arc<dyn Fn(&IncidentEvent) -> Vec<(String, String)> + Send + Sync>;

/// Queues the actions `event` triggers in the action outbox, in the event's transaction: a
/// crash leaves the event and its actions, or neither.
fn queue_actions(
    tx: &rusqlite::Transaction<'_>,
    bodies: Option<&ActionBodies>,
    event: &IncidentEvent,
) -> rusqlite::Result<()> {
    let Some(bodies) = bodies else {
        return Ok(());
    };
    let now_us = chrono::Utc::now().timestamp_micros();
    for (action_id, body) in bodies(event) {
        tx.execute(
            "INSERT OR IGNORE INTO action_outbox (action_id, event_id, body, next_at_us, created_at_us)
             VALUES (?1, ?2, ?3, ?4, ?4)",
            params![action_id, event.event_id, body, now_us],
        )?;
    }
    Ok(())
}

/// An action POST waiting to be made.
#[derive(Debug, Clone, PartialEq)]
pub struct DueAction {
    pub id: i64,
    pub action_id: String,
    pub event_id: String,
    pub body: String,
    pub attempts: u32,
}

/// How many objects of one class crossed one line in one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossingCount {
    pub camera_id: String,
    pub line_id: String,
    pub direction: String,
    pub label: String,
    pub count: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "database {path} has schema version {found}, newer than this gridwatch knows ({known}); upgrade gridwatch"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error("no incident {0}")]
    UnknownIncident(String),
    #[error("stored event is not valid JSON: {0}")]
    Corrupt(String),
}

/// Bounds of the outbox.
#[derive(Debug, Clone, Copy)]
pub struct OutboxLimits {
    pub max_events: u64,
    pub max_bytes: u64,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits {
            max_events: 100_000,
            max_bytes: 256 << 20,
        }
    }
}

/// One event waiting for its PUBACK.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub event_id: String,
    pub camera_id: String,
    pub topic: String,
    pub payload: Vec<u8>,
    pub created_at_us: i64,
    /// Published with the retain flag (the daily statistics summary; never an incident).
    pub retain: bool,
}

/// A station's verdict on an incident, as the API and the MQTT command give it.
#[derive(Debug, Clone, Copy)]
pub struct ReviewRequest<'a> {
    pub incident_id: &'a str,
    pub verdict: Verdict,
    pub reviewer: &'a str,
    pub note: &'a str,
    /// When the verdict was given, Unix microseconds.
    pub at_us: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub events: u64,
    pub bytes: u64,
    pub oldest_created_at_us: Option<i64>,
    pub dropped_total: u64,
}

struct Store {
    conn: Connection,
    path: PathBuf,
    limits: OutboxLimits,
    /// Cached outbox size, kept in step with every insert and delete.
    outbox_events: u64,
    outbox_bytes: u64,
    /// The configured actions' bodies for an event (`[[actions]]`); none without actions.
    action_bodies: Option<ActionBodies>,
}

const DROPPED: &str = "outbox_dropped";

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir` and applies migrations.
    pub fn open(data_dir: &Path, limits: OutboxLimits) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join("gridwatch.db");
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        // FULL: a committed outbox row survives a power cut (WAL alone with NORMAL may not).
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        migrate(&mut conn, &path)?;
        let (events, bytes): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sql)?;
        Ok(Store {
            conn,
            path,
            limits,
            outbox_events: events as u64,
            outbox_bytes: bytes as u64,
            action_bodies: None,
        })
    }

    /// From now on, every event stored (by the rules, a review, evidence, a close at start)
    /// queues the actions `bodies` gives for it, in its own transaction.
    pub fn set_action_bodies(&mut self, bodies: ActionBodies) {
        self.action_bodies = Some(bodies);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The migrations applied (the tests check them).
    #[cfg(test)]
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.conn
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
            .map_err(self.sql())
    }

    /// Records a lifecycle event: the incident row, the event log and, when `topic` is
    /// given (MQTT configured), the outbox, in one transaction. Recording an event already
    /// stored (same `event_id`) changes nothing. If reviews have taken sequence numbers since
    /// the rules made the event, it is renumbered after them (new `seq` and `event_id`).
    pub fn record(
        &mut self,
        event: &mut IncidentEvent,
        topic: Option<&str>,
    ) -> Result<(), StoreError> {
        let known: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM events WHERE event_id = ?1)",
                [&event.event_id],
                |r| r.get(0),
            )
            .map_err(self.sql())?;
        if known {
            return Ok(());
        }
        let last_seq: Option<u32> = self
            .conn
            .query_row(
                "SELECT last_seq FROM incidents WHERE incident_id = ?1",
                [&event.incident_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql())?;
        // Evidence attached since the rules made this event carries over to it: its files,
        // and the error that says why there are none (a full disk), so that a later update
        // does not silently drop it.
        if event.evidence.files.is_empty()
            && event.evidence.error.is_none()
            && let Some(previous) = self.incident(&event.incident_id)?
        {
            if let Some(files) = previous["evidence"]["files"].as_array() {
                event.evidence.files =
                    serde_json::from_value(Value::Array(files.clone())).unwrap_or_default();
            }
            event.evidence.error = previous["evidence"]["error"].as_str().map(String::from);
        }
        if let Some(last) = last_seq
            && event.seq <= last
        {
            let at_us = chrono::DateTime::parse_from_rfc3339(&event.event_at)
                .map(|t| t.timestamp_micros())
                .unwrap_or_default();
            event.seq = last + 1;
            event.event_id = event_id(&event.incident_id, event.seq, at_us);
        }
        let payload =
            serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let opened_at_us = chrono::DateTime::parse_from_rfc3339(&event.opened_at)
            .map(|t| t.timestamp_micros())
            .unwrap_or_default();
        let state = serde_state(&event.state);
        let tx = self
            .conn
            .transaction()
            .map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                source,
            })?;
        let path = self.path.clone();
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        tx.execute(
            "INSERT INTO incidents (incident_id, camera_id, zone_id, kind, state, status, opened_at,
                 opened_at_us, closed_at, last_seq, last_event)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (incident_id) DO UPDATE SET
                 state = excluded.state, status = excluded.status, closed_at = excluded.closed_at,
                 last_seq = excluded.last_seq, last_event = excluded.last_event",
            params![
                event.incident_id,
                event.camera.id,
                event.zone.as_ref().map(|z| z.id.as_str()),
                event.kind.as_str(),
                state,
                serde_plain(&event.status),
                event.opened_at,
                opened_at_us,
                event.closed_at,
                event.seq,
                payload
            ],
        )
        .map_err(sql)?;
        tx.execute(
            "INSERT OR IGNORE INTO events (event_id, incident_id, seq, state, event_at, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                event.event_id,
                event.incident_id,
                event.seq,
                state,
                event.event_at,
                payload
            ],
        )
        .map_err(sql)?;
        let mut added = 0;
        if let Some(topic) = topic {
            added = tx
                .execute(
                    "INSERT OR IGNORE INTO outbox (event_id, camera_id, topic, state, payload, created_at_us)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        event.event_id,
                        event.camera.id,
                        topic,
                        state,
                        payload.as_bytes(),
                        chrono::Utc::now().timestamp_micros()
                    ],
                )
                .map_err(sql)?;
        }
        queue_actions(&tx, self.action_bodies.as_ref(), event).map_err(sql)?;
        tx.commit().map_err(sql)?;
        if added > 0 {
            self.outbox_events += 1;
            self.outbox_bytes += payload.len() as u64;
            self.enforce_limits()?;
        }
        Ok(())
    }

    /// Drops the oldest `updated` events while the outbox is over its bounds.
    fn enforce_limits(&mut self) -> Result<(), StoreError> {
        while self.outbox_events > self.limits.max_events
            || self.outbox_bytes > self.limits.max_bytes
        {
            let victim: Option<(i64, i64)> = self
                .conn
                .query_row(
                    "SELECT id, LENGTH(payload) FROM outbox WHERE state = 'updated' ORDER BY id LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(self.sql())?;
            let Some((id, bytes)) = victim else {
                tracing::warn!(
                    events = self.outbox_events,
                    bytes = self.outbox_bytes,
                    "outbox over its bounds with only opened/closed/reviewed events left; keeping them"
                );
                return Ok(());
            };
            let tx = self.conn.unchecked_transaction().map_err(self.sql())?;
            tx.execute("DELETE FROM outbox WHERE id = ?1", [id])
                .map_err(self.sql())?;
            tx.execute(
                "INSERT INTO counters (name, value) VALUES (?1, 1)
                 ON CONFLICT (name) DO UPDATE SET value = value + 1",
                [DROPPED],
            )
            .map_err(self.sql())?;
            tx.commit().map_err(self.sql())?;
            self.outbox_events -= 1;
            self.outbox_bytes = self.outbox_bytes.saturating_sub(bytes as u64);
        }
        Ok(())
    }

    /// Up to `limit` outbox rows with id greater than `after`, oldest first.
    pub fn outbox_after(&self, after: i64, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, event_id, camera_id, topic, payload, created_at_us, retain FROM outbox
                 WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(self.sql())?;
        let rows = stmt
            .query_map(params![after, limit as i64], |r| {
                Ok(OutboxRow {
                    id: r.get(0)?,
                    event_id: r.get(1)?,
                    camera_id: r.get(2)?,
                    topic: r.get(3)?,
                    payload: r.get(4)?,
                    created_at_us: r.get(5)?,
                    retain: r.get::<_, i64>(6)? != 0,
                })
            })
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        Ok(rows)
    }

    /// Removes delivered rows (after their PUBACKs).
    pub fn outbox_delete(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let tx = self.conn.unchecked_transaction().map_err(self.sql())?;
        let mut removed_bytes = 0u64;
        let mut removed = 0u64;
        for id in ids {
            let bytes: Option<i64> = tx
                .query_row(
                    "DELETE FROM outbox WHERE id = ?1 RETURNING LENGTH(payload)",
                    [id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(self.sql())?;
            if let Some(b) = bytes {
                removed += 1;
                removed_bytes += b as u64;
            }
        }
        tx.commit().map_err(self.sql())?;
        self.outbox_events = self.outbox_events.saturating_sub(removed);
        self.outbox_bytes = self.outbox_bytes.saturating_sub(removed_bytes);
        Ok(())
    }

    pub fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        let oldest: Option<i64> = self
            .conn
            .query_row("SELECT MIN(created_at_us) FROM outbox", [], |r| r.get(0))
            .map_err(self.sql())?;
        let dropped: Option<i64> = self
            .conn
            .query_row(
                "SELECT value FROM counters WHERE name = ?1",
                [DROPPED],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql())?;
        Ok(OutboxStats {
            events: self.outbox_events,
            bytes: self.outbox_bytes,
            oldest_created_at_us: oldest,
            dropped_total: dropped.unwrap_or(0) as u64,
        })
    }

    /// The latest event of an incident (its current state), as JSON.
    pub fn incident(&self, incident_id: &str) -> Result<Option<Value>, StoreError> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT last_event FROM incidents WHERE incident_id = ?1",
                [incident_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql())?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    /// Every event of an incident, in order.
    pub fn events_of(&self, incident_id: &str) -> Result<Vec<Value>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT payload FROM events WHERE incident_id = ?1 ORDER BY seq")
            .map_err(self.sql())?;
        let texts = stmt
            .query_map([incident_id], |r| r.get::<_, String>(0))
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        texts
            .iter()
            .map(|t| serde_json::from_str(t).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    /// Stores the station's verdict and returns the `reviewed` event (already in the
    /// outbox when `topic` is given).
    pub fn review(
        &mut self,
        request: &ReviewRequest<'_>,
        offset: FixedOffset,
        topic: Option<&str>,
    ) -> Result<Value, StoreError> {
        let at = format_time(request.at_us, offset);
        let review = Review {
            verdict: request.verdict,
            reviewer: request.reviewer.to_string(),
            note: request.note.to_string(),
            reviewed_at: at.clone(),
        };
        let review =
            serde_json::to_value(&review).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let event = self.derive_event(
            request.incident_id,
            request.at_us,
            offset,
            topic,
            false,
            |event| {
                event["state"] = "reviewed".into();
                event["review"] = review;
            },
        )?;
        self.conn
            .execute(
                "UPDATE incidents SET review_verdict = ?2, reviewer = ?3, review_note = ?4, reviewed_at = ?5
                 WHERE incident_id = ?1",
                params![request.incident_id, serde_plain(&request.verdict), request.reviewer, request.note, at],
            )
            .map_err(self.sql())?;
        Ok(event)
    }

    /// Adds evidence files (replacing earlier files of the same kind) or an evidence error
    /// to an incident, as an `updated` event. Returns the event.
    pub fn attach_evidence(
        &mut self,
        incident_id: &str,
        files: &[EvidenceFile],
        error: Option<&str>,
        at_us: i64,
        offset: FixedOffset,
        topic: Option<&str>,
    ) -> Result<Value, StoreError> {
        let files_json =
            serde_json::to_value(files).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // The rows go in the transaction of the event that announces them: a crash or a full
        // disk leaves both or neither.
        let rows = |tx: &rusqlite::Transaction<'_>| -> rusqlite::Result<()> {
            for file in files {
                tx.execute(
                    "INSERT INTO evidence (incident_id, kind, path, bytes, sha256, created_at_us)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        incident_id,
                        file.kind,
                        file.path,
                        file.bytes as i64,
                        file.sha256,
                        at_us
                    ],
                )?;
            }
            Ok(())
        };
        self.derive_event_with(
            incident_id,
            at_us,
            offset,
            topic,
            true,
            |event| {
                event["state"] = "updated".into();
                event["review"] = Value::Null;
                let mut merged: Vec<Value> = event["evidence"]["files"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for file in files_json.as_array().into_iter().flatten() {
                    merged.retain(|f| f["kind"] != file["kind"]);
                    merged.push(file.clone());
                }
                event["evidence"]["files"] = Value::Array(merged);
                if let Some(error) = error {
                    event["evidence"]["error"] = error.into();
                }
            },
            rows,
        )
    }

    /// The cameras that have incidents not closed yet.
    pub fn cameras_with_open_incidents(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT camera_id FROM incidents WHERE state != 'closed' ORDER BY camera_id",
            )
            .map_err(self.sql())?;
        let cameras = stmt
            .query_map([], |r| r.get(0))
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        Ok(cameras)
    }

    /// Closes every incident of `camera` still open, as when the rules close one, with
    /// `reason` (`restarted` when the agent starts again, `reconfigured` when a reload
    /// changes the camera): each gets a `closed` event, in the outbox when `topic` is given.
    /// Returns the closed events.
    pub fn close_open_incidents(
        &mut self,
        camera: &str,
        reason: crate::rules::CloseReason,
        at_us: i64,
        offset: FixedOffset,
        topic: Option<&str>,
    ) -> Result<Vec<Value>, StoreError> {
        let open: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT incident_id FROM incidents WHERE state != 'closed' AND camera_id = ?1
                     ORDER BY opened_at_us, incident_id",
                )
                .map_err(self.sql())?;
            stmt.query_map([camera], |r| r.get(0))
                .map_err(self.sql())?
                .collect::<Result<Vec<_>, _>>()
                .map_err(self.sql())?
        };
        let closed_at = format_time(at_us, offset);
        let why = match reason {
            crate::rules::CloseReason::Reconfigured => "（摄像头配置已变更，事件关闭）",
            _ => "（gridwatch 已重启，事件关闭）",
        };
        let mut events = Vec::with_capacity(open.len());
        for incident_id in open {
            let event = self.derive_event(&incident_id, at_us, offset, topic, true, |e| {
                e["state"] = "closed".into();
                e["closed_at"] = closed_at.clone().into();
                e["close_reason"] = reason.as_str().into();
                e["review"] = Value::Null;
                if let Some(text) = e["description"].as_str() {
                    e["description"] = format!("{text}{why}").into();
                }
            })?;
            events.push(event);
        }
        Ok(events)
    }

    /// A new event of an incident derived from its latest one: next `seq`, new id and time,
    /// then `change` applied. Stored in the event log and, with a topic, the outbox; with
    /// `lifecycle`, it also becomes the incident's latest event.
    fn derive_event(
        &mut self,
        incident_id: &str,
        at_us: i64,
        offset: FixedOffset,
        topic: Option<&str>,
        lifecycle: bool,
        change: impl FnOnce(&mut Value),
    ) -> Result<Value, StoreError> {
        self.derive_event_with(incident_id, at_us, offset, topic, lifecycle, change, |_| {
            Ok(())
        })
    }

    /// [`Store::derive_event`], with `also` run in the same transaction.
    #[allow(clippy::too_many_arguments)]
    fn derive_event_with(
        &mut self,
        incident_id: &str,
        at_us: i64,
        offset: FixedOffset,
        topic: Option<&str>,
        lifecycle: bool,
        change: impl FnOnce(&mut Value),
        also: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>,
    ) -> Result<Value, StoreError> {
        let row: Option<(String, u32, String)> = self
            .conn
            .query_row(
                "SELECT last_event, last_seq, camera_id FROM incidents WHERE incident_id = ?1",
                [incident_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.sql())?;
        let Some((last, last_seq, camera_id)) = row else {
            return Err(StoreError::UnknownIncident(incident_id.to_string()));
        };
        let mut event: Value =
            serde_json::from_str(&last).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let seq = last_seq + 1;
        event["event_id"] = event_id(incident_id, seq, at_us).into();
        event["seq"] = seq.into();
        event["event_at"] = format_time(at_us, offset).into();
        change(&mut event);
        let payload = event.to_string();
        let state = event["state"].as_str().unwrap_or("updated").to_string();
        let tx = self.conn.unchecked_transaction().map_err(self.sql())?;
        if lifecycle {
            tx.execute(
                "UPDATE incidents SET last_seq = ?2, last_event = ?3 WHERE incident_id = ?1",
                params![incident_id, seq, payload],
            )
            .map_err(self.sql())?;
            if state == "closed" {
                tx.execute(
                    "UPDATE incidents SET state = 'closed', closed_at = ?2 WHERE incident_id = ?1",
                    params![incident_id, event["closed_at"].as_str()],
                )
                .map_err(self.sql())?;
            }
        } else {
            tx.execute(
                "UPDATE incidents SET last_seq = ?2 WHERE incident_id = ?1",
                params![incident_id, seq],
            )
            .map_err(self.sql())?;
        }
        tx.execute(
            "INSERT INTO events (event_id, incident_id, seq, state, event_at, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                event["event_id"].as_str(),
                incident_id,
                seq,
                state,
                event["event_at"].as_str(),
                payload
            ],
        )
        .map_err(self.sql())?;
        let mut added = 0;
        if let Some(topic) = topic {
            added = tx
                .execute(
                    "INSERT INTO outbox (event_id, camera_id, topic, state, payload, created_at_us)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        event["event_id"].as_str(),
                        camera_id,
                        topic,
                        state,
                        payload.as_bytes(),
                        chrono::Utc::now().timestamp_micros()
                    ],
                )
                .map_err(self.sql())?;
        }
        if let Some(bodies) = &self.action_bodies
            && let Ok(typed) = serde_json::from_value::<IncidentEvent>(event.clone())
        {
            queue_actions(&tx, Some(bodies), &typed).map_err(self.sql())?;
        }
        also(&tx).map_err(self.sql())?;
        tx.commit().map_err(self.sql())?;
        if added > 0 {
            self.outbox_events += 1;
            self.outbox_bytes += payload.len() as u64;
            self.enforce_limits()?;
        }
        Ok(event)
    }

    /// Evidence files still on disk, with their incident's review state, oldest first.
    pub fn live_evidence(&self) -> Result<Vec<StoredEvidence>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT e.id, e.incident_id, e.kind, e.path, e.bytes, e.created_at_us,
                        i.review_verdict IS NOT NULL
                 FROM evidence e JOIN incidents i USING (incident_id)
                 WHERE e.deleted_at_us IS NULL ORDER BY e.created_at_us, e.id",
            )
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredEvidence {
                    id: r.get(0)?,
                    incident_id: r.get(1)?,
                    kind: r.get(2)?,
                    path: r.get(3)?,
                    bytes: r.get::<_, i64>(4)? as u64,
                    created_at_us: r.get(5)?,
                    reviewed: r.get(6)?,
                })
            })
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        Ok(rows)
    }

    /// Marks evidence rows whose files retention deleted, in one transaction (one fsync for
    /// the lot, not one per file).
    pub fn mark_evidence_deleted(&mut self, ids: &[i64], at_us: i64) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(self.sql())?;
        for id in ids {
            tx.execute(
                "UPDATE evidence SET deleted_at_us = ?2 WHERE id = ?1",
                params![id, at_us],
            )
            .map_err(self.sql())?;
        }
        tx.commit().map_err(self.sql())?;
        Ok(())
    }

    /// The file of one kind of an incident's evidence, if it is still on disk.
    pub fn evidence_path(
        &self,
        incident_id: &str,
        kind: &str,
    ) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT path FROM evidence WHERE incident_id = ?1 AND kind = ?2 AND deleted_at_us IS NULL
                 ORDER BY id DESC LIMIT 1",
                [incident_id, kind],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql())
    }

    /// Incidents matching `filter`, newest first: (total matching, one page of summaries).
    pub fn list_incidents(
        &self,
        filter: &IncidentFilter<'_>,
    ) -> Result<(u64, Vec<IncidentRow>), StoreError> {
        let mut clauses = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        let mut add = |clause: &str, value: rusqlite::types::Value| {
            values.push(value);
            clauses.push(clause.replace('?', &format!("?{}", values.len())));
        };
        match filter.state {
            // "open": not closed yet, whatever the last update was.
            Some("open") => add("state != ?", "closed".to_string().into()),
            Some(v) => add("state = ?", v.to_string().into()),
            None => {}
        }
        if let Some(v) = filter.kind {
            add("kind = ?", v.to_string().into());
        }
        if let Some(v) = filter.camera {
            add("camera_id = ?", v.to_string().into());
        }
        if let Some(v) = filter.zone {
            add("zone_id = ?", v.to_string().into());
        }
        if let Some(v) = filter.from_us {
            add("opened_at_us >= ?", v.into());
        }
        if let Some(v) = filter.to_us {
            add("opened_at_us <= ?", v.into());
        }
        match filter.review {
            Some("pending") => add("COALESCE(review_verdict, ?) = ''", String::new().into()),
            Some(v) => add("review_verdict = ?", v.to_string().into()),
            None => {}
        }
        let condition = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let total: i64 = self
            .conn
            .query_row(
                &format!("SELECT COUNT(*) FROM incidents {condition}"),
                rusqlite::params_from_iter(values.iter()),
                |r| r.get(0),
            )
            .map_err(self.sql())?;
        let ids: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare(&format!(
                    "SELECT incident_id FROM incidents {condition} ORDER BY opened_at_us DESC, incident_id LIMIT {} OFFSET {}",
                    filter.limit, filter.offset
                ))
                .map_err(self.sql())?;
            stmt.query_map(rusqlite::params_from_iter(values.iter()), |r| r.get(0))
                .map_err(self.sql())?
                .collect::<Result<Vec<_>, _>>()
                .map_err(self.sql())?
        };
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = self.incident_row(&id)? {
                items.push(row);
            }
        }
        Ok((total as u64, items))
    }

    /// One incident as stored: its latest event, its review and the evidence kinds whose
    /// files are still on disk.
    pub fn incident_row(&self, incident_id: &str) -> Result<Option<IncidentRow>, StoreError> {
        let row: Option<(String, ReviewColumns)> = self
            .conn
            .query_row(
                "SELECT last_event, review_verdict, reviewer, review_note, reviewed_at FROM incidents WHERE incident_id = ?1",
                [incident_id],
                |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))),
            )
            .optional()
            .map_err(self.sql())?;
        let Some((last, (verdict, reviewer, note, reviewed_at))) = row else {
            return Ok(None);
        };
        let last_event: Value =
            serde_json::from_str(&last).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut evidence_on_disk = Vec::new();
        for kind in ["snapshot", "thumbnail", "clip"] {
            if self.evidence_path(incident_id, kind)?.is_some() {
                evidence_on_disk.push(kind);
            }
        }
        Ok(Some(IncidentRow {
            incident_id: incident_id.to_string(),
            last_event,
            review: verdict.map(|verdict| StoredReview {
                verdict,
                reviewer,
                note,
                reviewed_at,
            }),
            evidence_on_disk,
        }))
    }

    /// Incidents raised, per kind.
    pub fn incident_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT kind, COUNT(*) FROM incidents GROUP BY kind ORDER BY kind")
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        Ok(rows)
    }

    /// Action POSTs due at `now_us`, oldest first.
    pub fn due_actions(&self, now_us: i64, limit: usize) -> Result<Vec<DueAction>, StoreError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT id, action_id, event_id, body, attempts FROM action_outbox
                 WHERE given_up_at_us IS NULL AND next_at_us <= ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(self.sql())?;
        let rows = statement
            .query_map(params![now_us, limit as i64], |r| {
                Ok(DueAction {
                    id: r.get(0)?,
                    action_id: r.get(1)?,
                    event_id: r.get(2)?,
                    body: r.get(3)?,
                    attempts: r.get(4)?,
                })
            })
            .map_err(self.sql())?;
        rows.collect::<Result<_, _>>().map_err(self.sql())
    }

    /// Actions waiting (not given up) and given up.
    pub fn action_backlog(&self) -> Result<(u64, u64), StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FILTER (WHERE given_up_at_us IS NULL),
                        COUNT(*) FILTER (WHERE given_up_at_us IS NOT NULL) FROM action_outbox",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(self.sql())
    }

    pub fn action_delivered(&mut self, id: i64) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM action_outbox WHERE id = ?1", [id])
            .map_err(self.sql())?;
        Ok(())
    }

    pub fn action_retry(
        &mut self,
        id: i64,
        attempts: u32,
        next_at_us: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE action_outbox SET attempts = ?2, next_at_us = ?3, last_error = ?4 WHERE id = ?1",
                params![id, attempts, next_at_us, error],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    pub fn action_given_up(&mut self, id: i64, error: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE action_outbox SET attempts = attempts + 1, last_error = ?2, given_up_at_us = ?3
                 WHERE id = ?1",
                params![id, error, chrono::Utc::now().timestamp_micros()],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// Counts one line crossing.
    pub fn record_crossing(
        &mut self,
        camera_id: &str,
        crossing: &crate::rules::line::Crossing,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO crossings (camera_id, line_id, direction, label, track_id, at_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    camera_id,
                    &*crossing.line,
                    crossing.direction.as_str(),
                    &*crossing.label,
                    crossing.track_id as i64,
                    crossing.at_us
                ],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// Crossings in `[from_us, to_us)` per camera, line, direction and class, in that order.
    pub fn crossing_counts(
        &self,
        from_us: i64,
        to_us: i64,
    ) -> Result<Vec<CrossingCount>, StoreError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT camera_id, line_id, direction, label, COUNT(*) FROM crossings
                 WHERE at_us >= ?1 AND at_us < ?2
                 GROUP BY camera_id, line_id, direction, label
                 ORDER BY camera_id, line_id, direction, label",
            )
            .map_err(self.sql())?;
        let rows = statement
            .query_map(params![from_us, to_us], |r| {
                Ok(CrossingCount {
                    camera_id: r.get(0)?,
                    line_id: r.get(1)?,
                    direction: r.get(2)?,
                    label: r.get(3)?,
                    count: r.get::<_, i64>(4)? as u64,
                })
            })
            .map_err(self.sql())?;
        rows.collect::<Result<_, _>>().map_err(self.sql())
    }

    pub fn insert_suppression(
        &mut self,
        s: &suppress::Suppression,
        now_us: i64,
    ) -> Result<i64, StoreError> {
        let box_norm = serde_json::to_string(&s.box_norm).unwrap_or_else(|_| "null".into());
        self.conn
            .execute(
                "INSERT INTO suppressions (incident_id, camera_id, zone_id, kind, box_norm, created_at_us, until_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![s.incident_id, s.camera_id, s.zone_id, s.kind, box_norm, now_us, s.until_us],
            )
            .map_err(self.sql())?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn count_suppression_hit(&mut self, id: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE suppressions SET hits = hits + 1 WHERE id = ?1",
                [id],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    pub fn active_suppressions(
        &self,
        now_us: i64,
    ) -> Result<Vec<suppress::Suppression>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, incident_id, camera_id, zone_id, kind, box_norm, until_us, hits
                 FROM suppressions WHERE until_us > ?1 ORDER BY id",
            )
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([now_us], |r| {
                let box_norm: String = r.get(5)?;
                Ok(suppress::Suppression {
                    id: r.get(0)?,
                    incident_id: r.get(1)?,
                    camera_id: r.get(2)?,
                    zone_id: r.get(3)?,
                    kind: r.get(4)?,
                    box_norm: serde_json::from_str(&box_norm).unwrap_or(None),
                    until_us: r.get(6)?,
                    hits: r.get::<_, i64>(7)? as u64,
                })
            })
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        Ok(rows)
    }
}

/// An incident as the store holds it (the review page's JSON is the web's business).
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRow {
    pub incident_id: String,
    /// The latest event, exactly as published (schema v1).
    pub last_event: Value,
    pub review: Option<StoredReview>,
    /// `snapshot`, `thumbnail`, `clip`: the evidence whose files are still on disk.
    pub evidence_on_disk: Vec<&'static str>,
}

/// A station's verdict as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReview {
    pub verdict: String,
    pub reviewer: Option<String>,
    pub note: Option<String>,
    pub reviewed_at: Option<String>,
}

/// Verdict, reviewer, note and time of a review, as stored (all null before one).
type ReviewColumns = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Filters of the incident list (all optional).
#[derive(Debug, Default, Clone, Copy)]
pub struct IncidentFilter<'a> {
    pub state: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub camera: Option<&'a str>,
    pub zone: Option<&'a str>,
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
    /// pending, confirmed or dismissed.
    pub review: Option<&'a str>,
    pub limit: u32,
    pub offset: u32,
}

/// An evidence file the store knows about.
#[derive(Debug, Clone)]
pub struct StoredEvidence {
    pub id: i64,
    pub incident_id: String,
    pub kind: String,
    /// Relative to the data directory.
    pub path: String,
    pub bytes: u64,
    pub created_at_us: i64,
    pub reviewed: bool,
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let sql = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(sql)?;
    let current: u32 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .map_err(sql)?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > known {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: current,
            known,
        });
    }
    for (version, script) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction().map_err(sql)?;
        tx.execute_batch(script).map_err(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [version],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        tracing::info!(version, db = %path.display(), "applied database migration");
    }
    Ok(())
}

/// The snake_case name serde gives a unit enum variant.
fn serde_plain<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn serde_state(state: &crate::incidents::EventState) -> String {
    serde_plain(state)
}

mod handle;
mod stats;
pub mod suppress;
#[cfg(test)]
mod tests;

pub use handle::Handle;
pub use stats::{CrossingDayCount, IncidentFact, StatsReader, StatsSource};
