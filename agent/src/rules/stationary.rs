//! Objects that stay put where they must not: `illegal_parking` (a vehicle in a fire lane or
//! an entrance) and `fly_wire_charging` (a two-wheeler in a corridor, stairwell or under the
//! windows, typically at night).
//!
//! An incident is one **stay**: a qualifying track, stationary inside the zone since
//! `started` (the later of "came to rest" and "entered the zone"), opens it once
//! `at - started >= dwell`. The stay is anchored to the box where the object stood, so a
//! track that is lost and reborn with a new id at the same place continues the same stay. It
//! closes when no qualifying object has been at the anchor for `grace`. After a close, a new
//! stay at the same place must wait out the cooldown.

use super::{
    CloseReason, FrameContext, Kind, ObjectRef, RuleEvent, Schedule, Signal, Timing, Transition,
};
use crate::frame::BBox;
use crate::track::Track;

/// A track is "at" a stay's place when its box overlaps the anchor this much.
const SAME_PLACE_IOU: f32 = 0.3;

/// Charging-cable evidence, available when the model has a `charging_cable` label group.
#[derive(Debug, Clone)]
pub struct CableSpec {
    pub classes: Vec<u16>,
    /// The two-wheeler's box is grown by this fraction of its size on each side.
    pub margin: f32,
    /// Open an incident only with a cable seen.
    pub required: bool,
}

#[derive(Debug, Clone)]
struct Stay {
    key: u64,
    anchor: BBox,
    started_at_us: i64,
    last_present_us: i64,
    last_update_us: i64,
    object: ObjectRef,
    best_score: f32,
    best_at_us: i64,
    cable_score: Option<f32>,
    confirmed_reported: bool,
}

pub struct StationaryRule {
    index: usize,
    kind: Kind,
    zone: usize,
    classes: Vec<u16>,
    dwell_us: i64,
    grace_us: i64,
    schedule: Schedule,
    timing: Timing,
    cable: Option<CableSpec>,
    stays: Vec<Stay>,
    /// Where and when recent stays closed, for the cooldown.
    recent: Vec<(BBox, i64)>,
    next_key: u64,
}

