//! `[[cameras.zones]]` and `[[cameras.lines]]`: what a camera watches, with the rules.

use super::*;

/// A named area of a camera's picture, in normalised [0, 1] coordinates.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Letters, digits, `-` and `_`.
    pub id: String,
    /// Shown to staff and in descriptions, e.g. "3号楼东侧消防通道".
    #[serde(default)]
    pub name: String,
    /// At least three [x, y] points, x and y in [0, 1] of the picture (0, 0 = top-left).
    #[serde(deserialize_with = "de_polygon")]
    pub polygon: Vec<[f32; 2]>,
    /// Labels or label groups (from the model manifest) this zone considers; empty = all.
    #[serde(default)]
    pub objects: Vec<String>,
    /// Smallest box considered, as a fraction of the picture's area.
    #[serde(default)]
    pub min_area: f32,
    /// Consecutive detected frames inside (or outside) before an object counts as having
    /// entered (or left): one jittery frame does not move an object in or out.
    #[serde(default = "default_inertia")]
    pub inertia: u32,
    /// Real-world area in square metres, for crowd density.
    pub area_m2: Option<f32>,
    /// Height of the smallest object this zone must see, as a fraction of the picture's
    /// height (the far end of the zone). Sets how much detail `regions = "auto"` gives the
    /// zone; the default is [`DEFAULT_MIN_OBJECT_HEIGHT`].
    pub min_object_height: Option<f32>,
    /// How an object counts as in the zone: by the bottom-centre of its box (where it
    /// touches the ground; the default) or, for cameras looking down such as an elevator's,
    /// by how much of its box lies inside (`min_overlap`).
    #[serde(default)]
    pub membership: MembershipMode,
    /// With `membership = "overlap"`: the fraction of the object's box inside the zone.
    #[serde(default = "default_min_overlap")]
    pub min_overlap: f32,
    pub illegal_parking: Option<StationaryRuleConfig>,
    pub fly_wire_charging: Option<ChargingRuleConfig>,
    pub crowding: Option<CrowdingRuleConfig>,
    pub presence: Option<PresenceRuleConfig>,
}

