//! Live view of each camera for the installer: whether it is up, what its streams are, and
//! its latest picture. The camera's decode thread writes it; the web stage (cameras view,
//! `latest.jpg`) reads it.
//!
//! The picture is converted only when someone asked for it: the reader raises a flag, the
//! decode thread sees it on its next sampled frame (one atomic load per frame otherwise),
//! converts that frame to RGB once and hands it over. A camera nobody looks at costs
//! nothing more, and a reader asking again within [`PICTURE_MAX_AGE`] gets the same picture,
//! so many viewers cannot make the box convert more than a few pictures per second.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use image::RgbImage;
use serde::Serialize;

/// A picture younger than this is served again instead of converting a new one.
pub const PICTURE_MAX_AGE: Duration = Duration::from_millis(500);

/// One open stream of a camera, as the decoder reported it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamDesc {
    pub codec: String,
    /// "h264 (software)", "hevc + vaapi", ...
    pub decoder: String,
    /// Why that decoder (the hwaccel in use, or why software).
    pub decoder_why: String,
    pub width: u32,
    pub height: u32,
}

/// Whether frames arrive.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Connection {
    /// Not opened yet since the daemon (or the camera) started.
    Connecting,
    Online {
        since_us: i64,
    },
    /// The last open failed or the stream ended; reconnecting with backoff.
    Offline {
        since_us: i64,
        error: String,
    },
}

/// What the cameras view shows of a camera's connection and streams.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveStatus {
    #[serde(flatten)]
    pub connection: Connection,
    /// The stream detection reads ("main" or "sub") and what it is.
    pub detection_stream: Option<&'static str>,
    pub main: Option<StreamDesc>,
    pub sub: Option<StreamDesc>,
}

/// The latest picture of a camera, shared cheaply (the web stage encodes it outside any lock).
#[derive(Debug, Clone)]
pub struct Picture {
    pub image: Arc<RgbImage>,
    /// Wall-clock time of the frame, Unix microseconds.
    pub at_us: i64,
    taken: Instant,
}

/// A confirmed track as the layout draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackBox {
    pub id: u64,
    pub label: Arc<str>,
    /// Normalised box.
    pub bbox: crate::frame::BBox,
    pub stationary: bool,
}

/// The live view of one camera.
#[derive(Debug)]
pub struct CameraLive {
    /// The camera's confirmed tracks after its latest detected frame.
    tracks: Mutex<Vec<TrackBox>>,
    /// The camera's settings as running (zones, regions), set when it starts.
    config: Mutex<Option<Arc<crate::config::CameraConfig>>>,
    status: Mutex<LiveStatus>,
    last_frame_us: AtomicI64,
    picture_wanted: AtomicBool,
    picture: Mutex<Option<Picture>>,
    fresh_picture: Condvar,
}

impl Default for CameraLive {
    fn default() -> CameraLive {
        CameraLive {
            tracks: Mutex::new(Vec::new()),
            config: Mutex::new(None),
            status: Mutex::new(LiveStatus {
                connection: Connection::Connecting,
                detection_stream: None,
                main: None,
                sub: None,
            }),
            last_frame_us: AtomicI64::new(0),
            picture_wanted: AtomicBool::new(false),
            picture: Mutex::new(None),
            fresh_picture: Condvar::new(),
        }
    }
}

impl CameraLive {
    /// The camera (re)started with these settings.
    pub fn set_config(&self, camera: &crate::config::CameraConfig) {
        if let Ok(mut config) = self.config.lock() {
            *config = Some(Arc::new(camera.clone()));
        }
    }

    pub fn config(&self) -> Option<Arc<crate::config::CameraConfig>> {
        self.config.lock().ok().and_then(|c| c.clone())
    }
    /// A stream of the camera opened: `stream` is "main" or "sub"; `detection` says whether
    /// detection reads it.
    pub fn opened(&self, stream: &'static str, detection: bool, desc: StreamDesc, now_us: i64) {
        let Ok(mut status) = self.status.lock() else {
            return;
        };
        match stream {
            "sub" => status.sub = Some(desc),
            _ => status.main = Some(desc),
        }
        if detection {
            status.detection_stream = Some(stream);
            if !matches!(status.connection, Connection::Online { .. }) {
                status.connection = Connection::Online { since_us: now_us };
            }
        }
    }

    /// Detection's stream failed to open or ended; the camera is offline from the first
    /// failure on, with the latest error.
    pub fn failed(&self, error: &str, now_us: i64) {
        let Ok(mut status) = self.status.lock() else {
            return;
        };
        let since_us = match &status.connection {
            Connection::Offline { since_us, .. } => *since_us,
            _ => now_us,
        };
        status.connection = Connection::Offline {
            since_us,
            error: error.to_string(),
        };
    }

    pub fn status(&self) -> Option<LiveStatus> {
        self.status.lock().ok().map(|s| s.clone())
    }

    /// The tracks after a detected frame (the inference thread). Reuses its buffer: no
    /// allocation per frame once it has held the most tracks.
    pub fn set_tracks(&self, tracks: &[crate::track::Track]) {
        if let Ok(mut held) = self.tracks.lock() {
            held.clear();
            held.extend(
                tracks
                    .iter()
                    .filter(|t| t.confirmed && t.seen_now)
                    .map(|t| TrackBox {
                        id: t.id,
                        label: Arc::clone(&t.label),
                        bbox: t.bbox,
                        stationary: t.stationary_since_us.is_some(),
                    }),
            );
        }
    }

