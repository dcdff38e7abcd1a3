//! Decoder selection: the configured hardware decoder when the box has it, software
//! otherwise. Installers set one name per camera and deploy the same config on boxes with
//! and without the hardware, so a missing driver is a warning and a software fallback,
//! never a camera that stays dark.

use std::ffi::CString;
use std::ptr;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;

use super::OpenOptions;
use crate::config::HWACCEL_DECODERS;

/// An opened decoder and how it decodes, for the log ("h264 (software)", "h264 + vaapi",
/// "h264_rkmpp").
pub(super) struct OpenedDecoder {
    pub decoder: ffmpeg::decoder::Video,
    pub description: String,
    /// Frames may come in GPU memory and need a download before swscale.
    pub hardware: bool,
    /// Why this decoder: the hwaccel in use, or why decoding is in software.
    pub why: String,
}

/// Opens the decoder for `params`, trying `options.hwaccel` first. `shown` is the redacted
/// URL for the fallback warning.
pub(super) fn open_decoder(
    params: &ffmpeg::codec::Parameters,
    options: &OpenOptions,
    shown: &str,
) -> Result<OpenedDecoder, ffmpeg::Error> {
    let mut why = "the camera sets no hwaccel".to_string();
    if let Some(name) = &options.hwaccel {
        match open_hardware(params, options, name) {
            Ok(opened) => return Ok(opened),
            Err(reason) => {
                tracing::warn!(
                    url = shown,
                    hwaccel = name.as_str(),
                    "hardware decoding unavailable ({reason}); decoding in software"
                );
                why = format!("hwaccel {name} unavailable: {reason}");
            }
        }
    }
    let decoder = prepare(params, options)?.video()?;
    let description = format!(
        "{} (software)",
        decoder
            .codec()
            .map_or_else(|| "unknown".to_owned(), |c| c.name().to_owned())
    );
    Ok(OpenedDecoder {
        decoder,
        description,
        hardware: false,
        why,
    })
}

/// A decoder context with the camera's threading and keyframe settings, not yet opened.
fn prepare(
    params: &ffmpeg::codec::Parameters,
    options: &OpenOptions,
) -> Result<ffmpeg::decoder::Decoder, ffmpeg::Error> {
    let mut context = ffmpeg::codec::context::Context::from_parameters(params.clone())?;
    if options.decode_threads > 1 {
        context.set_threading(ffmpeg::codec::threading::Config {
            kind: ffmpeg::codec::threading::Type::Frame,
            count: options.decode_threads,
            ..Default::default()
        });
    }
    let mut decoder = context.decoder();
    if options.keyframes_only {
        decoder.skip_frame(ffmpeg::Discard::NonKey);
    }
    Ok(decoder)
}

fn open_hardware(
    params: &ffmpeg::codec::Parameters,
    options: &OpenOptions,
    name: &str,
) -> Result<OpenedDecoder, String> {
    let software = ffmpeg::decoder::find(params.id())
        .ok_or_else(|| format!("no decoder for {:?}", params.id()))?;
    if HWACCEL_DECODERS.contains(&name) {
        // A decoder family of its own (V4L2 mem2mem, Rockchip MPP, NVDEC via cuvid).
        let wrapper = format!("{}_{name}", software.name());
        let codec = ffmpeg::decoder::find_by_name(&wrapper)
            .ok_or_else(|| format!("this FFmpeg build has no {wrapper} decoder"))?;
        let decoder = prepare(params, options)
            .and_then(|d| d.open_as(codec))
            .and_then(|d| d.video())
            .map_err(|err| format!("{wrapper}: {err}"))?;
        return Ok(OpenedDecoder {
            why: format!("hwaccel {name}: the {wrapper} decoder"),
            decoder,
            description: wrapper,
            hardware: true,
        });
    }
    let c_name = CString::new(name).map_err(|_| "bad name".to_string())?;
    // SAFETY: a lookup by NUL-terminated name.
    let kind = unsafe { ffi::av_hwdevice_find_type_by_name(c_name.as_ptr()) };
    if kind == ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_NONE {
        return Err(format!("this FFmpeg build has no {name} support"));
    }
    let supported = (0..)
        .map_while(|i| {
            // SAFETY: FFmpeg returns null past the last configuration.
            let config = unsafe { ffi::avcodec_get_hw_config(software.as_ptr(), i) };
            // SAFETY: non-null configurations are static data owned by FFmpeg.
            (!config.is_null()).then(|| unsafe { ((*config).methods, (*config).device_type) })
        })
        .any(|(methods, device)| {
            methods & ffi::AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX as i32 != 0 && device == kind
        });
    if !supported {
        return Err(format!("the {} decoder cannot use {name}", software.name()));
    }
    let mut decoder = prepare(params, options).map_err(|err| err.to_string())?;
    let device_path = match &options.hwaccel_device {
        Some(path) => Some(CString::new(path.as_str()).map_err(|_| "bad device path")?),
        None => None,
    };
    let mut device: *mut ffi::AVBufferRef = ptr::null_mut();
    // SAFETY: creates a reference-counted device context; `device` is ours on success.
    let ret = unsafe {
        ffi::av_hwdevice_ctx_create(
            &mut device,
            kind,
            device_path.as_ref().map_or(ptr::null(), |p| p.as_ptr()),
            ptr::null_mut(),
            0,
        )
    };
    if ret < 0 || device.is_null() {
        return Err(format!(
            "cannot open the {name} device: {}",
            ffmpeg::Error::from(ret)
        ));
    }
    // SAFETY: the codec context takes over our reference and frees it with itself. FFmpeg's
    // default get_format then picks the hardware format when the device can decode the
    // stream, and a software format when it cannot (a profile the chip lacks), which the
    // first frame shows (see `VideoSource::drain`).
    unsafe { (*decoder.as_mut_ptr()).hw_device_ctx = device };
    let decoder = decoder
        .open_as(software)
        .and_then(|d| d.video())
        .map_err(|err| format!("{} + {name}: {err}", software.name()))?;
    Ok(OpenedDecoder {
        decoder,
        description: format!("{} + {name}", software.name()),
        hardware: true,
        why: format!("hwaccel {name}: its device opened"),
    })
}

