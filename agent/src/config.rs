//! The agent's configuration: one TOML file, read strictly.
//!
//! Unknown keys are errors (a typo must not silently fall back to a default), and every error
//! names the file, line and column and the dotted path of the field, so an installer editing
//! the file over SSH can fix it without guessing. `gridwatch check` runs exactly this code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::FixedOffset;
use serde::Deserialize;
use serde_path_to_error::Segment;

/// The smallest object a zone must see when its config does not say: 8 % of the picture's
/// height (86 px on a 1080p picture; a car ~30 m from a 4 mm lens mounted at 6 m).
pub const DEFAULT_MIN_OBJECT_HEIGHT: f32 = 0.08;

/// Most regions (inferences per sampled frame) one camera may cost.
pub const MAX_REGIONS: usize = 16;

/// A config problem, already formatted as `file:line:col: field: what is wrong`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Path of the file this was read from; set by [`Config::load`].
    #[serde(skip)]
    pub source_path: PathBuf,
    /// The file's text, so errors found later (against the model) can point into it.
    #[serde(skip)]
    pub source_text: String,
    pub site: SiteConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub detector: DetectorConfig,
    #[serde(default)]
    pub tracker: TrackerConfig,
    #[serde(default)]
    pub incidents: IncidentsConfig,
    /// Platform categories (大类/中类/小类) per incident kind; defaults by name.
    #[serde(default)]
    pub categories: CategoriesConfig,
    /// Delivery to the grid platform; without it, incidents go to the store only.
    pub mqtt: Option<MqttConfig>,
    #[serde(default)]
    pub evidence: EvidenceConfig,
    /// The HTTP API and review page; without it, no HTTP server runs.
    pub web: Option<WebConfig>,
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
    /// HTTP(S) POSTs on incidents: a relay box, a WeCom or DingTalk group robot.
    #[serde(default)]
    pub actions: Vec<ActionConfig>,
}

/// An HTTP(S) POST made for incident events (docs/deploy.md, "Actions").
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// Letters, digits, `-` and `_`: in logs and the store.
    pub id: String,
    /// `http://` or `https://`. A robot's key is never written here: put `{key}` where it
    /// goes (`...send?key={key}`) and give `key_file` or `key_env`.
    pub url: String,
    pub key_file: Option<PathBuf>,
    pub key_env: Option<String>,
    /// The body: "json" (the event, schema v1; default), "wecom" (企业微信 group robot
    /// markdown) or "dingtalk" (钉钉 group robot markdown).
    #[serde(default)]
    pub format: ActionFormat,
    /// Kinds that trigger it; empty = every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Event states that trigger it: "opened", "updated", "closed". Default ["opened"].
    #[serde(default = "default_action_on")]
    pub on: Vec<String>,
    /// The base of the snapshot link in robot messages, e.g. "http://192.168.1.10:8080"
    /// (the box's web server as staff reach it). Unset: no link.
    pub link_base: Option<String>,
    /// Per attempt. Default 5 s.
    #[serde(default = "default_action_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts before the action is given up (kept in the store, logged). Default 20:
    /// with the default backoff (1 s doubling to 5 min) about an hour and a half.
    #[serde(default = "default_action_attempts")]
    pub max_attempts: u32,
    /// The longest wait between two attempts (the wait doubles from 1 s). Default 5 min.
    #[serde(default = "default_action_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ActionFormat {
    #[default]
    Json,
    Wecom,
    Dingtalk,
}

fn default_action_on() -> Vec<String> {
    vec!["opened".into()]
}
fn default_action_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_action_attempts() -> u32 {
    20
}
fn default_action_retry_max() -> Duration {
    Duration::from_secs(300)
}

/// The station's review page and the HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Address to listen on, e.g. "0.0.0.0:8080" (LAN) or "127.0.0.1:8080".
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Bearer token for API clients (file, first line). Unset: a random one per start,
    /// usable only through the login.
    pub token_file: Option<PathBuf>,
    /// Password of the review page's login (file, first line, or an environment variable).
    /// These and `token_file` are the installer's account: everything, cameras and zones
    /// included.
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// Station staff's accounts: incidents and reviews only (403 on camera and zone routes).
    /// Their reviews are recorded under the account's name.
    #[serde(default)]
    pub reviewers: Vec<ReviewerAccount>,
}

/// A reviewer's account: a name and a password (file or environment variable) for the
/// page, and/or a token (file) for scripts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewerAccount {
    /// Shown in reviews, e.g. "王芳"; 1-64 characters, unique.
    pub name: String,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub token_file: Option<PathBuf>,
}

impl ReviewerAccount {
    pub fn password(&self) -> Result<Option<String>, String> {
        secret(
            &self.password_file,
            &self.password_env,
            "web.reviewers.password",
        )
    }

    pub fn token(&self) -> Result<Option<String>, String> {
        self.token_file
            .as_deref()
            .map(|p| first_line(p, "web.reviewers.token_file"))
            .transpose()
            .map(|t| t.filter(|t| !t.is_empty()))
    }
}

/// A secret from the first line of a file, or an environment variable.
fn secret(
    file: &Option<PathBuf>,
    env: &Option<String>,
    what: &str,
) -> Result<Option<String>, String> {
    if let Some(path) = file {
        return first_line(path, &format!("{what}_file")).map(Some);
    }
    if let Some(var) = env {
        return std::env::var(var)
            .map(Some)
            .map_err(|_| format!("{what}_env names {var}, which is not set"));
    }
    Ok(None)
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn first_line(path: &Path, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().next().unwrap_or_default().trim().to_string())
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

impl WebConfig {
    pub fn token(&self) -> Result<Option<String>, String> {
        self.token_file
            .as_deref()
            .map(|p| first_line(p, "web.token_file"))
            .transpose()
            .map(|t| t.filter(|t| !t.is_empty()))
    }

    pub fn password(&self) -> Result<Option<String>, String> {
        secret(&self.password_file, &self.password_env, "web.password")
    }
}

/// Clips and snapshots for station review, and how much disk they may use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceConfig {
    pub enabled: bool,
    /// Where clips and snapshots go; default `<data_dir>/evidence`. A box with a separate
    /// disk for recordings puts evidence there and keeps the database on the system disk.
    pub dir: Option<PathBuf>,
    /// Video kept before the moment an incident opens.
    #[serde(with = "humantime_serde")]
    pub pre_roll: Duration,
    /// Video recorded after it.
    #[serde(with = "humantime_serde")]
    pub post_roll: Duration,
    /// Most bytes evidence may use; None = no byte limit.
    pub quota_bytes: Option<u64>,
    /// Most of the filesystem (percent of its size) evidence may use.
    pub quota_percent: Option<f64>,
    /// Evidence older than this is deleted; None = kept until the quota needs the space.
    #[serde(with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// JPEG quality of snapshots, 1-100.
    pub jpeg_quality: u8,
    pub thumbnail_width: u32,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        EvidenceConfig {
            enabled: true,
            dir: None,
            pre_roll: Duration::from_secs(10),
            post_roll: Duration::from_secs(20),
            quota_bytes: None,
            quota_percent: Some(50.0),
            max_age: Some(Duration::from_secs(90 * 86_400)),
            jpeg_quality: 85,
            thumbnail_width: 320,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum MqttProtocol {
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    #[serde(rename = "5")]
    V5,
}

/// The MQTT connection to the grid platform. Secrets are referenced, never stored here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub host: String,
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    /// "3.1.1" (default) or "5".
    #[serde(default)]
    pub protocol: MqttProtocol,
    /// Identifies this box within the site; the client id is `gridwatch-<site>-<box_id>`.
    #[serde(default = "default_box_id")]
    pub box_id: String,
    /// Topic prefix; `{site}` is replaced by the site id.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// false (default): a persistent session, so the broker keeps this box's command
    /// subscription while it is offline. true: start clean every time.
    #[serde(default)]
    pub clean_session: bool,
    pub username: Option<String>,
    /// File holding the password (first line). Preferred: keep it readable by the service only.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat_every: Duration,
    /// First wait before reconnecting; doubles up to `reconnect_max`, with jitter.
    #[serde(default = "default_reconnect_min", with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(default = "default_reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub outbox: OutboxConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificate(s) (PEM) to trust for the broker; default: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for brokers that authenticate clients by certificate.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Name to verify in the broker's certificate; default: `host`.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Most events waiting for delivery; beyond it the oldest `updated` events are dropped.
    pub max_events: u64,
    /// Most bytes waiting for delivery, same policy.
    pub max_bytes: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_events: 100_000,
            max_bytes: 256 << 20,
        }
    }
}

