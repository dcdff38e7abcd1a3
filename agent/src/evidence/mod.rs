//! Evidence stage: for each new incident, an annotated snapshot (and thumbnail) and a short
//! clip of pre-roll + post-roll, stored under the data directory and announced in the
//! incident's events; plus retention of the files within a disk quota and a maximum age.
//!
//! Runs on its own thread from a bounded job queue: clip writing never blocks decoding or
//! detection. The video comes from each camera's packet ring (compressed packets of the
//! recording stream), remuxed without re-encoding; the snapshot frame is decoded from the
//! same packets. A failure to store evidence (a full disk) never fails the incident: it is
//! recorded as an evidence error on the incident.

pub mod media;
pub mod ring;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::FixedOffset;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use image::Rgb;

use crate::annotate;
use crate::assets::sha256_file;
use crate::config::EvidenceConfig;
use crate::frame::BBox;
use crate::incidents::{EvidenceFile, IncidentEvent};
use crate::publish::{Delivery, Topics};
use crate::rules::ObjectRef;

pub use ring::PacketRing;

/// Packet rings by camera id.
pub type Rings = std::sync::Arc<std::sync::RwLock<HashMap<String, PacketRing>>>;

fn ring_of(rings: &Rings, camera: &str) -> Option<PacketRing> {
    rings.read().ok()?.get(camera).cloned()
}

/// What the worker needs to know about a new incident.
#[derive(Debug, Clone)]
pub struct EvidenceRequest {
    pub incident_id: String,
    pub camera_id: String,
    /// When the incident opened (wall clock, the clock of the camera's packets).
    pub opened_at_us: i64,
    /// The best moment for the snapshot.
    pub best_at_us: i64,
    pub zone_polygon: Option<Vec<(f32, f32)>>,
    pub objects: Vec<ObjectRef>,
}

impl EvidenceRequest {
    /// The request for an `opened` event, with the zone polygon from the camera's config.
    pub fn for_event(event: &IncidentEvent, polygon: Option<Vec<(f32, f32)>>) -> EvidenceRequest {
        let time = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.timestamp_micros())
                .unwrap_or_default()
        };
        EvidenceRequest {
            incident_id: event.incident_id.clone(),
            camera_id: event.camera.id.clone(),
            opened_at_us: time(&event.event_at),
            best_at_us: time(&event.best_frame_at),
            zone_polygon: polygon,
            objects: event.objects.clone(),
        }
    }
}

struct PendingClip {
    request: EvidenceRequest,
    from_us: i64,
    to_us: i64,
    give_up: Instant,
    dir: PathBuf,
}

