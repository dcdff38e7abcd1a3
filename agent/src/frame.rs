//! Plain data that flows between the stages. No stage reaches into another's internals: the
//! source produces [`FrameMeta`], the detector [`Detection`]s, and later stages consume them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One sampled frame, as the rest of the pipeline knows it.
#[derive(Debug, Clone)]
pub struct FrameMeta {
    pub camera: Arc<str>,
    /// Counts sampled frames of this camera from 0.
    pub seq: u64,
    /// Stream time in microseconds since the first frame of the stream.
    pub pts_us: i64,
    /// Wall-clock time of the frame, Unix microseconds (replay: start time + pts).
    pub at_us: i64,
    pub width: u32,
    pub height: u32,
    pub keyframe: bool,
    /// The motion gate saw nothing move: no inference ran, the scene is as it was.
    pub unchanged: bool,
    /// The camera's detection regions (normalised rectangles of the picture), shared by
    /// every frame planned alike.
    pub regions: Arc<[BBox]>,
    /// Bit `i` set: region `i` was detected in this frame; the others were still (the
    /// motion gate) and what they held is as it was. Zero when `unchanged`.
    pub inferred: u64,
}

impl FrameMeta {
    /// Whether every region of the frame was detected.
    pub fn fully_inferred(&self) -> bool {
        let all = all_regions(self.regions.len());
        self.inferred & all == all
    }

    /// The regions detected in this frame.
    pub fn inferred_regions(&self) -> impl Iterator<Item = &BBox> {
        self.regions
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < 64 && self.inferred & (1 << i) != 0)
            .map(|(_, r)| r)
    }
}

/// The region mask with a bit set for each of `n` regions (at most 64 are tracked).
pub fn all_regions(n: usize) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// The whole picture, normalised: the one region of a frame detected whole.
pub fn whole_picture() -> Arc<[BBox]> {
    Arc::from(
        [BBox {
            x1: 0.0,
            y1: 0.0,
            x2: 1.0,
            y2: 1.0,
        }]
        .as_slice(),
    )
}

/// An axis-aligned box: left, top, right, bottom.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(into = "[f32; 4]", from = "[f32; 4]")]
pub struct BBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl From<BBox> for [f32; 4] {
    fn from(b: BBox) -> Self {
        [b.x1, b.y1, b.x2, b.y2]
    }
}

impl From<[f32; 4]> for BBox {
    fn from([x1, y1, x2, y2]: [f32; 4]) -> Self {
        BBox { x1, y1, x2, y2 }
    }
}

impl BBox {
    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }
    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// The area both boxes cover.
    pub fn intersection(&self, other: &BBox) -> f32 {
        let w = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let h = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        w * h
    }

    pub fn iou(&self, other: &BBox) -> f32 {
        let inter = self.intersection(other);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }

    pub fn clamp_to(&self, width: f32, height: f32) -> BBox {
        BBox {
            x1: self.x1.clamp(0.0, width),
            y1: self.y1.clamp(0.0, height),
            x2: self.x2.clamp(0.0, width),
            y2: self.y2.clamp(0.0, height),
        }
    }

    pub fn scaled(&self, sx: f32, sy: f32) -> BBox {
        BBox {
            x1: self.x1 * sx,
            y1: self.y1 * sy,
            x2: self.x2 * sx,
            y2: self.y2 * sy,
        }
    }
}

/// One object the detector found in one frame.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    pub label: Arc<str>,
    pub class_id: u16,
    pub score: f32,
    /// In source pixels.
    #[serde(rename = "box")]
    pub bbox: BBox,
    /// In [0, 1] of the source width and height, so it survives a resolution change.
    #[serde(rename = "box_norm")]
    pub norm: BBox,
}

/// A crop of the picture in pixels; x and y are even so chroma planes of 4:2:0 frames crop
/// on a sample boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crop {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Crop {
    pub fn whole(width: u32, height: u32) -> Crop {
        Crop {
            x: 0,
            y: 0,
            width,
            height,
        }
    }

    pub(crate) fn from_px(b: &BBox, width: u32, height: u32) -> Crop {
        // Even origin and size (chroma is subsampled 2:1 in yuv420p), the size kept as
        // asked rather than grown by the rounding of both edges, shifted back inside the
        // picture where the rounding would push it over the edge.
        let axis = |lo: f32, hi: f32, limit: u32| {
            let size = ((((hi - lo).round().max(2.0)) as u32 + 1) & !1).min(limit);
            let start = ((lo.max(0.0) as u32) & !1).min(limit - size);
            (start, size)
        };
        let (x, w) = axis(b.x1, b.x2, width);
        let (y, h) = axis(b.y1, b.y2, height);
        Crop {
            x,
            y,
            width: w,
            height: h,
        }
    }

    pub fn is_whole(&self, width: u32, height: u32) -> bool {
        self.x == 0 && self.y == 0 && self.width == width && self.height == height
    }
}

#[cfg(test)]
impl Detection {
    /// A detection of `label` with the same box in picture and normalised coordinates, for
    /// rule and tracker tests that work in fractions of the picture.
    pub fn at(label: &str, class_id: u16, score: f32, norm: BBox) -> Detection {
        Detection {
            label: std::sync::Arc::from(label),
            class_id,
            score,
            bbox: norm,
            norm,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_identical_disjoint_and_half_overlapping_boxes() {
        let a = BBox {
            x1: 0.0,
            y1: 0.0,
            x2: 10.0,
            y2: 10.0,
        };
        assert_eq!(a.iou(&a), 1.0);
        let far = BBox {
            x1: 20.0,
            y1: 20.0,
            x2: 30.0,
            y2: 30.0,
        };
        assert_eq!(a.iou(&far), 0.0);
        let half = BBox {
            x1: 5.0,
            y1: 0.0,
            x2: 15.0,
            y2: 10.0,
        };
        assert!((a.iou(&half) - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn bbox_serialises_as_array() {
        let b = BBox {
            x1: 1.0,
            y1: 2.0,
            x2: 3.0,
            y2: 4.0,
        };
        assert_eq!(serde_json::to_string(&b).unwrap(), "[1.0,2.0,3.0,4.0]");
    }
}
