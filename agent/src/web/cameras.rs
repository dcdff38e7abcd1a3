//! The cameras view's API: each camera's state, streams, decoder, frame rates, detection
//! regions and zones (`GET /api/cameras`, `GET /api/cameras/{id}`), and its latest picture
//! (`GET /api/cameras/{id}/latest.jpg`, `?layout=1` draws the zones and regions on it).
//! Everything comes from the running cameras' live view (`crate::live`) and counters; a
//! picture is converted only when asked for (see `live`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

use super::{WebState, error};
use crate::live::{Connection, LiveStatus, StreamDesc};
use crate::metrics::CameraMetrics;

/// How long a request for a picture waits for the camera's next sampled frame.
const PICTURE_WAIT: Duration = Duration::from_secs(3);
/// JPEG quality of the latest picture.
const PICTURE_QUALITY: u8 = 80;

/// Frame rates measured between two looks at a camera's counters (at least a second apart,
/// so a page polling fast still sees rates over a second or more).
#[derive(Default)]
pub(super) struct RateMeter {
    last: Mutex<HashMap<String, RateSample>>,
}

#[derive(Clone, Copy)]
struct RateSample {
    at: Instant,
    counts: [u64; 3],
    rates: [f64; 3],
}

impl RateMeter {
    /// Frames in, detected and dropped per second for the camera.
    fn rates(&self, id: &str, m: &CameraMetrics) -> [f64; 3] {
        let counts = [
            m.frames_in.load(Ordering::Relaxed),
            m.frames_inferred.load(Ordering::Relaxed),
            m.frames_dropped.load(Ordering::Relaxed),
        ];
        let now = Instant::now();
        let Ok(mut last) = self.last.lock() else {
            return [0.0; 3];
        };
        let sample = last.entry(id.to_string()).or_insert(RateSample {
            at: now,
            counts,
            rates: [0.0; 3],
        });
        let elapsed = now.duration_since(sample.at).as_secs_f64();
        if elapsed >= 1.0 {
            for (i, rate) in sample.rates.iter_mut().enumerate() {
                *rate = counts[i].saturating_sub(sample.counts[i]) as f64 / elapsed;
            }
            sample.at = now;
            sample.counts = counts;
        }
        sample.rates
    }
}

