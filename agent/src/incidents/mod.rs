//! Incidents stage: turns the rules' state changes into the incident events of schema v1
//! (docs/events.md), with stable ids, the platform's categories and a zh-CN description.
//!
//! Lifecycle: `opened` → `updated`* → `closed`. Every event of one incident carries the same
//! `incident_id` and a growing `seq`; every event has its own `event_id`, so the platform can
//! drop duplicates of an at-least-once delivery. Ids are UUIDv7 built from the event's time
//! and a hash of what it is about (site, camera, zone, kind, start, sequence), not from a
//! random source: the same replay gives the same ids.

mod describe;
mod event;
#[cfg(test)]
pub(crate) mod test_events;

use std::collections::HashMap;

use chrono::FixedOffset;
use sha2::{Digest, Sha256};

use crate::config::{CameraConfig, Category, CategoryLevel, Config};
use crate::rules::{Kind, RuleEvent, Transition};
use crate::time::format_time;
use crate::zones::Zone;

pub use describe::describe;
pub use event::{
    CameraRef, EventState, Evidence, EvidenceFile, IncidentEvent, Review, SCHEMA, SiteRef, Status,
    Verdict, ZoneRef,
};

/// The platform category of a kind: configured, else the default names (never codes).
pub fn category(config: &Config, kind: Kind) -> Category {
    let configured = match kind {
        Kind::IllegalParking => &config.categories.illegal_parking,
        Kind::FlyWireCharging => &config.categories.fly_wire_charging,
        Kind::Crowding => &config.categories.crowding,
        Kind::CameraOffline => &config.categories.camera_offline,
        Kind::TwoWheelerInElevator => &config.categories.two_wheeler_in_elevator,
        Kind::Intrusion => &config.categories.intrusion,
        Kind::WrongWayEntry => &config.categories.wrong_way_entry,
    };
    if let Some(c) = configured {
        return c.clone();
    }
    let level = |name: &str| CategoryLevel {
        name: name.to_string(),
        code: None,
    };
    let (major, minor, sub) = match kind {
        Kind::IllegalParking => ("街面秩序", "机动车乱停放", None),
        Kind::FlyWireCharging => ("安全隐患", "消防安全隐患", Some("电动自行车违规充电")),
        Kind::Crowding => ("社会治安", "人员聚集", None),
        Kind::CameraOffline => ("设施设备", "视频监控设备故障", None),
        Kind::TwoWheelerInElevator => ("安全隐患", "消防安全隐患", Some("电动自行车进电梯")),
        Kind::Intrusion => ("社会治安", "重点区域闯入", None),
        Kind::WrongWayEntry => ("街面秩序", "违规通行", None),
    };
    Category {
        major: level(major),
        minor: level(minor),
        sub: sub.map(level),
    }
}

/// A UUIDv7 from a time and a hash of `parts`: unique, time-ordered, and the same every
/// time the same thing happens (replays are reproducible).
pub fn content_id(at_us: i64, parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest[..10]);
    let millis = (at_us.max(0) / 1000) as u64;
    uuid::Builder::from_unix_timestamp_millis(millis, &random)
        .into_uuid()
        .to_string()
}

/// The id of event `seq` of an incident.
pub fn event_id(incident_id: &str, seq: u32, at_us: i64) -> String {
    content_id(at_us, &[incident_id.as_bytes(), &seq.to_le_bytes()])
}

#[derive(Debug, Clone)]
struct Open {
    incident_id: String,
    opened_at_us: i64,
    next_seq: u32,
}

/// Keeps the open incidents of one camera and writes their events.
pub struct IncidentLog {
    site: SiteRef,
    camera: CameraRef,
    zones: Vec<ZoneRef>,
    categories: HashMap<Kind, Category>,
    offset: FixedOffset,
    open: HashMap<(usize, u64), Open>,
}

