//! Wiring of the stages into threads and bounded queues.
//!
//! ```text
//! decode thread (per camera)            inference (caller's thread)         sinks
//!   source -> sampler -> letterbox  ──►  detector -> FrameSink::on_frame ──► JSONL, ...
//!        ▲  slots from the pool            │
//!        └──────── slot returned ──────────┘
//! ```
//!
//! Frames travel in pooled [`FrameSlot`]s: the letterboxed input, the metadata and the
//! detections vector are all reused, so the steady state allocates nothing per frame. The
//! pool bounds the queue. In [`Backpressure::Wait`] (replay) decode waits for a free slot so
//! no frame is lost and runs are deterministic; in [`Backpressure::DropOldest`] (live
//! cameras) decode never waits: it takes back the oldest frame still waiting for inference
//! and counts it as dropped.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, TryRecvError, bounded};

use crate::config::CameraConfig;
use crate::detect::Detector;
use crate::frame::{Detection, FrameMeta};
use crate::metrics::CameraMetrics;
use crate::model::InputSpec;
use crate::source::{
    DecodeStats, FrameSampler, Letterboxer, ModelInput, OpenOptions, SourceError, StreamInfo,
    VideoSource,
};

/// A reusable unit of work moving from decode to inference to the sinks.
#[derive(Debug)]
pub struct FrameSlot {
    pub meta: FrameMeta,
    /// One letterboxed input per detection region of the camera's plan (grown when a plan
    /// with more regions comes, then reused).
    pub inputs: Vec<ModelInput>,
    pub detections: Vec<Detection>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backpressure {
    /// Decode waits for inference: nothing is dropped (replay, tests).
    Wait,
    /// Decode never waits: the oldest waiting frame is dropped and counted (live cameras).
    DropOldest,
}

/// Creates the pool of `depth` slots and the bounded queue between decode and inference.
/// Dropping the producer ends the consumer's loop once the queue is drained; dropping the
/// consumer makes the producer stop at its next frame.
pub fn frame_queue(
    camera: &Arc<str>,
    spec: &InputSpec,
    depth: usize,
    backpressure: Backpressure,
) -> (FrameProducer, FrameConsumer) {
    let depth = depth.max(2);
    let (free_tx, free_rx) = bounded(depth);
    let (ready_tx, ready_rx) = bounded(depth);
    for _ in 0..depth {
        let slot = Box::new(FrameSlot {
            meta: FrameMeta {
                camera: Arc::clone(camera),
                seq: 0,
                pts_us: 0,
                at_us: 0,
                width: 0,
                height: 0,
                keyframe: false,
                unchanged: false,
                regions: crate::frame::whole_picture(),
                inferred: 0,
            },
            inputs: vec![ModelInput::new(spec)],
            detections: Vec::with_capacity(64),
        });
        // Cannot fail: the channel holds `depth` and exactly that many are sent.
        let _ = free_tx.try_send(slot);
    }
    let dropped = Arc::new(AtomicU64::new(0));
    let producer = FrameProducer {
        free_rx,
        ready_tx,
        stale_rx: ready_rx.clone(),
        backpressure,
        dropped: Arc::clone(&dropped),
        next_seq: std::cell::Cell::new(0),
    };
    let consumer = FrameConsumer {
        free_tx,
        ready_rx,
        dropped,
    };
    (producer, consumer)
}

/// The decode side of the queue.
pub struct FrameProducer {
    free_rx: Receiver<Box<FrameSlot>>,
    ready_tx: Sender<Box<FrameSlot>>,
    /// Lets the producer take back the oldest waiting frame under `DropOldest`.
    stale_rx: Receiver<Box<FrameSlot>>,
    backpressure: Backpressure,
    dropped: Arc<AtomicU64>,
    /// Sequence number of the next frame, kept across reconnects.
    next_seq: std::cell::Cell<u64>,
}

impl FrameProducer {
    /// A slot to fill, or `None` when the consumer has gone away.
    fn acquire(&self) -> Option<Box<FrameSlot>> {
        match self.backpressure {
            Backpressure::Wait => self.free_rx.recv().ok(),
            Backpressure::DropOldest => {
                match self.free_rx.try_recv() {
                    Ok(slot) => return Some(slot),
                    Err(TryRecvError::Disconnected) => return None,
                    Err(TryRecvError::Empty) => {}
                }
                if let Ok(stale) = self.stale_rx.try_recv() {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return Some(stale);
                }
                // Every slot is in inference or a sink: wait for the first to come back
                // (at most one inference) rather than spin.
                self.free_rx.recv().ok()
            }
        }
    }

