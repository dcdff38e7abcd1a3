//! Evidence stage: for each new incident, an annotated snapshot (and thumbnail) and a short
//! clip of pre-roll + post-roll, stored under the data directory and announced in the
//! incident's events; plus retention of the files within a disk quota and a maximum age.
//!
//! Runs on its own thread from a bounded job queue: clip writing never blocks decoding or
//! detection. The video comes from each camera's packet ring (compressed packets of the
//! recording stream), remuxed without re-encoding; the snapshot frame is decoded from the
//! same packets. A failure to store evidence (a full disk) never fails the incident: it is
//! recorded as an evidence error on the incident.
//!
//! The disk is shared with the database, so evidence keeps out of its way: it never writes
//! into `storage.reserve_bytes` of free space (it asks retention for room first, else
//! records "not enough free space"), files are written as `*.partial.*` and renamed when
//! whole (a failed write leaves nothing behind), retention restores the reserve when
//! anything else eats into it, and at start a sweep deletes files no row knows.

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
use crate::metrics::disk_free;
use crate::publish::{Delivery, Topics};
use crate::rules::ObjectRef;

/// Deletes one evidence file (`std::fs::remove_file` but in tests).
type FileDeleter = Box<dyn Fn(&Path) -> std::io::Result<()> + Send>;

/// Why an incident's snapshot or clip could not be stored; its text becomes the incident's
/// `evidence.error`, so it reads as one line an installer can act on.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(
        "not enough free space for evidence: {} free on the filesystem of {}, {} of it kept in reserve for the database (storage.reserve_bytes), about {} needed",
        human_bytes(*.free), .dir.display(), human_bytes(*.reserve), human_bytes(*.needed)
    )]
    NoRoom {
        free: u64,
        dir: PathBuf,
        reserve: u64,
        needed: u64,
    },
    /// The ring no longer (or not yet) holds the video of that moment.
    #[error("no video held for the {0}")]
    NoVideo(&'static str),
    #[error("{what}: {source}")]
    Media {
        what: &'static str,
        source: media::MediaError,
    },
    #[error("cannot create {}: {source}", .path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", .path.display())]
    Encode {
        path: PathBuf,
        source: image::ImageError,
    },
    #[error("cannot read back {}: {source}", .path.display())]
    ReadBack {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The checksum of a file just written (its error names the file).
    #[error(transparent)]
    Checksum(#[from] crate::assets::AssetError),
}

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
    /// Stored paths are relative to it (when the evidence directory is inside it).
    pub data_dir: PathBuf,
    /// Where files go (`evidence.dir`, default `<data_dir>/evidence`).
    pub evidence_dir: PathBuf,
    /// Free space evidence leaves on its filesystem (`storage.reserve_bytes`).
    pub reserve_bytes: u64,
    /// Each camera's packet ring; shared, so a config reload can add or remove cameras.
    pub rings: Rings,
    pub delivery: Delivery,
    pub offset: FixedOffset,
}

impl EvidenceContext {
    pub fn from_config(
        config: &crate::config::Config,
        rings: Rings,
        delivery: Delivery,
    ) -> EvidenceContext {
        EvidenceContext {
            config: config.evidence.clone(),
            data_dir: config.storage.data_dir.clone(),
            evidence_dir: config.evidence_dir(),
            reserve_bytes: config.storage.reserve_bytes,
            rings,
            delivery,
            offset: config.site.timezone,
        }
    }
}

/// Evidence whose files are written but whose rows the store could not take yet.
struct UnrecordedEvidence {
    request: EvidenceRequest,
    files: Vec<EvidenceFile>,
    error: Option<String>,
    at_us: i64,
}

/// Unrecorded evidence kept at most; beyond it the oldest is given up and its files deleted.
const MAX_UNRECORDED: usize = 256;
/// How often free space is looked at between retention runs (a `statvfs`).
const FREE_SPACE_CHECK: Duration = Duration::from_secs(5);
/// A snapshot and its thumbnail take at most this many bytes per pixel of the frame.
const SNAPSHOT_BYTES_PER_PIXEL: f64 = 0.6;

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
    unrecorded: std::collections::VecDeque<UnrecordedEvidence>,
    last_retention: Instant,
    last_free_check: Instant,
    /// How retention deletes a file (the tests watch the store's lock from here).
    delete_file: FileDeleter,
}

