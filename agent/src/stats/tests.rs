use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use super::*;
use crate::store::{Handle, OutboxLimits};

fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap()
}

/// Unix microseconds of a site-local (+08:00) time.
fn local_us(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(&format!("{text}+08:00"))
        .unwrap()
        .timestamp_micros()
}

fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

fn fact(camera: &str, zone: &str, kind: &str, opened: &str) -> IncidentFact {
    IncidentFact {
        camera_id: camera.into(),
        zone_id: (!zone.is_empty()).then(|| zone.into()),
        kind: kind.into(),
        opened_at_us: local_us(opened),
        verdict: None,
        reviewed_at: None,
        peak_count: 1,
    }
}

fn reviewed(mut f: IncidentFact, verdict: &str, at: &str) -> IncidentFact {
    f.verdict = Some(verdict.into());
    f.reviewed_at = Some(format!("{at}+08:00"));
    f
}

fn query(from: &str, to: &str, group: &str) -> StatsQuery {
    StatsQuery::parse(Some(from), Some(to), Some(group), date(to)).unwrap()
}

#[test]
fn groups_parse_from_a_list_and_unknown_names_are_refused() {
    assert_eq!(Grouping::parse("day,kind").unwrap(), Grouping::DEFAULT);
    assert_eq!(
        Grouping::parse(" camera , zone,kind").unwrap(),
        Grouping::PLACES
    );
    assert_eq!(Grouping::parse("").unwrap(), Grouping::default());
    let error = Grouping::parse("day,site").unwrap_err().to_string();
    assert!(error.contains("unknown group `site`"), "{error}");
}

#[test]
fn a_query_defaults_to_the_last_30_days_and_refuses_bad_ranges() {
    let today = date("2026-12-07");
    let q = StatsQuery::parse(None, None, None, today).unwrap();
    assert_eq!((q.from, q.to), (date("2026-11-08"), today));
    assert_eq!(q.days().len(), 30);
    assert_eq!(q.group, Grouping::DEFAULT);
    let bad = |from, to| {
        StatsQuery::parse(Some(from), Some(to), None, today)
            .unwrap_err()
            .to_string()
    };
    assert!(bad("2026-12-07", "2026-12-01").contains("after"));
    assert!(bad("2024-01-01", "2026-12-01").contains("at most 366 days"));
    assert!(bad("yesterday", "2026-12-01").contains("YYYY-MM-DD"));
    assert!(bad("2026-02-30", "2026-12-01").contains("bad date"));
}

