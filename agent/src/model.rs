//! Model manifests: what a model file is, where it comes from, and the exact contract of its
//! input and output. The detector is built from a manifest, never from constants in code, so
//! a custom model (an e-bike or charging-cable detector) needs a manifest, not a patch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::assets::AssetSpec;
use crate::config::toml_error_at;

/// Manifests shipped inside the binary, by name.
const BUILT_IN: &[(&str, &str)] = &[("yolox_nano", include_str!("../../models/yolox_nano.toml"))];

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read model manifest {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error(
        "unknown model `{0}`: give a built-in model name ({built_in}) or the path of a manifest .toml",
        built_in = built_in_names().join(", ")
    )]
    Unknown(String),
    #[error("model manifest {origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// The manifest, validated.
#[derive(Debug, Clone)]
pub struct ModelManifest {
    /// Where the manifest came from: `built-in:NAME` or a file path.
    pub origin: String,
    pub name: String,
    pub description: String,
    pub file: String,
    pub sha256: Vec<String>,
    pub url: String,
    pub license: String,
    pub license_url: Option<String>,
    pub input: InputSpec,
    pub output: OutputSpec,
    /// Class names by class id. `Arc<str>` so detections can carry their label for free.
    pub classes: Vec<Arc<str>>,
    /// Label groups the rules use (`vehicle`, `two_wheeler`, `person`, ...), as class ids.
    pub label_groups: BTreeMap<String, Vec<u16>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    Nchw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColorOrder {
    Bgr,
    Rgb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LetterboxAnchor {
    /// Scaled image at the top-left corner, padding right and bottom (YOLOX).
    TopLeft,
    /// Scaled image centred, padding split on both sides (YOLOv5/v8 style).
    Center,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderKind {
    /// Anchor-free grid output `[1, N, 5 + classes]`: dx, dy, log w, log h, objectness, classes.
    Yolox,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    pub shape: [usize; 4],
    pub layout: Layout,
    pub color: ColorOrder,
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub letterbox: LetterboxAnchor,
    pub pad_value: u8,
}

impl InputSpec {
    pub fn width(&self) -> usize {
        self.shape[3]
    }
    pub fn height(&self) -> usize {
        self.shape[2]
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    pub decoder: DecoderKind,
    pub strides: Vec<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    description: String,
    file: String,
    sha256: Vec<String>,
    url: String,
    license: String,
    license_url: Option<String>,
    classes: Vec<String>,
    input: InputSpec,
    output: OutputSpec,
    #[serde(default)]
    label_groups: BTreeMap<String, Vec<String>>,
}

pub fn built_in_names() -> Vec<&'static str> {
    BUILT_IN.iter().map(|(name, _)| *name).collect()
}

impl ModelManifest {
    /// Resolves `model` as a built-in name, or as a manifest path (relative to `base_dir`).
    pub fn resolve(model: &str, base_dir: &Path) -> Result<ModelManifest, ModelError> {
        if let Some((name, text)) = BUILT_IN.iter().find(|(name, _)| *name == model) {
            return ModelManifest::parse(text, &format!("built-in:{name}"));
        }
        if model.ends_with(".toml") || model.contains('/') {
            let path = base_dir.join(model);
            let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Read {
                path: path.clone(),
                source,
            })?;
            return ModelManifest::parse(&text, &path.display().to_string());
        }
        Err(ModelError::Unknown(model.to_string()))
    }

    pub fn parse(text: &str, origin: &str) -> Result<ModelManifest, ModelError> {
        let raw: RawManifest = toml::from_str(text)
            .map_err(|err| ModelError::Parse(toml_error_at(origin, text, &err)))?;
        let invalid = |message: String| ModelError::Invalid {
            origin: origin.to_string(),
            message,
        };
        if raw.classes.is_empty() {
            return Err(invalid("`classes` is empty".into()));
        }
        if raw.classes.len() > usize::from(u16::MAX) {
            return Err(invalid("more than 65535 classes".into()));
        }
        if raw.sha256.is_empty() {
            return Err(invalid("`sha256` lists no accepted checksum".into()));
        }
        for sum in &raw.sha256 {
            if sum.len() != 64 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(format!(
                    "`sha256` entry `{sum}` is not 64 hex digits"
                )));
            }
        }
        if raw.input.shape[0] != 1 || raw.input.shape[1] != 3 {
            return Err(invalid(format!(
                "input.shape {:?}: only batch 1 with 3 colour channels (NCHW) is supported",
                raw.input.shape
            )));
        }
        if raw.input.std.contains(&0.0) {
            return Err(invalid("input.std contains 0".into()));
        }
        if raw.output.strides.is_empty() {
            return Err(invalid("output.strides is empty".into()));
        }
        for stride in &raw.output.strides {
            if *stride == 0
                || !raw.input.width().is_multiple_of(*stride as usize)
                || !raw.input.height().is_multiple_of(*stride as usize)
            {
                return Err(invalid(format!(
                    "output stride {stride} does not divide the input size {}x{}",
                    raw.input.width(),
                    raw.input.height()
                )));
            }
        }
        let mut label_groups = BTreeMap::new();
        for (group, labels) in &raw.label_groups {
            let mut ids = Vec::with_capacity(labels.len());
            for label in labels {
                let id = raw.classes.iter().position(|c| c == label).ok_or_else(|| {
                    invalid(format!(
                        "label group `{group}` names `{label}`, which is not one of the model's classes"
                    ))
                })?;
                ids.push(id as u16);
            }
            label_groups.insert(group.clone(), ids);
        }
        Ok(ModelManifest {
            origin: origin.to_string(),
            name: raw.name,
            description: raw.description,
            file: raw.file,
            sha256: raw.sha256.iter().map(|s| s.to_ascii_lowercase()).collect(),
            url: raw.url,
            license: raw.license,
            license_url: raw.license_url,
            input: raw.input,
            output: raw.output,
            classes: raw.classes.into_iter().map(Arc::from).collect(),
            label_groups,
        })
    }

