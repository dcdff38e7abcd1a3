//! Regions stage: which parts of each frame the detector sees, and at what detail.
//!
//! A wide 1080p-4 MP camera letterboxed whole into a 416×416 model input shrinks every
//! object 4-10 times; the objects gridwatch exists for (an e-bike at the far end of a
//! corridor, a car in a fire lane 30 m away) then fall below what the model detects. The
//! planner cuts the picture into regions derived from the zones, each cropped and
//! letterboxed into the model input on its own, so each zone is seen at the detail its
//! objects need, and nothing outside the zones costs an inference.
//!
//! The rule (`regions = "auto"`, the default), in pixels of the stream detection reads:
//! 1. Each zone's bounding box is grown by a margin, because objects stand partly outside
//!    their zone (membership is the box's bottom centre): 20 % of the box's width on the left
//!    and right and of its height below (at least 3 % of the picture), and 60 % of its height
//!    above (at least 8 % of the picture), since an object standing in the zone rises above it.
//! 2. Grown boxes that overlap are merged into their bounding box, until none overlap.
//! 3. A region smaller than the model input is grown to the model input's size (centred,
//!    within the picture): the model sees it at native resolution with more context, for the
//!    same inference.
//! 4. When a merged box covers at least half the picture, or a grown region would show its
//!    objects less than [`MIN_REGION_GAIN`] (1.25) times larger than one pass of the whole
//!    picture does (a picture not much larger than the model input), the whole picture is
//!    the region: a zone that covers most of the picture gets a whole-frame pass, and a
//!    region's border never cuts away context for next to no detail.
//! 5. The detail a region needs: its smallest object (the zone's `min_object_height`, a
//!    fraction of the picture's height, default [`DEFAULT_MIN_OBJECT_HEIGHT`]) must be at
//!    least [`MIN_MODEL_OBJECT_PX`] pixels high in the model input. When one pass of the
//!    region would shrink it below that, the region is split into tiles small enough for it
//!    (overlapping by [`TILE_OVERLAP`] of a tile, so an object cut by one tile's edge is whole
//!    in its neighbour), plus one pass of the whole region for objects larger than a tile's
//!    overlap. A tile is never smaller than the model input: finer than native resolution
//!    there is nothing more to see, and the plan says so (the stream lacks the pixels).
//!    Tiles that would show the objects less than [`MIN_REGION_GAIN`] times larger than the
//!    region's own pass are not made (a 480x270 picture tiled at native resolution gains
//!    1.15x for three times the inferences): the plan says the objects are short of pixels.
//! 6. At most [`MAX_REGIONS`] per camera; past that, regions keep only their whole pass and
//!    the plan says which objects will be too small.
//!
//! A camera without zones gets one pass of the whole picture: nothing asks for detail.
//! `regions = "full"` is one pass of the whole picture (the behaviour before regions);
//! an explicit list is used as given.

use crate::config::{CameraConfig, RegionsSetting};
use crate::frame::BBox;
pub use crate::frame::Crop;

/// Height in model-input pixels from which YOLOX-Nano finds the compound's objects
/// reliably. Measured on the shared media (docs/BENCHMARKS.md, "Detection regions"): the
/// parking-lot car and the dog.jpg scene scaled down step by step on a grey 416×416 input;
/// the car is found down to ~27 px high and lost at ~21 px, the bicycle needs ~60 px
/// (0.80 at 64 px, 0.45 at 44 px).
pub const MIN_MODEL_OBJECT_PX: f32 = 48.0;

// The config validates against these bounds, so they are defined with it.
pub use crate::config::{DEFAULT_MIN_OBJECT_HEIGHT, MAX_REGIONS};

/// Tiles overlap their neighbours by this fraction of a tile.
pub const TILE_OVERLAP: f32 = 0.25;

/// A merged zone box covering at least this fraction of the picture becomes the whole picture.
const WHOLE_PICTURE_COVER: f32 = 0.5;

/// A region must show its objects at least this many times larger than the whole picture's
/// pass does, or the whole pass serves instead.
pub const MIN_REGION_GAIN: f32 = 1.25;

