//! Detect stage: run the model on a letterboxed input and turn its output into
//! [`Detection`]s in source pixels and normalised coordinates.
//!
//! The detector is built from a [`ModelManifest`]; the manifest's `output.decoder` picks the
//! output decoder, and its input contract is checked against the ONNX graph at load time so
//! a wrong manifest fails at start, not with nonsense boxes. The inference engine behind it
//! is ONNX Runtime ([`ort_engine`]) or, with the cargo feature `tract`, tract
//! ([`tract_engine`]); both see the same input tensor and give the same raw output, so
//! everything around them (input conversion, decoding, NMS) is shared.

mod ort_engine;
pub mod runtime;
#[cfg(feature = "tract")]
mod tract_engine;
pub mod yolox;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::assets::{self, AssetKind};
use crate::config::{DetectorBackend, DetectorConfig};
use crate::frame::{BBox, Detection};
use crate::model::{DecoderKind, ModelManifest};
use crate::source::{Geometry, ModelInput};

use ort_engine::OrtEngine;
pub use runtime::RuntimeInfo;
#[cfg(feature = "tract")]
use tract_engine::TractEngine;
use yolox::{Candidate, YoloxDecoder};

/// The onnxruntime wheel version scripts/setup.sh installs for the pinned `ort` crate.
pub const ORT_WHEEL_VERSION_HINT: &str = "1.32";

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("{0}")]
    Runtime(String),
    #[error("cannot load model {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("model {path} does not match its manifest {manifest}: {reason}")]
    Contract {
        path: PathBuf,
        manifest: String,
        reason: String,
    },
    #[error("inference failed: {0}")]
    Inference(String),
}

impl DetectError {
    /// A load failure on one line (engines' messages can span several).
    fn load(path: &Path, reason: String) -> DetectError {
        DetectError::Load {
            path: path.to_path_buf(),
            reason: reason.split_whitespace().collect::<Vec<_>>().join(" "),
        }
    }

    fn contract(path: &Path, manifest: &ModelManifest, reason: String) -> DetectError {
        DetectError::Contract {
            path: path.to_path_buf(),
            manifest: manifest.origin.clone(),
            reason,
        }
    }
}

/// Detector settings that do not come from the manifest.
#[derive(Debug, Clone)]
pub struct DetectorSettings {
    pub threads: usize,
    pub confidence: f32,
    pub nms_iou: f32,
}

impl From<&DetectorConfig> for DetectorSettings {
    fn from(c: &DetectorConfig) -> Self {
        DetectorSettings {
            threads: c.threads,
            confidence: c.confidence,
            nms_iou: c.nms_iou,
        }
    }
}

enum OutputDecoder {
    Yolox(YoloxDecoder),
}

/// The inference engine chosen by `detector.backend`, ready to build sessions.
#[derive(Debug, Clone)]
pub enum Backend {
    Ort(RuntimeInfo),
    #[cfg(feature = "tract")]
    Tract,
}

impl Backend {
    /// Which engine, for tables and logs: `ort 1.32.0` or `tract 0.23.9`.
    pub fn short_name(&self) -> String {
        match self {
            Backend::Ort(runtime) => format!("ort {}", runtime.version),
            #[cfg(feature = "tract")]
            Backend::Tract => format!("tract {}", tract_engine::TRACT_VERSION),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Ort(runtime) => write!(
                f,
                "ONNX Runtime {} from {} ({})",
                runtime.version,
                runtime.path.display(),
                runtime.origin
            ),
            #[cfg(feature = "tract")]
            Backend::Tract => write!(
                f,
                "tract {} (pure Rust, built in)",
                tract_engine::TRACT_VERSION
            ),
        }
    }
}

enum Engine {
    Ort(OrtEngine),
    #[cfg(feature = "tract")]
    Tract(TractEngine),
}

impl Engine {
    fn input_mut(&mut self) -> Result<&mut [f32], DetectError> {
        match self {
            Engine::Ort(e) => e.input_mut(),
            #[cfg(feature = "tract")]
            Engine::Tract(e) => e.input_mut(),
        }
    }

