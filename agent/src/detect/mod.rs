//! Detect stage: run the model on a letterboxed input and turn its output into
//! [`Detection`]s in source pixels and normalised coordinates.
//!
//! The detector is built from a [`ModelManifest`]; the manifest's `output.decoder` picks the
//! output decoder, and its input contract is checked against the ONNX graph at load time so
//! a wrong manifest fails at start, not with nonsense boxes.

pub mod runtime;
pub mod yolox;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::memory::Allocator;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::Tensor;

use crate::assets::{self, AssetKind};
use crate::config::DetectorConfig;
use crate::frame::{BBox, Detection};
use crate::model::{DecoderKind, ModelManifest};
use crate::source::{Geometry, ModelInput};

pub use runtime::RuntimeInfo;
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

/// A loaded model, ready to run. Owns its input tensor and preallocated output so steady
/// state inference allocates nothing on our side.
pub struct Detector {
    manifest: Arc<ModelManifest>,
    model_path: PathBuf,
    settings: DetectorSettings,
    session: Session,
    input: Tensor<f32>,
    run_options: RunOptions<HasSelectedOutputs>,
    decoder: OutputDecoder,
    candidates: Vec<Candidate>,
    /// Per channel: value = pixel * mul + add, i.e. (pixel * scale - mean) / std.
    channel_affine: [(f32, f32); 3],
}

/// Everything needed to build a [`Detector`] from config: manifest, model file and runtime.
pub struct LoadedModel {
    pub manifest: Arc<ModelManifest>,
    pub model_path: PathBuf,
    pub runtime: RuntimeInfo,
}

/// Resolves the manifest, finds and verifies the model file, and loads ONNX Runtime.
pub fn prepare(config: &DetectorConfig, base_dir: &Path) -> anyhow::Result<LoadedModel> {
    let manifest = Arc::new(ModelManifest::resolve(&config.model, base_dir)?);
    let dirs = AssetKind::Models.search_dirs(config.model_dir.as_deref());
    let model_path = assets::locate(&manifest.asset(), AssetKind::Models, &dirs)?;
    let runtime = runtime::load(config.runtime_library.as_deref())?;
    Ok(LoadedModel {
        manifest,
        model_path,
        runtime,
    })
}

impl Detector {
    pub fn new(
        runtime: &RuntimeInfo,
        manifest: Arc<ModelManifest>,
        model_path: &Path,
        settings: DetectorSettings,
    ) -> Result<Detector, DetectError> {
        let load_error = |reason: String| DetectError::Load {
            path: model_path.to_path_buf(),
            reason: reason.split_whitespace().collect::<Vec<_>>().join(" "),
        };
        let session = build_session(runtime, model_path, settings.threads).map_err(load_error)?;

        let contract_error = |reason: String| DetectError::Contract {
            path: model_path.to_path_buf(),
            manifest: manifest.origin.clone(),
            reason,
        };
        check_contract(&session, &manifest).map_err(contract_error)?;

        let spec = &manifest.input;
        let allocator = Allocator::default();
        let input = Tensor::<f32>::new(&allocator, spec.shape)
            .map_err(|e| load_error(format!("allocating the input tensor: {e}")))?;
        let rows = manifest.output_rows();
        let cols = manifest.output_cols();
        let output = Tensor::<f32>::new(&allocator, [1usize, rows, cols])
            .map_err(|e| load_error(format!("allocating the output tensor: {e}")))?;
        let run_options = RunOptions::new()
            .map_err(|e| load_error(e.to_string()))?
            .with_outputs(
                OutputSelector::no_default()
                    .with(manifest.output.name.clone())
                    .preallocate(manifest.output.name.clone(), output),
            );
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
            session,
            input,
            run_options,
            decoder,
            candidates: Vec::with_capacity(1024),
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
        let geometry = image
            .geometry
            .ok_or_else(|| DetectError::Inference("input image was never filled".into()))?;
        self.load_input(image);
        let outputs = self
            .session
            .run_with_options(ort::inputs![&self.input], &self.run_options)
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        let output = outputs
            .get(&self.manifest.output.name)
            .ok_or_else(|| DetectError::Inference("the model produced no output tensor".into()))?;
        let (_, values) = output
            .try_extract_tensor::<f32>()
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        match &self.decoder {
            OutputDecoder::Yolox(decoder) => {
                decoder.candidates(values, self.settings.confidence, &mut self.candidates)
            }
        }
        drop(outputs);
        self.finish(geometry, out);
        Ok(())
    }

