//! `gridwatch replay`: the whole pipeline over a recorded file, as fast as the machine
//! allows, on virtual time taken from the stream's timestamps. Same input, same output.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context as _;
use chrono::FixedOffset;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::analytics::CameraAnalytics;
use crate::config::CameraConfig;
use crate::detect::Detector;
use crate::frame::{Detection, FrameMeta};
use crate::incidents::{EventState, IncidentEvent};
use crate::output::JsonlWriter;
use crate::pipeline::{
    Backpressure, Clock, DecodeOptions, FrameSink, decode_into_queue, frame_queue, infer_from_queue,
};
use crate::publish::Delivery;

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub camera: CameraConfig,
    /// The file (or URL) to read instead of the camera's own URL.
    pub input: String,
    /// Wall-clock time of the first frame, Unix microseconds.
    pub start_at_us: i64,
    pub offset: FixedOffset,
    pub queue_depth: usize,
    pub progress: bool,
    /// Detections below this score are tracked but not listed in the output.
    pub report_confidence: f32,
    /// Counters the heartbeat reports (replay with `[mqtt]`); `None` counts nothing.
    pub metrics: Option<Arc<crate::metrics::CameraMetrics>>,
}

/// Per-label totals for the summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LabelSummary {
    /// Frames in which the label was detected at least once.
    pub frames: u64,
    pub detections: u64,
    pub max_score: f32,
    pub first_seen_s: f64,
    pub last_seen_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplaySummary {
    pub camera: String,
    pub input: String,
    pub codec: String,
    /// The decoder used: "h264 (software)", "hevc + vaapi", ...
    pub decoder: String,
    pub width: u32,
    pub height: u32,
    pub media_seconds: f64,
    pub frames_decoded: u64,
    pub frames_detected: u64,
    /// Sampled frames the motion gate kept from the detector.
    pub frames_gated: u64,
    /// Model inferences run: one per detection region of each detected frame that moved.
    pub inferences: u64,
    /// The detection regions of the stream, one line each (as `check` prints them).
    pub regions: Vec<String>,
    pub decode_errors: u64,
    pub wall_seconds: f64,
    pub realtime_factor: f64,
    pub labels: BTreeMap<String, LabelSummary>,
    /// Every incident raised, in the order opened.
    pub incidents: Vec<IncidentSummary>,
}

/// One incident as the replay summary lists it.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentSummary {
    pub incident_id: String,
    pub kind: String,
    pub zone: Option<String>,
    pub status: String,
    pub opened_at: String,
    pub closed_at: Option<String>,
    pub duration_s: f64,
    pub description: String,
}

impl std::fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {} {}x{}, {:.1} s of video, {} frames decoded, {} detected{} in {:.2} s ({:.1}x realtime)",
            self.input,
            self.codec,
            self.width,
            self.height,
            self.media_seconds,
            self.frames_decoded,
            self.frames_detected,
            if self.frames_gated > 0 {
                format!(" ({} skipped by the motion gate)", self.frames_gated)
            } else {
                String::new()
            },
            self.wall_seconds,
            self.realtime_factor
        )?;
        writeln!(
            f,
            "  {} model inferences; detection regions:",
            self.inferences
        )?;
        for line in &self.regions {
            writeln!(f, "    {line}")?;
        }
        if self.labels.is_empty() {
            writeln!(f, "  nothing detected")?;
        }
        let mut labels: Vec<_> = self.labels.iter().collect();
        labels.sort_by(|a, b| b.1.frames.cmp(&a.1.frames).then(a.0.cmp(b.0)));
        for (label, s) in labels {
            writeln!(
                f,
                "  {label:<14} in {:>4} frames ({:>5.1}%), max score {:.2}, seen {:.1}-{:.1} s",
                s.frames,
                100.0 * s.frames as f64 / self.frames_detected.max(1) as f64,
                s.max_score,
                s.first_seen_s,
                s.last_seen_s
            )?;
        }
        writeln!(f, "  incidents: {}", self.incidents.len())?;
        for i in &self.incidents {
            writeln!(
                f,
                "  - {} {} [{}] opened {} {}: {}",
                i.kind,
                i.zone.as_deref().unwrap_or("-"),
                i.status,
                i.opened_at,
                i.closed_at
                    .as_deref()
                    .map_or("still open".to_string(), |c| format!("closed {c}")),
                i.description
            )?;
        }
        Ok(())
    }
}