    fn run(&mut self, consume: &mut dyn FnMut(&[f32])) -> Result<(), DetectError> {
        match self {
            Engine::Ort(e) => e.run(consume),
            #[cfg(feature = "tract")]
            Engine::Tract(e) => e.run(consume),
        }
    }
}

/// A loaded model, ready to run. Owns its input tensor and preallocated output so steady
/// state inference allocates nothing on our side.
pub struct Detector {
    manifest: Arc<ModelManifest>,
    model_path: PathBuf,
    settings: DetectorSettings,
    engine: Engine,
    decoder: OutputDecoder,
    candidates: Vec<Candidate>,
    /// The kept candidates of every region of the frame, in picture pixels, each marked when
    /// its region's border cuts it.
    merged: Vec<(Candidate, bool)>,
    /// Per channel: value = pixel * mul + add, i.e. (pixel * scale - mean) / std.
    channel_affine: [(f32, f32); 3],
}

/// Everything needed to build a [`Detector`] from config: manifest, model file and engine.
pub struct LoadedModel {
    pub manifest: Arc<ModelManifest>,
    pub model_path: PathBuf,
    pub backend: Backend,
}

/// Resolves the manifest, finds and verifies the model file, and loads ONNX Runtime when
/// that is the backend.
pub fn prepare(config: &DetectorConfig, base_dir: &Path) -> anyhow::Result<LoadedModel> {
    let manifest = Arc::new(ModelManifest::resolve(&config.model, base_dir)?);
    let dirs = AssetKind::Models.search_dirs(config.model_dir.as_deref());
    let model_path = assets::locate(&manifest.asset(), AssetKind::Models, &dirs)?;
    let backend = match config.backend {
        DetectorBackend::Ort => Backend::Ort(runtime::load(config.runtime_library.as_deref())?),
        #[cfg(feature = "tract")]
        DetectorBackend::Tract => Backend::Tract,
        #[cfg(not(feature = "tract"))]
        DetectorBackend::Tract => {
            anyhow::bail!("detector.backend: {}", DetectorBackend::TRACT_NOT_BUILT)
        }
    };
    Ok(LoadedModel {
        manifest,
        model_path,
        backend,
    })
}

impl Detector {
    pub fn new(
        backend: &Backend,
        manifest: Arc<ModelManifest>,
        model_path: &Path,
        settings: DetectorSettings,
    ) -> Result<Detector, DetectError> {
        let engine = match backend {
            Backend::Ort(runtime) => Engine::Ort(OrtEngine::new(
                runtime,
                &manifest,
                model_path,
                settings.threads,
            )?),
            #[cfg(feature = "tract")]
            Backend::Tract => {
                Engine::Tract(TractEngine::new(&manifest, model_path, settings.threads)?)
            }
        };
        let spec = &manifest.input;
        let decoder = match manifest.output.decoder {
            DecoderKind::Yolox => OutputDecoder::Yolox(YoloxDecoder::new(
                spec.width(),
                spec.height(),
                &manifest.output.strides,
                manifest.classes.len(),
            )),
        };
        let channel_affine =
            std::array::from_fn(|c| (spec.scale / spec.std[c], -spec.mean[c] / spec.std[c]));
        Ok(Detector {
            manifest,
            model_path: model_path.to_path_buf(),
            settings,
            engine,
            decoder,
            candidates: Vec::with_capacity(1024),
            merged: Vec::with_capacity(256),
            channel_affine,
        })
    }

    pub fn manifest(&self) -> &Arc<ModelManifest> {
        &self.manifest
    }

    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    pub fn settings(&self) -> &DetectorSettings {
        &self.settings
    }

    /// Runs the model on `image` and writes the detections into `out` (cleared first).
    pub fn detect(
        &mut self,
        image: &ModelInput,
        out: &mut Vec<Detection>,
    ) -> Result<(), DetectError> {
        self.detect_regions(std::slice::from_ref(image), 1, out)
    }

