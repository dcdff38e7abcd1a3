//! Motion stage: a cheap gate in front of the detector. Frame differencing on a small grey
//! image (160 px wide) inside the camera's zones decides, per detection region, whether a
//! sampled frame is worth an inference there: a still region costs nothing, a region where
//! something moves is detected. Every region is re-checked periodically so parked cars and
//! charging bikes (which do not move) keep their tracks and dwell clocks alive.

use std::ptr;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;

use crate::config::MotionConfig;

const WIDTH: u32 = 160;

pub struct MotionGate {
    config: MotionConfig,
    /// Zone polygons (normalised); empty = the whole picture.
    zones: Vec<Vec<(f32, f32)>>,
    context: *mut ffi::SwsContext,
    key: Option<(i32, i32, i32)>,
    height: u32,
    current: Vec<u8>,
    previous: Vec<u8>,
    mask: Vec<bool>,
    /// The detection regions (normalised); by default one, the whole picture.
    regions: Vec<crate::frame::BBox>,
    /// Per region, the watched pixels' indices into the small image (zones inside it).
    region_pixels: Vec<Vec<u32>>,
    /// Per region, when it last passed.
    last_pass_us: Vec<Option<i64>>,
    have_previous: bool,
    /// Where in the re-check interval this camera's re-checks fall (see `staggered`).
    phase_us: i64,
}

// SAFETY: the swscale context is owned by this value and only used through `&mut self`.
unsafe impl Send for MotionGate {}

impl Drop for MotionGate {
    fn drop(&mut self) {
        if !self.context.is_null() {
            // SAFETY: created by sws_getContext, freed once.
            unsafe { ffi::sws_freeContext(self.context) };
        }
    }
}

fn inside(polygon: &[(f32, f32)], x: f32, y: f32) -> bool {
    let mut inside = false;
    for i in 0..polygon.len() {
        let (x1, y1) = polygon[i];
        let (x2, y2) = polygon[(i + 1) % polygon.len()];
        if (y1 > y) != (y2 > y) && x < x1 + (y - y1) * (x2 - x1) / (y2 - y1) {
            inside = !inside;
        }
    }
    inside
}

/// What the gate decided for one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Send it to the detector: motion (the changed fraction) or a re-check.
    Pass,
    /// Nothing moved: skip the inference.
    Skip,
}

impl MotionGate {
    pub fn new(config: MotionConfig, zones: Vec<Vec<(f32, f32)>>) -> MotionGate {
        MotionGate {
            config,
            zones,
            context: ptr::null_mut(),
            key: None,
            height: 0,
            current: Vec::new(),
            previous: Vec::new(),
            mask: Vec::new(),
            regions: crate::frame::whole_picture().to_vec(),
            region_pixels: Vec::new(),
            last_pass_us: Vec::new(),
            have_previous: false,
            phase_us: 0,
        }
    }

    /// Gates each of these regions (normalised rectangles) on its own; rebuilt at the next
    /// frame.
    pub fn set_regions(&mut self, regions: &[crate::frame::BBox]) {
        if self.regions != regions {
            self.regions = regions.to_vec();
            self.key = None;
        }
    }

    /// Watches these zones from the next frame on (the installer saved new ones).
    pub fn set_zones(&mut self, zones: &[Vec<(f32, f32)>]) {
        if self.zones != zones {
            self.zones = zones.to_vec();
            self.key = None;
        }
    }

    /// Spreads re-checks over the interval by camera: cameras started together (a daemon
    /// start, a switch that comes back) would otherwise all ask for an inference in the
    /// same instant every interval, and the burst overflows the queues. Derived from the
    /// camera id, so a replay stays deterministic.
    pub fn staggered(mut self, camera_id: &str) -> MotionGate {
        // FNV-1a: stable across builds, unlike std's hasher.
        let hash = camera_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let interval = self.config.recheck.as_micros().max(1) as u64;
        self.phase_us = (hash % interval) as i64;
        self
    }

    fn rebuild(&mut self, w: i32, h: i32, format: i32) -> bool {
        if !self.context.is_null() {
            // SAFETY: freeing our own context before replacing it.
            unsafe { ffi::sws_freeContext(self.context) };
            self.context = ptr::null_mut();
        }
        if w <= 0 || h <= 0 {
            return false;
        }
        self.height = ((h as u64 * WIDTH as u64 / w as u64).max(1)) as u32;
        // SAFETY: plain constructor; a null result is handled.
        self.context = unsafe {
            ffi::sws_getContext(
                w,
                h,
                std::mem::transmute::<i32, ffi::AVPixelFormat>(format),
                WIDTH as i32,
                self.height as i32,
                ffi::AVPixelFormat::AV_PIX_FMT_GRAY8,
                ffi::SWS_AREA,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null(),
            )
        };
        let size = (WIDTH * self.height) as usize;
        self.current = vec![0; size];
        self.previous = vec![0; size];
        self.mask = (0..size)
            .map(|i| {
                let x = ((i % WIDTH as usize) as f32 + 0.5) / WIDTH as f32;
                let y = ((i / WIDTH as usize) as f32 + 0.5) / self.height as f32;
                self.zones.is_empty() || self.zones.iter().any(|z| inside(z, x, y))
            })
            .collect();
        // A region watches the zone pixels inside it; a region holding none (a margin or
        // tile outside every zone) watches all of its own pixels.
        let height = self.height as usize;
        self.region_pixels = self
            .regions
            .iter()
            .map(|r| {
                let inside: Vec<u32> = (0..size)
                    .filter(|&i| {
                        let x = ((i % WIDTH as usize) as f32 + 0.5) / WIDTH as f32;
                        let y = ((i / WIDTH as usize) as f32 + 0.5) / height as f32;
                        x >= r.x1 && x < r.x2 && y >= r.y1 && y < r.y2
                    })
                    .map(|i| i as u32)
                    .collect();
                let watched: Vec<u32> = inside
                    .iter()
                    .copied()
                    .filter(|&i| self.mask[i as usize])
                    .collect();
                if watched.is_empty() { inside } else { watched }
            })
            .collect();
        self.have_previous = false;
        self.key = Some((w, h, format));
        !self.context.is_null()
    }

