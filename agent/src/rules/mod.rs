//! Rules stage: state machines that decide when what the tracker and zones see is an
//! incident. A detection is not an incident: a car driving through a fire lane is not
//! illegal parking, one person is not a crowd, a bicycle ridden past is not charging.
//!
//! Each configured rule of each zone is one instance with its own state. Instances emit
//! [`RuleEvent`]s (open, update, close); the `incidents` stage turns those into events with
//! ids, categories and descriptions. Rules take time only from frames.

mod count;
pub mod line;
mod offline;

mod stationary;

use std::sync::Arc;

use chrono::FixedOffset;
use serde::{Deserialize, Serialize};

use crate::config::{CameraConfig, Config, PresenceKind};
use crate::frame::{BBox, Detection};
use crate::model::ModelManifest;
use crate::track::Track;
use crate::zones::{Zone, ZoneMembership};

pub use crate::kind::Kind;
pub use crate::schedule::Schedule;
pub use count::CountRule;
pub use offline::OfflineRule;
pub use stationary::{CableSpec, StationaryRule};

/// What a rule saw that made it fire; listed in the incident's `evidence.signals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    StationaryVehicle,
    StationaryTwoWheeler,
    CableDetected,
    InSchedule,
    PersonCount,
    NoFrames,
    /// An object of the zone's objects is in the zone (`presence`).
    ObjectPresent,
    /// An object crossed a line in its forbidden direction (`line_crossing`).
    LineCrossed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The object left (or was not seen) for the rule's grace period.
    Left,
    /// The crowd stayed below the clear count for the clear duration.
    Cleared,
    /// The camera delivers frames again.
    Recovered,
    /// gridwatch stopped (or crashed) while the incident was open and was started again:
    /// a track cannot be followed across a restart, so the incident is closed when the
    /// agent starts, and an object still there opens a new one after its dwell.
    Restarted,
    /// The camera's configuration changed (a reload) while the incident was open: its
    /// zones and rules may no longer be the ones that raised it.
    Reconfigured,
}

impl CloseReason {
    /// The snake_case name of the event schema (`close_reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Left => "left",
            CloseReason::Cleared => "cleared",
            CloseReason::Recovered => "recovered",
            CloseReason::Restarted => "restarted",
            CloseReason::Reconfigured => "reconfigured",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Open,
    Update,
    Close(CloseReason),
}

/// An object involved in an incident.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ObjectRef {
    pub track_id: u64,
    pub label: Arc<str>,
    pub score: f32,
    #[serde(rename = "box_norm")]
    pub bbox: BBox,
}

impl ObjectRef {
    pub fn of(track: &Track) -> ObjectRef {
        ObjectRef {
            track_id: track.id,
            label: Arc::clone(&track.label),
            score: track.score,
            bbox: track.bbox,
        }
    }
}

/// A state change of one incident, as a rule sees it.
#[derive(Debug, Clone)]
pub struct RuleEvent {
    pub kind: Kind,
    /// Index of the zone in the camera's zone list; `None` for camera-level rules.
    pub zone: Option<usize>,
    /// Identifies the incident within its rule instance.
    pub key: (usize, u64),
    pub transition: Transition,
    /// When this state change happened (wall-clock microseconds).
    pub at_us: i64,
    /// When the situation began (the car stopped, the crowd formed, the last frame came).
    pub started_at_us: i64,
    /// For a close: the last moment the situation was seen (duration ends here).
    pub ended_at_us: Option<i64>,
    pub objects: Vec<ObjectRef>,
    pub count: u32,
    pub peak_count: u32,
    pub confidence: f32,
    /// A model-confirmed incident, as opposed to a suspected one.
    pub confirmed: bool,
    pub signals: Vec<Signal>,
    pub best_at_us: i64,
}

/// What the rules look at for one frame.
pub struct FrameContext<'a> {
    pub at_us: i64,
    pub tracks: &'a [Track],
    pub membership: &'a ZoneMembership,
    /// The frame's raw detections (for evidence such as a charging cable).
    pub detections: &'a [Detection],
    pub offset: FixedOffset,
}

/// Lifecycle settings every rule shares.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub update_every_us: i64,
    pub cooldown_us: i64,
}

fn micros(d: std::time::Duration) -> i64 {
    d.as_micros() as i64
}

fn group(manifest: &ModelManifest, name: &str) -> Result<Vec<u16>, String> {
    manifest.label_groups.get(name).cloned().ok_or_else(|| {
        format!(
            "model {} has no `{name}` label group, which this rule needs (add it to the manifest's [label_groups])",
            manifest.name
        )
    })
}

enum Rule {
    Stationary(StationaryRule),
    Count(CountRule),
}

impl Rule {
    fn zone(&self) -> usize {
        match self {
            Rule::Stationary(r) => r.zone(),
            Rule::Count(r) => r.zone(),
        }
    }

