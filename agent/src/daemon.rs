//! `gridwatch run`: the daemon. Every enabled camera is decoded on its own thread (never
//! waiting on inference: the oldest waiting frame is dropped and counted instead); one
//! inference loop serves all cameras, runs each camera's analytics and hands incident
//! events to the store and the publisher. SIGTERM or SIGINT stops the inputs, lets the
//! publisher deliver what it can for a few seconds, announces `offline`, and exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossbeam_channel::Select;

use std::collections::HashMap;

use crate::analytics::CameraAnalytics;
use crate::config::{CameraConfig, Config, DetectorConfig};
use crate::evidence::{EvidenceContext, EvidenceRequest, EvidenceWorker, PacketRing};
use crate::incidents::EventState;
use crate::metrics::{CameraMetrics, Metrics};
use crate::model::InputSpec;
use crate::pipeline::{
    Backpressure, Clock, DecodeOptions, FrameConsumer, FrameProducer, decode_into_queue,
    frame_queue,
};
use crate::publish::Delivery;

/// How long the publisher may keep delivering after a stop signal.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);
/// Frames waiting per camera before the oldest is dropped.
const QUEUE_DEPTH: usize = 3;

/// Runs the daemon; with `cameras` false only the store, the publisher and the web page run
/// (reviewing recorded incidents, or a box whose cameras are down for maintenance).
pub fn run(config: Config, cameras_on: bool) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let cameras: Vec<CameraConfig> = config
        .cameras
        .iter()
        .filter(|c| c.enabled && cameras_on)
        .cloned()
        .collect();
    let camera_ids: Vec<String> = cameras.iter().map(|c| c.id.clone()).collect();
    let metrics = Arc::new(Metrics::new(&camera_ids));

    let detector_config = DetectorConfig {
        confidence: config.detector.confidence.min(config.tracker.low_score),
        ..config.detector.clone()
    };
    let mut detector = crate::cli::build_detector(&detector_config, &config.base_dir())?;
    let (delivery, background) =
        crate::cli::start_delivery_with(&config, true, SHUTDOWN_DRAIN, Arc::clone(&metrics))?;
    let delivery = delivery.context("the daemon always has a store")?;
    let web = match &config.web {
        Some(web) => Some(crate::web::start(
            &config,
            web,
            delivery.clone(),
            Arc::clone(&metrics),
        )?),
        None => None,
    };

    let spec = detector.manifest().input.clone();
    let now = chrono::Utc::now().timestamp_micros();
    let e = &config.evidence;
    let window = e.pre_roll + e.post_roll + Duration::from_secs(10);
    let rings: HashMap<String, PacketRing> = cameras
        .iter()
        .map(|c| {
            (
                c.id.clone(),
                PacketRing::new(window.as_micros() as i64, 128 << 20),
            )
        })
        .collect();
    let evidence = if e.enabled {
        Some(EvidenceWorker::start(EvidenceContext {
            config: e.clone(),
            data_dir: config.storage.data_dir.clone(),
            rings: rings.clone(),
            delivery: delivery.clone(),
            offset: config.site.timezone,
        })?)
    } else {
        None
    };
    let mut lanes = Vec::new();
    let mut decoders = Vec::new();
    for camera in &cameras {
        let id: Arc<str> = Arc::from(camera.id.as_str());
        let (producer, consumer) = frame_queue(&id, &spec, QUEUE_DEPTH, Backpressure::DropOldest);
        let mut analytics = CameraAnalytics::new(&config, camera, detector.manifest())?;
        analytics.watch_from(now);
        if let Some(memory) = &delivery.suppressions {
            analytics.set_suppressions(Arc::clone(memory));
        }
        let camera_metrics = metrics.camera(&camera.id).unwrap_or_default();
        lanes.push(Lane {
            consumer,
            analytics,
            metrics: Arc::clone(&camera_metrics),
            reported_drops: 0,
            zones: camera
                .zones
                .iter()
                .map(|z| {
                    (
                        z.id.clone(),
                        z.polygon.iter().map(|p| (p[0], p[1])).collect(),
                    )
                })
                .collect(),
        });
        let ring = rings.get(&camera.id).cloned();
        let thread = std::thread::Builder::new()
            .name(format!("cam-{}", camera.id))
            .spawn({
                let camera = camera.clone();
                let spec = spec.clone();
                let stop = Arc::clone(&stop);
                move || camera_loop(&camera, &spec, &producer, &stop, &camera_metrics, ring)
            })?;
        decoders.push(thread);
    }
    tracing::info!(
        cameras = cameras.len(),
        mqtt = config.mqtt.is_some(),
        data_dir = %config.storage.data_dir.display(),
        "gridwatch running"
    );

    inference_loop(
        &mut lanes,
        &mut detector,
        &delivery,
        evidence.as_ref(),
        &metrics,
        &stop,
    );

    tracing::info!("stopping: inputs closed, delivering what is queued");
    for thread in decoders {
        let _ = thread.join();
    }
    if let Some(evidence) = evidence {
        evidence.finish();
    }
    if let Some(web) = web {
        web.stop();
    }
    if let Some(background) = background {
        let waiting = background.stop();
        if waiting > 0 {
            tracing::info!(
                events = waiting,
                "events kept in the outbox for the next start"
            );
        }
    }
    Ok(())
}