    /// Runs the model on each region input whose bit is set in `mask` and writes one list of
    /// detections in whole-picture coordinates into `out` (cleared first): class-wise NMS
    /// within each region as for a single input, then the merge across regions of
    /// [`merge_regions`], so one object is one detection.
    pub fn detect_regions(
        &mut self,
        inputs: &[ModelInput],
        mask: u64,
        out: &mut Vec<Detection>,
    ) -> Result<(), DetectError> {
        out.clear();
        self.merged.clear();
        let mut last_geometry = None;
        let mut regions = 0;
        for (index, image) in inputs.iter().enumerate().take(64) {
            if mask & (1 << index) == 0 {
                continue;
            }
            let geometry = image
                .geometry
                .ok_or_else(|| DetectError::Inference("input image was never filled".into()))?;
            self.load_input(image)?;
            let (decoder, candidates) = (&self.decoder, &mut self.candidates);
            let confidence = self.settings.confidence;
            self.engine.run(&mut |values| match decoder {
                OutputDecoder::Yolox(decoder) => decoder.candidates(values, confidence, candidates),
            })?;
            self.region_candidates(geometry);
            last_geometry = Some(geometry);
            regions += 1;
        }
        let Some(geometry) = last_geometry else {
            return Ok(());
        };
        if regions > 1 {
            merge_regions(&mut self.merged, self.settings.nms_iou);
        }
        let (w, h) = (geometry.src_width as f32, geometry.src_height as f32);
        for (c, _) in &self.merged {
            out.push(Detection {
                label: Arc::clone(&self.manifest.classes[usize::from(c.class_id)]),
                class_id: c.class_id,
                score: c.score,
                bbox: c.bbox,
                norm: c.bbox.scaled(1.0 / w, 1.0 / h),
            });
        }
        Ok(())
    }

    /// Runs the model on whatever the input tensor holds; for benchmarks of inference alone.
    pub fn infer(&mut self) -> Result<(), DetectError> {
        self.engine.run(&mut |_| {})
    }

    /// Converts the 8-bit planes into the f32 tensor: the one pass over the input pixels.
    fn load_input(&mut self, image: &ModelInput) -> Result<(), DetectError> {
        let data = self.engine.input_mut()?;
        let plane = image.width * image.height;
        for (c, (dst, src)) in data
            .chunks_exact_mut(plane)
            .zip(image.planes.chunks_exact(plane))
            .enumerate()
        {
            let (mul, add) = self.channel_affine[c];
            if mul == 1.0 && add == 0.0 {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = f32::from(*s);
                }
            } else {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = f32::from(*s) * mul + add;
                }
            }
        }
        Ok(())
    }

    /// Maps one region's candidates to picture pixels, suppresses overlaps within the region
    /// and adds the survivors to `merged`, each marked when the region's border cuts it.
    fn region_candidates(&mut self, geometry: Geometry) {
        // Into source pixels before NMS, as YOLOX's demo does, so the +1 pixel convention
        // applies at source scale.
        let ratio = geometry.ratio as f32;
        let (ox, oy) = (geometry.offset_x as f32, geometry.offset_y as f32);
        let crop = geometry.crop;
        let (cx, cy) = (crop.x as f32, crop.y as f32);
        for c in &mut self.candidates {
            c.bbox = BBox {
                x1: (c.bbox.x1 - ox) / ratio + cx,
                y1: (c.bbox.y1 - oy) / ratio + cy,
                x2: (c.bbox.x2 - ox) / ratio + cx,
                y2: (c.bbox.y2 - oy) / ratio + cy,
            };
        }
        yolox::nms_in_place(&mut self.candidates, self.settings.nms_iou);
        let (w, h) = (geometry.src_width as f32, geometry.src_height as f32);
        let view = BBox {
            x1: cx,
            y1: cy,
            x2: cx + crop.width as f32,
            y2: cy + crop.height as f32,
        };
        // A box within this many picture pixels of an inner border is cut by it.
        let tolerance = (2.0 / ratio).max(2.0);
        for c in &self.candidates {
            let bbox = c.bbox.clamp_to(w, h);
            let bbox = BBox {
                x1: bbox.x1.max(view.x1),
                y1: bbox.y1.max(view.y1),
                x2: bbox.x2.min(view.x2),
                y2: bbox.y2.min(view.y2),
            };
            if bbox.area() <= 0.0 {
                continue;
            }
            let cut = (view.x1 > 0.0 && bbox.x1 - view.x1 <= tolerance)
                || (view.y1 > 0.0 && bbox.y1 - view.y1 <= tolerance)
                || (view.x2 < w && view.x2 - bbox.x2 <= tolerance)
                || (view.y2 < h && view.y2 - bbox.y2 <= tolerance);
            self.merged.push((Candidate { bbox, ..*c }, cut));
        }
    }
}

