//! Live counters of the running agent, shared by the pipeline threads (which count) and the
//! heartbeat and `/metrics` (which read). Plain atomics: counting costs nothing per frame.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Counters of one camera.
#[derive(Debug, Default)]
pub struct CameraMetrics {
    /// Frames decoded.
    pub frames_in: AtomicU64,
    /// Frames the detector ran on.
    pub frames_inferred: AtomicU64,
    /// Frames dropped because inference was behind.
    pub frames_dropped: AtomicU64,
    /// Sampled frames the motion gate kept from the detector (nothing moved).
    pub frames_gated: AtomicU64,
    pub decode_errors: AtomicU64,
    /// Times the stream was (re)opened.
    pub connects: AtomicU64,
    /// Inferences per detection region (`r0`, `r1`, ... of the camera's plan).
    pub region_inferences: [AtomicU64; crate::regions::MAX_REGIONS],
    /// The current plan: per region its id, source stream and pixels, for `/metrics` labels.
    pub regions: Mutex<Vec<RegionInfo>>,
    /// Connection, streams and the latest picture, for the cameras view.
    pub live: crate::live::CameraLive,
}

/// A detection region as `/metrics` labels it.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionInfo {
    pub id: String,
    /// "main" or "sub": the stream it reads.
    pub stream: &'static str,
    pub width: u32,
    pub height: u32,
    /// Where it lies: [x1, y1, x2, y2] in fractions of the picture.
    pub rect: [f32; 4],
}

impl CameraMetrics {
    /// Counts one inference of each region whose bit is set in `mask`.
    pub fn count_region_inferences(&self, mask: u64) {
        for (i, counter) in self.region_inferences.iter().enumerate() {
            if mask & (1 << i) != 0 {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Whether the database takes writes. When it cannot (a full disk), incident events wait
/// in memory (`publish::Delivery`) and are retried; this says so to `/healthz`, `/metrics`
/// and the MQTT heartbeat and status, and makes the log say it once per episode.
#[derive(Debug, Default)]
pub struct StoreHealth {
    failing: AtomicBool,
    /// Failed writes of events or evidence rows, all time.
    pub write_failures_total: AtomicU64,
    /// Events held in memory now, waiting for the store.
    pub held_events: AtomicU64,
    /// Held events given up because the memory bound was reached (oldest `updated` first).
    pub dropped_total: AtomicU64,
    last_error: Mutex<String>,
}

/// What is shown of the store's health.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct StoreHealthReport {
    pub ok: bool,
    pub held_events: u64,
    pub write_failures_total: u64,
    pub dropped_total: u64,
    /// The latest write error, while failing.
    pub error: Option<String>,
}

impl StoreHealth {
    /// A write failed. True when this starts an episode (the caller logs it, once).
    pub fn failed(&self, error: &str) -> bool {
        self.write_failures_total.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            last.clear();
            last.push_str(error);
        }
        !self.failing.swap(true, Ordering::Relaxed)
    }

    /// Writes work again. True when this ends an episode.
    pub fn recovered(&self) -> bool {
        self.failing.swap(false, Ordering::Relaxed)
    }

    pub fn is_ok(&self) -> bool {
        !self.failing.load(Ordering::Relaxed)
    }

    pub fn report(&self) -> StoreHealthReport {
        let ok = self.is_ok();
        StoreHealthReport {
            ok,
            held_events: self.held_events.load(Ordering::Relaxed),
            write_failures_total: self.write_failures_total.load(Ordering::Relaxed),
            dropped_total: self.dropped_total.load(Ordering::Relaxed),
            error: if ok {
                None
            } else {
                self.last_error.lock().ok().map(|e| e.clone())
            },
        }
    }
}

/// Recent inference latencies, for percentiles.
#[derive(Debug)]
struct LatencyWindow {
    samples: Vec<f32>,
    next: usize,
}

#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    cameras: std::sync::RwLock<Vec<(String, Arc<CameraMetrics>)>>,
    latencies: Mutex<LatencyWindow>,
    pub inferences: AtomicU64,
    /// Cumulative histogram of inference latency: counts per bucket of
    /// [`LATENCY_BUCKETS_MS`] (each count includes the faster buckets' ones when read out),
    /// and the sum in microseconds.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_MS.len()],
    latency_sum_us: AtomicU64,
    /// Whether the database takes writes (shared with delivery and evidence).
    pub store_health: Arc<StoreHealth>,
}

/// Upper bounds of the inference latency histogram, in milliseconds.
pub const LATENCY_BUCKETS_MS: [f32; 10] = [
    2.0,
    5.0,
    10.0,
    20.0,
    50.0,
    100.0,
    200.0,
    500.0,
    1000.0,
    f32::INFINITY,
];

const WINDOW: usize = 512;

impl Metrics {
    pub fn new(camera_ids: &[String]) -> Metrics {
        Metrics {
            started: Instant::now(),
            cameras: std::sync::RwLock::new(
                camera_ids
                    .iter()
                    .map(|id| (id.clone(), Arc::new(CameraMetrics::default())))
                    .collect(),
            ),
            latencies: Mutex::new(LatencyWindow {
                samples: Vec::with_capacity(WINDOW),
                next: 0,
            }),
            inferences: AtomicU64::new(0),
            latency_buckets: Default::default(),
            latency_sum_us: AtomicU64::new(0),
            store_health: Arc::default(),
        }
    }

