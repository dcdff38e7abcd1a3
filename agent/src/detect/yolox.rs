//! Decoding YOLOX's raw grid output into boxes, and class-wise NMS.
//!
//! Follows YOLOX's own demo code (`demo_postprocess` and `multiclass_nms_class_aware`) so the
//! parity test against the Python reference compares like with like, including YOLOX's
//! inclusive-pixel (+1) box areas in NMS.

use crate::frame::BBox;

/// One candidate before NMS: a grid cell and a class whose score passed the threshold.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub class_id: u16,
    pub score: f32,
    /// In model-input pixels.
    pub bbox: BBox,
}

/// Precomputed grid of the model's output rows: cell x, cell y and stride per row.
#[derive(Debug, Clone)]
pub struct YoloxDecoder {
    cells: Vec<(f32, f32, f32)>,
    num_classes: usize,
}

impl YoloxDecoder {
    pub fn new(
        input_width: usize,
        input_height: usize,
        strides: &[u32],
        num_classes: usize,
    ) -> Self {
        let mut cells = Vec::new();
        for &stride in strides {
            let (w, h) = (
                input_width / stride as usize,
                input_height / stride as usize,
            );
            for gy in 0..h {
                for gx in 0..w {
                    cells.push((gx as f32, gy as f32, stride as f32));
                }
            }
        }
        YoloxDecoder { cells, num_classes }
    }

    pub fn rows(&self) -> usize {
        self.cells.len()
    }

    pub fn cols(&self) -> usize {
        5 + self.num_classes
    }

    /// Appends every (cell, class) with `objectness * class score > threshold` to `out`.
    /// `out` is cleared first and keeps its capacity between frames.
    pub fn candidates(&self, output: &[f32], threshold: f32, out: &mut Vec<Candidate>) {
        out.clear();
        let cols = self.cols();
        for (row, &(gx, gy, stride)) in output.chunks_exact(cols).zip(&self.cells) {
            let objectness = row[4];
            // score = obj * cls <= obj, so most rows are rejected without a class scan.
            if objectness <= threshold {
                continue;
            }
            let mut bbox = None;
            for (class_id, &class_score) in row[5..].iter().enumerate() {
                let score = objectness * class_score;
                if score <= threshold {
                    continue;
                }
                let bbox = *bbox.get_or_insert_with(|| {
                    let cx = (row[0] + gx) * stride;
                    let cy = (row[1] + gy) * stride;
                    let w = row[2].exp() * stride;
                    let h = row[3].exp() * stride;
                    BBox {
                        x1: cx - w / 2.0,
                        y1: cy - h / 2.0,
                        x2: cx + w / 2.0,
                        y2: cy + h / 2.0,
                    }
                });
                out.push(Candidate {
                    class_id: class_id as u16,
                    score,
                    bbox,
                });
            }
        }
    }
}

/// YOLOX's NMS overlap: areas and intersections count pixels inclusively (`+ 1`).
pub(crate) fn inclusive_iou(a: &BBox, b: &BBox) -> f32 {
    let area = |r: &BBox| (r.x2 - r.x1 + 1.0) * (r.y2 - r.y1 + 1.0);
    let w = (a.x2.min(b.x2) - a.x1.max(b.x1) + 1.0).max(0.0);
    let h = (a.y2.min(b.y2) - a.y1.max(b.y1) + 1.0).max(0.0);
    let inter = w * h;
    inter / (area(a) + area(b) - inter)
}

/// Class-wise greedy NMS in place: sorts by class, then score (descending), and keeps a box
/// unless a kept box of the same class overlaps it by more than `iou_threshold`. Boxes are
/// compared in the coordinates they are given in (the caller passes source pixels, as YOLOX
/// does after dividing by the letterbox ratio).
pub fn nms_in_place(candidates: &mut Vec<Candidate>, iou_threshold: f32) {
    candidates.sort_by(|a, b| {
        a.class_id
            .cmp(&b.class_id)
            .then(b.score.total_cmp(&a.score))
    });
    let mut kept = 0;
    for i in 0..candidates.len() {
        let current = candidates[i];
        let suppressed = candidates[..kept].iter().rev().any(|k| {
            k.class_id == current.class_id && inclusive_iou(&k.bbox, &current.bbox) > iou_threshold
        });
        if !suppressed {
            candidates[kept] = current;
            kept += 1;
        }
    }
    candidates.truncate(kept);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bbox(x1: f32, y1: f32, x2: f32, y2: f32) -> BBox {
        BBox { x1, y1, x2, y2 }
    }

    fn cand(class_id: u16, score: f32, b: BBox) -> Candidate {
        Candidate {
            class_id,
            score,
            bbox: b,
        }
    }

    #[test]
    fn grid_covers_all_strides_in_order() {
        let d = YoloxDecoder::new(416, 416, &[8, 16, 32], 80);
        assert_eq!(d.rows(), 3549);
        assert_eq!(d.cells[0], (0.0, 0.0, 8.0));
        assert_eq!(d.cells[1], (1.0, 0.0, 8.0));
        assert_eq!(d.cells[52], (0.0, 1.0, 8.0));
        assert_eq!(d.cells[2704], (0.0, 0.0, 16.0));
        assert_eq!(d.cells[3548], (12.0, 12.0, 32.0));
    }

    #[test]
    fn decodes_a_cell_into_a_box() {
        let d = YoloxDecoder::new(64, 64, &[32], 2);
        // 4 cells x 7 values; cell (1, 0): centre (1.5 * 32, 0.5 * 32), size 32 x 64.
        let mut output = vec![0.0f32; 4 * 7];
        let row = &mut output[7..14];
        row.copy_from_slice(&[0.5, 0.5, 0.0, 2f32.ln(), 0.9, 0.1, 0.8]);
        let mut out = Vec::new();
        d.candidates(&output, 0.3, &mut out);
        assert_eq!(out.len(), 1, "class 0 scores 0.09, below threshold");
        let c = out[0];
        assert_eq!(c.class_id, 1);
        assert!((c.score - 0.72).abs() < 1e-6);
        assert_eq!(c.bbox, bbox(32.0, -16.0, 64.0, 48.0));
    }

    #[test]
    fn one_cell_can_yield_two_classes() {
        let d = YoloxDecoder::new(32, 32, &[32], 2);
        let output = vec![0.5, 0.5, 0.0, 0.0, 1.0, 0.6, 0.5];
        let mut out = Vec::new();
        d.candidates(&output, 0.3, &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn nms_is_class_wise() {
        let mut c = vec![
            cand(2, 0.6, bbox(0.0, 0.0, 100.0, 100.0)),
            cand(2, 0.9, bbox(5.0, 5.0, 105.0, 105.0)),
            cand(7, 0.5, bbox(0.0, 0.0, 100.0, 100.0)),
            cand(2, 0.4, bbox(300.0, 300.0, 400.0, 400.0)),
        ];
        nms_in_place(&mut c, 0.45);
        let kept: Vec<(u16, f32)> = c.iter().map(|c| (c.class_id, c.score)).collect();
        assert_eq!(kept, vec![(2, 0.9), (2, 0.4), (7, 0.5)]);
    }

    #[test]
    fn inclusive_iou_matches_yolox() {
        // Two 10x10 boxes (11x11 pixels inclusive) offset by 5: inter 6x11 = 66, union 176.
        let a = bbox(0.0, 0.0, 10.0, 10.0);
        let b = bbox(5.0, 0.0, 15.0, 10.0);
        assert!((inclusive_iou(&a, &b) - 66.0 / 176.0).abs() < 1e-6);
    }
}
