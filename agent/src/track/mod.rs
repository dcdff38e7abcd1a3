//! Track stage: gives each object a stable id across frames, missed detections and short
//! occlusions, and says whether it is standing still.
//!
//! ByteTrack-style association, in normalised coordinates (so a resolution change does not
//! break tracks):
//! 1. predict every track to the frame's time with a constant-velocity Kalman filter;
//! 2. match high-score detections to tracks by IoU (greedy, best overlap first);
//! 3. match the remaining tracks to low-score detections, so an object that is half hidden
//!    and scored low keeps its track instead of dying and being reborn with a new id;
//! 4. start tentative tracks from unmatched high-score detections; confirm them after
//!    `birth_hits` matches; drop tracks unseen for `lost_after` (`stationary_lost_after` for
//!    stationary ones).
//!
//! A track is **stationary** when its measured box has stayed within an IoU and centre-shift
//! tolerance of an anchor box for `stationary_after`; `stationary_since` is when it came to
//! rest (the anchor's time), so dwell clocks count from the moment the object stopped. Missed
//! detections do not move the anchor, so a parked car stays stationary through gaps.
//!
//! What streets do to a parked car's box does not move its anchor either:
//! - a box off an anchor it has held for `stationary_break` or more, for less than
//!   `stationary_break` (a passer-by sliding across it, one noisy night frame), is not a
//!   move: the track is not stationary while off, but the anchor moves only when the object
//!   has been away from it for that long, continuously, and back at it the track is
//!   stationary again since it first came to rest (a moving object's anchor is always
//!   fresh, so it follows the object frame by frame);
//! - once rested, for rigid objects (vehicles, two-wheelers: [`Tracker::set_rigid_classes`]),
//!   a box that lies within the anchor (at least [`CONTAINED`] of it, and at
//!   least [`MIN_VISIBLE`] of the anchor's area: partly hidden) or that holds the anchor
//!   (something standing beside it, at most [`MAX_GROWTH`] times its area) is the same object
//!   where it stood: the track keeps reporting the anchor as its box, and such a detection
//!   is matched to it even when its IoU is low.
//!
//! A moving object never gets there: it is off its anchor on every frame, and the two
//! containment cases apply only to objects that have rested at their anchor.

mod kalman;

use std::sync::Arc;

use crate::config::TrackerConfig;
use crate::frame::{BBox, Detection};

use kalman::Kalman;

/// Detections of different classes overlapping this much are one object seen twice (YOLOX
/// often calls one vehicle both `car` and `truck`); only the best-scored one is tracked.
const DUPLICATE_IOU: f32 = 0.8;
/// Tentative tracks match new detections at this IoU (ByteTrack's unconfirmed stage).
const TENTATIVE_MATCH_IOU: f32 = 0.3;
/// A box with this share of its area inside a stationary track's anchor (or an anchor with
/// this share inside the box) is that object, partly hidden (or with something beside it).
pub const CONTAINED: f32 = 0.85;
/// The smallest part of a stationary object, as a share of its anchor's area, still taken
/// for it when the rest is hidden.
pub const MIN_VISIBLE: f32 = 0.2;
/// The most a stationary object's box may grow (something standing beside it) and still be
/// taken for it, as a multiple of the anchor's area.
pub const MAX_GROWTH: f32 = 4.0;

/// One tracked object, as the rules see it.
#[derive(Debug, Clone)]
pub struct Track {
    pub id: u64,
    /// Majority label, by summed score over the track's life.
    pub class_id: u16,
    pub label: Arc<str>,
    /// Last measured box, normalised.
    pub bbox: BBox,
    /// Score of the last matched detection.
    pub score: f32,
    /// Highest score seen, and when (the best moment for a snapshot).
    pub best_score: f32,
    pub best_at_us: i64,
    pub first_seen_us: i64,
    pub last_seen_us: i64,
    pub hits: u32,
    pub confirmed: bool,
    /// Matched a detection in the latest frame.
    pub seen_now: bool,
    /// Matched a detection in the latest frame the detector ran on (frames the motion gate
    /// skipped do not change it).
    detected_last: bool,
    /// When the object came to rest, while it is stationary.
    pub stationary_since_us: Option<i64>,
    anchor: BBox,
    anchor_since_us: i64,
    /// Since when the measured box has been off the anchor, continuously.
    off_anchor_since_us: Option<i64>,
    /// While off the anchor: where the object would be anchored without the break, and since
    /// when.
    candidate: BBox,
    candidate_since_us: i64,
    votes: Vec<(u16, f32, Arc<str>)>,
    kalman: Kalman,
    predicted: BBox,
}