/// What a zone asks of the planner.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneNeed {
    pub id: String,
    /// The zone polygon's bounding box, normalised.
    pub bbox: BBox,
    /// Height of its smallest object, as a fraction of the picture height.
    pub min_object_height: f32,
}

/// The needs of a camera's zones and counting lines. A line is watched like a zone around
/// it (the planner grows every box by its margins), so that a camera with zones elsewhere
/// still sees the objects that cross it.
pub fn zone_needs(camera: &CameraConfig) -> Vec<ZoneNeed> {
    let need = |id: &str, points: &[[f32; 2]], min_object_height: Option<f32>| {
        let xs = points.iter().map(|p| p[0]);
        let ys = points.iter().map(|p| p[1]);
        ZoneNeed {
            id: id.to_string(),
            bbox: BBox {
                x1: xs.clone().fold(1.0, f32::min),
                y1: ys.clone().fold(1.0, f32::min),
                x2: xs.fold(0.0, f32::max),
                y2: ys.fold(0.0, f32::max),
            },
            min_object_height: min_object_height.unwrap_or(DEFAULT_MIN_OBJECT_HEIGHT),
        }
    };
    let zones = camera
        .zones
        .iter()
        .map(|z| need(&z.id, &z.polygon, z.min_object_height));
    let lines = camera
        .lines
        .iter()
        .map(|l| need(&l.id, &l.points, l.min_object_height));
    zones.chain(lines).collect()
}

/// Why a region exists.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    /// The whole picture (`full`, no zones, or a zone covering most of the picture).
    Whole,
    /// The merged, grown boxes of these zones.
    Zones(Vec<String>),
    /// One tile of the region at this index (its whole pass), column and row.
    Tile { of: usize, col: u32, row: u32 },
    /// `regions` lists it, at this index.
    Listed(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    /// `r0`, `r1`, ...: in logs, `check` and `/metrics`.
    pub id: String,
    pub role: Role,
    pub crop: Crop,
    /// The crop in fractions of the picture: what the tracker knows as this region's view.
    pub rect: BBox,
    /// Model pixels per picture pixel in this region's letterbox.
    pub scale: f32,
    /// The height of the region's smallest object at the model input.
    pub object_px: f32,
}

/// Which regions a camera's frames are cut into, for one stream size.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionPlan {
    pub width: u32,
    pub height: u32,
    pub regions: Vec<Region>,
    /// Zones whose smallest objects stay below [`MIN_MODEL_OBJECT_PX`] even at this stream's
    /// native resolution (a stream with more pixels would help), with that height.
    pub short_of_pixels: Vec<(String, f32)>,
    /// Zones whose objects stay small because the region cap was reached.
    pub capped: Vec<String>,
}

impl RegionPlan {
    /// The rectangles of the plan, normalised, in region order.
    pub fn rects(&self) -> Vec<BBox> {
        self.regions.iter().map(|r| r.rect).collect()
    }

    /// Why this stream lacks the pixels the zones' objects need, or `None` when it has them:
    /// the reason the daemon detects on the main stream instead of the sub-stream.
    pub fn short_reason(&self) -> Option<String> {
        if self.short_of_pixels.is_empty() {
            return None;
        }
        let zones: Vec<String> = self
            .short_of_pixels
            .iter()
            .map(|(zone, px)| format!("zone {zone}'s smallest objects are {px:.0} px"))
            .collect();
        Some(format!(
            "on {}x{} {} at the model even at native resolution (needs {MIN_MODEL_OBJECT_PX:.0})",
            self.width,
            self.height,
            zones.join(", ")
        ))
    }

