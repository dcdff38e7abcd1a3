//! The tract engine (cargo feature `tract`): pure-Rust inference for targets that have no
//! ONNX Runtime build, armv7 above all. About 3x slower than ONNX Runtime on x86_64, but the
//! same outputs (the parity test runs both against the Python reference).

use std::path::Path;
use std::sync::Arc;

use tract_linalg::multithread::{Executor, multithread_tract_scope};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid as _;

use crate::model::ModelManifest;

use super::{DetectError, check_shape};

/// The version of tract compiled in, for logs and `gridwatch check`.
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
        let input_index = input_names
            .iter()
            .position(|n| *n == manifest.input.name)
            .ok_or_else(|| {
                contract(format!(
                    "no input named `{}` (the model has: {})",
                    manifest.input.name,
                    input_names.join(", ")
                ))
            })?;
        let output_index = output_names
            .iter()
            .position(|n| *n == manifest.output.name)
            .ok_or_else(|| {
                contract(format!(
                    "no output named `{}` (the model has: {})",
                    manifest.output.name,
                    output_names.join(", ")
                ))
            })?;
        // The ONNX file's own input fact may leave dimensions symbolic; pinning it to the
        // manifest's shape lets tract plan every buffer once.
        let input_fact = model
            .input_fact(input_index)
            .map_err(|e| load_error(e.to_string()))?
            .clone();
        let declared: Option<Vec<i64>> = input_fact.shape.concretize().map(|dims| {
            dims.iter()
                .map(|d| d.to_i64().unwrap_or(-1))
                .collect::<Vec<i64>>()
        });
        check_shape(manifest, "input", declared, input_names.clone()).map_err(contract)?;
        let typed = model
            .with_input_fact(
                input_index,
                f32::fact(manifest.input.shape.map(|d| d as i64)).into(),
            )
            .and_then(|m| m.into_optimized())
            .map_err(|e| load_error(format!("{e:#}")))?;
        let output_shape: Option<Vec<i64>> = typed.output_fact(output_index).ok().and_then(|f| {
            f.shape
                .as_concrete()
                .map(|d| d.iter().map(|&v| v as i64).collect())
        });
        check_shape(manifest, "output", output_shape, output_names).map_err(contract)?;
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
