//! systemd supervision: `READY=1` once the daemon runs, `WATCHDOG=1` while every inference
//! worker keeps turning, `STOPPING=1` on the way out. Outside systemd (no `NOTIFY_SOCKET`)
//! every call is a no-op, so the daemon behaves the same under any supervisor.
//!
//! The watchdog pings only on evidence of progress: each inference worker stamps a beat on
//! every turn of its loop (at least every 200 ms, frames or not), and a worker stuck inside
//! inference or a deadlock stops the pings, so systemd restarts the service
//! (`WatchdogSec=` in the unit) instead of leaving a box that looks up but watches nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Last beat of each inference worker, in milliseconds since the daemon started.
pub struct Liveness {
    start: Instant,
    beats: Vec<AtomicU64>,
    active: AtomicUsize,
}

impl Liveness {
    pub fn new(workers: usize) -> Liveness {
        Liveness {
            start: Instant::now(),
            beats: (0..workers.max(1)).map(|_| AtomicU64::new(0)).collect(),
            active: AtomicUsize::new(1),
        }
    }

    /// How many workers run now (fewer than configured when there are fewer cameras); the
    /// others' stale beats must not stop the pings. Their beats restart from now.
    pub fn set_active(&self, workers: usize) {
        let now = self.now_ms();
        for beat in &self.beats {
            beat.store(now, Ordering::Relaxed);
        }
        self.active
            .store(workers.clamp(1, self.beats.len()), Ordering::Relaxed);
    }

    pub fn beat(&self, worker: usize) {
        if let Some(beat) = self.beats.get(worker) {
            beat.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// Time since the least recent beat among the active workers.
    pub fn stalest(&self) -> Duration {
        let now = self.now_ms();
        let active = self.active.load(Ordering::Relaxed);
        let oldest = self.beats[..active.min(self.beats.len())]
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .min()
            .unwrap_or(now);
        Duration::from_millis(now.saturating_sub(oldest))
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

/// Tells systemd the daemon is up (Type=notify units wait for this).
pub fn ready(status: &str) {
    if let Err(e) = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]) {
        tracing::warn!("cannot notify systemd that the daemon is ready: {e}");
    }
}

pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

/// The thread that pings systemd's watchdog; stops with [`Pinger::stop`].
pub struct Pinger {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pinger {
    /// Starts pinging when the unit has `WatchdogSec=` (systemd sets `WATCHDOG_USEC`);
    /// otherwise does nothing.
    pub fn start(liveness: Arc<Liveness>) -> Option<Pinger> {
        let interval = sd_notify::watchdog_enabled()?;
        // Ping twice per interval, as sd_watchdog_enabled(3) advises, and only while every
        // worker beat within half an interval.
        let period = interval / 2;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                let mut warned = false;
                while !flag.load(Ordering::Relaxed) {
                    let stalest = liveness.stalest();
                    if stalest < period {
                        let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                        warned = false;
                    } else if !warned {
                        tracing::error!(
                            "an inference worker has not turned for {:.0} s: no longer pinging the systemd watchdog, so the service will be restarted",
                            stalest.as_secs_f64()
                        );
                        warned = true;
                    }
                    let deadline = Instant::now() + period;
                    while Instant::now() < deadline && !flag.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            });
        match thread {
            Ok(thread) => {
                tracing::info!(
                    interval_s = interval.as_secs_f64(),
                    "systemd watchdog enabled"
                );
                Some(Pinger {
                    stop,
                    thread: Some(thread),
                })
            }
            Err(e) => {
                tracing::error!("cannot start the watchdog thread: {e}");
                None
            }
        }
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_active_workers_count_and_a_stalled_one_shows() {
        let liveness = Liveness::new(3);
        liveness.set_active(2);
        std::thread::sleep(Duration::from_millis(300));
        liveness.beat(0);
        // Worker 1 has not beaten since set_active; worker 2 is inactive and ignored.
        assert!(liveness.stalest() >= Duration::from_millis(300));
        liveness.beat(1);
        assert!(liveness.stalest() < Duration::from_millis(300));
        liveness.beat(7); // out of range: ignored, no panic
    }
}