    fn renumber(&mut self, index: usize, zone: usize) {
        match self {
            Rule::Stationary(r) => r.renumber(index, zone),
            Rule::Count(r) => r.renumber(index, zone),
        }
    }

    fn close_all(&mut self, at_us: i64, offset: FixedOffset, out: &mut Vec<RuleEvent>) {
        let reason = CloseReason::Reconfigured;
        match self {
            Rule::Stationary(r) => r.close_all(at_us, offset, reason, out),
            Rule::Count(r) => r.close_all(at_us, reason, out),
        }
    }
}

/// The rule index in the key of `camera_offline` incidents (the first half of
/// [`RuleEvent::key`]): not a zone rule, so no zone rule's index can be it.
pub const OFFLINE_RULE: usize = usize::MAX;

/// Every rule of one camera, with the zones they watch.
pub struct RuleSet {
    pub zones: Vec<Zone>,
    /// Each zone's settings as configured, to tell an unchanged zone on a reload.
    zone_configs: Vec<crate::config::ZoneConfig>,
    rules: Vec<Rule>,
    lines: Vec<line::LineRule>,
    /// This frame's line crossings (see [`RuleSet::crossings`]).
    crossings: Vec<line::Crossing>,
    pub offline: OfflineRule,
}

/// Where the zones and rules of an old [`RuleSet`] went in the new one (see
/// [`RuleSet::carry_over`]): old index to new index, for those carried over.
#[derive(Debug, Default, PartialEq)]
pub struct Renumbering {
    pub zones: std::collections::HashMap<usize, usize>,
    pub rules: std::collections::HashMap<usize, usize>,
}

impl Renumbering {
    /// The new index of an incident key's rule (the first half of [`RuleEvent::key`]): the
    /// camera's offline watch and its lines (unchanged by a zone save) keep theirs; a zone
    /// rule that did not carry over has none.
    pub fn rule(&self, old: usize) -> Option<usize> {
        if old >= line::LINE_RULES {
            Some(old)
        } else {
            self.rules.get(&old).copied()
        }
    }
}

impl RuleSet {
    /// Builds the camera's zones and rules, resolving label groups against the model.
    /// Errors carry the config path of the zone setting at fault (as `Config::error_at`
    /// takes it) and the message.
    pub fn new(
        config: &Config,
        camera: &CameraConfig,
        manifest: &ModelManifest,
    ) -> Result<RuleSet, (Vec<String>, String)> {
        let camera_index = config
            .cameras
            .iter()
            .position(|c| c.id == camera.id)
            .map_or_else(|| camera.id.clone(), |i| i.to_string());
        let timing = Timing {
            update_every_us: micros(config.incidents.update_every),
            cooldown_us: micros(config.incidents.cooldown),
        };
        let mut zones = Vec::new();
        let mut rules = Vec::new();
        for (zi, zc) in camera.zones.iter().enumerate() {
            let at = |rule: &str, e: String| {
                let path = [
                    "cameras",
                    camera_index.as_str(),
                    "zones",
                    &zi.to_string(),
                    rule,
                ];
                (path.iter().map(|s| s.to_string()).collect::<Vec<_>>(), e)
            };
            zones.push(Zone::from_config(zc, manifest).map_err(|e| at("objects", e.to_string()))?);
            if let Some(r) = &zc.illegal_parking {
                let schedule =
                    Schedule::parse(&r.schedule).map_err(|e| at("illegal_parking", e))?;
                rules.push(Rule::Stationary(StationaryRule::new(
                    rules.len(),
                    Kind::IllegalParking,
                    zi,
                    group(manifest, "vehicle").map_err(|e| at("illegal_parking", e))?,
                    micros(r.dwell),
                    micros(r.grace),
                    schedule,
                    timing,
                    None,
                )));
            }
            if let Some(r) = &zc.fly_wire_charging {
                let schedule =
                    Schedule::parse(&r.schedule).map_err(|e| at("fly_wire_charging", e))?;
                let cable_classes = manifest.label_groups.get("charging_cable").cloned();
                if r.require_cable && cable_classes.is_none() {
                    return Err(at(
                        "fly_wire_charging",
                        format!(
                            "require_cable needs a model with a `charging_cable` label group; {} has none",
                            manifest.name
                        ),
                    ));
                }
                let cable = cable_classes.map(|classes| CableSpec {
                    classes,
                    margin: r.cable_margin,
                    required: r.require_cable,
                });
                rules.push(Rule::Stationary(StationaryRule::new(
                    rules.len(),
                    Kind::FlyWireCharging,
                    zi,
                    group(manifest, "two_wheeler").map_err(|e| at("fly_wire_charging", e))?,
                    micros(r.dwell),
                    micros(r.grace),
                    schedule,
                    timing,
                    cable,
                )));
            }
            if let Some(r) = &zc.crowding {
                let schedule = Schedule::parse(&r.schedule).map_err(|e| at("crowding", e))?;
                rules.push(Rule::Count(CountRule::new(
                    rules.len(),
                    zi,
                    group(manifest, "person").map_err(|e| at("crowding", e))?,
                    r.min_count,
                    micros(r.duration),
                    r.clear_count.unwrap_or(r.min_count),
                    micros(r.clear_duration),
                    schedule,
                    timing,
                )));
            }
            if let Some(r) = &zc.presence {
                let schedule = Schedule::parse(&r.schedule).map_err(|e| at("presence", e))?;
                let kind = match r.kind {
                    PresenceKind::Intrusion => Kind::Intrusion,
                    PresenceKind::TwoWheelerInElevator => Kind::TwoWheelerInElevator,
                };
                // The zone's objects (its membership filters by them); all classes if none.
                let classes = zones[zi]
                    .classes
                    .clone()
                    .unwrap_or_else(|| (0..manifest.classes.len() as u16).collect());
                rules.push(Rule::Count(CountRule::presence(
                    rules.len(),
                    kind,
                    zi,
                    classes,
                    micros(r.min_time),
                    micros(r.grace),
                    schedule,
                    timing,
                )));
            }
        }
        let mut lines = Vec::new();
        for (li, lc) in camera.lines.iter().enumerate() {
            let at = |field: &str, e: String| {
                let path = [
                    "cameras",
                    camera_index.as_str(),
                    "lines",
                    &li.to_string(),
                    field,
                ];
                (path.iter().map(|s| s.to_string()).collect::<Vec<_>>(), e)
            };
            let classes = crate::zones::resolve_objects(&lc.objects, manifest)
                .map_err(|e| at("objects", e.to_string()))?;
            let schedule = Schedule::parse(&lc.schedule).map_err(|e| at("schedule", e))?;
            lines.push(line::LineRule::new(
                &lc.id,
                li,
                zones.len() + li,
                lc.points.iter().map(|p| (p[0], p[1])).collect(),
                classes,
                lc.alert,
                lc.margin,
                micros(lc.close_after),
                schedule,
            ));
        }
        Ok(RuleSet {
            zones,
            zone_configs: camera.zones.clone(),
            rules,
            lines,
            crossings: Vec::new(),
            offline: OfflineRule::new(micros(camera.offline_after)),
        })
    }

