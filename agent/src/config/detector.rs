//! `[detector]` and `[tracker]`: the model and the tracker.

use super::*;

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

impl DetectorConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if !self.backend.compiled_in() {
            return fail(&["backend"], DetectorBackend::TRACT_NOT_BUILT);
        }
        if self.threads == 0 || self.threads > 64 {
            return fail(
                &["threads"],
                format!("must be 1..=64, got {}", self.threads),
            );
        }
        if self.workers == 0 || self.workers > 16 {
            return fail(
                &["workers"],
                format!("must be 1..=16, got {}", self.workers),
            );
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return fail(
                &["confidence"],
                format!("must be in (0, 1), got {}", self.confidence),
            );
        }
        if !(self.nms_iou > 0.0 && self.nms_iou <= 1.0) {
            return fail(
                &["nms_iou"],
                format!("must be in (0, 1], got {}", self.nms_iou),
            );
        }
        Ok(())
    }
}

impl TrackerConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if !(self.low_score > 0.0 && self.low_score <= self.high_score && self.high_score < 1.0) {
            return fail(
                &["low_score"],
                format!(
                    "need 0 < low_score <= high_score < 1, got {} and {}",
                    self.low_score, self.high_score
                ),
            );
        }
        if self.birth_hits == 0 {
            return fail(&["birth_hits"], "must be at least 1");
        }
        for (name, v) in [
            ("match_iou", self.match_iou),
            ("low_match_iou", self.low_match_iou),
            ("stationary_iou", self.stationary_iou),
        ] {
            if !(v > 0.0 && v < 1.0) {
                return fail(&[name], format!("must be in (0, 1), got {v}"));
            }
        }
        Ok(())
    }
}
