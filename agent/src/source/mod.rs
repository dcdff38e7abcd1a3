//! Source stage: open a file or an `rtsp://` URL, decode its video, and hand out frames
//! with timestamps taken from the stream (never from the wall clock).
//!
//! Sampling for detection ([`FrameSampler`]) goes by presentation time, so variable frame
//! rates and odd time bases give the configured detection rate. Conversion to the model's
//! input ([`Letterboxer`]) is one swscale pass from the decoded YUV straight into the
//! letterboxed planar buffer.

mod hwdecode;
mod letterbox;
mod sampler;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;

pub use hwdecode::cpu_frame;

/// The frame as an RGB image of its own size (one swscale pass, allocating): for a
/// snapshot or the latest picture, never per frame.
pub fn rgb_image(frame: &ffmpeg::frame::Video) -> Result<image::RgbImage, ffmpeg::Error> {
    let (w, h) = (frame.width(), frame.height());
    let mut scaler = ffmpeg::software::scaling::Context::get(
        frame.format(),
        w,
        h,
        ffmpeg::format::Pixel::RGB24,
        w,
        h,
        ffmpeg::software::scaling::Flags::BILINEAR,
    )?;
    let mut rgb = ffmpeg::frame::Video::empty();
    scaler.run(frame, &mut rgb)?;
    let stride = rgb.stride(0);
    let data = rgb.data(0);
    let mut image = image::RgbImage::new(w, h);
    for (y, row) in image.rows_mut().enumerate() {
        let line = &data[y * stride..y * stride + w as usize * 3];
        for (pixel, rgb) in row.zip(line.chunks_exact(3)) {
            pixel.0 = [rgb[0], rgb[1], rgb[2]];
        }
    }
    Ok(image)
}
pub(crate) use letterbox::scale_frame;
pub use letterbox::{Geometry, Letterboxer, ModelInput, SCALER_FLAGS_NAME};
pub use sampler::FrameSampler;

use crate::config::{CameraConfig, RtspTransport};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{url}: cannot open: {reason}")]
    Open { url: String, reason: String },
    #[error("{url}: no video stream in this input ({found})")]
    NoVideo { url: String, found: String },
    #[error("{url}: unsupported video codec `{codec}`: this FFmpeg build has no decoder for it")]
    UnsupportedCodec { url: String, codec: String },
    #[error("{url}: cannot start the {codec} decoder: {reason}")]
    Decoder {
        url: String,
        codec: String,
        reason: String,
    },
    #[error("{url}: read failed at {at_s:.1} s: {reason}")]
    Read {
        url: String,
        at_s: f64,
        reason: String,
    },
    #[error("{url}: timed out: no data for {timeout_s:.0} s")]
    Timeout { url: String, timeout_s: f64 },
    #[error("{url}: no decodable video frame ({errors} decode errors; first: {first})")]
    NoFrames {
        url: String,
        errors: u64,
        first: String,
    },
    #[error(
        "{url}: corrupt stream: {errors} packet(s) or frame(s) could not be decoded (first at {at_s:.1} s: {reason}); the {good} good frames were processed"
    )]
    Corrupt {
        url: String,
        errors: u64,
        at_s: f64,
        reason: String,
        good: u64,
    },
    #[error(
        "{url}: truncated: the stream ends at {at_s:.1} s but the container says {duration_s:.1} s"
    )]
    Truncated {
        url: String,
        at_s: f64,
        duration_s: f64,
    },
    #[error("{url}: cannot convert {width}x{height} {format} frames for the model")]
    Scaler {
        url: String,
        width: u32,
        height: u32,
        format: String,
    },
}

/// Initialises FFmpeg once. Its own logging is silenced: gridwatch reports problems itself,
/// one line each, instead of FFmpeg's multi-line chatter (GRIDWATCH_FFMPEG_LOG=1 restores it).
pub fn init_ffmpeg() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Err(err) = ffmpeg::init() {
            tracing::warn!("ffmpeg init: {err}");
        }
        let verbose = std::env::var_os("GRIDWATCH_FFMPEG_LOG").is_some_and(|v| v != "0");
        ffmpeg::util::log::set_level(if verbose {
            ffmpeg::util::log::Level::Warning
        } else {
            ffmpeg::util::log::Level::Quiet
        });
    });
}

/// A URL fit for logs: credentials in `rtsp://user:pass@host/...` are replaced.
pub fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{}***@{}", &url[..scheme_end + 3], &rest[at + 1..]);
        }
    }
    url.to_string()
}