impl MqttConfig {
    /// The topic prefix with `{site}` filled in.
    pub fn prefix(&self, site: &str) -> String {
        self.topic_prefix
            .replace("{site}", site)
            .trim_end_matches('/')
            .to_string()
    }

    pub fn client_id(&self, site: &str) -> String {
        format!("gridwatch-{site}-{}", self.box_id)
    }

    /// Reads the password from the file or environment variable named in the config.
    pub fn password(&self) -> Result<Option<String>, String> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read mqtt.password_file {}: {e}", path.display()))?;
            return Ok(Some(text.lines().next().unwrap_or_default().to_string()));
        }
        if let Some(var) = &self.password_env {
            return std::env::var(var)
                .map(Some)
                .map_err(|_| format!("mqtt.password_env names {var}, which is not set"));
        }
        Ok(None)
    }
}

fn default_mqtt_port() -> u16 {
    1883
}
fn default_box_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| is_identifier(h))
        .unwrap_or_else(|| "box".into())
}
fn default_topic_prefix() -> String {
    "gridwatch/v1/{site}".into()
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(30)
}
fn default_reconnect_min() -> Duration {
    Duration::from_secs(1)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(60)
}

/// Multi-object tracking (ByteTrack-style). See `track` for what each knob does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// Detections at or above this score can start tracks and match in the first stage.
    pub high_score: f32,
    /// Detections between `low_score` and `high_score` only keep existing tracks alive
    /// (second stage): a partly hidden object keeps its track instead of losing it.
    pub low_score: f32,
    /// Minimum IoU between a track's predicted box and a high-score detection.
    pub match_iou: f32,
    /// Minimum IoU for the second stage with low-score detections.
    pub low_match_iou: f32,
    /// Matched detections before a track is confirmed (reported to the rules).
    pub birth_hits: u32,
    /// A moving track is dropped after this long without a matching detection.
    #[serde(with = "humantime_serde")]
    pub lost_after: Duration,
    /// A stationary track survives longer gaps: parked things are missed for a while by
    /// the detector (a person walking past, headlights) without having gone anywhere.
    #[serde(with = "humantime_serde")]
    pub stationary_lost_after: Duration,
    /// How long a box must stay near its anchor position to count as stationary.
    #[serde(with = "humantime_serde")]
    pub stationary_after: Duration,
    /// Minimum IoU with the anchor box to count as "not moved".
    pub stationary_iou: f32,
    /// Maximum centre shift from the anchor, as a fraction of the anchor box's diagonal.
    pub stationary_shift: f32,
    /// How long a box must be off its anchor, continuously, before the object counts as
    /// moved: a passer-by sliding across a parked car, or a noisy night frame, does not
    /// restart its dwell clock.
    #[serde(with = "humantime_serde")]
    pub stationary_break: Duration,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            high_score: 0.45,
            low_score: 0.1,
            match_iou: 0.2,
            low_match_iou: 0.4,
            birth_hits: 3,
            lost_after: Duration::from_secs(3),
            stationary_lost_after: Duration::from_secs(60),
            stationary_after: Duration::from_secs(10),
            stationary_iou: 0.6,
            stationary_shift: 0.15,
            stationary_break: Duration::from_secs(2),
        }
    }
}

/// Incident lifecycle settings shared by all rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    /// An open incident sends an `updated` event at most this often (and on state changes).
    #[serde(with = "humantime_serde")]
    pub update_every: Duration,
    /// After an incident closes, the same zone and kind (at the same place, for objects)
    /// raise no new incident for this long: one car coming and going is not ten incidents.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// A dismissed incident suppresses new ones of the same kind in the same zone for an
    /// object at the same place (a car with a parking permit) for this long.
    #[serde(with = "humantime_serde")]
    pub dismissal_memory: Duration,
    /// "Same place": box overlap (IoU) with the dismissed incident's object.
    pub dismissal_iou: f32,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            update_every: Duration::from_secs(60),
            cooldown: Duration::from_secs(120),
            dismissal_memory: Duration::from_secs(7 * 86_400),
            dismissal_iou: 0.5,
        }
    }
}

/// One level of the platform's category tree: its name and, when the platform has given
/// one, its code. gridwatch never invents codes.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CategoryLevel {
    pub name: String,
    #[serde(default)]
    pub code: Option<String>,
}

/// 大类 / 中类 / 小类 of one incident kind.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub major: CategoryLevel,
    pub minor: CategoryLevel,
    #[serde(default)]
    pub sub: Option<CategoryLevel>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CategoriesConfig {
    pub illegal_parking: Option<Category>,
    pub fly_wire_charging: Option<Category>,
    pub crowding: Option<Category>,
    pub camera_offline: Option<Category>,
    pub two_wheeler_in_elevator: Option<Category>,
    pub intrusion: Option<Category>,
    pub wrong_way_entry: Option<Category>,
}

#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

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
fn check_min_object_height(height: Option<f32>) -> Result<(), String> {
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
fn default_offline_after() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Stable identifier of this box's site (compound), used in topics and event ids.
    pub id: String,
    /// Human name of the site, e.g. the compound's name.
    #[serde(default)]
    pub name: String,
    /// The grid code (网格编码) the platform files this site's incidents under.
    pub grid_code: String,
    /// UTC offset of the site's local time, e.g. "+08:00". Used for schedules and for the
    /// offset written in event times.
    #[serde(default = "default_timezone", deserialize_with = "de_offset")]
    pub timezone: FixedOffset,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Where the database, evidence and downloaded models live. Relative paths are taken
    /// from the config file's directory.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Free space kept on the filesystems of `data_dir` and of the evidence directory, so
    /// the database and its outbox are never starved: evidence is never written into it,
    /// and retention deletes evidence (reviewed first, then oldest) to restore it when
    /// anything else eats into it. Default 128 MiB.
    #[serde(default = "default_reserve_bytes")]
    pub reserve_bytes: u64,
}

