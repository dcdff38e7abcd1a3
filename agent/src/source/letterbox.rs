//! One swscale pass from a decoded frame (any pixel format, full resolution) into the
//! model's letterboxed, planar, 8-bit colour buffer.
//!
//! The scaler writes straight into the image area of a reusable buffer whose padding was
//! filled once; there is no full-resolution RGB copy and no per-frame allocation. The three
//! output planes land in the channel order the model wants (BGR or RGB) by pointing
//! swscale's planar-GBR output at the right offsets.

use std::ptr;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;

use crate::frame::Crop;
use crate::model::{ColorOrder, InputSpec, LetterboxAnchor};

/// The resampling filter, by its FFmpeg name. The parity test feeds the same name to the
/// ffmpeg CLI's `scale` filter so the Python reference sees bit-identical pixels.
/// Bicubic: on the sample images it keeps YOLOX-Nano's scores closest to those it gives with
/// the OpenCV resize it was trained with, at a cost that is small next to decoding.
pub const SCALER_FLAGS_NAME: &str = "bicubic";
const SCALER_FLAGS: i32 = ffi::SWS_BICUBIC;

/// Where the source image sits inside the model input, and how to map boxes back. With a
/// detection region, the letterbox holds a crop of the picture: `crop` is that crop in
/// picture pixels (the whole picture without one), and `ratio` applies to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// The whole picture the crop comes from.
    pub src_width: u32,
    pub src_height: u32,
    pub crop: Crop,
    pub scaled_width: u32,
    pub scaled_height: u32,
    pub offset_x: u32,
    pub offset_y: u32,
    /// Model pixels per source pixel (YOLOX's `r`).
    pub ratio: f64,
}

impl Geometry {
    /// The letterbox for a source size, the way YOLOX's `preproc` computes it:
    /// `r = min(H / h, W / w)`, scaled size `int(w * r) x int(h * r)`.
    pub fn compute(src_width: u32, src_height: u32, spec: &InputSpec) -> Geometry {
        Geometry::of_crop(
            src_width,
            src_height,
            Crop::whole(src_width, src_height),
            spec,
        )
    }

    /// The letterbox of `crop` of a `src_width`×`src_height` picture.
    pub fn of_crop(src_width: u32, src_height: u32, crop: Crop, spec: &InputSpec) -> Geometry {
        let (crop_width, crop_height) = (crop.width, crop.height);
        let (dst_w, dst_h) = (spec.width() as f64, spec.height() as f64);
        let ratio = (dst_h / f64::from(crop_height)).min(dst_w / f64::from(crop_width));
        let scaled_width = ((f64::from(crop_width) * ratio) as u32).clamp(1, spec.width() as u32);
        let scaled_height =
            ((f64::from(crop_height) * ratio) as u32).clamp(1, spec.height() as u32);
        let (offset_x, offset_y) = match spec.letterbox {
            LetterboxAnchor::TopLeft => (0, 0),
            LetterboxAnchor::Center => (
                (spec.width() as u32 - scaled_width) / 2,
                (spec.height() as u32 - scaled_height) / 2,
            ),
        };
        Geometry {
            src_width,
            src_height,
            crop,
            scaled_width,
            scaled_height,
            offset_x,
            offset_y,
            ratio,
        }
    }
}

/// Runs `context` over the whole of `frame` into the planes `dst` with `strides`; returns
/// the rows written (0 or less: failed). Shared by the letterbox and the motion gate.
///
/// # Safety
/// `context` must have been built for the frame's size and format, and `dst`/`strides`
/// must address buffers large enough for its output.
pub(crate) unsafe fn scale_frame(
    context: *mut ffi::SwsContext,
    frame: &ffmpeg::frame::Video,
    dst: &[*mut u8; 4],
    strides: &[i32; 4],
) -> i32 {
    // SAFETY: the caller's contract; the whole frame is its own crop.
    unsafe {
        let raw = frame.as_ptr();
        let whole = Crop::whole((*raw).width as u32, (*raw).height as u32);
        scale_crop(context, frame, whole, dst, strides)
    }
}

