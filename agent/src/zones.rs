//! Zones stage: named polygons of a camera's picture and which tracked objects are in them.
//!
//! Polygons are in normalised [0, 1] coordinates, so they survive a resolution change and fit
//! both a main stream and its sub-stream. An object is in a zone when the bottom-centre of
//! its box (where it touches the ground) is inside the polygon, the Frigate/DeepStream
//! convention: a car whose roof overlaps a fire lane drawn on the ground is not in it.
//! A camera that looks down (an elevator's, from a top corner) sees no ground under its
//! objects: there a zone may count an object by the fraction of its box inside
//! (`membership = "overlap"`). `inertia` consecutive detected frames are needed to enter
//! (and to leave), so one jittery box does not flip membership.

use std::collections::HashMap;

use crate::config::{CameraConfig, MembershipMode, ZoneConfig};
use crate::frame::BBox;
use crate::model::ModelManifest;
use crate::track::Track;

/// A polygon in normalised picture coordinates.
pub type Polygon = Vec<(f32, f32)>;

/// A configured zone's polygon.
pub fn polygon(zone: &ZoneConfig) -> Polygon {
    zone.polygon.iter().map(|p| (p[0], p[1])).collect()
}

/// Every zone of a camera as (id, polygon), for drawing evidence and gating motion.
pub fn camera_polygons(camera: &CameraConfig) -> Vec<(String, Polygon)> {
    camera
        .zones
        .iter()
        .map(|z| (z.id.clone(), polygon(z)))
        .collect()
}

/// A zone's or line's `objects` entry the model does not know.
#[derive(Debug, thiserror::Error)]
#[error("`{name}` is neither a label nor a label group of model {model} (groups: {groups})")]
pub struct UnknownObject {
    pub name: String,
    pub model: String,
    /// The model's label groups, comma-separated.
    pub groups: String,
}