impl Worker {
    fn new(context: EvidenceContext) -> Worker {
        Worker {
            context,
            pending: Vec::new(),
            unrecorded: std::collections::VecDeque::new(),
            last_retention: Instant::now(),
            last_free_check: Instant::now(),
            delete_file: Box::new(|path| std::fs::remove_file(path)),
        }
    }

    fn run(mut self, jobs: Receiver<EvidenceRequest>) {
        // Made once, so free space can be asked of its filesystem from the start.
        if let Err(e) = std::fs::create_dir_all(&self.context.evidence_dir) {
            tracing::warn!(dir = %self.context.evidence_dir.display(), "cannot create the evidence directory: {e}");
        }
        self.sweep_orphans();
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
            self.record_unrecorded();
            if self.last_retention.elapsed() >= Duration::from_secs(60) {
                self.retention(0);
            } else if self.last_free_check.elapsed() >= FREE_SPACE_CHECK {
                // Anything may eat the free space (the NVR's own recordings, the database):
                // give back the reserve from evidence as soon as it is touched.
                self.last_free_check = Instant::now();
                if self
                    .free_bytes()
                    .is_some_and(|f| f < self.context.reserve_bytes)
                {
                    self.retention(0);
                }
            }
        }
        self.retention(0);
        self.record_unrecorded();
        for lost in self.unrecorded.drain(..) {
            tracing::error!(incident = %lost.request.incident_id, "stopping while the store cannot write: evidence not recorded; its files go at the next start's sweep");
        }
    }

    /// Free bytes on the evidence filesystem (its directory is made when the worker starts).
    fn free_bytes(&self) -> Option<u64> {
        disk_free(&self.context.evidence_dir)
    }

    /// Makes room for a write of about `bytes`, so that the reserve stays free: asks
    /// retention to delete what it must, and refuses when even that is not enough.
    fn room_for(&mut self, bytes: u64) -> Result<(), EvidenceError> {
        let reserve = self.context.reserve_bytes;
        let Some(free) = self.free_bytes() else {
            return Ok(());
        };
        if free >= reserve.saturating_add(bytes) {
            return Ok(());
        }
        self.retention(reserve.saturating_add(bytes) - free);
        let free = self.free_bytes().unwrap_or(0);
        if free >= reserve.saturating_add(bytes) {
            return Ok(());
        }
        Err(EvidenceError::NoRoom {
            free,
            dir: self.context.evidence_dir.clone(),
            reserve,
            needed: bytes,
        })
    }

    fn topic(&self, camera: &str) -> Option<String> {
        self.context
            .delivery
            .topics()
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
            .evidence_dir
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
        &mut self,
        ring: &PacketRing,
        request: &EvidenceRequest,
        frame_at: i64,
        dir: &Path,
    ) -> Result<Vec<EvidenceFile>, EvidenceError> {
        let range = ring
            .range(frame_at, frame_at)
            .ok_or(EvidenceError::NoVideo("snapshot"))?;
        let mut image =
            media::decode_frame(&range, frame_at).map_err(|source| EvidenceError::Media {
                what: "snapshot",
                source,
            })?;
        let (w, h) = (image.width() as f32, image.height() as f32);
        let thickness = (image.width().max(image.height()) / 300).max(2) as i64;
        if let Some(polygon) = &request.zone_polygon {
            annotate::draw_polygon(&mut image, polygon, thickness, annotate::ZONE_COLOUR);
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
        let pixels = u64::from(image.width()) * u64::from(image.height());
        self.room_for((pixels as f64 * SNAPSHOT_BYTES_PER_PIXEL) as u64)?;
        std::fs::create_dir_all(dir).map_err(|source| EvidenceError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let snapshot = dir.join("snapshot.jpg");
        let thumb = dir.join("thumb.jpg");
        let tw = self.context.config.thumbnail_width.min(image.width());
        let th = (image.height() as u64 * tw as u64 / image.width().max(1) as u64).max(1) as u32;
        let written = write_whole(&snapshot, |path| {
            save_jpeg(&image, path, self.context.config.jpeg_quality)
        })
        .and_then(|()| {
            let small =
                image::imageops::resize(&image, tw, th, image::imageops::FilterType::Triangle);
            write_whole(&thumb, |path| save_jpeg(&small, path, 80))
        })
        .and_then(|()| {
            Ok(vec![
                self.file_entry("snapshot", &snapshot, &request.incident_id)?,
                self.file_entry("thumbnail", &thumb, &request.incident_id)?,
            ])
        });
        if written.is_err() {
            // Nothing half-made stays: a snapshot without its thumbnail is removed too.
            remove_files(&[&snapshot, &thumb], dir);
        }
        written
    }

    fn file_entry(
        &self,
        kind: &str,
        path: &Path,
        incident_id: &str,
    ) -> Result<EvidenceFile, EvidenceError> {
        let bytes = std::fs::metadata(path)
            .map_err(|source| EvidenceError::ReadBack {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        let sha256 = sha256_file(path)?;
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
        outcome: Result<Vec<EvidenceFile>, EvidenceError>,
        at_us: i64,
    ) {
        let (files, error) = match outcome {
            Ok(files) => (files, None),
            Err(e) => {
                tracing::error!(incident = %request.incident_id, "evidence not stored: {e}");
                (Vec::new(), Some(e.to_string()))
            }
        };
        let unrecorded = UnrecordedEvidence {
            request: request.clone(),
            files,
            error,
            at_us,
        };
        let had_files = !unrecorded.files.is_empty();
        if !self.record(&unrecorded) {
            // The store cannot write (a full disk): keep the files and try again, in order.
            if self.unrecorded.len() >= MAX_UNRECORDED
                && let Some(lost) = self.unrecorded.pop_front()
            {
                tracing::error!(incident = %lost.request.incident_id, "evidence waited too long for the store: its files are deleted");
                self.delete_unrecorded_files(&lost);
            }
            self.unrecorded.push_back(unrecorded);
        }
        if had_files {
            self.retention(0);
        }
    }

    /// Records files (or an evidence error) in the store as one `updated` event; false when
    /// the store cannot write.
    fn record(&self, evidence: &UnrecordedEvidence) -> bool {
        let topic = self.topic(&evidence.request.camera_id);
        let result = self.context.delivery.store().attach_evidence(
            &evidence.request.incident_id,
            &evidence.files,
            evidence.error.as_deref(),
            evidence.at_us,
            self.context.offset,
            topic.as_deref(),
        );
        match result {
            Ok(_) => {
                self.context.delivery.wake_publisher();
                self.context.delivery.evidence_write_recovered();
                true
            }
            // Also when the incident itself is still held in memory (the store failing):
            // its evidence waits behind it.
            Err(e) => {
                self.context.delivery.evidence_write_failed(&e.to_string());
                false
            }
        }
    }

    /// Retries evidence the store could not take, oldest first.
    fn record_unrecorded(&mut self) {
        while let Some(next) = self.unrecorded.front() {
            if !self.record(next) {
                break;
            }
            self.unrecorded.pop_front();
        }
    }

    fn delete_unrecorded_files(&self, evidence: &UnrecordedEvidence) {
        for file in &evidence.files {
            let path = self.context.data_dir.join(&file.path);
            remove_files(&[&path], path.parent().unwrap_or(&self.context.data_dir));
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
                .ok_or(EvidenceError::NoVideo("clip"))
                .and_then(|range| {
                    // The MP4 holds the packets plus a small index.
                    let bytes: u64 = range.packets.iter().map(|p| p.data.len() as u64).sum();
                    self.room_for(bytes + (64 << 10))?;
                    std::fs::create_dir_all(&clip.dir).map_err(|source| {
                        EvidenceError::CreateDir {
                            path: clip.dir.clone(),
                            source,
                        }
                    })?;
                    let path = clip.dir.join("clip.mp4");
                    write_whole(&path, |partial| {
                        media::write_clip(&range, partial)
                            .map(drop)
                            .map_err(|source| EvidenceError::Media {
                                what: "clip",
                                source,
                            })
                    })
                    .and_then(|()| {
                        self.file_entry("clip", &path, &clip.request.incident_id)
                            .inspect_err(|_| remove_files(&[&path], &clip.dir))
                    })
                    .map(|file| vec![file])
                });
            let at = newest
                .unwrap_or(clip.to_us)
                .min(clip.to_us)
                .max(clip.request.opened_at_us);
            self.announce(&clip.request, outcome, at);
        }
    }

    /// Keeps evidence within its quota and age, and the reserve free on its filesystem
    /// (plus `extra` bytes a write is about to need): deletes the oldest reviewed files
    /// first, then the oldest unreviewed ones. The plan is made under the store's lock, the
    /// files are deleted outside it, and their rows are marked in one transaction, so
    /// deleting never holds up the inference workers' writes.
    fn retention(&mut self, extra: u64) {
        self.last_retention = Instant::now();
        self.last_free_check = Instant::now();
        let config = &self.context.config;
        let Ok(files) = self.context.delivery.store().live_evidence() else {
            return;
        };
        let now = chrono::Utc::now().timestamp_micros();
        let total: u64 = files.iter().map(|f| f.bytes).sum();
        let mut limit = config.quota_bytes.unwrap_or(u64::MAX);
        if let Some(percent) = config.quota_percent
            && let Some(size) = filesystem_size(&self.context.evidence_dir)
        {
            limit = limit.min((size as f64 * percent / 100.0) as u64);
        }
        // Bytes to free for the reserve (and the coming write), beyond the quota.
        let mut short = self.free_bytes().map_or(0, |free| {
            self.context
                .reserve_bytes
                .saturating_add(extra)
                .saturating_sub(free)
        });
        let mut order: Vec<_> = files.iter().collect();
        // Reviewed first (false < true, so sort by !reviewed), then oldest.
        order.sort_by_key(|f| (!f.reviewed, f.created_at_us, f.id));
        let max_age_us = config.max_age.map(|a| a.as_micros() as i64);
        let mut remaining = total;
        let mut deleted = Vec::new();
        for file in order {
            let too_old = max_age_us.is_some_and(|age| now - file.created_at_us > age);
            if remaining <= limit && short == 0 && !too_old {
                continue;
            }
            let path = self.context.data_dir.join(&file.path);
            match (self.delete_file)(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), "retention cannot delete: {e}");
                    continue;
                }
            }
            if let Some(dir) = path.parent() {
                // The incident's directory goes with its last file.
                let _ = std::fs::remove_dir(dir);
            }
            deleted.push(file.id);
            remaining = remaining.saturating_sub(file.bytes);
            short = short.saturating_sub(file.bytes);
            tracing::info!(incident = %file.incident_id, kind = %file.kind, reviewed = file.reviewed, "retention deleted evidence");
        }
        if deleted.is_empty() {
            return;
        }
        let marked = self
            .context
            .delivery
            .store()
            .mark_evidence_deleted(&deleted, now);
        if let Err(e) = marked {
            // The files are gone either way; the rows are marked at the next start's sweep.
            self.context.delivery.evidence_write_failed(&e.to_string());
        }
    }

    /// At start: deletes files in the evidence directory that no row knows (left by a crash
    /// or a full disk in the middle of a write, `*.partial.*` above all), and marks rows
    /// whose file has gone as deleted.
    fn sweep_orphans(&mut self) {
        let root = &self.context.evidence_dir;
        if !root.is_dir() {
            return;
        }
        let live = match self.context.delivery.store().live_evidence() {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!("orphan sweep skipped: {e}");
                return;
            }
        };
        let known: std::collections::HashSet<PathBuf> = live
            .iter()
            .map(|f| self.context.data_dir.join(&f.path))
            .collect();
        let (mut files, mut bytes) = (0u64, 0u64);
        let mut dirs = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    stack.push(path.clone());
                    dirs.push(path);
                } else if !known.contains(&path) {
                    let size = entry.metadata().map_or(0, |m| m.len());
                    if std::fs::remove_file(&path).is_ok() {
                        files += 1;
                        bytes += size;
                    }
                }
            }
        }
        // Deepest first, so a day's directory goes after its incidents' directories.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in dirs {
            let _ = std::fs::remove_dir(dir);
        }
        if files > 0 {
            tracing::warn!(
                files,
                bytes,
                "deleted evidence files no incident refers to (left by a crash or a full disk)"
            );
        }
        let missing: Vec<i64> = live
            .iter()
            .filter(|f| !self.context.data_dir.join(&f.path).exists())
            .map(|f| f.id)
            .collect();
        if !missing.is_empty() {
            let now = chrono::Utc::now().timestamp_micros();
            if let Err(e) = self
                .context
                .delivery
                .store()
                .mark_evidence_deleted(&missing, now)
            {
                tracing::warn!("cannot mark evidence whose files have gone: {e}");
            }
        }
    }
}