    fn submit(&self, slot: Box<FrameSlot>) -> bool {
        self.ready_tx.send(slot).is_ok()
    }
}

/// The inference side of the queue.
pub struct FrameConsumer {
    free_tx: Sender<Box<FrameSlot>>,
    ready_rx: Receiver<Box<FrameSlot>>,
    dropped: Arc<AtomicU64>,
}

impl FrameConsumer {
    /// The next filled slot; `None` once the producer is gone and the queue is empty.
    pub fn next(&self) -> Option<Box<FrameSlot>> {
        self.ready_rx.recv().ok()
    }

    /// Gives a processed slot back to the pool.
    pub fn release(&self, slot: Box<FrameSlot>) {
        let _ = self.free_tx.try_send(slot);
    }

    /// Frames dropped under [`Backpressure::DropOldest`] so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The queue's receiving end, for waiting on several cameras at once.
    pub fn receiver(&self) -> &Receiver<Box<FrameSlot>> {
        &self.ready_rx
    }
}

/// What the decode side reports when it ends.
#[derive(Debug, Clone)]
pub struct DecodeReport {
    pub info: StreamInfo,
    pub stats: DecodeStats,
    pub sampled: u64,
    /// Sampled frames the motion gate kept from the detector.
    pub gated: u64,
    pub url: String,
    /// The detection regions of the last plan.
    pub plan: Option<crate::regions::RegionPlan>,
    /// Decoding stopped at the start because this stream lacks the pixels the zones'
    /// objects need (only with [`DecodeOptions::stop_when_short`]).
    pub short_of_pixels: bool,
}

/// Options of one camera's decode thread.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub camera: Arc<str>,
    pub url: String,
    pub open: OpenOptions,
    pub detect_fps: f64,
    pub clock: Clock,
    /// Play a file no faster than real time, as a camera would deliver it.
    pub pace: bool,
    pub metrics: Option<Arc<CameraMetrics>>,
    /// Keeps the stream's compressed packets for evidence clips and snapshots.
    pub ring: Option<crate::evidence::PacketRing>,
    /// Motion gating's settings; it watches the zones of `zones`.
    pub motion: Option<crate::config::MotionConfig>,
    /// The camera's `regions` setting, planned at each open with what `zones` needs.
    pub regions: crate::config::RegionsSetting,
    /// The camera's zones as the decode thread plans for them; replaced while it runs when
    /// the installer saves zones.
    pub zones: Arc<LiveZones>,
    /// Which stream this is, for logs and metrics: "main" or "sub".
    pub stream: &'static str,
    /// A sub-stream: end at once (`short_of_pixels`) when its plan says the zones' objects
    /// need more pixels than it has, so the caller can detect on the main stream instead.
    pub stop_when_short: bool,
}

/// What the decode side needs of a camera's zones: where they are, for the motion gate, and
/// what they need, for the detection regions.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneLayout {
    pub needs: Vec<crate::regions::ZoneNeed>,
    pub polygons: Vec<crate::zones::Polygon>,
}

impl ZoneLayout {
    pub fn of(camera: &CameraConfig) -> ZoneLayout {
        ZoneLayout {
            needs: crate::regions::zone_needs(camera),
            polygons: camera.zones.iter().map(crate::zones::polygon).collect(),
        }
    }
}

/// A camera's current [`ZoneLayout`], shared between the daemon (which replaces it when the
/// installer saves zones) and the decode thread (which re-plans its regions and motion gate
/// at the next frame, without reopening the stream). The version is read per frame: one
/// atomic load; the lock is taken only when it moved.
#[derive(Debug)]
pub struct LiveZones {
    version: AtomicU64,
    current: std::sync::Mutex<Arc<ZoneLayout>>,
}

impl LiveZones {
    pub fn new(layout: ZoneLayout) -> LiveZones {
        LiveZones {
            version: AtomicU64::new(0),
            current: std::sync::Mutex::new(Arc::new(layout)),
        }
    }

