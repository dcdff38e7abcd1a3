//! Per-camera analysis state: tracker → zones → rules → incidents, fed one detected frame at
//! a time. Cheap next to inference, so it runs on the inference side of the queue; it owns
//! nothing another camera needs.

use std::collections::HashSet;
use std::sync::Arc;

use crate::config::{CameraConfig, Config, ConfigError};
use crate::frame::{Detection, FrameMeta};
use crate::incidents::{IncidentEvent, IncidentLog};
use crate::model::ModelManifest;
use crate::rules::{FrameContext, RuleEvent, RuleSet, Transition};
use crate::store::suppress::Suppressions;
use crate::track::{Track, Tracker};
use crate::zones::ZoneMembership;

pub struct CameraAnalytics {
    camera_id: String,
    suppressions: Option<Arc<Suppressions>>,
    /// Rule incidents held back by a dismissal, by rule key.
    suppressed: HashSet<(usize, u64)>,
    tracker: Tracker,
    membership: ZoneMembership,
    rules: RuleSet,
    log: IncidentLog,
    offset: chrono::FixedOffset,
    changes: Vec<RuleEvent>,
    events: Vec<IncidentEvent>,
}

impl CameraAnalytics {
    pub fn new(
        config: &Config,
        camera: &CameraConfig,
        manifest: &ModelManifest,
    ) -> Result<CameraAnalytics, ConfigError> {
        let rules = RuleSet::new(config, camera, manifest)
            .map_err(|(path, msg)| config.error_at(&path, &msg))?;
        let log = IncidentLog::new(config, camera, &rules.zones);
        let mut tracker = Tracker::new(config.tracker.clone());
        tracker.set_rigid_classes(
            ["vehicle", "two_wheeler"]
                .iter()
                .filter_map(|group| manifest.label_groups.get(*group))
                .flatten()
                .copied()
                .collect(),
        );
        Ok(CameraAnalytics {
            camera_id: camera.id.clone(),
            suppressions: None,
            suppressed: HashSet::new(),
            tracker,
            membership: ZoneMembership::default(),
            rules,
            log,
            offset: config.site.timezone,
            changes: Vec::new(),
            events: Vec::new(),
        })
    }

    /// Runs one detected frame through tracking, zones and rules; returns the incident
    /// events it caused, in time order.
    pub fn on_frame(&mut self, meta: &FrameMeta, detections: &[Detection]) -> &[IncidentEvent] {
        if meta.unchanged {
            self.tracker.carry_forward(meta.at_us);
        } else if meta.fully_inferred() {
            self.tracker.update(meta.at_us, detections);
        } else {
            // Some regions were still: what stands in them is as it was.
            self.tracker.update_in_view(meta.at_us, detections, |b| {
                let (x, y) = ((b.x1 + b.x2) / 2.0, (b.y1 + b.y2) / 2.0);
                meta.inferred_regions()
                    .any(|r| x >= r.x1 && x <= r.x2 && y >= r.y1 && y <= r.y2)
            });
        }
        self.membership
            .update(&self.rules.zones, self.tracker.tracks(), meta.at_us);
        self.changes.clear();
        let ctx = FrameContext {
            at_us: meta.at_us,
            tracks: self.tracker.tracks(),
            membership: &self.membership,
            detections,
            offset: self.offset,
        };
        self.rules.evaluate(&ctx, &mut self.changes);
        self.record()
    }

    /// The installer saved this camera's zones (nothing else of the camera changed): builds
    /// the new zones and rules and carries over what stayed. Tracks are kept; zones whose
    /// settings are unchanged keep their memberships, stays, dwell clocks and open incidents
    /// (same id, growing seq); rules of zones that changed or went away close what they had
    /// open with `reconfigured`, returned here. A camera whose new zones do not build keeps
    /// running on its old ones and the error is returned.
    pub fn reconfigure(
        &mut self,
        config: &Config,
        camera: &CameraConfig,
        manifest: &ModelManifest,
        at_us: i64,
    ) -> Result<&[IncidentEvent], ConfigError> {
        let rules = RuleSet::new(config, camera, manifest)
            .map_err(|(path, msg)| config.error_at(&path, &msg))?;
        let old_rules = std::mem::replace(&mut self.rules, rules);
        self.changes.clear();
        let renumbering = self
            .rules
            .carry_over(old_rules, at_us, self.offset, &mut self.changes);
        // The closes name the old zones: record them through the old log first.
        self.record();
        let new_log = IncidentLog::new(config, camera, &self.rules.zones);
        let old_log = std::mem::replace(&mut self.log, new_log);
        self.log.carry_open(old_log, &renumbering);
        // Held-back incidents follow their rule.
        self.suppressed = std::mem::take(&mut self.suppressed)
            .into_iter()
            .filter_map(|(rule, key)| renumbering.rule(rule).map(|r| (r, key)))
            .collect();
        self.membership.renumber(&renumbering.zones);
        Ok(&self.events)
    }