impl Track {
    pub fn is_stationary(&self) -> bool {
        self.stationary_since_us.is_some()
    }

    /// Bottom-centre of the box: where the object touches the ground.
    pub fn foot(&self) -> (f32, f32) {
        ((self.bbox.x1 + self.bbox.x2) / 2.0, self.bbox.y2)
    }

    /// Velocity of the box centre, in picture fractions per second.
    pub fn velocity(&self) -> [f32; 2] {
        self.kalman.velocity()
    }
}

fn to_measurement(b: &BBox) -> [f32; 4] {
    let w = b.width().max(1e-6);
    let h = b.height().max(1e-6);
    [(b.x1 + b.x2) / 2.0, (b.y1 + b.y2) / 2.0, w / h, h]
}

fn from_measurement(m: [f32; 4]) -> BBox {
    let h = m[3].max(1e-6);
    let w = m[2].max(1e-6) * h;
    BBox {
        x1: m[0] - w / 2.0,
        y1: m[1] - h / 2.0,
        x2: m[0] + w / 2.0,
        y2: m[1] + h / 2.0,
    }
}

fn centre_shift(a: &BBox, b: &BBox) -> f32 {
    let dx = (a.x1 + a.x2 - b.x1 - b.x2) / 2.0;
    let dy = (a.y1 + a.y2 - b.y1 - b.y2) / 2.0;
    (dx * dx + dy * dy).sqrt()
}

/// The multi-object tracker of one camera. Scratch buffers are kept between frames.
pub struct Tracker {
    config: TrackerConfig,
    tracks: Vec<Track>,
    next_id: u64,
    last_time_us: Option<i64>,
    detection_used: Vec<bool>,
    track_used: Vec<bool>,
    pairs: Vec<(f32, usize, usize)>,
    kept: Vec<usize>,
    /// Classes of rigid objects (vehicles, two-wheelers), the only ones whose partly hidden
    /// or crowded boxes are taken for them where they stand: people next to each other
    /// overlap all the time, and one person's box holding another's is two people.
    rigid_classes: Vec<u16>,
    /// Tracks (indices) outside the regions detected in the current frame.
    out_of_view: Vec<usize>,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Tracker {
        Tracker {
            config,
            tracks: Vec::new(),
            next_id: 1,
            last_time_us: None,
            detection_used: Vec::new(),
            track_used: Vec::new(),
            pairs: Vec::new(),
            kept: Vec::new(),
            rigid_classes: Vec::new(),
            out_of_view: Vec::new(),
        }
    }

    /// Sets the classes of rigid objects (the model's `vehicle` and `two_wheeler` groups).
    pub fn set_rigid_classes(&mut self, classes: Vec<u16>) {
        self.rigid_classes = classes;
    }

    /// Every live track, tentative ones included (check `confirmed`).
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// A frame in which nothing moved (the motion gate skipped inference): every track is
    /// where it was, and counts as seen now.
    pub fn carry_forward(&mut self, time_us: i64) {
        self.last_time_us = Some(time_us);
        for track in &mut self.tracks {
            // Only what the detector saw last time is still there: a track already missing
            // then is not brought back by a still scene.
            track.seen_now = track.detected_last;
            if track.detected_last {
                track.last_seen_us = time_us;
            }
        }
    }

    /// Feeds one frame's detections (time in microseconds of stream or wall time; only
    /// differences matter).
    pub fn update(&mut self, time_us: i64, detections: &[Detection]) {
        self.update_in_view(time_us, detections, |_| true);
    }