    /// Replaces the layout; decode threads pick it up at their next frame.
    pub fn replace(&self, layout: ZoneLayout) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *current = Arc::new(layout);
        self.version.fetch_add(1, Ordering::Release);
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The layout and its version.
    pub fn current(&self) -> (u64, Arc<ZoneLayout>) {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        (self.version(), Arc::clone(&current))
    }
}

/// Where a frame's wall-clock time comes from.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// Replay: the given time of the stream's first frame plus the frame's PTS, so runs are
    /// deterministic and as fast as the machine allows.
    Stream { start_at_us: i64 },
    /// Live: the time the frame arrived.
    Arrival,
}

impl DecodeOptions {
    pub fn for_camera(camera: &CameraConfig, url: &str, clock: Clock) -> DecodeOptions {
        DecodeOptions {
            camera: Arc::from(camera.id.as_str()),
            url: url.to_string(),
            open: OpenOptions::for_camera(camera),
            detect_fps: camera.detect_fps,
            clock,
            pace: false,
            metrics: None,
            ring: None,
            motion: camera.motion.enabled.then(|| camera.motion.clone()),
            regions: camera.regions.clone(),
            zones: Arc::new(LiveZones::new(ZoneLayout::of(camera))),
            stream: if camera.detect_url.as_deref() == Some(url) {
                "sub"
            } else {
                "main"
            },
            stop_when_short: false,
        }
    }
}

/// Plays a file no faster than real time: sleeps until `pts_us` of stream time has passed
/// since `started`.
fn wait_until_due(started: std::time::Instant, pts_us: i64) {
    let due = std::time::Duration::from_micros(pts_us.max(0) as u64);
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        std::thread::sleep(wait);
    }
}

/// Records a camera's main stream into its packet ring without decoding it, while detection
/// reads the sub-stream: clips and snapshots then come at full resolution for the price of
/// demuxing. Packets carry their arrival time, the clock detection uses live. `pace` plays a
/// file no faster than real time. Returns when the stream ends, fails, or `stop` is raised.
pub fn record_into_ring(
    url: &str,
    open: &OpenOptions,
    ring: &crate::evidence::PacketRing,
    pace: bool,
    stop: Arc<AtomicBool>,
    on_open: impl FnOnce(&StreamInfo),
) -> Result<DecodeStats, SourceError> {
    let mut source = VideoSource::open(url, open, stop)?;
    ring.start_stream(source.stream_setup());
    on_open(source.info());
    let started = std::time::Instant::now();
    let result = source.record_packets(|packet, pts_us| {
        if pace {
            wait_until_due(started, pts_us);
        }
        ring.push(packet, chrono::Utc::now().timestamp_micros());
    });
    ring.end_stream();
    result
}

/// A camera's detection regions for the stream being decoded: the plan, its rectangles as
/// frames carry them, and one letterbox (swscale context) per region.
struct PlannedRegions {
    plan: crate::regions::RegionPlan,
    rects: Arc<[crate::frame::BBox]>,
    letterboxers: Vec<Letterboxer>,
}

impl PlannedRegions {
    fn new(
        options: &DecodeOptions,
        zones: &ZoneLayout,
        spec: &InputSpec,
        width: u32,
        height: u32,
    ) -> Self {
        let plan = crate::regions::plan(
            &options.regions,
            &zones.needs,
            width,
            height,
            spec.width(),
            spec.height(),
        );
        let rects: Arc<[crate::frame::BBox]> = Arc::from(plan.rects());
        let letterboxers = plan
            .regions
            .iter()
            .map(|_| Letterboxer::new(spec))
            .collect();
        for line in plan.describe(options.detect_fps) {
            tracing::info!(camera = %options.camera, stream = options.stream, "detection regions: {line}");
        }
        if let Some(m) = &options.metrics
            && let Ok(mut regions) = m.regions.lock()
        {
            *regions = plan
                .regions
                .iter()
                .map(|r| crate::metrics::RegionInfo {
                    id: r.id.clone(),
                    stream: options.stream,
                    width: r.crop.width,
                    height: r.crop.height,
                    rect: [r.rect.x1, r.rect.y1, r.rect.x2, r.rect.y2],
                })
                .collect();
        }
        PlannedRegions {
            plan,
            rects,
            letterboxers,
        }
    }

    fn all(&self) -> u64 {
        crate::frame::all_regions(self.rects.len())
    }
}

