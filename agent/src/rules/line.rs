//! `line_crossing`: objects crossing a directed line (or polyline), from the path of their
//! track's bottom-centre. Every crossing is counted, per direction and class; a crossing in
//! the line's `alert` direction during its schedule is a `wrong_way_entry` incident (a car
//! through the pedestrian gate, a two-wheeler into the stairwell door), closed
//! `close_after` later.
//!
//! A crossing counts once: a track's side of the line is only taken where its foot point is
//! at least `margin` away from the line, so a box jittering on the line changes nothing; a
//! crossing is the side changing, with the path between the two sure points cutting the
//! line (a track walking round the end of the line has not crossed it).

use std::collections::HashMap;
use std::sync::Arc;

use super::{CloseReason, FrameContext, Kind, ObjectRef, RuleEvent, Schedule, Signal, Transition};
use crate::config::CrossingDirection;

/// The first half of the key of a line's incidents: line `i` is `LINE_RULES + i`, far from
/// any zone rule's index and from [`super::OFFLINE_RULE`].
pub const LINE_RULES: usize = usize::MAX / 2;

/// Which way an object crossed: "in" from the line's left to its right, walking along it
/// from its first point (see `LineConfig::points`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Crossed {
    In,
    Out,
}

impl Crossed {
    pub fn as_str(self) -> &'static str {
        match self {
            Crossed::In => "in",
            Crossed::Out => "out",
        }
    }
}

/// One counted crossing.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossing {
    /// The line's id.
    pub line: Arc<str>,
    pub direction: Crossed,
    pub track_id: u64,
    pub label: Arc<str>,
    pub at_us: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

#[derive(Debug, Clone)]
struct Alert {
    key: u64,
    at_us: i64,
    object: ObjectRef,
}

pub struct LineRule {
    id: Arc<str>,
    line: usize,
    /// The line's place in the incident log's zone list (after the camera's zones).
    zone: usize,
    points: Vec<(f32, f32)>,
    /// Classes counted; `None` = every class.
    classes: Option<Vec<u16>>,
    alert: Option<CrossingDirection>,
    margin: f32,
    close_after_us: i64,
    schedule: Schedule,
    /// Per track: the last point where it was surely on one side, and the side.
    sides: HashMap<u64, ((f32, f32), Side)>,
    open: Vec<Alert>,
    next_key: u64,
}