    /// Live cameras: count silence from `now_us` even before the first frame.
    pub fn watch_from(&mut self, now_us: i64) {
        self.rules.offline.watch_from(now_us);
    }

    /// The camera delivered nothing up to `now_us` (live watchdog).
    pub fn on_idle(&mut self, now_us: i64) -> &[IncidentEvent] {
        self.changes.clear();
        self.rules.offline.on_idle(now_us, &mut self.changes);
        self.record()
    }

    /// Applies dismissal memory: new incidents matching a dismissed one are held back.
    pub fn set_suppressions(&mut self, suppressions: Arc<Suppressions>) {
        self.suppressions = Some(suppressions);
    }

    fn record(&mut self) -> &[IncidentEvent] {
        self.events.clear();
        let changes = std::mem::take(&mut self.changes);
        for change in &changes {
            if self.is_suppressed(change) {
                continue;
            }
            self.events.push(self.log.record(change));
        }
        // Hand the (cleared) buffer back so its capacity is reused.
        self.changes = changes;
        &self.events
    }

    fn is_suppressed(&mut self, change: &RuleEvent) -> bool {
        if self.suppressed.contains(&change.key) {
            if matches!(change.transition, Transition::Close(_)) {
                self.suppressed.remove(&change.key);
            }
            return true;
        }
        let Some(memory) = &self.suppressions else {
            return false;
        };
        if change.transition != Transition::Open {
            return false;
        }
        let zone = change
            .zone
            .and_then(|z| self.rules.zones.get(z))
            .map(|z| z.id.as_str());
        let bbox = change.objects.first().map(|o| &o.bbox);
        match memory.matches(
            &self.camera_id,
            zone,
            change.kind.as_str(),
            bbox,
            change.at_us,
        ) {
            Some(s) => {
                tracing::info!(camera = %self.camera_id, kind = change.kind.as_str(), dismissed = %s.incident_id, "incident suppressed by an earlier dismissal");
                self.suppressed.insert(change.key);
                true
            }
            None => false,
        }
    }

    /// The line crossings of the last frame (every direction, for counting).
    pub fn crossings(&self) -> &[crate::rules::line::Crossing] {
        self.rules.crossings()
    }

    pub fn tracks(&self) -> &[Track] {
        self.tracker.tracks()
    }