/// Whether a decoded frame lives in GPU memory (a hwaccel device decoded it).
pub(super) fn in_gpu(frame: &ffmpeg::frame::Video) -> bool {
    // SAFETY: a plain field read of a decoded frame.
    unsafe { !(*frame.as_ptr()).hw_frames_ctx.is_null() }
}

/// The frame's pixels in CPU memory: `frame` itself for a software frame; for a frame in
/// GPU memory, a download into `scratch` (reused while the size holds) with its timestamps
/// and flags. Decoders hand out every frame as it is, and their consumers call this only
/// for the frames they read, so unsampled frames never cross the bus.
pub fn cpu_frame<'a>(
    frame: &'a ffmpeg::frame::Video,
    scratch: &'a mut ffmpeg::frame::Video,
) -> Result<&'a ffmpeg::frame::Video, ffmpeg::Error> {
    if !in_gpu(frame) {
        return Ok(frame);
    }
    // SAFETY: FFmpeg's own transfer, which allocates `scratch` when it holds no buffer and
    // otherwise fills it in place.
    unsafe {
        let src = frame.as_ptr();
        let dst = scratch.as_mut_ptr();
        if (*dst).width != (*src).width || (*dst).height != (*src).height {
            ffi::av_frame_unref(dst);
        }
        let ret = ffi::av_hwframe_transfer_data(dst, src, 0);
        if ret < 0 {
            return Err(ffmpeg::Error::from(ret));
        }
        let ret = ffi::av_frame_copy_props(dst, src);
        if ret < 0 {
            return Err(ffmpeg::Error::from(ret));
        }
    }
    Ok(scratch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip() -> String {
        let dirs = crate::assets::AssetKind::Media.search_dirs(None);
        let path = dirs
            .iter()
            .map(|d| d.join("car-detection.mp4"))
            .find(|p| p.exists())
            .expect("shared media (run scripts/setup.sh)");
        path.to_string_lossy().into_owned()
    }

    /// On a box without the hardware (this CI machine has no GPU, no /dev/dri, no V4L2
    /// decoder, no Rockchip MPP in its FFmpeg), every name falls back to software and the
    /// stream still decodes.
    #[test]
    fn missing_hardware_falls_back_to_software() {
        for name in ["vaapi", "cuda", "qsv", "vdpau", "v4l2m2m", "rkmpp", "cuvid"] {
            let options = OpenOptions {
                hwaccel: Some(name.into()),
                ..OpenOptions::default()
            };
            let mut source =
                super::super::VideoSource::open(&clip(), &options, Default::default()).unwrap();
            let decoder = source.info().decoder.clone();
            assert!(
                decoder == "h264 (software)" || decoder.contains(name),
                "{name}: {decoder}"
            );
            let mut frames = 0;
            source
                .run(|frame, _| {
                    assert!(frame.width() > 0);
                    frames += 1;
                    if frames == 10 {
                        std::ops::ControlFlow::Break(())
                    } else {
                        std::ops::ControlFlow::Continue(())
                    }
                })
                .unwrap();
            assert_eq!(frames, 10, "{name}");
        }
    }

    #[test]
    fn software_frames_need_no_download() {
        let frame = ffmpeg::frame::Video::new(ffmpeg::format::Pixel::YUV420P, 64, 48);
        let mut scratch = ffmpeg::frame::Video::empty();
        assert!(!in_gpu(&frame));
        let cpu = cpu_frame(&frame, &mut scratch).unwrap();
        assert!(
            std::ptr::eq(cpu, &frame),
            "a software frame is handed back as it is"
        );
    }
}
