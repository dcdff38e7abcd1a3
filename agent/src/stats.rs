//! Statistics for the station (考核): per site, camera, zone, kind and local day, incidents
//! opened, confirmed and dismissed by review, the median time to review, the peak of persons
//! in crowding incidents, and line crossings per direction and class.
//!
//! Everything is computed from the store when asked (the incident rows with their verdicts,
//! the crossings table): there is no second set of counters that could drift from what the
//! review page lists. Days are the site's local days (`site.timezone`). The same figures
//! serve `GET /api/stats`, its CSV export and the daily summary the box publishes, retained,
//! over MQTT after each local midnight ([`DailySummaries`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{FixedOffset, NaiveDate};
use serde::Serialize;

use crate::publish::Delivery;
use crate::store::{CrossingDayCount, IncidentFact, StatsSource, StoreError};
use crate::time::{Clock, format_time};

/// The longest range one request may ask for.
pub const MAX_DAYS: i64 = 366;
/// Days a box that was off catches up on with summaries when it comes back.
pub const MAX_CATCH_UP_DAYS: i64 = 7;
const DAY_US: i64 = 86_400_000_000;

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("bad date `{0}`: expected YYYY-MM-DD (a local day of the site)")]
    BadDate(String),
    #[error("`from` ({from}) is after `to` ({to})")]
    Reversed { from: NaiveDate, to: NaiveDate },
    #[error("at most {MAX_DAYS} days at once (asked for {0})")]
    TooLong(i64),
    #[error("unknown group `{0}`: group by any of day, camera, zone, kind (comma-separated)")]
    BadGroup(String),
    #[error("unknown table `{0}`: incidents or crossings")]
    BadTable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the store is unavailable (a writer panicked); restart gridwatch")]
    Unavailable,
    #[error("cannot encode the statistics: {0}")]
    Encode(String),
}

/// Which dimensions rows are split by; the others are summed over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grouping {
    pub day: bool,
    pub camera: bool,
    pub zone: bool,
    pub kind: bool,
}

impl Grouping {
    /// `day,kind`: what the review page's chart shows by default.
    pub const DEFAULT: Grouping = Grouping {
        day: true,
        camera: false,
        zone: false,
        kind: true,
    };
    /// Everything but the day: the daily summary's rows.
    pub const PLACES: Grouping = Grouping {
        day: false,
        camera: true,
        zone: true,
        kind: true,
    };

    /// A comma-separated list of `day`, `camera`, `zone`, `kind`; empty sums everything.
    pub fn parse(text: &str) -> Result<Grouping, StatsError> {
        let mut grouping = Grouping::default();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let flag = match name {
                "day" => &mut grouping.day,
                "camera" => &mut grouping.camera,
                "zone" => &mut grouping.zone,
                "kind" => &mut grouping.kind,
                other => return Err(StatsError::BadGroup(other.chars().take(40).collect())),
            };
            *flag = true;
        }
        Ok(grouping)
    }

    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.day, "day"),
            (self.camera, "camera"),
            (self.zone, "zone"),
            (self.kind, "kind"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// A request for statistics: local days `from..=to`, split by `group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsQuery {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub group: Grouping,
}

impl StatsQuery {
    /// From the API's optional parameters: `to` defaults to today (site time), `from` to 29
    /// days before `to`, `group` to `day,kind`.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        group: Option<&str>,
        today: NaiveDate,
    ) -> Result<StatsQuery, StatsError> {
        let date = |text: &str| {
            NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                .map_err(|_| StatsError::BadDate(text.chars().take(40).collect()))
        };
        let to = to.map(date).transpose()?.unwrap_or(today);
        let from = match from {
            Some(text) => date(text)?,
            None => to - chrono::Days::new(29),
        };
        if from > to {
            return Err(StatsError::Reversed { from, to });
        }
        let days = (to - from).num_days() + 1;
        if days > MAX_DAYS {
            return Err(StatsError::TooLong(days));
        }
        let group = group.map_or(Ok(Grouping::DEFAULT), Grouping::parse)?;
        Ok(StatsQuery { from, to, group })
    }

    /// The local days asked for, in order.
    pub fn days(&self) -> Vec<NaiveDate> {
        self.from
            .iter_days()
            .take_while(|d| *d <= self.to)
            .collect()
    }
}