impl IncidentLog {
    pub fn new(config: &Config, camera: &CameraConfig, zones: &[Zone]) -> IncidentLog {
        let categories = [
            Kind::IllegalParking,
            Kind::FlyWireCharging,
            Kind::Crowding,
            Kind::CameraOffline,
            Kind::TwoWheelerInElevator,
            Kind::Intrusion,
            Kind::WrongWayEntry,
        ]
        .into_iter()
        .map(|k| (k, category(config, k)))
        .collect();
        IncidentLog {
            site: SiteRef {
                id: config.site.id.clone(),
                name: config.site.name.clone(),
                grid_code: config.site.grid_code.clone(),
            },
            camera: CameraRef {
                id: camera.id.clone(),
                name: if camera.name.is_empty() {
                    camera.id.clone()
                } else {
                    camera.name.clone()
                },
                location: camera.location,
            },
            // The camera's lines follow its zones: a line's incidents name it as their zone.
            zones: zones
                .iter()
                .map(|z| ZoneRef {
                    id: z.id.clone(),
                    name: z.name.clone(),
                    area_m2: z.area_m2,
                })
                .chain(camera.lines.iter().map(|l| ZoneRef {
                    id: l.id.clone(),
                    name: if l.name.is_empty() {
                        l.id.clone()
                    } else {
                        l.name.clone()
                    },
                    area_m2: None,
                }))
                .collect(),
            categories,
            offset: config.site.timezone,
            open: HashMap::new(),
        }
    }

    /// Number of incidents open now.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Takes over the incidents `old` still has open (the camera's zones were saved again):
    /// each keeps its id and sequence under its rule's new index (see
    /// [`crate::rules::Renumbering::rule`]). Incidents of rules that went away should have
    /// been closed through `old` first; any left are dropped.
    pub fn carry_open(&mut self, old: IncidentLog, renumbering: &crate::rules::Renumbering) {
        for ((rule, key), open) in old.open {
            if let Some(rule) = renumbering.rule(rule) {
                self.open.insert((rule, key), open);
            }
        }
    }

    /// Turns one rule state change into its event.
    pub fn record(&mut self, change: &RuleEvent) -> IncidentEvent {
        let zone_id = change
            .zone
            .and_then(|z| self.zones.get(z))
            .map_or("", |z| z.id.as_str());
        let state = match change.transition {
            Transition::Open => EventState::Opened,
            Transition::Update => EventState::Updated,
            Transition::Close(_) => EventState::Closed,
        };
        let open = match self.open.get(&change.key) {
            Some(open) => open.clone(),
            None => {
                let incident_id = content_id(
                    change.started_at_us.max(0),
                    &[
                        self.site.id.as_bytes(),
                        self.camera.id.as_bytes(),
                        zone_id.as_bytes(),
                        change.kind.as_str().as_bytes(),
                        &change.started_at_us.to_le_bytes(),
                        &change.key.1.to_le_bytes(),
                    ],
                );
                Open {
                    incident_id,
                    opened_at_us: change.at_us,
                    next_seq: 0,
                }
            }
        };
        let seq = open.next_seq;
        let event_id = event_id(&open.incident_id, seq, change.at_us);
        if matches!(state, EventState::Closed) {
            self.open.remove(&change.key);
        } else {
            self.open.insert(
                change.key,
                Open {
                    next_seq: seq + 1,
                    ..open.clone()
                },
            );
        }
        let zone = change.zone.and_then(|z| self.zones.get(z)).cloned();
        let end_us = change.ended_at_us.unwrap_or(change.at_us);
        let duration_s = (end_us - change.started_at_us).max(0) as f64 / 1e6;
        let density_per_m2 = zone
            .as_ref()
            .and_then(|z| z.area_m2)
            .filter(|_| change.kind == Kind::Crowding)
            .map(|area| change.count as f32 / area);
        let status = if change.confirmed {
            Status::Confirmed
        } else {
            Status::Suspected
        };
        let description = describe(
            change,
            state,
            &self.camera.name,
            zone.as_ref().map(|z| z.name.as_str()),
            duration_s,
            density_per_m2,
        );
        IncidentEvent {
            schema: SCHEMA.to_string(),
            event_id,
            incident_id: open.incident_id,
            seq,
            state,
            kind: change.kind,
            status,
            site: self.site.clone(),
            camera: self.camera.clone(),
            zone,
            category: self.categories[&change.kind].clone(),
            description,
            started_at: format_time(change.started_at_us, self.offset),
            opened_at: format_time(open.opened_at_us, self.offset),
            event_at: format_time(change.at_us, self.offset),
            closed_at: matches!(state, EventState::Closed)
                .then(|| format_time(change.at_us, self.offset)),
            best_frame_at: format_time(change.best_at_us, self.offset),
            duration_s: (duration_s * 10.0).round() / 10.0,
            count: change.count,
            peak_count: change.peak_count,
            density_per_m2,
            confidence: (change.confidence * 1000.0).round() / 1000.0,
            objects: change.objects.clone(),
            evidence: Evidence {
                signals: change.signals.clone(),
                files: Vec::new(),
                error: None,
            },
            close_reason: match change.transition {
                Transition::Close(reason) => Some(reason),
                _ => None,
            },
            review: None,
        }
    }
}