/// Opens the stream, reports its facts through `on_open`, then decodes, samples and
/// letterboxes frames into slots (one input per detection region) until the stream ends,
/// `stop` is raised or the consumer goes away. Runs on the camera's own thread.
pub fn decode_into_queue(
    options: &DecodeOptions,
    spec: &InputSpec,
    queue: &FrameProducer,
    stop: Arc<AtomicBool>,
    on_open: impl FnOnce(&StreamInfo),
) -> Result<DecodeReport, SourceError> {
    let mut source = VideoSource::open(&options.url, &options.open, stop)?;
    let info = source.info().clone();
    let url = source.display_url().to_string();
    let (mut zones_version, mut zones) = options.zones.current();
    let mut regions = PlannedRegions::new(options, &zones, spec, info.width, info.height);
    if options.stop_when_short && !regions.plan.short_of_pixels.is_empty() {
        return Ok(DecodeReport {
            info,
            stats: DecodeStats::default(),
            sampled: 0,
            gated: 0,
            url,
            plan: Some(regions.plan),
            short_of_pixels: true,
        });
    }
    if let Some(ring) = &options.ring {
        ring.start_stream(source.stream_setup());
    }
    on_open(&info);
    let mut sampler = FrameSampler::new(options.detect_fps);
    let mut size = (info.width, info.height);
    let setup = options.ring.as_ref().map(|_| source.stream_setup());
    let mut gate = options.motion.as_ref().map(|config| {
        let mut gate = crate::motion::MotionGate::new(config.clone(), zones.polygons.clone())
            .staggered(&options.camera);
        gate.set_regions(&regions.rects);
        gate
    });
    let mut sampled = 0u64;
    let mut gated = 0u64;
    let mut scaler_error = None;
    let mut short_of_pixels = false;
    // Frames decoded in GPU memory come down only once sampled (see `cpu_frame`).
    let mut downloaded = ffmpeg_next::frame::Video::empty();
    let mut download_errors: (u64, Option<(f64, String)>) = (0, None);
    let started = std::time::Instant::now();
    let wall = |pts_us: i64| match options.clock {
        Clock::Stream { start_at_us } => start_at_us + pts_us,
        Clock::Arrival => chrono::Utc::now().timestamp_micros(),
    };
    let on_packet = |packet: &ffmpeg_next::Packet, pts_us: i64| {
        if let Some(ring) = &options.ring {
            ring.push(packet, wall(pts_us));
        }
    };
    let mut stats = source.run_with_packets(on_packet, |frame, time| {
        if let Some(m) = &options.metrics {
            m.frames_in.fetch_add(1, Ordering::Relaxed);
        }
        if (frame.width(), frame.height()) != size {
            // Cameras switch resolution in band when reconfigured; the regions, the
            // letterboxes and the motion gate follow each frame's size, the clip ring must
            // not mix sizes.
            tracing::info!(
                url = %url,
                from = %format!("{}x{}", size.0, size.1),
                to = %format!("{}x{}", frame.width(), frame.height()),
                "stream changed resolution"
            );
            size = (frame.width(), frame.height());
            regions = PlannedRegions::new(options, &zones, spec, size.0, size.1);
            if let Some(gate) = gate.as_mut() {
                gate.set_regions(&regions.rects);
            }
            if let (Some(ring), Some(setup)) = (&options.ring, &setup) {
                ring.restart_from_last_keyframe(setup.resized(size.0, size.1));
            }
        }
        if options.zones.version() != zones_version {
            // The installer saved this camera's zones: plan for them from this frame on.
            (zones_version, zones) = options.zones.current();
            tracing::info!(camera = %options.camera, stream = options.stream, "zones changed; detection regions planned again");
            regions = PlannedRegions::new(options, &zones, spec, size.0, size.1);
            if let Some(gate) = gate.as_mut() {
                gate.set_zones(&zones.polygons);
                gate.set_regions(&regions.rects);
            }
            if options.stop_when_short && !regions.plan.short_of_pixels.is_empty() {
                // The new zones need the main stream's pixels (the caller switches).
                short_of_pixels = true;
                return ControlFlow::Break(());
            }
        }
        if options.pace {
            wait_until_due(started, time.pts_us);
        }
        if !sampler.accept(time.pts_us) {
            return ControlFlow::Continue(());
        }
        let frame = match crate::source::cpu_frame(frame, &mut downloaded) {
            Ok(frame) => frame,
            Err(err) => {
                download_errors.0 += 1;
                download_errors.1.get_or_insert_with(|| {
                    (
                        time.pts_us as f64 / 1e6,
                        format!("cannot download the frame: {err}"),
                    )
                });
                return ControlFlow::Continue(());
            }
        };
        if let Some(m) = &options.metrics {
            let at_us = wall(time.pts_us);
            m.live.frame_at(at_us);
            // Only while someone is looking (the cameras view, `snapshot`): one conversion.
            if m.live.picture_wanted() {
                match crate::source::rgb_image(frame) {
                    Ok(image) => m.live.offer_picture(image, at_us),
                    Err(e) => tracing::debug!("latest picture: {e}"),
                }
            }
        }
        let mask = gate
            .as_mut()
            .map_or(regions.all(), |g| g.check_regions(frame, time.pts_us))
            & regions.all();
        let Some(mut slot) = queue.acquire() else {
            return ControlFlow::Break(());
        };
        slot.meta.seq = queue.next_seq.get();
        queue.next_seq.set(slot.meta.seq + 1);
        slot.meta.pts_us = time.pts_us;
        slot.meta.at_us = wall(time.pts_us);
        slot.meta.keyframe = time.keyframe;
        slot.meta.width = size.0;
        slot.meta.height = size.1;
        slot.meta.regions = Arc::clone(&regions.rects);
        slot.meta.inferred = mask;
        slot.meta.unchanged = mask == 0;
        if mask == 0 {
            // No inference, but the frame still carries time forward to the rules (a
            // dwell clock keeps running, a crowd that stands still stays a crowd).
            if let Some(m) = &options.metrics {
                m.frames_gated.fetch_add(1, Ordering::Relaxed);
            }
            gated += 1;
            return if queue.submit(slot) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            };
        }
        while slot.inputs.len() < regions.letterboxers.len() {
            // Only when a plan with more regions than this slot has seen arrives.
            slot.inputs.push(ModelInput::new(spec));
        }
        for (i, (region, letterboxer)) in regions
            .plan
            .regions
            .iter()
            .zip(&mut regions.letterboxers)
            .enumerate()
        {
            if mask & (1 << i) == 0 {
                continue;
            }
            if let Err(err) = letterboxer.run_crop(frame, Some(region.crop), &mut slot.inputs[i]) {
                // Decoding stops here, so the slot need not go back to the pool.
                scaler_error = Some(err);
                return ControlFlow::Break(());
            }
        }
        sampled += 1;
        if queue.submit(slot) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    })?;
    stats.decode_errors += download_errors.0;
    if stats.first_error.is_none() {
        stats.first_error = download_errors.1;
    }
    if let Some(ring) = &options.ring {
        ring.end_stream();
    }
    if let Some(err) = scaler_error {
        return Err(SourceError::Scaler {
            url,
            width: err.width,
            height: err.height,
            format: err.format,
        });
    }
    Ok(DecodeReport {
        // Read again: the first frame may have shown a hardware fallback.
        info: source.info().clone(),
        stats,
        sampled,
        gated,
        url,
        plan: Some(regions.plan),
        short_of_pixels,
    })
}

