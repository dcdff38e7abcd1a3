//! Rules on how many objects a zone holds, one incident per zone at a time.
//!
//! `crowding`: persons in a zone at or above `min_count` for `duration`. On the way up a dip
//! below `min_count` shorter than [`PENDING_DIP_US`] does not restart the clock: one person
//! walks out as the next walks in, or a small far person is missed for a second. It clears
//! with hysteresis: only once the count stays below `clear_count` for `clear_duration`, so a
//! crowd that thins for a moment is still one incident.
//!
//! `presence` is the same clock with a count of one: any of the zone's objects in it for
//! `min_time` (`two_wheeler_in_elevator`, `intrusion`), closed once the zone has held none
//! for `grace`. No cooldown: an e-bike wheeled back into the elevator a minute later is a
//! new incident the doors must wait for.

use super::{
    CloseReason, FrameContext, Kind, ObjectRef, RuleEvent, Schedule, Signal, Timing, Transition,
};

/// A person counts while its track was detected within this long: one missed frame does
/// not shrink the crowd.
const RECENTLY_SEEN_US: i64 = 1_000_000;

/// While a crowd is pending, the count may fall below `min_count` for this long without
/// restarting its `duration` clock. Short against any sensible `duration` (10 s and more), so
/// a crowd is still a crowd for nearly all of it; a track lost and found again also needs a
/// few frames to be confirmed, which this covers.
const PENDING_DIP_US: i64 = 2_000_000;

#[derive(Debug, Clone)]
enum State {
    Idle,
    Pending {
        since_us: i64,
        below_since_us: Option<i64>,
    },
    Open(Crowd),
}

#[derive(Debug, Clone)]
struct Crowd {
    key: u64,
    started_at_us: i64,
    peak: u32,
    peak_at_us: i64,
    count: u32,
    last_update_us: i64,
    clearing_since_us: Option<i64>,
    last_above_us: i64,
    objects: Vec<ObjectRef>,
}

pub struct CountRule {
    index: usize,
    kind: Kind,
    signal: Signal,
    close_reason: CloseReason,
    zone: usize,
    classes: Vec<u16>,
    min_count: u32,
    duration_us: i64,
    clear_count: u32,
    clear_duration_us: i64,
    schedule: Schedule,
    timing: Timing,
    state: State,
    last_closed_us: Option<i64>,
    next_key: u64,
}