fn default_reserve_bytes() -> u64 {
    128 << 20
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: default_data_dir(),
            reserve_bytes: default_reserve_bytes(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// A built-in model name (`yolox_nano`) or the path of a model manifest (.toml).
    #[serde(default = "default_model")]
    pub model: String,
    /// Directory searched first for the model file named by the manifest.
    pub model_dir: Option<PathBuf>,
    /// Inference engine: `ort` (ONNX Runtime, loaded at run time) or `tract` (pure Rust,
    /// built in with the cargo feature `tract`; for armv7 boxes, which have no ONNX Runtime).
    #[serde(default)]
    pub backend: DetectorBackend,
    /// Path of `libonnxruntime.so`. When unset: `$ORT_DYLIB_PATH`, then the project-local
    /// install (`.local/lib` of the checkout, `$GRIDWATCH_LOCAL/lib`), then the system path.
    pub runtime_library: Option<PathBuf>,
    /// ONNX Runtime intra-op threads for one inference.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Inference workers in the daemon, each with its own model session and its share of
    /// the cameras. One leaves the other cores to decoding; more lets a box whose cameras
    /// are cheap to decode (sub-streams, motion gating) use its idle cores for inference.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Minimum score (objectness x class probability) for a detection to be kept.
    #[serde(default = "default_confidence")]
    pub confidence: f32,
    /// IoU above which NMS suppresses the weaker of two boxes of the same class.
    #[serde(default = "default_nms_iou")]
    pub nms_iou: f32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            model: default_model(),
            model_dir: None,
            backend: DetectorBackend::default(),
            runtime_library: None,
            threads: default_threads(),
            workers: default_workers(),
            confidence: default_confidence(),
            nms_iou: default_nms_iou(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DetectorBackend {
    Ort,
    Tract,
}

impl Default for DetectorBackend {
    /// ONNX Runtime, except on 32-bit ARM builds with tract: no ONNX Runtime exists there,
    /// so `gridwatch detect` and configs without a backend work out of the box.
    fn default() -> Self {
        if cfg!(all(feature = "tract", target_arch = "arm")) {
            DetectorBackend::Tract
        } else {
            DetectorBackend::Ort
        }
    }
}

impl DetectorBackend {
    /// Why `tract` cannot be used by a build without the feature, and what to do.
    pub const TRACT_NOT_BUILT: &str = "this gridwatch was built without the tract backend: rebuild with `--features tract` (cross/build.sh armv7 does), or use backend = \"ort\"";

    /// Whether this binary was built with the backend (tract is a cargo feature).
    pub fn compiled_in(self) -> bool {
        match self {
            DetectorBackend::Ort => true,
            DetectorBackend::Tract => cfg!(feature = "tract"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    #[default]
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Short identifier: letters, digits, `-` and `_` (it appears in topics and file names).
    pub id: String,
    /// Human name, e.g. "3号楼东侧消防通道".
    #[serde(default)]
    pub name: String,
    /// Main stream: `rtsp://...` or a file path. Clips are recorded from this stream.
    pub url: String,
    /// Optional low-resolution sub-stream used for detection instead of `url`.
    pub detect_url: Option<String>,
    /// Frames per second of stream time sent to the detector (sampled by timestamp).
    #[serde(default = "default_detect_fps")]
    pub detect_fps: f64,
    /// FFmpeg decoder threads for this camera.
    #[serde(default = "default_decode_threads")]
    pub decode_threads: usize,
    /// RTSP transport: "tcp" (default, survives lossy links) or "udp".
    #[serde(default)]
    pub rtsp_transport: RtspTransport,
    /// How long opening or reading the stream may block before it counts as a failure.
    #[serde(default = "default_io_timeout", with = "humantime_serde")]
    pub io_timeout: Duration,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A camera that delivers no frame for this long raises a `camera_offline` incident.
    #[serde(default = "default_offline_after", with = "humantime_serde")]
    pub offline_after: Duration,
    /// Where the camera is, for the platform's map.
    pub location: Option<Location>,
    #[serde(default)]
    pub zones: Vec<ZoneConfig>,
    /// Directed lines whose crossings are counted, and raise `wrong_way_entry` in a
    /// forbidden direction.
    #[serde(default)]
    pub lines: Vec<LineConfig>,
    /// "all" (default) decodes every frame; "keyframes" decodes only keyframes, for cameras
    /// with slow rules only (parking, charging): detection then follows the GOP.
    #[serde(default)]
    pub decode: DecodeMode,
    /// Skip inference on frames without motion in the zones.
    #[serde(default)]
    pub motion: MotionConfig,
    /// Where the detector looks: "auto" (regions derived from the zones, at the detail
    /// their objects need), "full" (the whole picture in one pass) or a list of
    /// `[x1, y1, x2, y2]` rectangles in fractions of the picture.
    #[serde(default, deserialize_with = "de_regions")]
    pub regions: RegionsSetting,
    /// Hardware decoding by name: an FFmpeg hwaccel (`vaapi`, `cuda`, `qsv`, `vdpau`,
    /// `drm`, `vulkan`) or a hardware decoder family (`v4l2m2m`, `rkmpp`, `cuvid`). When it is
    /// not available on the box the camera decodes in software, and the log says so.
    pub hwaccel: Option<String>,
    /// The hwaccel's device, e.g. `/dev/dri/renderD128` for vaapi or `0` for cuda.
    pub hwaccel_device: Option<String>,
}

/// Names accepted by `cameras.hwaccel`: FFmpeg hwaccel device types, then hardware decoder
/// families (used as `<codec>_<family>`, e.g. `h264_rkmpp`).
pub const HWACCEL_DEVICES: &[&str] = &["vaapi", "cuda", "qsv", "vdpau", "drm", "vulkan"];
pub const HWACCEL_DECODERS: &[&str] = &["v4l2m2m", "rkmpp", "cuvid"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DecodeMode {
    #[default]
    All,
    Keyframes,
}

/// `cameras.regions`: what the detector is shown of each frame.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum RegionsSetting {
    /// Derived from the zones (see `regions::plan`).
    #[default]
    Auto,
    /// The whole picture letterboxed into the model input.
    Full,
    /// These rectangles, `[x1, y1, x2, y2]` in fractions of the picture.
    List(Vec<[f32; 4]>),
}

fn de_regions<'de, D: serde::Deserializer<'de>>(de: D) -> Result<RegionsSetting, D::Error> {
    struct RegionsVisitor;
    impl<'de> serde::de::Visitor<'de> for RegionsVisitor {
        type Value = RegionsSetting;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("\"auto\", \"full\" or a list of [x1, y1, x2, y2] rectangles")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RegionsSetting, E> {
            match v {
                "auto" => Ok(RegionsSetting::Auto),
                "full" => Ok(RegionsSetting::Full),
                other => Err(E::custom(format!(
                    "`{other}` is not a regions setting: use \"auto\", \"full\" or a list of [x1, y1, x2, y2] rectangles"
                ))),
            }
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<RegionsSetting, A::Error> {
            let mut list = Vec::new();
            while let Some(rect) = seq.next_element::<Vec<f32>>()? {
                match rect.as_slice() {
                    [x1, y1, x2, y2] => list.push([*x1, *y1, *x2, *y2]),
                    other => {
                        return Err(serde::de::Error::custom(format!(
                            "region {} has {} number(s); a region is [x1, y1, x2, y2]",
                            list.len(),
                            other.len()
                        )));
                    }
                }
            }
            Ok(RegionsSetting::List(list))
        }
    }
    de.deserialize_any(RegionsVisitor)
}

/// Motion gating: frame differencing on a small grey image inside the zones.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MotionConfig {
    pub enabled: bool,
    /// Without motion, still run the detector this often, so stationary objects keep their
    /// tracks (and dwell clocks) alive.
    #[serde(with = "humantime_serde")]
    pub recheck: Duration,
    /// Grey-level change of a pixel that counts as a change (0-255).
    pub pixel_threshold: u8,
    /// Fraction of the zones' pixels that must change to count as motion.
    pub min_changed: f32,
}

impl Default for MotionConfig {
    fn default() -> Self {
        MotionConfig {
            enabled: false,
            recheck: Duration::from_secs(5),
            pixel_threshold: 25,
            min_changed: 0.002,
        }
    }
}

impl CameraConfig {
    /// A camera with every default, for ad-hoc use (replay of a file without a configured
    /// camera, benchmarks). Goes through serde so the defaults live in one place.
    pub fn adhoc(id: &str, url: &str) -> CameraConfig {
        let table = serde_json::json!({ "id": id, "url": url });
        CameraConfig::deserialize(table).expect("id and url are all a camera requires")
    }

    /// The stream detection reads: the sub-stream when there is one.
    pub fn detection_url(&self) -> &str {
        self.detect_url.as_deref().unwrap_or(&self.url)
    }
}

fn default_timezone() -> FixedOffset {
    // China Standard Time; every city the product targets is on it.
    FixedOffset::east_opt(8 * 3600).expect("constant offset is in range")
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/gridwatch")
}
fn default_model() -> String {
    "yolox_nano".into()
}
fn default_threads() -> usize {
    1
}
fn default_workers() -> usize {
    1
}
fn default_confidence() -> f32 {
    0.3
}
fn default_nms_iou() -> f32 {
    0.45
}
fn default_detect_fps() -> f64 {
    5.0
}
fn default_decode_threads() -> usize {
    1
}
fn default_io_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_true() -> bool {
    true
}

/// Polygon points as `[x, y]` pairs exactly: serde's fixed-size arrays would take the first
/// two numbers of `[0.1, 0.2, 0.3]` and ignore the rest.
fn de_polygon<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<[f32; 2]>, D::Error> {
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
fn polygon_area(points: &[[f32; 2]]) -> f32 {
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

fn de_offset<'de, D: serde::Deserializer<'de>>(de: D) -> Result<FixedOffset, D::Error> {
    let text = String::deserialize(de)?;
    parse_offset(&text).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "`{text}` is not a UTC offset like \"+08:00\" or \"-03:30\""
        ))
    })
}

/// Parses "+08:00", "-0330", "Z" or "UTC".
pub fn parse_offset(text: &str) -> Option<FixedOffset> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("z") || text.eq_ignore_ascii_case("utc") {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    if hours > 14 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|err| {
            ConfigError(format!(
                "cannot read config {}: {err}{}",
                path.display(),
                if err.kind() == std::io::ErrorKind::NotFound {
                    " (agent/config.example.toml documents every key)"
                } else {
                    ""
                }
            ))
        })?;
        let text = String::from_utf8(bytes).map_err(|err| {
            let valid = err.utf8_error().valid_up_to();
            let bytes = err.as_bytes();
            // The prefix before the first bad byte is valid UTF-8, so it can be counted.
            let prefix = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
            let (line, col) = line_col(prefix, prefix.len());
            ConfigError(format!(
                "{}:{line}:{col}: the file is not UTF-8 (byte 0x{:02x}); save it as UTF-8",
                path.display(),
                bytes.get(valid).copied().unwrap_or_default()
            ))
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `path` is used for messages and relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let deserializer = toml::Deserializer::parse(text)
            .map_err(|err| ConfigError(toml_error_at(&origin, text, &err)))?;
        let mut config: Config = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let field = dotted_path(err.path());
            let inner = err.inner();
            let position = inner
                .span()
                .map(|span| line_col(text, span.start))
                .map(|(l, c)| format!(":{l}:{c}"))
                .unwrap_or_default();
            let field = if field.is_empty() || field == "?" {
                String::new()
            } else {
                format!(" {field}:")
            };
            ConfigError(format!("{origin}{position}:{field} {}", inner.message()))
        })?;
        config.source_path = path.to_path_buf();
        config.source_text = text.to_string();
        if let Err((field, message)) = config.validate() {
            return Err(config.error_at(&field, &message));
        }
        config.resolve_paths();
        if let Err((field, message)) = config.check_files() {
            return Err(config.error_at(&field, &message));
        }
        Ok(config)
    }

    /// Files the config names that must exist when the agent starts (after relative paths
    /// are resolved): a TLS setting without its file cannot work at all.
    fn check_files(&self) -> Result<(), (Vec<String>, String)> {
        let Some(tls) = self.mqtt.as_ref().and_then(|m| m.tls.as_ref()) else {
            return Ok(());
        };
        for (name, file) in [
            ("ca_file", &tls.ca_file),
            ("client_cert_file", &tls.client_cert_file),
            ("client_key_file", &tls.client_key_file),
        ] {
            if let Some(path) = file
                && let Err(e) = std::fs::File::open(path)
            {
                return Err((
                    vec!["mqtt".into(), "tls".into(), name.into()],
                    format!("cannot read {}: {e}", path.display()),
                ));
            }
        }
        Ok(())
    }

    /// An error about the field at `path` (TOML keys and array indices), located in the
    /// file: `file:line:col: cameras[0].zones[1].objects: message`.
    pub fn error_at(&self, path: &[String], message: &str) -> ConfigError {
        // A field left out (its default failed) is located at the nearest table that is there.
        let position = (1..=path.len())
            .rev()
            .find_map(|len| span_of_path(&self.source_text, &path[..len]))
            .map(|offset| {
                let (l, c) = line_col(&self.source_text, offset);
                format!(":{l}:{c}")
            })
            .unwrap_or_default();
        ConfigError(format!(
            "{}{position}: {}: {message}",
            self.source_path.display(),
            display_path(path)
        ))
    }

    /// An error found after loading (a TLS file that does not parse, a password source
    /// that cannot work) whose message names its field (`mqtt.tls.client_key_file ...`),
    /// located in the file like a validation error.
    pub fn error_naming_field(&self, message: String) -> ConfigError {
        let field = message
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
            .find(|word| {
                ["mqtt", "web", "evidence", "storage", "detector"]
                    .iter()
                    .any(|section| word.split('.').next() == Some(*section))
            });
        match field {
            Some(field) => {
                let path: Vec<String> = field.split('.').map(String::from).collect();
                self.error_at(&path, &message)
            }
            None => ConfigError(message),
        }
    }

    /// Where evidence files go: `evidence.dir`, else `<data_dir>/evidence`.
    pub fn evidence_dir(&self) -> PathBuf {
        self.evidence
            .dir
            .clone()
            .unwrap_or_else(|| self.storage.data_dir.join("evidence"))
    }

    /// The directory relative paths in the file are taken from.
    pub fn base_dir(&self) -> PathBuf {
        self.source_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    fn resolve_paths(&mut self) {
        let base = self.base_dir();
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.storage.data_dir);
        if let Some(dir) = self.evidence.dir.as_mut() {
            resolve(dir);
        }
        if let Some(dir) = self.detector.model_dir.as_mut() {
            resolve(dir);
        }
        if let Some(lib) = self.detector.runtime_library.as_mut() {
            resolve(lib);
        }
        if let Some(w) = self.web.as_mut() {
            for p in [&mut w.token_file, &mut w.password_file]
                .into_iter()
                .flatten()
            {
                resolve(p);
            }
            for r in &mut w.reviewers {
                for p in [&mut r.token_file, &mut r.password_file]
                    .into_iter()
                    .flatten()
                {
                    resolve(p);
                }
            }
        }
        if let Some(m) = self.mqtt.as_mut() {
            if let Some(p) = m.password_file.as_mut() {
                resolve(p);
            }
            if let Some(tls) = m.tls.as_mut() {
                for p in [
                    &mut tls.ca_file,
                    &mut tls.client_cert_file,
                    &mut tls.client_key_file,
                ]
                .into_iter()
                .flatten()
                {
                    resolve(p);
                }
            }
        }
    }

    /// Checks what types alone cannot. Returns the offending field's path (as TOML keys and
    /// array indices, for locating it in the text) and the message.
    fn validate(&self) -> Result<(), (Vec<String>, String)> {
        fn fail(path: &[&str], message: String) -> Result<(), (Vec<String>, String)> {
            Err((path.iter().map(|s| s.to_string()).collect(), message))
        }
        if !is_identifier(&self.site.id) {
            return fail(
                &["site", "id"],
                format!(
                    "`{}` must be letters, digits, `-` or `_` (it is used in MQTT topics)",
                    self.site.id
                ),
            );
        }
        let d = &self.detector;
        if !d.backend.compiled_in() {
            return fail(
                &["detector", "backend"],
                DetectorBackend::TRACT_NOT_BUILT.into(),
            );
        }
        if d.threads == 0 || d.threads > 64 {
            return fail(
                &["detector", "threads"],
                format!("must be 1..=64, got {}", d.threads),
            );
        }
        if d.workers == 0 || d.workers > 16 {
            return fail(
                &["detector", "workers"],
                format!("must be 1..=16, got {}", d.workers),
            );
        }
        if !(d.confidence > 0.0 && d.confidence < 1.0) {
            return fail(
                &["detector", "confidence"],
                format!("must be in (0, 1), got {}", d.confidence),
            );
        }
        if !(d.nms_iou > 0.0 && d.nms_iou <= 1.0) {
            return fail(
                &["detector", "nms_iou"],
                format!("must be in (0, 1], got {}", d.nms_iou),
            );
        }
        for (i, cam) in self.cameras.iter().enumerate() {
            let index = i.to_string();
            let at = |field: &'static str| ["cameras", index.as_str(), field];
            if !is_identifier(&cam.id) {
                return fail(
                    &at("id"),
                    format!(
                        "`{}` must be letters, digits, `-` or `_` (it is used in topics and file names)",
                        cam.id
                    ),
                );
            }
            if let Some(first) = self.cameras[..i].iter().position(|c| c.id == cam.id) {
                return fail(
                    &at("id"),
                    format!("`{}` is already used by cameras[{first}]", cam.id),
                );
            }
            if cam.url.trim().is_empty() {
                return fail(&at("url"), "is empty".into());
            }
            if !(cam.detect_fps > 0.0 && cam.detect_fps <= 60.0) {
                return fail(
                    &at("detect_fps"),
                    format!("must be in (0, 60], got {}", cam.detect_fps),
                );
            }
            if cam.decode_threads == 0 || cam.decode_threads > 16 {
                return fail(
                    &at("decode_threads"),
                    format!("must be 1..=16, got {}", cam.decode_threads),
                );
            }
            if let Some(name) = &cam.hwaccel
                && !HWACCEL_DEVICES.contains(&name.as_str())
                && !HWACCEL_DECODERS.contains(&name.as_str())
            {
                return fail(
                    &at("hwaccel"),
                    format!(
                        "unknown hardware decoder `{name}`; use one of {}, {}",
                        HWACCEL_DEVICES.join(", "),
                        HWACCEL_DECODERS.join(", ")
                    ),
                );
            }
            if cam.io_timeout < Duration::from_millis(100) {
                return fail(&at("io_timeout"), "must be at least 100ms".into());
            }
            if cam.motion.enabled && !(cam.motion.min_changed > 0.0 && cam.motion.min_changed < 1.0)
            {
                return fail(&at("motion"), "min_changed must be in (0, 1)".into());
            }
            if cam.offline_after < Duration::from_secs(1) {
                return fail(&at("offline_after"), "must be at least 1s".into());
            }
            if let RegionsSetting::List(list) = &cam.regions {
                if list.is_empty() || list.len() > MAX_REGIONS {
                    return fail(
                        &at("regions"),
                        format!("needs 1 to {} rectangles, got {}", MAX_REGIONS, list.len()),
                    );
                }
                if let Some((k, r)) = list.iter().enumerate().find(|(_, [x1, y1, x2, y2])| {
                    !([*x1, *y1, *x2, *y2].iter().all(|v| (0.0..=1.0).contains(v))
                        && x2 - x1 >= 0.01
                        && y2 - y1 >= 0.01)
                }) {
                    return fail(
                        &at("regions"),
                        format!(
                            "region {k} {r:?} is not a rectangle [x1, y1, x2, y2] with 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1 (at least 0.01 wide and high)"
                        ),
                    );
                }
            }
            if let Some(loc) = cam.location
                && (!(-90.0..=90.0).contains(&loc.lat) || !(-180.0..=180.0).contains(&loc.lon))
            {
                return fail(
                    &at("location"),
                    format!("{loc:?} is not a latitude/longitude"),
                );
            }
            for (j, line) in cam.lines.iter().enumerate() {
                let line_index = j.to_string();
                let fail_at = |field: &str, message: String| {
                    let path = ["cameras", index.as_str(), "lines", &line_index, field];
                    Err((path.iter().map(|s| s.to_string()).collect(), message))
                };
                if !is_identifier(&line.id) {
                    return fail_at(
                        "id",
                        format!("`{}` must be letters, digits, `-` or `_`", line.id),
                    );
                }
                if cam.zones.iter().any(|z| z.id == line.id)
                    || cam.lines[..j].iter().any(|l| l.id == line.id)
                {
                    return fail_at(
                        "id",
                        format!("`{}` is already used by a zone or line", line.id),
                    );
                }
                if !(2..=16).contains(&line.points.len()) {
                    return fail_at("points", "needs 2 to 16 points".into());
                }
                if line
                    .points
                    .iter()
                    .any(|p| !p.iter().all(|v| (0.0..=1.0).contains(v)))
                {
                    return fail_at("points", "x and y must be in [0, 1]".into());
                }
                if line.points.windows(2).any(|w| w[0] == w[1]) {
                    return fail_at("points", "two consecutive points are the same".into());
                }
                if !(line.margin > 0.0 && line.margin <= 0.2) {
                    return fail_at("margin", "must be in (0, 0.2]".into());
                }
                if let Err(message) = check_min_object_height(line.min_object_height) {
                    return fail_at("min_object_height", message);
                }
                if let Err(message) = crate::schedule::Schedule::parse(&line.schedule) {
                    return fail_at("schedule", message);
                }
            }
            for (j, zone) in cam.zones.iter().enumerate() {
                let zone_index = j.to_string();
                let at = |field: &'static str| -> Vec<String> {
                    [
                        "cameras",
                        index.as_str(),
                        "zones",
                        zone_index.as_str(),
                        field,
                    ]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .map(|s| s.to_string())
                    .collect()
                };
                let fail_at = |field: &'static str, message: String| Err((at(field), message));
                if !is_identifier(&zone.id) {
                    return fail_at(
                        "id",
                        format!("`{}` must be letters, digits, `-` or `_`", zone.id),
                    );
                }
                if let Some(first) = cam.zones[..j].iter().position(|z| z.id == zone.id) {
                    return fail_at(
                        "id",
                        format!("`{}` is already used by zones[{first}]", zone.id),
                    );
                }
                if zone.polygon.len() < 3 {
                    return fail_at("polygon", "needs at least 3 points".into());
                }
                if zone.polygon.len() > 64 {
                    return fail_at("polygon", "has more than 64 points".into());
                }
                if let Some(p) = zone
                    .polygon
                    .iter()
                    .find(|p| !p.iter().all(|v| (0.0..=1.0).contains(v)))
                {
                    return fail_at(
                        "polygon",
                        format!(
                            "point {p:?} is outside [0, 1]: zones use fractions of the picture"
                        ),
                    );
                }
                if polygon_area(&zone.polygon) < 1e-5 {
                    return fail_at(
                        "polygon",
                        "encloses no area (its points are on one line or repeat one point)".into(),
                    );
                }
                if !(0.0..1.0).contains(&zone.min_area) {
                    return fail_at(
                        "min_area",
                        format!("must be in [0, 1), got {}", zone.min_area),
                    );
                }
                if zone.inertia == 0 {
                    return fail_at("inertia", "must be at least 1".into());
                }
                if zone.area_m2.is_some_and(|a| a.is_nan() || a <= 0.0) {
                    return fail_at("area_m2", "must be positive".into());
                }
                if let Err(message) = check_min_object_height(zone.min_object_height) {
                    return fail_at("min_object_height", message);
                }
                if !(zone.min_overlap > 0.0 && zone.min_overlap <= 1.0) {
                    return fail_at(
                        "min_overlap",
                        "must be in (0, 1]: the fraction of the object's box inside the zone"
                            .into(),
                    );
                }
                let schedules = [
                    (
                        "illegal_parking",
                        zone.illegal_parking.as_ref().map(|r| &r.schedule),
                    ),
                    (
                        "fly_wire_charging",
                        zone.fly_wire_charging.as_ref().map(|r| &r.schedule),
                    ),
                    ("crowding", zone.crowding.as_ref().map(|r| &r.schedule)),
                    ("presence", zone.presence.as_ref().map(|r| &r.schedule)),
                ];
                for (rule, schedule) in schedules {
                    if let Some(entries) = schedule
                        && let Err(message) = crate::schedule::Schedule::parse(entries)
                    {
                        let mut path = at(rule);
                        path.push("schedule".into());
                        return Err((path, message));
                    }
                }
                if let Some(c) = &zone.crowding {
                    if c.min_count == 0 {
                        return fail_at("crowding", "min_count must be at least 1".into());
                    }
                    if c.clear_count
                        .is_some_and(|clear| clear == 0 || clear > c.min_count)
                    {
                        return fail_at(
                            "crowding",
                            format!("clear_count must be in 1..={} (min_count)", c.min_count),
                        );
                    }
                }
            }
        }
        for (j, action) in self.actions.iter().enumerate() {
            let index = j.to_string();
            let fail_at = |field: &str, message: String| {
                let path = ["actions", index.as_str(), field];
                Err((path.iter().map(|s| s.to_string()).collect(), message))
            };
            if !is_identifier(&action.id) {
                return fail_at(
                    "id",
                    format!("`{}` must be letters, digits, `-` or `_`", action.id),
                );
            }
            if self.actions[..j].iter().any(|a| a.id == action.id) {
                return fail_at("id", format!("`{}` is used twice", action.id));
            }
            if !(action.url.starts_with("http://") || action.url.starts_with("https://")) {
                return fail_at("url", "must start with http:// or https://".into());
            }
            let has_key = action.key_file.is_some() || action.key_env.is_some();
            if action.url.contains("{key}") != has_key {
                return fail_at(
                    "url",
                    "put `{key}` in the url exactly when key_file or key_env gives the key (keys never go in the config text)"
                        .into(),
                );
            }
            if let Some(bad) = action
                .on
                .iter()
                .find(|s| !matches!(s.as_str(), "opened" | "updated" | "closed"))
            {
                return fail_at("on", format!("`{bad}` is not opened, updated or closed"));
            }
            if let Some(bad) = action.kinds.iter().find(|k| serde_plain_kind(k).is_none()) {
                return fail_at("kinds", format!("`{bad}` is not an incident kind"));
            }
            if action.max_attempts == 0 || action.timeout.is_zero() {
                return fail_at(
                    "max_attempts",
                    "max_attempts and timeout must be above zero".into(),
                );
            }
            if action.retry_max < Duration::from_secs(1) {
                return fail_at("retry_max", "must be at least 1s".into());
            }
        }
        if self.incidents.update_every < Duration::from_secs(1) {
            return fail(
                &["incidents", "update_every"],
                "must be at least 1s (an open incident would send an update every frame)".into(),
            );
        }
        if let Some(m) = &self.mqtt {
            if m.host.trim().is_empty() {
                return fail(&["mqtt", "host"], "is empty".into());
            }
            if m.port == 0 {
                return fail(
                    &["mqtt", "port"],
                    "must be 1..=65535 (1883 for MQTT, 8883 for MQTT over TLS)".into(),
                );
            }
            if let Some(name) = m.tls.as_ref().and_then(|t| t.server_name.as_ref())
                && rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
            {
                return fail(
                    &["mqtt", "tls", "server_name"],
                    format!("`{name}` is not a DNS name or an IP address"),
                );
            }
            if !is_identifier(&m.box_id) {
                return fail(
                    &["mqtt", "box_id"],
                    format!("`{}` must be letters, digits, `-` or `_`", m.box_id),
                );
            }
            if m.topic_prefix.contains(['#', '+']) || m.topic_prefix.is_empty() {
                return fail(
                    &["mqtt", "topic_prefix"],
                    "must be non-empty, without MQTT wildcards".into(),
                );
            }
            if m.keep_alive < Duration::from_secs(5) {
                return fail(&["mqtt", "keep_alive"], "must be at least 5s".into());
            }
            if m.heartbeat_every < Duration::from_secs(1) {
                return fail(&["mqtt", "heartbeat_every"], "must be at least 1s".into());
            }
            if m.reconnect_min.is_zero() || m.reconnect_min > m.reconnect_max {
                return fail(
                    &["mqtt", "reconnect_min"],
                    "must be positive and at most reconnect_max".into(),
                );
            }
            if m.password_file.is_some() && m.password_env.is_some() {
                return fail(
                    &["mqtt", "password_env"],
                    "give password_file or password_env, not both".into(),
                );
            }
            if let Some(tls) = &m.tls
                && tls.client_cert_file.is_some() != tls.client_key_file.is_some()
            {
                return fail(
                    &["mqtt", "tls"],
                    "client_cert_file and client_key_file go together".into(),
                );
            }
        }
        if let Some(w) = &self.web
            && w.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return fail(
                &["web", "listen"],
                format!("`{}` is not an address like 0.0.0.0:8080", w.listen),
            );
        }
        if let Some(w) = &self.web {
            for (i, r) in w.reviewers.iter().enumerate() {
                let index = i.to_string();
                let at = |field: &'static str| ["web", "reviewers", index.as_str(), field];
                let name = r.name.trim();
                if name.is_empty() || name.chars().count() > 64 {
                    return fail(&at("name"), "must be 1-64 characters".into());
                }
                if w.reviewers[..i].iter().any(|o| o.name.trim() == name) {
                    return fail(&at("name"), format!("`{name}` is used by another reviewer"));
                }
                if r.password_file.is_none() && r.password_env.is_none() && r.token_file.is_none() {
                    return fail(
                        &at("name"),
                        "a reviewer needs password_file, password_env or token_file".into(),
                    );
                }
                if r.password_file.is_some() && r.password_env.is_some() {
                    return fail(
                        &at("password_env"),
                        "give password_file or password_env, not both".into(),
                    );
                }
            }
        }
        let e = &self.evidence;
        if e.quota_percent.is_some_and(|p| !(p > 0.0 && p <= 100.0)) {
            return fail(&["evidence", "quota_percent"], "must be in (0, 100]".into());
        }
        if !(1..=100).contains(&e.jpeg_quality) {
            return fail(&["evidence", "jpeg_quality"], "must be 1..=100".into());
        }
        if e.thumbnail_width < 16 {
            return fail(
                &["evidence", "thumbnail_width"],
                "must be at least 16".into(),
            );
        }
        let t = &self.tracker;
        if !(t.low_score > 0.0 && t.low_score <= t.high_score && t.high_score < 1.0) {
            return fail(
                &["tracker", "low_score"],
                format!(
                    "need 0 < low_score <= high_score < 1, got {} and {}",
                    t.low_score, t.high_score
                ),
            );
        }
        if t.birth_hits == 0 {
            return fail(&["tracker", "birth_hits"], "must be at least 1".into());
        }
        for (name, v) in [
            ("match_iou", t.match_iou),
            ("low_match_iou", t.low_match_iou),
            ("stationary_iou", t.stationary_iou),
        ] {
            if !(v > 0.0 && v < 1.0) {
                return Err((
                    vec!["tracker".into(), name.into()],
                    format!("must be in (0, 1), got {v}"),
                ));
            }
        }
        Ok(())
    }

    pub fn camera(&self, id: &str) -> Option<&CameraConfig> {
        self.cameras.iter().find(|c| c.id == id)
    }
}