struct ReplaySink<'e, W: Write> {
    writer: JsonlWriter<BufWriter<W>>,
    analytics: CameraAnalytics,
    delivery: Option<Delivery>,
    evidence: Option<&'e Evidence>,
    report_confidence: f32,
    incidents: Vec<IncidentSummary>,
    labels: BTreeMap<String, LabelSummary>,
    progress: ProgressBar,
    /// Per-frame scratch to count each label once per frame, reused.
    seen: Vec<u16>,
    metrics: Option<Arc<crate::metrics::CameraMetrics>>,
    inferences: u64,
}

impl<W: Write> FrameSink for ReplaySink<'_, W> {
    fn on_frame(&mut self, meta: &FrameMeta, detections: &[Detection]) -> anyhow::Result<()> {
        if !meta.unchanged {
            self.inferences += u64::from(meta.inferred.count_ones());
            if let Some(metrics) = &self.metrics {
                metrics
                    .frames_inferred
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                metrics.count_region_inferences(meta.inferred);
            }
        }
        // Incident events first: one dated before this frame (a camera that went offline
        // during a gap) must not follow the frame in the stream.
        for event in self.analytics.on_frame(meta, detections) {
            let mut event = event.clone();
            // The JSON Lines output gets the event whatever the store says: an event the
            // store cannot take (a full disk) is held and reported, the analysis goes on.
            if let Some(delivery) = &self.delivery {
                delivery.record(&mut event);
            }
            if let Some(evidence) = self.evidence
                && event.state == EventState::Opened
            {
                evidence.request_for(&event);
            }
            self.writer
                .write_incident(&event)
                .context("writing the detections output")?;
            note_incident(&mut self.incidents, &event);
        }
        for crossing in self.analytics.crossings() {
            if let Some(delivery) = &self.delivery {
                delivery.record_crossing(&meta.camera, crossing);
            }
            self.writer
                .write_crossing(&meta.camera, crossing)
                .context("writing the detections output")?;
        }
        if meta.unchanged {
            return Ok(());
        }
        self.writer
            .write_frame(meta, detections, self.report_confidence)
            .context("writing the detections output")?;
        let t = meta.pts_us as f64 / 1e6;
        self.seen.clear();
        for d in detections
            .iter()
            .filter(|d| d.score >= self.report_confidence)
        {
            // Labels are few; the map only allocates the first time a label shows up.
            let entry = match self.labels.get_mut(&*d.label) {
                Some(entry) => entry,
                None => self
                    .labels
                    .entry(d.label.to_string())
                    .or_insert(LabelSummary {
                        first_seen_s: t,
                        ..Default::default()
                    }),
            };
            entry.detections += 1;
            entry.max_score = entry.max_score.max(d.score);
            entry.last_seen_s = t;
            if !self.seen.contains(&d.class_id) {
                self.seen.push(d.class_id);
                entry.frames += 1;
            }
        }
        self.progress
            .set_position((meta.pts_us / 1000).max(0) as u64);
        Ok(())
    }
}

fn note_incident(incidents: &mut Vec<IncidentSummary>, event: &IncidentEvent) {
    let summary = IncidentSummary {
        incident_id: event.incident_id.clone(),
        kind: event.kind.as_str().to_string(),
        zone: event.zone.as_ref().map(|z| z.id.clone()),
        status: format!("{:?}", event.status).to_lowercase(),
        opened_at: event.opened_at.clone(),
        closed_at: event.closed_at.clone(),
        duration_s: event.duration_s,
        description: event.description.clone(),
    };
    match incidents
        .iter_mut()
        .find(|i| i.incident_id == event.incident_id)
    {
        Some(existing) => *existing = summary,
        None if event.state == EventState::Opened => incidents.push(summary),
        None => {}
    }
}

/// Replays `options.input` through decode, detection, tracking, zones, rules and incidents,
/// writing JSON Lines (detected frames and incident events, in time order) to `out`.
/// The output is flushed before any input problem (corrupt packets, truncation) is
/// returned, so whatever could be processed is kept.
/// Clips and snapshots during a replay: the worker and the camera's packet ring.
pub struct Evidence {
    pub worker: crate::evidence::EvidenceWorker,
    pub ring: crate::evidence::PacketRing,
    pub zones: Vec<(String, Vec<(f32, f32)>)>,
}

impl Evidence {
    fn request_for(&self, event: &IncidentEvent) {
        let polygon = event
            .zone
            .as_ref()
            .and_then(|z| self.zones.iter().find(|(id, _)| *id == z.id))
            .map(|(_, p)| p.clone());
        self.worker
            .request(crate::evidence::EvidenceRequest::for_event(event, polygon));
    }
}