    /// Feeds the detections of a frame the detector saw only part of (detection regions
    /// where others were still): a track whose centre lies outside every region seen
    /// (`in_view` false) is carried forward as in a still frame, the others are tracked as
    /// usual.
    pub fn update_in_view(
        &mut self,
        time_us: i64,
        detections: &[Detection],
        in_view: impl Fn(&BBox) -> bool,
    ) {
        let dt = self
            .last_time_us
            .map_or(0.0, |last| (time_us - last).max(0) as f32 / 1e6);
        self.last_time_us = Some(time_us);
        self.out_of_view.clear();
        for (i, track) in self.tracks.iter_mut().enumerate() {
            if !in_view(&track.bbox) {
                self.out_of_view.push(i);
                track.seen_now = track.detected_last;
                if track.detected_last {
                    track.last_seen_us = time_us;
                }
                continue;
            }
            track.kalman.predict(dt);
            // A stationary object is where it stood: extrapolating a velocity fitted to
            // jitter over a long detection gap would only move the box away from it.
            track.predicted = if track.is_stationary() {
                track.bbox
            } else {
                from_measurement(track.kalman.state())
            };
            track.seen_now = false;
            track.detected_last = false;
        }

        self.select_detections(detections);
        self.detection_used.clear();
        self.detection_used.resize(detections.len(), false);
        self.track_used.clear();
        self.track_used.resize(self.tracks.len(), false);
        for &i in &self.out_of_view {
            self.track_used[i] = true;
        }
        for (i, used) in self.detection_used.iter_mut().enumerate() {
            *used = !self.kept.contains(&i) || detections[i].score < self.config.low_score;
        }

        let high = self.config.high_score;
        // Stage 1: confirmed tracks with high-score detections.
        self.associate(
            detections,
            |t| t.confirmed,
            |d| d.score >= high,
            self.config.match_iou,
            time_us,
        );
        // Stage 2: the confirmed tracks left, with low-score detections.
        self.associate(
            detections,
            |t| t.confirmed,
            |d| d.score < high,
            self.config.low_match_iou,
            time_us,
        );
        // Stage 3: tentative tracks with the high-score detections left.
        self.associate(
            detections,
            |t| !t.confirmed,
            |d| d.score >= high,
            TENTATIVE_MATCH_IOU,
            time_us,
        );

        // Births. Not of an object whose track is out of view this frame (its box reaches
        // into a region detected while its centre's region was still).
        for (i, d) in detections.iter().enumerate() {
            if self.detection_used[i] || d.score < high {
                continue;
            }
            let match_iou = self.config.match_iou;
            if self
                .out_of_view
                .iter()
                .any(|&t| self.tracks[t].bbox.iou(&d.norm) >= match_iou)
            {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let mut track = Track {
                id,
                class_id: d.class_id,
                label: Arc::clone(&d.label),
                bbox: d.norm,
                score: d.score,
                best_score: d.score,
                best_at_us: time_us,
                first_seen_us: time_us,
                last_seen_us: time_us,
                hits: 1,
                confirmed: self.config.birth_hits <= 1,
                seen_now: true,
                detected_last: true,
                stationary_since_us: None,
                anchor: d.norm,
                anchor_since_us: time_us,
                off_anchor_since_us: None,
                candidate: d.norm,
                candidate_since_us: time_us,
                votes: vec![(d.class_id, d.score, Arc::clone(&d.label))],
                kalman: Kalman::new(to_measurement(&d.norm)),
                predicted: d.norm,
            };
            let rigid = self.rigid_classes.contains(&track.class_id);
            update_stationary(&self.config, rigid, &mut track, time_us);
            self.tracks.push(track);
        }

        // Deaths.
        let config = &self.config;
        self.tracks.retain(|t| {
            let unseen = time_us - t.last_seen_us;
            let limit = if !t.confirmed {
                // A tentative track that misses is most likely a false positive.
                config.lost_after.as_micros() as i64 / 2
            } else if t.is_stationary() {
                config.stationary_lost_after.as_micros() as i64
            } else {
                config.lost_after.as_micros() as i64
            };
            unseen <= limit
        });
    }

    /// Fills `kept` with the detections to track: one per object when several classes
    /// claim the same box.
    fn select_detections(&mut self, detections: &[Detection]) {
        self.kept.clear();
        for (i, d) in detections.iter().enumerate() {
            if d.score < self.config.low_score {
                continue;
            }
            let duplicate = detections.iter().enumerate().any(|(j, other)| {
                j != i
                    && other.class_id != d.class_id
                    && (other.score > d.score || (other.score == d.score && j < i))
                    && other.norm.iou(&d.norm) >= DUPLICATE_IOU
            });
            if !duplicate {
                self.kept.push(i);
            }
        }
    }

    /// Greedy IoU matching of the eligible, still unmatched tracks and detections.
    fn associate(
        &mut self,
        detections: &[Detection],
        track_ok: impl Fn(&Track) -> bool,
        detection_ok: impl Fn(&Detection) -> bool,
        min_iou: f32,
        time_us: i64,
    ) {
        self.pairs.clear();
        for (ti, track) in self.tracks.iter().enumerate() {
            if self.track_used[ti] || !track_ok(track) {
                continue;
            }
            for (di, d) in detections.iter().enumerate() {
                if self.detection_used[di] || !detection_ok(d) {
                    continue;
                }
                // The last measured box as well as the prediction: a track that stopped
                // abruptly is still matched where it is. A stationary object partly hidden
                // or crowded is matched by containment, at the lowest overlap that counts
                // (a real overlap of another track wins).
                let mut overlap = track.predicted.iou(&d.norm).max(track.bbox.iou(&d.norm));
                if track.is_stationary()
                    && self.rigid_classes.contains(&track.class_id)
                    && overlap < min_iou
                    && stillness(
                        &d.norm,
                        &track.anchor,
                        true,
                        self.config.stationary_iou,
                        self.config.stationary_shift,
                    ) == Stillness::Hidden
                {
                    overlap = min_iou;
                }
                if overlap >= min_iou {
                    self.pairs.push((overlap, ti, di));
                }
            }
        }
        // Best overlap first; ties broken by indices so runs are deterministic.
        self.pairs
            .sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        for k in 0..self.pairs.len() {
            let (_, ti, di) = self.pairs[k];
            if self.track_used[ti] || self.detection_used[di] {
                continue;
            }
            self.track_used[ti] = true;
            self.detection_used[di] = true;
            apply_match(
                &self.config,
                &self.rigid_classes,
                &mut self.tracks[ti],
                &detections[di],
                time_us,
            );
        }
    }
}

fn apply_match(
    config: &TrackerConfig,
    rigid_classes: &[u16],
    track: &mut Track,
    d: &Detection,
    time_us: i64,
) {
    track.kalman.update(to_measurement(&d.norm));
    track.bbox = d.norm;
    track.score = d.score;
    track.last_seen_us = time_us;
    track.seen_now = true;
    track.detected_last = true;
    track.hits += 1;
    if track.hits >= config.birth_hits {
        track.confirmed = true;
    }
    if d.score > track.best_score {
        track.best_score = d.score;
        track.best_at_us = time_us;
    }
    match track.votes.iter_mut().find(|v| v.0 == d.class_id) {
        Some(v) => v.1 += d.score,
        None => track
            .votes
            .push((d.class_id, d.score, Arc::clone(&d.label))),
    }
    if let Some(top) = track.votes.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
        track.class_id = top.0;
        track.label = Arc::clone(&top.2);
    }
    let rigid = rigid_classes.contains(&track.class_id);
    update_stationary(config, rigid, track, time_us);
}