/// Handle of the evidence worker thread.
pub struct EvidenceWorker {
    jobs: Option<Sender<EvidenceRequest>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Everything the worker shares with the rest of the agent.
pub struct EvidenceContext {
    pub config: EvidenceConfig,
    pub data_dir: PathBuf,
    /// Each camera's packet ring; shared, so a config reload can add or remove cameras.
    pub rings: Rings,
    pub delivery: Delivery,
    pub offset: FixedOffset,
}

const QUEUE: usize = 64;

impl EvidenceWorker {
    pub fn start(context: EvidenceContext) -> std::io::Result<EvidenceWorker> {
        let (tx, rx) = bounded(QUEUE);
        let thread = std::thread::Builder::new()
            .name("evidence".into())
            .spawn(move || Worker::new(context).run(rx))?;
        Ok(EvidenceWorker {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a request; if the queue is full the request is dropped with a warning rather
    /// than stalling the caller (the inference loop).
    pub fn request(&self, request: EvidenceRequest) {
        if let Some(jobs) = &self.jobs
            && let Err(e) = jobs.try_send(request)
        {
            tracing::warn!(
                "evidence queue full, no evidence for incident {}",
                e.into_inner().incident_id
            );
        }
    }

    /// Finishes pending clips (with whatever post-roll exists) and stops.
    pub fn finish(mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for EvidenceWorker {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Worker {
    context: EvidenceContext,
    pending: Vec<PendingClip>,
    last_retention: Instant,
}

impl Worker {
    fn new(context: EvidenceContext) -> Worker {
        Worker {
            context,
            pending: Vec::new(),
            last_retention: Instant::now(),
        }
    }

    fn run(mut self, jobs: Receiver<EvidenceRequest>) {
        let mut open = true;
        while open || !self.pending.is_empty() {
            match jobs.recv_timeout(Duration::from_millis(200)) {
                Ok(request) => self.snapshot_and_queue_clip(request),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if open {
                        open = false;
                        // No more incidents: what will come has come.
                        if let Ok(rings) = self.context.rings.read() {
                            for ring in rings.values() {
                                ring.end_stream();
                            }
                        }
                    }
                }
            }
            self.write_ready_clips();
            if self.last_retention.elapsed() >= Duration::from_secs(60) {
                self.retention();
            }
        }
        self.retention();
    }

    fn topic(&self, camera: &str) -> Option<String> {
        self.context
            .delivery
            .topics
            .as_ref()
            .map(|t: &Topics| t.incident(camera))
    }

    /// `evidence/YYYY/MM/DD/<incident>/` for the incident's date in site time.
    fn dir_for(&self, request: &EvidenceRequest) -> PathBuf {
        let day = chrono::DateTime::from_timestamp_micros(request.opened_at_us)
            .unwrap_or_default()
            .with_timezone(&self.context.offset)
            .format("%Y/%m/%d")
            .to_string();
        self.context
            .data_dir
            .join("evidence")
            .join(day)
            .join(&request.incident_id)
    }

    fn snapshot_and_queue_clip(&mut self, request: EvidenceRequest) {
        let Some(ring) = ring_of(&self.context.rings, &request.camera_id) else {
            return;
        };
        let dir = self.dir_for(&request);
        // The best moment if the ring still holds it, else the moment of opening.
        let oldest_held = ring.range(i64::MIN, i64::MAX).map(|r| r.packets[0].at_us);
        let frame_at = if oldest_held.is_some_and(|o| o <= request.best_at_us) {
            request.best_at_us
        } else {
            request.opened_at_us
        };
        let outcome = self.write_snapshot(&ring, &request, frame_at, &dir);
        self.announce(&request, outcome, request.opened_at_us);
        let post = self.context.config.post_roll;
        self.pending.push(PendingClip {
            from_us: request.opened_at_us - self.context.config.pre_roll.as_micros() as i64,
            to_us: request.opened_at_us + post.as_micros() as i64,
            give_up: Instant::now() + post + Duration::from_secs(30),
            request,
            dir,
        });
    }

    fn write_snapshot(
        &self,
        ring: &PacketRing,
        request: &EvidenceRequest,
        frame_at: i64,
        dir: &Path,
    ) -> Result<Vec<EvidenceFile>, String> {
        let range = ring
            .range(frame_at, frame_at)
            .ok_or_else(|| "no video held for the snapshot".to_string())?;
        let mut image =
            media::decode_frame(&range, frame_at).map_err(|e| format!("snapshot: {e}"))?;
        let (w, h) = (image.width() as f32, image.height() as f32);
        let thickness = (image.width().max(image.height()) / 300).max(2) as i64;
        if let Some(polygon) = &request.zone_polygon {
            let zone_colour = Rgb([255, 221, 0]);
            for (i, a) in polygon.iter().enumerate() {
                let b = polygon[(i + 1) % polygon.len()];
                annotate::draw_line(
                    &mut image,
                    (a.0 * w, a.1 * h),
                    (b.0 * w, b.1 * h),
                    thickness,
                    zone_colour,
                );
            }
        }
        for object in &request.objects {
            let bbox: BBox = object.bbox.scaled(w, h);
            let colour = Rgb([255, 56, 56]);
            annotate::draw_box(&mut image, &bbox, thickness, colour);
            annotate::draw_label(
                &mut image,
                &bbox,
                &format!("{} #{}", object.label, object.track_id),
                colour,
            );
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let snapshot = dir.join("snapshot.jpg");
        let thumb = dir.join("thumb.jpg");
        save_jpeg(&image, &snapshot, self.context.config.jpeg_quality)?;
        let tw = self.context.config.thumbnail_width.min(image.width());
        let th = (image.height() as u64 * tw as u64 / image.width().max(1) as u64).max(1) as u32;
        let small = image::imageops::resize(&image, tw, th, image::imageops::FilterType::Triangle);
        save_jpeg(&small, &thumb, 80)?;
        Ok(vec![
            self.file_entry("snapshot", &snapshot, &request.incident_id)?,
            self.file_entry("thumbnail", &thumb, &request.incident_id)?,
        ])
    }

    fn file_entry(
        &self,
        kind: &str,
        path: &Path,
        incident_id: &str,
    ) -> Result<EvidenceFile, String> {
        let bytes = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
        let sha256 = sha256_file(path).map_err(|e| e.to_string())?;
        let relative = path
            .strip_prefix(&self.context.data_dir)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        let name = match kind {
            "snapshot" => "snapshot.jpg",
            "thumbnail" => "thumb.jpg",
            _ => "clip.mp4",
        };
        Ok(EvidenceFile {
            kind: kind.to_string(),
            path: relative,
            url: Some(format!("/api/incidents/{incident_id}/{name}")),
            bytes,
            sha256,
        })
    }

    /// Records files (or the failure to store them) as an `updated` event.
    fn announce(
        &mut self,
        request: &EvidenceRequest,
        outcome: Result<Vec<EvidenceFile>, String>,
        at_us: i64,
    ) {
        let (files, error) = match outcome {
            Ok(files) => (files, None),
            Err(e) => {
                tracing::error!(incident = %request.incident_id, "evidence not stored: {e}");
                (Vec::new(), Some(e))
            }
        };
        let topic = self.topic(&request.camera_id);
        let result = self
            .context
            .delivery
            .store
            .lock()
            .map_err(|_| "store lock poisoned".to_string())
            .and_then(|mut store| {
                store
                    .attach_evidence(
                        &request.incident_id,
                        &files,
                        error.as_deref(),
                        at_us,
                        self.context.offset,
                        topic.as_deref(),
                    )
                    .map_err(|e| e.to_string())
            });
        match result {
            Ok(_) => self.context.delivery.wake.notify_one(),
            Err(e) => {
                tracing::error!(incident = %request.incident_id, "cannot record evidence: {e}")
            }
        }
        if !files.is_empty() {
            self.retention();
        }
    }

    fn write_ready_clips(&mut self) {
        let mut i = 0;
        while i < self.pending.len() {
            let clip = &self.pending[i];
            let Some(ring) = ring_of(&self.context.rings, &clip.request.camera_id) else {
                self.pending.swap_remove(i);
                continue;
            };
            let (newest, ended) = ring.newest();
            let complete = newest.is_some_and(|n| n >= clip.to_us);
            if !(complete || ended || Instant::now() >= clip.give_up) {
                i += 1;
                continue;
            }
            let clip = self.pending.swap_remove(i);
            let outcome = ring
                .range(clip.from_us, clip.to_us)
                .ok_or_else(|| "no video held for the clip".to_string())
                .and_then(|range| {
                    std::fs::create_dir_all(&clip.dir)
                        .map_err(|e| format!("cannot create {}: {e}", clip.dir.display()))?;
                    let path = clip.dir.join("clip.mp4");
                    media::write_clip(&range, &path).map_err(|e| format!("clip: {e}"))?;
                    Ok(vec![self.file_entry(
                        "clip",
                        &path,
                        &clip.request.incident_id,
                    )?])
                });
            let at = newest
                .unwrap_or(clip.to_us)
                .min(clip.to_us)
                .max(clip.request.opened_at_us);
            self.announce(&clip.request, outcome, at);
        }
    }

    /// Keeps evidence within its quota and age: deletes the oldest reviewed files first,
    /// then the oldest unreviewed ones.
    fn retention(&mut self) {
        self.last_retention = Instant::now();
        let config = &self.context.config;
        let Ok(mut store) = self.context.delivery.store.lock() else {
            return;
        };
        let Ok(files) = store.live_evidence() else {
            return;
        };
        let now = chrono::Utc::now().timestamp_micros();
        let total: u64 = files.iter().map(|f| f.bytes).sum();
        let mut limit = config.quota_bytes.unwrap_or(u64::MAX);
        if let Some(percent) = config.quota_percent
            && let Some(size) = filesystem_size(&self.context.data_dir)
        {
            limit = limit.min((size as f64 * percent / 100.0) as u64);
        }
        let mut order: Vec<_> = files.iter().collect();
        // Reviewed first (false < true, so sort by !reviewed), then oldest.
        order.sort_by_key(|f| (!f.reviewed, f.created_at_us, f.id));
        let max_age_us = config.max_age.map(|a| a.as_micros() as i64);
        let mut remaining = total;
        for file in order {
            let too_old = max_age_us.is_some_and(|age| now - file.created_at_us > age);
            if remaining <= limit && !too_old {
                continue;
            }
            let path = self.context.data_dir.join(&file.path);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), "retention cannot delete: {e}");
                    continue;
                }
            }
            let _ = store.mark_evidence_deleted(file.id, now);
            remaining = remaining.saturating_sub(file.bytes);
            tracing::info!(incident = %file.incident_id, kind = %file.kind, reviewed = file.reviewed, "retention deleted evidence");
        }
    }
}

fn save_jpeg(image: &image::RgbImage, path: &Path, quality: u8) -> Result<(), String> {
    let file =
        std::fs::File::create(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut writer, quality);
    image
        .write_with_encoder(encoder)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    use std::io::Write as _;
    writer
        .flush()
        .and_then(|()| writer.get_ref().sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Total bytes of the filesystem holding `path`.
fn filesystem_size(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct; the path is a valid C string.
    unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(name.as_ptr(), &mut stat) == 0)
            .then(|| stat.f_blocks as u64 * stat.f_frsize as u64)
    }
}