    /// (upper bound ms, cumulative count) per bucket, total count and sum in seconds.
    pub fn latency_histogram(&self) -> (Vec<(f32, u64)>, u64, f64) {
        let mut cumulative = 0;
        let buckets = LATENCY_BUCKETS_MS
            .iter()
            .zip(&self.latency_buckets)
            .map(|(bound, count)| {
                cumulative += count.load(Ordering::Relaxed);
                (*bound, cumulative)
            })
            .collect();
        (
            buckets,
            cumulative,
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }

    pub fn camera(&self, id: &str) -> Option<Arc<CameraMetrics>> {
        self.cameras
            .read()
            .ok()?
            .iter()
            .find(|(c, _)| c == id)
            .map(|(_, m)| Arc::clone(m))
    }

    /// The counters of every camera watched now.
    pub fn cameras(&self) -> Vec<(String, Arc<CameraMetrics>)> {
        self.cameras.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// Counters for a camera (new or already known), e.g. after a config reload.
    pub fn register(&self, id: &str) -> Arc<CameraMetrics> {
        if let Some(existing) = self.camera(id) {
            return existing;
        }
        let fresh = Arc::new(CameraMetrics::default());
        if let Ok(mut cameras) = self.cameras.write() {
            cameras.push((id.to_string(), Arc::clone(&fresh)));
        }
        fresh
    }

    /// Stops reporting a camera removed from the config.
    pub fn forget(&self, id: &str) {
        if let Ok(mut cameras) = self.cameras.write() {
            cameras.retain(|(c, _)| c != id);
        }
    }

    pub fn uptime_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn record_inference(&self, millis: f32) {
        self.inferences.fetch_add(1, Ordering::Relaxed);
        let bucket = LATENCY_BUCKETS_MS
            .iter()
            .position(|b| millis <= *b)
            .unwrap_or(LATENCY_BUCKETS_MS.len() - 1);
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add((millis * 1000.0) as u64, Ordering::Relaxed);
        if let Ok(mut w) = self.latencies.lock() {
            if w.samples.len() < WINDOW {
                w.samples.push(millis);
            } else {
                let i = w.next;
                w.samples[i] = millis;
            }
            w.next = (w.next + 1) % WINDOW;
        }
    }

    /// Median and 95th percentile of recent inference latencies, in milliseconds.
    pub fn inference_latency_ms(&self) -> Option<(f32, f32)> {
        let mut samples = self.latencies.lock().ok()?.samples.clone();
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f32::total_cmp);
        let at = |p: f32| samples[((samples.len() - 1) as f32 * p).round() as usize];
        Some((at(0.5), at(0.95)))
    }
}

/// Free bytes on the filesystem holding `path`.
pub fn disk_free(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct; the path is a valid C string.
    unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(name.as_ptr(), &mut stat) != 0 {
            return None;
        }
        Some(stat.f_bavail as u64 * stat.f_frsize as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_over_a_sliding_window() {
        let m = Metrics::new(&["a".into()]);
        assert!(m.inference_latency_ms().is_none());
        for i in 1..=100 {
            m.record_inference(i as f32);
        }
        let (p50, p95) = m.inference_latency_ms().unwrap();
        assert!((p50 - 50.0).abs() <= 1.0, "{p50}");
        assert!((p95 - 95.0).abs() <= 1.0, "{p95}");
        for _ in 0..WINDOW {
            m.record_inference(7.0);
        }
        assert_eq!(
            m.inference_latency_ms().unwrap(),
            (7.0, 7.0),
            "old samples age out"
        );
        assert_eq!(m.inferences.load(Ordering::Relaxed), 100 + WINDOW as u64);
    }

    #[test]
    fn disk_free_of_the_temp_dir() {
        assert!(disk_free(&std::env::temp_dir()).unwrap() > 0);
        assert!(disk_free(Path::new("/nonexistent/path")).is_none());
    }
}