/// Consumes detected frames: replay's output and each of the daemon's cameras (tracking,
/// rules, delivery) are sinks.
pub trait FrameSink {
    /// The model ran on this frame's regions and took `took` (the daemon's inference-time
    /// metric). Not called for a frame the motion gate found still.
    fn on_inferred(&mut self, _meta: &FrameMeta, _took: std::time::Duration) {}
    /// Every frame, inferred or still (a still frame has no detections).
    fn on_frame(&mut self, meta: &FrameMeta, detections: &[Detection]) -> anyhow::Result<()>;
}

/// Runs inference on every queued slot until the decode side hangs up, feeding `sink`.
/// Returns the number of frames inferred.
pub fn infer_from_queue(
    queue: &FrameConsumer,
    detector: &mut Detector,
    sink: &mut dyn FrameSink,
) -> anyhow::Result<u64> {
    let mut frames = 0;
    while let Some(mut slot) = queue.next() {
        let result = infer_into(detector, &mut slot, sink);
        queue.release(slot);
        frames += u64::from(result?);
    }
    Ok(frames)
}

/// The step of every inference loop, replay's ([`infer_from_queue`]) and the daemon's
/// workers': one queued frame through the detector into `sink`. True when the model ran.
pub fn infer_into(
    detector: &mut Detector,
    slot: &mut FrameSlot,
    sink: &mut dyn FrameSink,
) -> anyhow::Result<bool> {
    let started = std::time::Instant::now();
    let ran = infer_slot(detector, slot)?;
    if ran {
        sink.on_inferred(&slot.meta, started.elapsed());
    }
    sink.on_frame(&slot.meta, &slot.detections)?;
    Ok(ran)
}