#[test]
fn incidents_count_per_local_day_with_verdicts_review_times_and_crowd_peaks() {
    let mut crowd = reviewed(
        fact("gate", "square", "crowding", "2026-12-06T19:00:00"),
        "confirmed",
        "2026-12-06T19:10:00",
    );
    crowd.peak_count = 9;
    let facts = vec![
        // 00:30 local on the 6th is still the 5th in UTC: it counts on the 6th.
        reviewed(
            fact("gate", "lane", "illegal_parking", "2026-12-06T00:30:00"),
            "dismissed",
            "2026-12-06T00:31:00",
        ),
        reviewed(
            fact("gate", "lane", "illegal_parking", "2026-12-06T08:00:00"),
            "confirmed",
            "2026-12-06T08:05:00",
        ),
        fact("gate", "lane", "illegal_parking", "2026-12-06T23:59:00"),
        crowd,
        fact("yard", "", "camera_offline", "2026-12-07T03:00:00"),
    ];
    let q = query("2026-12-05", "2026-12-07", "day,kind");
    let stats = aggregate("site", china(), &q, &facts, &[]);
    assert_eq!(stats.days, ["2026-12-05", "2026-12-06", "2026-12-07"]);
    assert_eq!(stats.group, ["day", "kind"]);
    let rows: Vec<(&str, &str, u64, u64, u64, u64)> = stats
        .incidents
        .iter()
        .map(|r| {
            (
                r.day.as_deref().unwrap(),
                r.kind.as_deref().unwrap(),
                r.opened,
                r.confirmed,
                r.dismissed,
                r.pending,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("2026-12-06", "crowding", 1, 1, 0, 0),
            ("2026-12-06", "illegal_parking", 3, 1, 1, 1),
            ("2026-12-07", "camera_offline", 1, 0, 0, 1),
        ]
    );
    let parking = &stats.incidents[1];
    // 60 s and 300 s: the median of two is their mean.
    assert_eq!(parking.median_review_s, Some(180.0));
    assert_eq!(
        parking.peak_persons, None,
        "persons are counted for crowding only"
    );
    assert_eq!(stats.incidents[0].peak_persons, Some(9));
    assert!(stats.incidents[0].camera.is_none() && stats.incidents[0].zone.is_none());
    assert_eq!(stats.totals.opened, 5);
    assert_eq!(
        (
            stats.totals.confirmed,
            stats.totals.dismissed,
            stats.totals.pending
        ),
        (2, 1, 2)
    );
    // 60, 300, 600: the middle one.
    assert_eq!(stats.totals.median_review_s, Some(300.0));
    assert_eq!(stats.totals.peak_persons, Some(9));

    // Grouped by place, the camera-wide incident has an empty zone.
    let places = aggregate(
        "site",
        china(),
        &query("2026-12-05", "2026-12-07", "camera,zone"),
        &facts,
        &[],
    );
    let keys: Vec<(String, String, u64)> = places
        .incidents
        .iter()
        .map(|r| (r.camera.clone().unwrap(), r.zone.clone().unwrap(), r.opened))
        .collect();
    assert_eq!(
        keys,
        [
            ("gate".into(), "lane".into(), 3),
            ("gate".into(), "square".into(), 1),
            ("yard".into(), String::new(), 1)
        ]
    );
}

#[test]
fn crossings_sum_over_what_is_not_grouped_and_keep_direction_and_class() {
    let c = |day: &str, line: &str, direction: &str, label: &str, count| CrossingDayCount {
        day: number_of(date(day)),
        camera_id: "door".into(),
        line_id: line.into(),
        direction: direction.into(),
        label: label.into(),
        count,
    };
    let counts = vec![
        c("2026-12-06", "a", "in", "person", 3),
        c("2026-12-06", "b", "in", "person", 2),
        c("2026-12-06", "a", "out", "person", 4),
        c("2026-12-07", "a", "in", "bicycle", 1),
    ];
    let stats = aggregate(
        "site",
        china(),
        &query("2026-12-06", "2026-12-07", "day"),
        &[],
        &counts,
    );
    let rows: Vec<(String, String, String, u64)> = stats
        .crossings
        .iter()
        .map(|r| {
            (
                r.day.clone().unwrap(),
                r.direction.clone(),
                r.class.clone(),
                r.count,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("2026-12-06".into(), "in".into(), "person".into(), 5),
            ("2026-12-06".into(), "out".into(), "person".into(), 4),
            ("2026-12-07".into(), "in".into(), "bicycle".into(), 1),
        ]
    );
    assert!(stats.crossings.iter().all(|r| r.line.is_none()));
    assert_eq!(
        (stats.totals.crossings_in, stats.totals.crossings_out),
        (6, 4)
    );
    let by_line = aggregate(
        "site",
        china(),
        &query("2026-12-06", "2026-12-07", "zone"),
        &[],
        &counts,
    );
    assert_eq!(by_line.crossings.len(), 4);
    assert_eq!(by_line.crossings[0].line.as_deref(), Some("a"));
}

#[test]
fn csv_has_the_grouped_columns_and_parses_back() {
    let facts = vec![
        fact("门岗", "消防通道", "illegal_parking", "2026-12-06T08:00:00"),
        reviewed(
            fact("门岗", "消防通道", "illegal_parking", "2026-12-06T09:00:00"),
            "confirmed",
            "2026-12-06T09:01:30",
        ),
    ];
    let crossings = vec![CrossingDayCount {
        day: number_of(date("2026-12-06")),
        camera_id: "门岗".into(),
        line_id: "gate, east".into(),
        direction: "out".into(),
        label: "person".into(),
        count: 7,
    }];
    let stats = aggregate(
        "site",
        china(),
        &query("2026-12-06", "2026-12-06", "day,camera,zone,kind"),
        &facts,
        &crossings,
    );
    let text = to_csv(&stats, Table::Incidents).unwrap();
    assert!(text.starts_with('\u{feff}'));
    let mut reader = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "site",
            "day",
            "camera",
            "zone",
            "kind",
            "opened",
            "confirmed",
            "dismissed",
            "pending",
            "median_review_s",
            "peak_persons"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][2], "门岗");
    assert_eq!(&rows[0][5], "2");
    assert_eq!(&rows[0][6], "1");
    assert_eq!(&rows[0][9], "90");
    assert_eq!(&rows[0][10], "");

    let text = to_csv(&stats, Table::Crossings).unwrap();
    let mut reader = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "site",
            "day",
            "camera",
            "line",
            "direction",
            "class",
            "count"
        ]
    );
    let row = reader.records().next().unwrap().unwrap();
    // A comma inside a field is quoted, not a new column.
    assert_eq!(&row[3], "gate, east");
    assert_eq!(&row[6], "7");
    assert!(Table::parse(Some("people")).is_err());
}

