//! Turning ring packets into evidence files: an MP4 clip by remuxing (no re-encoding) and a
//! JPEG of one frame, decoded from the packets.

use std::path::Path;

use ffmpeg_next as ffmpeg;
use image::RgbImage;

use super::ring::PacketRange;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{0}")]
    Ffmpeg(String),
    #[error("no frame at or before the requested time")]
    NoFrame,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Image(#[from] image::ImageError),
}

fn ff(context: &str) -> impl Fn(ffmpeg::Error) -> MediaError + '_ {
    move |e| MediaError::Ffmpeg(format!("{context}: {e}"))
}

/// Writes `range` to `path` as MP4 with `+faststart`, timestamps starting at 0.
pub fn write_clip(range: &PacketRange, path: &Path) -> Result<f64, MediaError> {
    let mut output = ffmpeg::format::output(path).map_err(ff("opening the clip"))?;
    {
        let mut stream = output
            .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
            .map_err(ff("adding the video stream"))?;
        stream.set_parameters(range.setup.parameters.clone());
        stream.set_time_base(range.setup.time_base);
        // The input's codec tag may be meaningless in MP4; let the muxer choose.
        // SAFETY: plain field write on the stream's own codec parameters.
        unsafe {
            (*stream.parameters().as_mut_ptr()).codec_tag = 0;
        }
    }
    let mut options = ffmpeg::Dictionary::new();
    options.set("movflags", "+faststart");
    output
        .write_header_with(options)
        .map_err(ff("writing the clip header"))?;
    let out_tb = output
        .stream(0)
        .map(|s| s.time_base())
        .unwrap_or(range.setup.time_base);
    // Rebase so the clip starts at 0: the first packet's DTS (or PTS) becomes 0.
    let origin = range
        .packets
        .iter()
        .filter_map(|p| p.dts.or(p.pts))
        .min()
        .unwrap_or(0);
    let mut last_dts = i64::MIN;
    let mut first_pts = None;
    let mut last_pts = 0i64;
    for p in &range.packets {
        let mut packet = ffmpeg::Packet::copy(&p.data);
        let pts = p.pts.map(|t| t - origin);
        // Muxers need strictly increasing DTS.
        let mut dts = p.dts.or(p.pts).map(|t| t - origin).unwrap_or(last_dts + 1);
        if dts <= last_dts {
            dts = last_dts + 1;
        }
        last_dts = dts;
        packet.set_pts(pts.or(Some(dts)));
        packet.set_dts(Some(dts));
        packet.set_duration(p.duration);
        if p.key {
            packet.set_flags(ffmpeg::packet::Flags::KEY);
        }
        packet.set_stream(0);
        packet.rescale_ts(range.setup.time_base, out_tb);
        if let Some(t) = pts {
            first_pts.get_or_insert(t);
            last_pts = last_pts.max(t + p.duration);
        }
        packet
            .write_interleaved(&mut output)
            .map_err(ff("writing a clip packet"))?;
    }
    output.write_trailer().map_err(ff("finishing the clip"))?;
    let span = last_pts - first_pts.unwrap_or(0);
    Ok(span as f64 * f64::from(range.setup.time_base))
}

/// Decodes `range` and returns the last frame at or before `at_us`, as RGB.
pub fn decode_frame(range: &PacketRange, at_us: i64) -> Result<RgbImage, MediaError> {
    let context = ffmpeg::codec::context::Context::from_parameters(range.setup.parameters.clone())
        .map_err(ff("preparing the decoder"))?;
    let mut decoder = context
        .decoder()
        .video()
        .map_err(ff("opening the decoder"))?;
    let mut frame = ffmpeg::frame::Video::empty();
    let mut chosen: Option<ffmpeg::frame::Video> = None;
    // Frames come out in presentation order; map them back to packet times by PTS.
    let time_of = |pts: Option<i64>| {
        pts.and_then(|pts| range.packets.iter().find(|p| p.pts == Some(pts)))
            .map(|p| p.at_us)
    };
    let consider = |frame: &ffmpeg::frame::Video, chosen: &mut Option<ffmpeg::frame::Video>| {
        let at = time_of(frame.timestamp()).unwrap_or(i64::MIN);
        if at <= at_us || chosen.is_none() {
            *chosen = Some(frame.clone());
        }
    };
    for p in &range.packets {
        let mut packet = ffmpeg::Packet::copy(&p.data);
        packet.set_pts(p.pts);
        packet.set_dts(p.dts);
        if decoder.send_packet(&packet).is_err() {
            continue;
        }
        while decoder.receive_frame(&mut frame).is_ok() {
            consider(&frame, &mut chosen);
        }
    }
    let _ = decoder.send_eof();
    while decoder.receive_frame(&mut frame).is_ok() {
        consider(&frame, &mut chosen);
    }
    let frame = chosen.ok_or(MediaError::NoFrame)?;
    crate::source::rgb_image(&frame).map_err(ff("converting the frame"))
}