/// Incidents of one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
    /// The zone (or line) id; empty for incidents of a whole camera (`camera_offline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub opened: u64,
    pub confirmed: u64,
    pub dismissed: u64,
    /// Not reviewed yet.
    pub pending: u64,
    /// Median seconds from opening to the (latest) verdict, over the reviewed ones.
    pub median_review_s: Option<f64>,
    /// The most persons a crowding incident of the group counted at once.
    pub peak_persons: Option<u32>,
}

/// Crossings of one group, one direction and one class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrossingRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
    /// The line's id (lines group as zones do).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    pub direction: String,
    pub class: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    pub opened: u64,
    pub confirmed: u64,
    pub dismissed: u64,
    pub pending: u64,
    pub median_review_s: Option<f64>,
    pub peak_persons: Option<u32>,
    pub crossings_in: u64,
    pub crossings_out: u64,
}

/// The answer to a [`StatsQuery`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub site: String,
    /// The site's UTC offset the days are counted in, e.g. "+08:00".
    pub timezone: String,
    pub from: String,
    pub to: String,
    pub group: Vec<&'static str>,
    /// Every day of the range, for a chart's axis (days without incidents included).
    pub days: Vec<String>,
    pub incidents: Vec<IncidentRow>,
    pub crossings: Vec<CrossingRow>,
    pub totals: Totals,
}

/// Local day number (days since 1970-01-01 in site time) of an instant.
pub fn day_number(at_us: i64, offset: FixedOffset) -> i64 {
    (at_us + offset.local_minus_utc() as i64 * 1_000_000).div_euclid(DAY_US)
}

/// The date of a local day number.
pub fn date_of(day: i64) -> NaiveDate {
    NaiveDate::default() + chrono::TimeDelta::days(day)
}

fn number_of(date: NaiveDate) -> i64 {
    (date - NaiveDate::default()).num_days()
}

/// The instant a local day begins, Unix microseconds.
fn day_start_us(day: i64, offset: FixedOffset) -> i64 {
    day * DAY_US - offset.local_minus_utc() as i64 * 1_000_000
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    let m = if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    };
    Some((m * 10.0).round() / 10.0)
}

/// Seconds from opening to the verdict, when there is one.
fn review_delay_s(fact: &IncidentFact) -> Option<f64> {
    let reviewed = chrono::DateTime::parse_from_rfc3339(fact.reviewed_at.as_deref()?).ok()?;
    Some(((reviewed.timestamp_micros() - fact.opened_at_us) as f64 / 1e6).max(0.0))
}

#[derive(Default)]
struct Tally {
    opened: u64,
    confirmed: u64,
    dismissed: u64,
    delays: Vec<f64>,
    peak_persons: Option<u32>,
}

impl Tally {
    fn add(&mut self, fact: &IncidentFact) {
        self.opened += 1;
        match fact.verdict.as_deref() {
            Some("confirmed") => self.confirmed += 1,
            Some("dismissed") => self.dismissed += 1,
            _ => {}
        }
        if fact.verdict.is_some()
            && let Some(delay) = review_delay_s(fact)
        {
            self.delays.push(delay);
        }
        if fact.kind == "crowding" {
            self.peak_persons = self.peak_persons.max(Some(fact.peak_count));
        }
    }

    fn pending(&self) -> u64 {
        self.opened - self.confirmed - self.dismissed
    }
}