/// A cut box counts as part of another box of its class when at least this fraction of it
/// lies inside that box.
pub const CUT_INSIDE_FRACTION: f32 = 0.6;
/// Two cut boxes of one class overlapping by at least this IoU are the two halves of one
/// object on either side of a seam.
pub const SEAM_IOU: f32 = 0.2;

/// Merges the detections of several regions of one frame (each marked `true` when its
/// region's border cuts it), in place, so one object is one detection:
/// 1. class-wise NMS across regions at `nms_iou`, whole boxes before cut ones, then by score;
/// 2. a cut box mostly inside ([`CUT_INSIDE_FRACTION`]) a kept box of its class is dropped:
///    the other region saw the object whole;
/// 3. two cut boxes of a class overlapping by [`SEAM_IOU`] become their union (the object
///    straddles a seam and no region saw it whole), with the higher score;
/// 4. any other cut box is kept as it is: the object reaches beyond every region that sees it.
pub fn merge_regions(boxes: &mut Vec<(Candidate, bool)>, nms_iou: f32) {
    boxes.sort_by(|(a, a_cut), (b, b_cut)| {
        a.class_id
            .cmp(&b.class_id)
            .then(a_cut.cmp(b_cut))
            .then(b.score.total_cmp(&a.score))
    });
    let mut kept = 0;
    for i in 0..boxes.len() {
        let (current, cut) = boxes[i];
        let mut absorbed = false;
        for k in (0..kept).rev() {
            let (other, other_cut) = boxes[k];
            if other.class_id != current.class_id {
                break;
            }
            let overlaps = yolox::inclusive_iou(&other.bbox, &current.bbox) > nms_iou;
            let cut_inside = cut
                && current.bbox.intersection(&other.bbox)
                    >= CUT_INSIDE_FRACTION * current.bbox.area();
            if overlaps || cut_inside {
                absorbed = true;
            } else if cut && other_cut && other.bbox.iou(&current.bbox) >= SEAM_IOU {
                let b = &mut boxes[k].0;
                b.bbox = BBox {
                    x1: b.bbox.x1.min(current.bbox.x1),
                    y1: b.bbox.y1.min(current.bbox.y1),
                    x2: b.bbox.x2.max(current.bbox.x2),
                    y2: b.bbox.y2.max(current.bbox.y2),
                };
                b.score = b.score.max(current.score);
                absorbed = true;
            }
            if absorbed {
                break;
            }
        }
        if !absorbed {
            boxes[kept] = (current, cut);
            kept += 1;
        }
    }
    boxes.truncate(kept);
}