/// How to open a stream.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub rtsp_transport: RtspTransport,
    pub io_timeout: Duration,
    pub decode_threads: usize,
    /// Decode keyframes only (non-key packets are still shown to the packet tap).
    pub keyframes_only: bool,
    /// Hardware decoder to try first (see `CameraConfig::hwaccel`).
    pub hwaccel: Option<String>,
    pub hwaccel_device: Option<String>,
}

impl OpenOptions {
    pub fn for_camera(camera: &CameraConfig) -> OpenOptions {
        OpenOptions {
            rtsp_transport: camera.rtsp_transport,
            io_timeout: camera.io_timeout,
            decode_threads: camera.decode_threads,
            keyframes_only: camera.decode == crate::config::DecodeMode::Keyframes,
            hwaccel: camera.hwaccel.clone(),
            hwaccel_device: camera.hwaccel_device.clone(),
        }
    }
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            rtsp_transport: RtspTransport::Tcp,
            io_timeout: Duration::from_secs(10),
            decode_threads: 1,
            keyframes_only: false,
            hwaccel: None,
            hwaccel_device: None,
        }
    }
}

/// Facts about the opened video stream.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    pub codec: String,
    /// The decoder in use, e.g. "h264 (software)", "hevc + vaapi", "h264_rkmpp".
    pub decoder: String,
    /// Why that decoder: the hwaccel in use, or why decoding is in software.
    pub decoder_why: String,
    pub width: u32,
    pub height: u32,
    /// Average frame rate when the container states one.
    pub fps: Option<f64>,
    /// Duration when the container states one (files); `None` for live streams.
    pub duration_s: Option<f64>,
}

/// Timing of one decoded frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameTime {
    /// Microseconds since the stream's first frame.
    pub pts_us: i64,
    pub keyframe: bool,
}

/// Why decoding stopped, and what went wrong along the way.
#[derive(Debug, Clone, Default)]
pub struct DecodeStats {
    pub packets: u64,
    pub frames: u64,
    /// Packets the decoder rejected plus frames it flagged as corrupt.
    pub decode_errors: u64,
    pub first_error: Option<(f64, String)>,
    pub last_pts_us: i64,
    /// Time of the last packet read (keyframe-only decoding stops decoding a GOP early).
    pub last_packet_us: i64,
    /// The callback asked to stop (or the stop flag was raised) before the end.
    pub stopped: bool,
}

/// How much longer than the idle timeout opening a stream may take (see `VideoSource::open`).
const OPEN_PROBE_GRACE_MS: i64 = 10_000;

/// Shared between the decode loop and FFmpeg's interrupt callback: lets another thread stop
/// a blocked read, and turns a stalled network read into a timeout instead of a hang.
#[derive(Debug)]
struct IoWatch {
    stop: Arc<AtomicBool>,
    epoch: Instant,
    last_activity_ms: AtomicI64,
    timeout_ms: i64,
    timed_out: AtomicBool,
}

impl IoWatch {
    fn touch(&self) {
        self.last_activity_ms
            .store(self.epoch.elapsed().as_millis() as i64, Ordering::Relaxed);
    }

    fn should_interrupt(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return true;
        }
        let idle =
            self.epoch.elapsed().as_millis() as i64 - self.last_activity_ms.load(Ordering::Relaxed);
        if idle > self.timeout_ms {
            self.timed_out.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }
}

/// What reading the next video packet gave.
enum PacketRead {
    /// A packet of the video stream, at this time (µs since the stream's first packet).
    Video(i64),
    End,
    Stopped,
}

/// An opened input with its video decoder. Frames and packets are reused across calls.
pub struct VideoSource {
    url: String,
    input: ffmpeg::format::context::Input,
    stream_index: usize,
    parameters: ffmpeg::codec::Parameters,
    first_packet_ts: Option<i64>,
    decoder: ffmpeg::decoder::Video,
    time_base: ffmpeg::Rational,
    info: StreamInfo,
    watch: Arc<IoWatch>,
    first_ts: Option<i64>,
    last_pts_us: Option<i64>,
    nominal_frame_us: i64,
    keyframes_only: bool,
    /// A hardware decoder is configured: frames may need a download from GPU memory.
    hardware: bool,
    /// The first frame showed whether the hardware took the stream.
    hardware_checked: bool,
}