type Key = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Computes the statistics `query` asks for from the store.
pub fn compute(
    store: &impl StatsSource,
    site: &str,
    offset: FixedOffset,
    query: &StatsQuery,
) -> Result<Stats, StatsError> {
    let (first, last) = (number_of(query.from), number_of(query.to));
    let (from_us, to_us) = (day_start_us(first, offset), day_start_us(last + 1, offset));
    let facts = store.incident_facts(from_us, to_us)?;
    let crossings = store.crossing_day_counts(from_us, to_us, offset.local_minus_utc() as i64)?;
    Ok(aggregate(site, offset, query, &facts, &crossings))
}

/// The pure half of [`compute`]: groups the facts as `query` says.
pub fn aggregate(
    site: &str,
    offset: FixedOffset,
    query: &StatsQuery,
    facts: &[IncidentFact],
    crossings: &[CrossingDayCount],
) -> Stats {
    let g = query.group;
    let day_text = |day: i64| date_of(day).format("%Y-%m-%d").to_string();
    let mut groups: BTreeMap<Key, Tally> = BTreeMap::new();
    let mut all = Tally::default();
    for fact in facts {
        let key = (
            g.day
                .then(|| day_text(day_number(fact.opened_at_us, offset))),
            g.camera.then(|| fact.camera_id.clone()),
            g.zone.then(|| fact.zone_id.clone().unwrap_or_default()),
            g.kind.then(|| fact.kind.clone()),
        );
        groups.entry(key).or_default().add(fact);
        all.add(fact);
    }
    let incidents = groups
        .into_iter()
        .map(|((day, camera, zone, kind), mut tally)| IncidentRow {
            day,
            camera,
            zone,
            kind,
            opened: tally.opened,
            confirmed: tally.confirmed,
            dismissed: tally.dismissed,
            pending: tally.pending(),
            median_review_s: median(&mut tally.delays),
            peak_persons: tally.peak_persons,
        })
        .collect();
    let mut crossing_groups: BTreeMap<Key, u64> = BTreeMap::new();
    let (mut crossings_in, mut crossings_out) = (0, 0);
    for c in crossings {
        let key = (
            g.day.then(|| day_text(c.day)),
            g.camera.then(|| c.camera_id.clone()),
            g.zone.then(|| c.line_id.clone()),
            Some(format!("{}\n{}", c.direction, c.label)),
        );
        *crossing_groups.entry(key).or_default() += c.count;
        match c.direction.as_str() {
            "in" => crossings_in += c.count,
            _ => crossings_out += c.count,
        }
    }
    let crossings = crossing_groups
        .into_iter()
        .map(|((day, camera, line, what), count)| {
            let (direction, class) = what
                .as_deref()
                .and_then(|w| w.split_once('\n'))
                .unwrap_or_default();
            CrossingRow {
                day,
                camera,
                line,
                direction: direction.to_string(),
                class: class.to_string(),
                count,
            }
        })
        .collect();
    let pending = all.pending();
    Stats {
        site: site.to_string(),
        timezone: offset.to_string(),
        from: query.from.format("%Y-%m-%d").to_string(),
        to: query.to.format("%Y-%m-%d").to_string(),
        group: g.names(),
        days: query
            .days()
            .iter()
            .map(|d| d.format("%Y-%m-%d").to_string())
            .collect(),
        incidents,
        crossings,
        totals: Totals {
            opened: all.opened,
            confirmed: all.confirmed,
            dismissed: all.dismissed,
            pending,
            median_review_s: median(&mut all.delays),
            peak_persons: all.peak_persons,
            crossings_in,
            crossings_out,
        },
    }
}

/// Which table a CSV export holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Incidents,
    Crossings,
}

