//! `camera_offline`: a camera that delivers no frame for `offline_after` is a device fault
//! the grid platform tracks like any other incident. It closes when frames come back.
//!
//! Driven by frame times: a gap in the stream longer than `offline_after` yields an opened
//! event dated `last frame + offline_after` and, with the next frame, a closed event. A live
//! source also calls [`OfflineRule::on_idle`] from its watchdog while no frames arrive.

use super::{CloseReason, Kind, RuleEvent, Signal, Transition};

pub struct OfflineRule {
    offline_after_us: i64,
    last_frame_us: Option<i64>,
    /// Open incident: its key and since when the camera has been silent.
    open: Option<(u64, i64)>,
    next_key: u64,
}

impl OfflineRule {
    pub fn new(offline_after_us: i64) -> OfflineRule {
        OfflineRule {
            offline_after_us,
            last_frame_us: None,
            open: None,
            next_key: 0,
        }
    }

    fn event(&self, key: u64, transition: Transition, at_us: i64, since_us: i64) -> RuleEvent {
        RuleEvent {
            kind: Kind::CameraOffline,
            zone: None,
            key: (super::OFFLINE_RULE, key),
            transition,
            at_us,
            started_at_us: since_us,
            ended_at_us: matches!(transition, Transition::Close(_)).then_some(at_us),
            objects: Vec::new(),
            count: 0,
            peak_count: 0,
            confidence: 1.0,
            confirmed: true,
            signals: vec![Signal::NoFrames],
            best_at_us: since_us,
        }
    }

    /// Starts the silence clock for a live camera that has not delivered a frame yet, so
    /// one that never connects is reported too.
    pub fn watch_from(&mut self, now_us: i64) {
        self.last_frame_us.get_or_insert(now_us);
    }

    /// No frame has come; `now_us` is the wall clock. Opens the incident once the silence
    /// reaches `offline_after`.
    pub fn on_idle(&mut self, now_us: i64, out: &mut Vec<RuleEvent>) {
        let Some(last) = self.last_frame_us else {
            return;
        };
        if self.open.is_none() && now_us - last >= self.offline_after_us {
            let key = self.next_key;
            self.next_key += 1;
            out.push(self.event(key, Transition::Open, last + self.offline_after_us, last));
            self.open = Some((key, last));
        }
    }

    /// A frame arrived at `at_us`.
    pub fn on_frame(&mut self, at_us: i64, out: &mut Vec<RuleEvent>) {
        self.on_idle(at_us, out);
        if let Some((key, since)) = self.open.take() {
            out.push(self.event(key, Transition::Close(CloseReason::Recovered), at_us, since));
        }
        self.last_frame_us = Some(at_us);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn a_gap_longer_than_offline_after_opens_and_closes() {
        let mut rule = OfflineRule::new(30 * S);
        let mut out = Vec::new();
        for t in 0..50 {
            rule.on_frame(t * S / 5, &mut out);
        }
        assert!(out.is_empty(), "steady frames");
        rule.on_frame(70 * S, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].transition, Transition::Open);
        assert_eq!(
            out[0].at_us,
            49 * S / 5 + 30 * S,
            "dated offline_after after the last frame"
        );
        assert_eq!(out[1].transition, Transition::Close(CloseReason::Recovered));
        assert_eq!(out[1].at_us, 70 * S);
        assert_eq!(out[0].key, out[1].key);
    }

    #[test]
    fn a_short_gap_is_nothing_and_a_live_watchdog_opens_early() {
        let mut rule = OfflineRule::new(30 * S);
        let mut out = Vec::new();
        rule.on_frame(0, &mut out);
        rule.on_frame(29 * S, &mut out);
        assert!(out.is_empty());
        rule.on_idle(50 * S, &mut out);
        assert!(out.is_empty(), "21 s of silence is not yet offline");
        rule.on_idle(60 * S, &mut out);
        assert_eq!(out.len(), 1, "opened while still silent");
        assert_eq!(out[0].at_us, 59 * S);
        rule.on_idle(80 * S, &mut out);
        assert_eq!(out.len(), 1, "once");
        rule.on_frame(90 * S, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].started_at_us, 29 * S);
    }
}