impl VideoSource {
    /// Opens `url` (a path or `rtsp://...`) and its best video stream. `stop` interrupts a
    /// blocking open or read from another thread.
    pub fn open(
        url: &str,
        options: &OpenOptions,
        stop: Arc<AtomicBool>,
    ) -> Result<VideoSource, SourceError> {
        init_ffmpeg();
        let shown = redact_url(url);
        let mut dict = ffmpeg::Dictionary::new();
        let timeout_us = options.io_timeout.as_micros().to_string();
        if url.starts_with("rtsp://") || url.starts_with("rtsps://") {
            dict.set(
                "rtsp_transport",
                match options.rtsp_transport {
                    RtspTransport::Tcp => "tcp",
                    RtspTransport::Udp => "udp",
                },
            );
            // Socket I/O timeout of the RTSP demuxer, in microseconds.
            dict.set("timeout", &timeout_us);
        } else if url.contains("://") {
            dict.set("rw_timeout", &timeout_us);
        }
        let watch = Arc::new(IoWatch {
            stop,
            epoch: Instant::now(),
            // Opening probes the stream (avformat_find_stream_info reads up to 5 s of it,
            // in real time on a live camera, and a camera with a long GOP needs it all), so
            // the open gets that on top of the idle timeout; the socket timeout still
            // catches a camera that sends nothing.
            last_activity_ms: AtomicI64::new(OPEN_PROBE_GRACE_MS),
            timeout_ms: options.io_timeout.as_millis() as i64,
            timed_out: AtomicBool::new(false),
        });
        let callback_watch = Arc::clone(&watch);
        let input = ffmpeg::format::input_with_interrupt_and_dictionary(
            url,
            move || callback_watch.should_interrupt(),
            dict,
        )
        .map_err(|err| {
            if watch.timed_out.load(Ordering::Relaxed) {
                SourceError::Timeout {
                    url: shown.clone(),
                    timeout_s: options.io_timeout.as_secs_f64(),
                }
            } else {
                SourceError::Open {
                    url: shown.clone(),
                    reason: describe_open_error(&err),
                }
            }
        })?;
        if watch.timed_out.load(Ordering::Relaxed) {
            // FFmpeg can return a half-probed input when interrupted; its RTSP session is
            // then out of step (a wrong CSeq) and would end after a few frames.
            return Err(SourceError::Timeout {
                url: shown,
                timeout_s: options.io_timeout.as_secs_f64() + OPEN_PROBE_GRACE_MS as f64 / 1000.0,
            });
        }
        watch.touch();

        let stream = input
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| SourceError::NoVideo {
                url: shown.clone(),
                found: describe_streams(&input),
            })?;
        let stream_index = stream.index();
        let time_base = stream.time_base();
        let params = stream.parameters();
        let codec_id = params.id();
        let codec_name = if codec_id == ffmpeg::codec::Id::None {
            // SAFETY: reading a plain field of the stream's codec parameters.
            let tag = unsafe { (*params.as_ptr()).codec_tag }.to_le_bytes();
            let fourcc: String = tag
                .iter()
                .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
                .collect();
            format!("unknown, tag '{fourcc}'")
        } else {
            format!("{codec_id:?}").to_lowercase()
        };
        if ffmpeg::decoder::find(codec_id).is_none() {
            return Err(SourceError::UnsupportedCodec {
                url: shown,
                codec: codec_name,
            });
        }
        let decoder_error = |err: ffmpeg::Error| SourceError::Decoder {
            url: shown.clone(),
            codec: codec_name.clone(),
            reason: err.to_string(),
        };
        let opened = hwdecode::open_decoder(&params, options, &shown).map_err(decoder_error)?;
        let decoder = opened.decoder;
        let parameters = input
            .stream(stream_index)
            .map(|s| s.parameters())
            .unwrap_or_default();