/// The slot's moved regions through the detector into its detections; a frame the motion
/// gate found still gets none. True when the model ran.
fn infer_slot(
    detector: &mut Detector,
    slot: &mut FrameSlot,
) -> Result<bool, crate::detect::DetectError> {
    let FrameSlot {
        meta,
        inputs,
        detections,
    } = slot;
    if meta.unchanged {
        detections.clear();
        return Ok(false);
    }
    detector.detect_regions(inputs, meta.inferred, detections)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(x: f32) -> ZoneLayout {
        ZoneLayout {
            needs: Vec::new(),
            polygons: vec![vec![(0.0, 0.0), (x, 0.0), (x, 1.0)]],
        }
    }

    #[test]
    fn live_zones_hand_a_saved_layout_to_the_decode_thread_once() {
        let live = LiveZones::new(layout(0.5));
        let (seen, current) = live.current();
        assert_eq!(*current, layout(0.5));
        // Nothing saved: the per-frame check sees the same version.
        assert_eq!(live.version(), seen);
        live.replace(layout(0.9));
        assert_ne!(live.version(), seen, "the decode thread notices the save");
        let (now, current) = live.current();
        assert_eq!(*current, layout(0.9));
        assert_eq!(live.version(), now, "and re-plans once");
    }

    fn queue(backpressure: Backpressure) -> (FrameProducer, FrameConsumer) {
        let spec = crate::model::ModelManifest::resolve("yolox_nano", std::path::Path::new("."))
            .unwrap()
            .input;
        frame_queue(&Arc::from("cam"), &spec, 3, backpressure)
    }

    /// Fills a slot as decode does (its sequence number) and queues it.
    fn decode_one(producer: &FrameProducer, seq: u64) -> bool {
        let Some(mut slot) = producer.acquire() else {
            return false;
        };
        slot.meta.seq = seq;
        producer.submit(slot)
    }

    #[test]
    fn a_live_queue_drops_the_oldest_waiting_frames_counts_them_and_never_blocks_decode() {
        let (producer, consumer) = queue(Backpressure::DropOldest);
        // Inference is stuck: ten frames decoded into a queue of three.
        for seq in 0..10 {
            assert!(decode_one(&producer, seq));
        }
        assert_eq!(consumer.dropped(), 7, "every frame past the pool's three");
        let waiting: Vec<u64> = std::iter::from_fn(|| {
            consumer.ready_rx.try_recv().ok().map(|slot| {
                let seq = slot.meta.seq;
                consumer.release(slot);
                seq
            })
        })
        .collect();
        assert_eq!(
            waiting,
            [7, 8, 9],
            "inference sees the newest frames, in order"
        );
        // With inference keeping up, nothing more is dropped.
        for seq in 10..20 {
            assert!(decode_one(&producer, seq));
            let slot = consumer.next().unwrap();
            assert_eq!(slot.meta.seq, seq);
            consumer.release(slot);
        }
        assert_eq!(consumer.dropped(), 7);
        // Inference gone: decode stops once the pool's slots are used up.
        drop(consumer);
        let decoded = (20..30)
            .take_while(|&seq| decode_one(&producer, seq))
            .count();
        assert!(decoded <= 3, "{decoded} frames decoded for nobody");
    }

    #[test]
    fn a_replay_queue_waits_and_drops_nothing() {
        let (producer, consumer) = queue(Backpressure::Wait);
        let decoder = std::thread::spawn(move || {
            for seq in 0..50 {
                assert!(decode_one(&producer, seq));
            }
        });
        let mut seen = Vec::new();
        while let Some(slot) = consumer.next() {
            seen.push(slot.meta.seq);
            consumer.release(slot);
        }
        decoder.join().unwrap();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
        assert_eq!(consumer.dropped(), 0);
    }
}
