//! Drawing boxes and labels onto images, for `detect --annotate` and (later) incident
//! snapshots. A small helper on top of `image`: outlined rectangles, polylines, and ASCII
//! labels from an 8x8 bitmap font, which is all evidence pictures need.

use image::{Rgb, RgbImage};

use crate::frame::{BBox, Detection};

/// A colour per class id, stable across runs, bright enough on both dark and light scenes.
pub fn class_colour(class_id: u16) -> Rgb<u8> {
    const PALETTE: [[u8; 3]; 10] = [
        [255, 56, 56],
        [255, 157, 151],
        [255, 112, 31],
        [255, 178, 29],
        [207, 210, 49],
        [72, 249, 10],
        [26, 147, 52],
        [0, 212, 187],
        [44, 153, 168],
        [0, 194, 255],
    ];
    Rgb(PALETTE[usize::from(class_id) % PALETTE.len()])
}

/// Fills a rectangle, clipped to the image.
pub fn fill_rect(img: &mut RgbImage, x: i64, y: i64, w: i64, h: i64, colour: Rgb<u8>) {
    let (iw, ih) = (i64::from(img.width()), i64::from(img.height()));
    for py in y.max(0)..(y + h).min(ih) {
        for px in x.max(0)..(x + w).min(iw) {
            img.put_pixel(px as u32, py as u32, colour);
        }
    }
}

/// Draws the outline of `bbox` (source pixels) with the given line thickness.
pub fn draw_box(img: &mut RgbImage, bbox: &BBox, thickness: i64, colour: Rgb<u8>) {
    let (x1, y1) = (bbox.x1.round() as i64, bbox.y1.round() as i64);
    let (x2, y2) = (bbox.x2.round() as i64, bbox.y2.round() as i64);
    let t = thickness.max(1);
    fill_rect(img, x1, y1, x2 - x1 + 1, t, colour);
    fill_rect(img, x1, y2 - t + 1, x2 - x1 + 1, t, colour);
    fill_rect(img, x1, y1, t, y2 - y1 + 1, colour);
    fill_rect(img, x2 - t + 1, y1, t, y2 - y1 + 1, colour);
}

/// Draws a straight line of the given thickness (for zone polygons).
pub fn draw_line(
    img: &mut RgbImage,
    from: (f32, f32),
    to: (f32, f32),
    thickness: i64,
    colour: Rgb<u8>,
) {
    let steps = ((to.0 - from.0).abs().max((to.1 - from.1).abs()).ceil() as i64).max(1);
    let half = thickness / 2;
    for i in 0..=steps {
        let t = i as f32 / steps as f32;
        let x = (from.0 + (to.0 - from.0) * t).round() as i64;
        let y = (from.1 + (to.1 - from.1) * t).round() as i64;
        fill_rect(
            img,
            x - half,
            y - half,
            thickness.max(1),
            thickness.max(1),
            colour,
        );
    }
}

/// Zones are drawn in this yellow on snapshots and camera pictures.
pub const ZONE_COLOUR: Rgb<u8> = Rgb([255, 221, 0]);
/// Detection regions are drawn in this cyan on camera pictures.
pub const REGION_COLOUR: Rgb<u8> = Rgb([0, 200, 255]);

/// Draws a closed polygon given in fractions of the image (a zone).
pub fn draw_polygon(img: &mut RgbImage, polygon: &[(f32, f32)], thickness: i64, colour: Rgb<u8>) {
    let (w, h) = (img.width() as f32, img.height() as f32);
    for (i, a) in polygon.iter().enumerate() {
        let b = polygon[(i + 1) % polygon.len()];
        draw_line(
            img,
            (a.0 * w, a.1 * h),
            (b.0 * w, b.1 * h),
            thickness,
            colour,
        );
    }
}

/// Writes ASCII `text` with its top-left at (x, y), each font pixel `scale` image pixels.
/// Characters outside ASCII are drawn as `?`.
pub fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, scale: i64, colour: Rgb<u8>) {
    let scale = scale.max(1);
    for (i, ch) in text.chars().enumerate() {
        let code = if ch.is_ascii() {
            ch as usize
        } else {
            '?' as usize
        };
        let glyph = font8x8::legacy::BASIC_LEGACY[code];
        let origin_x = x + i as i64 * 8 * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    fill_rect(
                        img,
                        origin_x + col * scale,
                        y + row as i64 * scale,
                        scale,
                        scale,
                        colour,
                    );
                }
            }
        }
    }
}

/// Text width in pixels at `scale`.
pub fn text_width(text: &str, scale: i64) -> i64 {
    text.chars().count() as i64 * 8 * scale.max(1)
}