impl ZoneConfig {
    /// The rules the zone has, by their config names.
    pub fn rule_names(&self) -> Vec<&'static str> {
        [
            self.illegal_parking.as_ref().map(|_| "illegal_parking"),
            self.fly_wire_charging.as_ref().map(|_| "fly_wire_charging"),
            self.crowding.as_ref().map(|_| "crowding"),
            self.presence.as_ref().map(|_| "presence"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// A directed line (or polyline) across a gate, a door or a ramp.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    /// Letters, digits, `-` and `_`; not the id of one of the camera's zones.
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Two to 16 [x, y] points in [0, 1] of the picture. Walking along the line from its
    /// first point to its last, a crossing from your left to your right is "in", from your
    /// right to your left "out".
    pub points: Vec<[f32; 2]>,
    /// Labels or label groups counted; empty = every class.
    #[serde(default)]
    pub objects: Vec<String>,
    /// Crossings in this direction raise `wrong_way_entry`: "in", "out" or "both". Unset:
    /// crossings are only counted.
    pub alert: Option<CrossingDirection>,
    /// An object's bottom-centre must be this far (a fraction of the picture) on the other
    /// side before a crossing counts, so a box jittering on the line counts nothing.
    /// Default 0.02.
    #[serde(default = "default_line_margin")]
    pub margin: f32,
    /// Height of the smallest object that crosses, as a fraction of the picture's height:
    /// how much detail `regions = "auto"` gives the line (as a zone's); the default is
    /// [`DEFAULT_MIN_OBJECT_HEIGHT`].
    pub min_object_height: Option<f32>,
    /// How long after the crossing a `wrong_way_entry` incident closes. Default 10 s.
    #[serde(default = "default_close_after", with = "humantime_serde")]
    pub close_after: Duration,
    /// When crossings raise incidents (site time); empty = always. Counted at all times.
    #[serde(default)]
    pub schedule: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum CrossingDirection {
    In,
    Out,
    Both,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MembershipMode {
    #[default]
    BottomCentre,
    Overlap,
}

/// An object of the zone's objects in the zone at all: an elevator car with an e-bike in it,
/// a person in a closed area.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PresenceRuleConfig {
    /// What the incident is: `intrusion` (default) or `two_wheeler_in_elevator`.
    #[serde(default)]
    pub kind: PresenceKind,
    /// How long the object must have been in the zone. Default 1 s; 0 = at once.
    #[serde(default = "default_presence_min_time", with = "humantime_serde")]
    pub min_time: Duration,
    /// How long the zone must have been empty of such objects before the incident closes.
    /// Default 5 s.
    #[serde(default = "default_presence_grace", with = "humantime_serde")]
    pub grace: Duration,
    #[serde(default)]
    pub schedule: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PresenceKind {
    #[default]
    Intrusion,
    TwoWheelerInElevator,
}

/// A vehicle (or other object) staying put in a zone.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StationaryRuleConfig {
    /// How long the object must have stood still in the zone. Default 180 s for parking.
    #[serde(default = "default_parking_dwell", with = "humantime_serde")]
    pub dwell: Duration,
    /// How long it must have been gone before the incident closes.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub grace: Duration,
    /// When the rule may raise incidents (site time); empty = always.
    #[serde(default)]
    pub schedule: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChargingRuleConfig {
    /// How long the two-wheeler must have stood still in the zone. Default 120 s.
    #[serde(default = "default_charging_dwell", with = "humantime_serde")]
    pub dwell: Duration,
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub grace: Duration,
    /// Typically the night, e.g. ["22:00-06:00"]; empty = always.
    #[serde(default)]
    pub schedule: Vec<String>,
    /// Raise an incident only when the model also sees a charging cable (needs a model
    /// whose manifest has a `charging_cable` label group).
    #[serde(default)]
    pub require_cable: bool,
    /// A cable counts as "at" the two-wheeler when it touches the two-wheeler's box grown by
    /// this fraction of its size on every side.
    #[serde(default = "default_cable_margin")]
    pub cable_margin: f32,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CrowdingRuleConfig {
    /// Persons in the zone at or above this count start the clock. Default 10.
    #[serde(default = "default_min_count")]
    pub min_count: u32,
    /// ... and must stay at or above it this long. Default 60 s.
    #[serde(default = "default_crowd_duration", with = "humantime_serde")]
    pub duration: Duration,
    /// The incident clears only once the count stays below this (default: `min_count`)...
    pub clear_count: Option<u32>,
    /// ... for this long. Default 30 s.
    #[serde(default = "default_clear_duration", with = "humantime_serde")]
    pub clear_duration: Duration,
    #[serde(default)]
    pub schedule: Vec<String>,
}

fn default_inertia() -> u32 {
    2
}

fn default_parking_dwell() -> Duration {
    Duration::from_secs(180)
}

fn default_charging_dwell() -> Duration {
    Duration::from_secs(120)
}

fn default_grace() -> Duration {
    Duration::from_secs(30)
}

fn default_cable_margin() -> f32 {
    0.5
}

fn default_min_count() -> u32 {
    10
}

fn default_crowd_duration() -> Duration {
    Duration::from_secs(60)
}

fn default_clear_duration() -> Duration {
    Duration::from_secs(30)
}

/// A zone's or a line's `min_object_height`: a fraction of the picture's height.
pub(super) fn check_min_object_height(height: Option<f32>) -> Result<(), String> {
    match height {
        Some(h) if !(h > 0.001 && h <= 1.0) => {
            Err("must be in (0.001, 1]: a fraction of the picture's height".into())
        }
        _ => Ok(()),
    }
}

fn default_line_margin() -> f32 {
    0.02
}

fn default_close_after() -> Duration {
    Duration::from_secs(10)
}

fn default_min_overlap() -> f32 {
    0.5
}

fn default_presence_min_time() -> Duration {
    Duration::from_secs(1)
}

fn default_presence_grace() -> Duration {
    Duration::from_secs(5)
}

/// Polygon points as `[x, y]` pairs exactly: serde's fixed-size arrays would take the first
/// two numbers of `[0.1, 0.2, 0.3]` and ignore the rest.
pub(super) fn de_polygon<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Vec<[f32; 2]>, D::Error> {
    let points: Vec<Vec<f32>> = Deserialize::deserialize(de)?;
    points
        .into_iter()
        .enumerate()
        .map(|(i, point)| match point.as_slice() {
            [x, y] => Ok([*x, *y]),
            other => Err(serde::de::Error::custom(format!(
                "point {i} has {} coordinate(s); a point is [x, y]",
                other.len()
            ))),
        })
        .collect()
}

/// The area of a polygon (shoelace formula), in picture fractions squared.
pub(super) fn polygon_area(points: &[[f32; 2]]) -> f32 {
    let n = points.len();
    (0..n)
        .map(|i| {
            let (a, b) = (points[i], points[(i + 1) % n]);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum::<f32>()
        .abs()
        / 2.0
}

impl LineConfig {
    /// `earlier`: the camera's lines before this one; `zones`: its zones (one id space).
    pub(super) fn validate(
        &self,
        earlier: &[LineConfig],
        zones: &[ZoneConfig],
    ) -> Result<(), Invalid> {
        if !is_identifier(&self.id) {
            return fail(
                &["id"],
                format!("`{}` must be letters, digits, `-` or `_`", self.id),
            );
        }
        if zones.iter().any(|z| z.id == self.id) || earlier.iter().any(|l| l.id == self.id) {
            return fail(
                &["id"],
                format!("`{}` is already used by a zone or line", self.id),
            );
        }
        if !(2..=16).contains(&self.points.len()) {
            return fail(&["points"], "needs 2 to 16 points");
        }
        if self
            .points
            .iter()
            .any(|p| !p.iter().all(|v| (0.0..=1.0).contains(v)))
        {
            return fail(&["points"], "x and y must be in [0, 1]");
        }
        if self.points.windows(2).any(|w| w[0] == w[1]) {
            return fail(&["points"], "two consecutive points are the same");
        }
        if !(self.margin > 0.0 && self.margin <= 0.2) {
            return fail(&["margin"], "must be in (0, 0.2]");
        }
        if let Err(message) = check_min_object_height(self.min_object_height) {
            return fail(&["min_object_height"], message);
        }
        if let Err(message) = crate::schedule::Schedule::parse(&self.schedule) {
            return fail(&["schedule"], message);
        }
        Ok(())
    }
}

impl ZoneConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if !is_identifier(&self.id) {
            return fail(
                &["id"],
                format!("`{}` must be letters, digits, `-` or `_`", self.id),
            );
        }
        if self.polygon.len() < 3 {
            return fail(&["polygon"], "needs at least 3 points");
        }
        if self.polygon.len() > 64 {
            return fail(&["polygon"], "has more than 64 points");
        }
        if let Some(p) = self
            .polygon
            .iter()
            .find(|p| !p.iter().all(|v| (0.0..=1.0).contains(v)))
        {
            return fail(
                &["polygon"],
                format!("point {p:?} is outside [0, 1]: zones use fractions of the picture"),
            );
        }
        if polygon_area(&self.polygon) < 1e-5 {
            return fail(
                &["polygon"],
                "encloses no area (its points are on one line or repeat one point)",
            );
        }
        if !(0.0..1.0).contains(&self.min_area) {
            return fail(
                &["min_area"],
                format!("must be in [0, 1), got {}", self.min_area),
            );
        }
        if self.inertia == 0 {
            return fail(&["inertia"], "must be at least 1");
        }
        if self.area_m2.is_some_and(|a| a.is_nan() || a <= 0.0) {
            return fail(&["area_m2"], "must be positive");
        }
        if let Err(message) = check_min_object_height(self.min_object_height) {
            return fail(&["min_object_height"], message);
        }
        if !(self.min_overlap > 0.0 && self.min_overlap <= 1.0) {
            return fail(
                &["min_overlap"],
                "must be in (0, 1]: the fraction of the object's box inside the zone",
            );
        }
        let schedules = [
            (
                "illegal_parking",
                self.illegal_parking.as_ref().map(|r| &r.schedule),
            ),
            (
                "fly_wire_charging",
                self.fly_wire_charging.as_ref().map(|r| &r.schedule),
            ),
            ("crowding", self.crowding.as_ref().map(|r| &r.schedule)),
            ("presence", self.presence.as_ref().map(|r| &r.schedule)),
        ];
        for (rule, schedule) in schedules {
            if let Some(entries) = schedule
                && let Err(message) = crate::schedule::Schedule::parse(entries)
            {
                return fail(&[rule, "schedule"], message);
            }
        }
        if let Some(c) = &self.crowding {
            if c.min_count == 0 {
                return fail(&["crowding"], "min_count must be at least 1");
            }
            if c.clear_count
                .is_some_and(|clear| clear == 0 || clear > c.min_count)
            {
                return fail(
                    &["crowding"],
                    format!("clear_count must be in 1..={} (min_count)", c.min_count),
                );
            }
        }
        Ok(())
    }
}