    /// Rows the YOLOX-style output has: one per grid cell over all strides.
    pub fn output_rows(&self) -> usize {
        self.output
            .strides
            .iter()
            .map(|s| (self.input.width() / *s as usize) * (self.input.height() / *s as usize))
            .sum()
    }

    /// Values per output row: box (4), objectness (1), class scores.
    pub fn output_cols(&self) -> usize {
        5 + self.classes.len()
    }

    pub fn asset(&self) -> AssetSpec<'_> {
        AssetSpec {
            file: &self.file,
            sha256: &self.sha256,
            url: &self.url,
        }
    }

    pub fn class_id(&self, label: &str) -> Option<u16> {
        self.classes
            .iter()
            .position(|c| &**c == label)
            .map(|i| i as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yolox() -> ModelManifest {
        ModelManifest::resolve("yolox_nano", Path::new(".")).expect("built-in manifest parses")
    }

    #[test]
    fn built_in_yolox_nano_matches_its_contract() {
        let m = yolox();
        assert_eq!(m.classes.len(), 80);
        assert_eq!(m.output_rows(), 3549);
        assert_eq!(m.output_cols(), 85);
        assert_eq!(&*m.classes[16], "dog");
        assert_eq!(m.input.pad_value, 114);
        assert_eq!(m.input.color, ColorOrder::Bgr);
        assert_eq!(m.label_groups["vehicle"], vec![2, 5, 7, 3]);
        assert_eq!(m.label_groups["two_wheeler"], vec![1, 3]);
    }

    #[test]
    fn unknown_label_in_group_is_rejected() {
        let text = include_str!("../../models/yolox_nano.toml")
            .replace("person = [\"person\"]", "person = [\"pedestrian\"]");
        let err = ModelManifest::parse(&text, "m.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`pedestrian`"), "{err}");
    }

    #[test]
    fn unknown_key_is_reported_with_position() {
        let text = include_str!("../../models/yolox_nano.toml")
            .replace("pad_value = 114", "pad_value = 114\npadding = 1");
        let err = ModelManifest::parse(&text, "m.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("m.toml:"), "{err}");
        assert!(err.contains("padding"), "{err}");
    }

    #[test]
    fn unknown_name_lists_built_ins() {
        let err = ModelManifest::resolve("yolov99", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(err.contains("yolox_nano"), "{err}");
    }
}