impl CountRule {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        zone: usize,
        classes: Vec<u16>,
        min_count: u32,
        duration_us: i64,
        clear_count: u32,
        clear_duration_us: i64,
        schedule: Schedule,
        timing: Timing,
    ) -> CountRule {
        CountRule {
            index,
            kind: Kind::Crowding,
            signal: Signal::PersonCount,
            close_reason: CloseReason::Cleared,
            zone,
            classes,
            min_count,
            duration_us,
            clear_count,
            clear_duration_us,
            schedule,
            timing,
            state: State::Idle,
            last_closed_us: None,
            next_key: 0,
        }
    }

    /// `presence` of `kind`: one of `classes` in the zone for `min_time_us`, closed once
    /// none has been there for `grace_us`.
    #[allow(clippy::too_many_arguments)]
    pub fn presence(
        index: usize,
        kind: Kind,
        zone: usize,
        classes: Vec<u16>,
        min_time_us: i64,
        grace_us: i64,
        schedule: Schedule,
        timing: Timing,
    ) -> CountRule {
        CountRule {
            kind,
            signal: Signal::ObjectPresent,
            close_reason: CloseReason::Left,
            ..CountRule::new(
                index,
                zone,
                classes,
                1,
                min_time_us,
                1,
                grace_us,
                schedule,
                Timing {
                    cooldown_us: 0,
                    ..timing
                },
            )
        }
    }

    /// See [`super::StationaryRule::renumber`].
    pub fn renumber(&mut self, index: usize, zone: usize) {
        self.index = index;
        self.zone = zone;
    }

    pub fn zone(&self) -> usize {
        self.zone
    }

    /// Closes an open crowd with `reason` and forgets a pending one.
    pub fn close_all(&mut self, at_us: i64, reason: CloseReason, out: &mut Vec<RuleEvent>) {
        if let State::Open(crowd) = std::mem::replace(&mut self.state, State::Idle) {
            out.push(self.event(&crowd, Transition::Close(reason), at_us));
        }
    }

    fn event(&self, crowd: &Crowd, transition: Transition, at_us: i64) -> RuleEvent {
        RuleEvent {
            kind: self.kind,
            zone: Some(self.zone),
            key: (self.index, crowd.key),
            transition,
            at_us,
            started_at_us: crowd.started_at_us,
            ended_at_us: matches!(transition, Transition::Close(_)).then_some(crowd.last_above_us),
            objects: crowd.objects.clone(),
            count: crowd.count,
            peak_count: crowd.peak,
            confidence: if crowd.objects.is_empty() {
                0.0
            } else {
                crowd.objects.iter().map(|o| o.score).sum::<f32>() / crowd.objects.len() as f32
            },
            confirmed: true,
            signals: vec![self.signal],
            best_at_us: crowd.peak_at_us,
        }
    }

    pub fn evaluate(&mut self, ctx: &FrameContext<'_>, out: &mut Vec<RuleEvent>) {
        let at = ctx.at_us;
        let persons = || {
            ctx.tracks.iter().filter(|t| {
                t.confirmed
                    && self.classes.contains(&t.class_id)
                    && at - t.last_seen_us <= RECENTLY_SEEN_US
                    && ctx.membership.is_inside(self.zone, t.id)
            })
        };
        let count = persons().count() as u32;
        let cooling = self
            .last_closed_us
            .is_some_and(|closed| at - closed < self.timing.cooldown_us);
        if matches!(self.state, State::Idle)
            && count >= self.min_count
            && !cooling
            && self.schedule.contains(at, ctx.offset)
        {
            // Checked as pending in this same frame: a zero `min_time` opens at once.
            self.state = State::Pending {
                since_us: at,
                below_since_us: None,
            };
        }
        match &mut self.state {
            State::Idle => {}
            State::Pending {
                since_us,
                below_since_us,
            } => {
                let since = *since_us;
                if count < self.min_count {
                    let below_since = *below_since_us.get_or_insert(at);
                    if at - below_since > PENDING_DIP_US {
                        self.state = State::Idle;
                    }
                    return;
                }
                *below_since_us = None;
                if at - since >= self.duration_us {
                    let crowd = Crowd {
                        key: self.next_key,
                        started_at_us: since,
                        peak: count,
                        peak_at_us: at,
                        count,
                        last_update_us: at,
                        clearing_since_us: None,
                        last_above_us: at,
                        objects: persons().map(ObjectRef::of).collect(),
                    };
                    self.next_key += 1;
                    out.push(self.event(&crowd, Transition::Open, at));
                    self.state = State::Open(crowd);
                }
            }
            State::Open(crowd) => {
                crowd.count = count;
                if count > crowd.peak {
                    crowd.peak = count;
                    crowd.peak_at_us = at;
                    crowd.objects.clear();
                    crowd.objects.extend(persons().map(ObjectRef::of));
                }
                if count >= self.clear_count {
                    crowd.clearing_since_us = None;
                    crowd.last_above_us = at;
                } else {
                    let since = *crowd.clearing_since_us.get_or_insert(at);
                    if at - since >= self.clear_duration_us {
                        let crowd = crowd.clone();
                        out.push(self.event(&crowd, Transition::Close(self.close_reason), at));
                        self.last_closed_us = Some(at);
                        self.state = State::Idle;
                        return;
                    }
                }
                if at - crowd.last_update_us >= self.timing.update_every_us {
                    crowd.last_update_us = at;
                    let crowd = crowd.clone();
                    out.push(self.event(&crowd, Transition::Update, at));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MembershipMode, TrackerConfig};
    use crate::frame::{BBox, Detection};
    use crate::track::Tracker;
    use crate::zones::{Zone, ZoneMembership};
    use chrono::FixedOffset;
    use std::sync::Arc;

    const S: i64 = 1_000_000;

    fn persons(n: usize) -> Vec<Detection> {
        (0..n)
            .map(|i| {
                let x = 0.05 + 0.09 * i as f32;
                let norm = BBox {
                    x1: x,
                    y1: 0.3,
                    x2: x + 0.05,
                    y2: 0.6,
                };
                Detection {
                    label: Arc::from("person"),
                    class_id: 0,
                    score: 0.8,
                    bbox: norm,
                    norm,
                }
            })
            .collect()
    }

    /// Runs the rule over (seconds, persons) segments at 5 fps; returns (t, transition, count, peak).
    fn run(segments: &[(f64, usize)]) -> Vec<(f64, Transition, u32, u32)> {
        let zones = vec![Zone {
            id: "square".into(),
            name: "广场".into(),
            polygon: vec![(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)],
            classes: None,
            min_area: 0.0,
            inertia: 1,
            area_m2: Some(100.0),
            membership: MembershipMode::BottomCentre,
            min_overlap: 0.5,
        }];
        let rule = CountRule::new(
            0,
            0,
            vec![0],
            5,
            10 * S,
            4,
            5 * S,
            Schedule::default(),
            TIMING,
        );
        run_rule(rule, &zones, segments)
    }

    const TIMING: Timing = Timing {
        update_every_us: 60 * S,
        cooldown_us: 120 * S,
    };

    fn run_rule(
        mut rule: CountRule,
        zones: &[Zone],
        segments: &[(f64, usize)],
    ) -> Vec<(f64, Transition, u32, u32)> {
        let mut tracker = Tracker::new(TrackerConfig::default());
        let mut membership = ZoneMembership::default();
        let mut events = Vec::new();
        let mut time = 0i64;
        for &(seconds, n) in segments {
            for _ in 0..(seconds * 5.0) as i64 {
                let dets = persons(n);
                tracker.update(time, &dets);
                membership.update(zones, tracker.tracks(), time);
                let ctx = FrameContext {
                    at_us: time,
                    tracks: tracker.tracks(),
                    membership: &membership,
                    detections: &dets,
                    offset: FixedOffset::east_opt(0).unwrap(),
                };
                let mut out = Vec::new();
                rule.evaluate(&ctx, &mut out);
                for e in out {
                    events.push((time as f64 / 1e6, e.transition, e.count, e.peak_count));
                }
                time += S / 5;
            }
        }
        events
    }

    #[test]
    fn opens_after_duration_reports_peak_and_clears_with_hysteresis() {
        let events = run(&[(5.0, 2), (30.0, 6), (20.0, 8), (10.0, 4), (20.0, 2)]);
        let open = events
            .iter()
            .find(|e| e.1 == Transition::Open)
            .expect("opened");
        // 6 persons from 5 s; confirmed tracks after 3 hits (0.4 s); open 10 s later.
        assert!((open.0 - 15.4).abs() < 0.5, "opened at {}", open.0);
        assert_eq!(open.2, 6);
        // Dropping to 4 (= clear_count) does not clear; dropping to 2 does, after 5 s.
        let close = events
            .iter()
            .find(|e| matches!(e.1, Transition::Close(_)))
            .expect("closed");
        assert!((close.0 - 70.0).abs() < 1.5, "closed at {}", close.0);
        assert_eq!(close.3, 8, "peak");
        assert_eq!(events.iter().filter(|e| e.1 == Transition::Open).count(), 1);
    }

    #[test]
    fn a_short_gathering_or_a_small_group_is_not_a_crowd() {
        assert!(run(&[(8.0, 6), (30.0, 2)]).is_empty());
        assert!(run(&[(60.0, 4)]).is_empty());
    }

    #[test]
    fn a_dip_of_a_second_while_pending_keeps_the_clock_a_longer_one_restarts_it() {
        let kept = run(&[(6.0, 6), (1.4, 2), (12.0, 6)]);
        let open = kept
            .iter()
            .find(|e| e.1 == Transition::Open)
            .expect("opened");
        // Confirmed at 0.4 s, open 10 s later, the dip counted in.
        assert!((open.0 - 10.4).abs() < 0.5, "opened at {}", open.0);
        // 4 s below (a person counts 1 s after it was last seen: 3 s of a lower count).
        let restarted = run(&[(6.0, 6), (4.0, 2), (14.0, 6)]);
        let open = restarted
            .iter()
            .find(|e| e.1 == Transition::Open)
            .expect("opened");
        // The clock restarts when the crowd is back (10 s) and its tracks confirmed.
        assert!((open.0 - 20.4).abs() < 0.5, "opened at {}", open.0);
    }

    #[test]
    fn a_brief_dip_does_not_split_the_incident() {
        let events = run(&[(20.0, 6), (3.0, 2), (20.0, 6), (20.0, 0)]);
        assert_eq!(events.iter().filter(|e| e.1 == Transition::Open).count(), 1);
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e.1, Transition::Close(_)))
                .count(),
            1
        );
    }

    fn presence(min_time_s: i64) -> (CountRule, Vec<Zone>) {
        let zone = Zone {
            id: "lift".into(),
            name: "电梯".into(),
            polygon: vec![(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)],
            classes: Some(vec![0]),
            min_area: 0.0,
            inertia: 1,
            area_m2: None,
            membership: MembershipMode::Overlap,
            min_overlap: 0.5,
        };
        let rule = CountRule::presence(
            0,
            Kind::TwoWheelerInElevator,
            0,
            vec![0],
            min_time_s * S,
            3 * S,
            Schedule::default(),
            TIMING,
        );
        (rule, vec![zone])
    }

    #[test]
    fn presence_opens_after_min_time_and_closes_when_gone_for_grace() {
        let (rule, zones) = presence(1);
        let events = run_rule(rule, &zones, &[(2.0, 0), (5.0, 1), (10.0, 0)]);
        let opens: Vec<_> = events.iter().filter(|e| e.1 == Transition::Open).collect();
        assert_eq!(opens.len(), 1, "{events:?}");
        // In from 2 s, confirmed after 3 hits (0.4 s), 1 s in the zone.
        assert!((opens[0].0 - 3.4).abs() < 0.3, "opened at {}", opens[0].0);
        let close = events
            .iter()
            .find(|e| matches!(e.1, Transition::Close(_)))
            .expect("closed");
        assert_eq!(close.1, Transition::Close(CloseReason::Left));
        // Gone at 7 s, uncounted 1 s later, then grace 3 s.
        assert!((close.0 - 11.0).abs() < 0.5, "closed at {}", close.0);
    }

    #[test]
    fn presence_with_zero_min_time_opens_at_once_and_has_no_cooldown() {
        let (rule, zones) = presence(0);
        let events = run_rule(rule, &zones, &[(3.0, 1), (6.0, 0), (3.0, 1)]);
        let opens: Vec<f64> = events
            .iter()
            .filter(|e| e.1 == Transition::Open)
            .map(|e| e.0)
            .collect();
        // The first frame the track is confirmed in; again when it comes back after the
        // close, with no cooldown.
        assert_eq!(opens.len(), 2, "{events:?}");
        assert!(opens[0] < 0.5, "{opens:?}");
        assert!((opens[1] - 9.0).abs() < 0.6, "{opens:?}");
    }

    #[test]
    fn presence_events_carry_their_kind_and_signal() {
        let (rule, _) = presence(0);
        let crowd = Crowd {
            key: 0,
            started_at_us: 0,
            peak: 1,
            peak_at_us: 0,
            count: 1,
            last_update_us: 0,
            clearing_since_us: None,
            last_above_us: 0,
            objects: Vec::new(),
        };
        let event = rule.event(&crowd, Transition::Open, 0);
        assert_eq!(event.kind, Kind::TwoWheelerInElevator);
        assert_eq!(event.signals, vec![Signal::ObjectPresent]);
    }
}