/// One camera's side of the inference loop.
struct Lane {
    consumer: FrameConsumer,
    analytics: CameraAnalytics,
    metrics: Arc<CameraMetrics>,
    reported_drops: u64,
    /// Zone polygons by id, for annotating snapshots.
    zones: Vec<(String, Vec<(f32, f32)>)>,
}

fn inference_loop(
    lanes: &mut [Lane],
    detector: &mut crate::detect::Detector,
    delivery: &Delivery,
    evidence: Option<&EvidenceWorker>,
    metrics: &Metrics,
    stop: &AtomicBool,
) {
    let mut last_watch = Instant::now();
    // Built once and reused: a Select allocates, and this loop runs per frame.
    let receivers: Vec<_> = lanes
        .iter()
        .map(|l| l.consumer.receiver().clone())
        .collect();
    let mut select = Select::new();
    for receiver in &receivers {
        select.recv(receiver);
    }
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if last_watch.elapsed() >= Duration::from_secs(1) || lanes.is_empty() {
            last_watch = Instant::now();
            let now = chrono::Utc::now().timestamp_micros();
            for lane in lanes.iter_mut() {
                let events: Vec<_> = lane.analytics.on_idle(now).to_vec();
                deliver(delivery, None, &lane.zones, events);
            }
        }
        if lanes.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let Ok(operation) = select.select_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let index = operation.index();
        let lane = &mut lanes[index];
        let Ok(mut slot) = operation.recv(&receivers[index]) else {
            // This camera's decode thread has ended (it only does at shutdown).
            continue;
        };
        let started = Instant::now();
        let crate::pipeline::FrameSlot {
            meta,
            input,
            detections,
        } = &mut *slot;
        match detector.detect(input, detections) {
            Ok(()) => {
                if !meta.unchanged {
                    metrics.record_inference(started.elapsed().as_secs_f32() * 1000.0);
                    lane.metrics.frames_inferred.fetch_add(1, Ordering::Relaxed);
                }
                let events: Vec<_> = lane.analytics.on_frame(meta, detections).to_vec();
                deliver(delivery, evidence, &lane.zones, events);
            }
            Err(e) => tracing::error!(camera = %meta.camera, "inference failed: {e}"),
        }
        lane.consumer.release(slot);
        let dropped = lane.consumer.dropped();
        if dropped > lane.reported_drops {
            lane.metrics
                .frames_dropped
                .fetch_add(dropped - lane.reported_drops, Ordering::Relaxed);
            lane.reported_drops = dropped;
        }
    }
}

fn deliver(
    delivery: &Delivery,
    evidence: Option<&EvidenceWorker>,
    zones: &[(String, Vec<(f32, f32)>)],
    events: Vec<crate::incidents::IncidentEvent>,
) {
    for mut event in events {
        tracing::info!(
            kind = event.kind.as_str(),
            camera = %event.camera.id,
            state = ?event.state,
            "{}",
            event.description
        );
        if let Err(e) = delivery.record(&mut event) {
            tracing::error!(incident = %event.incident_id, "cannot store the event: {e}");
        }
        if let Some(worker) = evidence
            && event.state == EventState::Opened
        {
            let polygon = event
                .zone
                .as_ref()
                .and_then(|z| zones.iter().find(|(id, _)| *id == z.id))
                .map(|(_, p)| p.clone());
            worker.request(EvidenceRequest::for_event(&event, polygon));
        }
    }
}

/// Keeps one camera's stream open: decodes into the queue, reopens after errors with
/// exponential backoff, and plays files in a loop at real time (a file stands in for a
/// camera in tests and demos).
fn camera_loop(
    camera: &CameraConfig,
    spec: &InputSpec,
    producer: &FrameProducer,
    stop: &Arc<AtomicBool>,
    metrics: &Arc<CameraMetrics>,
    ring: Option<PacketRing>,
) {
    let url = camera.detection_url();
    let is_file = !url.contains("://");
    let mut options = DecodeOptions::for_camera(camera, url, Clock::Arrival);
    options.pace = is_file;
    options.metrics = Some(Arc::clone(metrics));
    options.ring = ring;
    let mut backoff = Duration::from_secs(1);
    let mut last_error = String::new();
    while !stop.load(Ordering::Relaxed) {
        metrics.connects.fetch_add(1, Ordering::Relaxed);
        match decode_into_queue(&options, spec, producer, Arc::clone(stop), |info| {
            tracing::info!(camera = %camera.id, codec = %info.codec, width = info.width, height = info.height, "stream open");
        }) {
            Ok(report) => {
                metrics
                    .decode_errors
                    .fetch_add(report.stats.decode_errors, Ordering::Relaxed);
                backoff = Duration::from_secs(1);
                last_error.clear();
                if !is_file {
                    tracing::warn!(camera = %camera.id, "stream ended; reconnecting");
                }
            }
            Err(e) => {
                let text = e.to_string();
                if text != last_error {
                    tracing::error!(camera = %camera.id, "{text}; retrying");
                    last_error = text;
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        let deadline = Instant::now()
            + backoff.min(if is_file {
                Duration::from_millis(500)
            } else {
                backoff
            });
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