        let rate = stream.avg_frame_rate();
        let fps = (rate.numerator() > 0 && rate.denominator() > 0)
            .then(|| f64::from(rate.numerator()) / f64::from(rate.denominator()));
        let duration_s = (stream.duration() > 0)
            .then(|| stream.duration() as f64 * f64::from(time_base))
            .or_else(|| (input.duration() > 0).then(|| input.duration() as f64 / 1_000_000.0));
        let info = StreamInfo {
            codec: codec_name,
            decoder: opened.description,
            decoder_why: opened.why,
            width: decoder.width(),
            height: decoder.height(),
            fps,
            duration_s,
        };
        let nominal_frame_us = fps
            .filter(|f| *f > 0.0 && *f < 1000.0)
            .map_or(40_000, |f| (1_000_000.0 / f) as i64);
        Ok(VideoSource {
            url: shown,
            input,
            stream_index,
            parameters,
            first_packet_ts: None,
            decoder,
            time_base,
            info,
            watch,
            first_ts: None,
            last_pts_us: None,
            nominal_frame_us,
            keyframes_only: options.keyframes_only,
            hardware: opened.hardware,
            hardware_checked: false,
        })
    }

    pub fn info(&self) -> &StreamInfo {
        &self.info
    }

    /// Codec parameters and time base of the video stream, for remuxing its packets.
    pub fn stream_setup(&self) -> StreamSetup {
        StreamSetup {
            parameters: self.parameters.clone(),
            time_base: self.time_base,
            width: self.info.width,
            height: self.info.height,
        }
    }

    /// The URL as shown in logs and errors (credentials redacted).
    pub fn display_url(&self) -> &str {
        &self.url
    }

    /// Decodes until the end of the stream, the stop flag, or `on_frame` breaking. Packet
    /// read failures end decoding with an error; undecodable packets are counted and skipped
    /// (see [`DecodeStats::check_complete`] to turn them into an error for a file). With a
    /// hwaccel device, frames may be in GPU memory: read pixels through [`cpu_frame`].
    pub fn run<F>(&mut self, on_frame: F) -> Result<DecodeStats, SourceError>
    where
        F: FnMut(&ffmpeg::frame::Video, FrameTime) -> ControlFlow<()>,
    {
        self.run_with_packets(|_, _| {}, on_frame)
    }

    /// As [`VideoSource::run`], also showing every compressed video packet (with its time
    /// in microseconds since the first packet) to `on_packet` before it is decoded.
    pub fn run_with_packets<P, F>(
        &mut self,
        mut on_packet: P,
        mut on_frame: F,
    ) -> Result<DecodeStats, SourceError>
    where
        P: FnMut(&ffmpeg::Packet, i64),
        F: FnMut(&ffmpeg::frame::Video, FrameTime) -> ControlFlow<()>,
    {
        let mut stats = DecodeStats::default();
        let mut frame = ffmpeg::frame::Video::empty();
        let mut packet = ffmpeg::Packet::empty();
        loop {
            let packet_us = match self.read_video_packet(&mut packet, &mut stats)? {
                PacketRead::Video(us) => us,
                PacketRead::End => break,
                PacketRead::Stopped => return Ok(stats),
            };
            on_packet(&packet, packet_us);
            stats.last_packet_us = stats.last_packet_us.max(packet_us);
            if self.keyframes_only && !packet.is_key() {
                // Not even handed to the decoder: the point is to spend no CPU on it.
                continue;
            }
            if let Err(err) = self.decoder.send_packet(&packet) {
                note_error(&mut stats, err.to_string());
                continue;
            }
            if self.drain(&mut frame, &mut stats, &mut on_frame).is_break() {
                stats.stopped = true;
                return Ok(stats);
            }
        }
        // Flush the frames the decoder still holds (B-frame reordering, frame threads).
        if self.decoder.send_eof().is_ok()
            && self.drain(&mut frame, &mut stats, &mut on_frame).is_break()
        {
            stats.stopped = true;
        }
        Ok(stats)
    }

    /// Reads packets without decoding them, showing each video packet to `on_packet`: the
    /// main stream of a camera whose detection reads the sub-stream is only recorded.
    pub fn record_packets<P>(&mut self, mut on_packet: P) -> Result<DecodeStats, SourceError>
    where
        P: FnMut(&ffmpeg::Packet, i64),
    {
        let mut stats = DecodeStats::default();
        let mut packet = ffmpeg::Packet::empty();
        loop {
            match self.read_video_packet(&mut packet, &mut stats)? {
                PacketRead::Video(us) => {
                    on_packet(&packet, us);
                    stats.last_packet_us = stats.last_packet_us.max(us);
                    stats.last_pts_us = stats.last_packet_us;
                }
                PacketRead::End => return Ok(stats),
                PacketRead::Stopped => return Ok(stats),
            }
        }
    }

    /// The next packet of the video stream, with its time in microseconds since the first.
    fn read_video_packet(
        &mut self,
        packet: &mut ffmpeg::Packet,
        stats: &mut DecodeStats,
    ) -> Result<PacketRead, SourceError> {
        loop {
            self.watch.touch();
            // av_read_frame overwrites the packet without releasing the buffer it held, so
            // reusing one packet leaks every packet read unless it is unreferenced first
            // (found by the soak: 12 KB per frame).
            // SAFETY: unreferencing a packet we own; it is left blank and reusable.
            unsafe { ffi::av_packet_unref(ffmpeg::packet::Mut::as_mut_ptr(packet)) };
            match packet.read(&mut self.input) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => return Ok(PacketRead::End),
                Err(ffmpeg::Error::Other { errno }) if errno == libc::EAGAIN => continue,
                Err(err) => {
                    if self.watch.stop.load(Ordering::Relaxed) {
                        stats.stopped = true;
                        return Ok(PacketRead::Stopped);
                    }
                    if self.watch.timed_out.load(Ordering::Relaxed) {
                        return Err(SourceError::Timeout {
                            url: self.url.clone(),
                            timeout_s: self.watch.timeout_ms as f64 / 1000.0,
                        });
                    }
                    return Err(SourceError::Read {
                        url: self.url.clone(),
                        at_s: stats.last_pts_us as f64 / 1e6,
                        reason: err.to_string(),
                    });
                }
            }
            if packet.stream() != self.stream_index {
                continue;
            }
            stats.packets += 1;
            let packet_us = packet
                .pts()
                .or(packet.dts())
                .map_or(stats.last_pts_us, |ts| {
                    let first = *self.first_packet_ts.get_or_insert(ts);
                    let num = i128::from(self.time_base.numerator());
                    let den = i128::from(self.time_base.denominator()).max(1);
                    ((i128::from(ts - first) * num * 1_000_000 + den / 2) / den) as i64
                });
            return Ok(PacketRead::Video(packet_us));
        }
    }

    fn drain<F>(
        &mut self,
        frame: &mut ffmpeg::frame::Video,
        stats: &mut DecodeStats,
        on_frame: &mut F,
    ) -> ControlFlow<()>
    where
        F: FnMut(&ffmpeg::frame::Video, FrameTime) -> ControlFlow<()>,
    {
        loop {
            match self.decoder.receive_frame(frame) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => return ControlFlow::Continue(()),
                Err(ffmpeg::Error::Other { errno }) if errno == libc::EAGAIN => {
                    return ControlFlow::Continue(());
                }
                Err(err) => {
                    note_error(stats, err.to_string());
                    return ControlFlow::Continue(());
                }
            }
            let pts_us = self.frame_pts_us(frame);
            stats.last_pts_us = pts_us;
            // SAFETY: `frame` holds a valid AVFrame just filled by the decoder.
            let (error_flags, flags) = unsafe {
                let raw = frame.as_ptr();
                ((*raw).decode_error_flags, (*raw).flags)
            };
            if error_flags != 0 || flags & ffi::AV_FRAME_FLAG_CORRUPT != 0 {
                // Concealed or corrupt pictures would feed garbage boxes to the rules.
                note_error_at(stats, pts_us, "decoder flagged the frame as corrupt".into());
                continue;
            }
            if self.hardware {
                self.note_hardware_use(hwdecode::in_gpu(frame));
            }
            stats.frames += 1;
            let time = FrameTime {
                pts_us,
                keyframe: frame.is_key(),
            };
            if self.watch.stop.load(Ordering::Relaxed) {
                return ControlFlow::Break(());
            }
            on_frame(frame, time)?;
        }
    }

    /// Logs once when a hwaccel device was set up but FFmpeg decodes this stream in
    /// software (the chip lacks the profile or the size): the camera works, only slower.
    fn note_hardware_use(&mut self, in_gpu: bool) {
        if self.hardware_checked {
            return;
        }
        self.hardware_checked = true;
        if !in_gpu && self.info.decoder.contains(" + ") {
            tracing::warn!(
                url = self.url.as_str(),
                decoder = self.info.decoder.as_str(),
                "the hardware did not take this stream; decoding in software"
            );
            self.info.decoder_why = format!(
                "{} did not take this stream (a profile or size the chip lacks)",
                self.info.decoder
            );
            self.info.decoder = format!("{} (software)", self.info.codec);
            self.hardware = false;
        }
    }

    /// Stream time of a decoded frame, from its best-effort timestamp, rebased to the first
    /// frame. Frames without one, or going backwards, get the previous time plus one nominal
    /// frame duration so time never runs backwards downstream.
    fn frame_pts_us(&mut self, frame: &ffmpeg::frame::Video) -> i64 {
        let computed = frame.timestamp().map(|ts| {
            let first = *self.first_ts.get_or_insert(ts);
            let num = i128::from(self.time_base.numerator());
            let den = i128::from(self.time_base.denominator()).max(1);
            ((i128::from(ts - first) * num * 1_000_000 + den / 2) / den) as i64
        });
        let pts = match (computed, self.last_pts_us) {
            (Some(t), Some(last)) if t <= last => last + self.nominal_frame_us,
            (Some(t), _) => t,
            (None, Some(last)) => last + self.nominal_frame_us,
            (None, None) => 0,
        };
        self.last_pts_us = Some(pts);
        pts
    }
}