#[derive(Serialize)]
struct CameraView {
    id: String,
    name: String,
    enabled: bool,
    #[serde(flatten)]
    status: LiveStatus,
    /// RFC 3339 forms of the status's times.
    since: Option<String>,
    /// The detection stream's decoder, and whether it is a hardware one.
    decoder: Option<String>,
    hardware_decoding: Option<bool>,
    /// Why that decoder: the hwaccel in use, or why decoding is in software.
    decoder_why: Option<String>,
    last_frame_at: Option<String>,
    fps_in: f64,
    fps_detected: f64,
    fps_dropped: f64,
    frames_in: u64,
    frames_detected: u64,
    frames_dropped: u64,
    decode_errors: u64,
    detect_fps: f64,
    regions: Vec<RegionView>,
    zones: Vec<ZoneView>,
    /// The zones as the config file has them (every key, durations as written): what the
    /// zone editor edits and sends back. Absent when the daemon cannot edit its config.
    #[serde(skip_serializing_if = "Option::is_none")]
    zones_config: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct RegionView {
    id: String,
    stream: &'static str,
    width: u32,
    height: u32,
    rect: [f32; 4],
    inferences: u64,
}

#[derive(Serialize)]
struct ZoneView {
    id: String,
    name: String,
    polygon: Vec<[f32; 2]>,
    objects: Vec<String>,
    min_object_height: Option<f32>,
    rules: Vec<&'static str>,
}

/// Whether a decoder description names a hardware decoder ("hevc + vaapi", "h264_rkmpp"),
/// not a software one ("h264 (software)").
fn is_hardware(decoder: &str) -> bool {
    !decoder.contains("(software)")
}

fn view(state: &WebState, id: &str, m: &CameraMetrics) -> Option<CameraView> {
    let config = m.live.config()?;
    let status = m.live.status()?;
    let time = |us: i64| crate::time::format_time(us, state.offset);
    let since = match &status.connection {
        Connection::Connecting => None,
        Connection::Online { since_us } | Connection::Offline { since_us, .. } => {
            Some(time(*since_us))
        }
    };
    let detection: Option<&StreamDesc> = match status.detection_stream {
        Some("sub") => status.sub.as_ref(),
        Some(_) => status.main.as_ref(),
        None => None,
    };
    let decoder = detection.map(|d| d.decoder.clone());
    let decoder_why = detection.map(|d| d.decoder_why.clone());
    let [fps_in, fps_detected, fps_dropped] = state.camera_rates.rates(id, m);
    let round = |v: f64| (v * 10.0).round() / 10.0;
    let regions = m
        .regions
        .lock()
        .map(|regions| {
            regions
                .iter()
                .zip(&m.region_inferences)
                .map(|(r, count)| RegionView {
                    id: r.id.clone(),
                    stream: r.stream,
                    width: r.width,
                    height: r.height,
                    rect: r.rect,
                    inferences: count.load(Ordering::Relaxed),
                })
                .collect()
        })
        .unwrap_or_default();
    let zones = config
        .zones
        .iter()
        .map(|z| ZoneView {
            id: z.id.clone(),
            name: z.name.clone(),
            polygon: z.polygon.clone(),
            objects: z.objects.clone(),
            min_object_height: z.min_object_height,
            rules: z.rule_names(),
        })
        .collect();
    Some(CameraView {
        id: id.to_string(),
        name: config.name.clone(),
        enabled: config.enabled,
        hardware_decoding: decoder.as_deref().map(is_hardware),
        decoder,
        decoder_why,
        since,
        last_frame_at: m.live.last_frame_us().map(time),
        status,
        fps_in: round(fps_in),
        fps_detected: round(fps_detected),
        fps_dropped: round(fps_dropped),
        frames_in: m.frames_in.load(Ordering::Relaxed),
        frames_detected: m.frames_inferred.load(Ordering::Relaxed),
        frames_dropped: m.frames_dropped.load(Ordering::Relaxed),
        decode_errors: m.decode_errors.load(Ordering::Relaxed),
        detect_fps: config.detect_fps,
        regions,
        zones,
        zones_config: state
            .editing
            .as_ref()
            .and_then(|e| e.file.zones_as_written(id)),
    })
}

pub(super) async fn list_cameras(State(state): State<Arc<WebState>>) -> Response {
    let cameras: Vec<CameraView> = state
        .metrics
        .cameras()
        .iter()
        .filter_map(|(id, m)| view(&state, id, m))
        .collect();
    // The label groups a zone's `objects` may name (the editor's choices).
    let object_groups: Vec<&String> = state
        .editing
        .as_ref()
        .map(|e| e.model.label_groups.keys().collect())
        .unwrap_or_default();
    Json(serde_json::json!({ "cameras": cameras, "object_groups": object_groups })).into_response()
}

/// Camera ids are letters, digits, `-` and `_` (config validation); anything else is not
/// looked up at all.
fn valid_camera_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The running camera's counters and live view, or the status and message to answer.
fn camera_metrics(state: &WebState, id: &str) -> Result<Arc<CameraMetrics>, (StatusCode, String)> {
    if !valid_camera_id(id) {
        return Err((StatusCode::BAD_REQUEST, "not a camera id".into()));
    }
    state
        .metrics
        .camera(id)
        .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no running camera {id}")))
}

pub(super) async fn get_camera(
    State(state): State<Arc<WebState>>,
    Path(id): Path<String>,
) -> Response {
    let m = match camera_metrics(&state, &id) {
        Ok(m) => m,
        Err((status, message)) => return error(status, message),
    };
    match view(&state, &id, &m) {
        Some(camera) => Json(camera).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("camera {id} has not started"),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PictureQuery {
    /// Draw the zones, detection regions and current tracks on the picture.
    #[serde(default)]
    layout: bool,
    /// Draw only the current tracks (the console draws zones and regions itself).
    #[serde(default)]
    tracks: bool,
    /// Ignored: a page's cache-buster (`?t=<time>`), so each refresh loads a new picture.
    #[serde(default, rename = "t")]
    _refresh: Option<String>,
}

pub(super) async fn latest_picture(
    State(state): State<Arc<WebState>>,
    Path(id): Path<String>,
    Query(query): Query<PictureQuery>,
) -> Response {
    let m = match camera_metrics(&state, &id) {
        Ok(m) => m,
        Err((status, message)) => return error(status, message),
    };
    let status = m.live.status();
    let time = |us: i64| crate::time::format_time(us, state.offset);
    // An offline camera's last picture is stale: say so rather than show it as current.
    if let Some(Connection::Offline {
        since_us,
        error: why,
    }) = status.as_ref().map(|s| s.connection.clone())
    {
        return camera_unavailable(
            format!("camera {id} is offline since {}: {why}", time(since_us)),
            "offline",
            m.live.last_frame_us().map(time),
        );
    }
    let (layout, tracks) = (query.layout, query.tracks);
    let encoded = tokio::task::spawn_blocking(move || {
        let picture = m.live.latest_picture(PICTURE_WAIT)?;
        let mut image = (*picture.image).clone();
        if layout {
            draw_layout(&mut image, &m);
        } else if tracks {
            crate::annotate::draw_tracks(&mut image, &m.live.tracks());
        }
        let mut jpeg = Vec::new();
        let encoder =
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, PICTURE_QUALITY);
        image.write_with_encoder(encoder).ok()?;
        Some((jpeg, picture.at_us))
    })
    .await
    .ok()
    .flatten();
    match encoded {
        Some((jpeg, at_us)) => (
            [
                (header::CONTENT_TYPE, "image/jpeg".to_string()),
                (header::CACHE_CONTROL, "no-store".to_string()),
                (header::HeaderName::from_static("x-frame-at"), time(at_us)),
            ],
            jpeg,
        )
            .into_response(),
        None => camera_unavailable(
            format!(
                "camera {id} has no picture yet: {}",
                match status.map(|s| s.connection) {
                    Some(Connection::Online { .. }) => "no frame arrived in time",
                    _ => "connecting to it",
                }
            ),
            "no_picture",
            m_last_frame(&state, &id).map(time),
        ),
    }
}

fn m_last_frame(state: &WebState, id: &str) -> Option<i64> {
    state.metrics.camera(id)?.live.last_frame_us()
}

/// 503 with a JSON body saying why, and when to try again: never a broken image.
fn camera_unavailable(message: String, state: &str, last_frame_at: Option<String>) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "2")],
        Json(serde_json::json!({
            "error": message,
            "state": state,
            "last_frame_at": last_frame_at,
        })),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ZonesBody {
    zones: Vec<serde_json::Value>,
}