/// A label on a filled tag just above (or inside, at the top edge) the box.
pub fn draw_label(img: &mut RgbImage, bbox: &BBox, text: &str, colour: Rgb<u8>) {
    let scale = if img.width() >= 1280 { 3 } else { 2 };
    let tag_h = 8 * scale + 4;
    let x = bbox.x1.round() as i64;
    let top = bbox.y1.round() as i64;
    let y = if top >= tag_h { top - tag_h } else { top };
    fill_rect(img, x, y, text_width(text, scale) + 4, tag_h, colour);
    draw_text(img, x + 2, y + 2, text, scale, Rgb([0, 0, 0]));
}

/// A camera's layout on its picture, for the installer: each zone's outline and id (yellow)
/// and each detection region's rectangle and id (cyan). Zones as polygons and regions as
/// [x1, y1, x2, y2], both in fractions of the picture.
pub fn draw_layout(
    img: &mut RgbImage,
    zones: &[(String, Vec<(f32, f32)>)],
    regions: &[(String, [f32; 4])],
) {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let thickness = (i64::from(img.width().max(img.height())) / 500).max(1);
    for (id, [x1, y1, x2, y2]) in regions {
        let bbox = BBox {
            x1: x1 * w,
            y1: y1 * h,
            x2: x2 * w - 1.0,
            y2: y2 * h - 1.0,
        };
        draw_box(img, &bbox, thickness, REGION_COLOUR);
        draw_label(img, &bbox, id, REGION_COLOUR);
    }
    for (id, polygon) in zones {
        draw_polygon(img, polygon, thickness * 2, ZONE_COLOUR);
        if let Some(&(x, y)) = polygon.iter().min_by(|a, b| a.1.total_cmp(&b.1)) {
            let at = BBox {
                x1: x * w,
                y1: y * h,
                x2: x * w,
                y2: y * h,
            };
            draw_label(img, &at, id, ZONE_COLOUR);
        }
    }
}

/// Current tracks on a camera picture: `label #id` (red while the object stands still).
pub fn draw_tracks(img: &mut RgbImage, tracks: &[crate::live::TrackBox]) {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let thickness = (i64::from(img.width().max(img.height())) / 500).max(1);
    for t in tracks {
        let colour = if t.stationary {
            Rgb([255, 56, 56])
        } else {
            Rgb([56, 220, 90])
        };
        let bbox = t.bbox.scaled(w, h);
        draw_box(img, &bbox, thickness, colour);
        draw_label(img, &bbox, &format!("{} #{}", t.label, t.id), colour);
    }
}

/// Boxes and `label score` tags for each detection.
pub fn draw_detections(img: &mut RgbImage, detections: &[Detection]) {
    let thickness = (i64::from(img.width().max(img.height())) / 400).max(2);
    for d in detections {
        let colour = class_colour(d.class_id);
        draw_box(img, &d.bbox, thickness, colour);
        draw_label(img, &d.bbox, &format!("{} {:.2}", d.label, d.score), colour);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_outline_is_drawn_and_inside_left_alone() {
        let mut img = RgbImage::new(100, 100);
        let red = Rgb([255, 0, 0]);
        let b = BBox {
            x1: 10.0,
            y1: 20.0,
            x2: 60.0,
            y2: 80.0,
        };
        draw_box(&mut img, &b, 2, red);
        assert_eq!(*img.get_pixel(10, 50), red);
        assert_eq!(*img.get_pixel(60, 50), red);
        assert_eq!(*img.get_pixel(30, 20), red);
        assert_eq!(*img.get_pixel(30, 80), red);
        assert_eq!(*img.get_pixel(30, 50), Rgb([0, 0, 0]));
    }

    #[test]
    fn drawing_off_the_image_is_clipped() {
        let mut img = RgbImage::new(20, 20);
        let b = BBox {
            x1: -50.0,
            y1: -50.0,
            x2: 500.0,
            y2: 500.0,
        };
        draw_box(&mut img, &b, 3, Rgb([1, 2, 3]));
        draw_label(&mut img, &b, "car 0.99", Rgb([1, 2, 3]));
        draw_line(&mut img, (-10.0, -10.0), (30.0, 30.0), 2, Rgb([9, 9, 9]));
        assert_eq!(*img.get_pixel(10, 10), Rgb([9, 9, 9]));
    }

    #[test]
    fn text_sets_pixels() {
        let mut img = RgbImage::new(40, 20);
        draw_text(&mut img, 0, 0, "A", 2, Rgb([255, 255, 255]));
        let lit = img.pixels().filter(|p| p.0 == [255, 255, 255]).count();
        assert!(lit > 20, "{lit}");
    }
}