pub fn replay<W: Write>(
    detector: &mut Detector,
    analytics: CameraAnalytics,
    delivery: Option<Delivery>,
    evidence: Option<&Evidence>,
    options: &ReplayOptions,
    out: W,
) -> anyhow::Result<ReplaySummary> {
    let started = Instant::now();
    let camera: Arc<str> = Arc::from(options.camera.id.as_str());
    let spec = detector.manifest().input.clone();
    let (producer, consumer) = frame_queue(&camera, &spec, options.queue_depth, Backpressure::Wait);
    let mut decode_options = DecodeOptions::for_camera(
        &options.camera,
        &options.input,
        Clock::Stream {
            start_at_us: options.start_at_us,
        },
    );
    decode_options.ring = evidence.map(|e| e.ring.clone());
    decode_options.metrics = options.metrics.clone();
    let progress = if options.progress {
        ProgressBar::new(0).with_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{wide_bar}] {msg} {percent}% ({eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    } else {
        ProgressBar::hidden()
    };
    progress.set_message(options.input.clone());
    let mut sink = ReplaySink {
        writer: JsonlWriter::new(BufWriter::with_capacity(1 << 16, out), options.offset),
        analytics,
        delivery,
        evidence,
        report_confidence: options.report_confidence,
        incidents: Vec::new(),
        labels: BTreeMap::new(),
        progress: progress.clone(),
        seen: Vec::with_capacity(16),
        metrics: options.metrics.clone(),
        inferences: 0,
    };
    let stop = Arc::new(AtomicBool::new(false));

    let (inferred, decoded) = std::thread::scope(|scope| {
        let decode_progress = progress.clone();
        let (decode_options, spec, decode_stop) = (&decode_options, &spec, Arc::clone(&stop));
        let decode = std::thread::Builder::new()
            .name(format!("decode-{camera}"))
            .spawn_scoped(scope, move || {
                decode_into_queue(decode_options, spec, &producer, decode_stop, |info| {
                    tracing::info!(
                        codec = %info.codec,
                        decoder = %info.decoder,
                        width = info.width,
                        height = info.height,
                        "stream open"
                    );
                    if let Some(d) = info.duration_s {
                        decode_progress.set_length((d * 1000.0) as u64);
                    }
                })
            });
        let decode = match decode {
            Ok(handle) => handle,
            Err(err) => return (Err(anyhow::Error::from(err)), None),
        };
        let inferred = infer_from_queue(&consumer, detector, &mut sink);
        // On an inference error, make the decoder stop at its next frame.
        drop(consumer);
        if inferred.is_err() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let decoded = decode.join();
        (inferred, Some(decoded))
    });
    progress.finish_and_clear();
    sink.writer
        .flush()
        .context("writing the detections output")?;
    let inferred = inferred?;
    let report = match decoded {
        Some(Ok(report)) => report?,
        Some(Err(_)) => anyhow::bail!("the decode thread stopped unexpectedly"),
        None => anyhow::bail!("could not start the decode thread"),
    };
    let wall_seconds = started.elapsed().as_secs_f64();
    let media_seconds = report
        .info
        .duration_s
        .unwrap_or(report.stats.last_pts_us as f64 / 1e6);
    let summary = ReplaySummary {
        camera: camera.to_string(),
        input: report.url.clone(),
        codec: report.info.codec.clone(),
        decoder: report.info.decoder.clone(),
        width: report.info.width,
        height: report.info.height,
        media_seconds,
        frames_decoded: report.stats.frames,
        frames_detected: inferred,
        frames_gated: report.gated,
        inferences: sink.inferences,
        regions: report
            .plan
            .as_ref()
            .map(|p| p.describe(options.camera.detect_fps))
            .unwrap_or_default(),
        decode_errors: report.stats.decode_errors,
        wall_seconds,
        realtime_factor: media_seconds / wall_seconds.max(1e-9),
        labels: sink.labels,
        incidents: sink.incidents,
    };
    report
        .stats
        .check_complete(&report.url, &report.info)
        .map_err(|err| ReplayIncomplete {
            summary: Box::new(summary.clone()),
            source: err,
        })?;
    Ok(summary)
}

/// The input had problems after part of it was processed: carries what was done.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct ReplayIncomplete {
    pub summary: Box<ReplaySummary>,
    #[source]
    pub source: crate::source::SourceError,
}
