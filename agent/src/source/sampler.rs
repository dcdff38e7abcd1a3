//! Picks the frames that go to the detector, by presentation time.

/// Accepts the first frame at or after each multiple of the sampling period. Grid-aligned
/// rather than "period after the last accepted frame", so rounding in odd time bases cannot
/// drift the rate: 30 fps sampled at 10 fps takes every third frame, forever.
#[derive(Debug, Clone)]
pub struct FrameSampler {
    period_us: i64,
    next_due_us: i64,
}

/// Timestamps within this of a grid point count as on it (1/90000 s time bases and
/// rounding to microseconds put frames a hair before the mark).
const TOLERANCE_US: i64 = 1_000;

impl FrameSampler {
    pub fn new(fps: f64) -> FrameSampler {
        let period_us = (1_000_000.0 / fps.max(1e-3)).round() as i64;
        FrameSampler {
            period_us: period_us.max(1),
            next_due_us: 0,
        }
    }

    /// Should the frame at `pts_us` be detected on?
    pub fn accept(&mut self, pts_us: i64) -> bool {
        if pts_us + TOLERANCE_US < self.next_due_us {
            return false;
        }
        let slot = (pts_us + TOLERANCE_US).div_euclid(self.period_us);
        self.next_due_us = (slot + 1) * self.period_us;
        true
    }

    pub fn period_us(&self) -> i64 {
        self.period_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(fps_in: f64, fps_out: f64, seconds: f64) -> Vec<i64> {
        let mut sampler = FrameSampler::new(fps_out);
        let frames = (seconds * fps_in) as i64;
        (0..frames)
            .map(|i| (i as f64 * 1_000_000.0 / fps_in).round() as i64)
            .filter(|&t| sampler.accept(t))
            .collect()
    }

    #[test]
    fn thirty_to_ten_takes_every_third_frame() {
        let got = accepted(30.0, 10.0, 10.0);
        assert_eq!(got.len(), 100);
        assert_eq!(&got[..4], &[0, 100_000, 200_000, 300_000]);
    }

    #[test]
    fn rate_holds_for_a_non_divisible_ratio() {
        // 12.5 fps in, 5 fps out: 2.5 input frames per sample, so gaps alternate 2 and 3.
        let got = accepted(12.5, 5.0, 30.0);
        assert_eq!(got.len(), 150);
        for pair in got.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap == 160_000 || gap == 240_000, "gap {gap}");
        }
    }

    #[test]
    fn variable_frame_rate_is_sampled_by_time() {
        // A burst at 50 fps then a slow stretch at 2 fps: 5 fps sampling takes ~5 per second
        // of the burst and every frame of the slow part.
        let mut sampler = FrameSampler::new(5.0);
        let burst: Vec<i64> = (0..100).map(|i| i * 20_000).collect(); // 2 s
        let slow: Vec<i64> = (0..10).map(|i| 2_000_000 + i * 500_000).collect(); // 5 s
        let taken_burst = burst.iter().filter(|&&t| sampler.accept(t)).count();
        let taken_slow = slow.iter().filter(|&&t| sampler.accept(t)).count();
        assert_eq!(taken_burst, 10);
        assert_eq!(taken_slow, 10);
    }

    #[test]
    fn input_slower_than_rate_takes_every_frame() {
        assert_eq!(accepted(2.0, 5.0, 10.0).len(), 20);
    }

    #[test]
    fn gap_in_stream_resumes_on_grid() {
        let mut sampler = FrameSampler::new(5.0);
        assert!(sampler.accept(0));
        // 10 s with no frames (camera hiccup), then frames resume mid-period.
        assert!(sampler.accept(10_050_000));
        assert!(!sampler.accept(10_150_000));
        assert!(sampler.accept(10_210_000));
    }
}
