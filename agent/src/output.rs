//! The JSON Lines stream `replay` writes: one record per detected frame (later issues add
//! incident events to the same stream, each with its own `type`).

use std::io::Write;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::frame::{Detection, FrameMeta};
use crate::incidents::IncidentEvent;

#[derive(Serialize)]
struct FrameRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    camera: &'a str,
    seq: u64,
    /// Stream time in seconds since the first frame.
    pts: f64,
    at: TimeField,
    width: u32,
    height: u32,
    keyframe: bool,
    detections: ReportedDetections<'a>,
}

/// The detections at or above the report threshold, serialised without a filtered copy.
struct ReportedDetections<'a> {
    all: &'a [Detection],
    min_score: f32,
}

impl Serialize for ReportedDetections<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.all.iter().filter(|d| d.score >= self.min_score))
    }
}

/// Serialises a timestamp through `collect_str`, straight into the writer, no String.
struct TimeField {
    at_us: i64,
    offset: FixedOffset,
}

impl Serialize for TimeField {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let time = DateTime::from_timestamp_micros(self.at_us)
            .unwrap_or_default()
            .with_timezone(&self.offset);
        s.collect_str(&time.format("%Y-%m-%dT%H:%M:%S%.3f%:z"))
    }
}

/// Writes records as JSON Lines.
pub struct JsonlWriter<W: Write> {
    out: W,
    offset: FixedOffset,
}

impl<W: Write> JsonlWriter<W> {
    pub fn new(out: W, offset: FixedOffset) -> Self {
        JsonlWriter { out, offset }
    }

    /// A detected frame, listing the detections scoring at least `min_score`.
    pub fn write_frame(
        &mut self,
        meta: &FrameMeta,
        detections: &[Detection],
        min_score: f32,
    ) -> std::io::Result<()> {
        let record = FrameRecord {
            kind: "detections",
            camera: &meta.camera,
            seq: meta.seq,
            pts: meta.pts_us as f64 / 1e6,
            at: TimeField {
                at_us: meta.at_us,
                offset: self.offset,
            },
            width: meta.width,
            height: meta.height,
            keyframe: meta.keyframe,
            detections: ReportedDetections {
                all: detections,
                min_score,
            },
        };
        serde_json::to_writer(&mut self.out, &record)?;
        self.out.write_all(b"\n")
    }

    /// An incident event, tagged `"type": "incident"` in the stream.
    pub fn write_incident(&mut self, event: &IncidentEvent) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct Tagged<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            #[serde(flatten)]
            event: &'a IncidentEvent,
        }
        serde_json::to_writer(
            &mut self.out,
            &Tagged {
                kind: "incident",
                event,
            },
        )?;
        self.out.write_all(b"\n")
    }

    /// A line crossing, `{"type": "crossing", "camera", "line", "direction", "label",
    /// "track_id", "at"}`.
    pub fn write_crossing(
        &mut self,
        camera: &str,
        crossing: &crate::rules::line::Crossing,
    ) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct CrossingRecord<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            camera: &'a str,
            line: &'a str,
            direction: crate::rules::line::Crossed,
            label: &'a str,
            track_id: u64,
            at: TimeField,
        }
        serde_json::to_writer(
            &mut self.out,
            &CrossingRecord {
                kind: "crossing",
                camera,
                line: &crossing.line,
                direction: crossing.direction,
                label: &crossing.label,
                track_id: crossing.track_id,
                at: TimeField {
                    at_us: crossing.at_us,
                    offset: self.offset,
                },
            },
        )?;
        self.out.write_all(b"\n")
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::BBox;
    use crate::time::format_time;
    use std::sync::Arc;

    #[test]
    fn frame_record_shape() {
        let offset = FixedOffset::east_opt(8 * 3600).unwrap();
        let meta = FrameMeta {
            camera: Arc::from("gate"),
            seq: 3,
            pts_us: 600_000,
            at_us: 1_764_000_000_600_000,
            width: 768,
            height: 432,
            keyframe: false,
            unchanged: false,
            regions: crate::frame::whole_picture(),
            inferred: 1,
        };
        let det = Detection {
            label: Arc::from("car"),
            class_id: 2,
            score: 0.5,
            bbox: BBox {
                x1: 0.0,
                y1: 0.0,
                x2: 384.0,
                y2: 216.0,
            },
            norm: BBox {
                x1: 0.0,
                y1: 0.0,
                x2: 0.5,
                y2: 0.5,
            },
        };
        let mut w = JsonlWriter::new(Vec::new(), offset);
        let mut faint = det.clone();
        faint.score = 0.1;
        w.write_frame(&meta, &[det, faint], 0.3).unwrap();
        let line = String::from_utf8(w.into_inner()).unwrap();
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "detections");
        assert_eq!(v["camera"], "gate");
        assert_eq!(v["pts"], 0.6);
        assert_eq!(v["at"], "2025-11-25T00:00:00.600+08:00");
        assert_eq!(v["detections"][0]["label"], "car");
        assert_eq!(
            v["detections"].as_array().unwrap().len(),
            1,
            "below 0.3 left out"
        );
        assert_eq!(v["detections"][0]["box_norm"][2], 0.5);
        assert_eq!(
            format_time(meta.at_us, offset),
            "2025-11-25T00:00:00.600+08:00"
        );
    }
}