    /// One line per region, for `check` and the log.
    pub fn describe(&self, detect_fps: f64) -> Vec<String> {
        let mut lines: Vec<String> = self
            .regions
            .iter()
            .map(|r| {
                let what = match &r.role {
                    Role::Whole => "the whole picture".to_string(),
                    Role::Zones(ids) => format!("zones {}", ids.join(", ")),
                    Role::Tile { of, col, row } => {
                        format!("tile {col},{row} of {}", self.regions[*of].id)
                    }
                    Role::Listed(k) => format!("regions[{k}]"),
                };
                format!(
                    "{} {}: {}x{} px at ({}, {}), scale {:.2}, smallest object {:.0} px at the model (needs {:.0})",
                    r.id,
                    what,
                    r.crop.width,
                    r.crop.height,
                    r.crop.x,
                    r.crop.y,
                    r.scale,
                    r.object_px,
                    MIN_MODEL_OBJECT_PX
                )
            })
            .collect();
        lines.push(format!(
            "{} region(s) on {}x{}: {:.1} inferences per second at detect_fps {}",
            self.regions.len(),
            self.width,
            self.height,
            self.regions.len() as f64 * detect_fps,
            detect_fps
        ));
        for (zone, px) in &self.short_of_pixels {
            lines.push(format!(
                "zone {zone}: its smallest objects are {px:.0} px at the model even at this stream's native resolution (needs {MIN_MODEL_OBJECT_PX:.0}): a stream with more pixels sees them better"
            ));
        }
        for zone in &self.capped {
            lines.push(format!(
                "zone {zone}: would need more than {MAX_REGIONS} regions for its smallest objects; it gets a whole pass only"
            ));
        }
        lines
    }
}

/// The plan for a `width`×`height` stream and a `model_width`×`model_height` model input.
pub fn plan(
    setting: &RegionsSetting,
    zones: &[ZoneNeed],
    width: u32,
    height: u32,
    model_width: usize,
    model_height: usize,
) -> RegionPlan {
    let (w, h) = (width.max(2) as f32, height.max(2) as f32);
    let model = (model_width as f32, model_height as f32);
    let smallest = |ids: &[String]| {
        zones
            .iter()
            .filter(|z| ids.contains(&z.id))
            .map(|z| z.min_object_height)
            .fold(f32::INFINITY, f32::min)
    };
    let all_ids: Vec<String> = zones.iter().map(|z| z.id.clone()).collect();
    let all_smallest = if zones.is_empty() {
        DEFAULT_MIN_OBJECT_HEIGHT
    } else {
        smallest(&all_ids)
    };
    let mut out = RegionPlan {
        width,
        height,
        regions: Vec::new(),
        short_of_pixels: Vec::new(),
        capped: Vec::new(),
    };
    let whole = BBox {
        x1: 0.0,
        y1: 0.0,
        x2: w,
        y2: h,
    };
    match setting {
        RegionsSetting::Full => push(&mut out, Role::Whole, &whole, all_smallest, model),
        RegionsSetting::List(list) => {
            for (k, [x1, y1, x2, y2]) in list.iter().enumerate() {
                let b = BBox {
                    x1: x1 * w,
                    y1: y1 * h,
                    x2: x2 * w,
                    y2: y2 * h,
                };
                push(&mut out, Role::Listed(k), &b, all_smallest, model);
            }
        }
        // No zones: nothing asks for detail; one pass of the picture, as `full`.
        RegionsSetting::Auto if zones.is_empty() => {
            push(&mut out, Role::Whole, &whole, all_smallest, model)
        }
        RegionsSetting::Auto => {
            let groups = zone_groups(zones, w, h);
            let mut planned: Vec<(Role, BBox, f32)> = Vec::new();
            let whole_scale = letterbox_scale(w, h, model);
            let grown: Vec<(BBox, Vec<String>, bool)> = groups
                .into_iter()
                .map(|(b, ids)| {
                    let large = b.area() >= WHOLE_PICTURE_COVER * w * h;
                    (at_least_model(&b, model, w, h), ids, large)
                })
                .collect();
            // A region covering most of the picture, or one that would show its objects
            // barely larger than the whole picture does (a picture not much larger than the
            // model input), gains little detail and loses the context at its borders: the
            // whole pass serves instead.
            if grown.iter().any(|(b, _, large)| {
                *large
                    || letterbox_scale(b.x2 - b.x1, b.y2 - b.y1, model)
                        < MIN_REGION_GAIN * whole_scale
            }) {
                planned.push((Role::Whole, whole, all_smallest));
            } else {
                for (b, ids, _) in grown {
                    let object = smallest(&ids);
                    planned.push((Role::Zones(ids), b, object));
                }
            }
            tile(&mut out, planned, zones, model, w, h);
        }
    }
    out
}