/// `PUT /api/cameras/{id}/zones`: the camera's zones, all of them, as the editor has them.
/// Validated as `gridwatch check` does, written into the config file (comments and
/// everything else kept, the previous file as `.bak`), then applied by the reload path.
/// A refused save changes nothing.
pub(super) async fn put_zones(
    State(state): State<Arc<WebState>>,
    Path(id): Path<String>,
    body: Result<Json<ZonesBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    use crate::config_file::EditError;
    if !valid_camera_id(&id) {
        return error(StatusCode::BAD_REQUEST, "not a camera id");
    }
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"zones\": [...]}}: {}", rejection.body_text()),
            );
        }
    };
    let Some(editing) = &state.editing else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "zones can be edited only on the running daemon",
        );
    };
    let (file, model) = (Arc::clone(&editing.file), Arc::clone(&editing.model));
    let camera = id.clone();
    let saved =
        tokio::task::spawn_blocking(move || file.replace_zones(&camera, &body.zones, &model)).await;
    match saved {
        Ok(Ok(config)) => {
            editing.reload.store(true, Ordering::Relaxed);
            let zones: Vec<&str> = config
                .camera(&id)
                .map(|c| c.zones.iter().map(|z| z.id.as_str()).collect())
                .unwrap_or_default();
            tracing::info!(camera = %id, zones = ?zones, "zones saved from the console; reloading");
            Json(serde_json::json!({ "ok": true, "camera": id, "zones": zones, "applying": true }))
                .into_response()
        }
        Ok(Err(EditError::UnknownCamera(c))) => error(
            StatusCode::NOT_FOUND,
            format!("no camera {c} in the config file"),
        ),
        Ok(Err(e @ EditError::BadInput(_))) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Err(e @ EditError::Invalid(_))) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        Ok(Err(e @ EditError::Io(_))) => {
            tracing::error!(camera = %id, "saving zones failed: {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn draw_layout(image: &mut image::RgbImage, m: &CameraMetrics) {
    let zones: Vec<(String, Vec<(f32, f32)>)> = m
        .live
        .config()
        .map(|c| crate::zones::camera_polygons(&c))
        .unwrap_or_default();
    let regions: Vec<(String, [f32; 4])> = m
        .regions
        .lock()
        .map(|r| r.iter().map(|r| (r.id.clone(), r.rect)).collect())
        .unwrap_or_default();
    crate::annotate::draw_layout(image, &zones, &regions);
    crate::annotate::draw_tracks(image, &m.live.tracks());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_decoders_are_told_from_software_ones() {
        assert!(!is_hardware("h264 (software)"));
        assert!(is_hardware("hevc + vaapi"));
        assert!(is_hardware("h264_rkmpp"));
    }

    #[test]
    fn only_config_shaped_camera_ids_are_looked_up() {
        assert!(valid_camera_id("cam-01_a"));
        for bad in ["", "../etc", "a b", "摄像头", &"x".repeat(65)] {
            assert!(!valid_camera_id(bad), "{bad}");
        }
    }
}