impl LineRule {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: &str,
        line: usize,
        zone: usize,
        points: Vec<(f32, f32)>,
        classes: Option<Vec<u16>>,
        alert: Option<CrossingDirection>,
        margin: f32,
        close_after_us: i64,
        schedule: Schedule,
    ) -> LineRule {
        LineRule {
            id: Arc::from(id),
            line,
            zone,
            points,
            classes,
            alert,
            margin,
            close_after_us,
            schedule,
            sides: HashMap::new(),
            open: Vec::new(),
            next_key: 0,
        }
    }

    /// The camera's zones changed in number: the line's place in the zone list moves.
    pub fn set_zone(&mut self, zone: usize) {
        self.zone = zone;
    }

    /// Which side of the line `p` is on, if it is at least `margin` from it.
    fn side_of(&self, p: (f32, f32)) -> Option<Side> {
        let mut nearest: Option<(f32, f32)> = None; // (distance, cross product)
        for w in self.points.windows(2) {
            let (a, b) = (w[0], w[1]);
            let (dx, dy) = (b.0 - a.0, b.1 - a.1);
            let len2 = dx * dx + dy * dy;
            let t = (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0);
            let (cx, cy) = (a.0 + t * dx, a.1 + t * dy);
            let distance = ((p.0 - cx).powi(2) + (p.1 - cy).powi(2)).sqrt();
            let cross = dx * (p.1 - a.1) - dy * (p.0 - a.0);
            if nearest.is_none_or(|(d, _)| distance < d) {
                nearest = Some((distance, cross));
            }
        }
        let (distance, cross) = nearest?;
        if distance < self.margin {
            return None;
        }
        // Picture coordinates grow downwards: facing along the line, your right hand points
        // where the cross product is positive.
        Some(if cross > 0.0 { Side::Right } else { Side::Left })
    }

    /// Does the path from `p` to `q` cut the line?
    fn cuts(&self, p: (f32, f32), q: (f32, f32)) -> bool {
        let orient = |a: (f32, f32), b: (f32, f32), c: (f32, f32)| {
            (b.0 - a.0) * (c.1 - a.1) - (b.1 - a.1) * (c.0 - a.0)
        };
        self.points.windows(2).any(|w| {
            let (a, b) = (w[0], w[1]);
            let (d1, d2) = (orient(a, b, p), orient(a, b, q));
            let (d3, d4) = (orient(p, q, a), orient(p, q, b));
            (d1 > 0.0) != (d2 > 0.0) && (d3 > 0.0) != (d4 > 0.0)
        })
    }

    fn event(&self, alert: &Alert, transition: Transition, at_us: i64) -> RuleEvent {
        RuleEvent {
            kind: Kind::WrongWayEntry,
            zone: Some(self.zone),
            key: (LINE_RULES + self.line, alert.key),
            transition,
            at_us,
            started_at_us: alert.at_us,
            ended_at_us: matches!(transition, Transition::Close(_)).then_some(alert.at_us),
            objects: vec![alert.object.clone()],
            count: 1,
            peak_count: 1,
            confidence: alert.object.score,
            confirmed: true,
            signals: vec![Signal::LineCrossed],
            best_at_us: alert.at_us,
        }
    }

    pub fn evaluate(
        &mut self,
        ctx: &FrameContext<'_>,
        out: &mut Vec<RuleEvent>,
        crossings: &mut Vec<Crossing>,
    ) {
        let at = ctx.at_us;
        for track in ctx.tracks {
            if !track.confirmed
                || !track.seen_now
                || self
                    .classes
                    .as_ref()
                    .is_some_and(|c| !c.contains(&track.class_id))
            {
                continue;
            }
            let foot = track.foot();
            let Some(side) = self.side_of(foot) else {
                continue;
            };
            let Some((from, was)) = self.sides.insert(track.id, (foot, side)) else {
                continue;
            };
            if was == side || !self.cuts(from, foot) {
                continue;
            }
            let direction = match was {
                Side::Left => Crossed::In,
                Side::Right => Crossed::Out,
            };
            crossings.push(Crossing {
                line: Arc::clone(&self.id),
                direction,
                track_id: track.id,
                label: Arc::clone(&track.label),
                at_us: at,
            });
            let alerted = match self.alert {
                Some(CrossingDirection::Both) => true,
                Some(CrossingDirection::In) => direction == Crossed::In,
                Some(CrossingDirection::Out) => direction == Crossed::Out,
                None => false,
            };
            if alerted && self.schedule.contains(at, ctx.offset) {
                let alert = Alert {
                    key: self.next_key,
                    at_us: at,
                    object: ObjectRef::of(track),
                };
                self.next_key += 1;
                out.push(self.event(&alert, Transition::Open, at));
                self.open.push(alert);
            }
        }
        self.sides
            .retain(|id, _| ctx.tracks.iter().any(|t| t.id == *id));
        let mut i = 0;
        while i < self.open.len() {
            if at - self.open[i].at_us >= self.close_after_us {
                let alert = self.open.swap_remove(i);
                out.push(self.event(&alert, Transition::Close(CloseReason::Left), at));
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrackerConfig;
    use crate::frame::{BBox, Detection};
    use crate::track::Tracker;
    use crate::zones::ZoneMembership;
    use chrono::FixedOffset;

    const S: i64 = 1_000_000;

    /// A vertical line down the middle of the picture, walked from top to bottom: its left
    /// (as you walk) is the picture's right, so moving right to left is "in".
    fn gate(alert: Option<CrossingDirection>) -> LineRule {
        LineRule::new(
            "gate",
            0,
            0,
            vec![(0.5, 0.0), (0.5, 1.0)],
            None,
            alert,
            0.02,
            10 * S,
            Schedule::default(),
        )
    }

    fn car_at(x: f32) -> Detection {
        let norm = BBox {
            x1: x - 0.05,
            y1: 0.5,
            x2: x + 0.05,
            y2: 0.6,
        };
        Detection::at("car", 2, 0.8, norm)
    }

    /// Runs the rule over the foot x of one car, one position per frame at 5 fps.
    fn run(rule: &mut LineRule, xs: &[f32]) -> (Vec<Crossed>, Vec<(f64, Transition)>) {
        let mut tracker = Tracker::new(TrackerConfig::default());
        let membership = ZoneMembership::default();
        let (mut crossed, mut events) = (Vec::new(), Vec::new());
        for (i, &x) in xs.iter().enumerate() {
            let at = i as i64 * S / 5;
            let dets = vec![car_at(x)];
            tracker.update(at, &dets);
            let ctx = FrameContext {
                at_us: at,
                tracks: tracker.tracks(),
                membership: &membership,
                detections: &dets,
                offset: FixedOffset::east_opt(8 * 3600).unwrap(),
            };
            let (mut out, mut crossings) = (Vec::new(), Vec::new());
            rule.evaluate(&ctx, &mut out, &mut crossings);
            crossed.extend(crossings.iter().map(|c| c.direction));
            events.extend(out.iter().map(|e| (at as f64 / 1e6, e.transition)));
        }
        (crossed, events)
    }

    fn ride(from: f32, to: f32, frames: usize) -> Vec<f32> {
        (0..frames)
            .map(|i| from + (to - from) * i as f32 / (frames - 1) as f32)
            .collect()
    }

    #[test]
    fn a_crossing_each_way_counts_once_each() {
        let mut path = ride(0.8, 0.2, 20);
        path.extend(ride(0.2, 0.8, 20));
        let (crossed, events) = run(&mut gate(None), &path);
        assert_eq!(crossed, vec![Crossed::In, Crossed::Out]);
        assert!(events.is_empty(), "counted only: {events:?}");
    }

    #[test]
    fn a_box_jittering_on_the_line_counts_nothing() {
        let mut path = ride(0.8, 0.51, 10);
        path.extend((0..40).map(|i| if i % 2 == 0 { 0.49 } else { 0.515 }));
        let (crossed, _) = run(&mut gate(Some(CrossingDirection::Both)), &path);
        assert!(crossed.is_empty(), "{crossed:?}");
    }

    #[test]
    fn walking_round_the_end_of_the_line_is_not_a_crossing() {
        let mut rule = LineRule::new(
            "gate",
            0,
            0,
            vec![(0.5, 0.0), (0.5, 0.4)],
            None,
            None,
            0.02,
            10 * S,
            Schedule::default(),
        );
        // The car goes from right to left below the line's end (its foot at y 0.6).
        let (crossed, _) = run(&mut rule, &ride(0.8, 0.2, 20));
        assert!(crossed.is_empty(), "{crossed:?}");
    }

    #[test]
    fn the_forbidden_direction_raises_an_incident_that_closes_after_close_after() {
        let mut path = ride(0.8, 0.2, 20);
        path.extend(ride(0.2, 0.8, 20));
        path.extend(std::iter::repeat_n(0.8, 60));
        let (crossed, events) = run(&mut gate(Some(CrossingDirection::Out)), &path);
        assert_eq!(crossed.len(), 2);
        let opens: Vec<f64> = events
            .iter()
            .filter(|e| e.1 == Transition::Open)
            .map(|e| e.0)
            .collect();
        // Only the way back (out), at about 6 s.
        assert_eq!(opens.len(), 1, "{events:?}");
        assert!((opens[0] - 6.0).abs() < 0.5, "{opens:?}");
        let close = events
            .iter()
            .find(|e| matches!(e.1, Transition::Close(_)))
            .expect("closed");
        assert!((close.0 - opens[0] - 10.0).abs() < 0.3, "{events:?}");
    }
}