    pub fn tracks(&self) -> Vec<TrackBox> {
        self.tracks.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// A frame was decoded at `at_us` (wall clock).
    pub fn frame_at(&self, at_us: i64) {
        self.last_frame_us.store(at_us, Ordering::Relaxed);
    }

    /// Wall-clock time of the latest decoded frame, if any.
    pub fn last_frame_us(&self) -> Option<i64> {
        Some(self.last_frame_us.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    /// Whether a reader waits for a picture: the decode thread then converts its frame.
    pub fn picture_wanted(&self) -> bool {
        self.picture_wanted.load(Ordering::Relaxed)
    }

    /// The decode thread's answer to [`Self::picture_wanted`].
    pub fn offer_picture(&self, image: RgbImage, at_us: i64) {
        if let Ok(mut slot) = self.picture.lock() {
            *slot = Some(Picture {
                image: Arc::new(image),
                at_us,
                taken: Instant::now(),
            });
        }
        self.picture_wanted.store(false, Ordering::Relaxed);
        self.fresh_picture.notify_all();
    }

    /// The latest picture: the one held if it is younger than [`PICTURE_MAX_AGE`];
    /// otherwise asks the decode thread for a new one and waits up to `wait`. Without a new
    /// one in time (the camera is offline or slow) the last picture there is, if any: the
    /// caller tells its age from `at_us`.
    pub fn latest_picture(&self, wait: Duration) -> Option<Picture> {
        let Ok(slot) = self.picture.lock() else {
            return None;
        };
        if slot
            .as_ref()
            .is_some_and(|p| p.taken.elapsed() < PICTURE_MAX_AGE)
        {
            return slot.clone();
        }
        let asked = Instant::now();
        self.picture_wanted.store(true, Ordering::Relaxed);
        let (slot, _) = self
            .fresh_picture
            .wait_timeout_while(slot, wait, |slot| {
                slot.as_ref().is_none_or(|p| p.taken < asked)
            })
            .ok()?;
        slot.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(width: u32) -> StreamDesc {
        StreamDesc {
            codec: "h264".into(),
            decoder: "h264 (software)".into(),
            decoder_why: "the camera sets no hwaccel".into(),
            width,
            height: width * 9 / 16,
        }
    }

    #[test]
    fn a_camera_goes_online_then_offline_since_its_first_failure() {
        let live = CameraLive::default();
        assert_eq!(live.status().unwrap().connection, Connection::Connecting);
        live.opened("main", false, desc(1920), 5);
        assert_eq!(
            live.status().unwrap().connection,
            Connection::Connecting,
            "recording alone is not detection"
        );
        live.opened("sub", true, desc(640), 10);
        let s = live.status().unwrap();
        assert_eq!(s.connection, Connection::Online { since_us: 10 });
        assert_eq!(s.detection_stream, Some("sub"));
        assert_eq!(s.main.unwrap().width, 1920);
        live.failed("connection refused", 20);
        live.failed("timed out", 30);
        assert_eq!(
            live.status().unwrap().connection,
            Connection::Offline {
                since_us: 20,
                error: "timed out".into()
            }
        );
        live.opened("sub", true, desc(640), 40);
        assert_eq!(
            live.status().unwrap().connection,
            Connection::Online { since_us: 40 }
        );
    }

    #[test]
    fn confirmed_tracks_seen_now_are_kept_for_the_layout_and_drawn() {
        use crate::frame::{BBox, Detection};
        let norm = BBox {
            x1: 0.25,
            y1: 0.25,
            x2: 0.75,
            y2: 0.75,
        };
        let car = Detection {
            label: Arc::from("car"),
            class_id: 2,
            score: 0.9,
            bbox: norm,
            norm,
        };
        let mut tracker = crate::track::Tracker::new(crate::config::TrackerConfig::default());
        let live = CameraLive::default();
        tracker.update(0, std::slice::from_ref(&car));
        live.set_tracks(tracker.tracks());
        assert!(live.tracks().is_empty(), "not confirmed after one frame");
        for k in 1..5 {
            tracker.update(k * 200_000, std::slice::from_ref(&car));
        }
        live.set_tracks(tracker.tracks());
        let tracks = live.tracks();
        assert_eq!(tracks.len(), 1);
        assert_eq!(&*tracks[0].label, "car");
        let mut image = RgbImage::new(100, 100);
        crate::annotate::draw_tracks(&mut image, &tracks);
        // The box's left edge at x = 25 is drawn; the middle stays black.
        assert_ne!(image.get_pixel(25, 60).0, [0, 0, 0]);
        assert_eq!(image.get_pixel(50, 60).0, [0, 0, 0]);
    }

    #[test]
    fn a_picture_is_converted_only_when_asked_and_reused_while_fresh() {
        let live = Arc::new(CameraLive::default());
        assert!(!live.picture_wanted());
        // Nobody answers: nothing to show, and the decode thread is now asked.
        assert!(live.latest_picture(Duration::from_millis(10)).is_none());
        assert!(live.picture_wanted());
        let decoder = {
            let live = Arc::clone(&live);
            std::thread::spawn(move || {
                while !live.picture_wanted() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                live.offer_picture(RgbImage::new(4, 2), 123);
            })
        };
        let picture = live
            .latest_picture(Duration::from_secs(5))
            .expect("the decode thread answers");
        decoder.join().unwrap();
        assert_eq!((picture.image.width(), picture.at_us), (4, 123));
        assert!(!live.picture_wanted(), "answered");
        // Asked again at once: the same picture, no new request.
        let again = live.latest_picture(Duration::from_millis(10)).unwrap();
        assert!(Arc::ptr_eq(&picture.image, &again.image));
        assert!(!live.picture_wanted());
    }
}