    /// Runs the model on whatever the input tensor holds; for benchmarks of inference alone.
    pub fn infer(&mut self) -> Result<(), DetectError> {
        self.session
            .run_with_options(ort::inputs![&self.input], &self.run_options)
            .map(drop)
            .map_err(|e| DetectError::Inference(e.to_string()))
    }

    /// Converts the 8-bit planes into the f32 tensor: the one pass over the input pixels.
    fn load_input(&mut self, image: &ModelInput) {
        let (_, data) = self.input.extract_tensor_mut();
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
    }

    /// Maps the candidates to source pixels, suppresses overlaps and emits detections.
    fn finish(&mut self, geometry: Geometry, out: &mut Vec<Detection>) {
        out.clear();
        // Into source pixels before NMS, as YOLOX's demo does, so the +1 pixel convention
        // applies at source scale.
        let ratio = geometry.ratio as f32;
        let (ox, oy) = (geometry.offset_x as f32, geometry.offset_y as f32);
        for c in &mut self.candidates {
            c.bbox = BBox {
                x1: (c.bbox.x1 - ox) / ratio,
                y1: (c.bbox.y1 - oy) / ratio,
                x2: (c.bbox.x2 - ox) / ratio,
                y2: (c.bbox.y2 - oy) / ratio,
            };
        }
        yolox::nms_in_place(&mut self.candidates, self.settings.nms_iou);
        let (w, h) = (geometry.src_width as f32, geometry.src_height as f32);
        for c in &self.candidates {
            let bbox = c.bbox.clamp_to(w, h);
            if bbox.area() <= 0.0 {
                continue;
            }
            out.push(Detection {
                label: Arc::clone(&self.manifest.classes[usize::from(c.class_id)]),
                class_id: c.class_id,
                score: c.score,
                bbox,
                norm: bbox.scaled(1.0 / w, 1.0 / h),
            });
        }
    }
}

fn build_session(
    runtime: &RuntimeInfo,
    model_path: &Path,
    threads: usize,
) -> Result<Session, String> {
    let text = |e: ort::Error<ort::session::builder::SessionBuilder>| e.to_string();
    Session::builder(&runtime.environment)
        .map_err(|e| e.to_string())?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(text)?
        .with_intra_threads(threads)
        .map_err(text)?
        .with_inter_threads(1)
        .map_err(text)?
        // Spinning threads burn a core while idle; on a box shared by many cameras the CPU
        // is better spent decoding.
        .with_intra_op_spinning(false)
        .map_err(text)?
        .commit_from_file(model_path)
        .map_err(|e| e.to_string())
}

/// Compares the graph's declared input and output with the manifest.
fn check_contract(session: &Session, manifest: &ModelManifest) -> Result<(), String> {
    let input_expected: Vec<i64> = manifest.input.shape.iter().map(|&d| d as i64).collect();
    check_outlet(
        session.inputs(),
        "input",
        &manifest.input.name,
        &input_expected,
        "",
    )?;
    let output_expected = [
        1,
        manifest.output_rows() as i64,
        manifest.output_cols() as i64,
    ];
    let why = format!(
        "; with {} classes and strides {:?} the manifest implies",
        manifest.classes.len(),
        manifest.output.strides
    );
    check_outlet(
        session.outputs(),
        "output",
        &manifest.output.name,
        &output_expected,
        &why,
    )
}

/// Finds the named input or output and checks its shape (dynamic dimensions match anything).
fn check_outlet(
    outlets: &[ort::value::Outlet],
    kind: &str,
    name: &str,
    expected: &[i64],
    why: &str,
) -> Result<(), String> {
    let outlet = outlets.iter().find(|o| o.name() == name).ok_or_else(|| {
        let names: Vec<&str> = outlets.iter().map(|o| o.name()).collect();
        format!(
            "no {kind} named `{name}` (the model has: {})",
            names.join(", ")
        )
    })?;
    let shape: Vec<i64> = outlet
        .dtype()
        .tensor_shape()
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    let matches =
        shape.len() == expected.len() && shape.iter().zip(expected).all(|(a, b)| *a < 0 || a == b);
    if matches {
        Ok(())
    } else {
        let says = if why.is_empty() {
            ", the manifest says"
        } else {
            why
        };
        Err(format!(
            "{kind} `{name}` has shape {shape:?}{says} {expected:?}"
        ))
    }
}
