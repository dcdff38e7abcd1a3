//! Per-camera analysis state: tracker → zones → rules → incidents, fed one detected frame at
//! a time. Cheap next to inference, so it runs on the inference side of the queue; it owns
//! nothing another camera needs.

use std::collections::HashSet;
use std::sync::Arc;

use crate::config::{CameraConfig, Config, ConfigError};
use crate::frame::{Detection, FrameMeta};
use crate::incidents::suppress::Suppressions;
use crate::incidents::{IncidentEvent, IncidentLog};
use crate::model::ModelManifest;
use crate::rules::{FrameContext, RuleEvent, RuleSet, Transition};
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

    pub fn tracks(&self) -> &[Track] {
        self.tracker.tracks()
    }

    pub fn open_incidents(&self) -> usize {
        self.log.open_count()
    }
}