/// The class ids of `objects` (labels or label groups of the model); `None` for an empty
/// list, which means every class.
pub fn resolve_objects(
    objects: &[String],
    manifest: &ModelManifest,
) -> Result<Option<Vec<u16>>, UnknownObject> {
    if objects.is_empty() {
        return Ok(None);
    }
    let mut ids = Vec::new();
    for name in objects {
        if let Some(group) = manifest.label_groups.get(name) {
            ids.extend_from_slice(group);
        } else if let Some(id) = manifest.class_id(name) {
            ids.push(id);
        } else {
            let groups: Vec<&str> = manifest.label_groups.keys().map(|k| k.as_str()).collect();
            return Err(UnknownObject {
                name: name.clone(),
                model: manifest.name.clone(),
                groups: groups.join(", "),
            });
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(Some(ids))
}

/// A zone ready for use: the polygon and the resolved object filter.
#[derive(Debug, Clone)]
pub struct Zone {
    pub id: String,
    pub name: String,
    pub polygon: Vec<(f32, f32)>,
    /// Class ids the zone considers; `None` = every class.
    pub classes: Option<Vec<u16>>,
    pub min_area: f32,
    pub inertia: u32,
    pub area_m2: Option<f32>,
    pub membership: MembershipMode,
    pub min_overlap: f32,
}

impl Zone {
    /// Builds a zone, resolving `objects` (labels or label groups) against the model.
    pub fn from_config(
        config: &ZoneConfig,
        manifest: &ModelManifest,
    ) -> Result<Zone, UnknownObject> {
        let classes = resolve_objects(&config.objects, manifest)?;
        Ok(Zone {
            id: config.id.clone(),
            name: if config.name.is_empty() {
                config.id.clone()
            } else {
                config.name.clone()
            },
            polygon: polygon(config),
            classes,
            min_area: config.min_area,
            inertia: config.inertia.max(1),
            area_m2: config.area_m2,
            membership: config.membership,
            min_overlap: config.min_overlap,
        })
    }

    /// Even-odd point-in-polygon test; works for concave polygons. Points exactly on an
    /// edge count as inside.
    pub fn contains(&self, (x, y): (f32, f32)) -> bool {
        let n = self.polygon.len();
        let mut inside = false;
        for i in 0..n {
            let (x1, y1) = self.polygon[i];
            let (x2, y2) = self.polygon[(i + 1) % n];
            if on_segment((x, y), (x1, y1), (x2, y2)) {
                return true;
            }
            if (y1 > y) != (y2 > y) {
                let cross_x = x1 + (y - y1) * (x2 - x1) / (y2 - y1);
                if x < cross_x {
                    inside = !inside;
                }
            }
        }
        inside
    }

    /// Is an object with this box in the zone, by the zone's membership mode?
    pub fn holds(&self, bbox: &BBox) -> bool {
        match self.membership {
            MembershipMode::BottomCentre => self.contains(((bbox.x1 + bbox.x2) / 2.0, bbox.y2)),
            MembershipMode::Overlap => {
                let area = bbox.area();
                area > 0.0 && self.area_within(bbox) / area >= self.min_overlap
            }
        }
    }

    /// The area of the zone's polygon inside `bbox`: the polygon clipped to the rectangle
    /// (Sutherland-Hodgman, which is exact for a convex clip window whatever the polygon),
    /// then the shoelace formula.
    fn area_within(&self, bbox: &BBox) -> f32 {
        let mut points = self.polygon.clone();
        // Each edge of the box as "keep what is on this side": (axis, bound, keep ≥ bound).
        for (axis, bound, keep_above) in [
            (0, bbox.x1, true),
            (0, bbox.x2, false),
            (1, bbox.y1, true),
            (1, bbox.y2, false),
        ] {
            let inside = |p: (f32, f32)| {
                let v = if axis == 0 { p.0 } else { p.1 };
                if keep_above { v >= bound } else { v <= bound }
            };
            let mut clipped = Vec::with_capacity(points.len() + 4);
            for i in 0..points.len() {
                let (a, b) = (points[i], points[(i + 1) % points.len()]);
                if inside(a) {
                    clipped.push(a);
                }
                if inside(a) != inside(b) {
                    let (va, vb) = if axis == 0 { (a.0, b.0) } else { (a.1, b.1) };
                    let t = (bound - va) / (vb - va);
                    clipped.push((a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1)));
                }
            }
            points = clipped;
            if points.is_empty() {
                return 0.0;
            }
        }
        let twice: f32 = (0..points.len())
            .map(|i| {
                let (a, b) = (points[i], points[(i + 1) % points.len()]);
                a.0 * b.1 - b.0 * a.1
            })
            .sum();
        twice.abs() / 2.0
    }

    /// Does the zone consider objects of this class and size at all?
    pub fn accepts(&self, class_id: u16, bbox: &BBox) -> bool {
        self.classes.as_ref().is_none_or(|c| c.contains(&class_id)) && bbox.area() >= self.min_area
    }
}

fn on_segment(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> bool {
    const EPS: f32 = 1e-6;
    let cross = (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0);
    if cross.abs() > EPS {
        return false;
    }
    p.0 >= a.0.min(b.0) - EPS
        && p.0 <= a.0.max(b.0) + EPS
        && p.1 >= a.1.min(b.1) - EPS
        && p.1 <= a.1.max(b.1) + EPS
}

#[derive(Debug, Clone, Copy, Default)]
struct Membership {
    inside: bool,
    /// Consecutive detected frames disagreeing with `inside`.
    streak: u32,
    entered_at_us: i64,
}

/// Which tracks are in which zones, with inertia, for one camera.
#[derive(Debug, Default)]
pub struct ZoneMembership {
    state: HashMap<(usize, u64), Membership>,
}

impl ZoneMembership {
    /// Updates membership from the latest tracks. Only tracks detected in this frame move in
    /// or out; a track missed in this frame keeps its membership.
    pub fn update(&mut self, zones: &[Zone], tracks: &[Track], time_us: i64) {
        for track in tracks.iter().filter(|t| t.seen_now) {
            for (zi, zone) in zones.iter().enumerate() {
                let observed = zone.accepts(track.class_id, &track.bbox) && zone.holds(&track.bbox);
                let entry = self.state.entry((zi, track.id)).or_default();
                if observed == entry.inside {
                    entry.streak = 0;
                    continue;
                }
                entry.streak += 1;
                if entry.streak >= zone.inertia {
                    entry.inside = observed;
                    entry.streak = 0;
                    if observed {
                        entry.entered_at_us = time_us;
                    }
                }
            }
        }
        // Forget tracks that no longer exist.
        self.state
            .retain(|(_, id), _| tracks.iter().any(|t| t.id == *id));
    }

    /// When the track entered the zone, if it is in it.
    pub fn entered_at(&self, zone: usize, track_id: u64) -> Option<i64> {
        self.state
            .get(&(zone, track_id))
            .filter(|m| m.inside)
            .map(|m| m.entered_at_us)
    }

    pub fn is_inside(&self, zone: usize, track_id: u64) -> bool {
        self.entered_at(zone, track_id).is_some()
    }

    /// The camera's zones were saved again: memberships of zones that stayed move to their
    /// new index (`old → new`); those of changed or removed zones are forgotten, so a
    /// changed zone starts counting afresh.
    pub fn renumber(&mut self, zones: &HashMap<usize, usize>) {
        self.state = std::mem::take(&mut self.state)
            .into_iter()
            .filter_map(|((zone, track), m)| zones.get(&zone).map(|&new| ((new, track), m)))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(points: &[(f32, f32)]) -> Zone {
        Zone {
            id: "z".into(),
            name: "z".into(),
            polygon: points.to_vec(),
            classes: None,
            min_area: 0.0,
            inertia: 1,
            area_m2: None,
            membership: MembershipMode::BottomCentre,
            min_overlap: 0.5,
        }
    }

    #[test]
    fn square_inside_outside_and_edges() {
        let z = zone(&[(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8)]);
        assert!(z.contains((0.5, 0.5)));
        assert!(!z.contains((0.1, 0.5)));
        assert!(!z.contains((0.5, 0.9)));
        assert!(z.contains((0.2, 0.5)), "left edge");
        assert!(z.contains((0.8, 0.8)), "corner");
        assert!(z.contains((0.5, 0.8)), "bottom edge");
        assert!(!z.contains((0.5, 0.800_1)));
    }

    #[test]
    fn concave_polygon() {
        // A U shape: the notch between the arms is outside.
        let u = zone(&[
            (0.1, 0.1),
            (0.3, 0.1),
            (0.3, 0.6),
            (0.7, 0.6),
            (0.7, 0.1),
            (0.9, 0.1),
            (0.9, 0.9),
            (0.1, 0.9),
        ]);
        assert!(u.contains((0.2, 0.3)), "left arm");
        assert!(u.contains((0.8, 0.3)), "right arm");
        assert!(!u.contains((0.5, 0.3)), "the notch");
        assert!(u.contains((0.5, 0.7)), "the base");
        assert!(u.contains((0.5, 0.6)), "the notch's floor is an edge");
    }

    #[test]
    fn whole_picture_zone_contains_the_borders() {
        let all = zone(&[(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]);
        assert!(all.contains((0.5, 1.0)), "a box touching the bottom");
        assert!(all.contains((0.0, 0.0)));
    }

    #[test]
    fn overlap_membership_counts_the_box_fraction_inside() {
        // The floor of an elevator seen from above: the upper three quarters of the picture.
        let mut floor = zone(&[(0.0, 0.0), (1.0, 0.0), (1.0, 0.75), (0.0, 0.75)]);
        let bike = BBox {
            x1: 0.1,
            y1: 0.1,
            x2: 0.9,
            y2: 0.85,
        };
        // Its foot point is on the sill below the floor: out by bottom-centre...
        assert!(!floor.holds(&bike));
        floor.membership = MembershipMode::Overlap;
        floor.min_overlap = 0.8;
        // ... but 0.65 / 0.75 of its box is on the floor.
        assert!((floor.area_within(&bike) - 0.8 * 0.65).abs() < 1e-5);
        assert!(floor.holds(&bike));
        floor.min_overlap = 0.9;
        assert!(!floor.holds(&bike));
        // A concave zone (an L): the part of the box in the notch does not count.
        let l = zone(&[
            (0.0, 0.0),
            (0.5, 0.0),
            (0.5, 0.5),
            (1.0, 0.5),
            (1.0, 1.0),
            (0.0, 1.0),
        ]);
        let whole = BBox {
            x1: 0.0,
            y1: 0.0,
            x2: 1.0,
            y2: 1.0,
        };
        assert!((l.area_within(&whole) - 0.75).abs() < 1e-5);
        let outside = BBox {
            x1: 0.6,
            y1: 0.1,
            x2: 0.9,
            y2: 0.4,
        };
        assert_eq!(l.area_within(&outside), 0.0);
    }

    #[test]
    fn filters_by_class_and_area() {
        let mut z = zone(&[(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)]);
        z.classes = Some(vec![2, 7]);
        z.min_area = 0.01;
        let big = BBox {
            x1: 0.0,
            y1: 0.0,
            x2: 0.2,
            y2: 0.2,
        };
        let tiny = BBox {
            x1: 0.0,
            y1: 0.0,
            x2: 0.05,
            y2: 0.05,
        };
        assert!(z.accepts(2, &big));
        assert!(!z.accepts(0, &big));
        assert!(!z.accepts(2, &tiny));
    }

    #[test]
    fn label_groups_resolve_against_the_manifest() {
        let manifest = ModelManifest::resolve("yolox_nano", std::path::Path::new(".")).unwrap();
        let mut config: ZoneConfig = toml::from_str(
            r#"id = "lane"
polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]
objects = ["vehicle", "person"]"#,
        )
        .unwrap();
        let z = Zone::from_config(&config, &manifest).unwrap();
        assert_eq!(z.classes, Some(vec![0, 2, 3, 5, 7]));
        config.objects = vec!["ebike".into()];
        let err = Zone::from_config(&config, &manifest)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`ebike`") && err.contains("two_wheeler"),
            "{err}"
        );
    }
}
