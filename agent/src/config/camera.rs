//! `[[cameras]]`: a camera's streams, decoding, regions and motion gate.

use super::*;

#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
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

fn default_detect_fps() -> f64 {
    5.0
}

fn default_decode_threads() -> usize {
    1
}

fn default_io_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_offline_after() -> Duration {
    Duration::from_secs(60)
}

impl CameraConfig {
    /// The camera's own fields, then its counting lines and zones.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if !is_identifier(&self.id) {
            return fail(
                &["id"],
                format!(
                    "`{}` must be letters, digits, `-` or `_` (it is used in topics and file names)",
                    self.id
                ),
            );
        }
        if self.url.trim().is_empty() {
            return fail(&["url"], "is empty");
        }
        if !(self.detect_fps > 0.0 && self.detect_fps <= 60.0) {
            return fail(
                &["detect_fps"],
                format!("must be in (0, 60], got {}", self.detect_fps),
            );
        }
        if self.decode_threads == 0 || self.decode_threads > 16 {
            return fail(
                &["decode_threads"],
                format!("must be 1..=16, got {}", self.decode_threads),
            );
        }
        if let Some(name) = &self.hwaccel
            && !HWACCEL_DEVICES.contains(&name.as_str())
            && !HWACCEL_DECODERS.contains(&name.as_str())
        {
            return fail(
                &["hwaccel"],
                format!(
                    "unknown hardware decoder `{name}`; use one of {}, {}",
                    HWACCEL_DEVICES.join(", "),
                    HWACCEL_DECODERS.join(", ")
                ),
            );
        }
        if self.io_timeout < Duration::from_millis(100) {
            return fail(&["io_timeout"], "must be at least 100ms");
        }
        if self.motion.enabled && !(self.motion.min_changed > 0.0 && self.motion.min_changed < 1.0)
        {
            return fail(&["motion"], "min_changed must be in (0, 1)");
        }
        if self.offline_after < Duration::from_secs(1) {
            return fail(&["offline_after"], "must be at least 1s");
        }
        if let RegionsSetting::List(list) = &self.regions {
            if list.is_empty() || list.len() > MAX_REGIONS {
                return fail(
                    &["regions"],
                    format!("needs 1 to {} rectangles, got {}", MAX_REGIONS, list.len()),
                );
            }
            if let Some((k, r)) = list.iter().enumerate().find(|(_, [x1, y1, x2, y2])| {
                !([*x1, *y1, *x2, *y2].iter().all(|v| (0.0..=1.0).contains(v))
                    && x2 - x1 >= 0.01
                    && y2 - y1 >= 0.01)
            }) {
                return fail(
                    &["regions"],
                    format!(
                        "region {k} {r:?} is not a rectangle [x1, y1, x2, y2] with 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1 (at least 0.01 wide and high)"
                    ),
                );
            }
        }
        if let Some(loc) = self.location
            && (!(-90.0..=90.0).contains(&loc.lat) || !(-180.0..=180.0).contains(&loc.lon))
        {
            return fail(
                &["location"],
                format!("{loc:?} is not a latitude/longitude"),
            );
        }
        for (j, line) in self.lines.iter().enumerate() {
            let index = j.to_string();
            line.validate(&self.lines[..j], &self.zones)
                .map_err(under(&["lines", &index]))?;
        }
        for (j, zone) in self.zones.iter().enumerate() {
            let index = j.to_string();
            if let Some(first) = self.zones[..j].iter().position(|z| z.id == zone.id) {
                return fail(
                    &["zones", &index, "id"],
                    format!("`{}` is already used by zones[{first}]", zone.id),
                );
            }
            zone.validate().map_err(under(&["zones", &index]))?;
        }
        Ok(())
    }
}