/// How a measured box relates to the place a track stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stillness {
    /// Where it stood, as a whole.
    Still,
    /// Where it stood, partly hidden or with something beside it (rested objects only).
    Hidden,
    /// Somewhere else.
    Off,
}

/// `rested`: the object has stood at `anchor` for `stationary_after`; only then do the
/// containment cases count.
fn stillness(bbox: &BBox, anchor: &BBox, rested: bool, min_iou: f32, max_shift: f32) -> Stillness {
    let diagonal = (anchor.width().powi(2) + anchor.height().powi(2)).sqrt();
    if bbox.iou(anchor) >= min_iou && centre_shift(bbox, anchor) <= max_shift * diagonal {
        return Stillness::Still;
    }
    if !rested {
        return Stillness::Off;
    }
    let inter = bbox.intersection(anchor);
    let (area, anchor_area) = (bbox.area(), anchor.area());
    let inside = area > 0.0 && inter >= CONTAINED * area && area >= MIN_VISIBLE * anchor_area;
    let around =
        anchor_area > 0.0 && inter >= CONTAINED * anchor_area && area <= MAX_GROWTH * anchor_area;
    if inside || around {
        Stillness::Hidden
    } else {
        Stillness::Off
    }
}

fn update_stationary(config: &TrackerConfig, rigid: bool, track: &mut Track, time_us: i64) {
    let anchor = track.anchor;
    // At its anchor long enough to have come to rest (the anchor and its time are kept
    // through a short break, so this also holds for an object briefly off it).
    let rested = time_us - track.anchor_since_us >= config.stationary_after.as_micros() as i64;
    match stillness(
        &track.bbox,
        &anchor,
        rested && rigid,
        config.stationary_iou,
        config.stationary_shift,
    ) {
        Stillness::Still => {
            track.off_anchor_since_us = None;
            if rested {
                track.stationary_since_us = Some(track.anchor_since_us);
            }
        }
        Stillness::Hidden => {
            // What is seen of it changed, not where it stands: it keeps its place, its box
            // and the time it came to rest.
            track.off_anchor_since_us = None;
            track.bbox = anchor;
            track.stationary_since_us = Some(track.anchor_since_us);
        }
        Stillness::Off => {
            // Not stationary while off its place (the rules see it move at once), but the
            // place is kept for `stationary_break`: back there within it, it is stationary
            // again since it first came to rest. Meanwhile a candidate anchor follows the
            // object as if there were no break; when the break runs out the candidate (and
            // the time it has held) becomes the anchor, so an object that really moved and
            // stopped elsewhere counts its rest from when it stopped, as without the break.
            track.stationary_since_us = None;
            let still_at_candidate = track.off_anchor_since_us.is_some()
                && stillness(
                    &track.bbox,
                    &track.candidate,
                    false,
                    config.stationary_iou,
                    config.stationary_shift,
                ) == Stillness::Still;
            if !still_at_candidate {
                track.candidate = track.bbox;
                track.candidate_since_us = time_us;
            }
            let off_since = *track.off_anchor_since_us.get_or_insert(time_us);
            if time_us - off_since >= config.stationary_break.as_micros() as i64 {
                track.anchor = track.candidate;
                track.anchor_since_us = track.candidate_since_us;
                track.off_anchor_since_us = None;
                if time_us - track.anchor_since_us >= config.stationary_after.as_micros() as i64 {
                    track.stationary_since_us = Some(track.anchor_since_us);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn det(class_id: u16, score: f32, x: f32, y: f32, w: f32, h: f32) -> Detection {
        let norm = BBox {
            x1: x,
            y1: y,
            x2: x + w,
            y2: y + h,
        };
        Detection {
            label: Arc::from(["person", "bicycle", "car"][usize::from(class_id)]),
            class_id,
            score,
            bbox: norm,
            norm,
        }
    }

    fn tracker() -> Tracker {
        let mut tracker = Tracker::new(TrackerConfig::default());
        // bicycle and car in these tests' classes.
        tracker.set_rigid_classes(vec![1, 2]);
        tracker
    }

    const FRAME_US: i64 = 200_000; // 5 fps

    fn confirmed_ids(t: &Tracker) -> Vec<u64> {
        t.tracks()
            .iter()
            .filter(|t| t.confirmed)
            .map(|t| t.id)
            .collect()
    }

    #[test]
    fn a_track_is_born_after_birth_hits_and_keeps_its_id() {
        let mut t = tracker();
        for i in 0..3 {
            t.update(
                i * FRAME_US,
                &[det(2, 0.9, 0.1 + 0.01 * i as f32, 0.1, 0.2, 0.1)],
            );
            assert_eq!(t.tracks().len(), 1);
            assert_eq!(t.tracks()[0].confirmed, i >= 2, "frame {i}");
        }
        assert_eq!(t.tracks()[0].id, 1);
    }

    #[test]
    fn id_survives_a_one_second_gap() {
        let mut t = tracker();
        let mut time = 0;
        // A person walking right at 0.05 per second, then hidden for 1 s, then seen again.
        for i in 0..10 {
            t.update(time, &[det(0, 0.8, 0.2 + 0.01 * i as f32, 0.3, 0.05, 0.2)]);
            time += FRAME_US;
        }
        let id = confirmed_ids(&t)[0];
        for _ in 0..5 {
            t.update(time, &[]);
            time += FRAME_US;
        }
        t.update(time, &[det(0, 0.8, 0.2 + 0.01 * 15.0, 0.3, 0.05, 0.2)]);
        assert_eq!(confirmed_ids(&t), vec![id], "same id after the gap");
        assert!(t.tracks()[0].seen_now);
    }

    #[test]
    fn two_crossing_objects_keep_their_ids() {
        // Two persons walk towards each other along the same line and pass; constant
        // velocity prediction keeps each on its own track through the crossing.
        let mut t = tracker();
        let mut ids_by_direction = None;
        for i in 0..30 {
            let x_right = 0.1 + 0.025 * i as f32;
            let x_left = 0.8 - 0.025 * i as f32;
            t.update(
                i * FRAME_US,
                &[
                    det(0, 0.8, x_right, 0.4, 0.06, 0.2),
                    det(0, 0.8, x_left, 0.41, 0.06, 0.2),
                ],
            );
            let moving_right = t
                .tracks()
                .iter()
                .find(|tr| tr.velocity()[0] > 0.0)
                .map(|tr| tr.id);
            let moving_left = t
                .tracks()
                .iter()
                .find(|tr| tr.velocity()[0] < 0.0)
                .map(|tr| tr.id);
            if i == 5 {
                ids_by_direction = Some((moving_right, moving_left));
            }
            if i > 5 {
                assert_eq!(
                    Some((moving_right, moving_left)),
                    ids_by_direction,
                    "frame {i}"
                );
            }
        }
        assert_eq!(t.tracks().len(), 2);
    }

    #[test]
    fn low_score_detections_keep_a_track_alive_but_do_not_start_one() {
        let mut t = tracker();
        for i in 0..5 {
            t.update(i * FRAME_US, &[det(2, 0.9, 0.5, 0.5, 0.2, 0.1)]);
        }
        let id = confirmed_ids(&t)[0];
        // Partly occluded: the score drops to 0.2 for 5 s, longer than lost_after.
        for i in 5..30 {
            t.update(i * FRAME_US, &[det(2, 0.2, 0.5, 0.5, 0.2, 0.1)]);
        }
        assert_eq!(confirmed_ids(&t), vec![id]);
        // A low-score detection alone never starts a track.
        let mut t = tracker();
        for i in 0..10 {
            t.update(i * FRAME_US, &[det(2, 0.2, 0.5, 0.5, 0.2, 0.1)]);
        }
        assert!(t.tracks().is_empty());
    }

    #[test]
    fn a_track_outside_the_regions_detected_is_carried_not_lost() {
        let mut t = tracker();
        // A person on the left (left region), one on the right (right region), both moving.
        for i in 0..5 {
            t.update(
                i * FRAME_US,
                &[
                    det(0, 0.9, 0.1 + 0.01 * i as f32, 0.5, 0.05, 0.2),
                    det(0, 0.9, 0.7, 0.5 + 0.01 * i as f32, 0.05, 0.2),
                ],
            );
        }
        let right_id = t.tracks()[1].id;
        let left_region = |b: &BBox| (b.x1 + b.x2) / 2.0 < 0.5;
        // Only the left region moves for 10 s (far past lost_after): the right one was
        // still, so what it held is as it was.
        let mut time = 5 * FRAME_US;
        for i in 5..55 {
            t.update_in_view(
                time,
                &[det(0, 0.9, 0.1 + 0.01 * i as f32, 0.5, 0.05, 0.2)],
                left_region,
            );
            time += FRAME_US;
        }
        let right = t.tracks().iter().find(|tr| tr.id == right_id).unwrap();
        assert!(right.seen_now, "carried forward as seen");
        assert_eq!(right.last_seen_us, time - FRAME_US);
        // The whole picture detected without it: now it is missed, and dies after lost_after.
        t.update(time, &[]);
        assert!(!t.tracks().iter().any(|tr| tr.id == right_id && tr.seen_now));
        t.update(time + 3_500_000, &[]);
        assert!(t.tracks().iter().all(|tr| tr.id != right_id));
    }

    #[test]
    fn moving_tracks_die_after_lost_after() {
        let mut t = tracker();
        for i in 0..5 {
            t.update(
                i * FRAME_US,
                &[det(0, 0.9, 0.1 + 0.01 * i as f32, 0.5, 0.05, 0.2)],
            );
        }
        // Last seen at 0.8 s.
        t.update(800_000 + 2_900_000, &[]);
        assert_eq!(t.tracks().len(), 1, "2.9 s unseen: still alive");
        t.update(800_000 + 3_100_000, &[]);
        assert!(t.tracks().is_empty(), "over 3 s unseen: gone");
    }

    #[test]
    fn stationary_after_holding_still_and_through_jitter_and_gaps() {
        let mut t = tracker();
        let mut time = 0;
        for i in 0..80 {
            // Sub-pixel jitter of a parked car's box.
            let jitter = if i % 2 == 0 { 0.003 } else { -0.003 };
            t.update(time, &[det(2, 0.8, 0.4 + jitter, 0.4, 0.2, 0.1)]);
            time += FRAME_US;
            let track = &t.tracks()[0];
            if time <= 10 * 1_000_000 {
                assert!(!track.is_stationary(), "not yet at {time}");
            }
        }
        let track = &t.tracks()[0];
        assert_eq!(
            track.stationary_since_us,
            Some(0),
            "at rest since the start"
        );
        // 40 s of missed detections: still there, still stationary.
        t.update(time + 40_000_000, &[]);
        assert!(t.tracks()[0].is_stationary());
        t.update(time + 40_200_000, &[det(2, 0.8, 0.4, 0.4, 0.2, 0.1)]);
        assert_eq!(t.tracks().len(), 1);
        assert_eq!(t.tracks()[0].stationary_since_us, Some(0));
        // One second off its place and back: stationary again since it first stopped.
        let mut time = time + 40_400_000;
        for i in 0..5 {
            t.update(time, &[det(2, 0.8, 0.46 + 0.01 * i as f32, 0.4, 0.2, 0.1)]);
            time += FRAME_US;
            assert!(
                !t.tracks()[0].is_stationary(),
                "off its place: not stationary"
            );
        }
        t.update(time, &[det(2, 0.8, 0.4, 0.4, 0.2, 0.1)]);
        time += FRAME_US;
        assert_eq!(
            t.tracks()[0].stationary_since_us,
            Some(0),
            "a break, not a move"
        );
        // It drives off: no longer stationary.
        for i in 0..15 {
            t.update(time, &[det(2, 0.8, 0.42 + 0.03 * i as f32, 0.4, 0.2, 0.1)]);
            time += FRAME_US;
        }
        assert!(!t.tracks()[0].is_stationary());
        // Stopping elsewhere is a new rest, not the old one.
        for _ in 0..60 {
            t.update(time, &[det(2, 0.8, 0.8, 0.4, 0.2, 0.1)]);
            time += FRAME_US;
        }
        let since = t.tracks()[0].stationary_since_us.expect("at rest again");
        assert!(since > 40_000_000, "a new rest: {since}");
    }

    const HALF_S: i64 = 500_000; // 2 fps, the rules' usual detect rate

    /// A parked car at (0.4, 0.4), 0.2 x 0.1, seen at 2 fps from 0 to `until_s`, with
    /// `seen(time_s)` giving what the detector reports of it at each frame (None: missed).
    fn parked(t: &mut Tracker, until_s: i64, seen: impl Fn(f64) -> Option<Detection>) {
        let mut time = 0;
        while time <= until_s * 1_000_000 {
            let detections: Vec<Detection> = seen(time as f64 / 1e6).into_iter().collect();
            t.update(time, &detections);
            time += HALF_S;
        }
    }

    fn the_car() -> Detection {
        det(2, 0.8, 0.4, 0.4, 0.2, 0.1)
    }

    #[test]
    fn passers_by_hiding_a_parked_car_again_and_again_do_not_restart_its_dwell() {
        let mut t = tracker();
        // For 2 s of every 10 s a block slides across: the car's box is cut from the left,
        // then from the right, then the car is missed altogether for a frame.
        parked(&mut t, 120, |s| {
            let phase = (s + 5.0) % 10.0;
            if phase >= 2.0 {
                return Some(the_car());
            }
            match (phase * 2.0) as i32 {
                0 => Some(det(2, 0.6, 0.45, 0.4, 0.15, 0.1)),
                1 => Some(det(2, 0.5, 0.52, 0.4, 0.08, 0.1)),
                2 => None,
                _ => Some(det(2, 0.5, 0.4, 0.4, 0.07, 0.1)),
            }
        });
        let tracks: Vec<&Track> = t.tracks().iter().filter(|t| t.confirmed).collect();
        assert_eq!(tracks.len(), 1, "one car, one track: {tracks:?}");
        assert_eq!(
            tracks[0].stationary_since_us,
            Some(0),
            "at rest since the start"
        );
    }

    #[test]
    fn a_car_half_hidden_for_minutes_stays_where_it_stands_with_its_whole_box() {
        let mut t = tracker();
        parked(&mut t, 240, |s| {
            if (20.0..200.0).contains(&s) {
                // The left half is behind a van.
                Some(det(2, 0.6, 0.5, 0.4, 0.1, 0.1))
            } else {
                Some(the_car())
            }
        });
        let track = &t.tracks()[0];
        assert_eq!(t.tracks().len(), 1);
        assert_eq!(track.stationary_since_us, Some(0));
        // During the occlusion the track reported where the whole car stands.
        let mut t = tracker();
        parked(&mut t, 100, |s| {
            if s >= 20.0 {
                Some(det(2, 0.6, 0.5, 0.4, 0.1, 0.1))
            } else {
                Some(the_car())
            }
        });
        assert_eq!(t.tracks()[0].bbox, the_car().norm);
        assert!(t.tracks()[0].is_stationary());
    }

    #[test]
    fn people_standing_beside_a_parked_car_do_not_move_it() {
        let mut t = tracker();
        parked(&mut t, 90, |s| {
            if (30.0..80.0).contains(&s) {
                // The box grows over the people beside it.
                Some(det(2, 0.7, 0.38, 0.36, 0.28, 0.16))
            } else {
                Some(the_car())
            }
        });
        assert_eq!(t.tracks()[0].stationary_since_us, Some(0));
    }

    #[test]
    fn night_noise_and_a_swaying_pole_keep_a_parked_car_stationary() {
        let mut t = tracker();
        parked(&mut t, 60, |s| {
            let frame = (s * 2.0) as i64;
            // Night: every third frame the box is far off (IoU about 0.4), others jitter.
            let noisy = frame % 3 == 1;
            // Sway: the whole picture moves 0.6 % back and forth every 4 s.
            let sway = if (s % 4.0) < 2.0 { 0.006 } else { -0.006 };
            let (dx, dw) = if noisy { (0.09, -0.02) } else { (0.004, 0.0) };
            Some(det(2, 0.5, 0.4 + dx + sway, 0.4 + sway, 0.2 + dw, 0.1))
        });
        let track = &t.tracks()[0];
        assert_eq!(t.tracks().len(), 1);
        let since = track
            .stationary_since_us
            .expect("stationary despite the noise");
        assert!(
            since <= 1_000_000,
            "at rest from the start, not later: {since}"
        );
    }

    #[test]
    fn moving_objects_never_become_stationary() {
        // A person walking across, and one walking towards the camera (the box grows
        // around where it was: no containment for tracks that are not stationary).
        for (dx, grow) in [(0.01f32, 0.0f32), (0.0, 0.004)] {
            let mut t = tracker();
            let mut time = 0;
            for i in 0..40 {
                let i = i as f32;
                let (w, h) = (0.05 + grow * i, 0.15 + 3.0 * grow * i);
                t.update(time, &[det(0, 0.8, 0.1 + dx * i - w / 2.0, 0.3, w, h)]);
                time += HALF_S;
                assert!(
                    t.tracks().iter().all(|t| !t.is_stationary()),
                    "moving (dx {dx}, grow {grow}) at {time}"
                );
            }
        }
    }

    #[test]
    fn still_frames_carry_what_was_last_detected_and_nothing_else() {
        let mut t = tracker();
        for i in 0..5 {
            t.update(
                i * FRAME_US,
                &[
                    det(2, 0.9, 0.3, 0.3, 0.2, 0.1),
                    det(0, 0.9, 0.7, 0.3, 0.05, 0.2),
                ],
            );
        }
        // The person leaves; the detector runs once more and sees only the car.
        t.update(5 * FRAME_US, &[det(2, 0.9, 0.3, 0.3, 0.2, 0.1)]);
        // Then 20 s in which nothing moves: the motion gate skips inference.
        for i in 6..106 {
            t.carry_forward(i * FRAME_US);
        }
        let car = t.tracks().iter().find(|tr| tr.class_id == 2).unwrap();
        assert!(
            car.seen_now && car.last_seen_us == 105 * FRAME_US,
            "the car is still there"
        );
        assert!(
            t.tracks()
                .iter()
                .filter(|tr| tr.class_id == 0)
                .all(|p| !p.seen_now),
            "the person is not revived"
        );
        t.update(106 * FRAME_US, &[det(2, 0.9, 0.3, 0.3, 0.2, 0.1)]);
        assert!(
            t.tracks().iter().all(|tr| tr.class_id == 2),
            "the person's track died"
        );
    }

    #[test]
    fn a_car_called_car_and_truck_is_one_track_with_the_majority_label() {
        let mut t = Tracker::new(TrackerConfig {
            stationary_after: Duration::from_secs(1),
            ..TrackerConfig::default()
        });
        for i in 0..10 {
            let car = det(2, 0.7, 0.3, 0.3, 0.2, 0.1);
            let mut truck = det(1, 0.6, 0.3, 0.3, 0.2, 0.1);
            truck.label = Arc::from("truck");
            truck.class_id = 7;
            let dets = if i % 3 == 0 {
                vec![truck]
            } else {
                vec![car, truck]
            };
            t.update(i * FRAME_US, &dets);
        }
        assert_eq!(t.tracks().len(), 1);
        assert_eq!(&*t.tracks()[0].label, "car");
    }
}