/// Finds the manifest's input or output (`kind`) among the model's `names` and checks the
/// shape the model declares for it (negative dimensions are dynamic and match anything).
/// Returns its index, for the engine to address it by.
fn check_outlet(
    manifest: &ModelManifest,
    kind: &str,
    names: &[String],
    declared_shape: impl FnOnce(usize) -> Vec<i64>,
) -> Result<usize, String> {
    let (name, expected, why) = if kind == "input" {
        let shape = manifest.input.shape.iter().map(|&d| d as i64).collect();
        (&manifest.input.name, shape, String::new())
    } else {
        let shape = vec![
            1,
            manifest.output_rows() as i64,
            manifest.output_cols() as i64,
        ];
        let why = format!(
            "; with {} classes and strides {:?} the manifest implies",
            manifest.classes.len(),
            manifest.output.strides
        );
        (&manifest.output.name, shape, why)
    };
    let index = names.iter().position(|n| n == name).ok_or_else(|| {
        format!(
            "no {kind} named `{name}` (the model has: {})",
            names.join(", ")
        )
    })?;
    let shape = declared_shape(index);
    let matches =
        shape.len() == expected.len() && shape.iter().zip(&expected).all(|(a, b)| *a < 0 || a == b);
    if matches {
        return Ok(index);
    }
    let says = if why.is_empty() {
        ", the manifest says"
    } else {
        &why
    };
    Err(format!(
        "{kind} `{name}` has shape {shape:?}{says} {expected:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(class_id: u16, score: f32, [x1, y1, x2, y2]: [f32; 4]) -> Candidate {
        Candidate {
            class_id,
            score,
            bbox: BBox { x1, y1, x2, y2 },
        }
    }

    #[test]
    fn one_object_seen_by_two_overlapping_regions_is_one_detection() {
        // A car whole in both a tile and the whole pass, with slightly different boxes.
        let mut boxes = vec![
            (candidate(2, 0.70, [100.0, 100.0, 200.0, 170.0]), false),
            (candidate(2, 0.85, [102.0, 101.0, 203.0, 172.0]), false),
            // A person standing beside it is a different class: kept.
            (candidate(0, 0.60, [110.0, 90.0, 140.0, 170.0]), false),
        ];
        merge_regions(&mut boxes, 0.45);
        assert_eq!(boxes.len(), 2, "{boxes:?}");
        let car = boxes.iter().find(|(c, _)| c.class_id == 2).unwrap();
        assert_eq!(car.0.score, 0.85, "the higher score wins");
    }

    #[test]
    fn a_box_cut_by_a_tile_border_gives_way_to_the_whole_box_of_another_region() {
        // The whole pass saw the car whole (lower score); a tile cut off its right third.
        let mut boxes = vec![
            (candidate(2, 0.90, [100.0, 100.0, 166.0, 170.0]), true),
            (candidate(2, 0.55, [100.0, 100.0, 200.0, 170.0]), false),
        ];
        merge_regions(&mut boxes, 0.45);
        assert_eq!(boxes.len(), 1);
        assert!(!boxes[0].1);
        assert_eq!(boxes[0].0.bbox.x2, 200.0, "the whole box is kept");
    }

    #[test]
    fn the_two_halves_of_an_object_on_a_seam_become_their_union() {
        // Two tiles each cut a bus at the seam x = 300 ± overlap; no region saw it whole.
        let mut boxes = vec![
            (candidate(5, 0.60, [220.0, 100.0, 330.0, 200.0]), true),
            (candidate(5, 0.70, [280.0, 100.0, 400.0, 200.0]), true),
        ];
        merge_regions(&mut boxes, 0.45);
        assert_eq!(boxes.len(), 1, "{boxes:?}");
        let (bus, _) = boxes[0];
        assert_eq!((bus.bbox.x1, bus.bbox.x2, bus.score), (220.0, 400.0, 0.70));
    }

    #[test]
    fn separate_objects_of_one_class_stay_separate() {
        let mut boxes = vec![
            (candidate(2, 0.8, [0.0, 0.0, 50.0, 50.0]), false),
            (candidate(2, 0.7, [60.0, 0.0, 110.0, 50.0]), true),
            (candidate(2, 0.6, [200.0, 0.0, 250.0, 50.0]), false),
        ];
        merge_regions(&mut boxes, 0.45);
        assert_eq!(boxes.len(), 3);
    }
}