/// Steps 1-2: each zone box grown by its margin, overlapping boxes merged; in pixels.
fn zone_groups(zones: &[ZoneNeed], w: f32, h: f32) -> Vec<(BBox, Vec<String>)> {
    let mut groups: Vec<(BBox, Vec<String>)> = zones
        .iter()
        .map(|z| {
            let (zw, zh) = (z.bbox.width() * w, z.bbox.height() * h);
            let side = (0.2 * zw).max(0.03 * w);
            let below = (0.2 * zh).max(0.03 * h);
            let above = (0.6 * zh).max(0.08 * h);
            let grown = BBox {
                x1: (z.bbox.x1 * w - side).max(0.0),
                y1: (z.bbox.y1 * h - above).max(0.0),
                x2: (z.bbox.x2 * w + side).min(w),
                y2: (z.bbox.y2 * h + below).min(h),
            };
            (grown, vec![z.id.clone()])
        })
        .collect();
    loop {
        let pair = (0..groups.len()).find_map(|i| {
            (i + 1..groups.len())
                .find(|&j| groups[i].0.intersection(&groups[j].0) > 0.0)
                .map(|j| (i, j))
        });
        let Some((i, j)) = pair else { break };
        let (b, ids) = groups.remove(j);
        let target = &mut groups[i];
        target.0 = BBox {
            x1: target.0.x1.min(b.x1),
            y1: target.0.y1.min(b.y1),
            x2: target.0.x2.max(b.x2),
            y2: target.0.y2.max(b.y2),
        };
        target.1.extend(ids);
    }
    groups
}

/// Step 3: grows `b` to at least the model input's size, centred, within the picture.
fn at_least_model(b: &BBox, model: (f32, f32), w: f32, h: f32) -> BBox {
    let grow = |lo: f32, hi: f32, want: f32, limit: f32| {
        let want = want.min(limit);
        if hi - lo >= want {
            return (lo, hi);
        }
        let lo = ((lo + hi) / 2.0 - want / 2.0).clamp(0.0, limit - want);
        (lo, lo + want)
    };
    let (x1, x2) = grow(b.x1, b.x2, model.0, w);
    let (y1, y2) = grow(b.y1, b.y2, model.1, h);
    BBox { x1, y1, x2, y2 }
}

fn letterbox_scale(width: f32, height: f32, model: (f32, f32)) -> f32 {
    (model.0 / width).min(model.1 / height)
}

fn push(out: &mut RegionPlan, role: Role, b: &BBox, object_height: f32, model: (f32, f32)) {
    let crop = Crop::from_px(b, out.width.max(2), out.height.max(2));
    let scale = letterbox_scale(crop.width as f32, crop.height as f32, model);
    let (w, h) = (out.width.max(2) as f32, out.height.max(2) as f32);
    out.regions.push(Region {
        id: format!("r{}", out.regions.len()),
        role,
        crop,
        rect: BBox {
            x1: crop.x as f32 / w,
            y1: crop.y as f32 / h,
            x2: (crop.x + crop.width) as f32 / w,
            y2: (crop.y + crop.height) as f32 / h,
        },
        scale,
        object_px: object_height * h * scale,
    });
}

/// Tile positions along one axis: `n` tiles of `tile` covering `len`, evenly spread.
fn tile_starts(len: f32, tile: f32) -> Vec<f32> {
    if tile >= len {
        return vec![0.0];
    }
    let step = tile * (1.0 - TILE_OVERLAP);
    let n = ((len - tile) / step).ceil() as usize + 1;
    (0..n)
        .map(|k| k as f32 * (len - tile) / (n - 1) as f32)
        .collect()
}

