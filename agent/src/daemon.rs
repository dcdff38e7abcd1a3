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

use crate::analytics::CameraAnalytics;
use crate::config::{CameraConfig, Config, DetectorConfig};
use crate::evidence::{EvidenceRequest, EvidenceWorker, PacketRing, Rings};
use crate::incidents::{EventState, IncidentEvent};
use crate::metrics::{CameraMetrics, Metrics};
use crate::model::InputSpec;
use crate::pipeline::{
    Backpressure, Clock, DecodeOptions, FrameConsumer, FrameProducer, LiveZones, ZoneLayout,
    decode_into_queue, frame_queue, record_into_ring,
};
use crate::publish::Delivery;
use crate::rules::CloseReason;
use crate::zones::Polygon;

/// How long the publisher may keep delivering after a stop signal.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);
/// Frames waiting per camera before the oldest is dropped.
const QUEUE_DEPTH: usize = 3;

/// Runs the daemon; with `cameras_on` false only the store, the publisher and the web page
/// run (reviewing recorded incidents, or a box whose cameras are down for maintenance).
///
/// SIGTERM/SIGINT stop it; SIGHUP (and a zone save in the console) re-reads the config file
/// and applies camera changes: added cameras start, removed ones stop, cameras whose zones
/// alone changed take the new zones without reopening their stream (unchanged zones keep
/// their tracks, dwell clocks and open incidents), otherwise changed ones restart, and
/// untouched ones keep running as they are. Other sections take effect on restart.
pub fn run(config_path: &std::path::Path, cameras_on: bool) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .context("installing signal handlers")?;
    let metrics = Arc::new(Metrics::new(&[]));

    let detector_config = DetectorConfig {
        confidence: config.detector.confidence.min(config.tracker.low_score),
        ..config.detector.clone()
    };
    let mut detectors = Vec::with_capacity(detector_config.workers);
    for _ in 0..detector_config.workers {
        detectors.push(crate::services::build_detector(
            &detector_config,
            &config.base_dir(),
        )?);
    }
    let wanted = |config: &Config| -> Vec<CameraConfig> {
        config
            .cameras
            .iter()
            .filter(|c| c.enabled && cameras_on)
            .cloned()
            .collect()
    };
    let manifest = Arc::clone(
        detectors
            .first()
            .context("detector.workers is at least 1")?
            .manifest(),
    );
    // The console's zone editor writes the config file and asks for the same reload as
    // SIGHUP.
    let editing = crate::web::ConfigEditing {
        file: Arc::new(crate::config_file::ConfigFile::new(config_path)),
        model: Arc::clone(&manifest),
        reload: Arc::clone(&reload),
    };
    let watched: Vec<String> = wanted(&config).into_iter().map(|c| c.id).collect();
    let services = crate::services::Services::start(
        &config,
        Arc::clone(&metrics),
        SHUTDOWN_DRAIN,
        &watched,
        Some(editing),
    )?;
    let liveness = Arc::new(crate::watchdog::Liveness::new(detectors.len()));
    let shared = Shared {
        liveness: Arc::clone(&liveness),
        spec: manifest.input.clone(),
        manifest,
        delivery: services.delivery.clone(),
        metrics,
        rings: Arc::clone(&services.rings),
        stop: Arc::clone(&stop),
    };
    let mut cameras = Vec::new();
    for camera in wanted(&config) {
        cameras.push(CameraRunner::start(&config, camera, &shared)?);
    }
    tracing::info!(
        cameras = cameras.len(),
        mqtt = config.mqtt.is_some(),
        data_dir = %config.storage.data_dir.display(),
        "gridwatch running"
    );
    crate::watchdog::ready(&format!("watching {} camera(s)", cameras.len()));
    let pinger = crate::watchdog::Pinger::start(liveness);

    loop {
        run_inference(
            &mut cameras,
            &mut detectors,
            &shared,
            services.evidence.as_ref(),
            &reload,
        );
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if reload.swap(false, Ordering::Relaxed) {
            match Config::load(config_path) {
                Ok(new) => apply_reload(&new, wanted(&new), &mut cameras, &shared),
                Err(e) => tracing::error!("config reload refused, keeping the running config: {e}"),
            }
        }
    }

    crate::watchdog::stopping();
    if let Some(pinger) = pinger {
        pinger.stop();
    }
    tracing::info!("stopping: inputs closed, delivering what is queued");
    for camera in cameras {
        camera.stop();
    }
    services.stop();
    Ok(())
}

