//! Weekly schedules in the site's local time: "22:00-06:00" (every day, across midnight),
//! "mon-fri 08:00-18:00", "sat,sun 00:00-24:00". A window that ends at or before its start
//! runs past midnight and belongs to the day it starts on.

use chrono::{DateTime, Datelike, FixedOffset, Timelike};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    /// Bit 0 = Monday ... bit 6 = Sunday: the days the window starts on.
    days: u8,
    start_min: u32,
    end_min: u32,
}

/// A set of weekly windows; empty means "always".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schedule {
    windows: Vec<Window>,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const ALL_DAYS: u8 = 0b111_1111;

fn parse_time(text: &str, allow_24: bool) -> Result<u32, String> {
    let (h, m) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not a time like 22:00"))?;
    let h: u32 = h.parse().map_err(|_| format!("`{text}`: bad hour"))?;
    let m: u32 = m.parse().map_err(|_| format!("`{text}`: bad minute"))?;
    if m > 59 || h > 24 || (h == 24 && (m != 0 || !allow_24)) {
        return Err(format!("`{text}` is not a time of day"));
    }
    Ok(h * 60 + m)
}

fn day_index(name: &str) -> Result<u32, String> {
    DAY_NAMES
        .iter()
        .position(|d| name.eq_ignore_ascii_case(d))
        .map(|i| i as u32)
        .ok_or_else(|| format!("`{name}` is not a day (mon, tue, wed, thu, fri, sat, sun)"))
}

fn parse_days(text: &str) -> Result<u8, String> {
    let mut days = 0u8;
    for part in text.split(',') {
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (day_index(from.trim())?, day_index(to.trim())?);
                let mut d = from;
                loop {
                    days |= 1 << d;
                    if d == to {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days |= 1 << day_index(part.trim())?,
        }
    }
    Ok(days)
}

impl Schedule {
    pub fn parse(entries: &[String]) -> Result<Schedule, String> {
        let mut windows = Vec::with_capacity(entries.len());
        for entry in entries {
            let entry = entry.trim();
            let (days, range) = match entry.rsplit_once(' ') {
                Some((days, range)) => (parse_days(days.trim())?, range),
                None => (ALL_DAYS, entry),
            };
            let (start, end) = range
                .split_once('-')
                .ok_or_else(|| format!("`{entry}` is not a window like 22:00-06:00"))?;
            windows.push(Window {
                days,
                start_min: parse_time(start, false)?,
                end_min: parse_time(end, true)?,
            });
        }
        Ok(Schedule { windows })
    }

    pub fn is_always(&self) -> bool {
        self.windows.is_empty()
    }

    /// Is the instant `at_us` (Unix microseconds) inside the schedule, in local time?
    pub fn contains(&self, at_us: i64, offset: FixedOffset) -> bool {
        if self.windows.is_empty() {
            return true;
        }
        let local: DateTime<FixedOffset> = DateTime::from_timestamp_micros(at_us)
            .unwrap_or_default()
            .with_timezone(&offset);
        let minute = local.hour() * 60 + local.minute();
        let today = local.weekday().num_days_from_monday();
        let yesterday = (today + 6) % 7;
        self.windows.iter().any(|w| {
            let starts_on = |day: u32| w.days & (1 << day) != 0;
            if w.start_min < w.end_min {
                starts_on(today) && (w.start_min..w.end_min).contains(&minute)
            } else {
                (starts_on(today) && minute >= w.start_min)
                    || (starts_on(yesterday) && minute < w.end_min)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_micros()
    }

    fn cst() -> FixedOffset {
        FixedOffset::east_opt(8 * 3600).unwrap()
    }

    fn schedule(entries: &[&str]) -> Schedule {
        Schedule::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn empty_schedule_is_always() {
        assert!(schedule(&[]).contains(at("2026-11-24T12:00:00+08:00"), cst()));
    }

    #[test]
    fn night_window_crosses_midnight() {
        let night = schedule(&["22:00-06:00"]);
        assert!(night.contains(at("2026-11-24T22:00:00+08:00"), cst()));
        assert!(night.contains(at("2026-11-24T23:59:00+08:00"), cst()));
        assert!(night.contains(at("2026-11-25T00:00:00+08:00"), cst()));
        assert!(night.contains(at("2026-11-25T05:59:59+08:00"), cst()));
        assert!(!night.contains(at("2026-11-25T06:00:00+08:00"), cst()));
        assert!(!night.contains(at("2026-11-24T12:00:00+08:00"), cst()));
        assert!(!night.contains(at("2026-11-24T21:59:59+08:00"), cst()));
    }

    #[test]
    fn uses_the_site_offset_not_utc() {
        let night = schedule(&["22:00-06:00"]);
        // 15:00 UTC is 23:00 in China: inside; but noon at UTC+0 is not.
        assert!(night.contains(at("2026-11-24T15:00:00Z"), cst()));
        assert!(!night.contains(
            at("2026-11-24T15:00:00Z"),
            FixedOffset::east_opt(0).unwrap()
        ));
        // A half-hour offset shifts the boundary by half an hour.
        let india = FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
        assert!(night.contains(at("2026-11-24T16:30:00Z"), india)); // 22:00 local
        assert!(!night.contains(at("2026-11-24T16:29:00Z"), india));
    }

    #[test]
    fn weekday_windows_and_overnight_days() {
        let work = schedule(&["mon-fri 08:00-18:00"]);
        // 2026-11-24 is a Tuesday, 2026-11-28 a Saturday.
        assert!(work.contains(at("2026-11-24T09:00:00+08:00"), cst()));
        assert!(!work.contains(at("2026-11-28T09:00:00+08:00"), cst()));
        // Friday night into Saturday morning belongs to Friday's window.
        let fri_night = schedule(&["fri 22:00-06:00"]);
        assert!(fri_night.contains(at("2026-11-28T03:00:00+08:00"), cst()));
        assert!(!fri_night.contains(at("2026-11-29T03:00:00+08:00"), cst()));
        let weekend = schedule(&["sat,sun 00:00-24:00"]);
        assert!(weekend.contains(at("2026-11-29T23:59:00+08:00"), cst()));
        let wrap = schedule(&["sat-mon 10:00-11:00"]);
        assert!(wrap.contains(at("2026-11-30T10:30:00+08:00"), cst())); // Monday
        assert!(!wrap.contains(at("2026-11-24T10:30:00+08:00"), cst())); // Tuesday
    }

    #[test]
    fn bad_entries_are_explained() {
        let bad = |e: &str| Schedule::parse(&[e.to_string()]).unwrap_err();
        assert!(bad("22-06").contains("not a time"));
        assert!(bad("someday 10:00-11:00").contains("not a day"));
        assert!(bad("10:00").contains("not a window"));
        assert!(bad("25:00-26:00").contains("not a time of day"));
        assert!(bad("24:00-06:00").contains("not a time of day"));
    }
}