/// The incident kind named `name` (its snake_case name in events).
fn serde_plain_kind(name: &str) -> Option<crate::kind::Kind> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `["cameras", "0", "url"]` as `cameras[0].url`, the way serde's errors name fields.
fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if segment.parse::<usize>().is_ok() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

fn dotted_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                out.push('.');
                out.push_str(variant);
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// Formats a TOML syntax or type error as `origin:line:col: message`, on one line.
pub fn toml_error_at(origin: &str, text: &str, err: &toml::de::Error) -> String {
    let position = err
        .span()
        .map(|span| {
            let (l, c) = line_col(text, span.start);
            format!(":{l}:{c}")
        })
        .unwrap_or_default();
    let message = err
        .message()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    format!("{origin}{position}: {message}")
}

/// Byte offset of the value at `path` (table keys and array indices) in the TOML text.
fn span_of_path(text: &str, path: &[String]) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut value = toml::de::DeValue::Table(root.into_inner());
    let mut span = None;
    for segment in path {
        let next = match segment.parse::<usize>() {
            Ok(index) => value.get(index)?,
            Err(_) => value.get(segment.as_str())?,
        };
        span = Some(next.span().start);
        value = next.get_ref().clone();
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[site]
id = "demo"
grid_code = "440305001001"

[[cameras]]
id = "gate"
url = "rtsp://10.0.0.2/stream1"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/gridwatch/config.toml"))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let cfg = parse(MINIMAL).unwrap();
        assert_eq!(cfg.detector.model, "yolox_nano");
        assert_eq!(cfg.detector.confidence, 0.3);
        assert_eq!(cfg.cameras[0].detect_fps, 5.0);
        assert_eq!(cfg.cameras[0].rtsp_transport, RtspTransport::Tcp);
        assert_eq!(cfg.site.timezone.local_minus_utc(), 8 * 3600);
        assert_eq!(cfg.storage.data_dir, PathBuf::from("/var/lib/gridwatch"));
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let text = format!("{MINIMAL}\n[storage]\ndata_dir = \"data\"\n");
        let cfg = parse(&text).unwrap();
        assert_eq!(cfg.storage.data_dir, PathBuf::from("/etc/gridwatch/data"));
    }

    #[test]
    fn unknown_key_names_file_line_column_and_field() {
        let text = MINIMAL.replace("url = ", "detct_fps = 3\nurl = ");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("/etc/gridwatch/config.toml:8:1:"),
            "got: {err}"
        );
        assert!(err.contains("unknown field `detct_fps`"), "got: {err}");
        assert!(err.contains("cameras[0]"), "got: {err}");
    }

    #[test]
    fn actions_are_checked_with_their_place() {
        let action = |body: &str| format!("{MINIMAL}\n[[actions]]\nid = \"relay\"\n{body}");
        let ok = parse(&action("url = \"http://10.0.0.9/hold\"\n")).unwrap();
        assert_eq!(ok.actions[0].on, vec!["opened".to_string()]);
        assert_eq!(ok.actions[0].format, ActionFormat::Json);
        for (body, message) in [
            ("url = \"ftp://10.0.0.9/\"\n", "http:// or https://"),
            (
                "url = \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc\"\nkey_env = \"K\"\n",
                "{key}",
            ),
            (
                "url = \"https://x/send?key={key}\"\n",
                "exactly when key_file or key_env",
            ),
            (
                "url = \"http://x/\"\non = [\"opened\", \"exploded\"]\n",
                "`exploded` is not opened, updated or closed",
            ),
            (
                "url = \"http://x/\"\nkinds = [\"dragons\"]\n",
                "`dragons` is not an incident kind",
            ),
            ("url = \"http://x/\"\nformat = \"telegram\"\n", "wecom"),
        ] {
            let err = parse(&action(body)).unwrap_err().to_string();
            assert!(
                err.contains("actions[0]") && err.contains(message),
                "{body}: {err}"
            );
        }
    }

    #[test]
    fn presence_and_overlap_membership_have_defaults_and_are_checked() {
        let zone = "\n[[cameras.zones]]\nid = \"lift\"\npolygon = [[0, 0], [1, 0], [1, 1]]\n";
        let text = format!("{MINIMAL}{zone}[cameras.zones.presence]\n");
        let cfg = parse(&text).unwrap();
        let z = &cfg.cameras[0].zones[0];
        assert_eq!(z.membership, MembershipMode::BottomCentre);
        let p = z.presence.as_ref().unwrap();
        assert_eq!(p.kind, PresenceKind::Intrusion);
        assert_eq!(p.min_time, Duration::from_secs(1));
        assert_eq!(z.rule_names(), vec!["presence"]);

        let text = format!(
            "{MINIMAL}{zone}membership = \"overlap\"\nmin_overlap = 1.5\n[cameras.zones.presence]\nkind = \"two_wheeler_in_elevator\"\n"
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("min_overlap") && err.contains("(0, 1]"),
            "{err}"
        );
        let text = format!("{MINIMAL}{zone}[cameras.zones.presence]\nkind = \"dragons\"\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("two_wheeler_in_elevator"), "{err}");
        let text = format!("{MINIMAL}{zone}membership = \"middle\"\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("overlap"), "{err}");
    }

    #[test]
    fn regions_are_auto_by_default_and_checked_with_their_place() {
        assert_eq!(
            parse(MINIMAL).unwrap().cameras[0].regions,
            RegionsSetting::Auto
        );
        let with = |value: &str| MINIMAL.replace("url = ", &format!("regions = {value}\nurl = "));
        assert_eq!(
            parse(&with("\"full\"")).unwrap().cameras[0].regions,
            RegionsSetting::Full
        );
        assert_eq!(
            parse(&with("[[0.0, 0.5, 0.5, 1.0]]")).unwrap().cameras[0].regions,
            RegionsSetting::List(vec![[0.0, 0.5, 0.5, 1.0]])
        );
        let err = parse(&with("\"tiles\"")).unwrap_err().to_string();
        assert!(
            err.contains(":8:") && err.contains("cameras[0].regions"),
            "got: {err}"
        );
        assert!(err.contains("auto") && err.contains("full"), "got: {err}");
        let err = parse(&with("[[0.5, 0.5, 0.2, 1.0]]"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":8:") && err.contains("region 0"),
            "got: {err}"
        );
        let err = parse(&with("[]")).unwrap_err().to_string();
        assert!(err.contains("needs 1 to 16 rectangles"), "got: {err}");
    }

    #[test]
    fn hardware_decoder_names_are_checked_and_listed() {
        let text = MINIMAL.replace("url = ", "hwaccel = \"vaapi2\"\nurl = ");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains(":8:"), "got: {err}");
        assert!(err.contains("cameras[0].hwaccel"), "got: {err}");
        assert!(
            err.contains("unknown hardware decoder `vaapi2`") && err.contains("rkmpp"),
            "got: {err}"
        );
        let text = MINIMAL.replace("url = ", "hwaccel = \"rkmpp\"\nurl = ");
        assert_eq!(
            parse(&text).unwrap().cameras[0].hwaccel.as_deref(),
            Some("rkmpp")
        );
    }

    #[test]
    fn detector_backend_is_checked_against_the_build() {
        let with = |backend: &str| format!("{MINIMAL}\n[detector]\nbackend = \"{backend}\"\n");
        assert_eq!(
            parse(&with("ort")).unwrap().detector.backend,
            DetectorBackend::Ort
        );
        let err = parse(&with("onnx")).unwrap_err().to_string();
        assert!(err.contains(":11:11:"), "got: {err}");
        assert!(err.contains("expected `ort` or `tract`"), "got: {err}");
        let tract = parse(&with("tract"));
        if cfg!(feature = "tract") {
            assert_eq!(tract.unwrap().detector.backend, DetectorBackend::Tract);
        } else {
            let err = tract.unwrap_err().to_string();
            assert!(err.contains("detector.backend"), "got: {err}");
            assert!(err.contains("--features tract"), "got: {err}");
        }
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let text = MINIMAL.replace("url = ", "detect_fps = \"fast\"\nurl = ");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains(":8:14:"), "got: {err}");
        assert!(err.contains("cameras[0].detect_fps"), "got: {err}");
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("[site\nid = 1").unwrap_err().to_string();
        assert!(
            err.starts_with("/etc/gridwatch/config.toml:1:"),
            "got: {err}"
        );
        assert!(!err.contains('\n'));
    }

    #[test]
    fn missing_required_field_is_named() {
        let err = parse("[site]\nid = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("missing field `grid_code`"), "got: {err}");
    }

    #[test]
    fn validation_error_points_at_the_field() {
        let text = MINIMAL.replace("url = ", "detect_fps = 0.0\nurl = ");
        let err = parse(&text).unwrap_err().to_string();
        assert_eq!(
            err,
            "/etc/gridwatch/config.toml:8:14: cameras[0].detect_fps: must be in (0, 60], got 0"
        );
    }

    #[test]
    fn duplicate_camera_ids_are_rejected() {
        let text = format!("{MINIMAL}\n[[cameras]]\nid = \"gate\"\nurl = \"x.mp4\"\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("already used by cameras[0]"), "got: {err}");
        assert!(err.contains(":11:6:"), "got: {err}");
    }

    const ZONE: &str = r#"
[[cameras.zones]]
id = "lane"
polygon = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0]]
[cameras.zones.illegal_parking]
dwell = "3m"
"#;

    #[test]
    fn zones_and_rules_parse_with_defaults() {
        let cfg = parse(&format!("{MINIMAL}{ZONE}")).unwrap();
        let zone = &cfg.cameras[0].zones[0];
        assert_eq!(zone.inertia, 2);
        let rule = zone.illegal_parking.as_ref().unwrap();
        assert_eq!(rule.dwell, Duration::from_secs(180));
        assert_eq!(rule.grace, Duration::from_secs(30));
        assert!(zone.crowding.is_none());
        assert_eq!(cfg.cameras[0].offline_after, Duration::from_secs(60));
    }

    #[test]
    fn zone_polygon_outside_the_picture_is_rejected() {
        let text = format!("{MINIMAL}{ZONE}").replace("[1.0, 1.0]]", "[1.0, 1.5]]");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("cameras[0].zones[0].polygon"), "{err}");
        assert!(err.contains("outside [0, 1]"), "{err}");
        assert!(err.contains(":11:"), "points at the polygon line: {err}");
    }

    /// The error for `text`, which must name `field` and point at `line` of the file.
    fn error_of(text: &str, field: &str, line: usize, what: &str) {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(field), "names {field}: {err}");
        assert!(
            err.starts_with(&format!("/etc/gridwatch/config.toml:{line}:")),
            "points at line {line}: {err}"
        );
        assert!(err.contains(what), "says {what:?}: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn reviewer_accounts_need_a_unique_name_and_a_credential() {
        let web = "\n[web]\ntoken_file = \"web.token\"\n";
        let ok =
            format!("{MINIMAL}{web}[[web.reviewers]]\nname = \"王芳\"\npassword_env = \"P1\"\n");
        let config = parse(&ok).unwrap();
        assert_eq!(config.web.unwrap().reviewers[0].name, "王芳");
        // Lines: [web] is 10, the reviewer's table 12 and its name 13.
        error_of(
            &format!("{MINIMAL}{web}[[web.reviewers]]\nname = \"王芳\"\n"),
            "web.reviewers[0].name",
            13,
            "needs password_file, password_env or token_file",
        );
        error_of(
            &format!("{ok}[[web.reviewers]]\nname = \"王芳\"\ntoken_file = \"t\"\n"),
            "web.reviewers[1].name",
            16,
            "used by another reviewer",
        );
    }

    #[test]
    fn values_found_by_probing_are_rejected_with_their_position() {
        // update_every = "0s" made an open incident send an update on every frame.
        error_of(
            &format!("{MINIMAL}\n[incidents]\nupdate_every = \"0s\"\n"),
            "incidents.update_every",
            11,
            "at least 1s",
        );
        // A point with three coordinates was cut to two without a word.
        error_of(
            &format!("{MINIMAL}{ZONE}").replace("[1.0, 0.5], [1.0", "[1.0, 0.5, 0.2], [1.0"),
            "cameras[0].zones[0].polygon",
            12,
            "point 1 has 3 coordinate(s)",
        );
        // Three points on one line enclose nothing: no object is ever inside.
        error_of(
            &format!("{MINIMAL}{ZONE}").replace(
                "[[0.0, 0.5], [1.0, 0.5], [1.0, 1.0]]",
                "[[0.0, 0.5], [0.5, 0.5], [1.0, 0.5]]",
            ),
            "cameras[0].zones[0].polygon",
            12,
            "encloses no area",
        );
        error_of(
            &format!("{MINIMAL}{ZONE}").replace(
                "[[0.0, 0.5], [1.0, 0.5], [1.0, 1.0]]",
                "[[0.2, 0.2], [0.2, 0.2], [0.2, 0.2]]",
            ),
            "cameras[0].zones[0].polygon",
            12,
            "encloses no area",
        );
        error_of(
            &format!("{MINIMAL}\n[mqtt]\nhost = \"127.0.0.1\"\nport = 0\n"),
            "mqtt.port",
            12,
            "1..=65535",
        );
        error_of(
            &format!(
                "{MINIMAL}\n[mqtt]\nhost = \"127.0.0.1\"\n[mqtt.tls]\nserver_name = \"not a name\"\n"
            ),
            "mqtt.tls.server_name",
            13,
            "not a DNS name",
        );
    }

    #[test]
    fn a_line_s_object_height_is_checked_as_a_zone_s() {
        let line = "\n[[cameras.lines]]\nid = \"door\"\npoints = [[0.5, 0.0], [0.5, 1.0]]\n";
        let config = parse(&format!("{MINIMAL}{line}min_object_height = 0.3\n")).unwrap();
        assert_eq!(config.cameras[0].lines[0].min_object_height, Some(0.3));
        assert_eq!(
            parse(&format!("{MINIMAL}{line}")).unwrap().cameras[0].lines[0].min_object_height,
            None
        );
        error_of(
            &format!("{MINIMAL}{line}min_object_height = 0.0\n"),
            "cameras[0].lines[0].min_object_height",
            13,
            "must be in (0.001, 1]",
        );
    }

    #[test]
    fn a_missing_tls_file_is_an_error_at_its_line() {
        let text = format!(
            "{MINIMAL}\n[mqtt]\nhost = \"127.0.0.1\"\n[mqtt.tls]\nca_file = \"/nonexistent/ca.pem\"\n"
        );
        error_of(
            &text,
            "mqtt.tls.ca_file",
            13,
            "cannot read /nonexistent/ca.pem",
        );
    }

    #[test]
    fn a_file_that_is_not_utf8_is_an_error_at_the_bad_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let mut bytes = MINIMAL.as_bytes().to_vec();
        bytes.extend_from_slice(b"name = \"caf\xe9\"\n");
        std::fs::write(&path, &bytes).unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}:9:12:", path.display())),
            "{err}"
        );
        assert!(err.contains("not UTF-8 (byte 0xe9)"), "{err}");
    }

    #[test]
    fn bad_schedule_names_the_rule() {
        let text = format!("{MINIMAL}{ZONE}schedule = [\"nightly\"]\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("cameras[0].zones[0].illegal_parking.schedule"),
            "{err}"
        );
        assert!(err.contains("not a window"), "{err}");
    }

    #[test]
    fn duplicate_zone_ids_and_bad_tracker_thresholds() {
        let text = format!("{MINIMAL}{ZONE}{ZONE}");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("already used by zones[0]"), "{err}");
        let text = format!("{MINIMAL}\n[tracker]\nlow_score = 0.6\nhigh_score = 0.5\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("tracker.low_score"), "{err}");
    }

    #[test]
    fn offsets_parse() {
        assert_eq!(parse_offset("+08:00").unwrap().local_minus_utc(), 28800);
        assert_eq!(parse_offset("-0330").unwrap().local_minus_utc(), -12600);
        assert_eq!(parse_offset("Z").unwrap().local_minus_utc(), 0);
        assert!(parse_offset("Asia/Shanghai").is_none());
        assert!(parse_offset("+25:00").is_none());
    }

    #[test]
    fn bad_timezone_is_explained() {
        let text = MINIMAL.replace("grid_code", "timezone = \"CST\"\ngrid_code");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("site.timezone"), "got: {err}");
        assert!(err.contains("not a UTC offset"), "got: {err}");
    }

    #[test]
    fn line_col_counts_characters() {
        let text = "a = \"网格\"\nb = 1";
        assert_eq!(line_col(text, 0), (1, 1));
        let b = text.find('b').unwrap();
        assert_eq!(line_col(text, b), (2, 1));
        let one = text.find('1').unwrap();
        assert_eq!(line_col(text, one), (2, 5));
    }
}
