//! The store's side of the statistics (`crate::stats`): the facts they are computed from,
//! read straight from the incident and crossing tables (no second bookkeeping that could
//! drift), and the daily summary's place in the outbox.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, StoreError};

/// Which local day was last summarised (days since 1970-01-01 in site time).
const SUMMARY_DAY: &str = "daily_summary_day";

/// One incident, as the statistics count it.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentFact {
    pub camera_id: String,
    pub zone_id: Option<String>,
    pub kind: String,
    pub opened_at_us: i64,
    /// `confirmed` or `dismissed`: the latest verdict, if any.
    pub verdict: Option<String>,
    /// When the latest verdict was given (RFC 3339, as stored).
    pub reviewed_at: Option<String>,
    /// The most objects the incident counted at once (persons, for crowding).
    pub peak_count: u32,
}

/// Crossings of one line in one direction by one class on one local day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossingDayCount {
    /// Days since 1970-01-01 in site time.
    pub day: i64,
    pub camera_id: String,
    pub line_id: String,
    pub direction: String,
    pub label: String,
    pub count: u64,
}

/// What the statistics read: the store's [`super::Handle`] (for the daily summary) or a
/// [`StatsReader`] (the web's requests, which must not hold the writers' lock).
pub trait StatsSource {
    /// Incidents opened in `[from_us, to_us)`, oldest first.
    fn incident_facts(&self, from_us: i64, to_us: i64) -> Result<Vec<IncidentFact>, StoreError>;

    /// Crossings in `[from_us, to_us)` per local day (site time `offset_s` east of UTC),
    /// camera, line, direction and class.
    fn crossing_day_counts(
        &self,
        from_us: i64,
        to_us: i64,
        offset_s: i64,
    ) -> Result<Vec<CrossingDayCount>, StoreError>;
}

/// Both of the statistics' queries on a connection: the store's and the read-only reader's.
macro_rules! stats_source_on_connection {
    ($type:ty) => {
        impl StatsSource for $type {
            fn incident_facts(
                &self,
                from_us: i64,
                to_us: i64,
            ) -> Result<Vec<IncidentFact>, StoreError> {
                incident_facts(&self.conn, sql_error(&self.path), from_us, to_us)
            }

            fn crossing_day_counts(
                &self,
                from_us: i64,
                to_us: i64,
                offset_s: i64,
            ) -> Result<Vec<CrossingDayCount>, StoreError> {
                crossing_day_counts(&self.conn, sql_error(&self.path), from_us, to_us, offset_s)
            }
        }
    };
}

fn sql_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// A read-only connection to the store's database for the statistics: SQLite's WAL lets it
/// read while the store writes, so a month of figures never holds up `record()` on the
/// inference workers or the publisher.
pub struct StatsReader {
    conn: rusqlite::Connection,
    path: std::path::PathBuf,
}

