//! The tract engine (cargo feature `tract`): pure-Rust inference for targets that have no
//! ONNX Runtime build, armv7 above all. About 3x slower than ONNX Runtime on x86_64, but the
//! same outputs (the parity test runs both against the Python reference).

use std::path::Path;
use std::sync::Arc;

use tract_linalg::multithread::{Executor, multithread_tract_scope};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid as _;

use crate::model::ModelManifest;

use super::{DetectError, check_outlet};

/// The version of tract compiled in, for logs and `gridwatch check` (tract exports none; keep
/// in step with the exact pin in the workspace Cargo.toml).
pub const TRACT_VERSION: &str = "0.23.9";

pub struct TractEngine {
    state: TypedSimpleState,
    /// Shared with the plan only during a run; exclusive again afterwards, so it is refilled
    /// in place instead of reallocated per frame.
    input: Arc<Tensor>,
    output_index: usize,
    executor: Executor,
}

impl TractEngine {
    pub fn new(
        manifest: &ModelManifest,
        model_path: &Path,
        threads: usize,
    ) -> Result<TractEngine, DetectError> {
        let load_error = |reason: String| DetectError::load(model_path, reason);
        let model = tract_onnx::onnx()
            .model_for_path(model_path)
            .map_err(|e| load_error(format!("{e:#}")))?;
        let input_names: Vec<String> = model
            .input_outlets()
            .map_err(|e| load_error(e.to_string()))?
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        let output_names: Vec<String> = model
            .output_outlets()
            .map_err(|e| load_error(e.to_string()))?
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .map(str::to_string)
                    .unwrap_or_else(|| model.node(o.node).name.clone())
            })
            .collect();
        let contract = |reason: String| DetectError::contract(model_path, manifest, reason);
        // Dimensions the ONNX file leaves symbolic read as -1 (dynamic) here.
        let input_index = check_outlet(manifest, "input", &input_names, |i| {
            model
                .input_fact(i)
                .map(|fact| {
                    fact.shape
                        .dims()
                        .map(|d| d.concretize().and_then(|d| d.to_i64().ok()).unwrap_or(-1))
                        .collect()
                })
                .unwrap_or_default()
        })
        .map_err(contract)?;
        // Pinning the input to the manifest's shape lets tract plan every buffer once.
        let typed = model
            .with_input_fact(
                input_index,
                f32::fact(manifest.input.shape.map(|d| d as i64)).into(),
            )
            .and_then(|m| m.into_optimized())
            .map_err(|e| load_error(format!("{e:#}")))?;
        // Optimisation keeps the outputs in order, so the names read before it still index.
        let output_index = check_outlet(manifest, "output", &output_names, |i| {
            typed
                .output_fact(i)
                .ok()
                .and_then(|f| {
                    f.shape
                        .as_concrete()
                        .map(|d| d.iter().map(|&v| v as i64).collect())
                })
                .unwrap_or_default()
        })
        .map_err(contract)?;
        let plan = typed
            .into_runnable()
            .map_err(|e| load_error(format!("{e:#}")))?;
        let state = plan.spawn().map_err(|e| load_error(format!("{e:#}")))?;
        let input = Arc::new(
            Tensor::zero::<f32>(&manifest.input.shape)
                .map_err(|e| load_error(format!("allocating the input tensor: {e}")))?,
        );
        let executor = if threads > 1 {
            let pool = rayon::ThreadPoolBuilder::new()
                .thread_name(|n| format!("tract-{n}"))
                .num_threads(threads)
                .build()
                .map_err(|e| load_error(format!("starting {threads} inference threads: {e}")))?;
            Executor::MultiThread(Arc::new(pool))
        } else {
            Executor::SingleThread
        };
        Ok(TractEngine {
            state,
            input,
            output_index,
            executor,
        })
    }

    pub fn input_mut(&mut self) -> Result<&mut [f32], DetectError> {
        // Exclusive after every run (the state drops its inputs), so this does not copy.
        Arc::make_mut(&mut self.input)
            .to_plain_array_view_mut::<f32>()
            .map_err(|e| DetectError::Inference(e.to_string()))?
            .into_slice()
            .ok_or_else(|| DetectError::Inference("the input tensor is not contiguous".into()))
    }

    pub fn run(&mut self, consume: &mut dyn FnMut(&[f32])) -> Result<(), DetectError> {
        let input = TValue::from_const(Arc::clone(&self.input));
        let state = &mut self.state;
        let outputs = multithread_tract_scope(self.executor.clone(), || state.run(tvec![input]))
            .map_err(|e| DetectError::Inference(format!("{e:#}")))?;
        let output = outputs
            .get(self.output_index)
            .ok_or_else(|| DetectError::Inference("the model produced no output tensor".into()))?;
        let view = output
            .to_plain_array_view::<f32>()
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        let values = view
            .to_slice()
            .ok_or_else(|| DetectError::Inference("the output tensor is not contiguous".into()))?;
        consume(values);
        Ok(())
    }
}