fn note_error(stats: &mut DecodeStats, reason: String) {
    let at = stats.last_pts_us;
    note_error_at(stats, at, reason);
}

fn note_error_at(stats: &mut DecodeStats, pts_us: i64, reason: String) {
    stats.decode_errors += 1;
    if stats.first_error.is_none() {
        stats.first_error = Some((pts_us as f64 / 1e6, reason));
    }
}

impl DecodeStats {
    /// For a finite input (a file), turns what went wrong into an error: nothing decodable,
    /// corrupt packets, or an end well before the duration the container states.
    pub fn check_complete(&self, url: &str, info: &StreamInfo) -> Result<(), SourceError> {
        let first = || {
            self.first_error
                .clone()
                .unwrap_or((0.0, "unknown".to_string()))
        };
        if self.stopped {
            return Ok(());
        }
        if self.frames == 0 {
            return Err(SourceError::NoFrames {
                url: url.to_string(),
                errors: self.decode_errors,
                first: first().1,
            });
        }
        if self.decode_errors > 0 {
            let (at_s, reason) = first();
            return Err(SourceError::Corrupt {
                url: url.to_string(),
                errors: self.decode_errors,
                at_s,
                reason,
                good: self.frames,
            });
        }
        if let (Some(duration_s), Some(fps)) = (info.duration_s, info.fps) {
            let end_s = self.last_pts_us.max(self.last_packet_us) as f64 / 1e6;
            // The last frame starts one frame before the end; allow a few more for edits
            // and rounding in the container's duration.
            if end_s + 3.0 / fps + 0.5 < duration_s {
                return Err(SourceError::Truncated {
                    url: url.to_string(),
                    at_s: end_s,
                    duration_s,
                });
            }
        }
        Ok(())
    }
}