impl StatsReader {
    pub fn open(path: &std::path::Path) -> Result<StatsReader, StoreError> {
        let sql = sql_error(path);
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(&sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(&sql)?;
        Ok(StatsReader {
            conn,
            path: path.to_path_buf(),
        })
    }
}

/// The statistics' two queries, on whichever connection reads them.
fn incident_facts(
    conn: &Connection,
    sql: impl Fn(rusqlite::Error) -> StoreError,
    from_us: i64,
    to_us: i64,
) -> Result<Vec<IncidentFact>, StoreError> {
    let mut statement = conn
        .prepare_cached(
            "SELECT camera_id, zone_id, kind, opened_at_us, review_verdict, reviewed_at,
                    COALESCE(json_extract(last_event, '$.peak_count'), 0)
             FROM incidents WHERE opened_at_us >= ?1 AND opened_at_us < ?2
             ORDER BY opened_at_us, incident_id",
        )
        .map_err(&sql)?;
    let rows = statement
        .query_map(params![from_us, to_us], |r| {
            Ok(IncidentFact {
                camera_id: r.get(0)?,
                zone_id: r.get(1)?,
                kind: r.get(2)?,
                opened_at_us: r.get(3)?,
                verdict: r.get(4)?,
                reviewed_at: r.get(5)?,
                peak_count: r.get::<_, i64>(6)?.clamp(0, u32::MAX as i64) as u32,
            })
        })
        .map_err(&sql)?;
    rows.collect::<Result<_, _>>().map_err(&sql)
}

fn crossing_day_counts(
    conn: &Connection,
    sql: impl Fn(rusqlite::Error) -> StoreError,
    from_us: i64,
    to_us: i64,
    offset_s: i64,
) -> Result<Vec<CrossingDayCount>, StoreError> {
    // Integer floor division (SQLite's `/` truncates towards zero, and the bundled build has
    // no floor()), so a day number is exact for times before 1970 too.
    let mut statement = conn
        .prepare_cached(
            "SELECT (local - ((local % 86400000000) + 86400000000) % 86400000000) / 86400000000 AS day,
                    camera_id, line_id, direction, label, COUNT(*)
             FROM (SELECT at_us + ?3 * 1000000 AS local, camera_id, line_id, direction, label
                   FROM crossings WHERE at_us >= ?1 AND at_us < ?2)
             GROUP BY day, camera_id, line_id, direction, label
             ORDER BY day, camera_id, line_id, direction, label",
        )
        .map_err(&sql)?;
    let rows = statement
        .query_map(params![from_us, to_us, offset_s], |r| {
            Ok(CrossingDayCount {
                day: r.get(0)?,
                camera_id: r.get(1)?,
                line_id: r.get(2)?,
                direction: r.get(3)?,
                label: r.get(4)?,
                count: r.get::<_, i64>(5)? as u64,
            })
        })
        .map_err(&sql)?;
    rows.collect::<Result<_, _>>().map_err(&sql)
}

stats_source_on_connection!(Store);
stats_source_on_connection!(StatsReader);

impl Store {
    /// The last local day whose summary was queued, if any.
    pub fn last_summarised_day(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT value FROM counters WHERE name = ?1",
                [SUMMARY_DAY],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql())
    }

    /// Whether anything the statistics count (an incident, a crossing) happened before
    /// `at_us`.
    pub fn has_records_before(&self, at_us: i64) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM incidents WHERE opened_at_us < ?1)
                     OR EXISTS (SELECT 1 FROM crossings WHERE at_us < ?1)",
                [at_us],
                |r| r.get(0),
            )
            .map_err(self.sql())
    }

    /// Records local day `day` as summarised without queueing anything (a new box has no
    /// past days to report).
    pub fn skip_summaries_until(&mut self, day: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO counters (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
                params![SUMMARY_DAY, day],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// Queues the summary of local day `day` as a retained message on `topic`, and records
    /// the day as summarised, in one transaction: a crash leaves both or neither, so a day
    /// is summarised once. A day not after the last one summarised queues nothing (false).
    pub fn queue_daily_summary(
        &mut self,
        day: i64,
        topic: &str,
        payload: &str,
        now_us: i64,
    ) -> Result<bool, StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        let last: Option<i64> = tx
            .query_row(
                "SELECT value FROM counters WHERE name = ?1",
                [SUMMARY_DAY],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        if last.is_some_and(|last| day <= last) {
            return Ok(false);
        }
        let added = tx
            .execute(
                "INSERT OR IGNORE INTO outbox (event_id, camera_id, topic, state, payload, created_at_us, retain)
                 VALUES (?1, '', ?2, 'summary', ?3, ?4, 1)",
                params![format!("daily-summary-{day}"), topic, payload.as_bytes(), now_us],
            )
            .map_err(sql)?;
        tx.execute(
            "INSERT INTO counters (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![SUMMARY_DAY, day],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        if added > 0 {
            self.outbox_events += 1;
            self.outbox_bytes += payload.len() as u64;
        }
        Ok(added > 0)
    }
}