impl StationaryRule {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        kind: Kind,
        zone: usize,
        classes: Vec<u16>,
        dwell_us: i64,
        grace_us: i64,
        schedule: Schedule,
        timing: Timing,
        cable: Option<CableSpec>,
    ) -> StationaryRule {
        StationaryRule {
            index,
            kind,
            zone,
            classes,
            dwell_us,
            grace_us,
            schedule,
            timing,
            cable,
            stays: Vec::new(),
            recent: Vec::new(),
            next_key: 0,
        }
    }

    /// The rule keeps its stays under a new rule and zone index (its zone moved in the
    /// camera's list when another zone was added or removed).
    pub fn renumber(&mut self, index: usize, zone: usize) {
        self.index = index;
        self.zone = zone;
    }

    pub fn zone(&self) -> usize {
        self.zone
    }

    /// Closes every open stay with `reason` (its zone or rule was changed or removed).
    pub fn close_all(
        &mut self,
        at_us: i64,
        offset: chrono::FixedOffset,
        reason: CloseReason,
        out: &mut Vec<RuleEvent>,
    ) {
        let in_schedule = self.schedule.contains(at_us, offset);
        for stay in std::mem::take(&mut self.stays) {
            out.push(self.event(&stay, Transition::Close(reason), at_us, in_schedule));
        }
    }

    fn qualifies(&self, track: &Track, ctx: &FrameContext<'_>) -> bool {
        track.confirmed
            && self.classes.contains(&track.class_id)
            && ctx.membership.is_inside(self.zone, track.id)
    }

    /// The best charging-cable detection touching the two-wheeler's grown box.
    fn cable_near(&self, object: &BBox, ctx: &FrameContext<'_>) -> Option<f32> {
        let spec = self.cable.as_ref()?;
        let (mx, my) = (object.width() * spec.margin, object.height() * spec.margin);
        let grown = BBox {
            x1: object.x1 - mx,
            y1: object.y1 - my,
            x2: object.x2 + mx,
            y2: object.y2 + my,
        };
        ctx.detections
            .iter()
            .filter(|d| spec.classes.contains(&d.class_id))
            .filter(|d| {
                d.norm.x1 <= grown.x2
                    && d.norm.x2 >= grown.x1
                    && d.norm.y1 <= grown.y2
                    && d.norm.y2 >= grown.y1
            })
            .map(|d| d.score)
            .max_by(f32::total_cmp)
    }

    fn signals(&self, stay: &Stay, in_schedule: bool) -> Vec<Signal> {
        let mut signals = vec![match self.kind {
            Kind::FlyWireCharging => Signal::StationaryTwoWheeler,
            _ => Signal::StationaryVehicle,
        }];
        if stay.cable_score.is_some() {
            signals.push(Signal::CableDetected);
        }
        if in_schedule && !self.schedule.is_always() {
            signals.push(Signal::InSchedule);
        }
        signals
    }

    /// Suspected incidents carry half the object's score; a cable at the two-wheeler makes
    /// it confirmed, with both detections' evidence combined.
    fn confidence(stay: &Stay) -> f32 {
        match stay.cable_score {
            Some(cable) => 1.0 - (1.0 - stay.best_score) * (1.0 - cable),
            None => stay.best_score * 0.5,
        }
    }

    fn event(
        &self,
        stay: &Stay,
        transition: Transition,
        at_us: i64,
        in_schedule: bool,
    ) -> RuleEvent {
        let confirmed = match self.kind {
            Kind::FlyWireCharging => stay.cable_score.is_some(),
            // A stationary vehicle in a no-parking zone is the offence itself.
            _ => true,
        };
        RuleEvent {
            kind: self.kind,
            zone: Some(self.zone),
            key: (self.index, stay.key),
            transition,
            at_us,
            started_at_us: stay.started_at_us,
            ended_at_us: matches!(transition, Transition::Close(_)).then_some(stay.last_present_us),
            objects: vec![stay.object.clone()],
            count: 1,
            peak_count: 1,
            confidence: match self.kind {
                Kind::FlyWireCharging => Self::confidence(stay),
                _ => stay.best_score,
            },
            confirmed,
            signals: self.signals(stay, in_schedule),
            best_at_us: stay.best_at_us,
        }
    }

    pub fn evaluate(&mut self, ctx: &FrameContext<'_>, out: &mut Vec<RuleEvent>) {
        let at = ctx.at_us;
        let in_schedule = self.schedule.contains(at, ctx.offset);
        self.recent
            .retain(|(_, closed)| at - closed < self.timing.cooldown_us);

        for track in ctx.tracks {
            if !self.qualifies(track, ctx) {
                continue;
            }
            let cable = self.cable_near(&track.bbox, ctx);
            // At the stay's place; or the same object come to rest again nearby (a car that
            // backs up a metre in the same fire lane is the same offence).
            let same_stay = |s: &Stay| {
                track.bbox.iou(&s.anchor) >= SAME_PLACE_IOU
                    || (s.object.track_id == track.id && track.is_stationary())
            };
            if let Some(stay) = self.stays.iter_mut().find(|s| same_stay(s)) {
                if track.is_stationary() {
                    stay.anchor = track.bbox;
                }
                // Presence runs from the last time the object was actually seen: a parked car's
                // track outlives long detection gaps, and grace must count from the gap's start.
                stay.last_present_us = stay.last_present_us.max(track.last_seen_us);
                if track.seen_now {
                    stay.object = ObjectRef::of(track);
                    if track.score > stay.best_score {
                        stay.best_score = track.score;
                        stay.best_at_us = at;
                    }
                }
                if let Some(c) = cable {
                    stay.cable_score = Some(stay.cable_score.map_or(c, |old: f32| old.max(c)));
                }
                continue;
            }
            // A new stay needs the object in sight now, not a lingering track.
            let Some(rest_since) = track.stationary_since_us.filter(|_| track.seen_now) else {
                continue;
            };
            let entered = ctx.membership.entered_at(self.zone, track.id).unwrap_or(at);
            let started = rest_since.max(entered);
            let cooling = self
                .recent
                .iter()
                .any(|(b, _)| b.iou(&track.bbox) >= SAME_PLACE_IOU);
            let cable_ok = !self.cable.as_ref().is_some_and(|c| c.required) || cable.is_some();
            if at - started < self.dwell_us || !in_schedule || cooling || !cable_ok {
                continue;
            }
            let stay = Stay {
                key: self.next_key,
                anchor: track.bbox,
                started_at_us: started,
                last_present_us: at,
                last_update_us: at,
                object: ObjectRef::of(track),
                best_score: track.best_score.max(track.score),
                best_at_us: if track.best_at_us >= started {
                    track.best_at_us
                } else {
                    at
                },
                cable_score: cable,
                confirmed_reported: cable.is_some(),
            };
            self.next_key += 1;
            out.push(self.event(&stay, Transition::Open, at, in_schedule));
            self.stays.push(stay);
        }

        let mut i = 0;
        while i < self.stays.len() {
            let stay = &self.stays[i];
            if at - stay.last_present_us >= self.grace_us {
                out.push(self.event(stay, Transition::Close(CloseReason::Left), at, in_schedule));
                self.recent.push((stay.anchor, at));
                self.stays.swap_remove(i);
                continue;
            }
            let newly_confirmed = stay.cable_score.is_some() && !stay.confirmed_reported;
            if newly_confirmed || at - stay.last_update_us >= self.timing.update_every_us {
                out.push(self.event(stay, Transition::Update, at, in_schedule));
                let stay = &mut self.stays[i];
                stay.last_update_us = at;
                stay.confirmed_reported = stay.cable_score.is_some();
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MembershipMode, TrackerConfig};
    use crate::frame::Detection;
    use crate::track::Tracker;
    use crate::zones::{Zone, ZoneMembership};
    use chrono::FixedOffset;
    use std::sync::Arc;

    const S: i64 = 1_000_000;

    fn zone() -> Zone {
        Zone {
            id: "lane".into(),
            name: "消防通道".into(),
            polygon: vec![(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)],
            classes: None,
            min_area: 0.0,
            inertia: 2,
            area_m2: None,
            membership: MembershipMode::BottomCentre,
            min_overlap: 0.5,
        }
    }

    fn car_at(x: f32, class_id: u16, label: &str) -> Detection {
        let norm = BBox {
            x1: x,
            y1: 0.6,
            x2: x + 0.2,
            y2: 0.8,
        };
        Detection {
            label: Arc::from(label),
            class_id,
            score: 0.8,
            bbox: norm,
            norm,
        }
    }

    /// Drives tracker, zones and one rule over scripted frames at 5 fps; returns
    /// (seconds, transition) of every event.
    struct Harness {
        tracker: Tracker,
        zones: Vec<Zone>,
        membership: ZoneMembership,
        rule: StationaryRule,
        time: i64,
        origin: i64,
        events: Vec<(f64, Transition, bool)>,
    }

    impl Harness {
        fn new(kind: Kind, dwell_s: i64, schedule: &[&str], cable: Option<CableSpec>) -> Harness {
            let schedule =
                Schedule::parse(&schedule.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .unwrap();
            let timing = Timing {
                update_every_us: 60 * S,
                cooldown_us: 120 * S,
            };
            let time = chrono::DateTime::parse_from_rfc3339("2026-11-24T23:00:00+08:00")
                .unwrap()
                .timestamp_micros();
            Harness {
                tracker: Tracker::new(TrackerConfig::default()),
                zones: vec![zone()],
                membership: ZoneMembership::default(),
                rule: StationaryRule::new(
                    0,
                    kind,
                    0,
                    vec![1, 2, 3],
                    dwell_s * S,
                    30 * S,
                    schedule,
                    timing,
                    cable,
                ),
                time,
                origin: time,
                events: Vec::new(),
            }
        }

        fn run(&mut self, seconds: f64, detections: impl Fn(f64) -> Vec<Detection>) {
            let frames = (seconds * 5.0) as i64;
            for f in 0..frames {
                let t = f as f64 / 5.0;
                let dets = detections(t);
                self.tracker.update(self.time, &dets);
                self.membership
                    .update(&self.zones, self.tracker.tracks(), self.time);
                let ctx = FrameContext {
                    at_us: self.time,
                    tracks: self.tracker.tracks(),
                    membership: &self.membership,
                    detections: &dets,
                    offset: FixedOffset::east_opt(8 * 3600).unwrap(),
                };
                let mut out = Vec::new();
                self.rule.evaluate(&ctx, &mut out);
                for e in out {
                    self.events.push((
                        (self.time - self.origin) as f64 / 1e6,
                        e.transition,
                        e.confirmed,
                    ));
                }
                self.time += S / 5;
            }
        }

        fn opens(&self) -> Vec<f64> {
            self.events
                .iter()
                .filter(|e| e.1 == Transition::Open)
                .map(|e| e.0)
                .collect()
        }
        fn closes(&self) -> Vec<f64> {
            self.events
                .iter()
                .filter(|e| matches!(e.1, Transition::Close(_)))
                .map(|e| e.0)
                .collect()
        }
    }

    #[test]
    fn parked_car_opens_after_dwell_updates_and_closes_after_grace() {
        let mut h = Harness::new(Kind::IllegalParking, 180, &[], None);
        // Drives in for 2 s, then stands for 300 s, then drives away.
        h.run(2.0, |t| vec![car_at(0.1 * t as f32, 2, "car")]);
        h.run(300.0, |_| vec![car_at(0.2, 2, "car")]);
        h.run(3.0, |t| vec![car_at(0.2 + 0.15 * t as f32, 2, "car")]);
        h.run(60.0, |_| vec![]);
        let opens = h.opens();
        assert_eq!(opens.len(), 1, "{:?}", h.events);
        // Came to rest at about 1.8 s: open 180 s later.
        assert!((opens[0] - 182.0).abs() < 1.0, "opened at {}", opens[0]);
        let updates = h
            .events
            .iter()
            .filter(|e| e.1 == Transition::Update)
            .count();
        assert_eq!(updates, 2, "every 60 s while open: {:?}", h.events);
        let closes = h.closes();
        assert_eq!(closes.len(), 1);
        // Last seen at its place at ~302 s; closes 30 s later.
        assert!((closes[0] - 332.0).abs() < 1.5, "closed at {}", closes[0]);
    }

    #[test]
    fn a_car_that_stops_shorter_than_dwell_or_drives_through_makes_nothing() {
        let mut h = Harness::new(Kind::IllegalParking, 180, &[], None);
        h.run(20.0, |t| vec![car_at((0.05 * t as f32).min(0.8), 2, "car")]);
        h.run(170.0, |_| vec![car_at(0.5, 2, "car")]);
        h.run(5.0, |t| vec![car_at(0.5 + 0.1 * t as f32, 2, "car")]);
        h.run(60.0, |_| vec![]);
        assert!(h.events.is_empty(), "{:?}", h.events);
    }

    #[test]
    fn a_brief_departure_within_grace_is_one_incident() {
        let mut h = Harness::new(Kind::IllegalParking, 60, &[], None);
        h.run(100.0, |_| vec![car_at(0.3, 2, "car")]);
        h.run(10.0, |_| vec![]); // hidden by a passing truck, undetected
        h.run(100.0, |_| vec![car_at(0.3, 2, "car")]);
        assert_eq!(h.opens().len(), 1);
        assert!(h.closes().is_empty());
    }

    #[test]
    fn charging_respects_the_schedule_and_reports_suspected_without_a_cable() {
        let mut night = Harness::new(Kind::FlyWireCharging, 120, &["22:00-06:00"], None);
        night.run(200.0, |_| vec![car_at(0.3, 1, "bicycle")]);
        assert_eq!(night.opens().len(), 1);
        assert!(!night.events[0].2, "suspected, not confirmed");

        let mut day = Harness::new(Kind::FlyWireCharging, 120, &["08:00-18:00"], None);
        day.run(200.0, |_| vec![car_at(0.3, 1, "bicycle")]);
        assert!(day.events.is_empty());
    }

    #[test]
    fn a_cable_at_the_bike_confirms_the_incident() {
        let cable = CableSpec {
            classes: vec![9],
            margin: 0.5,
            required: false,
        };
        let mut h = Harness::new(Kind::FlyWireCharging, 120, &[], Some(cable));
        let with_cable = |t: f64| {
            let mut dets = vec![car_at(0.3, 1, "bicycle")];
            if t > 150.0 {
                let b = BBox {
                    x1: 0.52,
                    y1: 0.3,
                    x2: 0.55,
                    y2: 0.62,
                };
                dets.push(Detection {
                    label: Arc::from("cable"),
                    class_id: 9,
                    score: 0.6,
                    bbox: b,
                    norm: b,
                });
            }
            dets
        };
        h.run(200.0, with_cable);
        assert_eq!(h.opens().len(), 1);
        assert!(!h.events[0].2, "opened as suspected");
        let update = h
            .events
            .iter()
            .find(|e| e.1 == Transition::Update)
            .expect("an update");
        assert!(update.2, "confirmed once the cable shows up");
        assert!(
            (update.0 - 150.2).abs() < 1.0,
            "at the first cable frame: {}",
            update.0
        );
    }

    #[test]
    fn required_cable_means_no_incident_without_one() {
        let cable = CableSpec {
            classes: vec![9],
            margin: 0.5,
            required: true,
        };
        let mut h = Harness::new(Kind::FlyWireCharging, 120, &[], Some(cable));
        h.run(200.0, |_| vec![car_at(0.3, 1, "bicycle")]);
        assert!(h.events.is_empty());
    }

    #[test]
    fn cooldown_stops_a_flapping_car_from_making_many_incidents() {
        let mut h = Harness::new(Kind::IllegalParking, 60, &[], None);
        h.run(70.0, |_| vec![car_at(0.3, 2, "car")]);
        h.run(40.0, |_| vec![]); // gone (or unseen): closes after grace
        h.run(70.0, |_| vec![car_at(0.3, 2, "car")]); // back within the cooldown
        h.run(100.0, |_| vec![]);
        assert_eq!(h.opens().len(), 1, "{:?}", h.events);
        assert_eq!(h.closes().len(), 1, "{:?}", h.events);
    }

    #[test]
    fn objects_outside_the_group_are_ignored() {
        let mut h = Harness::new(Kind::IllegalParking, 60, &[], None);
        h.run(100.0, |_| vec![car_at(0.3, 0, "person")]);
        assert!(h.events.is_empty());
    }
}
