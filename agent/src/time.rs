//! Time shared by every stage: the wall clock as a seam (tests run time-dependent code on a
//! simulated clock) and the one format times leave the agent in.

use chrono::{DateTime, FixedOffset};

/// RFC 3339 with milliseconds and the site's offset, e.g. `2026-11-24T21:30:00.000+08:00`.
pub fn format_time(at_us: i64, offset: FixedOffset) -> String {
    DateTime::from_timestamp_micros(at_us)
        .unwrap_or_default()
        .with_timezone(&offset)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

/// A wall clock; tests give a simulated one.
pub trait Clock: Send + Sync {
    /// Unix microseconds.
    fn now_us(&self) -> i64;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> i64 {
        chrono::Utc::now().timestamp_micros()
    }
}