#[test]
fn summaries_are_due_for_every_missed_day_up_to_yesterday_within_a_week() {
    let today = 20_000;
    assert_eq!(days_due(None, today), [today - 1]);
    assert_eq!(days_due(Some(today - 1), today), Vec::<i64>::new());
    assert_eq!(days_due(Some(today), today), Vec::<i64>::new());
    assert_eq!(days_due(Some(today - 3), today), [today - 2, today - 1]);
    let week = days_due(Some(today - 40), today);
    assert_eq!(week.len() as i64, MAX_CATCH_UP_DAYS);
    assert_eq!(week.last(), Some(&(today - 1)));
}

#[test]
fn local_days_and_midnight_follow_the_site_offset() {
    let at = local_us("2026-12-06T23:59:59");
    assert_eq!(date_of(day_number(at, china())), date("2026-12-06"));
    assert_eq!(until_midnight(at, china()), Duration::from_secs(1));
    // The same instant is the 6th in UTC too, but 16:00 UTC is already the 7th here.
    let four_pm_utc = chrono::DateTime::parse_from_rfc3339("2026-12-06T16:00:00Z")
        .unwrap()
        .timestamp_micros();
    assert_eq!(
        date_of(day_number(four_pm_utc, china())),
        date("2026-12-07")
    );
    assert_eq!(
        until_midnight(four_pm_utc, china()),
        Duration::from_secs(86_400)
    );
    assert_eq!(
        date_of(day_number(four_pm_utc, FixedOffset::east_opt(0).unwrap())),
        date("2026-12-06")
    );
}

struct SimulatedClock(AtomicI64);