/// Steps 5-6: one pass per planned region, tiled where its objects need more detail.
fn tile(
    out: &mut RegionPlan,
    planned: Vec<(Role, BBox, f32)>,
    zones: &[ZoneNeed],
    model: (f32, f32),
    w: f32,
    h: f32,
) {
    let ids_of = |role: &Role| match role {
        Role::Zones(ids) => ids.clone(),
        _ => zones.iter().map(|z| z.id.clone()).collect(),
    };
    // Tiles per planned region, decided first so the cap can be applied to the whole plan.
    let mut layouts = Vec::with_capacity(planned.len());
    for (role, b, object) in &planned {
        let scale = letterbox_scale(b.width(), b.height(), model);
        if object * h * scale >= MIN_MODEL_OBJECT_PX {
            layouts.push(None);
            continue;
        }
        // The scale the objects need; never finer than native resolution.
        let needed = MIN_MODEL_OBJECT_PX / (object * h);
        if needed > 1.0 {
            for id in ids_of(role) {
                let px = zones
                    .iter()
                    .find(|z| z.id == id)
                    .map_or(*object, |z| z.min_object_height)
                    * h;
                if px < MIN_MODEL_OBJECT_PX {
                    out.short_of_pixels.push((id, px));
                }
            }
        }
        let needed = needed.min(1.0);
        let (tw, th) = (
            (model.0 / needed).min(b.width()),
            (model.1 / needed).min(b.height()),
        );
        if letterbox_scale(tw, th, model) < MIN_REGION_GAIN * scale {
            layouts.push(None);
            continue;
        }
        let xs = tile_starts(b.width(), tw);
        let ys = tile_starts(b.height(), th);
        layouts.push(Some((xs, ys, tw, th)));
    }
    let total: usize = layouts
        .iter()
        .map(|l| {
            l.as_ref()
                .map_or(1, |(xs, ys, _, _)| 1 + xs.len() * ys.len())
        })
        .sum();
    if total > MAX_REGIONS {
        for ((role, _, _), layout) in planned.iter().zip(&mut layouts) {
            if layout.take().is_some() {
                out.capped.extend(ids_of(role));
            }
        }
    }
    for ((role, b, object), layout) in planned.into_iter().zip(layouts) {
        let parent = out.regions.len();
        push(out, role, &b, object, model);
        let Some((xs, ys, tw, th)) = layout else {
            continue;
        };
        for (row, y) in ys.iter().enumerate() {
            for (col, x) in xs.iter().enumerate() {
                let t = BBox {
                    x1: b.x1 + x,
                    y1: b.y1 + y,
                    x2: (b.x1 + x + tw).min(w),
                    y2: (b.y1 + y + th).min(h),
                };
                push(
                    out,
                    Role::Tile {
                        of: parent,
                        col: col as u32,
                        row: row as u32,
                    },
                    &t,
                    object,
                    model,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(id: &str, b: [f32; 4], min_object_height: f32) -> ZoneNeed {
        ZoneNeed {
            id: id.into(),
            bbox: BBox {
                x1: b[0],
                y1: b[1],
                x2: b[2],
                y2: b[3],
            },
            min_object_height,
        }
    }

    #[test]
    fn full_is_one_pass_of_the_whole_picture() {
        let p = plan(
            &RegionsSetting::Full,
            &[zone("a", [0.1, 0.1, 0.2, 0.2], 0.08)],
            1920,
            1080,
            416,
            416,
        );
        assert_eq!(p.regions.len(), 1);
        assert!(p.regions[0].crop.is_whole(1920, 1080));
        // 416 / 1920: the 86 px object is 18 px at the model.
        assert!((p.regions[0].object_px - 18.7).abs() < 0.5);
    }

    /// Found by review: regions came from zones alone, so on a 1080p camera with a zone at
    /// one side a counting line at the other was never detected and counted nothing.
    #[test]
    fn a_counting_line_away_from_the_zones_gets_a_region_of_its_own() {
        let config = crate::config::Config::parse(
            "[site]\nid = \"s\"\ngrid_code = \"1\"\n[[cameras]]\nid = \"c\"\nurl = \"x\"\n\
             [[cameras.zones]]\nid = \"lane\"\npolygon = [[0.02, 0.3], [0.2, 0.3], [0.2, 0.45], [0.02, 0.45]]\n\
             [cameras.zones.illegal_parking]\n\
             [[cameras.lines]]\nid = \"gate\"\npoints = [[0.8, 0.55], [0.8, 0.75]]\n",
            std::path::Path::new("c.toml"),
        )
        .unwrap();
        let needs = zone_needs(&config.cameras[0]);
        assert_eq!(needs.len(), 2);
        assert_eq!(needs[1].id, "gate");
        let p = plan(&RegionsSetting::Auto, &needs, 1920, 1080, 416, 416);
        let line_foot = (0.8, 0.75);
        let covering: Vec<&Region> = p
            .regions
            .iter()
            .filter(|r| {
                let b = &r.rect;
                b.x1 < line_foot.0 - 0.03
                    && b.x2 > line_foot.0 + 0.03
                    && b.y1 < 0.55
                    && b.y2 > line_foot.1 + 0.03
            })
            .collect();
        assert!(
            !covering.is_empty(),
            "no region covers the line and a margin on both sides: {:?}",
            p.regions
        );
        assert!(
            p.regions.iter().all(|r| r.role != Role::Whole),
            "the zone and the line are small: regions, not a whole pass"
        );
    }

    #[test]
    fn a_camera_without_zones_gets_one_whole_pass() {
        let p = plan(&RegionsSetting::Auto, &[], 640, 360, 416, 416);
        assert_eq!(p.regions.len(), 1);
        assert_eq!(p.regions[0].role, Role::Whole);
        assert!(p.short_of_pixels.is_empty() && p.short_reason().is_none());
    }

    #[test]
    fn a_small_far_zone_is_seen_at_native_resolution() {
        // A no-parking zone at the far end of a 1080p picture, 10 % wide.
        let p = plan(
            &RegionsSetting::Auto,
            &[zone("far", [0.45, 0.3, 0.55, 0.38], 0.05)],
            1920,
            1080,
            416,
            416,
        );
        assert_eq!(p.regions.len(), 1, "{:#?}", p.regions);
        let r = &p.regions[0];
        // Grown to the model input: native resolution, no upscaling.
        assert_eq!((r.crop.width, r.crop.height), (416, 416));
        assert!((r.scale - 1.0).abs() < 1e-6);
        assert!(r.object_px >= MIN_MODEL_OBJECT_PX, "{}", r.object_px);
        // The crop contains the zone.
        assert!(r.rect.x1 <= 0.45 && r.rect.x2 >= 0.55 && r.rect.y1 <= 0.3 && r.rect.y2 >= 0.38);
        assert_eq!(r.crop.x % 2, 0);
        assert_eq!(r.crop.y % 2, 0);
    }

    #[test]
    fn overlapping_zones_merge_into_one_region_and_distant_ones_stay_apart() {
        let zones = [
            zone("a", [0.05, 0.30, 0.20, 0.40], 0.08),
            zone("b", [0.18, 0.32, 0.30, 0.42], 0.08),
            zone("c", [0.75, 0.70, 0.85, 0.80], 0.08),
        ];
        let p = plan(&RegionsSetting::Auto, &zones, 1920, 1080, 416, 416);
        let roles: Vec<&Role> = p.regions.iter().map(|r| &r.role).collect();
        assert_eq!(
            roles,
            [
                &Role::Zones(vec!["a".into(), "b".into()]),
                &Role::Zones(vec!["c".into()])
            ],
            "{:#?}",
            p.regions
        );
        // The margin: room above the zone for the objects standing in it.
        assert!(p.regions[0].rect.y1 < 0.30 - 0.05);
    }

    #[test]
    fn a_zone_covering_most_of_the_picture_gets_a_whole_pass_and_tiles_for_small_objects() {
        // Crowding over the whole square, persons 6 % of the height (65 px on 1080p).
        let p = plan(
            &RegionsSetting::Auto,
            &[zone("square", [0.05, 0.1, 0.95, 0.95], 0.06)],
            1920,
            1080,
            416,
            416,
        );
        assert_eq!(p.regions[0].role, Role::Whole);
        let tiles: Vec<&Region> = p
            .regions
            .iter()
            .filter(|r| matches!(r.role, Role::Tile { .. }))
            .collect();
        assert!(tiles.len() >= 4, "{:#?}", p.regions);
        assert!(p.regions.len() <= MAX_REGIONS);
        for t in &tiles {
            assert!(t.object_px >= MIN_MODEL_OBJECT_PX - 0.5, "{t:?}");
            assert!(t.crop.width >= 416 && t.crop.height >= 416, "{t:?}");
        }
        // Tiles cover the picture and overlap their neighbours.
        let right = tiles.iter().map(|t| t.crop.x + t.crop.width).max().unwrap();
        let bottom = tiles
            .iter()
            .map(|t| t.crop.y + t.crop.height)
            .max()
            .unwrap();
        assert_eq!((right, bottom), (1920, 1080));
        let row0: Vec<&&Region> = tiles
            .iter()
            .filter(|t| matches!(t.role, Role::Tile { row: 0, .. }))
            .collect();
        assert!(row0[1].crop.x < row0[0].crop.x + row0[0].crop.width);
    }

    #[test]
    fn big_objects_need_no_tiles_and_a_small_picture_is_one_pass() {
        let square = [zone("square", [0.05, 0.1, 0.95, 0.95], 0.3)];
        let p = plan(&RegionsSetting::Auto, &square, 1920, 1080, 416, 416);
        assert_eq!(p.regions.len(), 1);
        // The sample clips: 768x432, cars a fifth of the height.
        let p = plan(
            &RegionsSetting::Auto,
            &[zone("aisle", [0.0, 0.2, 0.4, 0.55], 0.2)],
            768,
            432,
            416,
            416,
        );
        assert_eq!(p.regions.len(), 1, "{:#?}", p.regions);
        assert!(p.short_of_pixels.is_empty());
    }

    #[test]
    fn a_region_barely_larger_than_the_whole_pass_gives_way_to_it() {
        // The 480x270 parking-lot GIF: the aisle grown to 416x270 would be seen at scale 1.0
        // against 0.87 for the whole picture: not worth cutting the picture's border off.
        let p = plan(
            &RegionsSetting::Auto,
            &[zone("aisle", [0.0, 0.2, 0.4, 0.55], 0.08)],
            480,
            270,
            416,
            416,
        );
        assert_eq!(p.regions[0].role, Role::Whole, "{:#?}", p.regions);
        // Nor is tiling it at native resolution (1.15x for three inferences): one pass, and
        // the plan says the 22 px objects are short of pixels.
        assert_eq!(p.regions.len(), 1, "{:#?}", p.regions);
        assert_eq!(p.short_of_pixels.len(), 1);
        // A 768x432 picture tiled at native resolution gains 1.85x: tiles.
        let p = plan(
            &RegionsSetting::Auto,
            &[zone("hall", [0.0, 0.0, 1.0, 1.0], 0.08)],
            768,
            432,
            416,
            416,
        );
        assert!(p.regions.len() > 1, "{:#?}", p.regions);
    }

    #[test]
    fn a_sub_stream_too_small_for_the_objects_says_so() {
        // 640x360 sub-stream, far zone with objects 5 % of the height: 18 px natively.
        let far = [zone("far", [0.45, 0.3, 0.55, 0.38], 0.05)];
        let sub = plan(&RegionsSetting::Auto, &far, 640, 360, 416, 416);
        assert_eq!(sub.short_of_pixels.len(), 1);
        assert_eq!(sub.short_of_pixels[0].0, "far");
        let main = plan(&RegionsSetting::Auto, &far, 1920, 1080, 416, 416);
        assert!(main.short_of_pixels.is_empty());
    }

    #[test]
    fn the_cap_keeps_whole_passes_only() {
        let zones: Vec<ZoneNeed> = (0..4)
            .map(|i| {
                let x = 0.25 * i as f32;
                zone(&format!("z{i}"), [x + 0.02, 0.3, x + 0.2, 0.9], 0.02)
            })
            .collect();
        let p = plan(&RegionsSetting::Auto, &zones, 3840, 2160, 416, 416);
        assert!(p.regions.len() <= MAX_REGIONS, "{}", p.regions.len());
        assert!(!p.capped.is_empty());
    }

    #[test]
    fn listed_regions_are_used_as_given() {
        let p = plan(
            &RegionsSetting::List(vec![[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]),
            &[],
            1280,
            720,
            416,
            416,
        );
        assert_eq!(p.regions.len(), 2);
        assert_eq!(
            p.regions[1].crop,
            Crop {
                x: 640,
                y: 360,
                width: 640,
                height: 360
            }
        );
        assert!(p.describe(2.0)[2].contains("4.0 inferences per second"));
    }
}
