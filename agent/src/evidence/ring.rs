//! A ring buffer of a camera's recent compressed video packets, for clips and snapshots.
//!
//! The decode thread appends every packet of the recording stream; the evidence worker
//! copies a time range out. The ring always starts on a keyframe (whole GOPs are evicted) so
//! any range can be remuxed or decoded from its start. Packet buffers are recycled: once the
//! ring is full, appending allocates nothing.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use ffmpeg_next as ffmpeg;

/// One compressed packet and its times.
#[derive(Debug, Clone)]
pub struct RingPacket {
    pub data: Vec<u8>,
    /// Timestamps in the stream's time base.
    pub pts: Option<i64>,
    pub dts: Option<i64>,
    pub duration: i64,
    pub key: bool,
    /// Wall-clock time of the packet (replay: start + PTS), Unix microseconds.
    pub at_us: i64,
}

/// Recycled packet buffers sorted by size class. Classes are quarter octaves (4, 5, 6 and
/// 7 times a power of two, from 256 bytes): a packet takes a spare from the smallest class
/// that holds it or one of the next three, else a new buffer of its class (at most a
/// quarter larger than the packet), and a returned buffer goes to the largest class it
/// holds. So a buffer never grows once made.
///
/// A single free list did neither: a small buffer that next carried a keyframe grew to
/// keyframe size and stayed so, and over hours every pooled buffer crept up towards the
/// largest packet (the soak measured it as RSS rising ~0.25 MiB a minute with 4 cameras).
/// With classes the pool is bounded by what each class ever held at once, which settles as
/// soon as the stream's packet sizes have been seen.
#[derive(Default)]
struct BufferPool {
    classes: Vec<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// Smaller packets (empty P-frames of a still scene) share the first class.
    const SMALLEST: usize = 256;
    /// Classes looked at for a spare, from the packet's own: one octave.
    const SERVE_UP_TO: usize = 4;

    /// Class `index` holds buffers of at least this many bytes.
    fn class_size(index: usize) -> usize {
        (4 + index % 4) << (index / 4 + 6)
    }

    /// The class of the buffers for a packet of `len` bytes (the smallest class that holds
    /// it); None past any sane packet.
    fn class_for_len(len: usize) -> Option<usize> {
        if len > usize::MAX >> 3 {
            return None;
        }
        let len = len.max(Self::SMALLEST);
        let largest_within = Self::class_of_capacity(len)?;
        Some(if Self::class_size(largest_within) == len {
            largest_within
        } else {
            largest_within + 1
        })
    }

    /// The largest class a buffer of `capacity` bytes can serve.
    fn class_of_capacity(capacity: usize) -> Option<usize> {
        if capacity < Self::SMALLEST {
            return None;
        }
        let step_shift = capacity.ilog2() - 2;
        let steps = capacity >> step_shift;
        Some(((step_shift - 6) * 4) as usize + steps - 4)
    }

    /// An empty buffer that holds `len` bytes without growing.
    fn take(&mut self, len: usize) -> Vec<u8> {
        let Some(class) = Self::class_for_len(len) else {
            return Vec::with_capacity(len);
        };
        // A spare up to an octave larger serves too: waiting for an exact fit would keep a
        // spare in every class a packet size ever peaked in.
        let end = self.classes.len().min(class + Self::SERVE_UP_TO);
        (class..end)
            .find_map(|c| self.classes[c].pop())
            .unwrap_or_else(|| Vec::with_capacity(Self::class_size(class)))
    }

    fn give(&mut self, mut buffer: Vec<u8>) {
        let Some(class) = Self::class_of_capacity(buffer.capacity()) else {
            return;
        };
        if self.classes.len() <= class {
            self.classes.resize_with(class + 1, Vec::new);
        }
        buffer.clear();
        self.classes[class].push(buffer);
    }

    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.classes.iter().flatten().map(Vec::capacity).sum()
    }
}

pub use crate::source::StreamSetup;