/// As [`scale_frame`] for `crop` of the frame only: swscale reads the crop in place through
/// offset plane pointers (as FFmpeg's `av_frame_apply_cropping` computes them), so a region
/// costs no copy of the frame. Returns 0 for a crop outside the frame or a format whose
/// planes cannot be offset (bitstream and paletted formats).
///
/// # Safety
/// `context` must have been built for the crop's size and the frame's format, and
/// `dst`/`strides` must address buffers large enough for its output.
pub(crate) unsafe fn scale_crop(
    context: *mut ffi::SwsContext,
    frame: &ffmpeg::frame::Video,
    crop: Crop,
    dst: &[*mut u8; 4],
    strides: &[i32; 4],
) -> i32 {
    // SAFETY: reading the decoded frame's plain fields and its format's descriptor; the
    // offsets stay inside each plane because the crop lies inside the frame.
    unsafe {
        let raw = frame.as_ptr();
        let (width, height) = ((*raw).width as u32, (*raw).height as u32);
        if crop.x + crop.width > width || crop.y + crop.height > height {
            return 0;
        }
        let format = std::mem::transmute::<i32, ffi::AVPixelFormat>((*raw).format);
        let desc = ffi::av_pix_fmt_desc_get(format);
        if desc.is_null() {
            return 0;
        }
        let desc = &*desc;
        let unsupported = (ffi::AV_PIX_FMT_FLAG_BITSTREAM | ffi::AV_PIX_FMT_FLAG_PAL) as u64;
        if desc.flags & unsupported != 0 {
            return 0;
        }
        let mut src: [*const u8; 4] = [ptr::null(); 4];
        for (plane, slot) in src.iter_mut().enumerate() {
            let data = (*raw).data[plane];
            if data.is_null() {
                break;
            }
            let chroma = plane == 1 || plane == 2;
            let (shift_x, shift_y) = if chroma {
                (desc.log2_chroma_w, desc.log2_chroma_h)
            } else {
                (0, 0)
            };
            let Some(component) = desc.comp[..usize::from(desc.nb_components)]
                .iter()
                .find(|c| c.plane == plane as i32)
            else {
                return 0;
            };
            let offset = (crop.y >> shift_y) as isize * (*raw).linesize[plane] as isize
                + (crop.x >> shift_x) as isize * component.step as isize;
            *slot = data.offset(offset);
        }
        ffi::sws_scale(
            context,
            src.as_ptr(),
            (*raw).linesize.as_ptr(),
            0,
            crop.height as i32,
            dst.as_ptr(),
            strides.as_ptr(),
        )
    }
}

/// A model input image: three planes of `width x height` bytes in the model's channel order.
/// Lives in a pool and is reused; `geometry` says what the last fill looked like so padding
/// is only rewritten when the layout changes.
#[derive(Debug, Clone)]
pub struct ModelInput {
    pub width: usize,
    pub height: usize,
    pub planes: Vec<u8>,
    pub geometry: Option<Geometry>,
}

impl ModelInput {
    pub fn new(spec: &InputSpec) -> ModelInput {
        ModelInput {
            width: spec.width(),
            height: spec.height(),
            planes: vec![spec.pad_value; 3 * spec.width() * spec.height()],
            geometry: None,
        }
    }

    pub fn plane(&self, channel: usize) -> &[u8] {
        let size = self.width * self.height;
        &self.planes[channel * size..(channel + 1) * size]
    }
}

/// Identifies what a scaler context was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ScalerKey {
    width: u32,
    height: u32,
    crop: Crop,
    format: i32,
    colorspace: i32,
    range: i32,
}

/// Owns the swscale context; rebuilt only when the source size or format changes (a camera
/// switching resolution mid-stream).
pub struct Letterboxer {
    spec: InputSpec,
    context: *mut ffi::SwsContext,
    key: Option<ScalerKey>,
    geometry: Option<Geometry>,
    /// Output plane index of swscale's GBRP planes (G, B, R) in the model's channel order.
    plane_channels: [usize; 3],
}

// SAFETY: the SwsContext is owned exclusively by this value and used from one thread at a
// time (`&mut self`); swscale contexts have no thread affinity.
unsafe impl Send for Letterboxer {}