impl Clock for SimulatedClock {
    fn now_us(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn delivery(dir: &std::path::Path) -> Delivery {
    let store = Handle::open(dir, OutboxLimits::default()).unwrap();
    Delivery::new(store, None, Arc::default(), None, Arc::default())
}

fn settings(check_every: Duration) -> SummarySettings {
    SummarySettings {
        site: "site".into(),
        box_id: "box-1".into(),
        offset: china(),
        topic: "gridwatch/v1/site/stats/daily".into(),
        check_every,
    }
}

fn summaries_in_outbox(delivery: &Delivery) -> Vec<serde_json::Value> {
    let store = delivery.store();
    store
        .outbox_after(0, 100)
        .unwrap()
        .into_iter()
        .map(|row| {
            assert!(row.retain, "the summary is retained");
            assert_eq!(row.topic, "gridwatch/v1/site/stats/daily");
            serde_json::from_slice(&row.payload).unwrap()
        })
        .collect()
}

/// On simulated time, a new box: nothing at start (it has no past day), nothing more until
/// the site's midnight, and just after it the day that ended, once.
#[test]
fn the_summary_thread_queues_each_day_once_just_after_local_midnight() {
    let dir = tempfile::tempdir().unwrap();
    let delivery = delivery(dir.path());
    let clock = Arc::new(SimulatedClock(AtomicI64::new(local_us(
        "2026-12-06T23:59:58",
    ))));
    let settings = settings(Duration::from_millis(5));
    let thread = DailySummaries::start(delivery.clone(), settings.clone(), clock.clone()).unwrap();
    let wait_for = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found = summaries_in_outbox(&delivery);
            if found.len() >= n || std::time::Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // The first look at the clock records that there is no past day to report (polled:
    // under qemu a thread starts slowly); many more before midnight add nothing.
    let fifth = number_of(date("2026-12-05"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while delivery.store().last_summarised_day().unwrap() != Some(fifth) {
        assert!(
            std::time::Instant::now() < deadline,
            "the thread never looked"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(summaries_in_outbox(&delivery).is_empty());
    clock
        .0
        .store(local_us("2026-12-07T00:00:01"), Ordering::SeqCst);
    let first = wait_for(1);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["day"], "2026-12-06");
    assert_eq!(first[0]["schema"], "gridwatch.daily-summary/v1");
    assert_eq!(first[0]["box_id"], "box-1");
    assert_eq!(first[0]["totals"]["opened"], 0);
    std::thread::sleep(Duration::from_millis(100));
    thread.stop();
    assert_eq!(summaries_in_outbox(&delivery).len(), 1);

    // A restart the same day queues nothing again: the day is recorded with its summary.
    assert!(
        queue_due_summaries(&delivery, &settings, local_us("2026-12-07T08:00:00"))
            .unwrap()
            .is_empty()
    );
}

/// A box with history (upgraded, or off at midnight) reports the days it missed at start,
/// with what they held.
#[test]
fn a_box_with_history_reports_the_days_it_missed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let delivery = delivery(dir.path());
    let crossing = crate::rules::line::Crossing {
        line: Arc::from("door"),
        direction: crate::rules::line::Crossed::In,
        track_id: 3,
        label: Arc::from("person"),
        at_us: local_us("2026-12-04T10:00:00"),
    };
    delivery
        .store()
        .record_crossing("lobby", &crossing)
        .unwrap();
    let settings = settings(Duration::from_secs(60));
    let queued =
        queue_due_summaries(&delivery, &settings, local_us("2026-12-05T08:00:00")).unwrap();
    assert_eq!(queued, [number_of(date("2026-12-04"))]);
    // Off for two days: both reported, in order, when it comes back.
    let queued =
        queue_due_summaries(&delivery, &settings, local_us("2026-12-08T00:30:00")).unwrap();
    assert_eq!(
        queued,
        [
            number_of(date("2026-12-05")),
            number_of(date("2026-12-06")),
            number_of(date("2026-12-07"))
        ]
    );
    let summaries = summaries_in_outbox(&delivery);
    assert_eq!(summaries.len(), 4);
    assert_eq!(summaries[0]["day"], "2026-12-04");
    assert_eq!(summaries[0]["totals"]["crossings_in"], 1);
    assert_eq!(summaries[0]["crossings"][0]["camera"], "lobby");
    assert_eq!(summaries[0]["crossings"][0]["line"], "door");
    assert_eq!(summaries[1]["totals"]["crossings_in"], 0);
    assert_eq!(summaries[3]["day"], "2026-12-07");
}