fn describe_open_error(err: &ffmpeg::Error) -> String {
    match err {
        ffmpeg::Error::InvalidData => {
            "not a media file FFmpeg can read (invalid data found when processing input)".into()
        }
        other => other.to_string(),
    }
}

fn describe_streams(input: &ffmpeg::format::context::Input) -> String {
    let kinds: Vec<String> = input
        .streams()
        .map(|s| format!("{:?}", s.parameters().medium()).to_lowercase())
        .collect();
    if kinds.is_empty() {
        "no streams at all".into()
    } else {
        format!("streams: {}", kinds.join(", "))
    }
}

/// What a clip or snapshot needs besides the packets: the stream as the decoder opened it
/// (the evidence stage remuxes its packets with these).
#[derive(Clone)]
pub struct StreamSetup {
    pub parameters: ffmpeg::codec::Parameters,
    pub time_base: ffmpeg::Rational,
    pub width: u32,
    pub height: u32,
}

impl StreamSetup {
    /// The same stream at another size (an in-band resolution change).
    pub fn resized(&self, width: u32, height: u32) -> StreamSetup {
        let mut parameters = self.parameters.clone();
        // SAFETY: plain field writes on our own copy of the codec parameters; the muxer
        // reads the size from them for the clip's track header.
        unsafe {
            let raw = parameters.as_mut_ptr();
            (*raw).width = width as i32;
            (*raw).height = height as i32;
        }
        StreamSetup {
            parameters,
            time_base: self.time_base,
            width,
            height,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials_only() {
        assert_eq!(
            redact_url("rtsp://admin:secret@10.0.0.2:554/Streaming/101"),
            "rtsp://***@10.0.0.2:554/Streaming/101"
        );
        assert_eq!(
            redact_url("rtsp://10.0.0.2/a@b"),
            "rtsp://10.0.0.2/a@b",
            "an @ in the path is not a credential"
        );
        assert_eq!(redact_url("/data/clip.mp4"), "/data/clip.mp4");
    }

    #[test]
    fn missing_file_is_an_open_error() {
        let err = VideoSource::open(
            "/nonexistent/clip.mp4",
            &OpenOptions::default(),
            Arc::new(AtomicBool::new(false)),
        )
        .err()
        .expect("must fail");
        let text = err.to_string();
        assert!(matches!(err, SourceError::Open { .. }), "{text}");
        assert!(text.contains("No such file"), "{text}");
    }
}