/// What every camera shares.
struct Shared {
    /// Inference workers' beats, for the systemd watchdog.
    liveness: Arc<crate::watchdog::Liveness>,
    spec: InputSpec,
    manifest: Arc<crate::model::ModelManifest>,
    delivery: Delivery,
    metrics: Arc<Metrics>,
    rings: Rings,
    /// The daemon-wide stop (signals).
    stop: Arc<AtomicBool>,
}

/// One running camera: its decode thread and its side of the inference loop.
struct CameraRunner {
    config: CameraConfig,
    consumer: FrameConsumer,
    analytics: CameraAnalytics,
    metrics: Arc<CameraMetrics>,
    reported_drops: u64,
    /// Zone polygons by id, for annotating snapshots.
    zones: Vec<(String, Polygon)>,
    /// The zones the decode thread plans its regions and motion gate for.
    live_zones: Arc<LiveZones>,
    stop: Arc<AtomicBool>,
    /// The detection decode thread, and the main-stream recorder when there is a sub-stream.
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CameraRunner {
    fn start(
        config: &Config,
        camera: CameraConfig,
        shared: &Shared,
    ) -> anyhow::Result<CameraRunner> {
        let id: Arc<str> = Arc::from(camera.id.as_str());
        let (producer, consumer) =
            frame_queue(&id, &shared.spec, QUEUE_DEPTH, Backpressure::DropOldest);
        let mut analytics = CameraAnalytics::new(config, &camera, &shared.manifest)?;
        analytics.watch_from(chrono::Utc::now().timestamp_micros());
        if let Some(memory) = shared.delivery.suppressions() {
            analytics.set_suppressions(Arc::clone(memory));
        }
        let metrics = shared.metrics.register(&camera.id);
        metrics.live.set_config(&camera);
        let e = &config.evidence;
        let window = e.pre_roll + e.post_roll + Duration::from_secs(10);
        let ring = PacketRing::new(window.as_micros() as i64, 128 << 20);
        if let Ok(mut rings) = shared.rings.write() {
            rings.insert(camera.id.clone(), ring.clone());
        }
        // Raised when the camera is removed by a reload or the daemon stops.
        let stop = Arc::new(AtomicBool::new(false));
        // With a sub-stream, detection decodes the sub-stream and the main stream is only
        // recorded, for clips at full resolution; without one, detection's stream is recorded.
        let separate_main = camera.detection_url() != camera.url;
        let mut threads = Vec::with_capacity(2);
        if separate_main {
            threads.push(
                std::thread::Builder::new()
                    .name(format!("rec-{}", camera.id))
                    .spawn({
                        let camera = camera.clone();
                        let stop = Arc::clone(&stop);
                        let ring = ring.clone();
                        let metrics = Arc::clone(&metrics);
                        move || main_stream_loop(&camera, &stop, &ring, &metrics)
                    })?,
            );
        }
        let detection_ring = (!separate_main).then_some(ring);
        let live_zones = Arc::new(LiveZones::new(ZoneLayout::of(&camera)));
        let spawned = std::thread::Builder::new()
            .name(format!("cam-{}", camera.id))
            .spawn({
                let camera = camera.clone();
                let spec = shared.spec.clone();
                let stop = Arc::clone(&stop);
                let metrics = Arc::clone(&metrics);
                let live_zones = Arc::clone(&live_zones);
                move || {
                    camera_loop(
                        &camera,
                        &spec,
                        &producer,
                        &stop,
                        &metrics,
                        detection_ring,
                        live_zones,
                    )
                }
            });
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                for thread in threads {
                    let _ = thread.join();
                }
                return Err(e.into());
            }
        }
        let zones = crate::zones::camera_polygons(&camera);
        Ok(CameraRunner {
            config: camera,
            consumer,
            analytics,
            metrics,
            reported_drops: 0,
            zones,
            live_zones,
            stop,
            threads,
        })
    }

    /// Takes `camera`, which differs from the running config in its zones alone, without
    /// stopping anything: the analytics carry over what stayed (see
    /// [`CameraAnalytics::reconfigure`]) and the decode thread re-plans its regions from its
    /// next frame. Returns the closes of incidents whose zone changed or went away.
    fn apply_zones(
        &mut self,
        config: &Config,
        camera: CameraConfig,
        shared: &Shared,
    ) -> Result<Vec<IncidentEvent>, crate::config::ConfigError> {
        let now = chrono::Utc::now().timestamp_micros();
        let closed = self
            .analytics
            .reconfigure(config, &camera, &shared.manifest, now)?
            .to_vec();
        self.zones = crate::zones::camera_polygons(&camera);
        self.live_zones.replace(ZoneLayout::of(&camera));
        self.metrics.live.set_config(&camera);
        self.config = camera;
        Ok(closed)
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Does `new` differ from `old` in its zones alone (what a save in the zone editor does)?
fn only_zones_differ(old: &CameraConfig, new: &CameraConfig) -> bool {
    let without_zones = |c: &CameraConfig| CameraConfig {
        zones: Vec::new(),
        ..c.clone()
    };
    old.zones != new.zones && without_zones(old) == without_zones(new)
}

/// What a reload does to each camera, decided from the old and new camera lists alone.
#[derive(Debug, Default, PartialEq, Eq)]
struct ReloadPlan {
    /// Unchanged: untouched (same runner, same tracks).
    keep: Vec<String>,
    /// Only its zones changed (a console save): new zones applied in place.
    rezone: Vec<String>,
    /// Changed beyond its zones: stopped (its open incidents closed) and started again.
    restart: Vec<String>,
    /// No longer wanted: stopped, its open incidents closed, its metrics forgotten.
    remove: Vec<String>,
    /// New: started.
    add: Vec<String>,
}

/// Plans a reload from the running cameras' configs and the wanted ones (in order).
fn plan_reload(running: &[CameraConfig], wanted: &[CameraConfig]) -> ReloadPlan {
    let mut plan = ReloadPlan::default();
    for old in running {
        let id = old.id.clone();
        match wanted.iter().find(|w| w.id == old.id) {
            Some(new) if new == old => plan.keep.push(id),
            Some(new) if only_zones_differ(old, new) => plan.rezone.push(id),
            Some(_) => plan.restart.push(id),
            None => plan.remove.push(id),
        }
    }
    for new in wanted {
        if !running.iter().any(|old| old.id == new.id) {
            plan.add.push(new.id.clone());
        }
    }
    plan
}

/// Applies a reloaded camera list as [`plan_reload`] decides: stops removed and changed
/// cameras, starts added and changed ones, gives cameras whose zones alone changed their
/// new zones in place, leaves the rest untouched.
fn apply_reload(
    config: &Config,
    wanted: Vec<CameraConfig>,
    cameras: &mut Vec<CameraRunner>,
    shared: &Shared,
) {
    let running: Vec<CameraConfig> = cameras.iter().map(|c| c.config.clone()).collect();
    let plan = plan_reload(&running, &wanted);
    let mut kept = plan.keep.clone();
    let mut rezoned = Vec::new();
    for id in &plan.rezone {
        let (Some(runner), Some(new)) = (
            cameras.iter_mut().find(|c| c.config.id == *id),
            wanted.iter().find(|w| w.id == *id),
        ) else {
            continue;
        };
        match runner.apply_zones(config, new.clone(), shared) {
            Ok(closed) => {
                deliver(&shared.delivery, None, &runner.zones, closed);
                rezoned.push(id.clone());
            }
            // A zone the model cannot serve (a label it lacks): the camera keeps watching
            // with the zones it has.
            Err(e) => {
                tracing::error!(camera = %id, "cannot apply the new zones, keeping the old: {e}");
                kept.push(id.clone());
            }
        }
    }
    let mut stopped = Vec::new();
    for id in plan.restart.iter().chain(&plan.remove) {
        let Some(index) = cameras.iter().position(|c| c.config.id == *id) else {
            continue;
        };
        let runner = cameras.swap_remove(index);
        runner.stop();
        // Its analytics (tracks, dwell clocks) go with the runner: what it had open is
        // closed, so the restarted camera does not open a second incident for one stay.
        if let Err(e) = shared.delivery.close_open_incidents(
            id,
            CloseReason::Reconfigured,
            config.site.timezone,
        ) {
            tracing::error!(camera = %id, "cannot close the camera's open incidents: {e}");
        }
        if let Ok(mut rings) = shared.rings.write() {
            rings.remove(id);
        }
        stopped.push(id.clone());
    }
    for id in &plan.remove {
        shared.metrics.forget(id);
    }
    let mut started = Vec::new();
    for camera in wanted {
        if !(plan.restart.contains(&camera.id) || plan.add.contains(&camera.id)) {
            continue;
        }
        let id = camera.id.clone();
        match CameraRunner::start(config, camera, shared) {
            Ok(runner) => {
                cameras.push(runner);
                started.push(id);
            }
            Err(e) => tracing::error!(camera = %id, "cannot start camera after reload: {e}"),
        }
    }
    tracing::info!(
        kept = %kept.join(","),
        zones_applied = %rezoned.join(","),
        stopped = %stopped.join(","),
        started = %started.join(","),
        "config reloaded"
    );
}

/// Runs the inference loop on each detector's share of the cameras (contiguous groups, so
/// one camera's frames always go through the same worker, in order), until stop or reload.
fn run_inference(
    cameras: &mut [CameraRunner],
    detectors: &mut [crate::detect::Detector],
    shared: &Shared,
    evidence: Option<&EvidenceWorker>,
    reload: &AtomicBool,
) {
    let workers = detectors.len().min(cameras.len()).max(1);
    shared.liveness.set_active(workers);
    if workers == 1 {
        if let Some(detector) = detectors.first_mut() {
            inference_loop(0, cameras, detector, shared, evidence, reload);
        }
        return;
    }
    let per_worker = cameras.len().div_ceil(workers);
    std::thread::scope(|scope| {
        for (index, (group, detector)) in cameras
            .chunks_mut(per_worker)
            .zip(detectors.iter_mut())
            .enumerate()
        {
            let spawned = std::thread::Builder::new()
                .name(format!("infer-{index}"))
                .spawn_scoped(scope, move || {
                    inference_loop(index, group, detector, shared, evidence, reload);
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start inference worker {index}: {e}");
            }
        }
    });
}

fn inference_loop(
    worker: usize,
    cameras: &mut [CameraRunner],
    detector: &mut crate::detect::Detector,
    shared: &Shared,
    evidence: Option<&EvidenceWorker>,
    reload: &AtomicBool,
) {
    let mut last_watch = Instant::now();
    // Built once per camera set and reused: a Select allocates, this loop runs per frame.
    let receivers: Vec<_> = cameras
        .iter()
        .map(|c| c.consumer.receiver().clone())
        .collect();
    let mut select = Select::new();
    for receiver in &receivers {
        select.recv(receiver);
    }
    loop {
        shared.liveness.beat(worker);
        if shared.stop.load(Ordering::Relaxed) || reload.load(Ordering::Relaxed) {
            return;
        }
        if last_watch.elapsed() >= Duration::from_secs(1) || cameras.is_empty() {
            last_watch = Instant::now();
            // Events the store could not take (a full disk) are written once it can.
            shared.delivery.retry_held();
            let now = chrono::Utc::now().timestamp_micros();
            for camera in cameras.iter_mut() {
                let events: Vec<_> = camera.analytics.on_idle(now).to_vec();
                deliver(&shared.delivery, None, &camera.zones, events);
            }
        }
        if cameras.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let Ok(operation) = select.select_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let index = operation.index();
        let camera = &mut cameras[index];
        let Ok(mut slot) = operation.recv(&receivers[index]) else {
            // This camera's decode thread has ended (it only does when stopped).
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let mut sink = CameraSink {
            camera: &mut *camera,
            shared,
            evidence,
        };
        if let Err(e) = crate::pipeline::infer_into(detector, &mut slot, &mut sink) {
            tracing::error!(camera = %slot.meta.camera, "inference failed: {e}");
        }
        camera.consumer.release(slot);
        let dropped = camera.consumer.dropped();
        if dropped > camera.reported_drops {
            camera
                .metrics
                .frames_dropped
                .fetch_add(dropped - camera.reported_drops, Ordering::Relaxed);
            camera.reported_drops = dropped;
        }
    }
}

/// One camera of an inference worker as the shared inference step's sink: its tracks and
/// rules, its metrics, and delivery of what they raise.
struct CameraSink<'a> {
    camera: &'a mut CameraRunner,
    shared: &'a Shared,
    evidence: Option<&'a EvidenceWorker>,
}

impl crate::pipeline::FrameSink for CameraSink<'_> {
    fn on_inferred(&mut self, meta: &crate::frame::FrameMeta, took: Duration) {
        self.shared
            .metrics
            .record_inference(took.as_secs_f32() * 1000.0);
        let metrics = &self.camera.metrics;
        metrics.frames_inferred.fetch_add(1, Ordering::Relaxed);
        metrics.count_region_inferences(meta.inferred);
    }

    fn on_frame(
        &mut self,
        meta: &crate::frame::FrameMeta,
        detections: &[crate::frame::Detection],
    ) -> anyhow::Result<()> {
        let camera = &mut *self.camera;
        let events: Vec<_> = camera.analytics.on_frame(meta, detections).to_vec();
        for crossing in camera.analytics.crossings() {
            self.shared
                .delivery
                .record_crossing(&camera.config.id, crossing);
        }
        camera.metrics.live.set_tracks(camera.analytics.tracks());
        deliver(&self.shared.delivery, self.evidence, &camera.zones, events);
        Ok(())
    }
}

fn deliver(
    delivery: &Delivery,
    evidence: Option<&EvidenceWorker>,
    zones: &[(String, Polygon)],
    events: Vec<IncidentEvent>,
) {
    for mut event in events {
        tracing::info!(
            kind = event.kind.as_str(),
            camera = %event.camera.id,
            state = ?event.state,
            "{}",
            event.description
        );
        delivery.record(&mut event);
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

/// Keeps one camera's detection stream open: decodes into the queue, reopens after errors,
/// and plays files in a loop at real time (a file stands in for a camera in tests and demos).
fn camera_loop(
    camera: &CameraConfig,
    spec: &InputSpec,
    producer: &FrameProducer,
    stop: &Arc<AtomicBool>,
    metrics: &Arc<CameraMetrics>,
    ring: Option<PacketRing>,
    live_zones: Arc<LiveZones>,
) {
    let url = camera.detection_url();
    let is_file = !url.contains("://");
    let mut options = DecodeOptions::for_camera(camera, url, Clock::Arrival);
    options.zones = live_zones;
    options.pace = is_file;
    options.metrics = Some(Arc::clone(metrics));
    options.ring = ring;
    // With a sub-stream, detection reads it while every region gets the pixels its objects
    // need there; the first open that finds one short moves detection to the main stream
    // for good (its keyframes with `decode = "keyframes"`). One stream serves all regions of
    // a camera: a frame's detections come from one picture at one instant.
    options.stop_when_short = camera.detect_url.is_some();
    keep_open(&camera.id, "stream", is_file, stop, || {
        metrics.connects.fetch_add(1, Ordering::Relaxed);
        let on_open = |stream: &'static str| {
            move |info: &crate::source::StreamInfo| {
                tracing::info!(camera = %camera.id, codec = %info.codec, decoder = %info.decoder, width = info.width, height = info.height, stream, "stream open");
                metrics.live.opened(
                    stream,
                    true,
                    stream_desc(info),
                    chrono::Utc::now().timestamp_micros(),
                );
            }
        };
        let result =
            detect_stream_once(camera, &mut options, spec, producer, stop, metrics, on_open);
        let now = chrono::Utc::now().timestamp_micros();
        match &result {
            Err(e) => metrics.live.failed(&e.to_string(), now),
            Ok(()) if !is_file => metrics.live.failed("the stream ended", now),
            Ok(()) => {}
        }
        result
    });
}

fn stream_desc(info: &crate::source::StreamInfo) -> crate::live::StreamDesc {
    crate::live::StreamDesc {
        codec: info.codec.to_string(),
        decoder: info.decoder.to_string(),
        decoder_why: info.decoder_why.clone(),
        width: info.width,
        height: info.height,
    }
}

/// Opens detection's stream and decodes it until it ends: the sub-stream, or the main
/// stream once the sub-stream is found short of pixels for the camera's regions.
fn detect_stream_once<F: Fn(&crate::source::StreamInfo)>(
    camera: &CameraConfig,
    options: &mut DecodeOptions,
    spec: &InputSpec,
    producer: &FrameProducer,
    stop: &Arc<AtomicBool>,
    metrics: &Arc<CameraMetrics>,
    on_open: impl Fn(&'static str) -> F,
) -> Result<(), crate::source::SourceError> {
    let mut report = decode_into_queue(
        options,
        spec,
        producer,
        Arc::clone(stop),
        on_open(options.stream),
    )?;
    if report.short_of_pixels {
        let why = report.plan.as_ref().and_then(|p| p.short_reason());
        tracing::warn!(
            camera = %camera.id,
            "detecting on the main stream, not the sub-stream: {}",
            why.unwrap_or_default()
        );
        options.url = camera.url.clone();
        options.stream = "main";
        options.stop_when_short = false;
        report = decode_into_queue(options, spec, producer, Arc::clone(stop), on_open("main"))?;
    }
    metrics
        .decode_errors
        .fetch_add(report.stats.decode_errors, Ordering::Relaxed);
    Ok(())
}

/// Keeps a camera's main stream recorded into its packet ring while detection reads the
/// sub-stream (see [`record_into_ring`]).
fn main_stream_loop(
    camera: &CameraConfig,
    stop: &Arc<AtomicBool>,
    ring: &PacketRing,
    metrics: &CameraMetrics,
) {
    let is_file = !camera.url.contains("://");
    let open = crate::source::OpenOptions::for_camera(camera);
    keep_open(&camera.id, "main stream", is_file, stop, || {
        record_into_ring(&camera.url, &open, ring, is_file, Arc::clone(stop), |info| {
            tracing::info!(camera = %camera.id, codec = %info.codec, width = info.width, height = info.height, "main stream open for clips");
            let now = chrono::Utc::now().timestamp_micros();
            metrics.live.opened("main", false, stream_desc(info), now);
        })
        .map(drop)
    });
}

/// How long to wait before reopening a stream: after an error, 1 s doubling to 30 s, each
/// wait a random point in the upper half of its step (`jitter` in 0..=1 picks it), so a
/// compound's cameras that dropped together do not all reconnect in the same instant; a
/// stream that was up for 30 s or more failed afresh and starts again at 1 s; after a clean
/// end a live stream reopens after the current step, a file (which loops) after 500 ms.
#[derive(Debug)]
struct Reconnect {
    is_file: bool,
    step: Duration,
}

impl Reconnect {
    const FIRST: Duration = Duration::from_secs(1);
    const LONGEST: Duration = Duration::from_secs(30);
    const FILE: Duration = Duration::from_millis(500);

    fn new(is_file: bool) -> Reconnect {
        Reconnect {
            is_file,
            step: Reconnect::FIRST,
        }
    }

    /// The wait after an attempt that ran for `ran_for` and ended cleanly (`failed` false)
    /// or with an error.
    fn wait_after(&mut self, ran_for: Duration, failed: bool, jitter: f64) -> Duration {
        if ran_for >= Reconnect::LONGEST {
            self.step = Reconnect::FIRST;
        }
        if !failed {
            self.step = Reconnect::FIRST;
            return if self.is_file {
                Reconnect::FILE
            } else {
                self.step
            };
        }
        let wait = self.step.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        self.step = (self.step * 2).min(Reconnect::LONGEST);
        if self.is_file {
            wait.min(Reconnect::FILE)
        } else {
            wait
        }
    }
}

/// Time as [`keep_open`] sees it: when an attempt starts and ends, the jitter of a wait,
/// and the wait itself (cut short by a stop). Tests give a simulated one.
trait ReconnectTime {
    fn now(&self) -> Instant;
    /// A uniform draw in 0..=1.
    fn jitter(&self) -> f64;
    /// Waits `wait`, or less once `stop` is set.
    fn wait(&self, wait: Duration, stop: &AtomicBool);
}

/// The wall clock, `rand` and short sleeps (a stop is seen within 100 ms).
struct WallTime;

impl ReconnectTime for WallTime {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn jitter(&self) -> f64 {
        use rand::Rng as _;
        rand::rng().random()
    }

    fn wait(&self, wait: Duration, stop: &AtomicBool) {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs `attempt` (open and read a stream until it ends) until `stop`, waiting between
/// attempts as [`Reconnect`] says; each new error is logged once.
fn keep_open(
    camera_id: &str,
    what: &str,
    is_file: bool,
    stop: &Arc<AtomicBool>,
    attempt: impl FnMut() -> Result<(), crate::source::SourceError>,
) {
    keep_open_with(camera_id, what, is_file, stop, attempt, &WallTime);
}

/// [`keep_open`] on the given time (the seam the tests use).
fn keep_open_with(
    camera_id: &str,
    what: &str,
    is_file: bool,
    stop: &AtomicBool,
    mut attempt: impl FnMut() -> Result<(), crate::source::SourceError>,
    time: &impl ReconnectTime,
) {
    let stopped = || stop.load(Ordering::Relaxed);
    let mut reconnect = Reconnect::new(is_file);
    let mut last_error = String::new();
    while !stopped() {
        let began = time.now();
        let result = attempt();
        match &result {
            Ok(()) => {
                last_error.clear();
                if !is_file {
                    tracing::warn!(camera = %camera_id, "{what} ended; reconnecting");
                }
            }
            Err(e) => {
                let text = e.to_string();
                if text != last_error {
                    tracing::error!(camera = %camera_id, "{text}; retrying");
                    last_error = text;
                }
            }
        }
        let ran_for = time.now().saturating_duration_since(began);
        let wait = reconnect.wait_after(ran_for, result.is_err(), time.jitter());
        time.wait(wait, stop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn camera(extra: &str) -> CameraConfig {
        let text = format!(
            "[site]\nid = \"unit\"\ngrid_code = \"440305001001\"\n\n[[cameras]]\nid = \"lot\"\nurl = \"rtsp://10.0.0.2/stream1\"\n{extra}"
        );
        let config = Config::parse(&text, Path::new("/etc/gridwatch/config.toml")).unwrap();
        config.cameras[0].clone()
    }

    const ZONE: &str = "\n[[cameras.zones]]\nid = \"lane\"\npolygon = [[0, 0], [1, 0], [1, 1]]\n";

    #[test]
    fn a_zone_save_is_applied_in_place_and_other_changes_restart_the_camera() {
        let old = camera(ZONE);
        assert!(!only_zones_differ(&old, &old), "nothing changed");
        assert!(only_zones_differ(&old, &camera("")));
        assert!(only_zones_differ(
            &old,
            &camera(&ZONE.replace("lane", "aisle"))
        ));
        assert!(!only_zones_differ(
            &old,
            &camera(&format!("detect_fps = 3\n{ZONE}"))
        ));
        assert!(!only_zones_differ(&old, &camera("detect_fps = 3\n")));
    }

    #[test]
    fn a_reload_keeps_rezones_restarts_removes_and_adds_by_camera() {
        let with_id = |id: &str, extra: &str| CameraConfig {
            id: id.into(),
            ..camera(extra)
        };
        let running = [
            with_id("same", ZONE),
            with_id("zoned", ZONE),
            with_id("faster", ZONE),
            with_id("gone", ZONE),
        ];
        let wanted = [
            with_id("new", ""),
            with_id("faster", &format!("detect_fps = 3\n{ZONE}")),
            with_id("zoned", &ZONE.replace("lane", "aisle")),
            with_id("same", ZONE),
        ];
        let plan = plan_reload(&running, &wanted);
        assert_eq!(
            plan,
            ReloadPlan {
                keep: vec!["same".into()],
                rezone: vec!["zoned".into()],
                restart: vec!["faster".into()],
                remove: vec!["gone".into()],
                add: vec!["new".into()],
            }
        );
        // The same list again changes nothing; an empty one removes everything.
        let again = plan_reload(&wanted, &wanted);
        assert_eq!(again.keep.len(), 4);
        assert_eq!(plan_reload(&wanted, &[]).remove.len(), 4);
    }

    #[test]
    fn reconnects_back_off_from_1_to_30_seconds_with_jitter_and_reset_after_a_long_run() {
        let mut live = Reconnect::new(false);
        let failed_at_once = |r: &mut Reconnect, jitter| r.wait_after(Duration::ZERO, true, jitter);
        // The upper end of each step (jitter 1), then the lower end of the next (jitter 0).
        let steps: Vec<f64> = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
            .iter()
            .map(|&j| failed_at_once(&mut live, j).as_secs_f64())
            .collect();
        assert_eq!(steps, [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]);
        assert_eq!(failed_at_once(&mut live, 0.0), Duration::from_secs(15));
        // Every wait lies in the upper half of its step.
        for jitter in [0.0, 0.3, 0.99] {
            let wait = failed_at_once(&mut live, jitter);
            assert!((15.0..=30.0).contains(&wait.as_secs_f64()), "{wait:?}");
        }
        // A stream up for a minute that then fails is a fresh outage: 1 s again.
        assert_eq!(
            live.wait_after(Duration::from_secs(60), true, 1.0),
            Duration::from_secs(1)
        );
        assert_eq!(failed_at_once(&mut live, 1.0), Duration::from_secs(2));
        // A clean end resets the step and reopens after it.
        assert_eq!(
            live.wait_after(Duration::from_secs(5), false, 0.7),
            Duration::from_secs(1)
        );
        assert_eq!(failed_at_once(&mut live, 1.0), Duration::from_secs(1));

        // A file loops after 500 ms and never waits longer, however often it fails.
        let mut file = Reconnect::new(true);
        assert_eq!(
            file.wait_after(Duration::from_secs(3), false, 0.5),
            Duration::from_millis(500)
        );
        for _ in 0..8 {
            assert!(failed_at_once(&mut file, 1.0) <= Duration::from_millis(500));
        }
    }

    /// Simulated time: waits and attempts move it on, nothing sleeps.
    struct SimulatedTime {
        start: Instant,
        elapsed: std::cell::Cell<Duration>,
        waits: std::cell::RefCell<Vec<Duration>>,
    }

    impl SimulatedTime {
        fn advance(&self, by: Duration) {
            self.elapsed.set(self.elapsed.get() + by);
        }
    }

    impl ReconnectTime for SimulatedTime {
        fn now(&self) -> Instant {
            self.start + self.elapsed.get()
        }

        fn jitter(&self) -> f64 {
            1.0
        }

        fn wait(&self, wait: Duration, _stop: &AtomicBool) {
            self.waits.borrow_mut().push(wait);
            self.advance(wait);
        }
    }

    #[test]
    fn a_camera_that_keeps_failing_is_retried_with_growing_waits_until_it_stays_up() {
        let time = SimulatedTime {
            start: Instant::now(),
            elapsed: Default::default(),
            waits: Default::default(),
        };
        let stop = AtomicBool::new(false);
        let unreachable = || crate::source::SourceError::Open {
            url: "rtsp://10.0.0.2/stream1".into(),
            reason: "Connection refused".into(),
        };
        let mut attempts = 0;
        keep_open_with(
            "lot",
            "stream",
            false,
            &stop,
            || {
                attempts += 1;
                match attempts {
                    // Down for a while: four failed opens.
                    1..=4 => Err(unreachable()),
                    // Up for ten minutes, then the switch reboots.
                    5 => {
                        time.advance(Duration::from_secs(600));
                        Err(unreachable())
                    }
                    6 => Err(unreachable()),
                    _ => {
                        stop.store(true, Ordering::Relaxed);
                        Ok(())
                    }
                }
            },
            &time,
        );
        assert_eq!(attempts, 7);
        let waits: Vec<u64> = time.waits.borrow().iter().map(|w| w.as_secs()).collect();
        // 1, 2, 4, 8 s; after a long run a fresh outage starts again at 1 s, then 2 s.
        assert_eq!(waits[..6], [1, 2, 4, 8, 1, 2]);
    }
}