/// Packets copied out of the ring, starting with a keyframe.
pub struct PacketRange {
    pub setup: StreamSetup,
    pub packets: Vec<RingPacket>,
}

#[derive(Default)]
struct Inner {
    setup: Option<StreamSetup>,
    packets: VecDeque<RingPacket>,
    spare: BufferPool,
    bytes: usize,
    /// The stream ended (or the camera stopped): no newer packets are coming for now.
    ended: bool,
}

/// Shared between a camera's decode thread and the evidence worker.
#[derive(Clone)]
pub struct PacketRing {
    inner: Arc<Mutex<Inner>>,
    window_us: i64,
    max_bytes: usize,
}

impl std::fmt::Debug for PacketRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketRing")
            .field("window_us", &self.window_us)
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl PacketRing {
    pub fn new(window_us: i64, max_bytes: usize) -> PacketRing {
        PacketRing {
            inner: Arc::default(),
            window_us,
            max_bytes,
        }
    }

    /// A new stream (or a reconnect, possibly at another resolution): old packets cannot be
    /// muxed with the new parameters, so they go.
    pub fn start_stream(&self, setup: StreamSetup) {
        if let Ok(mut inner) = self.inner.lock() {
            let Inner { packets, spare, .. } = &mut *inner;
            for packet in packets.drain(..) {
                spare.give(packet.data);
            }
            inner.bytes = 0;
            inner.setup = Some(setup);
            inner.ended = false;
        }
    }

    /// The stream changed resolution in band (same connection, new SPS on a keyframe):
    /// packets before that keyframe belong to the old size and go; the keyframe and what
    /// follows it stay, now described by `setup`.
    pub fn restart_from_last_keyframe(&self, setup: StreamSetup) {
        if let Ok(mut inner) = self.inner.lock() {
            let keep_from = inner.packets.iter().rposition(|p| p.key).unwrap_or(0);
            for _ in 0..keep_from {
                if let Some(old) = inner.packets.pop_front() {
                    inner.bytes -= old.data.len();
                    inner.spare.give(old.data);
                }
            }
            inner.setup = Some(setup);
        }
    }

    pub fn end_stream(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.ended = true;
        }
    }

    /// Appends a packet; evicts whole GOPs older than the window (or over the byte cap).
    pub fn push(&self, packet: &ffmpeg::Packet, at_us: i64) {
        let Some(data) = packet.data() else { return };
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.packets.is_empty() && !packet.is_key() {
            // A clip must start on a keyframe; wait for one.
            return;
        }
        let mut buffer = inner.spare.take(data.len());
        buffer.extend_from_slice(data);
        inner.bytes += buffer.len();
        inner.packets.push_back(RingPacket {
            data: buffer,
            pts: packet.pts(),
            dts: packet.dts(),
            duration: packet.duration(),
            key: packet.is_key(),
            at_us,
        });
        let cutoff = at_us - self.window_us;
        loop {
            // The next keyframe after the oldest one: everything before it is one GOP.
            let next_key = inner
                .packets
                .iter()
                .skip(1)
                .position(|p| p.key)
                .map(|i| i + 1);
            let Some(next_key) = next_key else { break };
            let next_key_at = inner.packets[next_key].at_us;
            if next_key_at > cutoff && inner.bytes <= self.max_bytes {
                break;
            }
            for _ in 0..next_key {
                if let Some(old) = inner.packets.pop_front() {
                    inner.bytes -= old.data.len();
                    inner.spare.give(old.data);
                }
            }
        }
    }

    /// Time of the newest packet and whether the stream has ended.
    pub fn newest(&self) -> (Option<i64>, bool) {
        match self.inner.lock() {
            Ok(inner) => (inner.packets.back().map(|p| p.at_us), inner.ended),
            Err(_) => (None, true),
        }
    }

    /// Copies the packets from the last keyframe at or before `from_us` (or the oldest one
    /// held) up to `to_us`.
    pub fn range(&self, from_us: i64, to_us: i64) -> Option<PacketRange> {
        let inner = self.inner.lock().ok()?;
        let setup = inner.setup.clone()?;
        let start = inner
            .packets
            .iter()
            .rposition(|p| p.key && p.at_us <= from_us)
            .unwrap_or(0);
        let packets: Vec<RingPacket> = inner
            .packets
            .iter()
            .skip(start)
            .take_while(|p| p.at_us <= to_us)
            .cloned()
            .collect();
        (!packets.is_empty()).then_some(PacketRange { setup, packets })
    }

    pub fn bytes(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(key: bool, size: usize) -> ffmpeg::Packet {
        let mut p = ffmpeg::Packet::copy(&vec![0u8; size]);
        if key {
            p.set_flags(ffmpeg::packet::Flags::KEY);
        }
        p
    }

    /// Deterministic pseudo-random numbers below a bound (an LCG; tests need repeatable
    /// packet sizes, not good randomness).
    fn numbers(mut seed: u32) -> impl FnMut(u32) -> u32 {
        move |below| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 8) % below
        }
    }

    /// Capacity of every packet buffer the ring holds, in use or spare.
    fn pooled_bytes(inner: &Inner) -> usize {
        let in_use: usize = inner.packets.iter().map(|p| p.data.capacity()).sum();
        in_use + inner.spare.capacity()
    }

    fn setup() -> StreamSetup {
        StreamSetup {
            parameters: ffmpeg::codec::Parameters::new(),
            time_base: ffmpeg::Rational::new(1, 1000),
            width: 0,
            height: 0,
        }
    }

    #[test]
    fn a_new_buffer_fits_its_packet_within_a_quarter() {
        let mut pool = BufferPool::default();
        let mut random = numbers(99);
        let lens = (0..20_000usize)
            .chain([255, 256, 257, 319, 320, 321, 447, 448, 449, 511, 512, 513])
            .chain((0..2_000).map(|_| random(3_000_000) as usize));
        for len in lens {
            let buffer = pool.take(len);
            let capacity = buffer.capacity();
            assert!(capacity >= len, "{len} bytes in a {capacity}-byte buffer");
            assert!(
                capacity <= (len.max(BufferPool::SMALLEST) * 5).div_ceil(4),
                "{len} bytes in a {capacity}-byte buffer"
            );
            // Given back, it serves the same packet size again without growing.
            pool.give(buffer);
            assert_eq!(pool.take(len).capacity(), capacity, "{len}");
        }
        // A buffer of any other capacity (made elsewhere) serves only packets it holds.
        pool.give(Vec::with_capacity(1_000));
        let served = pool.take(896);
        assert_eq!(served.capacity(), 1_000);
        assert!(pool.take(1_000).capacity() >= 1_000);
    }

    #[test]
    fn keeps_whole_gops_within_the_window_and_starts_on_a_keyframe() {
        crate::source::init_ffmpeg();
        let ring = PacketRing::new(10_000_000, usize::MAX);
        ring.start_stream(setup());
        ring.push(&packet(false, 10), 0); // before any keyframe: ignored
        // 1 s GOPs of 25 packets for 60 s.
        for i in 0..1500i64 {
            ring.push(&packet(i % 25 == 0, 100), i * 40_000);
        }
        let range = ring.range(0, i64::MAX).unwrap();
        assert!(range.packets[0].key);
        let span = range.packets.last().unwrap().at_us - range.packets[0].at_us;
        assert!((10_000_000..=11_000_000).contains(&span), "{span}");
        // A range starting mid-GOP starts at that GOP's keyframe.
        let range = ring.range(55_500_000, 57_000_000).unwrap();
        assert_eq!(range.packets[0].at_us, 55_000_000);
        assert!(range.packets[0].key);
        assert_eq!(range.packets.last().unwrap().at_us, 57_000_000);
    }

    #[test]
    fn byte_cap_and_buffer_reuse() {
        crate::source::init_ffmpeg();
        let ring = PacketRing::new(i64::MAX, 10_000);
        ring.start_stream(setup());
        for i in 0..500i64 {
            ring.push(&packet(i % 10 == 0, 100), i);
        }
        assert!(ring.bytes() <= 10_000 + 1000, "{}", ring.bytes());
        // A new stream clears the ring.
        ring.start_stream(setup());
        assert_eq!(ring.bytes(), 0);
        assert!(ring.range(0, i64::MAX).is_none());
    }

    #[test]
    fn a_resolution_change_keeps_only_the_new_size_from_its_keyframe() {
        crate::source::init_ffmpeg();
        let ring = PacketRing::new(i64::MAX, usize::MAX);
        ring.start_stream(setup());
        for i in 0..30i64 {
            ring.push(&packet(i % 10 == 0, 100), i);
        }
        // The keyframe at 20 carried the new SPS; its frame decoded at 22.
        ring.restart_from_last_keyframe(setup().resized(640, 360));
        let range = ring.range(0, i64::MAX).unwrap();
        assert_eq!(range.packets[0].at_us, 20);
        assert_eq!(range.packets.len(), 10);
        assert_eq!((range.setup.width, range.setup.height), (640, 360));
        assert_eq!(ring.bytes(), 1000);
    }

    #[test]
    fn pooled_buffers_do_not_creep_up_to_keyframe_size() {
        crate::source::init_ffmpeg();
        let ring = PacketRing::new(2_000_000, usize::MAX);
        ring.start_stream(setup());
        // GOPs of 10 to 50 packets (a camera's GOP varies with motion): a 200 KB keyframe
        // and packets of 5 KB, for ten minutes at 25 fps.
        let mut random = numbers(12345);
        let mut next_key = 0;
        for i in 0..15_000i64 {
            let key = i == next_key;
            if key {
                next_key = i + 10 + i64::from(random(41));
            }
            ring.push(&packet(key, if key { 200_000 } else { 5_000 }), i * 40_000);
        }
        let inner = ring.inner.lock().unwrap();
        let pooled = pooled_bytes(&inner);
        // About 2 s held (a few keyframes, up to ~150 small packets) plus a few spares;
        // without shrinking, every pooled buffer creeps towards keyframe size (20 MB here).
        assert!(pooled < 3_000_000, "{pooled} bytes pooled");
    }

    #[test]
    fn pooled_buffers_stay_flat_over_hours_of_small_packets() {
        crate::source::init_ffmpeg();
        // The soak's porch camera: 5 fps, a 30-60 KB keyframe every 5 s, P-frames of 50 B
        // to 3 KB with now and then a 20 KB one (motion), a 10 s window; two hours.
        let ring = PacketRing::new(10_000_000, usize::MAX);
        ring.start_stream(setup());
        let mut random = numbers(7);
        let (mut most_held, mut after_one_hour) = (0, 0);
        for i in 0..36_000i64 {
            let key = i % 25 == 0;
            let size = if key {
                30_000 + random(30_000)
            } else if random(50) == 0 {
                20_000
            } else {
                50 + random(3_000)
            };
            ring.push(&packet(key, size as usize), i * 200_000);
            most_held = most_held.max(ring.bytes());
            if i == 18_000 {
                after_one_hour = pooled_bytes(&ring.inner.lock().unwrap());
            }
        }
        let after_two_hours = pooled_bytes(&ring.inner.lock().unwrap());
        // A buffer never grows, so the second hour adds at most the odd buffer for a new
        // high of one size class at once.
        assert!(
            after_two_hours * 100 <= after_one_hour * 102,
            "{after_one_hour} bytes pooled after an hour, {after_two_hours} after two"
        );
        // New buffers round up by at most a quarter, spares up to an octave larger are
        // reused, spares cover the swing between GOPs, and the many packets under 256 bytes
        // each take 256 (2.1x here). A single free list reached ~5x, every buffer at
        // keyframe size.
        assert!(
            after_two_hours < 4 * most_held,
            "{after_two_hours} bytes pooled for at most {most_held} held"
        );
    }
}