    /// Takes over from `old` (the same camera before the installer saved its zones) the
    /// state of every zone whose settings are unchanged (same id, polygon, objects and
    /// rules): its rules keep their stays, crowds, dwell clocks and cooldowns, whatever its
    /// place in the list now. Rules of zones that changed or went away close what they have
    /// open (`reconfigured`), appended to `out` under their old keys. The offline watch
    /// carries over: the camera itself did not change.
    pub fn carry_over(
        &mut self,
        old: RuleSet,
        at_us: i64,
        offset: FixedOffset,
        out: &mut Vec<RuleEvent>,
    ) -> Renumbering {
        let mut renumbering = Renumbering::default();
        for (old_zone, config) in old.zone_configs.iter().enumerate() {
            if let Some(new_zone) = self.zone_configs.iter().position(|c| c == config) {
                renumbering.zones.insert(old_zone, new_zone);
            }
        }
        // The same settings build the same rules in the same order: the k-th rule of an
        // unchanged zone takes over from the k-th rule it had.
        let mut taken: std::collections::HashMap<usize, usize> = Default::default();
        for (old_index, mut rule) in old.rules.into_iter().enumerate() {
            let target = renumbering.zones.get(&rule.zone()).and_then(|&new_zone| {
                let k = taken.entry(new_zone).or_default();
                let position = self
                    .rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.zone() == new_zone)
                    .nth(*k)
                    .map(|(i, _)| i);
                *k += 1;
                position.map(|i| (i, new_zone))
            });
            match target {
                Some((new_index, new_zone)) => {
                    rule.renumber(new_index, new_zone);
                    self.rules[new_index] = rule;
                    renumbering.rules.insert(old_index, new_index);
                }
                None => rule.close_all(at_us, offset, out),
            }
        }
        self.offline = old.offline;
        // Lines are the same (only zones changed); their incidents follow the zone list.
        let zones = self.zones.len();
        self.lines = old.lines;
        for (li, line) in self.lines.iter_mut().enumerate() {
            line.set_zone(zones + li);
        }
        renumbering
    }

    /// The line crossings of the last evaluated frame, for counting.
    pub fn crossings(&self) -> &[line::Crossing] {
        &self.crossings
    }

    /// Runs every rule on one frame, appending state changes to `out`.
    pub fn evaluate(&mut self, ctx: &FrameContext<'_>, out: &mut Vec<RuleEvent>) {
        self.offline.on_frame(ctx.at_us, out);
        for rule in &mut self.rules {
            match rule {
                Rule::Stationary(r) => r.evaluate(ctx, out),
                Rule::Count(r) => r.evaluate(ctx, out),
            }
        }
        self.crossings.clear();
        for line in &mut self.lines {
            line.evaluate(ctx, out, &mut self.crossings);
        }
    }
}