/// Writes `path` whole or not at all: `write` fills `<stem>.partial.<ext>` (the extension
/// kept: FFmpeg picks the container from it), which is renamed over `path` once complete;
/// on any error the partial file is removed.
fn write_whole(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), EvidenceError>,
) -> Result<(), EvidenceError> {
    let partial = partial_path(path);
    let result = write(&partial).and_then(|()| {
        std::fs::rename(&partial, path).map_err(|source| EvidenceError::Write {
            path: path.to_path_buf(),
            source,
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// `dir/clip.mp4` -> `dir/clip.partial.mp4`.
fn partial_path(path: &Path) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.partial.{}", ext.to_string_lossy()),
        None => format!("{stem}.partial"),
    };
    path.with_file_name(name)
}

/// Removes the files of a failed write, and their directory when that leaves it empty.
fn remove_files(paths: &[&Path], dir: &Path) {
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
    let _ = std::fs::remove_dir(dir);
}

fn human_bytes(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

fn save_jpeg(image: &image::RgbImage, path: &Path, quality: u8) -> Result<(), EvidenceError> {
    let write_error = |source| EvidenceError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(write_error)?;
    let mut writer = std::io::BufWriter::new(file);
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut writer, quality);
    image
        .write_with_encoder(encoder)
        .map_err(|source| EvidenceError::Encode {
            path: path.to_path_buf(),
            source,
        })?;
    use std::io::Write as _;
    writer
        .flush()
        .and_then(|()| writer.get_ref().sync_all())
        .map_err(write_error)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn worker_in(data: &Path, reserve_bytes: u64) -> Worker {
        // As `run` does before anything else.
        std::fs::create_dir_all(data.join("evidence")).unwrap();
        let store =
            crate::store::Handle::open(data, crate::store::OutboxLimits::default()).unwrap();
        let delivery = Delivery::new(store, None, Arc::default(), None, Arc::default());
        Worker::new(EvidenceContext {
            config: EvidenceConfig::default(),
            data_dir: data.to_path_buf(),
            evidence_dir: data.join("evidence"),
            reserve_bytes,
            rings: Rings::default(),
            delivery,
            offset: FixedOffset::east_opt(8 * 3600).unwrap(),
        })
    }

    /// Evidence rows whose files the store believes on disk.
    fn live_rows(worker: &Worker) -> usize {
        worker
            .context
            .delivery
            .store()
            .live_evidence()
            .unwrap()
            .len()
    }

    /// An incident in the worker's store with rows for `files` (kind, path under the data
    /// directory), as `attach_evidence` writes them.
    fn incident_with_files(worker: &Worker, files: &[(&str, &str)]) -> String {
        let store = worker.context.delivery.store();
        let mut event = crate::incidents::test_events::opened();
        store.record(&mut event, None).unwrap();
        let files: Vec<EvidenceFile> = files
            .iter()
            .map(|(kind, path)| EvidenceFile {
                kind: (*kind).into(),
                path: (*path).into(),
                url: None,
                bytes: 4,
                sha256: String::new(),
            })
            .collect();
        store
            .attach_evidence(
                &event.incident_id,
                &files,
                None,
                1,
                worker.context.offset,
                None,
            )
            .unwrap();
        event.incident_id
    }

    #[test]
    fn retention_deletes_files_without_holding_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let worker = &mut worker_in(dir.path(), 0);
        let files = ["snapshot", "thumbnail", "clip"].map(|kind| {
            let path = format!("evidence/2026/12/03/a/{kind}");
            std::fs::create_dir_all(dir.path().join("evidence/2026/12/03/a")).unwrap();
            std::fs::write(dir.path().join(&path), b"data").unwrap();
            (kind, path)
        });
        let named: Vec<(&str, &str)> = files.iter().map(|(k, p)| (*k, p.as_str())).collect();
        incident_with_files(worker, &named);
        // Each deletion looks at the store's lock: the inference workers' writes must be
        // able to go on while files are unlinked (slow on an SD card or a busy NVR disk).
        let store = worker.context.delivery.store().clone();
        let deleted = Arc::new(std::sync::Mutex::new(Vec::new()));
        worker.delete_file = Box::new({
            let deleted = Arc::clone(&deleted);
            move |path| {
                assert!(
                    !store.is_locked(),
                    "retention holds the store while deleting"
                );
                deleted.lock().unwrap().push(path.to_path_buf());
                std::fs::remove_file(path)
            }
        });
        worker.context.config.quota_bytes = Some(0);
        worker.retention(0);
        assert_eq!(
            deleted.lock().unwrap().len(),
            3,
            "everything over a zero quota"
        );
        assert!(!dir.path().join("evidence/2026/12/03/a").exists());
        assert_eq!(live_rows(worker), 0, "their rows are marked");
    }

    #[test]
    fn the_start_sweep_deletes_what_no_row_knows_and_keeps_what_one_does() {
        let dir = tempfile::tempdir().unwrap();
        let worker = &mut worker_in(dir.path(), 0);
        let incident = dir.path().join("evidence/2026/12/03/a");
        std::fs::create_dir_all(&incident).unwrap();
        let crashed = dir.path().join("evidence/2026/12/02/b");
        std::fs::create_dir_all(&crashed).unwrap();
        std::fs::write(crashed.join("clip.partial.mp4"), vec![1u8; 1000]).unwrap();
        std::fs::write(crashed.join("snapshot.jpg"), b"").unwrap();
        std::fs::write(incident.join("snapshot.jpg"), b"jpeg").unwrap();
        // The incident and a row for its snapshot (written by attach_evidence).
        incident_with_files(
            worker,
            &[("snapshot", "evidence/2026/12/03/a/snapshot.jpg")],
        );
        assert_eq!(live_rows(worker), 1);
        worker.sweep_orphans();
        assert!(
            incident.join("snapshot.jpg").exists(),
            "a file a row knows stays"
        );
        assert!(
            !crashed.exists(),
            "a crashed write's files and directory go"
        );
        assert!(dir.path().join("evidence/2026/12/03").exists());
        // A row whose file has gone is marked, so retention and the API stop counting it.
        std::fs::remove_file(incident.join("snapshot.jpg")).unwrap();
        worker.sweep_orphans();
        let store = worker.context.delivery.store();
        assert!(store.live_evidence().unwrap().is_empty());
    }

    #[test]
    fn a_write_that_would_eat_into_the_reserve_is_refused_with_the_numbers() {
        let dir = tempfile::tempdir().unwrap();
        // No filesystem here has u64::MAX / 2 bytes free: the reserve cannot be kept.
        let worker = &mut worker_in(dir.path(), u64::MAX / 2);
        let err = worker.room_for(1 << 20).unwrap_err().to_string();
        assert!(err.contains("not enough free space for evidence"), "{err}");
        assert!(err.contains("storage.reserve_bytes"), "{err}");
        assert!(!err.contains('\n'));
        let worker = &mut worker_in(dir.path(), 0);
        assert!(worker.room_for(1 << 20).is_ok());
    }

    #[test]
    fn a_failed_write_leaves_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        let failed = write_whole(&path, |partial| {
            std::fs::write(partial, b"half").unwrap();
            Err(EvidenceError::Write {
                path: partial.to_path_buf(),
                source: std::io::Error::other("disk full"),
            })
        });
        assert!(failed.is_err());
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "nothing left"
        );
        assert_eq!(partial_path(&path), dir.path().join("clip.partial.mp4"));
        write_whole(&path, |partial| {
            std::fs::write(partial, b"whole").map_err(|source| EvidenceError::Write {
                path: partial.to_path_buf(),
                source,
            })
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
    }
}