    pub fn open_incidents(&self) -> usize {
        self.log.open_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::BBox;
    use crate::incidents::EventState;
    use crate::rules::CloseReason;
    use std::path::Path;

    const S: i64 = 1_000_000;
    const T0: i64 = 1_764_000_000 * S;

    const HEAD: &str = "[site]\nid = \"unit\"\ngrid_code = \"440305001001\"\n\n[[cameras]]\nid = \"lot\"\nurl = \"rtsp://10.0.0.2/stream1\"\n";
    /// The lower half of the picture, where the car stands.
    const LANE: &str = "\n[[cameras.zones]]\nid = \"lane\"\npolygon = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]\nobjects = [\"vehicle\"]\n[cameras.zones.illegal_parking]\ndwell = \"5s\"\ngrace = \"2s\"\n";
    /// The upper half: nothing stands there.
    const SKY: &str = "\n[[cameras.zones]]\nid = \"sky\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 0.5], [0.0, 0.5]]\nobjects = [\"vehicle\"]\n[cameras.zones.illegal_parking]\ndwell = \"5s\"\n";

    fn setup(zones: &[&str]) -> (Config, ModelManifest) {
        let text = format!("{HEAD}{}", zones.concat());
        let config = Config::parse(&text, Path::new("/etc/gridwatch/config.toml")).unwrap();
        let manifest = ModelManifest::resolve("yolox_nano", Path::new(".")).unwrap();
        (config, manifest)
    }

    fn car() -> Detection {
        let norm = BBox {
            x1: 0.3,
            y1: 0.6,
            x2: 0.5,
            y2: 0.8,
        };
        Detection::at("car", 2, 0.8, norm)
    }

    /// Feeds `seconds` of frames at 5 fps from `*at`; returns the events. A car standing
    /// still from the start is stationary after 10 s (the tracker's default), so with a 5 s
    /// dwell its incident opens at about 10 s.
    fn run(
        analytics: &mut CameraAnalytics,
        at: &mut i64,
        seconds: i64,
        car_there: bool,
    ) -> Vec<IncidentEvent> {
        let regions: Arc<[BBox]> = Arc::from(vec![BBox {
            x1: 0.0,
            y1: 0.0,
            x2: 1.0,
            y2: 1.0,
        }]);
        let mut events = Vec::new();
        for _ in 0..seconds * 5 {
            let meta = FrameMeta {
                camera: Arc::from("lot"),
                seq: 0,
                pts_us: *at - T0,
                at_us: *at,
                width: 1280,
                height: 720,
                keyframe: false,
                unchanged: false,
                regions: Arc::clone(&regions),
                inferred: 1,
            };
            let detections = if car_there { vec![car()] } else { vec![] };
            events.extend_from_slice(analytics.on_frame(&meta, &detections));
            *at += S / 5;
        }
        events
    }

    fn opened(events: &[IncidentEvent]) -> Vec<&IncidentEvent> {
        events
            .iter()
            .filter(|e| e.state == EventState::Opened)
            .collect()
    }

    #[test]
    fn an_unchanged_zone_keeps_its_incident_and_clock_when_another_is_added_before_it() {
        let (config, manifest) = setup(&[LANE]);
        let mut analytics = CameraAnalytics::new(&config, &config.cameras[0], &manifest).unwrap();
        let mut at = T0;
        let events = run(&mut analytics, &mut at, 14, true);
        let first = opened(&events);
        assert_eq!(first.len(), 1, "{events:?}");
        let incident = first[0].incident_id.clone();

        // The installer adds a zone ahead of the lane: the lane moves to index 1.
        let (config, _) = setup(&[SKY, LANE]);
        let closed = analytics
            .reconfigure(&config, &config.cameras[0], &manifest, at)
            .unwrap();
        assert!(closed.is_empty(), "{closed:?}");
        assert_eq!(analytics.open_incidents(), 1);

        // The car stays: no second incident; when it leaves, the same incident closes,
        // its seq continuing, under the lane's zone.
        let events = run(&mut analytics, &mut at, 10, true);
        assert!(opened(&events).is_empty(), "{events:?}");
        let events = run(&mut analytics, &mut at, 10, false);
        let close = events
            .iter()
            .find(|e| e.state == EventState::Closed)
            .expect("closed when the car left");
        assert_eq!(close.incident_id, incident);
        assert!(close.seq >= 1);
        assert_eq!(close.zone.as_ref().unwrap().id, "lane");
        assert_eq!(close.close_reason, Some(CloseReason::Left));
    }

    #[test]
    fn a_changed_zone_closes_its_incident_as_reconfigured_and_counts_afresh() {
        let (config, manifest) = setup(&[LANE]);
        let mut analytics = CameraAnalytics::new(&config, &config.cameras[0], &manifest).unwrap();
        let mut at = T0;
        let events = run(&mut analytics, &mut at, 14, true);
        let incident = opened(&events)[0].incident_id.clone();

        // The dwell changes: the lane is a new zone now.
        let (config, _) = setup(&[&LANE.replace("5s", "3s")]);
        let closed = analytics
            .reconfigure(&config, &config.cameras[0], &manifest, at)
            .unwrap()
            .to_vec();
        assert_eq!(closed.len(), 1, "{closed:?}");
        assert_eq!(closed[0].incident_id, incident);
        assert_eq!(closed[0].close_reason, Some(CloseReason::Reconfigured));
        assert_eq!(analytics.open_incidents(), 0);

        // The track stays (no stream reopen), its stay counts from the save: a new
        // incident after the new dwell, not at once.
        let events = run(&mut analytics, &mut at, 2, true);
        assert!(opened(&events).is_empty(), "{events:?}");
        let events = run(&mut analytics, &mut at, 6, true);
        let second = opened(&events);
        assert_eq!(second.len(), 1, "{events:?}");
        assert_ne!(second[0].incident_id, incident);
    }

    #[test]
    fn a_removed_zone_closes_what_it_had_open() {
        let (config, manifest) = setup(&[SKY, LANE]);
        let mut analytics = CameraAnalytics::new(&config, &config.cameras[0], &manifest).unwrap();
        let mut at = T0;
        run(&mut analytics, &mut at, 14, true);
        assert_eq!(analytics.open_incidents(), 1);
        let (config, _) = setup(&[SKY]);
        let closed = analytics
            .reconfigure(&config, &config.cameras[0], &manifest, at)
            .unwrap();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].zone.as_ref().unwrap().id, "lane");
        assert_eq!(analytics.open_incidents(), 0);
        assert!(opened(&run(&mut analytics, &mut at, 10, true)).is_empty());
    }
}