    /// Decides for a sampled frame at `pts_us`, for the whole picture.
    pub fn check(&mut self, frame: &ffmpeg::frame::Video, pts_us: i64) -> Verdict {
        if self.check_regions(frame, pts_us) == 0 {
            Verdict::Skip
        } else {
            Verdict::Pass
        }
    }

    /// Decides for a sampled frame at `pts_us`, per region: bit `i` set when region `i` is
    /// worth an inference (something moved in it, or its periodic re-check is due). Every
    /// region passes on the first frame, after a size change, and when the frame cannot be
    /// read.
    pub fn check_regions(&mut self, frame: &ffmpeg::frame::Video, pts_us: i64) -> u64 {
        let all = crate::frame::all_regions(self.regions.len());
        // SAFETY: reading plain fields of a decoded frame.
        let key = unsafe {
            let raw = frame.as_ptr();
            ((*raw).width, (*raw).height, (*raw).format)
        };
        if (self.key != Some(key) || self.context.is_null()) && !self.rebuild(key.0, key.1, key.2) {
            return all;
        }
        let dst = [
            self.current.as_mut_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
        ];
        let stride = [WIDTH as i32, 0, 0, 0];
        // SAFETY: the context was built for this frame's key; the destination is our buffer
        // of WIDTH x height.
        let rows = unsafe { crate::source::scale_frame(self.context, frame, &dst, &stride) };
        if rows <= 0 {
            return all;
        }
        let had_previous = self.have_previous;
        let threshold = self.config.pixel_threshold;
        let mut moving = 0u64;
        for (i, pixels) in self.region_pixels.iter().enumerate().take(64) {
            let changed = pixels
                .iter()
                .filter(|&&p| {
                    let p = p as usize;
                    self.current[p].abs_diff(self.previous[p]) > threshold
                })
                .count();
            if !had_previous
                || changed as f32 / pixels.len().max(1) as f32 >= self.config.min_changed
            {
                moving |= 1 << i;
            }
        }
        std::mem::swap(&mut self.current, &mut self.previous);
        self.have_previous = true;
        let interval = self.config.recheck.as_micros() as i64;
        self.last_pass_us
            .resize(self.region_pixels.len().min(64), None);
        let mut pass = 0u64;
        for (i, last) in self.last_pass_us.iter_mut().enumerate() {
            let recheck = last.is_none_or(|last| pts_us - last >= interval);
            if moving & (1 << i) != 0 || recheck {
                pass |= 1 << i;
                *last = Some(if last.is_none() {
                    pts_us - self.phase_us
                } else {
                    pts_us
                });
            }
        }
        pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn frame(fill: impl Fn(usize, usize) -> u8) -> ffmpeg::frame::Video {
        crate::source::init_ffmpeg();
        let mut f = ffmpeg::frame::Video::new(ffmpeg::format::Pixel::YUV420P, 320, 180);
        let stride = f.stride(0);
        let data = f.data_mut(0);
        for y in 0..180 {
            for x in 0..320 {
                data[y * stride + x] = fill(x, y);
            }
        }
        f.data_mut(1).fill(128);
        f.data_mut(2).fill(128);
        f
    }

    fn config() -> MotionConfig {
        MotionConfig {
            enabled: true,
            recheck: Duration::from_secs(10),
            pixel_threshold: 25,
            min_changed: 0.002,
        }
    }

    #[test]
    fn still_scene_is_skipped_until_the_recheck_and_motion_passes() {
        let mut gate = MotionGate::new(config(), Vec::new());
        let still = frame(|x, _| (x % 200) as u8);
        assert_eq!(gate.check(&still, 0), Verdict::Pass, "first frame");
        for i in 1..49 {
            assert_eq!(gate.check(&still, i * 200_000), Verdict::Skip, "frame {i}");
        }
        assert_eq!(
            gate.check(&still, 10_000_000),
            Verdict::Pass,
            "re-check after 10 s"
        );
        // A bright square appears: motion.
        let moved = frame(|x, y| {
            if (100..140).contains(&x) && (50..90).contains(&y) {
                250
            } else {
                (x % 200) as u8
            }
        });
        assert_eq!(gate.check(&moved, 10_200_000), Verdict::Pass);
    }

    #[test]
    fn sensor_noise_is_not_motion() {
        let mut gate = MotionGate::new(config(), Vec::new());
        gate.check(&frame(|x, y| ((x + y) % 100) as u8 + 50), 0);
        let noisy =
            frame(|x, y| (((x + y) % 100) as u8 + 50).wrapping_add(((x * 7 + y * 13) % 9) as u8));
        assert_eq!(gate.check(&noisy, 200_000), Verdict::Skip);
    }

    #[test]
    fn motion_outside_the_zones_is_ignored() {
        let zone = vec![(0.0, 0.0), (0.4, 0.0), (0.4, 1.0), (0.0, 1.0)];
        let mut gate = MotionGate::new(config(), vec![zone]);
        gate.check(&frame(|_, _| 60), 0);
        let right_side = frame(|x, _| if x > 250 { 220 } else { 60 });
        assert_eq!(gate.check(&right_side, 200_000), Verdict::Skip);
        let left_side = frame(|x, _| if x < 60 { 220 } else { 60 });
        assert_eq!(gate.check(&left_side, 400_000), Verdict::Pass);
    }
}
