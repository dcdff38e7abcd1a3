//! The ONNX Runtime engine: a session with a preallocated input and output, so steady-state
//! inference allocates nothing on our side.

use std::path::Path;

use ort::memory::Allocator;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::Tensor;

use crate::model::ModelManifest;

use super::{DetectError, RuntimeInfo, check_outlet};

pub struct OrtEngine {
    session: Session,
    input: Tensor<f32>,
    output_name: String,
    run_options: RunOptions<HasSelectedOutputs>,
}

impl OrtEngine {
    pub fn new(
        runtime: &RuntimeInfo,
        manifest: &ModelManifest,
        model_path: &Path,
        threads: usize,
    ) -> Result<OrtEngine, DetectError> {
        let load_error = |reason: String| DetectError::load(model_path, reason);
        let session = build_session(runtime, model_path, threads).map_err(load_error)?;
        check_contract(&session, manifest)
            .map_err(|reason| DetectError::contract(model_path, manifest, reason))?;
        let allocator = Allocator::default();
        let input = Tensor::<f32>::new(&allocator, manifest.input.shape)
            .map_err(|e| load_error(format!("allocating the input tensor: {e}")))?;
        let output = Tensor::<f32>::new(
            &allocator,
            [1usize, manifest.output_rows(), manifest.output_cols()],
        )
        .map_err(|e| load_error(format!("allocating the output tensor: {e}")))?;
        let output_name = manifest.output.name.clone();
        let run_options = RunOptions::new()
            .map_err(|e| load_error(e.to_string()))?
            .with_outputs(
                OutputSelector::no_default()
                    .with(output_name.clone())
                    .preallocate(output_name.clone(), output),
            );
        Ok(OrtEngine {
            session,
            input,
            output_name,
            run_options,
        })
    }

    pub fn input_mut(&mut self) -> Result<&mut [f32], DetectError> {
        Ok(self.input.extract_tensor_mut().1)
    }

    /// Runs the model and hands its output to `consume` while the output is borrowed.
    pub fn run(&mut self, consume: &mut dyn FnMut(&[f32])) -> Result<(), DetectError> {
        let outputs = self
            .session
            .run_with_options(ort::inputs![&self.input], &self.run_options)
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        let output = outputs
            .get(&self.output_name)
            .ok_or_else(|| DetectError::Inference("the model produced no output tensor".into()))?;
        let (_, values) = output
            .try_extract_tensor::<f32>()
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        consume(values);
        Ok(())
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
    for (kind, outlets) in [("input", session.inputs()), ("output", session.outputs())] {
        let names: Vec<String> = outlets.iter().map(|o| o.name().to_string()).collect();
        check_outlet(manifest, kind, &names, |i| {
            outlets[i]
                .dtype()
                .tensor_shape()
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default()
        })?;
    }
    Ok(())
}