impl Table {
    pub fn parse(text: Option<&str>) -> Result<Table, StatsError> {
        match text.unwrap_or("incidents") {
            "incidents" => Ok(Table::Incidents),
            "crossings" => Ok(Table::Crossings),
            other => Err(StatsError::BadTable(other.chars().take(40).collect())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Incidents => "incidents",
            Table::Crossings => "crossings",
        }
    }
}

/// One table of `stats` as CSV (UTF-8 with a byte-order mark, so that spreadsheet programs
/// open the Chinese ids and names right): the site, the grouped columns, then the figures.
pub fn to_csv(stats: &Stats, table: Table) -> Result<String, StatsError> {
    let text = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    match table {
        Table::Incidents => csv_table(
            stats,
            &[
                ("day", "day"),
                ("camera", "camera"),
                ("zone", "zone"),
                ("kind", "kind"),
            ],
            &[
                "opened",
                "confirmed",
                "dismissed",
                "pending",
                "median_review_s",
                "peak_persons",
            ],
            stats.incidents.iter().map(|row| {
                (
                    [&row.day, &row.camera, &row.zone, &row.kind],
                    vec![
                        row.opened.to_string(),
                        row.confirmed.to_string(),
                        row.dismissed.to_string(),
                        row.pending.to_string(),
                        text(row.median_review_s),
                        row.peak_persons.map(|p| p.to_string()).unwrap_or_default(),
                    ],
                )
            }),
        ),
        Table::Crossings => csv_table(
            stats,
            &[
                ("day", "day"),
                ("camera", "camera"),
                ("zone", "line"),
                ("kind", ""),
            ],
            &["direction", "class", "count"],
            stats.crossings.iter().map(|row| {
                (
                    [&row.day, &row.camera, &row.line, &None],
                    vec![
                        row.direction.clone(),
                        row.class.clone(),
                        row.count.to_string(),
                    ],
                )
            }),
        ),
    }
}

/// Writes a CSV table: `site`, then of `keys` (group name, column) the grouped ones, then
/// `figures`; each row gives its key values (in the order of `keys`) and its figures.
fn csv_table<'a>(
    stats: &Stats,
    keys: &[(&str, &str); 4],
    figures: &[&str],
    rows: impl Iterator<Item = ([&'a Option<String>; 4], Vec<String>)>,
) -> Result<String, StatsError> {
    let csv_error = |e: csv::Error| StatsError::Encode(e.to_string());
    // A key is a column when rows are grouped by it (crossings have no kind).
    let shown: Vec<bool> = keys
        .iter()
        .map(|(group, column)| !column.is_empty() && stats.group.contains(group))
        .collect();
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["site"];
    header.extend(
        keys.iter()
            .zip(&shown)
            .filter(|(_, s)| **s)
            .map(|((_, c), _)| *c),
    );
    header.extend(figures);
    writer.write_record(&header).map_err(csv_error)?;
    for (values, row_figures) in rows {
        let mut record = vec![stats.site.clone()];
        record.extend(
            values
                .iter()
                .zip(&shown)
                .filter(|(_, s)| **s)
                .map(|(v, _)| v.as_deref().unwrap_or_default().to_string()),
        );
        record.extend(row_figures);
        writer.write_record(&record).map_err(csv_error)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| StatsError::Encode(e.to_string()))?;
    let body = String::from_utf8(bytes).map_err(|e| StatsError::Encode(e.to_string()))?;
    Ok(format!("\u{feff}{body}"))
}

/// The local days whose summaries are due on local day `today`: every day after `last` up
/// to yesterday, oldest first, at most [`MAX_CATCH_UP_DAYS`] of them (a box that was off for
/// a month does not flood the broker); with no summary yet, yesterday alone (the caller
/// skips it on a new box, see [`queue_due_summaries`]).
pub fn days_due(last: Option<i64>, today: i64) -> Vec<i64> {
    let yesterday = today - 1;
    let first = match last {
        Some(last) => (last + 1).max(yesterday - MAX_CATCH_UP_DAYS + 1),
        None => yesterday,
    };
    (first..=yesterday).collect()
}

/// How long from `now_us` until the next local midnight.
pub fn until_midnight(now_us: i64, offset: FixedOffset) -> Duration {
    let next = day_start_us(day_number(now_us, offset) + 1, offset);
    Duration::from_micros((next - now_us).max(0) as u64)
}

/// The daily summary of local day `day`: the statistics of that day per camera, zone and
/// kind (crossings per camera, line, direction and class), as published on `stats/daily`.
pub fn daily_summary(
    store: &impl StatsSource,
    site: &str,
    box_id: &str,
    offset: FixedOffset,
    day: i64,
    now_us: i64,
) -> Result<serde_json::Value, StatsError> {
    let date = date_of(day);
    let query = StatsQuery {
        from: date,
        to: date,
        group: Grouping::PLACES,
    };
    let stats = compute(store, site, offset, &query)?;
    let mut value = serde_json::to_value(&stats).map_err(|e| StatsError::Encode(e.to_string()))?;
    if let Some(object) = value.as_object_mut() {
        object.remove("from");
        object.remove("to");
        object.remove("days");
        object.insert("schema".into(), "gridwatch.daily-summary/v1".into());
        object.insert("box_id".into(), box_id.into());
        object.insert("day".into(), date.format("%Y-%m-%d").to_string().into());
        object.insert("generated_at".into(), format_time(now_us, offset).into());
    }
    Ok(value)
}

/// What the summary thread needs to know.
#[derive(Clone)]
pub struct SummarySettings {
    pub site: String,
    pub box_id: String,
    pub offset: FixedOffset,
    /// The retained topic (`<prefix>/stats/daily`).
    pub topic: String,
    /// How often the thread looks at the clock besides midnight (a clock set by NTP after
    /// boot moves without warning).
    pub check_every: Duration,
}

/// Queues the summaries due at `now_us` (in order, each in its own transaction with the
/// day it covers) and wakes the publisher; the days queued.
pub fn queue_due_summaries(
    delivery: &Delivery,
    settings: &SummarySettings,
    now_us: i64,
) -> Result<Vec<i64>, StatsError> {
    let today = day_number(now_us, settings.offset);
    let mut queued = Vec::new();
    let store = delivery.store();
    // Only this thread queues summaries, and the store queues a day once whatever the
    // caller read (`queue_daily_summary` checks in its transaction), so each step takes the
    // store's lock on its own and a month of figures never holds up the writers.
    let last = store.last_summarised_day()?;
    // A new box (nothing summarised, nothing recorded before today) has no past day to
    // report: its first summary is that of its first day. A box upgraded to this version
    // reports yesterday at once.
    if last.is_none() && !store.has_records_before(day_start_us(today, settings.offset))? {
        store.skip_summaries_until(today - 1)?;
        return Ok(queued);
    }
    for day in days_due(last, today) {
        let summary = daily_summary(
            store,
            &settings.site,
            &settings.box_id,
            settings.offset,
            day,
            now_us,
        )?;
        if store.queue_daily_summary(day, &settings.topic, &summary.to_string(), now_us)? {
            queued.push(day);
        }
    }
    if !queued.is_empty() {
        delivery.wake_publisher();
    }
    Ok(queued)
}

/// The thread that queues each local day's summary after its midnight, and at start the
/// days it missed while the box was off.
pub struct DailySummaries {
    stop: crossbeam_channel::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DailySummaries {
    pub fn start(
        delivery: Delivery,
        settings: SummarySettings,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<DailySummaries> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("daily-summary".into())
            .spawn(move || {
                let mut failing = false;
                loop {
                    let now_us = clock.now_us();
                    match queue_due_summaries(&delivery, &settings, now_us) {
                        Ok(days) => {
                            failing = false;
                            for day in days {
                                tracing::info!(day = %date_of(day), topic = %settings.topic, "daily summary queued");
                            }
                        }
                        Err(e) if !failing => {
                            failing = true;
                            tracing::error!("daily summary not queued, retrying: {e}");
                        }
                        Err(_) => {}
                    }
                    // Just past midnight, or the next look at the clock.
                    let wait = (until_midnight(now_us, settings.offset)
                        + Duration::from_millis(200))
                    .min(settings.check_every);
                    match stopped.recv_timeout(wait) {
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            })?;
        Ok(DailySummaries {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        let _ = self.stop.try_send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests;