impl Drop for Letterboxer {
    fn drop(&mut self) {
        if !self.context.is_null() {
            // SAFETY: the pointer came from sws_getContext and is freed once.
            unsafe { ffi::sws_freeContext(self.context) };
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot convert {width}x{height} {format} frames for the model")]
pub struct ScalerError {
    pub width: u32,
    pub height: u32,
    pub format: String,
}

impl Letterboxer {
    pub fn new(spec: &InputSpec) -> Letterboxer {
        // GBRP plane order is G, B, R.
        let plane_channels = match spec.color {
            ColorOrder::Bgr => [1, 0, 2],
            ColorOrder::Rgb => [1, 2, 0],
        };
        Letterboxer {
            spec: spec.clone(),
            context: ptr::null_mut(),
            key: None,
            geometry: None,
            plane_channels,
        }
    }

    /// Scales `frame` into `out`, returning where the image landed.
    pub fn run(
        &mut self,
        frame: &ffmpeg::frame::Video,
        out: &mut ModelInput,
    ) -> Result<Geometry, ScalerError> {
        self.run_crop(frame, None, out)
    }

    /// Scales `crop` of `frame` (the whole frame for `None`) into `out`: a detection
    /// region's one swscale pass.
    pub fn run_crop(
        &mut self,
        frame: &ffmpeg::frame::Video,
        crop: Option<Crop>,
        out: &mut ModelInput,
    ) -> Result<Geometry, ScalerError> {
        // SAFETY: reading plain fields of a valid decoded AVFrame.
        let key = unsafe {
            let raw = frame.as_ptr();
            let (width, height) = ((*raw).width as u32, (*raw).height as u32);
            ScalerKey {
                width,
                height,
                crop: crop.unwrap_or(Crop::whole(width, height)),
                format: (*raw).format,
                colorspace: (*raw).colorspace as i32,
                range: (*raw).color_range as i32,
            }
        };
        if self.key != Some(key) || self.context.is_null() {
            self.rebuild(key, frame)?;
        }
        let geometry = self.geometry.ok_or_else(|| self.error(key, frame))?;
        if out.geometry != Some(geometry) {
            out.planes.fill(self.spec.pad_value);
        }
        let plane_size = out.width * out.height;
        let origin = geometry.offset_y as usize * out.width + geometry.offset_x as usize;
        let base = out.planes.as_mut_ptr();
        let mut dst: [*mut u8; 4] = [ptr::null_mut(); 4];
        for (plane, channel) in self.plane_channels.iter().enumerate() {
            // SAFETY: channel < 3 and origin + the scaled area lie inside the plane, because
            // the geometry's offset plus scaled size never exceeds the input size.
            dst[plane] = unsafe { base.add(channel * plane_size + origin) };
        }
        let dst_stride = [out.width as i32; 4];
        // SAFETY: the context was built for this frame's key; destination pointers address
        // `out.planes`, which outlives the call, with the right strides.
        let rows = unsafe { scale_crop(self.context, frame, key.crop, &dst, &dst_stride) };
        if rows <= 0 {
            return Err(self.error(key, frame));
        }
        out.geometry = Some(geometry);
        Ok(geometry)
    }

    fn error(&self, key: ScalerKey, frame: &ffmpeg::frame::Video) -> ScalerError {
        ScalerError {
            width: key.width,
            height: key.height,
            format: format!("{:?}", frame.format()).to_lowercase(),
        }
    }

    fn rebuild(&mut self, key: ScalerKey, frame: &ffmpeg::frame::Video) -> Result<(), ScalerError> {
        if !self.context.is_null() {
            // SAFETY: freeing the context we own before replacing it.
            unsafe { ffi::sws_freeContext(self.context) };
            self.context = ptr::null_mut();
        }
        let crop = key.crop;
        if crop.width == 0
            || crop.height == 0
            || crop.x + crop.width > key.width
            || crop.y + crop.height > key.height
        {
            return Err(self.error(key, frame));
        }
        let geometry = Geometry::of_crop(key.width, key.height, crop, &self.spec);
        // SAFETY: plain constructor call; a null return is handled below. The format value
        // comes from FFmpeg's own decoder output.
        let context = unsafe {
            ffi::sws_getContext(
                crop.width as i32,
                crop.height as i32,
                std::mem::transmute::<i32, ffi::AVPixelFormat>(key.format),
                geometry.scaled_width as i32,
                geometry.scaled_height as i32,
                ffi::AVPixelFormat::AV_PIX_FMT_GBRP,
                SCALER_FLAGS,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null(),
            )
        };
        if context.is_null() {
            return Err(self.error(key, frame));
        }
        // Take the YUV matrix and range from the frame, as FFmpeg's scale filter does, so a
        // BT.709 or full-range camera is not read with BT.601 limited-range coefficients.
        // SAFETY: context is valid; the out-pointers point at locals of the right types.
        unsafe {
            let mut inv_table: *mut i32 = ptr::null_mut();
            let mut table: *mut i32 = ptr::null_mut();
            let (mut src_range, mut dst_range) = (0, 0);
            let (mut brightness, mut contrast, mut saturation) = (0, 0, 0);
            if ffi::sws_getColorspaceDetails(
                context,
                &mut inv_table,
                &mut src_range,
                &mut table,
                &mut dst_range,
                &mut brightness,
                &mut contrast,
                &mut saturation,
            ) >= 0
            {
                let coefficients = ffi::sws_getCoefficients(key.colorspace);
                if key.range == ffi::AVColorRange::AVCOL_RANGE_JPEG as i32 {
                    src_range = 1;
                } else if key.range == ffi::AVColorRange::AVCOL_RANGE_MPEG as i32 {
                    src_range = 0;
                }
                ffi::sws_setColorspaceDetails(
                    context,
                    coefficients,
                    src_range,
                    table,
                    dst_range,
                    brightness,
                    contrast,
                    saturation,
                );
            }
        }
        self.context = context;
        self.key = Some(key);
        self.geometry = Some(geometry);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelManifest;
    use std::path::Path;

    fn spec() -> InputSpec {
        ModelManifest::resolve("yolox_nano", Path::new("."))
            .unwrap()
            .input
    }

    #[test]
    fn geometry_follows_yolox_preproc() {
        // 432 * (416 / 768) is 233.99...: truncated like Python's int(), as YOLOX does.
        let g = Geometry::compute(768, 432, &spec());
        assert_eq!((g.scaled_width, g.scaled_height), (416, 233));
        assert_eq!((g.offset_x, g.offset_y), (0, 0));
        let g = Geometry::compute(768, 576, &spec());
        assert_eq!((g.scaled_width, g.scaled_height), (416, 312));
        let g = Geometry::compute(1080, 1920, &spec());
        assert_eq!((g.scaled_width, g.scaled_height), (234, 416));
        let g = Geometry::compute(1920, 1080, &spec());
        assert_eq!((g.scaled_width, g.scaled_height), (416, 234));
    }

    #[test]
    fn centred_letterbox_splits_the_padding() {
        let mut s = spec();
        s.letterbox = LetterboxAnchor::Center;
        let g = Geometry::compute(768, 432, &s);
        assert_eq!((g.offset_x, g.offset_y), (0, 91));
    }

    fn solid_frame(width: u32, height: u32, y: u8) -> ffmpeg::frame::Video {
        crate::source::init_ffmpeg();
        let mut frame = ffmpeg::frame::Video::new(ffmpeg::format::Pixel::YUV420P, width, height);
        frame.data_mut(0).fill(y);
        frame.data_mut(1).fill(128);
        frame.data_mut(2).fill(128);
        frame
    }

    #[test]
    fn scales_into_image_area_and_keeps_padding() {
        let s = spec();
        let mut boxer = Letterboxer::new(&s);
        let mut input = ModelInput::new(&s);
        let g = boxer.run(&solid_frame(768, 432, 235), &mut input).unwrap();
        assert_eq!(g.scaled_height, 233);
        for channel in 0..3 {
            let plane = input.plane(channel);
            // Limited-range white (Y=235) becomes 255 in every channel.
            assert_eq!(plane[0], 255);
            assert_eq!(plane[232 * 416 + 415], 255);
            // Below the image: untouched padding.
            assert_eq!(plane[233 * 416], 114);
            assert_eq!(plane[415 * 416 + 415], 114);
        }
    }

    #[test]
    fn resolution_change_rebuilds_and_repads() {
        let s = spec();
        let mut boxer = Letterboxer::new(&s);
        let mut input = ModelInput::new(&s);
        boxer.run(&solid_frame(416, 416, 235), &mut input).unwrap();
        assert_eq!(
            input.plane(0)[415 * 416],
            255,
            "square frame fills everything"
        );
        let g = boxer.run(&solid_frame(768, 432, 16), &mut input).unwrap();
        assert_eq!(g.scaled_height, 233);
        assert_eq!(input.plane(0)[0], 0, "black image area");
        assert_eq!(
            input.plane(0)[415 * 416],
            114,
            "old pixels replaced by padding"
        );
    }

    #[test]
    fn a_crop_is_letterboxed_at_native_resolution_from_inside_the_frame() {
        let s = spec();
        let mut boxer = Letterboxer::new(&s);
        let mut input = ModelInput::new(&s);
        // A 1920x1080 black frame with a white 40x40 block at (1000, 600).
        let mut frame = solid_frame(1920, 1080, 16);
        let stride = frame.stride(0);
        for y in 600..640 {
            frame.data_mut(0)[y * stride + 1000..y * stride + 1040].fill(235);
        }
        let crop = Crop {
            x: 900,
            y: 500,
            width: 416,
            height: 416,
        };
        let g = boxer.run_crop(&frame, Some(crop), &mut input).unwrap();
        assert_eq!(g.crop, crop);
        assert_eq!((g.scaled_width, g.scaled_height), (416, 416));
        assert!((g.ratio - 1.0).abs() < 1e-9);
        let plane = input.plane(0);
        // The block lands at (100, 100) of the input, at its own size.
        assert_eq!(plane[120 * 416 + 120], 255, "inside the block");
        assert_eq!(plane[120 * 416 + 95], 0, "left of the block");
        assert_eq!(plane[95 * 416 + 120], 0, "above the block");
        assert_eq!(plane[120 * 416 + 145], 0, "right of the block");
        // The same frame whole: the block shrinks to 8-9 px.
        let g = boxer.run(&frame, &mut input).unwrap();
        assert!(g.crop.is_whole(1920, 1080));
        let bright = input.plane(0).iter().filter(|&&v| v > 128).count();
        assert!((50..=100).contains(&bright), "{bright} bright pixels");
    }
}
